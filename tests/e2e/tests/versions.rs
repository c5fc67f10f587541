//! The Linkerd releases after 2.14 on the test bed's real API servers, one test per release
//! (2.18 = edge-25.4.4, 2.20 = edge-26.6.3), each with that release's charts and CLI built from
//! its source snapshot (tests/testbed/build.sh, step `edge`), and that release's own controller
//! binary run by the pod runner for its controller pods:
//! up with `--linkerd-version 2.18|2.20` → the release's chart versions, the Gateway API CRDs,
//! no linkerd-smi (HTTPRoute splits there), links both ways as v1alpha3 Links whose service
//! mirrors are the linkerd-multicluster release's `controllers`; the links equal what the real
//! `linkerd multicluster link-gen` of that release prints, object for object; `check` has that
//! release's rows in its order; a second `up` changes nothing; `down` restores every
//! cluster's object set. And upgrades in place: 2.14.10 (the guide's, with SMI and per-link
//! service mirrors) → 2.15 → 2.16 → 2.17 → 2.18 (the intermediate releases from their charts
//! only: no CLI or controller built for them), and 2.18 → 2.19 → 2.20.

mod common;

use anyhow::{Result, bail};
use common::*;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use serde_json::Value;
use std::collections::BTreeSet;

const STAGES: &str = "cert,control-plane,multicluster,netfix,smi,sample";

