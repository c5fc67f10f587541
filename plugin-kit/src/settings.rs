//! What the host tells every built-in stage of a command ([`MeshSettings`], carried in
//! [`kpaas_mesh_plugin_api::StageRequest::settings`]), and the cert stage's own options
//! ([`CertOptions`], which the `certs` commands fill in as well as `--set cert.KEY=VALUE`).
//! Each other plugin defines its own options type next to its code.

use serde::{Deserialize, Serialize};

/// Options of the cert stage (`up`, `certs generate`, `certs inspect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertOptions {
    /// Directory holding `ca.crt ca.key issuer.crt issuer.key`.
    pub dir: String,
    /// A trust anchor to import instead of generating one (with `anchor_key`).
    #[serde(default)]
    pub anchor_cert: Option<String>,
    #[serde(default)]
    pub anchor_key: Option<String>,
    /// Validity of a newly issued issuer certificate, in seconds (guide: 8760h).
    #[serde(default = "CertOptions::default_issuer_validity")]
    pub issuer_validity_secs: u64,
    /// Validity of a newly generated trust anchor, in seconds (step's root-ca: 10 years).
    #[serde(default = "CertOptions::default_anchor_validity")]
    pub anchor_validity_secs: u64,
    /// Warn when a certificate expires within this many days (Linkerd's check: 60).
    #[serde(default = "CertOptions::default_warn_days")]
    pub warn_days: u32,
    /// Set by `certs rotate`: `issuer` or `anchor` (one phase per run, planned from what the
    /// clusters run).
    #[serde(default)]
    pub rotate: Option<String>,
}

impl CertOptions {
    pub const DEFAULT_ISSUER_VALIDITY_SECS: u64 = 8760 * 3600;
    pub const DEFAULT_ANCHOR_VALIDITY_SECS: u64 = 10 * 365 * 24 * 3600;
    pub const DEFAULT_WARN_DAYS: u32 = 60;

    fn default_issuer_validity() -> u64 {
        Self::DEFAULT_ISSUER_VALIDITY_SECS
    }
    fn default_anchor_validity() -> u64 {
        Self::DEFAULT_ANCHOR_VALIDITY_SECS
    }
    fn default_warn_days() -> u32 {
        Self::DEFAULT_WARN_DAYS
    }

    /// Options for `dir` with every default.
    pub fn new(dir: impl Into<String>) -> Self {
        CertOptions {
            dir: dir.into(),
            anchor_cert: None,
            anchor_key: None,
            issuer_validity_secs: Self::DEFAULT_ISSUER_VALIDITY_SECS,
            anchor_validity_secs: Self::DEFAULT_ANCHOR_VALIDITY_SECS,
            warn_days: Self::DEFAULT_WARN_DAYS,
            rotate: None,
        }
    }
}

/// Settings shared by the built-in Linkerd stages (control-plane, multicluster, smi,
/// netfix and sample): which Linkerd, where charts and images come from, user values, and
/// the inputs of the command itself (`unlink --from`, `verify`'s flags).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshSettings {
    /// The Linkerd release, e.g. `stable-2.14.10` (see [`crate::linkerd::RELEASES`]).
    #[serde(default = "MeshSettings::default_version")]
    pub linkerd_version: String,
    /// Install charts from this local directory instead of the public repositories.
    #[serde(default)]
    pub chart_dir: Option<String>,
    /// Rewrite every image to this registry path (e.g. a private Harbor project).
    #[serde(default)]
    pub registry: Option<String>,
    /// Extra helm values by stage name or release name (`--values control-plane=FILE`).
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
    /// How long a wait may take before the stage fails.
    #[serde(default = "MeshSettings::default_timeout")]
    pub timeout_secs: u64,
    /// The certificate directory, for stages that need the certificates when the cert
    /// stage did not run in the same command.
    #[serde(default)]
    pub certs_dir: Option<String>,
    /// `unlink --from NAME`: only the links to this cluster.
    #[serde(default)]
    pub unlink_from: Option<String>,
    /// `verify`'s flags (requests, from, max_errors), for the sample stage's check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<serde_json::Value>,
    /// `link --rotate-credentials`: the generation of the new remote-access token Secrets on
    /// the first run (the host's clock, seconds); `0` on the runs after it (finish what is
    /// under way, start nothing new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_credentials: Option<u64>,
}

impl MeshSettings {
    pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

    fn default_version() -> String {
        crate::linkerd::DEFAULT_VERSION.to_string()
    }
    fn default_timeout() -> u64 {
        Self::DEFAULT_TIMEOUT_SECS
    }
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            linkerd_version: Self::default_version(),
            chart_dir: None,
            registry: None,
            values: Default::default(),
            timeout_secs: Self::DEFAULT_TIMEOUT_SECS,
            certs_dir: None,
            unlink_from: None,
            verify: None,
            rotate_credentials: None,
        }
    }
}
