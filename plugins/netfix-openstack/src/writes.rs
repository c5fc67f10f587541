//! Every write the plugin makes to Neutron, as data: a [`Write`] is the `op` of one planned
//! [`kpaas_mesh_plugin_api::Action::Plugin`], printed by the host in `--dry-run` and handed back
//! to [`execute`] (the plugin's `execute` entry point) when the host runs the plan. Each write
//! re-reads what it touches first, so running one again, or after someone else did it, is a
//! no-op that reports `changed: false`; what it needs that an earlier write of the same plan
//! made (the gateway port for its floating IP, the security group for its rules) it finds by
//! the plugin's tags, not by an ID remembered from planning.

use crate::http::{ApiError, Session};
use crate::neutron::{self, FloatingIp, Port, SecurityGroup, Subnet};
use crate::reconcile::{
    PAIR_TAG, SG_TAG, TAG, api, cluster_tag, group_name, ip_taken, pair_tag, parse_pair_tag,
    port_name, sg_tag,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One write to Neutron, for one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "neutron", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Write {
    /// Tag the node port `kpaas-mesh-pair=<cluster>=<ip>`, then add `ip` to its allowed
    /// address pairs.
    AddAllowedAddressPair {
        cluster: String,
        port_id: String,
        ip: String,
    },
    /// Remove `ip` from the port's allowed address pairs (unless another cluster's tag still
    /// wants it) and the tag.
    RemoveAllowedAddressPair {
        cluster: String,
        port_id: String,
        ip: String,
    },
    /// A port holding the gateway IP on the node subnet, tagged.
    CreateGatewayPort {
        cluster: String,
        ip: String,
        network_id: String,
        subnet_id: String,
    },
    DeletePort {
        cluster: String,
        port_id: String,
    },
    /// A floating IP on the external network, associated with the cluster's gateway port
    /// (found by tag), tagged.
    CreateFloatingIp {
        cluster: String,
        ip: String,
        floating_network_id: String,
    },
    /// Point the plugin's floating IP at the gateway port (found by tag).
    AssociateFloatingIp {
        cluster: String,
        ip: String,
        floating_ip_id: String,
    },
    ReleaseFloatingIp {
        cluster: String,
        floating_ip_id: String,
    },
    /// The cluster's security group `kpaas-mesh-<cluster>`, tagged.
    CreateSecurityGroup {
        cluster: String,
    },
    DeleteSecurityGroup {
        cluster: String,
        group_id: String,
    },
    /// An IPv4 ingress rule for one TCP port in the cluster's security group (found by tag).
    AddSecurityGroupRule {
        cluster: String,
        port: u16,
        remote_ip_prefix: String,
    },
    DeleteSecurityGroupRule {
        cluster: String,
        rule_id: String,
    },
    /// Tag the node port `kpaas-mesh-sg=<cluster>`, then add the cluster's security group.
    AttachSecurityGroup {
        cluster: String,
        port_id: String,
    },
    /// Take the plugin's security groups of the cluster off the port, and the tag.
    DetachSecurityGroup {
        cluster: String,
        port_id: String,
    },
}

impl Write {
    pub fn cluster(&self) -> &str {
        match self {
            Write::AddAllowedAddressPair { cluster, .. }
            | Write::RemoveAllowedAddressPair { cluster, .. }
            | Write::CreateGatewayPort { cluster, .. }
            | Write::DeletePort { cluster, .. }
            | Write::CreateFloatingIp { cluster, .. }
            | Write::AssociateFloatingIp { cluster, .. }
            | Write::ReleaseFloatingIp { cluster, .. }
            | Write::CreateSecurityGroup { cluster }
            | Write::DeleteSecurityGroup { cluster, .. }
            | Write::AddSecurityGroupRule { cluster, .. }
            | Write::DeleteSecurityGroupRule { cluster, .. }
            | Write::AttachSecurityGroup { cluster, .. }
            | Write::DetachSecurityGroup { cluster, .. } => cluster,
        }
    }
}

/// What a write did: whether Neutron changed, and a line for the report.
pub type Done = (bool, String);

/// Carries out one write.
pub fn execute(s: &Session, w: &Write) -> Result<Done, String> {
    let c = w.cluster();
    match w {
        Write::AddAllowedAddressPair { port_id, ip, .. } => {
            let changed = add_pair(s, c, port_id, ip)?;
            Ok((
                changed,
                format!("allowed address pair {ip} on port {port_id}"),
            ))
        }
        Write::RemoveAllowedAddressPair { port_id, ip, .. } => {
            let changed = remove_pair(s, c, port_id, ip)?;
            Ok((
                changed,
                format!("allowed address pair {ip} off port {port_id}"),
            ))
        }
        Write::CreateGatewayPort {
            ip,
            network_id,
            subnet_id,
            ..
        } => {
            if let Some(p) = gateway_port(s, c, ip)? {
                return Ok((false, format!("gateway port {}", p.label())));
            }
            let subnet = neutron::subnet(s, subnet_id).map_err(api(c))?;
            if &subnet.network_id != network_id {
                return Err(format!(
                    "{c}: subnet {subnet_id} moved to another network; run up again"
                ));
            }
            let p = create_gateway_port(s, c, ip, &subnet)?;
            Ok((true, format!("gateway port {} holding {ip}", p.label())))
        }
        Write::DeletePort { port_id, .. } => {
            let changed = neutron::delete_port(s, port_id).map_err(api(c))?;
            Ok((changed, format!("port {port_id} deleted")))
        }
        Write::CreateFloatingIp {
            ip,
            floating_network_id,
            ..
        } => {
            let ctag = cluster_tag(c);
            if let Some(f) = neutron::floating_ips_tagged(s, &[TAG, &ctag])
                .map_err(api(c))?
                .into_iter()
                .find(|f| &f.floating_network_id == floating_network_id)
            {
                return Ok((false, format!("floating IP {}", f.floating_ip_address)));
            }
            let port = gateway_port(s, c, ip)?
                .ok_or_else(|| format!("{c}: no gateway port to give a floating IP"))?;
            let f = create_fip(s, c, ip, floating_network_id, &port.id)?;
            Ok((
                true,
                format!("floating IP {} -> {ip}", f.floating_ip_address),
            ))
        }
        Write::AssociateFloatingIp {
            ip, floating_ip_id, ..
        } => {
            let port = gateway_port(s, c, ip)?
                .ok_or_else(|| format!("{c}: no gateway port to associate the floating IP with"))?;
            let f = neutron::update_floating_ip(
                s,
                floating_ip_id,
                &json!({"port_id": port.id, "fixed_ip_address": ip}),
            )
            .map_err(|e| fip_error(c, ip, e))?;
            Ok((
                true,
                format!("floating IP {} -> {ip}", f.floating_ip_address),
            ))
        }
        Write::ReleaseFloatingIp { floating_ip_id, .. } => {
            let changed = neutron::delete_floating_ip(s, floating_ip_id).map_err(api(c))?;
            Ok((changed, format!("floating IP {floating_ip_id} released")))
        }
        Write::CreateSecurityGroup { .. } => {
            if let Some(g) = group(s, c)? {
                return Ok((false, format!("security group {} ({})", g.name, g.id)));
            }
            let g = create_group(s, c)?;
            Ok((true, format!("security group {} ({})", g.name, g.id)))
        }
        Write::DeleteSecurityGroup { group_id, .. } => {
            let changed = neutron::delete_security_group(s, group_id).map_err(|e| {
                if e.kind == "SecurityGroupInUse" {
                    format!(
                        "{c}: security group {group_id} is still on a port kpaas-mesh did not give it to; take \
                         it off that port and run down again: {e}"
                    )
                } else {
                    format!("{c}: {e}")
                }
            })?;
            Ok((changed, format!("security group {group_id} deleted")))
        }
        Write::AddSecurityGroupRule {
            port,
            remote_ip_prefix,
            ..
        } => {
            let g = group(s, c)?.ok_or_else(|| {
                format!(
                    "{c}: security group {} is gone; run up again",
                    group_name(c)
                )
            })?;
            let want = (*port, remote_ip_prefix.clone());
            if g.security_group_rules
                .iter()
                .any(|r| r.tcp_ingress().as_ref() == Some(&want))
            {
                return Ok((false, format!("TCP {port} from {remote_ip_prefix}")));
            }
            let body = json!({
                "security_group_id": g.id,
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "port_range_min": port,
                "port_range_max": port,
                "remote_ip_prefix": remote_ip_prefix,
                "description": format!("kpaas-mesh: Linkerd multicluster ({c}); made and removed by kubectl kpaas-mesh"),
            });
            match neutron::create_security_group_rule(s, &body) {
                Ok(_) => Ok((true, format!("TCP {port} from {remote_ip_prefix}"))),
                Err(e) if e.kind == "SecurityGroupRuleExists" => {
                    Ok((false, format!("TCP {port} from {remote_ip_prefix}")))
                }
                Err(e) => Err(format!("{c}: {e}")),
            }
        }
        Write::DeleteSecurityGroupRule { rule_id, .. } => {
            let changed = neutron::delete_security_group_rule(s, rule_id).map_err(api(c))?;
            Ok((changed, format!("rule {rule_id} deleted")))
        }
        Write::AttachSecurityGroup { port_id, .. } => {
            let g = group(s, c)?.ok_or_else(|| {
                format!(
                    "{c}: security group {} is gone; run up again",
                    group_name(c)
                )
            })?;
            let port = neutron::port(s, port_id)
                .map_err(api(c))?
                .ok_or_else(|| format!("{c}: node port {port_id} disappeared"))?;
            // Tag first, as for pairs: `down` then finds the port even if the update fails.
            mark(s, c, &port, SG_TAG, &sg_tag(c))?;
            if port.security_groups.contains(&g.id) {
                return Ok((false, format!("{} on port {}", g.name, port.label())));
            }
            let mut groups = port.security_groups.clone();
            groups.push(g.id.clone());
            neutron::update_port(s, port_id, &json!({"security_groups": groups}))
                .map_err(api(c))?;
            Ok((true, format!("{} on port {}", g.name, port.label())))
        }
        Write::DetachSecurityGroup { port_id, .. } => {
            let Some(port) = neutron::port(s, port_id).map_err(api(c))? else {
                return Ok((false, format!("port {port_id} is gone")));
            };
            let ours: Vec<String> = groups(s, c)?.into_iter().map(|g| g.id).collect();
            let mut changed = false;
            if port.security_groups.iter().any(|g| ours.contains(g)) {
                let keep: Vec<&String> = port
                    .security_groups
                    .iter()
                    .filter(|g| !ours.contains(g))
                    .collect();
                neutron::update_port(s, port_id, &json!({"security_groups": keep}))
                    .map_err(api(c))?;
                changed = true;
            }
            changed |= unmark(s, c, &port, SG_TAG, &sg_tag(c))?;
            Ok((
                changed,
                format!("{} off port {}", group_name(c), port.label()),
            ))
        }
    }
}

/// The plugin's gateway port of cluster `c` holding `ip`, found by tag.
fn gateway_port(s: &Session, c: &str, ip: &str) -> Result<Option<Port>, String> {
    Ok(neutron::ports_tagged(s, &[TAG, &cluster_tag(c)])
        .map_err(api(c))?
        .into_iter()
        .find(|p| p.has_ip(ip)))
}

fn groups(s: &Session, c: &str) -> Result<Vec<SecurityGroup>, String> {
    neutron::security_groups_tagged(s, &[TAG, &cluster_tag(c)]).map_err(api(c))
}

/// The plugin's security group of cluster `c`, found by tag.
fn group(s: &Session, c: &str) -> Result<Option<SecurityGroup>, String> {
    Ok(groups(s, c)?.into_iter().next())
}

fn create_group(s: &Session, c: &str) -> Result<SecurityGroup, String> {
    let body = json!({
        "name": group_name(c),
        "description": format!(
            "kpaas-mesh: the Linkerd multicluster ports of cluster {c} (the K-PaaS guide's section 2.2), open to \
             its peers; made and removed by kubectl kpaas-mesh"
        ),
    });
    let g = neutron::create_security_group(s, &body).map_err(api(c))?;
    tag_new(
        s,
        c,
        "security-groups",
        &g.id,
        "security group (deleted it again)",
        || neutron::delete_security_group(s, &g.id).map(|_| ()),
    )?;
    Ok(g)
}
fn remove_pair(s: &Session, c: &str, port_id: &str, ip: &str) -> Result<bool, String> {
    let Some(port) = neutron::port(s, port_id).map_err(api(c))? else {
        return Ok(false); // the node's port is gone: nothing to undo
    };
    let mut changed = false;
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
        changed = true;
    }
    changed |= unmark(s, c, &port, PAIR_TAG, &tag)?;
    Ok(changed)
}

