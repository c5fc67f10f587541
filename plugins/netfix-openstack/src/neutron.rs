//! The few Neutron v2.0 resources the plugin touches (networks, subnets, ports, floating IPs,
//! security groups and their rules, routers' external addresses, tags), as typed views of the
//! JSON, and the calls on a [`Session`] that read and write them.

use crate::http::{ApiError, Session, with_query};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Network {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subnet {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub network_id: String,
    pub cidr: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FixedIp {
    pub subnet_id: String,
    pub ip_address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Port {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub network_id: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub device_owner: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    /// Kept as Neutron returns them (`ip_address`, `mac_address`) so an update writes them back.
    #[serde(default)]
    pub allowed_address_pairs: Vec<Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub port_security_enabled: Option<bool>,
    /// IDs of the security groups on the port.
    #[serde(default)]
    pub security_groups: Vec<String>,
}

impl Port {
    pub fn has_ip(&self, ip: &str) -> bool {
        self.fixed_ips.iter().any(|f| f.ip_address == ip)
    }
    pub fn has_pair(&self, ip: &str) -> bool {
        self.allowed_address_pairs.iter().any(|p| {
            p["ip_address"]
                .as_str()
                .is_some_and(|a| pair_matches(a, ip))
        })
    }
    /// `name (id)`, or the id alone.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.id.clone()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }
}

/// An allowed-address-pair entry `a` (an address or `/32` CIDR) that is exactly `ip`.
fn pair_matches(a: &str, ip: &str) -> bool {
    a == ip || a.strip_suffix("/32") == Some(ip)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct FloatingIp {
    pub id: String,
    pub floating_ip_address: String,
    pub floating_network_id: String,
    #[serde(default)]
    pub port_id: Option<String>,
    #[serde(default)]
    pub fixed_ip_address: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
}

fn list<T: for<'de> Deserialize<'de>>(
    s: &Session,
    collection: &str,
    pairs: &[(&str, &str)],
) -> Result<Vec<T>, ApiError> {
    list_at(s, collection, collection, pairs)
}

/// `GET /{url}?pairs`, the list under `key` (security groups: URL `security-groups`, key
/// `security_groups`).
fn list_at<T: for<'de> Deserialize<'de>>(
    s: &Session,
    url: &str,
    key: &str,
    pairs: &[(&str, &str)],
) -> Result<Vec<T>, ApiError> {
    let path = with_query(&format!("/{url}"), pairs);
    let v = s.get(&path)?;
    serde_json::from_value(v[key].clone()).map_err(|e| ApiError {
        method: "GET",
        path,
        status: 200,
        kind: String::new(),
        message: format!("unexpected answer: {e}"),
    })
}

fn one<T: for<'de> Deserialize<'de>>(
    method: &'static str,
    path: &str,
    v: Value,
    key: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(v[key].clone()).map_err(|e| ApiError {
        method,
        path: path.to_string(),
        status: 200,
        kind: String::new(),
        message: format!("unexpected answer: {e}"),
    })
}

pub fn external_networks(s: &Session) -> Result<Vec<Network>, ApiError> {
    list(s, "networks", &[("router:external", "true")])
}

pub fn subnet(s: &Session, id: &str) -> Result<Subnet, ApiError> {
    let path = format!("/subnets/{id}");
    let v = s.get(&path)?;
    one("GET", &path, v, "subnet")
}

/// One port; `None` when it is gone.
pub fn port(s: &Session, id: &str) -> Result<Option<Port>, ApiError> {
    let path = format!("/ports/{id}");
    match s.get(&path) {
        Ok(v) => one("GET", &path, v, "port").map(Some),
        Err(e) if e.status == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn ports(s: &Session, pairs: &[(&str, &str)]) -> Result<Vec<Port>, ApiError> {
    list(s, "ports", pairs)
}

/// Ports holding `ip` as a fixed IP (on `network_id` when given).
pub fn ports_with_ip(
    s: &Session,
    ip: &str,
    network_id: Option<&str>,
) -> Result<Vec<Port>, ApiError> {
    let fixed = format!("ip_address={ip}");
    let mut q = vec![("fixed_ips", fixed.as_str())];
    if let Some(n) = network_id {
        q.push(("network_id", n));
    }
    ports(s, &q)
}

pub fn ports_tagged(s: &Session, tags: &[&str]) -> Result<Vec<Port>, ApiError> {
    ports(s, &[("tags", &tags.join(","))])
}

pub fn floating_ips_tagged(s: &Session, tags: &[&str]) -> Result<Vec<FloatingIp>, ApiError> {
    list(s, "floatingips", &[("tags", &tags.join(","))])
}

pub fn create_port(s: &Session, body: &Value) -> Result<Port, ApiError> {
    let v = s.post("/ports", &json!({ "port": body }))?;
    one("POST", "/ports", v, "port")
}

pub fn update_port(s: &Session, id: &str, body: &Value) -> Result<Port, ApiError> {
    let path = format!("/ports/{id}");
    let v = s.put(&path, &json!({ "port": body }))?;
    one("PUT", &path, v, "port")
}

/// Deletes a port; false when it was already gone.
pub fn delete_port(s: &Session, id: &str) -> Result<bool, ApiError> {
    s.delete(&format!("/ports/{id}"))
}

pub fn create_floating_ip(s: &Session, body: &Value) -> Result<FloatingIp, ApiError> {
    let v = s.post("/floatingips", &json!({ "floatingip": body }))?;
    one("POST", "/floatingips", v, "floatingip")
}

pub fn update_floating_ip(s: &Session, id: &str, body: &Value) -> Result<FloatingIp, ApiError> {
    let path = format!("/floatingips/{id}");
    let v = s.put(&path, &json!({ "floatingip": body }))?;
    one("PUT", &path, v, "floatingip")
}

/// Releases a floating IP; false when it was already gone.
pub fn delete_floating_ip(s: &Session, id: &str) -> Result<bool, ApiError> {
    s.delete(&format!("/floatingips/{id}"))
}

/// A security group, with its rules as Neutron lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub security_group_rules: Vec<SecurityGroupRule>,
}

/// One rule of a security group (only what the plugin compares).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SecurityGroupRule {
    pub id: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub ethertype: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port_range_min: Option<u16>,
    #[serde(default)]
    pub port_range_max: Option<u16>,
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
}

impl SecurityGroupRule {
    /// The `(port, remote prefix)` of an IPv4 ingress rule for one TCP port, else `None`.
    pub fn tcp_ingress(&self) -> Option<(u16, String)> {
        let one_port = self
            .port_range_min
            .filter(|p| Some(*p) == self.port_range_max)?;
        (self.direction == "ingress"
            && self.ethertype == "IPv4"
            && self.protocol.as_deref() == Some("tcp"))
        .then(|| (one_port, self.remote_ip_prefix.clone().unwrap_or_default()))
    }
}

pub fn security_groups_tagged(s: &Session, tags: &[&str]) -> Result<Vec<SecurityGroup>, ApiError> {
    list_at(
        s,
        "security-groups",
        "security_groups",
        &[("tags", &tags.join(","))],
    )
}

pub fn create_security_group(s: &Session, body: &Value) -> Result<SecurityGroup, ApiError> {
    let v = s.post("/security-groups", &json!({ "security_group": body }))?;
    one("POST", "/security-groups", v, "security_group")
}

/// Deletes a security group; false when it was already gone.
pub fn delete_security_group(s: &Session, id: &str) -> Result<bool, ApiError> {
    s.delete(&format!("/security-groups/{id}"))
}

pub fn create_security_group_rule(
    s: &Session,
    body: &Value,
) -> Result<SecurityGroupRule, ApiError> {
    let v = s.post(
        "/security-group-rules",
        &json!({ "security_group_rule": body }),
    )?;
    one("POST", "/security-group-rules", v, "security_group_rule")
}

/// Deletes a rule; false when it was already gone.
pub fn delete_security_group_rule(s: &Session, id: &str) -> Result<bool, ApiError> {
    s.delete(&format!("/security-group-rules/{id}"))
}

/// The external (SNAT) addresses of the routers with an interface on `subnet_id`: where the
/// subnet's traffic to a floating IP comes from.
pub fn router_external_ips(s: &Session, subnet_id: &str) -> Result<Vec<String>, ApiError> {
    let fixed = format!("subnet_id={subnet_id}");
    let mut routers: Vec<String> = Vec::new();
    for owner in [
        "network:router_interface",
        "network:router_interface_distributed",
        "network:ha_router_replicated_interface",
    ] {
        for p in ports(s, &[("device_owner", owner), ("fixed_ips", &fixed)])? {
            if !p.device_id.is_empty() && !routers.contains(&p.device_id) {
                routers.push(p.device_id);
            }
        }
    }
    let mut ips = Vec::new();
    for r in routers {
        let path = format!("/routers/{r}");
        let v = match s.get(&path) {
            Ok(v) => v,
            // A router of another project (shared network): its address is not ours to read.
            Err(e) if e.status == 404 || e.status == 403 => continue,
            Err(e) => return Err(e),
        };
        for f in v["router"]["external_gateway_info"]["external_fixed_ips"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(ip) = f["ip_address"].as_str()
                && !ips.iter().any(|i| i == ip)
            {
                ips.push(ip.to_string());
            }
        }
    }
    Ok(ips)
}

/// Floating IPs associated with any of `port_ids` (one request; Neutron takes a filter repeated).
pub fn floating_ips_of_ports(s: &Session, port_ids: &[&str]) -> Result<Vec<FloatingIp>, ApiError> {
    if port_ids.is_empty() {
        return Ok(vec![]);
    }
    let pairs: Vec<(&str, &str)> = port_ids.iter().map(|id| ("port_id", *id)).collect();
    list(s, "floatingips", &pairs)
}

/// Replaces all tags of `/{collection}/{id}`.
pub fn set_tags(s: &Session, collection: &str, id: &str, tags: &[String]) -> Result<(), ApiError> {
    s.put(
        &format!("/{collection}/{id}/tags"),
        &json!({ "tags": tags }),
    )
    .map(|_| ())
}

/// Whether IPv4 `ip` is inside `cidr` (`a.b.c.d/n`). IPv6 is compared textually only.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return cidr == ip;
    };
    match (
        net.parse::<std::net::Ipv4Addr>(),
        ip.parse::<std::net::Ipv4Addr>(),
        len.parse::<u32>(),
    ) {
        (Ok(n), Ok(a), Ok(l)) if l <= 32 => {
            let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert!(cidr_contains("172.21.0.0/24", "172.21.0.200"));
        assert!(!cidr_contains("172.21.0.0/24", "172.22.0.200"));
        assert!(cidr_contains("0.0.0.0/0", "8.8.8.8"));
        assert!(cidr_contains("10.0.0.5/32", "10.0.0.5"));
        assert!(!cidr_contains("10.0.0.5/32", "10.0.0.6"));
        assert!(!cidr_contains("garbage", "10.0.0.6"));
    }

    #[test]
    fn ports_decode_from_neutron_json() {
        let p: Port = serde_json::from_value(json!({
            "id": "p1", "name": "node-1", "network_id": "n", "device_id": "srv",
            "fixed_ips": [{"subnet_id": "s", "ip_address": "172.21.0.11"}],
            "allowed_address_pairs": [{"ip_address": "172.21.0.200/32", "mac_address": "fa:16:3e:00:00:01"}],
            "tags": ["x"], "port_security_enabled": true, "status": "DOWN"
        }))
        .unwrap();
        assert!(p.has_ip("172.21.0.11") && !p.has_ip("172.21.0.1"));
        assert!(p.has_pair("172.21.0.200") && !p.has_pair("172.21.0.20"));
        assert_eq!(p.label(), "node-1 (p1)");
    }
}
