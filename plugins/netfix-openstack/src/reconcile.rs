//! What the plugin wants in Neutron for one cluster, in two steps (the writes themselves are
//! [`crate::writes`], run by the host as planned actions):
//!
//! 1. [`observe`] (GETs only): the nodes' ports (by Nova server ID from `spec.providerID`, else
//!    by the node's InternalIP), the node subnet that holds the MetalLB gateway IP, the gateway
//!    port, floating IP and security group this plugin made before (found by their tags), any
//!    other port holding the gateway IP, the node ports that carry an allowed address pair or
//!    the security group this plugin added, and the addresses the cluster's traffic leaves from.
//! 2. [`plan`] (pure): the [`Op`]s that make it right: allowed address pair on every node port,
//!    a port holding the gateway IP on the node subnet, a floating IP on the external network
//!    associated with it, and the guide's section 2.2 firewall (a security group opening the
//!    gateway, probe and sample ports to the peers, on every node port); stale things (an old
//!    gateway IP, a node that left, a peer that left) removed.
//!
//! [`teardown`] finds by tag everything this plugin made for a cluster and plans its removal.
//!
//! Marks: what the plugin creates carries the tags [`TAG`] and `kpaas-mesh-cluster=<name>` and
//! a description naming kpaas-mesh; a node port whose allowed address pairs it extended carries
//! [`PAIR_TAG`] and `kpaas-mesh-pair=<cluster>=<ip>`, so `down` removes exactly those pairs (a pair
//! that was there before is never tagged, so never removed).

use crate::http::{ApiError, Session};
use crate::neutron::{self, FloatingIp, Network, Port, SecurityGroup, Subnet, cidr_contains};

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

/// On every node port the plugin gave its security group.
pub const SG_TAG: &str = "kpaas-mesh-sg";

pub fn sg_tag(cluster: &str) -> String {
    format!("{SG_TAG}={cluster}")
}

/// The security group the plugin makes for a cluster.
pub fn group_name(cluster: &str) -> String {
    format!("kpaas-mesh-{cluster}")
}

/// The guide's section 2.2: TCP 4191 (gateway probe), 4143 (gateway), 5000 (sample app).
pub const GUIDE_PORTS: [u16; 3] = [4143, 4191, 5000];

