//! Several `dispatch-web` processes on one database behave as one web app:
//! what one stores (modules, sessions, events, configuration changes) the
//! others serve, and starting them together on an empty database works.

#![allow(clippy::unwrap_used)] // a test that fails panics

mod support;

use dispatch_web::on_db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Proc, Site, plugin_dir, test_plugin, wait_until};

/// Flags that make a web app a replica of `a`: `a`'s database and key file.
fn replica_flags(a: &Site) -> Vec<std::ffi::OsString> {
    vec![
        "--database-url".into(),
        a.database_url().into(),
        "--secret-key-file".into(),
        a.path("web/secret.key").into(),
    ]
}

/// A metric's value in `site`'s `/metrics`.
async fn metric(site: &Site, name: &str) -> f64 {
    let text = site
        .http
        .get(format!("{}/metrics", site.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_database_share_modules_sessions_events_and_wake_ups() {
    let a = Site::start().await;
    let flags = replica_flags(&a);
    let b = Site::start_with(move |_| flags).await;

    // A module uploaded through A, fetched by an agent from B, which never
    // had it on its disk.
    let bytes = test_plugin("stamp-v1");
    let sha = a.upload(bytes.clone()).await["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!b.path(&format!("web/modules/{sha}.wasm")).exists());
    let token = std::fs::read_to_string(a.agent_token("edge").await).unwrap();
    let res = b
        .http
        .get(format!("{}/api/v1/plugins/{sha}", b.base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap().to_vec() == bytes);
    // Now B has it cached; a damaged cache is not served.
    let cached = b.path(&format!("web/modules/{sha}.wasm"));
    std::fs::write(&cached, b"not the module").unwrap();
    let res = b
        .http
        .get(format!("{}/api/v1/plugins/{sha}", b.base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.bytes().await.unwrap().to_vec() == bytes);

    // Logged in on A is logged in on B.
    let res = b
        .http
        .get(format!("{}/api/v1/pollers", b.base()))
        .header("cookie", a.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // A change through A wakes the agent's long-poll on B within 1 s.
    let config = format!("{}/api/v1/agent/config", b.base());
    let res = b
        .http
        .get(&config)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let waiter = {
        let (http, url, token) = (b.http.clone(), format!("{config}?wait=30"), token.clone());
        tokio::spawn(async move {
            let res = http
                .get(url)
                .bearer_auth(token)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            (
                res.status(),
                Instant::now(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    wait_until(
        "the long-poll waits on B",
        Duration::from_secs(10),
        async || metric(&b, "dispatch_config_long_polls").await >= 1.0,
    )
    .await;
    a.local_target("out", json!({})).await;
    let changed = Instant::now();
    a.poller("news", "dir", "out", json!({})).await;
    let (status, answered, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let took = answered.saturating_duration_since(changed);
    assert!(
        took < Duration::from_secs(1),
        "B answered {took:?} after the change"
    );
    assert_eq!(body["pollers"][0]["name"], "news");

    // An event batch A took, replayed to B, changes nothing.
    let batch = json!({"events": [
        {"id": "e1", "transfer_id": "t1", "poller": "news", "path": "a.mxf", "event": "queued",
         "size": 10, "bytes_done": 0, "attempt": 1, "at": 1_700_000_000_000i64, "host": "edge"},
        {"id": "e2", "transfer_id": "t1", "poller": "news", "path": "a.mxf", "event": "complete",
         "size": 10, "bytes_done": 10, "attempt": 1, "at": 1_700_000_000_100i64, "host": "edge"},
    ]});
    let mut answers = Vec::new();
    for site in [&a, &b] {
        let res = site
            .http
            .post(format!("{}/api/v1/agent/events", site.base()))
            .bearer_auth(&token)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        answers.push(res.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[0], json!({"accepted": 2, "duplicates": 0}));
    assert_eq!(answers[1], json!({"accepted": 0, "duplicates": 2}));
    let log = b.call(Method::GET, "/transfers", None).await;
    assert_eq!(log["items"].as_array().map(Vec::len), Some(1), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_on_an_empty_database_both_come_up() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let db = match support::postgres::test_database().await {
        Some(url) => url,
        None => format!("sqlite://{}", dir.path().join("shared.sqlite").display()),
    };
    let key = dir.path().join("shared.key");
    let start = |name: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
            .args(["--listen", "127.0.0.1:0", "--database-url", &db])
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .arg("--secret-key-file")
            .arg(&key)
            .arg("--register-plugins")
            .arg(plugin_dir())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc(child)
    };
    let mut replicas = [start("one"), start("two")];
    // Each prints where it listens once it serves; the one that made the
    // first user prints its password.
    let (tx, rx) = std::sync::mpsc::channel();
    for r in &mut replicas {
        let (out, tx) = (r.0.stdout.take().unwrap(), tx.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
    }
    let (mut bases, mut passwords) = (Vec::new(), Vec::new());
    while bases.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("a replica did not come up: {}", logs(dir.path())));
        if let Some(addr) = line.strip_prefix("dispatch-web listening on ") {
            bases.push(addr.trim().to_string());
        } else if let Some(rest) = line.split(" with password ").nth(1) {
            passwords.push(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    assert_eq!(passwords.len(), 1, "one first user, made once");
    let http = reqwest::Client::new();
    for base in &bases {
        let res = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": "admin", "password": passwords[0]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "login on {base}");
        let cookie = res.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let plugins: Value = http
            .get(format!("{base}/api/v1/plugins"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let builtins = std::fs::read_dir(plugin_dir())
            .unwrap()
            .filter(|e| {
                let p = e.as_ref().unwrap().path();
                p.extension().is_some_and(|x| x == "wasm")
            })
            .count();
        assert_eq!(
            plugins.as_array().map(Vec::len),
            Some(builtins),
            "{plugins}"
        );
    }
    drop(replicas);
}

fn logs(dir: &std::path::Path) -> String {
    ["one", "two"]
        .map(|n| std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default())
        .join("\n")
}

/// `dispatch-web` on `a`'s database with the key file `key`: whether it
/// exited successfully and its stderr, or `None` once it serves.
fn start_with_key(a: &Site, key: &std::path::Path) -> Option<(bool, String)> {
    use std::io::{BufRead, Read};
    let child = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args(["--listen", "127.0.0.1:0", "--database-url"])
        .arg(a.database_url())
        .arg("--data-dir")
        .arg(a.path("other"))
        .arg("--secret-key-file")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);
    let out = proc.0.stdout.take().unwrap();
    let serving = std::thread::spawn(move || {
        std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.starts_with("dispatch-web listening on"))
    });
    if serving.join().unwrap() {
        return None;
    }
    let mut err = String::new();
    proc.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Some((proc.0.wait().unwrap().success(), err))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_another_key_refuses_to_start_and_names_the_fix() {
    let a = Site::start().await;
    a.call(
        Method::POST,
        "/targets",
        Some(
            json!({"name": "affiliate", "target": {"kind": "sftp", "host": "sftp.example.net",
            "username": "deliver", "password": "s3cret-pw", "destination": "/in",
            "host_key_fingerprint": "SHA256:abc"}}),
        ),
    )
    .await;
    let other_key = a.path("other.key");
    let refused = start_with_key(&a, &other_key).expect("it must not come up");
    assert!(!refused.0);
    let line = refused.1.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: ")
            && line.contains("secret key")
            && line.contains(&other_key.display().to_string())
            && line.contains("DISPATCH_SECRET_KEY"),
        "{line}"
    );

    // A database from before the check: its sealed secrets decide.
    let db = support::connect(&a.database_url()).await;
    let checks = async || -> i64 {
        on_db!(&db, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM secret_key_check")
                .fetch_one(pool)
                .await
        })
        .unwrap()
    };
    on_db!(&db, pool => {
        sqlx::query("DELETE FROM secret_key_check")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    let refused = start_with_key(&a, &other_key).expect("it must not come up");
    assert!(
        !refused.0 && refused.1.contains("secret key"),
        "{}",
        refused.1
    );
    assert_eq!(checks().await, 0, "a refused key seals nothing");
    // The right key comes up (and seals the check again).
    assert!(start_with_key(&a, &a.path("web/secret.key")).is_none());
    assert_eq!(checks().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_an_older_version_kept_on_disk_only_move_into_the_database() {
    let mut a = Site::start().await;
    let bytes = test_plugin("stamp-v1");
    let sha = a.upload(bytes.clone()).await["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    a.web.take().unwrap().stop();
    // As an older version left it: the bytes in modules/ only.
    let db = support::connect(&a.database_url()).await;
    on_db!(&db, pool => {
        sqlx::query("DELETE FROM plugin_modules")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    a.start_web();
    std::fs::remove_file(a.path(&format!("web/modules/{sha}.wasm"))).unwrap();
    let stored: Vec<u8> = on_db!(&db, pool => {
        sqlx::query_scalar("SELECT bytes FROM plugin_modules WHERE sha256 = $1")
            .bind(&sha)
            .fetch_one(pool)
            .await
    })
    .unwrap();
    assert!(stored == bytes);
    let token = std::fs::read_to_string(a.agent_token("edge").await).unwrap();
    let res = a
        .http
        .get(format!("{}/api/v1/plugins/{sha}", a.base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap().to_vec() == bytes);
}
