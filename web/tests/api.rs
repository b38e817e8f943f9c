//! The JSON API against a real server on loopback with a real SQLite file:
//! every endpoint, the bad inputs of the issue, token checks, idempotent
//! ingest, the long poll, and secrets never shown back.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
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
            database_url: None,
            secret_key: None,
            upload_limit: 1 << 20,
            secure_cookies: false,
        })
        .await
        .unwrap();
        dispatch_web::ensure_admin(&state.pool, "admin", Some("admin-pw"))
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
        let res = self
            .http
            .post(self.url("/api/v1/login"))
            .json(&json!({"username": "admin", "password": "admin-pw"}))
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
        "host": "aspera.example.net", "username": "aff", "password": PASSWORD,
        "destination": "/in", "agents": ["edge1"], "excludes": "*.tmp,Thumbs.db"
    })
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
    assert_eq!(v["wit_version"], "0.1.0");
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
    let mut b = poller_body("p1");
    b["ssh_key"] = json!(KEY);
    let (st, e) = post(b).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password")),
        "{e}"
    );
    let mut b = poller_body("p1");
    b.as_object_mut().unwrap().remove("password");
    let (st, e) = post(b).await;
    assert_eq!(
        e["error"], "give a password or an SSH key, exactly one of the two",
        "{st}"
    );
    let mut b = poller_body("p1");
    b["encrypt"] = json!(true);
    let (st, e) = post(b).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("passphrase"))
    );
    let mut b = poller_body("p1");
    b["plugin"] = json!("nope");
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "plugin");
    let mut b = poller_body("p1");
    b["params"] = json!({"colour": "red"});
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "params.colour", "{e}");
    let mut b = poller_body("p1");
    b["agents"] = json!(["ghost"]);
    let (_, e) = post(b).await;
    assert_eq!(e["field"], "agents");
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

    // A good one: secrets stored, never shown.
    let mut b = poller_body("p1");
    b["encrypt"] = json!(true);
    b["passphrase"] = json!(PASSPHRASE);
    let (st, p) = post(b).await;
    assert_eq!(st, StatusCode::CREATED, "{p}");
    assert_eq!(p["has_password"], true);
    assert_eq!(p["has_passphrase"], true);
    assert_eq!(p["has_ssh_key"], false);
    assert_eq!(p["plugin_version"], "latest");
    assert_eq!(p["resolved_version"], "0.1.0");
    assert_eq!(p["speed_mbps"], 150.0);
    assert_eq!(p["port"], 22);
    assert_eq!(p["max_transfers"], 3);
    let id = p["id"].as_i64().unwrap();
    let (st, e) = post(poller_body("p1")).await;
    assert_eq!(
        (st, e["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );
    // At rest the secrets are ciphertext.
    let db = std::fs::read(app.data.path().join("data/dispatch.sqlite")).unwrap();
    let wal = std::fs::read(app.data.path().join("data/dispatch.sqlite-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(PASSWORD) && !text.contains(PASSPHRASE),
            "a secret in the database file"
        );
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(app.data.path().join("data/secret.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    // Update without secrets keeps them; switching to a key needs the password cleared.
    let mut b = poller_body("p1");
    b.as_object_mut().unwrap().remove("password");
    b["encrypt"] = json!(true);
    b["speed_mbps"] = json!(300);
    let (st, p) = s
        .call(
            Method::PUT,
            &format!("/api/v1/pollers/{id}"),
            Some(b.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(
        (p["has_password"].clone(), p["speed_mbps"].clone()),
        (json!(true), json!(300.0))
    );
    b["ssh_key"] = json!(KEY);
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("/api/v1/pollers/{id}"),
            Some(b.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    b["password"] = json!("");
    let (st, p) = s
        .call(Method::PUT, &format!("/api/v1/pollers/{id}"), Some(b))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (p["has_password"].clone(), p["has_ssh_key"].clone()),
        (json!(false), json!(true))
    );

    // Enable, refuse delete, disable, delete.
    let (_, p) = s
        .call(Method::POST, &format!("/api/v1/pollers/{id}/enable"), None)
        .await;
    assert_eq!(p["enabled"], true);
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
    assert_eq!(p1["target"]["password"], PASSWORD);
    let sha = p1["plugin_sha256"].as_str().unwrap().to_string();

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
        StatusCode::NO_CONTENT
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
    assert!(
        metrics.contains("dispatch_transfers{status=\"Complete\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("dispatch_agents 2"), "{metrics}");
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
    assert!(doc["components"]["schemas"]["PollerInput"]["properties"]["password"].is_object());
    let unknown = app
        .http
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(app.state.data_dir.join("dispatch.sqlite").exists());
}
