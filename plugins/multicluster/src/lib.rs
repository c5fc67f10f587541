//! kpaas-mesh stage plugin **multicluster**: the guide's section 3.4 — helm release
//! `linkerd-multicluster` on every cluster, then links between every ordered pair of
//! clusters, made natively (no linkerd CLI, no `kubectl apply` of piped output).
//!
//! - `up`: install the chart, wait for the gateway to be Available, get a LoadBalancer
//!   address and for the remote-access token to be issued.
//! - `link`: for every (source, target) pair, the objects `linkerd multicluster link`
//!   makes (see [`link`]), with the gateway address netfix chose (default: the LB ingress).
//! - `unlink`: remove those objects (all links, or only those to `--from`), and the mirror
//!   Services the service mirror made for that target.
//! - `down`: uninstall the chart and remove its namespace (links go in the unlink step).
//! - `status` / `check`: see [`observe`].

pub mod credentials;
pub mod link;
pub mod observe;

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::NetfixOutputs;
use kpaas_mesh_kit::facts::{object, object_query};
use kpaas_mesh_kit::linkerd::{self, LinkStyle, MULTICLUSTER_NS};
use kpaas_mesh_plugin_api::{
    Action, ClusterRef, FactAnswer, FactQuery, HelmRelease, Operation, Plan, PluginError,
    StagePlugin, StageRequest, StageResponse, WaitCondition,
};
use link::{GATEWAY, MirrorSettings, REMOTE_SA, Target};
use serde_json::{Value, json};

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "multicluster",
    description: "linkerd-multicluster helm release and native links between every pair of clusters (guide 3.4)",
    descriptor: kpaas_mesh_kit::stages::multicluster_descriptor,
    constructor: || Ok(Multicluster),
}

pub const RELEASE: &str = "linkerd-multicluster";

#[derive(Debug, Default, Clone, Copy)]
pub struct Multicluster;

impl StagePlugin for Multicluster {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let opts: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("multicluster: invalid options ({e})"))?;
        let rel = linkerd::release(&opts.linkerd_version)?;
        let resp = match req.operation {
            Operation::Up => plan_up(&req, &opts, rel)?,
            Operation::Down => StageResponse::Plan(plan_down(&req, &opts)),
            Operation::Link => plan_link(&req, &opts, rel)?,
            Operation::Unlink => plan_unlink(&req, &opts, rel)?,
            Operation::Status | Operation::Check => observe::run(&req, &opts)?,
        };
        Ok(resp)
    }
}

/// The values of the multicluster chart: the registry rewrite (the gateway's pause image, the
/// namespace-metadata job, the release's controller images), the service-mirror
/// `controllers` (≥ 2.18), then the user's values.
pub fn chart_values(
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
    controllers: Option<Value>,
) -> Value {
    let mut v = json!({});
    if let Some(reg) = &opts.registry {
        kpaas_mesh_kit::charts::set_path(
            &mut v,
            "gateway.pauseImage",
            json!(kpaas_mesh_kit::charts::rewrite_image(
                "gcr.io/google_containers/pause:3.2",
                reg
            )),
        );
        kpaas_mesh_kit::charts::set_path(
            &mut v,
            "namespaceMetadata.image.registry",
            json!(reg.trim_end_matches('/')),
        );
        for path in &rel.mc_controller_image {
            kpaas_mesh_kit::charts::set_path(
                &mut v,
                path,
                json!(kpaas_mesh_kit::charts::rewrite_image(
                    "cr.l5d.io/linkerd/controller",
                    reg
                )),
            );
        }
    }
    if let Some(c) = controllers {
        v["controllers"] = c;
    }
    kpaas_mesh_kit::charts::with_user_values(v, opts, "multicluster", RELEASE)
}

/// The Links on cluster `c` (in `api`, the release's Link version).
pub fn links_query(c: &str, api: &str) -> FactQuery {
    FactQuery::Objects {
        cluster: c.into(),
        api_version: api.into(),
        kind: "Link".into(),
        namespace: Some(MULTICLUSTER_NS.into()),
        label_selector: None,
    }
}

