//! Running Dispatch as installed software: a backup taken while events
//! arrive and restored, the health check a load balancer reads, the version
//! line, and logs as JSON for a log collector.
#![allow(clippy::unwrap_used, clippy::zombie_processes)] // a test helper that fails panics

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{ConnectOptions as _, Connection as _};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Site, agent_exe, plugin_dir, text, wait_until};

const EVENTS: usize = 10_000;
const PER_BATCH: usize = 50;

fn web(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// The event ids in `db`'s ingested set.
async fn ingested(db: &Path) -> (String, Vec<String>) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let ids = sqlx::query_scalar("SELECT event_id FROM ingested_events")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (verdict, ids)
}

/// Sends `EVENTS` events in batches, one after another, each acknowledged
/// batch's ids added to `acked`.
async fn ingest(
    http: reqwest::Client,
    base: String,
    token: String,
    acked: Arc<Mutex<Vec<String>>>,
) {
    for b in 0..EVENTS / PER_BATCH {
        let events: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let n = b * PER_BATCH + i;
                json!({"id": format!("ev{n}"), "transfer_id": format!("t{}", n / 2),
                       "poller": "frames", "path": format!("reel/frame.{n:07}.dpx"),
                       "event": if n.is_multiple_of(2) { "started" } else { "complete" },
                       "size": 4096, "bytes_done": 4096, "attempt": 1,
                       "at": 1_700_000_000_000i64 + n as i64, "host": "media-01", "error": null})
            })
            .collect();
        let res = http
            .post(format!("{base}/api/v1/agent/events"))
            .bearer_auth(&token)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        let ids = events.iter().map(|e| e["id"].as_str().unwrap().to_string());
        acked.lock().unwrap().extend(ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_events_arrive_restores_every_event_acknowledged_before_it() {
    let mut site = Site::start().await;
    let token = std::fs::read_to_string(site.agent_token("edge").await).unwrap();
    let data = site.path("web");
    let backup = site.path("backup.sqlite");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let ingesting = tokio::spawn(ingest(site.http.clone(), site.base(), token, acked.clone()));
    wait_until(
        "2,000 events acknowledged",
        Duration::from_secs(60),
        async || acked.lock().unwrap().len() >= 2_000,
    )
    .await;

    let before: Vec<String> = acked.lock().unwrap().clone();
    let (to, dir) = (backup.to_str().unwrap().to_string(), data.clone());
    let out = tokio::task::spawn_blocking(move || web(&["backup", "--to", &to], &dir))
        .await
        .unwrap();
    let during = acked.lock().unwrap().len();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the secret key is not in it: keep"),
        "the backup says where the key is: {}",
        text(&out)
    );
    assert!(
        !ingesting.is_finished() && during < EVENTS,
        "events were still arriving when the backup ended ({during} acknowledged)"
    );
    // A second backup to the same name overwrites nothing.
    let again = web(&["backup", "--to", backup.to_str().unwrap()], &data);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    ingesting.await.unwrap();

    // Restoring under a running web app is refused, and changes nothing.
    let refused = web(&["restore", "--from", backup.to_str().unwrap()], &data);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("dispatch-web is running on"),
        "{}",
        text(&refused)
    );
    let (_, live) = ingested(&data.join("dispatch.sqlite")).await;
    assert_eq!(live.len(), EVENTS, "the running database is untouched");

    site.web.take().unwrap().stop();
    let restored = web(&["restore", "--from", backup.to_str().unwrap()], &data);
    assert!(restored.status.success(), "{}", text(&restored));
    let said = text(&restored);
    let kept = said
        .split("kept as ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("the replaced database is named: {said}"));
    let (verdict, ids) = ingested(&data.join("dispatch.sqlite")).await;
    assert_eq!(verdict, "ok");
    let ids: std::collections::HashSet<String> = ids.into_iter().collect();
    let missing: Vec<&String> = before.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of the {} events acknowledged before the backup are missing, e.g. {:?}",
        missing.len(),
        before.len(),
        missing.first()
    );
    assert!(
        ids.len() < EVENTS,
        "the backup is of its moment, not of the end"
    );
    let (_, replaced) = ingested(Path::new(kept)).await;
    assert_eq!(
        replaced.len(),
        EVENTS,
        "the replaced database is kept whole"
    );

    // The restored database serves, with what it held.
    site.start_web();
    site.login().await;
    let health = site.call(Method::GET, "/health", None).await;
    assert_eq!(health["status"], "ok");
    let page = site.call(Method::GET, "/transfers?per_page=1", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_database_its_schema_and_the_agents_online() {
    let mut site = Site::start().await;
    let newest =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.split('_').next()?.parse::<i64>().ok()
            })
            .max()
            .unwrap();
    let (http, url) = (site.http.clone(), format!("{}/api/v1/health", site.base()));
    let health = || async {
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200, "no login needed");
        res.json::<Value>().await.unwrap()
    };
    let h = health().await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "sqlite");
    assert_eq!(h["schema_version"], newest);
    assert_eq!(h["agents_online"], 0);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let token = site.agent_token("edge").await;
    site.start_agent(&token);
    wait_until(
        "the agent counted online",
        Duration::from_secs(30),
        async || health().await["agents_online"] == 1,
    )
    .await;

    // `dispatch-web health`, a container's health check: by URL, and by a
    // listen address on every interface (reached on loopback).
    let base = site.base();
    let port = base.rsplit(':').next().unwrap().to_string();
    let checks = tokio::task::spawn_blocking(move || {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        [
            vec!["health".to_string(), "--url".into(), base],
            vec![
                "--listen".into(),
                format!("0.0.0.0:{port}"),
                "health".into(),
            ],
            vec!["health".into(), "--url".into(), closed_url],
        ]
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
                .args(&args)
                .output()
                .unwrap()
        })
    })
    .await
    .unwrap();
    for ok in &checks[..2] {
        assert!(ok.status.success(), "{}", text(ok));
        let said: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(said["agents_online"], 1);
    }
    let down = &checks[2];
    assert!(!down.status.success(), "nothing listens there");
    let said = text(down);
    assert!(
        said.starts_with("error: http://127.0.0.1:") && said.lines().count() == 1,
        "{said}"
    );
}

