//! Many small files (media sequences: one file per frame), timed as whole
//! processes on both sides, alternately, in one run (results and method in
//! BENCHMARKS.md):
//!
//! 1. `files`: 3,000 files of 4 KiB, the `file` poller, local target,
//!    default settings, against `rsync -a --fsync --remove-source-files`
//!    (the same durability and the same source removal); and with
//!    `fsync = false` against `rsync -a --remove-source-files`.
//! 2. `dirs`: 10,000 ready directories of 10 empty files each, the `dir`
//!    poller, against `rsync -a --fsync --remove-source-files`; with the
//!    agent's peak memory.
//!
//! Each side runs as one process from start to exit (`dispatch-agent run
//! --until-idle`, `rsync`) under `/usr/bin/time`, after `sync`, with the
//! previous run's output dropped. Sizes: `DISPATCH_BENCH_FILES`,
//! `DISPATCH_BENCH_DIRS`, `DISPATCH_BENCH_RUNS`; where:
//! `DISPATCH_BENCH_SCRATCH` (default `target/bench-many-files`).
//! `DISPATCH_BENCH_BASELINE_AGENT=PATH`: another build of `dispatch-agent`
//! (say, main's) runs as a third side in the same rounds, so a change is
//! judged against its own baseline on the same noisy machine.
//!
//! Run: `cargo xtask bench -- many_files` (or `-- files`, `-- dirs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails panics

#[path = "support/filter.rs"]
mod filter;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names the filter accepts.
const NAMES: &[&str] = &["files", "dirs"];

fn main() {
    let filter = filter::Filter::from_args("many_files", NAMES);
    let wants = |name: &str| filter.wants(name);
    assert!(
        rsync_can_fsync(),
        "the baseline needs rsync 3.2.4 or later (`--fsync`): apt install rsync"
    );
    println!("benchmark                                        median     (runs)  notes");
    if wants("files") {
        files();
    }
    if wants("dirs") {
        dirs();
    }
}

fn env_or(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rsync_can_fsync() -> bool {
    Command::new("rsync")
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--fsync"))
}

/// One timed whole-process run: wall time and peak resident memory (KiB).
struct Run {
    wall: Duration,
    peak_kib: u64,
}

/// Runs `cmd` under `/usr/bin/time` after `sync`; panics if it fails.
fn timed(dir: &Path, cmd: &mut Command) -> Run {
    assert!(Command::new("sync").status().unwrap().success());
    let out = dir.join("time.txt");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&out)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let status = wrapped.status().unwrap();
    let wall = t.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    let peak_kib = std::fs::read_to_string(&out)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or(0);
    Run { wall, peak_kib }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A scratch directory on the same file system as the target dir (not
/// tmpfs), or under `DISPATCH_BENCH_SCRATCH` to measure another file system.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::var_os("DISPATCH_BENCH_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-many-files")
        })
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

