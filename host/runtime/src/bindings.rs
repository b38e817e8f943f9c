//! Host bindings generated from `wit/poller.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "dispatch:poller/poller",
});

pub use dispatch::poller::types;
