//! `mode=dnat`: the guide's way. Links keep each gateway's private (MetalLB) address and every
//! node of every source cluster DNATs it to the target's floating IP. The DNAT itself is
//! netfix-baremetal's: its pure plan functions give the agent DaemonSet, the per-cluster
//! mapping, the waits and the clean-up, and the host applies them like any plan.
//!
//! Until netfix-baremetal's DNAT functions are in a library crate without a plugin export, they
//! can only be linked here with feature `dnat-preview` (which drops this crate's own export; see
//! Cargo.toml). Without it, `mode=dnat` fails with one line saying so, and `down` still removes
//! everything in Neutron but cannot plan the agent's removal.

use crate::Options;
use kpaas_mesh_plugin_api::options::MeshOptions;
use kpaas_mesh_plugin_api::{Action, FactQuery, StageRequest};
use std::collections::BTreeMap;
#[cfg(feature = "dnat-preview")]
use std::net::Ipv4Addr;

#[cfg(not(feature = "dnat-preview"))]
pub const UNAVAILABLE: &str = "mode=dnat needs netfix-baremetal's DNAT plan functions, which this build cannot link \
     (netfix-baremetal exports its own plugin root module; they must move to a library crate without an export)";

/// netfix-baremetal's option keys, accepted in dnat mode.
pub fn option_keys() -> &'static [&'static str] {
    #[cfg(feature = "dnat-preview")]
    {
        &kpaas_mesh_netfix_baremetal::OPTION_KEYS
    }
    #[cfg(not(feature = "dnat-preview"))]
    {
        &["image", "output_chain", "resync_secs", "cleanup_wait"]
    }
}

/// The facts `down` needs to remove the agent of `cluster`.
pub fn down_queries(cluster: &str) -> Vec<FactQuery> {
    #[cfg(feature = "dnat-preview")]
    {
        kpaas_mesh_netfix_baremetal::agent_queries(cluster)
    }
    #[cfg(not(feature = "dnat-preview"))]
    {
        let _ = cluster;
        vec![]
    }
}

#[cfg(feature = "dnat-preview")]
fn agent(
    mesh: &MeshOptions,
    opts: &Options,
) -> Result<kpaas_mesh_netfix_baremetal::AgentOptions, String> {
    // netfix-baremetal sees only its own keys (and never gateway_public: the floating IPs are the
    // public addresses here).
    let mut m = mesh.clone();
    let extra: serde_json::Map<String, serde_json::Value> = mesh
        .extra
        .as_object()
        .map(|e| {
            e.iter()
                .filter(|(k, _)| opts.unknown.contains(k) && option_keys().contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    m.extra = serde_json::Value::Object(extra);
    Ok(kpaas_mesh_netfix_baremetal::parse_options(&m)?.agent)
}

/// The agent on every cluster with its mapping: each peer's private gateway IP to its floating
/// IP. `private` and `public` are by cluster name.
pub fn up_actions(
    req: &StageRequest,
    mesh: &MeshOptions,
    opts: &Options,
    private: &BTreeMap<String, String>,
    public: &BTreeMap<String, String>,
) -> Result<Vec<Action>, String> {
    #[cfg(feature = "dnat-preview")]
    {
        let privs: BTreeMap<String, Vec<Ipv4Addr>> = private
            .iter()
            .map(|(c, ip)| (c.clone(), ip.parse().into_iter().collect()))
            .collect();
        let pubs: BTreeMap<String, Ipv4Addr> = public
            .iter()
            .map(|(c, ip)| {
                ip.parse()
                    .map(|a| (c.clone(), a))
                    .map_err(|_| format!("{c}: floating IP {ip} is not IPv4"))
            })
            .collect::<Result<_, String>>()?;
        let targets = kpaas_mesh_netfix_baremetal::dnat_targets(&req.clusters, &privs, &pubs)?;
        kpaas_mesh_netfix_baremetal::dnat_up_actions(&req.clusters, &targets, &agent(mesh, opts)?)
    }
    #[cfg(not(feature = "dnat-preview"))]
    {
        let _ = (req, mesh, opts, private, public);
        Err(UNAVAILABLE.into())
    }
}

/// The agent's removal on every cluster where it is deployed (from [`down_queries`]' facts).
pub fn down_actions(
    req: &StageRequest,
    mesh: &MeshOptions,
    opts: &Options,
) -> Result<Vec<Action>, String> {
    #[cfg(feature = "dnat-preview")]
    {
        let states: BTreeMap<String, kpaas_mesh_netfix_baremetal::AgentState> = req
            .clusters
            .iter()
            .map(|c| {
                Ok((
                    c.name.clone(),
                    kpaas_mesh_netfix_baremetal::agent_state(req, &c.name)?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(kpaas_mesh_netfix_baremetal::dnat_down_actions(
            &req.clusters,
            &states,
            &agent(mesh, opts)?,
        ))
    }
    #[cfg(not(feature = "dnat-preview"))]
    {
        let _ = (req, mesh, opts);
        Err(UNAVAILABLE.into())
    }
}

/// Whether mode=dnat can be planned by this build.
pub const AVAILABLE: bool = cfg!(feature = "dnat-preview");
