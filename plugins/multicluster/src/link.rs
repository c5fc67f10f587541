//! The objects of one link, built natively from facts read on the target cluster, as the
//! release's own CLI prints them for the source cluster to apply:
//! - Linkerd 2.14 (`linkerd multicluster link --cluster-name <target>`): two credential
//!   Secrets, the `Link` (v1alpha1), and the service mirror's RBAC, ServiceAccount, Deployment
//!   and probe Service ([`link_objects`]);
//! - Linkerd ≥ 2.18 (`linkerd multicluster link-gen --cluster-name <target>`): the two
//!   credential Secrets and the `Link` (v1alpha3) ([`link_gen_objects`]); the service mirror
//!   is the linkerd-multicluster release's `controllers` entry ([`controllers_value`]).
//!
//! [`Layout`] names what each style makes, for unlink, status and check.

use base64::Engine;
use kpaas_mesh_kit::linkerd::{LINKERD_NS, LinkChart, LinkStyle, LinkerdRelease, MULTICLUSTER_NS};
use serde_json::{Value, json};

/// The ServiceAccount on the target whose token the credentials carry.
pub const REMOTE_SA: &str = "linkerd-service-mirror-remote-access-default";
/// The gateway Service on every cluster.
pub use kpaas_mesh_kit::linkerd::GATEWAY;
pub const SECRET_TYPE: &str = "mirror.linkerd.io/remote-kubeconfig";

/// The names of what a link to `target` consists of on its source, per link style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub style: LinkStyle,
}

impl Layout {
    /// 2.14's per-link objects (`linkerd multicluster link`), which ≥ 2.18 must not have.
    pub const LEGACY: Layout = Layout {
        style: LinkStyle::Link,
    };

    pub fn of(rel: &LinkerdRelease) -> Layout {
        Layout { style: rel.links }
    }
    /// The service mirror Deployment of the link.
    pub fn deployment(&self, target: &str) -> String {
        match self.style {
            LinkStyle::Link => format!("linkerd-service-mirror-{target}"),
            LinkStyle::LinkGen => format!("controller-{target}"),
        }
    }
    /// The ClusterRole that gives the service mirror the local services and endpoints.
    pub fn cluster_role(&self, target: &str) -> String {
        match self.style {
            LinkStyle::Link => format!("linkerd-service-mirror-access-local-resources-{target}"),
            LinkStyle::LinkGen => "linkerd-multicluster-controller-access-local-resources".into(),
        }
    }
    /// The Role that lets it read the credentials, links and leases.
    pub fn role(&self, target: &str) -> String {
        match self.style {
            LinkStyle::Link => format!("linkerd-service-mirror-read-remote-creds-{target}"),
            LinkStyle::LinkGen => format!("controller-read-remote-creds-{target}"),
        }
    }
    /// The probe Service whose Endpoints the service mirror points at the gateway.
    pub fn probe_service(&self, target: &str) -> String {
        match self.style {
            LinkStyle::Link => format!("probe-gateway-{target}"),
            LinkStyle::LinkGen => format!("probe-{target}"),
        }
    }
}

/// The `controllers` value of the linkerd-multicluster chart (≥ 2.18): one entry per link
/// target, only `link.ref.name` set (the rest from `controllerDefaults`), sorted by name.
pub fn controllers_value(targets: &[String]) -> Value {
    let mut names: Vec<&String> = targets.iter().collect();
    names.sort();
    names.dedup();
    Value::Array(
        names
            .into_iter()
            .map(|t| json!({"link": {"ref": {"name": t}}}))
            .collect(),
    )
}

/// What the link needs to know about its target cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The Linkerd cluster name (also the Link's name).
    pub name: String,
    /// The kubeconfig context name of the target (the credentials' current context).
    pub context: String,
    /// The kubeconfig's cluster entry name and fields (server, CA).
    pub kubeconfig_cluster_name: String,
    pub kubeconfig_cluster: Value,
    /// The remote-access ServiceAccount's token (decoded).
    pub token: String,
    pub cluster_domain: String,
    pub trust_domain: String,
    /// Comma-separated gateway addresses.
    pub gateway_address: String,
    pub gateway_port: u32,
    pub gateway_identity: String,
    pub probe_path: String,
    pub probe_port: u32,
    pub probe_period_secs: u64,
}

