//! The host of `kubectl kpaas-mesh` as a library: the binary in `main.rs` is a thin wrapper,
//! and integration tests drive the same loader, pipeline and executor.
//!
//! CLI ([`cli`]) → plugin loader ([`loader`]) → pipeline ([`pipeline`]) → executor
//! ([`executor`]), with [`facts`] answering the stages' questions, [`clusters`] and [`helm`]
//! doing the cluster I/O, and [`render`] printing.

pub mod cli;
pub mod clusters;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod executor;
pub mod facts;
pub mod gitops;
pub mod helm;
pub mod interrupt;
pub mod loader;
pub mod lock;
pub mod options;
pub mod pipeline;
pub mod progress;
pub mod render;
pub mod rotate;
pub mod upgrade;
