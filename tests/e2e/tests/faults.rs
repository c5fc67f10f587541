//! End-to-end tests of faults (issue 14), on the bed's real API servers.
//!
//! Two changing commands at once on the same clusters: each holds a Lease `kube-system/kpaas-mesh` per cluster
//! while it runs. A Lease held (and renewed) by someone else stops `up` before anything changes, with one line
//! naming the holder, and what it had taken on other clusters is given back; a Lease nobody renewed for its
//! duration is taken over; two `up`s started together: one runs, the other refuses; a rerun changes nothing.
//!
//! SIGINT / SIGTERM during `up`: see [`an_interrupted_up_stops_cleanly_and_a_rerun_converges`].
//!
//! A release the real helm left pending when it was killed: see
//! [`a_release_a_killed_helm_left_pending_is_recovered_by_the_next_up`].
//!
//! One cluster's API server killed in the middle of `up`: see
//! [`an_api_server_lost_mid_up_stops_it_per_stage_and_a_rerun_converges`].

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kpaas_mesh_e2e::testbed_or_skip;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

const STAGES: &str = "cert,control-plane";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];

fn lease(holder: &str, renewed_secs_ago: i64) -> Lease {
    let t = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kpaas-mesh", "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
            "acquireTime": t.to_string(), "renewTime": t.to_string()}
    }))
    .unwrap()
}

async fn lease_of(bed: &kpaas_mesh_e2e::TestBed, cluster: &str) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(bed.client(cluster).await.unwrap(), "kube-system");
    api.get_opt("kpaas-mesh").await.unwrap()
}

#[tokio::test]
async fn one_changing_command_at_a_time_per_cluster() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    for c in CLUSTERS {
        // a Lease left by an interrupted run of this test
        let api: Api<Lease> = Api::namespaced(bed.client(c).await.unwrap(), "kube-system");
        let _ = api.delete("kpaas-mesh", &Default::default()).await;
    }
    let _ = tool.run("down", &CLUSTERS, &["--only", STAGES]);
    let before1 = object_set(&bed, "cluster1").await.unwrap();
    let before2 = object_set(&bed, "cluster2").await.unwrap();
    let leases: Api<Lease> = Api::namespaced(bed.client("cluster2").await.unwrap(), "kube-system");

    // 1. Held by someone else on cluster2: refused with one line, nothing changed anywhere, cluster1 given back.
    let holder = "ops@bastion pid 4242 (kubectl kpaas-mesh up)";
    leases
        .create(&PostParams::default(), &lease(holder, 5))
        .await
        .unwrap();
    let out = tool.run("up", &CLUSTERS, &["--only", STAGES]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with(&format!(
            "error: cluster cluster2 is being changed by {holder} since "
        )),
        "{err}"
    );
    assert!(
        lease_of(&bed, "cluster1").await.is_none(),
        "cluster1's Lease was not given back"
    );
    let held = lease_of(&bed, "cluster2").await.unwrap();
    assert_eq!(
        held.spec.unwrap().holder_identity.as_deref(),
        Some(holder),
        "someone else's Lease was touched"
    );
    assert_eq!(object_set(&bed, "cluster1").await.unwrap(), before1);
    // (cluster2's only new object is the Lease this test made)
    let mut after2: std::collections::BTreeSet<String> =
        object_set(&bed, "cluster2").await.unwrap();
    assert!(after2.remove("coordination.k8s.io/Lease kube-system/kpaas-mesh"));
    assert_eq!(after2, before2);
    assert!(helm_releases(&bed, "cluster1").unwrap().is_empty());

    // 2. Not renewed for its duration (its command died): taken over, and given back at the end.
    leases
        .delete("kpaas-mesh", &Default::default())
        .await
        .unwrap();
    leases
        .create(&PostParams::default(), &lease(holder, 120))
        .await
        .unwrap();
    let out = tool.run("up", &CLUSTERS, &["--only", STAGES]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "cluster cluster2: took over the Lease kube-system/kpaas-mesh of {holder}"
        )),
        "{err}"
    );
    for c in CLUSTERS {
        assert!(
            lease_of(&bed, c).await.is_none(),
            "{c}: the Lease outlived the command"
        );
    }

    // 3. Two at once: one runs, the other refuses naming it; a rerun changes nothing.
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
    let spawn = || tool.spawn_words(&["up"], &CLUSTERS, &["--only", STAGES]);
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let outcomes = [&a, &b].map(|o| {
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    });
    let ran = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(
        ran, 1,
        "exactly one of two concurrent ups runs: {outcomes:#?}"
    );
    let (_, refused) = outcomes.iter().find(|(ok, _)| !ok).unwrap();
    assert!(
        refused.contains("is being changed by") && refused.contains("(kubectl kpaas-mesh up)"),
        "{refused}"
    );
    let out = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    assert!(out.contains("0 change(s)"), "{out}");
    for c in CLUSTERS {
        assert!(lease_of(&bed, c).await.is_none(), "{c}");
    }
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
}

