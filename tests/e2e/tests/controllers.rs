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

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kpaas_mesh_e2e::{testbed_or_skip, wait_for};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";
const MC: &str = "linkerd-multicluster";
const TIMEOUT: Duration = Duration::from_secs(90);

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

// The destination API's messages this test reads (linkerd2-proxy-api v0.11.0, the version 2.14.10 builds with:
// destination.proto and net.proto), written by hand for prost; fields not read are left out.
#[derive(Clone, PartialEq, prost::Message)]
struct GetDestination {
    #[prost(string, tag = "1")]
    scheme: String,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(string, tag = "3")]
    context_token: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Update {
    #[prost(message, optional, tag = "1")]
    add: Option<WeightedAddrSet>,
    #[prost(message, optional, tag = "2")]
    remove: Option<AddrSet>,
    #[prost(message, optional, tag = "3")]
    no_endpoints: Option<NoEndpoints>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AddrSet {
    #[prost(message, repeated, tag = "1")]
    addrs: Vec<TcpAddress>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WeightedAddrSet {
    #[prost(message, repeated, tag = "1")]
    addrs: Vec<WeightedAddr>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WeightedAddr {
    #[prost(message, optional, tag = "1")]
    addr: Option<TcpAddress>,
    #[prost(message, optional, tag = "5")]
    tls_identity: Option<TlsIdentity>,
    #[prost(message, optional, tag = "7")]
    authority_override: Option<AuthorityOverride>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TcpAddress {
    #[prost(message, optional, tag = "1")]
    ip: Option<IpAddress>,
    #[prost(uint32, tag = "2")]
    port: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct IpAddress {
    #[prost(fixed32, optional, tag = "1")]
    ipv4: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TlsIdentity {
    #[prost(message, optional, tag = "1")]
    dns_like_identity: Option<DnsLikeIdentity>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DnsLikeIdentity {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AuthorityOverride {
    #[prost(string, tag = "1")]
    authority_override: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NoEndpoints {
    #[prost(bool, tag = "1")]
    exists: bool,
}

/// What a proxy would learn first about `authority` from the destination controller at `addr`: the first
/// Update of `io.linkerd.proxy.destination.Destination/Get`, or the status it ended the call with (Unavailable
/// while the controller cannot be reached).
async fn destination_first_update(addr: &str, authority: &str) -> Result<Update, tonic::Status> {
    let unavailable = |e: String| tonic::Status::unavailable(e);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| unavailable(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| unavailable(e.to_string()))?;
    let path =
        http::uri::PathAndQuery::from_static("/io.linkerd.proxy.destination.Destination/Get");
    let codec = tonic::codec::ProstCodec::<GetDestination, Update>::default();
    let request = GetDestination {
        scheme: "k8s".into(),
        path: authority.into(),
        context_token: String::new(),
    };
    let mut stream = grpc
        .server_streaming(tonic::Request::new(request), path, codec)
        .await?
        .into_inner();
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        Err(_) => Err(unavailable("no update within 10s".into())),
        Ok(Ok(Some(u))) => Ok(u),
        Ok(Ok(None)) => Err(unavailable("the stream ended without an update".into())),
        Ok(Err(status)) => Err(status),
    }
}

/// Asks the destination controller about `authority` until `want` holds for its first answer (the controller
/// may still be starting, or its informers catching up), with a deadline.
async fn wait_destination(
    addr: &str,
    authority: &str,
    want: impl Fn(&Result<Update, tonic::Status>) -> bool,
) -> Result<Update, tonic::Status> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = destination_first_update(addr, authority).await;
        if want(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the destination controller at {addr} answers {got:?} for {authority} after {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ipv4(a: &TcpAddress) -> Option<String> {
    let v = a.ip.as_ref()?.ipv4?;
    Some(std::net::Ipv4Addr::from(v).to_string())
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

    // The real destination controller of cluster2 resolves the mirror the way a meshed client's proxy would
    // learn it: one address, cluster1's gateway on 4143, to be reached over mTLS as the gateway's identity, with
    // the authority rewritten to the exported service on cluster1 (what the service mirror annotated).
    let dst_pods = Api::<Pod>::namespaced(c2.clone(), "linkerd")
        .list(&ListParams::default().labels("linkerd.io/control-plane-component=destination"))
        .await
        .unwrap();
    let dst_ip = dst_pods
        .items
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("a destination pod with an IP");
    let dst = format!("{dst_ip}:8086");
    let authority = "helloworld-cluster1.sample.svc.cluster.local:5000";
    let update = wait_destination(&dst, authority, |u| {
        u.as_ref().is_ok_and(|u| u.add.is_some())
    })
    .await;
    let addrs = update.unwrap().add.unwrap().addrs;
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    let a = &addrs[0];
    let tcp = a.addr.as_ref().unwrap();
    assert_eq!(ipv4(tcp).as_deref(), Some(gw1.as_str()), "{a:?}");
    assert_eq!(tcp.port, 4143, "{a:?}");
    assert_eq!(
        a.tls_identity
            .as_ref()
            .and_then(|t| t.dns_like_identity.as_ref())
            .map(|d| d.name.as_str()),
        Some("linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"),
        "{a:?}"
    );
    assert_eq!(
        a.authority_override
            .as_ref()
            .map(|o| o.authority_override.as_str()),
        Some("helloworld.sample.svc.cluster.local:5000"),
        "{a:?}"
    );
    // A Service that does not exist: Linkerd 2.14's destination controller ends the call with NotFound.
    let none = wait_destination(&dst, "nothing-here.sample.svc.cluster.local:5000", |u| {
        u.as_ref()
            .is_err_and(|s| s.code() != tonic::Code::Unavailable)
    })
    .await
    .unwrap_err();
    assert_eq!(none.code(), tonic::Code::NotFound, "{none:?}");
    assert!(
        none.message()
            .contains("Service nothing-here.sample not found"),
        "{none:?}"
    );

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
    let row = wait_check_row(
        &tool,
        &clusters,
        ALL,
        "probe services able to communicate with all gateway mirrors",
        |r| r["status"] == "ok",
    );
    // Both links' probe workers report their gateway alive: check reads each lease holder's gateway_alive gauge
    // through the API server's pod proxy (as `linkerd multicluster check` reads it through a port-forward), so
    // cluster1's link to cluster2 is evaluated too, though cluster2 exports nothing in the guide's layout.
    assert_eq!(row["status"], "ok", "{row}");
    let items: Vec<&str> = row["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    for want in [
        "cluster1 → cluster2: gateway alive (gateway_alive 1)",
        "cluster2 → cluster1: gateway alive (gateway_alive 1)",
    ] {
        assert!(items.contains(&want), "{row}");
    }
    let row = check_row(&tool, &clusters, ALL, "all mirror services have endpoints");
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
    // check reads the same gauge (through the API server's pod proxy, from the lease holder) and names the link
    // and the address it probes.
    let row = wait_check_row(
        &tool,
        &clusters,
        ALL,
        "probe services able to communicate with all gateway mirrors",
        |r| r["status"] == "fail",
    );
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "cluster2 → cluster1: liveness checks failed for cluster1: gateway_alive is 0"
        ) && detail.contains(&format!("{wrong}:4191")),
        "{row}"
    );
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
    // ... and the destination controller no longer hands the gateway out to clients.
    let down = wait_destination(&dst, authority, |u| {
        u.as_ref().is_ok_and(|u| u.add.is_none())
    })
    .await
    .unwrap();
    assert_eq!(
        down.no_endpoints,
        Some(NoEndpoints { exists: true }),
        "{down:?}"
    );
    let row = check_row(
        &tool,
        &clusters,
        ALL,
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
