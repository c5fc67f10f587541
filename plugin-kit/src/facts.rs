//! Typed fact helpers: the queries stages ask most often, built one way, and readers that turn
//! the host's answers into results (an answer that is an error, or missing, or of another kind
//! is one line) and, where a stage wants it, into k8s-openapi types instead of raw JSON.

use crate::linkerd::{GATEWAY, MULTICLUSTER_NS};
use k8s_openapi::api::core::v1::{Node, Service};
use kpaas_mesh_plugin_api::{FactAnswer, FactQuery, StageRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One object by name (`namespace` `None` for cluster-scoped kinds).
pub fn object_query(
    cluster: &str,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> FactQuery {
    FactQuery::Object {
        cluster: cluster.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(String::from),
        name: name.into(),
    }
}

/// Every object of a kind (in `namespace`, or all namespaces), optionally by label selector.
pub fn list_query(
    cluster: &str,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    label_selector: Option<&str>,
) -> FactQuery {
    FactQuery::Objects {
        cluster: cluster.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(String::from),
        label_selector: label_selector.map(String::from),
    }
}

/// The multicluster extension's gateway Service of `cluster`.
pub fn gateway_query(cluster: &str) -> FactQuery {
    object_query(cluster, "v1", "Service", Some(MULTICLUSTER_NS), GATEWAY)
}

/// Every Node of `cluster`.
pub fn nodes_query(cluster: &str) -> FactQuery {
    list_query(cluster, "v1", "Node", None, None)
}

/// The host's answer to `q`; its error message, or a line saying it never answered.
pub fn answer<'a>(req: &'a StageRequest, q: &FactQuery) -> Result<&'a FactAnswer, String> {
    match req.fact(q) {
        Some(FactAnswer::Error { message }) => Err(message.clone()),
        Some(a) => Ok(a),
        None => Err(format!("the host did not answer {q:?}")),
    }
}

/// The object `q` asked for (`None`: it does not exist), as JSON.
pub fn object(req: &StageRequest, q: &FactQuery) -> Result<Option<Value>, String> {
    match answer(req, q)? {
        FactAnswer::Object { object } => Ok(object.clone()),
        other => Err(format!("unexpected answer to {q:?}: {other:?}")),
    }
}

/// The objects `q` listed, as JSON.
pub fn objects(req: &StageRequest, q: &FactQuery) -> Result<Vec<Value>, String> {
    match answer(req, q)? {
        FactAnswer::Objects { items } => Ok(items.clone()),
        other => Err(format!("unexpected answer to {q:?}: {other:?}")),
    }
}

fn typed<T: DeserializeOwned>(q: &FactQuery, v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unreadable answer to {q:?}: {e}"))
}

/// [`object`], as a k8s-openapi type.
pub fn typed_object<T: DeserializeOwned>(
    req: &StageRequest,
    q: &FactQuery,
) -> Result<Option<T>, String> {
    object(req, q)?.map(|v| typed(q, v)).transpose()
}

/// [`objects`], as k8s-openapi types.
pub fn typed_objects<T: DeserializeOwned>(
    req: &StageRequest,
    q: &FactQuery,
) -> Result<Vec<T>, String> {
    objects(req, q)?.into_iter().map(|v| typed(q, v)).collect()
}

/// The gateway Service of `cluster` ([`gateway_query`]).
pub fn gateway(req: &StageRequest, cluster: &str) -> Result<Option<Service>, String> {
    typed_object(req, &gateway_query(cluster))
}

/// The Nodes of `cluster` ([`nodes_query`]).
pub fn nodes(req: &StageRequest, cluster: &str) -> Result<Vec<Node>, String> {
    typed_objects(req, &nodes_query(cluster))
}

/// A Service's LoadBalancer ingress IPs (hostnames left out).
pub fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .iter()
        .flat_map(|s| s.load_balancer.iter())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|i| i.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect()
}

/// A Node's InternalIP addresses.
pub fn internal_ips(node: &Node) -> Vec<String> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_plugin_api::{Fact, Operation};
    use serde_json::json;

    #[test]
    fn answers_become_typed_objects_or_one_line() {
        let mut req = StageRequest::new(Operation::Up, vec![]);
        assert_eq!(
            gateway(&req, "c1").unwrap_err(),
            format!("the host did not answer {:?}", gateway_query("c1"))
        );
        req.facts.push(Fact {
            query: gateway_query("c1"),
            answer: FactAnswer::Object {
                object: Some(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "linkerd-gateway", "namespace": "linkerd-multicluster"},
                    "status": {"loadBalancer": {"ingress": [{"ip": "172.21.0.200"}, {"hostname": "gw"}]}}})),
            },
        });
        req.facts.push(Fact {
            query: nodes_query("c1"),
            answer: FactAnswer::Objects {
                items: vec![
                    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                    "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                             {"type": "InternalIP", "address": "172.21.0.11"}]}}),
                ],
            },
        });
        req.facts.push(Fact {
            query: gateway_query("c2"),
            answer: FactAnswer::Error {
                message: "c2: forbidden".into(),
            },
        });
        req.facts.push(Fact {
            query: nodes_query("c2"),
            answer: FactAnswer::Object { object: None },
        });
        let svc = gateway(&req, "c1").unwrap().unwrap();
        assert_eq!(ingress_ips(&svc), ["172.21.0.200"]);
        let nodes = nodes(&req, "c1").unwrap();
        assert_eq!(internal_ips(&nodes[0]), ["172.21.0.11"]);
        assert_eq!(gateway(&req, "c2").unwrap_err(), "c2: forbidden");
        assert!(
            super::nodes(&req, "c2")
                .unwrap_err()
                .starts_with("unexpected answer to Objects")
        );
    }
}
