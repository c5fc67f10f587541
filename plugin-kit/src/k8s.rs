//! Pure readers of the Kubernetes objects stages receive as facts (JSON as the API server
//! returns it), shared so every plugin reads a field the same way.

use serde_json::Value;

/// A Service's `status.loadBalancer.ingress` addresses: each entry's IP, else its hostname.
pub fn lb_ingress_addresses(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().or_else(|| i["hostname"].as_str()))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A Node's `InternalIP` addresses.
pub fn node_internal_ips(node: &Value) -> Vec<String> {
    node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ingress_and_node_addresses() {
        let svc = json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "192.168.11.1"}, {"hostname": "gw.example"}, {"ip": ""}]}}});
        assert_eq!(lb_ingress_addresses(&svc), ["192.168.11.1", "gw.example"]);
        assert!(lb_ingress_addresses(&json!({})).is_empty());
        let node = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"},
            {"type": "InternalIP", "address": "fd00::5"}]}});
        assert_eq!(node_internal_ips(&node), ["10.0.0.5", "fd00::5"]);
    }
}
