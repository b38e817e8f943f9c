//! `manifest`: sends each folder of the root once its manifest lists files
//! that are all present with the listed sizes, and says why a folder is not
//! ready yet. Build: `cargo build --release --target wasm32-wasip2`.

use dispatch_poller_sdk::{Action, Context, Entry, EntryKind, Info, ParamSpec, ParamType, Poller, export_poller, join};
use std::collections::hash_map::{self, HashMap};
use serde::Deserialize;

/// What the manifest says: `{"files": [{"name": "a.mxf", "size": 123}]}`.
#[derive(Deserialize)]
struct Manifest {
    files: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    size: u64,
}

pub struct ManifestPoller;

impl Poller for ManifestPoller {
    fn describe() -> Info {
        Info::new(
            "manifest",
            "0.1.0",
            "Sends each folder of the root once its manifest lists files that are all present with the listed sizes.",
        )
        .param(ParamSpec::new("manifest", ParamType::Text, Some("manifest.json"), "The manifest's file name inside each folder"))
        .param(ParamSpec::include_hidden())
    }

    fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
        let manifest = ctx.params().text("manifest")?;
        let mut actions = Vec::new();
        for folder in ctx.subdirs_of("")? {
            match why_not_ready(ctx, &folder.name, manifest) {
                None => actions.push(Action::transfer_dir(folder.name)),
                Some(reason) => ctx.not_ready(&folder.name, &reason),
            }
        }
        Ok(actions)
    }
}

/// Why `folder` is not ready, or `None` when it is.
fn why_not_ready(ctx: &Context, folder: &str, manifest: &str) -> Option<String> {
    let mut dirs = Listings::default();
    match dirs.look_up(ctx, folder, manifest) {
        Ok(None) => return Some(format!("no {manifest}")),
        Err(e) => return Some(e),
        Ok(Some(_)) => {}
    }
    let bytes = match ctx.read_file(&join(folder, manifest), 1 << 20) {
        Ok(b) => b,
        Err(e) => return Some(e),
    };
    let listed = match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(m) => m.files,
        Err(e) => return Some(format!("{manifest} is not valid: {e}")),
    };
    if let Some(bad) = listed.iter().find(|f| !is_relative(&f.name)) {
        return Some(format!("{manifest} is not valid: bad name `{}`", bad.name));
    }
    for file in &listed {
        match dirs.look_up(ctx, folder, &file.name) {
            Err(e) => return Some(e),
            Ok(None) => return Some(format!("missing {}", file.name)),
            Ok(Some(e)) if e.kind != EntryKind::File => {
                return Some(format!("{} is not a file", file.name));
            }
            Ok(Some(e)) if e.size != file.size => {
                return Some(format!("{} is {} bytes, the manifest says {}", file.name, e.size, file.size));
            }
            Ok(Some(_)) => {}
        }
    }
    None
}

/// The directories of one folder, each listed once: a host call per folder
/// rather than one per listed file.
#[derive(Default)]
struct Listings(HashMap<String, Vec<Entry>>);

impl Listings {
    /// The entry of `name` (which may hold `/`) inside `folder`, or `None`
    /// when it, or a folder on its way, is missing. Symlinks are not
    /// followed: a directory transfer does not send them.
    fn look_up(&mut self, ctx: &Context, folder: &str, name: &str) -> Result<Option<Entry>, String> {
        let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        let mut dir = folder.to_string();
        for (i, part) in parts.iter().enumerate() {
            let entries = match self.0.entry(dir.clone()) {
                hash_map::Entry::Occupied(o) => o.into_mut(),
                hash_map::Entry::Vacant(v) => v.insert(ctx.list(&dir)?),
            };
            let Some(entry) = entries.iter().find(|e| e.name == *part) else {
                return Ok(None);
            };
            if i + 1 == parts.len() {
                return Ok(Some(entry.clone()));
            }
            if entry.kind != EntryKind::Dir {
                return Ok(None);
            }
            dir = join(&dir, part);
        }
        Ok(None)
    }
}

/// A name inside the folder: not empty, not absolute, no `..`.
fn is_relative(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('/') && name.split('/').all(|c| c != "..")
}

export_poller!(ManifestPoller);
