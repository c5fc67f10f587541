//! Linkerd facts the built-in stages share, as data: the releases kpaas-mesh knows
//! (`linkerd-releases.yaml`, read from each release's own source tree), the public chart
//! repositories, namespaces and well-known names. Plugins read them from here so they agree
//! with each other; the helpers that turn them into actions are in [`crate::charts`] and
//! [`crate::actions`].

use serde::Deserialize;
use std::sync::LazyLock;

/// Chart versions of one release.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charts {
    pub crds: String,
    pub control_plane: String,
    pub multicluster: String,
}

/// linkerd-smi, for the releases whose traffic split is SMI's.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smi {
    /// The linkerd-smi chart version.
    pub chart: String,
    /// Its application version (the adaptor's image tag).
    pub app: String,
}

/// How a release's CLI links clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum LinkStyle {
    /// `linkerd multicluster link`: the Link plus per-link service-mirror objects (≤ 2.17).
    #[serde(rename = "link")]
    Link,
    /// `linkerd multicluster link-gen`: credentials and a Link; the service mirrors are the
    /// linkerd-multicluster release's `controllers` (≥ 2.18).
    #[serde(rename = "link-gen")]
    LinkGen,
}

/// What a `links: link` release's linkerd-multicluster-link chart renders for a link's service
/// mirror beyond 2.14.10's (its `multicluster/cmd/testdata/service_mirror_default.golden`, the
/// chart as `linkerd multicluster link` renders it with default values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkChart {
    /// The Deployment's `spec.revisionHistoryLimit` (chart value `revisionHistoryLimit`).
    pub revision_history_limit: Option<u32>,
    /// The container's `securityContext.runAsGroup` (chart value `serviceMirrorGID`).
    pub run_as_group: Option<u32>,
    /// The pod mounts its ServiceAccount token as the projected `kube-api-access` volume
    /// (`automountServiceAccountToken: false`).
    pub projected_token: bool,
    /// The verbs of the Role's rule on `links/status` (none: no such rule).
    pub link_status_verbs: Vec<String>,
}

/// How the sample's traffic is split between clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficSplit {
    /// SMI `TrafficSplit` through linkerd-smi.
    TrafficSplit,
    /// `policy.linkerd.io` `HTTPRoute` with weighted backendRefs.
    HttpRoute,
}

/// One Linkerd release (an entry of `linkerd-releases.yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkerdRelease {
    /// e.g. `stable-2.14.10`, `edge-25.4.4`; also the image tag of the control plane.
    pub version: String,
    /// e.g. `2.18`.
    pub minor: String,
    /// Where the data was read from.
    pub source: String,
    /// The helm repository of its charts.
    pub repo: String,
    pub charts: Charts,
    #[serde(default)]
    pub smi: Option<Smi>,
    pub links: LinkStyle,
    pub link_api: String,
    /// For `links: link` releases: how the release's linkerd-multicluster-link chart renders a
    /// link's service mirror where it differs from 2.14.10's.
    #[serde(default)]
    pub link_chart: LinkChart,
    /// The linkerd-multicluster chart's values that name the controller image.
    #[serde(default)]
    pub mc_controller_image: Vec<String>,
    /// linkerd-crds' `installGatewayAPI` default; `None` when the chart has no such value.
    #[serde(default)]
    pub gateway_api: Option<bool>,
    /// The Gateway API CRDs linkerd-crds installs (resource plurals of
    /// `gateway.networking.k8s.io`).
    #[serde(default)]
    pub gateway_api_crds: Vec<String>,
    pub traffic_split: TrafficSplit,
    /// The rows of `linkerd multicluster check`, in its order.
    pub multicluster_check: Vec<String>,
    /// What the identity controller records when it reloads its issuer.
    pub issuer_events: IssuerEvents,
}

/// The Events Linkerd's identity controller records on its Deployment when the mounted issuer
/// Secret changes: `updated` once it loaded and verified the new issuer, `skipped` when it
/// could not (and kept the old one).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEvents {
    pub deployment: String,
    pub updated: String,
    pub skipped: String,
}

impl LinkerdRelease {
    /// The minor as a number (`2.18` -> 18), for ordering and skew.
    pub fn minor_number(&self) -> u32 {
        minor_number(&self.minor).unwrap_or(0)
    }

