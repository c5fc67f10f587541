//! `up` across Linkerd minors: which releases it passes through (read from the clusters'
//! `linkerd-config`), and what happens between two steps — the meshed workloads whose proxies
//! are older than the step's control plane are restarted (`--restart-workloads`) or listed for
//! the operator, since Linkerd lets the control plane be at most one minor ahead of its proxies.

use crate::clusters::Clusters;
use crate::facts::{FactSource, LiveFacts};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kpaas_mesh_kit::linkerd::{self, LINKERD_NS, LinkerdRelease, MULTICLUSTER_NS, SMI_NS};
use kpaas_mesh_plugin_api::FactAnswer;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use std::collections::BTreeSet;
use std::time::Duration;

/// The Linkerd each cluster's control plane reports (`None`: not installed).
pub async fn installed(facts: &LiveFacts<'_>, clusters: &Clusters) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for c in clusters.refs() {
        let q = linkerd::linkerd_config_query(&c.name);
        out.push(match facts.answer(&q).await {
            FactAnswer::Object { object: Some(cm) } => linkerd::installed_version(&cm),
            _ => None,
        });
    }
    out
}

/// A workload with meshed pods (from the labels Linkerd's proxy injector puts on them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub cluster: String,
    pub namespace: String,
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: &'static str,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} {}/{}",
            self.cluster, self.kind, self.namespace, self.name
        )
    }
}

/// The workloads of `pods` (on `cluster`) whose proxy is not `version`: meshed pods outside
/// Linkerd's own namespaces (helm upgrades those), by the injector's
/// `linkerd.io/proxy-{deployment,statefulset,daemonset}` label and `linkerd.io/proxy-version`
/// annotation.
pub fn stale_workloads(cluster: &str, pods: &[Pod], version: &str) -> BTreeSet<Workload> {
    let mut out = BTreeSet::new();
    for p in pods {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        if [LINKERD_NS, MULTICLUSTER_NS, SMI_NS].contains(&ns.as_str()) {
            continue;
        }
        let proxy = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("linkerd.io/proxy-version"));
        if proxy.is_none_or(|v| v == version) {
            continue;
        }
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for (label, kind) in [
            ("linkerd.io/proxy-deployment", "Deployment"),
            ("linkerd.io/proxy-statefulset", "StatefulSet"),
            ("linkerd.io/proxy-daemonset", "DaemonSet"),
        ] {
            if let Some(name) = labels.get(label) {
                out.insert(Workload {
                    cluster: cluster.into(),
                    namespace: ns.clone(),
                    kind,
                    name: name.clone(),
                });
            }
        }
    }
    out
}

/// Every workload of every cluster whose meshed pods run another proxy than `rel`'s.
pub async fn meshed_workloads(
    clusters: &Clusters,
    rel: &LinkerdRelease,
) -> Result<BTreeSet<Workload>, String> {
    let mut out = BTreeSet::new();
    for c in clusters.refs() {
        let client = clusters.client(&c.name).await?;
        let pods: Api<Pod> = Api::all(client);
        let list = pods
            .list(&ListParams::default().labels("linkerd.io/control-plane-ns"))
            .await
            .map_err(|e| format!("cluster {}: list meshed pods: {e}", c.name))?;
        out.extend(stale_workloads(&c.name, &list.items, &rel.version));
    }
    Ok(out)
}

/// `kubectl rollout restart` of each workload: a new `kubectl.kubernetes.io/restartedAt` in its
/// pod template (so the injector gives the new pods the step's proxy); done when each has
/// rolled out.
pub async fn restart(
    clusters: &Clusters,
    workloads: &BTreeSet<Workload>,
    timeout: Duration,
) -> Result<(), String> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}});
    for w in workloads {
        let client = clusters.client(&w.cluster).await?;
        let pp = PatchParams::default();
        let p = Patch::Merge(&patch);
        let r = match w.kind {
            "Deployment" => Api::<Deployment>::namespaced(client, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|_| ()),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|_| ()),
            _ => Api::<DaemonSet>::namespaced(client, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|_| ()),
        };
        r.map_err(|e| format!("restart {w}: {e}"))?;
    }
    for w in workloads {
        rolled_out(clusters, w, timeout).await?;
    }
    Ok(())
}

