//! The Dispatch agent's library: the poller runtime (wasmtime, sandbox,
//! compile cache), path confinement, actions and parameters.
//!
//! The binary `dispatch-agent` is a thin CLI over this.

pub mod actions;
pub mod builtin;
pub mod confine;
pub mod params;
pub mod runtime;

pub use actions::Action;
pub use params::PluginInfo;
pub use runtime::{Limits, LoadError, Plugin, PollError, Runtime, RuntimeConfig};
