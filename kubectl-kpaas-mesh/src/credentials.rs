//! `link --rotate-credentials`: the link step runs with the multicluster stage's
//! `rotate_credentials` setting, once per round, until the stage reports that every link uses
//! its target's newest token and no older token is left. The stage plans each round from the
//! clusters (new token Secrets, credentials, old tokens removed); between rounds this host part
//! restarts the service mirrors the stage names, since they read their credentials at start.

use crate::cli::{MeshArgs, validate_clusters};
use crate::clusters::Clusters;
use crate::commands::{
    MeshExtra, StepContext, discover, mesh_settings, preflight, print_problems, report_dry_run,
    resolve, run_steps,
};
use crate::facts::LiveFacts;
use crate::render;
use crate::rotate::workload;
use crate::upgrade::{self, Workload};
use kpaas_mesh_kit::stages::MULTICLUSTER;
use kpaas_mesh_kit::{CredentialRotation, MulticlusterOutputs};
use kpaas_mesh_plugin_api::{ClusterRef, Operation};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// More rounds than a rotation needs: new tokens, credentials, restarts, old tokens, done
/// (with room for a restart that had to be repeated).
const MAX_ROUNDS: usize = 8;

/// The rotation as the multicluster stage planned it in one round.
fn rotation_of(
    outputs: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<CredentialRotation, String> {
    let out = outputs
        .get(MULTICLUSTER)
        .ok_or("link --rotate-credentials: the multicluster stage handed on nothing")?;
    let mc: MulticlusterOutputs = serde_json::from_value(out.clone())
        .map_err(|e| format!("link --rotate-credentials: unreadable multicluster output ({e})"))?;
    mc.credentials.ok_or_else(|| {
        "link --rotate-credentials: the multicluster plugin does not rotate credentials (is it kpaas-mesh's own?)".into()
    })
}

/// The generation of this rotation's token Secrets: the clock, in seconds.
fn generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

pub async fn rotate(dirs: &[PathBuf], args: MeshArgs) -> Result<ExitCode, String> {
    validate_clusters(&args.clusters, 2)?;
    let clusters = Clusters::load(args.kubeconfig.as_deref(), &args.clusters)?;
    let base = mesh_settings(&args, &MeshExtra::default())?;
    let reg = discover(dirs);
    let pipeline = resolve(&reg, Operation::Link, &args)?;
    if !pipeline.missing.is_empty() {
        return Err(format!(
            "{}; nothing was changed",
            pipeline.missing.join("; ")
        ));
    }
    if !pipeline.steps.iter().any(|r| r.stage() == MULTICLUSTER) {
        return Err(
            "link --rotate-credentials: the multicluster stage is not selected (--only/--skip)"
                .into(),
        );
    }
    let mut held = if args.dry_run {
        None
    } else {
        Some(crate::lock::acquire(&clusters, "link --rotate-credentials").await?)
    };
    let result = rounds(&pipeline, &clusters, &args, base).await;
    if let Some(h) = held.as_mut() {
        h.release().await;
    }
    result
}

async fn rounds(
    pipeline: &crate::commands::Pipeline<'_>,
    clusters: &Clusters,
    args: &MeshArgs,
    mut settings: kpaas_mesh_kit::MeshSettings,
) -> Result<ExitCode, String> {
    let facts = LiveFacts { clusters };
    let refs: Vec<ClusterRef> = clusters.refs().to_vec();
    let mut changed = 0usize;
    let first = generation();
    for round in 0..MAX_ROUNDS {
        settings.rotate_credentials = Some(if round == 0 { first } else { 0 });
        let value = serde_json::to_value(&settings).map_err(|e| e.to_string())?;
        let ctx = StepContext {
            refs: &refs,
            settings: &value,
            facts: &facts,
        };
        if !args.dry_run {
            preflight(pipeline, &ctx).await?;
        }
        let pass = run_steps(pipeline, &ctx, clusters, Operation::Link, args.dry_run).await?;
        let rotation = rotation_of(&pass.outputs)?;
        if args.dry_run {
            eprintln!(
                "note: the dry run shows the first round; the credentials move to the new tokens, the service mirrors restart and the old tokens go in the rounds after it, each planned from the clusters"
            );
            return Ok(report_dry_run(&pass, &pipeline.missing, args.output));
        }
        if !pass.report.is_empty() {
            eprint!("{}", render::report(&pass.report));
        }
        print_problems(&pass.checks);
        changed += pass
            .report
            .iter()
            .map(|(_, o)| o.iter().filter(|o| o.changed).count())
            .sum::<usize>();
        if rotation.complete {
            println!(
                "link --rotate-credentials done on {}: {changed} change(s)",
                clusters.names().join(", ")
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !rotation.restart.is_empty() {
            let mirrors: BTreeSet<Workload> = rotation.restart.iter().map(workload).collect();
            let list: Vec<String> = mirrors.iter().map(|w| w.to_string()).collect();
            eprintln!(
                "link --rotate-credentials: restarting {} (they read the new credentials at start)",
                list.join(", ")
            );
            changed += mirrors.len();
            // the stage compares pod creation with the credentials' write, both in whole seconds
            // of the API server's clock: a pod made in the same second would count as older
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            upgrade::restart(
                clusters,
                &mirrors,
                std::time::Duration::from_secs(args.timeout),
            )
            .await?;
        }
    }
    Err(format!(
        "link --rotate-credentials: not complete after {MAX_ROUNDS} rounds; run it again (it resumes from what the clusters hold)"
    ))
}
