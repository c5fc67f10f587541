//! End-to-end tests with Linkerd's REAL controllers on the test bed (issue 15): the bed's pod runner
//! (tests/e2e/src/bin/pods.rs) runs the stable-2.14.10 `controller` binary for every controller pod the tool's
//! `up` made, with the pod's args, env, ServiceAccount token and volumes; the MetalLB stand-in answers the gateway
//! probe on every gateway address (tests/e2e/src/bin/lb.rs). What these tests see was written by Linkerd's code:
//! - the service mirror of every link mirrors the exported `helloworld` (`helloworld-<peer>` Service + Endpoints
//!   at the peer's gateway address and port 4143, field manager `controller`), takes its lease, creates the
//!   probe Endpoints, and follows the export label (it deletes the mirror itself when the label goes);
//! - its probe worker reaches the gateway stand-in (`gateway_alive` 1 on its admin port), so the mirror's
//!   addresses are ready and `check`'s probe row says the gateway is alive; a wrong gateway address in the Link
//!   makes the metric 0; a gateway that stops answering makes the service mirror mark the mirror's addresses not
//!   ready, and `check` names the link;
//! - `unlink` and `down` leave no mirror, and the runner stops the controller processes of the deleted pods.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kpaas_mesh_e2e::{TestBed, testbed_or_skip, wait_for};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";
const MC: &str = "linkerd-multicluster";
const TIMEOUT: Duration = Duration::from_secs(90);

/// The runner's log files of the containers of pods whose name starts with `pod_prefix`.
fn runner_logs(bed: &TestBed, context: &str, ns: &str, pod_prefix: &str) -> Vec<PathBuf> {
    let dir = bed.dir().join("logs/pods");
    let prefix = format!("{context}.{ns}.{pod_prefix}");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits (polling the files another process writes, with a deadline) until a runner log of those pods contains
/// `needle`.
fn wait_log(bed: &TestBed, context: &str, ns: &str, pod_prefix: &str, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let logs = runner_logs(bed, context, ns, pod_prefix);
        if logs.iter().any(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(needle)
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log of {context} {ns}/{pod_prefix}* says {needle:?} within {TIMEOUT:?}; logs: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn gateway_ip(svc: &Service) -> Option<String> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .clone()
}

/// (ready, not ready) addresses and the ports of Endpoints.
fn addresses(ep: &Endpoints) -> (Vec<String>, Vec<String>, Vec<i32>) {
    let (mut ready, mut not_ready, mut ports) = (vec![], vec![], vec![]);
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(s.ports.iter().flatten().map(|p| p.port));
    }
    (ready, not_ready, ports)
}

fn check_row(tool: &Tool, clusters: &[&str], name: &str) -> Value {
    let out = tool.run("check", clusters, &["--only", ALL, "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check row {name:?}: {doc}"))
        .clone()
}

/// The pod IP of the service mirror of `target`'s link on the cluster of `client`.
async fn service_mirror_ip(client: &kube::Client, target: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), MC)
        .list(&ListParams::default().labels(&format!(
            "component=linkerd-service-mirror,mirror.linkerd.io/cluster-name={target}"
        )))
        .await
        .unwrap();
    pods.items
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("a service mirror pod with an IP")
}

