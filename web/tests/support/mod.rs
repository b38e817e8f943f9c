//! A web app and a connected agent as real processes on loopback, for the
//! connected tests and the connected benchmark.
#![allow(clippy::unwrap_used, clippy::zombie_processes, dead_code)] // a test helper that fails panics

pub mod postgres;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PW: &str = "connected-Admin-pw1";

pub fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

pub fn test_plugin(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("DISPATCH_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins")
        });
    std::fs::read(dir.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm: {e}: run `cargo xtask test`"))
}

/// `target/release/dispatch-agent`, built with the workspace.
pub fn agent_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let agent = dir.join("dispatch-agent");
    assert!(agent.exists(), "{} is not built", agent.display());
    agent
}

/// A program of the test virtualenv `cargo xtask test` makes (its
/// `PYTHON_TOOLS`).
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("DISPATCH_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test`, which installs it",
        bin.display()
    );
    bin
}

/// Waits for `cond` with a deadline.
pub async fn wait_until(what: &str, limit: Duration, cond: impl AsyncFnMut() -> bool) {
    assert!(waited(limit, cond).await, "timed out waiting: {what}");
}

/// Waits for `cond` until a deadline: whether it came.
pub async fn waited(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

/// What a finished command printed, stdout then stderr.
/// A pool on a site's database (`Site::database_url`), of either backend,
/// for what a test does behind the app's back.
pub async fn connect(url: &str) -> dispatch_web::db::Db {
    use dispatch_web::db::Db;
    if url.starts_with("postgres") {
        Db::Postgres(sqlx::PgPool::connect(url).await.unwrap())
    } else {
        Db::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
    }
}

pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A child killed when the test ends (also on a failure).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let _ = self.0.wait();
    }
}

/// A web app, an agent and their directories.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub http: reqwest::Client,
    pub web: Option<Proc>,
    pub agent: Option<Proc>,
    /// More flags for `dispatch-web`.
    web_args: Vec<std::ffi::OsString>,
    /// The PostgreSQL database it runs on (`DISPATCH_TEST_DATABASE`),
    /// else its SQLite file in its data directory.
    postgres: Option<String>,
    /// `name=value` of the logged-in session's cookie, and its CSRF token.
    cookie: String,
    csrf: String,
}

impl Site {
    pub async fn start() -> Self {
        Self::start_with(|_| Vec::new()).await
    }

    /// Started with more `dispatch-web` flags, made from the site's
    /// directory.
    pub async fn start_with(web_args: impl FnOnce(&Path) -> Vec<std::ffi::OsString>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let web_args = web_args(dir.path());
        // A replica is given its database; any other site gets its own.
        let postgres = if web_args.iter().any(|a| a == "--database-url") {
            None
        } else {
            postgres::test_database().await
        };
        let mut site = Site {
            web_args,
            postgres,
            dir,
            // Chosen by the kernel at the first start (no pick-then-release race).
            port: 0,
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The URL of the site's database (replicas are given it).
    pub fn database_url(&self) -> String {
        self.postgres
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.path("web/dispatch.sqlite").display()))
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the web app: on a port the kernel picks the first time (read
    /// back from its output), on the same port after that (agents know
    /// it), retried while another process holds it.
    pub fn start_web(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.try_start_web() {
                Ok(()) => return,
                Err(why) => assert!(
                    self.port != 0 && Instant::now() < deadline,
                    "dispatch-web did not start: {why}"
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_start_web(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("web.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.path("web"))
            .arg("--register-plugins")
            .arg(plugin_dir())
            .arg("--insecure-cookies")
            .args(
                self.postgres
                    .iter()
                    .flat_map(|url| ["--database-url", url.as_str()]),
            )
            .args(&self.web_args)
            .env("DISPATCH_ADMIN_PASSWORD", ADMIN_PW)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let port = loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                let log = std::fs::read_to_string(self.path("web.log")).unwrap_or_default();
                let last = log.lines().last().unwrap_or("no output").to_string();
                return Err(format!("it exited: {last}"));
            }
            if let Some(addr) = line
                .trim()
                .strip_prefix("dispatch-web listening on http://")
            {
                break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        };
        self.port = port;
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        self.web = Some(Proc(child));
        Ok(())
    }

    /// The session's `Cookie` header value.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The session's CSRF token (`X-CSRF-Token`).
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// A page, as the logged-in person sees it.
    pub async fn page(&self, path: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base()))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.text().await.unwrap()
    }

    pub fn start_agent(&mut self, token_file: &Path) {
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

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    pub async fn login(&mut self) {
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

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
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

    pub async fn upload(&self, bytes: Vec<u8>) -> Value {
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
    pub async fn agent_token(&self, name: &str) -> PathBuf {
        let a = self
            .call(Method::POST, "/agents", Some(json!({ "name": name })))
            .await;
        let file = self.path(&format!("{name}.token"));
        std::fs::write(&file, a["token"].as_str().unwrap()).unwrap();
        file
    }

    pub async fn local_target(&self, name: &str, extra: Value) -> PathBuf {
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
    pub async fn poller(
        &self,
        name: &str,
        plugin: &str,
        target: &str,
        extra: Value,
    ) -> (i64, PathBuf) {
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

    pub async fn poller_view(&self, id: i64) -> Value {
        self.call(Method::GET, &format!("/pollers/{id}"), None)
            .await
    }

    /// Changes some fields of poller `id` (the rest as they are).
    pub async fn edit_poller(&self, id: i64, change: Value) {
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
    pub async fn transfers(&self) -> Vec<Value> {
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

    /// Waits until the web app's log holds a transfer that `pred` likes.
    pub async fn wait_logged(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        wait_until(what, Duration::from_secs(10), async || {
            self.transfers().await.iter().any(&pred)
        })
        .await;
    }
}
