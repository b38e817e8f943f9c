//! `dispatch-agent plugin test`: the conformance suites (sdk/conformance)
//! pass on the built-in `file` and `dir` pollers and on the `manifest`
//! poller built in Rust, Python and JavaScript; a poller of another kind
//! fails them with a diff; an unknown kind is one line.
#![allow(clippy::unwrap_used)] // a test that fails panics

mod common;
use common::{agent_output_cached, component, one_line_error};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// One compile cache for every run of this file: a Python or JavaScript
/// component takes seconds to compile.
fn cache() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn plugin_test(file: &Path, kind: Option<&str>) -> Output {
    let mut args = vec!["plugin", "test", file.to_str().unwrap()];
    if let Some(kind) = kind {
        args.extend(["--kind", kind]);
    }
    agent_output_cached(&args, &cache().join("c"))
}

/// The suite's output when every case passed: its lines, after checking
/// each case line has its time and memory and the summary says none failed.
fn all_pass(file: PathBuf, kind: Option<&str>) -> String {
    let out = plugin_test(&file, kind);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: exit {:?}\n{stdout}{}",
        file.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ok") || l.starts_with("FAIL"))
        .collect();
    assert!(cases.len() >= 9, "{stdout}");
    for line in &cases {
        assert!(line.starts_with("ok   "), "{line}");
        assert!(line.contains(" ms, ") && line.contains(" MiB)"), "{line}");
        // A case whose expectation needs mode 000 to stop reads says so
        // when it does not (as root); nothing is left out silently.
        if line.contains("not checked") {
            assert!(line.contains("running as root"), "{line}");
        }
    }
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("{} passed, 0 failed", cases.len())),
        "{stdout}"
    );
    stdout
}

#[test]
fn the_builtin_file_and_dir_pollers_pass_their_suites() {
    // The kind is the name describe() gives.
    let file = all_pass(component("plugin", "file"), None);
    assert!(file.contains("cases of kind `file`"), "{file}");
    assert!(
        file.contains("ok   10,005 files: the first 10,000 by name"),
        "{file}"
    );
    let dir = all_pass(component("plugin", "dir"), Some("dir"));
    assert!(dir.contains("cases of kind `dir`"), "{dir}");
}

#[test]
fn the_manifest_poller_passes_in_rust_python_and_javascript() {
    for lang in ["rust", "python", "js"] {
        let out = all_pass(component("test", &format!("manifest-{lang}")), None);
        assert!(out.contains("cases of kind `manifest`"), "{out}");
        // The per-case figures, for the report (`-- --nocapture`).
        eprintln!("manifest-{lang}:\n{out}");
    }
}

#[test]
fn a_poller_of_another_kind_fails_with_what_differs() {
    let out = plugin_test(&component("plugin", "dir"), Some("file"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = one_line_error(&out);
    assert!(
        err.contains("conformance cases of kind `file` failed"),
        "{err}"
    );
    // The dir poller sends no files: each expected one is a `-` line.
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(!failed.is_empty(), "{stdout}");
    assert!(
        stdout.contains("actions (- expected, + got):\n      - file a.mpg"),
        "{stdout}"
    );
    // A 10,000-line diff is cut short.
    assert!(stdout.contains("  ... and 9980 more"), "{stdout}");
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.ends_with(&format!("{} failed", failed.len())),
        "{stdout}"
    );
}

#[test]
fn an_unknown_kind_is_one_line_naming_the_known_kinds() {
    let err = one_line_error(&plugin_test(&component("plugin", "dir"), Some("ftp")));
    assert!(
        err.contains("no conformance suite for kind `ftp`")
            && err.contains("the known kinds are dir, file, manifest"),
        "{err}"
    );
    // A poller whose own name has no suite: the same line, its name.
    let err = one_line_error(&plugin_test(&component("plugin", "telus"), None));
    assert!(err.contains("kind `telus`"), "{err}");
}

#[test]
fn every_suite_parses_and_a_typo_in_a_case_is_refused() {
    use dispatch_agent::conformance::{Suite, kinds, suite};
    assert_eq!(kinds(), ["dir", "file", "manifest"]);
    for kind in kinds() {
        assert!(!suite(kind).unwrap().case.is_empty(), "{kind}");
    }
    let typo = "[[case]]\nname = \"x\"\ntree = [{ file = \"a\", txt = \"b\" }]\nactions = []\n";
    assert!(toml::from_str::<Suite>(typo).is_err());
}
