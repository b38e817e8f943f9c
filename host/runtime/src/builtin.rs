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

/// `--plugin` as a file: a built-in name, or a path to a `.wasm` file.
pub fn resolve(plugin: &str) -> Result<PathBuf, ResolveError> {
    let looks_like_path = plugin.contains('/') || plugin.ends_with(".wasm");
    if looks_like_path {
        let path = PathBuf::from(plugin);
        return if path.exists() {
            Ok(path)
        } else {
            Err(ResolveError::MissingFile(path))
        };
    }
    if !BUILTIN.contains(&plugin) {
        return Err(ResolveError::Unknown {
            name: plugin.to_string(),
        });
    }
    let path = plugin_dir().join(format!("{plugin}.wasm"));
    if path.exists() {
        Ok(path)
    } else {
        Err(ResolveError::NotBuilt {
            name: plugin.to_string(),
            looked: path,
        })
    }
}
