//! kpaas-mesh stage plugin **smi**: the guide's section 3.6 — helm release `linkerd-smi`
//! (namespace `linkerd-smi`) on every cluster, which brings the `TrafficSplit` CRD and the
//! smi-adaptor that turns TrafficSplits into ServiceProfiles.

use kpaas_mesh_kit::MeshSettings;
use kpaas_mesh_kit::checks::{Checks, Row};
use kpaas_mesh_kit::linkerd::{self, SMI_NS, SMI_REPO};
use kpaas_mesh_plugin_api::{
    Action, FactAnswer, FactQuery, HelmRelease, Operation, Plan, PluginError, StagePlugin,
    StageRequest, StageResponse, Table, WaitCondition,
};
use serde_json::{Value, json};

kpaas_mesh_plugin_api::export_stage_plugin! {
    name: "smi",
    description: "linkerd-smi helm release: TrafficSplit CRD and smi-adaptor (guide 3.6)",
    descriptor: || {
        kpaas_mesh_plugin_api::Descriptor::new(kpaas_mesh_kit::stages::SMI, &kpaas_mesh_kit::stages::LIFECYCLE)
            .after(&[kpaas_mesh_kit::stages::MULTICLUSTER_LINK])
    },
    constructor: || Ok(Smi),
}

pub const RELEASE: &str = "linkerd-smi";
pub const ADAPTOR: &str = "smi-adaptor";
pub const CRD: &str = "trafficsplits.split.smi-spec.io";
pub const CHECK_GROUP: &str = "linkerd-smi";

#[derive(Debug, Default, Clone, Copy)]
pub struct Smi;

impl StagePlugin for Smi {
    fn run(&self, req: StageRequest) -> Result<StageResponse, PluginError> {
        let opts: MeshSettings = serde_json::from_value(req.settings.clone())
            .map_err(|e| format!("smi: invalid options ({e})"))?;
        let rel = linkerd::release(&opts.linkerd_version)?;
        let smi = match rel.smi() {
            Ok(smi) => smi,
            // ≥ 2.15: the sample splits with HTTPRoute; linkerd-smi is deprecated there
            Err(why) => {
                if req.operation == Operation::Up {
                    let missing = req.missing(req.clusters.iter().map(|c| release_query(&c.name)));
                    if !missing.is_empty() {
                        return Ok(StageResponse::NeedFacts { queries: missing });
                    }
                }
                return Ok(StageResponse::Plan(not_applicable(&req, &opts, why)));
            }
        };
        let plan = match req.operation {
            Operation::Up => plan_up(&req, &opts, smi),
            Operation::Down => plan_down(&req, &opts),
            Operation::Status | Operation::Check => {
                let missing = req.missing(queries(&req));
                if !missing.is_empty() {
                    return Ok(StageResponse::NeedFacts { queries: missing });
                }
                observe(&req, smi)
            }
            Operation::Link | Operation::Unlink => Plan::default(),
        };
        Ok(StageResponse::Plan(plan))
    }
}

/// The chart values: the adaptor image moved to the registry (linkerd-smi 1.0.4's
/// `adaptor.image.registry`, next to `name: smi-adaptor` and `tag`), then the user's values.
pub fn values(opts: &MeshSettings) -> Value {
    let mut v = json!({});
    if let Some(reg) = &opts.registry {
        kpaas_mesh_kit::charts::set_path(
            &mut v,
            "adaptor.image.registry",
            json!(reg.trim_end_matches('/')),
        );
    }
    kpaas_mesh_kit::charts::with_user_values(v, opts, "smi", RELEASE)
}

