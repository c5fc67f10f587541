//! kpaas-mesh stage plugin **control-plane**: the guide's sections 3.2 and 3.3 — helm
//! releases `linkerd-crds` and `linkerd-control-plane` (with the shared trust anchor and
//! the issuer from the cert stage) on every cluster, then a wait until the control plane's
//! Deployments are Available.
//!
//! - `up`: per cluster, crds → control-plane → wait. Clusters run in parallel (the host runs
//!   different clusters' actions concurrently).
//! - `down`: uninstall both releases and remove the `linkerd` namespace.
//! - `status`: release, chart version, app version and status per cluster.
//! - `check`: both releases deployed at the expected chart versions, and the same trust
//!   anchor in every cluster's `linkerd-identity-trust-roots`.

use kpaas_mesh_kit::CertOutputs;
use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::anchors;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_kit::linkerd::{self, LINKERD_NS};
use kpaas_mesh_plugin_api::{
    Action, CheckResult, CheckStatus, FactAnswer, FactQuery, HelmRelease, HelmReleaseInfo,
    Operation, Plan, PluginError, StagePlugin, StageRequest, StageResponse, Table, WaitCondition,
};
use serde_json::{Value, json};

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "control-plane",
    description: "linkerd-crds and linkerd-control-plane helm releases with the shared trust anchor (guide 3.2-3.3)",
    descriptor: || {
        kpaas_mesh_plugin_api::Descriptor::new(kpaas_mesh_kit::stages::CONTROL_PLANE, &kpaas_mesh_kit::stages::LIFECYCLE)
            .after(&[kpaas_mesh_kit::stages::CERT])
    },
    constructor: || Ok(ControlPlane),
}

pub const CRDS: &str = "linkerd-crds";
pub const CONTROL_PLANE: &str = "linkerd-control-plane";
/// The Deployments of the 2.14 control plane.
pub const DEPLOYMENTS: [&str; 3] = [
    "linkerd-identity",
    "linkerd-destination",
    "linkerd-proxy-injector",
];
pub const CHECK_GROUP: &str = "kpaas-mesh control plane";

#[derive(Debug, Default, Clone, Copy)]
pub struct ControlPlane;

impl StagePlugin for ControlPlane {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let opts: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("control-plane: invalid options ({e})"))?;
        let rel = linkerd::release(&opts.linkerd_version)?;
        match req.operation {
            Operation::Up => {
                let missing = req.missing(req.clusters.iter().flat_map(|c| {
                    let mut q = vec![
                        crd_query(&c.name),
                        roots_query(&c.name),
                        anchors::issuer_secret_query(&c.name),
                        config_query(&c.name),
                    ];
                    if rel.gateway_api.is_some() {
                        q.push(gateway_api_query(&c.name));
                    }
                    q
                }));
                if !missing.is_empty() {
                    return Ok(StageResponse::NeedFacts { queries: missing });
                }
                let certs = match certs(&req, &opts)? {
                    Ok(c) => c,
                    Err(queries) => return Ok(StageResponse::NeedFacts { queries }),
                };
                refuse_version_moves(&req, rel)?;
                refuse_anchor_swap(&req, &certs)?;
                Ok(StageResponse::Plan(plan_up(&req, &opts, rel, &certs)))
            }
            Operation::Down => {
                if let Some(need) = need_gateway_api_facts(&req, rel) {
                    return Ok(need);
                }
                Ok(StageResponse::Plan(plan_down(&req, &opts, rel)))
            }
            Operation::Status | Operation::Check => {
                let queries = observe_queries(&req);
                let missing = req.missing(queries);
                if !missing.is_empty() {
                    return Ok(StageResponse::NeedFacts { queries: missing });
                }
                Ok(StageResponse::Plan(observe(&req, rel)?))
            }
            Operation::Link | Operation::Unlink => Ok(StageResponse::Plan(Plan::default())),
        }
    }
}

fn config_query(cluster: &str) -> FactQuery {
    linkerd::linkerd_config_query(cluster)
}

/// `up` moves a running control plane only within its minor or to the next one; a downgrade
/// or a jump over minors is refused (one line per cluster, joined), before anything changes.
fn refuse_version_moves(req: &StageRequest, rel: &linkerd::LinkerdRelease) -> Result<(), String> {
    let mut refused = Vec::new();
    for c in &req.clusters {
        if let Some(FactAnswer::Object { object: Some(cm) }) = req.fact(&config_query(&c.name))
            && let Some(installed) = linkerd::installed_version(cm)
            && let Err(e) = linkerd::check_move(&c.name, &installed, rel)
        {
            refused.push(e);
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused.join("; "))
    }
}

/// `up` never swaps the trust anchor of a running mesh: a cluster whose
/// `linkerd-identity-trust-roots` does not hold this run's anchor would lose mTLS with every
/// meshed workload (and with its peers) the moment the new control plane rolls out. Refused
/// with one line naming those clusters and both anchors' fingerprints. A cluster in the middle
/// of an anchor rotation (its roots overlap this run's but differ) is refused too, pointing at
/// `certs rotate anchor`; a rotation itself (`certs rotate`, [`CertOutputs::rotation`]) only
/// needs the root sets to overlap: its phases are planned by the cert stage.
fn refuse_anchor_swap(req: &StageRequest, certs: &CertOutputs) -> Result<(), String> {
    let mut running = Vec::new();
    for c in &req.clusters {
        let bundle = match req.fact(&roots_query(&c.name)) {
            Some(FactAnswer::Object { object: Some(cm) }) => anchors::roots_bundle(cm),
            Some(FactAnswer::Error { message }) => return Err(format!("{}: {message}", c.name)),
            _ => continue,
        };
        let theirs = anchors::fingerprints(&bundle)
            .map_err(|e| format!("{}: linkerd-identity-trust-roots: {e}", c.name))?;
        if !theirs.is_empty() {
            running.push((c.name.as_str(), theirs));
        }
    }
    if running.is_empty() {
        return Ok(());
    }
    let ours = anchors::fingerprints(&certs.trust_anchor_pem)
        .map_err(|e| format!("control-plane: this run's trust anchor: {e}"))?;
    if ours.is_empty() {
        return Err("control-plane: this run's trust anchor holds no certificate".into());
    }
    let shown = ours.join("+");
    let disjoint: Vec<String> = running
        .iter()
        .filter(|(_, theirs)| !theirs.iter().any(|t| ours.contains(t)))
        .map(|(c, theirs)| format!("{c} trusts {}", theirs.join("+")))
        .collect();
    if !disjoint.is_empty() {
        return Err(format!(
            "refusing to replace the trust anchor of a running mesh ({}; this run's anchor is {shown}): every meshed \
             workload's mTLS would break. Give --certs-dir with the mesh's own ca.crt and ca.key, or rotate it in \
             phases with `kubectl kpaas-mesh certs rotate anchor`",
            disjoint.join(", ")
        ));
    }
    if certs.rotation.is_some() {
        return Ok(());
    }
    let rotating: Vec<String> = running
        .iter()
        .filter(|(_, theirs)| {
            theirs.len() != ours.len() || !theirs.iter().all(|t| ours.contains(t))
        })
        .map(|(c, theirs)| format!("{c} trusts {}", theirs.join("+")))
        .collect();
    if rotating.is_empty() {
        return Ok(());
    }
    Err(format!(
        "a trust-anchor rotation is in progress ({}; this run's anchor is {shown}): finish it with \
         `kubectl kpaas-mesh certs rotate anchor` before `up`",
        rotating.join(", ")
    ))
}

