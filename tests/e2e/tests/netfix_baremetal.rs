//! End-to-end test of `--netfix baremetal` on the test bed (real API servers and controller-manager, kwok
//! nodes), with every cluster of the bed (2 or 3): `up` applies the DNAT agent DaemonSet, which becomes ready on
//! every kwok node, with each peer's private→public mapping in its ConfigMap, while the links keep the private
//! gateway addresses; a second `up` changes nothing; a new public address rolls the agents of the clusters that
//! DNAT it and not its own; `status` and `check` report the rules and agents; `down` removes everything it made.
//!
//! No pod really runs on the bed (kwok marks them Ready), so iptables itself is proven by the plugin's own
//! test (`plugins/netfix-baremetal/tests/iptables_netns.rs`); here the Kubernetes side is.

mod common;

use common::Tool;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;

const STAGES: &str = "cert,control-plane,multicluster,netfix";
const NS: &str = "kpaas-mesh-netfix";
const NAME: &str = "kpaas-mesh-dnat";

/// The tool with this test's fixed flags, on every cluster of the bed.
struct Baremetal {
    tool: Tool,
    /// Every cluster of the bed (2 or 3).
    clusters: Vec<String>,
}

impl Baremetal {
    fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["--only", STAGES, "--netfix", "baremetal"];
        a.extend_from_slice(extra);
        a
    }

    fn clusters(&self) -> Vec<&str> {
        self.clusters.iter().map(String::as_str).collect()
    }

    fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        self.tool.run(cmd, &self.clusters(), &self.args(extra))
    }

    fn ok(&self, cmd: &str, extra: &[&str]) -> String {
        self.tool.ok(cmd, &self.clusters(), &self.args(extra))
    }
}

async fn object_set(bed: &TestBed, context: &str) -> BTreeSet<String> {
    common::object_set(bed, context).await.unwrap()
}

async fn get(
    bed: &TestBed,
    context: &str,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    common::get(bed, context, api_version, kind, ns, name)
        .await
        .unwrap()
}

async fn list(bed: &TestBed, context: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
    let client = bed.client(context).await.unwrap();
    let gvk = kube::core::GroupVersionKind::gvk("", "v1", kind);
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    };
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect()
}

