//! Embeds the built-in pollers' components, so an installed `dispatch-agent`
//! or `dispatch-web` is one file. `cargo xtask build` builds them into
//! `<target>/plugins` first; `DISPATCH_EMBED_PLUGINS` names another
//! directory. A build without them (clippy on
//! a fresh clone) embeds none: the binaries then look for files.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DISPATCH_EMBED_PLUGINS");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let dir = std::env::var_os("DISPATCH_EMBED_PLUGINS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("plugins")))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".wasm")?
                .to_string();
            Some((name, path))
        })
        .collect();
    found.sort();
    let mut code = String::from("pub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (name, path) in &found {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    // A new or removed component changes the directory (one that does not
    // exist yet is looked for again at every build).
    println!("cargo:rerun-if-changed={}", dir.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("cannot write {}: {e}", out.display());
    }
}