/// Whether the helm upgrade of this run gives `cluster`'s running identity controller a new
/// issuer while its trust roots stay: then it reloads the issuer from its mounted Secret and
/// records an Event, which `up` waits for (with new roots the identity pods restart instead,
/// and read both at start).
fn issuer_reload_expected(req: &StageRequest, cluster: &str, certs: &CertOutputs) -> bool {
    let Some(FactAnswer::Object {
        object: Some(secret),
    }) = req.fact(&anchors::issuer_secret_query(cluster))
    else {
        return false;
    };
    let Some(FactAnswer::Object { object: Some(cm) }) = req.fact(&roots_query(cluster)) else {
        return false;
    };
    let same = |a: &str, b: &str| a.trim() == b.trim();
    let running_crt = anchors::secret_text(secret, "crt.pem").unwrap_or_default();
    !same(&running_crt, &certs.issuer_cert_pem)
        && same(&anchors::roots_bundle(cm), &certs.trust_anchor_pem)
}

/// The certificates: from the cert stage of this run, else read from the cert directory.
/// `Err(queries)` means the host must read the files first.
fn certs(
    req: &StageRequest,
    opts: &MeshSettings,
) -> Result<Result<CertOutputs, Vec<FactQuery>>, String> {
    if let Some(v) = req.inputs.get("cert") {
        let c: CertOutputs = serde_json::from_value(v.clone())
            .map_err(|e| format!("control-plane: unreadable cert stage output ({e})"))?;
        return Ok(Ok(c));
    }
    let dir = opts.certs_dir.as_deref().ok_or(
        "control-plane needs the certificates: run the cert stage too, or give --certs-dir",
    )?;
    let file = |f: &str| FactQuery::File {
        path: format!("{}/{f}", dir.trim_end_matches('/')),
    };
    let wanted = [file("ca.crt"), file("issuer.crt"), file("issuer.key")];
    let missing = req.missing(wanted.clone());
    if !missing.is_empty() {
        return Ok(Err(missing));
    }
    let mut texts = Vec::new();
    for q in &wanted {
        let FactQuery::File { path } = q else {
            unreachable!()
        };
        match req.fact(q) {
            Some(FactAnswer::File {
                contents: Some(t), ..
            }) => texts.push(t.clone()),
            Some(FactAnswer::Error { message }) => return Err(message.clone()),
            _ => {
                return Err(format!(
                    "{path} is missing; run `kubectl kpaas-mesh certs generate --out {dir}` or the cert stage"
                ));
            }
        }
    }
    Ok(Ok(CertOutputs {
        trust_anchor_pem: texts[0].clone(),
        issuer_cert_pem: texts[1].clone(),
        issuer_key_pem: texts[2].clone(),
        rotation: None,
    }))
}

/// The control-plane chart values: the guide's three `--set-file`s, plus the registry.
pub fn control_plane_values(opts: &MeshSettings, certs: &CertOutputs) -> Value {
    let mut v = json!({
        "identityTrustAnchorsPEM": certs.trust_anchor_pem,
        "identity": {"issuer": {"tls": {
            "crtPEM": certs.issuer_cert_pem,
            "keyPEM": certs.issuer_key_pem,
        }}},
    });
    if let Some(reg) = &opts.registry {
        for (path, image) in [
            ("controllerImage", "cr.l5d.io/linkerd/controller"),
            (
                "policyController.image.name",
                "cr.l5d.io/linkerd/policy-controller",
            ),
            ("proxy.image.name", "cr.l5d.io/linkerd/proxy"),
            ("proxyInit.image.name", "cr.l5d.io/linkerd/proxy-init"),
            ("debugContainer.image.name", "cr.l5d.io/linkerd/debug"),
        ] {
            kpaas_mesh_kit::charts::set_path(
                &mut v,
                path,
                Value::String(kpaas_mesh_kit::charts::rewrite_image(image, reg)),
            );
        }
    }
    kpaas_mesh_kit::charts::with_user_values(v, opts, "control-plane", CONTROL_PLANE)
}

/// A CRD of the linkerd-crds chart, to tell whether Linkerd's CRDs are already there.
pub const PROBE_CRD: &str = "serverauthorizations.policy.linkerd.io";

fn crd_query(cluster: &str) -> FactQuery {
    FactQuery::Object {
        cluster: cluster.into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: None,
        name: PROBE_CRD.into(),
    }
}

