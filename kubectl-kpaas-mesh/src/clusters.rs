//! Connections to the clusters of the mesh: the merged kubeconfig, one kube client per
//! cluster (made on first use), and dynamic API handles resolved by discovery and cached.

use crate::cli::ClusterSpec;
use kpaas_mesh_plugin_api::ClusterRef;
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Config};
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::sync::Mutex;

/// Why [`Clusters::api`] has no API for a kind. Only [`ApiError::NotServed`] means the
/// cluster said so; anything else (unreachable, a 5xx, a timeout) means nothing is known, and
/// must never read as "no such objects" — `down` would skip a delete, a wait for deletion
/// would be satisfied, a fact would say "absent".
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The cluster answered discovery: it does not serve this kind (its CRD is not installed,
    /// or was removed).
    #[error("cluster {cluster}: unknown kind {api_version}/{kind} (not served by the cluster)")]
    NotServed {
        cluster: String,
        api_version: String,
        kind: String,
    },
    /// Discovery itself failed; the kind may well be served.
    #[error("cluster {cluster}: cannot look up kind {api_version}/{kind}: {source}")]
    Discovery {
        cluster: String,
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    /// No client for the cluster (kubeconfig, context).
    #[error("{0}")]
    Client(String),
}

impl From<ApiError> for String {
    fn from(e: ApiError) -> String {
        e.to_string()
    }
}

/// Whether a discovery error is the API server's own word that the kind is not served: the
/// group/version is unknown (404) or it lists no such kind.
pub fn is_not_served(err: &kube::Error) -> bool {
    match err {
        kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_))
        | kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))
        | kube::Error::Discovery(kube::error::DiscoveryError::MissingResource(_)) => true,
        kube::Error::Api(status) => status.code == 404,
        _ => false,
    }
}

/// (cluster, apiVersion, kind) → the resource and whether it is namespaced.
type ResourceCache = HashMap<(String, String, String), (ApiResource, bool)>;

/// The clusters a command works on.
pub struct Clusters {
    kubeconfig: Kubeconfig,
    /// The value to give child processes (helm) as KUBECONFIG, when the user chose one.
    kubeconfig_env: Option<String>,
    refs: Vec<ClusterRef>,
    clients: Mutex<HashMap<String, Client>>,
    resources: Mutex<ResourceCache>,
}

/// Reads the kubeconfig as kubectl does: `--kubeconfig` (colon-separated allowed), else
/// `$KUBECONFIG` (merged in order), else `~/.kube/config`.
pub fn read_kubeconfig(flag: Option<&str>) -> Result<(Kubeconfig, Option<String>), String> {
    let list = flag
        .map(str::to_string)
        .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()));
    match list {
        Some(list) => {
            let mut merged = Kubeconfig::default();
            for path in std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()) {
                let one = Kubeconfig::read_from(&path)
                    .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
                merged = merged
                    .merge(one)
                    .map_err(|e| format!("cannot merge kubeconfig {}: {e}", path.display()))?;
            }
            Ok((merged, Some(list)))
        }
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let path = home.join(".kube/config");
            let cfg = Kubeconfig::read_from(&path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            Ok((cfg, None))
        }
    }
}

/// The kubeconfig files a run reads, in order (`--kubeconfig`, else `$KUBECONFIG`, else
/// `~/.kube/config`).
pub fn kubeconfig_files(flag: Option<&str>) -> Vec<PathBuf> {
    let list = flag
        .map(str::to_string)
        .or_else(|| std::env::var("KUBECONFIG").ok().filter(|v| !v.is_empty()));
    match list {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => vec![
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".kube/config"),
        ],
    }
}

/// Cluster and user names that two of `files` define differently: merged, the first file's
/// entry wins, so a context of the other file silently talks to another cluster or as another
/// user (the guide's 2.3 warning: kubeadm calls every cluster `kubernetes`). Keys are
/// `cluster NAME` / `user NAME`, values the files defining them.
pub fn name_collisions(
    files: &[(PathBuf, Kubeconfig)],
) -> std::collections::BTreeMap<String, Vec<PathBuf>> {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<String, Vec<(PathBuf, serde_json::Value)>> = BTreeMap::new();
    for (path, cfg) in files {
        for c in &cfg.clusters {
            let v = serde_json::to_value(&c.cluster).unwrap_or_default();
            seen.entry(format!("cluster {}", c.name))
                .or_default()
                .push((path.clone(), v));
        }
        for u in &cfg.auth_infos {
            let v = serde_json::to_value(&u.auth_info).unwrap_or_default();
            seen.entry(format!("user {}", u.name))
                .or_default()
                .push((path.clone(), v));
        }
    }
    seen.into_iter()
        .filter(|(_, defs)| defs.iter().any(|(_, v)| v != &defs[0].1))
        .map(|(k, defs)| (k, defs.into_iter().map(|(p, _)| p).collect()))
        .collect()
}

