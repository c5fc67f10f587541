//! kpaas-mesh netfix plugin **netfix-openstack**: the guide's section 3.5 on OpenStack clouds. For
//! every cluster it makes the Linkerd gateway's MetalLB address reachable from the peers through a
//! Neutron floating IP:
//!
//! 1. the nodes' Neutron ports (found by the Nova server ID in the Node's `spec.providerID`,
//!    `openstack:///<uuid>`, else by the Node's InternalIP) get the gateway IP as an allowed
//!    address pair, so port security lets the MetalLB-announced traffic through;
//! 2. a Neutron port holding the gateway IP on the nodes' subnet (the guide's "new interface");
//! 3. a floating IP on the external network, associated with that port.
//!
//! Everything it creates is tagged `kpaas-mesh` and `kpaas-mesh-cluster=<name>` and described as
//! kpaas-mesh's, so a re-run finds it (no change when nothing changed) and `down` removes exactly
//! that, plus the allowed address pairs it added (and only those; see [`reconcile`]).
//!
//! # Operations
//!
//! - `up`: reconcile every cluster (all clusters are read and planned before anything changes),
//!   then hand the routes to the link step: with `mode=gateway-address` (default) every link uses
//!   the target's floating IP and no node is touched; with `mode=dnat` (the guide's way) the links
//!   keep the private address and netfix-baremetal's DNAT agent (its pure plan functions, applied by
//!   the host) rewrites it to the floating IP on every node.
//! - `link`: reads the cloud (changes nothing) and computes the routes.
//! - `down`: removes what `up` made (found by tag; needs no cluster facts but the DNAT agent's),
//!   and in `dnat` mode the DNAT agent; in `gateway-address` mode it refuses (before any change)
//!   to leave a DNAT agent behind on the nodes.
//! - `status`: a table per cluster; `check`: credentials, and per cluster the gateway port, the
//!   allowed address pairs and the floating IP.
//!
//! # Options (`StageRequest.options`: `--set netfix.KEY=VALUE`, `--netfix-opt`, `--os-cloud`)
//!
//! `os_cloud` (`--os-cloud`, `OS_CLOUD`), `clouds_yaml` (a path), `mode` (`gateway-address` |
//! `dnat`), `external_network` (name or ID; default: the only external network), `node_subnet`
//! (name or ID; default: the node subnet whose CIDR holds the gateway IP); in `dnat` mode also
//! netfix-baremetal's `image`, `output_chain`, `resync_secs`, `cleanup_wait`. Credentials: see
//! [`config`] (clouds.yaml and `OS_*` variables, as the `openstack` CLI reads them).
//!
//! # IaaS calls and secrets (rules of this plugin)
//!
//! The host does all Kubernetes I/O but cannot know every cloud's API, so this plugin talks to
//! Keystone and Neutron itself, synchronously, with a blocking HTTP client ([`http`]; no async
//! runtime), and only in the call that has every fact it asked for.
//!
//! - **Dry run**: when `request.dry_run` is set it only reads (GETs, and the Keystone token
//!   request) and reports what it would create, change or delete as plan notes (`<cluster>: would ...`).
//! - **Secrets**: a password, application-credential secret or token is never printed: not in
//!   notes, tables, outputs or errors, and not in `Debug` output ([`config::Secret`] shows
//!   `<redacted>`). Errors name the auth URL and the user or credential ID instead.

pub mod config;
pub mod dnat;
pub mod http;
pub mod keystone;
pub mod neutron;
pub mod reconcile;
pub mod writes;

use config::Sources;
use http::Session;
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_kit::facts::{self, gateway_query, nodes_query};
use kpaas_mesh_kit::linkerd::{GATEWAY, MULTICLUSTER_NS};
use kpaas_mesh_kit::options::Scalar;
use kpaas_mesh_kit::{GatewayRoute, NetfixOutputs};
use kpaas_mesh_plugin_api::{
    Action, ClusterRef, ExecuteRequest, ExecuteResponse, FactQuery, Operation, Plan, PluginError,
    StagePlugin, StageRequest, StageResponse, Table,
};
use reconcile::{Cluster, Node, Observed, Op};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "netfix-openstack",
    description: "OpenStack: allowed address pairs, a gateway port and a floating IP per cluster (Neutron); links use the floating IPs or DNAT",
    descriptor: descriptor,
    constructor: || Ok(NetfixOpenstack),
}

