//! `dispatch-web` as installed and as `cargo xtask up` runs it: the first
//! start creates an admin and prints the password once, registers the
//! built-in pollers compiled into it, and a restart keeps both.
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
/// `register`: with `--register-plugins`; without it, the built-ins the
/// binary holds are registered.
fn start(
    exe: &std::path::Path,
    data: &std::path::Path,
    config: &std::path::Path,
    register: bool,
) -> (Server, String, Vec<String>) {
    let mut cmd = Command::new(exe);
    cmd.args(["--config"]).arg(config);
    if register {
        cmd.arg("--register-plugins").arg(plugin_dir());
    }
    let mut child = cmd
        .env("DISPATCH_DATA_DIR", data)
        .env_remove("DISPATCH_ADMIN_PASSWORD")
        .env_remove("DISPATCH_PLUGIN_DIR")
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
    // The first start from the binary alone, in a directory of its own: it
    // registers the built-ins compiled into it.
    let alone = dir.path().join("bin/dispatch-web");
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_dispatch-web"), &alone).unwrap();
    let (child, base, said) = start(&alone, &data, &config, false);
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

    // A restart, given the same components as files: no new password, the
    // same seven plugins (one version each).
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_dispatch-web"));
    let (child, base, said) = start(exe, &data, &config, true);
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
    // A PostgreSQL server that is not there (nothing listens on port 1):
    // one line naming the database, its password not said back.
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args([
            "--database-url",
            "postgres://dispatch:hunter2-pw@127.0.0.1:1/dispatch",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("DISPATCH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("DATABASE_URL postgres://dispatch:***@127.0.0.1:1/dispatch")
            && !err.contains("hunter2"),
        "{err}"
    );
    // Neither SQLite nor PostgreSQL.
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-web"))
        .args([
            "--database-url",
            "mysql://127.0.0.1/x",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("DISPATCH_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("mysql://") && err.contains("sqlite:") && err.contains("postgres://"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_password_goes_to_a_private_file_when_one_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("first-admin-password");
    let config = dir.path().join("web.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ninsecure_cookies = true\nfirst_password_file = {:?}\n",
            file.display().to_string()
        ),
    )
    .unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_dispatch-web"));
    let data = dir.path().join("data");
    let (child, base, said) = start(exe, &data, &config, true);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(password.len(), 20);
    assert_eq!(
        said,
        [format!(
            "First start: created user `admin`; its password is in {} (change it after logging in)",
            file.display()
        )]
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(child);
    // A restart says nothing and leaves the file as it was.
    let (_child, _, said) = start(exe, &data, &config, true);
    assert!(said.is_empty(), "{said:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
}
