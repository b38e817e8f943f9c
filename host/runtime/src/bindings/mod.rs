//! Host bindings, one module per `dispatch:poller` version (the shape of
//! Zed's `extension_host`): `latest` is `wit/poller.wit`, each older one is
//! generated from `wit/frozen/<version>/` and adapted to the latest in its
//! own module, so the rest of the host knows one set of types.

pub mod latest;
pub mod v0_1_0;

pub use latest::types;

use crate::sandbox::PollState;
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

/// The `dispatch:poller` versions this host runs, oldest first.
pub const WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Links every version's imports (their names differ by version).
pub fn add_to_linker(linker: &mut Linker<PollState>) -> wasmtime::Result<()> {
    latest::Poller::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1_0::Poller::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

/// A plugin ready to instantiate, whichever version it targets; calls give
/// the latest's types.
pub enum PollerPre {
    Latest(latest::PollerPre<PollState>),
    V0_1_0(v0_1_0::PollerPre<PollState>),
}

impl PollerPre {
    /// `pre` for a plugin that exports `dispatch:poller/plugin@{version}`
    /// (one of [`WIT_VERSIONS`]).
    pub fn new(pre: InstancePre<PollState>, version: &str) -> wasmtime::Result<Self> {
        Ok(match version {
            "0.1.0" => Self::V0_1_0(v0_1_0::PollerPre::new(pre)?),
            _ => Self::Latest(latest::PollerPre::new(pre)?),
        })
    }

    pub fn describe(&self, store: &mut Store<PollState>) -> wasmtime::Result<types::Info> {
        match self {
            Self::Latest(pre) => pre
                .instantiate(&mut *store)?
                .dispatch_poller_plugin()
                .call_describe(store),
            Self::V0_1_0(pre) => pre
                .instantiate(&mut *store)?
                .dispatch_poller_plugin()
                .call_describe(store),
        }
    }

    pub fn poll(
        &self,
        store: &mut Store<PollState>,
        request: &types::PollRequest,
    ) -> wasmtime::Result<Result<Vec<types::Action>, String>> {
        match self {
            Self::Latest(pre) => pre
                .instantiate(&mut *store)?
                .dispatch_poller_plugin()
                .call_poll(store, request),
            Self::V0_1_0(pre) => pre
                .instantiate(&mut *store)?
                .dispatch_poller_plugin()
                .call_poll(store, request),
        }
    }
}
