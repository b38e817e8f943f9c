//! The dashboard: what is moving now, what just finished, which agents are
//! online (and whether their configuration applied), which pollers need a
//! person (per agent), and traffic over a day and a week.

use super::agents::HealthRow;
use super::chart::{self, Bar};
use super::transfers::{TransferRow, active};
use super::{Chrome, PageResult, PageUser, fmt, fragment, html};
use crate::AppState;
use crate::api::transfers::{COLUMNS, TransferView};
use crate::db::Db;
use crate::on_db;
use askama::Template;
use axum::extract::State;
use dispatch_protocol::PollerState;
use std::sync::Arc;

pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub online: bool,
    pub seen: String,
    pub host: String,
    /// Why its newest configuration could not be applied, if so.
    pub config_error: Option<String>,
}

pub struct ProblemRow {
    /// The web app's poller, when it is one (else only its agent knows it).
    pub id: Option<i64>,
    pub name: String,
    pub state: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "_dashboard_live.html")]
struct Live {
    active: Vec<TransferRow>,
    recent: Vec<TransferRow>,
    agents: Vec<AgentRow>,
    problems: Vec<ProblemRow>,
}

async fn live_parts(state: &AppState) -> Result<Live, sqlx::Error> {
    let db = &state.db;
    let sql = format!(
        "SELECT {COLUMNS} FROM transfers t WHERE t.status IN ('Complete', 'Error', 'Cancelled')
         ORDER BY t.updated_at DESC, t.id DESC LIMIT 25"
    );
    let recent = on_db!(db, pool => {
        sqlx::query_as::<_, TransferView>(sqlx::AssertSqlSafe(sql.as_str()))
            .fetch_all(pool)
            .await
    })?
    .iter()
    .map(TransferRow::new)
    .collect();
    let mut problems = disabled_by_people(db).await?;
    problems.extend(failing_on_agents(db).await?);
    standalone_problems(db, &mut problems).await?;
    Ok(Live {
        active: active(db).await?,
        recent,
        agents: agents(db).await?,
        problems,
    })
}

async fn agents(db: &Db) -> Result<Vec<AgentRow>, sqlx::Error> {
    let now = crate::now_ms();
    /// id, name, last seen, host name, configuration error.
    type Stored = (i64, String, Option<i64>, Option<String>, Option<String>);
    let rows: Vec<Stored> = on_db!(db, pool => {
        sqlx::query_as("SELECT id, name, last_seen, host_name, config_error FROM agents ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, name, seen, host, config_error)| AgentRow {
            id,
            name,
            online: seen.is_some_and(|t| now - t < crate::api::agents::ONLINE_WITHIN_MS),
            seen: seen.map_or_else(|| "never".into(), |t| fmt::ago(t, now)),
            host: host.unwrap_or_default(),
            config_error,
        })
        .collect())
}

/// Pollers a person disabled.
async fn disabled_by_people(db: &Db) -> Result<Vec<ProblemRow>, sqlx::Error> {
    let rows: Vec<(i64, String, Option<String>)> = on_db!(db, pool => {
        sqlx::query_as("SELECT id, name, disabled_reason FROM pollers WHERE NOT enabled ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, name, reason)| ProblemRow {
            id: Some(id),
            name,
            state: "Disabled",
            reason: reason.unwrap_or_default(),
        })
        .collect())
}

/// Enabled pollers failing, disabled by their breaker, or not running
/// their newest configuration on some agent (one line per agent).
async fn failing_on_agents(db: &Db) -> Result<Vec<ProblemRow>, sqlx::Error> {
    let enabled: Vec<i64> = on_db!(db, pool => {
        sqlx::query_scalar("SELECT id FROM pollers WHERE enabled")
            .fetch_all(pool)
            .await
    })?;
    let now = crate::now_ms();
    Ok(crate::api::agents::poller_health(db, None, None)
        .await?
        .iter()
        .filter(|h| enabled.contains(&h.poller_id))
        .map(|h| HealthRow::new(h, now))
        .filter(HealthRow::needs_attention)
        .map(|h| ProblemRow {
            id: Some(h.poller_id),
            reason: health_reason(&h),
            name: h.poller,
            state: h.state,
        })
        .collect())
}