/// The firewall wanted for one cluster: its security group lets `sources` reach `ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firewall {
    /// TCP ports, sorted.
    pub ports: Vec<u16>,
    /// Remote IPv4 prefixes (`a.b.c.d/n`), sorted and unique.
    pub sources: Vec<String>,
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
    /// Security groups this plugin made for the cluster (tagged).
    pub groups: Vec<SecurityGroup>,
    /// Ports carrying this cluster's security-group tag.
    pub grouped: Vec<Port>,
    /// Where the cluster's traffic to a peer's floating IP may come from: the external
    /// addresses of the routers on the node subnet (SNAT), floating IPs of the node ports, and
    /// the node ports' own addresses (peers on a shared network).
    pub egress: Vec<String>,
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
    CreateGroup,
    DeleteGroup { group: SecurityGroup },
    AddRule { port: u16, remote: String },
    DeleteRule { rule_id: String, what: String },
    AttachGroup { port: Port, node: String },
    DetachGroup { port: Port },
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
            Op::CreateGroup => {
                format!("{c}: create security group {}, tagged {TAG}", group_name(c))
            }
            Op::DeleteGroup { group } => {
                format!("{c}: delete security group {} ({})", group.name, group.id)
            }
            Op::AddRule { port, remote } => format!(
                "{c}: allow TCP {port} from {remote} in security group {}",
                group_name(c)
            ),
            Op::DeleteRule { what, .. } => format!(
                "{c}: remove rule {what} from security group {}",
                group_name(c)
            ),
            Op::AttachGroup { port, node } => format!(
                "{c}: add security group {} to port {} of node {node}",
                group_name(c),
                port.label()
            ),
            Op::DetachGroup { port } => format!(
                "{c}: take security group {} off port {}",
                group_name(c),
                port.label()
            ),
        }
    }

    /// The op as the data of a planned action (see [`crate::writes::Write`]).
    pub fn write(&self, c: &str, ip: &str) -> crate::writes::Write {
        use crate::writes::Write;
        let cluster = c.to_string();
        match self {
            Op::RemovePair { port, ip } => Write::RemoveAllowedAddressPair {
                cluster,
                port_id: port.id.clone(),
                ip: ip.clone(),
            },
            Op::DeletePort { port } => Write::DeletePort {
                cluster,
                port_id: port.id.clone(),
            },
            Op::DeleteFip { fip } => Write::ReleaseFloatingIp {
                cluster,
                floating_ip_id: fip.id.clone(),
            },
            Op::AddPair { port, .. } => Write::AddAllowedAddressPair {
                cluster,
                port_id: port.id.clone(),
                ip: ip.to_string(),
            },
            Op::CreatePort { subnet } => Write::CreateGatewayPort {
                cluster,
                ip: ip.to_string(),
                network_id: subnet.network_id.clone(),
                subnet_id: subnet.id.clone(),
            },
            Op::CreateFip { network } => Write::CreateFloatingIp {
                cluster,
                ip: ip.to_string(),
                floating_network_id: network.id.clone(),
            },
            Op::AssociateFip { fip } => Write::AssociateFloatingIp {
                cluster,
                ip: ip.to_string(),
                floating_ip_id: fip.id.clone(),
            },
            Op::CreateGroup => Write::CreateSecurityGroup { cluster },
            Op::DeleteGroup { group } => Write::DeleteSecurityGroup {
                cluster,
                group_id: group.id.clone(),
            },
            Op::AddRule { port, remote } => Write::AddSecurityGroupRule {
                cluster,
                port: *port,
                remote_ip_prefix: remote.clone(),
            },
            Op::DeleteRule { rule_id, .. } => Write::DeleteSecurityGroupRule {
                cluster,
                rule_id: rule_id.clone(),
            },
            Op::AttachGroup { port, .. } => Write::AttachSecurityGroup {
                cluster,
                port_id: port.id.clone(),
            },
            Op::DetachGroup { port } => Write::DetachSecurityGroup {
                cluster,
                port_id: port.id.clone(),
            },
        }
    }

    fn touches_pairs(&self) -> bool {
        matches!(self, Op::RemovePair { .. } | Op::AddPair { .. })
    }
    fn touches_port(&self) -> bool {
        matches!(self, Op::DeletePort { .. } | Op::CreatePort { .. })
    }
    pub fn touches_fip(&self) -> bool {
        matches!(
            self,
            Op::DeleteFip { .. } | Op::CreateFip { .. } | Op::AssociateFip { .. }
        )
    }
    pub fn touches_firewall(&self) -> bool {
        matches!(
            self,
            Op::CreateGroup
                | Op::DeleteGroup { .. }
                | Op::AddRule { .. }
                | Op::DeleteRule { .. }
                | Op::AttachGroup { .. }
                | Op::DetachGroup { .. }
        )
    }
}

/// Which parts of a cluster's set-up are pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub port: bool,
    pub pairs: bool,
    pub fip: bool,
    pub firewall: bool,
}

pub fn pending(ops: &[Op]) -> Pending {
    Pending {
        port: ops.iter().any(Op::touches_port),
        pairs: ops.iter().any(Op::touches_pairs),
        fip: ops.iter().any(Op::touches_fip),
        firewall: ops.iter().any(Op::touches_firewall),
    }
}

