//! `dispatch-agent plugin`: what a plugin author runs. `check` loads a
//! component and polls it as the agent will, `test` runs its kind's
//! conformance cases (`crate::conformance`), `push` uploads it to the web
//! app, `new` writes a project from the SDK's templates.

use anyhow::Context as _;
use dispatch_protocol::Secret;
use dispatch_runtime::{Plugin, Runtime, actions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `describe()` as people read it: name, version, contract, description,
/// parameters (`dispatch-agent describe` and `plugin check`).
pub fn describe_text(plugin: &Plugin) -> String {
    use std::fmt::Write as _;
    let info = plugin.info();
    let mut out = format!("{} {}\n{}\n", info.name, info.version, info.description);
    let _ = writeln!(out, "contract: dispatch:poller@{}", plugin.wit_version());
    let _ = writeln!(out, "sha256:   {}", plugin.sha256());
    if info.params.is_empty() {
        out.push_str("parameters: none\n");
    } else {
        out.push_str("parameters:\n");
        for p in &info.params {
            let default = p
                .default
                .as_deref()
                .map_or("required".to_string(), |d| format!("default `{d}`"));
            let _ = writeln!(
                out,
                "  {} ({}, {default}): {}",
                p.name,
                p.kind.as_str(),
                p.help
            );
        }
    }
    out
}

/// Loads `file`, prints its `describe()`, and with a root polls once there
/// in the agent's sandbox, printing the actions, the items the plugin says
/// are not ready and the names it could not be shown. The plugin's own log
/// lines go to the log (stderr). Any load or poll failure is the error.
pub fn check(
    runtime: &Runtime,
    file: &Path,
    root: Option<&Path>,
    params: &[(String, String)],
) -> anyhow::Result<()> {
    let plugin = runtime.load_file(file)?;
    print!("{}", describe_text(&plugin));
    let Some(root) = root else {
        println!("loaded; give --root DIR to poll once");
        return Ok(());
    };
    let polled = plugin.poll_full(root, params)?;
    println!("\npoll of {}:", root.display());
    print!("{}", actions::to_table(&polled.actions));
    if !polled.not_ready.is_empty() {
        println!("not ready:");
        for n in &polled.not_ready {
            if n.reason.is_empty() {
                println!("  {}", n.item);
            } else {
                println!("  {}: {}", n.item, n.reason);
            }
        }
        if polled.not_ready_more > 0 {
            println!("  ... and {} more", polled.not_ready_more);
        }
    }
    if !polled.unreadable.is_empty() {
        println!("left out (names that are not UTF-8 cannot be sent):");
        for name in &polled.unreadable {
            println!("  {name}");
        }
    }
    Ok(())
}

/// Loads `file` and runs the conformance cases of `kind` (default: the
/// name its `describe()` gives) on it; an error when any case failed.
pub fn test(runtime: &Runtime, file: &Path, kind: Option<&str>) -> anyhow::Result<()> {
    let plugin = runtime.load_file(file)?;
    let kind = kind.unwrap_or(&plugin.info().name).to_string();
    crate::conformance::run_suite(&plugin, &kind)
}

/// How `push` logs in: the web app's uploads are a person's (the version
/// records who uploaded it), so a user's name and password, as the login
/// form takes them.
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

impl Credentials {
    /// The password from `password_file` (one trailing line break
    /// dropped), else from `$DISPATCH_PASSWORD`.
    pub fn new(user: String, password_file: Option<&Path>) -> anyhow::Result<Self> {
        let password = match password_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--password-file {}", f.display()))?;
                let p = text.strip_suffix('\n').unwrap_or(&text);
                p.strip_suffix('\r').unwrap_or(p).to_string()
            }
            None => std::env::var("DISPATCH_PASSWORD").unwrap_or_default(),
        };
        anyhow::ensure!(
            !password.is_empty(),
            "no password: give --password-file FILE or set DISPATCH_PASSWORD"
        );
        Ok(Self {
            user,
            password: Secret::new(password),
        })
    }
}

