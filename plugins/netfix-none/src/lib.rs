//! kpaas-mesh netfix plugin **netfix-none**: for clusters whose gateway LoadBalancer
//! addresses are already reachable from each other (public clouds, one routed network), the
//! guide's section 3.5 is not needed: every link uses the target's LoadBalancer address as is.
//!
//! `check` warns when a gateway address is private (RFC 1918 / RFC 6598) while the clusters
//! are not declared to share a network (`same_network: true` in the plugin options), and
//! points to netfix-openstack and netfix-baremetal.

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::facts::gateway_query;
use kpaas_mesh_kit::{GatewayRoute, NetfixOutputs};
use kpaas_mesh_plugin_api::{
    CheckResult, CheckStatus, FactAnswer, FactQuery, Operation, Plan, PluginError, StagePlugin,
    StageRequest, StageResponse, Table,
};
use std::net::Ipv4Addr;

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "netfix-none",
    description: "gateways are reachable as they are: links use each LoadBalancer address unchanged",
    descriptor: descriptor,
    constructor: || Ok(NetfixNone),
}

pub const CHECK_GROUP: &str = "kpaas-mesh netfix (none)";

/// The netfix place and the option schema (kept in step with [`NoneOptions`]).
pub fn descriptor() -> kpaas_mesh_plugin_api::Descriptor {
    kpaas_mesh_kit::stages::netfix_descriptor().option(
        "same_network",
        kpaas_mesh_plugin_api::OptionKind::Bool,
        Some("false"),
        "the clusters share one network, so private gateway addresses are reachable",
    )
}

/// netfix-none's own options (`--set netfix.same_network=true`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoneOptions {
    /// The clusters share one network: private gateway addresses are fine.
    pub same_network: bool,
}

impl NoneOptions {
    pub fn parse(options: &serde_json::Value) -> Result<NoneOptions, String> {
        kpaas_mesh_kit::options::parse(
            "netfix-none",
            &kpaas_mesh_kit::options::names(&descriptor()),
            options,
        )
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetfixNone;

/// The gateway's LoadBalancer addresses (IPs, else hostnames).
fn addresses(req: &StageRequest, c: &str) -> Vec<String> {
    match req.fact(&gateway_query(c)) {
        Some(FactAnswer::Object { object: Some(svc) }) => {
            kpaas_mesh_kit::k8s::lb_ingress_addresses(svc)
        }
        _ => vec![],
    }
}

/// RFC 1918 private and RFC 6598 shared (carrier-grade NAT) IPv4 addresses.
pub fn is_private(addr: &str) -> bool {
    match addr.parse::<Ipv4Addr>() {
        Ok(ip) => ip.is_private() || (ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1])),
        Err(_) => false,
    }
}

/// The namespace netfix-baremetal (and netfix-openstack in dnat mode) keep their node agents
/// in. `down` with netfix-none finds nothing of its own to undo; if another netfix plugin's
/// agents are there, tearing down without it would leave DNAT rules on the nodes.
pub const DNAT_NAMESPACE: &str = "kpaas-mesh-netfix";

fn dnat_namespace_query(c: &str) -> FactQuery {
    FactQuery::Object {
        cluster: c.into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: DNAT_NAMESPACE.into(),
    }
}

fn down(req: &StageRequest) -> Result<StageResponse, PluginError> {
    let missing = req.missing(req.clusters.iter().map(|c| dnat_namespace_query(&c.name)));
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    let with_agents: Vec<&str> = req
        .clusters
        .iter()
        .filter(|c| {
            matches!(
                req.fact(&dnat_namespace_query(&c.name)),
                Some(FactAnswer::Object { object: Some(_) })
            )
        })
        .map(|c| c.name.as_str())
        .collect();
    if !with_agents.is_empty() {
        return Err(PluginError::new(format!(
            "{} run(s) DNAT agents (namespace {DNAT_NAMESPACE}) of another netfix plugin; run down with the \
             --netfix that set them up (baremetal, or openstack with mode=dnat) so their node rules are removed",
            with_agents.join(", ")
        )));
    }
    Ok(StageResponse::Plan(Plan::default()))
}

