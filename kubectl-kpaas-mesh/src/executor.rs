//! Carries out a stage's plan: local files first, then every cluster's actions in order,
//! clusters concurrently. Server-side apply with one field manager; waits are watches with a
//! timeout that names what was waited for. Reports what changed, so re-running is visibly a
//! no-op.

use crate::clusters::{ApiError, Clusters};
use crate::helm;
use futures::TryStreamExt;
use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kpaas_mesh_plugin_api::ffi::StageBox;
use kpaas_mesh_plugin_api::{
    Action, ExecuteRequest, ExecuteResponse, FIELD_MANAGER, HelmRelease, Plan, WaitCondition,
};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What one action did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The cluster, or `None` for local files.
    pub cluster: Option<String>,
    pub what: String,
    pub changed: bool,
}

/// Runs plans. Without clusters, only local actions are allowed; without a plugin runner, no
/// plugin actions.
pub struct Executor<'a> {
    pub clusters: Option<&'a Clusters>,
    pub plugin: Option<&'a PluginRunner>,
}

/// Hands [`Action::Plugin`] actions back to the stage object that planned them (its
/// `execute` entry point), on a blocking thread, with the settings and options of the plan.
pub struct PluginRunner {
    pub name: String,
    pub stage: Arc<StageBox>,
    pub settings: serde_json::Value,
    pub options: serde_json::Value,
}

impl PluginRunner {
    pub async fn execute(
        &self,
        cluster: Option<&str>,
        summary: &str,
        op: &serde_json::Value,
    ) -> Result<Outcome, String> {
        let request = ExecuteRequest {
            settings: self.settings.clone(),
            options: self.options.clone(),
            cluster: cluster.map(String::from),
            op: op.clone(),
        };
        let json = serde_json::to_string(&request)
            .map_err(|e| format!("cannot encode the action for {}: {e}", self.name))?;
        let stage = Arc::clone(&self.stage);
        let name = self.name.clone();
        // A plugin action talks to an outside system (its own requests have timeouts): five
        // planning deadlines.
        let deadline = crate::pipeline::plugin_deadline() * 5;
        let what = format!("the action '{summary}'");
        let reply = crate::pipeline::within_deadline(&name, &what, deadline, move || {
            stage.execute(json.as_str().into()).into_result()
        })
        .await?
        .map_err(|e| format!("{}: {summary}: {e}", self.name))?;
        let done: ExecuteResponse = serde_json::from_str(&reply)
            .map_err(|e| format!("plugin {} sent an unreadable result: {e}", self.name))?;
        Ok(Outcome {
            cluster: cluster.map(String::from),
            what: done.what,
            changed: done.changed,
        })
    }
}

impl Executor<'_> {
    /// Runs `actions`: local ones in order first, then each cluster's in order, clusters at
    /// the same time. Stops at the first error: the other clusters finish the action under way
    /// and start no further one.
    pub async fn run(&self, actions: &[Action]) -> Result<Vec<Outcome>, String> {
        let mut outcomes = Vec::new();
        let mut per_cluster: BTreeMap<&str, Vec<&Action>> = BTreeMap::new();
        for action in actions {
            match action_cluster(action) {
                None => {
                    crate::interrupt::check("the next local action")?;
                    let o = self.run_local(action).await?;
                    crate::interrupt::record(o.what.clone());
                    outcomes.push(o);
                }
                Some(c) => per_cluster.entry(c).or_default().push(action),
            }
        }
        if per_cluster.is_empty() {
            return Ok(outcomes);
        }
        let clusters = self
            .clusters
            .ok_or("this command has no clusters, but the plan names one")?;
        let plugin = self.plugin;
        // A cluster whose action fails does not stop the others: they carry out the rest of this
        // stage, so every cluster ends a stage complete or not started, and no later stage starts.
        // An interrupt stops every cluster before its next action (the action under way finishes:
        // a helm child is never cut off mid-release).
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let runs = per_cluster.into_iter().map(|(cluster, list)| async move {
            // Event waits accept what was recorded from here on (whole seconds, as Events are
            // stamped).
            let started = now_whole_seconds();
            let mut out = Vec::new();
            for action in list {
                if failed.load(std::sync::atomic::Ordering::SeqCst)
                    && crate::interrupt::received().is_some()
                {
                    break;
                }
                let step = async {
                    crate::interrupt::check(&format!("the next action on cluster {cluster}"))?;
                    match action {
                        Action::Plugin { summary, op, .. } => {
                            plugin_runner(plugin)?
                                .execute(Some(cluster), summary, op)
                                .await
                        }
                        _ => run_cluster_action(clusters, cluster, action, started).await,
                    }
                };
                let shown = crate::progress::begin(cluster, action);
                let result = step.await;
                shown.end(match &result {
                    Ok(o) => Ok(o.changed),
                    Err(e) => Err(e.as_str()),
                });
                match result {
                    Ok(o) => {
                        crate::interrupt::record(format!("cluster {cluster}: {}", o.what));
                        out.push(o);
                    }
                    Err(e) => {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                        return Err((cluster, e));
                    }
                }
            }
            Ok::<_, (&str, String)>((cluster, out))
        });
        let results = futures::future::join_all(runs).await;
        crate::progress::clear();
        let mut complete = Vec::new();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok((cluster, list)) => {
                    outcomes.extend(list);
                    complete.push(cluster);
                }
                Err((_, e)) => errors.push(e),
            }
        }
        if errors.is_empty() {
            return Ok(outcomes);
        }
        Err(failure_line(
            &errors,
            &complete,
            crate::interrupt::received().is_some(),
        ))
    }

    async fn run_local(&self, action: &Action) -> Result<Outcome, String> {
        match action {
            Action::Plugin { summary, op, .. } => {
                plugin_runner(self.plugin)?.execute(None, summary, op).await
            }
            other => run_local(other),
        }
    }
}