/// Settings of the service mirror Deployment and the Link of a `links: link` release.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSettings {
    /// The controller image without tag (registry rewrite applied).
    pub controller_image: String,
    /// Its tag: the Linkerd version.
    pub version: String,
    /// The Link's apiVersion.
    pub link_api: String,
    /// What the release's link chart renders beyond 2.14.10's.
    pub chart: LinkChart,
}

impl MirrorSettings {
    pub fn new(rel: &LinkerdRelease, registry: Option<&str>) -> Self {
        let default = "cr.l5d.io/linkerd/controller";
        MirrorSettings {
            controller_image: registry
                .map(|r| kpaas_mesh_kit::charts::rewrite_image(default, r))
                .unwrap_or_else(|| default.to_string()),
            version: rel.version.clone(),
            link_api: rel.link_api.clone(),
            chart: rel.link_chart.clone(),
        }
    }
}

/// The kubeconfig the service mirror uses to watch the target: only the target's context,
/// its cluster entry, and a token-only user named after the ServiceAccount.
pub fn credentials_kubeconfig(t: &Target) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": t.kubeconfig_cluster_name, "cluster": t.kubeconfig_cluster}],
        "users": [{"name": REMOTE_SA, "user": {"token": t.token}}],
        "contexts": [{"name": t.context, "context": {
            "cluster": t.kubeconfig_cluster_name, "user": REMOTE_SA}}],
        "current-context": t.context,
    });
    serde_yaml_ng::to_string(&doc).unwrap_or_default()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn labels(t: &Target, component: Option<&str>) -> Value {
    let mut l = json!({
        "linkerd.io/extension": "multicluster",
        "mirror.linkerd.io/cluster-name": t.name,
    });
    if let Some(c) = component {
        l["component"] = json!(c);
    }
    l
}

/// The two credential Secrets both CLIs print first: the kubeconfig for the service mirror
/// (in the multicluster namespace) and for the control plane (in `linkerd`, labelled with the
/// target and annotated with its trust and cluster domain).
fn credential_secrets(t: &Target) -> [Value; 2] {
    let name = &t.name;
    let creds = format!("cluster-credentials-{name}");
    let kubeconfig = b64(&credentials_kubeconfig(t));
    [
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": creds, "namespace": MULTICLUSTER_NS},
            "data": {"kubeconfig": kubeconfig},
        }),
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {
                "name": creds, "namespace": LINKERD_NS,
                "labels": {"multicluster.linkerd.io/cluster-name": name},
                "annotations": {
                    "multicluster.linkerd.io/trust-domain": t.trust_domain,
                    "multicluster.linkerd.io/cluster-domain": t.cluster_domain,
                },
            },
            "data": {"kubeconfig": kubeconfig},
        }),
    ]
}

/// The objects of the link to `t` as `linkerd multicluster link-gen` of `version` (≥ 2.18)
/// prints them: the credentials and a v1alpha3 Link. The Link carries the annotation the CLI
/// writes, `linkerd.io/created-by: linkerd/cli <version>`, which Linkerd's check compares
/// with its own version (row "Link and CLI versions match"); probe timeout and failure
/// threshold are left out, as link-gen leaves them out.
pub fn link_gen_objects(t: &Target, link_api: &str, version: &str) -> Vec<Value> {
    let [creds_mc, creds_l5d] = credential_secrets(t);
    vec![creds_mc, creds_l5d, link_object(t, link_api, version)]
}

/// The Link to `t` as the CLI of `version` writes it (`pkg/multicluster/link.go`
/// `ToUnstructured`): from v1alpha2 on (Linkerd 2.17) with the annotation
/// `linkerd.io/created-by: linkerd/cli <version>` and the federated-service selector; probe
/// timeout and failure threshold left out, as the CLIs leave them out.
fn link_object(t: &Target, link_api: &str, version: &str) -> Value {
    let name = &t.name;
    let mut link = json!({
        "apiVersion": link_api, "kind": "Link",
        "metadata": {"name": name, "namespace": MULTICLUSTER_NS},
        "spec": {
            "targetClusterName": name,
            "targetClusterDomain": t.cluster_domain,
            "targetClusterLinkerdNamespace": LINKERD_NS,
            "clusterCredentialsSecret": format!("cluster-credentials-{name}"),
            "gatewayAddress": t.gateway_address,
            "gatewayPort": t.gateway_port.to_string(),
            "gatewayIdentity": t.gateway_identity,
            "probeSpec": {
                "path": t.probe_path,
                "port": t.probe_port.to_string(),
                "period": format!("{}s", t.probe_period_secs),
            },
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
            "remoteDiscoverySelector": {"matchLabels": {"mirror.linkerd.io/exported": "remote-discovery"}},
        },
    });
    if link_api != "multicluster.linkerd.io/v1alpha1" {
        link["metadata"]["annotations"] =
            json!({"linkerd.io/created-by": format!("linkerd/cli {version}")});
        link["spec"]["federatedServiceSelector"] =
            json!({"matchLabels": {"mirror.linkerd.io/federated": "member"}});
    }
    link
}

