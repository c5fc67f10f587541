//! The stable ABI under stress, with real shared libraries built by this test:
//! - a plugin built against plugin-api 0.3.0 (a copy of ours with the version bumped) and one
//!   built against a copy whose `PluginInfo` layout changed are both refused with one line
//!   that names the file and both versions, and the host goes on;
//! - a plugin that panics inside a call produces an error, never an abort;
//! - a plugin that never answers is given up on after its deadline, with one line naming it, and the binary
//!   exits without waiting for the hung thread;
//! - two plugins with one name are reported.
//!
//! The test plugins are built with cargo (offline, from the registry cache the workspace
//! already uses) into `target/abi-compat/`, so later runs reuse the build.

mod common;

use common::*;
use kpaas_mesh_plugin_api::{Operation, StageRequest};
use kubectl_kpaas_mesh::facts::LocalFacts;
use kubectl_kpaas_mesh::loader::{Registry, SearchDir, load_file};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

const PLUGIN_SRC: &str = r#"
use kpaas_mesh_plugin_api::*;
struct TestPlugin;
impl StagePlugin for TestPlugin {
    fn run(&self, request: StageRequest) -> Result<StageResponse, PluginError> {
        if request.operation == Operation::Check {
            panic!("deliberate panic in the test plugin");
        }
        if request.operation == Operation::Down {
            // a plugin that never answers
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Ok(StageResponse::Plan(Plan::default()))
    }
}
kpaas_mesh_plugin_api::export_stage_plugin! {
    name: env!("CARGO_PKG_NAME"),
    description: "a plugin built by the ABI test",
    descriptor: || Descriptor::new("sample", &[Operation::Up, Operation::Down, Operation::Status, Operation::Check]),
    constructor: || Ok(TestPlugin),
}
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} no longer contains {from:?}",
        path.display()
    );
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// A vendor's stage the host has never heard of: `dns`, between multicluster and netfix, with
/// one option; its `up` plan applies a ConfigMap naming the zone.
const VENDOR_SRC: &str = r#"
use kpaas_mesh_plugin_api::*;
struct Dns;
impl StagePlugin for Dns {
    fn run(&self, request: StageRequest) -> Result<StageResponse, PluginError> {
        let zone = request.options["zone"].as_str().unwrap_or("mesh.local").to_string();
        let mut plan = Plan::default();
        if request.operation == Operation::Up {
            for c in &request.clusters {
                plan.actions.push(Action::Apply {
                    cluster: c.name.clone(),
                    manifest: serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "vendor-dns", "namespace": "kube-system"},
                        "data": {"zone": zone}}),
                    secret: false,
                });
            }
        }
        Ok(StageResponse::Plan(plan))
    }
}
kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "vendor-dns",
    description: "a vendor stage built by the ABI test",
    descriptor: || Descriptor::new("dns", &[Operation::Up, Operation::Down])
        .after(&["multicluster"])
        .before(&["netfix"])
        .option("zone", OptionKind::String, Some("mesh.local"), "the DNS zone"),
    constructor: || Ok(Dns),
}
"#;

/// Builds plugin crate `name` against `api` (a plugin-api directory); returns its library.
fn build_plugin(root: &Path, name: &str, api: &Path) -> PathBuf {
    build_plugin_from(root, name, api, PLUGIN_SRC)
}

fn build_plugin_from(root: &Path, name: &str, api: &Path, src: &str) -> PathBuf {
    let ws = root.join(name);
    std::fs::create_dir_all(ws.join("src")).unwrap();
    let abi_stable = "0.11.3";
    std::fs::write(
        ws.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
             kpaas-mesh-plugin-api = {{ path = {api:?} }}\nabi_stable = \"{abi_stable}\"\nserde_json = \"1\"\n\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(ws.join("src/lib.rs"), src).unwrap();
    std::fs::copy(workspace_root().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    let target = profile_dir().parent().unwrap().join("abi-compat");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(ws.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = target.join("debug").join(format!(
        "lib{}.{}",
        name.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    ));
    assert!(lib.exists(), "{} missing", lib.display());
    lib
}

/// A copy of plugin-api with a standalone manifest, optionally altered by `edit`.
fn api_copy(root: &Path, dir: &str, version: &str, edit: impl Fn(&Path)) -> PathBuf {
    let to = root.join(dir);
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(&workspace_root().join("plugin-api/src"), &to.join("src"));
    std::fs::write(
        to.join("Cargo.toml"),
        format!(
            "[package]\nname = \"kpaas-mesh-plugin-api\"\nversion = \"{version}\"\nedition = \"2024\"\n\n\
             [lib]\nname = \"kpaas_mesh_plugin_api\"\n\n[dependencies]\n\
             abi_stable = \"0.11.3\"\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n"
        ),
    )
    .unwrap();
    edit(&to);
    to
}

struct Built {
    vendor: PathBuf,
    panicky: PathBuf,
    newer: PathBuf,
    changed: PathBuf,
}

/// Builds the three test plugins once per test process.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = profile_dir().parent().unwrap().join("abi-compat-src");
        std::fs::create_dir_all(&root).unwrap();
        let real_api = api_copy(
            &root,
            "api-same",
            kpaas_mesh_plugin_api::ABI_VERSION,
            |_| {},
        );
        let newer_api = api_copy(&root, "api-0.3.0", "0.3.0", |_| {});
        let changed_api = api_copy(
            &root,
            "api-changed",
            kpaas_mesh_plugin_api::ABI_VERSION,
            |dir| {
                // PluginInfo.version becomes a number: same crate version, different layout.
                replace_in(
                    &dir.join("src/ffi.rs"),
                    "pub version: RString,",
                    "pub version: u64,",
                );
                replace_in(
                    &dir.join("src/export.rs"),
                    "version: env!(\"CARGO_PKG_VERSION\").into(),",
                    "version: 1,",
                );
            },
        );
        Built {
            vendor: build_plugin_from(&root, "abi-test-vendor", &real_api, VENDOR_SRC),
            panicky: build_plugin(&root, "abi-test-panicky", &real_api),
            newer: build_plugin(&root, "abi-test-newer", &newer_api),
            changed: build_plugin(&root, "abi-test-changed", &changed_api),
        }
    })
}

