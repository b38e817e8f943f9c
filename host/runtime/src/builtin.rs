//! The seven built-in pollers and where their components are.

use std::path::{Path, PathBuf};

/// Names of the built-in pollers, as `--plugin` takes them.
pub const BUILTIN: &[&str] = &["file", "dir", "subdir", "telus", "pa", "google", "dirtar"];

/// Environment variable that overrides where built-in components are.
pub const PLUGIN_DIR_ENV: &str = "DISPATCH_PLUGIN_DIR";

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown plugin `{name}`: give a path to a .wasm file or a built-in name ({})", BUILTIN.join(", "))]
    Unknown { name: String },
    #[error("built-in plugin `{name}` is not built (looked for {}): run `cargo xtask build`", .looked.display())]
    NotBuilt { name: String, looked: PathBuf },
    #[error("plugin file {0} does not exist")]
    MissingFile(PathBuf),
}

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A `.wasm` file.
    File(PathBuf),
    /// A built-in compiled into this binary.
    Embedded(&'static str),
}

impl Source {
    /// How errors and logs name it.
    pub fn label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded(name) => format!("built-in `{name}`"),
        }
    }

    /// The component's bytes.
    pub fn bytes(&self) -> std::io::Result<std::borrow::Cow<'static, [u8]>> {
        match self {
            Source::File(p) => std::fs::read(p).map(Into::into),
            Source::Embedded(name) => embedded(name)
                .map(Into::into)
                .ok_or_else(|| std::io::Error::other(format!("no built-in `{name}` is embedded"))),
        }
    }
}

/// The embedded component of the built-in `name`, if this binary has it.
fn embedded(name: &str) -> Option<&'static [u8]> {
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name && BUILTIN.contains(n))
        .map(|(_, bytes)| *bytes)
}

/// The directory of built-in components: `$DISPATCH_PLUGIN_DIR`, else
/// `plugins/` beside the directory of this executable (`target/plugins` for
/// `target/release/dispatch-agent`).
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PLUGIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .map(|d| d.join("plugins"))
        })
        .unwrap_or_else(|| PathBuf::from("target/plugins"))
}

/// `--plugin` as a component: a path to a `.wasm` file, or a built-in name:
/// its file in `$DISPATCH_PLUGIN_DIR` when that is set (development), else
/// the component compiled into this binary, else its file beside the binary.
pub fn resolve(plugin: &str) -> Result<Source, ResolveError> {
    let looks_like_path = plugin.contains('/') || plugin.ends_with(".wasm");
    if looks_like_path {
        let path = PathBuf::from(plugin);
        return if path.exists() {
            Ok(Source::File(path))
        } else {
            Err(ResolveError::MissingFile(path))
        };
    }
    let Some(name) = BUILTIN.iter().copied().find(|b| *b == plugin) else {
        return Err(ResolveError::Unknown {
            name: plugin.to_string(),
        });
    };
    if std::env::var_os(PLUGIN_DIR_ENV).is_none() && embedded(name).is_some() {
        return Ok(Source::Embedded(name));
    }
    let path = plugin_dir().join(format!("{name}.wasm"));
    if path.exists() {
        Ok(Source::File(path))
    } else {
        Err(ResolveError::NotBuilt {
            name: name.to_string(),
            looked: path,
        })
    }
}

/// Every built-in this binary can run, as `resolve` finds them.
pub fn all() -> Result<Vec<Source>, ResolveError> {
    BUILTIN.iter().map(|name| resolve(name)).collect()
}
