//! Helpers shared by the integration tests: where the built components are,
//! a runtime with a private compile cache, and fixture trees.
#![allow(dead_code)]

use dispatch_host::{Action, Plugin, Runtime, RuntimeConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn dir_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join(default)
    })
}

/// A built component; the tests need `cargo xtask test` to have built them.
pub fn component(kind: &str, name: &str) -> PathBuf {
    let dir = match kind {
        "plugin" => dir_from_env("DISPATCH_PLUGIN_DIR", "plugins"),
        _ => dir_from_env("DISPATCH_TEST_PLUGIN_DIR", "test-plugins"),
    };
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// One runtime per test binary, compile cache in a private temp dir.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<(Runtime, tempfile::TempDir)> = OnceLock::new();
    &RT.get_or_init(|| {
        let cache = tempfile::tempdir().expect("temp dir");
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().join("cache")),
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        (rt, cache)
    })
    .0
}

pub fn builtin(name: &str) -> Plugin {
    runtime()
        .load_file(&component("plugin", name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Makes a tree: `"a/b.txt"` is a file (content: its path), `"a/c/"` a
/// directory.
pub fn tree(paths: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    add(dir.path(), paths);
    dir
}

pub fn add(root: &Path, paths: &[&str]) {
    for p in paths {
        let full = root.join(p.trim_end_matches('/'));
        if p.ends_with('/') {
            std::fs::create_dir_all(&full).expect("mkdir");
        } else {
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, p.as_bytes()).expect("write");
        }
    }
}

pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls and renders each action as a short string, e.g. `file a/b`,
/// `dir a`, `touch a/x`, `remove a`, `group[file a/b] then[touch a/x]`.
pub fn poll(plugin: &Plugin, root: &Path, pairs: &[(&str, &str)]) -> Vec<String> {
    let actions = plugin
        .poll(root, &params(pairs))
        .unwrap_or_else(|e| panic!("poll failed: {e}"));
    actions.iter().map(show).collect()
}

pub fn show(a: &Action) -> String {
    use dispatch_host::actions::{FollowUp, Transfer};
    let t = |t: &Transfer| format!("{} {}", t.kind.as_str(), t.path);
    match a {
        Action::Transfer(tr) => t(tr),
        Action::Touch(p) => format!("touch {p}"),
        Action::RemoveDir(p) => format!("remove {p}"),
        Action::Group { transfers, then } => format!(
            "group[{}] then[{}]",
            transfers.iter().map(t).collect::<Vec<_>>().join(", "),
            then.iter()
                .map(|f| match f {
                    FollowUp::Touch(p) => format!("touch {p}"),
                    FollowUp::RemoveDir(p) => format!("remove {p}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Waits for a process (an agent), reading its stderr meanwhile so a chatty
/// one never blocks on a full pipe; panics with its log after `limit`.
pub fn wait_limited(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    // Drain stderr on a thread so a chatty agent never blocks on a full pipe.
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = Vec::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_end(&mut stdout).unwrap();
            }
            return Output {
                status,
                stdout,
                stderr: reader.join().unwrap(),
            };
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            let log = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
            panic!("agent still running after {limit:?}; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (through the `kill` program), then [`wait_limited`] 30 s.
pub fn terminate(child: Child) -> Output {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    wait_limited(child, Duration::from_secs(30))
}
