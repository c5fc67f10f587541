//! kpaas-mesh stage plugin **sample**: the guide's section 4 without downloaded scripts —
//! namespace `sample` (proxy injection on), Service `helloworld` on every cluster and
//! Deployment `helloworld-v<i>` on cluster i (what istio's `gen-helloworld.sh` makes), the
//! `sleep` client on the client cluster (default: the second, as in the guide), the remote
//! helloworld Services exported, and a traffic split on the client between the local
//! `helloworld` and every mirror `helloworld-<cluster>`: SMI `TrafficSplit` for Linkerd 2.14,
//! an `HTTPRoute` with weighted backends for Linkerd ≥ 2.15.
//!
//! `check` reports the objects; with `verify` options (the `verify` command) it runs the
//! requests from the sleep pod and judges the split (see [`verify`]).

pub mod verify;

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_kit::linkerd::TrafficSplit;
use kpaas_mesh_kit::options::Scalar;
use kpaas_mesh_plugin_api::{
    Action, CheckResult, CheckStatus, FactAnswer, FactQuery, Operation, Plan, PluginError,
    StagePlugin, StageRequest, StageResponse, Table, WaitCondition,
};
use serde_json::{Value, json};

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "sample",
    description: "helloworld v1/v2 + sleep, exported and split across clusters; verify the split (guide 4)",
    descriptor: descriptor,
    constructor: || Ok(Sample),
}

/// The stage's place and its option schema (kept in step with [`SampleOptions`]).
pub fn descriptor() -> kpaas_mesh_plugin_api::Descriptor {
    use kpaas_mesh_kit::stages;
    use kpaas_mesh_plugin_api::OptionKind;
    kpaas_mesh_plugin_api::Descriptor::new(stages::SAMPLE, &stages::LIFECYCLE)
        .after(&[stages::SMI])
        .option(
            "client",
            OptionKind::String,
            None,
            "the cluster that runs sleep and the split (--sample-client; default: the second)",
        )
        .option(
            "weights",
            OptionKind::Map,
            None,
            "split weight per cluster, NAME=0..1000 (--weights; default: equal)",
        )
}

/// The sample's own options (`--set sample.KEY=VALUE`, `--sample-client`, `--weights`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleOptions {
    /// The cluster that runs `sleep` and the split; default: the second.
    pub client: Option<String>,
    /// Weight per cluster name, as text or a number.
    pub weights: Option<std::collections::BTreeMap<String, Scalar>>,
}

impl SampleOptions {
    pub fn parse(options: &Value) -> Result<SampleOptions, String> {
        kpaas_mesh_kit::options::parse(
            "sample",
            &kpaas_mesh_kit::options::names(&descriptor()),
            options,
        )
    }
}

pub const NS: &str = "sample";
pub const CHECK_GROUP: &str = "kpaas-mesh sample";
pub const HELLO_PORT: u16 = 5000;

#[derive(Debug, Default, Clone, Copy)]
pub struct Sample;

/// The sample's settings: its options (`client`, `weights`) and the mesh settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The cluster that runs `sleep` and the split.
    pub client: String,
    /// Weight per cluster name.
    pub weights: Vec<(String, u32)>,
    pub registry: Option<String>,
    /// TrafficSplit (Linkerd 2.14) or HTTPRoute (later), from the release data.
    pub traffic_split: TrafficSplit,
}

impl Settings {
    pub fn from(req: &StageRequest, opts: &MeshSettings) -> Result<Settings, String> {
        if req.clusters.len() < 2 {
            return Err("sample: needs at least two clusters".into());
        }
        let names: Vec<&str> = req.clusters.iter().map(|c| c.name.as_str()).collect();
        let options = SampleOptions::parse(&req.options)?;
        let client = options.client.unwrap_or_else(|| names[1].to_string());
        if !names.contains(&client.as_str()) {
            return Err(format!(
                "--sample-client {client}: not one of the clusters ({})",
                names.join(", ")
            ));
        }
        let given = options.weights.as_ref();
        let mut weights = Vec::new();
        for c in &names {
            let w = match given {
                None => 50,
                Some(m) => match m.get(*c) {
                    Some(v) => v.as_u64().filter(|w| *w <= 1000).ok_or_else(|| {
                        format!("--weights {c}={}: not a number from 0 to 1000", v.plain())
                    })? as u32,
                    None => 0,
                },
            };
            weights.push((c.to_string(), w));
        }
        if let Some(m) = given {
            if let Some(unknown) = m.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(format!("--weights {unknown}=…: no cluster named {unknown}"));
            }
            if weights.iter().all(|(_, w)| *w == 0) {
                return Err("--weights: at least one weight must be above 0".into());
            }
        }
        Ok(Settings {
            client,
            weights,
            registry: opts.registry.clone(),
            traffic_split: kpaas_mesh_kit::linkerd::release(&opts.linkerd_version)?.traffic_split,
        })
    }

    fn image(&self, image: &str) -> String {
        match &self.registry {
            Some(r) => kpaas_mesh_kit::charts::rewrite_image(image, r),
            None => image.to_string(),
        }
    }

    /// The version label of cluster number `i` (1-based): v1, v2, ...
    pub fn version(i: usize) -> String {
        format!("v{i}")
    }

    /// The name the client reaches `cluster`'s helloworld by.
    pub fn service_for(&self, cluster: &str) -> String {
        if cluster == self.client {
            "helloworld".into()
        } else {
            format!("helloworld-{cluster}")
        }
    }
}

