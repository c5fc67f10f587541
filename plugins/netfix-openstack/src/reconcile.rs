//! What the plugin does in Neutron for one cluster, in three steps:
//!
//! 1. [`observe`] (GETs only): the nodes' ports (by Nova server ID from `spec.providerID`, else
//!    by the node's InternalIP), the node subnet that holds the MetalLB gateway IP, the gateway
//!    port and floating IP this plugin made before (found by their tags), any other port holding
//!    the gateway IP, and the node ports that carry an allowed address pair this plugin added.
//! 2. [`plan`] (pure): the [`Op`]s that make it right: allowed address pair on every node port,
//!    a port holding the gateway IP on the node subnet, a floating IP on the external network
//!    associated with it; stale things (an old gateway IP, a node that left) removed.
//! 3. [`apply`]: carry the ops out, or in a dry run only describe them ("would ...").
//!
//! [`teardown`] finds by tag everything this plugin made for a cluster and plans its removal.
//!
//! Marks: what the plugin creates carries the tags [`TAG`] and `kpaas-mesh-cluster=<name>` and
//! a description naming kpaas-mesh; a node port whose allowed address pairs it extended carries
//! [`PAIR_TAG`] and `kpaas-mesh-pair=<cluster>=<ip>`, so `down` removes exactly those pairs (a pair
//! that was there before is never tagged, so never removed).

use crate::http::{ApiError, Session};
use crate::neutron::{self, FloatingIp, Network, Port, Subnet, cidr_contains};
use serde_json::json;

/// On every port and floating IP the plugin creates.
pub const TAG: &str = "kpaas-mesh";
/// On every node port whose allowed address pairs the plugin extended.
pub const PAIR_TAG: &str = "kpaas-mesh-pair";

pub fn cluster_tag(cluster: &str) -> String {
    format!("kpaas-mesh-cluster={cluster}")
}

pub fn pair_tag(cluster: &str, ip: &str) -> String {
    format!("{PAIR_TAG}={cluster}={ip}")
}

/// `kpaas-mesh-pair=<cluster>=<ip>` → `(cluster, ip)`.
pub fn parse_pair_tag(tag: &str) -> Option<(&str, &str)> {
    tag.strip_prefix(PAIR_TAG)?
        .strip_prefix('=')?
        .split_once('=')
}

pub fn port_name(cluster: &str) -> String {
    format!("kpaas-mesh-gateway-{cluster}")
}

/// A Kubernetes node as the plugin needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub internal_ips: Vec<String>,
    /// The Nova server UUID from `spec.providerID` (`openstack:///<uuid>`).
    pub server_id: Option<String>,
}

/// One cluster: its name, MetalLB gateway IP and nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub gateway_ip: String,
    pub nodes: Vec<Node>,
}

/// What Neutron holds for one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// (node name, its port on the node subnet's network).
    pub node_ports: Vec<(String, Port)>,
    pub subnet: Subnet,
    /// Ports this plugin made for the cluster (tagged).
    pub gateway_ports: Vec<Port>,
    /// Other ports holding the gateway IP on the node network.
    pub ip_holders: Vec<Port>,
    /// Floating IPs this plugin made for the cluster (tagged).
    pub fips: Vec<FloatingIp>,
    /// Ports carrying a pair tag of this cluster.
    pub paired: Vec<Port>,
}

/// One change in Neutron.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    RemovePair { port: Port, ip: String },
    DeletePort { port: Port },
    DeleteFip { fip: FloatingIp },
    AddPair { port: Port, node: String },
    CreatePort { subnet: Subnet },
    CreateFip { network: Network },
    AssociateFip { fip: FloatingIp },
}

