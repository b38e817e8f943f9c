//! The agent engine end to end, as real `dispatch-agent run` processes on
//! real directories: every built-in poller with the local backend, growing
//! files, failures and the breaker, crashes, shutdown, and the Aspera
//! mapping through a stand-in `ascp` (the real one is proprietary).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{add, terminate, wait_limited, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A test site: a temp dir with the config, sources and destinations.
struct Site(common::AgentSite);

impl Site {
    fn new() -> Self {
        Self(common::AgentSite::new())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path(rel)
    }

    /// Writes agent.toml: fast test settings (a rescan every second, unless
    /// `agent_extra` sets another) plus `body`.
    fn config(&self, agent_extra: &str, body: &str) -> PathBuf {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let rescan = if agent_extra.contains("rescan_interval") {
            ""
        } else {
            "rescan_interval = \"1s\"\n"
        };
        let text = format!(
            "[agent]\ncache_dir = {:?}\n{rescan}shutdown_grace = \"5s\"\n{agent_extra}\n[agent.retry]\ninitial = \"100ms\"\nmax = \"400ms\"\n\n{body}",
            cache.display().to_string()
        );
        let path = self.path("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn agent(&self, args: &[&str]) -> Command {
        self.0.command(args)
    }

    /// `run --until-idle`, which must end within `limit`.
    fn run_until_idle(&self, limit: Duration) -> Output {
        let child = self
            .agent(&["run", "--config", "agent.toml", "--until-idle"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_limited(child, limit)
    }

    fn spawn(&self) -> Running {
        Running(Some(
            self.agent(&["run", "--config", "agent.toml"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ))
    }

    /// The journal, newest first.
    fn transfers(&self) -> Vec<Value> {
        self.0.transfers().as_array().unwrap().clone()
    }
}

/// A running agent, killed if the test ends early (a failed assertion).
struct Running(Option<Child>);

impl Running {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every file under `root`, relative, with its content; directories as
/// `dir/` entries.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                stack.push(p);
            } else {
                out.insert(
                    rel,
                    std::fs::read_to_string(&p).unwrap_or_else(|_| "<binary>".into()),
                );
            }
        }
    }
    out
}

/// What `common::add` writes: each file's content is its own path.
fn files(list: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in list {
        if let Some(d) = f.strip_suffix('/') {
            out.insert(format!("{d}/"), String::new());
        } else {
            out.insert((*f).to_string(), String::new());
        }
    }
    out
}

/// A snapshot with contents dropped (only names), for tree comparisons.
fn names(s: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    s.keys().map(|k| (k.clone(), String::new())).collect()
}

fn poller(name: &str, plugin: &str, extra: &str) -> String {
    format!(
        "[[poller]]\nname = \"{name}\"\npath = \"src/{name}\"\nplugin = \"{plugin}\"\nstability = \"200ms\"\n{extra}\ntarget = {{ kind = \"local\", destination = \"dst/{name}\" }}\n\n"
    )
}

#[test]
fn every_builtin_poller_moves_what_pollers_md_says() {
    let site = Site::new();
    let src = |n: &str| site.path(&format!("src/{n}"));
    add(&src("file"), &["a.mpg", "b.mpg", ".a.part", "sub/c.mpg"]);
    add(
        &src("dir"),
        &[
            "ready/ADI.XML",
            "ready/ADI.DTD",
            "ready/v.mpg",
            "ready/extra/notes.txt",
            "half/ADI.XML",
        ],
    );
    add(&src("subdir"), &["s1/a.ts", "s1/b.ts", "s2/c.ts", "top.ts"]);
    add(&src("telus"), &["P1/hd/a.ts", "P1/sd/b.ts", "P1/x.ts"]);
    add(
        &src("pa"),
        &[
            "P1/A1/ADI.XML",
            "P1/A1/ADI.DTD",
            "P1/A1/v.mpg",
            "P1/A2/ADI.XML",
        ],
    );
    add(
        &src("google"),
        &["A/ADI.XML", "A/ADI.DTD", "A/v.mpg", "B/ADI.XML"],
    );
    add(&src("dirtar"), &["D/x.tar", "D/y.txt"]);
    let mut body = String::new();
    for (name, plugin) in [
        ("file", "file"),
        ("dir", "dir"),
        ("subdir", "subdir"),
        ("telus", "telus"),
        ("pa", "pa"),
        ("google", "google"),
        ("dirtar", "dirtar"),
    ] {
        body.push_str(&poller(name, plugin, ""));
    }
    site.config("", &body);
    let out = site.run_until_idle(Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");

    let expect = |name: &str, src_left: &[&str], dst: &[&str]| {
        assert_eq!(
            names(&snapshot(&src(name))),
            files(src_left),
            "{name}: source left\n{log}"
        );
        let got = snapshot(&site.path(&format!("dst/{name}")));
        assert_eq!(names(&got), files(dst), "{name}: destination\n{log}");
        // Contents arrive intact (each fixture file holds its own path).
        for (rel, content) in &got {
            if !rel.ends_with('/') && !content.is_empty() {
                assert!(
                    content.ends_with(rel.as_str()),
                    "{name}: {rel} holds {content:?}"
                );
            }
        }
    };
    expect(
        "file",
        &[".a.part", "sub/", "sub/c.mpg"],
        &["a.mpg", "b.mpg"],
    );
    expect(
        "dir",
        &["half/", "half/ADI.XML"],
        &[
            "ready/",
            "ready/ADI.XML",
            "ready/ADI.DTD",
            "ready/v.mpg",
            "ready/extra/",
            "ready/extra/notes.txt",
        ],
    );
    expect(
        "subdir",
        &["s1/", "s2/", "top.ts"],
        &["s1/", "s1/a.ts", "s1/b.ts", "s2/", "s2/c.ts"],
    );
    expect(
        "telus",
        &["P1/", "P1/hd/", "P1/sd/", "P1/x.ts"],
        &["P1/", "P1/hd/", "P1/hd/a.ts", "P1/sd/", "P1/sd/b.ts"],
    );
    expect(
        "pa",
        &["P1/", "P1/A2/", "P1/A2/ADI.XML"],
        &[
            "P1/",
            "P1/A1/",
            "P1/A1/ADI.XML",
            "P1/A1/ADI.DTD",
            "P1/A1/v.mpg",
        ],
    );
    expect(
        "google",
        &["B/", "B/ADI.XML"],
        &[
            "A/",
            "A/ADI.XML",
            "A/ADI.DTD",
            "A/v.mpg",
            "A/delivery.complete",
        ],
    );
    expect("dirtar", &["D/", "D/y.txt"], &["D/", "D/x.tar"]);

    // delivery.complete started only after every other file of A ended.
    let rows = site.transfers();
    let google: Vec<&Value> = rows.iter().filter(|r| r["poller"] == "google").collect();
    let marker = google
        .iter()
        .find(|r| r["path"] == "A/delivery.complete")
        .unwrap();
    for r in google.iter().filter(|r| r["path"] != "A/delivery.complete") {
        assert_eq!(r["status"], "Complete");
        assert!(
            r["ended_at"].as_i64() <= marker["started_at"].as_i64(),
            "{r} ended after {marker}"
        );
    }
    assert!(rows.iter().all(|r| r["status"] == "Complete"), "{rows:?}");
    assert_eq!(rows.len(), 2 + 1 + 3 + 2 + 1 + 4 + 1);
}

#[test]
fn a_growing_file_is_sent_once_it_stops_growing() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("src/grow")).unwrap();
    site.config(
        "",
        &poller("grow", "file", "stability = \"1s\"").replace("stability = \"200ms\"\n", ""),
    );
    let file = site.path("src/grow/movie.mpg");
    let dst = site.path("dst/grow/movie.mpg");
    let agent = site.spawn();
    let mut f = std::fs::File::create(&file).unwrap();
    // Appended to every 100 ms for 2.5 s: never sent meanwhile.
    for i in 0..25 {
        f.write_all(format!("chunk {i:03}\n").as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!dst.exists(), "sent while still growing (after chunk {i})");
    }
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dst.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(agent);
    let sent = std::fs::read_to_string(&dst).unwrap();
    assert_eq!(sent.lines().count(), 25, "{sent}");
    assert!(!file.exists(), "source removed after the transfer");
    let rows = site.transfers();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "Complete");
    assert_eq!(rows[0]["attempts"], 1);
}

