//! End-to-end tests of `kubectl kpaas-mesh` against the test bed's real API servers (issue:
//! stages control-plane, multicluster, smi; up, down, status, check, link, unlink):
//! - two clusters: up → releases at the pinned versions, one trust anchor, links both ways,
//!   `check` passes everything that needs no data plane; a second `up` changes nothing;
//!   the links equal what the real `linkerd multicluster link` makes; `unlink --from` removes
//!   one direction only; `down` restores the clusters' object set;
//! - three clusters: a full mesh of six links;
//! - air-gapped: local charts with `--registry` rewriting every image.
//!
//! The host binary and the plugins come from the workspace's target directory; the plugins
//! are copied into a temporary plugin directory as a release would install them.

mod common;

use anyhow::{Result, bail};
use common::*;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use serde_json::Value;
use std::collections::BTreeMap;

async fn clean(tool: &Tool, clusters: &[&str]) {
    // A failed earlier run may have left things behind.
    let _ = tool.run("down", clusters, &["--only", MESH_STAGES]);
}

/// Compares the real `linkerd multicluster link` output for `target` with the objects the
/// tool made on `source`. Returns the differences (empty when at parity).
async fn link_parity(bed: &TestBed, source: &str, target: &str) -> Result<Vec<String>> {
    let out = bed.run(
        "linkerd",
        &[
            "multicluster",
            "link",
            &format!("--context={target}"),
            "--cluster-name",
            target,
        ],
        None,
    )?;
    let text = String::from_utf8(out.stdout)?;
    let (kinds, diffs) = printed_parity(bed, source, &text).await?;
    if kinds.len() != 10 {
        bail!(
            "linkerd printed {} objects, expected 10: {kinds:?}",
            kinds.len()
        );
    }
    Ok(diffs)
}

