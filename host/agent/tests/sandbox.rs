//! The sandbox against misbehaving plugins and bad files, on the real
//! runtime: each failure fails that poll only, with a reason, and the next
//! poll of a well-behaved plugin in the same process works.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{builtin, component, params, poll, runtime, tree};
use dispatch_runtime::LoadError;
use dispatch_runtime::{Limits, PollError, Runtime, RuntimeConfig};
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

fn hostile(mode: &str, root: &std::path::Path) -> PollError {
    let plugin = runtime().load_file(&component("test", "hostile")).unwrap();
    plugin
        .poll(root, &params(&[("mode", mode)]))
        .expect_err("a hostile poll must fail")
}

/// After any failure, the same process still polls well-behaved plugins.
fn still_works() {
    let root = tree(&["a/ADI.XML", "a/ADI.DTD"]);
    assert_eq!(poll(&builtin("dir"), root.path(), &[]), ["dir a"]);
    let ok = runtime().load_file(&component("test", "hostile")).unwrap();
    assert_eq!(
        poll(&ok, tree(&["x"]).path(), &[("mode", "ok")]),
        ["file x"]
    );
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    let rt = Runtime::new(RuntimeConfig {
        limits: Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = rt.load_file(&component("test", "hostile")).unwrap();
    let root = tree(&[]);
    let started = Instant::now();
    let err = plugin
        .poll(root.path(), &params(&[("mode", "loop")]))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PollError::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("ran longer than its limit of 300ms"),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    // The same plugin in the same runtime polls again.
    assert_eq!(
        poll(&plugin, tree(&["f"]).path(), &[("mode", "ok")]),
        ["file f"]
    );
    still_works();
}

/// Waiting in the host through WASI's clock (a long sleep, an instant an
/// hour away, `poll` spun with zero timeouts) ends at the deadline too: the
/// epoch deadline alone stops running wasm only.
#[test]
fn waits_in_wasi_end_at_the_deadline() {
    let rt = Runtime::new(RuntimeConfig {
        limits: Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        cache_dir: None,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let plugin = std::sync::Arc::new(rt.load_file(&component("test", "hostile")).unwrap());
    for mode in ["sleep", "sleep-spin", "block-instant", "poll-zero"] {
        let started = Instant::now();
        // On its own thread: without the fix the poll never returns, and the
        // test must fail rather than hang.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = plugin.clone();
        std::thread::spawn(move || {
            let _ = tx.send(p.poll(tree(&[]).path(), &params(&[("mode", mode)])));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{mode}: the poll still runs after 10 s"));
        let took = started.elapsed();
        let err = result.expect_err("a hostile poll must fail");
        assert!(matches!(err, PollError::Timeout { .. }), "{mode}: {err}");
        assert!(
            took < Duration::from_secs(3),
            "{mode}: stopped after {took:?}"
        );
    }
    still_works();
}

#[test]
fn a_panic_fails_the_poll_with_its_message() {
    let err = hostile("panic", tree(&[]).path());
    assert!(matches!(err, PollError::Trap { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("hostile plugin panicked on purpose"),
        "{err}"
    );
    still_works();
}

#[test]
fn a_trap_fails_the_poll() {
    let err = hostile("trap", tree(&[]).path());
    assert!(matches!(err, PollError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    still_works();
}

#[test]
fn a_memory_bomb_hits_the_limit() {
    let err = hostile("oom", tree(&[]).path());
    assert!(matches!(err, PollError::Memory { .. }), "{err}");
    assert!(
        err.to_string().contains("over its limit of 67108864 bytes"),
        "{err}"
    );
    still_works();
}

#[test]
fn paths_outside_the_root_are_refused() {
    let root = tree(&["a/x"]);
    let err = hostile("absolute", root.path());
    assert!(
        err.to_string().contains("`/etc/passwd` is absolute"),
        "{err}"
    );
    let err = hostile("dotdot", root.path());
    assert!(err.to_string().contains("contains `..`"), "{err}");

    let outside = tree(&["secret.txt"]);
    symlink(outside.path(), root.path().join("escape")).unwrap();
    let err = hostile("symlink", root.path());
    assert!(matches!(err, PollError::BadAction { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("leads outside the root through a symlink"),
        "{err}"
    );
    // Listing through the symlink is refused too; the plugin passes the error on.
    let err = hostile("list-escape", root.path());
    assert!(matches!(err, PollError::Plugin { .. }), "{err}");
    assert!(err.to_string().contains("leads outside the root"), "{err}");
    still_works();
}

#[test]
fn listings_show_symlinks_as_symlinks_and_do_not_follow_them() {
    let root = tree(&["real.mpg"]);
    let outside = tree(&["secret.mpg"]);
    symlink(
        outside.path().join("secret.mpg"),
        root.path().join("secret.mpg"),
    )
    .unwrap();
    symlink(outside.path(), root.path().join("outdir")).unwrap();
    assert_eq!(poll(&builtin("file"), root.path(), &[]), ["file real.mpg"]);
    assert!(poll(&builtin("dir"), root.path(), &[("markers", "secret.mpg")]).is_empty());
}

#[test]
fn a_bad_root_is_named() {
    let dir = tree(&["file"]);
    let err = builtin("dir")
        .poll(&dir.path().join("missing"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = builtin("dir")
        .poll(&dir.path().join("file"), &[])
        .unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[test]
fn bad_parameters_are_named() {
    let err = builtin("dir")
        .poll(tree(&[]).path(), &params(&[("marker", "X")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown parameter `marker` for plugin `dir` (it takes: markers, include_hidden)"
    );
    let err = builtin("dir")
        .poll(tree(&[]).path(), &params(&[("include_hidden", "yes")]))
        .unwrap_err();
    assert!(err.to_string().contains("must be true or false"), "{err}");
}

#[test]
fn files_that_are_not_pollers_are_named() {
    let dir = tree(&[]);
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just some text").unwrap();
    let err = runtime().load_file(&text).err().unwrap();
    assert!(matches!(err, LoadError::NotWasm(_)), "{err}");
    assert!(
        err.to_string().contains("is not a WebAssembly file"),
        "{err}"
    );

    // The smallest valid core module: header only.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = runtime().load_file(&core).err().unwrap();
    assert!(
        err.to_string()
            .contains("is a core WebAssembly module, not a component"),
        "{err}"
    );

    let err = runtime()
        .load_file(&component("test", "other-world"))
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::OtherWorld { .. }), "{err}");
    assert!(
        err.to_string().contains("example:greeter/greet@1.0.0"),
        "{err}"
    );

    let err = runtime()
        .load_file(&component("test", "future-version"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "plugin {} was built for dispatch:poller@0.3.0; this agent supports dispatch:poller@0.1.0, @0.2.0",
            component("test", "future-version").display()
        )
    );

    let real = std::fs::read(component("plugin", "dir")).unwrap();
    let cut = dir.path().join("cut.wasm");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let err = runtime().load_file(&cut).err().unwrap();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");

    let err = runtime()
        .load_file(&dir.path().join("absent.wasm"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot read plugin"), "{err}");
    still_works();
}

#[test]
fn a_plugin_polls_from_many_threads_at_once() {
    let plugin = builtin("subdir");
    let root = tree(&["a/1", "a/2", "b/3"]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    assert_eq!(
                        poll(&plugin, root.path(), &[]),
                        ["file a/1", "file a/2", "file b/3"]
                    );
                }
            });
        }
    });
}

#[test]
fn the_compile_cache_is_used_on_the_next_start() {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().join("c")),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    first.load_file(&component("plugin", "dir")).unwrap();
    assert_eq!((first.compiled_count(), first.cache_hit_count()), (1, 0));

    // A new runtime (a restart) loads the artifact instead of compiling.
    let second = Runtime::new(config.clone()).unwrap();
    let plugin = second.load_file(&component("plugin", "dir")).unwrap();
    assert_eq!((second.compiled_count(), second.cache_hit_count()), (0, 1));
    assert_eq!(
        poll(&plugin, tree(&["a/ADI.XML", "a/ADI.DTD"]).path(), &[]),
        ["dir a"]
    );

    // A damaged artifact is compiled again, not trusted, and not fatal.
    // (Replaced, not written in place: loaded artifacts are memory-mapped.)
    drop((plugin, second));
    for entry in std::fs::read_dir(cache.path().join("c")).unwrap() {
        let path = entry.unwrap().path();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, b"garbage").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    let third = Runtime::new(config).unwrap();
    third.load_file(&component("plugin", "dir")).unwrap();
    assert_eq!((third.compiled_count(), third.cache_hit_count()), (1, 0));
}

#[test]
fn a_cache_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("writable by other users"), "{err}");
}
