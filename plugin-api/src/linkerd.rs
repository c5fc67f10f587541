//! Linkerd facts the built-in stages share: chart versions of each supported Linkerd
//! release, the public chart repositories, namespaces and well-known names, and the pure
//! helpers every stage uses to describe helm releases (chart source, image registry
//! rewrite, user values). Plugins read them from here so they agree with each other.

use crate::messages::{Action, ChartRef, WaitCondition};
use crate::options::MeshOptions;
use serde_json::Value;

/// Chart versions that make up one Linkerd release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkerdRelease {
    /// e.g. `stable-2.14.10`; also the image tag of the control plane.
    pub version: &'static str,
    pub crds: &'static str,
    pub control_plane: &'static str,
    pub multicluster: &'static str,
    pub smi: &'static str,
    /// The linkerd-smi application version (its image tag).
    pub smi_app: &'static str,
}

/// Every Linkerd release the built-in stages know, newest first.
pub const RELEASES: &[LinkerdRelease] = &[LinkerdRelease {
    version: "stable-2.14.10",
    crds: "1.8.0",
    control_plane: "1.16.11",
    multicluster: "30.11.11",
    smi: "1.0.4",
    smi_app: "v0.2.7",
}];

/// The default Linkerd release (the one the K-PaaS guide installs).
pub const DEFAULT_VERSION: &str = "stable-2.14.10";

/// Linkerd's stable chart repository (linkerd-crds, -control-plane, -multicluster).
pub const STABLE_REPO: &str = "https://helm.linkerd.io/stable";
/// The linkerd-smi chart repository.
pub const SMI_REPO: &str = "https://linkerd.github.io/linkerd-smi";

pub const LINKERD_NS: &str = "linkerd";
pub const MULTICLUSTER_NS: &str = "linkerd-multicluster";
pub const SMI_NS: &str = "linkerd-smi";

/// The registry every Linkerd image lives under by default.
pub const DEFAULT_REGISTRY: &str = "cr.l5d.io/linkerd";

/// The release for `version`, or an error listing the supported ones.
pub fn release(version: &str) -> Result<&'static LinkerdRelease, String> {
    RELEASES
        .iter()
        .find(|r| r.version == version)
        .ok_or_else(|| {
            let known: Vec<&str> = RELEASES.iter().map(|r| r.version).collect();
            format!(
                "unsupported Linkerd version '{version}' (supported: {})",
                known.join(", ")
            )
        })
}

/// Where `chart` comes from: `--chart-dir` when given (the host resolves `DIR/<chart>/` or
/// `DIR/<chart>-<version>.tgz`), else `repo`.
pub fn chart_ref(opts: &MeshOptions, chart: &str, version: &str, repo: &str) -> ChartRef {
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

/// Deleting a namespace and waiting until its contents are gone (what `down` does last
/// for each namespace it created), so a following `up` starts from a clean cluster.
pub fn delete_namespace(cluster: &str, namespace: &str, timeout_secs: u64) -> [Action; 2] {
    [
        Action::Delete {
            cluster: cluster.into(),
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: namespace.into(),
        },
        Action::Wait {
            cluster: cluster.into(),
            condition: WaitCondition::Deleted {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: namespace.into(),
            },
            timeout_secs,
        },
    ]
}

/// `down` of a stage that owns one helm release in its own namespace: uninstall the release
/// on every cluster, then remove the namespace and wait until it is gone.
pub fn uninstall_everywhere(
    clusters: &[crate::messages::ClusterRef],
    namespace: &str,
    release: &str,
    timeout_secs: u64,
) -> Vec<Action> {
    clusters
        .iter()
        .flat_map(|c| {
            let mut actions = vec![Action::HelmUninstall {
                cluster: c.name.clone(),
                namespace: namespace.into(),
                release: release.into(),
            }];
            actions.extend(delete_namespace(&c.name, namespace, timeout_secs));
            actions
        })
        .collect()
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
    opts: &MeshOptions,
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
    use serde_json::json;

    #[test]
    fn releases_and_charts() {
        let r = release(DEFAULT_VERSION).unwrap();
        assert_eq!(
            (r.crds, r.control_plane, r.multicluster, r.smi),
            ("1.8.0", "1.16.11", "30.11.11", "1.0.4")
        );
        let err = release("edge-24.1.1").unwrap_err();
        assert_eq!(
            err,
            "unsupported Linkerd version 'edge-24.1.1' (supported: stable-2.14.10)"
        );

        let mut opts = MeshOptions::default();
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

        let mut opts = MeshOptions::default();
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
