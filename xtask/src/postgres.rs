//! `cargo xtask up --postgres`: a PostgreSQL cluster of its own under
//! `./data/postgres` (made with `initdb` on the first start), on a loopback
//! port, with a database `dispatch` for the web app; stopped when `up` ends.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The port the cluster listens on (127.0.0.1 only).
pub const PORT: u16 = 55432;

/// A running cluster; stopped when dropped.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// The uid and gid it runs as (`postgres` when `up` runs as root,
    /// which PostgreSQL refuses).
    owner: Option<(u32, u32)>,
}

impl Cluster {
    /// Starts the cluster under `dir` (made the first time) and makes the
    /// database `dispatch` if it is missing.
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = bin_dir()?;
        let owner = if std::fs::metadata("/proc/self")?.uid() == 0 {
            Some(user_ids("postgres")?)
        } else {
            None
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let cluster = Self {
            bin,
            data: dir.join("data"),
            owner,
        };
        if !cluster.data.join("PG_VERSION").exists() {
            println!("making a PostgreSQL cluster in {}", cluster.data.display());
            cluster.check("initdb", |c| {
                c.arg("-D")
                    .arg(&cluster.data)
                    .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                    .args(["--locale", "C"]);
            })?;
        }
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {PORT} -k {}",
            dir.display()
        );
        cluster.check("pg_ctl", |c| {
            c.arg("-D")
                .arg(&cluster.data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-o", &opts, "-w", "start"]);
        })?;
        let made = cluster.run("createdb", |c| {
            c.args(["-h", "127.0.0.1", "-p", &PORT.to_string(), "-U", "postgres"])
                .arg("dispatch");
        })?;
        let said = String::from_utf8_lossy(&made.stderr);
        if !made.status.success() && !said.contains("already exists") {
            bail!("createdb dispatch: {said}");
        }
        Ok(cluster)
    }

    /// The web app's database URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{PORT}/dispatch")
    }

    fn run(&self, tool: &str, args: impl FnOnce(&mut Command)) -> Result<Output> {
        let mut c = Command::new(self.bin.join(tool));
        args(&mut c);
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.current_dir("/")
            .output()
            .with_context(|| format!("running {}", self.bin.join(tool).display()))
    }

    fn check(&self, tool: &str, args: impl FnOnce(&mut Command)) -> Result<()> {
        let out = self.run(tool, args)?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.clone();
        let _ = self.run("pg_ctl", |c| {
            c.arg("-D").arg(&data).args(["-m", "fast", "stop"]);
        });
    }
}

/// The tools `up` runs, from one installation.
const TOOLS: [&str; 3] = ["initdb", "pg_ctl", "createdb"];

/// Where `initdb`, `pg_ctl` and `createdb` are: a directory on the PATH
/// holding all three, else Debian's `/usr/lib/postgresql/<newest>/bin`.
fn bin_dir() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|d| TOOLS.iter().all(|t| d.join(t).is_file()))
    });
    if let Some(d) = on_path {
        return Ok(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| TOOLS.iter().all(|t| bin.join(t).is_file()))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql): \
         apt install postgresql",
    )
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .with_context(|| {
            format!(
                "no user `{user}` to run PostgreSQL as (running as root): apt install postgresql"
            )
        })
}