/// The plan for a release without linkerd-smi: one note; `down` still removes a linkerd-smi
/// release left from an older Linkerd.
fn not_applicable(req: &StageRequest, opts: &MeshSettings, why: String) -> Plan {
    let mut plan = match req.operation {
        Operation::Down => plan_down(req, opts),
        _ => Plan::default(),
    };
    plan.notes.push(format!("smi stage skipped: {why}"));
    // a linkerd-smi that an `up` of Linkerd 2.14 installed is left as it is: TrafficSplits of
    // the operator's own may still rely on it (the sample's is replaced by an HTTPRoute)
    let left: Vec<&str> = req
        .clusters
        .iter()
        .filter(|c| {
            matches!(
                req.fact(&release_query(&c.name)),
                Some(FactAnswer::HelmRelease { release: Some(_) })
            )
        })
        .map(|c| c.name.as_str())
        .collect();
    if req.operation == Operation::Up && !left.is_empty() {
        plan.notes.push(format!(
            "linkerd-smi stays installed on {} (deprecated from Linkerd 2.15; remove it with `kubectl kpaas-mesh down --only smi` once no TrafficSplit of yours needs it)",
            left.join(", ")
        ));
    }
    plan
}

fn plan_up(req: &StageRequest, opts: &MeshSettings, smi: &linkerd::Smi) -> Plan {
    let mut plan = Plan::default();
    for c in &req.clusters {
        plan.actions.push(Action::HelmRelease(HelmRelease {
            cluster: c.name.clone(),
            release: RELEASE.into(),
            namespace: SMI_NS.into(),
            create_namespace: true,
            chart: kpaas_mesh_kit::charts::chart_ref(opts, RELEASE, &smi.chart, SMI_REPO),
            values: values(opts),
            secret_values: vec![],
        }));
        plan.actions.push(Action::Wait {
            cluster: c.name.clone(),
            condition: WaitCondition::DeploymentsAvailable {
                namespace: SMI_NS.into(),
                names: vec![ADAPTOR.into()],
            },
            timeout_secs: opts.timeout_secs,
        });
    }
    plan.notes.push(format!(
        "linkerd-smi {} ({}) on every cluster",
        smi.chart, smi.app
    ));
    plan
}

fn plan_down(req: &StageRequest, opts: &MeshSettings) -> Plan {
    Plan {
        actions: kpaas_mesh_kit::actions::uninstall_everywhere(
            &req.clusters,
            SMI_NS,
            RELEASE,
            opts.timeout_secs,
        ),
        ..Plan::default()
    }
}

fn release_query(c: &str) -> FactQuery {
    FactQuery::HelmRelease {
        cluster: c.into(),
        namespace: SMI_NS.into(),
        release: RELEASE.into(),
    }
}

fn crd_query(c: &str) -> FactQuery {
    FactQuery::Object {
        cluster: c.into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: None,
        name: CRD.into(),
    }
}

fn queries(req: &StageRequest) -> Vec<FactQuery> {
    req.clusters
        .iter()
        .flat_map(|c| [release_query(&c.name), crd_query(&c.name)])
        .collect()
}

