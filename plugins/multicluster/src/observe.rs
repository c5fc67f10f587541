//! `status` and `check` of the multicluster stage: every link's state, and the checks of
//! `linkerd multicluster check` (in its order) plus kpaas-mesh's full-mesh check. Checks
//! that need a running data plane say so instead of passing.

use crate::link::Layout;
use crate::{RELEASE, pairs};
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::linkerd::{LINKERD_NS, LinkerdRelease, MULTICLUSTER_NS};
use kpaas_mesh_plugin_api::{
    CheckResult, CheckStatus, FactAnswer, FactQuery, Operation, Plan, StageRequest, StageResponse,
    Table,
};
use serde_json::Value;

use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_kit::facts::object_query;

pub const GROUP: &str = "linkerd-multicluster";

fn mirrors_query(c: &str) -> FactQuery {
    FactQuery::Objects {
        cluster: c.into(),
        api_version: "v1".into(),
        kind: "Service".into(),
        namespace: None,
        label_selector: Some("mirror.linkerd.io/mirrored-service=true".into()),
    }
}

fn crd_query(c: &str) -> FactQuery {
    object_query(
        c,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "links.multicluster.linkerd.io",
    )
}

fn roots_query(c: &str) -> FactQuery {
    object_query(
        c,
        "v1",
        "ConfigMap",
        Some(LINKERD_NS),
        "linkerd-identity-trust-roots",
    )
}

pub fn release_query(c: &str) -> FactQuery {
    FactQuery::HelmRelease {
        cluster: c.into(),
        namespace: MULTICLUSTER_NS.into(),
        release: RELEASE.into(),
    }
}

/// The request seen through the release it is about: which Link version to read and what
/// each link's objects are called ([`Layout`]).
pub struct View<'a> {
    pub req: &'a StageRequest,
    pub rel: &'static LinkerdRelease,
    pub layout: Layout,
}

impl std::ops::Deref for View<'_> {
    type Target = StageRequest;
    fn deref(&self) -> &StageRequest {
        self.req
    }
}

impl View<'_> {
    /// The 2.14-style per-link service mirror Deployment, which ≥ 2.18 must not have.
    fn legacy_deployment_query(&self, s: &str, t: &str) -> FactQuery {
        object_query(
            s,
            "apps/v1",
            "Deployment",
            Some(MULTICLUSTER_NS),
            &Layout::LEGACY.deployment(t),
        )
    }

    fn links_query(&self, c: &str) -> FactQuery {
        crate::links_query(c, &self.rel.link_api)
    }

    /// Facts about one link (source s → target t).
    fn link_queries(&self, s: &str, t: &str) -> Vec<FactQuery> {
        let l = self.layout;
        vec![
            FactQuery::RemoteAccess {
                cluster: s.into(),
                namespace: MULTICLUSTER_NS.into(),
                secret: format!("cluster-credentials-{t}"),
                key: "kubeconfig".into(),
            },
            object_query(
                s,
                "apps/v1",
                "Deployment",
                Some(MULTICLUSTER_NS),
                &l.deployment(t),
            ),
            object_query(
                s,
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                &l.cluster_role(t),
            ),
            object_query(
                s,
                "rbac.authorization.k8s.io/v1",
                "Role",
                Some(MULTICLUSTER_NS),
                &l.role(t),
            ),
            object_query(
                s,
                "coordination.k8s.io/v1",
                "Lease",
                Some(MULTICLUSTER_NS),
                &format!("service-mirror-write-{t}"),
            ),
            object_query(
                s,
                "v1",
                "Endpoints",
                Some(MULTICLUSTER_NS),
                &l.probe_service(t),
            ),
        ]
    }
}

/// The admin port of the service mirror's container (`admin-http` in Linkerd's link chart),
/// read from the link's Deployment.
fn admin_port(deployment: &Value) -> Option<u16> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .find(|p| p["name"] == "admin-http" || p["name"] == "ctrl-admin")
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

