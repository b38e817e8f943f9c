//! FilePoller: every regular file directly in the root, one transfer each.
//! Never directories, never recursion.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, Poller, export_poller};

pub struct FilePoller;

impl Poller for FilePoller {
    fn describe() -> Info {
        Info::new(
            "file",
            env!("CARGO_PKG_VERSION"),
            "Sends each file directly in the root; never directories, never recursion.",
        )
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        Ok(ctx
            .files_of("")?
            .into_iter()
            .map(|f| Action::transfer_file(f.name))
            .collect())
    }
}

export_poller!(FilePoller);