/// istio's helloworld images exist for v1 and v2; further clusters run the v1 image with
/// its version set by `SERVICE_VERSION`, which the app prints.
fn helloworld_image(i: usize) -> String {
    let v = if i <= 2 { i } else { 1 };
    format!("docker.io/istio/examples-helloworld-v{v}:1.0")
}

pub fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": NS, "annotations": {"linkerd.io/inject": "enabled"}}})
}

/// Service `helloworld`; exported (mirrored to the other clusters) unless on the client.
pub fn helloworld_service(exported: bool) -> Value {
    let mut labels = json!({"app": "helloworld", "service": "helloworld"});
    if exported {
        labels["mirror.linkerd.io/exported"] = json!("true");
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "helloworld", "namespace": NS, "labels": labels},
           "spec": {"ports": [{"port": HELLO_PORT, "name": "http"}], "selector": {"app": "helloworld"}}})
}

pub fn helloworld_deployment(s: &Settings, i: usize) -> Value {
    let v = Settings::version(i);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("helloworld-{v}"), "namespace": NS, "labels": {"app": "helloworld", "version": v}},
        "spec": {"replicas": 1,
            "selector": {"matchLabels": {"app": "helloworld", "version": v}},
            "template": {"metadata": {"labels": {"app": "helloworld", "version": v}},
                "spec": {"containers": [{
                    "name": "helloworld",
                    "image": s.image(&helloworld_image(i)),
                    "env": [{"name": "SERVICE_VERSION", "value": v}],
                    "resources": {"requests": {"cpu": "100m"}},
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": HELLO_PORT}]}]}}}})
}

/// The `sleep` client (a curl image that sleeps), as istio's sleep sample.
pub fn sleep_objects(s: &Settings) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sleep", "namespace": NS}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "sleep", "namespace": NS, "labels": {"app": "sleep", "service": "sleep"}},
            "spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"app": "sleep"}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sleep", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleep"}},
                "template": {"metadata": {"labels": {"app": "sleep"}},
                    "spec": {"terminationGracePeriodSeconds": 0, "serviceAccountName": "sleep",
                        "containers": [{"name": "sleep", "image": s.image("docker.io/curlimages/curl:8.5.0"),
                            "command": ["/bin/sleep", "infinity"], "imagePullPolicy": "IfNotPresent"}]}}}}),
    ]
}

/// The split on the client cluster between its own helloworld and every mirror.
pub fn split(s: &Settings) -> Value {
    let backends: Vec<(String, u32)> = s
        .weights
        .iter()
        .map(|(c, w)| (s.service_for(c), *w))
        .collect();
    if s.traffic_split == TrafficSplit::HttpRoute {
        json!({"apiVersion": "policy.linkerd.io/v1beta3", "kind": "HTTPRoute",
            "metadata": {"name": "helloworld", "namespace": NS},
            "spec": {
                "parentRefs": [{"name": "helloworld", "kind": "Service", "group": "core", "port": HELLO_PORT}],
                "rules": [{"backendRefs": backends.iter().map(|(svc, w)| json!({"name": svc, "port": HELLO_PORT, "weight": w})).collect::<Vec<_>>()}]}})
    } else {
        json!({"apiVersion": "split.smi-spec.io/v1alpha1", "kind": "TrafficSplit",
            "metadata": {"name": "helloworld", "namespace": NS},
            "spec": {"service": "helloworld",
                "backends": backends.iter().map(|(svc, w)| json!({"service": svc, "weight": w})).collect::<Vec<_>>()}})
    }
}