/// The metrics page of the service mirror that holds link s → t's lease, when there is a
/// holder and its Deployment names an admin port.
fn metrics_query(req: &View, s: &str, t: &str) -> Option<FactQuery> {
    let q = req.link_queries(s, t);
    let holder = found(req, &q[4])?["spec"]["holderIdentity"]
        .as_str()?
        .to_string();
    let port = admin_port(&found(req, &q[1])?)?;
    Some(FactQuery::PodHttp {
        cluster: s.into(),
        namespace: MULTICLUSTER_NS.into(),
        pod: holder,
        port,
        path: "/metrics".into(),
    })
}

/// The sum of the samples of `metric{…target_cluster_name="t"…}` in a Prometheus text page
/// (`None` when there is none).
fn sample(page: &str, metric: &str, target: &str) -> Option<f64> {
    let label = format!("target_cluster_name=\"{target}\"");
    let open = format!("{metric}{{");
    let values: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with(&open) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// What the lease holder's probe worker says of a link's gateway.
#[derive(Debug, PartialEq)]
enum Probe {
    /// `gateway_alive` 1.
    Alive,
    /// `gateway_alive` 0 after at least one probe.
    Dead,
    /// `gateway_alive` 0 and no probe made yet (a probe worker that just started).
    NotYet,
}

/// What the lease holder's metrics say of link s → t's gateway: `Ok(None)` when there is no
/// metric to read, `Err` when the page could not be read.
fn probe_metric(req: &View, s: &str, t: &str) -> Result<Option<Probe>, String> {
    let Some(q) = metrics_query(req, s, t) else {
        return Ok(None);
    };
    match req.fact(&q) {
        Some(FactAnswer::PodHttp { status: 200, body }) => {
            let probes = sample(body, "gateway_probes", t)
                .or_else(|| sample(body, "gateway_probes_total", t))
                .unwrap_or(0.0);
            Ok(sample(body, "gateway_alive", t).map(|v| match v {
                1.0 => Probe::Alive,
                _ if probes > 0.0 => Probe::Dead,
                _ => Probe::NotYet,
            }))
        }
        Some(FactAnswer::PodHttp { status, .. }) => Err(format!(
            "the service mirror's metrics answered HTTP {status}"
        )),
        Some(FactAnswer::Error { message }) => Err(message.clone()),
        _ => Ok(None),
    }
}

fn mirror_endpoints_query(c: &str, svc: &Value) -> FactQuery {
    object_query(
        c,
        "v1",
        "Endpoints",
        svc["metadata"]["namespace"].as_str(),
        svc["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

fn found(req: &StageRequest, q: &FactQuery) -> Option<Value> {
    match req.fact(q) {
        Some(FactAnswer::Object { object }) => object.clone(),
        _ => None,
    }
}

fn items(req: &StageRequest, q: &FactQuery) -> Vec<Value> {
    match req.fact(q) {
        Some(FactAnswer::Objects { items }) => items.clone(),
        _ => vec![],
    }
}

fn result(
    name: &str,
    status: CheckStatus,
    detail: String,
    items: Vec<String>,
    hint: &str,
) -> CheckResult {
    Checks(GROUP)
        .row(name, status)
        .detail(detail)
        .items(items)
        .hint(hint)
}

/// One check over many items: Ok with the items when nothing is wrong, else the worst
/// status with the problems as detail.
fn combine(
    name: &str,
    oks: Vec<String>,
    problems: Vec<(CheckStatus, String)>,
    hint: &str,
) -> CheckResult {
    match problems.iter().map(|(s, _)| *s).max() {
        None => result(name, CheckStatus::Ok, String::new(), oks, ""),
        Some(worst) => result(
            name,
            worst,
            problems
                .into_iter()
                .map(|(_, p)| p)
                .collect::<Vec<_>>()
                .join("; "),
            oks,
            hint,
        ),
    }
}

pub fn run(req: &StageRequest, opts: &MeshSettings) -> Result<StageResponse, String> {
    let rel = kpaas_mesh_kit::linkerd::release(&opts.linkerd_version)?;
    let req = &View {
        req,
        rel,
        layout: Layout::of(rel),
    };
    let mut queries = Vec::new();
    for c in &req.clusters {
        queries.extend([
            crd_query(&c.name),
            req.links_query(&c.name),
            mirrors_query(&c.name),
            roots_query(&c.name),
            release_query(&c.name),
        ]);
    }
    for (s, t) in pairs(&req.clusters) {
        queries.extend(req.link_queries(&s.name, &t.name));
        if req.layout.style == kpaas_mesh_kit::linkerd::LinkStyle::LinkGen {
            queries.push(req.legacy_deployment_query(&s.name, &t.name));
        }
    }
    let missing = req.missing(queries);
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    // Second round: the Endpoints of every mirror Service found.
    let endpoints: Vec<FactQuery> = req
        .clusters
        .iter()
        .flat_map(|c| {
            items(req, &mirrors_query(&c.name))
                .into_iter()
                .map(move |m| mirror_endpoints_query(&c.name, &m))
        })
        .collect();
    let missing = req.missing(endpoints);
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    // Third round (check): the metrics of each link's lease holder, the service mirror replica
    // that runs the gateway probe (what `linkerd multicluster check` reads).
    if req.operation == Operation::Check {
        let metrics: Vec<FactQuery> = pairs(&req.clusters)
            .iter()
            .filter_map(|(s, t)| metrics_query(req, &s.name, &t.name))
            .collect();
        let missing = req.missing(metrics);
        if !missing.is_empty() {
            return Ok(StageResponse::NeedFacts { queries: missing });
        }
    }
    let plan = if req.operation == Operation::Status {
        status(req)
    } else {
        check(req)
    };
    Ok(StageResponse::Plan(plan))
}

fn link_of<'a>(links: &'a [Value], target: &str) -> Option<&'a Value> {
    links.iter().find(|l| l["metadata"]["name"] == target)
}

fn deployment_available(d: &Value) -> bool {
    d["status"]["availableReplicas"].as_u64().unwrap_or(0) >= 1
}

fn status(req: &View) -> Plan {
    let releases = kpaas_mesh_kit::tables::release_table(
        "multicluster extension",
        RELEASE,
        req,
        &req.clusters,
        release_query,
    );
    let mut links = Table {
        title: "links".into(),
        columns: [
            "SOURCE",
            "TARGET",
            "GATEWAY",
            "PORT",
            "SERVICE MIRROR",
            "MIRRORED SERVICES",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    for (s, t) in pairs(&req.clusters) {
        let all = items(req, &req.links_query(&s.name));
        let Some(l) = link_of(&all, &t.name) else {
            links.rows.push(vec![
                s.name.clone(),
                t.name.clone(),
                "-".into(),
                "-".into(),
                "not linked".into(),
                "-".into(),
            ]);
            continue;
        };
        let sm = found(req, &req.link_queries(&s.name, &t.name)[1]);
        let mirrors = items(req, &mirrors_query(&s.name))
            .iter()
            .filter(|m| {
                m["metadata"]["labels"]["mirror.linkerd.io/cluster-name"] == t.name.as_str()
            })
            .count();
        links.rows.push(vec![
            s.name.clone(),
            t.name.clone(),
            l["spec"]["gatewayAddress"].as_str().unwrap_or("-").into(),
            l["spec"]["gatewayPort"].as_str().unwrap_or("-").into(),
            match sm {
                Some(d) if deployment_available(&d) => "available".into(),
                Some(_) => "not available".into(),
                None => "missing".into(),
            },
            mirrors.to_string(),
        ]);
    }
    Plan {
        tables: vec![releases, links],
        ..Plan::default()
    }
}

/// The verbs of `verbs` that no rule of `role` grants on `group`/`resource` (a `*` grants all).
fn missing_verbs<'a>(role: &Value, group: &str, resource: &str, verbs: &[&'a str]) -> Vec<&'a str> {
    let rules = role["rules"].as_array().cloned().unwrap_or_default();
    let has = |r: &Value, field: &str, v: &str| {
        r[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == v || x == "*"))
    };
    verbs
        .iter()
        .copied()
        .filter(|v| {
            !rules.iter().any(|r| {
                has(r, "apiGroups", group) && has(r, "resources", resource) && has(r, "verbs", v)
            })
        })
        .collect()
}

