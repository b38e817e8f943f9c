//! Each built-in poller, as the compiled component the agent runs, on fixture
//! trees covering the rules of shared/pollers.md.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{add, builtin, poll, tree};
use std::os::unix::fs::symlink;

#[test]
fn file_poller_sends_files_of_the_root_only() {
    let p = builtin("file");
    let root = tree(&["b.mpg", "a.mpg", ".a.mpg.part", "sub/c.mpg", "empty/"]);
    symlink(root.path().join("a.mpg"), root.path().join("link.mpg")).unwrap();
    assert_eq!(poll(&p, root.path(), &[]), ["file a.mpg", "file b.mpg"]);
    assert_eq!(
        poll(&p, root.path(), &[("include_hidden", "true")]),
        ["file .a.mpg.part", "file a.mpg", "file b.mpg"]
    );
    let empty = tree(&[]);
    assert!(poll(&p, empty.path(), &[]).is_empty());
}

#[test]
fn dir_poller_sends_directories_with_every_marker() {
    let p = builtin("dir");
    let root = tree(&[
        "ready/ADI.XML",
        "ready/ADI.DTD",
        "ready/movie.mpg",
        "half/ADI.XML",
        "half/movie.mpg",
        "empty/",
        "lowercase/adi.xml",
        "lowercase/adi.dtd",
        "nested/deep/ADI.XML",
        "nested/deep/ADI.DTD",
        "markerdir/ADI.XML/",
        "markerdir/ADI.DTD",
        ".hidden/ADI.XML",
        ".hidden/ADI.DTD",
        "ADI.XML",
    ]);
    assert_eq!(poll(&p, root.path(), &[]), ["dir ready"]);
    // Why the others wait, for the poller's page.
    let why: Vec<(String, String)> = p
        .poll_full(root.path(), &[])
        .unwrap()
        .not_ready
        .into_iter()
        .map(|n| (n.item, n.reason))
        .collect();
    let half = ("half".to_string(), "missing ADI.DTD".to_string());
    let empty = ("empty".to_string(), "missing ADI.XML, ADI.DTD".to_string());
    assert!(why.contains(&half) && why.contains(&empty), "{why:?}");
    assert_eq!(
        poll(&p, root.path(), &[("include_hidden", "true")]),
        ["dir .hidden", "dir ready"]
    );
    assert_eq!(
        poll(&p, root.path(), &[("markers", "ADI.XML")]),
        ["dir half", "dir ready"]
    );
}

#[test]
fn dir_poller_ignores_hidden_markers_unless_asked() {
    let p = builtin("dir");
    let root = tree(&["a/.ADI.XML", "a/ADI.DTD"]);
    assert!(poll(&p, root.path(), &[("markers", ".ADI.XML,ADI.DTD")]).is_empty());
    assert_eq!(
        poll(
            &p,
            root.path(),
            &[("markers", ".ADI.XML,ADI.DTD"), ("include_hidden", "true")]
        ),
        ["dir a"]
    );
}

#[test]
fn subdir_poller_sends_each_file_of_each_subdir() {
    let p = builtin("subdir");
    let root = tree(&[
        "s1/b.ts",
        "s1/a.ts",
        "s1/.a.ts.part",
        "s1/nested/c.ts",
        "s2/",
        "top.ts",
    ]);
    assert_eq!(poll(&p, root.path(), &[]), ["file s1/a.ts", "file s1/b.ts"]);
    assert_eq!(
        poll(&p, root.path(), &[("include_hidden", "true")]),
        ["file s1/.a.ts.part", "file s1/a.ts", "file s1/b.ts"]
    );
}

#[test]
fn telus_poller_sends_files_two_levels_down() {
    let p = builtin("telus");
    let root = tree(&[
        "P1/hd/a.ts",
        "P1/sd/b.ts",
        "P1/provider-level.ts",
        "P1/hd/deeper/c.ts",
        "P1/.tmp/d.ts",
        "P2/hd/",
        "P3/",
        "root.ts",
    ]);
    assert_eq!(
        poll(&p, root.path(), &[]),
        ["file P1/hd/a.ts", "file P1/sd/b.ts"]
    );
    assert_eq!(
        poll(&p, root.path(), &[("include_hidden", "true")]),
        ["file P1/.tmp/d.ts", "file P1/hd/a.ts", "file P1/sd/b.ts"]
    );
}

#[test]
fn pa_poller_sends_ready_assets_under_providers() {
    let p = builtin("pa");
    let root = tree(&[
        "P1/A1/ADI.XML",
        "P1/A1/ADI.DTD",
        "P1/A1/v.mpg",
        "P1/A2/ADI.XML",
        "P2/A3/ADI.XML",
        "P2/A3/ADI.DTD",
        "P2/ADI.XML",
        "P2/ADI.DTD",
        "P3/",
        "TOP/ADI.XML",
        "TOP/ADI.DTD",
    ]);
    assert_eq!(poll(&p, root.path(), &[]), ["dir P1/A1", "dir P2/A3"]);
}