/// With no rescan for an hour, only file-system events can bring what
/// appears after the first poll: in folders made since (however deep), in a
/// folder renamed within the root, and in one moved in from outside.
#[test]
fn what_appears_later_is_sent_without_waiting_for_the_rescan() {
    let site = Site::new();
    let root = site.path("src/later");
    add(&root, &["P1/first/a.ts"]);
    site.config("rescan_interval = \"1h\"", &poller("later", "telus", ""));
    let agent = site.spawn();
    // Sent, and its source removed: the next step may move its folder.
    let arrived =
        |rel: &str| site.path(&format!("dst/later/{rel}")).exists() && !root.join(rel).exists();
    let limit = Duration::from_secs(20);
    wait_until("the first poll's file", limit, || arrived("P1/first/a.ts"));

    // Folders made after the first poll, two deep.
    add(&root, &["P2/new/b.ts"]);
    wait_until("a file in new folders", limit, || arrived("P2/new/b.ts"));
    add(&root, &["P2/new/c.ts"]);
    wait_until("a second file there", limit, || arrived("P2/new/c.ts"));

    // A folder renamed within the root: what is written in it later.
    std::fs::rename(root.join("P2/new"), root.join("P2/renamed")).unwrap();
    add(&root, &["P2/renamed/d.ts"]);
    wait_until("a file in a renamed folder", limit, || {
        arrived("P2/renamed/d.ts")
    });

    // A tree moved in from outside the root, then written to.
    let outside = site.path("elsewhere");
    add(&outside, &["P3/moved/e.ts"]);
    std::fs::rename(outside.join("P3"), root.join("P3")).unwrap();
    wait_until("a file moved in", limit, || arrived("P3/moved/e.ts"));
    add(&root, &["P3/moved/f.ts"]);
    wait_until("a file written in a moved-in folder", limit, || {
        arrived("P3/moved/f.ts")
    });
    stop(agent);
    let rows = site.transfers();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "Complete"), "{rows:?}");
}