async fn gateway_ip(bed: &TestBed, c: &str) -> String {
    let svc = get(
        bed,
        c,
        "v1",
        "Service",
        Some("linkerd-multicluster"),
        "linkerd-gateway",
    )
    .await
    .unwrap();
    svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The mapping lines of a cluster's ConfigMap (comments left out).
async fn mapping(bed: &TestBed, c: &str) -> Vec<String> {
    let cm = get(bed, c, "v1", "ConfigMap", Some(NS), NAME)
        .await
        .unwrap();
    cm["data"]["mapping"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The public address the test gives the cluster at index `i`.
fn public(i: usize) -> String {
    format!("203.0.113.{}", i + 1)
}

/// The DaemonSet is rolled out and ready with one agent pod on every node of `c`.
async fn assert_agents_on_every_node(bed: &TestBed, c: &str) -> Value {
    let ds = get(bed, c, "apps/v1", "DaemonSet", Some(NS), NAME)
        .await
        .unwrap_or_else(|| panic!("{c}: no DaemonSet"));
    let nodes: BTreeSet<String> = list(bed, c, "Node", None)
        .await
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(nodes.len() >= 2, "{c}: {nodes:?}");
    let s = &ds["status"];
    let n = nodes.len() as i64;
    assert_eq!(s["desiredNumberScheduled"], n, "{c}: {s}");
    assert_eq!(s["numberReady"], n, "{c}: {s}");
    assert_eq!(s["updatedNumberScheduled"], n, "{c}: {s}");
    assert_eq!(s["observedGeneration"], ds["metadata"]["generation"], "{c}");
    let pods = list(bed, c, "Pod", Some(NS)).await;
    let on: BTreeSet<String> = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(on, nodes, "{c}: one agent per node");
    for p in &pods {
        assert_eq!(p["spec"]["hostNetwork"], true, "{c}");
        assert_eq!(
            p["spec"]["containers"][0]["securityContext"]["privileged"],
            true
        );
    }
    ds
}

fn checksum(ds: &Value) -> String {
    ds["spec"]["template"]["metadata"]["annotations"]["kpaas-mesh.io/dnat-config-checksum"]
        .as_str()
        .unwrap()
        .to_string()
}

fn rv(v: &Value) -> Value {
    v["metadata"]["resourceVersion"].clone()
}

#[tokio::test]
async fn baremetal_up_agents_on_every_node_idempotent_reroll_status_check_down() {
    let bed = testbed_or_skip!();
    let clusters = bed.contexts();
    assert!(clusters.len() >= 2, "{clusters:?}");
    let tool = Baremetal {
        tool: Tool::new(bed.clone()),
        clusters: clusters.clone(),
    };
    let all = clusters.join(", ");
    // A failed earlier run may have left things behind.
    let _ = tool.run("down", &[]);
    let mut before = Vec::new();
    for c in &clusters {
        before.push(object_set(&bed, c).await);
    }

    // Without a public address for a peer: one clear line, nothing of netfix made.
    let out = tool.run("up", &["--gateway-public", "cluster1=203.0.113.1"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let missing = clusters[1..].join(", ");
    assert!(
        text.contains(&format!(
            "no public gateway address for {missing}: give it with --gateway-public cluster2=ADDR"
        )),
        "{text}"
    );
    for c in &clusters {
        assert!(get(&bed, c, "v1", "Namespace", None, NS).await.is_none());
    }

    let flags = |publics: &[String]| -> Vec<String> {
        clusters
            .iter()
            .zip(publics)
            .flat_map(|(c, p)| ["--gateway-public".to_string(), format!("{c}={p}")])
            .collect()
    };
    let mut publics: Vec<String> = (0..clusters.len()).map(public).collect();
    let args = flags(&publics);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tool.ok("up", &args);
    assert!(out.contains(&format!("up done on {all}")), "{out}");

    let mut ips = Vec::new();
    for c in &clusters {
        ips.push(gateway_ip(&bed, c).await);
    }
    let mut first = Vec::new();
    for c in &clusters {
        // Every peer's private gateway address to its public one; nothing for itself.
        let want: Vec<String> = clusters
            .iter()
            .enumerate()
            .filter(|(_, p)| *p != c)
            .map(|(j, p)| format!("PREROUTING {p} {} {}", ips[j], publics[j]))
            .collect();
        assert_eq!(mapping(&bed, c).await, want, "{c}");
        let ds = assert_agents_on_every_node(&bed, c).await;
        // The links keep the private (LoadBalancer) addresses: the DNAT makes them reachable.
        for (j, peer) in clusters.iter().enumerate().filter(|(_, p)| *p != c) {
            let link = get(
                &bed,
                c,
                "multicluster.linkerd.io/v1alpha1",
                "Link",
                Some("linkerd-multicluster"),
                peer,
            )
            .await
            .unwrap();
            assert_eq!(
                link["spec"]["gatewayAddress"],
                ips[j].as_str(),
                "{c} → {peer}"
            );
        }
        let cm = get(&bed, c, "v1", "ConfigMap", Some(NS), NAME)
            .await
            .unwrap();
        first.push((ds, cm));
    }

    // A second up changes nothing.
    let out = tool.ok("up", &args);
    assert!(
        out.contains(&format!("up done on {all}: 0 change(s)")),
        "{out}"
    );
    for (i, c) in clusters.iter().enumerate() {
        let ds = get(&bed, c, "apps/v1", "DaemonSet", Some(NS), NAME)
            .await
            .unwrap();
        let cm = get(&bed, c, "v1", "ConfigMap", Some(NS), NAME)
            .await
            .unwrap();
        assert_eq!(rv(&cm), rv(&first[i].1), "{c}: ConfigMap rewritten");
        assert_eq!(
            ds["metadata"]["generation"], first[i].0["metadata"]["generation"],
            "{c}: DaemonSet rolled"
        );
    }

    // cluster2's public address changes: the agents of every other cluster (they DNAT cluster2) roll, cluster2's
    // do not.
    publics[1] = "203.0.113.22".into();
    let args2 = flags(&publics);
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    tool.ok("up", &args2);
    for (i, c) in clusters.iter().enumerate() {
        let ds = if i == 1 {
            get(&bed, c, "apps/v1", "DaemonSet", Some(NS), NAME)
                .await
                .unwrap()
        } else {
            let want = format!("PREROUTING cluster2 {} 203.0.113.22", ips[1]);
            assert!(mapping(&bed, c).await.contains(&want), "{c}");
            assert_agents_on_every_node(&bed, c).await
        };
        let rolled = ds["metadata"]["generation"] != first[i].0["metadata"]["generation"];
        assert_eq!(rolled, i != 1, "{c}: rolled={rolled}");
        assert_eq!(checksum(&ds) != checksum(&first[i].0), i != 1, "{c}");
    }

    // status shows the rules and an agent on every node; check passes without repeating the flags.
    let out = tool.ok("status", &["-o", "json"]);
    assert!(
        out.contains("203.0.113.22") && out.contains(&ips[1]),
        "{out}"
    );
    assert!(out.contains("kpaas-mesh-dnat-"), "{out}");
    let out = tool.run("check", &["-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["group"] == "kpaas-mesh netfix (baremetal)")
        .collect();
    assert_eq!(ours.len(), 3, "{doc}");
    for c in ours {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert!(out.status.success(), "{doc}");

    // down: the empty mapping rolled out, then everything it made is gone.
    let out = tool.ok("down", &[]);
    assert!(out.contains(&format!("down done on {all}")), "{out}");
    for (i, c) in clusters.iter().enumerate() {
        assert!(
            get(&bed, c, "v1", "Namespace", None, NS).await.is_none(),
            "{c}"
        );
        assert_eq!(
            object_set(&bed, c).await,
            before[i],
            "{c}: objects differ after down"
        );
    }
    // And down again is a no-op.
    tool.ok("down", &[]);
}
