//! `dispatch:poller@0.1.0`, from `wit/frozen/0.1.0`. Its types are the
//! latest's (0.2.0 left `types` unchanged, and wasmtime checks them by
//! shape), so only its imports need adapting: `fs` and `log` call the
//! latest's.

use super::latest;
use crate::sandbox::PollState;

wasmtime::component::bindgen!({
    path: "../../wit/frozen/0.1.0",
    world: "dispatch:poller/poller@0.1.0",
    with: {
        "dispatch:poller/types": super::latest::types,
    },
});

use dispatch::poller::{fs, log};

impl fs::Host for PollState {
    fn list_dir(&mut self, path: String) -> Result<Vec<latest::types::Entry>, String> {
        latest::fs::Host::list_dir(self, path)
    }

    fn stat(&mut self, path: String) -> Result<Option<latest::types::Entry>, String> {
        latest::fs::Host::stat(self, path)
    }
}

impl log::Host for PollState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => latest::log::Level::Trace,
            log::Level::Debug => latest::log::Level::Debug,
            log::Level::Info => latest::log::Level::Info,
            log::Level::Warn => latest::log::Level::Warn,
            log::Level::Error => latest::log::Level::Error,
        };
        latest::log::Host::log(self, level, message);
    }
}