/// SIGTERM, then the agent's output.
fn stop(running: Running) -> Output {
    terminate(running.take())
}

/// A one-request HTTP server on loopback; returns its URL and the body it got.
fn webhook_server() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alert", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read headers, then Content-Length bytes of body.
        loop {
            let n = conn.read(&mut chunk).unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    tx.send(body).unwrap();
                    return;
                }
            }
            if n == 0 {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn an_unwritable_destination_trips_the_breaker_and_the_cooldown_re_enables() {
    let site = Site::new();
    add(&site.path("src/blocked"), &["a.mpg"]);
    // The destination's parent is a regular file: nothing can be created
    // under it, even by root.
    std::fs::create_dir_all(site.path("dst")).unwrap();
    std::fs::write(site.path("dst/blocked"), "not a directory").unwrap();
    let (url, alerts) = webhook_server();
    let (smtp_port, smtp) = smtp_server();
    site.config(
        &format!(
            "failures_before_disable = 5\ndisable_cooldown = \"3s\"\n[agent.alerts]\nwebhook = \"{url}\"\n\
             smtp = {{ host = \"127.0.0.1\", port = {smtp_port}, from = \"dispatch@example.net\", to = [\"ops@example.net\"] }}"
        ),
        &poller("blocked", "file", ""),
    );
    let agent = site.spawn();
    let alert = alerts
        .recv_timeout(Duration::from_secs(30))
        .expect("an alert after 5 failures");
    let alert: Value = serde_json::from_str(&alert).unwrap();
    assert_eq!(alert["poller"], "blocked");
    assert_eq!(alert["failures"], 5);
    assert!(
        alert["reason"].as_str().unwrap().contains("cannot create"),
        "{alert}"
    );
    // Disabled: no attempt during the cooldown (the journal's starts show
    // it below). Then make the destination usable; after the cooldown the
    // poller is re-enabled and delivers.
    std::fs::remove_file(site.path("dst/blocked")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !site.path("dst/blocked/a.mpg").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = stop(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(site.path("dst/blocked/a.mpg").exists(), "{log}");
    // The e-mail went through a real SMTP server.
    let mail = smtp.stop();
    assert!(
        mail.contains("Subject: Dispatch: poller blocked disabled"),
        "{mail}\n{log}"
    );
    assert!(
        mail.contains("ops@example.net") && mail.contains("5 consecutive failed transfers"),
        "{mail}"
    );
    assert!(!site.path("src/blocked/a.mpg").exists());
    assert!(
        log.contains("disabled after 5 consecutive failures"),
        "{log}"
    );
    assert!(log.contains("re-enabled after its cooldown"), "{log}");

    // The journal: one transfer, 5 failed attempts with their errors, the
    // 6th after the cooldown, backoff growing between the first ones.
    let rows = site.transfers();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "Complete");
    assert_eq!(rows[0]["attempts"], 6);
    let journal = site.path("dispatch-journal.sqlite");
    let events = sqlite_events(&journal, rows[0]["id"].as_str().unwrap());
    let starts: Vec<i64> = events
        .iter()
        .filter(|e| e.0 == "started")
        .map(|e| e.1)
        .collect();
    let errors: Vec<&(String, i64, Option<String>)> =
        events.iter().filter(|e| e.0 == "error").collect();
    assert_eq!(errors.len(), 5, "{events:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.2.as_deref().unwrap_or("").contains("cannot create")),
        "{errors:?}"
    );
    assert!(
        starts[5] - starts[4] >= 3000,
        "cooldown respected: {starts:?}"
    );
    assert!(
        starts[2] - starts[1] > starts[1] - starts[0],
        "backoff grows: {starts:?}"
    );
}

/// aiosmtpd (from the test virtualenv that `cargo xtask test` makes),
/// printing every message it receives.
struct Smtp(common::ServerProcess);

impl Smtp {
    fn stop(mut self) -> String {
        self.0.stop();
        self.0.output()
    }
}

fn smtp_server() -> (u16, Smtp) {
    let server = common::ServerProcess::start("aiosmtpd", None, |port| {
        let mut c = Command::new(common::venv_bin("python"));
        c.args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Debugging",
            "stdout",
        ]);
        c
    });
    (server.port, Smtp(server))
}