/// (apiVersion, kind, namespace, name) of the objects [`link_gen_objects`] makes, in the
/// order to delete them (the Link first).
pub fn link_gen_object_ids(
    target: &str,
    link_api: &str,
) -> Vec<(String, &'static str, Option<&'static str>, String)> {
    let creds = format!("cluster-credentials-{target}");
    vec![
        (
            link_api.to_string(),
            "Link",
            Some(MULTICLUSTER_NS),
            target.to_string(),
        ),
        ("v1".into(), "Secret", Some(LINKERD_NS), creds.clone()),
        ("v1".into(), "Secret", Some(MULTICLUSTER_NS), creds),
    ]
}

/// Every object of the link to `t`, in the order `linkerd multicluster link` prints them: the
/// credentials, the Link, then the release's link chart (RBAC, ServiceAccount, the service
/// mirror Deployment, the probe Service) with what that release renders beyond 2.14.10's.
pub fn link_objects(t: &Target, mirror: &MirrorSettings) -> Vec<Value> {
    let mut objects = link_objects_214(t, mirror);
    let chart = &mirror.chart;
    for o in objects.iter_mut() {
        match o["kind"].as_str() {
            Some("Role") if !chart.link_status_verbs.is_empty() => {
                // after the `links` rule, before `leases` (the chart's order)
                if let Some(rules) = o["rules"].as_array_mut() {
                    rules.insert(
                        2,
                        json!({"apiGroups": ["multicluster.linkerd.io"], "resources": ["links/status"],
                               "verbs": chart.link_status_verbs}),
                    );
                }
            }
            Some("Deployment") => {
                if let Some(n) = chart.revision_history_limit {
                    o["spec"]["revisionHistoryLimit"] = json!(n);
                }
                let pod = &mut o["spec"]["template"]["spec"];
                if let Some(gid) = chart.run_as_group {
                    pod["containers"][0]["securityContext"]["runAsGroup"] = json!(gid);
                }
                if chart.projected_token {
                    pod["automountServiceAccountToken"] = json!(false);
                    pod["containers"][0]["volumeMounts"] = json!([{
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "name": "kube-api-access", "readOnly": true}]);
                    pod["volumes"] = json!([{"name": "kube-api-access", "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ]}}]);
                }
            }
            _ => {}
        }
    }
    objects
}

/// The objects of a link as 2.14.10's `linkerd multicluster link` prints them.
fn link_objects_214(t: &Target, mirror: &MirrorSettings) -> Vec<Value> {
    let name = &t.name;
    let creds = format!("cluster-credentials-{name}");
    let sm = format!("linkerd-service-mirror-{name}");
    let local_access = format!("linkerd-service-mirror-access-local-resources-{name}");
    let read_creds = format!("linkerd-service-mirror-read-remote-creds-{name}");
    let [creds_mc, creds_l5d] = credential_secrets(t);
    vec![
        creds_mc,
        creds_l5d,
        link_object(t, &mirror.link_api, &mirror.version),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": local_access, "labels": labels(t, Some("service-mirror"))},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services"],
                 "verbs": ["list", "get", "watch", "create", "delete", "update"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "get", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": local_access, "labels": labels(t, Some("service-mirror"))},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": local_access},
            "subjects": [{"kind": "ServiceAccount", "name": sm, "namespace": MULTICLUSTER_NS}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": read_creds, "namespace": MULTICLUSTER_NS, "labels": labels(t, Some("service-mirror"))},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [creds],
                 "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["multicluster.linkerd.io"], "resources": ["links"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                 "verbs": ["create", "get", "update", "patch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": read_creds, "namespace": MULTICLUSTER_NS, "labels": labels(t, Some("service-mirror"))},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": read_creds},
            "subjects": [{"kind": "ServiceAccount", "name": sm, "namespace": MULTICLUSTER_NS}],
        }),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": sm, "namespace": MULTICLUSTER_NS, "labels": labels(t, Some("service-mirror"))},
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": sm, "namespace": MULTICLUSTER_NS, "labels": labels(t, Some("service-mirror"))},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {
                    "component": "linkerd-service-mirror",
                    "mirror.linkerd.io/cluster-name": name,
                }},
                "template": {
                    "metadata": {
                        "annotations": {
                            "linkerd.io/inject": "enabled",
                            "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
                            "config.alpha.linkerd.io/proxy-wait-before-exit-seconds": "0",
                        },
                        "labels": labels(t, Some("linkerd-service-mirror")),
                    },
                    "spec": {
                        "containers": [{
                            "name": "service-mirror",
                            "image": format!("{}:{}", mirror.controller_image, mirror.version),
                            "args": [
                                "service-mirror",
                                "-log-level=info",
                                "-log-format=plain",
                                "-event-requeue-limit=3",
                                format!("-namespace={MULTICLUSTER_NS}"),
                                "-enable-pprof=false",
                                name,
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true,
                                "runAsUser": 2103,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "ports": [{"containerPort": 9999, "name": "admin-http"}],
                        }],
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "serviceAccountName": sm,
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": format!("probe-gateway-{name}"), "namespace": MULTICLUSTER_NS,
                "labels": {
                    "linkerd.io/extension": "multicluster",
                    "mirror.linkerd.io/mirrored-gateway": "true",
                    "mirror.linkerd.io/cluster-name": name,
                },
            },
            "spec": {"ports": [{"name": "mc-probe", "port": t.probe_port, "protocol": "TCP"}]},
        }),
    ]
}

