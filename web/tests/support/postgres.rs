//! A private PostgreSQL cluster for a test: `initdb` into a temporary
//! directory, `pg_ctl start` on a loopback port of its own (a Unix socket
//! in the same directory), stopped when dropped. Run as the `postgres`
//! user when the tests run as root (PostgreSQL refuses root).

use super::text;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that runs the web app's suites on PostgreSQL: `postgres`;
/// unset (or `sqlite`) runs them on SQLite, the embedded default.
pub const BACKEND_VAR: &str = "DISPATCH_TEST_DATABASE";

/// The database URL a test's web app runs on: none (SQLite, in its data
/// directory) unless `DISPATCH_TEST_DATABASE=postgres`, then a new
/// database on this test process's cluster.
pub async fn test_database() -> Option<String> {
    match std::env::var(BACKEND_VAR).as_deref() {
        Ok("postgres") => {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
            Some(shared().database(&name).await)
        }
        Ok("sqlite" | "") | Err(_) => None,
        Ok(other) => panic!("{BACKEND_VAR}={other}: `sqlite` or `postgres`"),
    }
}

/// Whether the suites run on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(BACKEND_VAR).as_deref() == Ok("postgres")
}

/// One cluster for the whole test process (a database per test): started
/// at first use, stopped when the process ends (a static is never
/// dropped, so a watcher process does it).
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(|| {
        let pg = Postgres::start();
        pg.stop_with_this_process();
        pg
    })
}

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The uid and gid the cluster runs as (root's tests: `postgres`).
    owner: Option<(u32, u32)>,
}

impl Postgres {
    /// Starts a new cluster; panics (naming what is missing) when
    /// PostgreSQL is not installed. Without fsync: for tests.
    pub fn start() -> Self {
        Self::start_with("-c fsync=off")
    }

    /// A cluster that syncs its commits, as PostgreSQL does by default
    /// (benchmarks: SQLite syncs each commit too).
    pub fn start_durable() -> Self {
        Self::start_with("")
    }

    fn start_with(settings: &str) -> Self {
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
                "-c listen_addresses=127.0.0.1 -p {} -k {} {settings}",
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
        create_database(&mut conn, name).await;
        self.url(name)
    }

    /// Starts a watcher that stops the cluster (immediate shutdown, as
    /// `Drop` does) and removes it once this process has ended, however it
    /// ends.
    pub fn stop_with_this_process(&self) {
        let dir = self.dir.path().display().to_string();
        let script = format!(
            "tail --pid={} -f /dev/null; kill -QUIT \"$(head -1 '{dir}/data/postmaster.pid')\"; \
             for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e '{dir}/data/postmaster.pid' ] || break; sleep 0.5; done; \
             rm -rf '{dir}'",
            std::process::id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
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

/// Creates database `name` through `conn` (bytewise collation, as SQLite
/// sorts).
pub async fn create_database(conn: &mut sqlx::PgConnection, name: &str) {
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "a plain database name: {name}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
    )))
    .execute(conn)
    .await
    .unwrap();
}
