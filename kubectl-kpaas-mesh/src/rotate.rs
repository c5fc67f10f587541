//! `certs rotate issuer|anchor`: the cert and control-plane stages run with the cert stage's
//! `rotate` option, once per phase, until the cert stage reports the rotation complete. The
//! cert stage plans each phase from what the clusters run (so a stopped rotation resumes);
//! this host part carries a phase out, then, when the cert stage names meshed workloads that
//! started before the phase reached their cluster, restarts them (`--restart-workloads`) or
//! stops and lists them.

use crate::cli::{CertsRotateArgs, MeshArgs, RotateWhat, SetOption, validate_clusters};
use crate::clusters::Clusters;
use crate::commands::{
    Pass, StepContext, discover, mesh_settings, preflight, print_problems, report_dry_run, resolve,
    run_steps,
};
use crate::facts::LiveFacts;
use crate::render;
use crate::upgrade::{self, Workload};
use kpaas_mesh_kit::stages::{CERT, CONTROL_PLANE};
use kpaas_mesh_kit::{CertOutputs, Rotation, WorkloadRef};
use kpaas_mesh_plugin_api::{ClusterRef, Operation};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

/// More runs than any rotation needs (anchor: three phases and the promotion, each maybe
/// followed by one restart round).
const MAX_RUNS: usize = 12;

