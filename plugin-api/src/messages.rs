//! The typed messages that cross the ABI as JSON: requests, fact queries and answers, plans
//! (actions, checks, tables) and stage outputs. Defined once here, used by host and plugins.
//!
//! Compatibility rule: within plugin-api 0.2.x, fields are only added, always with
//! `#[serde(default)]`, so an older plugin still decodes a newer host's request.
//!
//! Nothing here knows Linkerd: what the built-in stages exchange (their settings, the cert
//! and netfix outputs) are types of `kpaas-mesh-kit`, carried here as JSON values, so new
//! Linkerd knowledge never changes this crate or the ABI version.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What the user asked the pipeline to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Make everything exist (`up`, `certs generate`).
    Up,
    /// Remove what `up` made, in reverse stage order.
    Down,
    /// Describe what is there (`status`, `certs inspect`).
    Status,
    /// Verify it (`check`).
    Check,
    /// Create links only (`link`).
    Link,
    /// Remove links only (`unlink`).
    Unlink,
}

/// One cluster of the mesh: the name Linkerd uses for it and the kubeconfig context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    pub name: String,
    pub context: String,
}

/// One call into a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRequest {
    pub operation: Operation,
    /// The clusters, in the order the user gave them.
    pub clusters: Vec<ClusterRef>,
    /// Settings every stage of the command shares (for the built-in stages,
    /// `kpaas_mesh_kit::MeshSettings`: Linkerd version, charts, registry, timeouts, ...).
    #[serde(default)]
    pub settings: Value,
    /// This stage's own options, a JSON object the host built from `--set STAGE.KEY=VALUE`
    /// (and the alias flags), already checked against the plugin's option schema.
    #[serde(default)]
    pub options: Value,
    /// Outputs of the stages that ran before this one in the same pipeline run, by stage name.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// Answers to the queries this stage asked in earlier rounds of the same call.
    #[serde(default)]
    pub facts: Vec<Fact>,
    /// True when the host will only print the plan. Informational: a plan must not depend on it.
    #[serde(default)]
    pub dry_run: bool,
}

impl StageRequest {
    pub fn new(operation: Operation, clusters: Vec<ClusterRef>) -> Self {
        StageRequest {
            operation,
            clusters,
            settings: Value::Null,
            options: Value::Null,
            inputs: BTreeMap::new(),
            facts: Vec::new(),
            dry_run: false,
        }
    }

    /// The answer to `query`, if the host has given one.
    pub fn fact(&self, query: &FactQuery) -> Option<&FactAnswer> {
        self.facts
            .iter()
            .find(|f| &f.query == query)
            .map(|f| &f.answer)
    }

    /// Of `queries`, the ones not answered yet; a stage returns them as
    /// [`StageResponse::NeedFacts`] when the list is not empty.
    pub fn missing(&self, queries: impl IntoIterator<Item = FactQuery>) -> Vec<FactQuery> {
        queries
            .into_iter()
            .filter(|q| self.fact(q).is_none())
            .collect()
    }
}

/// A stage's answer to one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StageResponse {
    /// Call me again with these answered (added to [`StageRequest::facts`]).
    NeedFacts { queries: Vec<FactQuery> },
    /// What must happen (or, for status/check, what was found).
    Plan(Plan),
}

