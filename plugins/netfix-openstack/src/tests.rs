//! Unit tests of the plugin's pure parts: options, facts, routes and outputs, and the
//! conversation up to the point where it would call the cloud (a clouds.yaml path that does not
//! exist stops it there with a known error, without reading the process environment).

use super::*;
use kpaas_mesh_plugin_api::{CheckStatus, Fact, FactAnswer};

fn request(op: Operation, extra: Value) -> StageRequest {
    let mut r = StageRequest::new(
        op,
        ["cluster1", "cluster2"]
            .map(|n| ClusterRef {
                name: n.into(),
                context: n.into(),
            })
            .to_vec(),
    );
    r.settings = serde_json::to_value(MeshSettings::default()).unwrap();
    r.options = extra;
    r
}

/// No cloud reachable: credentials from a clouds.yaml that is not there.
fn nowhere() -> Value {
    json!({"os_cloud": "kpaas", "clouds_yaml": "/nonexistent/clouds.yaml"})
}

const NO_CLOUD: &str = "cloud 'kpaas': no clouds.yaml found (looked at /nonexistent/clouds.yaml)";

fn gateway(ip: Option<&str>) -> Value {
    json!({"status": {"loadBalancer": {"ingress": ip.map(|i| vec![json!({"ip": i})]).unwrap_or_default()}}})
}

