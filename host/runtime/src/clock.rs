//! The guest's monotonic clock, whose waits end at the poll's deadline.
//!
//! The epoch deadline stops running wasm only. A guest that asks the host
//! to wait (`subscribe-duration` or `subscribe-instant`, then `poll` or
//! `block`) would keep the calling thread, an agent's poll or the web
//! app's upload check, for as long as it asked. Here every wait it can
//! make ends by the deadline; back in wasm, the epoch trap ends the call.

use crate::sandbox::PollState;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// The interface `wasmtime_wasi::p2::add_to_linker_sync` defines (its WIT
/// version); guests importing an older 0.2 version are served by it too.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Nanoseconds since the store was made: what the guest reads as `now`.
#[derive(Clone, Copy)]
pub struct GuestClock {
    start: Instant,
}

impl GuestClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl wasmtime_wasi::HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Ready at a moment, never later than the deadline it was cut to.
struct Until(tokio::time::Instant);

impl Pollable for Until {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(tokio::time::sleep_until(self.0))
    }
}

/// Replaces the clock's two waits with ones cut at the poll's deadline.
pub fn add_to_linker(linker: &mut Linker<PollState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, PollState>, (nanos,): (u64,)| {
            Ok((wait(store.data_mut(), Duration::from_nanos(nanos))?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, PollState>, (when,): (u64,)| {
            let state = store.data_mut();
            let now = wasmtime_wasi::HostMonotonicClock::now(&state.clock);
            Ok((wait(state, Duration::from_nanos(when.saturating_sub(now)))?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn wait(state: &mut PollState, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let asked = Instant::now().checked_add(wait).unwrap_or(state.deadline);
    let until = tokio::time::Instant::from_std(asked.min(state.deadline));
    let pollable = state.table.push(Until(until))?;
    subscribe(&mut state.table, pollable)
}
