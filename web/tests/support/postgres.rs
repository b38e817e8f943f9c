//! A private PostgreSQL cluster for a test: `initdb` into a temporary
//! directory, `pg_ctl start` on a loopback port of its own (a Unix socket
//! in the same directory), stopped when dropped. Run as the `postgres`
//! user when the tests run as root (PostgreSQL refuses root).

use super::text;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The uid and gid the cluster runs as (root's tests: `postgres`).
    owner: Option<(u32, u32)>,
}

impl Postgres {
    /// Starts a new cluster; panics (naming what is missing) when
    /// PostgreSQL is not installed.
    pub fn start() -> Self {
        let bin = bin_dir();
        let owner = if rustix::process::geteuid().is_root() {
            Some(user_ids("postgres"))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("dispatch-pg-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Self {
            dir,
            bin,
            port: 0,
            owner,
        };
        let data = pg.dir.path().join("data");
        let out = pg.run("initdb", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync"]);
        });
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        // A port picked free may be taken before the server binds it:
        // then another one.
        for _ in 0..5 {
            pg.port = free_port();
            let sock = pg.dir.path().to_path_buf();
            let log = pg.dir.path().join("server.log");
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
                pg.port,
                sock.display()
            );
            let out = pg.run("pg_ctl", |c| {
                c.arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-o", &opts, "-w", "start"]);
            });
            if out.status.success() {
                return pg;
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                log.contains("could not bind") || log.contains("already in use"),
                "pg_ctl start failed: {}{log}",
                text(&out)
            );
        }
        panic!("no free port for PostgreSQL after 5 tries");
    }

    /// The URL of database `db` (as the superuser `postgres`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (bytewise collation, as SQLite sorts) and
    /// gives its URL.
    pub async fn database(&self, name: &str) -> String {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a plain database name: {name}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        self.url(name)
    }

    fn run(&self, tool: &str, args: impl FnOnce(&mut Command)) -> Output {
        let mut c = Command::new(self.bin.join(tool));
        args(&mut c);
        c.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            c.uid(uid).gid(gid);
        }
        c.output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.join(tool).display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run("pg_ctl", |c| {
            c.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
        });
    }
}

/// Where `initdb` and `pg_ctl` are: on the PATH, else Debian's
/// `/usr/lib/postgresql/<newest>/bin`.
fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    if let Some(d) = on_path {
        return d;
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql): apt install postgresql")
    })
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .unwrap_or_else(|| panic!("no user `{user}` to run PostgreSQL as: apt install postgresql"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