pub(crate) fn api(c: &str) -> impl Fn(ApiError) -> String + '_ {
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
    let groups = neutron::security_groups_tagged(s, &[TAG, &ctag]).map_err(api(c))?;
    let grouped = neutron::ports_tagged(s, &[&sg_tag(c)]).map_err(api(c))?;
    // 4. Where the cluster's traffic comes from, as a peer's security group sees it.
    let mut egress: Vec<String> = Vec::new();
    let mut add = |ip: &str| {
        if ip.parse::<std::net::Ipv4Addr>().is_ok() && !egress.iter().any(|e| e == ip) {
            egress.push(ip.to_string());
        }
    };
    for ip in neutron::router_external_ips(s, &subnet.id).map_err(api(c))? {
        add(&ip);
    }
    for (_, p) in &node_ports {
        for f in &p.fixed_ips {
            add(&f.ip_address);
        }
    }
    let ids: Vec<&str> = node_ports.iter().map(|(_, p)| p.id.as_str()).collect();
    for f in neutron::floating_ips_of_ports(s, &ids).map_err(api(c))? {
        add(&f.floating_ip_address);
    }
    egress.sort();
    Ok(Observed {
        node_ports,
        subnet,
        gateway_ports,
        ip_holders,
        fips,
        paired,
        groups,
        grouped,
        egress,
    })
}

