//! Typed options of the built-in stages, carried in [`crate::StageRequest::options`].
//! Third-party plugins define their own; the host passes `--set`-style options through.

use serde::{Deserialize, Serialize};

/// Options of the cert stage (`up`, `certs generate`, `certs inspect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        }
    }
}