fn apply(cluster: &str, manifest: Value) -> Action {
    Action::Apply {
        cluster: cluster.into(),
        manifest,
        secret: false,
    }
}

fn plan_up(req: &StageRequest, s: &Settings, opts: &MeshSettings) -> Plan {
    let mut plan = Plan::default();
    for (i, c) in req.clusters.iter().enumerate() {
        let n = i + 1;
        plan.actions.push(apply(&c.name, namespace()));
        plan.actions
            .push(apply(&c.name, helloworld_service(c.name != s.client)));
        plan.actions
            .push(apply(&c.name, helloworld_deployment(s, n)));
        let mut deployments = vec![format!("helloworld-{}", Settings::version(n))];
        if c.name == s.client {
            for o in sleep_objects(s) {
                plan.actions.push(apply(&c.name, o));
            }
            plan.actions.push(apply(&c.name, split(s)));
            deployments.push("sleep".into());
        }
        plan.actions.push(Action::Wait {
            cluster: c.name.clone(),
            condition: WaitCondition::DeploymentsAvailable {
                namespace: NS.into(),
                names: deployments,
            },
            timeout_secs: opts.timeout_secs,
        });
    }
    let weights: Vec<String> = s
        .weights
        .iter()
        .map(|(c, w)| format!("{}={w}", s.service_for(c)))
        .collect();
    plan.notes.push(format!(
        "sleep and the {} on {}: {}",
        if s.traffic_split == TrafficSplit::HttpRoute {
            "HTTPRoute"
        } else {
            "TrafficSplit"
        },
        s.client,
        weights.join(", ")
    ));
    plan
}

/// The SMI TrafficSplit `sample/helloworld` on every cluster, which releases that split with
/// HTTPRoute replace (none asked for on releases that split with SMI).
fn smi_split_queries(req: &StageRequest, s: &Settings) -> Vec<FactQuery> {
    if s.traffic_split != TrafficSplit::HttpRoute {
        return vec![];
    }
    req.clusters
        .iter()
        .map(|c| {
            get(
                &c.name,
                "split.smi-spec.io/v1alpha1",
                "TrafficSplit",
                "helloworld",
            )
        })
        .collect()
}

/// After an upgrade from Linkerd 2.14 (SMI) to a release that splits with HTTPRoute: the
/// TrafficSplit an earlier `up` made goes once the HTTPRoute with the same weights is applied
/// (the plan's actions before this run first), so the split never lapses.
fn replace_smi_split(req: &StageRequest, s: &Settings, plan: &mut Plan) {
    for q in smi_split_queries(req, s) {
        let Some(FactAnswer::Object { object: Some(_) }) = req.fact(&q) else {
            continue;
        };
        let FactQuery::Object { cluster, .. } = &q else {
            continue;
        };
        plan.actions.push(Action::Delete {
            cluster: cluster.clone(),
            api_version: "split.smi-spec.io/v1alpha1".into(),
            kind: "TrafficSplit".into(),
            namespace: Some(NS.into()),
            name: "helloworld".into(),
        });
        plan.notes.push(format!(
            "{cluster}: the SMI TrafficSplit {NS}/helloworld is replaced by the HTTPRoute (Linkerd ≥ 2.15)"
        ));
    }
}

fn plan_down(req: &StageRequest, opts: &MeshSettings) -> Plan {
    let mut plan = Plan::default();
    for c in &req.clusters {
        plan.actions
            .extend(kpaas_mesh_kit::actions::delete_namespace(
                &c.name,
                NS,
                opts.timeout_secs,
            ));
    }
    plan
}

fn get(cluster: &str, api_version: &str, kind: &str, name: &str) -> FactQuery {
    FactQuery::Object {
        cluster: cluster.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some(NS.into()),
        name: name.into(),
    }
}

/// What `check`/`status` look at: per cluster, the Deployment and Service; on the client,
/// sleep, the split and every mirror Service.
fn observe_queries(req: &StageRequest, s: &Settings) -> Vec<FactQuery> {
    let mut q = Vec::new();
    for (i, c) in req.clusters.iter().enumerate() {
        q.push(get(
            &c.name,
            "apps/v1",
            "Deployment",
            &format!("helloworld-{}", Settings::version(i + 1)),
        ));
        q.push(get(&c.name, "v1", "Service", "helloworld"));
    }
    let split_kind = split(s);
    q.push(get(&s.client, "apps/v1", "Deployment", "sleep"));
    q.push(get(
        &s.client,
        split_kind["apiVersion"].as_str().unwrap_or(""),
        split_kind["kind"].as_str().unwrap_or(""),
        "helloworld",
    ));
    for c in &req.clusters {
        if c.name != s.client {
            q.push(get(&s.client, "v1", "Service", &s.service_for(&c.name)));
        }
    }
    q
}

