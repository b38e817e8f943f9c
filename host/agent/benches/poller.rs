//! Benchmarks of the poller runtime (results and method in BENCHMARKS.md).
//!
//! Run with `cargo xtask bench` (it builds the components first). Each figure
//! is a median; every comparison runs its two sides alternately in the same
//! process, so machine noise hits both.
//!
//! 1. `dir` poll over 100,000 files in 10,000 directories vs a native Rust
//!    scan doing the same reads (list + stat every entry).
//! 2. Per-poll overhead (Store + instantiate + call) on an empty root.
//! 3. `agent_start`: the seven built-in plugins loaded and polled once each
//!    by `dispatch-agent plugins --poll-root`, whole process: cold
//!    (compiling) and warm (compile cache).
//! 4. `agent_run_start`: `dispatch-agent run` (configuration, journal,
//!    watcher, engine) with one poller of each built-in, from the process's
//!    start to the first poll of all seven, compile cache warm.
//!
//! Run: `cargo xtask bench -- NAME...` (`cargo xtask bench --list` lists the
//! names); no name, or `poller`, runs them all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails panics

#[path = "support/filter.rs"]
mod filter;

use dispatch_runtime::{Runtime, RuntimeConfig};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DIRS: usize = 10_000;
const FILES_PER_DIR: usize = 10;

/// The names the filter accepts (exact).
const NAMES: &[&str] = &[
    "dir_poll",
    "poll_overhead",
    "agent_start",
    "agent_run_start",
];

fn main() {
    let filter = filter::Filter::from_args("poller", NAMES);
    let wants = |name: &str| filter.wants(name);
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
    if wants("agent_run_start") {
        agent_run_start(&plugins);
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

/// The seven built-ins, one poller each.
const BUILTINS: [&str; 7] = ["file", "dir", "subdir", "telus", "pa", "google", "dirtar"];

/// `dispatch-agent run` with one poller of each built-in on an empty root:
/// from spawning the process to the first poll of all seven (each poller
/// logs `polled` at trace level when its poll returns), compile cache warm
/// (filled by a first run), a new journal each time.
fn agent_run_start(plugins: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let mut pollers = String::new();
    for name in BUILTINS {
        std::fs::create_dir_all(dir.path().join("src").join(name)).unwrap();
        pollers.push_str(&format!(
            "[[poller]]\nname = \"{name}\"\npath = \"src/{name}\"\nplugin = \"{name}\"\ntarget = {{ kind = \"local\", destination = \"dst/{name}\" }}\n\n"
        ));
    }
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\ncache_dir = {:?}\n\n{pollers}",
            dir.path().join("cache").display().to_string()
        ),
    )
    .unwrap();
    let run = || {
        for f in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("dispatch-journal.sqlite{f}")));
        }
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("DISPATCH_PLUGIN_DIR", plugins)
            .env("RUST_LOG", "warn,dispatch_agent::engine::poller=trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut polled = std::collections::BTreeSet::new();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while polled.len() < BUILTINS.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if line.contains(" polled ")
                        && let Some(name) = line
                            .split_whitespace()
                            .find_map(|w| w.strip_prefix("poller="))
                    {
                        polled.insert(name.to_string());
                    }
                    seen.push(line);
                }
                Err(_) => panic!(
                    "not every poller polled within 30 s (polled: {polled:?}); the agent said:\n{}",
                    seen.join("\n")
                ),
            }
        }
        let took = t.elapsed();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        drop(rx);
        assert!(
            child.wait().unwrap().success(),
            "the agent's exit on SIGTERM"
        );
        reader.join().unwrap();
        took
    };
    run(); // fills the compile cache
    let runs = 15;
    let times: Vec<Duration> = (0..runs).map(|_| run()).collect();
    println!(
        "agent_run_start warm, run to 7 first polls {:>12}  ({runs})",
        ms(median(times))
    );
}
