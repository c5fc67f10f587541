//! The per-link service mirror objects of every `links: link` release (2.14–2.17) compared,
//! object for object, with that release's own golden render of its link chart:
//! `multicluster/cmd/testdata/service_mirror_default.golden` (2.14.10: `serivce_…`), which
//! Linkerd's `TestServiceMirrorRender` checks `renderServiceMirror` — the function `linkerd
//! multicluster link` renders the chart with — against, for the link `test-cluster` in the
//! namespace `test` with the image tag `dev-undefined`. The trees are the 2.14.10 Go module and
//! the snapshots tests/testbed/build.sh unpacked; skipped when build.sh has not run, failed
//! inside the test bed when a tree is missing. (The CLIs of 2.15–2.17 are not built on the bed;
//! 2.14.10's link parity with the real CLI is tests/e2e/tests/mesh.rs.)

use kpaas_mesh_kit::linkerd::{LinkStyle, RELEASES};
use kpaas_mesh_multicluster::link::{MirrorSettings, Target, link_objects};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const STABLE_MODULE: &str = "github.com/linkerd/linkerd2@v0.5.1-0.20240220173600-1ea6b271718f";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bed's cache directory (`build.sh --print-dir`), if build.sh has made it.
fn cache_dir() -> Option<PathBuf> {
    let out = Command::new(repo_root().join("tests/testbed/build.sh"))
        .arg("--print-dir")
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("stamps").is_dir().then_some(dir)
}

/// The golden file of a release's tree.
fn golden(cache: &Path, version: &str) -> PathBuf {
    if version.starts_with("stable-") {
        let gomodcache = Command::new("go")
            .args(["env", "GOMODCACHE"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("go env GOMODCACHE");
        Path::new(&gomodcache)
            .join(STABLE_MODULE)
            .join("multicluster/cmd/testdata/serivce_mirror_default.golden")
    } else {
        cache
            .join(format!("src/linkerd2-{version}"))
            .join("multicluster/cmd/testdata/service_mirror_default.golden")
    }
}

/// The golden render moved to what a real link writes: the multicluster namespace instead of
/// the test's `test`, the release's tag instead of `dev-undefined`.
fn as_linked(mut o: Value, version: &str) -> Value {
    let ns = "linkerd-multicluster";
    if o["metadata"]["namespace"] == "test" {
        o["metadata"]["namespace"] = json!(ns);
    }
    if let Some(subjects) = o.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            s["namespace"] = json!(ns);
        }
    }
    if o["kind"] == "Deployment" {
        let c = &mut o["spec"]["template"]["spec"]["containers"][0];
        let image = c["image"]
            .as_str()
            .unwrap()
            .replace("dev-undefined", version);
        c["image"] = json!(image);
        for a in c["args"].as_array_mut().unwrap() {
            if a == "-namespace=test" {
                *a = json!(format!("-namespace={ns}"));
            }
        }
    }
    o
}

fn target() -> Target {
    Target {
        name: "test-cluster".into(),
        context: "test-cluster".into(),
        kubeconfig_cluster_name: "test-cluster".into(),
        kubeconfig_cluster: json!({"server": "https://127.0.0.1:6443"}),
        token: "t".into(),
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
        gateway_address: "192.0.2.1".into(),
        gateway_port: 4143,
        gateway_identity:
            "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                .into(),
        probe_path: "/ready".into(),
        probe_port: 4191,
        probe_period_secs: 3,
    }
}

#[test]
fn link_chart_objects_equal_each_releases_golden_render() {
    let Some(cache) = cache_dir() else {
        assert!(
            std::env::var_os("KPAAS_MESH_TESTBED").is_none(),
            "inside the test bed, build.sh must have run"
        );
        eprintln!("SKIP link_golden: tests/testbed/build.sh has not run");
        return;
    };
    let mut checked = vec![];
    for rel in RELEASES.iter().filter(|r| r.links == LinkStyle::Link) {
        let path = golden(&cache, &rel.version);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run tests/testbed/build.sh)", path.display()));
        let want: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .map(|v| as_linked(v, &rel.version))
            .collect();
        // ours: what follows the credentials and the Link
        let ours: Vec<Value> = link_objects(&target(), &MirrorSettings::new(rel, None))
            .into_iter()
            .skip(3)
            .collect();
        let ids = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect()
        };
        assert_eq!(ids(&ours), ids(&want), "{}: objects", rel.version);
        for (o, w) in ours.iter().zip(&want) {
            assert_eq!(
                o,
                w,
                "{}: {} differs from {}",
                rel.version,
                o["kind"],
                path.display()
            );
        }
        checked.push(rel.version.clone());
    }
    assert_eq!(
        checked,
        [
            "stable-2.14.10",
            "edge-24.2.4",
            "edge-24.8.2",
            "edge-24.11.8"
        ]
    );
}