/// Something the host looks up for a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "kebab-case")]
pub enum FactQuery {
    /// A local file's contents (UTF-8) and mode.
    File { path: String },
    /// One object; `api_version` as in manifests (`v1`, `apps/v1`, ...).
    Object {
        cluster: String,
        api_version: String,
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
    },
    /// All objects of a kind, optionally in one namespace and matching a label selector.
    Objects {
        cluster: String,
        api_version: String,
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label_selector: Option<String>,
    },
    /// A helm release's deployed state.
    HelmRelease {
        cluster: String,
        namespace: String,
        release: String,
    },
    /// The cluster's Kubernetes version (`/version` gitVersion).
    ServerVersion { cluster: String },
    /// The kubeconfig `cluster` entry of a cluster's context (server URL and CA, a CA file
    /// inlined as data), for credentials that point at it. Never the user's credentials.
    KubeconfigCluster { cluster: String },
    /// The output of running `command` in `container` of the first Running pod matching
    /// `label_selector` in `namespace` (through the Kubernetes exec API). Not read-only in
    /// general: stages ask it only for harmless probes (e.g. `verify`'s requests).
    Exec {
        cluster: String,
        namespace: String,
        label_selector: String,
        container: String,
        command: Vec<String>,
    },
    /// Whether the kubeconfig stored under `key` in Secret `namespace/secret` on `cluster`
    /// grants access to its API server: the host connects with it, reads `/version` and
    /// lists Services (what Linkerd's service mirror needs).
    RemoteAccess {
        cluster: String,
        namespace: String,
        secret: String,
        key: String,
    },
    /// An HTTP GET of `path` on `port` of Pod `namespace/pod`, through the API server's pod proxy
    /// (`/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}`): how a stage reads a
    /// controller's admin endpoint (metrics, readiness) without a port-forward. Read-only.
    PodHttp {
        cluster: String,
        namespace: String,
        pod: String,
        port: u16,
        path: String,
    },
}

/// The host's answer to a [`FactQuery`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum FactAnswer {
    /// `contents` is `None` when the file does not exist.
    File {
        contents: Option<String>,
        #[serde(default)]
        mode: Option<u32>,
    },
    /// `None` when the object does not exist.
    Object {
        object: Option<Value>,
    },
    Objects {
        items: Vec<Value>,
    },
    /// `None` when no such release is deployed.
    HelmRelease {
        release: Option<HelmReleaseInfo>,
    },
    ServerVersion {
        git_version: String,
    },
    /// `name` is the kubeconfig's name for the cluster entry; `cluster` its fields as in a
    /// kubeconfig (`server`, `certificate-authority-data`, ...).
    KubeconfigCluster {
        name: String,
        cluster: Value,
    },
    /// What an exec printed; `exit_code` is `None` when the status could not be read.
    Exec {
        pod: String,
        stdout: String,
        #[serde(default)]
        stderr: String,
        #[serde(default)]
        exit_code: Option<i32>,
    },
    /// `error` is `None` when access works; `server_version` when the server answered.
    RemoteAccess {
        #[serde(default)]
        server_version: Option<String>,
        #[serde(default)]
        error: Option<String>,
    },
    /// What the pod answered: `status` is the HTTP status the pod (or the proxy) returned,
    /// `body` its text, cut to the first MiB.
    PodHttp {
        status: u16,
        body: String,
    },
    /// The host could not find out (unreachable cluster, unreadable file, ...).
    Error {
        message: String,
    },
}

/// A query and its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub query: FactQuery,
    pub answer: FactAnswer,
}

/// What helm reports about a deployed release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmReleaseInfo {
    pub chart: String,
    pub chart_version: String,
    #[serde(default)]
    pub app_version: String,
    pub revision: u32,
    pub status: String,
}

/// What a stage wants done, plus what it found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Carried out by the host: local actions first, in order; then each cluster's actions
    /// in order, different clusters concurrently (so a plan must not rely on an action of
    /// one cluster finishing before an action of another).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Results of checks the stage evaluated from facts.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Tables for `status`/`inspect` output.
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Lines for the person running the command (decisions made, warnings).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Data for later stages in the same run (see [`StageRequest::inputs`]).
    #[serde(default)]
    pub outputs: Value,
}

