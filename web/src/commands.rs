//! `dispatch-web`'s commands besides serving, for operators and
//! containers: `backup`, `restore` and `health`.

use dispatch_web::config::WebConfig;
use dispatch_web::database;
use std::path::Path;

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

pub async fn backup(cfg: &WebConfig, to: &Path) -> anyhow::Result<()> {
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

pub async fn restore(cfg: &WebConfig, from: &Path) -> anyhow::Result<()> {
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
pub async fn health(cfg: &WebConfig, url: Option<&str>) -> anyhow::Result<()> {
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
        // One line, whatever answered there.
        let said: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        anyhow::bail!(
            "{base}: unhealthy ({status}): {}",
            said.chars().take(300).collect::<String>()
        );
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