fn add_pair(s: &Session, c: &str, port_id: &str, ip: &str) -> Result<bool, String> {
    let port = neutron::port(s, port_id)
        .map_err(api(c))?
        .ok_or_else(|| format!("{c}: node port {port_id} disappeared"))?;
    if port.has_pair(ip) {
        return Ok(false);
    }
    // Tag first: should the pair update fail, `down` finds a tag without a pair, which is harmless;
    // the other order could leave a pair nobody knows was ours.
    mark(s, c, &port, PAIR_TAG, &pair_tag(c, ip))?;
    let mut pairs = port.allowed_address_pairs.clone();
    pairs.push(json!({"ip_address": ip}));
    neutron::update_port(s, port_id, &json!({"allowed_address_pairs": pairs})).map_err(api(c))?;
    Ok(true)
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
    tag_new(
        s,
        c,
        "ports",
        &port.id,
        "gateway port (deleted it again)",
        || neutron::delete_port(s, &port.id).map(|_| ()),
    )?;
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
    network_id: &str,
    port: &str,
) -> Result<FloatingIp, String> {
    let body = json!({
        "floating_network_id": network_id,
        "port_id": port,
        "fixed_ip_address": ip,
        "description": format!(
            "kpaas-mesh: public address of the Linkerd multicluster gateway of cluster {c}; \
             made and removed by kubectl kpaas-mesh"
        ),
    });
    let fip = neutron::create_floating_ip(s, &body).map_err(|e| fip_error(c, ip, e))?;
    tag_new(
        s,
        c,
        "floatingips",
        &fip.id,
        "floating IP (released it again)",
        || neutron::delete_floating_ip(s, &fip.id).map(|_| ()),
    )?;
    Ok(fip)
}

