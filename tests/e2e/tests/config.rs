//! End-to-end test of kpaas-mesh.yaml on the bed: `init` writes it from the bed's kubeconfig, and a command given
//! no `--cluster` at all plans both clusters from it (a dry run against the real API servers); a flag still wins.

mod common;

use common::*;
use kpaas_mesh_e2e::testbed_or_skip;

#[tokio::test]
async fn init_writes_settings_that_the_commands_run_from() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kpaas-mesh.yaml");
    let bin = target_dir().join("kubectl-kpaas_mesh");
    let out = bed
        .command(bin.to_str().unwrap())
        .args([
            "init",
            "--context",
            "cluster1",
            "--context",
            "cluster2",
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("with clusters cluster1, cluster2"), "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("- name: cluster1") && text.contains("netfix: none"),
        "{text}"
    );

    let f = file.to_str().unwrap();
    let plan = tool.ok_words(
        &["up"],
        &[],
        &["--config", f, "--dry-run", "--only", "cert,control-plane"],
    );
    for c in ["cluster1", "cluster2"] {
        assert!(
            plan.contains(&format!(
                "# {c}: helm upgrade --install linkerd-control-plane"
            )),
            "{c} not planned:\n{plan}"
        );
    }
    // a flag wins over the file (status fails here: nothing is installed; it reports on cluster1 only)
    let one = tool.run_words(
        &["status"],
        &["cluster1"],
        &["--config", f, "--only", "control-plane", "-o", "json"],
    );
    let one = String::from_utf8_lossy(&one.stdout);
    assert!(
        one.contains("cluster1: linkerd-crds is not installed"),
        "{one}"
    );
    assert!(!one.contains("cluster2"), "{one}");
    // an unknown key: one line naming the file and the line, nothing run
    std::fs::write(&file, format!("{text}netfx: openstack\n")).unwrap();
    let bad = tool.run_words(&["up"], &[], &["--config", f, "--dry-run"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("unknown field `netfx`") && err.contains("line"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