#[test]
fn the_agent_wide_cap_limits_transfers_over_all_pollers() {
    let site = Site::new();
    add(&site.path("src/one"), &["a", "b"]);
    add(&site.path("src/two"), &["c", "d"]);
    for f in ["one/a", "one/b", "two/c", "two/d"] {
        std::fs::write(site.path(&format!("src/{f}")), vec![1u8; 250_000]).unwrap();
    }
    let slow = |name: &str| {
        poller(name, "file", "").replace(
            &format!("destination = \"dst/{name}\" }}"),
            &format!("destination = \"dst/{name}\", rate_limit_mbps = 8.0 }}"),
        )
    };
    site.config(
        "max_transfers = 1",
        &format!("{}{}", slow("one"), slow("two")),
    );
    let out = site.run_until_idle(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut spans: Vec<(i64, i64)> = site
        .transfers()
        .iter()
        .map(|r| {
            (
                r["started_at"].as_i64().unwrap(),
                r["ended_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(spans.len(), 4);
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "two transfers overlapped: {spans:?}");
    }
}

/// Bytes in the temporary (part) files of `dir`.
fn part_bytes(dir: &Path) -> u64 {
    common::part_files(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// (event, at, error) of a transfer, read straight from the SQLite file.
fn sqlite_events(journal: &Path, id: &str) -> Vec<(String, i64, Option<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Row;
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", journal.display()))
            .await
            .unwrap();
        sqlx::query("SELECT event, at, error FROM events WHERE transfer_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("event"), r.get("at"), r.get("error")))
            .collect()
    })
}

#[test]
fn kill_9_mid_transfer_then_restart_delivers_exactly_once() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("src/big")).unwrap();
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.path("src/big/big.mxf"), &data).unwrap();
    // 8 Mbps: the 4 MB file takes ~4 s, time enough to kill the agent.
    let body = poller("big", "file", "").replace(
        "destination = \"dst/big\" }",
        "destination = \"dst/big\", rate_limit_mbps = 8.0 }",
    );
    site.config("", &body);
    let agent = site.spawn();
    let part = || part_bytes(&site.path("dst/big")) > 0;
    // Killed mid-copy: a quarter of the file is in the part.
    wait_until("1 MB in the part file", Duration::from_secs(20), || {
        part_bytes(&site.path("dst/big")) >= 1_000_000
    });
    Command::new("kill")
        .args(["-KILL", &agent.id().to_string()])
        .status()
        .unwrap();
    let _ = wait_limited(agent.take(), Duration::from_secs(10));
    assert!(
        !site.path("dst/big/big.mxf").exists(),
        "no partial file under the final name"
    );
    assert!(site.path("src/big/big.mxf").exists(), "source kept");
    let rows = site.transfers();
    assert_eq!(rows[0]["status"], "Transferring");

    let out = site.run_until_idle(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(site.path("dst/big/big.mxf")).unwrap(), data);
    assert!(!site.path("src/big/big.mxf").exists());
    assert!(!part());
    let rows = site.transfers();
    assert_eq!(rows.len(), 1, "one transfer, resumed: {rows:?}");
    assert_eq!(rows[0]["status"], "Complete");
    assert_eq!(rows[0]["attempts"], 2);
}

#[test]
fn sigterm_waits_for_the_grace_period_then_cancels() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("src/slow")).unwrap();
    std::fs::write(site.path("src/slow/slow.mxf"), vec![7u8; 2_000_000]).unwrap();
    // 1 Mbps: the 2 MB file takes 16 s, far beyond the grace period.
    let body = poller("slow", "file", "").replace(
        "destination = \"dst/slow\" }",
        "destination = \"dst/slow\", rate_limit_mbps = 1.0 }",
    );
    site.config("", &body);
    // A short grace period.
    let cfg = std::fs::read_to_string(site.path("agent.toml"))
        .unwrap()
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"1s\"");
    std::fs::write(site.path("agent.toml"), cfg).unwrap();
    let agent = site.spawn();
    // Running: started in the journal, bytes in its part file.
    wait_until("bytes in the part file", Duration::from_secs(20), || {
        part_bytes(&site.path("dst/slow")) > 0
    });
    let events = site.0.wait_events("started", 1, Duration::from_secs(10));
    assert!(
        !events
            .iter()
            .any(|e| e.event != "queued" && e.event != "started"),
        "still in flight: {events:?}"
    );
    let t = Instant::now();
    let out = stop(agent);
    let took = t.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // Not before the grace period was over, and soon after it (the upper
    // bound on the agent's clock, which a busy machine does not stretch).
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "ended {took:?} after SIGTERM"
    );
    let waited = logged_at(&log, "grace period over: cancelling transfers")
        - logged_at(&log, "SIGTERM: stopping");
    assert!(
        (1_000..1_500).contains(&waited),
        "cancelled {waited} ms after the shutdown began (agent's clock):\n{log}"
    );
    let ended = logged_at(&log, "transfer cancelled") - logged_at(&log, "grace period over");
    assert!(ended < 1_000, "ended {ended} ms after cancelling:\n{log}");
    let rows = site.transfers();
    assert_eq!(rows[0]["status"], "Cancelled", "{rows:?}");
    assert!(site.path("src/slow/slow.mxf").exists(), "source kept");
    assert!(!site.path("dst/slow/slow.mxf").exists());
}

