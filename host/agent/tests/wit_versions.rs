//! The contract's versions: plugins built for `dispatch:poller@0.1.0` keep
//! loading and behaving the same beside 0.2.0 ones, and 0.2.0's additions
//! (`read-file`, paged listings) hold their bounds.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{builtin, component, params, poll, runtime, tree};
use dispatch_runtime::builtin::BUILTIN;
use dispatch_runtime::{Limits, PollError, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The seven built-ins as they were built for 0.1.0, kept as files.
fn v0_1_0(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testing/compat/wit-0.1.0")
        .join(format!("{name}.wasm"))
}

#[test]
fn every_0_1_0_builtin_still_loads_and_polls_the_same() {
    // One tree with something for each poller's rules.
    let root = tree(&[
        "a.mpg",
        ".a.mpg.part",
        "ready/ADI.XML",
        "ready/ADI.DTD",
        "ready/movie.mpg",
        "half/ADI.XML",
        "tars/x.tar",
        "tars/y.txt",
        "prov/asset/ADI.XML",
        "prov/asset/ADI.DTD",
        "prov/asset/m.mpg",
        "t1/t2/deep.mpg",
        "g/READY",
        "g/file.mxf",
        "empty/",
    ]);
    for name in BUILTIN {
        let old = runtime().load_file(&v0_1_0(name)).unwrap();
        let new = builtin(name);
        assert_eq!(old.wit_version(), "0.1.0", "{name}");
        assert_eq!(new.wit_version(), "0.2.0", "{name}");
        assert_eq!(old.info().name, new.info().name);
        let names = |p: &dispatch_runtime::Plugin| -> Vec<String> {
            p.info().params.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&old), names(&new), "{name} parameters");
        for pairs in [vec![], vec![("include_hidden", "true")]] {
            assert_eq!(
                poll(&old, root.path(), &pairs),
                poll(&new, root.path(), &pairs),
                "{name} {pairs:?}"
            );
        }
    }
    // The Python twin is built for 0.1.0 too (`cargo xtask test`).
    let python = runtime()
        .load_file(&component("test", "python-dir"))
        .unwrap();
    assert_eq!(python.wit_version(), "0.1.0");
}

/// Polls the hostile plugin's `read` modes.
fn read(mode: &str, root: &Path, path: &str, max: u32) -> Result<Vec<String>, String> {
    let plugin = runtime().load_file(&component("test", "hostile")).unwrap();
    let max = max.to_string();
    let pairs = [("mode", mode), ("path", path), ("max_bytes", max.as_str())];
    match plugin.poll(root, &params(&pairs)) {
        Ok(actions) => Ok(actions.iter().map(common::show).collect()),
        Err(PollError::Plugin { message, .. }) => Err(message),
        Err(e) => panic!("{mode} {path}: not the plugin's error: {e}"),
    }
}

#[test]
fn read_file_reads_small_files_inside_the_root() {
    let root = tree(&["asset/manifest.json"]);
    std::os::unix::fs::symlink("asset/manifest.json", root.path().join("inner")).unwrap();
    // `tree` writes each file's path as its content.
    assert_eq!(
        read("read", root.path(), "asset/manifest.json", 1 << 20).unwrap(),
        ["touch read-19"]
    );
    assert_eq!(
        read("read", root.path(), "./inner", 100).unwrap(),
        ["touch read-19"]
    );
}

#[test]
fn read_file_refuses_what_it_must_not_read() {
    let outside = tree(&["secret.txt"]);
    let root = tree(&["dir/", "small.txt"]);
    let r = root.path();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), r.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), r.join("out")).unwrap();
    std::fs::write(r.join("big.bin"), vec![7u8; (1 << 20) + 1]).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(r.join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let cases: &[(&str, u32, &str)] = &[
        ("/etc/passwd", 1 << 20, "is absolute"),
        ("../secret.txt", 1 << 20, "contains `..`"),
        (
            "link",
            1 << 20,
            "cannot read `link`: it leads outside the root",
        ),
        ("out/secret.txt", 1 << 20, "it leads outside the root"),
        ("dir", 1 << 20, "cannot read `dir`: it is a directory"),
        ("", 1 << 20, "it is the root, a directory"),
        (
            "fifo",
            1 << 20,
            "cannot read `fifo`: it is not a regular file",
        ),
        ("absent", 1 << 20, "cannot read `absent`: no such file"),
        (
            "small.txt",
            4,
            "cannot read `small.txt`: it is 9 bytes, over the bound of 4 bytes",
        ),
        // The host's bound holds whatever the plugin asks.
        (
            "big.bin",
            u32::MAX,
            "cannot read `big.bin`: it is 1048577 bytes, over the bound of 1048576 bytes",
        ),
    ];
    for (path, max, want) in cases {
        let err = read("read", r, path, *max).unwrap_err();
        assert!(err.contains(want), "{path}: {err}");
        assert!(!err.contains('\n'), "{path}: one line: {err}");
    }
}

#[test]
fn a_poll_reading_in_a_loop_hits_the_per_poll_total() {
    let root = tree(&[]);
    std::fs::write(root.path().join("m.bin"), vec![1u8; 1 << 20]).unwrap();
    let err = read("read-loop", root.path(), "m.bin", 1 << 20).unwrap_err();
    assert!(
        err.starts_with("after 8 reads: cannot read `m.bin`: this poll has read 8388608 bytes"),
        "{err}"
    );
    // The total is per poll: the next poll reads again.
    assert_eq!(
        read("read", root.path(), "m.bin", 1 << 20).unwrap(),
        ["touch read-1048576"]
    );
}

/// A scratch directory on tmpfs when there is one: a million files are
/// made in seconds there, in minutes on some disks.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let in_shm = shm
        .is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten();
    in_shm.unwrap_or_else(|| tempfile::tempdir().unwrap())
}

#[test]
fn a_million_entries_poll_within_the_default_memory_limit() {
    let dir = scratch();
    let n = 1_000_000;
    for i in 0..n {
        std::fs::File::create(dir.path().join(format!("f{i:07}.dpx"))).unwrap();
    }
    // The default memory limit; time enough for a million stats on a slow
    // machine (the limit under test is memory).
    let rt = Runtime::new(RuntimeConfig {
        limits: Limits {
            timeout: Duration::from_secs(120),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(Limits::default().memory_bytes, 64 << 20);
    let new = rt
        .load_file(&component("plugin", "file"))
        .unwrap()
        .poll(dir.path(), &[])
        .unwrap();
    // The first 10,000 by name; the rest come as those are sent.
    assert_eq!(new.len(), 10_000);
    assert_eq!(common::show(&new[0]), "file f0000000.dpx");
    assert_eq!(common::show(&new[9_999]), "file f0009999.dpx");

    let err = rt
        .load_file(&v0_1_0("file"))
        .unwrap()
        .poll(dir.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("plugin `file` tried to grow its memory to ")
            && err.ends_with("bytes, over its limit of 67108864 bytes"),
        "{err}"
    );
}