/// The per-link service mirror Deployment a `links: link` release (≤ 2.17) made on `s` for
/// the link to `t`.
pub fn legacy_controller_query(s: &str, t: &str) -> FactQuery {
    kpaas_mesh_kit::facts::object_query(
        s,
        "apps/v1",
        "Deployment",
        Some(MULTICLUSTER_NS),
        &link::Layout::LEGACY.deployment(t),
    )
}

/// Whether the host found that Deployment.
fn has_legacy_controller(req: &StageRequest, s: &str, t: &str) -> bool {
    matches!(
        req.fact(&legacy_controller_query(s, t)),
        Some(FactAnswer::Object { object: Some(_) })
    )
}

/// Deletes of the per-link service mirror objects of an older release's link from `s` to `t`
/// (Linkerd 2.18's migration: once the linkerd-multicluster release declares the link's
/// controller, the old objects go and the new controller takes the link's Lease over).
fn delete_legacy_controller(s: &str, t: &str, plan: &mut Plan) {
    for (api_version, kind, namespace, name) in link::controller_object_ids(t) {
        plan.actions.push(Action::Delete {
            cluster: s.into(),
            api_version,
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name,
        });
    }
}

/// The names of the Links found on `c`.
fn linked_targets(req: &StageRequest, c: &str, rel: &linkerd::LinkerdRelease) -> Vec<String> {
    match req.fact(&links_query(c, &rel.link_api)) {
        Some(FactAnswer::Objects { items }) => items
            .iter()
            .filter_map(|l| l["metadata"]["name"].as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// The targets whose service mirror cluster `c`'s release declares (≥ 2.18): every other
/// cluster of this run, and the targets of Links already on `c` (so a run over some of the
/// clusters keeps the controllers of links to the others).
fn controller_targets(req: &StageRequest, c: &str, rel: &linkerd::LinkerdRelease) -> Vec<String> {
    let mut t: Vec<String> = req
        .clusters
        .iter()
        .filter(|o| o.name != c)
        .map(|o| o.name.clone())
        .collect();
    t.extend(linked_targets(req, c, rel));
    t
}

/// The linkerd-multicluster release on `cluster`, with `controllers` where the release
/// declares them.
fn release_action(
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
    cluster: &str,
    controllers: Option<&[String]>,
) -> Action {
    Action::HelmRelease(HelmRelease {
        cluster: cluster.into(),
        release: RELEASE.into(),
        namespace: MULTICLUSTER_NS.into(),
        create_namespace: true,
        chart: kpaas_mesh_kit::charts::chart_ref(
            opts,
            RELEASE,
            &rel.charts.multicluster,
            &rel.repo,
        ),
        values: chart_values(opts, rel, controllers.map(link::controllers_value)),
        secret_values: vec![],
    })
}

/// For releases whose chart declares the controllers: the Links of every cluster, or the
/// queries still to ask.
fn need_links(req: &StageRequest, rel: &linkerd::LinkerdRelease) -> Option<StageResponse> {
    if rel.links != LinkStyle::LinkGen {
        return None;
    }
    let missing = req.missing(
        req.clusters
            .iter()
            .map(|c| links_query(&c.name, &rel.link_api))
            .collect::<Vec<_>>(),
    );
    (!missing.is_empty()).then_some(StageResponse::NeedFacts { queries: missing })
}

/// The Secrets of the multicluster namespace on `c` (the remote-access tokens, the links'
/// credentials).
fn secrets_query(c: &str) -> FactQuery {
    FactQuery::Objects {
        cluster: c.into(),
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: Some(MULTICLUSTER_NS.into()),
        label_selector: None,
    }
}

/// The Secrets the host found on `c` (none when it could not say).
fn secrets_on(req: &StageRequest, c: &str) -> Vec<Value> {
    match req.fact(&secrets_query(c)) {
        Some(FactAnswer::Objects { items }) => items.clone(),
        _ => vec![],
    }
}

fn plan_up(
    req: &StageRequest,
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
) -> Result<StageResponse, String> {
    if let Some(need) = need_links(req, rel) {
        return Ok(need);
    }
    let missing = req.missing(
        req.clusters
            .iter()
            .map(|c| secrets_query(&c.name))
            .collect::<Vec<_>>(),
    );
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    let mut plan = Plan::default();
    for c in &req.clusters {
        let cluster = c.name.clone();
        // after `link --rotate-credentials` the links use a token Secret of kpaas-mesh's; the
        // chart's (whose token a re-made Secret of the same name gets back) stays away
        let tokens = credentials::remote_tokens(&secrets_on(req, &cluster));
        let rotated = credentials::in_use(&tokens)
            .filter(|t| t.generation.is_some())
            .map(|t| t.name.clone());
        let targets = controller_targets(req, &cluster, rel);
        let controllers = (rel.links == LinkStyle::LinkGen).then_some(targets.as_slice());
        plan.actions
            .push(release_action(opts, rel, &cluster, controllers));
        plan.actions.push(Action::Wait {
            cluster: cluster.clone(),
            condition: WaitCondition::DeploymentsAvailable {
                namespace: MULTICLUSTER_NS.into(),
                names: vec![GATEWAY.into()],
            },
            timeout_secs: opts.timeout_secs,
        });
        plan.actions.push(Action::Wait {
            cluster: cluster.clone(),
            condition: WaitCondition::ServiceAddress {
                namespace: MULTICLUSTER_NS.into(),
                name: GATEWAY.into(),
                hint: "no LoadBalancer address — is MetalLB running?".into(),
            },
            timeout_secs: opts.timeout_secs,
        });
        plan.actions.push(Action::Wait {
            cluster: cluster.clone(),
            condition: WaitCondition::SecretHasKey {
                namespace: MULTICLUSTER_NS.into(),
                name: rotated
                    .clone()
                    .unwrap_or_else(credentials::chart_token_secret),
                key: "token".into(),
            },
            timeout_secs: opts.timeout_secs,
        });
        if rotated.is_some() {
            plan.actions.push(Action::Delete {
                cluster,
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some(MULTICLUSTER_NS.into()),
                name: credentials::chart_token_secret(),
            });
        }
    }
    plan.notes.push(format!(
        "linkerd-multicluster {} on every cluster",
        &rel.charts.multicluster
    ));
    if rel.links == LinkStyle::LinkGen {
        plan.notes.push(
            "service mirrors declared in each release's `controllers` (Linkerd ≥ 2.18)".into(),
        );
    }
    Ok(StageResponse::Plan(plan))
}

fn plan_down(req: &StageRequest, opts: &MeshSettings) -> Plan {
    Plan {
        actions: kpaas_mesh_kit::actions::uninstall_everywhere(
            &req.clusters,
            MULTICLUSTER_NS,
            RELEASE,
            opts.timeout_secs,
        ),
        ..Plan::default()
    }
}

/// Every ordered (source, target) pair of distinct clusters.
pub fn pairs(clusters: &[ClusterRef]) -> Vec<(&ClusterRef, &ClusterRef)> {
    let mut out = Vec::new();
    for s in clusters {
        for t in clusters {
            if s.name != t.name {
                out.push((s, t));
            }
        }
    }
    out
}

/// What the link step reads on a target cluster.
fn target_queries(t: &str) -> Vec<FactQuery> {
    vec![
        linkerd::linkerd_config_query(t),
        object_query(t, "v1", "ServiceAccount", Some(MULTICLUSTER_NS), REMOTE_SA),
        secrets_query(t),
        object_query(t, "v1", "Service", Some(MULTICLUSTER_NS), GATEWAY),
        FactQuery::KubeconfigCluster { cluster: t.into() },
    ]
}

/// The decoded token of the remote-access ServiceAccount the links carry: as `linkerd
/// multicluster link` finds it (the first `kubernetes.io/service-account-token` Secret
/// annotated with the SA's name), or after `link --rotate-credentials` the newest one.
fn sa_token(secrets: &[Value]) -> Option<String> {
    credentials::in_use(&credentials::remote_tokens(secrets)).and_then(|t| t.token.clone())
}

/// Reads a value from the `values` YAML of `linkerd-config`.
fn config_value(cm: &Value, key: &str) -> Option<String> {
    let text = cm["data"]["values"].as_str()?;
    let values: Value = serde_yaml_ng::from_str(text).ok()?;
    values[key].as_str().map(str::to_string)
}

/// Everything about target `t` the link needs, or why it cannot be had yet.
fn read_target(req: &StageRequest, t: &ClusterRef) -> Result<Target, String> {
    let qs = target_queries(&t.name);
    let not_ready = |what: &str| format!("cluster {}: {what}", t.name);
    let config = object(req, &qs[0])?
        .ok_or_else(|| not_ready("linkerd is not installed (no linkerd/linkerd-config)"))?;
    object(req, &qs[1])?.ok_or_else(|| {
        not_ready(&format!(
            "linkerd-multicluster is not installed (no ServiceAccount {REMOTE_SA})"
        ))
    })?;
    let secrets = match req.fact(&qs[2]) {
        Some(FactAnswer::Objects { items }) => items.clone(),
        Some(FactAnswer::Error { message }) => return Err(message.clone()),
        _ => vec![],
    };
    let token = sa_token(&secrets).ok_or_else(|| {
        not_ready(&format!(
            "no token has been issued for ServiceAccount {REMOTE_SA} yet"
        ))
    })?;
    let gw = object(req, &qs[3])?
        .ok_or_else(|| not_ready(&format!("no Service {MULTICLUSTER_NS}/{GATEWAY}")))?;
    let (kc_name, kc_cluster) = match req.fact(&qs[4]) {
        Some(FactAnswer::KubeconfigCluster { name, cluster }) => (name.clone(), cluster.clone()),
        Some(FactAnswer::Error { message }) => return Err(message.clone()),
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let ann = |k: &str| {
        gw["metadata"]["annotations"][k]
            .as_str()
            .map(str::to_string)
    };
    let gateway_identity = ann("mirror.linkerd.io/gateway-identity").filter(|s| !s.is_empty()).ok_or_else(|| {
        not_ready(&format!("Gateway {GATEWAY}.{MULTICLUSTER_NS} has no mirror.linkerd.io/gateway-identity annotation"))
    })?;
    let probe_path = ann("mirror.linkerd.io/probe-path")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| not_ready("the gateway's probe path is empty"))?;
    let probe_period_secs: u64 = ann("mirror.linkerd.io/probe-period")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| not_ready("the gateway has no valid mirror.linkerd.io/probe-period"))?;
    Ok(Target {
        name: t.name.clone(),
        context: t.context.clone(),
        kubeconfig_cluster_name: kc_name,
        kubeconfig_cluster: kc_cluster,
        token,
        cluster_domain: config_value(&config, "clusterDomain")
            .unwrap_or_else(|| "cluster.local".into()),
        trust_domain: config_value(&config, "identityTrustDomain")
            .unwrap_or_else(|| "cluster.local".into()),
        gateway_address: link::lb_addresses(&gw),
        gateway_port: link::gateway_port(&gw, "mc-gateway")
            .ok_or_else(|| not_ready("the gateway Service has no port named mc-gateway"))?,
        gateway_identity,
        probe_path,
        probe_port: link::gateway_port(&gw, "mc-probe")
            .ok_or_else(|| not_ready("the gateway Service has no port named mc-probe"))?,
        probe_period_secs,
    })
}

/// Links are made in the format of this run's release (2.14's `link` or 2.18's `link-gen`),
/// so every cluster must run it: a cluster on another release is refused with one line (and
/// says so when the pair is farther apart than Linkerd's one-minor skew allows).
fn refuse_other_releases(req: &StageRequest, rel: &linkerd::LinkerdRelease) -> Result<(), String> {
    let mut other = Vec::new();
    for c in &req.clusters {
        let Ok(Some(config)) = object(req, &linkerd::linkerd_config_query(&c.name)) else {
            continue;
        };
        let Some(v) = linkerd::installed_version(&config) else {
            continue;
        };
        if v == rel.version {
            continue;
        }
        let far = linkerd::minor_of(&v)
            .map(|m| m.abs_diff(rel.minor_number()) > 1)
            .unwrap_or(true);
        other.push(format!(
            "{} runs Linkerd {v}{}",
            c.name,
            if far {
                " (more than one minor apart: Linkerd does not support that skew)"
            } else {
                ""
            }
        ));
    }
    if other.is_empty() {
        return Ok(());
    }
    Err(format!(
        "cannot link: {}; this run makes links for {} (Linkerd {}): `up --linkerd-version {}` brings every cluster to it first",
        other.join(", "),
        rel.version,
        rel.minor,
        rel.minor
    ))
}

/// The links an unlink is about, as (source, target name): every pair, or with
/// `--from T` the links to T on every given cluster but T (T need not be among them).
fn unlink_pairs(req: &StageRequest, opts: &MeshSettings) -> Vec<(String, String)> {
    match &opts.unlink_from {
        None => pairs(&req.clusters)
            .into_iter()
            .map(|(s, t)| (s.name.clone(), t.name.clone()))
            .collect(),
        Some(from) => req
            .clusters
            .iter()
            .filter(|s| &s.name != from)
            .map(|s| (s.name.clone(), from.clone()))
            .collect(),
    }
}

fn plan_link(
    req: &StageRequest,
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
) -> Result<StageResponse, String> {
    if let Some(need) = need_links(req, rel) {
        return Ok(need);
    }
    let mut queries: Vec<FactQuery> = req
        .clusters
        .iter()
        .flat_map(|c| target_queries(&c.name))
        .collect();
    if opts.rotate_credentials.is_some() {
        queries.extend(credentials::queries(req));
    }
    if rel.links == LinkStyle::LinkGen {
        for (s, t) in pairs(&req.clusters) {
            queries.push(legacy_controller_query(&s.name, &t.name));
        }
    }
    let missing = req.missing(queries);
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    // (in an `up`, this run's control-plane stage moves every cluster to the release first)
    if !req.inputs.contains_key("control-plane") {
        refuse_other_releases(req, rel)?;
    }
    let netfix: NetfixOutputs = req
        .inputs
        .get("netfix")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| format!("multicluster: unreadable netfix output ({e})"))?
        .unwrap_or_default();
    let mirror = MirrorSettings::new(rel, opts.registry.as_deref());
    let mut plan = Plan::default();
    if rel.links == LinkStyle::LinkGen {
        // the service mirrors of these links (a no-op where `up` declared them already)
        for c in &req.clusters {
            let targets = controller_targets(req, &c.name, rel);
            plan.actions
                .push(release_action(opts, rel, &c.name, Some(&targets)));
        }
    }
    let mut targets = std::collections::BTreeMap::new();
    for t in &req.clusters {
        targets.insert(t.name.clone(), read_target(req, t));
    }
    for (s, t) in pairs(&req.clusters) {
        let target = match &targets[&t.name] {
            Ok(target) => target,
            Err(e) if req.dry_run => {
                plan.notes.push(format!(
                    "link {} → {} is planned once {}'s multicluster extension is up ({e})",
                    s.name, t.name, t.name
                ));
                continue;
            }
            Err(e) => return Err(format!("cannot link {} to {}: {e}", s.name, t.name)),
        };
        let mut target = target.clone();
        if let Some(route) = netfix.route(&s.name, &t.name) {
            target.gateway_address = route.address.clone();
            if let Some(port) = route.port {
                target.gateway_port = port.into();
            }
        }
        if target.gateway_address.is_empty() {
            return Err(format!(
                "cannot link {} to {}: Gateway {GATEWAY}.{MULTICLUSTER_NS} has no ingress addresses — is MetalLB running?",
                s.name, t.name
            ));
        }
        let objects = match rel.links {
            LinkStyle::Link => link::link_objects(&target, &mirror),
            LinkStyle::LinkGen => link::link_gen_objects(&target, &rel.link_api, &rel.version),
        };
        for manifest in objects {
            let secret = manifest["kind"] == "Secret";
            plan.actions.push(Action::Apply {
                cluster: s.name.clone(),
                manifest,
                secret,
            });
        }
        plan.notes.push(format!(
            "link {} → {} via gateway {}:{}",
            s.name, t.name, target.gateway_address, target.gateway_port
        ));
        if rel.links == LinkStyle::LinkGen && has_legacy_controller(req, &s.name, &t.name) {
            delete_legacy_controller(&s.name, &t.name, &mut plan);
            plan.notes.push(format!(
                "link {} → {}: the per-link service mirror of the older release is removed; {}'s controller-{} takes the link over",
                s.name, t.name, RELEASE, t.name
            ));
        }
    }
    if let Some(generation) = opts.rotate_credentials {
        rotate_credentials(req, rel, generation, &mut plan);
    }
    Ok(StageResponse::Plan(plan))
}

/// `link --rotate-credentials`: the rotation's actions around the link step's, and where it
/// stands for the host (see [`credentials`]).
fn rotate_credentials(
    req: &StageRequest,
    rel: &linkerd::LinkerdRelease,
    generation: u64,
    plan: &mut Plan,
) {
    let names: Vec<String> = req.clusters.iter().map(|c| c.name.clone()).collect();
    let secrets = |c: &str| secrets_on(req, c);
    let pods = |c: &str| match req.fact(&credentials::mirror_pods_query(c)) {
        Some(FactAnswer::Objects { items }) => items.clone(),
        _ => vec![],
    };
    let seen = credentials::Observed {
        secrets: &secrets,
        pods: &pods,
    };
    let (before, after, rotation) =
        credentials::plan(&names, link::Layout::of(rel), generation, &seen);
    let links = std::mem::take(&mut plan.actions);
    plan.actions = before;
    plan.actions.extend(links);
    plan.actions.extend(after);
    plan.notes.extend(rotation.progress.iter().cloned());
    plan.outputs = serde_json::to_value(kpaas_mesh_kit::MulticlusterOutputs {
        credentials: Some(rotation),
    })
    .unwrap_or_default();
}

fn plan_unlink(
    req: &StageRequest,
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
) -> Result<StageResponse, String> {
    let chosen = unlink_pairs(req, opts);
    if chosen.is_empty() {
        return Err(
            "unlink: no link to remove (give at least one cluster other than --from)".into(),
        );
    }
    // The mirror Services each link made on its source, to remove with it.
    let mirror_query = |s: &str, t: &str| FactQuery::Objects {
        cluster: s.into(),
        api_version: "v1".into(),
        kind: "Service".into(),
        namespace: None,
        label_selector: Some(format!(
            "mirror.linkerd.io/mirrored-service=true,mirror.linkerd.io/cluster-name={t}"
        )),
    };
    let mut queries: Vec<FactQuery> = chosen.iter().map(|(s, t)| mirror_query(s, t)).collect();
    let link_gen = rel.links == LinkStyle::LinkGen;
    if link_gen {
        for c in &req.clusters {
            queries.push(links_query(&c.name, &rel.link_api));
            queries.push(observe::release_query(&c.name));
        }
        for (s, t) in &chosen {
            queries.push(legacy_controller_query(s, t));
        }
    }
    let missing = req.missing(queries);
    if !missing.is_empty() {
        return Ok(StageResponse::NeedFacts { queries: missing });
    }
    let mut plan = Plan::default();
    if link_gen {
        // first the controllers of the removed links go from each source's release (only
        // where the release is installed: unlink never installs it)
        for c in &req.clusters {
            let installed = matches!(
                req.fact(&observe::release_query(&c.name)),
                Some(FactAnswer::HelmRelease { release: Some(_) })
            );
            if !installed {
                continue;
            }
            let keep: Vec<String> = linked_targets(req, &c.name, rel)
                .into_iter()
                .filter(|t| !chosen.iter().any(|(s, x)| s == &c.name && x == t))
                .collect();
            plan.actions
                .push(release_action(opts, rel, &c.name, Some(&keep)));
        }
    }
    for (s, t) in &chosen {
        let ids: Vec<link::ObjectId> = if link_gen {
            let mut ids = link::link_gen_object_ids(t, &rel.link_api);
            // a link an older release made and no `up` migrated yet
            if has_legacy_controller(req, s, t) {
                ids.extend(link::controller_object_ids(t));
            }
            ids
        } else {
            link::link_object_ids(t, &rel.link_api)
        };
        for (api_version, kind, namespace, name) in ids {
            plan.actions.push(Action::Delete {
                cluster: s.clone(),
                api_version,
                kind: kind.into(),
                namespace: namespace.map(String::from),
                name,
            });
        }
        if let Some(FactAnswer::Objects { items }) = req.fact(&mirror_query(s, t)) {
            for svc in items {
                plan.actions.push(Action::Delete {
                    cluster: s.clone(),
                    api_version: "v1".into(),
                    kind: "Service".into(),
                    namespace: svc["metadata"]["namespace"].as_str().map(String::from),
                    name: svc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
        plan.notes.push(format!("unlink {s} → {t}"));
    }
    Ok(StageResponse::Plan(plan))
}

#[cfg(test)]
mod tests;