/// The one line for a stage some clusters failed: each failure (an interrupt's message once), and
/// where the stage was carried out in full anyway.
fn failure_line(errors: &[String], complete: &[&str], interrupted: bool) -> String {
    if interrupted {
        // every cluster stopped for the same reason; the interrupt's message says what was done
        return errors
            .iter()
            .find(|e| e.starts_with("interrupted by "))
            .unwrap_or(&errors[0])
            .clone();
    }
    let mut line = errors.join("; ");
    if !complete.is_empty() {
        line.push_str(&format!(
            " (the stage is complete on {}; no later stage was started; run the same command again once the cause is fixed: it plans from what the clusters hold)",
            complete.join(", ")
        ));
    }
    line
}

fn plugin_runner(runner: Option<&PluginRunner>) -> Result<&PluginRunner, String> {
    runner.ok_or_else(|| "the plan holds a plugin action, but no plugin runs it".to_string())
}

/// The cluster an action runs on, `None` for local actions.
pub fn action_cluster(action: &Action) -> Option<&str> {
    match action {
        Action::WriteFile { .. } => None,
        Action::Plugin { cluster, .. } => cluster.as_deref(),
        Action::Apply { cluster, .. }
        | Action::Delete { cluster, .. }
        | Action::HelmUninstall { cluster, .. }
        | Action::Wait { cluster, .. } => Some(cluster),
        Action::HelmRelease(h) => Some(&h.cluster),
    }
}

fn run_local(action: &Action) -> Result<Outcome, String> {
    match action {
        Action::WriteFile {
            path,
            contents,
            mode,
            dir_mode,
            ..
        } => {
            let changed = write_file(Path::new(path), contents, *mode, *dir_mode)?;
            Ok(Outcome {
                cluster: None,
                what: format!("file {path}"),
                changed,
            })
        }
        other => Err(format!("not a local action: {other:?}")),
    }
}

/// Server-side apply keeps, per field manager, the version it last applied an object at, and
/// converts the merged object back to that version. For a custom resource whose versions do
/// not round-trip (Linkerd's Link: v1alpha2 of 2.17 has fields v1alpha1 lacks, and the CRD
/// has no conversion webhook), applying the newer version then fails ("failed to convert
/// merged object to last applied version"), as an upgrade from 2.16 to 2.17 found. So when
/// kpaas-mesh last applied the object at another version, its managedFields entry is dropped
/// first (a merge patch of the list without it, guarded by the resourceVersion; `[{}]` when
/// it was the only entry, which the API server reads as "reset"), and the apply that follows
/// takes the fields over again. `None` when there is nothing to drop.
pub fn applied_at_other_version(
    meta: &kube::api::ObjectMeta,
    api_version: &str,
) -> Option<serde_json::Value> {
    let entries = meta.managed_fields.as_ref()?;
    let ours = |e: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    };
    if !entries
        .iter()
        .any(|e| ours(e) && e.api_version.as_deref().is_some_and(|v| v != api_version))
    {
        return None;
    }
    let rest: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| !ours(e))
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    let list = if rest.is_empty() {
        serde_json::json!([{}])
    } else {
        serde_json::Value::Array(rest)
    };
    Some(serde_json::json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "managedFields": list,
    }}))
}

/// Writes `contents` atomically with `mode` unless the file already has both. Parent
/// directories are created with `dir_mode`. Returns whether anything changed.
pub fn write_file(path: &Path, contents: &str, mode: u32, dir_mode: u32) -> Result<bool, String> {
    if let (Ok(old), Ok(meta)) = (std::fs::read(path), std::fs::metadata(path))
        && old == contents.as_bytes()
        && meta.permissions().mode() & 0o7777 == mode
    {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode)
        .create(dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.kpaas-mesh-tmp", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    // The umask may have narrowed the mode; set it exactly.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(true)
}

fn manifest_ids(
    manifest: &serde_json::Value,
) -> Result<(String, String, Option<String>, String), String> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let api_version = s(&manifest["apiVersion"]).ok_or("manifest without apiVersion")?;
    let kind = s(&manifest["kind"]).ok_or("manifest without kind")?;
    let name = s(&manifest["metadata"]["name"]).ok_or("manifest without metadata.name")?;
    Ok((
        api_version,
        kind,
        s(&manifest["metadata"]["namespace"]),
        name,
    ))
}