/// What the web app answers an upload (its `Stored`).
#[derive(serde::Deserialize)]
struct Stored {
    plugin: String,
    version: String,
    sha256: String,
    wit_version: String,
    created: bool,
}

/// Uploads `file` to the web app at `server` as a new version of the
/// plugin its `describe()` names; the line to print. A refusal is the
/// error, with the web app's reason.
pub async fn push(file: &Path, server: &str, credentials: &Credentials) -> anyhow::Result<String> {
    // The password travels over this URL.
    crate::config::check_report_url(server).map_err(|e| anyhow::anyhow!("--server: {e}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .build()?;
    let base = server.trim_end_matches('/');

    let res = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({
            "username": credentials.user,
            "password": credentials.password.expose(),
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let res = refused("login", res).await?;
    let cookie = res
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("login: the web app set no session cookie"))?;
    let me: serde_json::Value = res.json().await.context("login: not JSON")?;
    let csrf = me["csrf_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login: the answer has no csrf_token"))?
        .to_string();

    let name = file
        .file_name()
        .map_or("plugin.wasm".into(), |n| n.to_string_lossy().into_owned());
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str("application/wasm")?,
    );
    let sent = http
        .post(format!("{base}/api/v1/plugins"))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .multipart(form)
        .send()
        .await
        .context("upload");
    // Not left open whatever the upload gave; a failed logout only leaves
    // a session to expire.
    let _ = http
        .post(format!("{base}/api/v1/logout"))
        .header(reqwest::header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await;
    let stored: Stored = refused("upload", sent?)
        .await?
        .json()
        .await
        .context("upload: the answer is not the stored version")?;
    Ok(format!(
        "{} {} {} (dispatch:poller@{}), sha256 {}",
        if stored.created {
            "pushed"
        } else {
            "already there (same bytes):"
        },
        stored.plugin,
        stored.version,
        stored.wit_version,
        stored.sha256
    ))
}

/// The response when it is a success, else the error with the web app's
/// reason (its error object's `error`).
async fn refused(what: &str, res: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = res.status();
    if status.is_success() {
        return Ok(res);
    }
    let text = res.text().await.unwrap_or_default();
    let reason = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(300).collect());
    anyhow::bail!("{what} refused ({status}): {reason}")
}

/// The language of a new project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// A template: (path in the project, text).
type Files = &'static [(&'static str, &'static str)];

const RUST: Files = &[
    (
        "Cargo.toml",
        include_str!("../../../sdk/templates/rust/Cargo.toml"),
    ),
    (
        "Cargo.lock",
        include_str!("../../../sdk/templates/rust/Cargo.lock"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../sdk/templates/rust/src/lib.rs"),
    ),
    (
        "README.md",
        include_str!("../../../sdk/templates/rust/README.md"),
    ),
];
const PYTHON: Files = &[
    (
        "app.py",
        include_str!("../../../sdk/templates/python/app.py"),
    ),
    (
        "README.md",
        include_str!("../../../sdk/templates/python/README.md"),
    ),
];
const JS: Files = &[
    (
        "app.js",
        include_str!("../../../sdk/templates/javascript/app.js"),
    ),
    (
        "poller.d.ts",
        include_str!("../../../sdk/templates/javascript/poller.d.ts"),
    ),
    (
        "package.json",
        include_str!("../../../sdk/templates/javascript/package.json"),
    ),
    (
        "README.md",
        include_str!("../../../sdk/templates/javascript/README.md"),
    ),
];
/// The contract a new project builds against (the latest).
const WIT: &str = include_str!("../../../wit/poller.wit");

/// The templates' poller is called `manifest`. These exact strings name it
/// (in every file) and become the new name's (`manifest` elsewhere, its
/// parameter and its file, is left alone); and in the source file the
/// first quoted `"manifest"` or `'manifest'`, describe()'s name, which
/// comes before its parameters.
fn name_tokens(name: &str) -> [(&'static str, String); 5] {
    [
        (
            "dispatch-plugin-manifest",
            format!("dispatch-plugin-{name}"),
        ),
        (
            "dispatch_plugin_manifest",
            format!("dispatch_plugin_{}", name.replace('-', "_")),
        ),
        ("manifest-poller", format!("{name}-poller")),
        ("`manifest` poller", format!("`{name}` poller")),
        ("manifest.wasm", format!("{name}.wasm")),
    ]
}

/// Where the SDK was when this binary was built (its source tree).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Writes a new project `parent/name` in `lang`; its directory.
pub fn new_project(
    lang: Lang,
    name: &str,
    parent: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .with_context(|| format!("{} exists and cannot be read", dir.display()))?
            .next()
            .is_none();
        anyhow::ensure!(
            empty,
            "{} exists and is not empty: choose another NAME or --dir",
            dir.display()
        );
    }
    let (files, source) = match lang {
        Lang::Rust => (RUST, "src/lib.rs"),
        Lang::Python => (PYTHON, "app.py"),
        Lang::Js => (JS, "app.js"),
    };
    let sdk = match lang {
        Lang::Rust => Some(sdk_dir(sdk)?),
        _ => None,
    };
    for (path, text) in files {
        let mut text = rename(text, name, *path == source);
        if let Some(sdk) = &sdk
            && *path == "Cargo.toml"
        {
            text = point_at_sdk(&text, sdk);
        }
        write(&dir.join(path), &text)?;
    }
    write(&dir.join("wit/poller.wit"), WIT)?;
    Ok(dir)
}

/// Lowercase letters, digits, `-` and `_`, starting with a letter: a name
/// the web app takes and every toolchain can use as a file and package name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    anyhow::ensure!(
        ok,
        "`{name}` is not a plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter"
    );
    Ok(())
}