/// When (ms into the day, agent's clock) the agent logged the first line
/// holding `needle`: the log's RFC 3339 timestamps.
fn logged_at(log: &str, needle: &str) -> i64 {
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in the log:\n{log}"));
    let time = line
        .split_whitespace()
        .next()
        .and_then(|t| t.split_once('T'))
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("no timestamp: {line}"));
    let mut parts = time.split(':');
    let mut field = || parts.next().unwrap().parse::<f64>().unwrap();
    let (h, m, sec) = (field(), field(), field());
    ((h * 3600.0 + m * 60.0 + sec) * 1000.0) as i64
}

#[test]
fn a_missing_root_fails_its_poller_only_and_excludes_are_never_sent() {
    let site = Site::new();
    add(&site.path("src/good"), &["a.mpg", "Thumbs.db", "b.tmp"]);
    let body = format!(
        "{}{}",
        poller("good", "file", "excludes = [\"*.tmp\", \"Thumbs.db\"]"),
        poller("gone", "file", "")
    );
    site.config("", &body);
    let out = site.run_until_idle(Duration::from_secs(30));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(names(&snapshot(&site.path("dst/good"))), files(&["a.mpg"]));
    assert_eq!(
        names(&snapshot(&site.path("src/good"))),
        files(&["Thumbs.db", "b.tmp"])
    );
    assert!(
        log.contains("poller=gone") && log.contains("does not exist"),
        "{log}"
    );
}

