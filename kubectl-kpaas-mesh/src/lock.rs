//! One changing command at a time per cluster: `up`, `down`, `link`, `unlink` and `certs rotate`
//! hold a Lease `kube-system/kpaas-mesh` on every cluster they change (coordination.k8s.io, as
//! leader election does), renewed while they run and deleted when they end. A second command
//! finds it held and refuses with one line naming the holder; a Lease not renewed for its
//! duration (its command was killed) is taken over. Read-only commands and dry runs take none.

use crate::clusters::Clusters;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use std::time::Duration;

/// Where the Lease lives on every cluster.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kpaas-mesh";
/// How long a Lease counts as held without a renewal.
pub const DURATION_SECS: i32 = 60;
/// How often a held Lease is renewed.
const RENEW: Duration = Duration::from_secs(15);

/// Who this process is, as the Lease's `holderIdentity` shows it.
pub fn identity(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!(
        "{user}@{host} pid {} (kubectl kpaas-mesh {command})",
        std::process::id()
    )
}

/// Whether a Lease held by someone else still counts at `now`.
pub fn is_fresh(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(DURATION_SECS));
    last.is_some_and(|t| now < t + SignedDuration::from_secs(secs))
}

fn lease_body(holder: &str, now: Timestamp, resource_version: Option<String>) -> Lease {
    let mut l: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kpaas-mesh"}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION_SECS}
    }))
    .expect("a Lease");
    let spec = l.spec.as_mut().expect("spec");
    spec.acquire_time = Some(MicroTime(now));
    spec.renew_time = Some(MicroTime(now));
    l.metadata.resource_version = resource_version;
    l
}

/// The Leases this command holds; [`Held::release`] deletes them.
pub struct Held {
    apis: Vec<(String, Api<Lease>)>,
    holder: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// Takes the Lease on every cluster (in order), or refuses with one line and releases what it
/// took.
pub async fn acquire(clusters: &Clusters, command: &str) -> Result<Held, String> {
    let holder = identity(command);
    let mut held = Held {
        apis: Vec::new(),
        holder: holder.clone(),
        renewer: None,
    };
    for c in clusters.names() {
        let client = clusters.client(&c).await?;
        let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
        if let Err(e) = take(&api, &c, &holder).await {
            held.release().await;
            return Err(e);
        }
        held.apis.push((c, api));
    }
    let apis = held.apis.clone();
    let who = holder.clone();
    held.renewer = Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(RENEW).await;
            for (c, api) in &apis {
                if let Ok(Some(mut l)) = api.get_opt(NAME).await
                    && l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&who)
                {
                    if let Some(s) = l.spec.as_mut() {
                        s.renew_time = Some(MicroTime(Timestamp::now()));
                    }
                    if let Err(e) = api.replace(NAME, &PostParams::default(), &l).await {
                        tracing::warn!(cluster = %c, "renewing Lease {NAMESPACE}/{NAME}: {e}");
                    }
                }
            }
        }
    }));
    Ok(held)
}

async fn take(api: &Api<Lease>, cluster: &str, holder: &str) -> Result<(), String> {
    let now = Timestamp::now();
    let fail = |e: kube::Error| format!("cluster {cluster}: Lease {NAMESPACE}/{NAME}: {e}");
    match api.get_opt(NAME).await.map_err(fail)? {
        None => match api
            .create(&PostParams::default(), &lease_body(holder, now, None))
            .await
        {
            Ok(_) => Ok(()),
            // someone created it between our read and our create
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let l = api.get(NAME).await.map_err(fail)?;
                Err(busy(cluster, &l))
            }
            Err(e) => Err(fail(e)),
        },
        Some(l) if is_fresh(&l, now) => Err(busy(cluster, &l)),
        Some(l) => {
            let before = l
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default();
            // stale: taken over, unless someone else takes it first (the resourceVersion)
            match api
                .replace(
                    NAME,
                    &PostParams::default(),
                    &lease_body(holder, now, l.metadata.resource_version.clone()),
                )
                .await
            {
                Ok(_) => {
                    eprintln!(
                        "cluster {cluster}: took over the Lease {NAMESPACE}/{NAME} of {before}, not renewed for {DURATION_SECS}s"
                    );
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let l = api.get(NAME).await.map_err(fail)?;
                    Err(busy(cluster, &l))
                }
                Err(e) => Err(fail(e)),
            }
        }
    }
}

fn busy(cluster: &str, l: &Lease) -> String {
    let spec = l.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_else(|| "?".into());
    let since = spec
        .acquire_time
        .map(|t| t.0.to_string())
        .unwrap_or_else(|| "?".into());
    format!(
        "cluster {cluster} is being changed by {holder} since {since} (Lease {NAMESPACE}/{NAME}); nothing was changed: run again when it is done (a Lease not renewed for {DURATION_SECS}s is taken over)"
    )
}

impl Held {
    /// Deletes every Lease still held by this process.
    pub async fn release(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        for (c, api) in self.apis.drain(..) {
            if let Ok(Some(l)) = api.get_opt(NAME).await
                && l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.holder)
                && let Err(e) = api.delete(NAME, &DeleteParams::default()).await
            {
                tracing::warn!(cluster = %c, "releasing Lease {NAMESPACE}/{NAME}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_until_its_duration_after_the_last_renewal() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let l = lease_body("a@h pid 1 (kubectl kpaas-mesh up)", t0, None);
        assert!(is_fresh(&l, t0));
        assert!(is_fresh(&l, t0 + SignedDuration::from_secs(59)));
        assert!(!is_fresh(&l, t0 + SignedDuration::from_secs(60)));
        let mut empty = l.clone();
        empty.spec = None;
        assert!(!is_fresh(&empty, t0));
        let msg = busy("cluster2", &l);
        assert!(
            msg.starts_with("cluster cluster2 is being changed by a@h pid 1 (kubectl kpaas-mesh up) since 2027-01-15T08:00:00Z (Lease kube-system/kpaas-mesh)"),
            "{msg}"
        );
        assert!(identity("up").contains(&format!(
            "pid {} (kubectl kpaas-mesh up)",
            std::process::id()
        )));
    }
}