/// Refuses a context whose cluster or user name another file defines differently.
pub fn check_collisions(
    merged: &Kubeconfig,
    collisions: &std::collections::BTreeMap<String, Vec<PathBuf>>,
    context: &str,
) -> Result<(), String> {
    let Some(ctx) = merged
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
    else {
        return Ok(());
    };
    for key in [
        format!("cluster {}", ctx.cluster),
        format!("user {}", ctx.user.clone().unwrap_or_default()),
    ] {
        if let Some(files) = collisions.get(&key) {
            let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            return Err(format!(
                "context '{context}': {key} is defined differently in {} — merged, the first one wins, so this context would reach the wrong cluster or user; rename it in one file (guide 2.3)",
                list.join(" and ")
            ));
        }
    }
    Ok(())
}

/// Checks that every context exists; the error lists the ones that do.
pub fn check_contexts(cfg: &Kubeconfig, specs: &[ClusterSpec]) -> Result<(), String> {
    let known: Vec<&str> = cfg.contexts.iter().map(|c| c.name.as_str()).collect();
    for spec in specs {
        if !known.contains(&spec.context.as_str()) {
            return Err(format!(
                "cluster {}: context '{}' is not in the kubeconfig (contexts: {})",
                spec.name,
                spec.context,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    Ok(())
}

impl Clusters {
    /// Loads the kubeconfig and checks the contexts. No network traffic.
    pub fn load(kubeconfig: Option<&str>, specs: &[ClusterSpec]) -> Result<Clusters, String> {
        let (cfg, env) = read_kubeconfig(kubeconfig)?;
        check_contexts(&cfg, specs)?;
        let files = kubeconfig_files(kubeconfig);
        if files.len() > 1 {
            let each: Vec<(PathBuf, Kubeconfig)> = files
                .into_iter()
                .filter_map(|p| Kubeconfig::read_from(&p).ok().map(|k| (p, k)))
                .collect();
            let collisions = name_collisions(&each);
            for s in specs {
                check_collisions(&cfg, &collisions, &s.context)
                    .map_err(|e| format!("cluster {}: {e}", s.name))?;
            }
        }
        Ok(Clusters {
            kubeconfig: cfg,
            kubeconfig_env: env,
            refs: specs
                .iter()
                .map(|s| ClusterRef {
                    name: s.name.clone(),
                    context: s.context.clone(),
                })
                .collect(),
            clients: Mutex::new(HashMap::new()),
            resources: Mutex::new(HashMap::new()),
        })
    }

    pub fn refs(&self) -> &[ClusterRef] {
        &self.refs
    }

    pub fn names(&self) -> Vec<String> {
        self.refs.iter().map(|r| r.name.clone()).collect()
    }

    /// The kubeconfig context of cluster `name`.
    pub fn context(&self, name: &str) -> Result<&str, String> {
        self.refs
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.context.as_str())
            .ok_or_else(|| {
                format!(
                    "unknown cluster '{name}' (clusters: {})",
                    self.names().join(", ")
                )
            })
    }

    pub fn kubeconfig_env(&self) -> Option<&str> {
        self.kubeconfig_env.as_deref()
    }

    /// The kubeconfig `cluster` entry behind cluster `name`'s context, with a CA file
    /// inlined as `certificate-authority-data` so the entry works on another machine.
    pub fn kubeconfig_cluster(&self, name: &str) -> Result<(String, serde_json::Value), String> {
        let context = self.context(name)?;
        let ctx = self
            .kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .ok_or_else(|| format!("context {context} has no body in the kubeconfig"))?;
        let entry_name = ctx.cluster.clone();
        let mut cluster = self
            .kubeconfig
            .clusters
            .iter()
            .find(|c| c.name == entry_name)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| {
                format!(
                    "context {context} names cluster '{entry_name}', which is not in the kubeconfig"
                )
            })?;
        if let Some(file) = cluster.certificate_authority.take() {
            use base64::Engine;
            let pem = std::fs::read(&file).map_err(|e| {
                format!("cluster {name}: cannot read certificate-authority {file}: {e}")
            })?;
            cluster.certificate_authority_data =
                Some(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        let value = serde_json::to_value(&cluster).map_err(|e| e.to_string())?;
        Ok((entry_name, value))
    }

    /// The client of cluster `name`, built on first use.
    pub async fn client(&self, name: &str) -> Result<Client, String> {
        let context = self.context(name)?.to_string();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(name) {
            return Ok(c.clone());
        }
        let opts = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        let config = Config::from_custom_kubeconfig(self.kubeconfig.clone(), &opts)
            .await
            .map_err(|e| format!("cluster {name} (context {context}): {e}"))?;
        let client = Client::try_from(config)
            .map_err(|e| format!("cluster {name} (context {context}): {e}"))?;
        clients.insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// Like [`Clusters::api`], but `None` when the cluster does not serve the kind (its CRD
    /// is not installed, or was removed): then no object of that kind exists there.
    pub async fn api_if_served(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Option<Api<DynamicObject>>, ApiError> {
        match self.api(cluster, api_version, kind, namespace).await {
            Ok(api) => Ok(Some(api)),
            Err(ApiError::NotServed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A dynamic API for `kind` in `api_version`, namespaced when the kind is.
    pub async fn api(
        &self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, ApiError> {
        let client = self.client(cluster).await.map_err(ApiError::Client)?;
        let key = (
            cluster.to_string(),
            api_version.to_string(),
            kind.to_string(),
        );
        let cached = self.resources.lock().await.get(&key).cloned();
        let (ar, namespaced) = match cached {
            Some(found) => found,
            None => {
                let (group, version) = match api_version.split_once('/') {
                    Some((g, v)) => (g, v),
                    None => ("", api_version),
                };
                let gvk = GroupVersionKind::gvk(group, version, kind);
                let (ar, caps) =
                    kube::discovery::pinned_kind(&client, &gvk)
                        .await
                        .map_err(|source| {
                            if is_not_served(&source) {
                                ApiError::NotServed {
                                    cluster: cluster.into(),
                                    api_version: api_version.into(),
                                    kind: kind.into(),
                                }
                            } else {
                                ApiError::Discovery {
                                    cluster: cluster.into(),
                                    api_version: api_version.into(),
                                    kind: kind.into(),
                                    source,
                                }
                            }
                        })?;
                let found = (ar, caps.scope == Scope::Namespaced);
                self.resources.lock().await.insert(key, found.clone());
                found
            }
        };
        Ok(match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client, ns, &ar),
            (true, None) => Api::all_with(client, &ar),
            (false, _) => Api::all_with(client, &ar),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u1
  user: {token: abc}
contexts:
- name: cluster1
  context: {cluster: c1, user: u1}
current-context: cluster1
"#;
    const TWO: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c2
  cluster: {server: "https://127.0.0.1:7443"}
users:
- name: u2
  user: {token: def}
contexts:
- name: cluster2
  context: {cluster: c2, user: u2}
"#;

    #[test]
    fn kubeconfig_lists_merge_like_kubectl() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::write(&a, ONE).unwrap();
        std::fs::write(&b, TWO).unwrap();
        let list = format!("{}:{}", a.display(), b.display());
        let (cfg, env) = read_kubeconfig(Some(&list)).unwrap();
        assert_eq!(env.as_deref(), Some(list.as_str()));
        let specs: Vec<ClusterSpec> = vec![
            "cluster1".parse().unwrap(),
            "east=cluster2".parse().unwrap(),
        ];
        check_contexts(&cfg, &specs).unwrap();
        let bad: Vec<ClusterSpec> = vec!["west=cluster9".parse().unwrap()];
        let err = check_contexts(&cfg, &bad).unwrap_err();
        assert_eq!(
            err,
            "cluster west: context 'cluster9' is not in the kubeconfig (contexts: cluster1, cluster2)"
        );
        let err = read_kubeconfig(Some("/nonexistent/kubeconfig")).unwrap_err();
        assert!(
            err.starts_with("cannot read kubeconfig /nonexistent/kubeconfig"),
            "{err}"
        );
    }
}
