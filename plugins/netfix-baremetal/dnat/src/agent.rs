//! The DNAT agent as Kubernetes objects: its namespace (Pod Security `privileged`, since the agent edits the
//! node's iptables), a token-less ServiceAccount, the ConfigMap holding the mapping and the agent script, and the
//! privileged host-network DaemonSet that runs the script on every node (all taints tolerated, as the guide does
//! it on every node). The pod template carries a checksum of the ConfigMap, so a changed mapping rolls the pods.

use crate::mapping::checksum;
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::charts::rewrite_image;
use kpaas_mesh_plugin_api::FIELD_MANAGER;
use serde_json::{Value, json};

/// Namespace of the agent.
pub const NAMESPACE: &str = "kpaas-mesh-netfix";
/// Name of the DaemonSet, its ConfigMap and its ServiceAccount.
pub const NAME: &str = "kpaas-mesh-dnat";
/// ConfigMap key of the mapping, and where the pod finds it.
pub const MAPPING_KEY: &str = "mapping";
/// ConfigMap key of the agent script.
pub const SCRIPT_KEY: &str = "dnat-agent.sh";
/// Where the ConfigMap is mounted in the pod.
pub const MOUNT: &str = "/etc/kpaas-mesh";
/// Pod template annotation holding [`checksum`] of the ConfigMap data.
pub const CHECKSUM_ANNOTATION: &str = "kpaas-mesh.io/dnat-config-checksum";
/// The agent script (also `plugins/netfix-baremetal/agent/dnat-agent.sh`, runnable on its own).
pub const AGENT_SCRIPT: &str = include_str!("../../agent/dnat-agent.sh");
/// Default agent image: Kubernetes' own Debian image with iptables (legacy and nft), sh and coreutils.
pub const DEFAULT_IMAGE: &str = "registry.k8s.io/build-image/debian-iptables:bookworm-v1.0.0";
/// Default seconds between two reconcile passes of an agent.
pub const DEFAULT_RESYNC_SECS: u32 = 60;
const READY_FILE: &str = "/tmp/kpaas-mesh-dnat.ready";

/// How the agent runs: everything but the mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentOptions {
    /// The image, registry rewrite already applied.
    pub image: String,
    /// Also DNAT in the nat OUTPUT chain (traffic of host-network pods and of the node itself).
    pub output_chain: bool,
    /// Seconds between reconcile passes (a rule removed by hand comes back within this time).
    pub resync_secs: u32,
    /// How long `up`/`down` wait for the DaemonSet to be ready, and for the namespace to be gone.
    pub timeout_secs: u64,
    /// `down` first rolls out the empty mapping and waits until every agent has removed its rules; `false`
    /// deletes at once (rules stay on nodes whose agent cannot run; `dnat-agent.sh remove` clears them).
    pub cleanup_wait: bool,
}

impl AgentOptions {
    /// Defaults with `MeshSettings`' registry and timeout.
    pub fn new(opts: &MeshSettings) -> Self {
        AgentOptions {
            image: image(DEFAULT_IMAGE, opts),
            output_chain: false,
            resync_secs: DEFAULT_RESYNC_SECS,
            timeout_secs: opts.timeout_secs,
            cleanup_wait: true,
        }
    }
}

/// `image` under `--registry` when one is given.
pub fn image(image: &str, opts: &MeshSettings) -> String {
    match &opts.registry {
        Some(reg) => rewrite_image(image, reg),
        None => image.to_string(),
    }
}

fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/part-of": "kpaas-mesh",
        "app.kubernetes.io/component": "netfix-dnat",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    })
}

/// The namespace, ServiceAccount, ConfigMap (with `mapping`) and DaemonSet, in apply order.
pub fn manifests(mapping: &str, agent: &AgentOptions) -> Vec<Value> {
    let mut ns_labels = labels();
    for mode in ["enforce", "audit", "warn"] {
        ns_labels[format!("pod-security.kubernetes.io/{mode}")] = json!("privileged");
    }
    let namespace = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": ns_labels},
    });
    let sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "automountServiceAccountToken": false,
    });
    let configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "data": {MAPPING_KEY: mapping, SCRIPT_KEY: AGENT_SCRIPT},
    });
    let sum = checksum(&[mapping, AGENT_SCRIPT]);
    let daemonset = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            // The rules stay while a pod restarts, so every node may update at once.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {
                    "labels": labels(),
                    "annotations": {CHECKSUM_ANNOTATION: sum},
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": false,
                    "hostNetwork": true,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "dnat-agent",
                        "image": agent.image,
                        "command": ["/bin/sh", format!("{MOUNT}/{SCRIPT_KEY}"), "run"],
                        "env": [
                            {"name": "KPAAS_MESH_MAPPING", "value": format!("{MOUNT}/{MAPPING_KEY}")},
                            {"name": "KPAAS_MESH_RESYNC", "value": agent.resync_secs.to_string()},
                            {"name": "KPAAS_MESH_READY_FILE", "value": READY_FILE},
                        ],
                        "securityContext": {"privileged": true},
                        "readinessProbe": {
                            "exec": {"command": ["/bin/sh", "-c", format!("test -f {READY_FILE}")]},
                            "periodSeconds": 5,
                        },
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            // iptables-save of a large kube-proxy ruleset, once at start
                            "limits": {"memory": "256Mi"},
                        },
                        "volumeMounts": [
                            {"name": "config", "mountPath": MOUNT, "readOnly": true},
                            {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                        ],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": NAME}},
                        // Shared with kube-proxy and the CNI, so concurrent iptables writers wait for each other.
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                    ],
                },
            },
        },
    });
    vec![namespace, sa, configmap, daemonset]
}

/// The agent image of a live DaemonSet (what `down` reuses, so removing needs no image flag again).
pub fn live_image(daemonset: &Value) -> Option<String> {
    daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "dnat-agent")?["image"]
        .as_str()
        .map(String::from)
}

/// The mapping held by a live ConfigMap.
pub fn live_mapping(configmap: &Value) -> Option<&str> {
    configmap["data"][MAPPING_KEY].as_str()
}

/// A DaemonSet's rollout in words and whether it is complete: `(ready, "3/3 ready, 3 updated")`. Complete means
/// the current generation was observed and every scheduled pod is updated and available.
pub fn rollout(daemonset: &Value) -> (bool, String, i64) {
    let s = &daemonset["status"];
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    let desired = n("desiredNumberScheduled");
    let generation = daemonset["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = n("observedGeneration") >= generation;
    let ready =
        observed && n("updatedNumberScheduled") == desired && n("numberAvailable") == desired;
    let words = format!(
        "{}/{desired} ready, {} updated{}",
        n("numberReady"),
        n("updatedNumberScheduled"),
        if observed {
            ""
        } else {
            ", new generation not yet observed"
        }
    );
    (ready, words, desired)
}
