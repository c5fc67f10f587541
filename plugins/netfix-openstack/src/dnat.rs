//! `mode=dnat`: the guide's way. Links keep each gateway's private (MetalLB) address and every
//! node of every source cluster DNATs it to the target's floating IP. The DNAT itself is
//! netfix-baremetal's, from its library crate `kpaas-mesh-netfix-dnat`: its pure plan functions
//! give the agent DaemonSet, the per-cluster mapping (private IP → floating IP of every peer),
//! the waits, the clean-up, and the agent's status and checks; the host applies them like any
//! plan. The floating IPs play the part of netfix-baremetal's `--gateway-public` addresses.

use crate::Options;
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_netfix_dnat as dnat;
use kpaas_mesh_plugin_api::{Action, CheckResult, FactQuery, StageRequest, Table};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// netfix-baremetal's agent option keys, accepted in dnat mode (`gateway_public` is not: the
/// floating IPs are the public addresses).
pub fn option_keys() -> Vec<&'static str> {
    dnat::OPTION_KEYS
        .iter()
        .copied()
        .filter(|k| *k != "gateway_public")
        .collect()
}

/// The facts `down` needs to remove the agent of `cluster`.
pub fn down_queries(cluster: &str) -> Vec<FactQuery> {
    dnat::agent_queries(cluster)
}

/// The facts `status`/`check` need for the agent of `cluster`.
pub fn observe_queries(cluster: &str) -> Vec<FactQuery> {
    let mut q = dnat::agent_queries(cluster);
    q.extend(dnat::observe::queries(cluster));
    q
}

/// netfix-baremetal's options from ours: its agent keys, and the floating IPs as the public
/// addresses.
fn options(
    mesh: &MeshSettings,
    opts: &Options,
    public: &BTreeMap<String, String>,
) -> Result<dnat::Options, String> {
    let mut o = dnat::parse_options(mesh, &serde_json::Value::Object(opts.dnat.clone()))?;
    o.gateway_public = public
        .iter()
        .map(|(c, ip)| {
            ip.parse::<Ipv4Addr>()
                .map(|a| (c.clone(), a))
                .map_err(|_| format!("{c}: floating IP {ip} is not IPv4 (DNAT needs IPv4)"))
        })
        .collect::<Result<_, String>>()?;
    Ok(o)
}

/// The agent on every cluster with its mapping: each peer's private gateway IP to its floating
/// IP. `private` and `public` are by cluster name.
pub fn up_actions(
    req: &StageRequest,
    mesh: &MeshSettings,
    opts: &Options,
    private: &BTreeMap<String, String>,
    public: &BTreeMap<String, String>,
) -> Result<Vec<Action>, String> {
    let o = options(mesh, opts, public)?;
    let privs: BTreeMap<String, Vec<Ipv4Addr>> = private
        .iter()
        .map(|(c, ip)| (c.clone(), ip.parse().into_iter().collect()))
        .collect();
    let targets = dnat::dnat_targets(&req.clusters, &privs, &o.gateway_public)?;
    dnat::dnat_up_actions(&req.clusters, &targets, &o.agent)
}

/// The clusters where the DNAT agent (any of its objects) is deployed, from [`down_queries`]' facts.
pub fn deployed(req: &StageRequest) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in &req.clusters {
        if dnat::agent_state(req, &c.name)?.deployed() {
            out.push(c.name.clone());
        }
    }
    Ok(out)
}

/// The agent's removal on every cluster where it is deployed (from [`down_queries`]' facts).
pub fn down_actions(
    req: &StageRequest,
    mesh: &MeshSettings,
    opts: &Options,
) -> Result<Vec<Action>, String> {
    let o = options(mesh, opts, &BTreeMap::new())?;
    let states: BTreeMap<String, dnat::AgentState> = req
        .clusters
        .iter()
        .map(|c| Ok((c.name.clone(), dnat::agent_state(req, &c.name)?)))
        .collect::<Result<_, String>>()?;
    Ok(dnat::dnat_down_actions(&req.clusters, &states, &o.agent))
}

/// The agent's tables and checks (from [`observe_queries`]' facts), with the floating IPs as
/// the public addresses.
pub fn observe(
    req: &StageRequest,
    mesh: &MeshSettings,
    opts: &Options,
    public: &BTreeMap<String, String>,
) -> Result<(Vec<Table>, Vec<CheckResult>), String> {
    let o = options(mesh, opts, public)?;
    let observed = dnat::observe::Observed::read(req, &o)?;
    Ok((observed.tables(), observed.checks()))
}
