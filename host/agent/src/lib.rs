//! The Dispatch agent: the engine (a live set of pollers, applied as a diff
//! from a desired state), the transfer journal, the standalone file, and the
//! sync with the web app. The poller runtime and the transfer backends are
//! crates of their own (`dispatch-runtime`, `dispatch-transfer`).
//!
//! The binary `dispatch-agent` is a thin CLI over this.

pub mod author;
pub mod config;
pub mod conformance;
pub mod engine;
pub mod journal;
pub mod run;
pub mod sync;
