//! The Dispatch agent's library: the poller runtime (wasmtime, sandbox,
//! compile cache), path confinement, actions and parameters, and the engine
//! (configuration, stability, queues, transfer backends, journal).
//!
//! The binary `dispatch-agent` is a thin CLI over this.

pub mod actions;
pub mod builtin;
pub mod config;
pub mod confine;
pub mod engine;
pub mod journal;
pub mod params;
pub mod runtime;
pub mod secret;
pub mod testhook;
pub mod transfer;

pub use actions::Action;
pub use params::PluginInfo;
pub use runtime::{Limits, LoadError, Plugin, PollError, Runtime, RuntimeConfig};