impl StagePlugin for NetfixNone {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let _settings: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("netfix-none: invalid settings ({e})"))?;
        if req.operation == Operation::Unlink {
            return Ok(StageResponse::Plan(Plan::default()));
        }
        if req.operation == Operation::Down {
            return down(&req);
        }
        let missing = req.missing(req.clusters.iter().map(|c| gateway_query(&c.name)));
        if !missing.is_empty() {
            return Ok(StageResponse::NeedFacts { queries: missing });
        }
        let mut plan = Plan::default();
        let mut out = NetfixOutputs::default();
        let mut table = Table {
            title: "gateway routes (netfix-none)".into(),
            columns: ["SOURCE", "TARGET", "ADDRESS"].map(String::from).to_vec(),
            rows: vec![],
        };
        for s in &req.clusters {
            for t in &req.clusters {
                if s.name == t.name {
                    continue;
                }
                let addrs = addresses(&req, &t.name);
                if addrs.is_empty() {
                    plan.notes.push(format!(
                        "{}: the gateway has no LoadBalancer address yet",
                        t.name
                    ));
                    continue;
                }
                let address = addrs.join(",");
                table
                    .rows
                    .push(vec![s.name.clone(), t.name.clone(), address.clone()]);
                out.routes.push(GatewayRoute {
                    source: s.name.clone(),
                    target: t.name.clone(),
                    address,
                    port: None,
                });
            }
        }
        match req.operation {
            Operation::Status => plan.tables.push(table),
            Operation::Check => {
                let same_network = NoneOptions::parse(&req.options)?.same_network;
                let private: Vec<String> = req
                    .clusters
                    .iter()
                    .flat_map(|c| {
                        addresses(&req, &c.name)
                            .into_iter()
                            .filter(|a| is_private(a))
                            .map(move |a| format!("{} ({a})", c.name))
                    })
                    .collect();
                plan.checks.push(CheckResult {
                    group: CHECK_GROUP.into(),
                    name: "gateway addresses are reachable from the peer clusters".into(),
                    status: if private.is_empty() || same_network { CheckStatus::Ok } else { CheckStatus::Warn },
                    detail: if private.is_empty() || same_network {
                        String::new()
                    } else {
                        format!(
                            "private gateway address on {}: peers in other networks cannot reach it; \
                             use --netfix openstack (floating IPs) or --netfix baremetal (DNAT), or set same_network if they share a network",
                            private.join(", ")
                        )
                    },
                    items: vec![],
                    hint: String::new(),
                });
            }
            _ => {}
        }
        plan.outputs = serde_json::to_value(out).map_err(|e| e.to_string())?;
        Ok(StageResponse::Plan(plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_kit::linkerd::MULTICLUSTER_NS;
    use kpaas_mesh_kit::testkit::{World, converse, request};
    use serde_json::json;

    /// The two gateways' LoadBalancer addresses.
    fn gateways(ips: [&str; 2]) -> World {
        let mut world = World::new();
        for (c, ip) in ["cluster1", "cluster2"].into_iter().zip(ips) {
            world.add_object(
                c,
                "v1",
                "Service",
                Some(MULTICLUSTER_NS),
                "linkerd-gateway",
                json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
            );
        }
        world
    }

    fn answered(op: Operation, ips: [&str; 2], extra: serde_json::Value) -> Plan {
        let mut r = request(op, 2);
        r.options = extra;
        converse(&NetfixNone, r, &gateways(ips)).unwrap()
    }

    #[test]
    fn routes_use_the_lb_addresses_as_they_are() {
        let p = answered(Operation::Up, ["192.168.11.1", "203.0.113.9"], json!(null));
        let out: NetfixOutputs = serde_json::from_value(p.outputs).unwrap();
        assert_eq!(
            out.route("cluster1", "cluster2").unwrap().address,
            "203.0.113.9"
        );
        assert_eq!(
            out.route("cluster2", "cluster1").unwrap().address,
            "192.168.11.1"
        );
        assert!(p.actions.is_empty());
    }

    #[test]
    fn check_warns_on_private_addresses_unless_one_network() {
        let p = answered(
            Operation::Check,
            ["192.168.11.1", "203.0.113.9"],
            json!(null),
        );
        assert_eq!(p.checks[0].status, CheckStatus::Warn);
        assert!(
            p.checks[0].detail.contains("cluster1 (192.168.11.1)"),
            "{}",
            p.checks[0].detail
        );
        assert!(p.checks[0].detail.contains("--netfix openstack"));
        let p = answered(
            Operation::Check,
            ["192.168.11.1", "10.0.0.1"],
            json!({"same_network": true}),
        );
        assert_eq!(p.checks[0].status, CheckStatus::Ok);
        let p = answered(
            Operation::Check,
            ["198.51.100.1", "203.0.113.9"],
            json!(null),
        );
        assert_eq!(p.checks[0].status, CheckStatus::Ok);
    }

    #[test]
    fn down_refuses_to_leave_another_plugins_agents_behind() {
        let r = request(Operation::Down, 2);
        let clean = converse(&NetfixNone, r.clone(), &World::new()).unwrap();
        assert!(clean.actions.is_empty());
        let mut world = World::new();
        world.add_object(
            "cluster2",
            "v1",
            "Namespace",
            None,
            DNAT_NAMESPACE,
            json!({}),
        );
        let err = converse(&NetfixNone, r, &world).unwrap_err();
        assert!(err.starts_with("cluster2 run(s) DNAT agents"), "{err}");
    }

    #[test]
    fn every_schema_option_is_read_and_others_are_refused() {
        for o in descriptor().options {
            let v = match o.kind {
                kpaas_mesh_plugin_api::OptionKind::Bool => json!(true),
                other => panic!("no test value for {other:?}"),
            };
            NoneOptions::parse(&json!({ o.name.clone(): v })).unwrap();
        }
        assert_eq!(
            NoneOptions::parse(&json!({"same_netwrok": true})).unwrap_err(),
            "netfix-none: option 'same_netwrok' is unknown (options: same_network)"
        );
        let e = NoneOptions::parse(&json!({"same_network": "maybe"})).unwrap_err();
        assert!(e.starts_with("netfix-none: option same_network: "), "{e}");
    }

    #[test]
    fn private_ranges() {
        for p in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "100.64.0.1",
        ] {
            assert!(is_private(p), "{p}");
        }
        for p in ["172.32.0.1", "8.8.8.8", "100.128.0.1", "gw.example.com"] {
            assert!(!is_private(p), "{p}");
        }
    }
}
