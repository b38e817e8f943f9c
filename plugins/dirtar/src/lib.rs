//! DirTarPoller: each file of each subdirectory whose name ends in `.tar`
//! (the `suffix` parameter), one transfer each (`D/x.tar`).

use dispatch_poller_sdk::{
    Action, Context, Info, ParamSpec, ParamType, Poller, export_poller, join,
};

pub struct DirTarPoller;

impl Poller for DirTarPoller {
    fn describe() -> Info {
        Info::new(
            "dirtar",
            env!("CARGO_PKG_VERSION"),
            "Sends each file of each subdirectory of the root whose name ends in .tar, individually.",
        )
        .param(ParamSpec::new(
            "suffix",
            ParamType::Text,
            Some(".tar"),
            "Only files whose name ends with this (case-sensitive) are sent",
        ))
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let suffix = ctx.params().text("suffix")?;
        let mut actions = Vec::new();
        for dir in ctx.subdirs_of("")? {
            for file in ctx.files_of(&dir.name)? {
                if file.name.ends_with(suffix) {
                    actions.push(Action::transfer_file(join(&dir.name, &file.name)));
                }
            }
        }
        Ok(actions)
    }
}

export_poller!(DirTarPoller);