/// The firewall of each cluster: the configured prefixes, or every peer's egress addresses
/// (`/32`), on the given ports.
pub fn firewalls(
    egress: &[(String, Vec<String>)],
    ports: &[u16],
    configured: Option<&[String]>,
) -> Vec<(String, Firewall)> {
    egress
        .iter()
        .map(|(c, _)| {
            let mut sources: Vec<String> = match configured {
                Some(cidrs) => cidrs.to_vec(),
                None => egress
                    .iter()
                    .filter(|(peer, _)| peer != c)
                    .flat_map(|(_, ips)| ips.iter().map(|ip| format!("{ip}/32")))
                    .collect(),
            };
            sources.sort();
            sources.dedup();
            let mut ports = ports.to_vec();
            ports.sort();
            ports.dedup();
            (c.clone(), Firewall { ports, sources })
        })
        .collect()
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

/// The ops that make `obs` right for `cluster` with floating IPs on `external` and, when
/// given, `firewall` (none: the plugin's security group is removed if there is one).
pub fn plan(
    cluster: &Cluster,
    obs: &Observed,
    external: &Network,
    firewall: Option<&Firewall>,
) -> Result<Vec<Op>, String> {
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
    plan_firewall(obs, firewall, &mut ops);
    Ok(ops)
}

/// The guide's section 2.2 for one cluster: one security group of the plugin's, with exactly
/// the wanted rules, on every node port that has port security.
fn plan_firewall(obs: &Observed, firewall: Option<&Firewall>, ops: &mut Vec<Op>) {
    let keep = firewall.and(obs.groups.first());
    for g in &obs.groups {
        if keep.is_none_or(|k| k.id != g.id) {
            for p in obs
                .grouped
                .iter()
                .filter(|p| p.security_groups.contains(&g.id))
            {
                ops.push(Op::DetachGroup { port: p.clone() });
            }
            ops.push(Op::DeleteGroup { group: g.clone() });
        }
    }
    let Some(fw) = firewall else {
        return;
    };
    let wanted: Vec<(u16, String)> = fw
        .ports
        .iter()
        .flat_map(|p| fw.sources.iter().map(move |s| (*p, s.clone())))
        .collect();
    let have: Vec<(u16, String)> = match keep {
        None => {
            ops.push(Op::CreateGroup);
            vec![]
        }
        Some(g) => {
            let mut have = Vec::new();
            for r in &g.security_group_rules {
                match r.tcp_ingress() {
                    Some(rule) if wanted.contains(&rule) && !have.contains(&rule) => {
                        have.push(rule)
                    }
                    // Neutron's default egress rules of a new group stay.
                    _ if r.direction == "egress" && r.remote_ip_prefix.is_none() => {}
                    other => ops.push(Op::DeleteRule {
                        rule_id: r.id.clone(),
                        what: match other {
                            Some((port, remote)) => format!("TCP {port} from {remote}"),
                            None => format!("{} {}", r.direction, r.id),
                        },
                    }),
                }
            }
            have
        }
    };
    for (port, remote) in wanted.into_iter().filter(|w| !have.contains(w)) {
        ops.push(Op::AddRule { port, remote });
    }
    let group_id = keep.map(|g| g.id.as_str());
    for (node, p) in &obs.node_ports {
        let on = group_id.is_some_and(|id| p.security_groups.iter().any(|g| g == id));
        if !on && p.port_security_enabled != Some(false) {
            ops.push(Op::AttachGroup {
                port: p.clone(),
                node: node.clone(),
            });
        }
    }
    for p in &obs.grouped {
        if !obs.node_ports.iter().any(|(_, np)| np.id == p.id) {
            ops.push(Op::DetachGroup { port: p.clone() });
        }
    }
}

/// Everything the plugin made for `cluster`, as delete/remove ops (read by tag).
pub fn teardown(s: &Session, cluster: &str) -> Result<Vec<Op>, String> {
    let ctag = cluster_tag(cluster);
    let mut ops = Vec::new();
    for port in neutron::ports_tagged(s, &[&sg_tag(cluster)]).map_err(api(cluster))? {
        ops.push(Op::DetachGroup { port });
    }
    for group in neutron::security_groups_tagged(s, &[TAG, &ctag]).map_err(api(cluster))? {
        ops.push(Op::DeleteGroup { group });
    }
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
    use crate::neutron::{FixedIp, SecurityGroupRule};
    use crate::writes::{create_port_error, fip_error};
    use serde_json::json;

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
        let ops = plan(&c, &obs, &ext, None).unwrap();
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
        assert_eq!(plan(&c, &obs, &ext, None).unwrap(), vec![]);

        // MetalLB moved the gateway to .201: old pairs and port go, new ones come, the
        // floating IP is kept and re-associated.
        let moved = Cluster {
            gateway_ip: "172.21.0.201".into(),
            ..c.clone()
        };
        let ops = plan(&moved, &obs, &ext, None).unwrap();
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
                _ => "firewall",
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
        assert_eq!(
            pending(&ops),
            Pending {
                port: true,
                pairs: true,
                fip: true,
                firewall: false
            }
        );

        // A node left: its pair goes, nothing else.
        let mut one_node = obs.clone();
        one_node.node_ports.pop();
        let ops = plan(&c, &one_node, &ext, None).unwrap();
        assert!(
            matches!(&ops[..], [Op::RemovePair { port, ip }] if port.id == "p2" && ip == "172.21.0.200"),
            "{ops:?}"
        );
    }

    #[test]
    fn a_port_holding_the_ip_is_an_error_and_a_pair_made_by_hand_stays() {
        let (c, mut obs, ext) = world();
        obs.ip_holders = vec![port("squatter", "172.21.0.200")];
        let err = plan(&c, &obs, &ext, None).unwrap_err();
        assert!(
            err.starts_with("c1: the gateway IP 172.21.0.200 is already allocated in Neutron (IpAddressAlreadyAllocated) to port squatter (squatter)"),
            "{err}"
        );
        // A pair that the operator made (no tag) is neither added again nor removed.
        let (c, mut obs, ext) = world();
        obs.node_ports[0].1.allowed_address_pairs = vec![json!({"ip_address": "172.21.0.200/32"})];
        let ops = plan(&c, &obs, &ext, None).unwrap();
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::AddPair { port, .. } if port.id == "p1"))
        );
        assert!(!ops.iter().any(|o| matches!(o, Op::RemovePair { .. })));
    }

    fn rule(id: &str, port: u16, remote: &str) -> SecurityGroupRule {
        SecurityGroupRule {
            id: id.into(),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some("tcp".into()),
            port_range_min: Some(port),
            port_range_max: Some(port),
            remote_ip_prefix: Some(remote.into()),
        }
    }

    /// The firewall ops, as their lines.
    fn firewall_lines(ops: &[Op], c: &Cluster) -> Vec<String> {
        ops.iter()
            .filter(|o| o.touches_firewall())
            .map(|o| o.describe(&c.name, &c.gateway_ip))
            .collect()
    }

    #[test]
    fn firewall_sources_are_the_peers_and_the_group_converges() {
        let egress = vec![
            ("c1".to_string(), vec!["203.0.113.31".to_string()]),
            (
                "c2".to_string(),
                vec!["172.22.0.11".to_string(), "203.0.113.32".to_string()],
            ),
        ];
        let fws = firewalls(&egress, &[5000, 4143, 4191, 4143], None);
        assert_eq!(fws[0].0, "c1");
        assert_eq!(fws[0].1.ports, [4143, 4191, 5000]);
        assert_eq!(fws[0].1.sources, ["172.22.0.11/32", "203.0.113.32/32"]);
        assert_eq!(fws[1].1.sources, ["203.0.113.31/32"]);
        let given = ["10.0.0.0/8".to_string()];
        assert_eq!(
            firewalls(&egress, &[4143], Some(&given))[1].1.sources,
            ["10.0.0.0/8"]
        );

        // Nothing there yet: a group, every rule, the group on both node ports.
        let (c, mut obs, ext) = world();
        obs.node_ports[1].1.port_security_enabled = Some(false);
        let fw = Firewall {
            ports: vec![4143, 4191],
            sources: vec!["203.0.113.32/32".into()],
        };
        let ops = plan(&c, &obs, &ext, Some(&fw)).unwrap();
        let sg = firewall_lines(&ops, &c);
        assert_eq!(
            sg,
            [
                "c1: create security group kpaas-mesh-c1, tagged kpaas-mesh",
                "c1: allow TCP 4143 from 203.0.113.32/32 in security group kpaas-mesh-c1",
                "c1: allow TCP 4191 from 203.0.113.32/32 in security group kpaas-mesh-c1",
                "c1: add security group kpaas-mesh-c1 to port p1 (p1) of node n1",
            ],
            "a port without port security gets no group"
        );

        // The group exists with one right rule, one stale rule, and is on p1: only the gap.
        obs.groups = vec![SecurityGroup {
            id: "g".into(),
            name: "kpaas-mesh-c1".into(),
            tags: vec![],
            security_group_rules: vec![
                rule("r1", 4143, "203.0.113.32/32"),
                rule("r2", 4143, "198.51.100.7/32"),
                SecurityGroupRule {
                    id: "e".into(),
                    direction: "egress".into(),
                    ethertype: "IPv4".into(),
                    ..SecurityGroupRule::default()
                },
            ],
        }];
        obs.node_ports[0].1.security_groups = vec!["default".into(), "g".into()];
        // A node that left still carries the group.
        let mut gone = port("p9", "172.21.0.19");
        gone.security_groups = vec!["g".into()];
        obs.grouped = vec![obs.node_ports[0].1.clone(), gone];
        let ops = plan(&c, &obs, &ext, Some(&fw)).unwrap();
        let sg = firewall_lines(&ops, &c);
        assert_eq!(
            sg,
            [
                "c1: remove rule TCP 4143 from 198.51.100.7/32 from security group kpaas-mesh-c1",
                "c1: allow TCP 4191 from 203.0.113.32/32 in security group kpaas-mesh-c1",
                "c1: take security group kpaas-mesh-c1 off port p9 (p9)",
            ]
        );
        // firewall=false on a cluster that has one: off every port, then deleted.
        let ops = plan(&c, &obs, &ext, None).unwrap();
        let sg = firewall_lines(&ops, &c);
        assert_eq!(
            sg,
            [
                "c1: take security group kpaas-mesh-c1 off port p1 (p1)",
                "c1: take security group kpaas-mesh-c1 off port p9 (p9)",
                "c1: delete security group kpaas-mesh-c1 (g)",
            ]
        );
        // Every op becomes a write of this cluster that survives JSON.
        for op in &ops {
            let w = op.write("c1", &c.gateway_ip);
            assert_eq!(w.cluster(), "c1");
            let back: crate::writes::Write =
                serde_json::from_value(serde_json::to_value(&w).unwrap()).unwrap();
            assert_eq!(back, w);
        }
        let w = serde_json::to_value(
            Op::AddRule {
                port: 4143,
                remote: "10.0.0.0/8".into(),
            }
            .write("c1", "172.21.0.200"),
        )
        .unwrap();
        assert_eq!(
            w,
            json!({"neutron": "add-security-group-rule", "cluster": "c1", "port": 4143,
                   "remote_ip_prefix": "10.0.0.0/8"})
        );
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