impl Op {
    /// What the op does, for notes: `<cluster>: <what>` (`<cluster>: would <what>` in a dry run).
    pub fn describe(&self, c: &str, ip: &str) -> String {
        match self {
            Op::RemovePair { port, ip } => format!(
                "{c}: remove allowed address pair {ip} from port {}",
                port.label()
            ),
            Op::DeletePort { port } => format!(
                "{c}: delete port {} ({})",
                port.label(),
                port.fixed_ips
                    .iter()
                    .map(|f| f.ip_address.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Op::DeleteFip { fip } => format!(
                "{c}: release floating IP {} ({})",
                fip.floating_ip_address, fip.id
            ),
            Op::AddPair { port, node } => format!(
                "{c}: add allowed address pair {ip} to port {} of node {node}",
                port.label()
            ),
            Op::CreatePort { subnet } => format!(
                "{c}: create port {} holding {ip} on subnet {} ({}), tagged {TAG}",
                port_name(c),
                if subnet.name.is_empty() {
                    &subnet.id
                } else {
                    &subnet.name
                },
                subnet.cidr
            ),
            Op::CreateFip { network } => format!(
                "{c}: allocate a floating IP on external network {} and associate it with the gateway port ({ip}), tagged {TAG}",
                if network.name.is_empty() {
                    &network.id
                } else {
                    &network.name
                },
            ),
            Op::AssociateFip { fip } => format!(
                "{c}: associate floating IP {} with the gateway port ({ip})",
                fip.floating_ip_address
            ),
        }
    }

    fn touches_pairs(&self) -> bool {
        matches!(self, Op::RemovePair { .. } | Op::AddPair { .. })
    }
    fn touches_port(&self) -> bool {
        matches!(self, Op::DeletePort { .. } | Op::CreatePort { .. })
    }
    fn touches_fip(&self) -> bool {
        matches!(
            self,
            Op::DeleteFip { .. } | Op::CreateFip { .. } | Op::AssociateFip { .. }
        )
    }
}

/// Which parts of a cluster's set-up are pending.
pub fn pending(ops: &[Op]) -> (bool, bool, bool) {
    (
        ops.iter().any(Op::touches_port),
        ops.iter().any(Op::touches_pairs),
        ops.iter().any(Op::touches_fip),
    )
}

fn api(c: &str) -> impl Fn(ApiError) -> String + '_ {
    move |e| format!("{c}: {e}")
}

/// The node subnet and ports: reads Neutron only.
pub fn observe(
    s: &Session,
    cluster: &Cluster,
    node_subnet: Option<&str>,
) -> Result<Observed, String> {
    let c = cluster.name.as_str();
    let ip = cluster.gateway_ip.as_str();
    if cluster.nodes.is_empty() {
        return Err(format!("{c}: the cluster has no nodes"));
    }
    // 1. The nodes' ports.
    let mut node_ports: Vec<(String, Port)> = Vec::new();
    for node in &cluster.nodes {
        let mut found: Vec<Port> = Vec::new();
        if let Some(server) = &node.server_id {
            let all = neutron::ports(s, &[("device_id", server)]).map_err(api(c))?;
            let matching: Vec<Port> = all
                .iter()
                .filter(|p| node.internal_ips.iter().any(|i| p.has_ip(i)))
                .cloned()
                .collect();
            found = if matching.is_empty() { all } else { matching };
        }
        if found.is_empty() {
            for nip in &node.internal_ips {
                for p in neutron::ports_with_ip(s, nip, None).map_err(api(c))? {
                    if !found.iter().any(|f| f.id == p.id) {
                        found.push(p);
                    }
                }
            }
        }
        if found.is_empty() {
            return Err(format!(
                "{c}: no Neutron port found for node {} ({}; InternalIP {}) in this project",
                node.name,
                node.server_id
                    .as_deref()
                    .map(|s| format!("server {s}"))
                    .unwrap_or_else(|| "no openstack providerID".into()),
                if node.internal_ips.is_empty() {
                    "none".to_string()
                } else {
                    node.internal_ips.join(",")
                }
            ));
        }
        node_ports.extend(found.into_iter().map(|p| (node.name.clone(), p)));
    }
    // 2. The node subnet holding the gateway IP.
    let mut subnet_ids: Vec<String> = Vec::new();
    for (_, p) in &node_ports {
        for f in &p.fixed_ips {
            if !subnet_ids.contains(&f.subnet_id) {
                subnet_ids.push(f.subnet_id.clone());
            }
        }
    }
    let mut subnets: Vec<Subnet> = Vec::new();
    for id in &subnet_ids {
        subnets.push(neutron::subnet(s, id).map_err(api(c))?);
    }
    let subnet = match node_subnet {
        Some(want) => subnets
            .iter()
            .find(|sn| sn.id == want || sn.name == want)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{c}: node_subnet '{want}' is not a subnet of the nodes' ports ({})",
                    list_subnets(&subnets)
                )
            })?,
        None => subnets
            .iter()
            .find(|sn| cidr_contains(&sn.cidr, ip))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{c}: the gateway IP {ip} is in none of the nodes' subnets ({}): MetalLB's pool must be on the \
                     node network for a Neutron port to hold the address",
                    list_subnets(&subnets)
                )
            })?,
    };
    if !cidr_contains(&subnet.cidr, ip) {
        return Err(format!(
            "{c}: the gateway IP {ip} is not in subnet {} ({})",
            subnet.name, subnet.cidr
        ));
    }
    node_ports.retain(|(_, p)| p.network_id == subnet.network_id);
    // 3. What the plugin made before, and who else holds the IP.
    let ctag = cluster_tag(c);
    let gateway_ports = neutron::ports_tagged(s, &[TAG, &ctag]).map_err(api(c))?;
    let ip_holders: Vec<Port> = neutron::ports_with_ip(s, ip, Some(&subnet.network_id))
        .map_err(api(c))?
        .into_iter()
        .filter(|p| !gateway_ports.iter().any(|g| g.id == p.id))
        .collect();
    let fips = neutron::floating_ips_tagged(s, &[TAG, &ctag]).map_err(api(c))?;
    let paired = paired_ports(s, c)?;
    Ok(Observed {
        node_ports,
        subnet,
        gateway_ports,
        ip_holders,
        fips,
        paired,
    })
}

