//! Telling what a `.wasm` file is before compiling it, so a wrong file gets
//! an error that names the problem.

/// The WIT package versions this host runs, oldest first: each has its
/// bindings module, converted into the latest's types (`bindings`).
pub const SUPPORTED_WIT_VERSIONS: &[&str] = crate::bindings::WIT_VERSIONS;

/// The export every poller has, without its version.
pub const PLUGIN_EXPORT: &str = "dispatch:poller/plugin";

/// The kind of binary, from its 8-byte header.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Component,
    CoreModule,
    NotWasm,
}

pub fn binary_kind(bytes: &[u8]) -> BinaryKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => BinaryKind::CoreModule,
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => BinaryKind::Component,
        _ => BinaryKind::NotWasm,
    }
}

/// What a component's export names say about the contract it targets.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `dispatch:poller/plugin@<version>`.
    Poller { version: String },
    /// Not a poller: these are its exports.
    Other { exports: Vec<String> },
}

pub fn target_of<'a>(exports: impl Iterator<Item = &'a str>) -> Target {
    let exports: Vec<String> = exports.map(str::to_string).collect();
    let prefix = format!("{PLUGIN_EXPORT}@");
    match exports.iter().find_map(|e| e.strip_prefix(&prefix)) {
        Some(v) => Target::Poller {
            version: v.to_string(),
        },
        None => Target::Other { exports },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(binary_kind(b"\0asm\x01\0\0\0rest"), BinaryKind::CoreModule);
        assert_eq!(binary_kind(b"\0asm\x0d\0\x01\0rest"), BinaryKind::Component);
        assert_eq!(binary_kind(b"hello world"), BinaryKind::NotWasm);
        assert_eq!(binary_kind(b""), BinaryKind::NotWasm);
    }

    #[test]
    fn targets() {
        assert_eq!(
            target_of(["wasi:cli/run@0.2.0", "dispatch:poller/plugin@0.1.0"].into_iter()),
            Target::Poller {
                version: "0.1.0".into()
            }
        );
        assert!(matches!(
            target_of(["example:greeter/greet@1.0.0"].into_iter()),
            Target::Other { .. }
        ));
    }
}
