//! End-to-end test of `--netfix baremetal` on the test bed (real API servers and controller-manager, kwok
//! nodes): `up` applies the DNAT agent DaemonSet, which becomes ready on every kwok node, with the peer's
//! private→public mapping in its ConfigMap, while the links keep the private gateway addresses; a second `up`
//! changes nothing; a new public address rolls the agents of the clusters that DNAT it and no other; `status`
//! and `check` report the rules and agents; `down` removes everything it made.
//!
//! No pod really runs on the bed (kwok marks them Ready), so iptables itself is proven by the plugin's own
//! test (`plugins/netfix-baremetal/tests/iptables_netns.rs`); here the Kubernetes side is.

use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

const STAGES: &str = "cert,control-plane,multicluster,netfix";
const NS: &str = "kpaas-mesh-netfix";
const NAME: &str = "kpaas-mesh-dnat";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(target_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("libkpaas_mesh_") && name.ends_with(".so") {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
            names.push(name);
        }
    }
    assert!(
        names
            .iter()
            .any(|n| n == "libkpaas_mesh_netfix_baremetal.so"),
        "netfix-baremetal is not built in {} (run cargo build --workspace): {names:?}",
        target_dir().display()
    );
    dir
}

struct Tool {
    bed: TestBed,
    plugins: tempfile::TempDir,
    certs: tempfile::TempDir,
}

impl Tool {
    fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        let bin = target_dir().join("kubectl-kpaas_mesh");
        let mut c = self.bed.command(bin.to_str().unwrap());
        c.arg("--plugin-dir").arg(self.plugins.path()).arg(cmd);
        for cl in CLUSTERS {
            c.args(["--cluster", cl]);
        }
        c.arg("--chart-dir").arg(self.bed.charts_dir().unwrap());
        c.arg("--certs-dir").arg(self.certs.path().join("certs"));
        c.args(["--timeout", "3m", "--only", STAGES, "--netfix", "baremetal"]);
        c.args(extra);
        c.output().unwrap()
    }

    fn ok(&self, cmd: &str, extra: &[&str]) -> String {
        let out = self.run(cmd, extra);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kpaas-mesh {cmd} {extra:?} failed:\n{text}"
        );
        text
    }
}

async fn object_set(bed: &TestBed, context: &str) -> BTreeSet<String> {
    let client = bed.client(context).await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut out = BTreeSet::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) || ar.kind == "Event" {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            for o in api.list(&ListParams::default()).await.unwrap().items {
                let ns = if caps.scope == Scope::Namespaced {
                    o.metadata.namespace.clone().unwrap_or_default()
                } else {
                    String::new()
                };
                out.insert(format!(
                    "{}/{} {}/{}",
                    ar.group,
                    ar.kind,
                    ns,
                    o.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    out
}

async fn get(
    bed: &TestBed,
    context: &str,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<Value> {
    let client = bed.client(context).await.unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match (caps.scope, ns) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client, ns, &ar),
        _ => Api::all_with(client, &ar),
    };
    api.get_opt(name)
        .await
        .unwrap()
        .map(|o| serde_json::to_value(o).unwrap())
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

fn other(c: &str) -> &'static str {
    if c == "cluster1" {
        "cluster2"
    } else {
        "cluster1"
    }
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
    let tool = Tool {
        bed: bed.clone(),
        plugins: plugin_dir(),
        certs: tempfile::tempdir().unwrap(),
    };
    // A failed earlier run may have left things behind.
    let _ = tool.run("down", &[]);
    let before = [
        object_set(&bed, "cluster1").await,
        object_set(&bed, "cluster2").await,
    ];

    // Without a public address for a peer: one clear line, nothing of netfix made.
    let out = tool.run("up", &["--gateway-public", "cluster1=203.0.113.1"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains(
            "no public gateway address for cluster2: give it with --gateway-public cluster2=ADDR"
        ),
        "{text}"
    );
    for c in CLUSTERS {
        assert!(get(&bed, c, "v1", "Namespace", None, NS).await.is_none());
    }

    let publics = [
        "--gateway-public",
        "cluster1=203.0.113.1",
        "--gateway-public",
        "cluster2=203.0.113.2",
    ];
    let out = tool.ok("up", &publics);
    assert!(out.contains("up done on cluster1, cluster2"), "{out}");

    let mut first = Vec::new();
    for c in CLUSTERS {
        let peer = other(c);
        let peer_ip = gateway_ip(&bed, peer).await;
        let public = if peer == "cluster1" {
            "203.0.113.1"
        } else {
            "203.0.113.2"
        };
        assert_eq!(
            mapping(&bed, c).await,
            [format!("PREROUTING {peer} {peer_ip} {public}")],
            "{c}"
        );
        let ds = assert_agents_on_every_node(&bed, c).await;
        // The links keep the private (LoadBalancer) address: the DNAT makes it reachable.
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
        assert_eq!(link["spec"]["gatewayAddress"], peer_ip.as_str(), "{c}");
        let cm = get(&bed, c, "v1", "ConfigMap", Some(NS), NAME)
            .await
            .unwrap();
        first.push((ds, cm));
    }

    // A second up changes nothing.
    let out = tool.ok("up", &publics);
    assert!(
        out.contains("up done on cluster1, cluster2: 0 change(s)"),
        "{out}"
    );
    for (i, c) in CLUSTERS.iter().enumerate() {
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

    // cluster2's public address changes: cluster1's agents (which DNAT cluster2) roll, cluster2's do not.
    tool.ok(
        "up",
        &[
            "--gateway-public",
            "cluster1=203.0.113.1",
            "--gateway-public",
            "cluster2=203.0.113.22",
        ],
    );
    let ip2 = gateway_ip(&bed, "cluster2").await;
    assert_eq!(
        mapping(&bed, "cluster1").await,
        [format!("PREROUTING cluster2 {ip2} 203.0.113.22")]
    );
    let ds1 = assert_agents_on_every_node(&bed, "cluster1").await;
    assert_ne!(checksum(&ds1), checksum(&first[0].0), "cluster1 not rolled");
    assert_ne!(
        ds1["metadata"]["generation"],
        first[0].0["metadata"]["generation"]
    );
    let ds2 = get(&bed, "cluster2", "apps/v1", "DaemonSet", Some(NS), NAME)
        .await
        .unwrap();
    assert_eq!(
        ds2["metadata"]["generation"],
        first[1].0["metadata"]["generation"]
    );

    // status shows the rules and an agent on every node; check passes without repeating the flags.
    let out = tool.ok("status", &["-o", "json"]);
    assert!(out.contains("203.0.113.22") && out.contains(&ip2), "{out}");
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

    // down: the empty mapping rolled out, then everything it made is gone.
    let out = tool.ok("down", &[]);
    assert!(out.contains("down done on cluster1, cluster2"), "{out}");
    for (i, c) in CLUSTERS.iter().enumerate() {
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