#[tokio::test]
async fn two_clusters_up_check_parity_idempotence_unlink_down() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    clean(&tool, &clusters).await;
    let before1 = object_set(&bed, "cluster1").await.unwrap();
    let before2 = object_set(&bed, "cluster2").await.unwrap();

    let out = tool.ok("up", &clusters, &["--only", MESH_STAGES]);
    assert!(out.contains("up done on cluster1, cluster2"), "{out}");

    // Releases at the pinned versions on both clusters, as helm itself lists them.
    let mut revisions = BTreeMap::new();
    for c in clusters {
        let rel = helm_releases(&bed, c).unwrap();
        for (name, chart) in [
            ("linkerd-crds", "linkerd-crds-1.8.0"),
            ("linkerd-control-plane", "linkerd-control-plane-1.16.11"),
            ("linkerd-multicluster", "linkerd-multicluster-30.11.11"),
            ("linkerd-smi", "linkerd-smi-1.0.4"),
        ] {
            assert_eq!(
                rel.get(name).map(|r| r.0.as_str()),
                Some(chart),
                "{c}: {rel:?}"
            );
        }
        revisions.insert(c, rel);
    }

    // One trust anchor: the local ca.crt, in both clusters.
    let anchor = std::fs::read_to_string(tool.certs_dir().join("ca.crt")).unwrap();
    for c in clusters {
        let cm = get(
            &bed,
            c,
            "v1",
            "ConfigMap",
            Some("linkerd"),
            "linkerd-identity-trust-roots",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            cm["data"]["ca-bundle.crt"].as_str().unwrap().trim(),
            anchor.trim(),
            "{c}"
        );
    }

    // Links both ways, with the other cluster's gateway address from the MetalLB stand-in.
    for (s, t) in [("cluster1", "cluster2"), ("cluster2", "cluster1")] {
        let link = get(
            &bed,
            s,
            "multicluster.linkerd.io/v1alpha1",
            "Link",
            Some("linkerd-multicluster"),
            t,
        )
        .await
        .unwrap()
        .unwrap();
        let gw = get(
            &bed,
            t,
            "v1",
            "Service",
            Some("linkerd-multicluster"),
            "linkerd-gateway",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            link["spec"]["gatewayAddress"], gw["status"]["loadBalancer"]["ingress"][0]["ip"],
            "{s} → {t}"
        );
    }

    // check: every check that needs no data plane passes; the others say why not.
    let out = tool.run("check", &clusters, &["--only", MESH_STAGES, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The gateway probe row reads the real service mirror's gauge: alive, or not probed yet right after `up`.
    let probe = "probe services able to communicate with all gateway mirrors";
    let data_plane = [
        "multicluster extension proxies are healthy",
        "multicluster extension proxies are up-to-date",
        "multicluster extension proxies and cli versions match",
        "gateway addresses are reachable from the peer clusters",
    ];
    for c in doc["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if name == probe {
            assert!(c["status"] == "ok" || c["status"] == "warn", "{c}");
        } else if data_plane.contains(&name) {
            assert_ne!(
                c["status"], "ok",
                "{name} cannot pass without a data plane: {c}"
            );
            assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
        } else {
            assert_eq!(c["status"], "ok", "{c}");
        }
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings and skips do not fail check"
    );

    // A second up changes nothing: no object rewritten, no new helm revision.
    let link_rv = get(
        &bed,
        "cluster1",
        "multicluster.linkerd.io/v1alpha1",
        "Link",
        Some("linkerd-multicluster"),
        "cluster2",
    )
    .await
    .unwrap()
    .unwrap()["metadata"]["resourceVersion"]
        .clone();
    let out = tool.ok("up", &clusters, &["--only", MESH_STAGES]);
    assert!(
        out.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{out}"
    );
    for c in clusters {
        assert_eq!(
            helm_releases(&bed, c).unwrap(),
            revisions[c],
            "{c}: helm revisions changed"
        );
    }
    let again = get(
        &bed,
        "cluster1",
        "multicluster.linkerd.io/v1alpha1",
        "Link",
        Some("linkerd-multicluster"),
        "cluster2",
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again["metadata"]["resourceVersion"], link_rv);

    // `up` with another certs dir (so another, new trust anchor) on the running mesh is
    // refused before any change: one line naming the clusters, nothing written, no new revision.
    let stranger = Tool::new(bed.clone());
    let before: Vec<_> = {
        let mut v = Vec::new();
        for c in clusters {
            v.push(object_set(&bed, c).await.unwrap());
        }
        v
    };
    let out = stranger.run("up", &clusters, &["--only", MESH_STAGES]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "refusing to replace the trust anchor of a running mesh (cluster1 trusts sha256:"
        ) && err.contains("cluster2 trusts sha256:"),
        "{err}"
    );
    assert!(
        !stranger.certs_dir().join("ca.key").exists(),
        "a refused up wrote certificates"
    );
    for (i, c) in clusters.iter().enumerate() {
        assert_eq!(
            object_set(&bed, c).await.unwrap(),
            before[i],
            "{c}: a refused up changed objects"
        );
        assert_eq!(
            helm_releases(&bed, c).unwrap(),
            revisions[c],
            "{c}: a refused up made a helm revision"
        );
    }

    // Parity with the real linkerd CLI, both directions.
    for (s, t) in [("cluster1", "cluster2"), ("cluster2", "cluster1")] {
        let diffs = link_parity(&bed, s, t).await.unwrap();
        assert!(
            diffs.is_empty(),
            "{s} → {t} differs from `linkerd multicluster link`:\n{}",
            diffs.join("\n")
        );
    }

    // status lists both links.
    let out = tool.ok(
        "status",
        &clusters,
        &["--only", "multicluster", "-o", "json"],
    );
    assert!(
        out.contains("\"source\": \"cluster1\"") && out.contains("\"source\": \"cluster2\""),
        "{out}"
    );

    // unlink one direction: cluster1 no longer links to cluster2; cluster2 → cluster1 stays.
    tool.ok("unlink", &["cluster1"], &["--from", "cluster2"]);
    for (kind, ns, name) in [
        ("Link", Some("linkerd-multicluster"), "cluster2"),
        (
            "Deployment",
            Some("linkerd-multicluster"),
            "linkerd-service-mirror-cluster2",
        ),
        ("Secret", Some("linkerd"), "cluster-credentials-cluster2"),
        (
            "ClusterRole",
            None,
            "linkerd-service-mirror-access-local-resources-cluster2",
        ),
    ] {
        let api = match kind {
            "Link" => "multicluster.linkerd.io/v1alpha1",
            "Deployment" => "apps/v1",
            "ClusterRole" => "rbac.authorization.k8s.io/v1",
            _ => "v1",
        };
        assert!(
            get(&bed, "cluster1", api, kind, ns, name)
                .await
                .unwrap()
                .is_none(),
            "{kind} {name} left on cluster1"
        );
    }
    assert!(
        get(
            &bed,
            "cluster2",
            "multicluster.linkerd.io/v1alpha1",
            "Link",
            Some("linkerd-multicluster"),
            "cluster1"
        )
        .await
        .unwrap()
        .is_some()
    );
    let out = tool.run("check", &clusters, &["--only", "multicluster"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no Link cluster2 on cluster1"));

    // down: the clusters hold exactly the objects they held before up.
    tool.ok("down", &clusters, &["--only", MESH_STAGES]);
    assert_eq!(
        object_set(&bed, "cluster1").await.unwrap(),
        before1,
        "cluster1 after down"
    );
    assert_eq!(
        object_set(&bed, "cluster2").await.unwrap(),
        before2,
        "cluster2 after down"
    );
}

#[tokio::test]
async fn three_clusters_form_a_full_mesh() {
    let bed = testbed_or_skip!();
    if !bed.contexts().iter().any(|c| c == "cluster3") {
        panic!("the three-cluster test needs a bed with cluster3 (tests/run.sh starts 3 clusters)");
    }
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2", "cluster3"];
    let stages = "cert,control-plane,multicluster,netfix";
    let _ = tool.run("down", &clusters, &["--only", stages]);
    tool.ok("up", &clusters, &["--only", stages]);
    let mut links = 0;
    for s in clusters {
        for t in clusters {
            if s != t {
                let l = get(
                    &bed,
                    s,
                    "multicluster.linkerd.io/v1alpha1",
                    "Link",
                    Some("linkerd-multicluster"),
                    t,
                )
                .await
                .unwrap();
                assert!(l.is_some(), "no link {s} → {t}");
                links += 1;
            }
        }
    }
    assert_eq!(links, 6);
    let out = tool.run(
        "check",
        &clusters,
        &["--only", "multicluster", "-o", "json"],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mesh = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "every cluster is linked to every other cluster")
        .unwrap()
        .clone();
    assert_eq!(mesh["status"], "ok");
    assert_eq!(mesh["items"].as_array().unwrap().len(), 6);
    tool.ok("down", &clusters, &["--only", stages]);
}

#[tokio::test]
async fn air_gapped_charts_with_a_private_registry() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let stages = "cert,control-plane,multicluster,netfix,smi";
    clean(&tool, &clusters).await;
    let reg = "harbor.k-paas.example/linkerd";
    tool.ok("up", &clusters, &["--only", stages, "--registry", reg]);
    let image = |d: &Value, i: usize| {
        d["spec"]["template"]["spec"]["containers"][i]["image"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    for c in clusters {
        let identity = get(
            &bed,
            c,
            "apps/v1",
            "Deployment",
            Some("linkerd"),
            "linkerd-identity",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            image(&identity, 0),
            format!("{reg}/controller:stable-2.14.10"),
            "{c}"
        );
        let dst = get(
            &bed,
            c,
            "apps/v1",
            "Deployment",
            Some("linkerd"),
            "linkerd-destination",
        )
        .await
        .unwrap()
        .unwrap();
        let images: Vec<String> = (0..4)
            .map(|i| image(&dst, i))
            .filter(|s| !s.is_empty())
            .collect();
        assert!(images.iter().all(|i| i.starts_with(reg)), "{c}: {images:?}");
        assert!(
            images
                .iter()
                .any(|i| i == &format!("{reg}/policy-controller:stable-2.14.10")),
            "{images:?}"
        );
        let gw = get(
            &bed,
            c,
            "apps/v1",
            "Deployment",
            Some("linkerd-multicluster"),
            "linkerd-gateway",
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(image(&gw, 0), format!("{reg}/pause:3.2"), "{c}");
        let other = if c == "cluster1" {
            "cluster2"
        } else {
            "cluster1"
        };
        let sm = get(
            &bed,
            c,
            "apps/v1",
            "Deployment",
            Some("linkerd-multicluster"),
            &format!("linkerd-service-mirror-{other}"),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            image(&sm, 0),
            format!("{reg}/controller:stable-2.14.10"),
            "{c}"
        );
        let smi = get(
            &bed,
            c,
            "apps/v1",
            "Deployment",
            Some("linkerd-smi"),
            "smi-adaptor",
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            image(&smi, 0).starts_with(&format!("{reg}/smi-adaptor:")),
            "{c}: {}",
            image(&smi, 0)
        );
        // The proxy image the injector will use comes from the same registry.
        let cfg = get(
            &bed,
            c,
            "v1",
            "ConfigMap",
            Some("linkerd"),
            "linkerd-config",
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            cfg["data"]["values"]
                .as_str()
                .unwrap()
                .contains(&format!("{reg}/proxy")),
            "{c}"
        );
    }
    tool.ok("down", &clusters, &["--only", stages]);
}

#[test]
fn dry_run_against_the_bed_changes_nothing_and_redacts_keys() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = rt.block_on(object_set(&bed, "cluster1")).unwrap();
    let out = tool.ok("up", &clusters, &["--only", MESH_STAGES, "--dry-run"]);
    assert!(
        out.contains("helm upgrade --install linkerd-control-plane"),
        "{out}"
    );
    assert!(out.contains("keyPEM: <redacted>"), "{out}");
    assert!(
        !out.contains("BEGIN EC PRIVATE KEY"),
        "a private key was printed"
    );
    assert!(
        out.contains("is planned once"),
        "links cannot be planned before install: {out}"
    );
    assert!(!tool.certs_dir().exists(), "dry-run wrote the certificates");
    assert_eq!(rt.block_on(object_set(&bed, "cluster1")).unwrap(), before);
}

/// Deletes what `linkerd install --crds` applied when dropped, so a failing test leaves no CRDs.
struct CliCrds<'a> {
    bed: &'a TestBed,
    context: &'a str,
    manifest: Vec<u8>,
}

impl Drop for CliCrds<'_> {
    fn drop(&mut self) {
        let _ = self.bed.run(
            "kubectl",
            &[
                "--context",
                self.context,
                "delete",
                "--ignore-not-found",
                "--wait",
                "-f",
                "-",
            ],
            Some(&self.manifest),
        );
    }
}

