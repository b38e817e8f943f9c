//! A plugin author's side of the web app, with real processes:
//! `dispatch-agent plugin push` uploads to `dispatch-web` as a person
//! logged in, and the web app serves the contract's WIT by version.
#![allow(clippy::unwrap_used, clippy::zombie_processes)] // a test that fails panics

mod support;

use reqwest::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{ADMIN_PW, Site, agent_exe, test_plugin, venv_bin};

fn push(site: &Site, file: &Path, password_file: &Path) -> Output {
    Command::new(agent_exe())
        .args(["plugin", "push"])
        .arg(file)
        .args([
            "--server",
            &site.base(),
            "--user",
            "admin",
            "--password-file",
        ])
        .arg(password_file)
        .env_remove("DISPATCH_PASSWORD")
        .output()
        .unwrap()
}

/// Its stdout, after asserting it succeeded.
fn passed(what: &str, o: &Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {stdout}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// The one `error: ...` line of a failed command (exit code 1).
fn one_line_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

/// `bytes` with a custom section appended: the same component, other bytes
/// (so another sha256 under the same describe() version).
fn with_custom_section(mut bytes: Vec<u8>) -> Vec<u8> {
    let name = b"dispatch-test";
    let payload = b"rebuilt";
    let size = u8::try_from(1 + name.len() + payload.len()).unwrap();
    bytes.extend([0, size, u8::try_from(name.len()).unwrap()]);
    bytes.extend(name);
    bytes.extend(payload);
    bytes
}

/// The admin's password in a file, as `plugin push --password-file` reads it.
fn password_file(site: &Site) -> std::path::PathBuf {
    let path = site.path("password");
    std::fs::write(&path, format!("{ADMIN_PW}\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_uploads_a_version_and_a_refusal_says_why() {
    let site = Site::start().await;
    let password = password_file(&site);
    let file = site.path("stamp.wasm");
    std::fs::write(&file, test_plugin("stamp-v1")).unwrap();

    let stdout = passed("plugin push", &push(&site, &file, &password));
    // `pushed stamp 1.0.0 (dispatch:poller@0.1.0), sha256 <hex>`
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words[..2], ["pushed", "stamp"], "{stdout}");
    let (version, sha256) = (words[2], words[words.len() - 1]);
    let wit = words[3]
        .trim_start_matches("(dispatch:poller@")
        .trim_end_matches("),");
    let listed = site.call(Method::GET, "/plugins/stamp", None).await;
    let v = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("version {version} not listed: {listed}"));
    assert_eq!(v["sha256"], sha256);
    assert_eq!(v["wit_version"], wit);
    assert_eq!(v["uploaded_by"], "admin");

    // Other bytes under the same version: refused, with the web app's reason.
    std::fs::write(&file, with_custom_section(test_plugin("stamp-v1"))).unwrap();
    let err = one_line_error(&push(&site, &file, &password));
    assert!(
        err.contains(&format!(
            "plugin `stamp` already has a version {version} with other content"
        )),
        "{err}"
    );
    // A wrong password: the login's reason.
    std::fs::write(&password, "wrong").unwrap();
    let err = one_line_error(&push(&site, &file, &password));
    assert!(err.contains("wrong username or password"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wit_of_every_supported_version_is_served() {
    let site = Site::start().await;
    let get = async |version: &str| {
        site.http
            .get(format!("{}/api/v1/wit/{version}", site.base()))
            .send()
            .await
            .unwrap()
    };
    for version in dispatch_runtime::inspect::SUPPORTED_WIT_VERSIONS {
        let res = get(version).await;
        assert_eq!(res.status(), StatusCode::OK, "{version}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = res.text().await.unwrap();
        assert!(
            text.contains(&format!("package dispatch:poller@{version};")),
            "{version}: {text}"
        );
    }
    let res = get("9.9.9").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = res.json().await.unwrap();
    let known = dispatch_runtime::inspect::SUPPORTED_WIT_VERSIONS.join(", ");
    assert_eq!(
        body["error"],
        format!("no WIT version `9.9.9`: this server knows {known}")
    );
}

/// A path under the workspace's target dir, where `cargo xtask test`
/// installs the template toolchains.
fn workspace_target(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(rel)
}

/// `plugin new` a project in `lang`, build it with that language's one
/// command (the template README's, with the toolchain `cargo xtask test`
/// installed), check it on a tree with one ready folder, push it: what an
/// author does, in each language.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_project_in_each_language_builds_checks_and_pushes() {
    let site = Site::start().await;
    let password = password_file(&site);
    // One folder whose manifest lists a file that is there.
    let root = site.path("root");
    std::fs::create_dir_all(root.join("ready")).unwrap();
    std::fs::write(root.join("ready/data.txt"), "hello\n").unwrap();
    std::fs::write(
        root.join("ready/manifest.json"),
        r#"{"files": [{"name": "data.txt", "size": 6}]}"#,
    )
    .unwrap();
    let projects = site.path("projects");
    std::fs::create_dir_all(&projects).unwrap();

    for (lang, name) in [
        ("rust", "ingest-rs"),
        ("python", "ingest-py"),
        ("js", "ingest-js"),
    ] {
        passed(
            &format!("{lang}: plugin new"),
            &Command::new(agent_exe())
                .args(["plugin", "new", "--lang", lang, name, "--dir"])
                .arg(&projects)
                .output()
                .unwrap(),
        );
        let project = projects.join(name);
        let own = project.join(format!("{name}.wasm"));
        let (mut build, wasm) = match lang {
            // The dependencies xtask built are reused, without a download.
            "rust" => {
                let target = workspace_target("template-rust");
                let mut c = Command::new(env!("CARGO"));
                c.args([
                    "build",
                    "--release",
                    "--offline",
                    "--target",
                    "wasm32-wasip2",
                ])
                .arg("--target-dir")
                .arg(&target);
                let file = format!(
                    "wasm32-wasip2/release/dispatch_plugin_{}.wasm",
                    name.replace('-', "_")
                );
                (c, target.join(file))
            }
            "python" => {
                let mut c = Command::new(venv_bin("componentize-py"));
                c.args(["-d", "wit", "-w", "dispatch:poller/poller@0.2.0"])
                    .args(["componentize", "app", "-o"])
                    .arg(&own);
                (c, own)
            }
            _ => {
                // The project's `npm run build`, with xtask's toolchain (no npm download).
                let tool = workspace_target("npm/node_modules/.bin/componentize-js");
                assert!(
                    tool.exists(),
                    "{} is missing: run `cargo xtask test`, which installs it",
                    tool.display()
                );
                let mut c = Command::new(tool);
                c.args(["app.js", "--wit", "wit", "-n", "poller"])
                    .args(["-d", "http", "fetch-event", "-o"])
                    .arg(&own);
                (c, own)
            }
        };
        passed(
            &format!("{lang}: build"),
            &build.current_dir(&project).output().unwrap(),
        );

        let checked = passed(
            &format!("{lang}: plugin check"),
            &Command::new(agent_exe())
                .args(["plugin", "check"])
                .arg(&wasm)
                .arg("--root")
                .arg(&root)
                .output()
                .unwrap(),
        );
        assert!(checked.starts_with(&format!("{name} 0.1.0\n")), "{checked}");
        let actions: Vec<Vec<&str>> = checked
            .lines()
            .skip_while(|l| !l.starts_with("poll of "))
            .filter(|l| l.starts_with("transfer"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(actions, [["transfer", "dir", "ready"]], "{lang}: {checked}");

        let pushed = passed(
            &format!("{lang}: plugin push"),
            &push(&site, &wasm, &password),
        );
        assert!(
            pushed.starts_with(&format!("pushed {name} 0.1.0 (dispatch:poller@0.2.0)")),
            "{pushed}"
        );
        let listed = site
            .call(Method::GET, &format!("/plugins/{name}"), None)
            .await;
        let versions = listed["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "{listed}");
        assert_eq!(versions[0]["version"], "0.1.0", "{listed}");
        assert_eq!(versions[0]["wit_version"], "0.2.0", "{listed}");
    }
}
