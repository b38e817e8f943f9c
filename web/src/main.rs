//! `dispatch-web`: serves the pages and the API.

use clap::Parser;
use dispatch_web::config::{Cli, WebConfig};
use dispatch_web::{AppState, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,dispatch_web=info,dispatch_runtime=info")
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = WebConfig::resolve(cli)?;
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
        // Printed once, on the terminal only (not through the log).
        println!(
            "First start: created user `{admin}` with password {password}  (shown once; change it after logging in)"
        );
    }
    if let Some(dir) = &cfg.register_plugins {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("--register-plugins {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        entries.sort();
        for path in entries {
            let name = dispatch_web::register_file(&state, &path).await?;
            tracing::info!("plugin {name} registered from {}", path.display());
        }
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