fn node(name: &str, ip: &str, provider: Option<&str>) -> Value {
    let mut n = json!({"metadata": {"name": name},
        "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
    if let Some(p) = provider {
        n["spec"] = json!({"providerID": p});
    }
    n
}

/// Answers every query: cluster1 gateway .200 with two nodes, cluster2 per `c2_ip`.
fn answer(r: &mut StageRequest, c2_ip: Option<&str>) {
    let StageResponse::NeedFacts { queries } = NetfixOpenstack.run(r.clone()).unwrap() else {
        panic!("expected NeedFacts")
    };
    for q in queries {
        let a = match &q {
            FactQuery::Object { cluster, .. } => FactAnswer::Object {
                object: Some(gateway(if cluster == "cluster1" {
                    Some("172.21.0.200")
                } else {
                    c2_ip
                })),
            },
            FactQuery::Objects { cluster, .. } => FactAnswer::Objects {
                items: vec![
                    node(
                        &format!("{cluster}-n1"),
                        "10.0.0.1",
                        Some("openstack:///srv-1"),
                    ),
                    node(&format!("{cluster}-n2"), "10.0.0.2", None),
                ],
            },
            other => panic!("unexpected {other:?}"),
        };
        r.facts.push(Fact {
            query: q,
            answer: a,
        });
    }
}

#[test]
fn options_defaults_modes_and_errors() {
    let o = parse_options(&Value::Null).unwrap();
    assert_eq!(o.mode, Mode::GatewayAddress);
    assert_eq!(o.os_cloud, None);
    let o = parse_options(&json!({
        "mode": "dnat", "os_cloud": "kpaas", "external_network": "public",
        "node_subnet": "nodes", "clouds_yaml": "/c.yaml", "image": "x"
    }))
    .unwrap();
    assert_eq!(o.mode, Mode::Dnat);
    assert_eq!(o.external_network.as_deref(), Some("public"));
    assert_eq!(o.node_subnet.as_deref(), Some("nodes"));
    assert_eq!(o.clouds_yaml.as_deref(), Some("/c.yaml"));
    assert_eq!(o.dnat, *json!({"image": "x"}).as_object().unwrap());
    assert!(o.firewall);
    assert_eq!(o.firewall_ports, [4143, 4191, 5000]);
    assert_eq!(o.firewall_sources, None);
    assert_eq!(
        parse_options(&json!({"mode": "gateway_address"}))
            .unwrap()
            .mode,
        Mode::GatewayAddress
    );
    let e = parse_options(&json!({"mode": "nat"})).unwrap_err();
    assert!(
        e.starts_with("netfix-openstack: option mode=nat: want gateway-address"),
        "{e}"
    );
    let e = parse_options(&json!({"external_network": " "})).unwrap_err();
    assert_eq!(e, "netfix-openstack: option external_network: empty");
    assert!(parse_options(&json!([1])).is_err());
}

#[test]
fn provider_ids() {
    assert_eq!(
        server_id("openstack:///0d2f4a3e-1111-4222-8333-444455556666").as_deref(),
        Some("0d2f4a3e-1111-4222-8333-444455556666")
    );
    assert_eq!(
        server_id("openstack://RegionOne/abc").as_deref(),
        Some("abc")
    );
    assert_eq!(server_id("aws:///us-east-1a/i-123"), None);
    assert_eq!(server_id("openstack:///"), None);
}

#[test]
fn asks_for_gateway_and_nodes_once_each_then_reads_them() {
    let mut r = request(Operation::Up, nowhere());
    let StageResponse::NeedFacts { queries } = NetfixOpenstack.run(r.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(queries.len(), 4);
    assert!(queries.contains(&gateway_query("cluster2")));
    assert!(queries.contains(&nodes_query("cluster1")));
    answer(&mut r, Some("172.22.0.200"));
    let c = cluster_facts(&r, "cluster1").unwrap();
    assert_eq!(c.gateway_ip, "172.21.0.200");
    assert_eq!(
        c.nodes,
        vec![
            Node {
                name: "cluster1-n1".into(),
                internal_ips: vec!["10.0.0.1".into()],
                server_id: Some("srv-1".into()),
            },
            Node {
                name: "cluster1-n2".into(),
                internal_ips: vec!["10.0.0.2".into()],
                server_id: None,
            },
        ]
    );
    // With every fact answered it goes to the cloud (here: no credentials).
    assert_eq!(NetfixOpenstack.run(r).unwrap_err().message, NO_CLOUD);

    // dnat status asks for the agent's facts too, still each query once.
    let r = request(Operation::Check, json!({"mode": "dnat"}));
    let StageResponse::NeedFacts { queries } = NetfixOpenstack.run(r).unwrap() else {
        panic!()
    };
    for (i, q) in queries.iter().enumerate() {
        assert!(!queries[i + 1..].contains(q), "asked twice: {q:?}");
    }
    assert!(
        queries
            .iter()
            .any(|q| matches!(q, FactQuery::Objects { kind, .. } if kind == "Pod"))
    );
}

#[test]
fn a_gateway_without_address_fails_before_any_cloud_call() {
    let mut r = request(Operation::Up, nowhere());
    answer(&mut r, None);
    let e = NetfixOpenstack.run(r).unwrap_err().message;
    assert_eq!(
        e,
        "cluster2: the Service linkerd-multicluster/linkerd-gateway has no LoadBalancer IPv4 \
         address yet (is MetalLB running?)"
    );
    // A dry run (the host's pre-flight of `up`) may come before the gateway has an address: it
    // goes on to check the credentials.
    let mut r = request(Operation::Up, nowhere());
    r.dry_run = true;
    answer(&mut r, None);
    assert_eq!(NetfixOpenstack.run(r).unwrap_err().message, NO_CLOUD);

    let mut r = request(Operation::Up, nowhere());
    let StageResponse::NeedFacts { queries } = NetfixOpenstack.run(r.clone()).unwrap() else {
        panic!()
    };
    for q in queries {
        r.facts.push(Fact {
            query: q,
            answer: FactAnswer::Error {
                message: "connection refused".into(),
            },
        });
    }
    let e = NetfixOpenstack.run(r).unwrap_err().message;
    assert_eq!(e, "cluster1: connection refused");
}

#[test]
fn down_needs_no_cluster_facts_and_check_reports_instead_of_failing() {
    // down asks only whether a DNAT agent is there, then goes to the cloud: what it made is
    // found by tag.
    let down_with = |agent: bool, extra: Value| {
        let mut r = request(Operation::Down, extra);
        let StageResponse::NeedFacts { queries } = NetfixOpenstack.run(r.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(queries.len(), 6, "{queries:?}");
        for q in queries {
            let FactQuery::Object { name, kind, .. } = &q else {
                panic!("{q:?}")
            };
            let object =
                (agent && kind == "Namespace").then(|| json!({"metadata": {"name": name}}));
            r.facts.push(Fact {
                query: q,
                answer: FactAnswer::Object { object },
            });
        }
        NetfixOpenstack.run(r)
    };
    assert_eq!(down_with(false, nowhere()).unwrap_err().message, NO_CLOUD);
    // gateway-address mode does not leave DNAT agents behind: refused before the cloud.
    let e = down_with(true, nowhere()).unwrap_err().message;
    assert!(
        e.starts_with("cluster1, cluster2 run(s) DNAT agents (namespace kpaas-mesh-netfix)")
            && e.contains("mode=dnat"),
        "{e}"
    );
    // dnat mode removes them (after the cloud: here the credentials stop it).
    let mut extra = nowhere();
    extra["mode"] = json!("dnat");
    assert_eq!(down_with(true, extra).unwrap_err().message, NO_CLOUD);
    // unlink is not this plugin's business.
    let r = request(Operation::Unlink, nowhere());
    assert!(
        matches!(NetfixOpenstack.run(r).unwrap(), StageResponse::Plan(p) if p == Plan::default())
    );
    // check turns a credentials problem into a failed check.
    let mut r = request(Operation::Check, nowhere());
    answer(&mut r, Some("172.22.0.200"));
    let StageResponse::Plan(p) = NetfixOpenstack.run(r).unwrap() else {
        panic!()
    };
    assert_eq!(p.checks.len(), 1);
    assert_eq!(p.checks[0].status, CheckStatus::Fail);
    assert_eq!(p.checks[0].group, CHECK_GROUP);
    assert!(
        p.checks[0].detail.contains("no clouds.yaml found"),
        "{:?}",
        p.checks[0]
    );
    // status: a note instead.
    let mut r = request(Operation::Status, nowhere());
    answer(&mut r, Some("172.22.0.200"));
    let StageResponse::Plan(p) = NetfixOpenstack.run(r).unwrap() else {
        panic!()
    };
    assert!(
        p.notes.iter().any(|n| n.contains("no clouds.yaml found")),
        "{:?}",
        p.notes
    );
}

#[test]
fn routes_and_outputs_by_mode() {
    let clusters: Vec<ClusterRef> = ["a", "b", "c"]
        .map(|n| ClusterRef {
            name: n.into(),
            context: n.into(),
        })
        .to_vec();
    let private: BTreeMap<String, String> = [
        ("a", "10.1.0.200"),
        ("b", "10.2.0.200"),
        ("c", "10.3.0.200"),
    ]
    .map(|(c, ip)| (c.to_string(), ip.to_string()))
    .into();
    let public: BTreeMap<String, Option<String>> = [
        ("a", Some("203.0.113.1")),
        ("b", Some("203.0.113.2")),
        ("c", None),
    ]
    .map(|(c, ip)| (c.to_string(), ip.map(String::from)))
    .into();
    let g = routes(&clusters, Mode::GatewayAddress, &private, &public);
    assert_eq!(g.routes.len(), 6);
    assert_eq!(g.route("a", "b").unwrap().address, "203.0.113.2");
    assert_eq!(g.route("b", "a").unwrap().address, "203.0.113.1");
    assert_eq!(
        g.route("a", "c").unwrap().address,
        "(floating IP of c: allocated by up)"
    );
    let d = routes(&clusters, Mode::Dnat, &private, &public);
    assert_eq!(d.route("a", "b").unwrap().address, "10.2.0.200");
    assert!(d.routes.iter().all(|r| r.port.is_none()));
    let out = outputs(&g, Mode::GatewayAddress, &private, &public);
    // The link step reads NetfixOutputs from it; the extra part is for people and other stages.
    let back: NetfixOutputs = serde_json::from_value(out.clone()).unwrap();
    assert_eq!(back, g);
    assert_eq!(out["openstack"]["mode"], "gateway-address");
    assert_eq!(
        out["openstack"]["gateways"]["a"],
        json!({"private": "10.1.0.200", "floating": "203.0.113.1"})
    );
    assert_eq!(out["openstack"]["gateways"]["c"]["floating"], Value::Null);
}

#[test]
fn options_are_typed_and_unknown_ones_refused() {
    let e = parse_options(&json!({"mode": "dnat", "colour": "red"})).unwrap_err();
    assert!(
        e.starts_with("netfix-openstack: option 'colour' is unknown (options: "),
        "{e}"
    );
    let e = parse_options(&json!({"gateway_public": {"a": "1.2.3.4"}})).unwrap_err();
    assert!(e.contains("--gateway-public does not apply here"), "{e}");
    // Lists come as JSON arrays (--set) or one comma-separated text (--netfix-opt).
    let o = parse_options(&json!({"firewall_ports": ["4143", "4191"],
        "firewall_sources": "10.1.2.3, 192.168.7.9/16", "firewall": "false"}))
    .unwrap();
    assert_eq!(o.firewall_ports, [4143, 4191]);
    assert_eq!(
        o.firewall_sources.unwrap(),
        ["10.1.2.3/32", "192.168.0.0/16"]
    );
    assert!(!o.firewall);
    for (opts, want) in [
        (
            json!({"firewall_ports": "4143,http"}),
            "netfix-openstack: option firewall_ports: 'http' is not a TCP port (1-65535)",
        ),
        (
            json!({"firewall_ports": []}),
            "netfix-openstack: option firewall_ports: empty (use firewall=false to open none)",
        ),
        (
            json!({"firewall_sources": ["10.0.0.0/33"]}),
            "netfix-openstack: option firewall_sources: '10.0.0.0/33' is not an IPv4 address or CIDR",
        ),
        (
            json!({"firewall": "yes"}),
            "netfix-openstack: option firewall=yes: want true or false",
        ),
    ] {
        assert_eq!(parse_options(&opts).unwrap_err(), want);
    }
    assert!(dnat::option_keys().contains(&"image"));
    assert!(!dnat::option_keys().contains(&"gateway_public"));
}
