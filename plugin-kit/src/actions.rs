//! Action builders shared by the built-in stages' `down`: uninstall a release, delete a
//! namespace and wait until it is gone.

use kpaas_mesh_plugin_api::{Action, ClusterRef, WaitCondition};

/// Deleting a namespace and waiting until its contents are gone (what `down` does last
/// for each namespace it created), so a following `up` starts from a clean cluster.
pub fn delete_namespace(cluster: &str, namespace: &str, timeout_secs: u64) -> [Action; 2] {
    delete_and_wait(cluster, "v1", "Namespace", None, namespace, timeout_secs)
}

/// Delete an object and wait until it is gone (a Namespace, a CRD: deletion finishes after
/// their contents are cleaned up, so the next step must not start before).
pub fn delete_and_wait(
    cluster: &str,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    timeout_secs: u64,
) -> [Action; 2] {
    [
        Action::Delete {
            cluster: cluster.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(String::from),
            name: name.into(),
        },
        Action::Wait {
            cluster: cluster.into(),
            condition: WaitCondition::Deleted {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: namespace.map(String::from),
                name: name.into(),
            },
            timeout_secs,
        },
    ]
}

/// `down` of a stage that owns one helm release in its own namespace: uninstall the release
/// on every cluster, then remove the namespace and wait until it is gone.
pub fn uninstall_everywhere(
    clusters: &[ClusterRef],
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
