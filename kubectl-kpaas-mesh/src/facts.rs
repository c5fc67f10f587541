//! Answers the fact queries stages ask: local files, objects and lists from the clusters,
//! helm releases and server versions. Read-only, so `--dry-run` uses the same answers.

use crate::clusters::Clusters;
use crate::helm;
use kpaas_mesh_plugin_api::{FactAnswer, FactQuery};
use kube::api::ListParams;
use std::os::unix::fs::PermissionsExt;

/// Where facts come from. The live host uses [`LiveFacts`]; commands that never touch a
/// cluster (`certs`) use [`LocalFacts`].
pub trait FactSource: Send + Sync {
    fn answer(&self, query: &FactQuery) -> impl Future<Output = FactAnswer> + Send;
}

/// Files only; cluster queries get an error answer.
pub struct LocalFacts;

impl FactSource for LocalFacts {
    async fn answer(&self, query: &FactQuery) -> FactAnswer {
        match query {
            FactQuery::File { path } => read_file(path),
            other => FactAnswer::Error {
                message: format!("no cluster is available to this command ({other:?})"),
            },
        }
    }
}

/// Reads a local file for a stage: contents and permission bits; `None` when absent.
pub fn read_file(path: &str) -> FactAnswer {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => FactAnswer::File {
                contents: Some(text),
                mode: std::fs::metadata(path)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o7777),
            },
            Err(_) => FactAnswer::Error {
                message: format!("{path} is not UTF-8 text"),
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FactAnswer::File {
            contents: None,
            mode: None,
        },
        Err(e) => FactAnswer::Error {
            message: format!("cannot read {path}: {e}"),
        },
    }
}

/// Files plus the clusters.
pub struct LiveFacts<'a> {
    pub clusters: &'a Clusters,
}

impl FactSource for LiveFacts<'_> {
    async fn answer(&self, query: &FactQuery) -> FactAnswer {
        match self.try_answer(query).await {
            Ok(a) => a,
            Err(message) => FactAnswer::Error { message },
        }
    }
}

impl LiveFacts<'_> {
    async fn try_answer(&self, query: &FactQuery) -> Result<FactAnswer, String> {
        match query {
            FactQuery::File { path } => Ok(read_file(path)),
            FactQuery::Object {
                cluster,
                api_version,
                kind,
                namespace,
                name,
            } => {
                let api = match self
                    .clusters
                    .api(cluster, api_version, kind, namespace.as_deref())
                    .await
                {
                    Ok(api) => api,
                    // A kind the cluster does not serve (CRD not installed): no such object.
                    Err(e) if e.contains("unknown kind") => {
                        return Ok(FactAnswer::Object { object: None });
                    }
                    Err(e) => return Err(e),
                };
                let obj = api
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("cluster {cluster}: get {kind} {name}: {e}"))?;
                Ok(FactAnswer::Object {
                    object: obj.map(|o| serde_json::to_value(o).unwrap_or_default()),
                })
            }
            FactQuery::Objects {
                cluster,
                api_version,
                kind,
                namespace,
                label_selector,
            } => {
                let api = match self
                    .clusters
                    .api(cluster, api_version, kind, namespace.as_deref())
                    .await
                {
                    Ok(api) => api,
                    Err(e) if e.contains("unknown kind") => {
                        return Ok(FactAnswer::Objects { items: vec![] });
                    }
                    Err(e) => return Err(e),
                };
                let mut lp = ListParams::default();
                if let Some(sel) = label_selector {
                    lp = lp.labels(sel);
                }
                let list = api
                    .list(&lp)
                    .await
                    .map_err(|e| format!("cluster {cluster}: list {kind}: {e}"))?;
                Ok(FactAnswer::Objects {
                    items: list
                        .items
                        .into_iter()
                        .map(|o| serde_json::to_value(o).unwrap_or_default())
                        .collect(),
                })
            }
            FactQuery::HelmRelease {
                cluster,
                namespace,
                release,
            } => {
                let client = self.clusters.client(cluster).await?;
                let rel = helm::read_release(client, namespace, release)
                    .await
                    .map_err(|e| format!("cluster {cluster}: {e}"))?;
                Ok(FactAnswer::HelmRelease {
                    release: rel.map(|r| r.info),
                })
            }
            FactQuery::ServerVersion { cluster } => {
                let client = self.clusters.client(cluster).await?;
                let v = client
                    .apiserver_version()
                    .await
                    .map_err(|e| format!("cluster {cluster}: /version: {e}"))?;
                Ok(FactAnswer::ServerVersion {
                    git_version: v.git_version,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_with_their_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = path.display().to_string();
        assert_eq!(
            read_file(&p),
            FactAnswer::File {
                contents: Some("secret".into()),
                mode: Some(0o640)
            }
        );
        let missing = tmp.path().join("none").display().to_string();
        assert_eq!(
            read_file(&missing),
            FactAnswer::File {
                contents: None,
                mode: None
            }
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_file(&p), FactAnswer::Error { .. }));
    }
}
