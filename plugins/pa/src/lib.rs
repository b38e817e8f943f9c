//! PAPoller: root/PROVIDER/ASSET/, each ASSET directory whose files include
//! every marker is sent as one directory transfer. Providers stay.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, Poller, export_poller, join};

pub struct PaPoller;

impl Poller for PaPoller {
    fn describe() -> Info {
        Info::new(
            "pa",
            env!("CARGO_PKG_VERSION"),
            "Sends each root/PROVIDER/ASSET directory whose files include every marker, as one directory transfer.",
        )
        .param(ParamSpec::markers())
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let markers = ctx.markers()?;
        let mut actions = Vec::new();
        for provider in ctx.subdirs_of("")? {
            for asset in ctx.subdirs_of(&provider.name)? {
                let path = join(&provider.name, &asset.name);
                let missing = ctx.missing(&ctx.files_of(&path)?, &markers);
                if missing.is_empty() {
                    actions.push(Action::transfer_dir(path));
                } else {
                    ctx.not_ready(&path, &format!("missing {}", missing.join(", ")));
                }
            }
        }
        Ok(actions)
    }
}

export_poller!(PaPoller);
