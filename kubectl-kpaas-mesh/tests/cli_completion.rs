//! `completion bash|zsh|fish`: the scripts clap_complete generates from the real command
//! tree. The bash one is loaded into a real bash and asked to complete, as a shell would.

mod common;

use common::*;
use std::process::Command;

/// What bash completes for `words` (the last one partial), with the script loaded.
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cmd = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _kubectl_kpaas_mesh kubectl-kpaas_mesh '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_subcommands_and_flags() {
    let home = tempfile::tempdir().unwrap();
    let out = host(&["completion", "bash"], home.path());
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    // Registered for the binary's own name.
    assert!(
        script.contains("-o default kubectl-kpaas_mesh\n"),
        "{script}"
    );
    let top = bash_complete(&script, &["kubectl-kpaas_mesh", ""]);
    for c in [
        "up",
        "down",
        "status",
        "check",
        "link",
        "unlink",
        "verify",
        "certs",
        "plugins",
        "completion",
    ] {
        assert!(top.iter().any(|w| w == c), "no {c} in {top:?}");
    }
    assert_eq!(
        bash_complete(&script, &["kubectl-kpaas_mesh", "cer"]),
        ["certs"]
    );
    let certs = bash_complete(&script, &["kubectl-kpaas_mesh", "certs", ""]);
    assert!(
        certs.iter().any(|w| w == "generate") && certs.iter().any(|w| w == "inspect"),
        "{certs:?}"
    );
    let up = bash_complete(&script, &["kubectl-kpaas_mesh", "up", "--netf"]);
    assert!(up.iter().any(|w| w == "--netfix"), "{up:?}");
}

#[test]
fn zsh_and_fish_scripts_name_every_command_and_unknown_shells_are_refused() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish"] {
        let out = host(&["completion", shell], home.path());
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for c in ["up", "certs", "plugins", "verify"] {
            assert!(script.contains(c), "{shell}: no {c}");
        }
    }
    let out = host(&["completion", "tcsh"], home.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    assert!(out.stdout.is_empty());
}
