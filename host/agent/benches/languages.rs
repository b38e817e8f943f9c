//! The same poller in three languages (results and method in BENCHMARKS.md):
//! the `manifest` poller of each author template (sdk/templates: Rust,
//! Python, JavaScript), built by `cargo xtask test` into
//! `target/test-plugins/manifest-{rust,python,js}.wasm`.
//!
//! `manifest`, for each language, in one process:
//! 1. module size;
//! 2. cold load: `load_file` with no compile cache (compile + describe);
//! 3. warm load: `load_file` from a filled compile cache, a new `Runtime`
//!    each time (as an agent starting);
//! 4. one poll of 10,000 folders, each with a manifest.json listing 2 or 3
//!    small files, all present (10,000 actions); the three must give the
//!    same actions before anything is timed; polls alternate between the
//!    languages, so machine noise hits all three;
//! 5. the guest's linear memory at the end of that poll (its peak);
//! 6. the whole process: `dispatch-agent poll` of the same tree, compile
//!    cache warm, wall time and peak RSS under `/usr/bin/time`.
//!
//! Runs: `DISPATCH_BENCH_RUNS` (5) timed polls after one warm-up, and as
//! many warm loads and whole-process polls; one cold load (a Python or
//! JavaScript component takes seconds to compile).
//!
//! Run: `cargo xtask bench -- manifest` (or `-- languages`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails panics

#[path = "support/filter.rs"]
mod filter;

use dispatch_runtime::{Limits, Plugin, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names the filter accepts.
const NAMES: &[&str] = &["manifest"];

const LANGUAGES: [&str; 3] = ["rust", "python", "js"];
const DIRS: usize = 10_000;

fn main() {
    let filter = filter::Filter::from_args("languages", NAMES);
    let wants = |name: &str| filter.wants(name);
    if wants("manifest") {
        manifest();
    }
}

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `manifest-LANG.wasm` of the test components; panics if it was not built.
fn component(lang: &str) -> PathBuf {
    let dir = std::env::var_os("DISPATCH_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-plugins"));
    let path = dir.join(format!("manifest-{lang}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: `cargo xtask test` builds the three manifest pollers (`cargo xtask bench -- manifest` too)",
        path.display()
    );
    path
}

/// The agent's default limits, but a poll may take a minute: the bench
/// measures how long it takes rather than stopping it at 5 s.
fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(60),
        ..Limits::default()
    }
}

