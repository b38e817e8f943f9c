//! SubDirPoller: each file of each subdirectory of the root, one transfer
//! each (`subdir/file`). The subdirectories themselves stay.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, Poller, export_poller, join};

pub struct SubDirPoller;

impl Poller for SubDirPoller {
    fn describe() -> Info {
        Info::new(
            "subdir",
            env!("CARGO_PKG_VERSION"),
            "Sends each file of each subdirectory of the root individually; the subdirectories stay.",
        )
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let mut actions = Vec::new();
        for dir in ctx.subdirs_of("")? {
            for file in ctx.files_of(&dir.name)? {
                actions.push(Action::transfer_file(join(&dir.name, &file.name)));
            }
        }
        Ok(actions)
    }
}

export_poller!(SubDirPoller);
