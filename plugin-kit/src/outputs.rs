//! What the built-in stages hand to later stages of the same run (carried as JSON in
//! [`kpaas_mesh_plugin_api::Plan::outputs`] and read back from
//! [`kpaas_mesh_plugin_api::StageRequest::inputs`]).

use serde::{Deserialize, Serialize};

/// What a netfix plugin hands to the link step: how each source reaches each target's
/// gateway (`Link.spec.gatewayAddress` / `gatewayPort`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetfixOutputs {
    #[serde(default)]
    pub routes: Vec<GatewayRoute>,
}

/// The address (and port, when not the gateway Service's own) `source` uses for `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRoute {
    pub source: String,
    pub target: String,
    pub address: String,
    #[serde(default)]
    pub port: Option<u16>,
}

impl NetfixOutputs {
    /// The route from `source` to `target`, if the netfix stage gave one.
    pub fn route(&self, source: &str, target: &str) -> Option<&GatewayRoute> {
        self.routes
            .iter()
            .find(|r| r.source == source && r.target == target)
    }
}

/// What the cert stage hands to later stages (control-plane reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertOutputs {
    /// The roots every cluster is to trust (one anchor, or new + old during an anchor rotation).
    pub trust_anchor_pem: String,
    pub issuer_cert_pem: String,
    pub issuer_key_pem: String,
    /// Set by `certs rotate`: where the rotation stands once this run's plan is carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

/// A certificate rotation as the cert stage planned it from what the clusters run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// `issuer` or `anchor`.
    pub kind: String,
    /// The phase every cluster has finished before this run (anchor: 0 = not started, 1 = new+old
    /// bundle, 2 = issuers from the new anchor, 3 = old anchor removed; issuer: 0 or 1).
    pub from_phase: u8,
    /// The phase every cluster has finished once this run's plan is carried out.
    pub to_phase: u8,
    /// How many phases the rotation has.
    pub phases: u8,
    /// Nothing is left to do: every cluster runs the rotated certificates and the certs dir
    /// holds them as `up` reads them.
    pub complete: bool,
    /// Meshed workloads whose pods started before the last phase's change reached their cluster:
    /// they must be restarted before the next phase (the plan holds no cluster action then).
    #[serde(default)]
    pub restart: Vec<WorkloadRef>,
    /// Fingerprints of the anchor being replaced and its replacement (anchor rotations).
    #[serde(default)]
    pub old_anchor: String,
    #[serde(default)]
    pub new_anchor: String,
}

/// A workload of meshed pods (`kind` is `Deployment`, `StatefulSet` or `DaemonSet`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub cluster: String,
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

/// What the multicluster stage hands on (the host reads it after `link --rotate-credentials`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MulticlusterOutputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialRotation>,
}

/// A rotation of the links' remote-access tokens, as the multicluster stage planned it from
/// what the clusters hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRotation {
    /// Every target's links use its newest token and no older token is left.
    pub complete: bool,
    /// Service mirrors that started before their credentials changed: the host restarts them
    /// (they read the credentials when they start) before the old tokens may go.
    #[serde(default)]
    pub restart: Vec<WorkloadRef>,
    /// One line per target on where it stands.
    #[serde(default)]
    pub progress: Vec<String>,
}
