//! `dispatch:poller@0.2.0`, from `wit/poller.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "dispatch:poller/poller@0.2.0",
    with: {
        "dispatch:poller/fs.listing": crate::root_fs::Listing,
    },
});

pub use dispatch::poller::{fs, log, types};