/// The template's text with its poller named `name` ([`name_tokens`]), in
/// one pass, so a name that itself contains `manifest` is not renamed twice.
fn rename(text: &str, name: &str, source: bool) -> String {
    let tokens = name_tokens(name);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut quoted_done = !source;
    while let Some(c) = rest.chars().next() {
        let quote = ["\"manifest\"", "'manifest'"]
            .into_iter()
            .find(|q| !quoted_done && rest.starts_with(q));
        if let Some((from, to)) = tokens.iter().find(|(from, _)| rest.starts_with(from)) {
            out.push_str(to);
            rest = &rest[from.len()..];
        } else if let Some(q) = quote {
            let mark = &q[..1];
            out.push_str(&format!("{mark}{name}{mark}"));
            rest = &rest[q.len()..];
            quoted_done = true;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The Rust SDK: `--sdk`, else the source tree's this binary was built
/// from, as an absolute path.
fn sdk_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = given.unwrap_or(Path::new(BUILT_SDK));
    let manifest = dir.join("Cargo.toml");
    anyhow::ensure!(
        manifest.is_file(),
        "no Rust SDK at {} (no Cargo.toml): the SDK is not on crates.io, give --sdk DIR (the `sdk` directory of a Dispatch source tree)",
        dir.display()
    );
    dir.canonicalize()
        .with_context(|| format!("--sdk {}", dir.display()))
}

/// The template's `dispatch-poller-sdk = ...` line pointed at `sdk`, with
/// a comment saying why unless the template has one.
fn point_at_sdk(cargo_toml: &str, sdk: &Path) -> String {
    let path = toml::Value::String(sdk.to_string_lossy().into_owned());
    let why = if cargo_toml.contains("not on crates.io") {
        ""
    } else {
        "# The SDK is not on crates.io: where `dispatch-agent plugin new` found it (--sdk).\n"
    };
    cargo_toml
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("dispatch-poller-sdk") {
                format!("{why}dispatch-poller-sdk = {{ path = {path} }}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
