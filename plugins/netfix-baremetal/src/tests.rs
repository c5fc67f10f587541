//! Unit tests: plans from facts shaped like the host's answers, manifests, mapping text and checksum, options
//! and every error.

use super::*;
use crate::agent::{AGENT_SCRIPT, CHECKSUM_ANNOTATION, DEFAULT_IMAGE, MAPPING_KEY};
use crate::mapping::checksum;
use kpaas_mesh_kit::testkit::{self, clusters};
use kpaas_mesh_plugin_api::{Action, CheckResult, CheckStatus, Fact, FactAnswer, WaitCondition};
use serde_json::json;

fn request(op: Operation, n: usize, extra: Value) -> StageRequest {
    let mut r = StageRequest::new(op, clusters(n));
    r.settings = serde_json::to_value(MeshSettings::default()).unwrap();
    r.options = extra;
    r
}

fn publics(n: usize) -> Value {
    let m: serde_json::Map<String, Value> = (1..=n)
        .map(|i| (format!("cluster{i}"), json!(format!("203.0.113.{i}"))))
        .collect();
    json!({ "gateway_public": m })
}

/// A cluster as the bed has it: gateway at 172.2<i>.0.10, three linux nodes, the agent deployed or not.
#[derive(Clone)]
struct World {
    deployed: Option<BTreeMap<String, String>>, // cluster → deployed mapping
    ds_ready: bool,
    gateway_ip: BTreeMap<String, String>,
    pods_ready: bool,
}

impl World {
    fn fresh(n: usize) -> World {
        World {
            deployed: None,
            ds_ready: true,
            gateway_ip: (1..=n)
                .map(|i| (format!("cluster{i}"), format!("172.2{i}.0.10")))
                .collect(),
            pods_ready: true,
        }
    }

    fn answer(&self, q: &FactQuery) -> FactAnswer {
        match q {
            FactQuery::Object {
                cluster,
                kind,
                name,
                ..
            } => FactAnswer::Object {
                object: match kind.as_str() {
                    "Service" if name == GATEWAY => self.gateway_ip.get(cluster).map(|ip| {
                        json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
                    }),
                    "Namespace" => self.deployed.as_ref().map(|_| json!({"metadata": {"name": name}})),
                    "ConfigMap" => self
                        .deployed
                        .as_ref()
                        .and_then(|d| d.get(cluster))
                        .map(|m| json!({"data": {MAPPING_KEY: m, "dnat-agent.sh": AGENT_SCRIPT}})),
                    "DaemonSet" => self.deployed.as_ref().map(|_| {
                        let ready = if self.ds_ready { 3 } else { 2 };
                        json!({
                            "metadata": {"generation": 2},
                            "spec": {"template": {"spec": {"containers": [
                                {"name": "dnat-agent", "image": "harbor.local/mirror/debian-iptables:old"}]}}},
                            "status": {"observedGeneration": 2, "desiredNumberScheduled": 3,
                                "updatedNumberScheduled": 3, "numberReady": ready, "numberAvailable": ready}
                        })
                    }),
                    _ => None,
                },
            },
            FactQuery::Objects { kind, .. } if kind == "Node" => FactAnswer::Objects {
                items: (0..3)
                    .map(|i| {
                        json!({"metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/os": "linux"}},
                            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.0.0.{i}")}]}})
                    })
                    .collect(),
            },
            FactQuery::Objects { kind, .. } if kind == "Pod" => FactAnswer::Objects {
                items: match self.deployed {
                    None => vec![],
                    Some(_) => (0..3)
                        .map(|i| {
                            let ready = self.pods_ready || i != 2;
                            json!({"metadata": {"name": format!("kpaas-mesh-dnat-{i}")},
                                "spec": {"nodeName": format!("node-{i}")},
                                "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
                        })
                        .collect(),
                },
            },
            other => FactAnswer::Error {
                message: format!("unexpected query {other:?}"),
            },
        }
    }
}

/// Runs the conversation the host has with the plugin, answering from `world`.
fn converse(r: StageRequest, world: &World) -> Result<Plan, String> {
    let world = world.clone();
    testkit::converse(
        &NetfixBaremetal,
        r,
        &testkit::World::from_fn(move |q| Some(world.answer(q))),
    )
}

fn applied<'a>(p: &'a Plan, cluster: &str, kind: &str) -> &'a Value {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::Apply {
                cluster: c,
                manifest,
                ..
            } if c == cluster && manifest["kind"] == kind => Some(manifest),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {kind} applied on {cluster}: {:#?}", p.actions))
}

