//! `status` and `check` of netfix-baremetal: what is deployed on each cluster (mapping, DaemonSet rollout, the
//! agent pod of every node) compared with what should be (the gateways' current private addresses and the public
//! ones from `--gateway-public`, or from the deployed mappings when the flag is not repeated).

use crate::agent::{self, live_mapping, rollout};
use crate::mapping::{DnatRule, DnatTarget, DnatTargets, parse_mapping, rules_for};
use crate::{AgentState, Options, agent_state, gateway_addresses, objects, routes as dnat_routes};
use kpaas_mesh_kit::NetfixOutputs;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_plugin_api::{CheckResult, ClusterRef, FactQuery, StageRequest, Table};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const CHECK_GROUP: &str = "kpaas-mesh netfix (baremetal)";

use kpaas_mesh_kit::facts::nodes_query;

fn pods_query(cluster: &str) -> FactQuery {
    FactQuery::Objects {
        cluster: cluster.into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(agent::NAMESPACE.into()),
        label_selector: Some(format!("app.kubernetes.io/name={}", agent::NAME)),
    }
}

/// The facts status/check need beyond the gateway and the agent objects.
pub fn queries(cluster: &str) -> Vec<FactQuery> {
    vec![nodes_query(cluster), pods_query(cluster)]
}

struct Node {
    name: String,
    internal_ip: String,
    linux: bool,
}

struct ClusterView {
    name: String,
    private: Vec<Ipv4Addr>,
    state: AgentState,
    /// The deployed mapping, or why it cannot be read.
    live: Result<Vec<DnatRule>, String>,
    nodes: Vec<Node>,
    pods: Vec<Value>,
}

impl ClusterView {
    /// The agent pod on `node`: (name, ready).
    fn pod_on(&self, node: &str) -> Option<(String, bool)> {
        self.pods
            .iter()
            .find(|p| p["spec"]["nodeName"] == node)
            .map(|p| {
                let ready = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    ready,
                )
            })
    }
}

pub struct Observed {
    clusters: Vec<ClusterRef>,
    views: Vec<ClusterView>,
    /// Public addresses: the options', else the deployed mappings'.
    public: BTreeMap<String, Ipv4Addr>,
    output_chain: bool,
}

impl Observed {
    pub fn read(req: &StageRequest, opts: &Options) -> Result<Self, String> {
        let mut views = Vec::new();
        for c in &req.clusters {
            let state = agent_state(req, &c.name)?;
            let live = match state.configmap.as_ref() {
                None => Ok(vec![]),
                Some(cm) => match live_mapping(cm) {
                    Some(text) => parse_mapping(text),
                    None => Err(format!("ConfigMap {} has no mapping", agent::NAME)),
                },
            };
            let nodes = objects(req, &nodes_query(&c.name))?
                .iter()
                .map(|n| Node {
                    name: n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    internal_ip: kpaas_mesh_kit::k8s::node_internal_ips(n).join(","),
                    linux: n["metadata"]["labels"]["kubernetes.io/os"] == "linux",
                })
                .collect();
            views.push(ClusterView {
                name: c.name.clone(),
                private: gateway_addresses(req, &c.name)?,
                state,
                live,
                nodes,
                pods: objects(req, &pods_query(&c.name))?,
            });
        }
        let mut public = opts.gateway_public.clone();
        let mut output_chain = opts.agent.output_chain;
        for v in &views {
            for r in v.live.iter().flatten() {
                public.entry(r.peer.clone()).or_insert(r.public);
                output_chain |= r.chain == crate::Chain::Output;
            }
        }
        Ok(Observed {
            clusters: req.clusters.clone(),
            views,
            public,
            output_chain,
        })
    }

    /// The targets whose private and public addresses are both known.
    fn targets(&self) -> DnatTargets {
        self.views
            .iter()
            .filter(|v| !v.private.is_empty())
            .filter_map(|v| {
                self.public.get(&v.name).map(|p| {
                    (
                        v.name.clone(),
                        DnatTarget {
                            private: v.private.clone(),
                            public: *p,
                        },
                    )
                })
            })
            .collect()
    }

    pub fn routes(&self) -> NetfixOutputs {
        let targets: DnatTargets = self
            .views
            .iter()
            .filter(|v| !v.private.is_empty())
            .map(|v| {
                (
                    v.name.clone(),
                    DnatTarget {
                        private: v.private.clone(),
                        public: self
                            .public
                            .get(&v.name)
                            .copied()
                            .unwrap_or(Ipv4Addr::UNSPECIFIED),
                    },
                )
            })
            .collect();
        dnat_routes(&self.clusters, &targets)
    }

