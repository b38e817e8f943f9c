//! Agents under the web app, with real processes: `dispatch-web` on a
//! SQLite file and `dispatch-agent run --server` in connected mode, on
//! loopback. What a person sets up in the web app is what the agent runs,
//! changes reach it while it runs, and an outage of the web app loses and
//! doubles nothing.
#![allow(clippy::unwrap_used, clippy::zombie_processes)] // a test helper that fails panics

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "connected-Admin-pw1";

fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

fn test_plugin(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("DISPATCH_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins")
        });
    std::fs::read(dir.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm: {e}: run `cargo xtask test`"))
}

/// `target/release/dispatch-agent`, built with the workspace.
fn agent_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let agent = dir.join("dispatch-agent");
    assert!(agent.exists(), "{} is not built", agent.display());
    agent
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `cond` with a deadline.
async fn wait_until(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A child killed when the test ends (also on a failure).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) {
        self.signal("TERM");
        let _ = self.0.wait();
    }
}

/// A web app, an agent and their directories.
struct Site {
    dir: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
    web: Option<Proc>,
    agent: Option<Proc>,
    cookie: String,
    csrf: String,
}

impl Site {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut site = Site {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            http: reqwest::Client::new(),
            web: None,
            agent: None,
            cookie: String::new(),
            csrf: String::new(),
        };
        site.start_web();
        site.login().await;
        site
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start_web(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.path("web"))
            .arg("--register-plugins")
            .arg(plugin_dir())
            .arg("--insecure-cookies")
            .env("DISPATCH_ADMIN_PASSWORD", ADMIN_PW)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "dispatch-web exited");
            if line.starts_with("dispatch-web listening on") {
                break;
            }
        }
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        self.web = Some(Proc(child));
    }

    fn start_agent(&mut self, token_file: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = Command::new(agent_exe())
            .args(["run", "--server", &self.base(), "--token-file"])
            .arg(token_file)
            .arg("--state-dir")
            .arg(self.path("agent-state"))
            .env("DISPATCH_PLUGIN_DIR", plugin_dir())
            .env(
                "RUST_LOG",
                "warn,dispatch_agent=info,dispatch_transfer=info",
            )
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(Proc(child));
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    async fn login(&mut self) {
        let res = self
            .http
            .post(format!("{}/api/v1/login", self.base()))
            .json(&json!({"username": "admin", "password": ADMIN_PW}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        self.cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = res.json().await.unwrap();
        self.csrf = body["csrf_token"].as_str().unwrap().to_string();
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base()))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn upload(&self, bytes: Vec<u8>) -> Value {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("p.wasm"),
        );
        let res = self
            .http
            .post(format!("{}/api/v1/plugins", self.base()))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "upload: {}", res.status());
        res.json().await.unwrap()
    }

    /// An agent; its token is written to a file (0600).
    async fn agent_token(&self, name: &str) -> PathBuf {
        let a = self
            .call(Method::POST, "/agents", Some(json!({ "name": name })))
            .await;
        let file = self.path(&format!("{name}.token"));
        std::fs::write(&file, a["token"].as_str().unwrap()).unwrap();
        file
    }

    async fn local_target(&self, name: &str, extra: Value) -> PathBuf {
        let dest = self.path(&format!("dst/{name}"));
        std::fs::create_dir_all(&dest).unwrap();
        let mut target = json!({"kind": "local", "destination": dest});
        if let (Some(t), Some(e)) = (target.as_object_mut(), extra.as_object()) {
            t.extend(e.clone());
        }
        self.call(
            Method::POST,
            "/targets",
            Some(json!({"name": name, "target": target})),
        )
        .await;
        dest
    }

    /// A poller on `src/<name>`, enabled; its id and directory.
    async fn poller(&self, name: &str, plugin: &str, target: &str, extra: Value) -> (i64, PathBuf) {
        let src = self.path(&format!("src/{name}"));
        std::fs::create_dir_all(&src).unwrap();
        let mut body = json!({
            "name": name, "path": src, "plugin": plugin, "target": target,
            "agents": ["edge"], "stability_secs": 0.2
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let p = self.call(Method::POST, "/pollers", Some(body)).await;
        let id = p["id"].as_i64().unwrap();
        self.call(Method::POST, &format!("/pollers/{id}/enable"), None)
            .await;
        (id, src)
    }

    async fn poller_view(&self, id: i64) -> Value {
        self.call(Method::GET, &format!("/pollers/{id}"), None)
            .await
    }

    /// Changes some fields of poller `id` (the rest as they are).
    async fn edit_poller(&self, id: i64, change: Value) {
        let view = self.poller_view(id).await;
        let mut v = json!({});
        for k in [
            "name",
            "path",
            "plugin",
            "plugin_version",
            "params",
            "target",
            "target_id",
            "excludes",
            "max_transfers",
            "stability_secs",
            "agents",
            "enabled",
        ] {
            v[k] = view[k].clone();
        }
        let (Some(b), Some(c)) = (v.as_object_mut(), change.as_object()) else {
            panic!("not objects")
        };
        b.extend(c.clone());
        self.call(Method::PUT, &format!("/pollers/{id}"), Some(v))
            .await;
    }

    /// The web app's log of transfers (newest first), every page.
    async fn transfers(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for page in 1.. {
            let v = self
                .call(
                    Method::GET,
                    &format!("/transfers?per_page=500&page={page}"),
                    None,
                )
                .await;
            all.extend(v["items"].as_array().cloned().unwrap_or_default());
            if v["has_more"] != true {
                break;
            }
        }
        all
    }
}

async fn exists(p: &Path) -> bool {
    p.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_agent_runs_the_web_apps_pollers_and_follows_every_change() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    site.upload(test_plugin("stamp-v1")).await;
    let one = site.local_target("one", json!({})).await;
    // 40 Mb/s: a 24 MiB file stays in flight for about 5 s.
    let slow = site
        .local_target("slow", json!({"rate_limit_mbps": 40.0}))
        .await;
    let (stamp, src) = site.poller("stamp", "stamp", "one", json!({})).await;
    let (_, bulk) = site.poller("bulk", "file", "slow", json!({})).await;
    site.start_agent(&token);

    std::fs::write(src.join("a.v1"), b"a").unwrap();
    wait_until(
        "the web app's poller runs",
        Duration::from_secs(15),
        async || exists(&one.join("a.v1")).await,
    )
    .await;

    // A large transfer of another poller in flight...
    std::fs::write(bulk.join("big.mxf"), vec![7u8; 24 << 20]).unwrap();
    wait_until(
        "the big file in flight",
        Duration::from_secs(15),
        async || {
            std::fs::read_dir(&slow)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".dispatch-part"))
        },
    )
    .await;
    // ...while a new version of `stamp` is uploaded (the poller follows
    // the latest): the agent runs it without a restart.
    site.upload(test_plugin("stamp-v2")).await;
    std::fs::write(src.join("b.v2"), b"b").unwrap();
    wait_until(
        "the new version runs",
        Duration::from_secs(15),
        async || exists(&one.join("b.v2")).await,
    )
    .await;
    assert!(
        !slow.join("big.mxf").exists(),
        "the big transfer should still be in flight (rate limited)"
    );
    wait_until(
        "the big file arrives",
        Duration::from_secs(30),
        async || exists(&slow.join("big.mxf")).await,
    )
    .await;
    assert_eq!(
        std::fs::metadata(slow.join("big.mxf")).unwrap().len(),
        24 << 20
    );
    wait_until(
        "the big transfer in the log",
        Duration::from_secs(10),
        async || {
            site.transfers()
                .await
                .iter()
                .any(|t| t["path"] == "big.mxf" && t["status"] == "Complete")
        },
    )
    .await;
    let big: Vec<Value> = site
        .transfers()
        .await
        .into_iter()
        .filter(|t| t["path"] == "big.mxf")
        .collect();
    assert_eq!(big.len(), 1, "one transfer id: {big:?}");
    assert_eq!(big[0]["attempts"], 1, "{big:?}");

    // The poller's target changed: new polls send there.
    let two = site.local_target("two", json!({})).await;
    site.edit_poller(stamp, json!({"target": "two", "target_id": null}))
        .await;
    std::fs::write(src.join("c.v2"), b"c").unwrap();
    wait_until("the new target", Duration::from_secs(15), async || {
        exists(&two.join("c.v2")).await
    })
    .await;
    assert!(!one.join("c.v2").exists());

    // Renamed: the same poller (its id), not a new one.
    site.edit_poller(stamp, json!({"name": "stamp_renamed"}))
        .await;
    std::fs::write(src.join("d.v2"), b"d").unwrap();
    wait_until("the renamed poller", Duration::from_secs(15), async || {
        exists(&two.join("d.v2")).await
    })
    .await;
    wait_until(
        "the new name in the log",
        Duration::from_secs(10),
        async || {
            site.transfers()
                .await
                .iter()
                .any(|t| t["path"] == "d.v2" && t["poller"] == "stamp_renamed")
        },
    )
    .await;

    // Disabled, then deleted: polling stops.
    site.call(Method::POST, &format!("/pollers/{stamp}/disable"), None)
        .await;
    wait_until("the poller stopped", Duration::from_secs(15), async || {
        site.agent_log().contains("poller stopped")
    })
    .await;
    std::fs::write(src.join("e.v2"), b"e").unwrap();
    site.call(Method::DELETE, &format!("/pollers/{stamp}"), None)
        .await;
    std::fs::write(bulk.join("small.mxf"), b"s").unwrap();
    wait_until(
        "the other poller goes on",
        Duration::from_secs(15),
        async || exists(&slow.join("small.mxf")).await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(src.join("e.v2").exists() && !two.join("e.v2").exists());
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_does_not_match_its_sha256_is_refused_and_the_previous_version_runs() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    site.upload(test_plugin("stamp-v1")).await;
    let one = site.local_target("one", json!({})).await;
    let (stamp, src) = site
        .poller("stamp", "stamp", "one", json!({"plugin_version": "1.0.0"}))
        .await;
    site.start_agent(&token);
    std::fs::write(src.join("a.v1"), b"a").unwrap();
    wait_until("v1 runs", Duration::from_secs(15), async || {
        exists(&one.join("a.v1")).await
    })
    .await;

    // Version 2 uploaded, then its stored bytes tampered with before the
    // agent asks for them.
    let v2 = site.upload(test_plugin("stamp-v2")).await;
    let sha = v2["sha256"].as_str().unwrap().to_string();
    let stored = site.path(&format!("web/modules/{sha}.wasm"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&stored, bytes).unwrap();
    site.edit_poller(stamp, json!({"plugin_version": "2.0.0"}))
        .await;

    wait_until(
        "the refusal reaches the web app",
        Duration::from_secs(15),
        async || {
            site.call(Method::GET, "/agents", None)
                .await
                .to_string()
                .contains("does not match its sha256")
        },
    )
    .await;
    // Version 1 keeps running; nothing of version 2 ran.
    std::fs::write(src.join("b.v1"), b"b").unwrap();
    std::fs::write(src.join("b.v2"), b"b").unwrap();
    wait_until("v1 still runs", Duration::from_secs(15), async || {
        exists(&one.join("b.v1")).await
    })
    .await;
    assert!(!one.join("b.v2").exists());
    assert!(
        !site
            .path(&format!("agent-state/modules/{sha}.wasm"))
            .exists(),
        "a tampered module was kept"
    );
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_web_app_loses_and_doubles_nothing() {
    const FILES: usize = 200;
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let out = site.local_target("out", json!({})).await;
    let (_, src) = site.poller("flow", "file", "out", json!({})).await;
    site.start_agent(&token);
    let write = |range: std::ops::Range<usize>| {
        for i in range {
            std::fs::write(src.join(format!("f{i:03}.mxf")), format!("{i}")).unwrap();
        }
    };
    write(0..50);
    wait_until("the first files", Duration::from_secs(20), async || {
        exists(&out.join("f049.mxf")).await
    })
    .await;

    // The web app goes away while files keep flowing; the agent is even
    // restarted meanwhile and runs its last configuration.
    site.web.take().unwrap().stop();
    let down = Instant::now();
    write(50..120);
    site.agent.take().unwrap().stop();
    site.start_agent(&token);
    write(120..FILES);
    wait_until(
        "all delivered without the web app",
        Duration::from_secs(60),
        async || (0..FILES).all(|i| out.join(format!("f{i:03}.mxf")).exists()),
    )
    .await;
    // Down for 30 s in all.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    site.start_web();
    site.login().await;
    wait_until(
        "every transfer in the log",
        Duration::from_secs(60),
        async || {
            site.transfers()
                .await
                .iter()
                .filter(|t| t["status"] == "Complete")
                .count()
                >= FILES
        },
    )
    .await;
    let log = site.transfers().await;
    for i in 0..FILES {
        let name = format!("f{i:03}.mxf");
        let rows: Vec<&Value> = log.iter().filter(|t| t["path"] == name.as_str()).collect();
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        assert_eq!(rows[0]["status"], "Complete", "{name}: {rows:?}");
    }
    assert_eq!(log.len(), FILES, "transfers the agent never made");
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_enable_resets_the_agents_breaker() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let agents = site.call(Method::GET, "/agents", None).await;
    let agent_id = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    // One failure disables a poller; the cooldown is long.
    let mut settings = site
        .call(Method::GET, &format!("/agents/{agent_id}/settings"), None)
        .await;
    settings["failures_before_disable"] = json!(1);
    settings["retry"] = json!({"initial": "100ms", "max": "200ms", "jitter": 0.1});
    site.call(
        Method::PUT,
        &format!("/agents/{agent_id}/settings"),
        Some(settings),
    )
    .await;
    // The destination is a file, not a directory: every transfer fails.
    let out = site.local_target("out", json!({})).await;
    std::fs::remove_dir(&out).unwrap();
    std::fs::write(&out, b"in the way").unwrap();
    let (id, src) = site.poller("flaky", "file", "out", json!({})).await;
    site.start_agent(&token);
    std::fs::write(src.join("x.mxf"), b"x").unwrap();
    wait_until("the breaker trips", Duration::from_secs(20), async || {
        site.poller_view(id)
            .await
            .to_string()
            .contains("\"disabled\":true")
            || site
                .agent_log()
                .contains("disabled after 1 consecutive failures")
    })
    .await;
    // Fixed, and a person enables the poller: the agent resets its breaker
    // (not after its 4 h cooldown).
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    site.call(Method::POST, &format!("/pollers/{id}/enable"), None)
        .await;
    wait_until(
        "sent after the reset",
        Duration::from_secs(15),
        async || exists(&out.join("x.mxf")).await,
    )
    .await;
    site.agent.take().unwrap().stop();
}