fn observe(req: &StageRequest, smi: &linkerd::Smi) -> Plan {
    let mut table = Table {
        title: "linkerd-smi".into(),
        columns: kpaas_mesh_kit::tables::release_columns(&["TRAFFICSPLIT CRD"]),
        rows: vec![],
    };
    let mut problems = vec![];
    for c in &req.clusters {
        let crd = matches!(
            req.fact(&crd_query(&c.name)),
            Some(FactAnswer::Object { object: Some(_) })
        );
        let info = kpaas_mesh_kit::tables::release_info(req, &release_query(&c.name));
        match info {
            Some(r) if r.status != "deployed" || r.chart_version != smi.chart => {
                problems.push(format!(
                    "{}: linkerd-smi is {} chart {} (expected deployed {})",
                    c.name, r.status, r.chart_version, smi.chart
                ))
            }
            Some(_) => {}
            None => problems.push(format!("{}: linkerd-smi is not installed", c.name)),
        }
        let row = kpaas_mesh_kit::tables::release_row(&c.name, RELEASE, info);
        if !crd {
            problems.push(format!("{}: CRD {CRD} is missing", c.name));
        }
        let mut row = row;
        row.push(if crd {
            "present".into()
        } else {
            "missing".into()
        });
        table.rows.push(row);
    }
    let names: Vec<String> = req.clusters.iter().map(|c| c.name.clone()).collect();
    let check = Checks(CHECK_GROUP)
        .ok_unless(
            "linkerd-smi and the TrafficSplit CRD are installed",
            !problems.is_empty(),
            problems.join("; "),
        )
        .items(if problems.is_empty() { names } else { vec![] });
    Plan {
        tables: if req.operation == Operation::Status {
            vec![table]
        } else {
            vec![]
        },
        checks: vec![check],
        ..Plan::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_kit::testkit::{World, clusters, converse, deployed};
    use kpaas_mesh_plugin_api::CheckStatus;

    fn request(op: Operation, opts: MeshSettings) -> StageRequest {
        let mut r = StageRequest::new(op, clusters(2));
        r.settings = serde_json::to_value(opts).unwrap();
        r
    }

    fn plan(r: StageRequest) -> Plan {
        converse(&Smi, r, &World::new()).unwrap()
    }

    #[test]
    fn up_installs_linkerd_smi_everywhere_and_waits_for_the_adaptor() {
        let p = plan(request(
            Operation::Up,
            MeshSettings {
                registry: Some("harbor.local/l5d".into()),
                ..MeshSettings::default()
            },
        ));
        assert_eq!(p.actions.len(), 4);
        let Action::HelmRelease(h) = &p.actions[0] else {
            panic!()
        };
        assert_eq!(
            (
                h.release.as_str(),
                h.namespace.as_str(),
                h.chart.version.as_str()
            ),
            ("linkerd-smi", "linkerd-smi", "1.0.4")
        );
        assert_eq!(h.chart.repo.as_deref(), Some(SMI_REPO));
        assert_eq!(
            h.values["adaptor"]["image"],
            json!({"registry": "harbor.local/l5d"})
        );
        assert!(
            matches!(&p.actions[1], Action::Wait { condition: WaitCondition::DeploymentsAvailable { names, .. }, .. } if names == &["smi-adaptor"])
        );
        let down = plan(request(Operation::Down, MeshSettings::default()));
        assert!(
            matches!(&down.actions[0], Action::HelmUninstall { release, .. } if release == "linkerd-smi")
        );
    }

    #[test]
    fn check_needs_release_and_crd() {
        let r = request(Operation::Check, MeshSettings::default());
        let StageResponse::NeedFacts { queries } = Smi.run(r.clone()).unwrap() else {
            panic!()
        };
        assert_eq!(queries.len(), 4);
        let mut world = World::new();
        for c in ["cluster1", "cluster2"] {
            world.add_release(
                c,
                SMI_NS,
                RELEASE,
                deployed("linkerd-smi", "1.0.4", "v0.2.7"),
            );
        }
        world.add_object(
            "cluster1",
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            CRD,
            json!({}),
        );
        let p = converse(&Smi, r, &world).unwrap();
        assert_eq!(p.checks[0].status, CheckStatus::Fail);
        assert_eq!(
            p.checks[0].detail,
            "cluster2: CRD trafficsplits.split.smi-spec.io is missing"
        );
    }

    #[test]
    fn from_2_15_the_stage_is_skipped_and_a_linkerd_smi_left_from_2_14_is_named() {
        let opts = MeshSettings {
            linkerd_version: "2.15".into(),
            ..MeshSettings::default()
        };
        let p = plan(request(Operation::Up, opts.clone()));
        assert!(p.actions.is_empty());
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].starts_with(
            "smi stage skipped: Linkerd 2.15 (edge-24.2.4) splits traffic with HTTPRoute"
        ));
        let mut world = World::new();
        world.add_release(
            "cluster2",
            SMI_NS,
            RELEASE,
            deployed("linkerd-smi", "1.0.4", "v0.2.7"),
        );
        let p = converse(&Smi, request(Operation::Up, opts.clone()), &world).unwrap();
        assert!(p.actions.is_empty());
        assert!(
            p.notes[1].starts_with(
                "linkerd-smi stays installed on cluster2 (deprecated from Linkerd 2.15"
            ),
            "{:?}",
            p.notes
        );
        // down still removes it
        let down = converse(&Smi, request(Operation::Down, opts), &world).unwrap();
        assert!(down.actions.iter().any(
            |a| matches!(a, Action::HelmUninstall { release, .. } if release == "linkerd-smi")
        ));
    }
}
