//! Shared knowledge and helpers of kpaas-mesh's host and built-in stage plugins — not part
//! of the plugin ABI. What a Linkerd release is made of ([`linkerd`]), the settings every
//! built-in stage receives ([`settings`]), chart/value helpers ([`charts`]), shared action
//! builders ([`actions`]), readers of the Kubernetes objects stages get as facts ([`k8s`]),
//! the outputs stages hand each other ([`outputs`]), and the built-in stage names
//! ([`stages`]). A vendor plugin may use it or not; changing it never changes
//! `kpaas_mesh_plugin_api::ABI_VERSION`.

pub mod actions;
pub mod anchors;
pub mod charts;
pub mod checks;
pub mod facts;
pub mod files;
pub mod k8s;
pub mod linkerd;
pub mod options;
pub mod outputs;
pub mod settings;
pub mod stages;
pub mod tables;
#[cfg(feature = "testkit")]
pub mod testkit;

/// The Kubernetes types [`facts`] returns, re-exported so plugins use the kit's version.
pub use k8s_openapi;
pub use outputs::{
    CertOutputs, CredentialRotation, GatewayRoute, MulticlusterOutputs, NetfixOutputs, Rotation,
    WorkloadRef,
};
pub use settings::{CertOptions, MeshSettings};