fn list_subnets(subnets: &[Subnet]) -> String {
    if subnets.is_empty() {
        return "none".into();
    }
    subnets
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                if s.name.is_empty() { &s.id } else { &s.name },
                s.cidr
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ports with a pair tag of `cluster`.
fn paired_ports(s: &Session, cluster: &str) -> Result<Vec<Port>, String> {
    Ok(neutron::ports_tagged(s, &[PAIR_TAG])
        .map_err(api(cluster))?
        .into_iter()
        .filter(|p| {
            p.tags
                .iter()
                .filter_map(|t| parse_pair_tag(t))
                .any(|(pc, _)| pc == cluster)
        })
        .collect())
}

/// The error for a gateway IP that another port holds.
pub fn ip_taken(c: &str, ip: &str, holder: &str, subnet: &Subnet) -> String {
    format!(
        "{c}: the gateway IP {ip} is already allocated in Neutron (IpAddressAlreadyAllocated) to port {holder} on \
         subnet {} ({}): MetalLB's addresses must be outside the subnet's allocation pool and unused",
        if subnet.name.is_empty() {
            &subnet.id
        } else {
            &subnet.name
        },
        subnet.cidr
    )
}

/// The ops that make `obs` right for `cluster` with floating IPs on `external`.
pub fn plan(cluster: &Cluster, obs: &Observed, external: &Network) -> Result<Vec<Op>, String> {
    let c = cluster.name.as_str();
    let ip = cluster.gateway_ip.as_str();
    let mut ops = Vec::new();
    // Pairs this plugin added that are no longer wanted: another IP, or a port that is no
    // longer a node port.
    for p in &obs.paired {
        let is_node = obs.node_ports.iter().any(|(_, np)| np.id == p.id);
        for (_, pip) in p
            .tags
            .iter()
            .filter_map(|t| parse_pair_tag(t))
            .filter(|(pc, _)| *pc == c)
        {
            if pip != ip || !is_node {
                ops.push(Op::RemovePair {
                    port: p.clone(),
                    ip: pip.to_string(),
                });
            }
        }
    }
    let keep = obs
        .gateway_ports
        .iter()
        .find(|p| p.has_ip(ip) && p.network_id == obs.subnet.network_id);
    for p in &obs.gateway_ports {
        if keep.is_none_or(|k| k.id != p.id) {
            ops.push(Op::DeletePort { port: p.clone() });
        }
    }
    if keep.is_none()
        && let Some(h) = obs.ip_holders.first()
    {
        return Err(ip_taken(c, ip, &h.label(), &obs.subnet));
    }
    let keep_fip = obs
        .fips
        .iter()
        .find(|f| f.floating_network_id == external.id);
    for f in &obs.fips {
        if keep_fip.is_none_or(|k| k.id != f.id) {
            ops.push(Op::DeleteFip { fip: f.clone() });
        }
    }
    for (node, p) in &obs.node_ports {
        if !p.has_pair(ip) && p.port_security_enabled != Some(false) {
            ops.push(Op::AddPair {
                port: p.clone(),
                node: node.clone(),
            });
        }
    }
    if keep.is_none() {
        ops.push(Op::CreatePort {
            subnet: obs.subnet.clone(),
        });
    }
    match keep_fip {
        None => ops.push(Op::CreateFip {
            network: external.clone(),
        }),
        Some(f) => {
            let associated = keep.is_some_and(|k| f.port_id.as_deref() == Some(k.id.as_str()))
                && f.fixed_ip_address.as_deref() == Some(ip);
            if !associated {
                ops.push(Op::AssociateFip { fip: f.clone() });
            }
        }
    }
    Ok(ops)
}

/// Everything the plugin made for `cluster`, as delete/remove ops (read by tag).
pub fn teardown(s: &Session, cluster: &str) -> Result<Vec<Op>, String> {
    let ctag = cluster_tag(cluster);
    let mut ops = Vec::new();
    for fip in neutron::floating_ips_tagged(s, &[TAG, &ctag]).map_err(api(cluster))? {
        ops.push(Op::DeleteFip { fip });
    }
    for port in neutron::ports_tagged(s, &[TAG, &ctag]).map_err(api(cluster))? {
        ops.push(Op::DeletePort { port });
    }
    for port in paired_ports(s, cluster)? {
        let ips: Vec<String> = port
            .tags
            .iter()
            .filter_map(|t| parse_pair_tag(t))
            .filter(|(pc, _)| *pc == cluster)
            .map(|(_, ip)| ip.to_string())
            .collect();
        for ip in ips {
            ops.push(Op::RemovePair {
                port: port.clone(),
                ip,
            });
        }
    }
    Ok(ops)
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// One line per op (`<cluster>: would ...` in a dry run).
    pub lines: Vec<String>,
    /// The cluster's floating IP afterwards (`None` in a dry run that would allocate one).
    pub floating_ip: Option<String>,
    /// The gateway port afterwards (`None` in a dry run that would create it).
    pub gateway_port: Option<String>,
}

/// Carries out `ops` for cluster `c` (gateway IP `ip`), or in a dry run only describes them.
/// `obs` gives the state before (the kept port and floating IP).
pub fn apply(
    s: &Session,
    c: &str,
    ip: &str,
    obs: Option<&Observed>,
    ops: &[Op],
    dry_run: bool,
) -> Result<Applied, String> {
    let mut out = Applied::default();
    if let Some(obs) = obs {
        // What stays: the tagged port and floating IP no op deletes.
        out.gateway_port = obs
            .gateway_ports
            .iter()
            .filter(|p| p.has_ip(ip))
            .find(|p| {
                !ops.iter()
                    .any(|o| matches!(o, Op::DeletePort { port } if port.id == p.id))
            })
            .map(|p| p.id.clone());
        out.floating_ip = obs
            .fips
            .iter()
            .find(|f| {
                !ops.iter()
                    .any(|o| matches!(o, Op::DeleteFip { fip } if fip.id == f.id))
            })
            .map(|f| f.floating_ip_address.clone());
    }
    for op in ops {
        let line = op.describe(c, ip);
        if dry_run {
            let what = line.strip_prefix(&format!("{c}: ")).unwrap_or(&line);
            out.lines.push(format!("{c}: would {what}"));
            match op {
                Op::CreatePort { .. } => out.gateway_port = None,
                Op::CreateFip { .. } => out.floating_ip = None,
                Op::AssociateFip { fip } => out.floating_ip = Some(fip.floating_ip_address.clone()),
                _ => {}
            }
            continue;
        }
        match op {
            Op::RemovePair { port, ip: pip } => remove_pair(s, c, &port.id, pip)?,
            Op::DeletePort { port } => neutron::delete_port(s, &port.id).map_err(api(c))?,
            Op::DeleteFip { fip } => {
                neutron::delete_floating_ip(s, &fip.id).map_err(api(c))?;
                if out.floating_ip.as_deref() == Some(fip.floating_ip_address.as_str()) {
                    out.floating_ip = None;
                }
            }
            Op::AddPair { port, .. } => add_pair(s, c, &port.id, ip)?,
            Op::CreatePort { subnet } => {
                out.gateway_port = Some(create_gateway_port(s, c, ip, subnet)?.id);
            }
            Op::CreateFip { network } => {
                let port = out
                    .gateway_port
                    .clone()
                    .ok_or_else(|| format!("{c}: no gateway port to give a floating IP"))?;
                out.floating_ip = Some(create_fip(s, c, ip, network, &port)?.floating_ip_address);
            }
            Op::AssociateFip { fip } => {
                let port = out.gateway_port.clone().ok_or_else(|| {
                    format!("{c}: no gateway port to associate the floating IP with")
                })?;
                let f = neutron::update_floating_ip(
                    s,
                    &fip.id,
                    &json!({"port_id": port, "fixed_ip_address": ip}),
                )
                .map_err(|e| fip_error(c, ip, e))?;
                out.floating_ip = Some(f.floating_ip_address);
            }
        }
        out.lines.push(line);
    }
    Ok(out)
}

fn remove_pair(s: &Session, c: &str, port_id: &str, ip: &str) -> Result<(), String> {
    let Some(port) = neutron::port(s, port_id).map_err(api(c))? else {
        return Ok(()); // the node's port is gone: nothing to undo
    };
    let tag = pair_tag(c, ip);
    // Another cluster of this mesh may need the same pair on a shared port: keep it then.
    let still_wanted = port
        .tags
        .iter()
        .filter_map(|t| parse_pair_tag(t))
        .any(|(pc, pip)| pc != c && pip == ip);
    if port.has_pair(ip) && !still_wanted {
        let pairs: Vec<serde_json::Value> = port
            .allowed_address_pairs
            .iter()
            .filter(|p| {
                p["ip_address"]
                    .as_str()
                    .is_none_or(|a| a != ip && a.strip_suffix("/32") != Some(ip))
            })
            .cloned()
            .collect();
        neutron::update_port(s, port_id, &json!({"allowed_address_pairs": pairs}))
            .map_err(api(c))?;
    }
    let mut tags: Vec<String> = port.tags.iter().filter(|t| **t != tag).cloned().collect();
    if !tags.iter().any(|t| parse_pair_tag(t).is_some()) {
        tags.retain(|t| t != PAIR_TAG);
    }
    if tags != port.tags {
        neutron::set_tags(s, "ports", port_id, &tags).map_err(api(c))?;
    }
    Ok(())
}

fn add_pair(s: &Session, c: &str, port_id: &str, ip: &str) -> Result<(), String> {
    let port = neutron::port(s, port_id)
        .map_err(api(c))?
        .ok_or_else(|| format!("{c}: node port {port_id} disappeared"))?;
    if port.has_pair(ip) {
        return Ok(());
    }
    // Tag first: should the pair update fail, `down` finds a tag without a pair, which is harmless;
    // the other order could leave a pair nobody knows was ours.
    let mut tags = port.tags.clone();
    for t in [PAIR_TAG.to_string(), pair_tag(c, ip)] {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags != port.tags {
        neutron::set_tags(s, "ports", port_id, &tags).map_err(api(c))?;
    }
    let mut pairs = port.allowed_address_pairs.clone();
    pairs.push(json!({"ip_address": ip}));
    neutron::update_port(s, port_id, &json!({"allowed_address_pairs": pairs})).map_err(api(c))?;
    Ok(())
}

fn create_gateway_port(s: &Session, c: &str, ip: &str, subnet: &Subnet) -> Result<Port, String> {
    let body = json!({
        "network_id": subnet.network_id,
        "name": port_name(c),
        "description": format!(
            "kpaas-mesh: Linkerd multicluster gateway address of cluster {c} (MetalLB {ip}); \
             made and removed by kubectl kpaas-mesh"
        ),
        "fixed_ips": [{"subnet_id": subnet.id, "ip_address": ip}],
        "admin_state_up": true,
    });
    let port = neutron::create_port(s, &body).map_err(|e| create_port_error(c, ip, subnet, e))?;
    if let Err(e) = neutron::set_tags(s, "ports", &port.id, &[TAG.to_string(), cluster_tag(c)]) {
        let _ = neutron::delete_port(s, &port.id);
        return Err(format!(
            "{c}: cannot tag the new gateway port (deleted it again): {e}"
        ));
    }
    Ok(port)
}

/// A refused gateway-port creation: a taken IP (someone took it since we looked) reads like
/// the one found beforehand; anything else is Neutron's own line.
pub fn create_port_error(c: &str, ip: &str, subnet: &Subnet, e: ApiError) -> String {
    if e.kind == "IpAddressAlreadyAllocated" {
        ip_taken(c, ip, "(another port, just now)", subnet)
    } else {
        format!("{c}: {e}")
    }
}

pub fn fip_error(c: &str, ip: &str, e: ApiError) -> String {
    match e.kind.as_str() {
        "ExternalGatewayForFloatingIPNotFound" => format!(
            "{c}: no router connects the gateway's subnet to the external network, so {ip} cannot get a floating \
             IP (add a router interface on the node subnet and a gateway on the external network): {e}"
        ),
        "IpAddressGenerationFailure" | "ExternalIpAddressExhausted" => {
            format!("{c}: the external network has no free floating IP: {e}")
        }
        _ => format!("{c}: {e}"),
    }
}

fn create_fip(
    s: &Session,
    c: &str,
    ip: &str,
    network: &Network,
    port: &str,
) -> Result<FloatingIp, String> {
    let body = json!({
        "floating_network_id": network.id,
        "port_id": port,
        "fixed_ip_address": ip,
        "description": format!(
            "kpaas-mesh: public address of the Linkerd multicluster gateway of cluster {c}; \
             made and removed by kubectl kpaas-mesh"
        ),
    });
    let fip = neutron::create_floating_ip(s, &body).map_err(|e| fip_error(c, ip, e))?;
    if let Err(e) = neutron::set_tags(
        s,
        "floatingips",
        &fip.id,
        &[TAG.to_string(), cluster_tag(c)],
    ) {
        let _ = neutron::delete_floating_ip(s, &fip.id);
        return Err(format!(
            "{c}: cannot tag the new floating IP (released it again): {e}"
        ));
    }
    Ok(fip)
}

/// The external network for floating IPs: `wanted` (name or ID) or the only one there is.
pub fn external_network(s: &Session, wanted: Option<&str>) -> Result<Network, String> {
    let nets = neutron::external_networks(s).map_err(|e| e.to_string())?;
    pick_external(&nets, wanted)
}

/// [`external_network`]'s choice among `nets`.
pub fn pick_external(nets: &[Network], wanted: Option<&str>) -> Result<Network, String> {
    let names = || {
        if nets.is_empty() {
            "none".to_string()
        } else {
            nets.iter()
                .map(|n| {
                    if n.name.is_empty() {
                        n.id.clone()
                    } else {
                        n.name.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match wanted {
        Some(w) => {
            let hits: Vec<&Network> = nets.iter().filter(|n| n.id == w || n.name == w).collect();
            match hits.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(format!(
                    "external network '{w}' not found (external networks visible to this project: {})",
                    names()
                )),
                _ => Err(format!(
                    "several external networks are named '{w}': give its ID with --netfix-opt external-network=ID"
                )),
            }
        }
        None => match nets {
            [one] => Ok(one.clone()),
            [] => Err(
                "no external network (router:external) is visible to this project: floating IPs need one"
                    .into(),
            ),
            _ => Err(format!(
                "several external networks ({}): choose one with --netfix-opt external-network=NAME",
                names()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neutron::FixedIp;

    fn port(id: &str, ip: &str) -> Port {
        Port {
            id: id.into(),
            name: id.into(),
            network_id: "net".into(),
            fixed_ips: vec![FixedIp {
                subnet_id: "sub".into(),
                ip_address: ip.into(),
            }],
            ..Port::default()
        }
    }

    fn world() -> (Cluster, Observed, Network) {
        let cluster = Cluster {
            name: "c1".into(),
            gateway_ip: "172.21.0.200".into(),
            nodes: vec![],
        };
        let obs = Observed {
            node_ports: vec![
                ("n1".into(), port("p1", "172.21.0.11")),
                ("n2".into(), port("p2", "172.21.0.12")),
            ],
            subnet: Subnet {
                id: "sub".into(),
                name: "nodes".into(),
                network_id: "net".into(),
                cidr: "172.21.0.0/24".into(),
            },
            ..Observed::default()
        };
        let ext = Network {
            id: "ext".into(),
            name: "public".into(),
        };
        (cluster, obs, ext)
    }

    #[test]
    fn tags_round_trip() {
        assert_eq!(pair_tag("c1", "10.0.0.1"), "kpaas-mesh-pair=c1=10.0.0.1");
        assert_eq!(
            parse_pair_tag("kpaas-mesh-pair=c1=10.0.0.1"),
            Some(("c1", "10.0.0.1"))
        );
        assert_eq!(parse_pair_tag("kpaas-mesh-pair"), None);
        assert_eq!(parse_pair_tag("kpaas-mesh-cluster=c1"), None);
    }

    #[test]
    fn fresh_cluster_gets_pairs_port_and_floating_ip() {
        let (c, obs, ext) = world();
        let ops = plan(&c, &obs, &ext).unwrap();
        let lines: Vec<String> = ops
            .iter()
            .map(|o| o.describe("c1", &c.gateway_ip))
            .collect();
        assert_eq!(
            lines,
            [
                "c1: add allowed address pair 172.21.0.200 to port p1 (p1) of node n1",
                "c1: add allowed address pair 172.21.0.200 to port p2 (p2) of node n2",
                "c1: create port kpaas-mesh-gateway-c1 holding 172.21.0.200 on subnet nodes (172.21.0.0/24), tagged kpaas-mesh",
                "c1: allocate a floating IP on external network public and associate it with the gateway port (172.21.0.200), tagged kpaas-mesh",
            ]
        );
    }

    #[test]
    fn finished_cluster_needs_nothing_and_changes_are_found() {
        let (c, mut obs, ext) = world();
        for (_, p) in &mut obs.node_ports {
            p.allowed_address_pairs =
                vec![json!({"ip_address": "172.21.0.200", "mac_address": "m"})];
            p.tags = vec![PAIR_TAG.into(), pair_tag("c1", "172.21.0.200")];
        }
        obs.paired = obs.node_ports.iter().map(|(_, p)| p.clone()).collect();
        obs.gateway_ports = vec![port("gw", "172.21.0.200")];
        obs.fips = vec![FloatingIp {
            id: "f".into(),
            floating_ip_address: "203.0.113.20".into(),
            floating_network_id: "ext".into(),
            port_id: Some("gw".into()),
            fixed_ip_address: Some("172.21.0.200".into()),
            ..FloatingIp::default()
        }];
        assert_eq!(plan(&c, &obs, &ext).unwrap(), vec![]);

        // MetalLB moved the gateway to .201: old pairs and port go, new ones come, the
        // floating IP is kept and re-associated.
        let moved = Cluster {
            gateway_ip: "172.21.0.201".into(),
            ..c.clone()
        };
        let ops = plan(&moved, &obs, &ext).unwrap();
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Op::RemovePair { .. } => "remove-pair",
                Op::DeletePort { .. } => "delete-port",
                Op::DeleteFip { .. } => "delete-fip",
                Op::AddPair { .. } => "add-pair",
                Op::CreatePort { .. } => "create-port",
                Op::CreateFip { .. } => "create-fip",
                Op::AssociateFip { .. } => "associate-fip",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "remove-pair",
                "remove-pair",
                "delete-port",
                "add-pair",
                "add-pair",
                "create-port",
                "associate-fip"
            ]
        );
        assert_eq!(pending(&ops), (true, true, true));

        // A node left: its pair goes, nothing else.
        let mut one_node = obs.clone();
        one_node.node_ports.pop();
        let ops = plan(&c, &one_node, &ext).unwrap();
        assert!(
            matches!(&ops[..], [Op::RemovePair { port, ip }] if port.id == "p2" && ip == "172.21.0.200"),
            "{ops:?}"
        );
    }

    #[test]
    fn a_port_holding_the_ip_is_an_error_and_a_pair_made_by_hand_stays() {
        let (c, mut obs, ext) = world();
        obs.ip_holders = vec![port("squatter", "172.21.0.200")];
        let err = plan(&c, &obs, &ext).unwrap_err();
        assert!(
            err.starts_with("c1: the gateway IP 172.21.0.200 is already allocated in Neutron (IpAddressAlreadyAllocated) to port squatter (squatter)"),
            "{err}"
        );
        // A pair that the operator made (no tag) is neither added again nor removed.
        let (c, mut obs, ext) = world();
        obs.node_ports[0].1.allowed_address_pairs = vec![json!({"ip_address": "172.21.0.200/32"})];
        let ops = plan(&c, &obs, &ext).unwrap();
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::AddPair { port, .. } if port.id == "p1"))
        );
        assert!(!ops.iter().any(|o| matches!(o, Op::RemovePair { .. })));
    }

    #[test]
    fn neutron_refusals_map_to_one_clear_line() {
        let (_, obs, _) = world();
        let e = crate::http::parse_error(
            "POST",
            "/ports",
            409,
            r#"{"NeutronError": {"type": "IpAddressAlreadyAllocated", "message": "IP address 172.21.0.200 already allocated in subnet sub", "detail": ""}}"#,
        );
        let line = create_port_error("c1", "172.21.0.200", &obs.subnet, e);
        assert!(
            line.starts_with("c1: the gateway IP 172.21.0.200 is already allocated in Neutron (IpAddressAlreadyAllocated)"),
            "{line}"
        );
        let e = crate::http::parse_error(
            "POST",
            "/ports",
            409,
            r#"{"NeutronError": {"type": "MacAddressInUse", "message": "mac in use", "detail": ""}}"#,
        );
        assert_eq!(
            create_port_error("c1", "172.21.0.200", &obs.subnet, e),
            "c1: Neutron POST /ports: HTTP 409 MacAddressInUse: mac in use"
        );
        let e = crate::http::parse_error(
            "POST",
            "/floatingips",
            404,
            r#"{"NeutronError": {"type": "ExternalGatewayForFloatingIPNotFound", "message": "External network x is not reachable from subnet y.", "detail": ""}}"#,
        );
        let line = fip_error("c1", "172.21.0.200", e);
        assert!(
            line.starts_with("c1: no router connects the gateway's subnet to the external network"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn external_network_choice() {
        let nets = vec![
            Network {
                id: "1".into(),
                name: "public".into(),
            },
            Network {
                id: "2".into(),
                name: "dmz".into(),
            },
        ];
        assert_eq!(pick_external(&nets, Some("dmz")).unwrap().id, "2");
        assert_eq!(pick_external(&nets, Some("1")).unwrap().name, "public");
        let err = pick_external(&nets, None).unwrap_err();
        assert!(
            err.contains("several external networks (public, dmz)"),
            "{err}"
        );
        let err = pick_external(&nets, Some("nope")).unwrap_err();
        assert_eq!(
            err,
            "external network 'nope' not found (external networks visible to this project: public, dmz)"
        );
        assert!(
            pick_external(&[], None)
                .unwrap_err()
                .contains("no external network")
        );
        assert_eq!(pick_external(&nets[..1], None).unwrap().id, "1");
    }
}
