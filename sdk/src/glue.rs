//! The generated bindings and the conversions between them and the SDK's
//! types. Nothing here is public API: `export_poller!` uses it.

use crate::bindings::dispatch::poller::{fs, log, types as wit};
use crate::bindings::exports::dispatch::poller::plugin::Guest;
use crate::{
    Action, Context, Entry, EntryKind, FollowUp, Info, ItemKind, Level, ParamType, Params, Poller,
    Transfer,
};
use std::marker::PhantomData;

/// Implements the WIT exports for a [`Poller`].
pub struct Export<P>(PhantomData<P>);

impl<P: Poller> Guest for Export<P> {
    fn describe() -> wit::Info {
        info_to_wit(P::describe())
    }

    fn poll(request: wit::PollRequest) -> Result<Vec<wit::Action>, String> {
        let params = Params::from_pairs(request.params.into_iter().map(|p| (p.name, p.value)));
        let ctx = Context::host(params, request.now_ms)?;
        Ok(P::poll(&ctx)?.into_iter().map(action_to_wit).collect())
    }
}

/// Entries asked of the host per page: one page is all a listing holds.
const PAGE: u32 = 1024;

/// A directory read from the host in pages.
pub(crate) struct HostListing(fs::Listing);

impl HostListing {
    pub(crate) fn open(dir: &str) -> Result<Self, String> {
        fs::open_dir(dir).map(Self)
    }

    /// The next page; empty when the listing is done.
    pub(crate) fn next_page(&self) -> Result<Vec<Entry>, String> {
        Ok(self.0.next(PAGE)?.into_iter().map(entry_from_wit).collect())
    }
}

/// The whole listing, read in pages (the host never lowers one huge list
/// into the plugin's memory), sorted by name.
pub(crate) fn host_list(dir: &str) -> Result<Vec<Entry>, String> {
    let listing = HostListing::open(dir)?;
    let mut out = Vec::new();
    loop {
        let page = listing.next_page()?;
        if page.is_empty() {
            break;
        }
        out.extend(page);
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) fn host_read_file(path: &str, max_bytes: u32) -> Result<Vec<u8>, String> {
    fs::read_file(path, max_bytes)
}

pub(crate) fn host_stat(path: &str) -> Result<Option<Entry>, String> {
    Ok(fs::stat(path)?.map(entry_from_wit))
}

pub(crate) fn host_log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    };
    log::log(level, message);
}

fn entry_from_wit(e: wit::Entry) -> Entry {
    Entry {
        name: e.name,
        kind: match e.kind {
            wit::EntryKind::File => EntryKind::File,
            wit::EntryKind::Dir => EntryKind::Dir,
            wit::EntryKind::Symlink => EntryKind::Symlink,
            wit::EntryKind::Other => EntryKind::Other,
        },
        size: e.size,
        mtime_ms: e.mtime_ms,
    }
}

fn info_to_wit(info: Info) -> wit::Info {
    wit::Info {
        name: info.name,
        version: info.version,
        description: info.description,
        params: info
            .params
            .into_iter()
            .map(|p| wit::ParamSpec {
                name: p.name,
                type_: match p.kind {
                    ParamType::Text => wit::ParamType::Text,
                    ParamType::Boolean => wit::ParamType::Boolean,
                    ParamType::Integer => wit::ParamType::Integer,
                    ParamType::TextList => wit::ParamType::TextList,
                },
                default: p.default,
                help: p.help,
            })
            .collect(),
    }
}

fn transfer_to_wit(t: Transfer) -> wit::Transfer {
    wit::Transfer {
        path: t.path,
        kind: match t.kind {
            ItemKind::File => wit::ItemKind::File,
            ItemKind::Dir => wit::ItemKind::Dir,
        },
    }
}

fn action_to_wit(a: Action) -> wit::Action {
    match a {
        Action::Transfer(t) => wit::Action::Transfer(transfer_to_wit(t)),
        Action::Touch(p) => wit::Action::Touch(p),
        Action::RemoveDir(p) => wit::Action::RemoveDir(p),
        Action::Group(g) => wit::Action::Group(wit::Group {
            transfers: g.transfers.into_iter().map(transfer_to_wit).collect(),
            then: g
                .then
                .into_iter()
                .map(|f| match f {
                    FollowUp::Touch(p) => wit::FollowUp::Touch(p),
                    FollowUp::RemoveDir(p) => wit::FollowUp::RemoveDir(p),
                })
                .collect(),
        }),
    }
}
