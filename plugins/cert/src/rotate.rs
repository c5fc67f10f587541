//! `certs rotate issuer` and `certs rotate anchor`: one phase per run, planned from what the
//! clusters run (their `linkerd-identity-trust-roots` and `linkerd-identity-issuer`) and what
//! the certs dir holds, so an interrupted rotation resumes where it stopped.
//!
//! Issuer: a new issuer from the same anchor for every cluster (unless the certs dir already
//! holds one that some cluster does not run yet: then that one is rolled out).
//!
//! Anchor, Linkerd's "manually rotating control plane TLS credentials" done on every cluster in
//! lockstep. With A = `ca.crt` and B = `ca-new.crt` (generated, or imported with
//! `--anchor-cert/--anchor-key`), each cluster is in one state:
//!
//! | state | trust roots | issuer signed by |
//! |---|---|---|
//! | 0 | A | A |
//! | 1 | B + A | A |
//! | 2 | B + A | B |
//! | 3 | B | B |
//!
//! A run moves every cluster to the lowest state any cluster is in plus one, so a phase starts
//! only when every cluster finished the previous one. Between phases the meshed workloads
//! whose pods started before the last change on their cluster must restart (their proxies
//! hold the old roots or a leaf from the old issuer): while there are such pods the plan
//! holds no cluster action and lists them. Once every cluster is in state 3, the last run
//! makes B the certs dir's `ca.crt`/`ca.key` (A's certificate is kept as `ca-old.crt`).

use crate::{Ca, File, Files, Paths, load_ca, pki, plan_key_modes, secs, write};
use kpaas_mesh_kit::anchors::{self, fingerprint};
use kpaas_mesh_kit::linkerd::{LINKERD_NS, MULTICLUSTER_NS, SMI_NS};
use kpaas_mesh_kit::{CertOptions, CertOutputs, Rotation, WorkloadRef};
use kpaas_mesh_plugin_api::{FactAnswer, FactQuery, Plan, StageRequest};
use pki::{CertInfo, Role};
use time::OffsetDateTime;

/// The new anchor while an anchor rotation runs.
pub const NEW_ANCHOR_CRT: &str = "ca-new.crt";
pub const NEW_ANCHOR_KEY: &str = "ca-new.key";
/// The replaced anchor's certificate, written when the rotation completes.
pub const OLD_ANCHOR_CRT: &str = "ca-old.crt";

/// The label Linkerd's proxy injector puts on every meshed pod.
pub const MESHED_LABEL: &str = "linkerd.io/control-plane-ns";

/// Meshed pods of a cluster (all namespaces).
pub fn meshed_pods_query(cluster: &str) -> FactQuery {
    kpaas_mesh_kit::facts::list_query(cluster, "v1", "Pod", None, Some(MESHED_LABEL))
}

/// Every cluster fact a rotation plans from.
pub fn queries(request: &StageRequest) -> Vec<FactQuery> {
    request
        .clusters
        .iter()
        .flat_map(|c| {
            [
                anchors::trust_roots_query(&c.name),
                anchors::issuer_secret_query(&c.name),
                meshed_pods_query(&c.name),
            ]
        })
        .collect()
}

/// What one cluster runs.
struct Running {
    cluster: String,
    roots: Vec<CertInfo>,
    issuer: CertInfo,
    /// When the roots or the issuer last changed (RFC 3339).
    changed: String,
}

fn object<'a>(
    request: &'a StageRequest,
    q: &FactQuery,
    cluster: &str,
    what: &str,
) -> Result<&'a serde_json::Value, String> {
    match request.fact(q) {
        Some(FactAnswer::Object { object: Some(o) }) => Ok(o),
        Some(FactAnswer::Error { message }) => Err(format!("{cluster}: {message}")),
        _ => Err(format!(
            "{cluster}: no {what} in namespace linkerd: the cluster runs no Linkerd control plane to rotate (run `kubectl kpaas-mesh up` first)"
        )),
    }
}