/// The real `linkerd-<tag> multicluster link-gen` for `target`, compared with what the tool
/// made on `source`: the differences (empty at parity).
async fn link_gen_parity(
    bed: &TestBed,
    tag: &str,
    source: &str,
    target: &str,
) -> Result<Vec<String>> {
    let out = bed.run(
        &format!("linkerd-{tag}"),
        &[
            "multicluster",
            "link-gen",
            &format!("--context={target}"),
            "--cluster-name",
            target,
        ],
        None,
    )?;
    if !out.status.success() {
        bail!(
            "linkerd-{tag} multicluster link-gen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let (printed, diffs) = printed_parity(bed, source, &text).await?;
    let kinds: Vec<String> = printed
        .iter()
        .map(|(kind, ns, name)| format!("{kind}/{}/{name}", ns.as_deref().unwrap_or("")))
        .collect();
    let want = [
        format!("Secret/linkerd-multicluster/cluster-credentials-{target}"),
        format!("Secret/linkerd/cluster-credentials-{target}"),
        format!("Link/linkerd-multicluster/{target}"),
    ];
    if kinds != want {
        bail!("link-gen printed {kinds:?}, expected {want:?}");
    }
    Ok(diffs)
}

/// One release's whole cycle on two clusters; with `from`, the clusters first run that older
/// release (and the sample) and `up` upgrades them in place.
async fn release_cycle(minor: &str, from: Option<&str>) {
    let bed = testbed_or_skip!();
    let rel = kpaas_mesh_kit::linkerd::release(minor).unwrap();
    let tag = rel.version.as_str();
    // --chart-dir is the bed's whole chart dir: 2.14.10's charts at its top, each edge
    // release's in `<tag>/`; the host picks the chart of the wanted version
    let mut tool = Tool::new(bed.clone());
    assert!(
        tool.charts.join(tag).join("linkerd-multicluster").is_dir(),
        "no charts for {tag} in {}: run tests/testbed/build.sh edge",
        tool.charts.display()
    );
    let clusters = ["cluster1", "cluster2"];
    let version = ["--linkerd-version", minor];
    let _ = tool.run(
        "down",
        &clusters,
        &["--only", STAGES, "--linkerd-version", minor],
    );
    let before: Vec<BTreeSet<String>> = {
        let mut v = vec![];
        for c in clusters {
            v.push(object_set(&bed, c).await.unwrap());
        }
        v
    };

    if let Some(from) = from {
        let mut first = Tool::new(bed.clone());
        first.certs = tempfile::tempdir().unwrap();
        std::mem::swap(&mut first.certs, &mut tool.certs);
        let out = first.ok(
            "up",
            &clusters,
            &["--only", STAGES, "--linkerd-version", from],
        );
        assert!(out.contains("up done on cluster1, cluster2"), "{out}");
        std::mem::swap(&mut first.certs, &mut tool.certs);
    }
    let out = tool.ok(
        "up",
        &clusters,
        &[&["--only", STAGES][..], &version].concat(),
    );
    assert!(out.contains("up done on cluster1, cluster2"), "{out}");
    assert!(out.contains("smi stage skipped"), "{out}");
    if let Some(from) = from {
        // every minor in between first, each a whole `up` of its release
        let path: Vec<&str> = kpaas_mesh_kit::linkerd::RELEASES
            .iter()
            .filter(|r| {
                r.minor_number()
                    > kpaas_mesh_kit::linkerd::release(from)
                        .unwrap()
                        .minor_number()
                    && r.minor_number() < rel.minor_number()
            })
            .map(|r| r.version.as_str())
            .collect();
        assert!(!path.is_empty());
        for step in path {
            assert!(
                out.contains(&format!("upgrade to {step} done on cluster1, cluster2")),
                "{out}"
            );
        }
    }

    // from 2.14 (SMI): the linkerd-smi it installed stays, named; no TrafficSplit is left
    let from_smi = from
        .map(|f| kpaas_mesh_kit::linkerd::release(f).unwrap().smi.is_some())
        .unwrap_or(false);
    if from_smi {
        assert!(
            out.contains("linkerd-smi stays installed on cluster1, cluster2"),
            "{out}"
        );
        assert!(
            out.contains(
                "cluster2: the SMI TrafficSplit sample/helloworld is replaced by the HTTPRoute"
            ),
            "{out}"
        );
        assert!(
            get(
                &bed,
                "cluster2",
                "split.smi-spec.io/v1alpha1",
                "TrafficSplit",
                Some("sample"),
                "helloworld",
            )
            .await
            .unwrap()
            .is_none()
        );
    }

    // the release's charts, no linkerd-smi (unless left from 2.14)
    let mut revisions = vec![];
    for c in clusters {
        let rels = helm_releases(&bed, c).unwrap();
        for (name, version) in [
            ("linkerd-crds", &rel.charts.crds),
            ("linkerd-control-plane", &rel.charts.control_plane),
            ("linkerd-multicluster", &rel.charts.multicluster),
        ] {
            assert_eq!(
                rels.get(name).map(|r| r.0.clone()),
                Some(format!("{name}-{version}")),
                "{c}: {rels:?}"
            );
        }
        assert_eq!(rels.contains_key("linkerd-smi"), from_smi, "{c}: {rels:?}");
        revisions.push(rels);
        // the Gateway API CRDs Linkerd needs (installed by linkerd-crds: nobody else had)
        let crd = get(
            &bed,
            c,
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "httproutes.gateway.networking.k8s.io",
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{c}: no Gateway API CRDs"));
        assert_eq!(
            crd["metadata"]["annotations"]["meta.helm.sh/release-name"], "linkerd-crds",
            "{c}"
        );
    }

    // v1alpha3 Links both ways; each link's service mirror is the chart's controller, none
    // of 2.14's per-link Deployments
    for (s, t) in [("cluster1", "cluster2"), ("cluster2", "cluster1")] {
        let link = get(
            &bed,
            s,
            &rel.link_api,
            "Link",
            Some("linkerd-multicluster"),
            t,
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no Link {t} on {s}"));
        assert_eq!(
            link["metadata"]["annotations"]["linkerd.io/created-by"],
            format!("linkerd/cli {tag}")
        );
        let ctrl = get(
            &bed,
            s,
            "apps/v1",
            "Deployment",
            Some("linkerd-multicluster"),
            &format!("controller-{t}"),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{s}: no controller-{t}"));
        assert_eq!(
            ctrl["metadata"]["annotations"]["meta.helm.sh/release-name"],
            "linkerd-multicluster"
        );
        let image = ctrl["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap();
        assert!(image.ends_with(&format!("/controller:{tag}")), "{image}");
        // none of the per-link service mirror objects of a `link` release (2.14–2.17) is
        // left: what 2.18's `unlink --only-controller` lists
        for (api, kind, ns, name) in [
            (
                "apps/v1",
                "Deployment",
                Some("linkerd-multicluster"),
                format!("linkerd-service-mirror-{t}"),
            ),
            (
                "v1",
                "ServiceAccount",
                Some("linkerd-multicluster"),
                format!("linkerd-service-mirror-{t}"),
            ),
            (
                "v1",
                "Service",
                Some("linkerd-multicluster"),
                format!("probe-gateway-{t}"),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "Role",
                Some("linkerd-multicluster"),
                format!("linkerd-service-mirror-read-remote-creds-{t}"),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                Some("linkerd-multicluster"),
                format!("linkerd-service-mirror-read-remote-creds-{t}"),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                format!("linkerd-service-mirror-access-local-resources-{t}"),
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                format!("linkerd-service-mirror-access-local-resources-{t}"),
            ),
        ] {
            assert!(
                get(&bed, s, api, kind, ns, &name).await.unwrap().is_none(),
                "{s}: {kind} {name} is left"
            );
        }
        // parity with the real link-gen of this release
        let diffs = link_gen_parity(&bed, tag, s, t).await.unwrap();
        assert!(diffs.is_empty(), "{s} → {t}: {diffs:#?}");
    }

    // the sample's split is an HTTPRoute on the client (cluster2), and Linkerd's own service
    // mirror of this release (run by the pod runner) mirrors cluster1's exported helloworld
    let route = get(
        &bed,
        "cluster2",
        "policy.linkerd.io/v1beta3",
        "HTTPRoute",
        Some("sample"),
        "helloworld",
    )
    .await
    .unwrap()
    .expect("HTTPRoute sample/helloworld on cluster2");
    let backends: Vec<(String, u64)> = route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        backends,
        [
            ("helloworld-cluster1".to_string(), 50),
            ("helloworld".to_string(), 50)
        ]
    );
    let deadline = std::time::Instant::now() + RUNNER_TIMEOUT;
    let mirror = loop {
        let m = get(
            &bed,
            "cluster2",
            "v1",
            "Service",
            Some("sample"),
            "helloworld-cluster1",
        )
        .await
        .unwrap();
        match m {
            Some(m) => break m,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
            None => panic!("{tag}'s service mirror made no helloworld-cluster1 on cluster2"),
        }
    };
    assert_eq!(
        mirror["metadata"]["labels"]["mirror.linkerd.io/cluster-name"], "cluster1",
        "{mirror}"
    );
    // the link's Lease is held by this release's controller (after an upgrade from a `link`
    // release: taken over from the per-link service mirror that `up` removed)
    let deadline = std::time::Instant::now() + RUNNER_TIMEOUT;
    loop {
        let lease = get(
            &bed,
            "cluster2",
            "coordination.k8s.io/v1",
            "Lease",
            Some("linkerd-multicluster"),
            "service-mirror-write-cluster1",
        )
        .await
        .unwrap();
        let holder = lease
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str())
            .unwrap_or("")
            .to_string();
        if holder.starts_with("controller-cluster1-") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cluster2's Lease service-mirror-write-cluster1 is held by '{holder}', not {tag}'s controller-cluster1"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // check: this release's rows, in its order (plus kpaas-mesh's full-mesh row)
    let out = tool.run(
        "check",
        &clusters,
        &[&["--only", STAGES, "-o", "json"][..], &version].concat(),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check -o json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows: Vec<(String, String, String)> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["group"] == "linkerd-multicluster")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut want: Vec<String> = rel.multicluster_check.clone();
    want.insert(2, "every cluster is linked to every other cluster".into());
    assert_eq!(
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        want,
        "{rows:#?}"
    );
    for (name, status, detail) in &rows {
        if name.starts_with("multicluster extension proxies") {
            assert_eq!(status, "skipped", "{name}: {detail}");
        } else if name == "probe services able to communicate with all gateway mirrors" {
            assert!(
                status == "ok" || status == "warn",
                "{name}: {status} {detail}"
            );
        } else {
            assert_eq!(status, "ok", "{name}: {detail}");
        }
    }
    assert_eq!(out.status.code(), Some(0), "{doc}");

    // a second up changes nothing
    let out = tool.ok(
        "up",
        &clusters,
        &[&["--only", STAGES][..], &version].concat(),
    );
    assert!(
        out.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{out}"
    );
    for (i, c) in clusters.iter().enumerate() {
        assert_eq!(helm_releases(&bed, c).unwrap(), revisions[i], "{c}");
    }

    // the release before this one is a downgrade: refused with one line, nothing changed
    let older = kpaas_mesh_kit::linkerd::RELEASES
        .iter()
        .rev()
        .find(|r| r.minor_number() < rel.minor_number())
        .unwrap();
    let downgrade = Tool::new(bed.clone());
    std::fs::create_dir_all(downgrade.certs_dir()).unwrap();
    for f in ["ca.crt", "ca.key", "issuer.crt", "issuer.key"] {
        let to = downgrade.certs_dir().join(f);
        std::fs::copy(tool.certs_dir().join(f), &to).unwrap();
    }
    let out = downgrade.run(
        "up",
        &clusters,
        &["--only", STAGES, "--linkerd-version", &older.minor],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(&format!(
            "cluster1 runs Linkerd {tag} ({minor}); refusing to downgrade it to {} ({})",
            older.version, older.minor
        )),
        "{err}"
    );
    for (i, c) in clusters.iter().enumerate() {
        assert_eq!(helm_releases(&bed, c).unwrap(), revisions[i], "{c}");
    }

    // down restores every cluster's object set (the Gateway API CRDs kpaas-mesh installed
    // included: helm keeps them, down removes them when nothing uses them)
    tool.ok(
        "down",
        &clusters,
        &[&["--only", STAGES][..], &version].concat(),
    );
    for (i, c) in clusters.iter().enumerate() {
        let after = object_set(&bed, c).await.unwrap();
        let added: Vec<&String> = after.difference(&before[i]).collect();
        let removed: Vec<&String> = before[i].difference(&after).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "{c}: left {added:#?}, removed {removed:#?}"
        );
    }
}

#[tokio::test]
async fn linkerd_2_18_up_check_link_gen_parity_idempotence_down() {
    release_cycle("2.18", None).await;
}

#[tokio::test]
async fn linkerd_2_20_up_check_link_gen_parity_idempotence_down() {
    release_cycle("2.20", None).await;
}

/// 2.14.10 (the guide's: SMI, per-link service mirrors) with the sample, upgraded in place to
/// 2.18 through 2.15, 2.16 and 2.17: each step a whole `up` of that release, the links
/// re-made as each release's `link` makes them, at 2.18 the per-link service mirrors replaced
/// by the release's `controllers` (2.18's own controller takes each link's Lease over), the
/// TrafficSplit by an HTTPRoute; afterwards everything holds as for a fresh 2.18 but the
/// linkerd-smi release 2.14 installed, which stays (and `down` removes).
#[tokio::test]
async fn linkerd_2_14_upgrades_in_place_to_2_18_through_2_15_2_16_2_17() {
    release_cycle("2.18", Some("2.14")).await;
}

/// 2.18 with the sample, upgraded in place to 2.20 through 2.19; afterwards everything holds
/// as for a fresh 2.20: charts, links as 2.20's link-gen prints them, check, idempotence, down.
#[tokio::test]
async fn linkerd_2_18_upgrades_in_place_to_2_20_through_2_19() {
    release_cycle("2.20", Some("2.18")).await;
}
