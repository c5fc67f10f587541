//! The DNAT logic of kpaas-mesh's netfix plugins, as a plain library (no plugin root module, so any netfix plugin
//! can link it): the guide's section 3.5 iptables DNAT, automated. On every node of every source cluster, traffic
//! to a peer gateway's private (MetalLB) address is rewritten to that gateway's public address:
//!
//! ```text
//! iptables -t nat -I PREROUTING -d <peer private IP>/32 -m comment --comment "kpaas-mesh netfix peer=<peer>" \
//!          -j DNAT --to-destination <peer public IP>          (and OUTPUT too with --netfix-opt output-chain=true)
//! ```
//!
//! Used by the netfix-baremetal plugin (public addresses from `--gateway-public`) and by netfix-openstack's `dnat`
//! mode (public addresses = floating IPs).
//!
//! The links keep using the private address (as in the guide): the DNAT makes it reachable.
//!
//! # How
//!
//! A privileged host-network DaemonSet (namespace [`agent::NAMESPACE`], all taints tolerated) runs
//! `plugins/netfix-baremetal/agent/dnat-agent.sh` ([`agent::AGENT_SCRIPT`]) from a ConfigMap that also holds the cluster's mapping ([`mapping`]). The agent makes the
//! tagged rules of the node's nat table equal to the mapping (check before insert, stale ones deleted by their
//! exact spec, nothing else touched) now and every `resync_secs`, and reports Ready only after a successful pass.
//! The pod template carries a checksum of the ConfigMap, so a changed mapping rolls every agent.
//!
//! - `up`: apply namespace, ServiceAccount, ConfigMap, DaemonSet; wait until the DaemonSet is ready on every node.
//!   Outputs the routes (private addresses) for the link step.
//! - `link`: the routes only.
//! - `down`: roll out the empty mapping and wait until every agent has removed its rules, then delete the
//!   DaemonSet, ConfigMap, ServiceAccount and namespace and wait until the namespace is gone.
//! - `status`: the deployed rules per cluster and the agent of every node; `check`: agents ready on every node,
//!   deployed mapping equal to the gateways' current addresses, every peer with a public address.
//!
//! # Options (the stage's `StageRequest.options`, read by [`parse_options`])
//!
//! `gateway_public` (`--gateway-public NAME=IPv4`, one per cluster, required by `up`), `image`
//! ([`agent::DEFAULT_IMAGE`]; `--registry` rewrites it), `output_chain` (bool), `resync_secs` (1..=86400, default
//! 60), `cleanup_wait` (bool, default true; see [`AgentOptions::cleanup_wait`]).
//!
//! # The stable API (netfix-baremetal and netfix-openstack's `dnat` mode)
//!
//! Pure functions with stable signatures; a netfix plugin that knows each cluster's public address (e.g. a
//! floating IP) gets the same agent, rules and clean-up:
//!
//! - [`gateway_query`] / [`gateway_addresses`]: the fact to ask for, and each cluster's private gateway addresses.
//! - [`dnat_targets`]`(clusters, &private, &public) -> Result<DnatTargets, String>`: validates that every cluster
//!   has private addresses and a public one (the error names `--gateway-public`) and that no peer's private address
//!   is a source's own gateway address.
//! - [`dnat_up_actions`]`(clusters, &targets, &AgentOptions) -> Result<Vec<Action>, String>`: the objects to apply
//!   on every cluster and the waits.
//! - [`agent_queries`] / [`agent_state`] / [`dnat_down_actions`]`(clusters, &states, &AgentOptions) -> Vec<Action>`:
//!   the facts `down` needs, and the clean-up of every cluster where something is deployed.
//! - [`routes`]`(clusters, &targets) -> NetfixOutputs`: what the link step gets (private addresses).
//! - [`AgentOptions::new`]`(&MeshSettings)`: defaults (image under `--registry`, the mesh timeout);
//!   [`parse_options`]`(&MeshSettings, &options) -> Result<Options, String>`: the keys of [`OPTION_KEYS`].
//! - [`privates`]`(&req)`: every cluster's private gateway addresses from the answered [`gateway_query`] facts.
//! - [`observe::queries`] / [`observe::Observed`]: status tables and checks from facts.

pub mod agent;
pub mod mapping;
pub mod observe;
#[cfg(test)]
mod tests;