/// An agent configuration with one poller, default settings but for a
/// stability window of 0 (the sources are complete before the run starts).
fn config(dir: &Path, plugin: &str, target: &str) -> PathBuf {
    let cache = std::env::temp_dir().join("dispatch-bench-cache");
    let text = format!(
        "[agent]\ncache_dir = {:?}\n\n[[poller]]\nname = \"frames\"\npath = \"src\"\nplugin = \"{plugin}\"\nstability = \"0s\"\ntarget = {target}\n",
        cache.display().to_string()
    );
    let p = dir.join("agent.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn agent(config: &Path) -> Command {
    agent_at(Path::new(env!("CARGO_BIN_EXE_dispatch-agent")), config)
}

/// The baseline build of the agent, if one is given.
fn baseline_agent() -> Option<PathBuf> {
    std::env::var_os("DISPATCH_BENCH_BASELINE_AGENT").map(PathBuf::from)
}

fn agent_at(exe: &Path, config: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--until-idle", "--config"])
        .arg(config)
        .env("DISPATCH_PLUGIN_DIR", plugin_dir())
        .env("RUST_LOG", "error");
    cmd
}

fn rsync(src: &Path, dst: &Path, fsync: bool) -> Command {
    let mut cmd = Command::new("rsync");
    cmd.arg("-a");
    if fsync {
        cmd.arg("--fsync");
    }
    let mut from = src.as_os_str().to_owned();
    from.push("/");
    cmd.arg("--remove-source-files").arg(from).arg(dst);
    cmd
}

/// Clears what a run left: the source (rsync leaves its directories), the
/// destinations and the journal.
fn reset(dir: &Path) {
    for d in ["src", "dst", "rsync-dst"] {
        let _ = std::fs::remove_dir_all(dir.join(d));
    }
    for f in [
        "dispatch-journal.sqlite",
        "dispatch-journal.sqlite-wal",
        "dispatch-journal.sqlite-shm",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn count_files(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Side {
    Rsync,
    Ours,
    Baseline,
}

/// Both sides' times over the runs, and the agent's peak memory.
#[derive(Default)]
struct Sides {
    ours: Vec<Duration>,
    theirs: Vec<Duration>,
    /// The baseline agent's times (`DISPATCH_BENCH_BASELINE_AGENT`).
    baseline: Vec<Duration>,
    peak_kib: Vec<u64>,
}

impl Sides {
    /// One run of each side from the same fresh source (`make`): rsync
    /// into `rsync-dst`, the agent with `cfg` into `dst` (and the baseline
    /// agent, if given); each must deliver `files` files and an agent must
    /// leave the source empty. The sides take turns going first, round by
    /// round: a run pays for the deletions of the run before it (ext4
    /// skips recently freed inodes), so a fixed order would favour one.
    fn race(&mut self, dir: &Path, make: impl Fn(), cfg: &Path, fsync: bool, files: usize) {
        let mut order = vec![Side::Rsync, Side::Ours];
        if baseline_agent().is_some() {
            order.push(Side::Baseline);
        }
        let turn = self.ours.len() % order.len();
        order.rotate_left(turn);
        for side in order {
            match side {
                Side::Rsync => {
                    reset(dir);
                    make();
                    let src = dir.join("src");
                    let theirs = timed(dir, &mut rsync(&src, &dir.join("rsync-dst"), fsync));
                    assert_eq!(
                        count_files(&dir.join("rsync-dst")),
                        files,
                        "rsync sent everything"
                    );
                    self.theirs.push(theirs.wall);
                }
                Side::Ours => {
                    let ours = Self::agent_run(dir, &make, agent(cfg), files);
                    self.ours.push(ours.wall);
                    self.peak_kib.push(ours.peak_kib);
                }
                Side::Baseline => {
                    let Some(exe) = baseline_agent() else {
                        continue;
                    };
                    let base = Self::agent_run(dir, &make, agent_at(&exe, cfg), files);
                    self.baseline.push(base.wall);
                }
            }
        }
    }

    /// One agent run from a fresh source; it must drain it all to `dst`.
    fn agent_run(dir: &Path, make: &impl Fn(), mut cmd: Command, files: usize) -> Run {
        reset(dir);
        make();
        let run = timed(dir, &mut cmd);
        assert_eq!(
            count_files(&dir.join("src")),
            0,
            "the agent drained the source"
        );
        assert_eq!(
            count_files(&dir.join("dst")),
            files,
            "the agent sent everything"
        );
        run
    }

    fn report(&self, what: &str, ours: &str, theirs: &str, items: usize, unit: &str) {
        let (o, t) = (median(self.ours.clone()), median(self.theirs.clone()));
        let rate = |d: Duration| items as f64 / d.as_secs_f64();
        let runs = self.ours.len();
        println!(
            "{what}, {theirs:<28} {:>8.2} s  ({runs})  {:.0} {unit}/s",
            t.as_secs_f64(),
            rate(t)
        );
        let peak = self.peak_kib.iter().max().copied().unwrap_or(0) / 1024;
        println!(
            "{what}, {ours:<28} {:>8.2} s  ({runs})  {:.0} {unit}/s, {:.2}x, peak {peak} MB",
            o.as_secs_f64(),
            rate(o),
            t.as_secs_f64() / o.as_secs_f64()
        );
        if !self.baseline.is_empty() {
            let b = median(self.baseline.clone());
            println!(
                "{what}, {:<28} {:>8.2} s  ({runs})  {:.0} {unit}/s, {:.2}x",
                "baseline agent (same config)",
                b.as_secs_f64(),
                rate(b),
                t.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
}

fn files() {
    let dir = scratch("files");
    let (n, runs) = (
        env_or("DISPATCH_BENCH_FILES", 3000),
        env_or("DISPATCH_BENCH_RUNS", 5),
    );
    let make = || {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..n {
            std::fs::write(src.join(format!("frame.{i:07}.dpx")), [b'x'; 4096]).unwrap();
        }
    };
    for fsync in [true, false] {
        let cfg = config(
            &dir,
            "file",
            &format!("{{ kind = \"local\", destination = \"dst\", fsync = {fsync} }}"),
        );
        let mut sides = Sides::default();
        for _ in 0..runs {
            sides.race(&dir, make, &cfg, fsync, n);
        }
        let (theirs, ours) = if fsync {
            ("rsync --fsync --remove-src", "dispatch (default)")
        } else {
            ("rsync --remove-source-files", "dispatch (fsync = false)")
        };
        sides.report(&format!("{n} x 4 KiB"), ours, theirs, n, "files");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn dirs() {
    let dir = scratch("dirs");
    let (n, runs) = (
        env_or("DISPATCH_BENCH_DIRS", 10_000),
        env_or("DISPATCH_BENCH_RUNS", 3),
    );
    let make = || {
        let src = dir.join("src");
        for i in 0..n {
            let d = src.join(format!("asset{i:06}"));
            std::fs::create_dir_all(&d).unwrap();
            for name in ["ADI.XML", "ADI.DTD"] {
                std::fs::write(d.join(name), b"").unwrap();
            }
            for j in 0..8 {
                std::fs::write(d.join(format!("part{j}.mxf")), b"").unwrap();
            }
        }
    };
    let cfg = config(&dir, "dir", "{ kind = \"local\", destination = \"dst\" }");
    let mut sides = Sides::default();
    for _ in 0..runs {
        sides.race(&dir, make, &cfg, true, n * 10);
    }
    sides.report(
        &format!("{n} dirs x 10"),
        "dispatch (dir poller)",
        "rsync --fsync --remove-src",
        n,
        "dirs",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
