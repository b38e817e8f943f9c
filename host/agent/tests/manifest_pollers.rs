//! The `manifest` poller of each author template (sdk/templates: Rust,
//! Python, JavaScript; built by `cargo xtask test` with each language's own
//! tool) describes itself alike, as a WIT 0.2.0 poller. What each one does
//! with a tree is the conformance suite's (`sdk/conformance/manifest.toml`,
//! run on all three by `plugin_test.rs`).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{component, runtime};

const LANGUAGES: &[&str] = &["rust", "python", "js"];

#[test]
fn the_three_templates_describe_themselves_alike() {
    let mut descriptions = Vec::new();
    for lang in LANGUAGES {
        let plugin = runtime()
            .load_file(&component("test", &format!("manifest-{lang}")))
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert_eq!(plugin.wit_version(), "0.2.0", "{lang}");
        assert_eq!(plugin.info().name, "manifest", "{lang}");
        descriptions.push(format!("{:?}", plugin.info()));
    }
    assert!(
        descriptions.iter().all(|d| *d == descriptions[0]),
        "{descriptions:#?}"
    );
}
