//! DirPoller: each subdirectory of the root whose files include every ready
//! marker is sent as one directory transfer; the others are not ready yet.

use dispatch_poller_sdk::{Action, Context, Info, ParamSpec, Poller, export_poller};

pub struct DirPoller;

impl Poller for DirPoller {
    fn describe() -> Info {
        Info::new(
            "dir",
            env!("CARGO_PKG_VERSION"),
            "Sends each subdirectory of the root whose files include every marker, as one directory transfer.",
        )
        .param(ParamSpec::markers())
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let markers = ctx.markers()?;
        let mut actions = Vec::new();
        for dir in ctx.subdirs_of("")? {
            let missing = ctx.missing(&ctx.files_of(&dir.name)?, &markers);
            if missing.is_empty() {
                actions.push(Action::transfer_dir(dir.name));
            } else {
                ctx.not_ready(&dir.name, &format!("missing {}", missing.join(", ")));
            }
        }
        Ok(actions)
    }
}

export_poller!(DirPoller);

#[cfg(test)]
mod tests {
    use super::DirPoller;
    use dispatch_poller_sdk::{Action, testing};
    use std::fs;

    #[test]
    fn sends_only_directories_with_every_marker() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        fs::create_dir_all(p.join("ready")).unwrap();
        fs::write(p.join("ready/ADI.XML"), "x").unwrap();
        fs::write(p.join("ready/ADI.DTD"), "x").unwrap();
        fs::create_dir_all(p.join("half")).unwrap();
        fs::write(p.join("half/ADI.XML"), "x").unwrap();
        assert_eq!(
            testing::poll::<DirPoller>(p, &[]).unwrap(),
            vec![Action::transfer_dir("ready")]
        );
        assert_eq!(
            testing::poll::<DirPoller>(p, &[("markers", "ADI.XML")]).unwrap(),
            vec![Action::transfer_dir("half"), Action::transfer_dir("ready")]
        );
    }
}