/// Tags what was just made `kpaas-mesh` and `kpaas-mesh-cluster=<c>`; should that fail, `undo`
/// removes it again (untagged, nothing would ever find it) and the error names `what`.
fn tag_new(
    s: &Session,
    c: &str,
    collection: &str,
    id: &str,
    what: &str,
    undo: impl FnOnce() -> Result<(), ApiError>,
) -> Result<(), String> {
    neutron::set_tags(s, collection, id, &[TAG.to_string(), cluster_tag(c)]).map_err(|e| {
        let _ = undo();
        format!("{c}: cannot tag the new {what}: {e}")
    })
}

/// Adds `umbrella` (e.g. `kpaas-mesh-pair`) and `tag` (`kpaas-mesh-pair=<c>=<ip>`) to a node
/// port's tags, if not there.
fn mark(s: &Session, c: &str, port: &Port, umbrella: &str, tag: &str) -> Result<(), String> {
    let mut tags = port.tags.clone();
    for t in [umbrella, tag] {
        if !tags.iter().any(|have| have == t) {
            tags.push(t.to_string());
        }
    }
    if tags != port.tags {
        neutron::set_tags(s, "ports", &port.id, &tags).map_err(api(c))?;
    }
    Ok(())
}

/// Takes `tag` off a node port, and `umbrella` too when no other `umbrella=…` tag is left.
/// True when the tags changed.
fn unmark(s: &Session, c: &str, port: &Port, umbrella: &str, tag: &str) -> Result<bool, String> {
    let mut tags: Vec<String> = port.tags.iter().filter(|t| *t != tag).cloned().collect();
    let prefix = format!("{umbrella}=");
    if !tags.iter().any(|t| t.starts_with(&prefix)) {
        tags.retain(|t| t != umbrella);
    }
    if tags == port.tags {
        return Ok(false);
    }
    neutron::set_tags(s, "ports", &port.id, &tags).map_err(api(c))?;
    Ok(true)
}