#[test]
fn both_binaries_say_their_version_commit_and_wit_versions() {
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    for (name, exe) in [
        ("dispatch-web", env!("CARGO_BIN_EXE_dispatch-web").into()),
        ("dispatch-agent", agent_exe()),
    ] {
        let out = Command::new(exe).arg("--version").output().unwrap();
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            line.trim(),
            format!(
                "{name} {} (commit {head}; WIT dispatch:poller@0.1.0, @0.2.0)",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}

/// Every line of `log` is a JSON object with a level and fields; returns
/// the messages.
fn json_lines(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_log_json_lines_when_asked() {
    let site = Site::start_with(|_| vec!["--log-format".into(), "json".into()]).await;
    let said = json_lines(&std::fs::read_to_string(site.path("web.log")).unwrap());
    assert!(
        said.iter()
            .any(|m| m.starts_with("plugin file ") && m.contains(" registered from ")),
        "{said:?}"
    );

    let dir = site.path("standalone");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/frame.0001.dpx"), b"frame").unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[[poller]]\nname = \"frames\"\npath = \"src\"\nplugin = \"file\"\nstability = \"0s\"\ntarget = { kind = \"local\", destination = \"dst\" }\n",
    )
    .unwrap();
    let out = Command::new(agent_exe())
        .args(["--log-format", "json", "run", "--until-idle", "--config"])
        .arg(&config)
        .env("DISPATCH_PLUGIN_DIR", plugin_dir())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = json_lines(&String::from_utf8(out.stderr).unwrap());
    assert!(said.iter().any(|m| m == "transfer complete"), "{said:?}");
    assert!(dir.join("dst/frame.0001.dpx").exists());
}