    pub fn tables(&self) -> Vec<Table> {
        let mut rules = Table {
            title: "DNAT rules on every node (netfix-baremetal)".into(),
            columns: ["CLUSTER", "CHAIN", "PEER", "PRIVATE", "PUBLIC", "AGENTS"]
                .map(String::from)
                .to_vec(),
            rows: vec![],
        };
        let mut agents = Table {
            title: "DNAT agents (netfix-baremetal)".into(),
            columns: ["CLUSTER", "NODE", "INTERNAL-IP", "AGENT"]
                .map(String::from)
                .to_vec(),
            rows: vec![],
        };
        for v in &self.views {
            let words = match &v.state.daemonset {
                Some(ds) => rollout(ds).1,
                None => "not deployed".into(),
            };
            match &v.live {
                Ok(list) if !list.is_empty() => {
                    for r in list {
                        rules.rows.push(vec![
                            v.name.clone(),
                            r.chain.to_string(),
                            r.peer.clone(),
                            r.private.to_string(),
                            r.public.to_string(),
                            words.clone(),
                        ]);
                    }
                }
                Ok(_) => rules.rows.push(vec![
                    v.name.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    words.clone(),
                ]),
                Err(e) => rules.rows.push(vec![
                    v.name.clone(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                    format!("{words}; {e}"),
                ]),
            }
            for n in &v.nodes {
                let agent = match v.pod_on(&n.name) {
                    Some((pod, true)) => format!("{pod} ready"),
                    Some((pod, false)) => format!("{pod} not ready"),
                    None if !n.linux => "none (not a linux node)".into(),
                    None => "none".into(),
                };
                agents.rows.push(vec![
                    v.name.clone(),
                    n.name.clone(),
                    if n.internal_ip.is_empty() {
                        "-".into()
                    } else {
                        n.internal_ip.clone()
                    },
                    agent,
                ]);
            }
        }
        vec![rules, agents]
    }

    pub fn checks(&self) -> Vec<CheckResult> {
        vec![
            self.check_agents(),
            self.check_public(),
            self.check_mapping(),
        ]
    }

    fn check_agents(&self) -> CheckResult {
        let mut items = Vec::new();
        let mut bad = Vec::new();
        for v in &self.views {
            let Some(ds) = &v.state.daemonset else {
                bad.push(format!("{}: the DNAT agent is not deployed", v.name));
                continue;
            };
            let (ready, words, desired) = rollout(ds);
            let linux = v.nodes.iter().filter(|n| n.linux).count() as i64;
            let missing: Vec<&str> = v
                .nodes
                .iter()
                .filter(|n| n.linux && !matches!(v.pod_on(&n.name), Some((_, true))))
                .map(|n| n.name.as_str())
                .collect();
            items.push(format!("{}: {words} ({linux} linux nodes)", v.name));
            if !ready || desired != linux || !missing.is_empty() {
                let mut why = format!("{}: {words} on {linux} linux nodes", v.name);
                if !missing.is_empty() {
                    why.push_str(&format!("; no ready agent on {}", missing.join(", ")));
                }
                bad.push(why);
            }
        }
        result(
            "DNAT agents are ready on every node",
            bad,
            items,
            "a not-ready agent could not apply its rules: kubectl -n kpaas-mesh-netfix logs ds/kpaas-mesh-dnat; \
             a missing one: run kubectl kpaas-mesh up --netfix baremetal",
        )
    }

    fn check_public(&self) -> CheckResult {
        let mut items = Vec::new();
        let mut bad = Vec::new();
        for c in &self.clusters {
            match self.public.get(&c.name) {
                Some(p) => items.push(format!("{}: {p}", c.name)),
                None => bad.push(format!(
                    "{}: no public gateway address (--gateway-public {}=ADDR)",
                    c.name, c.name
                )),
            }
        }
        result(
            "every peer gateway has a public address",
            bad,
            items,
            "give each cluster's public gateway address with --gateway-public NAME=ADDR",
        )
    }

    fn check_mapping(&self) -> CheckResult {
        let targets = self.targets();
        let mut items = Vec::new();
        let mut bad = Vec::new();
        for v in &self.views {
            if v.state.configmap.is_none() {
                bad.push(format!("{}: no DNAT mapping deployed", v.name));
                continue;
            }
            let live = match &v.live {
                Ok(l) => l.clone(),
                Err(e) => {
                    bad.push(format!("{}: {e}", v.name));
                    continue;
                }
            };
            // Only peers whose addresses are known can be compared; check_public reports the others.
            let want: Vec<DnatRule> = rules_for(&v.name, &targets, self.output_chain);
            let known = |r: &DnatRule| targets.contains_key(&r.peer);
            let missing: Vec<String> = want
                .iter()
                .filter(|r| !live.contains(r))
                .map(describe)
                .collect();
            let mut extra: Vec<String> = live
                .iter()
                .filter(|r| known(r) && !want.contains(r))
                .chain(live.iter().filter(|r| {
                    r.peer == v.name || !self.clusters.iter().any(|c| c.name == r.peer)
                }))
                .map(describe)
                .collect();
            extra.sort();
            extra.dedup();
            if missing.is_empty() && extra.is_empty() {
                items.push(format!("{}: {} rule(s) as expected", v.name, live.len()));
            } else {
                let mut why = format!("{}:", v.name);
                if !missing.is_empty() {
                    why.push_str(&format!(" missing {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    why.push_str(&format!(
                        "{} stale {}",
                        if missing.is_empty() { "" } else { ";" },
                        extra.join(", ")
                    ));
                }
                bad.push(why);
            }
        }
        result(
            "DNAT mappings match the gateways' addresses",
            bad,
            items,
            "run kubectl kpaas-mesh up --netfix baremetal to roll out the current mapping",
        )
    }
}

fn describe(r: &DnatRule) -> String {
    format!("{} {} → {} ({})", r.chain, r.private, r.public, r.peer)
}

fn result(name: &str, bad: Vec<String>, items: Vec<String>, hint: &str) -> CheckResult {
    let row = Checks(CHECK_GROUP)
        .ok_unless(name, !bad.is_empty(), bad.join("; "))
        .items(items);
    if bad.is_empty() { row } else { row.hint(hint) }
}
