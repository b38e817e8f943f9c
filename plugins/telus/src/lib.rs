//! TelusPoller: root/PROVIDER/D/file, each file one transfer keeping
//! `PROVIDER/D/file`. No directory is ever removed.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, Poller, export_poller, join};

pub struct TelusPoller;

impl Poller for TelusPoller {
    fn describe() -> Info {
        Info::new(
            "telus",
            env!("CARGO_PKG_VERSION"),
            "Sends each file of root/PROVIDER/DIR/ individually, keeping PROVIDER/DIR/file; directories stay.",
        )
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let mut actions = Vec::new();
        for provider in ctx.subdirs_of("")? {
            for dir in ctx.subdirs_of(&provider.name)? {
                let dir_path = join(&provider.name, &dir.name);
                for file in ctx.files_of(&dir_path)? {
                    actions.push(Action::transfer_file(join(&dir_path, &file.name)));
                }
            }
        }
        Ok(actions)
    }
}

export_poller!(TelusPoller);