pub use agent::AgentOptions;
pub use mapping::{
    Chain, DnatRule, DnatTarget, DnatTargets, parse_mapping, render_mapping, rules_for,
};

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::linkerd::MULTICLUSTER_NS;
use kpaas_mesh_kit::{GatewayRoute, NetfixOutputs};
use kpaas_mesh_plugin_api::{Action, ClusterRef, FactQuery, StageRequest, WaitCondition};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The iptables comment prefix of every rule the agent makes; the peer follows as `peer=<name>`.
pub const RULE_TAG: &str = "kpaas-mesh netfix";
/// The gateway Service of the multicluster extension.
pub use kpaas_mesh_kit::linkerd::GATEWAY;

/// The option keys [`parse_options`] reads.
pub const OPTION_KEYS: [&str; 5] = [
    "gateway_public",
    "image",
    "output_chain",
    "resync_secs",
    "cleanup_wait",
];

/// `descriptor` with the schema of the DNAT options ([`OPTION_KEYS`]), for every netfix plugin
/// that runs the agent.
pub fn with_option_specs(
    descriptor: kpaas_mesh_plugin_api::Descriptor,
) -> kpaas_mesh_plugin_api::Descriptor {
    use kpaas_mesh_plugin_api::OptionKind;
    descriptor
        .option(
            "gateway_public",
            OptionKind::Map,
            None,
            "each cluster's public gateway address, NAME=IPv4 (--gateway-public; required by up)",
        )
        .option(
            "image",
            OptionKind::String,
            Some(agent::DEFAULT_IMAGE),
            "the agent's image (with iptables); --registry rewrites it",
        )
        .option(
            "output_chain",
            OptionKind::Bool,
            Some("false"),
            "also DNAT in the nat OUTPUT chain (traffic from the nodes themselves)",
        )
        .option(
            "resync_secs",
            OptionKind::Integer,
            Some("60"),
            "how often the agent re-applies its rules, 1..=86400",
        )
        .option(
            "cleanup_wait",
            OptionKind::Bool,
            Some("true"),
            "down waits until every agent has removed its rules",
        )
}

/// The DNAT options, read by [`parse_options`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--gateway-public NAME=ADDR`: each cluster's public gateway address.
    pub gateway_public: BTreeMap<String, Ipv4Addr>,
    pub agent: AgentOptions,
}

