//! `stamp`, built twice: version 1.0.0 sends the root's files ending in
//! `.v1`, version 2.0.0 (feature `v2`) those ending in `.v2`, so a test sees
//! from what is sent which version an agent runs.

use dispatch_poller_sdk::{Action, Context, Info, Poller, export_poller};

#[cfg(not(feature = "v2"))]
const VERSION: (&str, &str) = ("1.0.0", ".v1");
#[cfg(feature = "v2")]
const VERSION: (&str, &str) = ("2.0.0", ".v2");

pub struct Stamp;

impl Poller for Stamp {
    fn describe() -> Info {
        Info::new(
            "stamp",
            VERSION.0,
            "Sends the files of one version's suffix (a test component).",
        )
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        Ok(ctx
            .files_of("")?
            .into_iter()
            .filter(|f| f.name.ends_with(VERSION.1))
            .map(|f| Action::transfer_file(f.name))
            .collect())
    }
}

export_poller!(Stamp);