    /// The full names of [`Self::gateway_api_crds`] (`httproutes.gateway.networking.k8s.io`).
    pub fn gateway_api_crd_names(&self) -> Vec<String> {
        self.gateway_api_crds
            .iter()
            .map(|p| format!("{p}.gateway.networking.k8s.io"))
            .collect()
    }

    /// The linkerd-smi versions, or why this release has none.
    pub fn smi(&self) -> Result<&Smi, String> {
        self.smi.as_ref().ok_or_else(|| {
            format!(
                "Linkerd {} ({}) splits traffic with HTTPRoute; linkerd-smi does not apply",
                self.minor, self.version
            )
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseFile {
    releases: Vec<LinkerdRelease>,
}

/// The release data as shipped (the text of `linkerd-releases.yaml`).
pub const RELEASES_YAML: &str = include_str!("linkerd-releases.yaml");

/// Every Linkerd release the built-in stages know, oldest first.
pub static RELEASES: LazyLock<Vec<LinkerdRelease>> = LazyLock::new(|| {
    serde_yaml_ng::from_str::<ReleaseFile>(RELEASES_YAML)
        .expect("linkerd-releases.yaml is valid (checked by the unit tests)")
        .releases
});

/// The default Linkerd release (the one the K-PaaS guide installs).
pub const DEFAULT_VERSION: &str = "stable-2.14.10";

/// Linkerd's stable chart repository (linkerd-crds, -control-plane, -multicluster).
pub const STABLE_REPO: &str = "https://helm.linkerd.io/stable";
/// The linkerd-smi chart repository.
pub const SMI_REPO: &str = "https://linkerd.github.io/linkerd-smi";

pub const LINKERD_NS: &str = "linkerd";
pub const MULTICLUSTER_NS: &str = "linkerd-multicluster";
pub const SMI_NS: &str = "linkerd-smi";
/// The multicluster extension's gateway Service (and Deployment) in [`MULTICLUSTER_NS`].
pub const GATEWAY: &str = "linkerd-gateway";

/// The registry every Linkerd image lives under by default.
pub const DEFAULT_REGISTRY: &str = "cr.l5d.io/linkerd";

/// `2.18` -> 18 (also accepts `stable-2.14.10`-style and `2.14.10`).
fn minor_number(s: &str) -> Option<u32> {
    let s = s.trim_start_matches("stable-");
    let mut parts = s.split('.');
    (parts.next()? == "2").then_some(())?;
    parts.next()?.parse().ok()
}

/// The release for `version`: a tag (`stable-2.14.10`, `edge-25.4.4`) or a minor (`2.18`),
/// else an error listing the supported ones.
pub fn release(version: &str) -> Result<&'static LinkerdRelease, String> {
    RELEASES
        .iter()
        .find(|r| r.version == version || r.minor == version)
        .ok_or_else(|| {
            format!(
                "unsupported Linkerd version '{version}' (supported: {})",
                supported().join(", ")
            )
        })
}

/// `tag (minor)` of every known release, for messages.
pub fn supported() -> Vec<String> {
    RELEASES
        .iter()
        .map(|r| format!("{} ({})", r.version, r.minor))
        .collect()
}

/// The known release whose control plane reports `version` (an image tag read from a
/// cluster), if any.
pub fn installed(version: &str) -> Option<&'static LinkerdRelease> {
    RELEASES.iter().find(|r| r.version == version)
}

/// The Linkerd minor of any version string a cluster may report (`stable-2.14.10` -> 14,
/// a known edge tag -> its minor), if it can be told.
pub fn minor_of(version: &str) -> Option<u32> {
    installed(version)
        .map(LinkerdRelease::minor_number)
        .or_else(|| minor_number(version))
}

/// The query for a cluster's `linkerd/linkerd-config` ConfigMap (its Linkerd's values).
pub fn linkerd_config_query(cluster: &str) -> kpaas_mesh_plugin_api::FactQuery {
    crate::facts::object_query(
        cluster,
        "v1",
        "ConfigMap",
        Some(LINKERD_NS),
        "linkerd-config",
    )
}

/// The Linkerd version a control plane reports: `linkerdVersion` in the `values` of its
/// `linkerd-config` ConfigMap (as the chart and the CLI write it).
pub fn installed_version(linkerd_config: &serde_json::Value) -> Option<String> {
    let text = linkerd_config["data"]["values"].as_str()?;
    let values: serde_json::Value = serde_yaml_ng::from_str(text).ok()?;
    values["linkerdVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Whether `up` may move `cluster` from the installed Linkerd `installed` to `want`: the same
/// minor, or the next one (Linkerd's rule: the control plane at most one minor ahead of the
/// data plane). A downgrade, a jump over minors, and a version kpaas-mesh cannot place are
/// refused with one line.
pub fn check_move(cluster: &str, installed: &str, want: &LinkerdRelease) -> Result<(), String> {
    let to = want.minor_number();
    let Some(from) = minor_of(installed) else {
        return Err(format!(
            "{cluster} runs Linkerd {installed}, which kpaas-mesh cannot place (supported: {})",
            supported().join(", ")
        ));
    };
    if from > to {
        return Err(format!(
            "{cluster} runs Linkerd {installed} (2.{from}); refusing to downgrade it to {} ({})",
            want.version, want.minor
        ));
    }
    if to - from > 1 {
        let between: Vec<String> = (from + 1..to).map(|m| format!("2.{m}")).collect();
        return Err(format!(
            "{cluster} runs Linkerd {installed} (2.{from}); going to {} ({}) in one step would put the control plane \
             {} minors ahead of the data plane (Linkerd allows one): upgrade through {} first",
            want.version,
            want.minor,
            to - from,
            between.join(", ")
        ));
    }
    Ok(())
}

/// The releases an `up` to `target` passes through first, oldest first: from the lowest minor
/// the clusters run (`installed`, one per cluster, `None` for a fresh one), every known release
/// of each minor in between, so that each step moves the control plane one minor at most.
/// Empty when no cluster is more than one minor behind, or when a minor in between is not in
/// the data (the control-plane stage then refuses the jump with one line).
pub fn upgrade_path(
    installed: &[Option<String>],
    target: &LinkerdRelease,
) -> Vec<&'static LinkerdRelease> {
    let Some(lowest) = installed.iter().flatten().filter_map(|v| minor_of(v)).min() else {
        return vec![];
    };
    let to = target.minor_number();
    if to <= lowest + 1 {
        return vec![];
    }
    let mut path = Vec::new();
    for minor in lowest + 1..to {
        match RELEASES.iter().find(|r| r.minor_number() == minor) {
            Some(r) => path.push(r),
            None => return vec![],
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        let r = release(DEFAULT_VERSION).unwrap();
        assert_eq!(
            (
                r.charts.crds.as_str(),
                r.charts.control_plane.as_str(),
                r.charts.multicluster.as_str(),
                r.smi().unwrap().chart.as_str()
            ),
            ("1.8.0", "1.16.11", "30.11.11", "1.0.4")
        );
        assert_eq!(r.links, LinkStyle::Link);
        assert_eq!(r.traffic_split, TrafficSplit::TrafficSplit);
        let err = release("edge-24.1.1").unwrap_err();
        assert_eq!(
            err,
            "unsupported Linkerd version 'edge-24.1.1' (supported: stable-2.14.10 (2.14), edge-24.2.4 (2.15), edge-24.8.2 (2.16), edge-24.11.8 (2.17), edge-25.4.4 (2.18), edge-25.10.7 (2.19), edge-26.6.3 (2.20))"
        );
    }

    #[test]
    fn short_names_and_edge_releases() {
        let r = release("2.18").unwrap();
        assert_eq!(r.version, "edge-25.4.4");
        assert_eq!(r.charts.multicluster, "2025.4.4");
        assert_eq!(r.links, LinkStyle::LinkGen);
        assert_eq!(r.link_api, "multicluster.linkerd.io/v1alpha3");
        assert_eq!(r.gateway_api, Some(true));
        assert_eq!(r.multicluster_check.len(), 14);
        assert!(r.smi().unwrap_err().contains("HTTPRoute"));
        assert_eq!(release("2.20").unwrap().gateway_api, Some(false));
        assert_eq!(release("2.14").unwrap().version, DEFAULT_VERSION);
        assert_eq!(minor_of("stable-2.14.10"), Some(14));
        assert_eq!(minor_of("edge-26.6.3"), Some(20));
        assert_eq!(minor_of("stable-2.13.7"), Some(13));
        assert_eq!(minor_of("edge-24.1.1"), None);
    }

    #[test]
    fn upgrades_pass_through_every_minor_in_between() {
        let r220 = release("2.20").unwrap();
        let names = |p: Vec<&LinkerdRelease>| -> Vec<String> {
            p.iter().map(|r| r.version.clone()).collect()
        };
        // 2.18 -> 2.20 passes through 2.19
        assert_eq!(
            names(upgrade_path(&[Some("edge-25.4.4".into()), None], r220)),
            ["edge-25.10.7"]
        );
        // already there, one minor behind, fresh clusters: no step in between
        assert!(upgrade_path(&[Some("edge-26.6.3".into())], r220).is_empty());
        assert!(upgrade_path(&[Some("edge-25.10.7".into())], r220).is_empty());
        assert!(upgrade_path(&[None, None], r220).is_empty());
        // the lowest cluster decides
        assert_eq!(
            names(upgrade_path(
                &[Some("edge-25.10.7".into()), Some("edge-25.4.4".into())],
                r220
            )),
            ["edge-25.10.7"]
        );
        // 2.14 -> 2.18 passes through 2.15, 2.16 and 2.17; -> 2.20 through every minor
        assert_eq!(
            names(upgrade_path(
                &[Some("stable-2.14.10".into())],
                release("2.18").unwrap()
            )),
            ["edge-24.2.4", "edge-24.8.2", "edge-24.11.8"]
        );
        assert_eq!(
            names(upgrade_path(&[Some("stable-2.14.10".into()), None], r220)),
            [
                "edge-24.2.4",
                "edge-24.8.2",
                "edge-24.11.8",
                "edge-25.4.4",
                "edge-25.10.7"
            ]
        );
    }

    #[test]
    fn moves_between_releases() {
        let r218 = release("2.18").unwrap();
        let cm = serde_json::json!({"data": {"values": "linkerdVersion: stable-2.14.10\nclusterDomain: cluster.local\n"}});
        assert_eq!(installed_version(&cm).as_deref(), Some("stable-2.14.10"));
        assert_eq!(installed_version(&serde_json::json!({})), None);
        assert!(check_move("c1", "edge-25.4.4", r218).is_ok());
        // an edge tag the data does not list has no known minor
        assert!(check_move("c1", "edge-24.5.1", r218).is_err());
        assert!(check_move("c1", "edge-24.11.8", r218).is_ok());
        assert!(check_move("c1", "stable-2.17.1", r218).is_ok());
        assert_eq!(
            check_move("c1", "stable-2.14.10", r218).unwrap_err(),
            "c1 runs Linkerd stable-2.14.10 (2.14); going to edge-25.4.4 (2.18) in one step would put the control \
             plane 4 minors ahead of the data plane (Linkerd allows one): upgrade through 2.15, 2.16, 2.17 first"
        );
        assert_eq!(
            check_move("c2", "edge-26.6.3", r218).unwrap_err(),
            "c2 runs Linkerd edge-26.6.3 (2.20); refusing to downgrade it to edge-25.4.4 (2.18)"
        );
        assert!(
            check_move("c3", "edge-22.1.1", r218)
                .unwrap_err()
                .starts_with("c3 runs Linkerd edge-22.1.1, which kpaas-mesh cannot place")
        );
    }

    #[test]
    fn the_data_is_ordered_and_consistent() {
        let minors: Vec<u32> = RELEASES.iter().map(|r| r.minor_number()).collect();
        assert!(minors.windows(2).all(|w| w[0] < w[1]), "{minors:?}");
        for r in RELEASES.iter() {
            // an edge release's charts carry its date (bin/helm-bump-edge), from edge-24.3.1 on;
            // before, the versions committed in its tree (`-edge` patch versions)
            let in_tree = r.charts.crds.ends_with("-edge");
            if in_tree {
                assert_eq!(r.version, "edge-24.2.4");
                assert!(
                    r.charts.control_plane.ends_with("-edge")
                        && r.charts.multicluster.ends_with("-edge")
                );
            }
            if let (Some(date), false) = (r.version.strip_prefix("edge-"), in_tree) {
                let want = format!("20{date}");
                assert_eq!(
                    [
                        &r.charts.crds,
                        &r.charts.control_plane,
                        &r.charts.multicluster
                    ],
                    [&want, &want, &want],
                    "{}",
                    r.version
                );
            }
            assert_eq!(
                r.smi.is_some(),
                r.traffic_split == TrafficSplit::TrafficSplit,
                "{}",
                r.version
            );
        }
    }
}