/// What the service mirror of link s → t needs and lacks: "ClusterRole X lacks create on
/// services" per object (the rules of Linkerd's link chart).
fn rbac_problems(req: &View, s: &str, t: &str) -> Vec<String> {
    const RW: &[&str] = &["list", "get", "watch", "create", "delete", "update"];
    let q = req.link_queries(s, t);
    type Rules<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];
    let needs: [(&FactQuery, &str, Rules); 2] = [
        (
            &q[2],
            "ClusterRole",
            &[
                ("", "services", RW),
                ("", "endpoints", RW),
                ("", "namespaces", &["list", "get", "watch"]),
            ],
        ),
        (
            &q[3],
            "Role",
            &[
                ("", "secrets", &["list", "get", "watch"]),
                (
                    "multicluster.linkerd.io",
                    "links",
                    &["list", "get", "watch"],
                ),
                (
                    "coordination.k8s.io",
                    "leases",
                    &["create", "get", "update", "patch"],
                ),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (query, kind, rules) in needs {
        let name = match query {
            FactQuery::Object { name, .. } => name.as_str(),
            _ => "?",
        };
        let Some(role) = found(req, query) else {
            out.push(format!("{kind} {name} is missing"));
            continue;
        };
        for (group, resource, verbs) in rules {
            let lacks = missing_verbs(&role, group, resource, verbs);
            if !lacks.is_empty() {
                let what = if group.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}.{group}")
                };
                out.push(format!(
                    "{kind} {name} lacks {} on {what}",
                    lacks.join(", ")
                ));
            }
        }
    }
    out
}

