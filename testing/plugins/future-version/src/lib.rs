//! A poller built against a WIT version the host does not support.

wit_bindgen::generate!({ path: "wit", world: "dispatch:poller/poller@0.3.0" });

use dispatch::poller::types::{Action, Info, PollRequest};
use exports::dispatch::poller::plugin::Guest;

pub struct Future;

impl Guest for Future {
    fn describe() -> Info {
        Info {
            name: "future".into(),
            version: "0.1.0".into(),
            description: "Built for a newer contract.".into(),
            params: Vec::new(),
        }
    }

    fn poll(_request: PollRequest) -> Result<Vec<Action>, String> {
        Ok(Vec::new())
    }
}

export!(Future);
