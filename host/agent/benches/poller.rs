//! Benchmarks of the poller runtime (results and method in BENCHMARKS.md).
//!
//! Run with `cargo xtask bench` (it builds the components first). Each figure
//! is a median; every comparison runs its two sides alternately in the same
//! process, so machine noise hits both.
//!
//! 1. `dir` poll over 100,000 files in 10,000 directories vs a native Rust
//!    scan doing the same reads (list + stat every entry).
//! 2. Per-poll overhead (Store + instantiate + call) on an empty root.
//! 3. Agent start with the seven built-in plugins, whole process, to the end
//!    of a first poll of each: cold (compiling) and warm (compile cache).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails panics

use dispatch_runtime::{Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DIRS: usize = 10_000;
const FILES_PER_DIR: usize = 10;

fn main() {
    // `cargo bench` passes `--bench`; a filter word selects one benchmark.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let plugins = plugin_dir();
    println!("benchmark                                   median        (runs)  notes");
    if wants("dir_poll") {
        dir_poll_vs_native(&plugins);
    }
    if wants("poll_overhead") {
        poll_overhead(&plugins);
    }
    if wants("agent_start") {
        agent_start(&plugins);
    }
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// 10,000 asset directories of 10 files each (ADI.XML, ADI.DTD and 8 more),
/// made once under target/ and reused.
fn big_tree() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tree");
    let done = root.join(".complete");
    if done.exists() {
        return root.join("tree");
    }
    let tree = root.join("tree");
    let _ = std::fs::remove_dir_all(&root);
    for d in 0..DIRS {
        let dir = tree.join(format!("asset{d:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["ADI.XML", "ADI.DTD"] {
            std::fs::write(dir.join(name), b"<adi/>").unwrap();
        }
        for f in 0..FILES_PER_DIR - 2 {
            std::fs::write(dir.join(format!("part{f}.mpg")), b"video").unwrap();
        }
    }
    std::fs::write(done, b"").unwrap();
    tree
}

/// What the Dir poller does, natively: list + stat every entry of the root
/// and of each subdirectory, and pick the directories with both markers.
fn native_dir_scan(root: &Path) -> usize {
    let mut ready = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if !meta.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let (mut xml, mut dtd) = (false, false);
        for f in std::fs::read_dir(entry.path()).unwrap() {
            let f = f.unwrap();
            let m = f.metadata().unwrap();
            if m.is_file() {
                let n = f.file_name();
                xml |= n == "ADI.XML";
                dtd |= n == "ADI.DTD";
            }
        }
        if xml && dtd {
            ready += 1;
        }
    }
    ready
}

fn dir_poll_vs_native(plugins: &Path) {
    let tree = big_tree();
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = rt.load_file(&plugins.join("dir.wasm")).unwrap();
    // Warm the page cache and check both sides agree.
    assert_eq!(dir.poll(&tree, &[]).unwrap().len(), DIRS);
    assert_eq!(native_dir_scan(&tree), DIRS);
    let runs = 15;
    let (mut wasm, mut native) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let n = dir.poll(&tree, &[]).unwrap().len();
        wasm.push(t.elapsed());
        assert_eq!(n, DIRS);
        let t = Instant::now();
        assert_eq!(native_dir_scan(&tree), DIRS);
        native.push(t.elapsed());
    }
    let (w, n) = (median(wasm), median(native));
    println!(
        "dir_poll wasm (100k files, 10k dirs)        {:>12}  ({runs})",
        ms(w)
    );
    println!(
        "dir_poll native scan, same reads            {:>12}  ({runs})",
        ms(n)
    );
    println!(
        "dir_poll ratio wasm / native                {:>9.3} x   ({runs})  floor: <= 1.2",
        w.as_secs_f64() / n.as_secs_f64()
    );
}

fn poll_overhead(plugins: &Path) {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let file = rt.load_file(&plugins.join("file.wasm")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    for _ in 0..200 {
        file.poll(empty.path(), &[]).unwrap();
    }
    // Median of batches of 100 polls, per poll.
    let mut per_poll = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        for _ in 0..100 {
            assert!(file.poll(empty.path(), &[]).unwrap().is_empty());
        }
        per_poll.push(t.elapsed() / 100);
    }
    println!(
        "poll_overhead empty root (Store+inst+call) {:>12}  (50x100)  floor: < 0.2 ms",
        ms(median(per_poll))
    );
}

fn agent_start(plugins: &Path) {
    let agent = env!("CARGO_BIN_EXE_dispatch-agent");
    let empty = tempfile::tempdir().unwrap();
    let run = |cache: &Path| {
        let t = Instant::now();
        let out = Command::new(agent)
            .args(["plugins", "--poll-root"])
            .arg(empty.path())
            .arg("--cache-dir")
            .arg(cache)
            .env("DISPATCH_PLUGIN_DIR", plugins)
            .output()
            .unwrap();
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let runs = 7;
    for _ in 0..runs {
        let cache = tempfile::tempdir().unwrap();
        let (t, out) = run(&cache.path().join("c"));
        assert!(out.contains("7 compiled, 0 from cache"), "{out}");
        cold.push(t);
        for _ in 0..3 {
            let (t, out) = run(&cache.path().join("c"));
            assert!(out.contains("0 compiled, 7 from cache"), "{out}");
            warm.push(t);
        }
    }
    println!(
        "agent_start cold, 7 plugins compiled       {:>12}  ({runs})",
        ms(median(cold))
    );
    println!(
        "agent_start warm, 7 plugins from cache     {:>12}  ({})  floor: < 100 ms",
        ms(median(warm)),
        runs * 3
    );
}
