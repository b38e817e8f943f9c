//! The WebDAV backend against a real server on loopback (`rclone serve
//! webdav`, installed by .ci/run), through real `dispatch-agent` processes.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{add, part_file, part_files, pattern, terminate, wait_limited};
use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER: &str = "dav_user";
const PASS: &str = "dav-Pa55-secret";

/// `rclone serve webdav` on a free loopback port, stopped on drop.
struct Dav;

impl Dav {
    fn start(root: &Path) -> common::ServerProcess {
        let conf = root.with_extension("rclone.conf");
        std::fs::write(&conf, "").unwrap();
        std::fs::create_dir_all(root).unwrap();
        let (root, port) = (root.to_path_buf(), common::free_port());
        common::ServerProcess::start("rclone serve webdav", port, None, move || {
            let mut c = Command::new("rclone");
            c.args(["serve", "webdav"])
                .arg(&root)
                .args([
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                    "--user",
                    USER,
                    "--pass",
                    PASS,
                    "--config",
                ])
                .arg(&conf);
            c
        })
    }
}

/// A TCP relay in front of the server whose open connections can be cut, as
/// a network failure would (the server itself stays up): connections made
/// after a cut go through again.
struct Relay {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(Vec::new()));
        let conns = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                conns
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut into) in [(client, server), (s2, c2)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.flush();
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Self { port, open }
    }

    /// Breaks every connection open now, both ways.
    fn cut(&self) {
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

struct Site(common::AgentSite);

impl std::ops::Deref for Site {
    type Target = common::AgentSite;
    fn deref(&self) -> &common::AgentSite {
        &self.0
    }
}

impl Site {
    fn config(&self, port: u16, password: &str, extra_target: &str) {
        self.config_with_retry(port, password, extra_target, ("200ms", "2s"));
    }

    /// `config` whose failed attempts are retried after `initial`, backing
    /// off up to `max`.
    fn config_with_retry(
        &self,
        port: u16,
        password: &str,
        extra_target: &str,
        (initial, max): (&str, &str),
    ) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"{initial}\"\nmax = \"{max}\"\n\n\
             [[poller]]\nname = \"dav\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"webdav\"\nurl = \"http://127.0.0.1:{port}\"\nusername = \"{USER}\"\npassword = \"{password}\"\ndestination = \"incoming/dispatch\"\n{extra_target}\n",
            cache.display().to_string()
        );
        std::fs::write(self.path("agent.toml"), text).unwrap();
    }
}

fn site() -> Site {
    Site(common::AgentSite::new())
}

#[test]
fn a_100_mb_file_and_a_200_file_tree_arrive_byte_identical() {
    let s = site();
    let dav = Dav::start(&s.path("server"));
    let big = pattern(100_000_000, 7);
    std::fs::create_dir_all(s.path("src/big")).unwrap();
    std::fs::write(s.path("src/big/feature.mxf"), &big).unwrap();
    let mut names = Vec::new();
    for i in 0..200 {
        names.push(format!("tree/part{i:03}.ts"));
    }
    add(
        &s.path("src"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    s.config(dav.port, PASS, "");
    let log = s.run_until_idle(Duration::from_secs(120));
    let remote = s.path("server/incoming/dispatch");
    assert_eq!(std::fs::read(remote.join("big/feature.mxf")).unwrap(), big);
    for n in &names {
        assert_eq!(std::fs::read_to_string(remote.join(n)).unwrap(), *n, "{n}");
    }
    assert!(
        !s.path("src/big/feature.mxf").exists()
            && std::fs::read_dir(s.path("src/tree")).unwrap().count() == 0
    );
    let leftovers = common::dot_files(&remote.join("tree"));
    assert!(leftovers.is_empty(), "temporary names left: {leftovers:?}");
    assert!(!log.contains(PASS));
}

#[test]
fn a_wrong_password_is_a_clear_permanent_error_and_keeps_the_source() {
    let s = site();
    let dav = Dav::start(&s.path("server"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    s.config(dav.port, "wrong-Pa55word", "");
    let agent = s.agent(false);
    std::thread::sleep(Duration::from_secs(4));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(row["status"], "Error");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains("http://127.0.0.1") && error.contains("401"),
        "{error}"
    );
    assert!(
        log.contains("poller=dav") && log.contains("permanent=true"),
        "{log}"
    );
    // Permanent: retried only after the longest backoff (2 s here), not in a loop.
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
    assert!(!log.contains("wrong-Pa55word") && !error.contains("wrong-Pa55word"));
}

#[test]
fn a_server_stopped_mid_upload_is_retried_and_never_shows_a_partial_final_file() {
    let s = site();
    let mut dav = Dav::start(&s.path("server"));
    let data = pattern(30_000_000, 3);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep2.mxf"), &data).unwrap();
    // 40 Mbps: ~6 s for 30 MB.
    s.config(dav.port, PASS, "rate_limit_mbps = 40");
    let agent = s.agent(true);
    let final_path = s.path("server/incoming/dispatch/show/ep2.mxf");
    std::thread::sleep(Duration::from_secs(2));
    dav.stop();
    assert!(
        !final_path.exists(),
        "no file under the final name while uploading"
    );
    std::thread::sleep(Duration::from_secs(1));
    dav.restart();
    let out = wait_limited(agent, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
    assert_eq!(part_files(&s.path("server")), Vec::<PathBuf>::new());
    let rows = s.transfers();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["status"], "Complete");
    assert!(rows[0]["attempts"].as_i64().unwrap() >= 2, "{}", rows[0]);
}

#[test]
fn a_failed_upload_leaves_no_temporary_file_on_the_server() {
    let s = site();
    let dav = Dav::start(&s.path("server"));
    let relay = Relay::start(dav.port);
    let data = pattern(30_000_000, 5);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep4.mxf"), &data).unwrap();
    // 40 Mbps: ~6 s for 30 MB; the retry waits a minute, so what the
    // failed attempt left (or not) stays in view.
    s.config_with_retry(relay.port, PASS, "rate_limit_mbps = 40", ("60s", "60s"));
    let agent = s.agent(false);
    let show = s.path("server/incoming/dispatch/show");
    let part_len = || {
        part_file(&show)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    // The server holds part of the upload under its temporary name.
    let deadline = Instant::now() + Duration::from_secs(30);
    while part_len() < 3_000_000 {
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The network drops the upload; the server stays up.
    relay.cut();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !part_files(&show).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = part_files(&s.path("server"));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(left, Vec::<PathBuf>::new(), "{log}");
    assert!(!show.join("ep4.mxf").exists(), "no final name");
    assert!(s.path("src/show/ep4.mxf").exists(), "source kept");
    assert!(log.contains("WebDAV PUT on"), "the attempt failed:\n{log}");
    let rows = s.transfers();
    assert_eq!(rows[0]["status"], "Error", "{}", rows[0]);
}

#[test]
fn the_rate_limit_holds_within_ten_percent_over_ten_seconds() {
    let s = site();
    let dav = Dav::start(&s.path("server"));
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    // 20 MB at 16 Mbps (2 MB/s): 10 s.
    std::fs::write(s.path("src/show/ep3.mxf"), pattern(20_000_000, 9)).unwrap();
    s.config(dav.port, PASS, "rate_limit_mbps = 16");
    let out = wait_limited(s.agent(true), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = s.transfers();
    let took = rows[0]["ended_at"].as_i64().unwrap() - rows[0]["started_at"].as_i64().unwrap();
    assert!(
        (9_000..=11_000).contains(&took),
        "20 MB at 16 Mbps took {took} ms"
    );
}
