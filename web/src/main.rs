//! `dispatch-web`: serves the pages and the API.

use clap::Parser;
use dispatch_runtime::builtin::{self, Source};
use dispatch_web::config::{Cli, WebCommand, WebConfig};
use dispatch_web::{AppState, Settings};
use std::path::Path;
use std::process::ExitCode;

mod commands;

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
            Some(WebCommand::Backup { to }) => commands::backup(&cfg, &to).await,
            Some(WebCommand::Restore { from }) => commands::restore(&cfg, &from).await,
            Some(WebCommand::Health { url }) => commands::health(&cfg, url.as_deref()).await,
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
    if let Some(password) = dispatch_web::ensure_admin(&state.db, &admin, given.as_deref()).await? {
        tell_first_password(cfg.first_password_file.as_deref(), &admin, &password);
    }
    for source in plugins_to_register(&cfg)? {
        let name = dispatch_web::register(&state, &source).await?;
        tracing::info!("plugin {name} registered from {}", source.label());
    }
    if let Some((name, token_file)) = &cfg.local_agent {
        dispatch_web::ensure_local_agent(&state.db, name, token_file).await?;
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
    dispatch_web::retention::keep_pruned(state.db.clone(), cfg.keep_transfers);
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