/// SIGINT or SIGTERM in the middle of `up`: the action under way finishes (no helm release is left pending), no
/// further one starts, the command names what it did and exits 130 / 143, its Lease is released, and a rerun
/// converges with at most one new helm revision per release; one more `up` changes nothing.
#[tokio::test]
async fn an_interrupted_up_stops_cleanly_and_a_rerun_converges() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let _ = tool.run("down", &CLUSTERS, &["--only", STAGES]);
        let child = tool.spawn_words(&["up"], &CLUSTERS, &["--only", STAGES]);
        // once the first release is in (the run is between helm installs and waits), the signal
        let client = bed.client("cluster1").await.unwrap();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "linkerd");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let crds = secrets
                .get_opt("sh.helm.release.v1.linkerd-crds.v1")
                .await
                .ok()
                .flatten();
            if crds.is_some() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "up never installed linkerd-crds"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {err}");
        assert!(
            err.contains(&format!("SIG{signal}: finishing the action under way")),
            "{err}"
        );
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            errors[0].starts_with("error: stage control-plane: ")
                && errors[0].contains(&format!("interrupted by SIG{signal} "))
                && errors[0].contains("action(s) done"),
            "{err}"
        );
        for cl in CLUSTERS {
            assert!(
                lease_of(&bed, cl).await.is_none(),
                "{cl}: the interrupted run left its Lease"
            );
            let pending = pending_releases(&bed, cl);
            assert!(
                pending.is_empty(),
                "{cl}: releases left pending: {pending:?}"
            );
        }
        let before: Vec<_> = CLUSTERS
            .iter()
            .map(|c| helm_releases(&bed, c).unwrap())
            .collect();
        tool.ok("up", &CLUSTERS, &["--only", STAGES]);
        assert_at_most_one_revision_more(&bed, &before);
        let out = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
        assert!(out.contains("0 change(s)"), "{out}");
    }
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
}