/// (apiVersion, kind, namespace, name) of an object to delete.
pub type ObjectId = (String, &'static str, Option<&'static str>, String);

/// (apiVersion, kind, namespace, name) of every object of the link to `target`, in the
/// order to delete them (the Link first, so the service mirror stops before its RBAC goes).
pub fn link_object_ids(target: &str, link_api: &str) -> Vec<ObjectId> {
    let creds = format!("cluster-credentials-{target}");
    let mut ids = vec![(
        link_api.to_string(),
        "Link",
        Some(MULTICLUSTER_NS),
        target.to_string(),
    )];
    ids.extend(controller_object_ids(target));
    ids.push(("v1".into(), "Secret", Some(LINKERD_NS), creds.clone()));
    ids.push(("v1".into(), "Secret", Some(MULTICLUSTER_NS), creds));
    ids
}

/// The per-link service mirror objects of a `links: link` release (the Deployment first), as
/// 2.18's `linkerd multicluster unlink --only-controller` lists them for removal once the
/// linkerd-multicluster release's `controllers` took over: the Link, its credentials, its
/// Lease and the mirror Services stay.
pub fn controller_object_ids(target: &str) -> Vec<ObjectId> {
    let sm = format!("linkerd-service-mirror-{target}");
    let local = format!("linkerd-service-mirror-access-local-resources-{target}");
    let read = format!("linkerd-service-mirror-read-remote-creds-{target}");
    let rbac = "rbac.authorization.k8s.io/v1";
    vec![
        (
            "apps/v1".into(),
            "Deployment",
            Some(MULTICLUSTER_NS),
            sm.clone(),
        ),
        (
            "v1".into(),
            "Service",
            Some(MULTICLUSTER_NS),
            format!("probe-gateway-{target}"),
        ),
        ("v1".into(), "ServiceAccount", Some(MULTICLUSTER_NS), sm),
        (
            rbac.into(),
            "RoleBinding",
            Some(MULTICLUSTER_NS),
            read.clone(),
        ),
        (rbac.into(), "Role", Some(MULTICLUSTER_NS), read),
        (rbac.into(), "ClusterRoleBinding", None, local.clone()),
        (rbac.into(), "ClusterRole", None, local),
    ]
}