async fn run_cluster_action(
    clusters: &Clusters,
    cluster: &str,
    action: &Action,
    started: Timestamp,
) -> Result<Outcome, String> {
    let done = |what: String, changed: bool| Outcome {
        cluster: Some(cluster.to_string()),
        what,
        changed,
    };
    match action {
        Action::Apply { manifest, .. } => {
            let (api_version, kind, namespace, name) = manifest_ids(manifest)?;
            let api = clusters
                .api(cluster, &api_version, &kind, namespace.as_deref())
                .await?;
            let what = match &namespace {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            };
            let existing = api
                .get_opt(&name)
                .await
                .map_err(|e| format!("cluster {cluster}: get {what}: {e}"))?;
            if let Some(reset) = existing
                .as_ref()
                .and_then(|o| applied_at_other_version(&o.metadata, &api_version))
            {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&reset))
                    .await
                    .map_err(|e| format!("cluster {cluster}: apply {what} (new version): {e}"))?;
            }
            let before = existing.and_then(|o| o.metadata.resource_version);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let after: DynamicObject = api
                .patch(&name, &params, &Patch::Apply(manifest))
                .await
                .map_err(|e| format!("cluster {cluster}: apply {what}: {e}"))?;
            Ok(done(what, before != after.metadata.resource_version))
        }
        Action::Delete {
            api_version,
            kind,
            namespace,
            name,
            ..
        } => {
            let what = match namespace {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            };
            let Some(api) = clusters
                .api_if_served(cluster, api_version, kind, namespace.as_deref())
                .await?
            else {
                return Ok(done(what, false));
            };
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(done(format!("delete {what}"), true)),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    Ok(done(format!("delete {what}"), false))
                }
                Err(e) => Err(format!("cluster {cluster}: delete {what}: {e}")),
            }
        }
        Action::HelmRelease(want) => helm_release(clusters, cluster, want).await.map(|c| {
            done(
                format!(
                    "helm release {}/{} ({} {})",
                    want.namespace, want.release, want.chart.name, want.chart.version
                ),
                c,
            )
        }),
        Action::HelmUninstall {
            namespace, release, ..
        } => {
            let what = format!("uninstall helm release {namespace}/{release}");
            let client = clusters.client(cluster).await?;
            if helm::read_release(client, namespace, release)
                .await?
                .is_none()
            {
                return Ok(done(what, false));
            }
            let args: Vec<String> = [
                "uninstall",
                release,
                "--namespace",
                namespace,
                "--kube-context",
                clusters.context(cluster)?,
            ]
            .map(String::from)
            .to_vec();
            helm::run_helm(&args, clusters.kubeconfig_env())
                .await
                .map_err(|e| format!("cluster {cluster}: {e}"))?;
            Ok(done(what, true))
        }
        Action::Wait {
            condition,
            timeout_secs,
            ..
        } => {
            crate::interrupt::abandonable(
                &format!("{} on cluster {cluster}", describe_wait(condition)),
                wait(
                    clusters,
                    cluster,
                    condition,
                    Duration::from_secs(*timeout_secs),
                    started,
                ),
            )
            .await?;
            Ok(done(
                format!("waited for {}", describe_wait(condition)),
                false,
            ))
        }
        Action::WriteFile { .. } => Err("local action routed to a cluster".into()),
        Action::Plugin { .. } => Err("plugin action routed to the cluster executor".into()),
    }
}