/// Reads the DNAT options; every error is one line naming the option. A key not in [`OPTION_KEYS`] is refused
/// (`option 'KEY' is unknown (options: …)`); the caller puts its plugin's name in front.
pub fn parse_options(settings: &MeshSettings, options: &Value) -> Result<Options, String> {
    let mut agent = AgentOptions::new(settings);
    let mut gateway_public = BTreeMap::new();
    let extra = match options {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(format!("options must be a mapping, got {other}"));
        }
    };
    let boolean = |key: &str, v: &Value| match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        other => Err(format!(
            "--netfix-opt {}={}: want true or false",
            key.replace('_', "-"),
            plain(other)
        )),
    };
    for (key, v) in &extra {
        match key.as_str() {
            "gateway_public" => {
                let map = v.as_object().ok_or_else(|| {
                    format!("gateway_public must map cluster names to addresses, got {v}")
                })?;
                for (name, addr) in map {
                    let text = plain(addr);
                    let ip: Ipv4Addr = text.parse().map_err(|_| {
                        format!("--gateway-public {name}={text}: not an IPv4 address (the DNAT target must be one)")
                    })?;
                    gateway_public.insert(name.clone(), ip);
                }
            }
            "image" => match v.as_str().map(str::trim) {
                Some(s) if !s.is_empty() && !s.contains(char::is_whitespace) => {
                    agent.image = agent::image(s, settings)
                }
                _ => {
                    return Err(format!(
                        "--netfix-opt image={}: not an image reference",
                        plain(v)
                    ));
                }
            },
            "output_chain" => agent.output_chain = boolean(key, v)?,
            "cleanup_wait" => agent.cleanup_wait = boolean(key, v)?,
            "resync_secs" => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                agent.resync_secs = match n {
                    Some(n @ 1..=86400) => n as u32,
                    _ => {
                        return Err(format!(
                            "--netfix-opt resync-secs={}: want a number of seconds from 1 to 86400",
                            plain(v)
                        ));
                    }
                };
            }
            other => {
                return Err(format!(
                    "option '{other}' is unknown (options: {})",
                    OPTION_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(Options {
        gateway_public,
        agent,
    })
}

fn plain(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

/// The fact holding a cluster's gateway Service (its LoadBalancer addresses are the private ones).
pub use kpaas_mesh_kit::facts::gateway_query;
pub(crate) use kpaas_mesh_kit::facts::{object, objects};

/// `cluster`'s gateway LoadBalancer IPv4 addresses (empty when the Service or its address is missing). A
/// hostname-only or IPv6 ingress is an error: iptables DNAT needs IPv4 addresses.
pub fn gateway_addresses(req: &StageRequest, cluster: &str) -> Result<Vec<Ipv4Addr>, String> {
    let Some(svc) = object(req, &gateway_query(cluster))? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    for ing in svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match (ing["ip"].as_str(), ing["hostname"].as_str()) {
            (Some(ip), _) if !ip.is_empty() => match ip.parse::<Ipv4Addr>() {
                Ok(a) => out.push(a),
                Err(_) => {
                    return Err(format!(
                        "{cluster}: the gateway's LoadBalancer address {ip} is not IPv4; iptables DNAT needs IPv4"
                    ));
                }
            },
            (_, Some(h)) if !h.is_empty() => {
                return Err(format!(
                    "{cluster}: the gateway's LoadBalancer has a hostname ({h}), not an IP; \
                     DNAT needs an IPv4 address (use --netfix none)"
                ));
            }
            _ => {}
        }
    }
    out.dedup();
    Ok(out)
}

/// The facts about the agent on `cluster`: its namespace, DaemonSet and ConfigMap.
pub fn agent_queries(cluster: &str) -> Vec<FactQuery> {
    let obj =
        |api_version: &str, kind: &str, namespace: Option<&str>, name: &str| FactQuery::Object {
            cluster: cluster.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
        };
    vec![
        obj("v1", "Namespace", None, agent::NAMESPACE),
        obj("apps/v1", "DaemonSet", Some(agent::NAMESPACE), agent::NAME),
        obj("v1", "ConfigMap", Some(agent::NAMESPACE), agent::NAME),
    ]
}

/// What of the agent is deployed on one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentState {
    pub namespace: Option<Value>,
    pub daemonset: Option<Value>,
    pub configmap: Option<Value>,
}

impl AgentState {
    /// Anything to clean up.
    pub fn deployed(&self) -> bool {
        self.namespace.is_some() || self.daemonset.is_some() || self.configmap.is_some()
    }
}

/// Reads the answers to [`agent_queries`].
pub fn agent_state(req: &StageRequest, cluster: &str) -> Result<AgentState, String> {
    let [ns, ds, cm] = <[FactQuery; 3]>::try_from(agent_queries(cluster)).expect("three queries");
    Ok(AgentState {
        namespace: object(req, &ns)?,
        daemonset: object(req, &ds)?,
        configmap: object(req, &cm)?,
    })
}

/// Every cluster's DNAT target from its private gateway addresses and its public address. Errors (one line each,
/// checked in this order): clusters without a public address (naming `--gateway-public`), clusters without a
/// private address, a peer's private address equal to a source's own gateway address (the DNAT would capture the
/// local gateway).
pub fn dnat_targets(
    clusters: &[ClusterRef],
    private: &BTreeMap<String, Vec<Ipv4Addr>>,
    public: &BTreeMap<String, Ipv4Addr>,
) -> Result<DnatTargets, String> {
    let no_public: Vec<&str> = clusters
        .iter()
        .filter(|c| !public.contains_key(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    if !no_public.is_empty() {
        let example = no_public
            .iter()
            .map(|n| format!("--gateway-public {n}=ADDR"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(format!(
            "no public gateway address for {}: give it with {example} (the address the peers' \
             nodes DNAT {}'s gateway to)",
            no_public.join(", "),
            if no_public.len() == 1 {
                no_public[0]
            } else {
                "each cluster"
            }
        ));
    }
    let no_lb: Vec<&str> = clusters
        .iter()
        .filter(|c| private.get(&c.name).is_none_or(|a| a.is_empty()))
        .map(|c| c.name.as_str())
        .collect();
    if !no_lb.is_empty() {
        return Err(format!(
            "the gateway Service {MULTICLUSTER_NS}/{GATEWAY} of {} has no LoadBalancer IPv4 \
             address yet (run the multicluster stage first; is MetalLB running?)",
            no_lb.join(", ")
        ));
    }
    for s in clusters {
        for t in clusters.iter().filter(|t| t.name != s.name) {
            if let Some(a) = private[&t.name]
                .iter()
                .find(|a| private[&s.name].contains(a))
            {
                return Err(format!(
                    "{} and {} both have gateway address {a}; a DNAT of {a} on {}'s nodes would \
                     capture its own gateway (give the clusters different MetalLB pools)",
                    s.name, t.name, s.name
                ));
            }
        }
    }
    Ok(clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                DnatTarget {
                    private: private[&c.name].clone(),
                    public: public[&c.name],
                },
            )
        })
        .collect())
}

/// For every cluster: apply the agent's namespace, ServiceAccount, ConfigMap (that cluster's mapping) and
/// DaemonSet, then wait until the DaemonSet is ready on every node. Fails when a cluster has no target.
pub fn dnat_up_actions(
    clusters: &[ClusterRef],
    targets: &DnatTargets,
    agent: &AgentOptions,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    for c in clusters {
        if !targets.contains_key(&c.name) {
            return Err(format!("no DNAT target for cluster {}", c.name));
        }
        let rules = rules_for(&c.name, targets, agent.output_chain);
        actions.extend(agent_actions(
            &c.name,
            &render_mapping(&c.name, &rules),
            agent,
        ));
    }
    Ok(actions)
}

/// Apply the agent with `mapping` on `cluster` and wait for every node's agent to have reconciled it.
fn agent_actions(cluster: &str, mapping: &str, agent: &AgentOptions) -> Vec<Action> {
    let mut actions: Vec<Action> = agent::manifests(mapping, agent)
        .into_iter()
        .map(|manifest| Action::Apply {
            cluster: cluster.into(),
            manifest,
            secret: false,
        })
        .collect();
    actions.push(Action::Wait {
        cluster: cluster.into(),
        condition: WaitCondition::DaemonSetReady {
            namespace: agent::NAMESPACE.into(),
            name: agent::NAME.into(),
        },
        timeout_secs: agent.timeout_secs,
    });
    actions
}

/// For every cluster where something of the agent is deployed (`states`, from [`agent_state`]): roll out the
/// empty mapping (with the live DaemonSet's image) and wait until every agent has removed its rules (unless
/// `cleanup_wait` is off), then delete the DaemonSet, ConfigMap, ServiceAccount and namespace and wait until the
/// namespace is gone. Clusters with nothing deployed get no action.
pub fn dnat_down_actions(
    clusters: &[ClusterRef],
    states: &BTreeMap<String, AgentState>,
    agent: &AgentOptions,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for c in clusters {
        let Some(state) = states.get(&c.name).filter(|s| s.deployed()) else {
            continue;
        };
        if agent.cleanup_wait && state.daemonset.is_some() && state.namespace.is_some() {
            let mut a = agent.clone();
            if let Some(image) = state.daemonset.as_ref().and_then(agent::live_image) {
                a.image = image;
            }
            actions.extend(agent_actions(&c.name, &render_mapping(&c.name, &[]), &a));
        }
        let del = |api_version: &str, kind: &str| Action::Delete {
            cluster: c.name.clone(),
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(agent::NAMESPACE.into()),
            name: agent::NAME.into(),
        };
        actions.push(del("apps/v1", "DaemonSet"));
        actions.push(del("v1", "ConfigMap"));
        actions.push(del("v1", "ServiceAccount"));
        actions.extend(kpaas_mesh_kit::actions::delete_namespace(
            &c.name,
            agent::NAMESPACE,
            agent.timeout_secs,
        ));
    }
    actions
}

/// The links' addresses: every target's private gateway addresses as they are (comma-separated when several),
/// since the DNAT on the source's nodes makes them reachable.
pub fn routes(clusters: &[ClusterRef], targets: &DnatTargets) -> NetfixOutputs {
    let mut out = NetfixOutputs::default();
    for s in clusters {
        for t in clusters.iter().filter(|t| t.name != s.name) {
            if let Some(target) = targets.get(&t.name) {
                out.routes.push(GatewayRoute {
                    source: s.name.clone(),
                    target: t.name.clone(),
                    address: join(&target.private),
                    port: None,
                });
            }
        }
    }
    out
}

fn join(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every cluster's private gateway addresses (see [`gateway_addresses`]), by cluster name.
pub fn privates(req: &StageRequest) -> Result<BTreeMap<String, Vec<Ipv4Addr>>, String> {
    req.clusters
        .iter()
        .map(|c| Ok((c.name.clone(), gateway_addresses(req, &c.name)?)))
        .collect()
}