#[test]
fn a_plugin_for_another_abi_version_is_refused_naming_both_versions() {
    let dir = plugin_dir(&[&built().newer]);
    let file = dir.path().join(built().newer.file_name().unwrap());
    let err = load_file(&file).unwrap_err();
    assert!(err.starts_with(&file.display().to_string()), "{err}");
    assert!(err.contains("plugin ABI mismatch"), "{err}");
    assert!(err.contains("plugin-api 0.3.0"), "{err}");
    assert!(
        err.contains(&format!(
            "plugin-api {}",
            kpaas_mesh_plugin_api::ABI_VERSION
        )),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn a_plugin_with_a_changed_interface_is_refused_without_an_abort() {
    let dir = plugin_dir(&[&built().changed]);
    let file = dir.path().join(built().changed.file_name().unwrap());
    let err = load_file(&file).unwrap_err();
    assert!(err.starts_with(&file.display().to_string()), "{err}");
    assert!(err.contains("plugin interface mismatch"), "{err}");
    assert!(err.contains("different binary layout"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn the_host_lists_good_plugins_next_to_incompatible_ones() {
    let b = built();
    let dir = plugin_dir(&[&b.newer, &b.changed, &b.panicky, &cert_plugin()]);
    let home = tempfile::tempdir().unwrap();
    let out = host(
        &[
            "--plugin-dir",
            dir.path().to_str().unwrap(),
            "plugins",
            "list",
            "-o",
            "json",
        ],
        home.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "errors make `plugins list` fail"
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["abi-test-panicky", "cert"]);
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_panicking_plugin_returns_an_error() {
    let dir = plugin_dir(&[&built().panicky]);
    let reg = Registry::discover(vec![SearchDir {
        path: dir.path().to_path_buf(),
        origin: "test",
    }]);
    assert!(reg.errors.is_empty(), "{:?}", reg.errors);
    let plugin = &reg.plugins[0];
    let stage = Arc::new(plugin.new_stage().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(kubectl_kpaas_mesh::pipeline::plan_stage(
        plugin,
        &stage,
        StageRequest::new(Operation::Status, vec![]),
        &LocalFacts,
    ));
    assert!(ok.is_ok(), "{ok:?}");
    let err = rt
        .block_on(kubectl_kpaas_mesh::pipeline::plan_stage(
            plugin,
            &stage,
            StageRequest::new(Operation::Check, vec![]),
            &LocalFacts,
        ))
        .unwrap_err();
    assert!(
        err.starts_with(
            "abi-test-panicky: plugin panicked: deliberate panic in the test plugin at "
        ),
        "{err}"
    );
    // The plugin still answers after its panic.
    let again = rt.block_on(kubectl_kpaas_mesh::pipeline::plan_stage(
        plugin,
        &stage,
        StageRequest::new(Operation::Status, vec![]),
        &LocalFacts,
    ));
    assert!(again.is_ok());

    // Through the binary: one error line, exit code 1, not an abort.
    let home = tempfile::tempdir().unwrap();
    let kc = kubeconfig(home.path());
    let out = host(
        &[
            "--plugin-dir",
            dir.path().to_str().unwrap(),
            "check",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--cluster",
            "cluster1",
            "--cluster",
            "cluster2",
            "--only",
            "sample",
        ],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("plugin panicked: deliberate panic"), "{err}");
}

#[test]
fn a_plugin_that_never_answers_is_stopped_by_a_deadline_naming_it() {
    let dir = plugin_dir(&[&built().panicky]);
    let reg = Registry::discover(vec![SearchDir {
        path: dir.path().to_path_buf(),
        origin: "test",
    }]);
    let plugin = &reg.plugins[0];
    let stage = Arc::new(plugin.new_stage().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(kubectl_kpaas_mesh::pipeline::plan_stage_within(
            plugin,
            &stage,
            StageRequest::new(Operation::Down, vec![]),
            &LocalFacts,
            std::time::Duration::from_secs(1),
        ))
        .unwrap_err();
    assert!(
        err.starts_with("plugin abi-test-panicky did not answer down of stage sample within 1s; stopped waiting for it"),
        "{err}"
    );
    rt.shutdown_timeout(std::time::Duration::from_millis(100));

    // Through the binary: one error line, exit code 1, and the process does not wait for the hung thread.
    let home = tempfile::tempdir().unwrap();
    let kc = kubeconfig(home.path());
    let started = std::time::Instant::now();
    let out = host_env(
        &[
            "--plugin-dir",
            dir.path().to_str().unwrap(),
            "down",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--cluster",
            "cluster1",
            "--cluster",
            "cluster2",
            "--only",
            "sample",
            "--dry-run",
        ],
        home.path(),
        &[("KPAAS_MESH_PLUGIN_DEADLINE", "2")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(
            "error: plugin abi-test-panicky did not answer down of stage sample within 2s"
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the host waited for the hung plugin"
    );
}

#[test]
fn two_plugins_with_one_name_are_reported() {
    let cert = cert_plugin();
    let dir = plugin_dir(&[&cert]);
    std::fs::copy(&cert, dir.path().join("libzz_second_cert.so")).unwrap();
    let reg = Registry::discover(vec![SearchDir {
        path: dir.path().to_path_buf(),
        origin: "test",
    }]);
    assert_eq!(reg.plugins.len(), 1);
    assert_eq!(reg.errors.len(), 1);
    assert!(
        reg.errors[0].contains("a second plugin named 'cert'"),
        "{}",
        reg.errors[0]
    );
    assert!(
        reg.errors[0].contains("libzz_second_cert.so"),
        "{}",
        reg.errors[0]
    );
}

/// Every built-in plugin library of this workspace's build.
fn built_in_plugins() -> Vec<PathBuf> {
    [
        "cert",
        "control_plane",
        "multicluster",
        "netfix_none",
        "smi",
        "sample",
    ]
    .iter()
    .map(|n| {
        profile_dir().join(format!(
            "libkpaas_mesh_{n}.{}",
            std::env::consts::DLL_EXTENSION
        ))
    })
    .collect()
}

#[test]
fn a_vendor_stage_joins_the_pipeline_without_a_new_host() {
    let mut libs = built_in_plugins();
    libs.push(built().vendor.clone());
    let refs: Vec<&Path> = libs.iter().map(PathBuf::as_path).collect();
    let dir = plugin_dir(&refs);
    let home = tempfile::tempdir().unwrap();
    let pd = dir.path().to_str().unwrap();

    // described like any built-in
    let out = host(
        &["--plugin-dir", pd, "plugins", "describe", "dns"],
        home.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("plugin:     vendor-dns"), "{text}");
    assert!(text.contains("after:      multicluster"), "{text}");
    assert!(text.contains("dns.zone"), "{text}");

    // ordered between multicluster and netfix, with its option, in up --dry-run
    let kc = kubeconfig(home.path());
    let certs = home.path().join("certs");
    let base = [
        "--plugin-dir",
        pd,
        "up",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--cluster",
        "cluster1",
        "--cluster",
        "cluster2",
        "--certs-dir",
        certs.to_str().unwrap(),
        "--dry-run",
        "-o",
        "json",
        "--only",
        "cert,dns",
    ];
    let mut args = base.to_vec();
    args.extend(["--set", "dns.zone=k-paas.local"]);
    let out = host(&args, home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let steps: Vec<String> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["stage"].as_str().unwrap(),
                s["plugin"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(steps, ["cert/cert", "dns/vendor-dns"], "{doc}");
    let zone = &doc["steps"][1]["actions"][0]["manifest"]["data"]["zone"];
    assert_eq!(zone, "k-paas.local");

    // its options are checked against its schema before anything runs
    let mut args = base.to_vec();
    args.extend(["--set", "dns.zon=x"]);
    let out = host(&args, home.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: --set dns.zon=x: plugin vendor-dns has no option 'zon' (its options: zone)"
    );
    let mut args = base.to_vec();
    args.extend(["--set", "dsn.zone=x"]);
    let out = host(&args, home.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--set dsn.zone=x: no stage or plugin named 'dsn'"),
        "{}",
        stderr(&out)
    );
}
