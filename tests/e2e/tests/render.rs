//! End-to-end test of `render --out`: the files it writes, applied with nothing but plain helm and
//! `kubectl apply --server-side` on fresh clusters (as a GitOps tool would), make the mesh `up` makes: a following
//! `up` changes nothing and `check` passes (Linkerd's real service mirrors on the bed take the rendered links).

mod common;

use common::*;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use std::path::Path;

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];

fn run(bed: &TestBed, program: &str, args: &[&str]) {
    let out = bed.command(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Applies a rendered tree the way PLAN.md says: per cluster in file-name order, helm for release directories
/// (with their secret values file), kubectl server-side apply with kpaas-mesh's field manager for the rest.
fn apply(bed: &TestBed, tree: &Path) {
    for cluster in CLUSTERS {
        let dir = tree.join(cluster);
        let mut entries: Vec<(String, std::path::PathBuf)> = Vec::new();
        for sub in [dir.clone(), dir.join("secrets")] {
            for e in std::fs::read_dir(&sub).into_iter().flatten() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().to_string();
                if name != "secrets" && !name.ends_with("-values.yaml") {
                    entries.push((name, e.path()));
                }
            }
        }
        entries.sort();
        for (name, path) in entries {
            if path.is_dir() {
                let rel: serde_json::Value = serde_yaml_ng::from_str(
                    &std::fs::read_to_string(path.join("release.yaml")).unwrap(),
                )
                .unwrap();
                let s = |k: &str| rel[k].as_str().unwrap_or_default().to_string();
                let chart = if rel["path"].is_string() {
                    s("path")
                } else {
                    s("chart")
                };
                let mut args = vec![
                    "upgrade".to_string(),
                    "--install".into(),
                    s("release"),
                    chart,
                ];
                if let Some(repo) = rel["repo"].as_str() {
                    args.extend([
                        "--repo".into(),
                        repo.into(),
                        "--version".into(),
                        s("version"),
                    ]);
                }
                args.extend([
                    "-n".into(),
                    s("namespace"),
                    "--kube-context".into(),
                    cluster.into(),
                ]);
                if rel["createNamespace"] == true {
                    args.push("--create-namespace".into());
                }
                args.extend(["-f".into(), path.join("values.yaml").display().to_string()]);
                let secret_values = dir.join("secrets").join(format!("{name}-values.yaml"));
                if secret_values.exists() {
                    args.extend(["-f".into(), secret_values.display().to_string()]);
                }
                args.extend(["--wait".into(), "--timeout".into(), "3m".into()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run(bed, "helm", &args);
            } else {
                let file = path.display().to_string();
                run(
                    bed,
                    "kubectl",
                    &[
                        "--context",
                        cluster,
                        "apply",
                        "--server-side",
                        "--field-manager",
                        "kpaas-mesh",
                        "-f",
                        &file,
                    ],
                );
            }
        }
    }
}

#[tokio::test]
async fn a_rendered_tree_applied_with_helm_and_kubectl_is_the_mesh_up_makes() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let _ = tool.run("down", &CLUSTERS, &["--only", ALL]);
    // the certificates are the operator's: made first, rendered into the control plane's values
    tool.ok("up", &CLUSTERS, &["--only", "cert"]);
    let work = tempfile::tempdir().unwrap();

    // fresh clusters: everything but the links (they need each target's gateway address and token)
    let first = work.path().join("first");
    let out = tool.ok_words(
        &["render"],
        &CLUSTERS,
        &[
            "--only",
            ALL,
            "--out",
            first.to_str().unwrap(),
            "--secrets",
            "include",
        ],
    );
    assert!(out.contains("PLAN.md gives the order"), "{out}");
    let plan = std::fs::read_to_string(first.join("PLAN.md")).unwrap();
    assert!(
        plan.contains("cluster1/001-control-plane-helm-linkerd-crds/"),
        "{plan}"
    );
    assert!(plan.contains("is planned once"), "{plan}");
    // nothing on the clusters yet
    assert!(helm_releases(&bed, "cluster1").unwrap().is_empty());
    apply(&bed, &first);

    // with the extension running, the links too; the whole tree applied again
    let second = work.path().join("second");
    tool.ok_words(
        &["render"],
        &CLUSTERS,
        &[
            "--only",
            ALL,
            "--out",
            second.to_str().unwrap(),
            "--secrets",
            "include",
        ],
    );
    let links: Vec<_> = std::fs::read_dir(second.join("cluster1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-link-cluster2"))
        .collect();
    assert_eq!(links.len(), 1, "no Link file for cluster1 → cluster2");
    assert!(
        std::fs::read_dir(second.join("cluster1/secrets"))
            .unwrap()
            .count()
            >= 2
    );
    // secrets omitted: none written, listed
    let omit = work.path().join("omit");
    tool.ok_words(
        &["render"],
        &CLUSTERS,
        &["--only", ALL, "--out", omit.to_str().unwrap()],
    );
    assert!(!omit.join("cluster1/secrets").exists());
    assert!(
        std::fs::read_to_string(omit.join("PLAN.md"))
            .unwrap()
            .contains("## left out (`--secrets omit`)")
    );
    apply(&bed, &second);

    // what kpaas-mesh would have made: `up` changes nothing, check passes
    let again = tool.ok("up", &CLUSTERS, &["--only", ALL]);
    assert!(
        again.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{again}"
    );
    let check = tool.run("check", &CLUSTERS, &["--only", ALL, "--wait", "2m"]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    tool.ok("down", &CLUSTERS, &["--only", ALL]);
}