async fn helm_release(
    clusters: &Clusters,
    cluster: &str,
    want: &HelmRelease,
) -> Result<bool, String> {
    let client = clusters.client(cluster).await?;
    if let Some(stored) = helm::read_release(client, &want.namespace, &want.release).await? {
        if helm::up_to_date(&stored, want) {
            return Ok(false);
        }
        if let Some(r) = helm::recovery(&stored) {
            recover(clusters, cluster, want, &stored, r).await?;
            // a rollback may have brought back just what is wanted
            let client = clusters.client(cluster).await?;
            if let Some(now) = helm::read_release(client, &want.namespace, &want.release).await?
                && helm::up_to_date(&now, want)
            {
                return Ok(true);
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("kpaas-mesh-values-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let values_file = dir.path().join("values.json");
    let values = serde_json::to_string(&want.values).map_err(|e| e.to_string())?;
    write_file(&values_file, &values, 0o600, 0o700)?;
    let mut want = want.clone();
    if let Some(path) = &want.chart.path {
        want.chart.path = Some(helm::resolve_local_chart(path, &want.chart.version)?);
    }
    let args = helm::upgrade_args(
        &want,
        clusters.context(cluster)?,
        &values_file.display().to_string(),
    );
    helm::run_helm(&args, clusters.kubeconfig_env())
        .await
        .map_err(|e| format!("cluster {cluster}: release {}: {e}", want.release))?;
    Ok(true)
}

/// Gets a release that a stopped helm left pending out of that state (see [`helm::Recovery`]),
/// once it has been pending longer than [`helm::pending_grace`], and says so on stderr.
async fn recover(
    clusters: &Clusters,
    cluster: &str,
    want: &HelmRelease,
    stored: &helm::StoredRelease,
    r: helm::Recovery,
) -> Result<(), String> {
    let status = &stored.info.status;
    let revision = stored.info.revision;
    let age = stored
        .created
        .map(|c| Timestamp::now().duration_since(c).as_secs().max(0) as u64)
        .unwrap_or(u64::MAX);
    let grace = helm::pending_grace().as_secs();
    if age < grace {
        return Err(format!(
            "cluster {cluster}: helm release {}/{} is {status} (revision {revision}) since {age}s: another helm may still be at work on it; run again once it is {grace}s old and kpaas-mesh recovers it, or finish it yourself",
            want.namespace, want.release
        ));
    }
    let args = helm::recovery_args(
        r,
        &want.release,
        &want.namespace,
        clusters.context(cluster)?,
    );
    crate::progress::line(&format!(
        "cluster {cluster}: helm release {}/{} was left {status} (revision {revision}; its helm was stopped): `helm {} {}`, as helm advises, then the release as planned",
        want.namespace, want.release, args[0], want.release
    ));
    helm::run_helm(&args, clusters.kubeconfig_env())
        .await
        .map_err(|e| {
            format!(
                "cluster {cluster}: recovering release {}: {e}",
                want.release
            )
        })?;
    Ok(())
}

/// Words for what a wait waits for (used in timeouts and reports).
pub fn describe_wait(condition: &WaitCondition) -> String {
    match condition {
        WaitCondition::DeploymentsAvailable { namespace, names } => {
            format!(
                "Deployments {} in {namespace} to be Available",
                names.join(", ")
            )
        }
        WaitCondition::ServiceAddress {
            namespace, name, ..
        } => format!("Service {namespace}/{name} to get a LoadBalancer address"),
        WaitCondition::SecretHasKey {
            namespace,
            name,
            key,
        } => format!("Secret {namespace}/{name} to hold '{key}'"),
        WaitCondition::DaemonSetReady { namespace, name } => {
            format!("DaemonSet {namespace}/{name} to be ready on every node")
        }
        WaitCondition::Deleted {
            kind,
            namespace,
            name,
            ..
        } => match namespace {
            Some(ns) => format!("{kind} {ns}/{name} to be deleted"),
            None => format!("{kind} {name} to be deleted"),
        },
        WaitCondition::Event {
            namespace,
            kind,
            name,
            reason,
            ..
        } => format!("a {reason} event on {kind} {namespace}/{name}"),
    }
}

/// Now, cut to the whole second.
pub fn now_whole_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid second")
}

/// When an Event was last seen: `lastTimestamp`, else `eventTime`, else `firstTimestamp`, else
/// its creation.
pub fn event_last_seen(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// What an Event says for an [`WaitCondition::Event`] wait: `Some(Ok)` the awaited reason,
/// `Some(Err(message))` a failure reason, `None` anything else (other objects, older events).
pub fn event_verdict(
    e: &Event,
    kind: &str,
    name: &str,
    reason: &str,
    failure_reasons: &[String],
    since: Timestamp,
) -> Option<Result<(), String>> {
    let about = &e.involved_object;
    if about.kind.as_deref() != Some(kind) || about.name.as_deref() != Some(name) {
        return None;
    }
    if event_last_seen(e).is_none_or(|t| t < since) {
        return None;
    }
    let r = e.reason.as_deref().unwrap_or("");
    if r == reason {
        Some(Ok(()))
    } else if failure_reasons.iter().any(|f| f == r) {
        Some(Err(format!(
            "{r}: {}",
            e.message.as_deref().unwrap_or("(no message)").trim()
        )))
    } else {
        None
    }
}

async fn wait(
    clusters: &Clusters,
    cluster: &str,
    condition: &WaitCondition,
    timeout: Duration,
    started: Timestamp,
) -> Result<(), String> {
    let what = describe_wait(condition);
    let client = clusters.client(cluster).await?;
    let failed =
        |e: kube::runtime::wait::Error| format!("cluster {cluster}: while waiting for {what}: {e}");
    let watch = async {
        match condition {
            WaitCondition::DeploymentsAvailable { namespace, names } => {
                let api: Api<Deployment> = Api::namespaced(client, namespace);
                let waits = names.iter().map(|name| {
                    let api = api.clone();
                    async move { await_condition(api, name, deployment_available).await }
                });
                try_join_all(waits).await.map(|_| ()).map_err(failed)
            }
            WaitCondition::ServiceAddress {
                namespace, name, ..
            } => {
                let api: Api<Service> = Api::namespaced(client, namespace);
                await_condition(api, name, service_has_address)
                    .await
                    .map(|_| ())
                    .map_err(failed)
            }
            WaitCondition::SecretHasKey {
                namespace,
                name,
                key,
            } => {
                let api: Api<Secret> = Api::namespaced(client, namespace);
                let has_key = |s: Option<&Secret>| {
                    s.and_then(|s| s.data.as_ref())
                        .and_then(|d| d.get(key.as_str()))
                        .is_some_and(|v| !v.0.is_empty())
                };
                await_condition(api, name, has_key)
                    .await
                    .map(|_| ())
                    .map_err(failed)
            }
            WaitCondition::DaemonSetReady { namespace, name } => {
                let api: Api<DaemonSet> = Api::namespaced(client, namespace);
                await_condition(api, name, daemonset_ready)
                    .await
                    .map(|_| ())
                    .map_err(failed)
            }
            WaitCondition::Deleted {
                api_version,
                kind,
                namespace,
                name,
            } => {
                // The kind itself is gone (its CRD was removed): so is the object. A failed
                // lookup proves nothing: try again until the wait's timeout.
                let api = loop {
                    match clusters
                        .api_if_served(cluster, api_version, kind, namespace.as_deref())
                        .await
                    {
                        Ok(Some(api)) => break api,
                        Ok(None) => return Ok(()),
                        Err(ApiError::Discovery { source, .. }) => {
                            tracing::debug!(%cluster, %kind, "discovery failed, retrying: {source}");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                };
                await_condition(api, name, |o: Option<&DynamicObject>| o.is_none())
                    .await
                    .map(|_| ())
                    .map_err(failed)
            }
            WaitCondition::Event {
                namespace,
                kind,
                name,
                reason,
                failure_reasons,
            } => {
                let api: Api<Event> = Api::namespaced(client, namespace);
                let cfg = watcher::Config::default().fields(&format!("involvedObject.name={name}"));
                // Errors are retried with backoff (the wait's timeout bounds them).
                let mut events =
                    std::pin::pin!(watcher(api, cfg).default_backoff().applied_objects());
                loop {
                    match events.try_next().await {
                        Ok(Some(e)) => {
                            match event_verdict(&e, kind, name, reason, failure_reasons, started) {
                                Some(Ok(())) => break Ok(()),
                                Some(Err(m)) => {
                                    break Err(format!(
                                        "cluster {cluster}: while waiting for {what}: {m}"
                                    ));
                                }
                                None => {}
                            }
                        }
                        Ok(None) => {
                            break Err(format!(
                                "cluster {cluster}: while waiting for {what}: the watch ended"
                            ));
                        }
                        Err(e) => {
                            tracing::debug!(%cluster, "event watch: {e}, retrying");
                        }
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(result) => result,
        Err(_) => {
            let hint = match condition {
                WaitCondition::ServiceAddress { hint, .. } if !hint.is_empty() => {
                    format!(" ({hint})")
                }
                _ => String::new(),
            };
            let last = last_seen(clusters, cluster, condition).await;
            Err(format!(
                "cluster {cluster}: timed out after {}s waiting for {what}{hint}; {last}",
                timeout.as_secs()
            ))
        }
    }
}

/// Where a Deployment stands, in a few words: replicas, and its conditions that are not
/// `True` (or the Progressing one's reason).
pub fn deployment_state(d: &Deployment) -> String {
    let st = d.status.clone().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut out = format!(
        "{}/{want} updated, {} available",
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0)
    );
    for c in st.conditions.iter().flatten() {
        if c.status != "True"
            || c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            out.push_str(&format!(
                ", {}={} ({}{})",
                c.type_,
                c.status,
                c.reason.clone().unwrap_or_default(),
                c.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// Why the first of a Deployment's pods that is not Ready is not: its phase and its first
/// condition that is not `True` (e.g. `PodScheduled=False (Unschedulable: …)`); empty when
/// there is none to blame.
async fn stuck_pod(client: &kube::Client, namespace: &str, d: &Deployment) -> String {
    let Some(labels) = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
    else {
        return String::new();
    };
    let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(pods) = api
        .list(&kube::api::ListParams::default().labels(&selector.join(",")))
        .await
    else {
        return String::new();
    };
    pods.items.iter().find_map(pod_trouble).unwrap_or_default()
}

/// `, pod NAME PHASE: TYPE=STATUS (REASON: MESSAGE)` for a pod that is not Ready.
pub fn pod_trouble(p: &Pod) -> Option<String> {
    let st = p.status.as_ref()?;
    let conditions = st.conditions.as_deref().unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
    {
        return None;
    }
    let c = conditions.iter().find(|c| c.status != "True")?;
    Some(format!(
        ", pod {} {}: {}={} ({}{})",
        p.metadata.name.as_deref().unwrap_or(""),
        st.phase.as_deref().unwrap_or("Unknown"),
        c.type_,
        c.status,
        c.reason.as_deref().unwrap_or(""),
        c.message
            .as_deref()
            .map(|m| format!(": {}", m.trim()))
            .unwrap_or_default()
    ))
}

/// What the awaited objects looked like when a wait timed out, and the kubectl command that
/// shows more.
async fn last_seen(clusters: &Clusters, cluster: &str, condition: &WaitCondition) -> String {
    let ctx = clusters.context(cluster).unwrap_or(cluster).to_string();
    let Ok(client) = clusters.client(cluster).await else {
        return format!("look: kubectl --context {ctx} get events -A");
    };
    match condition {
        WaitCondition::DeploymentsAvailable { namespace, names } => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let mut parts = Vec::new();
            for n in names {
                match api.get_opt(n).await {
                    Ok(Some(d)) if !deployment_available(Some(&d)) => {
                        let pod = stuck_pod(&client, namespace, &d).await;
                        parts.push(format!(
                            "Deployment {namespace}/{n}: {}{pod}",
                            deployment_state(&d)
                        ))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => parts.push(format!("Deployment {namespace}/{n} does not exist")),
                    Err(e) => parts.push(format!("Deployment {namespace}/{n}: {e}")),
                }
            }
            format!(
                "last seen: {}; look: kubectl --context {ctx} -n {namespace} describe deploy {}",
                parts.join("; "),
                names.join(" ")
            )
        }
        WaitCondition::ServiceAddress {
            namespace, name, ..
        } => {
            let api: Api<Service> = Api::namespaced(client, namespace);
            let seen = match api.get_opt(name).await {
                Ok(Some(s)) => format!(
                    "Service {namespace}/{name} is type {} with no ingress address",
                    s.spec.and_then(|s| s.type_).unwrap_or_default()
                ),
                Ok(None) => format!("Service {namespace}/{name} does not exist"),
                Err(e) => e.to_string(),
            };
            format!(
                "last seen: {seen}; look: kubectl --context {ctx} -n {namespace} describe svc {name}"
            )
        }
        WaitCondition::SecretHasKey {
            namespace,
            name,
            key,
        } => {
            let api: Api<Secret> = Api::namespaced(client, namespace);
            let seen = match api.get_opt(name).await {
                Ok(Some(_)) => format!("Secret {namespace}/{name} has no {key} yet"),
                Ok(None) => format!("Secret {namespace}/{name} does not exist"),
                Err(e) => e.to_string(),
            };
            format!("last seen: {seen}; look: kubectl --context {ctx} -n {namespace} get events")
        }
        WaitCondition::DaemonSetReady { namespace, name } => {
            let api: Api<DaemonSet> = Api::namespaced(client, namespace);
            let seen = match api.get_opt(name).await {
                Ok(Some(d)) => {
                    let st = d.status.unwrap_or_default();
                    format!(
                        "DaemonSet {namespace}/{name}: {}/{} ready, {} updated",
                        st.number_ready,
                        st.desired_number_scheduled,
                        st.updated_number_scheduled.unwrap_or(0)
                    )
                }
                Ok(None) => format!("DaemonSet {namespace}/{name} does not exist"),
                Err(e) => e.to_string(),
            };
            format!(
                "last seen: {seen}; look: kubectl --context {ctx} -n {namespace} describe ds {name}"
            )
        }
        WaitCondition::Deleted {
            kind,
            namespace,
            name,
            ..
        } => {
            let ns = namespace
                .as_ref()
                .map(|n| format!(" -n {n}"))
                .unwrap_or_default();
            format!(
                "it is still there (finalizers or a terminating namespace); look: kubectl --context {ctx}{ns} get {} {name} -o yaml",
                kind.to_lowercase()
            )
        }
        WaitCondition::Event {
            namespace,
            kind,
            name,
            ..
        } => format!(
            "no such Event was recorded; look: kubectl --context {ctx} -n {namespace} get events --field-selector involvedObject.name={name},involvedObject.kind={kind}"
        ),
    }
}

/// The Deployment has rolled out its current template (as `kubectl rollout status` sees it:
/// `observedGeneration` current, every replica updated, no old replica left) and its
/// `Available` condition is `True`. Only `Available` would pass in the middle of a rollout
/// (the old pods are still available), e.g. right after new trust roots change the pod
/// template of Linkerd's control plane.
pub fn deployment_available(d: Option<&Deployment>) -> bool {
    let Some(d) = d else { return false };
    let Some(st) = d.status.as_ref() else {
        return false;
    };
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let rolled_out = st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= st.updated_replicas.unwrap_or(0);
    rolled_out
        && st.conditions.as_ref().is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        })
}

/// The DaemonSet's current generation runs, updated and available, on every node it wants.
pub fn daemonset_ready(d: Option<&DaemonSet>) -> bool {
    let Some(d) = d else { return false };
    let (Some(status), generation) = (d.status.as_ref(), d.metadata.generation) else {
        return false;
    };
    let desired = status.desired_number_scheduled;
    status.observed_generation >= generation
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_available.unwrap_or(0) == desired
}

/// `status.loadBalancer.ingress` has an IP or hostname.
pub fn service_has_address(s: Option<&Service>) -> bool {
    s.and_then(|s| s.status.as_ref())
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|ing| ing.iter().any(|i| i.ip.is_some() || i.hostname.is_some()))
}

/// How often a stage with plugin actions is run and planned again before the host gives up
/// (see [`converge`]).
pub const PLUGIN_ROUNDS: usize = 4;

/// Runs a stage's plan to a fixed point. A plan holding plugin actions changed an outside
/// system, so after running it the stage is planned again (`replan`) from that system (its
/// outputs, e.g. a floating IP just allocated, are read back, not remembered) and what the new
/// plan holds is run (`run`), until a plan holds no plugin action. A stage still planning
/// outside writes after `rounds` runs does not converge: that is an error starting with `who`
/// (e.g. `plugin netfix-openstack`).
/// `notes` sees every plan before it runs. Returns the last plan.
pub async fn converge<P, PF, R, RF>(
    mut plan: Plan,
    rounds: usize,
    who: &str,
    mut notes: impl FnMut(&Plan),
    mut replan: P,
    mut run: R,
) -> Result<Plan, String>
where
    P: FnMut() -> PF,
    PF: std::future::Future<Output = Result<Plan, String>>,
    R: FnMut(Vec<Action>) -> RF,
    RF: std::future::Future<Output = Result<(), String>>,
{
    for round in 1.. {
        notes(&plan);
        if plan.actions.is_empty() {
            break;
        }
        let outside = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Plugin { .. }));
        run(plan.actions.clone()).await?;
        if !outside {
            break;
        }
        if round >= rounds {
            return Err(format!(
                "{who} still plans changes outside the clusters after {rounds} rounds; it does not \
                 converge (see the report above; running again goes on from where it is)"
            ));
        }
        plan = replan().await?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_apply_at_a_new_version_first_drops_our_entry_of_the_old_one() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let entry = |manager: &str, op: &str, v: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            api_version: Some(v.into()),
            ..Default::default()
        };
        let meta = |entries: Vec<ManagedFieldsEntry>| kube::api::ObjectMeta {
            resource_version: Some("42".into()),
            managed_fields: Some(entries),
            ..Default::default()
        };
        let v1 = "multicluster.linkerd.io/v1alpha1";
        let v2 = "multicluster.linkerd.io/v1alpha2";
        // same version, or someone else's entry at another version: nothing to drop
        assert_eq!(
            applied_at_other_version(&meta(vec![entry(FIELD_MANAGER, "Apply", v2)]), v2),
            None
        );
        assert_eq!(
            applied_at_other_version(&meta(vec![entry("kubectl", "Apply", v1)]), v2),
            None
        );
        assert_eq!(
            applied_at_other_version(&kube::api::ObjectMeta::default(), v2),
            None
        );
        // ours at v1alpha1, alone: reset
        let p =
            applied_at_other_version(&meta(vec![entry(FIELD_MANAGER, "Apply", v1)]), v2).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"metadata": {"resourceVersion": "42", "managedFields": [{}]}})
        );
        // with the service mirror's status updates: only ours goes
        let p = applied_at_other_version(
            &meta(vec![
                entry(FIELD_MANAGER, "Apply", v1),
                entry("controller", "Update", v2),
            ]),
            v2,
        )
        .unwrap();
        let list = p["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["manager"], "controller");
    }
    #[test]
    fn a_stage_that_failed_on_one_cluster_says_where_it_is_complete() {
        let line = super::failure_line(&["cluster c2: unreachable".into()], &["c1", "c3"], false);
        assert!(line.starts_with("cluster c2: unreachable (the stage is complete on c1, c3; no later stage was started;"), "{line}");
        let both = super::failure_line(
            &["cluster c1: a".into(), "cluster c2: b".into()],
            &[],
            false,
        );
        assert_eq!(both, "cluster c1: a; cluster c2: b");
        let int = super::failure_line(
            &[
                "cluster c1: helm failed".into(),
                "interrupted by SIGINT before x: 3 action(s) done".into(),
            ],
            &["c3"],
            true,
        );
        assert_eq!(int, "interrupted by SIGINT before x: 3 action(s) done");
    }

    fn plugin_action(n: usize) -> Action {
        Action::Plugin {
            cluster: Some("c1".into()),
            summary: format!("write {n}"),
            op: serde_json::json!({ "n": n }),
            secret: false,
        }
    }

    fn plan_of(actions: Vec<Action>) -> Plan {
        Plan {
            actions,
            ..Plan::default()
        }
    }

    /// Drives [`converge`] with plans popped from `later` and records what ran.
    fn drive(first: Plan, later: Vec<Plan>) -> (Result<Plan, String>, Vec<Vec<Action>>, usize) {
        let later = std::cell::RefCell::new(later.into_iter());
        let ran = std::cell::RefCell::new(Vec::new());
        let mut seen = 0;
        let out = futures::executor::block_on(converge(
            first,
            PLUGIN_ROUNDS,
            "plugin vendor",
            |_| seen += 1,
            || {
                let next = later.borrow_mut().next();
                async move { next.ok_or_else(|| "planned too often".to_string()) }
            },
            |actions| {
                ran.borrow_mut().push(actions);
                async { Ok(()) }
            },
        ));
        (out, ran.into_inner(), seen)
    }

    #[test]
    fn plugin_actions_are_run_then_the_stage_is_planned_again_until_none() {
        // Round 1 writes outside; round 2 (re-planned) applies what depended on it; done.
        let apply = Action::Delete {
            cluster: "c1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("x".into()),
            name: "y".into(),
        };
        let (out, ran, seen) = drive(
            plan_of(vec![plugin_action(1), plugin_action(2)]),
            vec![plan_of(vec![apply.clone()])],
        );
        assert_eq!(out.unwrap().actions, vec![apply.clone()]);
        assert_eq!(
            ran,
            vec![vec![plugin_action(1), plugin_action(2)], vec![apply]]
        );
        assert_eq!(seen, 2);
        // A plan without plugin actions runs once and is not planned again.
        let (out, ran, _) = drive(plan_of(vec![]), vec![]);
        assert!(out.unwrap().actions.is_empty());
        assert!(ran.is_empty());
        // The re-plan finds nothing left.
        let (out, ran, _) = drive(plan_of(vec![plugin_action(1)]), vec![plan_of(vec![])]);
        assert!(out.is_ok());
        assert_eq!(ran.len(), 1);
    }

    #[test]
    fn a_stage_that_keeps_planning_outside_writes_is_stopped() {
        let again = || plan_of(vec![plugin_action(9)]);
        let (out, ran, _) = drive(again(), (0..10).map(|_| again()).collect());
        assert_eq!(
            out.unwrap_err(),
            format!(
                "plugin vendor still plans changes outside the clusters after {PLUGIN_ROUNDS} rounds; it does not \
                 converge (see the report above; running again goes on from where it is)"
            )
        );
        assert_eq!(ran.len(), PLUGIN_ROUNDS);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn a_timeout_says_where_the_deployment_and_its_pod_stood() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "linkerd-identity"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {}},
            "status": {"updatedReplicas": 1, "availableReplicas": 0, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}
        }))
        .unwrap();
        assert_eq!(
            deployment_state(&d),
            "1/2 updated, 0 available, Available=False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)"
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "linkerd-identity-1"},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "}]}
        }))
        .unwrap();
        assert_eq!(
            pod_trouble(&pod).unwrap(),
            ", pod linkerd-identity-1 Pending: PodScheduled=False (Unschedulable: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.)"
        );
        let ready: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        assert_eq!(pod_trouble(&ready), None);
    }

    #[test]
    fn files_are_written_atomically_with_modes_and_only_when_different() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("certs/sub/issuer.key");
        assert!(write_file(&path, "k1", 0o600, 0o700).unwrap());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        let dir_meta = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(dir_meta.permissions().mode() & 0o7777, 0o700);
        assert!(
            !write_file(&path, "k1", 0o600, 0o700).unwrap(),
            "same content: no change"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(write_file(&path, "k1", 0o600, 0o700).unwrap(), "mode fixed");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert!(write_file(&path, "k2", 0o600, 0o700).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "k2");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[tokio::test]
    async fn local_plans_run_without_clusters_and_cluster_plans_need_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.crt").display().to_string();
        let exec = Executor {
            clusters: None,
            plugin: None,
        };
        let out = exec
            .run(&[Action::WriteFile {
                path: path.clone(),
                contents: "c".into(),
                mode: 0o644,
                dir_mode: 0o700,
                secret: false,
            }])
            .await
            .unwrap();
        assert_eq!(out[0].what, format!("file {path}"));
        assert!(out[0].changed);
        let err = exec
            .run(&[Action::Apply {
                cluster: "c1".into(),
                manifest: json!({}),
                secret: false,
            }])
            .await
            .unwrap_err();
        assert!(err.contains("no clusters"), "{err}");
    }

    #[test]
    fn event_waits_take_the_reason_about_the_object_since_the_start() {
        let since = Timestamp::from_second(1_800_000_000).unwrap();
        let ev = |kind: &str, name: &str, reason: &str, last: i64| -> Event {
            serde_json::from_value(json!({
                "metadata": {"name": "e", "namespace": "linkerd"},
                "involvedObject": {"kind": kind, "name": name, "namespace": "linkerd"},
                "reason": reason, "message": " Skipping issuer update as certs could not be read ",
                "lastTimestamp": Timestamp::from_second(last).unwrap().to_string(),
            }))
            .unwrap()
        };
        let verdict = |e: &Event| {
            event_verdict(
                e,
                "Deployment",
                "linkerd-identity",
                "IssuerUpdated",
                &["IssuerUpdateSkipped".into()],
                since,
            )
        };
        let t = 1_800_000_000;
        assert_eq!(
            verdict(&ev("Deployment", "linkerd-identity", "IssuerUpdated", t)),
            Some(Ok(()))
        );
        // older than the start, another object, another reason: not it
        assert_eq!(
            verdict(&ev(
                "Deployment",
                "linkerd-identity",
                "IssuerUpdated",
                t - 1
            )),
            None
        );
        assert_eq!(
            verdict(&ev("Deployment", "linkerd-destination", "IssuerUpdated", t)),
            None
        );
        assert_eq!(
            verdict(&ev("Pod", "linkerd-identity", "IssuerUpdated", t)),
            None
        );
        assert_eq!(
            verdict(&ev(
                "Deployment",
                "linkerd-identity",
                "ScalingReplicaSet",
                t
            )),
            None
        );
        // a failure reason ends the wait with its message
        assert_eq!(
            verdict(&ev(
                "Deployment",
                "linkerd-identity",
                "IssuerUpdateSkipped",
                t + 5
            )),
            Some(Err(
                "IssuerUpdateSkipped: Skipping issuer update as certs could not be read".into()
            ))
        );
    }

    #[test]
    fn conditions_read_status() {
        let dep = |generation: i64, observed: i64, replicas: i32, updated: i32| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"generation": generation},
                "spec": {"replicas": 1, "selector": {}, "template": {}},
                "status": {"observedGeneration": observed, "replicas": replicas,
                    "updatedReplicas": updated, "conditions": [
                    {"type": "Progressing", "status": "True"}, {"type": "Available", "status": "True"}]}}))
            .unwrap()
        };
        assert!(deployment_available(Some(&dep(2, 2, 1, 1))));
        // Available, but in the middle of a rollout: the new template not seen yet, or an old
        // pod still running next to the new one, or the new one not created yet.
        assert!(!deployment_available(Some(&dep(3, 2, 1, 1))));
        assert!(!deployment_available(Some(&dep(3, 3, 2, 1))));
        assert!(!deployment_available(Some(&dep(3, 3, 1, 0))));
        let d: Deployment = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "Available", "status": "False"}]}}))
        .unwrap();
        assert!(!deployment_available(Some(&d)));
        assert!(!deployment_available(None));
        let s: Service = serde_json::from_value(
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.11.1"}]}}}),
        )
        .unwrap();
        assert!(service_has_address(Some(&s)));
        let ds = |generation: i64, observed: i64, updated: i32, available: i32| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {"generation": generation}, "status": {
                "observedGeneration": observed, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                "numberMisscheduled": 0, "numberReady": available,
                "updatedNumberScheduled": updated, "numberAvailable": available}}))
            .unwrap()
        };
        assert!(daemonset_ready(Some(&ds(2, 2, 3, 3))));
        assert!(!daemonset_ready(Some(&ds(2, 1, 3, 3))), "old generation");
        assert!(
            !daemonset_ready(Some(&ds(2, 2, 2, 3))),
            "rollout in progress"
        );
        assert!(!daemonset_ready(Some(&ds(2, 2, 3, 2))), "a pod unavailable");
        let s: Service = serde_json::from_value(json!({"status": {"loadBalancer": {}}})).unwrap();
        assert!(!service_has_address(Some(&s)));
    }

    #[test]
    fn manifests_need_identity() {
        let (v, k, ns, n) = manifest_ids(&json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "linkerd"}}))
        .unwrap();
        assert_eq!(
            (v.as_str(), k.as_str(), ns.as_deref(), n.as_str()),
            ("v1", "Secret", Some("linkerd"), "s")
        );
        assert!(manifest_ids(&json!({"apiVersion": "v1", "kind": "Secret"})).is_err());
    }
}