/// The service mirror's `gateway_alive` gauge for `target`, from its admin server (`:9999/metrics`).
async fn gateway_alive(ip: &str, target: &str) -> Option<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ip, 9999)).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find(|l| {
            l.starts_with("gateway_alive{")
                && l.contains(&format!("target_cluster_name=\"{target}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits (polling the controller's metrics endpoint, with a deadline) for gateway_alive == `want`.
async fn wait_metric(ip: &str, target: &str, want: u8) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = gateway_alive(ip, target).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gateway_alive for {target} at {ip}:9999 is {got:?}, not {want}, after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn link_api(client: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("multicluster.linkerd.io", "v1alpha1", "Link"),
        "links",
    );
    Api::namespaced_with(client, MC, &ar)
}

#[tokio::test]
async fn real_service_mirror_mirrors_exports_and_follows_the_gateway_probe() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let _ = tool.run("down", &clusters, &["--only", ALL]);
    tool.ok("up", &clusters, &["--only", ALL]);
    let c1 = bed.client("cluster1").await.unwrap();
    let c2 = bed.client("cluster2").await.unwrap();

    // cluster1's gateway address, from the MetalLB stand-in.
    let gw1 = gateway_ip(
        &Api::<Service>::namespaced(c1.clone(), MC)
            .get("linkerd-gateway")
            .await
            .unwrap(),
    )
    .expect("cluster1's gateway has an address");

    // The real service mirror of cluster2's link to cluster1 took its lease, under its pod's name (HOSTNAME).
    let lease = wait_for(
        Api::<Lease>::namespaced(c2.clone(), MC),
        "service-mirror-write-cluster1",
        |l: Option<&Lease>| l.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap()
    .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap_or_default();
    assert!(
        holder.starts_with("linkerd-service-mirror-cluster1-"),
        "lease holder {holder}"
    );

    // It mirrored the exported helloworld: Service helloworld-cluster1 on cluster2, written by Linkerd's code.
    let sample2: Api<Service> = Api::namespaced(c2.clone(), "sample");
    let mirror = wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap()
    .unwrap();
    let labels = mirror.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["mirror.linkerd.io/mirrored-service"], "true");
    assert_eq!(labels["mirror.linkerd.io/cluster-name"], "cluster1");
    let managers: Vec<String> = mirror
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "controller"),
        "helloworld-cluster1 was not written by Linkerd's controller: managers {managers:?}"
    );

    // Its Endpoints: cluster1's gateway address and port 4143, ready (the probe worker finds the gateway alive).
    let eps2: Api<Endpoints> = Api::namespaced(c2.clone(), "sample");
    let want = gw1.clone();
    let ep = wait_for(
        eps2.clone(),
        "helloworld-cluster1",
        move |e: Option<&Endpoints>| e.is_some_and(|e| addresses(e).0 == [want.clone()]),
        TIMEOUT,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(addresses(&ep).2, [4143], "{ep:?}");

    // The probe Endpoints the service mirror made from the Link: gateway address, probe port 4191.
    let probe = wait_for(
        Api::<Endpoints>::namespaced(c2.clone(), MC),
        "probe-gateway-cluster1",
        |e: Option<&Endpoints>| e.is_some_and(|e| !addresses(e).0.is_empty()),
        TIMEOUT,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(addresses(&probe).0, std::slice::from_ref(&gw1));
    assert_eq!(addresses(&probe).2, [4191]);

    // check evaluates the probe and mirror rows against that state.
    let row = check_row(
        &tool,
        &clusters,
        "probe services able to communicate with all gateway mirrors",
    );
    // cluster2 exports nothing in the guide's layout (it is the client), so no mirror on cluster1 shows the
    // liveness of cluster2's gateway: the row says so instead of passing.
    assert_eq!(row["status"], "warn", "{row}");
    assert!(
        row["detail"].as_str().unwrap().contains(
            "cluster1 → cluster2: probe service has endpoints; no mirrored service of cluster2 shows"
        ),
        "{row}"
    );
    assert!(
        row["items"].as_array().unwrap().iter().any(|i| i
            .as_str()
            .unwrap()
            .starts_with("cluster2 → cluster1: gateway alive")),
        "{row}"
    );
    let row = check_row(&tool, &clusters, "all mirror services have endpoints");
    assert_eq!(row["status"], "ok", "{row}");
    assert!(
        row["items"]
            .as_array()
            .unwrap()
            .contains(&json!("cluster2: sample/helloworld-cluster1")),
        "{row}"
    );

    // The real probe worker reports the gateway alive: its gateway_alive metric, read from the service mirror's
    // admin port (what `linkerd multicluster check` port-forwards to), at the pod IP the runner routes.
    let sm_ip = service_mirror_ip(&c2, "cluster1").await;
    wait_metric(&sm_ip, "cluster1", 1).await;

    // A wrong gateway address in the Link: the same probe worker finds nothing there (gateway_alive 0). Linkerd
    // 2.14 restarts its cluster watcher (gateway assumed alive) and probe worker (assumed dead) on a Link
    // change, so no liveness transition happens and the mirror's addresses stay ready: only the metric tells.
    let links2 = link_api(c2.clone());
    let wrong = "172.21.0.249";
    links2
        .patch(
            "cluster1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gatewayAddress": wrong}})),
        )
        .await
        .unwrap();
    wait_metric(&sm_ip, "cluster1", 0).await;
    links2
        .patch(
            "cluster1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gatewayAddress": gw1}})),
        )
        .await
        .unwrap();
    wait_metric(&sm_ip, "cluster1", 1).await;

    // The gateway goes down (no ready gateway pod behind cluster1's address, so its proxy's /ready would fail):
    // the probe worker sees alive → dead, the service mirror marks the mirror's addresses not ready, and check
    // names the link.
    let scale = |n: &str| {
        bed.run(
            "kubectl",
            &[
                "--context",
                "cluster1",
                "-n",
                MC,
                "scale",
                "deployment/linkerd-gateway",
                &format!("--replicas={n}"),
            ],
            None,
        )
        .unwrap();
    };
    scale("0");
    let want = gw1.clone();
    wait_for(
        eps2.clone(),
        "helloworld-cluster1",
        move |e: Option<&Endpoints>| {
            e.is_some_and(|e| {
                let (r, n, _) = addresses(e);
                r.is_empty() && n == [want.clone()]
            })
        },
        TIMEOUT,
    )
    .await
    .unwrap();
    wait_metric(&sm_ip, "cluster1", 0).await;
    let row = check_row(
        &tool,
        &clusters,
        "probe services able to communicate with all gateway mirrors",
    );
    assert_eq!(row["status"], "fail", "{row}");
    assert!(
        row["detail"]
            .as_str()
            .unwrap()
            .contains("cluster2 → cluster1: liveness checks failed for cluster1"),
        "{row}"
    );
    // Back up: alive again, the addresses ready again.
    scale("1");
    let want = gw1.clone();
    wait_for(
        eps2.clone(),
        "helloworld-cluster1",
        move |e: Option<&Endpoints>| e.is_some_and(|e| addresses(e).0 == [want.clone()]),
        TIMEOUT,
    )
    .await
    .unwrap();
    // The export label goes: Linkerd's service mirror deletes the mirror itself (the tool is not involved).
    let hw1: Api<Service> = Api::namespaced(c1.clone(), "sample");
    hw1.patch(
        "helloworld",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"mirror.linkerd.io/exported": null}}})),
    )
    .await
    .unwrap();
    wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_none(),
        TIMEOUT,
    )
    .await
    .unwrap();
    wait_log(
        &bed,
        "cluster2",
        MC,
        "linkerd-service-mirror-cluster1-",
        "Deleting mirrored service sample/helloworld-cluster1",
    );
    // ... and mirrors it again when the label is back.
    hw1.patch(
        "helloworld",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"mirror.linkerd.io/exported": "true"}}})),
    )
    .await
    .unwrap();
    wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_some(),
        TIMEOUT,
    )
    .await
    .unwrap();

    // unlink: cluster2 no longer links to cluster1; no mirror is left, and the service mirror's pod is gone, so
    // the runner stopped its process (Linkerd 2.14's service mirror leaves mirror cleanup to `unlink`).
    tool.ok("unlink", &["cluster2"], &["--from", "cluster1"]);
    wait_for(
        sample2.clone(),
        "helloworld-cluster1",
        |s: Option<&Service>| s.is_none(),
        TIMEOUT,
    )
    .await
    .unwrap();
    let runner_log = bed.dir().join("logs/pods-cluster2.log");
    let deadline = Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(&runner_log)
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.contains("linkerd-multicluster/linkerd-service-mirror-cluster1-")
                && l.ends_with("service-mirror: stopped")
        })
    {
        assert!(
            Instant::now() < deadline,
            "the pod runner did not stop the unlinked service mirror: {}",
            runner_log.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // down: no mirror anywhere (cluster1's mirror of cluster2 had nothing exported to mirror).
    tool.ok("down", &clusters, &["--only", ALL]);
    for c in [&c1, &c2] {
        let mirrors = Api::<Service>::all(c.clone())
            .list(
                &kube::api::ListParams::default().labels("mirror.linkerd.io/mirrored-service=true"),
            )
            .await
            .unwrap();
        assert!(mirrors.items.is_empty(), "{:?}", mirrors.items);
    }
}