/// One thing the host does for a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Create `path`'s parent directories (mode `dir_mode`) and write the file atomically
    /// with `mode`. `secret` files are never printed (dry-run shows them redacted).
    WriteFile {
        path: String,
        contents: String,
        mode: u32,
        dir_mode: u32,
        #[serde(default)]
        secret: bool,
    },
    /// Server-side apply of one object (field manager [`crate::FIELD_MANAGER`]).
    Apply {
        cluster: String,
        manifest: Value,
        #[serde(default)]
        secret: bool,
    },
    /// Delete one object if it exists.
    Delete {
        cluster: String,
        api_version: String,
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
    },
    /// `helm upgrade --install` unless the release already runs this chart version with
    /// these values.
    HelmRelease(HelmRelease),
    /// `helm uninstall` if the release exists.
    HelmUninstall {
        cluster: String,
        namespace: String,
        release: String,
    },
    /// Block until a condition holds (watched, not polled), or fail after the timeout
    /// with a message naming what was waited for.
    Wait {
        cluster: String,
        condition: WaitCondition,
        timeout_secs: u64,
    },
    /// Carried out by the plugin itself, through the stage object's `execute` entry point:
    /// a write to a system the host has no client for (an IaaS API). `op` is the plugin's own
    /// typed operation as data; `summary` is the line the host prints (dry run and report).
    /// Runs with the cluster's other actions, in order, when `cluster` is set; else first,
    /// with the local actions.
    Plugin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
        summary: String,
        op: Value,
        #[serde(default)]
        secret: bool,
    },
}

/// One [`Action::Plugin`] handed back to the plugin that planned it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    /// The same settings and options the plan was made with.
    #[serde(default)]
    pub settings: Value,
    #[serde(default)]
    pub options: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub op: Value,
}

/// What an executed [`Action::Plugin`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteResponse {
    /// False when the outside system already was as asked (re-runs are no-ops).
    pub changed: bool,
    /// What was done, for the report, e.g. `port kpaas-mesh-gw-cluster1 (id 12ab…)`.
    pub what: String,
}

/// A helm release as a stage wants it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelmRelease {
    pub cluster: String,
    pub release: String,
    pub namespace: String,
    #[serde(default)]
    pub create_namespace: bool,
    pub chart: ChartRef,
    /// Values passed to helm as a file.
    #[serde(default)]
    pub values: Value,
    /// Dotted paths into `values` that hold secrets; printed redacted.
    #[serde(default)]
    pub secret_values: Vec<String>,
}

/// Where a chart comes from: a repository URL or a local directory / `.tgz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartRef {
    /// The chart's name, e.g. `linkerd-control-plane`.
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What a [`Action::Wait`] waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "kebab-case")]
pub enum WaitCondition {
    /// Every named Deployment has rolled out its current template (observed generation current,
    /// all replicas updated, no old replica left) and reports the `Available` condition.
    DeploymentsAvailable {
        namespace: String,
        names: Vec<String>,
    },
    /// A Secret exists and has `key` in its data (e.g. a service-account token the
    /// controller-manager fills in).
    SecretHasKey {
        namespace: String,
        name: String,
        key: String,
    },
    /// A DaemonSet has rolled out its current template to every node it targets and all
    /// those pods are available (`observedGeneration` current, updated = available = desired).
    DaemonSetReady { namespace: String, name: String },
    /// An object is gone (e.g. a Namespace after its deletion finished).
    Deleted {
        api_version: String,
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
    },
    /// A Service has at least one `status.loadBalancer.ingress` entry. `hint` is added to
    /// the timeout error (e.g. "is MetalLB running?").
    ServiceAddress {
        namespace: String,
        name: String,
        #[serde(default)]
        hint: String,
    },
    /// A controller reports that it acted: a core/v1 Event with `reason` about `kind`
    /// `namespace/name` (its `involvedObject`), last seen at or after the moment the host began
    /// this cluster's actions of the plan (second precision, as Events are stamped). An Event
    /// with one of `failure_reasons` seen in that time ends the wait at once with its message.
    /// E.g. Linkerd's identity controller records `IssuerUpdated` on Deployment
    /// `linkerd/linkerd-identity` when it has loaded a new issuer. (plugin-api 0.2.1)
    Event {
        namespace: String,
        kind: String,
        name: String,
        reason: String,
        #[serde(default)]
        failure_reasons: Vec<String>,
    },
}

