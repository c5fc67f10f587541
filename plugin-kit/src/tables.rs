//! Table builders for `status`: the helm-release table every chart stage shows, one way.

use kpaas_mesh_plugin_api::{
    ClusterRef, FactAnswer, FactQuery, HelmReleaseInfo, StageRequest, Table,
};

/// The columns of a release table, then `extra`.
pub fn release_columns(extra: &[&str]) -> Vec<String> {
    [
        "CLUSTER",
        "RELEASE",
        "CHART VERSION",
        "APP VERSION",
        "STATUS",
    ]
    .iter()
    .chain(extra)
    .map(|c| c.to_string())
    .collect()
}

/// One cluster's row: the release as helm reports it, or `not installed`.
pub fn release_row(cluster: &str, release: &str, info: Option<&HelmReleaseInfo>) -> Vec<String> {
    match info {
        Some(r) => vec![
            cluster.into(),
            release.into(),
            r.chart_version.clone(),
            r.app_version.clone(),
            r.status.clone(),
        ],
        None => vec![
            cluster.into(),
            release.into(),
            "-".into(),
            "-".into(),
            "not installed".into(),
        ],
    }
}

/// The release the host found for `query` (`None`: not installed, or not answered).
pub fn release_info<'a>(req: &'a StageRequest, query: &FactQuery) -> Option<&'a HelmReleaseInfo> {
    match req.fact(query) {
        Some(FactAnswer::HelmRelease { release: Some(r) }) => Some(r),
        _ => None,
    }
}

/// A release table with a row per cluster (`query` gives each cluster's release fact).
pub fn release_table(
    title: &str,
    release: &str,
    req: &StageRequest,
    clusters: &[ClusterRef],
    query: impl Fn(&str) -> FactQuery,
) -> Table {
    Table {
        title: title.into(),
        columns: release_columns(&[]),
        rows: clusters
            .iter()
            .map(|c| release_row(&c.name, release, release_info(req, &query(&c.name))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_for_installed_and_missing_releases() {
        let info = HelmReleaseInfo {
            chart: "linkerd-smi".into(),
            chart_version: "1.0.3".into(),
            app_version: "v0.2.7".into(),
            revision: 1,
            status: "deployed".into(),
        };
        assert_eq!(
            release_row("c1", "linkerd-smi", Some(&info)),
            ["c1", "linkerd-smi", "1.0.3", "v0.2.7", "deployed"]
        );
        assert_eq!(
            release_row("c2", "linkerd-smi", None),
            ["c2", "linkerd-smi", "-", "-", "not installed"]
        );
        assert_eq!(release_columns(&["CRD"]).len(), 6);
    }
}