fn running(request: &StageRequest) -> Result<Vec<Running>, String> {
    let mut out = Vec::new();
    for c in &request.clusters {
        let cm = object(
            request,
            &anchors::trust_roots_query(&c.name),
            &c.name,
            "ConfigMap linkerd-identity-trust-roots",
        )?;
        let secret = object(
            request,
            &anchors::issuer_secret_query(&c.name),
            &c.name,
            "Secret linkerd-identity-issuer",
        )?;
        let roots = pki::parse_bundle(
            &format!("{}: linkerd-identity-trust-roots", c.name),
            &anchors::roots_bundle(cm),
        )?;
        let crt = anchors::secret_text(secret, "crt.pem").ok_or(format!(
            "{}: linkerd-identity-issuer holds no crt.pem",
            c.name
        ))?;
        let issuer = pki::parse_cert(&format!("{}: linkerd-identity-issuer", c.name), &crt)?;
        let changed = [anchors::last_written(cm), anchors::last_written(secret)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_default();
        out.push(Running {
            cluster: c.name.clone(),
            roots,
            issuer,
            changed,
        });
    }
    Ok(out)
}

fn fp(c: &CertInfo) -> String {
    fingerprint(&c.der)
}

fn same_roots(roots: &[CertInfo], want: &[&CertInfo]) -> bool {
    roots.len() == want.len() && want.iter().all(|w| roots.iter().any(|r| r.der == w.der))
}

/// "cluster trusts fp+fp" for every cluster whose roots are not exactly `anchor`.
fn not_only(live: &[Running], anchor: &CertInfo) -> Vec<String> {
    live.iter()
        .filter(|r| !same_roots(&r.roots, &[anchor]))
        .map(|r| {
            format!(
                "{} trusts {}",
                r.cluster,
                r.roots.iter().map(fp).collect::<Vec<_>>().join("+")
            )
        })
        .collect()
}

fn signed_by(issuer: &CertInfo, anchor: &CertInfo) -> bool {
    pki::verify_signed_by(issuer, anchor).is_ok()
}

/// The workloads of meshed pods on `cluster` that started before `changed` (outside Linkerd's
/// own namespaces, which the control-plane release rolls itself).
fn stale_workloads(request: &StageRequest, r: &Running) -> Vec<WorkloadRef> {
    let Some(FactAnswer::Objects { items }) = request.fact(&meshed_pods_query(&r.cluster)) else {
        return vec![];
    };
    let mut out: Vec<WorkloadRef> = items
        .iter()
        .filter(|p| {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
            ![LINKERD_NS, MULTICLUSTER_NS, SMI_NS].contains(&ns)
                && p["metadata"]["deletionTimestamp"].is_null()
                && p["metadata"]["creationTimestamp"]
                    .as_str()
                    .is_some_and(|t| t < r.changed.as_str())
        })
        .flat_map(|p| {
            let labels = &p["metadata"]["labels"];
            [
                ("linkerd.io/proxy-deployment", "Deployment"),
                ("linkerd.io/proxy-statefulset", "StatefulSet"),
                ("linkerd.io/proxy-daemonset", "DaemonSet"),
            ]
            .into_iter()
            .filter_map(|(label, kind)| {
                labels[label].as_str().map(|name| WorkloadRef {
                    cluster: r.cluster.clone(),
                    namespace: p["metadata"]["namespace"].as_str().unwrap_or("").into(),
                    kind: kind.into(),
                    name: name.into(),
                })
            })
            .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn outputs(
    roots: &[&CertInfo],
    issuer: &CertInfo,
    issuer_key: &crate::keys::P256Key,
    rotation: Rotation,
) -> Result<serde_json::Value, String> {
    serde_json::to_value(CertOutputs {
        trust_anchor_pem: roots.iter().map(|r| r.pem.as_str()).collect(),
        issuer_cert_pem: issuer.pem.clone(),
        issuer_key_pem: pki::key_pem(issuer_key),
        rotation: Some(rotation),
    })
    .map_err(|e| e.to_string())
}

fn load_pair(
    crt: &Option<File>,
    key: &Option<File>,
    now: OffsetDateTime,
    role: Role,
) -> Result<Option<Ca>, String> {
    match (crt, key) {
        (Some(c), k) => load_ca(c, k.as_ref(), now, role).map(Some),
        (None, Some(k)) => Err(format!("{} exists without its certificate", k.path)),
        (None, None) => Ok(None),
    }
}

fn issue(
    opts: &CertOptions,
    paths: &Paths,
    anchor: &Ca,
    anchor_path: &str,
    now: OffsetDateTime,
    plan: &mut Plan,
) -> Result<(CertInfo, crate::keys::P256Key), String> {
    let key = anchor.key.as_ref().ok_or(format!(
        "the key of {anchor_path} is missing: a new issuer needs it"
    ))?;
    let (cert, key) = crate::issue_into(opts, paths, &anchor.cert, key, now, plan)?;
    plan.notes.push(format!(
        "issuing a new issuer from {anchor_path} into {} (expires {})",
        paths.issuer_crt,
        pki::rfc3339(cert.not_after)
    ));
    Ok((cert, key))
}

/// The local issuer if it is valid and signed by `anchor`.
fn local_issuer(
    files: &Files,
    anchor: &CertInfo,
    now: OffsetDateTime,
) -> Option<(CertInfo, crate::keys::P256Key)> {
    let ca = load_pair(&files.issuer_crt, &files.issuer_key, now, Role::Issuer).ok()??;
    let key = ca.key?.p256?;
    signed_by(&ca.cert, anchor).then_some((ca.cert, key))
}

/// `certs rotate issuer`.
pub(crate) fn plan_issuer_rotation(
    request: &StageRequest,
    opts: &CertOptions,
    paths: &Paths,
    files: &Files,
    now: OffsetDateTime,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let anchor = load_pair(&files.ca_crt, &files.ca_key, now, Role::Anchor)?.ok_or(format!(
        "{} is missing: the issuer is rotated from the mesh's trust anchor",
        paths.ca_crt
    ))?;
    let live = running(request)?;
    let others = not_only(&live, &anchor.cert);
    if !others.is_empty() {
        return Err(format!(
            "cannot rotate the issuer: not every cluster trusts exactly {} = {} ({}); finish `kubectl kpaas-mesh certs rotate anchor` first, or give the mesh's own --certs-dir",
            paths.ca_crt,
            fp(&anchor.cert),
            others.join(", ")
        ));
    }
    let (issuer, key, from_phase) = match local_issuer(files, &anchor.cert, now) {
        Some((i, k)) if live.iter().any(|r| r.issuer.der != i.der) => {
            plan.notes.push(format!(
                "resuming: {} (expires {}) is not yet on {}",
                paths.issuer_crt,
                pki::rfc3339(i.not_after),
                live.iter()
                    .filter(|r| r.issuer.der != i.der)
                    .map(|r| r.cluster.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            (i, k, 0)
        }
        _ => {
            let (i, k) = issue(opts, paths, &anchor, &paths.ca_crt, now, &mut plan)?;
            (i, k, 0)
        }
    };
    plan_key_modes(files, &mut plan);
    plan.outputs = outputs(
        &[&anchor.cert],
        &issuer,
        &key,
        Rotation {
            kind: "issuer".into(),
            from_phase,
            to_phase: 1,
            phases: 1,
            complete: true,
            ..Rotation::default()
        },
    )?;
    Ok(plan)
}

/// The state (0–3) of one cluster in rotating `old` → `new`, or why it is in none.
fn state(r: &Running, old: &CertInfo, new: &CertInfo) -> Result<u8, String> {
    let by_old = signed_by(&r.issuer, old);
    let by_new = signed_by(&r.issuer, new);
    if same_roots(&r.roots, &[old]) && by_old {
        Ok(0)
    } else if same_roots(&r.roots, &[new, old]) && by_old {
        Ok(1)
    } else if same_roots(&r.roots, &[new, old]) && by_new {
        Ok(2)
    } else if same_roots(&r.roots, &[new]) && by_new {
        Ok(3)
    } else {
        Err(format!(
            "{} is in no phase of rotating {} -> {}: it trusts {} and its issuer is signed by {}",
            r.cluster,
            fp(old),
            fp(new),
            r.roots.iter().map(fp).collect::<Vec<_>>().join("+"),
            r.roots
                .iter()
                .find(|a| signed_by(&r.issuer, a))
                .map(fp)
                .unwrap_or_else(|| "none of its roots".into())
        ))
    }
}

/// `status` / `check` during an anchor rotation (`ca-new.crt` differs from `ca.crt`): a row
/// that names the phase every cluster finished, warns while one is pending and fails when
/// the clusters are in no phase of it. `None` when no rotation is under way.
pub(crate) fn progress(
    request: &StageRequest,
    files: &Files,
) -> Option<kpaas_mesh_plugin_api::CheckResult> {
    use kpaas_mesh_plugin_api::{CheckResult, CheckStatus};
    let parse = |f: &Option<File>| {
        f.as_ref()
            .and_then(|f| pki::parse_cert(&f.path, &f.text).ok())
    };
    let (old, new) = (parse(&files.ca_crt)?, parse(&files.new_crt)?);
    if old.der == new.der || request.clusters.is_empty() {
        return None;
    }
    let row = |status, detail: String, items: Vec<String>| {
        CheckResult {
        group: crate::CHECK_GROUP.to_string(),
        name: format!("trust-anchor rotation {} -> {}", fp(&old), fp(&new)),
        status,
        detail,
        items,
        hint: "continue it with `kubectl kpaas-mesh certs rotate anchor` (it resumes from what the clusters run)".into(),
    }
    };
    let states: Result<Vec<(String, u8)>, String> = running(request).and_then(|live| {
        live.iter()
            .map(|r| state(r, &old, &new).map(|s| (r.cluster.clone(), s)))
            .collect()
    });
    Some(match states {
        Err(e) => row(CheckStatus::Fail, e, vec![]),
        Ok(states) => {
            let low = states.iter().map(|(_, s)| *s).min().unwrap_or(0);
            let items = states
                .iter()
                .map(|(c, s)| format!("{c}: phase {s}/3 done"))
                .collect();
            row(
                CheckStatus::Warn,
                format!(
                    "in progress: {} on every cluster{}",
                    if low == 0 {
                        "not started".to_string()
                    } else {
                        format!("{} done", phase_summary(low))
                    },
                    if low == 3 {
                        "; the certs dir still names the old anchor ca.crt"
                    } else {
                        ""
                    }
                ),
                items,
            )
        }
    })
}

/// What phase `n` does, for notes and dry runs.
pub fn phase_summary(n: u8) -> &'static str {
    match n {
        1 => "phase 1/3: every cluster trusts the new and the old anchor",
        2 => "phase 2/3: every cluster gets an issuer signed by the new anchor",
        3 => "phase 3/3: every cluster drops the old anchor",
        _ => "the certs dir's ca.crt becomes the new anchor",
    }
}

/// `certs rotate anchor`.
pub(crate) fn plan_anchor_rotation(
    request: &StageRequest,
    opts: &CertOptions,
    paths: &Paths,
    files: &Files,
    now: OffsetDateTime,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let dir = opts.dir.trim_end_matches('/');
    let at = |f: &str| {
        if dir.is_empty() {
            f.to_string()
        } else {
            format!("{dir}/{f}")
        }
    };
    let (new_crt_path, new_key_path) = (at(NEW_ANCHOR_CRT), at(NEW_ANCHOR_KEY));
    let current = files.ca_crt.as_ref().ok_or(format!(
        "{} is missing: nothing to rotate from",
        paths.ca_crt
    ))?;
    let current_cert = pki::parse_cert(&current.path, &current.text)?;
    let pending = load_pair(&files.new_crt, &files.new_key, now, Role::Anchor)?;
    let live = running(request)?;

    // The rotation finished on every cluster, or the certs dir is being promoted: B = ca.crt.
    if let Some(b) = pending.as_ref().filter(|b| b.cert.der == current_cert.der) {
        return finish(paths, files, &live, b, &new_key_path, now, plan);
    }

    // Which anchor replaces ca.crt: the pending one, an import, or a new one.
    let old = load_ca(current, files.ca_key.as_ref(), now, Role::Anchor)?;
    let new = match (pending, &files.import) {
        (Some(b), Some((c, _))) => {
            let imported = pki::parse_cert(&c.path, &c.text)?;
            if imported.der != b.cert.der {
                return Err(format!(
                    "{new_crt_path} already holds another new anchor ({}) than --anchor-cert {} ({}); finish that rotation or remove {new_crt_path} and {new_key_path}",
                    fp(&b.cert),
                    c.path,
                    fp(&imported)
                ));
            }
            b
        }
        (Some(b), None) => b,
        (None, import) => {
            let others = not_only(&live, &old.cert);
            if !others.is_empty() {
                return Err(format!(
                    "cannot start an anchor rotation: not every cluster trusts exactly {} = {} ({}) and {new_crt_path} does not exist",
                    paths.ca_crt,
                    fp(&old.cert),
                    others.join(", ")
                ));
            }
            let b = match import {
                Some((c, k)) => {
                    let b = load_ca(c, Some(k), now, Role::Anchor)?;
                    plan.notes
                        .push(format!("new trust anchor imported from {}", c.path));
                    b
                }
                None => {
                    let made = pki::generate_anchor(now, secs(opts.anchor_validity_secs))?;
                    let cert = pki::parse_cert(&new_crt_path, &made.cert_pem)?;
                    plan.notes.push(format!(
                        "generating the new trust anchor {new_crt_path} (ECDSA P-256, expires {})",
                        pki::rfc3339(cert.not_after)
                    ));
                    Ca {
                        cert,
                        key: Some(made.key.into()),
                    }
                }
            };
            plan.actions
                .push(write(&new_crt_path, b.cert.pem.clone(), false));
            plan.actions.push(write(
                &new_key_path,
                pki::anchor_key_pem(b.key.as_ref().expect("a new anchor has its key")),
                true,
            ));
            b
        }
    };
    if new.cert.der == old.cert.der {
        return Err(format!(
            "the new anchor is the one in {} already",
            paths.ca_crt
        ));
    }

    let mut states = Vec::new();
    for r in &live {
        states.push(state(r, &old.cert, &new.cert)?);
    }
    let low = *states.iter().min().unwrap_or(&0);
    if let Some((r, s)) = live.iter().zip(&states).find(|(_, s)| **s > low + 1) {
        return Err(format!(
            "{} is at phase {s} while another cluster has not finished phase {}: the clusters were changed by other means; bring them back to one phase",
            r.cluster,
            low + 1
        ));
    }
    let mut rotation = Rotation {
        kind: "anchor".into(),
        from_phase: low,
        to_phase: low,
        phases: 3,
        complete: false,
        restart: vec![],
        old_anchor: fp(&old.cert),
        new_anchor: fp(&new.cert),
    };
    // A phase starts once the meshed workloads took the previous one; a phase that some
    // clusters already finished (a run stopped half-way) is finished without that gate.
    if low > 0 && states.iter().all(|s| *s == low) {
        rotation.restart = live
            .iter()
            .flat_map(|r| stale_workloads(request, r))
            .collect();
    }
    let target = if rotation.restart.is_empty() {
        low + 1
    } else {
        low
    };

    let (roots, issuer): (Vec<&CertInfo>, (CertInfo, crate::keys::P256Key)) = match target {
        1 => (
            vec![&new.cert, &old.cert],
            local_issuer(files, &old.cert, now).ok_or(format!(
                "{} is not a valid issuer signed by {}: phase 1 keeps every cluster's issuer and needs it (run `kubectl kpaas-mesh certs rotate issuer` first)",
                paths.issuer_crt, paths.ca_crt
            ))?,
        ),
        2 => (
            vec![&new.cert, &old.cert],
            match local_issuer(files, &new.cert, now) {
                Some(i) => i,
                None => issue(opts, paths, &new, &new_crt_path, now, &mut plan)?,
            },
        ),
        3 | 4 => (
            vec![&new.cert],
            local_issuer(files, &new.cert, now).ok_or(format!(
                "{} is not signed by the new anchor {new_crt_path} although every cluster runs such an issuer; restore it (phase 2 wrote it)",
                paths.issuer_crt
            ))?,
        ),
        // Waiting for restarts: the plan repeats what the clusters run (no change).
        _ => {
            let roots = match low {
                1 | 2 => vec![&new.cert, &old.cert],
                _ => vec![&new.cert],
            };
            let anchor = if low == 1 { &old.cert } else { &new.cert };
            let issuer = local_issuer(files, anchor, now).ok_or(format!(
                "{} is not the issuer the clusters run at phase {low}",
                paths.issuer_crt
            ))?;
            (roots, issuer)
        }
    };
    rotation.to_phase = target.min(3);
    if target == 4 {
        // Every cluster runs on B alone and its workloads restarted: B becomes the certs dir's
        // anchor (certificate first: a run stopped in between finds ca.crt = ca-new.crt and
        // rewrites the key, see `finish`).
        plan.actions
            .push(write(&at(OLD_ANCHOR_CRT), old.cert.pem.clone(), false));
        plan.actions
            .push(write(&paths.ca_crt, new.cert.pem.clone(), false));
        plan.actions.push(write(
            &paths.ca_key,
            pki::anchor_key_pem(
                new.key
                    .as_ref()
                    .ok_or(format!("{new_key_path} is missing"))?,
            ),
            true,
        ));
        plan.notes.push(format!(
            "trust anchor rotated on every cluster: {} is now {} ({}); the old anchor's certificate is kept as {}",
            paths.ca_crt,
            rotation.new_anchor,
            new_crt_path,
            at(OLD_ANCHOR_CRT)
        ));
        rotation.complete = true;
    } else if target > low {
        plan.notes.push(format!(
            "rotating the trust anchor {} -> {}: {}",
            rotation.old_anchor,
            rotation.new_anchor,
            phase_summary(target)
        ));
        for next in target + 1..=4 {
            // each after the meshed workloads restarted
            plan.notes.push(format!("then {}", phase_summary(next)));
        }
    } else {
        plan.notes.push(format!(
            "rotating the trust anchor {} -> {}: {} is done; {} meshed workload(s) must restart first: {}",
            rotation.old_anchor,
            rotation.new_anchor,
            phase_summary(low),
            rotation.restart.len(),
            rotation
                .restart
                .iter()
                .map(|w| format!("{}: {} {}/{}", w.cluster, w.kind, w.namespace, w.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    plan_key_modes(files, &mut plan);
    plan.outputs = outputs(&roots, &issuer.0, &issuer.1, rotation)?;
    Ok(plan)
}

/// The certs dir says B (`ca.crt` = `ca-new.crt`): every cluster must run on B alone; a
/// promotion stopped between `ca.crt` and `ca.key` is finished.
fn finish(
    paths: &Paths,
    files: &Files,
    live: &[Running],
    new: &Ca,
    new_key_path: &str,
    now: OffsetDateTime,
    mut plan: Plan,
) -> Result<Plan, String> {
    let others: Vec<String> = live
        .iter()
        .filter(|r| !same_roots(&r.roots, &[&new.cert]) || !signed_by(&r.issuer, &new.cert))
        .map(|r| r.cluster.clone())
        .collect();
    if !others.is_empty() {
        return Err(format!(
            "{} is the new anchor {} already, but {} do not run on it alone; restore the old anchor as {} to resume the rotation",
            paths.ca_crt,
            fp(&new.cert),
            others.join(", "),
            paths.ca_crt
        ));
    }
    let issuer = local_issuer(files, &new.cert, now).ok_or(format!(
        "{} is not signed by {}",
        paths.issuer_crt, paths.ca_crt
    ))?;
    let key = new
        .key
        .as_ref()
        .ok_or(format!("{new_key_path} is missing"))?;
    let key_ok = files
        .ca_key
        .as_ref()
        .and_then(|k| pki::parse_anchor_key(&k.path, &k.text).ok())
        .is_some_and(|k| k.public == key.public);
    if !key_ok {
        plan.actions
            .push(write(&paths.ca_key, pki::anchor_key_pem(key), true));
        plan.notes.push(format!(
            "finishing the promotion of the new anchor: {} from {new_key_path}",
            paths.ca_key
        ));
    }
    plan_key_modes(files, &mut plan);
    plan.notes.push(format!(
        "trust anchor {} on every cluster; nothing left to rotate",
        fp(&new.cert)
    ));
    plan.outputs = outputs(
        &[&new.cert],
        &issuer.0,
        &issuer.1,
        Rotation {
            kind: "anchor".into(),
            from_phase: 3,
            to_phase: 3,
            phases: 3,
            complete: true,
            new_anchor: fp(&new.cert),
            ..Rotation::default()
        },
    )?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    //! Rotations driven against simulated clusters: each run's plan is applied to the certs
    //! dir as the host does, and its outputs are "rolled out" to the clusters the way the
    //! control-plane release would put them (roots ConfigMap, issuer Secret, a new write time).
    use super::*;
    use crate::CertStage;
    use crate::tests::{apply, dir, read, up, write};
    use base64::Engine;
    use kpaas_mesh_kit::testkit::{World, clusters, converse};
    use kpaas_mesh_plugin_api::{Action, Operation};

    #[derive(Clone)]
    struct Cluster {
        roots: String,
        crt: String,
        key: String,
        changed: String,
    }

    struct Mesh {
        clusters: Vec<Cluster>,
        /// (cluster index, namespace, deployment, creation time)
        pods: Vec<(usize, &'static str, &'static str, String)>,
    }

    fn t(minute: u32) -> String {
        format!("2026-12-03T10:{minute:02}:00Z")
    }

    impl Mesh {
        fn installed(opts: &CertOptions, n: usize) -> Mesh {
            let c = Cluster {
                roots: read(opts, "ca.crt"),
                crt: read(opts, "issuer.crt"),
                key: read(opts, "issuer.key"),
                changed: t(0),
            };
            Mesh {
                clusters: vec![c; n],
                pods: vec![
                    (0, "sample", "helloworld-v1", t(1)),
                    (1, "linkerd", "linkerd-identity", t(0)),
                ],
            }
        }

        fn world(&self) -> World {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let mut w = World::new().with_disk();
            for (i, c) in self.clusters.iter().enumerate() {
                let name = format!("cluster{}", i + 1);
                let meta =
                    serde_json::json!({"managedFields": [{"manager": "helm", "time": c.changed}]});
                w.add_object(
                    &name,
                    "v1",
                    "ConfigMap",
                    Some("linkerd"),
                    anchors::TRUST_ROOTS_CONFIGMAP,
                    serde_json::json!({"metadata": meta, "data": {"ca-bundle.crt": c.roots}}),
                );
                w.add_object(&name, "v1", "Secret", Some("linkerd"), anchors::ISSUER_SECRET,
                    serde_json::json!({"metadata": meta, "data": {"crt.pem": b64(&c.crt), "key.pem": b64(&c.key)}}));
            }
            for (i, (c, ns, deploy, created)) in self.pods.iter().enumerate() {
                w.add(&format!("cluster{}", c + 1), serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{deploy}-{i}"), "namespace": ns, "creationTimestamp": created,
                        "labels": {MESHED_LABEL: "linkerd", "linkerd.io/proxy-deployment": deploy}}}));
            }
            w
        }

        /// What the control-plane release does with the cert stage's outputs on `which` clusters.
        fn roll_out(&mut self, out: &CertOutputs, which: &[usize], at: String) {
            for &i in which {
                let c = &mut self.clusters[i];
                let next = Cluster {
                    roots: out.trust_anchor_pem.clone(),
                    crt: out.issuer_cert_pem.clone(),
                    key: out.issuer_key_pem.clone(),
                    changed: c.changed.clone(),
                };
                if next.roots != c.roots || next.crt != c.crt {
                    *c = Cluster {
                        changed: at.clone(),
                        ..next
                    };
                }
            }
        }

        fn restart(&mut self, at: String) {
            for p in &mut self.pods {
                p.3 = at.clone();
            }
        }
    }

    fn rotate(opts: &CertOptions, kind: &str, mesh: &Mesh) -> Result<(Plan, CertOutputs), String> {
        let mut opts = opts.clone();
        opts.rotate = Some(kind.into());
        let mut req = StageRequest::new(Operation::Up, clusters(mesh.clusters.len()));
        req.options = serde_json::to_value(&opts).unwrap();
        let plan = converse(&CertStage, req, &mesh.world())?;
        let out: CertOutputs = serde_json::from_value(plan.outputs.clone()).unwrap();
        Ok((plan, out))
    }

    fn writes(p: &Plan) -> Vec<String> {
        p.actions
            .iter()
            .map(|a| match a {
                Action::WriteFile { path, .. } => path.rsplit('/').next().unwrap().to_string(),
                other => panic!("cert planned {other:?}"),
            })
            .collect()
    }

    fn fps(bundle: &str) -> Vec<String> {
        anchors::fingerprints(bundle).unwrap()
    }

    #[test]
    fn issuer_rotation_rolls_a_new_issuer_out_and_resumes_an_interrupted_one() {
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let mut mesh = Mesh::installed(&opts, 2);
        let before = read(&opts, "issuer.crt");
        let (p, out) = rotate(&opts, "issuer", &mesh).unwrap();
        assert_eq!(writes(&p), ["issuer.crt", "issuer.key"]);
        apply(&p);
        let new = read(&opts, "issuer.crt");
        assert_ne!(new, before);
        assert_eq!(out.issuer_cert_pem, new);
        assert_eq!(
            out.trust_anchor_pem,
            read(&opts, "ca.crt"),
            "the roots stay"
        );
        let r = out.rotation.unwrap();
        assert!(r.complete && r.kind == "issuer");
        // Stopped before the clusters got it: the same issuer is rolled out, none is issued.
        let (p, again) = rotate(&opts, "issuer", &mesh).unwrap();
        assert!(writes(&p).is_empty(), "{:?}", p.actions);
        assert_eq!(again.issuer_cert_pem, new);
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("resuming") && n.contains("cluster1, cluster2")),
            "{:?}",
            p.notes
        );
        mesh.roll_out(&again, &[0, 1], t(5));
        // ... and `up` plans what the clusters now run.
        let (p, _) = rotate(&opts, "issuer", &mesh).unwrap();
        assert_eq!(
            writes(&p),
            ["issuer.crt", "issuer.key"],
            "a further run is a further rotation"
        );
        // Not while an anchor rotation is under way.
        mesh.clusters[1].roots = format!("{}{}", read(&opts, "ca.crt"), read(&opts, "ca.crt"));
        let other = dir();
        up(&other.1).unwrap();
        mesh.clusters[1].roots = format!("{}{}", read(&other.1, "ca.crt"), read(&opts, "ca.crt"));
        let err = rotate(&opts, "issuer", &mesh).unwrap_err();
        assert!(
            err.starts_with("cannot rotate the issuer: not every cluster trusts exactly")
                && err.contains("cluster2 trusts"),
            "{err}"
        );
    }

    #[test]
    fn anchor_rotation_moves_every_cluster_phase_by_phase_and_resumes() {
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let old = fps(&read(&opts, "ca.crt"))[0].clone();
        let old_issuer = read(&opts, "issuer.crt");
        let mut mesh = Mesh::installed(&opts, 3);

        // phase 1: a new anchor B, bundled with A on every cluster; the issuer stays.
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(writes(&p), ["ca-new.crt", "ca-new.key"]);
        apply(&p);
        let new = fps(&read(&opts, "ca-new.crt"))[0].clone();
        assert_eq!(fps(&out.trust_anchor_pem), [new.clone(), old.clone()]);
        assert_eq!(out.issuer_cert_pem, old_issuer);
        let r = out.rotation.clone().unwrap();
        assert_eq!((r.from_phase, r.to_phase, r.complete), (0, 1, false));
        assert!(
            p.notes.iter().any(|n| n.contains("phase 1/3")),
            "{:?}",
            p.notes
        );
        assert!(
            p.notes.iter().any(|n| n.starts_with("then phase 2/3")),
            "{:?}",
            p.notes
        );
        // Stopped half-way (cluster3 not reached): the rerun finishes phase 1, nothing new.
        mesh.roll_out(&out, &[0, 1], t(10));
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert!(writes(&p).is_empty());
        assert_eq!(out.rotation.as_ref().unwrap().to_phase, 1);
        mesh.roll_out(&out, &[2], t(11));

        // The sample's pod started before phase 1 reached cluster1: no phase 2 until it restarts.
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        let r = out.rotation.clone().unwrap();
        assert_eq!((r.from_phase, r.to_phase), (1, 1));
        assert_eq!(r.restart.len(), 1);
        assert_eq!(
            (
                r.restart[0].cluster.as_str(),
                r.restart[0].kind.as_str(),
                r.restart[0].namespace.as_str(),
                r.restart[0].name.as_str()
            ),
            ("cluster1", "Deployment", "sample", "helloworld-v1")
        );
        assert!(writes(&p).is_empty());
        assert_eq!(
            out.trust_anchor_pem, mesh.clusters[0].roots,
            "nothing changes while waiting"
        );
        assert_eq!(out.issuer_cert_pem, mesh.clusters[0].crt);
        mesh.restart(t(12));

        // phase 2: an issuer from B everywhere, roots unchanged.
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(writes(&p), ["issuer.crt", "issuer.key"]);
        apply(&p);
        assert_eq!(fps(&out.trust_anchor_pem), [new.clone(), old.clone()]);
        let b = pki::parse_cert("ca-new.crt", &read(&opts, "ca-new.crt")).unwrap();
        let i = pki::parse_cert("issuer.crt", &out.issuer_cert_pem).unwrap();
        assert!(signed_by(&i, &b));
        mesh.roll_out(&out, &[0, 1, 2], t(20));
        mesh.restart(t(21));

        // phase 3: A dropped; stopped after two clusters, resumed.
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert!(writes(&p).is_empty());
        assert_eq!(
            fps(&out.trust_anchor_pem).len(),
            1,
            "the old anchor is gone"
        );
        assert_eq!(fps(&out.trust_anchor_pem)[0], new);
        mesh.roll_out(&out, &[0, 1], t(30));
        let (_, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(out.rotation.as_ref().unwrap().to_phase, 3);
        mesh.roll_out(&out, &[2], t(31));
        mesh.restart(t(32));

        // done: the certs dir says B; a rerun changes nothing; a half-done promotion is finished.
        let old_key = read(&opts, "ca.key");
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(writes(&p), ["ca-old.crt", "ca.crt", "ca.key"]);
        assert!(out.rotation.as_ref().unwrap().complete);
        apply(&p);
        assert_eq!(fps(&read(&opts, "ca.crt"))[0], new);
        assert_eq!(fps(&read(&opts, "ca-old.crt"))[0], old);
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        assert!(writes(&p).is_empty(), "{:?}", p.actions);
        assert!(out.rotation.unwrap().complete);
        write(&opts, "ca.key", &old_key);
        let (p, _) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(writes(&p), ["ca.key"]);
        apply(&p);
        // `up` reads the rotated dir as its own.
        let p = crate::tests::up(&opts).unwrap();
        let o: CertOutputs = serde_json::from_value(p.outputs).unwrap();
        assert_eq!(fps(&o.trust_anchor_pem), [new]);
    }

    #[test]
    fn clusters_out_of_step_are_refused_with_one_line() {
        let (_tmp, opts) = dir();
        up(&opts).unwrap();
        let mut mesh = Mesh::installed(&opts, 2);
        let as_installed = mesh.clusters[0].clone();
        mesh.pods.clear();
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        apply(&p);
        mesh.roll_out(&out, &[0, 1], t(10));
        let (p, out) = rotate(&opts, "anchor", &mesh).unwrap();
        apply(&p);
        mesh.roll_out(&out, &[0], t(20));
        // cluster1 at phase 2 and cluster2 at 1: phase 2 is finished on cluster2 first.
        let (_, next) = rotate(&opts, "anchor", &mesh).unwrap();
        assert_eq!(next.rotation.unwrap().to_phase, 2);
        // cluster1 two phases ahead (jumped to 3 by other means): refused.
        mesh.clusters[0].roots = read(&opts, "ca-new.crt");
        mesh.clusters[1] = as_installed;
        let err = rotate(&opts, "anchor", &mesh).unwrap_err();
        assert!(
            err.starts_with(
                "cluster1 is at phase 3 while another cluster has not finished phase 1"
            ),
            "{err}"
        );
        // A cluster on a third anchor is in no phase.
        let other = dir();
        up(&other.1).unwrap();
        mesh.clusters[0].roots = read(&other.1, "ca.crt");
        let err = rotate(&opts, "anchor", &mesh).unwrap_err();
        assert!(
            err.starts_with("cluster1 is in no phase of rotating"),
            "{err}"
        );
        // No control plane on a cluster.
        let mut req = StageRequest::new(Operation::Up, clusters(1));
        let mut o = opts.clone();
        o.rotate = Some("anchor".into());
        req.options = serde_json::to_value(&o).unwrap();
        let err = converse(&CertStage, req, &World::new().with_disk()).unwrap_err();
        assert!(
            err.starts_with(
                "cluster1: no ConfigMap linkerd-identity-trust-roots in namespace linkerd"
            ),
            "{err}"
        );
    }
}
