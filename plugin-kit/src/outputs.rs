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
    pub trust_anchor_pem: String,
    pub issuer_cert_pem: String,
    pub issuer_key_pem: String,
}