pub const CHECK_GROUP: &str = "kpaas-mesh netfix (openstack)";
const CHECKS: Checks = Checks(CHECK_GROUP);

#[derive(Debug, Default, Clone, Copy)]
pub struct NetfixOpenstack;

/// How links reach a peer's gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Links use the target's floating IP; nodes are not touched.
    GatewayAddress,
    /// Links use the private address; netfix-baremetal's DNAT agent maps it to the floating IP.
    Dnat,
}

/// Where the plugin goes and what it accepts: the netfix place, its own options, and in `dnat`
/// mode netfix-baremetal's agent options (except `gateway_public`: the floating IPs are).
pub fn descriptor() -> kpaas_mesh_plugin_api::Descriptor {
    use kpaas_mesh_plugin_api::OptionKind;
    let mut d = kpaas_mesh_kit::stages::netfix_descriptor()
        .option(
            "os_cloud",
            OptionKind::String,
            None,
            "the cloud in clouds.yaml (--os-cloud; else OS_CLOUD / OS_* variables)",
        )
        .option(
            "clouds_yaml",
            OptionKind::String,
            None,
            "the clouds.yaml to read (default: the openstack CLI's search path)",
        )
        .option(
            "mode",
            OptionKind::String,
            Some("gateway-address"),
            "gateway-address (links use floating IPs) or dnat (nodes DNAT private to floating IPs)",
        )
        .option(
            "external_network",
            OptionKind::String,
            None,
            "the external network for floating IPs, name or ID (default: the only one)",
        )
        .option(
            "node_subnet",
            OptionKind::String,
            None,
            "the nodes' subnet, name or ID (default: the one holding the gateway IP)",
        )
        .option(
            "firewall",
            OptionKind::Bool,
            Some("true"),
            "the guide's 2.2 firewall: a security group kpaas-mesh-CLUSTER on every node port",
        )
        .option(
            "firewall_ports",
            OptionKind::List,
            Some("4143,4191,5000"),
            "its TCP ports (the guide's: 4143 gateway, 4191 gateway probe, 5000 sample)",
        )
        .option(
            "firewall_sources",
            OptionKind::List,
            None,
            "IPv4 CIDRs allowed in (default: every peer's router SNAT, floating and node addresses)",
        );
    let dnat =
        kpaas_mesh_netfix_dnat::with_option_specs(kpaas_mesh_plugin_api::Descriptor::new("", &[]));
    let theirs = dnat::option_keys();
    d.options.extend(
        dnat.options
            .into_iter()
            .filter(|o| theirs.contains(&o.name.as_str())),
    );
    d
}

/// This plugin's options, from `StageRequest.options`.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub mode: Mode,
    pub os_cloud: Option<String>,
    pub clouds_yaml: Option<String>,
    pub external_network: Option<String>,
    pub node_subnet: Option<String>,
    /// The guide's section 2.2 security group (on by default).
    pub firewall: bool,
    /// Its TCP ports.
    pub firewall_ports: Vec<u16>,
    /// Who may reach them; `None`: every peer cluster's egress addresses, as Neutron knows them.
    pub firewall_sources: Option<Vec<String>>,
    /// netfix-baremetal's agent options (used in dnat mode).
    pub dnat: serde_json::Map<String, Value>,
}

/// The options as they arrive: text (or JSON) per key, checked by [`parse_options`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawOptions {
    os_cloud: Option<Scalar>,
    clouds_yaml: Option<Scalar>,
    mode: Option<Scalar>,
    external_network: Option<Scalar>,
    node_subnet: Option<Scalar>,
    firewall: Option<Scalar>,
    firewall_ports: Option<OneOrMany>,
    firewall_sources: Option<OneOrMany>,
    image: Option<Value>,
    output_chain: Option<Value>,
    resync_secs: Option<Value>,
    cleanup_wait: Option<Value>,
}

