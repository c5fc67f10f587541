//! `render --out DIR`: the plan of `up` as files, so Argo CD, Flux or plain helm and kubectl can
//! own the mesh. Per cluster, in apply order: each helm release as `release.yaml` (chart,
//! version, repository or path, namespace) and `values.yaml`, each manifest as a file; Secrets
//! (and the secret helm values) in files of their own under `secrets/`, written only with
//! `--secrets include`. What is no object of a cluster (waits, deletions, an IaaS plugin's
//! writes, the local certificate files) is listed in `PLAN.md` with the order.

use kpaas_mesh_plugin_api::{Action, HelmRelease};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `--secrets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretsMode {
    /// Leave Secrets and secret values out (listed in PLAN.md).
    Omit,
    /// Write them, mode 0600, under `<cluster>/secrets/`.
    Include,
}

/// A file to write: path relative to the output directory, contents, whether it is secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
    pub secret: bool,
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// Splits helm values into the plain ones and the secret ones (by dotted paths).
pub fn split_values(h: &HelmRelease) -> (Value, Value) {
    let mut plain = h.values.clone();
    let mut secret = json!({});
    for path in &h.secret_values {
        let parts: Vec<&str> = path.split('.').collect();
        let mut cur = &mut plain;
        let mut found = None;
        for (i, part) in parts.iter().enumerate() {
            if i == parts.len() - 1 {
                found = cur.as_object_mut().and_then(|m| m.remove(*part));
                break;
            }
            match cur.get_mut(*part) {
                Some(next) => cur = next,
                None => break,
            }
        }
        if let Some(v) = found {
            let mut at = &mut secret;
            for part in &parts[..parts.len() - 1] {
                at = at
                    .as_object_mut()
                    .unwrap()
                    .entry(part.to_string())
                    .or_insert_with(|| json!({}));
            }
            at[parts[parts.len() - 1]] = v;
        }
    }
    (plain, secret)
}

/// The files of a plan (`steps` as `up` planned them, in order).
pub fn files(steps: &[crate::render::PlannedStep], secrets: SecretsMode) -> Vec<RenderedFile> {
    let mut out = Vec::new();
    let mut seq: BTreeMap<String, usize> = BTreeMap::new();
    let mut plan_md = String::from(
        "# The plan of `kubectl kpaas-mesh up`, as files\n\n\
         Apply each cluster's directory in file-name order: a `NNN-…-helm-RELEASE/` directory with\n\
         `helm upgrade --install RELEASE CHART --version V -n NS [--create-namespace] -f values.yaml\n\
         [-f secrets/…-values.yaml]` (chart, version and source in its release.yaml), every other file with\n\
         `kubectl apply --server-side --field-manager kpaas-mesh -f FILE` (that field manager makes a later\n\
         `kubectl kpaas-mesh up` see its own objects and change nothing). Links need each target's gateway\n\
         address and remote-access token: render again once the multicluster extension runs everywhere.\n\n",
    );
    let mut omitted = Vec::new();
    for step in steps {
        plan_md.push_str(&format!(
            "## stage {} (plugin {})\n\n",
            step.stage, step.plugin
        ));
        for n in &step.notes {
            plan_md.push_str(&format!("- note: {n}\n"));
        }
        for a in &step.raw {
            let Some(cluster) = crate::executor::action_cluster(a) else {
                plan_md.push_str(&format!(
                    "- local: {} (not rendered: the certs dir holds it)\n",
                    crate::progress::headline(a)
                ));
                continue;
            };
            let n = seq.entry(cluster.to_string()).or_insert(0);
            let line = match a {
                Action::Apply {
                    manifest, secret, ..
                } => {
                    *n += 1;
                    let kind = manifest["kind"].as_str().unwrap_or("Object");
                    let name = manifest["metadata"]["name"].as_str().unwrap_or("unnamed");
                    let file = format!(
                        "{n:03}-{}-{}-{}.yaml",
                        slug(&step.stage),
                        slug(kind),
                        slug(name)
                    );
                    let is_secret = *secret || kind == "Secret";
                    if is_secret {
                        let path = PathBuf::from(cluster).join("secrets").join(&file);
                        if secrets == SecretsMode::Include {
                            out.push(RenderedFile {
                                path: path.clone(),
                                contents: yaml(manifest),
                                secret: true,
                            });
                        } else {
                            omitted.push(format!("{}", path.display()));
                        }
                        format!("{}", path.display())
                    } else {
                        let path = PathBuf::from(cluster).join(&file);
                        out.push(RenderedFile {
                            path: path.clone(),
                            contents: yaml(manifest),
                            secret: false,
                        });
                        format!("{}", path.display())
                    }
                }
                Action::HelmRelease(h) => {
                    *n += 1;
                    let dir = PathBuf::from(cluster).join(format!(
                        "{n:03}-{}-helm-{}",
                        slug(&step.stage),
                        slug(&h.release)
                    ));
                    // a local chart dir (--chart-dir) names the chart's own directory or archive
                    let path = h.chart.path.as_ref().map(|p| {
                        crate::helm::resolve_local_chart(p, &h.chart.version).unwrap_or(p.clone())
                    });
                    let release = json!({
                        "release": h.release, "namespace": h.namespace,
                        "createNamespace": h.create_namespace,
                        "chart": h.chart.name, "version": h.chart.version,
                        "repo": h.chart.repo, "path": path,
                    });
                    out.push(RenderedFile {
                        path: dir.join("release.yaml"),
                        contents: yaml(&release),
                        secret: false,
                    });
                    let (plain, secret) = split_values(h);
                    out.push(RenderedFile {
                        path: dir.join("values.yaml"),
                        contents: yaml(&plain),
                        secret: false,
                    });
                    if secret.as_object().is_some_and(|m| !m.is_empty()) {
                        let path = PathBuf::from(cluster).join("secrets").join(format!(
                            "{n:03}-{}-helm-{}-values.yaml",
                            slug(&step.stage),
                            slug(&h.release)
                        ));
                        if secrets == SecretsMode::Include {
                            out.push(RenderedFile {
                                path,
                                contents: yaml(&secret),
                                secret: true,
                            });
                        } else {
                            omitted.push(format!(
                                "{} ({})",
                                path.display(),
                                h.secret_values.join(", ")
                            ));
                        }
                    }
                    format!("{}/", dir.display())
                }
                other => format!(
                    "{cluster}: {} (no file: not an object to own)",
                    crate::progress::headline(other)
                ),
            };
            plan_md.push_str(&format!("- {line}\n"));
        }
        plan_md.push('\n');
    }
    if !omitted.is_empty() {
        plan_md.push_str("## left out (`--secrets omit`)\n\n");
        for o in &omitted {
            plan_md.push_str(&format!("- {o}\n"));
        }
    }
    out.push(RenderedFile {
        path: PathBuf::from("PLAN.md"),
        contents: plan_md,
        secret: false,
    });
    out
}

/// Writes `files` under `dir`, which must not exist or be empty (secret files 0600).
pub fn write(dir: &Path, files: &[RenderedFile]) -> Result<(), String> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| format!("--out {}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "--out {}: not empty; render into a new directory",
            dir.display()
        ));
    }
    for f in files {
        let path = dir.join(&f.path);
        let mode = if f.secret { 0o600 } else { 0o644 };
        crate::executor::write_file(&path, &f.contents, mode, 0o700)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::PlannedStep;
    use kpaas_mesh_plugin_api::{ChartRef, Plan, WaitCondition};

    fn plan() -> Vec<PlannedStep> {
        let helm = Action::HelmRelease(HelmRelease {
            cluster: "c1".into(),
            release: "linkerd-control-plane".into(),
            namespace: "linkerd".into(),
            create_namespace: false,
            chart: ChartRef {
                name: "linkerd-control-plane".into(),
                version: "1.16.11".into(),
                repo: Some("https://helm.linkerd.io/stable".into()),
                path: None,
            },
            values: json!({"identity": {"issuer": {"tls": {"keyPEM": "KEY", "crtPEM": "CRT"}}}, "x": 1}),
            secret_values: vec!["identity.issuer.tls.keyPEM".into()],
        });
        let secret = Action::Apply {
            cluster: "c1".into(),
            manifest: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cluster-credentials-c2"}, "data": {"kubeconfig": "S0VZ"}}),
            secret: true,
        };
        let link = Action::Apply {
            cluster: "c1".into(),
            manifest: json!({"apiVersion": "multicluster.linkerd.io/v1alpha1", "kind": "Link", "metadata": {"name": "c2"}}),
            secret: false,
        };
        let wait = Action::Wait {
            cluster: "c2".into(),
            condition: WaitCondition::SecretHasKey {
                namespace: "n".into(),
                name: "t".into(),
                key: "token".into(),
            },
            timeout_secs: 5,
        };
        let file = Action::WriteFile {
            path: "/certs/ca.key".into(),
            contents: "PRIVATE".into(),
            mode: 0o600,
            dir_mode: 0o700,
            secret: true,
        };
        let plan = Plan {
            actions: vec![file, helm, secret, link, wait],
            ..Plan::default()
        };
        vec![PlannedStep::new(
            "control-plane".into(),
            "up".into(),
            "control-plane".into(),
            &plan,
        )]
    }

    #[test]
    fn a_plan_becomes_files_in_apply_order_with_secrets_apart() {
        let omit = files(&plan(), SecretsMode::Omit);
        let names: Vec<String> = omit.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "c1/001-control-plane-helm-linkerd-control-plane/release.yaml",
                "c1/001-control-plane-helm-linkerd-control-plane/values.yaml",
                "c1/003-control-plane-link-c2.yaml",
                "PLAN.md"
            ]
        );
        let all: String = omit.iter().map(|f| f.contents.clone()).collect();
        for leaked in ["KEY\n", "S0VZ", "PRIVATE"] {
            assert!(!all.contains(leaked), "{leaked} in {all}");
        }
        assert!(omit[1].contents.contains("crtPEM: CRT") && omit[1].contents.contains("x: 1"));
        assert!(
            omit[0]
                .contents
                .contains("repo: https://helm.linkerd.io/stable")
        );
        let md = &omit[3].contents;
        assert!(
            md.contains("- c1/secrets/002-control-plane-secret-cluster-credentials-c2.yaml"),
            "{md}"
        );
        assert!(md.contains("c1/secrets/001-control-plane-helm-linkerd-control-plane-values.yaml (identity.issuer.tls.keyPEM)"), "{md}");
        assert!(md.contains("- c2: wait up to 5s for"), "{md}");
        assert!(
            md.contains("- local: write /certs/ca.key (not rendered"),
            "{md}"
        );

        let include = files(&plan(), SecretsMode::Include);
        let secret: Vec<&RenderedFile> = include.iter().filter(|f| f.secret).collect();
        assert_eq!(secret.len(), 2);
        assert!(secret.iter().any(|f| f.contents.contains("keyPEM: KEY")));
        assert!(secret.iter().any(|f| f.contents.contains("S0VZ")));
        assert!(secret.iter().all(|f| f.path.starts_with("c1/secrets")));
    }

    #[test]
    fn written_files_keep_secrets_private_and_refuse_a_used_directory() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("mesh");
        write(&out, &files(&plan(), SecretsMode::Include)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode("c1/secrets/002-control-plane-secret-cluster-credentials-c2.yaml"),
            0o600
        );
        assert_eq!(mode("c1/003-control-plane-link-c2.yaml"), 0o644);
        let err = write(&out, &files(&plan(), SecretsMode::Omit)).unwrap_err();
        assert!(err.contains("not empty"), "{err}");
    }
}
