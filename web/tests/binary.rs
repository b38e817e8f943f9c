//! `dispatch-web` as `cargo xtask up` runs it: the first start creates an
//! admin and prints the password once, registers the built-in pollers, and
//! a restart keeps both.
#![allow(clippy::unwrap_used, clippy::zombie_processes)] // a test helper that fails panics

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// The server process, killed when the test ends (also on a failure).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server; returns it, its base URL and the lines it printed
/// before listening.
fn start(data: &std::path::Path, config: &std::path::Path) -> (Server, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args(["--config"])
        .arg(config)
        .arg("--register-plugins")
        .arg(plugin_dir())
        .env("DISPATCH_DATA_DIR", data)
        .env_remove("DISPATCH_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "exited early: {lines:?}"
        );
        if let Some(addr) = line.trim().strip_prefix("dispatch-web listening on ") {
            return (Server(child), addr.to_string(), lines);
        }
        lines.push(line.trim().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_the_admin_password_once_and_registers_the_builtins() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ninsecure_cookies = true\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (child, base, said) = start(&data, &config);
    assert_eq!(said.len(), 1, "{said:?}");
    let password = said[0]
        .strip_prefix("First start: created user `admin` with password ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    let login = |pw: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/api/v1/login"))
                .json(&serde_json::json!({"username": "admin", "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    let res = login(password.clone()).await;
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        !cookie.contains("Secure"),
        "insecure_cookies from the TOML file"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let plugins: serde_json::Value = http
        .get(format!("{base}/api/v1/plugins"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dir", "dirtar", "file", "google", "pa", "subdir", "telus"]
    );
    assert!(data.join("dispatch.sqlite").exists());
    drop(child);

    // A restart: no new password, the same seven plugins (one version each).
    let (child, base, said) = start(&data, &config);
    assert!(said.is_empty(), "{said:?}");
    let res = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let plugins: serde_json::Value = http
        .get(format!("{base}/api/v1/plugins"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        plugins
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["versions"] == 1),
        "{plugins}"
    );
    drop(child);
}

#[test]
fn bad_settings_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\ncolour = \"red\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .arg("--config")
        .arg(&config)
        .env("DISPATCH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("web.toml") && err.contains("unknown field `colour`"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args([
            "--database-url",
            "postgres://x/y",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("DISPATCH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only sqlite: URLs are supported"), "{err}");
}
