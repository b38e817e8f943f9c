//! `dispatch-agent plugin check` and `plugin new` as a plugin author runs
//! them (`plugin push` against a real web app: web/tests/plugin_push.rs).
#![allow(clippy::unwrap_used)] // a test that fails panics

mod common;
use common::{agent_output, component, one_line_error, tree};
use dispatch_runtime::inspect::SUPPORTED_WIT_VERSIONS;
use std::path::{Path, PathBuf};
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn passed(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

#[test]
fn check_polls_a_component_and_shows_its_actions_and_log_lines() {
    let root = tree(&["a/ADI.XML", "a/ADI.DTD", "b/ADI.XML"]);
    let dir = component("plugin", "dir");
    let out = agent_output(&[
        "plugin",
        "check",
        dir.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    let stdout = passed(&out);
    let latest = SUPPORTED_WIT_VERSIONS.last().unwrap();
    assert!(stdout.starts_with("dir "), "{stdout}");
    assert!(
        stdout.contains(&format!("contract: dispatch:poller@{latest}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("markers (text-list, default `ADI.XML,ADI.DTD`)"),
        "{stdout}"
    );
    let actions: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("poll of "))
        .skip(1)
        .filter(|l| l.starts_with("transfer"))
        .collect();
    assert_eq!(actions.len(), 1, "{stdout}");
    assert!(actions[0].ends_with(" a"), "{stdout}");
    // The plugin's debug line about `b`, shown without -v.
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("plugin") && l.contains("b") && l.contains("not ready")),
        "{stderr}"
    );
}

#[test]
fn check_names_the_contract_a_plugin_was_built_for() {
    let old = repo("testing/compat/wit-0.1.0/dir.wasm");
    let root = tree(&["a/ADI.XML", "a/ADI.DTD"]);
    let stdout = passed(&agent_output(&[
        "plugin",
        "check",
        old.to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]));
    assert!(
        stdout.contains("contract: dispatch:poller@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("transfer"), "{stdout}");
}

#[test]
fn check_fails_in_one_line_on_what_is_not_a_poller_or_a_bad_poll() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, "not a component").unwrap();
    let err = one_line_error(&agent_output(&["plugin", "check", file.to_str().unwrap()]));
    assert!(err.contains("not a WebAssembly file"), "{err}");
    // A contract this agent does not know: both versions named.
    let future = component("test", "future-version");
    let err = one_line_error(&agent_output(&[
        "plugin",
        "check",
        future.to_str().unwrap(),
    ]));
    assert!(
        err.contains("was built for dispatch:poller@")
            && err.contains(&format!("@{}", SUPPORTED_WIT_VERSIONS.last().unwrap())),
        "{err}"
    );

    // A poll that fails (an unknown parameter) fails the check.
    let root = tree(&["a/ADI.XML"]);
    let err = one_line_error(&agent_output(&[
        "plugin",
        "check",
        component("plugin", "dir").to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
        "--param",
        "colour=red",
    ]));
    assert!(err.contains("colour"), "{err}");
}

/// `plugin new --lang LANG NAME` in a fresh directory; the project's path.
fn new(lang: &str, name: &str, parent: &Path) -> Output {
    agent_output(&[
        "plugin",
        "new",
        "--lang",
        lang,
        name,
        "--dir",
        parent.to_str().unwrap(),
    ])
}

#[test]
fn new_writes_a_project_in_each_language_named_as_asked() {
    let parent = tempfile::tempdir().unwrap();
    let wit = std::fs::read_to_string(repo("wit/poller.wit")).unwrap();
    for (lang, files, source, quote) in [
        (
            "rust",
            &["Cargo.toml", "src/lib.rs", "README.md"][..],
            "src/lib.rs",
            '"',
        ),
        ("python", &["app.py", "README.md"][..], "app.py", '"'),
        (
            "js",
            &["app.js", "poller.d.ts", "package.json", "README.md"][..],
            "app.js",
            '\'',
        ),
    ] {
        let name = format!("ingest-{lang}");
        passed(&new(lang, &name, parent.path()));
        let project = parent.path().join(&name);
        for f in files {
            assert!(project.join(f).is_file(), "{lang}: no {f}");
        }
        assert_eq!(
            std::fs::read_to_string(project.join("wit/poller.wit")).unwrap(),
            wit
        );
        // describe() names the new plugin; its `manifest` parameter stays.
        let code = std::fs::read_to_string(project.join(source)).unwrap();
        assert!(
            code.contains(&format!("{quote}{name}{quote}")),
            "{lang}: {code}"
        );
        assert!(
            code.contains(&format!("{quote}manifest{quote}")),
            "{lang}: {code}"
        );
        for f in files {
            let t = std::fs::read_to_string(project.join(f)).unwrap();
            for old in [
                "dispatch-plugin-manifest",
                "dispatch_plugin_manifest",
                "manifest-poller",
                "`manifest` poller",
                "manifest.wasm",
            ] {
                assert!(!t.contains(old), "{lang}: {f} still has {old}: {t}");
            }
        }
    }

    // The Rust project is a crate of its own whose SDK resolves.
    let project = parent.path().join("ingest-rust");
    let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains("name = \"dispatch-plugin-ingest-rust\""),
        "{cargo}"
    );
    // Resolved from the lock file without a download.
    let id = std::process::Command::new(env!("CARGO"))
        .args(["pkgid", "--offline", "dispatch-poller-sdk"])
        .current_dir(&project)
        .output()
        .unwrap();
    let sdk = repo("sdk").canonicalize().unwrap();
    assert!(
        passed(&id).starts_with(&format!("path+file://{}#", sdk.display())),
        "{}",
        text(&id.stdout)
    );
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_in_use() {
    let parent = tempfile::tempdir().unwrap();
    for bad in ["Ingest", "1st", "in gest", "a/b", "_x"] {
        let err = one_line_error(&new("python", bad, parent.path()));
        assert!(err.contains("is not a plugin name"), "{bad}: {err}");
    }
    let used = parent.path().join("taken");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep.txt"), "mine").unwrap();
    let err = one_line_error(&new("js", "taken", parent.path()));
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read_dir(&used).unwrap().count(),
        1,
        "nothing written"
    );
    // An empty directory is fine.
    std::fs::create_dir(parent.path().join("empty")).unwrap();
    passed(&new("python", "empty", parent.path()));
}