/// The outcome of one check, shown like `linkerd check` (√ ‼ ×).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Heading the check is listed under, e.g. `kpaas-mesh certificates`.
    pub group: String,
    pub name: String,
    pub status: CheckStatus,
    /// Why it failed or warned; empty when fine.
    #[serde(default)]
    pub detail: String,
    /// Sub-items (e.g. one per link), listed under the check.
    #[serde(default)]
    pub items: Vec<String>,
    /// What to do about it.
    #[serde(default)]
    pub hint: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Ok,
    /// Could not be evaluated here (e.g. needs a data plane); the reason is in `detail`.
    Skipped,
    Warn,
    Fail,
}

/// Rows for human output; `-o json` prints them as objects keyed by column.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_finds_facts_and_missing_queries() {
        let q1 = FactQuery::File { path: "/a".into() };
        let q2 = FactQuery::File { path: "/b".into() };
        let mut req = StageRequest::new(Operation::Up, vec![]);
        req.facts.push(Fact {
            query: q1.clone(),
            answer: FactAnswer::File {
                contents: None,
                mode: None,
            },
        });
        assert!(req.fact(&q1).is_some());
        assert!(req.fact(&q2).is_none());
        assert_eq!(req.missing([q1, q2.clone()]), vec![q2]);
    }

    #[test]
    fn messages_have_a_readable_tagged_json_form() {
        let resp = StageResponse::NeedFacts {
            queries: vec![FactQuery::Object {
                cluster: "cluster1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("linkerd".into()),
                name: "linkerd-config".into(),
            }],
        };
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(
            v,
            json!({"kind": "need-facts", "queries": [{"fact": "object", "cluster": "cluster1",
                "api_version": "v1", "kind": "ConfigMap", "namespace": "linkerd",
                "name": "linkerd-config"}]})
        );
        let back: StageResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back, resp);
    }

    #[test]
    fn older_requests_without_optional_fields_decode() {
        let req: StageRequest = serde_json::from_value(json!({
            "operation": "up",
            "clusters": [{"name": "cluster1", "context": "ctx1"}]
        }))
        .unwrap();
        assert_eq!(req.operation, Operation::Up);
        assert!(req.facts.is_empty() && !req.dry_run && req.options.is_null());
    }

    #[test]
    fn plan_with_every_action_round_trips() {
        let plan = Plan {
            actions: vec![
                Action::WriteFile {
                    path: "/d/ca.key".into(),
                    contents: "k".into(),
                    mode: 0o600,
                    dir_mode: 0o700,
                    secret: true,
                },
                Action::Apply {
                    cluster: "c1".into(),
                    manifest: json!({"apiVersion": "v1", "kind": "Namespace"}),
                    secret: false,
                },
                Action::HelmRelease(HelmRelease {
                    cluster: "c1".into(),
                    release: "linkerd-crds".into(),
                    namespace: "linkerd".into(),
                    create_namespace: true,
                    chart: ChartRef {
                        name: "linkerd-crds".into(),
                        version: "1.8.0".into(),
                        repo: Some("https://helm.linkerd.io/stable".into()),
                        path: None,
                    },
                    values: json!({}),
                    secret_values: vec![],
                }),
                Action::Wait {
                    cluster: "c1".into(),
                    condition: WaitCondition::ServiceAddress {
                        namespace: "linkerd-multicluster".into(),
                        name: "linkerd-gateway".into(),
                        hint: "is MetalLB running?".into(),
                    },
                    timeout_secs: 300,
                },
            ],
            checks: vec![CheckResult {
                group: "g".into(),
                name: "n".into(),
                status: CheckStatus::Warn,
                detail: "d".into(),
                items: vec![],
                hint: String::new(),
            }],
            ..Plan::default()
        };
        let json = serde_json::to_string(&StageResponse::Plan(plan.clone())).unwrap();
        assert_eq!(
            serde_json::from_str::<StageResponse>(&json).unwrap(),
            StageResponse::Plan(plan)
        );
    }
}
