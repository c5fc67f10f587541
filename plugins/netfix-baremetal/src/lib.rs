//! kpaas-mesh netfix plugin **netfix-baremetal**: the guide's section 3.5 iptables DNAT, automated. On every node
//! of every source cluster, traffic to a peer gateway's private (MetalLB) address is rewritten to that gateway's
//! public address (`--gateway-public NAME=ADDR`) by a privileged host-network DaemonSet running
//! `agent/dnat-agent.sh`; the links keep the private address.
//!
//! This crate is the plugin (its root-module export and the stage conversation). Everything else — mapping,
//! agent objects, the up/down plan functions, status and check — is in the library crate
//! [`kpaas_mesh_netfix_dnat`] (`plugins/netfix-baremetal/dnat/`, no export), re-exported here, so another netfix
//! plugin (netfix-openstack's `dnat` mode) links it without a second root module. See that crate's docs for the
//! design and the options.
//!
//! - `up`: facts: every gateway Service; plan: [`dnat_targets`] → [`dnat_up_actions`]; outputs [`routes`].
//! - `link`: the routes only (no public address needed).
//! - `down`: facts: [`agent_queries`]; plan: [`dnat_down_actions`].
//! - `status` / `check`: [`observe`].

pub use kpaas_mesh_netfix_dnat::*;

#[cfg(test)]
mod tests;

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::NetfixOutputs;
use kpaas_mesh_plugin_api::{
    FactQuery, Operation, Plan, PluginError, StagePlugin, StageRequest, StageResponse,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "netfix-baremetal",
    description: "iptables DNAT of every peer gateway's private address to its public one on every node (guide 3.5)",
    descriptor: || kpaas_mesh_netfix_dnat::with_option_specs(kpaas_mesh_kit::stages::netfix_descriptor()),
    constructor: || Ok(NetfixBaremetal),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetfixBaremetal;

impl StagePlugin for NetfixBaremetal {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let mesh: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("invalid options ({e})"))?;
        let opts =
            parse_options(&mesh, &req.options).map_err(|e| format!("netfix-baremetal: {e}"))?;
        let mut queries: Vec<FactQuery> = Vec::new();
        for c in &req.clusters {
            match req.operation {
                Operation::Up | Operation::Link => queries.push(gateway_query(&c.name)),
                Operation::Down => queries.extend(agent_queries(&c.name)),
                Operation::Status | Operation::Check => {
                    queries.push(gateway_query(&c.name));
                    queries.extend(agent_queries(&c.name));
                    queries.extend(observe::queries(&c.name));
                }
                Operation::Unlink => {}
            }
        }
        let missing = req.missing(queries);
        if !missing.is_empty() {
            return Ok(StageResponse::NeedFacts { queries: missing });
        }
        let mut plan = Plan::default();
        match req.operation {
            Operation::Unlink => {}
            Operation::Up => {
                let privates = privates(&req)?;
                let targets = match dnat_targets(&req.clusters, &privates, &opts.gateway_public) {
                    Ok(t) => t,
                    // A dry run on clusters without the multicluster extension yet: say what will happen.
                    Err(e)
                        if req.dry_run
                            && privates.values().any(|a| a.is_empty())
                            && req
                                .clusters
                                .iter()
                                .all(|c| opts.gateway_public.contains_key(&c.name)) =>
                    {
                        plan.notes.push(format!(
                            "the DNAT agents are planned once every gateway has a LoadBalancer address ({e})"
                        ));
                        return Ok(StageResponse::Plan(plan));
                    }
                    Err(e) => return Err(e.into()),
                };
                plan.actions = dnat_up_actions(&req.clusters, &targets, &opts.agent)?;
                for c in &req.clusters {
                    let rules = rules_for(&c.name, &targets, opts.agent.output_chain);
                    let words: Vec<String> = rules
                        .iter()
                        .map(|r| format!("{} {} → {} ({})", r.chain, r.private, r.public, r.peer))
                        .collect();
                    plan.notes.push(format!(
                        "{}: DNAT on every node: {}",
                        c.name,
                        words.join(", ")
                    ));
                }
                plan.notes
                    .push(format!("DNAT agent image {}", opts.agent.image));
                plan.outputs = to_value(routes(&req.clusters, &targets))?;
            }
            Operation::Link => {
                let privates = privates(&req)?;
                let targets: DnatTargets = privates
                    .into_iter()
                    .filter(|(_, a)| !a.is_empty())
                    .map(|(n, private)| {
                        (
                            n,
                            DnatTarget {
                                private,
                                public: Ipv4Addr::UNSPECIFIED,
                            },
                        )
                    })
                    .collect();
                for c in req
                    .clusters
                    .iter()
                    .filter(|c| !targets.contains_key(&c.name))
                {
                    plan.notes.push(format!(
                        "{}: the gateway has no LoadBalancer address yet",
                        c.name
                    ));
                }
                plan.outputs = to_value(routes(&req.clusters, &targets))?;
            }
            Operation::Down => {
                let mut states = BTreeMap::new();
                for c in &req.clusters {
                    states.insert(c.name.clone(), agent_state(&req, &c.name)?);
                }
                plan.actions = dnat_down_actions(&req.clusters, &states, &opts.agent);
                if !opts.agent.cleanup_wait {
                    plan.notes.push(
                        "cleanup_wait=false: deleting the agents without waiting for them to remove their rules; \
                         run `dnat-agent.sh remove` on nodes that keep them"
                            .into(),
                    );
                }
            }
            Operation::Status | Operation::Check => {
                let obs = observe::Observed::read(&req, &opts)?;
                if req.operation == Operation::Status {
                    plan.tables = obs.tables();
                } else {
                    plan.checks = obs.checks();
                }
                plan.outputs = to_value(obs.routes())?;
            }
        }
        Ok(StageResponse::Plan(plan))
    }
}

fn to_value(out: NetfixOutputs) -> Result<Value, String> {
    serde_json::to_value(out).map_err(|e| e.to_string())
}