#[test]
fn config_errors_name_the_poller_and_field() {
    let site = Site::new();
    site.config("", &poller("bad", "file", "max_transfers = 0"));
    let out = site
        .agent(&["run", "--config", "agent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("poller `bad`, field `max_transfers`: must be at least 1"),
        "{err}"
    );

    site.config("", &poller("bad", "file", "params = { markers = \"X\" }"));
    let out = site
        .agent(&["run", "--config", "agent.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("poller `bad`, field `params`: unknown parameter `markers`"),
        "{err}"
    );

    site.config("", &poller("bad", "nope.wasm", ""));
    let out = site
        .agent(&["run", "--config", "agent.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("poller `bad`, field `plugin`: plugin file nope.wasm does not exist"),
        "{err}"
    );
}

// ---------------------------------------------------------------- Aspera

const PASSWORD: &str = "s3cret-Pa55word";
const PASSPHRASE: &str = "at-rest-Phrase-77";
const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAtestkeymaterial\n-----END OPENSSH PRIVATE KEY-----";

fn ascp_standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testing/ascp-standin/ascp")
}

/// Runs one Aspera poller over `src/asp` with `target` settings until idle
/// and returns (record lines of each ascp run, the agent's log).
fn aspera_case(site: &Site, target: &str) -> (Vec<Vec<String>>, String) {
    let record = site.path("ascp.record");
    let remote = site.path("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let body = format!(
        "[[poller]]\nname = \"asp\"\npath = \"src/asp\"\nplugin = \"dir\"\nstability = \"200ms\"\n[poller.target]\nkind = \"aspera\"\nhost = \"aspera.example.net\"\nuser = \"affiliate\"\nascp = {:?}\n{target}\n",
        ascp_standin().display().to_string()
    );
    site.config("", &body);
    let mut cmd = site.agent(&["run", "--config", "agent.toml", "--until-idle"]);
    cmd.env("ASCP_STANDIN_RECORD", &record)
        .env("ASCP_STANDIN_ROOT", &remote)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_limited(cmd.spawn().unwrap(), Duration::from_secs(30));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let text = std::fs::read_to_string(&record).unwrap_or_default();
    let runs = text
        .split("RUN\n")
        .filter(|r| !r.is_empty())
        .map(|r| r.lines().map(str::to_string).collect())
        .collect();
    (runs, log)
}

fn asset(site: &Site) {
    add(
        &site.path("src/asp"),
        &["A1/ADI.XML", "A1/ADI.DTD", "A1/movie.mpg"],
    );
}

fn assert_no_secret(site: &Site, log: &str) {
    site.0
        .assert_no_secret(log, &[PASSWORD, PASSPHRASE, "testkeymaterial"]);
}

#[test]
fn aspera_password_rate_and_destination() {
    let site = Site::new();
    asset(&site);
    let (runs, log) = aspera_case(
        &site,
        &format!(
            "password = \"{PASSWORD}\"\ndestination = \"/incoming/google/\"\nrate_limit_mbps = 300\nport = 2022"
        ),
    );
    assert_eq!(runs.len(), 1, "{log}");
    let root = site.path("src/asp").canonicalize().unwrap();
    let want: Vec<String> = [
        "ARG -P".to_string(),
        "ARG 2022".into(),
        "ARG -l".into(),
        "ARG 300M".into(),
        "ARG -k2".into(),
        "ARG -d".into(),
        "ARG -T".into(),
        "ARG -Q".into(),
        format!("ARG --src-base={}", root.display()),
        format!("ARG {}/A1", root.display()),
        "ARG affiliate@aspera.example.net:/incoming/google/".into(),
        format!("ENV ASPERA_SCP_PASS={PASSWORD}"),
        "ENV ASPERA_SCP_FILEPASS=<unset>".into(),
    ]
    .into();
    assert_eq!(runs[0], want);
    assert_eq!(
        names(&snapshot(&site.path("remote/incoming/google"))),
        files(&["A1/", "A1/ADI.XML", "A1/ADI.DTD", "A1/movie.mpg"])
    );
    assert!(
        !site.path("src/asp/A1").exists(),
        "source removed after success"
    );
    assert_no_secret(&site, &log);
}

#[test]
fn aspera_inline_key_is_a_private_file_removed_afterwards() {
    let site = Site::new();
    asset(&site);
    let (runs, log) = aspera_case(
        &site,
        &format!("ssh_key = \"\"\"\n{KEY}\n\"\"\"\ndestination = \"out\""),
    );
    assert_eq!(runs.len(), 1, "{log}");
    let run = &runs[0];
    let i = run.iter().position(|l| l == "ARG -i").expect("-i given");
    let key_path = run[i + 1].strip_prefix("ARG ").unwrap();
    assert!(run.contains(&"KEYMODE 600".to_string()), "{run:?}");
    assert!(
        run.iter().any(|l| l.contains("testkeymaterial")),
        "the key file holds the key"
    );
    assert!(
        !Path::new(key_path).exists(),
        "key file removed after the run"
    );
    assert!(
        !Path::new(key_path).parent().unwrap().exists(),
        "its private directory too"
    );
    assert!(run.contains(&"ENV ASPERA_SCP_PASS=<unset>".to_string()));
    assert!(
        run.contains(&"ARG affiliate@aspera.example.net:/out/".to_string()),
        "{run:?}"
    );
    assert!(
        run.contains(&"ARG 150M".to_string()),
        "default rate 150 Mbps: {run:?}"
    );
    assert_no_secret(&site, &log);
}

#[test]
fn aspera_encryption_at_rest_uses_the_passphrase_from_the_environment() {
    let site = Site::new();
    asset(&site);
    let (runs, log) = aspera_case(
        &site,
        &format!(
            "password = \"{PASSWORD}\"\nencrypt = true\npassphrase = \"{PASSPHRASE}\"\nflags = [\"-T\"]"
        ),
    );
    let run = &runs[0];
    assert!(
        run.contains(&"ARG --file-crypt=encrypt".to_string()),
        "{run:?}"
    );
    assert!(
        run.contains(&format!("ENV ASPERA_SCP_FILEPASS={PASSPHRASE}")),
        "{run:?}"
    );
    assert!(
        !run.contains(&"ARG -Q".to_string()),
        "flags are configurable: {run:?}"
    );
    assert!(
        !run.iter()
            .any(|l| l.starts_with("ARG") && (l.contains(PASSWORD) || l.contains(PASSPHRASE))),
        "no secret on the command line"
    );
    assert_no_secret(&site, &log);
}

#[test]
fn a_changed_agent_toml_is_applied_while_the_agent_runs() {
    let site = Site::new();
    std::fs::create_dir_all(site.path("src/a")).unwrap();
    std::fs::create_dir_all(site.path("src/b")).unwrap();
    site.config("", &poller("a", "file", ""));
    let log_file = site.path("agent.log");
    let agent = site
        .agent(&["run", "--config", "agent.toml"])
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    let applied = || {
        std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .matches("configuration applied again")
            .count()
    };
    std::fs::write(site.path("src/a/one.mxf"), b"one").unwrap();
    wait_until("a's first file", Duration::from_secs(10), || {
        site.path("dst/a/one.mxf").exists()
    });

    // A new poller, and `a`'s parameters changed (hidden files now sent):
    // applied without a restart when the file changes (no signal).
    site.config(
        "",
        &format!(
            "{}{}",
            poller("a", "file", "params = { include_hidden = true }"),
            poller("b", "file", "")
        ),
    );
    wait_until("the change applied", Duration::from_secs(10), || {
        applied() == 1
    });
    std::fs::write(site.path("src/b/two.mxf"), b"two").unwrap();
    std::fs::write(site.path("src/a/.hidden.mxf"), b"h").unwrap();
    wait_until("b started", Duration::from_secs(10), || {
        site.path("dst/b/two.mxf").exists()
    });
    wait_until("a's new parameters", Duration::from_secs(10), || {
        site.path("dst/a/.hidden.mxf").exists()
    });

    // `a` disabled, and SIGHUP: it stops polling; `b` goes on.
    site.config(
        "",
        &format!(
            "{}{}",
            poller("a", "file", "enabled = false"),
            poller("b", "file", "")
        ),
    );
    signal(&agent, "HUP");
    wait_until("a disabled", Duration::from_secs(10), || applied() >= 2);
    std::fs::write(site.path("src/a/three.mxf"), b"three").unwrap();
    std::fs::write(site.path("src/b/four.mxf"), b"four").unwrap();
    wait_until("b still runs", Duration::from_secs(10), || {
        site.path("dst/b/four.mxf").exists()
    });
    // b's file went through a 200 ms stability window after a's was
    // written: a running `a` would have sent its file by now too.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        site.path("src/a/three.mxf").exists(),
        "a disabled poller sent a file"
    );
    assert!(!site.path("dst/a/three.mxf").exists());

    // A file that does not parse changes nothing.
    std::fs::write(site.path("agent.toml"), "[[poller]]\nname = ").unwrap();
    signal(&agent, "HUP");
    wait_until("the bad file refused", Duration::from_secs(10), || {
        std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .contains("configuration not applied, the previous one keeps running")
    });
    std::fs::write(site.path("src/b/five.mxf"), b"five").unwrap();
    wait_until(
        "b goes on after a bad file",
        Duration::from_secs(10),
        || site.path("dst/b/five.mxf").exists(),
    );
    signal(&agent, "TERM");
    let mut agent = agent;
    assert!(agent.wait().unwrap().success());
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Whoever reads the agent's log may go away (a pager quit, a log
/// collector restarted): the agent keeps sending and ends as usual. It used
/// to panic on the first log line it could not write ("failed printing to
/// stderr"), or hang with nothing sent.
#[test]
fn an_agent_whose_log_reader_goes_away_keeps_sending() {
    let site = Site::new();
    let sent = ["a.mxf", "b.mxf", "c.mxf", "d.mxf"];
    add(&site.path("src/f"), &sent);
    site.config("", &poller("f", "file", ""));
    let mut child = site
        .agent(&["run", "--config", "agent.toml", "--until-idle"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the agent still runs 60 s after its log reader went away");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(names(&snapshot(&site.path("src/f"))), files(&[]));
    assert_eq!(names(&snapshot(&site.path("dst/f"))), files(&sent));
}