#[tokio::test]
async fn crds_applied_by_the_linkerd_cli_are_kept() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let stages = "cert,control-plane";
    clean(&tool, &clusters).await;
    let manifest = bed
        .run(
            "linkerd",
            &["install", "--crds", "--context", "cluster2"],
            None,
        )
        .unwrap()
        .stdout;
    let _cleanup = CliCrds {
        bed: &bed,
        context: "cluster2",
        manifest: manifest.clone(),
    };
    bed.run(
        "kubectl",
        &["--context", "cluster2", "apply", "-f", "-"],
        Some(&manifest),
    )
    .unwrap();
    bed.run(
        "kubectl",
        &[
            "--context",
            "cluster2",
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "-",
        ],
        Some(&manifest),
    )
    .unwrap();
    let before = object_set(&bed, "cluster2").await.unwrap();

    let out = tool.ok("up", &clusters, &["--only", stages]);
    assert!(
        out.contains("cluster2: Linkerd's CRDs were installed without helm"),
        "{out}"
    );
    let rel = helm_releases(&bed, "cluster2").unwrap();
    assert!(!rel.contains_key("linkerd-crds"), "{rel:?}");
    assert!(rel.contains_key("linkerd-control-plane"), "{rel:?}");
    assert!(
        helm_releases(&bed, "cluster1")
            .unwrap()
            .contains_key("linkerd-crds")
    );
    let out = tool.run("check", &clusters, &["--only", "control-plane"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    tool.ok("down", &clusters, &["--only", stages]);
    assert_eq!(
        object_set(&bed, "cluster2").await.unwrap(),
        before,
        "down removed what it did not install"
    );
}
