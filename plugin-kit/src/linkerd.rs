//! Linkerd facts the built-in stages share, as data: chart versions of each supported Linkerd
//! release, the public chart repositories, namespaces and well-known names. Plugins read them
//! from here so they agree with each other; the helpers that turn them into actions are in
//! [`crate::charts`] and [`crate::actions`].

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
/// The multicluster extension's gateway Service (and Deployment) in [`MULTICLUSTER_NS`].
pub const GATEWAY: &str = "linkerd-gateway";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
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
    }
}