/// A port of the gateway Service by name: the nodePort for NodePort Services, else the port.
pub fn gateway_port(svc: &Value, port_name: &str) -> Option<u32> {
    let node_port = svc["spec"]["type"] == "NodePort";
    svc["spec"]["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == port_name)
        .and_then(|p| {
            if node_port {
                p["nodePort"].as_u64()
            } else {
                p["port"].as_u64()
            }
            .map(|v| v as u32)
        })
}

/// The gateway's LoadBalancer addresses (IPs, else hostnames), comma-joined.
pub fn lb_addresses(svc: &Value) -> String {
    kpaas_mesh_kit::k8s::lb_ingress_addresses(svc).join(",")
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn target(name: &str) -> Target {
        Target {
            name: name.into(),
            context: name.into(),
            kubeconfig_cluster_name: format!("kwok-{name}"),
            kubeconfig_cluster: json!({"server": "https://127.0.0.1:32001", "certificate-authority-data": "Q0E="}),
            token: "tok".into(),
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
            gateway_address: "192.168.12.1".into(),
            gateway_port: 4143,
            gateway_identity:
                "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"
                    .into(),
            probe_path: "/ready".into(),
            probe_port: 4191,
            probe_period_secs: 3,
        }
    }

    #[test]
    fn the_ten_objects_of_a_link() {
        let rel = kpaas_mesh_kit::linkerd::release("2.14").unwrap();
        let objs = link_objects(&target("cluster2"), &MirrorSettings::new(rel, None));
        let ids: Vec<String> = objs
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                "Secret/cluster-credentials-cluster2",
                "Secret/cluster-credentials-cluster2",
                "Link/cluster2",
                "ClusterRole/linkerd-service-mirror-access-local-resources-cluster2",
                "ClusterRoleBinding/linkerd-service-mirror-access-local-resources-cluster2",
                "Role/linkerd-service-mirror-read-remote-creds-cluster2",
                "RoleBinding/linkerd-service-mirror-read-remote-creds-cluster2",
                "ServiceAccount/linkerd-service-mirror-cluster2",
                "Deployment/linkerd-service-mirror-cluster2",
                "Service/probe-gateway-cluster2",
            ]
        );
        let link = &objs[2]["spec"];
        assert_eq!(link["gatewayPort"], "4143");
        assert_eq!(
            link["probeSpec"],
            json!({"path": "/ready", "port": "4191", "period": "3s"})
        );
        assert_eq!(
            objs[8]["spec"]["template"]["spec"]["containers"][0]["image"],
            "cr.l5d.io/linkerd/controller:stable-2.14.10"
        );
        // The same ids, reversed for deletion, cover every object.
        let mut del: Vec<String> = link_object_ids("cluster2", &rel.link_api)
            .into_iter()
            .map(|(_, k, ns, n)| format!("{k}/{}/{n}", ns.unwrap_or("")))
            .collect();
        let mut made: Vec<String> = objs
            .iter()
            .map(|o| {
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        del.sort();
        made.sort();
        assert_eq!(del, made);
    }

    #[test]
    fn credentials_hold_only_the_target_and_a_token_user() {
        let objs = link_objects(
            &target("east"),
            &MirrorSettings::new(
                kpaas_mesh_kit::linkerd::release("2.14").unwrap(),
                Some("harbor.local/l5d"),
            ),
        );
        let data = objs[0]["data"]["kubeconfig"].as_str().unwrap();
        let text = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap();
        let kc: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(kc["current-context"], "east");
        assert_eq!(
            kc["users"],
            json!([{"name": REMOTE_SA, "user": {"token": "tok"}}])
        );
        assert_eq!(
            kc["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:32001"
        );
        assert_eq!(kc["contexts"][0]["context"]["cluster"], "kwok-east");
        assert_eq!(
            objs[1]["metadata"]["annotations"]["multicluster.linkerd.io/trust-domain"],
            "cluster.local"
        );
        assert_eq!(
            objs[8]["spec"]["template"]["spec"]["containers"][0]["image"],
            "harbor.local/l5d/controller:stable-2.14.10"
        );
    }

    #[test]
    fn gateway_ports_and_addresses() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [
            {"name": "mc-gateway", "port": 4143, "nodePort": 31134},
            {"name": "mc-probe", "port": 4191, "nodePort": 32460}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.11.1"}, {"hostname": "gw.example"}]}}});
        assert_eq!(gateway_port(&svc, "mc-gateway"), Some(4143));
        assert_eq!(lb_addresses(&svc), "192.168.11.1,gw.example");
        let mut np = svc.clone();
        np["spec"]["type"] = json!("NodePort");
        assert_eq!(gateway_port(&np, "mc-probe"), Some(32460));
        assert_eq!(gateway_port(&svc, "nope"), None);
        assert_eq!(lb_addresses(&json!({})), "");
    }
}