/// `linkerd multicluster check`'s rows of this release, in its order (the release data
/// lists them), one function per row, plus kpaas-mesh's own "every cluster is linked to every
/// other cluster" after "Link resources are valid". Rows about the extension's proxies need
/// the data plane and are reported as not evaluated.
fn check(req: &View) -> Plan {
    let all_pairs = pairs(&req.clusters);
    let linked: Vec<Pair> = all_pairs
        .iter()
        .copied()
        .filter(|(s, t)| link_of(&items(req, &req.links_query(&s.name)), &t.name).is_some())
        .collect();
    let mut checks = vec![];
    for row in &req.rel.multicluster_check {
        match row.as_str() {
            "Link CRD exists" => checks.push(link_crd_exists(req)),
            "Link resources are valid" => {
                checks.push(links_are_valid(req));
                checks.push(every_pair_is_linked(req, &all_pairs));
            }
            "Link and CLI versions match" => checks.push(link_versions_match(req)),
            "remote cluster access credentials are valid" => {
                checks.push(credentials_are_valid(req, &linked))
            }
            "clusters share trust anchors" => checks.push(trust_anchors_are_shared(req, &linked)),
            "service mirror controller has required permissions" => {
                checks.push(mirror_has_permissions(req, &linked))
            }
            "service mirror controllers are running" => {
                checks.push(mirrors_are_running(req, &linked))
            }
            "extension is managing controllers" => {
                checks.push(extension_manages_controllers(req, &linked))
            }
            "probe services able to communicate with all gateway mirrors" => {
                if !linked.is_empty() {
                    checks.push(gateways_answer_probes(req, &linked));
                }
            }
            "all mirror services have endpoints" => checks.push(mirror_services(req)[0].clone()),
            "all mirror services are part of a Link" => {
                checks.push(mirror_services(req)[1].clone())
            }
            proxies => checks.push(result(
                proxies,
                CheckStatus::Skipped,
                "needs the Linkerd data plane (proxy metrics); run `linkerd multicluster check` where proxies run".into(),
                vec![],
                "",
            )),
        }
    }
    Plan {
        checks,
        ..Plan::default()
    }
}

