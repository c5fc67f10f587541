//! The contract between `kubectl-kpaas-mesh` (the host) and its stage plugins.
//!
//! # Shape of the contract
//!
//! Every plugin library exports one [`ffi::PluginModRef`] root module (via
//! [`export_stage_plugin!`]) that tells who it is ([`ffi::PluginInfo`]: ABI version, name,
//! version, description and its [`Descriptor`]: the stage it provides — an open name —, where
//! that stage goes in the pipeline, the operations it answers, the schema of its options) and
//! constructs a [`ffi::StageBox`]. The stage object has two synchronous methods: `call` takes
//! a [`messages::StageRequest`] and returns a [`messages::StageResponse`]; `execute` carries
//! out one [`messages::Action::Plugin`] of a plan the stage returned (a write to an outside
//! system the host has no client for, such as an IaaS API).
//!
//! This crate is the ABI and nothing else: it knows no Linkerd release, no chart, no stage
//! name. Shared knowledge and plugin helpers live in `kpaas-mesh-kit`, whose changes never
//! change [`ABI_VERSION`].
//!
//! # Why plans and facts, not callbacks
//!
//! A stage never touches a cluster. It is a pure function from *what the host observed* to
//! *what must exist*: given the clusters, its options, the outputs of earlier stages and the
//! facts gathered so far, it either asks for more facts ([`messages::FactQuery`]: a file, an
//! object, a list, a helm release, ...) or answers with a [`messages::Plan`] (files to write,
//! manifests to apply, helm releases, waits, checks, tables). The host owns every piece of
//! I/O: it answers fact queries, executes plans with server-side apply, waits with watches,
//! retries, reports progress and implements `--dry-run` by printing the plan instead of
//! running it. Writes to systems only the plugin can reach are [`messages::Action::Plugin`]
//! actions: data in the plan (printed by `--dry-run`), run by the host in order through
//! `execute`, reported like every other action. We chose this over a host callback object
//! because:
//! - nothing async, no tokio handle and no kube client ever crosses the FFI boundary;
//! - a plan is data, so dry-run output is exactly what would run, and every plugin is
//!   unit-testable with no cluster (feed facts, assert on the plan);
//! - no re-entrancy: a callback from plugin into host would run inside a blocking call and
//!   could not safely enter the host's runtime.
//!
//! # Transport
//!
//! Messages are serde structs defined once in [`messages`] and carried across the ABI as JSON
//! in `RString`s. JSON keeps the ABI surface tiny (one string in, one string out) and lets
//! messages grow fields (`#[serde(default)]`) without breaking the binary layout; the binary
//! layout itself (root module, stage trait, [`ffi::PluginInfo`]) is checked by abi_stable at
//! load time against this crate's version, which is the plugin ABI version ([`ABI_VERSION`]).
//!
//! # Panics
//!
//! A panic unwinding across `extern "C"` aborts the process. [`export_stage_plugin!`] wraps
//! every entry point in `catch_unwind` and turns a panic into an error string, so a broken
//! plugin produces an error in the host, never an abort.

// `#[sabi_trait]` and the prefix-type derive expand to impls inside generated consts and to
// `*_Ref` type names; both trip rustc lints that say nothing about our code.
#![allow(non_local_definitions, non_camel_case_types)]

pub mod descriptor;
pub mod export;
pub mod ffi;
pub mod messages;

pub use descriptor::{Descriptor, ExtraStep, OptionKind, OptionSpec};
pub use export::{PluginError, StagePlugin};
pub use messages::*;

/// Re-exported so plugins and the host name the exact abi_stable this ABI was built with.
pub use abi_stable;
/// Re-exported so plugins build their JSON values with the same serde_json as the messages.
pub use serde_json;

/// The plugin ABI version: this crate's version. abi_stable compares it (semver) when a
/// plugin is loaded; the host prints both sides when they are incompatible.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The field manager the host uses for server-side apply; plugins may put it in labels.
pub const FIELD_MANAGER: &str = "kpaas-mesh";
