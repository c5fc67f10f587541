//! The names of the built-in stages and the one step of theirs that `up` runs twice
//! (multicluster's links). The host never needs these to order a pipeline — every plugin
//! says where it goes in its descriptor — but plugins and tests name each other by them.

pub const CERT: &str = "cert";
pub const CONTROL_PLANE: &str = "control-plane";
pub const MULTICLUSTER: &str = "multicluster";
pub const NETFIX: &str = "netfix";
pub const SMI: &str = "smi";
pub const SAMPLE: &str = "sample";
/// multicluster's link step inside `up` (after netfix said how each gateway is reached).
pub const MULTICLUSTER_LINK: &str = "multicluster/link";

/// The built-in stages, in the K-PaaS guide's order.
pub const BUILT_IN: [&str; 6] = [CERT, CONTROL_PLANE, MULTICLUSTER, NETFIX, SMI, SAMPLE];

use kpaas_mesh_plugin_api::{Descriptor, ExtraStep, Operation};

/// Every operation a full built-in stage answers except the link pair.
pub const LIFECYCLE: [Operation; 4] = [
    Operation::Up,
    Operation::Down,
    Operation::Status,
    Operation::Check,
];

/// The place of a netfix plugin in the pipeline: after the multicluster extension (its
/// gateways have addresses), before the links (which use the routes it hands on); it
/// answers `link` too, so `kubectl kpaas-mesh link` recomputes the routes.
pub fn netfix_descriptor() -> Descriptor {
    let mut ops = LIFECYCLE.to_vec();
    ops.push(Operation::Link);
    Descriptor::new(NETFIX, &ops).after(&[MULTICLUSTER])
}

/// The multicluster stage's place: after the control plane; its links are an extra `up`
/// step after netfix, undone by `unlink` in `down`.
pub fn multicluster_descriptor() -> Descriptor {
    let mut ops = LIFECYCLE.to_vec();
    ops.extend([Operation::Link, Operation::Unlink]);
    Descriptor::new(MULTICLUSTER, &ops)
        .after(&[CONTROL_PLANE])
        .extra_step(ExtraStep {
            operation: Operation::Link,
            undo: Operation::Unlink,
            after: vec![NETFIX.into()],
            before: vec![],
        })
}