fn mapping_of(p: &Plan, cluster: &str) -> String {
    applied(p, cluster, "ConfigMap")["data"][MAPPING_KEY]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn up_asks_for_the_gateways_then_plans_the_agent_on_every_cluster() {
    let r = request(Operation::Up, 2, publics(2));
    let StageResponse::NeedFacts { queries } = NetfixBaremetal.run(r.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(
        queries,
        vec![gateway_query("cluster1"), gateway_query("cluster2")]
    );

    let p = converse(r, &World::fresh(2)).unwrap();
    for c in ["cluster1", "cluster2"] {
        let kinds: Vec<String> = p
            .actions
            .iter()
            .filter(|a| match a {
                Action::Apply { cluster, .. } | Action::Wait { cluster, .. } => cluster == c,
                _ => false,
            })
            .map(|a| match a {
                Action::Apply { manifest, .. } => manifest["kind"].as_str().unwrap().to_string(),
                Action::Wait { condition, .. } => format!("{condition:?}"),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet",
                "DaemonSetReady { namespace: \"kpaas-mesh-netfix\", name: \"kpaas-mesh-dnat\" }"
            ],
            "{c}"
        );
    }
    // Each source DNATs its peer only, the guide's PREROUTING rule.
    let m1 = mapping_of(&p, "cluster1");
    let rules = parse_mapping(&m1).unwrap();
    assert_eq!(
        rules,
        vec![DnatRule {
            chain: Chain::Prerouting,
            peer: "cluster2".into(),
            private: "172.22.0.10".parse().unwrap(),
            public: "203.0.113.2".parse().unwrap(),
        }]
    );
    assert_eq!(
        rules[0].command(),
        "iptables -t nat -I PREROUTING -d 172.22.0.10/32 -m comment --comment \"kpaas-mesh netfix peer=cluster2\" \
         -j DNAT --to-destination 203.0.113.2"
    );
    assert!(mapping_of(&p, "cluster2").contains("\nPREROUTING cluster1 172.21.0.10 203.0.113.1\n"));
    // The links keep the private addresses.
    let out: NetfixOutputs = serde_json::from_value(p.outputs.clone()).unwrap();
    assert_eq!(
        out.route("cluster1", "cluster2").unwrap().address,
        "172.22.0.10"
    );
    assert_eq!(
        out.route("cluster2", "cluster1").unwrap().address,
        "172.21.0.10"
    );
    assert_eq!(out.routes.len(), 2);
    assert!(
        p.notes.iter().any(|n| n
            == "cluster1: DNAT on every node: PREROUTING 172.22.0.10 → 203.0.113.2 (cluster2)"),
        "{:?}",
        p.notes
    );
}

#[test]
fn three_clusters_get_a_full_mesh_of_rules() {
    let p = converse(request(Operation::Up, 3, publics(3)), &World::fresh(3)).unwrap();
    let m2 = parse_mapping(&mapping_of(&p, "cluster2")).unwrap();
    let peers: Vec<&str> = m2.iter().map(|r| r.peer.as_str()).collect();
    assert_eq!(peers, ["cluster1", "cluster3"]);
    let out: NetfixOutputs = serde_json::from_value(p.outputs).unwrap();
    assert_eq!(out.routes.len(), 6);
}

#[test]
fn daemonset_is_privileged_host_network_on_every_node_and_mounts_the_configmap() {
    let p = converse(request(Operation::Up, 2, publics(2)), &World::fresh(2)).unwrap();
    let ds = applied(&p, "cluster1", "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["image"], DEFAULT_IMAGE);
    assert_eq!(
        c["command"],
        json!(["/bin/sh", "/etc/kpaas-mesh/dnat-agent.sh", "run"])
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], agent::NAME);
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    let ns = applied(&p, "cluster1", "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    // The ConfigMap ships the very script of agent/dnat-agent.sh.
    let cm = applied(&p, "cluster1", "ConfigMap");
    assert_eq!(cm["data"]["dnat-agent.sh"], AGENT_SCRIPT);
    assert!(AGENT_SCRIPT.contains(&format!("TAG=\"{RULE_TAG}\"")));
}

#[test]
fn the_checksum_follows_the_configmap_so_a_changed_mapping_rolls_the_pods() {
    let world = World::fresh(2);
    let a = converse(request(Operation::Up, 2, publics(2)), &world).unwrap();
    let again = converse(request(Operation::Up, 2, publics(2)), &world).unwrap();
    assert_eq!(a.actions, again.actions, "plans are deterministic");
    let sum = |p: &Plan, c: &str| {
        applied(p, c, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
            [CHECKSUM_ANNOTATION]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        sum(&a, "cluster1"),
        checksum(&[&mapping_of(&a, "cluster1"), AGENT_SCRIPT])
    );
    let mut extra = publics(2);
    extra["gateway_public"]["cluster2"] = json!("203.0.113.99");
    let b = converse(request(Operation::Up, 2, extra), &world).unwrap();
    assert_ne!(
        sum(&a, "cluster1"),
        sum(&b, "cluster1"),
        "cluster1 DNATs cluster2: rolled"
    );
    assert_eq!(
        sum(&a, "cluster2"),
        sum(&b, "cluster2"),
        "cluster2's mapping did not change"
    );
    let mut moved = world.clone();
    moved
        .gateway_ip
        .insert("cluster2".into(), "172.22.0.11".into());
    let c = converse(request(Operation::Up, 2, publics(2)), &moved).unwrap();
    assert_ne!(
        sum(&a, "cluster1"),
        sum(&c, "cluster1"),
        "a new MetalLB address rolls too"
    );
}

#[test]
fn options_image_registry_output_chain_and_resync() {
    let mut extra = publics(2);
    extra["output_chain"] = json!(true);
    extra["resync_secs"] = json!("30");
    let mut r = request(Operation::Up, 2, extra.clone());
    r.settings["registry"] = json!("harbor.k-paas.io/mirror");
    let p = converse(r, &World::fresh(2)).unwrap();
    let c = &applied(&p, "cluster1", "DaemonSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "harbor.k-paas.io/mirror/debian-iptables:bookworm-v1.0.0"
    );
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "KPAAS_MESH_RESYNC", "value": "30"}))
    );
    let chains: Vec<Chain> = parse_mapping(&mapping_of(&p, "cluster1"))
        .unwrap()
        .into_iter()
        .map(|r| r.chain)
        .collect();
    assert_eq!(chains, [Chain::Prerouting, Chain::Output]);

    extra["image"] = json!("quay.io/me/iptables:1.8");
    let mut r = request(Operation::Up, 2, extra.clone());
    r.settings["registry"] = json!("harbor.k-paas.io/mirror/");
    let p = converse(r, &World::fresh(2)).unwrap();
    assert_eq!(
        applied(&p, "cluster2", "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"],
        "harbor.k-paas.io/mirror/iptables:1.8"
    );
    let p = converse(request(Operation::Up, 2, extra), &World::fresh(2)).unwrap();
    assert_eq!(
        applied(&p, "cluster2", "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/me/iptables:1.8"
    );
}

#[test]
fn bad_options_are_one_line_errors_naming_the_option() {
    let cases = [
        (
            json!({"gateway_public": {"cluster2": "gw.example.com"}}),
            "--gateway-public cluster2=gw.example.com: not an IPv4 address",
        ),
        (
            json!({"gateway_public": {"cluster2": "2001:db8::1"}}),
            "--gateway-public cluster2=2001:db8::1: not an IPv4 address",
        ),
        (
            json!({"output_chain": "yes"}),
            "--netfix-opt output-chain=yes: want true or false",
        ),
        (
            json!({"cleanup_wait": 1}),
            "--netfix-opt cleanup-wait=1: want true or false",
        ),
        (
            json!({"resync_secs": "0"}),
            "--netfix-opt resync-secs=0: want a number of seconds from 1 to 86400",
        ),
        (
            json!({"resync_secs": "often"}),
            "--netfix-opt resync-secs=often: want a number",
        ),
        (
            json!({"image": ""}),
            "--netfix-opt image=: not an image reference",
        ),
        (
            json!({"image": "a b"}),
            "--netfix-opt image=a b: not an image reference",
        ),
    ];
    for (extra, want) in cases {
        let err = NetfixBaremetal
            .run(request(Operation::Up, 2, extra.clone()))
            .unwrap_err()
            .message;
        assert!(
            err.starts_with(&format!("netfix-baremetal: {want}")),
            "{extra}: {err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn unknown_options_are_refused_naming_the_plugin() {
    let mut extra = publics(2);
    extra["imgae"] = json!("x");
    let err = converse(request(Operation::Up, 2, extra), &World::fresh(2)).unwrap_err();
    assert_eq!(
        err,
        "netfix-baremetal: option 'imgae' is unknown (options: gateway_public, image, output_chain, resync_secs, \
         cleanup_wait)"
    );
}

#[test]
fn a_missing_public_address_names_the_flag() {
    let err = converse(
        request(
            Operation::Up,
            2,
            json!({"gateway_public": {"cluster1": "203.0.113.1"}}),
        ),
        &World::fresh(2),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "no public gateway address for cluster2: give it with --gateway-public cluster2=ADDR \
         (the address the peers' nodes DNAT cluster2's gateway to)"
    );
    let err = converse(request(Operation::Up, 3, json!(null)), &World::fresh(3)).unwrap_err();
    assert!(
        err.contains("for cluster1, cluster2, cluster3: give it with --gateway-public cluster1=ADDR --gateway-public cluster2=ADDR"),
        "{err}"
    );
}

#[test]
fn gateway_problems_are_clear_errors() {
    let mut w = World::fresh(2);
    w.gateway_ip.remove("cluster2");
    let err = converse(request(Operation::Up, 2, publics(2)), &w).unwrap_err();
    assert!(
        err.starts_with("the gateway Service linkerd-multicluster/linkerd-gateway of cluster2 has no LoadBalancer IPv4 address yet"),
        "{err}"
    );
    let mut w = World::fresh(2);
    w.gateway_ip.insert("cluster2".into(), "172.21.0.10".into());
    let err = converse(request(Operation::Up, 2, publics(2)), &w).unwrap_err();
    assert!(
        err.contains("cluster1 and cluster2 both have gateway address 172.21.0.10"),
        "{err}"
    );

    // A dry run before the multicluster extension is up: a note, no actions; a missing flag is still an error.
    let mut w = World::fresh(2);
    w.gateway_ip.clear();
    let mut r = request(Operation::Up, 2, publics(2));
    r.dry_run = true;
    let p = converse(r.clone(), &w).unwrap();
    assert!(p.actions.is_empty() && p.outputs.is_null());
    assert!(
        p.notes[0].starts_with(
            "the DNAT agents are planned once every gateway has a LoadBalancer address"
        ),
        "{:?}",
        p.notes
    );
    r.options = json!(null);
    let err = converse(r, &w).unwrap_err();
    assert!(err.contains("--gateway-public cluster1=ADDR"), "{err}");

    // A hostname-only LoadBalancer cannot be DNATed.
    let mut r = request(Operation::Up, 2, publics(2));
    for c in ["cluster1", "cluster2"] {
        r.facts.push(Fact {
            query: gateway_query(c),
            answer: FactAnswer::Object {
                object: Some(json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}})),
            },
        });
    }
    let err = NetfixBaremetal.run(r).unwrap_err().message;
    assert!(
        err.contains("has a hostname (lb.example.com), not an IP"),
        "{err}"
    );

    // An unreachable cluster: the host's message comes through.
    let mut r = request(Operation::Up, 2, publics(2));
    for c in ["cluster1", "cluster2"] {
        r.facts.push(Fact {
            query: gateway_query(c),
            answer: FactAnswer::Error {
                message: format!("cluster {c}: connection refused"),
            },
        });
    }
    assert_eq!(
        NetfixBaremetal.run(r).unwrap_err().message,
        "cluster cluster1: connection refused"
    );
}