/// The Linkerd every cluster runs: a rotation never changes it. `asked` is `--linkerd-version`
/// when it is not the default.
fn running_release(
    installed: &[Option<String>],
    names: &[String],
    asked: Option<&str>,
) -> Result<String, String> {
    let mut seen = BTreeSet::new();
    for (v, c) in installed.iter().zip(names) {
        match v {
            Some(v) => {
                seen.insert(v.clone());
            }
            None => {
                return Err(format!(
                    "{c} runs no Linkerd control plane (no linkerd/linkerd-config): nothing to rotate; run `kubectl kpaas-mesh up` first"
                ));
            }
        }
    }
    let Some(v) = seen.first().cloned() else {
        return Err("no cluster given".into());
    };
    if seen.len() > 1 {
        return Err(format!(
            "the clusters run different Linkerd releases ({}): bring them to one with `kubectl kpaas-mesh up --linkerd-version …` before rotating",
            seen.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    kpaas_mesh_kit::linkerd::installed(&v).ok_or(format!(
        "the clusters run Linkerd {v}, which this kpaas-mesh does not know (`kubectl kpaas-mesh version` lists the releases)"
    ))?;
    if let Some(asked) = asked {
        let want = kpaas_mesh_kit::linkerd::release(asked)?;
        if want.version != v {
            return Err(format!(
                "certs rotate keeps the Linkerd the clusters run ({v}); --linkerd-version {asked} would change it: upgrade with `up` first"
            ));
        }
    }
    Ok(v)
}

pub(crate) fn workload(w: &WorkloadRef) -> Workload {
    Workload {
        cluster: w.cluster.clone(),
        namespace: w.namespace.clone(),
        kind: match w.kind.as_str() {
            "StatefulSet" => "StatefulSet",
            "DaemonSet" => "DaemonSet",
            _ => "Deployment",
        },
        name: w.name.clone(),
    }
}

fn rotation_of(pass: &Pass) -> Result<Rotation, String> {
    let out = pass
        .outputs
        .get(CERT)
        .ok_or("certs rotate: the cert stage handed on nothing")?;
    let certs: CertOutputs = serde_json::from_value(out.clone())
        .map_err(|e| format!("certs rotate: unreadable cert stage output ({e})"))?;
    certs.rotation.ok_or_else(|| {
        "certs rotate: the cert plugin does not know rotations (is it kpaas-mesh's own?)".into()
    })
}

/// The stages and options a rotation runs with.
fn rotation_args(args: &CertsRotateArgs) -> MeshArgs {
    let mut mesh = args.mesh.clone();
    mesh.only = vec![CERT.to_string(), CONTROL_PLANE.to_string()];
    mesh.skip.clear();
    let set = |key: &str, value: String| SetOption {
        target: CERT.into(),
        key: key.into(),
        value,
    };
    mesh.set.push(set("rotate", args.what.name().into()));
    if let (Some(c), Some(k)) = (&args.anchor_cert, &args.anchor_key) {
        mesh.set.push(set("anchor_cert", c.display().to_string()));
        mesh.set.push(set("anchor_key", k.display().to_string()));
    }
    mesh
}

pub async fn certs_rotate(dirs: &[PathBuf], args: CertsRotateArgs) -> Result<ExitCode, String> {
    if args.what == RotateWhat::Issuer && args.anchor_cert.is_some() {
        return Err(
            "--anchor-cert/--anchor-key: only `certs rotate anchor` takes a new anchor".into(),
        );
    }
    let mut mesh = rotation_args(&args);
    validate_clusters(&mesh.clusters, 1)?;
    let clusters = Clusters::load(mesh.kubeconfig.as_deref(), &mesh.clusters)?;
    let facts = LiveFacts {
        clusters: &clusters,
    };
    let installed = upgrade::installed(&facts, &clusters).await;
    let asked = (mesh.linkerd_version != kpaas_mesh_kit::linkerd::DEFAULT_VERSION)
        .then_some(mesh.linkerd_version.as_str());
    mesh.linkerd_version = running_release(&installed, &clusters.names(), asked)?;
    let settings = serde_json::to_value(mesh_settings(&mesh, &Default::default())?)
        .map_err(|e| e.to_string())?;
    let reg = discover(dirs);
    let pipeline = resolve(&reg, Operation::Up, &mesh)?;
    if !pipeline.missing.is_empty() {
        return Err(format!(
            "{}; nothing was changed",
            pipeline.missing.join("; ")
        ));
    }
    let refs: Vec<ClusterRef> = clusters.refs().to_vec();
    let ctx = StepContext {
        refs: &refs,
        settings: &settings,
        facts: &facts,
    };
    let what = args.what.name();
    let mut held = if mesh.dry_run {
        None
    } else {
        Some(crate::lock::acquire(&clusters, &format!("certs rotate {what}")).await?)
    };
    let result = phases(&pipeline, &ctx, &clusters, &mesh, what).await;
    if let Some(h) = held.as_mut() {
        h.release().await;
    }
    result
}

/// Runs the phases of a rotation until the cert stage reports it complete.
async fn phases(
    pipeline: &crate::commands::Pipeline<'_>,
    ctx: &StepContext<'_, LiveFacts<'_>>,
    clusters: &Clusters,
    mesh: &MeshArgs,
    what: &str,
) -> Result<ExitCode, String> {
    let mut changed = 0usize;
    for _ in 0..MAX_RUNS {
        if !mesh.dry_run {
            preflight(pipeline, ctx).await?;
        }
        let pass = run_steps(pipeline, ctx, clusters, Operation::Up, mesh.dry_run).await?;
        let rotation = rotation_of(&pass)?;
        if mesh.dry_run {
            if !rotation.complete && rotation.to_phase < rotation.phases {
                eprintln!(
                    "note: the dry run shows the next phase only; each later one is planned from the clusters once the one before is in place"
                );
            }
            return Ok(report_dry_run(&pass, &pipeline.missing, mesh.output));
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
                "certs rotate {what} done on {}: {changed} change(s){}",
                clusters.names().join(", "),
                if rotation.new_anchor.is_empty() {
                    String::new()
                } else {
                    format!("; trust anchor {}", rotation.new_anchor)
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !rotation.restart.is_empty() {
            let stale: BTreeSet<Workload> = rotation.restart.iter().map(workload).collect();
            let list: Vec<String> = stale.iter().map(|w| w.to_string()).collect();
            if !mesh.restart_workloads {
                return Err(format!(
                    "certs rotate {what}: phase {}/{} is done on every cluster; restart these meshed workloads (their proxies still hold the previous certificates), then run `kubectl kpaas-mesh certs rotate {what}` again to go on: {} (or give --restart-workloads)",
                    rotation.from_phase,
                    rotation.phases,
                    list.join(", ")
                ));
            }
            eprintln!("certs rotate {what}: restarting {}", list.join(", "));
            upgrade::restart(
                clusters,
                &stale,
                std::time::Duration::from_secs(mesh.timeout),
            )
            .await?;
        }
    }
    Err(format!(
        "certs rotate {what}: not complete after {MAX_RUNS} runs; `kubectl kpaas-mesh certs status` shows where each cluster is"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_keeps_the_one_release_every_cluster_runs() {
        let names = ["cluster1".to_string(), "cluster2".to_string()];
        let v = |s: &str| Some(s.to_string());
        assert_eq!(
            running_release(&[v("edge-25.4.4"), v("edge-25.4.4")], &names, None).unwrap(),
            "edge-25.4.4"
        );
        assert_eq!(
            running_release(&[v("edge-25.4.4"), v("edge-25.4.4")], &names, Some("2.18")).unwrap(),
            "edge-25.4.4"
        );
        let err = running_release(&[v("edge-25.4.4"), v("edge-25.4.4")], &names, Some("2.20"))
            .unwrap_err();
        assert!(
            err.starts_with("certs rotate keeps the Linkerd the clusters run (edge-25.4.4)"),
            "{err}"
        );
        let err =
            running_release(&[v("edge-25.4.4"), v("stable-2.14.10")], &names, None).unwrap_err();
        assert!(
            err.starts_with(
                "the clusters run different Linkerd releases (edge-25.4.4, stable-2.14.10)"
            ),
            "{err}"
        );
        let err = running_release(&[v("edge-25.4.4"), None], &names, None).unwrap_err();
        assert!(
            err.starts_with("cluster2 runs no Linkerd control plane"),
            "{err}"
        );
        let err = running_release(&[v("edge-99.1.1"), v("edge-99.1.1")], &names, None).unwrap_err();
        assert!(err.contains("which this kpaas-mesh does not know"), "{err}");
    }
}