fn present(req: &StageRequest, q: &FactQuery) -> Option<Value> {
    match req.fact(q) {
        Some(FactAnswer::Object { object }) => object.clone(),
        _ => None,
    }
}

fn check(
    name: &str,
    status: CheckStatus,
    detail: String,
    items: Vec<String>,
    hint: &str,
) -> CheckResult {
    Checks(CHECK_GROUP)
        .row(name, status)
        .detail(detail)
        .items(items)
        .hint(hint)
}

fn observe(req: &StageRequest, s: &Settings) -> Plan {
    let mut plan = Plan::default();
    let mut table = Table {
        title: "sample".into(),
        columns: ["CLUSTER", "OBJECT", "STATE"].map(String::from).to_vec(),
        rows: vec![],
    };
    let mut missing = Vec::new();
    for q in observe_queries(req, s) {
        let FactQuery::Object {
            cluster,
            kind,
            name,
            ..
        } = &q
        else {
            continue;
        };
        let obj = present(req, &q);
        let is_mirror = kind == "Service" && name.starts_with("helloworld-");
        let state = match &obj {
            None => "missing".to_string(),
            Some(o) if kind == "Deployment" => {
                if o["status"]["availableReplicas"].as_u64().unwrap_or(0) > 0 {
                    "available".into()
                } else {
                    "not available".into()
                }
            }
            Some(_) => "present".into(),
        };
        table.rows.push(vec![
            cluster.clone(),
            format!("{kind}/{name}"),
            state.clone(),
        ]);
        if obj.is_none() && !is_mirror {
            missing.push(format!("{cluster}: {kind} {NS}/{name}"));
        }
    }
    plan.checks.push(if missing.is_empty() {
        check(
            "sample objects are in place",
            CheckStatus::Ok,
            String::new(),
            req.clusters.iter().map(|c| c.name.clone()).collect(),
            "",
        )
    } else {
        check(
            "sample objects are in place",
            CheckStatus::Fail,
            format!("missing: {}", missing.join(", ")),
            vec![],
            "kubectl kpaas-mesh up --only sample",
        )
    });
    let mirrors: Vec<String> = req
        .clusters
        .iter()
        .filter(|c| c.name != s.client)
        .map(|c| s.service_for(&c.name))
        .filter(|m| present(req, &get(&s.client, "v1", "Service", m)).is_none())
        .collect();
    plan.checks.push(if mirrors.is_empty() {
        check("the client cluster has every mirror service", CheckStatus::Ok, String::new(), vec![], "")
    } else {
        check(
            "the client cluster has every mirror service",
            CheckStatus::Warn,
            format!(
                "{} missing on {}: mirror services are made by the service mirror (data plane); without it the split has nothing to send remote traffic to",
                mirrors.join(", "),
                s.client
            ),
            vec![],
            "kubectl kpaas-mesh check --only multicluster",
        )
    });
    if req.operation == Operation::Status {
        plan.tables.push(table);
    }
    plan
}

