//! One changing command at a time per cluster: `up`, `down`, `link`, `unlink` and `certs rotate`
//! hold a Lease `kube-system/kpaas-mesh` on every cluster they change (coordination.k8s.io, as
//! leader election does), renewed while they run and deleted when they end. A second command
//! finds it held and refuses with one line naming the holder; a Lease not renewed for its
//! duration (its command was killed) is taken over, and so at once is one whose holder ran on
//! this machine and is gone (a command that could not release it: its cluster was unreachable,
//! or it was killed). Read-only commands and dry runs take none.

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
    let host = hostname();
    format!(
        "{user}@{host} pid {} (kubectl kpaas-mesh {command})",
        std::process::id()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A process's command name (the kernel's `comm`), if it runs.
fn comm(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Whether the holder named by `holder` (as [`identity`] writes it) ran on `host` and no process
/// named `our_comm` has its pid any more (`comm_of` gives a pid's command name, if it runs).
fn holder_gone_with(
    holder: &str,
    host: &str,
    our_comm: Option<&str>,
    comm_of: impl Fn(&str) -> Option<String>,
) -> bool {
    let Some((user_host, rest)) = holder.split_once(" pid ") else {
        return false;
    };
    let Some((_, their_host)) = user_host.split_once('@') else {
        return false;
    };
    let Some((pid, _)) = rest.split_once(' ') else {
        return false;
    };
    if their_host != host || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if pid == std::process::id().to_string() {
        return false;
    }
    match (comm_of(pid), our_comm) {
        (None, _) => true,
        (Some(c), Some(ours)) => c != ours,
        (Some(_), None) => false,
    }
}

/// Whether the Lease's holder ran on this machine and has ended.
fn holder_gone(l: &Lease) -> bool {
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or_default();
    holder_gone_with(holder, &hostname(), comm("self").as_deref(), comm)
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
        Some(l) if is_fresh(&l, now) && !holder_gone(&l) => Err(busy(cluster, &l)),
        Some(l) => {
            let why = if is_fresh(&l, now) {
                "whose process on this machine has ended".to_string()
            } else {
                format!("not renewed for {DURATION_SECS}s")
            };
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
                        "cluster {cluster}: took over the Lease {NAMESPACE}/{NAME} of {before}, {why}"
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
        "cluster {cluster} is being changed by {holder} since {since} (Lease {NAMESPACE}/{NAME}); nothing was changed: run again when it is done (a Lease not renewed for {DURATION_SECS}s, or whose holder on this machine has ended, is taken over)"
    )
}

impl Held {
    /// Deletes every Lease still held by this process.
    pub async fn release(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        for (c, api) in self.apis.drain(..) {
            let gone = match api.get_opt(NAME).await {
                Ok(Some(l))
                    if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        == Some(&self.holder) =>
                {
                    api.delete(NAME, &DeleteParams::default())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = gone {
                eprintln!(
                    "note: cluster {c}: the Lease {NAMESPACE}/{NAME} was not released ({e}); the next kpaas-mesh command on this machine takes it over, one elsewhere after {DURATION_SECS}s"
                );
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
        assert!(msg.ends_with("(a Lease not renewed for 60s, or whose holder on this machine has ended, is taken over)"), "{msg}");
        assert!(identity("up").contains(&format!(
            "pid {} (kubectl kpaas-mesh up)",
            std::process::id()
        )));
    }

    #[test]
    fn a_holder_on_this_machine_whose_process_ended_is_gone() {
        let comm_of = |pid: &str| match pid {
            "100" => Some("kubectl-kpaas_m".to_string()),
            "200" => Some("bash".to_string()),
            _ => None,
        };
        let ours = Some("kubectl-kpaas_m");
        let gone = |h: &str| holder_gone_with(h, "node1", ours, comm_of);
        assert!(
            !gone("root@node1 pid 100 (kubectl kpaas-mesh up)"),
            "still runs"
        );
        assert!(
            gone("root@node1 pid 200 (kubectl kpaas-mesh up)"),
            "pid reused"
        );
        assert!(
            gone("root@node1 pid 300 (kubectl kpaas-mesh up)"),
            "no such pid"
        );
        assert!(
            !gone("root@node2 pid 300 (kubectl kpaas-mesh up)"),
            "another machine"
        );
        assert!(!gone("someone else"), "not ours to judge");
        assert!(!gone("root@node1 pid x1 (kubectl kpaas-mesh up)"));
        let me = format!(
            "root@node1 pid {} (kubectl kpaas-mesh up)",
            std::process::id()
        );
        assert!(
            !holder_gone_with(&me, "node1", ours, |_| None),
            "this process"
        );
        // our own name unknown: only a pid that does not run counts as gone
        assert!(!holder_gone_with(
            "root@node1 pid 200 (x)",
            "node1",
            None,
            comm_of
        ));
        assert!(holder_gone_with(
            "root@node1 pid 300 (x)",
            "node1",
            None,
            comm_of
        ));
    }
}
