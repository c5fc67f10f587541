//! A fake world for plugin tests (feature `testkit`): objects per cluster as the API server
//! returns them, helm releases, files, server versions, exec and remote-access answers, all
//! answered the way the host answers a [`FactQuery`] (absent → the host's "not found" answer),
//! and [`converse`], which runs a plugin's NeedFacts conversation exactly as the host's
//! `pipeline::plan_stage` does, through the JSON entry point. No cluster, no network.

use kpaas_mesh_plugin_api::export::call_json;
use kpaas_mesh_plugin_api::{
    ClusterRef, Fact, FactAnswer, FactQuery, HelmReleaseInfo, Operation, Plan, StagePlugin,
    StageRequest, StageResponse,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How many rounds of fact queries the host answers before it gives up (the host's
/// `MAX_FACT_ROUNDS`).
pub const MAX_ROUNDS: usize = 16;

/// `cluster1` … `clusterN`, with contexts `ctx1` … `ctxN`.
pub fn clusters(n: usize) -> Vec<ClusterRef> {
    (1..=n)
        .map(|i| ClusterRef {
            name: format!("cluster{i}"),
            context: format!("ctx{i}"),
        })
        .collect()
}

/// A request for `op` on `cluster1..N` with the default [`crate::MeshSettings`].
pub fn request(op: Operation, n: usize) -> StageRequest {
    let mut r = StageRequest::new(op, clusters(n));
    r.settings = serde_json::to_value(crate::MeshSettings::default()).unwrap_or_default();
    r
}

/// A deployed helm release as helm reports it (revision 1, status `deployed`).
pub fn deployed(chart: &str, chart_version: &str, app_version: &str) -> HelmReleaseInfo {
    HelmReleaseInfo {
        chart: chart.into(),
        chart_version: chart_version.into(),
        app_version: app_version.into(),
        revision: 1,
        status: "deployed".into(),
    }
}

/// What the host would find. Build it with the `with_*` / `add_*` methods; answer queries with
/// [`World::answer`].
#[derive(Clone, Default)]
pub struct World {
    rule: Option<Rule>,
    objects: BTreeMap<String, Vec<Value>>,
    releases: BTreeMap<(String, String, String), HelmReleaseInfo>,
    files: BTreeMap<String, (String, Option<u32>)>,
    disk: bool,
    server_versions: BTreeMap<String, String>,
    kubeconfig_clusters: BTreeMap<String, (String, Value)>,
    exec: Vec<(FactQuery, FactAnswer)>,
    remote_access: Vec<(FactQuery, FactAnswer)>,
    pod_http: Vec<(FactQuery, FactAnswer)>,
    fixed: Vec<(FactQuery, FactAnswer)>,
    unreachable: BTreeSet<String>,
}

/// A test's own answers, asked before the world's data.
type Rule = Arc<dyn Fn(&FactQuery) -> Option<FactAnswer> + Send + Sync>;

impl World {
    pub fn new() -> Self {
        World::default()
    }

    /// A world whose answers come from `answer` (a test's scenario function), asked before
    /// anything added with the other methods; `None` falls through to them.
    pub fn from_fn(
        answer: impl Fn(&FactQuery) -> Option<FactAnswer> + Send + Sync + 'static,
    ) -> Self {
        World {
            rule: Some(Arc::new(answer)),
            ..World::default()
        }
    }

    /// Adds an object to `cluster`; it must carry `apiVersion`, `kind` and `metadata.name`
    /// (and `metadata.namespace` when namespaced), as the API server returns it.
    pub fn add(&mut self, cluster: &str, object: Value) -> &mut Self {
        self.objects
            .entry(cluster.to_string())
            .or_default()
            .push(object);
        self
    }

    /// Adds `body` (any JSON object, e.g. just `{"data": …}`) as the object `kind` `name`,
    /// filling in `apiVersion`, `kind` and `metadata.name` / `metadata.namespace`.
    pub fn add_object(
        &mut self,
        cluster: &str,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        body: Value,
    ) -> &mut Self {
        let mut object = match body {
            Value::Object(m) => Value::Object(m),
            _ => json!({}),
        };
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["name"] = json!(name);
        if let Some(ns) = namespace {
            object["metadata"]["namespace"] = json!(ns);
        }
        self.add(cluster, object)
    }

    /// Adds a deployed helm release.
    pub fn add_release(
        &mut self,
        cluster: &str,
        namespace: &str,
        release: &str,
        info: HelmReleaseInfo,
    ) -> &mut Self {
        self.releases
            .insert((cluster.into(), namespace.into(), release.into()), info);
        self
    }

    /// Adds a local file.
    pub fn add_file(&mut self, path: &str, contents: &str, mode: Option<u32>) -> &mut Self {
        self.files.insert(path.into(), (contents.into(), mode));
        self
    }

    /// Answers file queries the world has no file for from the local disk, as the host does.
    pub fn with_disk(mut self) -> Self {
        self.disk = true;
        self
    }

    pub fn add_server_version(&mut self, cluster: &str, git_version: &str) -> &mut Self {
        self.server_versions
            .insert(cluster.into(), git_version.into());
        self
    }

    /// The kubeconfig `cluster` entry of `cluster`'s context.
    pub fn add_kubeconfig_cluster(&mut self, cluster: &str, name: &str, entry: Value) -> &mut Self {
        self.kubeconfig_clusters
            .insert(cluster.into(), (name.into(), entry));
        self
    }

    /// What an exec query (matched exactly) answers.
    pub fn add_exec(&mut self, query: FactQuery, answer: FactAnswer) -> &mut Self {
        self.exec.push((query, answer));
        self
    }

    /// What a remote-access query (matched exactly) answers.
    pub fn add_remote_access(&mut self, query: FactQuery, answer: FactAnswer) -> &mut Self {
        self.remote_access.push((query, answer));
        self
    }

    /// What a pod's HTTP endpoint answers for a [`FactQuery::PodHttp`] (matched exactly).
    pub fn add_pod_http(&mut self, query: FactQuery, status: u16, body: &str) -> &mut Self {
        self.pod_http.push((
            query,
            FactAnswer::PodHttp {
                status,
                body: body.into(),
            },
        ));
        self
    }

    /// Answers `query` with `answer` whatever else the world holds (e.g. an Error answer).
    pub fn fix(&mut self, query: FactQuery, answer: FactAnswer) -> &mut Self {
        self.fixed.push((query, answer));
        self
    }

    /// Every query about `cluster` gets an Error answer, as for an unreachable API server.
    pub fn unreachable(&mut self, cluster: &str) -> &mut Self {
        self.unreachable.insert(cluster.into());
        self
    }

    /// The objects of `cluster`.
    pub fn objects(&self, cluster: &str) -> &[Value] {
        self.objects.get(cluster).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The host's answer to `query`.
    pub fn answer(&self, query: &FactQuery) -> FactAnswer {
        if let Some(a) = self.rule.as_ref().and_then(|rule| rule(query)) {
            return a;
        }
        if let Some((_, a)) = self.fixed.iter().find(|(q, _)| q == query) {
            return a.clone();
        }
        if let Some(cluster) = cluster_of(query)
            && self.unreachable.contains(cluster)
        {
            return FactAnswer::Error {
                message: format!("cluster {cluster}: connection refused"),
            };
        }
        match query {
            FactQuery::File { path } => self.file(path),
            FactQuery::Object {
                cluster,
                api_version,
                kind,
                namespace,
                name,
            } => FactAnswer::Object {
                object: self
                    .objects(cluster)
                    .iter()
                    .find(|o| {
                        is(o, api_version, kind)
                            && o["metadata"]["name"] == name.as_str()
                            && o["metadata"]["namespace"].as_str() == namespace.as_deref()
                    })
                    .cloned(),
            },
            FactQuery::Objects {
                cluster,
                api_version,
                kind,
                namespace,
                label_selector,
            } => {
                let selector = match label_selector.as_deref().map(Selector::parse) {
                    Some(Err(message)) => return FactAnswer::Error { message },
                    Some(Ok(s)) => Some(s),
                    None => None,
                };
                FactAnswer::Objects {
                    items: self
                        .objects(cluster)
                        .iter()
                        .filter(|o| is(o, api_version, kind))
                        .filter(|o| {
                            namespace.is_none()
                                || o["metadata"]["namespace"].as_str() == namespace.as_deref()
                        })
                        .filter(|o| selector.as_ref().is_none_or(|s| s.matches(o)))
                        .cloned()
                        .collect(),
                }
            }
            FactQuery::HelmRelease {
                cluster,
                namespace,
                release,
            } => FactAnswer::HelmRelease {
                release: self
                    .releases
                    .get(&(cluster.clone(), namespace.clone(), release.clone()))
                    .cloned(),
            },
            FactQuery::ServerVersion { cluster } => match self.server_versions.get(cluster) {
                Some(v) => FactAnswer::ServerVersion {
                    git_version: v.clone(),
                },
                None => FactAnswer::Error {
                    message: format!(
                        "cluster {cluster}: /version: no server version in this world"
                    ),
                },
            },
            FactQuery::KubeconfigCluster { cluster } => {
                match self.kubeconfig_clusters.get(cluster) {
                    Some((name, entry)) => FactAnswer::KubeconfigCluster {
                        name: name.clone(),
                        cluster: entry.clone(),
                    },
                    None => FactAnswer::Error {
                        message: format!("cluster {cluster}: no kubeconfig cluster entry"),
                    },
                }
            }
            FactQuery::Exec {
                cluster,
                namespace,
                label_selector,
                ..
            } => match self.exec.iter().find(|(q, _)| q == query) {
                Some((_, a)) => a.clone(),
                None => FactAnswer::Error {
                    message: format!(
                        "cluster {cluster}: no Running pod {label_selector} in namespace {namespace}"
                    ),
                },
            },
            FactQuery::RemoteAccess {
                cluster,
                namespace,
                secret,
                ..
            } => match self.remote_access.iter().find(|(q, _)| q == query) {
                Some((_, a)) => a.clone(),
                None => FactAnswer::RemoteAccess {
                    server_version: None,
                    error: Some(format!(
                        "secret {namespace}/{secret} not found on {cluster}"
                    )),
                },
            },
            FactQuery::PodHttp {
                cluster,
                namespace,
                pod,
                port,
                path,
            } => match self.pod_http.iter().find(|(q, _)| q == query) {
                Some((_, a)) => a.clone(),
                None => FactAnswer::PodHttp {
                    status: 503,
                    body: format!(
                        "cluster {cluster}: pod {namespace}/{pod} does not answer on {port}{path}"
                    ),
                },
            },
        }
    }

    fn file(&self, path: &str) -> FactAnswer {
        if let Some((contents, mode)) = self.files.get(path) {
            return FactAnswer::File {
                contents: Some(contents.clone()),
                mode: *mode,
            };
        }
        if !self.disk {
            return FactAnswer::File {
                contents: None,
                mode: None,
            };
        }
        crate::files::read_file(path)
    }
}

fn cluster_of(query: &FactQuery) -> Option<&str> {
    match query {
        FactQuery::File { .. } => None,
        FactQuery::Object { cluster, .. }
        | FactQuery::Objects { cluster, .. }
        | FactQuery::HelmRelease { cluster, .. }
        | FactQuery::ServerVersion { cluster }
        | FactQuery::KubeconfigCluster { cluster }
        | FactQuery::Exec { cluster, .. }
        | FactQuery::RemoteAccess { cluster, .. }
        | FactQuery::PodHttp { cluster, .. } => Some(cluster),
    }
}

fn is(object: &Value, api_version: &str, kind: &str) -> bool {
    object["apiVersion"] == api_version && object["kind"] == kind
}

/// A Kubernetes label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
struct Selector(Vec<Requirement>);

enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let bad = || format!("invalid label selector {text:?}");
        let set = |s: &str| -> Result<Vec<String>, String> {
            let s = s.trim();
            let inner = s
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(bad)?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let mut reqs = Vec::new();
        for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else if part.contains(char::is_whitespace) {
                return Err(bad());
            } else {
                Requirement::Exists(part.into())
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let get = |k: &str| labels[k].as_str();
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::Ne(k, v) => get(k) != Some(v.as_str()),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
        })
    }
}

/// One call through the JSON entry point the host uses.
pub fn call(plugin: &impl StagePlugin, request: &StageRequest) -> Result<StageResponse, String> {
    let json =
        serde_json::to_string(request).map_err(|e| format!("cannot encode the request: {e}"))?;
    let reply = call_json(plugin, &json)?;
    serde_json::from_str(&reply).map_err(|e| format!("the plugin sent an unreadable response: {e}"))
}

/// Runs the conversation the host has with `plugin`: calls it, answers every query it asks
/// from `world`, calls it again, until it returns a plan. Refuses, like the host, an empty
/// query list, a query asked again, and more than [`MAX_ROUNDS`] rounds. A plugin error is
/// returned as its message.
pub fn converse(
    plugin: &impl StagePlugin,
    request: StageRequest,
    world: &World,
) -> Result<Plan, String> {
    converse_facts(plugin, request, world).map(|(plan, _)| plan)
}

/// [`converse`], also returning every fact the host gave (in the order asked).
pub fn converse_facts(
    plugin: &impl StagePlugin,
    mut request: StageRequest,
    world: &World,
) -> Result<(Plan, Vec<Fact>), String> {
    let given = request.facts.len();
    for _round in 0..=MAX_ROUNDS {
        match call(plugin, &request)? {
            StageResponse::Plan(plan) => return Ok((plan, request.facts.split_off(given))),
            StageResponse::NeedFacts { queries } => {
                if queries.is_empty() {
                    return Err("the plugin asked for facts but named none".into());
                }
                for query in queries {
                    if request.fact(&query).is_some() {
                        return Err(format!(
                            "the plugin asked again for a fact it already has: {query:?}"
                        ));
                    }
                    let answer = world.answer(&query);
                    request.facts.push(Fact { query, answer });
                }
            }
        }
    }
    Err(format!(
        "the plugin kept asking for facts ({MAX_ROUNDS} rounds); giving up"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_plugin_api::PluginError;

    fn objects(cluster: &str, kind: &str, ns: Option<&str>, sel: Option<&str>) -> FactQuery {
        FactQuery::Objects {
            cluster: cluster.into(),
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(String::from),
            label_selector: sel.map(String::from),
        }
    }

    fn world() -> World {
        let mut w = World::new();
        w.add_object(
            "c1",
            "v1",
            "Pod",
            Some("a"),
            "p1",
            json!({"metadata": {"labels": {"app": "x", "tier": "web"}}}),
        )
        .add_object(
            "c1",
            "v1",
            "Pod",
            Some("b"),
            "p2",
            json!({"metadata": {"labels": {"app": "y"}}}),
        )
        .add_object("c1", "v1", "Node", None, "n1", json!({}));
        w
    }

    fn names(a: FactAnswer) -> Vec<String> {
        let FactAnswer::Objects { items } = a else {
            panic!("{a:?}")
        };
        items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn objects_are_found_by_namespace_and_selector() {
        let w = world();
        assert_eq!(
            names(w.answer(&objects("c1", "Pod", None, None))),
            ["p1", "p2"]
        );
        assert_eq!(
            names(w.answer(&objects("c1", "Pod", Some("b"), None))),
            ["p2"]
        );
        for (sel, want) in [
            ("app=x", vec!["p1"]),
            ("app==y", vec!["p2"]),
            ("app!=x", vec!["p2"]),
            ("tier", vec!["p1"]),
            ("!tier", vec!["p2"]),
            ("app in (x, y),tier", vec!["p1"]),
            ("app notin (x)", vec!["p2"]),
        ] {
            assert_eq!(
                names(w.answer(&objects("c1", "Pod", None, Some(sel)))),
                want,
                "{sel}"
            );
        }
        assert!(names(w.answer(&objects("c2", "Pod", None, None))).is_empty());
        let one = |ns: Option<&str>, name: &str| FactQuery::Object {
            cluster: "c1".into(),
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: ns.map(String::from),
            name: name.into(),
        };
        assert!(matches!(
            w.answer(&one(None, "n1")),
            FactAnswer::Object { object: Some(_) }
        ));
        assert_eq!(
            w.answer(&one(None, "n2")),
            FactAnswer::Object { object: None }
        );
        assert_eq!(
            w.answer(&one(Some("a"), "n1")),
            FactAnswer::Object { object: None }
        );
    }

    #[test]
    fn absent_things_read_as_the_host_says_them() {
        let mut w = world();
        w.unreachable("c9");
        assert_eq!(
            w.answer(&FactQuery::File {
                path: "/nope".into()
            }),
            FactAnswer::File {
                contents: None,
                mode: None
            }
        );
        assert_eq!(
            w.answer(&FactQuery::HelmRelease {
                cluster: "c1".into(),
                namespace: "linkerd".into(),
                release: "r".into()
            }),
            FactAnswer::HelmRelease { release: None }
        );
        assert!(matches!(
            w.answer(&objects("c9", "Pod", None, None)),
            FactAnswer::Error { .. }
        ));
        assert!(matches!(
            w.answer(&FactQuery::ServerVersion {
                cluster: "c1".into()
            }),
            FactAnswer::Error { .. }
        ));
    }

    /// Asks for one file per round, then plans; or asks twice for the same file.
    struct Asker {
        repeat: bool,
    }

    impl StagePlugin for Asker {
        fn run(&self, r: StageRequest) -> Result<StageResponse, PluginError> {
            let q = |p: &str| FactQuery::File { path: p.into() };
            if self.repeat && !r.facts.is_empty() {
                return Ok(StageResponse::NeedFacts {
                    queries: vec![q("/a")],
                });
            }
            for p in ["/a", "/b"] {
                if r.fact(&q(p)).is_none() {
                    return Ok(StageResponse::NeedFacts {
                        queries: vec![q(p)],
                    });
                }
            }
            Ok(StageResponse::Plan(Plan {
                notes: vec![format!("{} facts", r.facts.len())],
                ..Plan::default()
            }))
        }
    }

    #[test]
    fn converse_runs_the_host_loop() {
        let mut w = World::new();
        w.add_file("/a", "A", Some(0o600));
        let r = request(Operation::Up, 2);
        let (plan, facts) = converse_facts(&Asker { repeat: false }, r.clone(), &w).unwrap();
        assert_eq!(plan.notes, ["2 facts"]);
        assert_eq!(facts.len(), 2);
        let err = converse(&Asker { repeat: true }, r, &w).unwrap_err();
        assert!(err.contains("asked again"), "{err}");
    }
}
