//! Run a poller natively against a real directory, without building wasm.
//!
//! ```
//! use dispatch_poller_sdk::{testing, Action, Context, Info, ParamSpec, Poller};
//!
//! struct Files;
//! impl Poller for Files {
//!     fn describe() -> Info {
//!         Info::new("files", "0.1.0", "Each file of the root").param(ParamSpec::include_hidden())
//!     }
//!     fn poll(ctx: &Context) -> Result<Vec<Action>, String> {
//!         Ok(ctx.files_of("")?.into_iter().map(|f| Action::transfer_file(f.name)).collect())
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a.mpg"), b"x").unwrap();
//! std::fs::write(dir.path().join(".a.mpg.part"), b"x").unwrap();
//! assert_eq!(testing::poll::<Files>(dir.path(), &[]).unwrap(), vec![Action::transfer_file("a.mpg")]);
//! let all = testing::poll::<Files>(dir.path(), &[("include_hidden", "true")]).unwrap();
//! assert_eq!(all.len(), 2);
//! ```

use crate::{Action, Context, Params, Poller};
use std::path::Path;

/// Polls `root` once with `params` over the poller's defaults, as the host
/// would (the clock reads 0).
///
/// Errors name an unknown parameter, or come from the poller itself.
pub fn poll<P: Poller>(root: &Path, params: &[(&str, &str)]) -> Result<Vec<Action>, String> {
    let info = P::describe();
    let mut merged = Params::default();
    for spec in &info.params {
        if let Some(d) = &spec.default {
            merged.set(spec.name.clone(), d.clone());
        }
    }
    for (name, value) in params {
        if !info.params.iter().any(|s| s.name == *name) {
            return Err(format!(
                "unknown parameter `{name}` for poller `{}`",
                info.name
            ));
        }
        merged.set(*name, *value);
    }
    let ctx = Context::native(root, merged, 0)?;
    P::poll(&ctx)
}
