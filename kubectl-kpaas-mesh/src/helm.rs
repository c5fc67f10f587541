//! Helm, the way K-PaaS operators already run it: releases are *read* straight from helm's
//! storage Secrets (so observing state needs no helm process and no extra round trips), and
//! *changed* by running the `helm` binary (`helm upgrade --install`, `helm uninstall`),
//! which keeps release history and ownership exactly as a manual install would.

use base64::Engine;
use flate2::read::GzDecoder;
use k8s_openapi::api::core::v1::Secret;
use kpaas_mesh_plugin_api::{HelmRelease, HelmReleaseInfo};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use tokio::process::Command;

/// A deployed release as stored by helm, with the user-supplied values.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRelease {
    pub info: HelmReleaseInfo,
    pub values: Value,
    /// When helm wrote this revision's storage Secret.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
}

/// Decodes one `sh.helm.release.v1.*` Secret's `release` field (base64 of gzip of JSON).
pub fn decode_release(data: &[u8]) -> Result<StoredRelease, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim_ascii())
        .map_err(|e| format!("helm release data is not base64: {e}"))?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| format!("helm release data is not gzip: {e}"))?;
        out
    } else {
        raw
    };
    let rel: Value =
        serde_json::from_slice(&json).map_err(|e| format!("helm release is not JSON: {e}"))?;
    let meta = &rel["chart"]["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(StoredRelease {
        info: HelmReleaseInfo {
            chart: s(&meta["name"]),
            chart_version: s(&meta["version"]),
            app_version: s(&meta["appVersion"]),
            revision: rel["version"].as_u64().unwrap_or(0) as u32,
            status: s(&rel["info"]["status"]),
        },
        values: match &rel["config"] {
            Value::Null => Value::Object(Default::default()),
            v => v.clone(),
        },
        created: None,
    })
}

/// The newest revision of `release` in `namespace`, if any revision exists.
pub async fn read_release(
    client: kube::Client,
    namespace: &str,
    release: &str,
) -> Result<Option<StoredRelease>, String> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let lp = ListParams::default().labels(&format!("owner=helm,name={release}"));
    let list = secrets
        .list(&lp)
        .await
        .map_err(|e| format!("cannot list helm releases in {namespace}: {e}"))?;
    let mut newest: Option<StoredRelease> = None;
    for secret in list.items {
        let Some(data) = secret.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        let mut rel = decode_release(&data.0)?;
        rel.created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if newest
            .as_ref()
            .is_none_or(|n| rel.info.revision > n.info.revision)
        {
            newest = Some(rel);
        }
    }
    Ok(newest)
}

/// True when `stored` already is what `want` asks for: the same chart, version and values,
/// and deployed.
pub fn up_to_date(stored: &StoredRelease, want: &HelmRelease) -> bool {
    stored.info.status == "deployed"
        && stored.info.chart == want.chart.name
        && (want.chart.version.is_empty() || stored.info.chart_version == want.chart.version)
        && normalize(&stored.values) == normalize(&want.values)
}

/// How to get a release out of a pending state that a helm process left when it was stopped
/// mid-operation (helm refuses every further operation on it: "another operation
/// (install/upgrade/rollback) is in progress"), as helm's maintainers advise: a first install
/// is uninstalled, an upgrade or rollback is rolled back to the revision before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    Uninstall,
    Rollback,
}

pub fn recovery(stored: &StoredRelease) -> Option<Recovery> {
    match stored.info.status.as_str() {
        "pending-install" if stored.info.revision <= 1 => Some(Recovery::Uninstall),
        "pending-install" | "pending-upgrade" | "pending-rollback" => Some(Recovery::Rollback),
        _ => None,
    }
}

