//! The JSON API against a real server on loopback with a real SQLite file:
//! every endpoint, the bad inputs of the issue, token checks, idempotent
//! ingest, the long poll, and secrets never shown back.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod support;

use dispatch_runtime::builtin::Source;
use dispatch_web::db::{Db, Sql};
use dispatch_web::on_db;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Sup3r-Secret-Pw";
const KEY: &str = "-----BEGIN KEY-----secretkeymaterial-----END KEY-----";
const PASSPHRASE: &str = "rest-Passphrase-42";

fn plugin_file(name: &str) -> PathBuf {
    let dir = std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask test`",
        p.display()
    );
    p
}

struct App {
    base: String,
    http: reqwest::Client,
    data: tempfile::TempDir,
    state: Arc<dispatch_web::AppState>,
}

struct Session<'a> {
    app: &'a App,
    cookie: String,
    csrf: String,
}

impl App {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let data = tempfile::tempdir().unwrap();
        let state = dispatch_web::AppState::open(dispatch_web::Settings {
            data_dir: data.path().join("data"),
            database_url: support::postgres::test_database().await,
            secret_key: None,
            secret_key_file: None,
            upload_limit: 1 << 20,
            upload_check: std::time::Duration::from_secs(60),
            secure_cookies: false,
        })
        .await
        .unwrap();
        dispatch_web::ensure_admin(&state.db, "admin", Some("admin-pw"))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = dispatch_web::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        App {
            base,
            http: reqwest::Client::new(),
            data,
            state,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self) -> Session<'_> {
        self.login_as("admin", "admin-pw").await
    }

    async fn login_as(&self, username: &str, password: &str) -> Session<'_> {
        let res = self
            .http
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = res.json().await.unwrap();
        Session {
            app: self,
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    /// An agent request with `token`.
    async fn agent(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
}

impl Session<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .app
            .http
            .request(method, self.app.url(path))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_no_secret(&text);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn upload(&self, bytes: Vec<u8>) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("p.wasm"),
        );
        let res = self
            .app
            .http
            .post(self.app.url("/api/v1/plugins"))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

fn assert_no_secret(text: &str) {
    for s in [PASSWORD, "secretkeymaterial", PASSPHRASE] {
        assert!(!text.contains(s), "a secret in a response: {text}");
    }
}

fn poller_body(name: &str) -> Value {
    json!({
        "name": name, "path": "/srv/out", "plugin": "dir", "params": {"markers": "ADI.XML"},
        "target": "aspera1", "agents": ["edge1"], "excludes": "*.tmp,Thumbs.db"
    })
}

fn aspera_target() -> Value {
    json!({"name": "aspera1", "target": {"kind": "aspera", "host": "aspera.example.net", "user": "aff",
        "password": PASSWORD, "destination": "/in", "encrypt": true, "passphrase": PASSPHRASE}})
}

/// The target `poller_body` sends to.
async fn create_target(s: &Session<'_>) -> i64 {
    let (st, t) = s
        .call(Method::POST, "/api/v1/targets", Some(aspera_target()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    t["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_must_log_in_and_send_the_csrf_token() {
    let app = App::start().await;
    let res = app
        .http
        .get(app.url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/api/v1/pollers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "log in first");
    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let s = app.login().await;
    let cookie_header = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username": "admin", "password": "admin-pw"}))
        .send()
        .await
        .unwrap()
        .headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"),
        "{cookie_header}"
    );
    // A change without the CSRF token is refused.
    let res = app
        .http
        .post(app.url("/api/v1/agents"))
        .header("cookie", &s.cookie)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (st, me) = s.call(Method::GET, "/api/v1/me", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["username"], "admin");
    let (st, _) = s.call(Method::POST, "/api/v1/logout", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.call(Method::GET, "/api/v1/me", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_registry_validates_and_versions_uploads() {
    let app = App::start().await;
    let s = app.login().await;
    let dir = std::fs::read(plugin_file("dir")).unwrap();
    let (st, v) = s.upload(dir.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["plugin"], "dir");
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["wit_version"], "0.2.0");
    assert_eq!(v["created"], true);
    let sha = v["sha256"].as_str().unwrap().to_string();
    assert!(
        app.data
            .path()
            .join(format!("data/modules/{sha}.wasm"))
            .exists(),
        "stored content-addressed"
    );
    // The same bytes again: the same version.
    let (st, v) = s.upload(dir.clone()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["created"], false);

    // Other bytes under a version `dir` already has: refused, and the
    // compiled artifact of the refused upload is not kept.
    let old_build = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testing/compat/wit-0.1.0/dir.wasm"),
    )
    .unwrap();
    let (st, e) = s.upload(old_build).await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("raise the version"),
        "{e}"
    );
    let compiled: Vec<String> = std::fs::read_dir(app.data.path().join("data/compiled"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    assert!(compiled[0].starts_with(&sha), "{compiled:?}");

    let (st, e) = s.upload(b"not a component at all".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "file");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("is not a WebAssembly file"),
        "{e}"
    );
    let (st, e) = s.upload(b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{e}"
    );
    let (st, e) = s.upload(vec![0u8; 2 << 20]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    let (st, e) = s.upload(Vec::new()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    let (st, list) = s.call(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        list,
        json!([{"name": "dir", "latest_version": "0.1.0", "versions": 1}])
    );
    let (st, view) = s.call(Method::GET, "/api/v1/plugins/dir", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["versions"][0]["sha256"], sha.as_str());
    assert_eq!(view["versions"][0]["params"][0]["name"], "markers");
    let (st, _) = s.call(Method::GET, "/api/v1/plugins/nope", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A version in use cannot be deleted; an unused one can.
    create_target(&s).await;
    s.call(
        Method::POST,
        "/api/v1/agents",
        Some(json!({"name": "edge1"})),
    )
    .await;
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/pollers",
            Some(poller_body("uses_dir")),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = s
        .call(Method::DELETE, "/api/v1/plugins/dir/versions/0.1.0", None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains("uses_dir"), "{e}");
    let (st, _) = s.upload(std::fs::read(plugin_file("file")).unwrap()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = s
        .call(Method::DELETE, "/api/v1/plugins/file/versions/0.1.0", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(Method::DELETE, "/api/v1/plugins/file/versions/0.1.0", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn setup(app: &App) -> (Session<'_>, String, String) {
    let s = app.login().await;
    let (st, _) = s.upload(std::fs::read(plugin_file("dir")).unwrap()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, a) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(json!({"name": "edge1"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, b) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(json!({"name": "edge2"})),
        )
        .await;
    create_target(&s).await;
    (
        s,
        a["token"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollers_are_validated_and_secrets_are_write_only() {
    let app = App::start().await;
    let (s, _, _) = setup(&app).await;
    let post = |body: Value| s.call(Method::POST, "/api/v1/pollers", Some(body));

    // Bad input, each with its field, and nothing written.
    let (st, e) = post(json!({"name": "x"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "path", "{e}");
    let mut b = poller_body("p1");
    b["colour"] = json!("red");
    let (st, e) = post(b).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["field"], "colour", "{e}");
    let res = app
        .http
        .post(app.url("/api/v1/pollers"))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", &s.csrf)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // The target: required, known; the rest as the agent checks it.
    let mut b = poller_body("p1");
    b.as_object_mut().unwrap().remove("target");
    let (st, e) = post(b).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("target")),
        "{e}"
    );
    let mut b = poller_body("p1");
    b["target"] = json!("ghost");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "target", "{e}");
    assert!(e["error"].as_str().unwrap().contains("ghost"), "{e}");
    let mut b = poller_body("p1");
    b["path"] = json!("relative/in");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "path", "{e}");
    assert!(e["error"].as_str().unwrap().contains("absolute"), "{e}");
    let mut b = poller_body("p1");
    b["excludes"] = json!("*.tmp,a[");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "excludes[1]", "{e}");
    let mut b = poller_body("p1");
    b["max_transfers"] = json!(0);
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "max_transfers", "{e}");
    let mut b = poller_body("p1");
    b["plugin"] = json!("nope");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "plugin");
    let mut b = poller_body("p1");
    b["params"] = json!({"colour": "red"});
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "params.colour", "{e}");
    let mut b = poller_body("p1");
    b["agents"] = json!(["edge1", "ghost", "edge2", "spook"]);
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "agents");
    assert_eq!(
        e["error"], "no agent named `ghost`",
        "the first unknown: {e}"
    );
    let mut b = poller_body("p1");
    b["plugin_version"] = json!("9.9.9");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "plugin_version", "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("no version 9.9.9"),
        "{e}"
    );
    let mut b = poller_body("Bad Name");
    b["name"] = json!("Bad Name");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "name");
    let (_, list) = s.call(Method::GET, "/api/v1/pollers", None).await;
    assert_eq!(list, json!([]), "nothing half-written");

    // A good one, by the target's name.
    let (st, p) = post(poller_body("p1")).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["target"], "aspera1");
    assert_eq!(p["target_summary"], "aspera aff@aspera.example.net:/in");
    assert_eq!(p["plugin_version"], "latest");
    assert_eq!(p["resolved_version"], "0.1.0");
    assert_eq!(p["max_transfers"], 3);
    assert_eq!(p["enabled_at"], Value::Null);
    let id = p["id"].as_i64().unwrap();
    let (st, e) = post(poller_body("p1")).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );

    // Update, naming the target by id this time.
    let mut b = poller_body("p1");
    b.as_object_mut().unwrap().remove("target");
    b["target_id"] = p["target_id"].clone();
    b["max_transfers"] = json!(5);
    let (st, p) = s
        .call(Method::PUT, &format!("/api/v1/pollers/{id}"), Some(b))
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (p["max_transfers"].clone(), p["target"].clone()),
        (json!(5), json!("aspera1"))
    );

    // Enable, refuse delete, disable, delete.
    let before = dispatch_web::now_ms();
    let (_, p) = s
        .call(Method::POST, &format!("/api/v1/pollers/{id}/enable"), None)
        .await;
    assert_eq!(p["enabled"], true);
    assert!(p["enabled_at"].as_i64().unwrap() >= before, "{p}");
    let (st, e) = s
        .call(Method::DELETE, &format!("/api/v1/pollers/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(e["error"], "disable the poller before deleting it");
    let (_, p) = s
        .call(
            Method::POST,
            &format!("/api/v1/pollers/{id}/disable"),
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(
        (p["enabled"].clone(), p["disabled_reason"].clone()),
        (json!(false), json!("maintenance"))
    );
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/v1/pollers/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(Method::GET, &format!("/api/v1/pollers/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(Method::PUT, "/api/v1/pollers/999", Some(poller_body("p9")))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_see_only_their_config_and_the_long_poll_wakes_on_change() {
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let (_, agents) = s.call(Method::GET, "/api/v1/agents", None).await;
    assert!(
        !agents.to_string().contains(&edge1),
        "tokens are shown once only"
    );
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/agents",
            Some(json!({"name": "edge1"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, p) = s
        .call(Method::POST, "/api/v1/pollers", Some(poller_body("p1")))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let id = p["id"].as_i64().unwrap();

    // Tokens: missing, tampered, another agent's.
    let res = app
        .http
        .get(app.url("/api/v1/agent/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .agent(
            Method::GET,
            "/api/v1/agent/config",
            &format!("{edge1}x"),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let other: Value = app
        .agent(Method::GET, "/api/v1/agent/config", &edge2, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["pollers"], json!([]));

    let res = app
        .agent(Method::GET, "/api/v1/agent/config", &edge1, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let cfg: Value = res.json().await.unwrap();
    let p1 = &cfg["pollers"][0];
    assert_eq!(p1["name"], "p1");
    assert_eq!(p1["params"], json!({"markers": "ADI.XML"}));
    assert_eq!(p1["excludes"], json!(["*.tmp", "Thumbs.db"]));
    // The agent itself gets what it needs to transfer.
    assert_eq!(p1["id"], id.to_string(), "stable across renames");
    assert_eq!(p1["target"]["kind"], "aspera");
    assert_eq!(p1["target"]["host"], "aspera.example.net");
    assert_eq!(p1["target"]["password"], PASSWORD);
    assert_eq!(p1["target"]["passphrase"], PASSPHRASE);
    assert_eq!(p1["stability"], "10s");
    assert_eq!(cfg["agent"], "edge1");
    assert_eq!(cfg["settings"]["rescan_interval"], "1m");
    let parsed: dispatch_protocol::AgentConfig = serde_json::from_value(cfg.clone()).unwrap();
    parsed.validate(true).unwrap();
    assert_eq!(p1["module"]["version"], "0.1.0");
    let sha = p1["module"]["sha256"].as_str().unwrap().to_string();

    // The module, immutable, for the agent.
    let res = app
        .agent(Method::GET, &format!("/api/v1/plugins/{sha}"), &edge1, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        res.bytes().await.unwrap().to_vec(),
        std::fs::read(plugin_file("dir")).unwrap()
    );
    let res = app
        .agent(
            Method::GET,
            &format!("/api/v1/plugins/{}", "0".repeat(64)),
            &edge1,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Unchanged: 304 at once.
    let res = app
        .http
        .get(app.url("/api/v1/agent/config"))
        .bearer_auth(&edge1)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // Long poll: answered as soon as the poller changes.
    let waiter = {
        let (http, url, token, etag) = (
            app.http.clone(),
            app.url("/api/v1/agent/config?wait=20"),
            edge1.clone(),
            etag.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let res = http
                .get(url)
                .bearer_auth(token)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap();
            (
                res.status(),
                t.elapsed(),
                res.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, _) = s
        .call(Method::POST, &format!("/api/v1/pollers/{id}/enable"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (status, took, body) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        took < Duration::from_secs(5) && took >= Duration::from_millis(400),
        "{took:?}"
    );
    assert_eq!(body["pollers"][0]["enabled"], true);
    // A long poll with no change ends in 304 after the wait.
    let res = app
        .agent(Method::GET, "/api/v1/agent/config", &edge1, None)
        .await;
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let t = Instant::now();
    let res = app
        .http
        .get(app.url("/api/v1/agent/config?wait=1"))
        .bearer_auth(&edge1)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(t.elapsed() >= Duration::from_millis(900));

    // Heartbeat: last seen, and the agent's view of its pollers.
    let hb = json!({"version": "0.1.0", "host_name": "media-01", "pollers": [{"name": "p1", "consecutive_errors": 5, "disabled": true, "reason": "5 failures"}]});
    assert_eq!(
        app.agent(
            Method::POST,
            "/api/v1/agent/heartbeat",
            &edge1,
            Some(hb.clone())
        )
        .await
        .status(),
        StatusCode::OK
    );
    let (_, agents) = s.call(Method::GET, "/api/v1/agents", None).await;
    let a = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "edge1")
        .unwrap();
    assert_eq!(
        (
            a["online"].clone(),
            a["host_name"].clone(),
            a["pollers"].clone()
        ),
        (json!(true), json!("media-01"), json!(["p1"]))
    );
    let (_, p) = s
        .call(Method::GET, &format!("/api/v1/pollers/{id}"), None)
        .await;
    assert_eq!(
        (
            p["consecutive_errors"].clone(),
            p["disabled_by_agent"].clone()
        ),
        (json!(5), json!("edge1"))
    );
    // Another agent cannot touch pollers it does not run.
    let hb2 = json!({"version": "0.1.0", "host_name": "x", "pollers": [{"name": "p1", "consecutive_errors": 0}]});
    app.agent(Method::POST, "/api/v1/agent/heartbeat", &edge2, Some(hb2))
        .await;
    let (_, p) = s
        .call(Method::GET, &format!("/api/v1/pollers/{id}"), None)
        .await;
    assert_eq!(p["consecutive_errors"], 5);
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/heartbeat",
            &edge1,
            Some(json!({"version": "x"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A deleted agent's token stops working.
    let id = a["id"].as_i64().unwrap();
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let res = app
        .agent(Method::GET, "/api/v1/agent/config", &edge1, None)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/v1/agents/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

fn event(id: &str, transfer: &str, path: &str, kind: &str, at: i64) -> Value {
    json!({"id": id, "transfer_id": transfer, "poller": "p1", "path": path, "event": kind, "size": 1000,
           "bytes_done": if kind == "complete" { 1000 } else { 0 }, "attempt": 1, "at": at, "host": "media-01",
           "error": if kind == "error" { Some("disk full") } else { None }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_idempotent_and_the_log_is_searchable() {
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let t0 = 1_700_000_000_000i64;
    let batch = json!({"events": [
        event("e1", "t1", "A/movie_hd.mxf", "queued", t0),
        event("e2", "t1", "A/movie_hd.mxf", "started", t0 + 10),
        event("e3", "t1", "A/movie_hd.mxf", "complete", t0 + 20),
        event("e4", "t2", "B/trailer.mov", "started", t0 + 30),
        event("e5", "t2", "B/trailer.mov", "error", t0 + 40),
    ]});
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge1,
            Some(batch.clone()),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 5, "duplicates": 0})
    );
    let (_, before) = s.call(Method::GET, "/api/v1/transfers", None).await;
    // Replayed: nothing changes.
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge1,
            Some(batch.clone()),
        )
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "duplicates": 5})
    );
    let (_, after) = s.call(Method::GET, "/api/v1/transfers", None).await;
    assert_eq!(before, after);
    // The same ids from another agent are its own events.
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge2,
            Some(json!({"events": [event("e1", "t1", "C/other.mxf", "queued", t0 + 50)]})),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], 1);

    let items = after["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["file_name"], "trailer.mov", "newest first");
    assert_eq!(
        (items[0]["status"].clone(), items[0]["error"].clone()),
        (json!("Error"), json!("disk full"))
    );
    assert_eq!(
        (items[1]["status"].clone(), items[1]["bytes_done"].clone()),
        (json!("Complete"), json!(1000))
    );

    let sref = &s;
    let q = |query: &str| {
        let path = format!("/api/v1/transfers?{query}");
        async move { sref.call(Method::GET, &path, None).await }
    };
    let names = |v: Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["file_name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(q("q=ie_h").await.1),
        ["movie_hd.mxf"],
        "trigram substring"
    );
    assert_eq!(
        names(q("q=HD").await.1),
        ["movie_hd.mxf"],
        "case-insensitive, short substring"
    );
    assert_eq!(names(q("status=Error").await.1), ["trailer.mov"]);
    assert_eq!(names(q("agent=edge2").await.1), ["other.mxf"]);
    assert_eq!(
        names(q(&format!("from={}&to={}", t0 + 25, t0 + 45)).await.1),
        ["trailer.mov"]
    );
    assert_eq!(names(q("poller=p1&per_page=1&page=2").await.1).len(), 1);
    let (_, page) = q("per_page=2").await;
    assert_eq!(page["has_more"], true);
    let (st, e) = q("status=Lost").await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("status"))
    );
    let (st, _) = q("per_page=0").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = q("bogus=1").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let res = app
        .http
        .get(app.url("/api/v1/transfers.csv?status=Complete"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,agent,poller,path,status,size,bytes_done,attempts,started_at,ended_at,error,host"
    );
    assert_eq!(lines.len(), 2);
    assert!(
        lines[1].contains("A/movie_hd.mxf,Complete,1000,1000"),
        "{csv}"
    );

    let (_, stats) = s.call(Method::GET, "/api/v1/stats", None).await;
    assert_eq!(
        (
            stats["transfers"].clone(),
            stats["complete"].clone(),
            stats["errors"].clone(),
            stats["bytes_sent"].clone()
        ),
        (json!(3), json!(1), json!(1), json!(1000))
    );
    assert_eq!(stats["per_poller"][0]["poller"], "p1");
    let (_, stats) = s
        .call(
            Method::GET,
            &format!("/api/v1/stats?from={}", t0 + 25),
            None,
        )
        .await;
    assert_eq!(stats["transfers"], 2);

    // Bad events are refused whole.
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge1,
            Some(json!({"events": [event("e9", "t9", "x", "exploded", t0)]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        res.json::<Value>().await.unwrap()["field"],
        "events[0].event"
    );

    // Metrics count it all.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dispatch_events_ingested_total 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dispatch_events_duplicate_total 5"),
        "{metrics}"
    );
    // Each transfer counted once, by its status now: t1 went through
    // Queued and Transferring to Complete (in one batch), t2 failed,
    // edge2's is queued.
    let by_status: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("dispatch_transfers{"))
        .collect();
    assert_eq!(
        by_status,
        [
            "dispatch_transfers{status=\"Complete\"} 1",
            "dispatch_transfers{status=\"Error\"} 1",
            "dispatch_transfers{status=\"Queued\"} 1",
            "dispatch_transfers{status=\"Transferring\"} 0",
        ],
        "{metrics}"
    );
    assert!(metrics.contains("dispatch_agents 2"), "{metrics}");

    // Ingested ids are remembered for a week, then forgotten (the log stays).
    let kept = dispatch_web::retention::EVENT_IDS_KEPT;
    let forget = || dispatch_web::retention::forget_event_ids(&app.state.db, kept);
    let (_, log_before) = s.call(Method::GET, "/api/v1/transfers", None).await;
    assert_eq!(forget().await.unwrap(), 0, "recent ids are kept");
    let ids: i64 = on_db!(&app.state.db, pool => {
        sqlx::query_scalar("SELECT count(*) FROM ingested_events")
            .fetch_one(pool)
            .await
    })
    .unwrap();
    let week_ms = i64::try_from(kept.as_millis()).unwrap();
    on_db!(&app.state.db, pool => {
        sqlx::query("UPDATE ingested_events SET at = at - $1 - 1000")
            .bind(week_ms)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    assert_eq!(forget().await.unwrap(), u64::try_from(ids).unwrap());
    let (_, log) = s.call(Method::GET, "/api/v1/transfers", None).await;
    assert_eq!(log, log_before, "forgetting ids leaves the log as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_the_api() {
    let app = App::start().await;
    let doc: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/pollers",
        "/api/v1/pollers/{id}",
        "/api/v1/plugins",
        "/api/v1/agent/config",
        "/api/v1/agent/events",
        "/api/v1/transfers",
        "/api/v1/stats",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    for path in [
        "/api/v1/targets",
        "/api/v1/targets/{id}",
        "/api/v1/agents/{id}/settings",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["PollerInput"]["properties"]["target"].is_object());
    assert!(doc["components"]["schemas"]["TargetInput"].is_object());
    let unknown = app
        .http
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // The database is where it was asked for: SQLite's file in the data
    // directory, none there on PostgreSQL.
    assert_eq!(
        app.state.data_dir.join("dispatch.sqlite").exists(),
        !support::postgres::on_postgres()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_records_with_write_only_secrets() {
    let app = App::start().await;
    let s = app.login().await;
    let post = |body: Value| s.call(Method::POST, "/api/v1/targets", Some(body));
    let sftp = |extra: Value| {
        let mut t = json!({"kind": "sftp", "host": "sftp.example.net", "username": "deliver",
            "host_key_fingerprint": "SHA256:abc", "destination": "in"});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        json!({"name": "sftp1", "target": t})
    };

    // Refused, naming the field under `target.`, and nothing written.
    let (st, e) = post(sftp(json!({}))).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("target.password")),
        "{e}"
    );
    let (_, e) = post(sftp(json!({"password": PASSWORD, "port": "twenty-two"}))).await;
    assert_eq!(e["field"], "target.port", "{e}");
    let (_, e) = post(sftp(json!({"password": PASSWORD, "port": 0}))).await;
    assert_eq!(e["field"], "target.port", "{e}");
    let (_, e) = post(sftp(
        json!({"password": PASSWORD, "known_hosts": "known_hosts"}),
    ))
    .await;
    assert_eq!(e["field"], "target.known_hosts", "{e}");
    let (_, e) = post(json!({"name": "x", "target": {"kind": "carrier-pigeon"}})).await;
    assert_eq!(e["field"], "target.kind", "{e}");
    let (_, e) = post(json!({"name": "x", "target": {"kind": "local"}})).await;
    assert_eq!(e["field"], "target.destination", "{e}");
    let (_, e) =
        post(json!({"name": "x", "target": {"kind": "local", "destination": "out"}})).await;
    assert_eq!(e["field"], "target.destination", "{e}");
    let mut bad = sftp(json!({"password": PASSWORD}));
    bad["name"] = json!("Bad Name");
    let (_, e) = post(bad).await;
    assert_eq!(e["field"], "name", "{e}");
    let (_, list) = s.call(Method::GET, "/api/v1/targets", None).await;
    assert_eq!(list, json!([]), "nothing half-written");

    // Created: secrets shown only as set.
    let (st, t) = post(sftp(json!({"password": PASSWORD}))).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!(
        t["secrets"],
        json!({"password": true, "private_key": false, "passphrase": false})
    );
    assert_eq!(t["summary"], "sftp deliver@sftp.example.net:22/in");
    assert!(t["target"].get("password").is_none(), "{t}");
    assert_eq!(t["target"]["port"], 22, "defaults filled");
    let id = t["id"].as_i64().unwrap();
    let (st, e) = post(sftp(json!({"password": PASSWORD}))).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );

    // Update: a secret left out keeps its value; `null` clears it.
    let url = format!("/api/v1/targets/{id}");
    let put = |body: Value| s.call(Method::PUT, &url, Some(body));
    let (st, t) = put(sftp(json!({"port": 2222}))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        (
            t["target"]["port"].clone(),
            t["secrets"]["password"].clone()
        ),
        (json!(2222), json!(true))
    );
    let (st, e) = put(sftp(json!({"private_key": KEY}))).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("target.password"))
    );
    let (st, t) = put(sftp(
        json!({"private_key": KEY, "password": null, "passphrase": PASSPHRASE}),
    ))
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        t["secrets"],
        json!({"password": false, "private_key": true, "passphrase": true})
    );
    let (st, _) = s
        .call(Method::PUT, "/api/v1/targets/999", Some(sftp(json!({}))))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // At rest the secrets are ciphertext: in every stored column, and in
    // SQLite's file and its log.
    let stored: Vec<(String, Option<Vec<u8>>)> = on_db!(&app.state.db, pool => {
        sqlx::query_as("SELECT settings_json, secrets_enc FROM targets")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    assert!(stored.iter().any(|(_, sealed)| sealed.is_some()));
    let mut at_rest: Vec<Vec<u8>> = stored
        .into_iter()
        .flat_map(|(json, sealed)| [json.into_bytes(), sealed.unwrap_or_default()])
        .collect();
    if !support::postgres::on_postgres() {
        at_rest.push(std::fs::read(app.data.path().join("data/dispatch.sqlite")).unwrap());
        at_rest.push(
            std::fs::read(app.data.path().join("data/dispatch.sqlite-wal")).unwrap_or_default(),
        );
    }
    for bytes in at_rest {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(PASSWORD)
                && !text.contains(PASSPHRASE)
                && !text.contains("secretkeymaterial"),
            "a secret in the database"
        );
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(app.data.path().join("data/secret.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // Delete is refused while a poller uses it, naming the poller.
    let (st, _) = s.upload(std::fs::read(plugin_file("dir")).unwrap()).await;
    assert_eq!(st, StatusCode::CREATED);
    let mut p = poller_body("uses_sftp");
    p["target"] = json!("sftp1");
    p["agents"] = json!([]);
    let (st, p) = s.call(Method::POST, "/api/v1/pollers", Some(p)).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let (_, t) = s
        .call(Method::GET, &format!("/api/v1/targets/{id}"), None)
        .await;
    assert_eq!(t["pollers"], json!(["uses_sftp"]));
    let (st, e) = s
        .call(Method::DELETE, &format!("/api/v1/targets/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(e["error"].as_str().unwrap().contains("uses_sftp"), "{e}");
    let pid = p["id"].as_i64().unwrap();
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/v1/pollers/{pid}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(Method::DELETE, &format!("/api/v1/targets/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(Method::GET, &format!("/api/v1/targets/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_carries_the_target_and_settings_to_its_agent_only() {
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let (st, p) = s
        .call(Method::POST, "/api/v1/pollers", Some(poller_body("p1")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let config = |token: String| {
        let app = &app;
        async move {
            let res = app
                .agent(Method::GET, "/api/v1/agent/config", &token, None)
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            (
                res.headers()["etag"].to_str().unwrap().to_string(),
                res.json::<Value>().await.unwrap(),
            )
        }
    };
    let (_, other) = config(edge2.clone()).await;
    assert_eq!(other["pollers"], json!([]));
    assert!(!other.to_string().contains(PASSWORD));
    let (etag, cfg) = config(edge1.clone()).await;
    assert_eq!(cfg["pollers"][0]["target"]["password"], PASSWORD);

    // Agent settings: validated, the SMTP password kept apart and never shown.
    let (_, agents) = s.call(Method::GET, "/api/v1/agents", None).await;
    let id = agents[0]["id"].as_i64().unwrap();
    let url = format!("/api/v1/agents/{id}/settings");
    let (st, view) = s.call(Method::GET, &url, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["failures_before_disable"], 5);
    let smtp = json!({"host": "mail.example.net", "from": "dispatch@example.net",
        "to": ["ops@example.net"], "password": PASSPHRASE});
    let (st, e) = s
        .call(Method::PUT, &url, Some(json!({"rescan_interval": "soon"})))
        .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rescan_interval")),
        "{e}"
    );
    let (st, e) = s
        .call(Method::PUT, &url, Some(json!({"retry": {"jitter": 2.0}})))
        .await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("retry.jitter")),
        "{e}"
    );
    let (st, view) = s
        .call(
            Method::PUT,
            &url,
            Some(json!({"rescan_interval": "30s", "alerts": {"smtp": smtp}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["secrets"]["alerts.smtp.password"], true);
    assert!(view["alerts"]["smtp"].get("password").is_none(), "{view}");
    let mut again = view.clone();
    again["poll_timeout"] = json!("7s");
    let (st, view) = s.call(Method::PUT, &url, Some(again)).await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["secrets"]["alerts.smtp.password"], true, "kept");

    // The agent's config changed with it (new ETag), password included.
    let (etag2, cfg) = config(edge1.clone()).await;
    assert_ne!(etag, etag2);
    assert_eq!(cfg["settings"]["rescan_interval"], "30s");
    assert_eq!(cfg["settings"]["poll_timeout"], "7s");
    assert_eq!(cfg["settings"]["alerts"]["smtp"]["password"], PASSPHRASE);
    let (_, other) = config(edge2).await;
    assert!(
        !other.to_string().contains(PASSPHRASE),
        "edge2's settings are its own"
    );

    // Editing the target reaches the agent.
    let tid = cfg["pollers"][0]["target"].clone();
    assert_eq!(tid["host"], "aspera.example.net");
    let (_, targets) = s.call(Method::GET, "/api/v1/targets", None).await;
    let target_id = targets[0]["id"].as_i64().unwrap();
    let mut body = aspera_target();
    body["target"]["host"] = json!("aspera2.example.net");
    body["target"].as_object_mut().unwrap().remove("password");
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/targets/{target_id}"),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, cfg) = config(edge1).await;
    assert_eq!(cfg["pollers"][0]["target"]["host"], "aspera2.example.net");
    assert_eq!(cfg["pollers"][0]["target"]["password"], PASSWORD);

    // `null` clears the SMTP password.
    let mut smtp = smtp;
    smtp["password"] = Value::Null;
    let (st, view) = s
        .call(Method::PUT, &url, Some(json!({"alerts": {"smtp": smtp}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["secrets"]["alerts.smtp.password"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inline_targets_of_old_pollers_become_records_at_start() {
    let app = App::start().await;
    let (s, edge1, _) = setup(&app).await;
    // A poller as the previous version stored it: its target inline.
    // Only SQLite databases are old enough to hold them (the PostgreSQL
    // pass of `cargo xtask test` leaves out the `sqlite_` tests).
    let Db::Sqlite(pool) = &app.state.db else {
        panic!("a test of SQLite databases: run it without DISPATCH_TEST_DATABASE")
    };
    let plugin: i64 = sqlx::query_scalar("SELECT id FROM plugins WHERE name = 'dir'")
        .fetch_one(pool)
        .await
        .unwrap();
    let poller: i64 = sqlx::query_scalar(
        "INSERT INTO pollers (name, path, plugin_id, transfer_kind, destination, speed_mbps, enabled, created_at, updated_at)
         VALUES ('old_news', '/srv/old', $1, 'local', '/srv/copies', 80, TRUE, 0, 0) RETURNING id",
    )
    .bind(plugin)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO poller_agents (poller_id, agent_id) SELECT $1, id FROM agents WHERE name = 'edge1'")
        .bind(poller)
        .execute(pool)
        .await
        .unwrap();
    // The next start moves it.
    let again = dispatch_web::AppState::open(dispatch_web::Settings {
        data_dir: app.data.path().join("data"),
        database_url: None,
        secret_key: None,
        secret_key_file: None,
        upload_limit: 1 << 20,
        upload_check: std::time::Duration::from_secs(60),
        secure_cookies: false,
    })
    .await
    .unwrap();
    drop(again);
    let (_, p) = s
        .call(Method::GET, &format!("/api/v1/pollers/{poller}"), None)
        .await;
    assert_eq!(p["target"], "old_news", "{p}");
    assert_eq!(p["target_summary"], "local /srv/copies");
    let res = app
        .agent(Method::GET, "/api/v1/agent/config", &edge1, None)
        .await;
    let cfg: Value = res.json().await.unwrap();
    let old = cfg["pollers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "old_news")
        .unwrap()
        .clone();
    assert_eq!(
        old["target"],
        json!({"kind": "local", "destination": "/srv/copies",
        "verify_sha256": false, "rate_limit_mbps": 80.0, "fsync": true})
    );
}

/// A heartbeat's answer: the commands (`{"commands": [...]}`).
async fn beat(app: &App, token: &str, hb: Value) -> Vec<Value> {
    let res = app
        .agent(Method::POST, "/api/v1/agent/heartbeat", token, Some(hb))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let reply: Value = res.json().await.unwrap();
    reply["commands"].as_array().unwrap().clone()
}

/// An agent's view in `/api/v1/agents`.
async fn agent_view(s: &Session<'_>, name: &str) -> Value {
    let (_, agents) = s.call(Method::GET, "/api/v1/agents", None).await;
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()
        .clone()
}

/// A page's HTML, logged in.
async fn page(app: &App, s: &Session<'_>, path: &str) -> String {
    let res = app
        .http
        .get(app.url(path))
        .header("cookie", &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_each_pollers_state_and_hand_out_commands() {
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let (st, p1) = s
        .call(Method::POST, "/api/v1/pollers", Some(poller_body("p1")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p1}");
    let mut both = poller_body("p2");
    both["agents"] = json!(["edge1", "edge2"]);
    let (st, p2) = s.call(Method::POST, "/api/v1/pollers", Some(both)).await;
    assert_eq!(st, StatusCode::CREATED, "{p2}");
    let (p1, p2) = (p1["id"].as_i64().unwrap(), p2["id"].as_i64().unwrap());

    // A person enabled them: one command per agent the poller runs on
    // (made here too, in case the enable action does not make it yet).
    let enable_command = async |id| {
        let mut tx = app.state.db.begin_write().await.unwrap();
        let made = dispatch_web::api::agent::enable_command(&mut tx, id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        made
    };
    for id in [p1, p2] {
        let (st, _) = s
            .call(Method::POST, &format!("/api/v1/pollers/{id}/enable"), None)
            .await;
        assert_eq!(st, StatusCode::OK);
        enable_command(id).await;
    }
    assert_eq!(enable_command(p2).await, 0, "not twice while open");

    // p1 by its id, p2 by name only (an older agent).
    let until = dispatch_web::now_ms() + 3_600_000;
    let hb = json!({"version": "0.2.0", "host_name": "media-01", "config_etag": "\"e1\"",
    "config_error": "module dir 9.9.9 did not verify", "journal_bytes": 52_400_000,
    "pollers": [
        {"id": p1.to_string(), "name": "p1", "consecutive_errors": 5, "disabled": true,
         "disabled_until": until, "reason": "disk full", "plugin_version": "0.1.0"},
        {"name": "p2", "consecutive_errors": 1, "reason": "timeout",
         "config_error": "bad parameter markers"},
    ]});
    let commands = beat(&app, &edge1, hb.clone()).await;
    let kinds: Vec<(String, String)> = commands
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().into(),
                c["poller_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("enable".into(), p1.to_string()),
            ("enable".into(), p2.to_string())
        ]
    );
    assert!(commands.iter().all(|c| c["id"].is_string()));

    let a = agent_view(&s, "edge1").await;
    assert_eq!(
        (a["config_error"].clone(), a["config_etag"].clone()),
        (json!("module dir 9.9.9 did not verify"), json!("\"e1\""))
    );
    let states = a["poller_states"].as_array().unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(
        (
            states[0]["poller"].clone(),
            states[0]["consecutive_errors"].clone(),
            states[0]["disabled"].clone(),
            states[0]["disabled_until"].clone(),
            states[0]["reason"].clone(),
            states[0]["plugin_version"].clone()
        ),
        (
            json!("p1"),
            json!(5),
            json!(true),
            json!(until),
            json!("disk full"),
            json!("0.1.0")
        )
    );
    assert_eq!(states[1]["config_error"], "bad parameter markers");
    // The poller's own columns, as before, for the pages that read them.
    let (_, v) = s
        .call(Method::GET, &format!("/api/v1/pollers/{p1}"), None)
        .await;
    assert_eq!(
        (
            v["consecutive_errors"].clone(),
            v["disabled_by_agent"].clone()
        ),
        (json!(5), json!("edge1"))
    );

    // Done commands are not handed out again; another agent's are not
    // its to close.
    let edge2_cmds = beat(&app, &edge2, json!({"version": "0.2.0", "host_name": "b"})).await;
    assert_eq!(edge2_cmds.len(), 1);
    let mut done = hb.clone();
    done["done"] = json!([commands[0]["id"], edge2_cmds[0]["id"], "not-a-number"]);
    let left = beat(&app, &edge1, done).await;
    assert_eq!(left, commands[1..].to_vec());
    assert_eq!(beat(&app, &edge1, hb.clone()).await, commands[1..].to_vec());
    assert_eq!(
        beat(&app, &edge2, json!({"version": "0.2.0", "host_name": "b"})).await,
        edge2_cmds
    );

    // The pages say it: the agent's page, the list, the dashboard.
    let id = a["id"].as_i64().unwrap();
    let html = page(&app, &s, &format!("/agents/{id}")).await;
    for text in [
        "disk full",
        "module dir 9.9.9 did not verify",
        "bad parameter markers",
        "0.1.0",
        "Disabled by agent",
        "reset the breaker of poller p2",
        "52.4 MB",
    ] {
        assert!(html.contains(text), "{text} missing from the agent page");
    }
    let html = page(&app, &s, "/agents").await;
    assert!(html.contains("Configuration not applied: module dir 9.9.9"));
    let html = page(&app, &s, "/live/dashboard").await;
    assert!(html.contains("Configuration not applied: module dir 9.9.9"));
    assert!(html.contains("on edge1; 5 failures in a row"), "{html}");

    // A poller taken away from the agent: its state goes with it.
    on_db!(&app.state.db, pool => {
        sqlx::query("DELETE FROM poller_agents WHERE poller_id = $1 AND agent_id = $2")
            .bind(p2)
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    beat(&app, &edge1, hb).await;
    let a = agent_view(&s, "edge1").await;
    assert_eq!(a["poller_states"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_request_becomes_a_command_for_its_agent_only() {
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let t0 = 1_700_000_000_000i64;
    // The same transfer id on both agents: two different transfers.
    for token in [&edge1, &edge2] {
        let batch = json!({"events": [event("e1", "t1", "A/x.mxf", "error", t0)]});
        let res = app
            .agent(Method::POST, "/api/v1/agent/events", token, Some(batch))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let (_, found) = s
        .call(Method::GET, "/api/v1/transfers?agent=edge1", None)
        .await;
    let row = found["items"][0]["id"].as_i64().unwrap();
    let retry = || async {
        app.http
            .post(app.url(&format!("/transfers/{row}/retry")))
            .header("cookie", &s.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={}", s.csrf))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert!(retry().await.is_success());
    assert!(retry().await.is_success(), "asked twice");
    let hb = json!({"version": "0.2.0", "host_name": "h"});
    let commands = beat(&app, &edge1, hb.clone()).await;
    assert_eq!(commands.len(), 1, "one command, not two: {commands:?}");
    assert_eq!(
        (
            commands[0]["kind"].clone(),
            commands[0]["transfer_id"].clone()
        ),
        (json!("retry"), json!("t1"))
    );
    assert_eq!(beat(&app, &edge2, hb.clone()).await, Vec::<Value>::new());
    // Commands never go into the configuration.
    let cfg = app
        .agent(Method::GET, "/api/v1/agent/config", &edge1, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !cfg.contains("retry_now") && !cfg.contains("\"t1\""),
        "{cfg}"
    );
    // The transfer starts again: the retry is done, said or not.
    let batch = json!({"events": [event("e2", "t1", "A/x.mxf", "started", t0 + 10)]});
    app.agent(Method::POST, "/api/v1/agent/events", &edge1, Some(batch))
        .await;
    assert_eq!(beat(&app, &edge1, hb).await, Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_a_newer_agent_sends_are_accepted() {
    let app = App::start().await;
    let (s, edge1, _) = setup(&app).await;
    let mut e = event("e1", "t1", "A/x.mxf", "queued", 1_700_000_000_000);
    e["checksum"] = json!({"sha256": "ab"});
    e["poller_id"] = json!("7");
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge1,
            Some(json!({"events": [e], "batch_no": 3})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], 1);
    let hb = json!({"version": "9.0.0", "host_name": "h", "gpu": {"n": 1}, "done": [],
        "pollers": [{"name": "p9", "temperature": 3, "disabled_until": null, "consecutive_errors": 2}]});
    assert!(beat(&app, &edge1, hb).await.is_empty());
    // Agents send the list only when it changed, and say so.
    assert!(
        beat(
            &app,
            &edge1,
            json!({"version": "9.0.0", "host_name": "h", "pollers_unchanged": true})
        )
        .await
        .is_empty()
    );
    let html = page(&app, &s, "/live/dashboard").await;
    assert!(html.contains("2 failures in a row on edge1"), "{html}");
    // Still refused: what the app cannot store.
    let mut bad = event("e2", "t2", "x", "queued", 1);
    bad["id"] = json!("");
    let res = app
        .agent(
            Method::POST,
            "/api/v1/agent/events",
            &edge1,
            Some(json!({"events": [bad]})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "events[0].id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_seeded_once_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::start().await;
    let db = &app.state.db;
    for plugin in ["dir", "google"] {
        dispatch_web::register(&app.state, &Source::File(plugin_file(plugin)))
            .await
            .unwrap();
    }
    let token = app.data.path().join("local.token");
    dispatch_web::ensure_local_agent(&app.state.db, "local", &token)
        .await
        .unwrap();
    let mode = std::fs::metadata(&token).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let demo = app.data.path().join("demo");
    assert!(
        dispatch_web::demo::seed(&app.state, "local", &demo)
            .await
            .unwrap()
    );
    assert!(demo.join("outgoing/google").is_dir() && demo.join("delivered/dir").is_dir());
    let rows: Vec<(String, String, bool)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT p.name, t.name, p.enabled FROM pollers p JOIN targets t ON t.id = p.target_id
             JOIN poller_agents pa ON pa.poller_id = p.id JOIN agents a ON a.id = pa.agent_id
             WHERE a.name = 'local' ORDER BY p.name",
        )
        .fetch_all(pool)
        .await
    })
    .unwrap();
    assert_eq!(
        rows,
        [
            ("demo_dir".into(), "demo-dir".into(), true),
            ("demo_google".into(), "demo-google".into(), true)
        ]
    );
    // The agent gets them, with absolute paths.
    let tok = std::fs::read_to_string(&token).unwrap();
    let cfg: Value = app
        .agent(Method::GET, "/api/v1/agent/config", tok.trim(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["pollers"].as_array().unwrap().len(), 2, "{cfg}");
    assert!(cfg["pollers"][0]["path"].as_str().unwrap().starts_with('/'));

    // A person changes one and deletes the other: a restart keeps that,
    // and the token too.
    on_db!(db, pool => {
        sqlx::query("UPDATE pollers SET stability_secs = 42 WHERE name = 'demo_dir'")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    on_db!(db, pool => {
        sqlx::query("DELETE FROM pollers WHERE name = 'demo_google'")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    dispatch_web::ensure_local_agent(&app.state.db, "local", &token)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&token).unwrap(), tok);
    assert!(
        !dispatch_web::demo::seed(&app.state, "local", &demo)
            .await
            .unwrap()
    );
    let left: Vec<(String, f64)> = on_db!(db, pool => {
        sqlx::query_as("SELECT name, stability_secs FROM pollers")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    assert_eq!(left, [("demo_dir".into(), 42.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_builtin_under_a_registered_version_still_starts_and_keeps_the_registered_build()
{
    let app = App::start().await;
    // The `dir` built-in as registered before WIT 0.2.0, then its rebuild
    // under the same version: start-up goes on with the registered build.
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testing/compat/wit-0.1.0/dir.wasm");
    dispatch_web::register(&app.state, &Source::File(old))
        .await
        .unwrap();
    let kept = dispatch_web::register(&app.state, &Source::File(plugin_file("dir")))
        .await
        .unwrap();
    assert!(kept.contains("kept the registered build"), "{kept}");
    let wit: Vec<String> = on_db!(&app.state.db, pool => {
        sqlx::query_scalar("SELECT wit_version FROM plugin_versions")
            .fetch_all(pool)
            .await
    })
    .unwrap();
    assert_eq!(wit, ["0.1.0"]);
}

/// The statistics come from hourly rollups kept at ingest, not from a scan
/// of the log: whatever the events (retries, progress, transfers moving
/// across hours, batches out of order, replays), every range's figures are
/// what the log itself says, to the millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_from_the_rollups_are_what_the_log_says() {
    const HOUR: i64 = 3_600_000;
    let app = App::start().await;
    let (s, edge1, edge2) = setup(&app).await;
    let mut rng = fastrand::Rng::with_seed(0xD15_7A7C);
    let t0 = 1_700_000_000_000i64 - 1_700_000_000_000i64 % HOUR + 1234;
    let mut batches: Vec<(String, Vec<Value>)> = Vec::new();
    for t in 0..240 {
        let agent = if rng.bool() { &edge1 } else { &edge2 };
        let poller = ["news", "sports", "promos"][rng.usize(..3)];
        let size = rng.i64(1..5_000_000);
        // Over ten days, so ranges hold whole days (the daily rollups).
        let mut at = t0 + rng.i64(0..240 * HOUR);
        let mut events = Vec::new();
        let mut push = |kind: &str, at: i64, attempt: i64, done: i64| {
            events.push(
                json!({"id": format!("e{t}-{}", events.len()), "transfer_id": format!("t{t}"),
                "poller": poller, "path": format!("{poller}/f{t}.mxf"), "event": kind,
                "size": size, "bytes_done": done, "attempt": attempt, "at": at, "host": "h",
                "error": (kind == "error").then_some("refused")}),
            );
        };
        push("queued", at, 0, 0);
        for attempt in 1..=rng.i64(1..4) {
            at += rng.i64(0..HOUR / 2);
            push("started", at, attempt, 0);
            at += rng.i64(0..HOUR / 2);
            push("progress", at, attempt, size / 2);
            at += rng.i64(0..HOUR);
            let end = ["complete", "error", "cancelled", "complete"][rng.usize(..4)];
            if end == "complete" || rng.bool() {
                push(
                    end,
                    at,
                    attempt,
                    if end == "complete" { size } else { size / 2 },
                );
            }
            if end == "complete" {
                break;
            }
        }
        batches.push((agent.clone(), events));
    }
    // Out of order, in pieces, some twice.
    let mut pieces: Vec<(String, Vec<Value>)> = Vec::new();
    for (agent, events) in batches {
        for chunk in events.chunks(2) {
            pieces.push((agent.clone(), chunk.to_vec()));
        }
    }
    rng.shuffle(&mut pieces);
    let replays: Vec<(String, Vec<Value>)> = pieces.iter().take(40).cloned().collect();
    for (agent, events) in pieces.into_iter().chain(replays) {
        let res = app
            .agent(
                Method::POST,
                "/api/v1/agent/events",
                &agent,
                Some(json!({ "events": events })),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    let mut log = Vec::new();
    for page in 1.. {
        let (_, v) = s
            .call(
                Method::GET,
                &format!("/api/v1/transfers?per_page=200&page={page}"),
                None,
            )
            .await;
        log.extend(v["items"].as_array().unwrap().clone());
        if v["has_more"] != true {
            break;
        }
    }
    assert_eq!(log.len(), 240);
    let expected = |from: Option<i64>, to: Option<i64>| -> Value {
        let mut per: std::collections::BTreeMap<String, [i64; 4]> = Default::default();
        for t in &log {
            let at = t["updated_at"].as_i64().unwrap();
            if from.is_some_and(|f| at < f) || to.is_some_and(|e| at >= e) {
                continue;
            }
            let c = per
                .entry(t["poller"].as_str().unwrap().to_string())
                .or_default();
            c[0] += 1;
            match t["status"].as_str().unwrap() {
                "Complete" => {
                    c[1] += 1;
                    c[3] += t["size"].as_i64().unwrap();
                }
                "Error" => c[2] += 1,
                _ => {}
            }
        }
        Value::Array(
            per.into_iter()
                .map(|(p, [n, ok, err, bytes])| {
                    json!({"poller": p, "transfers": n, "complete": ok, "errors": err, "bytes_sent": bytes})
                })
                .collect(),
        )
    };
    let mut ranges = vec![
        (None, None),
        (Some(t0 - 1234), None),
        (None, Some(t0 + 24 * HOUR)),
        (Some(t0 + HOUR), Some(t0 + HOUR + 60_000)),
        (Some(t0 - 1234 + 5 * HOUR), Some(t0 - 1234 + 30 * HOUR)),
        (Some(t0 + 20 * HOUR), Some(t0 + 200 * HOUR)),
        (Some(i64::MIN), Some(i64::MAX)),
        (Some(i64::MAX - 5), None),
        (None, Some(i64::MIN + 5)),
    ];
    for _ in 0..25 {
        let a = t0 + rng.i64(-HOUR..250 * HOUR);
        let b = a + rng.i64(0..120 * HOUR);
        ranges.push((Some(a), Some(b)));
    }
    for (from, to) in ranges {
        let mut q = vec![];
        q.extend(from.map(|f| format!("from={f}")));
        q.extend(to.map(|t| format!("to={t}")));
        let (st, stats) = s
            .call(Method::GET, &format!("/api/v1/stats?{}", q.join("&")), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{stats}");
        assert_eq!(
            stats["per_poller"],
            expected(from, to),
            "from {from:?} to {to:?}"
        );
        let total: i64 = stats["per_poller"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["transfers"].as_i64().unwrap())
            .sum();
        assert_eq!(stats["transfers"], total);
    }
}

/// With a retention, finished transfers older than it leave the log (and
/// its search); transfers not finished stay whatever their age, and the
/// statistics go on counting what left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_forgets_old_finished_transfers_and_the_statistics_keep_them() {
    const DAY: i64 = 86_400_000;
    let app = App::start().await;
    let (s, edge1, _) = setup(&app).await;
    let now = dispatch_web::now_ms();
    let (old, recent) = (now - 40 * DAY, now - DAY);
    let batch = json!({"events": [
        event("a1", "old-ok", "A/old_sent.mxf", "started", old),
        event("a2", "old-ok", "A/old_sent.mxf", "complete", old + 10),
        event("b1", "old-err", "A/old_failed.mxf", "started", old),
        event("b2", "old-err", "A/old_failed.mxf", "error", old + 10),
        event("c1", "old-stuck", "A/old_stuck.mxf", "started", old),
        event("d1", "new-ok", "A/new_sent.mxf", "started", recent),
        event("d2", "new-ok", "A/new_sent.mxf", "complete", recent + 10),
    ]});
    let res = app
        .agent(Method::POST, "/api/v1/agent/events", &edge1, Some(batch))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, before) = s.call(Method::GET, "/api/v1/stats", None).await;
    assert_eq!(before["transfers"], 4, "{before}");

    let gone = dispatch_web::retention::forget_finished_transfers(
        &app.state.db,
        std::time::Duration::from_secs(30 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(gone, 2);
    let (_, log) = s.call(Method::GET, "/api/v1/transfers", None).await;
    let mut names: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["file_name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["new_sent.mxf", "old_stuck.mxf"]);
    let (_, found) = s
        .call(Method::GET, "/api/v1/transfers?q=old_sent", None)
        .await;
    assert_eq!(found["items"], json!([]), "the search still finds it");
    let (_, after) = s.call(Method::GET, "/api/v1/stats", None).await;
    assert_eq!(after, before, "the statistics lost what left the log");
}

/// A substring search reads the newest rows in order when its matches are
/// many, and asks the trigram index when they are few or the newest rows
/// hold too few of them: either way a page is exactly what a full scan
/// gives (ties in time included), at any depth and with the other filters
/// (on PostgreSQL those are in the trigram index too). The transfer
/// page's pickers offer every poller and agent of the log, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_gives_the_same_pages_for_common_and_rare_substrings() {
    const ROWS: i64 = 25_000;
    let app = App::start().await;
    let s = app.login().await;
    let db = &app.state.db;
    let mut tx = db.begin_write().await.unwrap();
    for i in 0..ROWS {
        let tag = if i % 2500 == 7 {
            "_RareCut"
        } else if i % 97 == 0 {
            "_promo"
        } else {
            ""
        };
        // The oldest 20,000: a substring common in the log but not among
        // its newest rows.
        let age = if i < 20_000 { "early_" } else { "" };
        let name = format!("{age}show{:03}_ep{i:05}{tag}.mxf", i % 300);
        dispatch_web::on_tx!(&mut tx, conn => {
            sqlx::query(
                "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, host, updated_at)
                 VALUES (1, $6, $1, $2, $3, $4, 1, 1, $7, 1, 'h', $5)",
            )
            .bind(format!("t{i}"))
            .bind(if i % 3 == 0 { "news" } else { "sports" })
            .bind(format!("in/{name}"))
            .bind(&name)
            // Three rows per millisecond: ties in time.
            .bind(1_700_000_000_000i64 + i / 3)
            .bind(if i % 7 == 0 { "edge2" } else { "edge" })
            .bind(if i % 5 == 0 { "Error" } else { "Complete" })
            .execute(conn)
            .await
            .map(|_| ())
        })
        .unwrap();
    }
    tx.commit().await.unwrap();
    let news: &[(&str, &str)] = &[("poller", "news")];
    let cases = [
        ("q=.mxf", "%.mxf%", &[][..], 1, 50),
        ("q=.MXF", "%.mxf%", &[], 3, 50),
        ("q=.mxf", "%.mxf%", &[], 450, 50),
        (
            "q=.mxf",
            "%.mxf%",
            &[("status", "Error"), ("agent", "edge2")],
            2,
            50,
        ),
        ("q=promo", "%promo%", &[], 1, 100),
        ("q=promo", "%promo%", &[], 3, 100),
        ("q=rarecut", "%rarecut%", &[], 1, 50),
        ("q=rarecut", "%rarecut%", &[("status", "Complete")], 1, 50),
        ("q=show042", "%show042%", news, 1, 20),
        ("q=show042", "%show042%", news, 2, 20),
        (
            "q=show042",
            "%show042%",
            &[("poller", "news"), ("status", "Error")],
            1,
            20,
        ),
        (
            "q=show042",
            "%show042%",
            &[("poller", "sports"), ("agent", "edge2")],
            1,
            20,
        ),
        ("q=show042", "%show042%", &[("status", "Cancelled")], 1, 20),
        ("q=nothing-like-it", "%nothing-like-it%", &[], 1, 50),
        ("q=early", "%early%", &[], 1, 50),
        ("q=early", "%early%", &[], 300, 50),
        ("q=early", "%early%", news, 2, 50),
    ];
    for (q, like, filters, page, per_page) in cases {
        let mut path = format!("/api/v1/transfers?{q}&page={page}&per_page={per_page}");
        // A full scan, folding case as the search does.
        let mut reference = Sql::new("SELECT id FROM transfers WHERE LOWER(file_name) LIKE ");
        reference.bind(like);
        for (column, value) in filters {
            path.push_str(&format!("&{column}={value}"));
            reference.push(&format!(" AND {column} = ")).bind(*value);
        }
        reference
            .push(" ORDER BY updated_at DESC, id DESC LIMIT ")
            .bind(per_page + 1)
            .push(" OFFSET ")
            .bind((page - 1) * per_page);
        let want: Vec<i64> = reference
            .fetch_all::<(i64,)>(db)
            .await
            .unwrap()
            .into_iter()
            .map(|(id,)| id)
            .collect();
        let (st, got) = s.call(Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {got}");
        let ids: Vec<i64> = got["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        let more = want.len() as i64 > per_page;
        let want: Vec<i64> = want.into_iter().take(per_page as usize).collect();
        assert_eq!(ids, want, "{path}");
        assert_eq!(got["has_more"], more, "{path}");
    }

    let html = page(&app, &s, "/transfers").await;
    let options = |select: &str| -> Vec<String> {
        let from = html.find(&format!("<select id=\"{select}\"")).unwrap();
        let list = &html[from..from + html[from..].find("</select>").unwrap()];
        list.split("<option")
            .skip(2) // the select itself, then "any"
            .map(|o| o[o.find('>').unwrap() + 1..o.find("</option>").unwrap()].to_string())
            .collect()
    };
    assert_eq!(options("poller"), ["news", "sports"]);
    assert_eq!(options("agent"), ["edge", "edge2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_past_the_limits_are_refused_whole_naming_the_limit() {
    let app = App::start().await;
    let (s, edge1, _) = setup(&app).await;
    let t0 = 1_700_000_000_000i64;
    let post = |path: &'static str, body: Value| app.agent(Method::POST, path, &edge1, Some(body));
    // One event more than a batch may hold: 413, naming the limit.
    let many: Vec<Value> = (0..=5_000)
        .map(|i| event(&format!("m{i}"), "tm", "A/m.mxf", "progress", t0 + i))
        .collect();
    let res = post("/api/v1/agent/events", json!({ "events": many })).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 5000 events"),
        "{body}"
    );
    // A field past its limit: 422 naming the field, and nothing of the
    // batch is taken (the good event before it neither).
    let long_path = format!("A/{}", "x".repeat(4_095));
    let mut long_error = event("e2", "t2", "A/y.mxf", "error", t0);
    long_error["error"] = json!("e".repeat(8_193));
    for (bad, field) in [
        (
            event("e1", "t1", &long_path, "queued", t0),
            "events[1].path",
        ),
        (long_error, "events[1].error"),
        (
            event(&"i".repeat(129), "t3", "A/z.mxf", "queued", t0),
            "events[1].id",
        ),
    ] {
        let batch = json!({"events": [event("ok", "t0", "A/ok.mxf", "queued", t0), bad]});
        let res = post("/api/v1/agent/events", batch).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("at most"),
            "{body}"
        );
    }
    let (_, found) = s.call(Method::GET, "/api/v1/transfers", None).await;
    assert_eq!(found["items"], json!([]), "{found}");
    // At the limits exactly: taken.
    let mut at_limit = event("e9", "t9", &format!("A/{}", "x".repeat(4_094)), "error", t0);
    at_limit["error"] = json!("e".repeat(8_192));
    let res = post("/api/v1/agent/events", json!({ "events": [at_limit] })).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Heartbeats too.
    let states: Vec<Value> = (0..=10_000)
        .map(|i| json!({"name": format!("p{i}")}))
        .collect();
    let res = post(
        "/api/v1/agent/heartbeat",
        json!({"version": "1", "host_name": "h", "pollers": states}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = post(
        "/api/v1/agent/heartbeat",
        json!({"version": "1", "host_name": "h".repeat(257)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "host_name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_holds_at_most_four_long_polls_open() {
    let app = App::start().await;
    let (_s, edge1, edge2) = setup(&app).await;
    let etag_of = async |token: &str| {
        let res = app
            .agent(Method::GET, "/api/v1/agent/config", token, None)
            .await;
        res.headers()["etag"].to_str().unwrap().to_string()
    };
    let (etag1, etag2) = (etag_of(&edge1).await, etag_of(&edge2).await);
    let long_poll = |token: &str, etag: &str, wait: u32| {
        app.http
            .get(app.url(&format!("/api/v1/agent/config?wait={wait}")))
            .bearer_auth(token)
            .header("if-none-match", etag)
            .send()
    };
    let open: Vec<_> = (0..4)
        .map(|_| tokio::spawn(long_poll(&edge1, &etag1, 5)))
        .collect();
    // Wait until the server holds all four.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("dispatch_config_long_polls 4") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let res = long_poll(&edge1, &etag1, 5).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("4 configuration requests"),
        "{body}"
    );
    // Another agent is not held back by it.
    let res = long_poll(&edge2, &etag2, 1).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // Once they end, the slots are free again.
    for o in open {
        assert_eq!(o.await.unwrap().unwrap().status(), StatusCode::NOT_MODIFIED);
    }
    let res = long_poll(&edge1, &etag1, 1).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

/// Every operation of the published API a person can call, with the least
/// role that may (`{id}`-style parts filled from `ids`).
fn role_table(
    ids: &std::collections::HashMap<&str, String>,
) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let fill = |p: &str| {
        let mut p = p.to_string();
        for (k, v) in ids {
            p = p.replace(&format!("{{{k}}}"), v);
        }
        p
    };
    let rows: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (Method::GET, "/api/v1/me", None, "viewer"),
        (Method::GET, "/api/v1/plugins", None, "viewer"),
        (Method::GET, "/api/v1/plugins/{key}", None, "viewer"),
        (Method::GET, "/api/v1/wit/{version}", None, "viewer"),
        (Method::GET, "/api/v1/agents", None, "viewer"),
        (Method::GET, "/api/v1/agents/{id}/settings", None, "viewer"),
        (Method::GET, "/api/v1/targets", None, "viewer"),
        (Method::GET, "/api/v1/targets/{id}", None, "viewer"),
        (Method::GET, "/api/v1/pollers", None, "viewer"),
        (Method::GET, "/api/v1/pollers/{id}", None, "viewer"),
        (Method::GET, "/api/v1/transfers", None, "viewer"),
        (Method::GET, "/api/v1/transfers.csv", None, "viewer"),
        (Method::GET, "/api/v1/stats", None, "viewer"),
        (
            Method::POST,
            "/api/v1/pollers",
            Some(poller_body("p_roles")),
            "operator",
        ),
        (
            Method::PUT,
            "/api/v1/pollers/{id}",
            Some(poller_body("p_renamed")),
            "operator",
        ),
        // Enabled, then disabled: a disabled poller can be deleted.
        (
            Method::POST,
            "/api/v1/pollers/{id}/enable",
            None,
            "operator",
        ),
        (
            Method::POST,
            "/api/v1/pollers/{id}/disable",
            Some(json!({"reason": "r"})),
            "operator",
        ),
        (Method::DELETE, "/api/v1/pollers/{id}", None, "operator"),
        (
            Method::PUT,
            "/api/v1/agents/{id}/settings",
            Some(json!({})),
            "admin",
        ),
        (
            Method::POST,
            "/api/v1/agents",
            Some(json!({"name": "edge-roles"})),
            "admin",
        ),
        (Method::DELETE, "/api/v1/agents/{id}", None, "admin"),
        (
            Method::POST,
            "/api/v1/targets",
            Some(json!({"name": "t_roles", "target": {"kind": "local", "destination": "/tmp/x"}})),
            "admin",
        ),
        (
            Method::PUT,
            "/api/v1/targets/{id}",
            Some(json!({"name": "t_roles2", "target": {"kind": "local", "destination": "/tmp/y"}})),
            "admin",
        ),
        (Method::DELETE, "/api/v1/targets/{id}", None, "admin"),
        (Method::POST, "/api/v1/plugins", None, "admin"),
        (
            Method::DELETE,
            "/api/v1/plugins/{name}/versions/{version}",
            None,
            "admin",
        ),
        (Method::GET, "/api/v1/users", None, "admin"),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "newbie", "password": "long-enough-1", "role": "viewer"})),
            "admin",
        ),
        (
            Method::PUT,
            "/api/v1/users/{id}",
            Some(json!({"role": "viewer"})),
            "admin",
        ),
        (Method::DELETE, "/api/v1/users/{id}", None, "admin"),
        // Your own password and sessions: everyone's (checked last, apart).
        (Method::POST, "/api/v1/me/password", None, "viewer"),
        (Method::POST, "/api/v1/logout/everywhere", None, "viewer"),
        (Method::POST, "/api/v1/logout", None, "viewer"),
    ];
    rows.into_iter()
        .map(|(m, p, b, r)| (m, fill(p), b, r))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_what_is_not_theirs_on_every_endpoint() {
    let app = App::start().await;
    let (admin, _, _) = setup(&app).await;
    for (name, role) in [("olga", "operator"), ("vic", "viewer")] {
        let (st, body) = admin
            .call(
                Method::POST,
                "/api/v1/users",
                Some(json!({"username": name, "password": "long-enough-1", "role": role})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["role"], role);
    }
    let (st, p) = admin
        .call(Method::POST, "/api/v1/pollers", Some(poller_body("p_main")))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    let (_, users) = admin.call(Method::GET, "/api/v1/users", None).await;
    let vic_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "vic")
        .unwrap()["id"]
        .to_string();
    let ids = std::collections::HashMap::from([
        ("id", p["id"].to_string()),
        ("key", "dir".to_string()),
        ("version", "0.1.0".to_string()),
        ("name", "dir".to_string()),
    ]);

    // Every operation of the published API is in the table.
    let doc: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let table = role_table(&ids);
    let raw = role_table(&std::collections::HashMap::new());
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/api/v1/agent/") || path == "/api/v1/login" || path == "/api/v1/health"
        {
            continue; // agents' bearer token, or no session at all
        }
        for method in item.as_object().unwrap().keys() {
            assert!(
                raw.iter()
                    .any(|(m, p, _, _)| m.as_str().eq_ignore_ascii_case(method) && p == path),
                "{method} {path} has no role in the table"
            );
        }
    }

    let operator = app.login_as("olga", "long-enough-1").await;
    let viewer = app.login_as("vic", "long-enough-1").await;
    // Pages follow the same rule.
    let res = app
        .http
        .post(app.url("/pollers/new"))
        .header("cookie", &viewer.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&name=x", viewer.csrf))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let page = res.text().await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("needs the operator role"));
    let sessions = [
        ("viewer", &viewer),
        ("operator", &operator),
        ("admin", &admin),
    ];
    let rank = |r: &str| {
        ["viewer", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, body, least) in table
        .iter()
        .filter(|(_, p, _, _)| !p.contains("/logout") && !p.ends_with("/me/password"))
    {
        let path = if path.starts_with("/api/v1/users/") {
            format!("/api/v1/users/{vic_id}")
        } else {
            path.clone()
        };
        for (role, s) in sessions {
            let (st, answer) = s.call(method.clone(), &path, body.clone()).await;
            if rank(role) < rank(least) {
                assert_eq!(
                    st,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {answer}"
                );
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("needs the {least} role")),
                    "{answer}"
                );
            } else {
                assert!(
                    st != StatusCode::FORBIDDEN && st != StatusCode::UNAUTHORIZED,
                    "{role} {method} {path}: {st} {answer}"
                );
            }
        }
    }
    // The viewer's refused delete left the poller for the operator's to
    // remove (the admin's then found nothing): it is gone now.
    let (st, _) = admin
        .call(Method::GET, &format!("/api/v1/pollers/{}", p["id"]), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_the_other_sessions_and_logging_out_everywhere_ends_all() {
    let app = App::start().await;
    let admin = app.login().await;
    let (st, _) = admin
        .call(
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "vic", "password": "long-enough-1", "role": "viewer"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let here = app.login_as("vic", "long-enough-1").await;
    let elsewhere = app.login_as("vic", "long-enough-1").await;
    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    // Wrong current password, or too short a new one: refused, nothing ends.
    let (st, _) = here
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(change("wrong-one-1", "another-pw-2")),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = here
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(change("long-enough-1", "short")),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "new");
    assert_eq!(
        elsewhere.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::OK
    );
    let (st, _) = here
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(change("long-enough-1", "another-pw-2")),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        here.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        elsewhere.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let res = app
        .http
        .post(app.url("/api/v1/login"))
        .json(&json!({"username": "vic", "password": "long-enough-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the old password");
    let again = app.login_as("vic", "another-pw-2").await;
    let (st, _) = here
        .call(Method::POST, "/api/v1/logout/everywhere", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for s in [&here, &again] {
        assert_eq!(
            s.call(Method::GET, "/api/v1/me", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // The last admin stays one; an admin's new password for someone ends
    // their sessions.
    let (_, users) = admin.call(Method::GET, "/api/v1/users", None).await;
    let id_of = |n: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == n)
            .unwrap()["id"]
            .clone()
    };
    let (st, body) = admin
        .call(
            Method::PUT,
            &format!("/api/v1/users/{}", id_of("admin")),
            Some(json!({"role": "operator"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let (st, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{}", id_of("admin")),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let vic = app.login_as("vic", "another-pw-2").await;
    let (st, _) = admin
        .call(
            Method::PUT,
            &format!("/api/v1/users/{}", id_of("vic")),
            Some(json!({"password": "set-by-admin-3"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        vic.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Expired sessions are purged.
    on_db!(&app.state.db, pool => {
        sqlx::query("UPDATE sessions SET expires_at = 0")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    assert!(
        dispatch_web::retention::forget_expired_sessions(&app.state.db)
            .await
            .unwrap()
            >= 1
    );
    let left: i64 = on_db!(&app.state.db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(pool)
            .await
    })
    .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_are_managed_and_passwords_changed_on_the_pages() {
    let app = App::start().await;
    let admin = app.login().await;
    // Forms are plain `application/x-www-form-urlencoded`: these values
    // need no escaping.
    let post = |s: &Session<'_>, path: &str, fields: &str| {
        app.http
            .post(app.url(path))
            .header("cookie", &s.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={}&{fields}", s.csrf))
            .send()
    };
    let page = |s: &Session<'_>, path: &str| {
        app.http
            .get(app.url(path))
            .header("cookie", &s.cookie)
            .send()
    };
    let res = post(
        &admin,
        "/users",
        "username=vic&password=long-enough-1&role=viewer",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("data-user=\"vic\""));
    let res = post(&admin, "/users", "username=bob&password=short&role=viewer")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("at least 10 characters"));
    assert!(
        page(&admin, "/")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("href=\"/users\"")
    );

    let vic = app.login_as("vic", "long-enough-1").await;
    let other = app.login_as("vic", "long-enough-1").await;
    assert_eq!(
        page(&vic, "/users").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let home = page(&vic, "/").await.unwrap().text().await.unwrap();
    assert!(
        !home.contains("href=\"/users\""),
        "no People link for a viewer"
    );
    let account = page(&vic, "/account").await.unwrap().text().await.unwrap();
    assert!(
        account.contains("<strong id=\"role\">viewer</strong>"),
        "{account}"
    );
    let res = post(
        &vic,
        "/account/password",
        "current=wrong-pw-000&new=another-pw-2",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("the current password is wrong")
    );
    let res = post(
        &vic,
        "/account/password",
        "current=long-enough-1&new=another-pw-2",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Password changed"));
    assert_eq!(
        other.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        vic.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::OK
    );

    let (_, users) = admin.call(Method::GET, "/api/v1/users", None).await;
    let id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "vic")
        .unwrap()["id"]
        .clone();
    post(&admin, &format!("/users/{id}/role"), "role=operator")
        .await
        .unwrap();
    assert_eq!(
        vic.call(Method::GET, "/api/v1/me", None).await.1["role"],
        "operator"
    );
    let res = post(&vic, "/account/logout-everywhere", "").await.unwrap();
    assert!(res.url().path().starts_with("/login"));
    assert_eq!(
        vic.call(Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    post(&admin, &format!("/users/{id}/delete"), "")
        .await
        .unwrap();
    let (_, users) = admin.call(Method::GET, "/api/v1/users", None).await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
}