/// Waits (a watch) until the restarted workload's new pods are all updated and available.
async fn rolled_out(clusters: &Clusters, w: &Workload, timeout: Duration) -> Result<(), String> {
    use kube::runtime::wait::await_condition;
    let client = clusters.client(&w.cluster).await?;
    let ns = &w.namespace;
    let done = async {
        match w.kind {
            "Deployment" => await_condition(
                Api::<Deployment>::namespaced(client, ns),
                &w.name,
                |d: Option<&Deployment>| {
                    d.is_some_and(|d| {
                        let (Some(spec), Some(st)) = (&d.spec, &d.status) else {
                            return false;
                        };
                        let want = spec.replicas.unwrap_or(1);
                        st.observed_generation >= d.metadata.generation
                            && st.updated_replicas.unwrap_or(0) == want
                            && st.available_replicas.unwrap_or(0) >= want
                    })
                },
            )
            .await
            .map(|_| ()),
            "StatefulSet" => await_condition(
                Api::<StatefulSet>::namespaced(client, ns),
                &w.name,
                |s: Option<&StatefulSet>| {
                    s.is_some_and(|s| {
                        let (Some(spec), Some(st)) = (&s.spec, &s.status) else {
                            return false;
                        };
                        let want = spec.replicas.unwrap_or(1);
                        st.observed_generation >= s.metadata.generation
                            && st.updated_replicas.unwrap_or(0) == want
                            && st.ready_replicas.unwrap_or(0) >= want
                    })
                },
            )
            .await
            .map(|_| ()),
            _ => await_condition(
                Api::<DaemonSet>::namespaced(client, ns),
                &w.name,
                |d: Option<&DaemonSet>| {
                    d.is_some_and(|d| {
                        let Some(st) = &d.status else { return false };
                        st.observed_generation >= d.metadata.generation
                            && st.updated_number_scheduled.unwrap_or(0)
                                == st.desired_number_scheduled
                            && st.number_available.unwrap_or(0) >= st.desired_number_scheduled
                    })
                },
            )
            .await
            .map(|_| ()),
        }
    };
    match tokio::time::timeout(timeout, done).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("while waiting for the restart of {w}: {e}")),
        Err(_) => Err(format!(
            "timed out after {}s waiting for the restart of {w} to roll out (kubectl --context {} -n {} rollout status {} {})",
            timeout.as_secs(),
            w.cluster,
            w.namespace,
            w.kind.to_lowercase(),
            w.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, labels: serde_json::Value, version: Option<&str>) -> Pod {
        let mut p = json!({"metadata": {"name": "p", "namespace": ns, "labels": labels, "annotations": {}}});
        if let Some(v) = version {
            p["metadata"]["annotations"]["linkerd.io/proxy-version"] = json!(v);
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn only_workloads_with_older_proxies_outside_linkerd_need_a_restart() {
        let pods = [
            pod(
                "sample",
                json!({"linkerd.io/proxy-deployment": "helloworld-v1"}),
                Some("edge-25.4.4"),
            ),
            pod(
                "sample",
                json!({"linkerd.io/proxy-deployment": "sleep"}),
                Some("edge-25.10.7"),
            ),
            pod(
                "db",
                json!({"linkerd.io/proxy-statefulset": "pg"}),
                Some("edge-25.4.4"),
            ),
            pod(
                "linkerd",
                json!({"linkerd.io/proxy-deployment": "linkerd-destination"}),
                Some("edge-25.4.4"),
            ),
            pod("apps", json!({"linkerd.io/proxy-deployment": "x"}), None),
        ];
        let got: Vec<String> = stale_workloads("cluster1", &pods, "edge-25.10.7")
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "cluster1: StatefulSet db/pg",
                "cluster1: Deployment sample/helloworld-v1"
            ]
        );
    }
}
