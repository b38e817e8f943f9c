//! `dispatch-web`: serves the pages and the API.

use clap::Parser;
use dispatch_runtime::builtin::{self, Source};
use dispatch_web::config::{Cli, WebCommand, WebConfig};
use dispatch_web::database;
use dispatch_web::{AppState, Settings};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    dispatch_service::init_logs(
        cli.log_format,
        "warn,dispatch_web=info,dispatch_runtime=info",
    );
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.clone();
    let done = rt.block_on(async {
        let cfg = WebConfig::resolve(cli)?;
        match command {
            None => serve(cfg).await,
            Some(WebCommand::Backup { to }) => backup(&cfg, &to).await,
            Some(WebCommand::Restore { from }) => restore(&cfg, &from).await,
            Some(WebCommand::Health { url }) => health(&cfg, url.as_deref()).await,
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Says the first admin's password once: in `file` (0600, never
/// overwritten) when one is set, as a service's output goes to its journal;
/// else on the terminal only (not through the log). A file that cannot be
/// written gets the password said on the terminal instead: never lost.
fn tell_first_password(file: Option<&Path>, admin: &str, password: &str) {
    if let Some(file) = file {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .and_then(|mut f| writeln!(f, "{password}").and_then(|()| f.sync_all()));
        match written {
            Ok(()) => {
                println!(
                    "First start: created user `{admin}`; its password is in {} (change it after logging in)",
                    file.display()
                );
                return;
            }
            Err(e) => eprintln!("error: cannot write {}: {e}", file.display()),
        }
    }
    println!(
        "First start: created user `{admin}` with password {password}  (shown once; change it after logging in)"
    );
}

/// The plugins registered at start: every `.wasm` of `--register-plugins`,
/// else the built-ins (compiled in, or `$DISPATCH_PLUGIN_DIR`'s); a version
/// already registered stays as it is.
fn plugins_to_register(cfg: &WebConfig) -> anyhow::Result<Vec<Source>> {
    let Some(dir) = &cfg.register_plugins else {
        // Serving without them beats not serving: uploads still work.
        return Ok(builtin::all().unwrap_or_else(|e| {
            tracing::warn!("the built-in pollers are not registered: {e}");
            Vec::new()
        }));
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("--register-plugins {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    entries.sort();
    Ok(entries.into_iter().map(Source::File).collect())
}

/// Where the secret key comes from, for the backup and restore lines:
/// a backup cannot read the targets' secrets without it.
fn key_source(cfg: &WebConfig) -> String {
    if std::env::var_os("DISPATCH_SECRET_KEY").is_some() {
        return "DISPATCH_SECRET_KEY".into();
    }
    cfg.secret_key_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("secret.key"))
        .display()
        .to_string()
}

fn sqlite_options(cfg: &WebConfig) -> anyhow::Result<sqlx::sqlite::SqliteConnectOptions> {
    let url = database::url(&cfg.data_dir, cfg.database_url.as_deref());
    if !url.starts_with("sqlite:") {
        anyhow::bail!(
            "backup and restore work on SQLite; for {} use pg_dump and pg_restore",
            database::shown(&url)
        );
    }
    database::sqlite_options(&url)
}

async fn backup(cfg: &WebConfig, to: &Path) -> anyhow::Result<()> {
    let done = dispatch_web::backup::backup(sqlite_options(cfg)?, to).await?;
    println!(
        "backup written to {} ({} bytes, schema version {}); the secret key is not in it: keep {} with it",
        to.display(),
        done.bytes,
        done.schema,
        key_source(cfg)
    );
    Ok(())
}

async fn restore(cfg: &WebConfig, from: &Path) -> anyhow::Result<()> {
    let done = dispatch_web::backup::restore(sqlite_options(cfg)?, from).await?;
    let kept = done.kept.map_or_else(String::new, |k| {
        format!("; the database it replaced is kept as {}", k.display())
    });
    println!(
        "restored {} (schema version {}){kept}; it needs the secret key it was made with ({})",
        from.display(),
        done.schema,
        key_source(cfg)
    );
    Ok(())
}

/// Prints the health the web app reports; an error unless it says "ok".
/// Plain HTTP/1.0 by hand: it runs beside the web app (a container's health
/// check), and a TLS client in the binary for this alone is not worth it.
async fn health(cfg: &WebConfig, url: Option<&str>) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let base = url.map_or_else(
        || format!("http://{}", reachable(&cfg.listen)),
        |u| u.trim_end_matches('/').to_string(),
    );
    let Some(host) = base.strip_prefix("http://").filter(|h| !h.contains('/')) else {
        anyhow::bail!("health --url {base}: only http://HOST:PORT (for https, use curl)");
    };
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(host).await?;
        let ask = format!("GET /api/v1/health HTTP/1.0\r\nHost: {host}\r\n\r\n");
        conn.write_all(ask.as_bytes()).await?;
        let mut answer = Vec::new();
        conn.take(1 << 20).read_to_end(&mut answer).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{base}: no answer within 5 s"))?
        .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    let ok = status.split_whitespace().nth(1) == Some("200")
        && serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["status"] == "ok");
    if !ok {
        anyhow::bail!("{base}: unhealthy ({status}): {}", body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}

/// `listen` as a client on this machine reaches it: an unspecified address
/// (every interface) is reached on loopback.
fn reachable(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

async fn serve(cfg: WebConfig) -> anyhow::Result<()> {
    let state = AppState::open(Settings {
        data_dir: cfg.data_dir.clone(),
        database_url: cfg.database_url.clone(),
        secret_key: std::env::var("DISPATCH_SECRET_KEY").ok(),
        secret_key_file: cfg.secret_key_file.clone(),
        upload_limit: cfg.upload_limit,
        upload_check: cfg.upload_check,
        secure_cookies: cfg.secure_cookies,
    })
    .await?;
    let admin = std::env::var("DISPATCH_ADMIN_USER").unwrap_or_else(|_| "admin".into());
    let given = std::env::var("DISPATCH_ADMIN_PASSWORD").ok();
    if let Some(password) =
        dispatch_web::ensure_admin(&state.pool, &admin, given.as_deref()).await?
    {
        tell_first_password(cfg.first_password_file.as_deref(), &admin, &password);
    }
    for source in plugins_to_register(&cfg)? {
        let name = dispatch_web::register(&state, &source).await?;
        tracing::info!("plugin {name} registered from {}", source.label());
    }
    if let Some((name, token_file)) = &cfg.local_agent {
        dispatch_web::ensure_local_agent(&state.pool, name, token_file).await?;
        if let Some(dir) = &cfg.demo_dir
            && dispatch_web::demo::seed(&state, name, dir).await?
        {
            println!(
                "First start: demo pollers created; drop a folder holding a file named {} into {}",
                dispatch_web::demo::MARKER,
                dir.join("outgoing/dir").display()
            );
        }
    }
    dispatch_web::retention::keep_pruned(state.pool.clone(), cfg.keep_transfers);
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    println!(
        "dispatch-web listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        dispatch_web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