/// The row "Link and CLI versions match" (≥ 2.17): each Link's `linkerd.io/created-by`
/// names the CLI of the release it was made for; a warning otherwise, as Linkerd's.
fn link_versions_match(req: &View) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    let want = format!("linkerd/cli {}", req.rel.version);
    for c in &req.clusters {
        for l in items(req, &req.links_query(&c.name)) {
            let name = l["metadata"]["name"].as_str().unwrap_or("?");
            match l["metadata"]["annotations"]["linkerd.io/created-by"].as_str() {
                Some(v) if v == want => oks.push(label(&c.name, name)),
                Some(v) => probs.push((
                    CheckStatus::Warn,
                    format!(
                        "{}: Link version is '{v}', expected '{want}' (re-run `kubectl kpaas-mesh link`)",
                        label(&c.name, name)
                    ),
                )),
                None => probs.push((
                    CheckStatus::Warn,
                    format!("{}: unable to determine the Link's version", label(&c.name, name)),
                )),
            }
        }
    }
    combine("Link and CLI versions match", oks, probs, "")
}

/// The row "extension is managing controllers" (≥ 2.18): each link's service mirror is the
/// chart's (`component: controller`), not a 2.14-style per-link Deployment.
fn extension_manages_controllers(req: &View, linked: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        let l = label(&s.name, &t.name);
        if found(req, &req.legacy_deployment_query(&s.name, &t.name)).is_some() {
            probs.push((
                CheckStatus::Warn,
                format!(
                    "{l}: using legacy service mirror controller {} (re-run `kubectl kpaas-mesh up` to migrate)",
                    Layout::LEGACY.deployment(&t.name)
                ),
            ));
        } else {
            oks.push(l);
        }
    }
    combine("extension is managing controllers", oks, probs, "")
}

/// A source cluster and the target it links to.
type Pair<'a> = (
    &'a kpaas_mesh_plugin_api::ClusterRef,
    &'a kpaas_mesh_plugin_api::ClusterRef,
);

/// `source → target`, as the rows name a link.
fn label(s: &str, t: &str) -> String {
    format!("{s} → {t}")
}

/// The row "Link CRD exists".
fn link_crd_exists(req: &View) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for c in &req.clusters {
        match found(req, &crd_query(&c.name)) {
            Some(_) => oks.push(c.name.clone()),
            None => probs.push((
                CheckStatus::Fail,
                format!("{}: CRD links.multicluster.linkerd.io is missing", c.name),
            )),
        }
    }
    combine(
        "Link CRD exists",
        oks,
        probs,
        "install the multicluster extension: kubectl kpaas-mesh up --only multicluster",
    )
}

/// The row "Link resources are valid".
fn links_are_valid(req: &View) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for c in &req.clusters {
        for l in items(req, &req.links_query(&c.name)) {
            let name = l["metadata"]["name"].as_str().unwrap_or("?").to_string();
            let spec = &l["spec"];
            let empty: Vec<&str> = [
                "targetClusterName",
                "targetClusterDomain",
                "clusterCredentialsSecret",
                "gatewayAddress",
                "gatewayPort",
                "gatewayIdentity",
            ]
            .into_iter()
            .filter(|f| spec[*f].as_str().unwrap_or("").is_empty())
            .collect();
            if empty.is_empty() {
                oks.push(label(&c.name, &name));
            } else {
                probs.push((
                    CheckStatus::Fail,
                    format!(
                        "Link {} is missing {}",
                        label(&c.name, &name),
                        empty.join(", ")
                    ),
                ));
            }
        }
    }
    combine("Link resources are valid", oks, probs, "")
}

/// kpaas-mesh's own row: every link this mesh needs is there.
fn every_pair_is_linked(req: &View, all_pairs: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in all_pairs {
        if link_of(&items(req, &req.links_query(&s.name)), &t.name).is_some() {
            oks.push(label(&s.name, &t.name));
        } else {
            probs.push((
                CheckStatus::Fail,
                format!("no Link {} on {}", t.name, s.name),
            ));
        }
    }
    combine(
        "every cluster is linked to every other cluster",
        oks,
        probs,
        "kubectl kpaas-mesh link",
    )
}