/// helm's own list of a cluster's releases left pending.
fn pending_releases(bed: &kpaas_mesh_e2e::TestBed, cluster: &str) -> Vec<serde_json::Value> {
    let out = bed
        .run(
            "helm",
            &[
                "list",
                "-A",
                "--pending",
                "-o",
                "json",
                "--kube-context",
                cluster,
            ],
            None,
        )
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every release of every cluster is at most one revision past `before` (each cluster's releases, in
/// [`CLUSTERS`] order, as [`helm_releases`] gave them).
fn assert_at_most_one_revision_more(
    bed: &kpaas_mesh_e2e::TestBed,
    before: &[std::collections::BTreeMap<String, (String, u64)>],
) {
    for (cl, before) in CLUSTERS.iter().zip(before) {
        for (name, (_, rev)) in helm_releases(bed, cl).unwrap() {
            let was = before.get(&name).map(|(_, r)| *r).unwrap_or(0);
            assert!(
                rev <= was + 1,
                "{cl}: {name} went from revision {was} to {rev}"
            );
        }
    }
}

/// helm's own word on a release: (status, revision).
fn helm_status(bed: &kpaas_mesh_e2e::TestBed, release: &str) -> Option<(String, u64)> {
    let out = bed
        .command("helm")
        .args([
            "status",
            release,
            "-n",
            "linkerd",
            "--kube-context",
            "cluster1",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some((
        v["info"]["status"].as_str().unwrap_or_default().to_string(),
        v["version"].as_u64().unwrap_or(0),
    ))
}

/// Starts the real helm with `args` (an operation that waits for pods that can never be scheduled), waits until
/// helm has recorded the release as `pending`, and kills it (SIGKILL), as a lost terminal or an OOM kill would.
fn kill_helm_when(bed: &kpaas_mesh_e2e::TestBed, args: &[&str], pending: &str) {
    let mut helm = bed
        .command("helm")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while helm_status(bed, "linkerd-control-plane")
        .map(|s| s.0)
        .as_deref()
        != Some(pending)
    {
        assert!(
            std::time::Instant::now() < until,
            "helm never recorded {pending}"
        );
        assert!(
            helm.try_wait().unwrap().is_none(),
            "helm ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    helm.kill().unwrap();
    helm.wait().unwrap();
}

#[tokio::test]
async fn a_release_a_killed_helm_left_pending_is_recovered_by_the_next_up() {
    let bed = testbed_or_skip!();
    let mut tool = Tool::new(bed.clone());
    let _ = tool.run("down", &CLUSTERS, &["--only", STAGES]);
    tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    let chart = tool.charts.join("linkerd-control-plane");
    let chart = chart.to_str().unwrap();
    let nowhere = "nodeSelector.kpaas-mesh-e2e=nowhere";
    let base = [
        "-n",
        "linkerd",
        "--kube-context",
        "cluster1",
        "--wait",
        "--timeout",
        "5m",
    ];

    // 1. An upgrade killed: pending-upgrade. Within the grace `up` leaves it alone, one line, nothing changed.
    let upgrade = [
        &[
            "upgrade",
            "linkerd-control-plane",
            chart,
            "--reuse-values",
            "--set",
            nowhere,
        ][..],
        &base,
    ]
    .concat();
    kill_helm_when(&bed, &upgrade, "pending-upgrade");
    assert_eq!(
        helm_status(&bed, "linkerd-control-plane"),
        Some(("pending-upgrade".into(), 2))
    );
    let out = tool.run("up", &CLUSTERS, &["--only", STAGES]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("error: stage control-plane: cluster cluster1: helm release linkerd/linkerd-control-plane is pending-upgrade (revision 2) since"),
        "{err}"
    );
    assert_eq!(
        helm_status(&bed, "linkerd-control-plane"),
        Some(("pending-upgrade".into(), 2))
    );
    // Older than the grace (0 s here, 60 s by default): rolled back, which is already what `up` wants.
    tool.env = vec![("KPAAS_MESH_HELM_PENDING_GRACE".into(), "0".into())];
    let out = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    assert!(
        out.contains("cluster cluster1: helm release linkerd/linkerd-control-plane was left pending-upgrade (revision 2; its helm was stopped): `helm rollback linkerd-control-plane`"),
        "{out}"
    );
    assert_eq!(
        helm_status(&bed, "linkerd-control-plane"),
        Some(("deployed".into(), 3))
    );
    let again = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    assert!(
        again.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{again}"
    );

    // 2. A first install killed: pending-install, uninstalled and installed again.
    let values = bed
        .command("helm")
        .args([
            "get",
            "values",
            "linkerd-control-plane",
            "-n",
            "linkerd",
            "--kube-context",
            "cluster1",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(values.status.success());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &values.stdout).unwrap();
    let status = bed
        .command("helm")
        .args([
            "uninstall",
            "linkerd-control-plane",
            "-n",
            "linkerd",
            "--kube-context",
            "cluster1",
            "--wait",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let install = [
        &[
            "install",
            "linkerd-control-plane",
            chart,
            "-f",
            file.path().to_str().unwrap(),
            "--set",
            nowhere,
        ][..],
        &base,
    ]
    .concat();
    kill_helm_when(&bed, &install, "pending-install");
    let out = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    assert!(out.contains("was left pending-install (revision 1; its helm was stopped): `helm uninstall linkerd-control-plane`"), "{out}");
    assert_eq!(
        helm_status(&bed, "linkerd-control-plane"),
        Some(("deployed".into(), 1))
    );
    let again = tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    assert!(
        again.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{again}"
    );
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
}

/// The bed's script (`testbed.sh apiserver stop|start NAME` kills a cluster's real API server and starts it again).
fn testbed_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/testbed.sh")
}

/// Every object of a cluster but those controllers make and name as they go (Pods, ReplicaSets, Endpoints and
/// EndpointSlices, ClusterIP IPAddresses, Leases: an API server that starts again registers a new identity Lease)
/// and helm's revision Secrets (revisions are compared apart).
async fn lasting_objects(bed: &kpaas_mesh_e2e::TestBed, cluster: &str) -> Vec<String> {
    object_set(bed, cluster)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| {
            let (kind, name) = o.split_once(' ').unwrap();
            !matches!(
                kind,
                "/Pod"
                    | "/Endpoints"
                    | "discovery.k8s.io/EndpointSlice"
                    | "coordination.k8s.io/Lease"
                    | "apps/ReplicaSet"
                    | "networking.k8s.io/IPAddress"
            ) && !name.contains("/sh.helm.release.v1.")
        })
        .collect()
}

/// One cluster's API server stopped in the middle of `up` — after both control planes, as cluster2's
/// linkerd-multicluster release is about to go in, before any link: `up` fails with one line naming the stage and
/// the cluster; cluster1 completes that stage (its release deployed, its waits passed) and no later stage starts
/// anywhere; the Lease cluster2 could not be given back is noted. Once the API server is back, `up` takes that Lease
/// over at once (its holder has ended), converges with at most one new helm revision per release, changes nothing
/// when run again, and leaves what a clean `up` leaves, object for object.
#[tokio::test]
async fn an_api_server_lost_mid_up_stops_it_per_stage_and_a_rerun_converges() {
    let bed = testbed_or_skip!();
    let mut tool = Tool::new(bed.clone());
    const ALL: &str = "cert,control-plane,multicluster,netfix";
    let _ = tool.run("down", &CLUSTERS, &["--only", ALL]);
    // helm as the tool runs it, but a wrapper that stops cluster2's API server just before the real helm
    // installs cluster2's linkerd-multicluster (once), so the outage falls at the same point every time
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("helm");
    let real = bed.bin_dir().unwrap().join("helm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\n\
             if [[ \" $* \" == *' upgrade '*' linkerd-multicluster '*' --kube-context cluster2 '* && ! -e {mark} ]]; then\n\
             touch {mark}\n\
             KPAAS_MESH_TESTBED_STATE=\"$KPAAS_MESH_TESTBED\" {script} apiserver stop cluster2 >>{mark} 2>&1\n\
             fi\n\
             exec {real} \"$@\"\n",
            mark = dir.path().join("stopped").display(),
            script = testbed_script().display(),
            real = real.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool.env = vec![("KPAAS_MESH_HELM".into(), wrapper.display().to_string())];
    let out = tool.run("up", &CLUSTERS, &["--only", ALL]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let stopped = std::fs::read_to_string(dir.path().join("stopped")).unwrap_or_default();
    assert!(
        stopped.contains("cluster2: kube-apiserver stopped"),
        "the API server was not stopped: {stopped}\n{err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].starts_with(
            "error: stage multicluster: cluster cluster2: release linkerd-multicluster: "
        ) && errors[0].contains("connection refused")
            && errors[0]
                .contains("(the stage is complete on cluster1; no later stage was started;"),
        "{err}"
    );
    assert!(
        err.contains("note: cluster cluster2: the Lease kube-system/kpaas-mesh was not released"),
        "{err}"
    );
    assert!(
        !err.contains(" ERROR "),
        "only the error line speaks of the failure: {err}"
    );
    // cluster1: the multicluster stage complete (release deployed, the gateway's address waited for), no link
    let r1 = helm_releases(&bed, "cluster1").unwrap();
    assert!(r1.contains_key("linkerd-multicluster"), "{r1:?}");
    let svc = get(
        &bed,
        "cluster1",
        "v1",
        "Service",
        Some("linkerd-multicluster"),
        "linkerd-gateway",
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        svc["status"]["loadBalancer"]["ingress"][0]["ip"].is_string(),
        "{svc}"
    );
    assert!(lease_of(&bed, "cluster1").await.is_none());
    let links = bed
        .run(
            "kubectl",
            &[
                "--context",
                "cluster1",
                "get",
                "links.multicluster.linkerd.io",
                "-A",
                "-o",
                "name",
            ],
            None,
        )
        .unwrap();
    assert!(
        links.stdout.is_empty(),
        "a link was started: {}",
        String::from_utf8_lossy(&links.stdout)
    );

    // the API server back: nothing of cluster2's multicluster release was begun, nothing is pending, and the
    // dead run's Lease is still there
    let status = std::process::Command::new(testbed_script())
        .env("KPAAS_MESH_TESTBED_STATE", bed.dir())
        .args(["apiserver", "start", "cluster2"])
        .status()
        .unwrap();
    assert!(status.success());
    let r2 = helm_releases(&bed, "cluster2").unwrap();
    assert!(!r2.contains_key("linkerd-multicluster"), "{r2:?}");
    for cl in CLUSTERS {
        let pending = pending_releases(&bed, cl);
        assert!(
            pending.is_empty(),
            "{cl}: releases left pending: {pending:?}"
        );
    }
    assert!(lease_of(&bed, "cluster2").await.is_some());

    // the rerun, with the plain helm
    tool.env.clear();
    let before: Vec<_> = CLUSTERS
        .iter()
        .map(|c| helm_releases(&bed, c).unwrap())
        .collect();
    let out = tool.ok("up", &CLUSTERS, &["--only", ALL]);
    assert!(
        out.contains("cluster cluster2: took over the Lease kube-system/kpaas-mesh of ")
            && out.contains("whose process on this machine has ended"),
        "{out}"
    );
    assert_at_most_one_revision_more(&bed, &before);
    let again = tool.ok("up", &CLUSTERS, &["--only", ALL]);
    assert!(
        again.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{again}"
    );
    for cl in CLUSTERS {
        assert!(lease_of(&bed, cl).await.is_none(), "{cl}: Lease left");
    }
    // nothing duplicated or missing: what a clean `up` makes
    let recovered = [
        lasting_objects(&bed, "cluster1").await,
        lasting_objects(&bed, "cluster2").await,
    ];
    let charts: Vec<_> = CLUSTERS
        .iter()
        .map(|c| {
            helm_releases(&bed, c)
                .unwrap()
                .into_iter()
                .map(|(n, (chart, _))| (n, chart))
                .collect::<Vec<_>>()
        })
        .collect();
    tool.ok("down", &CLUSTERS, &["--only", ALL]);
    tool.ok("up", &CLUSTERS, &["--only", ALL]);
    for (i, cl) in CLUSTERS.iter().enumerate() {
        let clean = lasting_objects(&bed, cl).await;
        let extra: Vec<_> = recovered[i].iter().filter(|o| !clean.contains(o)).collect();
        let missing: Vec<_> = clean.iter().filter(|o| !recovered[i].contains(o)).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{cl}: after the recovery, not in a clean up: {extra:?}; missing: {missing:?}"
        );
        let clean_charts: Vec<_> = helm_releases(&bed, cl)
            .unwrap()
            .into_iter()
            .map(|(n, (chart, _))| (n, chart))
            .collect();
        assert_eq!(charts[i], clean_charts, "{cl}");
    }
    tool.ok("down", &CLUSTERS, &["--only", ALL]);
}
