//! # dispatch-poller-sdk
//!
//! Write a Dispatch poller in Rust: implement [`Poller`], call
//! [`export_poller!`], build for `wasm32-wasip2`. The agent runs the component
//! in a sandbox: it sees only its root, through [`Context`], and cannot
//! write; it returns [`Action`]s that the agent carries out.
//!
//! A complete poller that sends every `.tar` file of the root:
//!
//! ```
//! use dispatch_poller_sdk::{export_poller, Action, Context, Info, ParamSpec, ParamType, Poller};
//!
//! struct Tars;
//!
//! impl Poller for Tars {
//!     fn describe() -> Info {
//!         Info::new("tars", "0.1.0", "Sends each file of the root whose name ends in a suffix.")
//!             .param(ParamSpec::new("suffix", ParamType::Text, Some(".tar"), "Name ending to send"))
//!             .param(ParamSpec::include_hidden())
//!     }
//!
//!     fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
//!         let suffix = ctx.params().text("suffix")?;
//!         Ok(ctx
//!             .files_of("")?
//!             .into_iter()
//!             .filter(|f| f.name.ends_with(suffix))
//!             .map(|f| Action::transfer_file(f.name))
//!             .collect())
//!     }
//! }
//!
//! export_poller!(Tars);
//! ```
//!
//! Its crate is a `cdylib` (add `rlib` to unit-test it natively) built with
//! `cargo build --target wasm32-wasip2`. Test the logic without wasm with
//! [`testing::poll`], against a real temporary directory.
//!
//! Pollers in other languages target the same WIT package
//! (`wit/poller.wit`, world `poller`); see `sdk/README.md` and the pages per
//! language beside it.

mod context;
#[doc(hidden)]
pub mod glue;
mod listing;
mod params;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types;

pub use context::{Context, Level, join};
pub use listing::Entries;
pub use params::Params;
pub use types::{
    Action, DEFAULT_MARKERS, Entry, EntryKind, FollowUp, Group, Info, ItemKind, ParamSpec,
    ParamType, Transfer,
};

/// The WIT package version this SDK builds plugins for.
pub const WIT_VERSION: &str = "0.2.0";

/// The most [`Context::read_file`] gives: the host's bound per call.
pub const READ_FILE_MAX: u64 = 1 << 20;

/// Name of the standard hidden-names flag (see [`ParamSpec::include_hidden`]).
pub const INCLUDE_HIDDEN: &str = "include_hidden";

/// Name of the standard ready-markers list (see [`ParamSpec::markers`]).
pub const MARKERS: &str = "markers";

/// A poller: its metadata and one scan.
///
/// ```
/// use dispatch_poller_sdk::{Action, Context, Info, Poller};
/// struct Nothing;
/// impl Poller for Nothing {
///     fn describe() -> Info { Info::new("nothing", "0.1.0", "Never sends anything.") }
///     fn poll(_ctx: &Context) -> Result<Vec<Action>, String> { Ok(vec![]) }
/// }
/// ```
pub trait Poller {
    /// Name, version, description and parameter schema. Must not touch the
    /// file system: the host calls it when loading the plugin.
    fn describe() -> Info;

    /// Looks at the root through `ctx` and says what to do now. An error is
    /// one line naming what is wrong.
    fn poll(ctx: &Context) -> Result<Vec<Action>, String>;
}

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "dispatch:poller/poller@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_poller_component",
        default_bindings_module: "dispatch_poller_sdk::bindings",
        runtime_path: "dispatch_poller_sdk::__wit_bindgen_rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

// Lets the generated bindings name this crate the same way from inside and
// from a plugin crate.
extern crate self as dispatch_poller_sdk;

/// Exports a [`Poller`] as the component's `plugin` interface. Call it once,
/// at the crate root of a `cdylib`.
///
/// ```
/// use dispatch_poller_sdk::{export_poller, Action, Context, Info, Poller};
/// struct Nothing;
/// impl Poller for Nothing {
///     fn describe() -> Info { Info::new("nothing", "0.1.0", "Never sends anything.") }
///     fn poll(_ctx: &Context) -> Result<Vec<Action>, String> { Ok(vec![]) }
/// }
/// export_poller!(Nothing);
/// ```
#[macro_export]
macro_rules! export_poller {
    ($poller:ty) => {
        // Only a wasm build exports: the export names (`dispatch:poller/...`)
        // are not valid native symbol names, and native builds are for tests.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __DispatchPollerExport = $crate::glue::Export<$poller>;
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_poller_component!(__DispatchPollerExport with_types_in $crate::bindings);
    };
}