#[test]
fn link_gives_routes_only_and_needs_no_public_address() {
    let p = converse(request(Operation::Link, 2, json!(null)), &World::fresh(2)).unwrap();
    assert!(p.actions.is_empty());
    let out: NetfixOutputs = serde_json::from_value(p.outputs).unwrap();
    assert_eq!(
        out.route("cluster1", "cluster2").unwrap().address,
        "172.22.0.10"
    );
    assert_eq!(out.route("cluster1", "cluster2").unwrap().port, None);
    let p = converse(request(Operation::Unlink, 2, json!(null)), &World::fresh(2)).unwrap();
    assert_eq!(p, Plan::default());
}

fn deployed_world(n: usize) -> World {
    let up = converse(request(Operation::Up, n, publics(n)), &World::fresh(n)).unwrap();
    let mut w = World::fresh(n);
    w.deployed = Some(
        (1..=n)
            .map(|i| {
                let c = format!("cluster{i}");
                let m = mapping_of(&up, &c);
                (c, m)
            })
            .collect(),
    );
    w
}

#[test]
fn down_rolls_out_the_empty_mapping_waits_then_deletes_everything() {
    let r = request(Operation::Down, 2, json!(null));
    let StageResponse::NeedFacts { queries } = NetfixBaremetal.run(r.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(queries.len(), 6, "{queries:?}");
    assert!(
        queries
            .iter()
            .all(|q| !matches!(q, FactQuery::Object { kind, .. } if kind == "Service"))
    );

    let p = converse(r, &deployed_world(2)).unwrap();
    let steps: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply {
                cluster, manifest, ..
            } if cluster == "cluster2" => {
                Some(format!("apply {}", manifest["kind"].as_str().unwrap()))
            }
            Action::Wait {
                cluster, condition, ..
            } if cluster == "cluster2" => Some(match condition {
                WaitCondition::DaemonSetReady { .. } => "wait ready".to_string(),
                WaitCondition::Deleted { kind, .. } => format!("wait {kind} gone"),
                other => format!("{other:?}"),
            }),
            Action::Delete { cluster, kind, .. } if cluster == "cluster2" => {
                Some(format!("delete {kind}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "apply Namespace",
            "apply ServiceAccount",
            "apply ConfigMap",
            "apply DaemonSet",
            "wait ready",
            "delete DaemonSet",
            "delete ConfigMap",
            "delete ServiceAccount",
            "delete Namespace",
            "wait Namespace gone"
        ]
    );
    // The empty mapping, and the image the DaemonSet runs now (no image flag needed for down).
    assert!(
        parse_mapping(&mapping_of(&p, "cluster1"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        applied(&p, "cluster1", "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"],
        "harbor.local/mirror/debian-iptables:old"
    );

    // Nothing deployed: nothing to do.
    let p = converse(request(Operation::Down, 2, json!(null)), &World::fresh(2)).unwrap();
    assert!(p.actions.is_empty(), "{:?}", p.actions);

    // cleanup_wait=false: straight to the deletes.
    let p = converse(
        request(Operation::Down, 2, json!({"cleanup_wait": "false"})),
        &deployed_world(2),
    )
    .unwrap();
    assert!(p.actions.iter().all(|a| !matches!(a, Action::Apply { .. })));
    assert_eq!(p.actions.len(), 10);
    assert!(p.notes[0].starts_with("cleanup_wait=false"));
}

#[test]
fn status_lists_the_deployed_rules_and_every_node_agent() {
    let p = converse(
        request(Operation::Status, 2, json!(null)),
        &deployed_world(2),
    )
    .unwrap();
    assert!(p.actions.is_empty());
    let rules = &p.tables[0];
    assert_eq!(
        rules.rows[0],
        [
            "cluster1",
            "PREROUTING",
            "cluster2",
            "172.22.0.10",
            "203.0.113.2",
            "3/3 ready, 3 updated"
        ]
    );
    let agents = &p.tables[1];
    assert_eq!(agents.rows.len(), 6);
    assert_eq!(
        agents.rows[0],
        ["cluster1", "node-0", "10.0.0.0", "kpaas-mesh-dnat-0 ready"]
    );

    let p = converse(request(Operation::Status, 2, json!(null)), &World::fresh(2)).unwrap();
    assert_eq!(
        p.tables[0].rows[0],
        ["cluster1", "-", "-", "-", "-", "not deployed"]
    );
    assert_eq!(p.tables[1].rows[0][3], "none");
}

fn check(world: &World, extra: Value) -> Vec<CheckResult> {
    converse(request(Operation::Check, 2, extra), world)
        .unwrap()
        .checks
}

#[test]
fn check_passes_on_a_deployed_mesh_even_without_the_flags() {
    for extra in [json!(null), publics(2)] {
        let checks = check(&deployed_world(2), extra);
        assert_eq!(checks.len(), 3);
        for c in &checks {
            assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
            assert_eq!(c.group, "kpaas-mesh netfix (baremetal)");
        }
        assert_eq!(
            checks[0].items[0],
            "cluster1: 3/3 ready, 3 updated (3 linux nodes)"
        );
        assert_eq!(
            checks[1].items,
            ["cluster1: 203.0.113.1", "cluster2: 203.0.113.2"]
        );
    }
}

#[test]
fn check_fails_on_what_is_wrong_and_says_so() {
    // Not deployed: agents, public addresses and mappings all fail.
    let checks = check(&World::fresh(2), json!(null));
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Fail),
        "{checks:?}"
    );
    assert!(
        checks[0]
            .detail
            .contains("cluster1: the DNAT agent is not deployed")
    );
    assert!(
        checks[1]
            .detail
            .contains("cluster2: no public gateway address (--gateway-public cluster2=ADDR)")
    );

    // One agent not ready.
    let mut w = deployed_world(2);
    w.ds_ready = false;
    w.pods_ready = false;
    let checks = check(&w, json!(null));
    assert_eq!(checks[0].status, CheckStatus::Fail);
    assert!(
        checks[0]
            .detail
            .contains("cluster1: 2/3 ready, 3 updated on 3 linux nodes; no ready agent on node-2"),
        "{}",
        checks[0].detail
    );
    assert_eq!(checks[2].status, CheckStatus::Ok);

    // The gateway moved to a new MetalLB address: the deployed mapping is stale.
    let mut w = deployed_world(2);
    w.gateway_ip.insert("cluster2".into(), "172.22.0.11".into());
    let checks = check(&w, json!(null));
    assert_eq!(checks[2].status, CheckStatus::Fail);
    assert_eq!(
        checks[2].detail,
        "cluster1: missing PREROUTING 172.22.0.11 → 203.0.113.2 (cluster2); stale PREROUTING 172.22.0.10 → 203.0.113.2 (cluster2)"
    );
    assert!(checks[2].hint.contains("up --netfix baremetal"));

    // A new public address given on the command line, not rolled out yet.
    let mut extra = publics(2);
    extra["gateway_public"]["cluster1"] = json!("203.0.113.50");
    let checks = check(&deployed_world(2), extra);
    assert_eq!(checks[2].status, CheckStatus::Fail);
    assert!(
        checks[2]
            .detail
            .starts_with("cluster2: missing PREROUTING 172.21.0.10 → 203.0.113.50 (cluster1)"),
        "{}",
        checks[2].detail
    );

    // output_chain asked for but not deployed.
    let mut extra = publics(2);
    extra["output_chain"] = json!(true);
    let checks = check(&deployed_world(2), extra);
    assert!(
        checks[2]
            .detail
            .contains("missing OUTPUT 172.22.0.10 → 203.0.113.2 (cluster2)"),
        "{}",
        checks[2].detail
    );
}

#[test]
fn the_plugin_answers_through_the_json_path_the_host_uses() {
    let r = request(Operation::Up, 2, publics(2));
    let json = serde_json::to_string(&r).unwrap();
    let out = kpaas_mesh_plugin_api::export::call_json(&NetfixBaremetal, &json).unwrap();
    let resp: StageResponse = serde_json::from_str(&out).unwrap();
    assert!(matches!(resp, StageResponse::NeedFacts { .. }));
}
