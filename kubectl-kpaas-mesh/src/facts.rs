//! Answers the fact queries stages ask: local files, objects and lists from the clusters,
//! helm releases and server versions. Read-only, so `--dry-run` uses the same answers.

use crate::clusters::Clusters;
use crate::helm;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kpaas_mesh_plugin_api::{FactAnswer, FactQuery};
use kube::api::ListParams;

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
pub use kpaas_mesh_kit::files::read_file;

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
                let Some(api) = self
                    .clusters
                    .api_if_served(cluster, api_version, kind, namespace.as_deref())
                    .await?
                else {
                    return Ok(FactAnswer::Object { object: None });
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
                let Some(api) = self
                    .clusters
                    .api_if_served(cluster, api_version, kind, namespace.as_deref())
                    .await?
                else {
                    return Ok(FactAnswer::Objects { items: vec![] });
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
            FactQuery::KubeconfigCluster { cluster } => {
                let (name, cluster) = self.clusters.kubeconfig_cluster(cluster)?;
                Ok(FactAnswer::KubeconfigCluster { name, cluster })
            }
            FactQuery::RemoteAccess {
                cluster,
                namespace,
                secret,
                key,
            } => Ok(remote_access(self.clusters, cluster, namespace, secret, key).await),
            FactQuery::Exec {
                cluster,
                namespace,
                label_selector,
                container,
                command,
            } => {
                exec(
                    self.clusters,
                    cluster,
                    namespace,
                    label_selector,
                    container,
                    command,
                )
                .await
            }
            FactQuery::PodHttp {
                cluster,
                namespace,
                pod,
                port,
                path,
            } => pod_http(self.clusters, cluster, namespace, pod, *port, path).await,
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

/// The most of a pod's answer kept (metrics pages are tens of KiB).
const POD_HTTP_LIMIT: usize = 1 << 20;

/// A GET through the API server's pod proxy. The status is the pod's (or, when the API server
/// cannot reach the pod, the proxy's 5xx); only a failure to talk to the API server is an error.
async fn pod_http(
    clusters: &Clusters,
    cluster: &str,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<FactAnswer, String> {
    use http_body_util::BodyExt;
    let client = clusters.client(cluster).await?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let where_ = format!("cluster {cluster}: GET {uri}");
    let request = http::Request::get(&uri)
        .body(kube::client::Body::empty())
        .map_err(|e| format!("{where_}: {e}"))?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), client.send(request))
        .await
        .map_err(|_| format!("{where_}: no answer within 10s"))?
        .map_err(|e| format!("{where_}: {e}"))?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        response.into_body().collect(),
    )
    .await
    .map_err(|_| format!("{where_}: the body did not arrive within 10s"))?
    .map_err(|e| format!("{where_}: {e}"))?
    .to_bytes();
    let body = String::from_utf8_lossy(&body[..body.len().min(POD_HTTP_LIMIT)]).into_owned();
    Ok(FactAnswer::PodHttp { status, body })
}

/// Runs `command` in the first Running pod matching `selector`, through the exec API.
async fn exec(
    clusters: &Clusters,
    cluster: &str,
    namespace: &str,
    selector: &str,
    container: &str,
    command: &[String],
) -> Result<FactAnswer, String> {
    use kube::api::AttachParams;
    use tokio::io::AsyncReadExt as _;
    let client = clusters.client(cluster).await?;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, namespace);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("cluster {cluster}: list pods {selector} in {namespace}: {e}"))?;
    let pod = list
        .items
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| {
            format!("cluster {cluster}: no Running pod {selector} in namespace {namespace}")
        })?;
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut attached = pods
        .exec(&pod, command.to_vec(), &params)
        .await
        .map_err(|e| format!("cluster {cluster}: exec in {namespace}/{pod}: {e}"))?;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let out = attached.stdout();
    let err = attached.stderr();
    let status = attached.take_status();
    let read_out = async {
        if let Some(mut r) = out {
            let _ = r.read_to_string(&mut stdout).await;
        }
    };
    let read_err = async {
        if let Some(mut r) = err {
            let _ = r.read_to_string(&mut stderr).await;
        }
    };
    futures::join!(read_out, read_err);
    let exit_code = match status {
        Some(s) => s.await.map(|st| {
            if st.status.as_deref() == Some("Success") {
                0
            } else {
                st.details
                    .and_then(|d| d.causes)
                    .and_then(|c| {
                        c.into_iter()
                            .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    })
                    .and_then(|c| c.message)
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(1)
            }
        }),
        None => None,
    };
    let _ = attached.join().await;
    Ok(FactAnswer::Exec {
        pod,
        stdout,
        stderr,
        exit_code,
    })
}

/// Connects with the kubeconfig stored in a Secret, as a service mirror would.
async fn remote_access(
    clusters: &Clusters,
    cluster: &str,
    namespace: &str,
    secret: &str,
    key: &str,
) -> FactAnswer {
    let fail = |error: String| FactAnswer::RemoteAccess {
        server_version: None,
        error: Some(error),
    };
    let client = match clusters.client(cluster).await {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let data = match secrets.get_opt(secret).await {
        Ok(Some(s)) => s.data.and_then(|d| d.get(key).cloned()),
        Ok(None) => {
            return fail(format!(
                "secret {namespace}/{secret} not found on {cluster}"
            ));
        }
        Err(e) => {
            return fail(format!(
                "cannot read secret {namespace}/{secret} on {cluster}: {e}"
            ));
        }
    };
    let Some(data) = data else {
        return fail(format!("secret {namespace}/{secret} has no '{key}'"));
    };
    let text = String::from_utf8_lossy(&data.0).into_owned();
    let kubeconfig = match kube::config::Kubeconfig::from_yaml(&text) {
        Ok(k) => k,
        Err(e) => return fail(format!("the stored kubeconfig is invalid: {e}")),
    };
    let config = match kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await {
        Ok(c) => c,
        Err(e) => return fail(format!("the stored kubeconfig is unusable: {e}")),
    };
    let remote = match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "cannot build a client from the stored kubeconfig: {e}"
            ));
        }
    };
    let version = match remote.apiserver_version().await {
        Ok(v) => v.git_version,
        Err(e) => return fail(format!("the remote API server did not answer: {e}")),
    };
    let services: kube::Api<Service> = kube::Api::all(remote);
    match services.list(&ListParams::default().limit(1)).await {
        Ok(_) => FactAnswer::RemoteAccess {
            server_version: Some(version),
            error: None,
        },
        Err(e) => FactAnswer::RemoteAccess {
            server_version: Some(version),
            error: Some(format!(
                "cannot list services with the stored credentials: {e}"
            )),
        },
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
        std::fs::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o640),
        )
        .unwrap();
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