/// The row "remote cluster access credentials are valid".
fn credentials_are_valid(req: &View, linked: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        match req.fact(&req.link_queries(&s.name, &t.name)[0]) {
            Some(FactAnswer::RemoteAccess { error: None, .. }) => oks.push(label(&s.name, &t.name)),
            Some(FactAnswer::RemoteAccess { error: Some(e), .. }) => probs.push((
                CheckStatus::Fail,
                format!("{}: {e}", label(&s.name, &t.name)),
            )),
            other => probs.push((
                CheckStatus::Fail,
                format!("{}: {other:?}", label(&s.name, &t.name)),
            )),
        }
    }
    combine(
        "remote cluster access credentials are valid",
        oks,
        probs,
        "",
    )
}

/// The row "clusters share trust anchors".
fn trust_anchors_are_shared(req: &View, linked: &[Pair]) -> CheckResult {
    let anchor = |c: &str| {
        found(req, &roots_query(c)).and_then(|cm| {
            cm["data"]["ca-bundle.crt"]
                .as_str()
                .map(|s| s.trim().to_string())
        })
    };
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        match (anchor(&s.name), anchor(&t.name)) {
            (Some(a), Some(b)) if a == b => oks.push(label(&s.name, &t.name)),
            (Some(_), Some(_)) => probs.push((
                CheckStatus::Fail,
                format!("{} and {} have different trust anchors", s.name, t.name),
            )),
            _ => probs.push((
                CheckStatus::Fail,
                format!(
                    "{}: linkerd-identity-trust-roots missing",
                    label(&s.name, &t.name)
                ),
            )),
        }
    }
    combine("clusters share trust anchors", oks, probs, "")
}

/// The row "service mirror controller has required permissions".
fn mirror_has_permissions(req: &View, linked: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        let problems = rbac_problems(req, &s.name, &t.name);
        if problems.is_empty() {
            oks.push(label(&s.name, &t.name));
        } else {
            probs.push((
                CheckStatus::Fail,
                format!("{}: {}", label(&s.name, &t.name), problems.join(", ")),
            ));
        }
    }
    combine(
        "service mirror controller has required permissions",
        oks,
        probs,
        "",
    )
}

/// The row "service mirror controllers are running".
fn mirrors_are_running(req: &View, linked: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        match found(req, &req.link_queries(&s.name, &t.name)[1]) {
            Some(d) if deployment_available(&d) => oks.push(label(&s.name, &t.name)),
            Some(_) => probs.push((
                CheckStatus::Fail,
                format!(
                    "{}: {} has no available replica",
                    label(&s.name, &t.name),
                    req.layout.deployment(&t.name)
                ),
            )),
            None => probs.push((
                CheckStatus::Fail,
                format!(
                    "{}: Deployment {} is missing",
                    label(&s.name, &t.name),
                    req.layout.deployment(&t.name)
                ),
            )),
        }
    }
    combine("service mirror controllers are running", oks, probs, "")
}