/// A list option: a JSON array (`--set`), or one comma-separated text (`--netfix-opt`).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Scalar>),
    One(Scalar),
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        let all = match self {
            OneOrMany::Many(v) => v.iter().map(Scalar::plain).collect::<Vec<_>>(),
            OneOrMany::One(s) => vec![s.plain()],
        };
        all.iter()
            .flat_map(|t| t.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// An IPv4 CIDR `a.b.c.d/n` (a bare address is taken as `/32`), normalised.
fn ipv4_cidr(text: &str) -> Option<String> {
    let (addr, len) = text.split_once('/').unwrap_or((text, "32"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(format!("{}/{len}", Ipv4Addr::from(u32::from(addr) & mask)))
}

/// Reads the options; every error is one line naming the plugin and the option. A key the
/// schema does not have is refused.
pub fn parse_options(options: &Value) -> Result<Options, String> {
    const PLUGIN: &str = "netfix-openstack";
    if options.get("gateway_public").is_some() {
        return Err(format!(
            "{PLUGIN}: --gateway-public does not apply here: the floating IPs netfix-openstack makes are the public              gateway addresses"
        ));
    }
    let raw: RawOptions = kpaas_mesh_kit::options::parse(
        PLUGIN,
        &kpaas_mesh_kit::options::names(&descriptor()),
        options,
    )?;
    let nonempty = |k: &str, v: &Option<Scalar>| -> Result<Option<String>, String> {
        match v.as_ref().map(|s| s.plain().trim().to_string()) {
            Some(t) if t.is_empty() => Err(format!("{PLUGIN}: option {k}: empty")),
            other => Ok(other),
        }
    };
    let mode = match raw.mode.as_ref().map(Scalar::plain).as_deref() {
        None | Some("gateway-address" | "gateway_address") => Mode::GatewayAddress,
        Some("dnat") => Mode::Dnat,
        Some(other) => {
            return Err(format!(
                "{PLUGIN}: option mode={other}: want gateway-address (links use the floating IPs) or dnat (links keep                  the private IPs; every node DNATs them to the floating IPs)"
            ));
        }
    };
    let firewall = match &raw.firewall {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| {
            format!(
                "{PLUGIN}: option firewall={}: want true or false",
                v.plain()
            )
        })?,
    };
    let firewall_ports = match &raw.firewall_ports {
        None => reconcile::GUIDE_PORTS.to_vec(),
        Some(list) => {
            let items = list.items();
            if items.is_empty() {
                return Err(format!(
                    "{PLUGIN}: option firewall_ports: empty (use firewall=false to open none)"
                ));
            }
            items
                .iter()
                .map(|t| {
                    t.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!(
                            "{PLUGIN}: option firewall_ports: '{t}' is not a TCP port (1-65535)"
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        }
    };
    let firewall_sources = match &raw.firewall_sources {
        None => None,
        Some(list) => {
            let items = list.items();
            if items.is_empty() {
                return Err(format!("{PLUGIN}: option firewall_sources: empty"));
            }
            Some(
                items
                    .iter()
                    .map(|t| {
                        ipv4_cidr(t).ok_or_else(|| {
                            format!("{PLUGIN}: option firewall_sources: '{t}' is not an IPv4 address or CIDR")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
    };
    let mut dnat = serde_json::Map::new();
    for (k, v) in [
        ("image", &raw.image),
        ("output_chain", &raw.output_chain),
        ("resync_secs", &raw.resync_secs),
        ("cleanup_wait", &raw.cleanup_wait),
    ] {
        if let Some(v) = v {
            dnat.insert(k.to_string(), v.clone());
        }
    }
    Ok(Options {
        mode,
        os_cloud: nonempty("os_cloud", &raw.os_cloud)?,
        clouds_yaml: nonempty("clouds_yaml", &raw.clouds_yaml)?,
        external_network: nonempty("external_network", &raw.external_network)?,
        node_subnet: nonempty("node_subnet", &raw.node_subnet)?,
        firewall,
        firewall_ports,
        firewall_sources,
        dnat,
    })
}

/// The Nova server UUID of `openstack:///<uuid>` (or `openstack://<region>/<uuid>`).
pub fn server_id(provider_id: &str) -> Option<String> {
    let rest = provider_id.strip_prefix("openstack://")?;
    let id = rest.rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// A cluster's gateway IP and nodes from the host's facts.
pub fn cluster_facts(req: &StageRequest, name: &str) -> Result<Cluster, String> {
    let svc = facts::gateway(req, name)
        .map_err(|e| format!("{name}: {e}"))?
        .ok_or_else(|| {
            format!(
                "{name}: the Service {MULTICLUSTER_NS}/{GATEWAY} does not exist (run the multicluster stage first)"
            )
        })?;
    let gateway_ip = gateway_ipv4(&svc).ok_or_else(|| {
        format!(
            "{name}: the Service {MULTICLUSTER_NS}/{GATEWAY} has no LoadBalancer IPv4 address yet (is MetalLB running?)"
        )
    })?;
    let nodes = facts::nodes(req, name)
        .map_err(|e| format!("{name}: {e}"))?
        .iter()
        .map(|n| Node {
            name: n.metadata.name.clone().unwrap_or_else(|| "?".into()),
            internal_ips: facts::internal_ips(n),
            server_id: n
                .spec
                .as_ref()
                .and_then(|s| s.provider_id.as_deref())
                .and_then(server_id),
        })
        .collect();
    Ok(Cluster {
        name: name.into(),
        gateway_ip,
        nodes,
    })
}

/// The gateway Service's first LoadBalancer IPv4 address.
fn gateway_ipv4(svc: &kpaas_mesh_kit::k8s_openapi::api::core::v1::Service) -> Option<String> {
    facts::ingress_ips(svc)
        .into_iter()
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
}

/// Whether the gateway Service exists with a LoadBalancer IPv4 address (a fact error counts as
/// having one: it is an error, not "not yet").
fn has_gateway_address(req: &StageRequest, name: &str) -> bool {
    match facts::gateway(req, name) {
        Ok(Some(svc)) => gateway_ipv4(&svc).is_some(),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Logs in with the configured credentials.
pub fn connect(opts: &Options) -> Result<Session, String> {
    let cfg = config::load(
        opts.os_cloud.as_deref(),
        opts.clouds_yaml.as_deref(),
        &Sources::system(),
    )?;
    Session::login(&cfg)
}

/// The host puts the plugin's name in front of the error line.
fn err(e: impl std::fmt::Display) -> PluginError {
    PluginError::new(e.to_string())
}

/// One cluster as read and planned.
struct Planned {
    cluster: Cluster,
    obs: Observed,
    ops: Vec<Op>,
    /// The security group wanted (none: off, or no peer address known).
    firewall: Option<reconcile::Firewall>,
}

fn observe_all(
    s: &Session,
    clusters: &[Cluster],
    opts: &Options,
    external: &neutron::Network,
) -> Result<Vec<Planned>, String> {
    let observed: Vec<(Cluster, Observed)> = clusters
        .iter()
        .map(|c| {
            Ok((
                c.clone(),
                reconcile::observe(s, c, opts.node_subnet.as_deref())?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let egress: Vec<(String, Vec<String>)> = observed
        .iter()
        .map(|(c, o)| (c.name.clone(), o.egress.clone()))
        .collect();
    let firewalls = reconcile::firewalls(
        &egress,
        &opts.firewall_ports,
        opts.firewall_sources.as_deref(),
    );
    observed
        .into_iter()
        .zip(firewalls)
        .map(|((cluster, obs), (_, fw))| {
            let firewall = (opts.firewall && !fw.sources.is_empty()).then_some(fw);
            let ops = reconcile::plan(&cluster, &obs, external, firewall.as_ref())?;
            Ok(Planned {
                cluster,
                obs,
                ops,
                firewall,
            })
        })
        .collect()
}

/// The actions that carry out `ops` for cluster `c` (gateway IP `ip`).
fn write_actions(c: &str, ip: &str, ops: &[Op]) -> Vec<Action> {
    ops.iter()
        .map(|op| Action::Plugin {
            cluster: Some(c.to_string()),
            summary: op.describe(c, ip),
            op: serde_json::to_value(op.write(c, ip)).unwrap_or(Value::Null),
            secret: false,
        })
        .collect()
}

/// The floating IP a cluster will have once `p.ops` ran: the kept one (`None` when one is
/// still to be allocated).
fn floating_ip_after(p: &Planned) -> Option<String> {
    if p.ops.iter().any(|o| matches!(o, Op::CreateFip { .. })) {
        return None;
    }
    p.obs
        .fips
        .iter()
        .find(|f| {
            !p.ops
                .iter()
                .any(|o| matches!(o, Op::DeleteFip { fip } if fip.id == f.id))
        })
        .map(|f| f.floating_ip_address.clone())
}

/// The floating IP the plugin made for a cluster (on `external`), as observed.
fn observed_fip(p: &Planned, external: &neutron::Network) -> Option<String> {
    p.obs
        .fips
        .iter()
        .find(|f| f.floating_network_id == external.id)
        .map(|f| f.floating_ip_address.clone())
}

/// Routes for every ordered pair: the target's floating IP, or its private IP in dnat mode.
fn routes(
    clusters: &[ClusterRef],
    mode: Mode,
    private: &BTreeMap<String, String>,
    public: &BTreeMap<String, Option<String>>,
) -> NetfixOutputs {
    let mut out = NetfixOutputs::default();
    for s in clusters {
        for t in clusters.iter().filter(|t| t.name != s.name) {
            let address = match mode {
                Mode::Dnat => private.get(&t.name).cloned().unwrap_or_else(|| {
                    format!("(gateway address of {}: not assigned yet)", t.name)
                }),
                Mode::GatewayAddress => public
                    .get(&t.name)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| format!("(floating IP of {}: allocated by up)", t.name)),
            };
            out.routes.push(GatewayRoute {
                source: s.name.clone(),
                target: t.name.clone(),
                address,
                port: None,
            });
        }
    }
    out
}

fn outputs(
    netfix: &NetfixOutputs,
    mode: Mode,
    private: &BTreeMap<String, String>,
    public: &BTreeMap<String, Option<String>>,
) -> Value {
    let mut v = serde_json::to_value(netfix).unwrap_or(Value::Null);
    let gateways: serde_json::Map<String, Value> = private
        .iter()
        .map(|(c, ip)| {
            (
                c.clone(),
                json!({"private": ip, "floating": public.get(c).cloned().flatten()}),
            )
        })
        .collect();
    v["openstack"] = json!({
        "mode": if mode == Mode::Dnat { "dnat" } else { "gateway-address" },
        "gateways": gateways,
    });
    v
}

fn summary_table(
    planned: &[Planned],
    public: &BTreeMap<String, Option<String>>,
    ext: &str,
) -> Table {
    Table {
        title: "gateways on OpenStack (netfix-openstack)".into(),
        columns: [
            "CLUSTER",
            "GATEWAY IP",
            "GATEWAY PORT",
            "FLOATING IP",
            "EXTERNAL NETWORK",
            "NODE PORTS WITH PAIR",
            "PENDING",
        ]
        .map(String::from)
        .to_vec(),
        rows: planned
            .iter()
            .map(|p| {
                let ip = &p.cluster.gateway_ip;
                let paired = p
                    .obs
                    .node_ports
                    .iter()
                    .filter(|(_, port)| port.has_pair(ip))
                    .count();
                vec![
                    p.cluster.name.clone(),
                    ip.clone(),
                    p.obs
                        .gateway_ports
                        .iter()
                        .find(|g| g.has_ip(ip))
                        .map(|g| g.id.clone())
                        .unwrap_or_else(|| "-".into()),
                    public
                        .get(&p.cluster.name)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "-".into()),
                    ext.to_string(),
                    format!("{paired}/{}", p.obs.node_ports.len()),
                    p.ops.len().to_string(),
                ]
            })
            .collect(),
    }
}

impl NetfixOpenstack {
    fn up_or_link(
        &self,
        req: &StageRequest,
        mesh: &MeshSettings,
        opts: &Options,
        plan: &mut Plan,
    ) -> Result<(), String> {
        let mut clusters: Vec<Cluster> = Vec::new();
        for c in &req.clusters {
            match cluster_facts(req, &c.name) {
                Ok(cl) => clusters.push(cl),
                // A dry run (the host's pre-flight of `up` too) may come before the
                // multicluster stage has made the gateway: plan the rest, say what is missing.
                Err(e) if req.dry_run && !has_gateway_address(req, &c.name) => plan.notes.push(format!(
                    "{e}; would set up its gateway port, allowed address pairs and floating IP once it has one"
                )),
                Err(e) => return Err(e),
            }
        }
        // Credentials and the external network are checked in a dry run too.
        let s = connect(opts)?;
        let ext = reconcile::external_network(&s, opts.external_network.as_deref())?;
        // Read and plan every cluster before changing any.
        let planned = observe_all(&s, &clusters, opts, &ext)?;
        let mut private = BTreeMap::new();
        let mut public = BTreeMap::new();
        for p in &planned {
            let c = &p.cluster.name;
            private.insert(c.clone(), p.cluster.gateway_ip.clone());
            if req.operation == Operation::Up {
                let fip = floating_ip_after(p);
                if p.ops.is_empty() {
                    plan.notes.push(format!(
                        "{c}: nothing to change (gateway {} -> floating IP {})",
                        p.cluster.gateway_ip,
                        fip.as_deref().unwrap_or("-")
                    ));
                }
                if opts.firewall && p.firewall.is_none() {
                    plan.notes.push(format!(
                        "{c}: no peer address known, so no security group rule is planned (give \
                         firewall_sources)"
                    ));
                }
                plan.actions
                    .extend(write_actions(c, &p.cluster.gateway_ip, &p.ops));
                public.insert(c.clone(), fip);
            } else {
                let fip = observed_fip(p, &ext);
                if fip.is_none() && opts.mode == Mode::GatewayAddress {
                    return Err(format!(
                        "{c}: no floating IP made by kpaas-mesh on {}: run `kubectl kpaas-mesh up --netfix openstack` first",
                        ext.name
                    ));
                }
                if !p.ops.is_empty() {
                    plan.notes.push(format!(
                        "{c}: not fully set up ({} pending: {}); run up to fix",
                        p.ops.len(),
                        p.ops
                            .iter()
                            .map(|o| o.describe(c, &p.cluster.gateway_ip))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ));
                }
                public.insert(c.clone(), fip);
            }
        }
        let netfix = routes(&req.clusters, opts.mode, &private, &public);
        if opts.mode == Mode::Dnat && req.operation == Operation::Up {
            let known: Option<BTreeMap<String, String>> = public
                .iter()
                .map(|(c, f)| Some((c.clone(), f.clone()?)))
                .collect();
            match known {
                Some(pubs) => {
                    plan.actions
                        .extend(dnat::up_actions(req, mesh, opts, &private, &pubs)?);
                    plan.notes.push(format!(
                        "dnat mode: netfix-baremetal's agent DNATs every peer's gateway to its floating IP on every node ({})",
                        req.clusters
                            .iter()
                            .map(|c| format!("{} {} -> {}", c.name, private[&c.name], pubs[&c.name]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                None => plan.notes.push(
                    "dnat mode: would apply netfix-baremetal's DNAT agent on every cluster once the \
                     floating IPs exist"
                        .into(),
                ),
            }
        }
        plan.tables
            .push(summary_table(&planned, &public, &ext.name));
        plan.outputs = outputs(&netfix, opts.mode, &private, &public);
        Ok(())
    }

    fn down(
        &self,
        req: &StageRequest,
        mesh: &MeshSettings,
        opts: &Options,
        plan: &mut Plan,
    ) -> Result<(), String> {
        if opts.mode == Mode::GatewayAddress {
            let with_agents = dnat::deployed(req)?;
            if !with_agents.is_empty() {
                return Err(format!(
                    "{} run(s) DNAT agents (namespace kpaas-mesh-netfix): if they are netfix-openstack's, run down with                      --netfix-opt mode=dnat so their node rules are removed too; if netfix-baremetal's, run down with                      --netfix baremetal first (nothing was changed)",
                    with_agents.join(", ")
                ));
            }
        }
        let s = connect(opts)?;
        let mut all = Vec::new();
        for c in &req.clusters {
            all.push((c.name.clone(), reconcile::teardown(&s, &c.name)?));
        }
        for (c, ops) in &all {
            if ops.is_empty() {
                plan.notes
                    .push(format!("{c}: nothing of kpaas-mesh's in Neutron"));
            }
            plan.actions.extend(write_actions(c, "", ops));
        }
        if opts.mode == Mode::Dnat {
            plan.actions.extend(dnat::down_actions(req, mesh, opts)?);
        }
        Ok(())
    }

    fn status_or_check(
        &self,
        req: &StageRequest,
        mesh: &MeshSettings,
        opts: &Options,
        plan: &mut Plan,
    ) {
        let check = req.operation == Operation::Check;
        let fail = |plan: &mut Plan, name: &str, detail: String| {
            if check {
                plan.checks.push(CHECKS.fail(name, detail));
            } else {
                plan.notes.push(detail);
            }
        };
        let s = match connect(opts) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    plan,
                    "OpenStack credentials work and Neutron is in the catalog",
                    e,
                );
            }
        };
        let ext = match reconcile::external_network(&s, opts.external_network.as_deref()) {
            Ok(e) => e,
            Err(e) => return fail(plan, "the external network for floating IPs exists", e),
        };
        if check {
            plan.checks.push(
                CHECKS
                    .ok("OpenStack credentials work and Neutron is in the catalog")
                    .items(vec![format!(
                        "Neutron {} (project {})",
                        s.network,
                        s.project_name.as_deref().unwrap_or("?")
                    )]),
            );
        }
        let mut clusters = Vec::new();
        for c in &req.clusters {
            match cluster_facts(req, &c.name) {
                Ok(cl) => clusters.push(cl),
                Err(e) => fail(
                    plan,
                    &format!("{}: gateway reachable through a floating IP", c.name),
                    e,
                ),
            }
        }
        let planned = match observe_all(&s, &clusters, opts, &ext) {
            Ok(p) => p,
            Err(e) => {
                return fail(plan, "the gateways' Neutron ports and floating IPs", e);
            }
        };
        let mut public = BTreeMap::new();
        for p in &planned {
            public.insert(p.cluster.name.clone(), observed_fip(p, &ext));
        }
        if check {
            let hint = "run `kubectl kpaas-mesh up --netfix openstack` to fix".to_string();
            for p in &planned {
                let c = &p.cluster.name;
                let ip = &p.cluster.gateway_ip;
                let pending = reconcile::pending(&p.ops);
                let items = |pred: fn(&Op) -> bool| -> Vec<String> {
                    p.ops
                        .iter()
                        .filter(|o| pred(o))
                        .map(|o| o.describe(c, ip))
                        .collect()
                };
                let mk = |name: String, bad: bool, items: Vec<String>| {
                    let row = CHECKS.ok_unless(name, bad, "pending changes").items(items);
                    if bad { row.hint(hint.clone()) } else { row }
                };
                plan.checks.push(mk(
                    format!("{c}: a Neutron port holds the gateway IP {ip}"),
                    pending.port,
                    items(|o| matches!(o, Op::CreatePort { .. } | Op::DeletePort { .. })),
                ));
                plan.checks.push(mk(
                    format!(
                        "{c}: {ip} is an allowed address pair on every node port ({})",
                        p.obs.node_ports.len()
                    ),
                    pending.pairs,
                    items(|o| matches!(o, Op::AddPair { .. } | Op::RemovePair { .. })),
                ));
                let f = public.get(c).cloned().flatten();
                plan.checks.push(mk(
                    format!(
                        "{c}: floating IP {} on {} is associated with the gateway port",
                        f.as_deref().unwrap_or("(none)"),
                        ext.name
                    ),
                    pending.fip,
                    items(Op::touches_fip),
                ));
                plan.checks.push(match &p.firewall {
                    Some(fw) => mk(
                        format!(
                            "{c}: security group {} opens TCP {} to {} peer address(es) on every node port",
                            reconcile::group_name(c),
                            fw.ports
                                .iter()
                                .map(u16::to_string)
                                .collect::<Vec<_>>()
                                .join(","),
                            fw.sources.len()
                        ),
                        pending.firewall,
                        items(Op::touches_firewall),
                    ),
                    None => CHECKS
                        .skipped(
                            format!("{c}: the guide's 2.2 firewall (security group)"),
                            if opts.firewall {
                                "no peer address known; give firewall_sources"
                            } else {
                                "firewall=false"
                            },
                        )
                        .items(items(Op::touches_firewall)),
                });
            }
        } else {
            plan.tables
                .push(summary_table(&planned, &public, &ext.name));
        }
        if opts.mode == Mode::Dnat {
            let fips: BTreeMap<String, String> = public
                .iter()
                .filter_map(|(c, f)| Some((c.clone(), f.clone()?)))
                .collect();
            match dnat::observe(req, mesh, opts, &fips) {
                Ok((tables, checks)) => {
                    if check {
                        plan.checks.extend(checks);
                    } else {
                        plan.tables.extend(tables);
                    }
                }
                Err(e) => fail(plan, "the DNAT agent (dnat mode)", e),
            }
        }
    }
}

impl StagePlugin for NetfixOpenstack {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let mesh: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| err(format!("invalid options ({e})")))?;
        let opts = parse_options(&req.options).map_err(err)?;
        let mut queries = Vec::new();
        for c in &req.clusters {
            match req.operation {
                Operation::Up | Operation::Link => {
                    queries.push(gateway_query(&c.name));
                    queries.push(nodes_query(&c.name));
                }
                Operation::Status | Operation::Check => {
                    queries.push(gateway_query(&c.name));
                    queries.push(nodes_query(&c.name));
                    if opts.mode == Mode::Dnat {
                        queries.extend(dnat::observe_queries(&c.name));
                    }
                }
                // Both modes look for the DNAT agent: dnat removes it, gateway-address
                // refuses to leave one behind.
                Operation::Down => queries.extend(dnat::down_queries(&c.name)),
                Operation::Unlink => {}
            }
        }
        // Once each: the host refuses a query it has already answered.
        let mut unique: Vec<FactQuery> = Vec::new();
        for q in queries {
            if !unique.contains(&q) {
                unique.push(q);
            }
        }
        let missing = req.missing(unique);
        if !missing.is_empty() {
            return Ok(StageResponse::NeedFacts { queries: missing });
        }
        let mut plan = Plan::default();
        if opts.mode == Mode::GatewayAddress && !opts.dnat.is_empty() {
            plan.notes.push(format!(
                "options {} apply to mode=dnat only; ignored",
                opts.dnat.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        match req.operation {
            Operation::Unlink => {}
            Operation::Up | Operation::Link => self
                .up_or_link(&req, &mesh, &opts, &mut plan)
                .map_err(err)?,
            Operation::Down => self.down(&req, &mesh, &opts, &mut plan).map_err(err)?,
            Operation::Status | Operation::Check => {
                self.status_or_check(&req, &mesh, &opts, &mut plan)
            }
        }
        Ok(StageResponse::Plan(plan))
    }

    fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, PluginError> {
        let write: writes::Write = serde_json::from_value(request.op)
            .map_err(|e| err(format!("not a Neutron write of this plugin: {e}")))?;
        let opts = parse_options(&request.options).map_err(err)?;
        let s = session(&opts).map_err(err)?;
        let (changed, what) = writes::execute(&s, &write).map_err(err)?;
        Ok(ExecuteResponse { changed, what })
    }
}

/// One Keystone login per set of credentials for all the writes of a run (the host calls
/// `execute` once per action).
fn session(opts: &Options) -> Result<std::sync::Arc<Session>, String> {
    use std::sync::{Arc, Mutex};
    static CACHE: Mutex<Option<(config::CloudConfig, Arc<Session>)>> = Mutex::new(None);
    let cfg = config::load(
        opts.os_cloud.as_deref(),
        opts.clouds_yaml.as_deref(),
        &Sources::system(),
    )?;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((c, s)) = cache.as_ref()
        && *c == cfg
    {
        return Ok(Arc::clone(s));
    }
    let s = Arc::new(Session::login(&cfg)?);
    *cache = Some((cfg, Arc::clone(&s)));
    Ok(s)
}

#[cfg(test)]
mod tests;
