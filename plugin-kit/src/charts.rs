//! The pure helpers every Linkerd stage uses to describe a helm release: where the chart
//! comes from (repository or `--chart-dir`), images moved to `--registry`, and the user's
//! `--values` merged over the stage's own values.

use crate::settings::MeshSettings;
use kpaas_mesh_plugin_api::ChartRef;
use serde_json::Value;

/// Where `chart` comes from: `--chart-dir` when given (the host resolves `DIR/<chart>/` or
/// `DIR/<chart>-<version>.tgz`), else `repo`.
pub fn chart_ref(opts: &MeshSettings, chart: &str, version: &str, repo: &str) -> ChartRef {
    ChartRef {
        name: chart.to_string(),
        version: version.to_string(),
        repo: opts.chart_dir.is_none().then(|| repo.to_string()),
        path: opts
            .chart_dir
            .as_ref()
            .map(|d| format!("{}/{chart}", d.trim_end_matches('/'))),
    }
}

/// `image` (a name with or without a tag) moved to `registry`: the registry path replaces
/// everything before the image's last path segment, as Linkerd's `--registry` does for
/// `cr.l5d.io/linkerd`.
pub fn rewrite_image(image: &str, registry: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    format!("{}/{last}", registry.trim_end_matches('/'))
}

/// Merges `over` into `base`: objects key by key, everything else replaced.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Sets `value` at a dotted `path` in `target`, creating objects on the way.
pub fn set_path(target: &mut Value, path: &str, value: Value) {
    let mut cur = target;
    for part in path.split('.') {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(part.to_string())
            .or_insert(Value::Null);
    }
    *cur = value;
}

/// The user's extra values for a release: `--values <stage>=FILE` then
/// `--values <release>=FILE`, merged in that order over `values`.
pub fn with_user_values(
    mut values: Value,
    opts: &MeshSettings,
    stage: &str,
    release: &str,
) -> Value {
    for key in [stage, release] {
        if let Some(v) = opts.values.get(key) {
            deep_merge(&mut values, v);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linkerd::STABLE_REPO;
    use serde_json::json;

    #[test]
    fn charts_come_from_the_repo_or_the_chart_dir() {
        let mut opts = MeshSettings::default();
        let c = chart_ref(&opts, "linkerd-crds", "1.8.0", STABLE_REPO);
        assert_eq!(
            (c.repo.as_deref(), c.path.as_deref()),
            (Some(STABLE_REPO), None)
        );
        opts.chart_dir = Some("/charts/".into());
        let c = chart_ref(&opts, "linkerd-crds", "1.8.0", STABLE_REPO);
        assert_eq!(
            (c.repo, c.path.as_deref()),
            (None, Some("/charts/linkerd-crds"))
        );
    }

    #[test]
    fn images_move_to_the_registry() {
        assert_eq!(
            rewrite_image("cr.l5d.io/linkerd/proxy", "harbor.k-paas.io/linkerd"),
            "harbor.k-paas.io/linkerd/proxy"
        );
        assert_eq!(
            rewrite_image("gcr.io/google_containers/pause:3.2", "harbor.local/mirror/"),
            "harbor.local/mirror/pause:3.2"
        );
        assert_eq!(rewrite_image("busybox", "r.io/x"), "r.io/x/busybox");
    }

    #[test]
    fn values_merge_and_paths() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "l": [1]});
        deep_merge(&mut v, &json!({"a": {"b": 3}, "l": [2, 3], "n": true}));
        assert_eq!(v, json!({"a": {"b": 3, "c": 2}, "l": [2, 3], "n": true}));
        let mut v = json!({});
        set_path(&mut v, "identity.issuer.tls.keyPEM", json!("K"));
        assert_eq!(v, json!({"identity": {"issuer": {"tls": {"keyPEM": "K"}}}}));

        let mut opts = MeshSettings::default();
        opts.values
            .insert("control-plane".into(), json!({"a": 1, "b": 1}));
        opts.values
            .insert("linkerd-control-plane".into(), json!({"b": 2}));
        let v = with_user_values(
            json!({"a": 0, "z": 0}),
            &opts,
            "control-plane",
            "linkerd-control-plane",
        );
        assert_eq!(v, json!({"a": 1, "b": 2, "z": 0}));
    }
}