/// The row "probe services able to communicate with all gateway mirrors". The service mirror's
/// probe worker marks the addresses of the link's mirror Endpoints not ready while the gateway
/// does not answer its probe, and exports `gateway_alive` (what `linkerd multicluster check`
/// reads): both are read here.
fn gateways_answer_probes(req: &View, linked: &[Pair]) -> CheckResult {
    let (mut oks, mut probs) = (vec![], vec![]);
    for (s, t) in linked {
        let q = req.link_queries(&s.name, &t.name);
        let lease = found(req, &q[4]);
        let endpoints = found(req, &q[5])
            .is_some_and(|e| e["subsets"].as_array().is_some_and(|a| !a.is_empty()));
        let l = label(&s.name, &t.name);
        let metric = probe_metric(req, &s.name, &t.name);
        match (lease, endpoints) {
            (None, _) => probs.push((CheckStatus::Warn, format!(
                "{l}: no data plane — the service mirror never took lease service-mirror-write-{} (its pod has not really run), so the gateway probe cannot be evaluated",
                t.name))),
            (Some(_), false) => probs.push((CheckStatus::Fail, format!("{l}: {} has no endpoints", req.layout.probe_service(&t.name)))),
            (Some(_), true) if metric == Ok(Some(Probe::NotYet)) => {
                probs.push((CheckStatus::Warn, format!(
                    "{l}: the service mirror has not probed the gateway of {} yet (gateway_probes 0); check again in a few seconds or use --wait",
                    t.name)));
            }
            (Some(_), true) if metric == Ok(Some(Probe::Dead)) => {
                let link = link_of(&items(req, &req.links_query(&s.name)), &t.name).cloned().unwrap_or_default();
                probs.push((CheckStatus::Fail, format!(
                    "{l}: liveness checks failed for {}: gateway_alive is 0 on the service mirror (its probe of {}:{} gets no answer; is the Link's gateway address right?)",
                    t.name,
                    link["spec"]["gatewayAddress"].as_str().unwrap_or("?"),
                    link["spec"]["probeSpec"]["port"].as_str().unwrap_or("?"))));
            }
            (Some(_), true) => {
                let (mut ready, mut not_ready) = (vec![], vec![]);
                for m in items(req, &mirrors_query(&s.name)) {
                    if m["metadata"]["labels"]["mirror.linkerd.io/cluster-name"] != t.name.as_str() {
                        continue;
                    }
                    let name = m["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let ep = found(req, &mirror_endpoints_query(&s.name, &m)).unwrap_or_default();
                    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
                    let has = |field: &str| subsets.iter().any(|x| x[field].as_array().is_some_and(|a| !a.is_empty()));
                    if has("addresses") {
                        ready.push(name);
                    } else if has("notReadyAddresses") {
                        not_ready.push(name);
                    }
                }
                if !not_ready.is_empty() && ready.is_empty() {
                    probs.push((CheckStatus::Fail, format!(
                        "{l}: liveness checks failed for {}: the service mirror marked the endpoints of {} not ready (the gateway does not answer its probe)",
                        t.name, not_ready.join(", "))));
                } else if metric == Ok(Some(Probe::Alive)) {
                    oks.push(format!("{l}: gateway alive (gateway_alive 1)"));
                } else if !ready.is_empty() {
                    oks.push(format!("{l}: gateway alive (ready mirror endpoints: {})", ready.join(", ")));
                } else {
                    probs.push((CheckStatus::Warn, format!(
                        "{l}: probe service has endpoints; no mirrored service of {} shows the gateway's liveness (the gateway_alive metric is read by `linkerd multicluster check`, not by kpaas-mesh)",
                        t.name)));
                }
            }
        }
    }
    combine(
        "probe services able to communicate with all gateway mirrors",
        oks,
        probs,
        "https://linkerd.io/2.14/tasks/troubleshooting/#l5d-multicluster-gateways-endpoints",
    )
}

/// The rows "all mirror services have endpoints" and "... are part of a Link".
fn mirror_services(req: &View) -> [CheckResult; 2] {
    let (mut oks, mut probs, mut orphans) = (vec![], vec![], vec![]);
    for c in &req.clusters {
        let links = items(req, &req.links_query(&c.name));
        for m in items(req, &mirrors_query(&c.name)) {
            let name = format!(
                "{}/{}",
                m["metadata"]["namespace"].as_str().unwrap_or(""),
                m["metadata"]["name"].as_str().unwrap_or("")
            );
            let target = m["metadata"]["labels"]["mirror.linkerd.io/cluster-name"]
                .as_str()
                .unwrap_or("");
            if link_of(&links, target).is_none() {
                orphans.push((
                    CheckStatus::Warn,
                    format!("{}: mirror service {name} is not part of any Link", c.name),
                ));
            }
            let has_endpoints = found(req, &mirror_endpoints_query(&c.name, &m))
                .is_some_and(|e| e["subsets"].as_array().is_some_and(|a| !a.is_empty()));
            if has_endpoints {
                oks.push(format!("{}: {name}", c.name));
            } else {
                probs.push((
                    CheckStatus::Fail,
                    format!("{}: mirror service {name} has no endpoints", c.name),
                ));
            }
        }
    }
    [
        combine("all mirror services have endpoints", oks, probs, ""),
        combine(
            "all mirror services are part of a Link",
            vec![],
            orphans,
            "",
        ),
    ]
}
