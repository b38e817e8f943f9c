//! GooglePoller: a small state machine per subdirectory D of the root, over
//! the files of D.
//!
//! 1. only `dispatch.done`: the delivery is finished, remove D;
//! 2. only `delivery.complete`: send it, then create `D/dispatch.done`;
//! 3. every marker and no `delivery.complete`: send each file, then create
//!    `D/delivery.complete`;
//! 4. anything else: not ready, and the poll says why (`Context::not_ready`),
//!    which the agent shows on the poller's page.
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
                    ctx.not_ready(d, "done, but holds subdirectories: left in place");
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
                ctx.not_ready(d, &why_not_ready(&files, &markers));
            }
        }
        Ok(actions)
    }
}

/// Why a directory matches no step: its markers missing, or a marker of a
/// later step beside other files.
fn why_not_ready(files: &[Entry], markers: &[String]) -> String {
    let names = |it: &mut dyn Iterator<Item = &str>| {
        let all: Vec<&str> = it.collect();
        let shown = all.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        match all.len() {
            0..=5 => shown,
            n => format!("{shown} and {} more", n - 5),
        }
    };
    let others = |marker: &str| {
        names(
            &mut files
                .iter()
                .map(|f| f.name.as_str())
                .filter(move |n| *n != marker),
        )
    };
    for marker in [DISPATCH_DONE, DELIVERY_COMPLETE] {
        if files.iter().any(|f| f.name == marker) {
            return format!(
                "`{marker}` is there beside other files ({}): sent already, or they came after it; remove what does not belong",
                others(marker)
            );
        }
    }
    if files.is_empty() {
        return "no files yet".into();
    }
    let missing = names(
        &mut markers
            .iter()
            .map(String::as_str)
            .filter(|m| !files.iter().any(|f| f.name == *m)),
    );
    format!("waiting for the markers: {missing} missing")
}

fn file_transfer(dir: &str, file: &Entry) -> Transfer {
    Transfer {
        path: join(dir, &file.name),
        kind: ItemKind::File,
    }
}

export_poller!(GooglePoller);