fn health_reason(h: &HealthRow) -> String {
    let mut parts = vec![format!("on {}", h.agent)];
    if h.errors > 0 {
        parts.push(format!("{} failures in a row", h.errors));
    }
    if !h.until.is_empty() {
        parts.push(format!("disabled until {}", h.until));
    }
    if !h.reason.is_empty() {
        parts.push(h.reason.clone());
    }
    if !h.config_error.is_empty() {
        parts.push(format!("configuration not applied: {}", h.config_error));
    }
    parts.join("; ")
}

/// Pollers an agent runs from its own file: their health comes only from
/// its heartbeats' list.
async fn standalone_problems(db: &Db, problems: &mut Vec<ProblemRow>) -> Result<(), sqlx::Error> {
    let states: Vec<(i64, String, String)> = on_db!(db, pool => {
        sqlx::query_as(
            "SELECT id, name, poller_states FROM agents WHERE poller_states IS NOT NULL ORDER BY name",
        )
        .fetch_all(pool)
        .await
    })?;
    for (id, agent, states) in states {
        let known: Vec<String> = on_db!(db, pool => {
            sqlx::query_scalar(
                "SELECT p.name FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id WHERE pa.agent_id = $1",
            )
            .bind(id)
            .fetch_all(pool)
            .await
        })?;
        // A list the app cannot read is shown as nothing, not as an error
        // page: it came from an agent, the page is for people.
        let list: Vec<PollerState> = serde_json::from_str(&states).unwrap_or_default();
        for p in list {
            let healthy = p.consecutive_errors == 0 && !p.disabled && p.reason.is_none();
            if healthy || known.contains(&p.name) {
                continue;
            }
            problems.push(ProblemRow {
                id: None,
                state: if p.disabled {
                    "Disabled by agent"
                } else {
                    "Failing"
                },
                reason: match p.consecutive_errors {
                    0 => format!("on {agent}: {}", p.reason.unwrap_or_default()),
                    n => format!(
                        "{n} failures in a row on {agent}{}",
                        p.reason.map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                },
                name: p.name,
            });
        }
    }
    Ok(())
}

/// Bytes sent and transfers finished per bucket over the last `buckets`
/// (from the hourly rollups: a transfer counts in the hour of its last
/// change, which for a finished one is its end).
async fn traffic(
    db: &crate::db::Db,
    bucket_ms: i64,
    buckets: i64,
    label: impl Fn(i64) -> String,
) -> Result<(Vec<Bar>, Vec<Bar>), sqlx::Error> {
    let now = crate::now_ms();
    let first = (now / bucket_ms - buckets + 1) * bucket_ms;
    let span = crate::rollups::Span {
        from: Some(first),
        to: None,
    };
    let sums = crate::rollups::per_bucket(db, span, first, bucket_ms).await?;
    let mut bytes = Vec::new();
    let mut count = Vec::new();
    for i in 0..buckets {
        let s = sums.get(&i).copied().unwrap_or_default();
        let at = label(first + i * bucket_ms);
        bytes.push(Bar {
            label: at.clone(),
            value: s.bytes as f64,
        });
        count.push(Bar {
            label: at,
            value: s.finished as f64,
        });
    }
    Ok((bytes, count))
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    chrome: Chrome,
    live_html: String,
    charts: Vec<String>,
}

pub async fn page(State(state): State<Arc<AppState>>, user: PageUser) -> PageResult {
    let live_html = live_parts(&state).await?.render()?;
    const HOUR: i64 = 3_600_000;
    let hour = |ms: i64| fmt::time(ms).get(11..13).unwrap_or("").to_string() + "h";
    let day = |ms: i64| fmt::time(ms).get(5..10).unwrap_or("").to_string();
    let (bytes_day, count_day) = traffic(&state.db, HOUR, 24, hour).await?;
    let (bytes_week, count_week) = traffic(&state.db, 24 * HOUR, 7, day).await?;
    let show_bytes = |v: f64| fmt::bytes(v as i64);
    let show_count = |v: f64| format!("{v:.0}");
    html(&Dashboard {
        chrome: user.chrome("dashboard"),
        live_html,
        charts: vec![
            chart::bars("Bytes sent, last 24 hours (UTC)", &bytes_day, show_bytes),
            chart::bars("Transfers, last 24 hours (UTC)", &count_day, show_count),
            chart::bars("Bytes sent, last 7 days", &bytes_week, show_bytes),
            chart::bars("Transfers, last 7 days", &count_week, show_count),
        ],
    })
}

pub async fn live(State(state): State<Arc<AppState>>, _user: PageUser) -> PageResult {
    fragment(&live_parts(&state).await?)
}