#[test]
fn dirtar_poller_sends_tar_files_of_subdirs() {
    let p = builtin("dirtar");
    let root = tree(&[
        "D/x.tar",
        "D/y.TAR",
        "D/z.tar.gz",
        "D/.h.tar",
        "D/sub/w.tar",
        "E/a.tar",
        "top.tar",
    ]);
    assert_eq!(poll(&p, root.path(), &[]), ["file D/x.tar", "file E/a.tar"]);
    assert_eq!(
        poll(&p, root.path(), &[("include_hidden", "true")]),
        ["file D/.h.tar", "file D/x.tar", "file E/a.tar"]
    );
    assert_eq!(
        poll(&p, root.path(), &[("suffix", ".tar.gz")]),
        ["file D/z.tar.gz"]
    );
}

#[test]
fn google_poller_each_state() {
    let p = builtin("google");
    let root = tree(&[
        "done/dispatch.done",
        "complete/delivery.complete",
        "ready/ADI.XML",
        "ready/ADI.DTD",
        "ready/video.mpg",
        "ready/.video.mpg.part",
        "both/ADI.XML",
        "both/ADI.DTD",
        "both/delivery.complete",
        "partial/ADI.XML",
        "partial/video.mpg",
        "empty/",
        "done-hidden/dispatch.done",
        "done-hidden/.DS_Store",
        "done-nested/dispatch.done",
        "done-nested/keep/x",
        "done-and-more/dispatch.done",
        "done-and-more/video.mpg",
    ]);
    assert_eq!(
        poll(&p, root.path(), &[]),
        [
            "group[file complete/delivery.complete] then[touch complete/dispatch.done]",
            "remove done",
            "remove done-hidden",
            "group[file ready/ADI.DTD, file ready/ADI.XML, file ready/video.mpg] then[touch ready/delivery.complete]",
        ]
    );
}

/// The host's part simulated by hand: each poll's transfers succeed (the
/// source goes), then the follow-ups run. D walks 3 → 2 → 1 → gone, and
/// `delivery.complete` is sent after every other file.
#[test]
fn google_poller_walks_an_asset_to_the_end() {
    use dispatch_runtime::actions::{Action, FollowUp};
    let p = builtin("google");
    let root = tree(&["A/ADI.XML", "A/ADI.DTD", "A/video.mpg"]);
    let mut sent: Vec<String> = Vec::new();
    for _ in 0..5 {
        for action in p.poll(root.path(), &[]).unwrap() {
            match action {
                Action::Group { transfers, then } => {
                    for t in transfers {
                        std::fs::remove_file(root.path().join(&t.path)).unwrap();
                        sent.push(t.path);
                    }
                    for f in then {
                        match f {
                            FollowUp::Touch(path) => add(root.path(), &[&path]),
                            FollowUp::RemoveDir(path) => {
                                std::fs::remove_dir_all(root.path().join(path)).unwrap()
                            }
                        }
                    }
                }
                Action::RemoveDir(path) => std::fs::remove_dir_all(root.path().join(path)).unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(
        sent,
        [
            "A/ADI.DTD",
            "A/ADI.XML",
            "A/video.mpg",
            "A/delivery.complete"
        ]
    );
    assert!(!root.path().join("A").exists());
}

#[test]
fn custom_markers_apply_to_every_marker_poller() {
    let root = tree(&["a/READY", "P/a/READY"]);
    assert_eq!(
        poll(&builtin("dir"), root.path(), &[("markers", "READY")]),
        ["dir a"]
    );
    assert_eq!(
        poll(&builtin("pa"), root.path(), &[("markers", "READY")]),
        ["dir P/a"]
    );
}

#[test]
fn every_builtin_describes_its_parameters() {
    for name in dispatch_runtime::builtin::BUILTIN {
        let p = builtin(name);
        let info = p.info();
        assert_eq!(&info.name, name);
        assert!(!info.description.is_empty());
        assert!(
            info.params
                .iter()
                .any(|s| s.name == "include_hidden" && s.default.as_deref() == Some("false")),
            "{name} lacks include_hidden"
        );
        let has_markers = info
            .params
            .iter()
            .any(|s| s.name == "markers" && s.default.as_deref() == Some("ADI.XML,ADI.DTD"));
        assert_eq!(
            has_markers,
            matches!(*name, "dir" | "pa" | "google"),
            "{name} markers"
        );
        assert_eq!(p.wit_version(), "0.2.0");
    }
}

/// The installed agent is one file: copied alone into an empty directory,
/// with no plugin directory anywhere, it runs every built-in from itself.
#[test]
fn the_agent_binary_alone_runs_every_builtin_compiled_into_it() {
    let bin = tempfile::tempdir().unwrap();
    // `plugins/` beside the binary's directory is where files would be.
    std::fs::create_dir(bin.path().join("bin")).unwrap();
    let agent = bin.path().join("bin/dispatch-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_dispatch-agent"), &agent).unwrap();
    let root = tree(&[
        "ready/ADI.XML",
        "ready/ADI.DTD",
        "ready/movie.mpg",
        "half/ADI.XML",
    ]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&agent)
            .args(args)
            .env_remove("DISPATCH_PLUGIN_DIR")
            .env("HOME", bin.path())
            .env_remove("XDG_CACHE_HOME")
            .current_dir(bin.path())
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {said}");
        said
    };
    let root_arg = root.path().to_str().unwrap();
    let found = run(&["poll", "--plugin", "dir", "--root", root_arg, "--json"]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["path"], "ready", "{found}");
    let listed = run(&["plugins"]);
    for name in dispatch_runtime::builtin::BUILTIN {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} in {listed}"
        );
    }
    assert!(!bin.path().join("plugins").exists());
}
