//! Helpers shared by the host's integration tests: the built binary, the built cert plugin,
//! temporary plugin directories and a kubeconfig that names two clusters.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>`, found from the test executable (`target/<profile>/deps/<test>`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The cert plugin library cargo built as a dev-dependency.
pub fn cert_plugin() -> PathBuf {
    let name = format!("libkpaas_mesh_cert.{}", std::env::consts::DLL_EXTENSION);
    for dir in [profile_dir(), profile_dir().join("deps")] {
        let p = dir.join(&name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not built; run `cargo build --workspace` first")
}

/// A fresh plugin directory (mode 0755) holding copies of `libs` (mode 0644).
pub fn plugin_dir(libs: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for lib in libs {
        let to = dir.path().join(lib.file_name().unwrap());
        std::fs::copy(lib, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

/// Runs the host binary with `args`, no KUBECONFIG or plugin path from the environment.
pub fn host(args: &[&str], home: &Path) -> Output {
    host_env(args, home, &[])
}

/// [`host`] with extra environment variables.
pub fn host_env(args: &[&str], home: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-kpaas_mesh"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KPAAS_MESH_PLUGIN_PATH")
        .env_remove("KPAAS_MESH_CERTS_DIR")
        .env("HOME", home)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A kubeconfig with contexts cluster1 and cluster2 pointing at closed loopback ports:
/// enough for commands that must validate input and plan local work without a cluster.
pub fn kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("kubeconfig");
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (i, port) in [(1, 1), (2, 2)] {
        text.push_str(&format!(
            "- name: c{i}\n  cluster: {{server: \"https://127.0.0.1:{port}\"}}\n"
        ));
    }
    text.push_str("users:\n- name: u\n  user: {token: t}\ncontexts:\n");
    for i in [1, 2] {
        text.push_str(&format!(
            "- name: cluster{i}\n  context: {{cluster: c{i}, user: u}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}