fn runtime(cache_dir: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: limits(),
        cache_dir,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// 10,000 folders, each a manifest.json listing 2 or 3 files of a few
/// bytes, all present with the listed sizes; made once under target/.
fn tree() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-manifest-tree");
    let tree = root.join("tree");
    let done = root.join(".complete");
    if done.exists() {
        return tree;
    }
    let _ = std::fs::remove_dir_all(&root);
    for d in 0..DIRS {
        let dir = tree.join(format!("asset{d:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = vec![("video.ts", 5), ("ADI.XML", 3)];
        if d % 2 == 1 {
            files.push(("poster.jpg", 4));
        }
        let mut listed = Vec::new();
        for (name, size) in files {
            std::fs::write(dir.join(name), vec![b'x'; size]).unwrap();
            listed.push(format!("{{\"name\": \"{name}\", \"size\": {size}}}"));
        }
        std::fs::write(
            dir.join("manifest.json"),
            format!("{{\"files\": [{}]}}", listed.join(", ")),
        )
        .unwrap();
    }
    std::fs::write(done, b"").unwrap();
    tree
}

/// What one language measured.
struct Figures {
    size: u64,
    cold: Duration,
    warm: Duration,
    poll: Duration,
    memory: usize,
    process: Duration,
    process_rss_kib: u64,
}

fn manifest() {
    let paths = LANGUAGES.map(component);
    let tree = tree();
    let runs = env_or("DISPATCH_BENCH_RUNS", 5);
    let cache = tempfile::tempdir().unwrap();

    // Cold: compile (no cache) and describe, once each.
    let cold: Vec<Duration> = paths
        .iter()
        .map(|p| {
            let rt = runtime(None);
            let t = Instant::now();
            rt.load_file(p).unwrap();
            let took = t.elapsed();
            assert_eq!(rt.compiled_count(), 1);
            took
        })
        .collect();

    // Warm: fill the cache, then load from it with a new Runtime each time.
    let mut warm: Vec<Vec<Duration>> = vec![Vec::new(); LANGUAGES.len()];
    for p in &paths {
        runtime(Some(cache.path().to_path_buf()))
            .load_file(p)
            .unwrap();
    }
    for _ in 0..runs {
        for (i, p) in paths.iter().enumerate() {
            let rt = runtime(Some(cache.path().to_path_buf()));
            let t = Instant::now();
            rt.load_file(p).unwrap();
            warm[i].push(t.elapsed());
            assert_eq!(
                (rt.compiled_count(), rt.cache_hit_count()),
                (0, 1),
                "{}: loaded from the cache",
                LANGUAGES[i]
            );
        }
    }

    // The same actions from all three (this poll also warms the page cache
    // and each plugin's first-poll costs).
    let rt = runtime(Some(cache.path().to_path_buf()));
    let plugins: Vec<Plugin> = paths.iter().map(|p| rt.load_file(p).unwrap()).collect();
    let first: Vec<_> = plugins
        .iter()
        .zip(LANGUAGES)
        .map(|(p, lang)| {
            p.poll_full(&tree, &[])
                .unwrap_or_else(|e| panic!("{lang}: {e}"))
        })
        .collect();
    assert_eq!(first[0].actions.len(), DIRS, "rust: every folder is ready");
    for (polled, lang) in first.iter().zip(LANGUAGES).skip(1) {
        assert!(
            polled.actions == first[0].actions,
            "{lang} gives other actions than rust on the bench tree"
        );
    }

    let mut polls: Vec<Vec<Duration>> = vec![Vec::new(); LANGUAGES.len()];
    let mut memory = vec![0; LANGUAGES.len()];
    for _ in 0..runs {
        for (i, p) in plugins.iter().enumerate() {
            let t = Instant::now();
            let polled = p.poll_full(&tree, &[]).unwrap();
            polls[i].push(t.elapsed());
            assert_eq!(polled.actions.len(), DIRS);
            assert!(
                polled.memory_peak > 0,
                "{}: no memory recorded",
                LANGUAGES[i]
            );
            memory[i] = memory[i].max(polled.memory_peak);
        }
    }

    // The whole process, as a user runs it; the cache filled above.
    let mut process: Vec<Vec<Duration>> = vec![Vec::new(); LANGUAGES.len()];
    let mut rss = vec![0; LANGUAGES.len()];
    for _ in 0..runs {
        for (i, p) in paths.iter().enumerate() {
            let (wall, kib) = agent_poll(p, &tree, cache.path());
            process[i].push(wall);
            rss[i] = rss[i].max(kib);
        }
    }

    let figures: Vec<Figures> = (0..LANGUAGES.len())
        .map(|i| Figures {
            size: std::fs::metadata(&paths[i]).unwrap().len(),
            cold: cold[i],
            warm: median(warm[i].clone()),
            poll: median(polls[i].clone()),
            memory: memory[i],
            process: median(process[i].clone()),
            process_rss_kib: rss[i],
        })
        .collect();
    report(&figures, runs);
}

/// `dispatch-agent poll --json` of `tree` under `/usr/bin/time`: wall time
/// and peak RSS (KiB); checks it printed 10,000 actions.
fn agent_poll(plugin: &Path, tree: &Path, cache: &Path) -> (Duration, u64) {
    let scratch = tempfile::tempdir().unwrap();
    let time = scratch.path().join("time.txt");
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&time)
        .arg(env!("CARGO_BIN_EXE_dispatch-agent"))
        .arg("poll")
        .arg("--plugin")
        .arg(plugin)
        .arg("--root")
        .arg(tree)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--timeout-ms")
        .arg(limits().timeout.as_millis().to_string())
        .arg("--json")
        .env("RUST_LOG", "error")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "dispatch-agent poll --plugin {}: {}",
        plugin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let actions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(actions.as_array().map(Vec::len), Some(DIRS));
    let kib = std::fs::read_to_string(&time)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (wall, kib)
}

fn report(f: &[Figures], runs: usize) {
    let rust = &f[0];
    println!(
        "manifest poller, 10,000 ready folders        {:>10} {:>10} {:>10}",
        LANGUAGES[0], LANGUAGES[1], LANGUAGES[2]
    );
    let row = |what: &str, cells: Vec<String>| {
        println!(
            "{what:<44} {:>10} {:>10} {:>10}",
            cells[0], cells[1], cells[2]
        );
    };
    let each = |g: &dyn Fn(&Figures) -> String| f.iter().map(g).collect::<Vec<_>>();
    row("module size (MB)", each(&|x| format!("{:.2}", mb(x.size))));
    row(
        "cold load, no cache (ms, 1)",
        each(&|x| format!("{:.0}", ms(x.cold))),
    );
    row(
        &format!("warm load, from cache (ms, median of {runs})"),
        each(&|x| format!("{:.1}", ms(x.warm))),
    );
    row(
        &format!("poll, 10,000 folders (ms, median of {runs})"),
        each(&|x| format!("{:.1}", ms(x.poll))),
    );
    row(
        "poll / rust's (floor: <= 5x)",
        each(&|x| format!("{:.2}x", x.poll.as_secs_f64() / rust.poll.as_secs_f64())),
    );
    row(
        "guest linear memory, poll peak (MB)",
        each(&|x| format!("{:.1}", mb(x.memory as u64))),
    );
    row(
        &format!("dispatch-agent poll, warm (ms, median of {runs})"),
        each(&|x| format!("{:.0}", ms(x.process))),
    );
    row(
        "dispatch-agent poll, peak RSS (MB)",
        each(&|x| format!("{:.0}", x.process_rss_kib as f64 / 1024.0)),
    );
}