/// `verify`: run the requests from sleep and judge the split.
fn plan_verify(req: &StageRequest, s: &Settings, v: &Value) -> Result<StageResponse, String> {
    let requests = v["requests"].as_u64().unwrap_or(100).clamp(1, 100_000) as u32;
    let max_errors = v["max_errors"].as_u64().unwrap_or(0) as u32;
    let from = v["from"].as_str().unwrap_or(&s.client).to_string();
    if !req.clusters.iter().any(|c| c.name == from) {
        return Err(format!("--from {from}: not one of the clusters"));
    }
    let url = format!("http://helloworld.{NS}.svc:{HELLO_PORT}/hello");
    let q = FactQuery::Exec {
        cluster: from.clone(),
        namespace: NS.into(),
        label_selector: "app=sleep".into(),
        container: "sleep".into(),
        command: verify::command(&url, requests),
    };
    let (pod, stdout) = match req.fact(&q) {
        None => return Ok(StageResponse::NeedFacts { queries: vec![q] }),
        Some(FactAnswer::Exec {
            pod,
            stdout,
            stderr,
            exit_code,
        }) => {
            if stdout.trim().is_empty() && exit_code != &Some(0) {
                let why = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output");
                return Err(format!(
                    "verify: the requests did not run in {from}'s {NS}/{pod} (exit {}): {why}",
                    exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "unknown".into())
                ));
            }
            (pod.clone(), stdout.clone())
        }
        Some(FactAnswer::Error { message }) => {
            return Err(format!(
                "verify: {message} (is the sample deployed? kubectl kpaas-mesh up --only sample)"
            ));
        }
        Some(other) => return Err(format!("verify: unexpected answer {other:?}")),
    };
    let expected: Vec<verify::Expected> = req
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| verify::Expected {
            version: Settings::version(i + 1),
            cluster: c.name.clone(),
            service: s.service_for(&c.name),
            weight: s
                .weights
                .iter()
                .find(|(n, _)| n == &c.name)
                .map(|(_, w)| *w)
                .unwrap_or(0),
        })
        .collect();
    let verdict = verify::judge(&verify::parse(&stdout), &expected, requests, max_errors);
    let mut table = Table {
        title: format!("{requests} requests from {from} ({NS}/{pod}) to {url}"),
        columns: [
            "VERSION", "CLUSTER", "INSTANCE", "COUNT", "SHARE", "EXPECTED", "RESULT",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    for b in &verdict.backends {
        table.rows.push(vec![
            b.version.clone(),
            b.cluster.clone(),
            if b.instances.is_empty() {
                "-".into()
            } else {
                b.instances.join(",")
            },
            b.count.to_string(),
            format!("{:.1}%", b.share * 100.0),
            format!(
                "{:.1}% ({:.1}–{:.1})",
                b.expected * 100.0,
                b.low * 100.0,
                b.high * 100.0
            ),
            if b.ok { "ok".into() } else { "FAIL".into() },
        ]);
    }
    for (label, n) in [
        ("non-2xx", verdict.non_2xx),
        ("timeout", verdict.timeouts),
        ("connection error", verdict.curl_errors),
        ("unreadable", verdict.unparsable),
    ] {
        table.rows.push(vec![
            label.into(),
            "-".into(),
            "-".into(),
            n.to_string(),
            format!("{:.1}%", f64::from(n) * 100.0 / f64::from(requests)),
            "0".into(),
            if n == 0 {
                "ok".into()
            } else {
                "counted".into()
            },
        ]);
    }
    let plan = Plan {
        tables: vec![table],
        checks: vec![check(
            &format!(
                "traffic from {from} is split across the clusters as weighted (99.9% interval)"
            ),
            if verdict.passed {
                CheckStatus::Ok
            } else {
                CheckStatus::Fail
            },
            verdict.reasons.join("; "),
            verdict
                .backends
                .iter()
                .map(|b| {
                    format!(
                        "{} {}: {}/{}",
                        b.cluster, b.version, b.count, verdict.answered
                    )
                })
                .collect(),
            "",
        )],
        outputs: serde_json::to_value(&verdict).map_err(|e| e.to_string())?,
        ..Plan::default()
    };
    Ok(StageResponse::Plan(plan))
}

impl StagePlugin for Sample {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let opts: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("sample: invalid options ({e})"))?;
        let s = Settings::from(&req, &opts)?;
        let plan = match req.operation {
            Operation::Up => {
                let q = smi_split_queries(&req, &s);
                let missing = req.missing(q);
                if !missing.is_empty() {
                    return Ok(StageResponse::NeedFacts { queries: missing });
                }
                let mut plan = plan_up(&req, &s, &opts);
                replace_smi_split(&req, &s, &mut plan);
                plan
            }
            Operation::Down => plan_down(&req, &opts),
            Operation::Check if opts.verify.is_some() => {
                return Ok(plan_verify(
                    &req,
                    &s,
                    opts.verify.as_ref().unwrap_or(&Value::Null),
                )?);
            }
            Operation::Status | Operation::Check => {
                let missing = req.missing(observe_queries(&req, &s));
                if !missing.is_empty() {
                    return Ok(StageResponse::NeedFacts { queries: missing });
                }
                observe(&req, &s)
            }
            Operation::Link | Operation::Unlink => Plan::default(),
        };
        Ok(StageResponse::Plan(plan))
    }
}

#[cfg(test)]
mod tests;
