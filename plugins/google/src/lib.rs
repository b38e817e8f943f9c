//! GooglePoller: a small state machine per subdirectory D of the root, over
//! the files of D.
//!
//! 1. only `dispatch.done`: the delivery is finished, remove D;
//! 2. only `delivery.complete`: send it, then create `D/dispatch.done`;
//! 3. every marker and no `delivery.complete`: send each file, then create
//!    `D/delivery.complete`;
//! 4. anything else: not ready.
//!
//! The markers are created as follow-ups of a group, so the host makes them
//! only once every transfer of the step succeeded: `delivery.complete` reaches
//! the remote after every other file of D, and D goes only after that.

use dispatch_poller_sdk::{
    Action, Context, Entry, FollowUp, Info, ItemKind, Level, ParamSpec, Poller, Transfer,
    export_poller, join,
};

/// Sent last: tells the receiver the asset is whole.
pub const DELIVERY_COMPLETE: &str = "delivery.complete";
/// Left at the source once `delivery.complete` was sent.
pub const DISPATCH_DONE: &str = "dispatch.done";

pub struct GooglePoller;

impl Poller for GooglePoller {
    fn describe() -> Info {
        Info::new(
            "google",
            env!("CARGO_PKG_VERSION"),
            "Per subdirectory: sends every file once the markers are there, then an empty delivery.complete, then removes the directory.",
        )
        .param(ParamSpec::markers())
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let markers = ctx.markers()?;
        let mut actions = Vec::new();
        for dir in ctx.subdirs_of("")? {
            let d = dir.name.as_str();
            let files = ctx.files_of(d)?;
            let only = |name: &str| files.len() == 1 && files[0].name == name;
            if only(DISPATCH_DONE) {
                // Never delete nested directories the state machine knows nothing of.
                if ctx.subdirs_of(d)?.is_empty() {
                    actions.push(Action::remove_dir(d));
                } else {
                    ctx.log(
                        Level::Warn,
                        &format!("{d}: done, but holds subdirectories: left in place"),
                    );
                }
            } else if only(DELIVERY_COMPLETE) {
                actions.push(Action::group(
                    vec![file_transfer(d, &files[0])],
                    vec![FollowUp::Touch(join(d, DISPATCH_DONE))],
                ));
            } else if ctx.has_all(&files, &markers)
                && !files.iter().any(|f| f.name == DELIVERY_COMPLETE)
            {
                actions.push(Action::group(
                    files.iter().map(|f| file_transfer(d, f)).collect(),
                    vec![FollowUp::Touch(join(d, DELIVERY_COMPLETE))],
                ));
            } else {
                ctx.log(Level::Debug, &format!("{d}: not ready"));
            }
        }
        Ok(actions)
    }
}

fn file_transfer(dir: &str, file: &Entry) -> Transfer {
    Transfer {
        path: join(dir, &file.name),
        kind: ItemKind::File,
    }
}

export_poller!(GooglePoller);