/// True when Linkerd's CRDs exist on `cluster` but no helm release `linkerd-crds` owns them
/// (e.g. applied with `linkerd install --crds | kubectl apply`): kpaas-mesh then leaves them
/// alone — it neither takes them over nor removes them on `down`.
pub fn crds_installed_elsewhere(req: &StageRequest, cluster: &str) -> bool {
    match req.fact(&crd_query(cluster)) {
        Some(FactAnswer::Object { object: Some(crd) }) => {
            crd["metadata"]["annotations"]["meta.helm.sh/release-name"] != CRDS
        }
        _ => false,
    }
}

/// A CRD of the Gateway API, which Linkerd requires from edge-25.3.4 (2.18).
pub const GATEWAY_API_CRD: &str = "httproutes.gateway.networking.k8s.io";

fn gateway_api_query(cluster: &str) -> FactQuery {
    FactQuery::Object {
        cluster: cluster.into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: None,
        name: GATEWAY_API_CRD.into(),
    }
}

/// The Gateway API CRDs on `cluster`, if someone other than kpaas-mesh's linkerd-crds release
/// installed them: they are then used as they are, never taken over or removed.
fn gateway_api_elsewhere(req: &StageRequest, cluster: &str) -> Option<String> {
    match req.fact(&gateway_api_query(cluster)) {
        Some(FactAnswer::Object { object: Some(crd) }) => {
            let owner = crd["metadata"]["annotations"]["meta.helm.sh/release-name"].as_str();
            (owner != Some(CRDS)).then(|| match owner {
                Some(o) => format!("helm release {o}"),
                None => "someone else (no helm release)".into(),
            })
        }
        _ => None,
    }
}

/// linkerd-crds' values: `installGatewayAPI` for releases that have it (linkerd-crds then
/// installs the Gateway API CRDs unless someone else did), then the user's values.
fn crds_values(
    req: &StageRequest,
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
    cluster: &str,
) -> Value {
    let mut v = json!({});
    if rel.gateway_api.is_some() {
        v["installGatewayAPI"] = json!(gateway_api_elsewhere(req, cluster).is_none());
    }
    kpaas_mesh_kit::charts::with_user_values(v, opts, "crds", CRDS)
}