/// How long a pending release is left alone, since a helm may still be working on it
/// (`KPAAS_MESH_HELM_PENDING_GRACE` seconds, default 60).
pub fn pending_grace() -> std::time::Duration {
    std::time::Duration::from_secs(
        std::env::var("KPAAS_MESH_HELM_PENDING_GRACE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    )
}

/// The helm command that gets `release` out of its pending state.
pub fn recovery_args(r: Recovery, release: &str, namespace: &str, context: &str) -> Vec<String> {
    let verb = match r {
        Recovery::Uninstall => "uninstall",
        Recovery::Rollback => "rollback",
    };
    [
        verb,
        release,
        "--namespace",
        namespace,
        "--kube-context",
        context,
    ]
    .map(String::from)
    .to_vec()
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

/// The helm binary: `$KPAAS_MESH_HELM`, else `helm` on PATH.
pub fn helm_binary() -> PathBuf {
    std::env::var_os("KPAAS_MESH_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("helm"))
}

/// A local chart: `path` itself when it is a chart directory or archive, else
/// `<path>-<version>.tgz` (what `helm pull` names it).
pub fn resolve_local_chart(path: &str, version: &str) -> Result<String, String> {
    let p = std::path::Path::new(path);
    let found = chart_version(p);
    match &found {
        Some(found) if version.is_empty() || found == version => return Ok(path.to_string()),
        _ => {}
    }
    if p.is_file() && path.ends_with(".tgz") {
        return Ok(path.to_string());
    }
    let tgz = format!("{path}-{version}.tgz");
    if std::path::Path::new(&tgz).is_file() {
        return Ok(tgz);
    }
    // A chart dir holding several Linkerd releases, one directory each (`DIR/<release>/<chart>/`,
    // as the test bed lays them out): the one of that name at that version.
    if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
        let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(name))
            .filter(|c| chart_version(c).as_deref() == Some(version))
            .collect();
        candidates.sort();
        if let Some(c) = candidates.first() {
            return Ok(c.display().to_string());
        }
    }
    match found {
        Some(found) => Err(format!(
            "chart {path} is version {found}, expected {version} (wrong --chart-dir or --linkerd-version?)"
        )),
        None => Err(format!(
            "chart not found: looked for {path}/Chart.yaml, {tgz} and {}/*/{} at version {version} (check --chart-dir)",
            p.parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )),
    }
}

/// The `version:` of the chart directory `dir`, if it is one.
fn chart_version(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("Chart.yaml")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("version:"))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// The arguments of `helm upgrade --install` for `want` (values come from `values_file`).
pub fn upgrade_args(want: &HelmRelease, context: &str, values_file: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["upgrade".into(), "--install".into(), want.release.clone()];
    match (&want.chart.path, &want.chart.repo) {
        (Some(path), _) => args.push(path.clone()),
        (None, Some(repo)) => {
            args.push(want.chart.name.clone());
            args.extend(["--repo".into(), repo.clone()]);
        }
        (None, None) => args.push(want.chart.name.clone()),
    }
    if want.chart.path.is_none() && !want.chart.version.is_empty() {
        args.extend(["--version".into(), want.chart.version.clone()]);
    }
    args.extend(["--namespace".into(), want.namespace.clone()]);
    if want.create_namespace {
        args.push("--create-namespace".into());
    }
    args.extend([
        "--kube-context".into(),
        context.into(),
        "--values".into(),
        values_file.into(),
    ]);
    args
}

/// Runs helm with `args`; the error carries helm's last stderr line.
pub async fn run_helm(args: &[String], kubeconfig_env: Option<&str>) -> Result<String, String> {
    let bin = helm_binary();
    let mut cmd = Command::new(&bin);
    // its own process group: a terminal's Ctrl-C reaches kpaas-mesh, which lets helm finish
    cmd.args(args).kill_on_drop(true).process_group(0);
    if let Some(kc) = kubeconfig_env {
        cmd.env("KUBECONFIG", kc);
    }
    tracing::debug!(helm = %bin.display(), ?args, "running helm");
    let out = cmd.output().await.map_err(|e| {
        format!(
            "cannot run {} ({e}); install helm 3 or set KPAAS_MESH_HELM",
            bin.display()
        )
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output");
        return Err(format!(
            "helm {} failed: {last}",
            args.first().map(String::as_str).unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use kpaas_mesh_plugin_api::ChartRef;
    use serde_json::json;
    use std::io::Write;

    fn encode(rel: &Value) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(rel.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(gz.finish().unwrap())
            .into_bytes()
    }

    fn want(values: Value) -> HelmRelease {
        HelmRelease {
            cluster: "c1".into(),
            release: "linkerd-crds".into(),
            namespace: "linkerd".into(),
            create_namespace: true,
            chart: ChartRef {
                name: "linkerd-crds".into(),
                version: "1.8.0".into(),
                repo: Some("https://helm.linkerd.io/stable".into()),
                path: None,
            },
            values,
            secret_values: vec![],
        }
    }

    #[test]
    fn stored_releases_decode_and_compare() {
        let data = encode(&json!({
            "name": "linkerd-crds", "version": 3,
            "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "linkerd-crds", "version": "1.8.0", "appVersion": ""}},
            "config": {"a": 1}
        }));
        let rel = decode_release(&data).unwrap();
        assert_eq!(rel.info.revision, 3);
        assert_eq!(rel.info.chart_version, "1.8.0");
        assert!(up_to_date(&rel, &want(json!({"a": 1}))));
        assert!(!up_to_date(&rel, &want(json!({"a": 2}))));
        let mut newer = want(json!({"a": 1}));
        newer.chart.version = "1.9.0".into();
        assert!(!up_to_date(&rel, &newer));
        assert!(decode_release(b"!!!").unwrap_err().contains("not base64"));
    }

    #[test]
    fn a_release_left_pending_is_uninstalled_or_rolled_back_as_helm_advises() {
        let rel = |status: &str, version: u32| {
            decode_release(&encode(
                &json!({"version": version, "info": {"status": status},
                "chart": {"metadata": {"name": "linkerd-crds", "version": "1.8.0"}}}),
            ))
            .unwrap()
        };
        assert_eq!(
            recovery(&rel("pending-install", 1)),
            Some(Recovery::Uninstall)
        );
        assert_eq!(
            recovery(&rel("pending-install", 3)),
            Some(Recovery::Rollback)
        );
        assert_eq!(
            recovery(&rel("pending-upgrade", 2)),
            Some(Recovery::Rollback)
        );
        assert_eq!(
            recovery(&rel("pending-rollback", 4)),
            Some(Recovery::Rollback)
        );
        for settled in ["deployed", "failed", "superseded", "uninstalled"] {
            assert_eq!(recovery(&rel(settled, 2)), None, "{settled}");
        }
        // a pending release is never up to date, so `up` gets to recover it
        assert!(!up_to_date(&rel("pending-upgrade", 2), &want(json!({}))));
        assert_eq!(
            recovery_args(Recovery::Rollback, "linkerd-crds", "linkerd", "ctx"),
            [
                "rollback",
                "linkerd-crds",
                "--namespace",
                "linkerd",
                "--kube-context",
                "ctx"
            ]
        );
        assert_eq!(
            recovery_args(Recovery::Uninstall, "r", "n", "c")[0],
            "uninstall"
        );
    }

    #[test]
    fn null_values_equal_empty_values() {
        let data = encode(&json!({"version": 1, "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "linkerd-crds", "version": "1.8.0"}}}));
        let rel = decode_release(&data).unwrap();
        assert!(up_to_date(&rel, &want(Value::Null)));
        assert!(up_to_date(&rel, &want(json!({}))));
    }

    #[test]
    fn local_charts_resolve_to_dirs_or_archives_of_the_right_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("linkerd-crds");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("Chart.yaml"),
            "apiVersion: v2\nname: linkerd-crds\nversion: 1.8.0\n",
        )
        .unwrap();
        let d = dir.display().to_string();
        assert_eq!(resolve_local_chart(&d, "1.8.0").unwrap(), d);
        let err = resolve_local_chart(&d, "1.9.0").unwrap_err();
        assert!(err.contains("is version 1.8.0, expected 1.9.0"), "{err}");
        let smi = tmp.path().join("linkerd-smi").display().to_string();
        std::fs::write(format!("{smi}-1.0.4.tgz"), b"x").unwrap();
        assert_eq!(
            resolve_local_chart(&smi, "1.0.4").unwrap(),
            format!("{smi}-1.0.4.tgz")
        );
        assert!(
            resolve_local_chart(&smi, "1.0.5")
                .unwrap_err()
                .starts_with("chart not found")
        );
        // several releases in one dir, one subdirectory each: the chart at the wanted version
        let edge = tmp.path().join("edge-25.4.4").join("linkerd-crds");
        std::fs::create_dir_all(&edge).unwrap();
        std::fs::write(
            edge.join("Chart.yaml"),
            "apiVersion: v2\nname: linkerd-crds\nversion: 2025.4.4\n",
        )
        .unwrap();
        assert_eq!(
            resolve_local_chart(&d, "2025.4.4").unwrap(),
            edge.display().to_string()
        );
        assert_eq!(resolve_local_chart(&d, "1.8.0").unwrap(), d);
    }

    #[test]
    fn upgrade_args_for_repo_and_local_charts() {
        let args = upgrade_args(&want(json!({})), "ctx1", "/tmp/v.yaml");
        assert_eq!(
            args.join(" "),
            "upgrade --install linkerd-crds linkerd-crds --repo https://helm.linkerd.io/stable \
             --version 1.8.0 --namespace linkerd --create-namespace --kube-context ctx1 --values /tmp/v.yaml"
        );
        let mut local = want(json!({}));
        local.chart.path = Some("/charts/linkerd-crds".into());
        local.create_namespace = false;
        let args = upgrade_args(&local, "ctx1", "/v");
        assert_eq!(
            args.join(" "),
            "upgrade --install linkerd-crds /charts/linkerd-crds --namespace linkerd --kube-context ctx1 --values /v"
        );
    }
}
