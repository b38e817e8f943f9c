//! The `manifest` poller of each author template (sdk/templates), built
//! with its language's own tool, for the tests that run the three through
//! the same cases: `target/test-plugins/manifest-{rust,python,js}.wasm`.

use super::{Workspace, run};
use anyhow::{Context as _, Result};
use std::process::Command;

/// The JavaScript toolchain, installed under target/npm (not globally).
/// componentize-js imports preview2-shim without depending on it (it comes
/// through jco, whose newest pulls 0.26, which cannot read the WIT path):
/// pinned to the 0.17 line that works.
const NPM_TOOLS: &[&str] = &[
    "@bytecodealliance/componentize-js@0.23.0",
    "@bytecodealliance/preview2-shim@0.17.9",
];

impl Workspace {
    pub(super) fn build_template_plugins(&self) -> Result<()> {
        let out = self.test_plugin_dir();
        std::fs::create_dir_all(&out)?;
        let templates = self.root.join("sdk").join("templates");
        let wit = self.root.join("wit");

        // Rust: its own workspace and target dir, as an author builds it.
        run(self
            .cargo()
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(templates.join("rust").join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target.join("template-rust")))?;
        let built = self
            .target
            .join("template-rust/wasm32-wasip2/release/dispatch_plugin_manifest.wasm");
        std::fs::copy(&built, out.join("manifest-rust.wasm"))
            .with_context(|| format!("copying {}", built.display()))?;

        // Python: componentize-py from the tests' virtualenv.
        self.python_tools()?;
        run(
            Command::new(self.venv().join("bin").join("componentize-py"))
                .arg("-d")
                .arg(&wit)
                .args(["-w", "dispatch:poller/poller@0.2.0", "componentize", "-p"])
                .arg(templates.join("python"))
                .args(["app", "-o"])
                .arg(out.join("manifest-python.wasm")),
        )?;

        // JavaScript: componentize-js called directly (jco's wrappers cannot
        // read WIT paths here).
        let npm = self.target.join("npm");
        let tool = npm.join("node_modules/.bin/componentize-js");
        let stamp = npm.join(NPM_TOOLS.join("_").replace(['/', '@'], "_"));
        if !stamp.exists() {
            std::fs::create_dir_all(&npm)?;
            run(Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&npm)
                .args(NPM_TOOLS))
            .context("installing componentize-js from npm (is npm installed?)")?;
            std::fs::write(&stamp, "")?;
        }
        run(Command::new(tool)
            .arg(templates.join("javascript").join("app.js"))
            .arg("--wit")
            .arg(&wit)
            .args(["-n", "poller", "-d", "http", "fetch-event", "-o"])
            .arg(out.join("manifest-js.wasm")))
    }
}