fn plan_up(
    req: &StageRequest,
    opts: &MeshSettings,
    rel: &linkerd::LinkerdRelease,
    certs: &CertOutputs,
) -> Plan {
    let mut plan = Plan::default();
    for c in &req.clusters {
        if let (Some(_), Some(owner)) = (rel.gateway_api, gateway_api_elsewhere(req, &c.name)) {
            plan.notes.push(format!(
                "{}: Gateway API CRDs installed by {owner}; used as they are (installGatewayAPI=false)",
                c.name
            ));
        }
        if crds_installed_elsewhere(req, &c.name) {
            plan.notes.push(format!(
                "{}: Linkerd's CRDs were installed without helm; kept as they are (no linkerd-crds release, not removed by down)",
                c.name
            ));
        } else {
            plan.actions.push(Action::HelmRelease(HelmRelease {
                cluster: c.name.clone(),
                release: CRDS.into(),
                namespace: LINKERD_NS.into(),
                create_namespace: true,
                chart: kpaas_mesh_kit::charts::chart_ref(opts, CRDS, &rel.charts.crds, &rel.repo),
                values: crds_values(req, opts, rel, &c.name),
                secret_values: vec![],
            }));
        }
        plan.actions.push(Action::HelmRelease(HelmRelease {
            cluster: c.name.clone(),
            release: CONTROL_PLANE.into(),
            namespace: LINKERD_NS.into(),
            // linkerd-crds creates the namespace, as in the guide; without it, this release does.
            create_namespace: crds_installed_elsewhere(req, &c.name),
            chart: kpaas_mesh_kit::charts::chart_ref(
                opts,
                CONTROL_PLANE,
                &rel.charts.control_plane,
                &rel.repo,
            ),
            values: control_plane_values(opts, certs),
            secret_values: vec!["identity.issuer.tls.keyPEM".into()],
        }));
        plan.actions.push(Action::Wait {
            cluster: c.name.clone(),
            condition: WaitCondition::DeploymentsAvailable {
                namespace: LINKERD_NS.into(),
                names: DEPLOYMENTS.map(String::from).to_vec(),
            },
            timeout_secs: opts.timeout_secs,
        });
        if issuer_reload_expected(req, &c.name, certs) {
            let ev = &rel.issuer_events;
            plan.actions.push(Action::Wait {
                cluster: c.name.clone(),
                condition: WaitCondition::Event {
                    namespace: LINKERD_NS.into(),
                    kind: "Deployment".into(),
                    name: ev.deployment.clone(),
                    reason: ev.updated.clone(),
                    failure_reasons: vec![ev.skipped.clone()],
                },
                timeout_secs: opts.timeout_secs,
            });
        }
    }
    plan.notes.push(format!(
        "Linkerd {} (linkerd-crds {}, linkerd-control-plane {}) on {}",
        rel.version,
        &rel.charts.crds,
        &rel.charts.control_plane,
        req.clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // for the later stages of this run: the release every cluster runs once this is done
    plan.outputs = json!({"linkerd_version": rel.version});
    plan
}

fn plan_down(req: &StageRequest, opts: &MeshSettings, rel: &linkerd::LinkerdRelease) -> Plan {
    let mut plan = Plan::default();
    for c in &req.clusters {
        for release in [CONTROL_PLANE, CRDS] {
            plan.actions.push(Action::HelmUninstall {
                cluster: c.name.clone(),
                namespace: LINKERD_NS.into(),
                release: release.into(),
            });
        }
        plan.actions
            .extend(kpaas_mesh_kit::actions::delete_namespace(
                &c.name,
                LINKERD_NS,
                opts.timeout_secs,
            ));
        remove_kept_gateway_api(req, rel, &c.name, opts.timeout_secs, &mut plan);
    }
    plan
}

fn crd_named(cluster: &str, name: &str) -> FactQuery {
    FactQuery::Object {
        cluster: cluster.into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: None,
        name: name.into(),
    }
}

/// The Gateway API CRDs on `cluster` that kpaas-mesh's linkerd-crds release installed, with
/// the query listing their objects (at the CRD's first served version).
fn our_gateway_api_crds(
    req: &StageRequest,
    rel: &linkerd::LinkerdRelease,
    cluster: &str,
) -> Vec<(String, FactQuery)> {
    if rel.gateway_api.is_none() {
        return vec![];
    }
    rel.gateway_api_crd_names()
        .into_iter()
        .filter_map(|name| {
            let Some(FactAnswer::Object { object: Some(crd) }) =
                req.fact(&crd_named(cluster, &name))
            else {
                return None;
            };
            (crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == CRDS).then_some(())?;
            let version = crd["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["served"] == true)?["name"]
                .as_str()?
                .to_string();
            let list = FactQuery::Objects {
                cluster: cluster.into(),
                api_version: format!("gateway.networking.k8s.io/{version}"),
                kind: crd["spec"]["names"]["kind"].as_str()?.to_string(),
                namespace: None,
                label_selector: None,
            };
            Some((name, list))
        })
        .collect()
}

/// `down` of a release whose linkerd-crds marks the Gateway API CRDs `keep`: first those
/// CRDs, then the objects of the ones kpaas-mesh installed.
fn need_gateway_api_facts(
    req: &StageRequest,
    rel: &linkerd::LinkerdRelease,
) -> Option<StageResponse> {
    rel.gateway_api?; // only releases whose linkerd-crds keeps them
    let crds: Vec<FactQuery> = req
        .clusters
        .iter()
        .flat_map(|c| {
            rel.gateway_api_crd_names()
                .into_iter()
                .map(|n| crd_named(&c.name, &n))
        })
        .collect();
    let missing = req.missing(crds);
    if !missing.is_empty() {
        return Some(StageResponse::NeedFacts { queries: missing });
    }
    let lists: Vec<FactQuery> = req
        .clusters
        .iter()
        .flat_map(|c| {
            our_gateway_api_crds(req, rel, &c.name)
                .into_iter()
                .map(|(_, q)| q)
        })
        .collect();
    let missing = req.missing(lists);
    (!missing.is_empty()).then_some(StageResponse::NeedFacts { queries: missing })
}

/// helm keeps the Gateway API CRDs on uninstall (`helm.sh/resource-policy: keep`): `down`
/// removes those kpaas-mesh's linkerd-crds installed when no object of theirs is left, and
/// keeps the others with a note (deleting a CRD deletes every object of it); `down` waits until
/// they are gone.
fn remove_kept_gateway_api(
    req: &StageRequest,
    rel: &linkerd::LinkerdRelease,
    cluster: &str,
    timeout_secs: u64,
    plan: &mut Plan,
) {
    for (name, list) in our_gateway_api_crds(req, rel, cluster) {
        let used = match req.fact(&list) {
            Some(FactAnswer::Objects { items }) => items.len(),
            _ => 0,
        };
        if used == 0 {
            plan.actions
                .extend(kpaas_mesh_kit::actions::delete_and_wait(
                    cluster,
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    None,
                    &name,
                    timeout_secs,
                ));
        } else {
            plan.notes.push(format!(
                "{cluster}: CRD {name} kept: {used} object(s) of it exist (installed by linkerd-crds, kept by helm)"
            ));
        }
    }
}

fn release_query(cluster: &str, release: &str) -> FactQuery {
    FactQuery::HelmRelease {
        cluster: cluster.into(),
        namespace: LINKERD_NS.into(),
        release: release.into(),
    }
}

fn roots_query(cluster: &str) -> FactQuery {
    anchors::trust_roots_query(cluster)
}

fn observe_queries(req: &StageRequest) -> Vec<FactQuery> {
    req.clusters
        .iter()
        .flat_map(|c| {
            [
                release_query(&c.name, CRDS),
                release_query(&c.name, CONTROL_PLANE),
                roots_query(&c.name),
                crd_query(&c.name),
                config_query(&c.name),
            ]
        })
        .collect()
}

/// Each cluster's Linkerd as its control plane reports it (`linkerd-config`): a table, and
/// a row that warns when the clusters run different releases (or not this run's).
fn versions(req: &StageRequest, rel: &linkerd::LinkerdRelease, plan: &mut Plan) {
    let mut table = Table {
        title: "Linkerd".into(),
        columns: ["CLUSTER", "LINKERD", "MINOR"].map(String::from).to_vec(),
        rows: vec![],
    };
    let mut seen: Vec<(String, String)> = vec![];
    for c in &req.clusters {
        let v = match req.fact(&config_query(&c.name)) {
            Some(FactAnswer::Object { object: Some(cm) }) => linkerd::installed_version(cm),
            _ => None,
        };
        let minor = v
            .as_deref()
            .and_then(linkerd::minor_of)
            .map(|m| format!("2.{m}"))
            .unwrap_or_else(|| "-".into());
        table.rows.push(vec![
            c.name.clone(),
            v.clone().unwrap_or_else(|| "not installed".into()),
            minor,
        ]);
        if let Some(v) = v {
            seen.push((c.name.clone(), v));
        }
    }
    plan.tables.push(table);
    let name = "clusters run the same Linkerd release";
    let other: Vec<String> = seen
        .iter()
        .filter(|(_, v)| v != &rel.version)
        .map(|(c, v)| format!("{c} runs {v}"))
        .collect();
    plan.checks.push(if seen.is_empty() {
        check(
            name,
            CheckStatus::Skipped,
            "no control plane found".into(),
            vec![],
        )
    } else if other.is_empty() {
        check(
            name,
            CheckStatus::Ok,
            String::new(),
            seen.iter().map(|(c, v)| format!("{c}: {v}")).collect(),
        )
    } else {
        check(
            name,
            CheckStatus::Warn,
            format!(
                "{} (this run is for {}, Linkerd {}); `up --linkerd-version` moves them",
                other.join(", "),
                rel.version,
                rel.minor
            ),
            vec![],
        )
    });
}

fn check(name: &str, status: CheckStatus, detail: String, items: Vec<String>) -> CheckResult {
    Checks(CHECK_GROUP)
        .row(name, status)
        .detail(detail)
        .items(items)
}

fn observe(req: &StageRequest, rel: &linkerd::LinkerdRelease) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut table = Table {
        title: "control plane".into(),
        columns: [
            "CLUSTER",
            "RELEASE",
            "CHART",
            "VERSION",
            "APP VERSION",
            "REVISION",
            "STATUS",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![],
    };
    let mut problems = Vec::new();
    let mut anchors: Vec<(String, Option<String>)> = Vec::new();
    for c in &req.clusters {
        for (release, want) in [
            (CRDS, &rel.charts.crds),
            (CONTROL_PLANE, &rel.charts.control_plane),
        ] {
            let info: Option<&HelmReleaseInfo> = match req.fact(&release_query(&c.name, release)) {
                Some(FactAnswer::HelmRelease { release }) => release.as_ref(),
                Some(FactAnswer::Error { message }) => {
                    problems.push(format!("{}: {message}", c.name));
                    None
                }
                _ => None,
            };
            match info {
                Some(i) => {
                    table.rows.push(vec![
                        c.name.clone(),
                        release.into(),
                        i.chart.clone(),
                        i.chart_version.clone(),
                        i.app_version.clone(),
                        i.revision.to_string(),
                        i.status.clone(),
                    ]);
                    if i.status != "deployed" {
                        problems.push(format!("{}: {release} is {}", c.name, i.status));
                    } else if &i.chart_version != want {
                        problems.push(format!(
                            "{}: {release} is chart {} (expected {want} for Linkerd {})",
                            c.name, i.chart_version, rel.version
                        ));
                    }
                }
                None if release == CRDS && crds_installed_elsewhere(req, &c.name) => {
                    table.rows.push(vec![
                        c.name.clone(),
                        release.into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "CRDs installed without helm (kept)".into(),
                    ]);
                }
                None => {
                    table.rows.push(vec![
                        c.name.clone(),
                        release.into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "not installed".into(),
                    ]);
                    problems.push(format!("{}: {release} is not installed", c.name));
                }
            }
        }
        let anchor = match req.fact(&roots_query(&c.name)) {
            Some(FactAnswer::Object { object: Some(o) }) => o["data"]["ca-bundle.crt"]
                .as_str()
                .map(|s| s.trim().to_string()),
            _ => None,
        };
        anchors.push((c.name.clone(), anchor));
    }
    plan.tables.push(table);
    let names: Vec<String> = req.clusters.iter().map(|c| c.name.clone()).collect();
    plan.checks.push(if problems.is_empty() {
        check(
            &format!("control plane {} is installed", rel.version),
            CheckStatus::Ok,
            String::new(),
            names.clone(),
        )
    } else {
        check(
            &format!("control plane {} is installed", rel.version),
            CheckStatus::Fail,
            problems.join("; "),
            vec![],
        )
    });
    let present: Vec<&(String, Option<String>)> =
        anchors.iter().filter(|(_, a)| a.is_some()).collect();
    let first = present.first().and_then(|(_, a)| a.clone());
    let differ: Vec<String> = present
        .iter()
        .filter(|(_, a)| a.as_ref() != first.as_ref())
        .map(|(n, _)| n.clone())
        .collect();
    let absent: Vec<String> = anchors
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    plan.checks.push(if !absent.is_empty() {
        check(
            "clusters share the same trust anchor",
            CheckStatus::Fail,
            format!("no linkerd-identity-trust-roots on {}", absent.join(", ")),
            vec![],
        )
    } else if !differ.is_empty() {
        check(
            "clusters share the same trust anchor",
            CheckStatus::Fail,
            format!(
                "the trust anchor of {} differs from {}'s",
                differ.join(", "),
                present[0].0
            ),
            vec![],
        )
    } else {
        check(
            "clusters share the same trust anchor",
            CheckStatus::Ok,
            String::new(),
            names,
        )
    });
    versions(req, rel, &mut plan);
    if req.operation == Operation::Check {
        plan.tables.clear();
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_kit::testkit::{World, clusters, converse, converse_facts, deployed};
    use kpaas_mesh_plugin_api::Fact;

    fn certs() -> CertOutputs {
        CertOutputs {
            trust_anchor_pem: "ANCHOR".into(),
            issuer_cert_pem: "ISSUER".into(),
            issuer_key_pem: "KEY".into(),
            rotation: None,
        }
    }

    fn request(op: Operation, opts: MeshSettings) -> StageRequest {
        let mut r = StageRequest::new(op, clusters(2));
        r.settings = serde_json::to_value(opts).unwrap();
        r.inputs
            .insert("cert".into(), serde_json::to_value(certs()).unwrap());
        r
    }

    /// Runs to a plan; Linkerd's CRDs are absent unless `foreign` names the cluster that has
    /// them installed without helm. The stage asks for nothing but the CRD probe.
    fn plan_with(r: StageRequest, foreign: Option<&str>) -> Plan {
        let mut world = World::new();
        if let Some(cluster) = foreign {
            world.add_object(
                cluster,
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                PROBE_CRD,
                json!({"metadata": {"annotations": {}}}),
            );
        }
        let (p, facts) = converse_facts(&ControlPlane, r, &world).unwrap();
        for f in &facts {
            assert!(
                matches!(&f.query, FactQuery::Object { kind, .. } if kind == "CustomResourceDefinition" || kind == "ConfigMap" || kind == "Secret"),
                "unexpected {:?}",
                f.query
            );
        }
        p
    }

    fn plan(r: StageRequest) -> Plan {
        plan_with(r, None)
    }

    #[test]
    fn crds_installed_without_helm_are_left_alone() {
        let p = plan_with(
            request(Operation::Up, MeshSettings::default()),
            Some("cluster2"),
        );
        let releases: Vec<String> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::HelmRelease(h) => Some(format!(
                    "{}/{}/{}",
                    h.cluster, h.release, h.create_namespace
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            releases,
            [
                "cluster1/linkerd-crds/true",
                "cluster1/linkerd-control-plane/false",
                "cluster2/linkerd-control-plane/true"
            ]
        );
        assert!(
            p.notes[0].starts_with("cluster2: Linkerd's CRDs were installed without helm"),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn up_installs_the_guide_releases_on_every_cluster() {
        let p = plan(request(Operation::Up, MeshSettings::default()));
        assert_eq!(p.actions.len(), 6);
        let Action::HelmRelease(crds) = &p.actions[0] else {
            panic!()
        };
        assert_eq!(
            (
                crds.release.as_str(),
                crds.namespace.as_str(),
                crds.create_namespace
            ),
            ("linkerd-crds", "linkerd", true)
        );
        assert_eq!(crds.chart.version, "1.8.0");
        assert_eq!(crds.chart.repo.as_deref(), Some(linkerd::STABLE_REPO));
        let Action::HelmRelease(cp) = &p.actions[1] else {
            panic!()
        };
        assert_eq!(cp.chart.version, "1.16.11");
        assert_eq!(cp.values["identityTrustAnchorsPEM"], "ANCHOR");
        assert_eq!(cp.values["identity"]["issuer"]["tls"]["crtPEM"], "ISSUER");
        assert_eq!(cp.values["identity"]["issuer"]["tls"]["keyPEM"], "KEY");
        assert_eq!(cp.secret_values, ["identity.issuer.tls.keyPEM"]);
        let Action::Wait {
            cluster, condition, ..
        } = &p.actions[2]
        else {
            panic!()
        };
        assert_eq!(cluster, "cluster1");
        assert_eq!(
            condition,
            &WaitCondition::DeploymentsAvailable {
                namespace: "linkerd".into(),
                names: DEPLOYMENTS.map(String::from).to_vec()
            }
        );
        assert!(matches!(&p.actions[3], Action::HelmRelease(h) if h.cluster == "cluster2"));
    }

    #[test]
    fn chart_dir_registry_and_user_values() {
        let mut opts = MeshSettings {
            chart_dir: Some("/charts".into()),
            registry: Some("harbor.k-paas.io/linkerd".into()),
            ..MeshSettings::default()
        };
        opts.values.insert(
            "control-plane".into(),
            json!({"controllerReplicas": 3, "proxy": {"logLevel": "debug"}}),
        );
        let p = plan(request(Operation::Up, opts));
        let Action::HelmRelease(cp) = &p.actions[1] else {
            panic!()
        };
        assert_eq!(
            cp.chart.path.as_deref(),
            Some("/charts/linkerd-control-plane")
        );
        assert_eq!(cp.chart.repo, None);
        assert_eq!(
            cp.values["controllerImage"],
            "harbor.k-paas.io/linkerd/controller"
        );
        assert_eq!(
            cp.values["proxy"]["image"]["name"],
            "harbor.k-paas.io/linkerd/proxy"
        );
        assert_eq!(cp.values["proxy"]["logLevel"], "debug");
        assert_eq!(
            cp.values["proxyInit"]["image"]["name"],
            "harbor.k-paas.io/linkerd/proxy-init"
        );
        assert_eq!(cp.values["controllerReplicas"], 3);
    }

    #[test]
    fn without_the_cert_stage_the_files_are_read() {
        let mut r = request(
            Operation::Up,
            MeshSettings {
                certs_dir: Some("/c".into()),
                ..MeshSettings::default()
            },
        );
        r.inputs.clear();
        for c in ["cluster1", "cluster2"] {
            for query in [
                crd_query(c),
                roots_query(c),
                anchors::issuer_secret_query(c),
                config_query(c),
            ] {
                r.facts.push(Fact {
                    query,
                    answer: FactAnswer::Object { object: None },
                });
            }
        }
        let StageResponse::NeedFacts { queries } = ControlPlane.run(r.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(queries.len(), 3);
        for (q, text) in queries.into_iter().zip(["A", "I", "K"]) {
            r.facts.push(Fact {
                query: q,
                answer: FactAnswer::File {
                    contents: Some(text.into()),
                    mode: Some(0o600),
                },
            });
        }
        let p = plan(r.clone());
        let Action::HelmRelease(cp) = &p.actions[1] else {
            panic!()
        };
        assert_eq!(cp.values["identity"]["issuer"]["tls"]["keyPEM"], "K");

        r.facts[10].answer = FactAnswer::File {
            contents: None,
            mode: None,
        };
        let err = ControlPlane.run(r).unwrap_err();
        assert!(
            err.message.contains("/c/issuer.key is missing"),
            "{}",
            err.message
        );

        let mut r = request(Operation::Up, MeshSettings::default());
        r.inputs.clear();
        for c in ["cluster1", "cluster2"] {
            for query in [
                crd_query(c),
                roots_query(c),
                anchors::issuer_secret_query(c),
                config_query(c),
            ] {
                r.facts.push(Fact {
                    query,
                    answer: FactAnswer::Object { object: None },
                });
            }
        }
        assert!(
            ControlPlane
                .run(r)
                .unwrap_err()
                .message
                .contains("--certs-dir")
        );
    }

    #[test]
    fn down_reverses_up() {
        let p = plan(request(Operation::Down, MeshSettings::default()));
        let kinds: Vec<String> = p
            .actions
            .iter()
            .take(3)
            .map(|a| match a {
                Action::HelmUninstall { release, .. } => format!("uninstall {release}"),
                Action::Delete { kind, name, .. } => format!("delete {kind} {name}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "uninstall linkerd-control-plane",
                "uninstall linkerd-crds",
                "delete Namespace linkerd"
            ]
        );
    }

    fn answered(op: Operation, anchors: [&str; 2], cp_version: &str) -> Plan {
        let mut world = World::new();
        for (c, anchor) in ["cluster1", "cluster2"].into_iter().zip(anchors) {
            for (rel, v) in [(CRDS, "1.8.0"), (CONTROL_PLANE, cp_version)] {
                world.add_release(c, LINKERD_NS, rel, deployed(rel, v, "stable-2.14.10"));
            }
            world.add_object(
                c,
                "v1",
                "ConfigMap",
                Some(LINKERD_NS),
                "linkerd-identity-trust-roots",
                json!({"data": {"ca-bundle.crt": anchor}}),
            );
            let version = if cp_version == "mixed" && c == "cluster2" {
                "edge-25.4.4"
            } else {
                "stable-2.14.10"
            };
            world.add_object(
                c,
                "v1",
                "ConfigMap",
                Some(LINKERD_NS),
                "linkerd-config",
                json!({"data": {"values": format!("linkerdVersion: {version}\n")}}),
            );
        }
        converse(&ControlPlane, request(op, MeshSettings::default()), &world).unwrap()
    }

    #[test]
    fn status_and_check_read_releases_and_anchors() {
        let p = answered(Operation::Status, ["A", "A"], "1.16.11");
        assert_eq!(p.tables[0].rows.len(), 4);
        assert!(
            p.checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{:?}",
            p.checks
        );
        let p = answered(Operation::Check, ["A", "B"], "1.16.11");
        assert!(p.tables.is_empty());
        let anchor = p
            .checks
            .iter()
            .find(|c| c.name.contains("trust anchor"))
            .unwrap();
        assert_eq!(anchor.status, CheckStatus::Fail);
        assert!(
            anchor.detail.contains("cluster2 differs from cluster1"),
            "{}",
            anchor.detail
        );
        // each cluster's Linkerd, from its linkerd-config; clusters on another release warn
        let p = answered(Operation::Status, ["A", "A"], "1.16.11");
        let linkerd = p.tables.iter().find(|t| t.title == "Linkerd").unwrap();
        assert_eq!(
            linkerd.rows,
            [
                ["cluster1", "stable-2.14.10", "2.14"],
                ["cluster2", "stable-2.14.10", "2.14"]
            ]
        );
        let p = answered(Operation::Check, ["A", "A"], "mixed");
        let same = p
            .checks
            .iter()
            .find(|c| c.name == "clusters run the same Linkerd release")
            .unwrap();
        assert_eq!(same.status, CheckStatus::Warn);
        assert_eq!(
            same.detail,
            "cluster2 runs edge-25.4.4 (this run is for stable-2.14.10, Linkerd 2.14); `up --linkerd-version` moves them"
        );
        let p = answered(Operation::Check, ["A", "A"], "1.16.10");
        assert_eq!(p.checks[0].status, CheckStatus::Fail);
        assert!(
            p.checks[0].detail.contains("expected 1.16.11"),
            "{}",
            p.checks[0].detail
        );
    }

    /// PEM framing around `body` (the guard hashes PEM contents; it does not parse them).
    fn pem_of(body: &str) -> String {
        format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn down_removes_the_gateway_api_crds_helm_keeps_only_when_unused() {
        let r = request(
            Operation::Down,
            MeshSettings {
                linkerd_version: "2.20".into(),
                ..MeshSettings::default()
            },
        );
        let crd = |plural: &str, kind: &str, owner: Option<&str>| {
            let mut c = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.gateway.networking.k8s.io"), "annotations": {}},
                "spec": {"names": {"kind": kind}, "versions": [
                    {"name": "v1alpha2", "served": false}, {"name": "v1", "served": true}]}});
            if let Some(o) = owner {
                c["metadata"]["annotations"]["meta.helm.sh/release-name"] = json!(o);
            }
            c
        };
        let mut w = World::new();
        // cluster1: ours, unused (httproutes) and ours, in use (grpcroutes); cluster2: someone else's
        w.add(
            "cluster1",
            crd("httproutes", "HTTPRoute", Some("linkerd-crds")),
        );
        w.add(
            "cluster1",
            crd("grpcroutes", "GRPCRoute", Some("linkerd-crds")),
        );
        w.add(
            "cluster1",
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "theirs", "namespace": "apps"}}),
        );
        w.add(
            "cluster2",
            crd("httproutes", "HTTPRoute", Some("envoy-gateway")),
        );
        let p = converse(&ControlPlane, r, &w).unwrap();
        let deleted: Vec<String> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete {
                    cluster,
                    kind,
                    name,
                    ..
                } if kind == "CustomResourceDefinition" => Some(format!("{cluster}:{name}")),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["cluster1:httproutes.gateway.networking.k8s.io"]);
        // and down waits until it is gone (a CRD goes only after its objects are cleaned up)
        let at = p
            .actions
            .iter()
            .position(
                |a| matches!(a, Action::Delete { kind, .. } if kind == "CustomResourceDefinition"),
            )
            .unwrap();
        assert!(matches!(
            &p.actions[at + 1],
            Action::Wait { condition: WaitCondition::Deleted { kind, name, .. }, .. }
                if kind == "CustomResourceDefinition" && name == "httproutes.gateway.networking.k8s.io"
        ));
        assert!(
            p.notes.iter().any(|n| n
                == "cluster1: CRD grpcroutes.gateway.networking.k8s.io kept: 1 object(s) of it exist (installed by linkerd-crds, kept by helm)"),
            "{:?}",
            p.notes
        );
        // 2.14: helm removes its CRDs itself; nothing asked, nothing extra
        let p = converse(
            &ControlPlane,
            request(Operation::Down, MeshSettings::default()),
            &w,
        )
        .unwrap();
        assert!(!p.actions.iter().any(
            |a| matches!(a, Action::Delete { kind, .. } if kind == "CustomResourceDefinition")
        ));
    }

    #[test]
    fn up_moves_a_control_plane_one_minor_at_most_and_never_down() {
        let mut r = request(
            Operation::Up,
            MeshSettings {
                linkerd_version: "2.18".into(),
                ..MeshSettings::default()
            },
        );
        r.inputs
            .insert("cert".into(), serde_json::to_value(certs()).unwrap());
        let world = |c1: &str, c2: &str| {
            let mut w = World::new();
            for (cluster, v) in [("cluster1", c1), ("cluster2", c2)] {
                if !v.is_empty() {
                    w.add_object(
                        cluster,
                        "v1",
                        "ConfigMap",
                        Some(LINKERD_NS),
                        "linkerd-config",
                        json!({"data": {"values": format!("linkerdVersion: {v}\n")}}),
                    );
                }
            }
            w
        };
        // fresh clusters, the same release, the minor before: planned
        assert!(converse(&ControlPlane, r.clone(), &world("", "edge-25.4.4")).is_ok());
        assert!(converse(&ControlPlane, r.clone(), &world("stable-2.17.3", "")).is_ok());
        // 2.14 -> 2.18 and 2.20 -> 2.18: one line for each cluster, nothing planned
        let err = converse(
            &ControlPlane,
            r.clone(),
            &world("stable-2.14.10", "edge-26.6.3"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "cluster1 runs Linkerd stable-2.14.10 (2.14); going to edge-25.4.4 (2.18) in one step would put the \
             control plane 4 minors ahead of the data plane (Linkerd allows one): upgrade through 2.15, 2.16, 2.17 \
             first; cluster2 runs Linkerd edge-26.6.3 (2.20); refusing to downgrade it to edge-25.4.4 (2.18)"
        );
    }

    #[test]
    fn up_refuses_to_swap_the_anchor_of_a_running_mesh() {
        let ours = pem_of("b3VyIGFuY2hvcg==");
        let old = pem_of("dGhlIG1lc2gncyBhbmNob3I=");
        let mut r = request(Operation::Up, MeshSettings::default());
        let mut c = certs();
        c.trust_anchor_pem = ours.clone();
        r.inputs
            .insert("cert".into(), serde_json::to_value(&c).unwrap());
        let roots = |bundle: &str| json!({"data": {"ca-bundle.crt": bundle}});
        let world = |c1: Option<&str>, c2: Option<&str>| {
            let mut w = World::new();
            for (cluster, bundle) in [("cluster1", c1), ("cluster2", c2)] {
                if let Some(b) = bundle {
                    w.add_object(
                        cluster,
                        "v1",
                        "ConfigMap",
                        Some(LINKERD_NS),
                        "linkerd-identity-trust-roots",
                        roots(b),
                    );
                }
            }
            w
        };
        let fp = |pem: &str| kpaas_mesh_kit::anchors::fingerprints(pem).unwrap()[0].clone();
        // A fresh cluster and one already on this anchor: planned.
        assert!(converse(&ControlPlane, r.clone(), &world(None, Some(&ours))).is_ok());
        // A rotation in progress (the bundle holds the old and this run's anchor): refused for
        // `up`, planned for `certs rotate` (the cert stage says so).
        let both = format!("{old}{ours}");
        let err = converse(&ControlPlane, r.clone(), &world(Some(&both), Some(&ours))).unwrap_err();
        assert_eq!(
            err,
            format!(
                "a trust-anchor rotation is in progress (cluster1 trusts {}+{}; this run's anchor is {}): finish it \
                 with `kubectl kpaas-mesh certs rotate anchor` before `up`",
                fp(&old),
                fp(&ours),
                fp(&ours)
            )
        );
        let mut rotating = r.clone();
        c.rotation = Some(kpaas_mesh_kit::Rotation::default());
        rotating
            .inputs
            .insert("cert".into(), serde_json::to_value(&c).unwrap());
        assert!(
            converse(
                &ControlPlane,
                rotating.clone(),
                &world(Some(&both), Some(&ours))
            )
            .is_ok()
        );
        // A cluster on another anchor: refused, naming it and both fingerprints, rotating or not.
        for r in [r, rotating] {
            let err =
                converse(&ControlPlane, r.clone(), &world(Some(&old), Some(&ours))).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "refusing to replace the trust anchor of a running mesh (cluster1 trusts {}; this run's anchor is {}): \
                     every meshed workload's mTLS would break. Give --certs-dir with the mesh's own ca.crt and ca.key, or \
                     rotate it in phases with `kubectl kpaas-mesh certs rotate anchor`",
                    fp(&old),
                    fp(&ours)
                )
            );
        }
    }

    #[test]
    fn a_new_issuer_under_the_same_roots_waits_for_the_identity_controller_to_load_it() {
        use base64::Engine;
        let anchor = pem_of("YW5jaG9y");
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let mut c = certs();
        c.trust_anchor_pem = anchor.clone();
        // (as `certs rotate` runs it: the last case has a bundle on the clusters)
        c.rotation = Some(kpaas_mesh_kit::Rotation::default());
        let plan_for = |running_issuer: &str, roots: &str| {
            let mut r = request(Operation::Up, MeshSettings::default());
            r.inputs
                .insert("cert".into(), serde_json::to_value(&c).unwrap());
            let mut w = World::new();
            for cluster in ["cluster1", "cluster2"] {
                w.add_object(
                    cluster,
                    "v1",
                    "ConfigMap",
                    Some(LINKERD_NS),
                    "linkerd-identity-trust-roots",
                    json!({"data": {"ca-bundle.crt": roots}}),
                );
                w.add_object(
                    cluster,
                    "v1",
                    "Secret",
                    Some(LINKERD_NS),
                    "linkerd-identity-issuer",
                    json!({"data": {"crt.pem": b64(running_issuer), "key.pem": b64("K")}}),
                );
            }
            converse(&ControlPlane, r, &w).unwrap()
        };
        let event_waits = |p: &Plan| {
            p.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Wait {
                        cluster,
                        condition:
                            WaitCondition::Event {
                                kind,
                                name,
                                reason,
                                failure_reasons,
                                ..
                            },
                        ..
                    } => Some(format!(
                        "{cluster} {kind}/{name} {reason} !{}",
                        failure_reasons.join(",")
                    )),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // Same roots, another issuer running: each cluster waits for IssuerUpdated, after the
        // control plane is Available.
        let p = plan_for("OLD ISSUER", &anchor);
        assert_eq!(
            event_waits(&p),
            [
                "cluster1 Deployment/linkerd-identity IssuerUpdated !IssuerUpdateSkipped",
                "cluster2 Deployment/linkerd-identity IssuerUpdated !IssuerUpdateSkipped"
            ]
        );
        assert!(matches!(
            p.actions[3],
            Action::Wait {
                condition: WaitCondition::Event { .. },
                ..
            }
        ));
        // The issuer already runs, or the roots change too (the identity pods restart): no wait.
        assert!(event_waits(&plan_for("ISSUER", &anchor)).is_empty());
        assert!(
            event_waits(&plan_for(
                "OLD ISSUER",
                &format!("{anchor}{}", pem_of("b2xk"))
            ))
            .is_empty()
        );
    }
}
