//! What agents call, with their bearer token: their configuration (ETag +
//! long poll), transfer events (idempotent batches), heartbeats (whose
//! answer carries the commands people gave). The JSON types are
//! `dispatch_protocol`'s, which accept fields they do not know, so a newer
//! agent is never refused for a field this app does not know yet.

use crate::AppState;
use crate::auth::Agent;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_protocol::{
    Command, EVENT_KINDS, Event, EventBatch, Heartbeat, HeartbeatReply, Ingested, PollerState,
    limits,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::db::Tx;
use crate::on_tx;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// Seconds to wait for a change when `If-None-Match` matches (more
    /// than 60 waits 60).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub wait: Option<u32>,
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(body))[..32])
}

/// The agent's configuration as served, and its ETag.
async fn rendered(state: &AppState, agent: &Agent) -> ApiResult<(Vec<u8>, String)> {
    let cfg = crate::agent_config::build(state, agent).await?;
    let body = serde_json::to_vec(&cfg).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize agent {}'s configuration: {e}", agent.name),
        )
    })?;
    let etag = etag_of(&body);
    Ok((body, etag))
}

/// The ETag the agent's configuration has now: equal to the one its
/// heartbeat sent when it runs the newest.
pub async fn current_etag(state: &AppState, agent: &Agent) -> ApiResult<String> {
    Ok(rendered(state, agent).await?.1)
}

/// This agent's settings and pollers. With `If-None-Match` equal to the
/// current ETag: 304, or with `?wait=N`, an answer as soon as the
/// configuration changes (304 after N seconds if it does not).
#[utoipa::path(get, path = "/api/v1/agent/config", tag = "agent", operation_id = "agent_config",
    params(ConfigQuery, ("If-None-Match" = Option<String>, Header, description = "The ETag of the configuration the agent has")),
    responses((status = 200, body = dispatch_protocol::AgentConfig, headers(("ETag" = String, description = "Send it back as `If-None-Match`"))),
              (status = 304, description = "`If-None-Match` is the current ETag: unchanged"),
              (status = 429, description = "this agent holds the most long-polls it may open already", body = crate::error::ErrorBody)),
    security(("agent_token" = [])))]
pub async fn config(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    headers: HeaderMap,
    Query(q): Query<ConfigQuery>,
) -> ApiResult<Response> {
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(u64::from(q.wait.unwrap_or(0).min(60)));
    let mut changes = state.config_version.subscribe();
    loop {
        changes.borrow_and_update();
        let (body, etag) = rendered(&state, &agent).await?;
        if known.as_deref() != Some(etag.as_str()) {
            return Ok((
                [
                    (header::ETAG, etag),
                    (header::CONTENT_TYPE, "application/json".into()),
                    (header::CACHE_CONTROL, "no-store".into()),
                ],
                body,
            )
                .into_response());
        }
        // Unchanged: wait for a change of anything config depends on.
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let Some(_slot) = state.long_polls.take(agent.id) else {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this agent already holds {} configuration requests open, the most it may",
                    limits::LONG_POLLS_PER_AGENT
                ),
            ));
        };
        let _waiting = crate::metrics::Waiting::new(&state.metrics.config_waits);
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    Ok((
        StatusCode::NOT_MODIFIED,
        [(header::ETAG, known.unwrap_or_default())],
    )
        .into_response())
}

/// The configuration long-polls each agent holds open, so one agent (or a
/// stolen token) cannot hold thousands.
#[derive(Default)]
pub struct LongPolls(std::sync::Mutex<std::collections::HashMap<i64, usize>>);

/// One open long-poll of an agent; given back when dropped.
pub struct LongPoll<'a> {
    polls: &'a LongPolls,
    agent: i64,
}

impl LongPolls {
    /// A slot for `agent`, unless it holds the most it may already.
    fn take(&self, agent: i64) -> Option<LongPoll<'_>> {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(agent).or_default();
        if *n >= limits::LONG_POLLS_PER_AGENT {
            return None;
        }
        *n += 1;
        Some(LongPoll { polls: self, agent })
    }
}

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        let mut open = self
            .polls
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.agent);
            }
        }
    }
}

/// Refuses `text` of `field` past `max` bytes (the message names both);
/// an absent text passes.
fn bounded<'a>(field: &str, text: impl Into<Option<&'a str>>, max: usize) -> ApiResult<()> {
    let Some(text) = text.into() else {
        return Ok(());
    };
    if text.len() > max {
        return Err(ApiError::bad(
            field,
            format!("is {} bytes; at most {max} are accepted", text.len()),
        ));
    }
    Ok(())
}

/// Refuses a batch past the limits (`dispatch_protocol::limits`), with an
/// unknown event kind or an empty id: the whole batch, nothing of it is
/// ingested.
fn check_events(batch: &EventBatch) -> ApiResult<()> {
    if batch.events.len() > limits::EVENTS_PER_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a batch holds at most {} events, this one {}: send it in parts",
                limits::EVENTS_PER_BATCH,
                batch.events.len()
            ),
        ));
    }
    for (i, e) in batch.events.iter().enumerate() {
        let at = |f: &str| format!("events[{i}].{f}");
        bounded(&at("id"), e.id.as_str(), limits::ID_BYTES)?;
        bounded(&at("transfer_id"), e.transfer_id.as_str(), limits::ID_BYTES)?;
        bounded(&at("poller"), e.poller.as_str(), limits::NAME_BYTES)?;
        bounded(&at("path"), e.path.as_str(), limits::PATH_BYTES)?;
        bounded(&at("poller_id"), e.poller_id.as_deref(), limits::ID_BYTES)?;
        bounded(&at("error"), e.error.as_deref(), limits::TEXT_BYTES)?;
        bounded(&at("host"), e.host.as_deref(), limits::NAME_BYTES)?;
        if !EVENT_KINDS.contains(&e.event.as_str()) {
            return Err(ApiError::bad(
                &format!("events[{i}].event"),
                format!(
                    "`{}` is not an event kind (one of {})",
                    e.event,
                    EVENT_KINDS.join(", ")
                ),
            ));
        }
        if e.id.is_empty() || e.transfer_id.is_empty() {
            return Err(ApiError::bad(
                &format!("events[{i}].id"),
                "ids must not be empty",
            ));
        }
    }
    Ok(())
}

/// Ingest a batch of transfer events in one transaction; events already
/// ingested (same agent, same id) change nothing.
#[utoipa::path(post, path = "/api/v1/agent/events", tag = "agent", operation_id = "agent_events", request_body = EventBatch,
    responses((status = 200, body = Ingested), (status = 422, body = crate::error::ErrorBody),
              (status = 413, description = "more events than a batch may hold", body = crate::error::ErrorBody)), security(("agent_token" = [])))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    body: Result<Json<EventBatch>, JsonRejection>,
) -> ApiResult<Json<Ingested>> {
    let Json(batch) = body?;
    check_events(&batch)?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    let mut tx = state.db.begin_write().await?;
    let mut fresh = fresh_ids(&mut tx, agent.id, &batch.events).await?;
    let mut open_retries = open_retries(&mut tx, agent.id).await?;
    let mut taken = Vec::with_capacity(batch.events.len());
    for e in &batch.events {
        // An id twice in one batch is fresh once.
        if !fresh.remove(e.id.as_str()) {
            duplicates += 1;
            continue;
        }
        accepted += 1;
        taken.push(e);
        if matches!(e.event.as_str(), "queued" | "started")
            && open_retries.remove(e.transfer_id.as_str())
        {
            // The transfer is being tried again: a retry asked for it is
            // done, even when the agent never says so (an agent that
            // ignores commands).
            on_tx!(&mut tx, conn => {
                sqlx::query(
                    "UPDATE agent_commands SET done_at = $1 WHERE agent_id = $2 AND kind = 'retry' AND transfer_id = $3 AND done_at IS NULL",
                )
                .bind(crate::now_ms())
                .bind(agent.id)
                .bind(&e.transfer_id)
                .execute(conn)
                .await
                .map(|_| ())
            })?;
        }
    }
    apply_all(&mut tx, &agent, &taken).await?;
    // An agent that reports is alive, heartbeat or not.
    on_tx!(&mut tx, conn => {
        sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
            .bind(crate::now_ms())
            .bind(agent.id)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    tx.commit().await?;
    state
        .metrics
        .events_ingested
        .fetch_add(accepted, Ordering::Relaxed);
    state
        .metrics
        .events_duplicate
        .fetch_add(duplicates, Ordering::Relaxed);
    Ok(Json(Ingested {
        accepted,
        duplicates,
    }))
}

/// The ids of `events` this agent never sent before, now remembered: one
/// statement per few thousand events rather than one per event.
async fn fresh_ids(
    tx: &mut Tx,
    agent_id: i64,
    events: &[Event],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    // Three values per event, under SQLite's 32,766 parameters.
    const PER_STATEMENT: usize = 5000;
    let now = crate::now_ms();
    let mut fresh = std::collections::HashSet::new();
    for chunk in events.chunks(PER_STATEMENT) {
        fresh.extend(on_tx!(&mut *tx, conn => {
            let mut q =
                sqlx::QueryBuilder::new("INSERT INTO ingested_events (agent_id, event_id, at) ");
            q.push_values(chunk, |mut row, e| {
                row.push_bind(agent_id).push_bind(&e.id).push_bind(now);
            });
            q.push(" ON CONFLICT (agent_id, event_id) DO NOTHING RETURNING event_id");
            q.build_query_scalar::<String>().fetch_all(conn).await
        })?);
    }
    Ok(fresh)
}

/// Transfers with a retry a person asked for and the agent has not done.
async fn open_retries(
    tx: &mut Tx,
    agent_id: i64,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let ids: Vec<String> = on_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT transfer_id FROM agent_commands WHERE agent_id = $1 AND kind = 'retry' AND done_at IS NULL AND transfer_id IS NOT NULL",
        )
        .bind(agent_id)
        .fetch_all(conn)
        .await
    })?;
    Ok(ids.into_iter().collect())
}

/// How an event sets its transfer's row, on top of what the row says
/// (the same for one event or a round of them).
macro_rules! upsert_transfer {
    () => {
        " ON CONFLICT (agent_id, transfer_id) DO UPDATE SET
            size = COALESCE(excluded.size, transfers.size),
            bytes_done = CASE WHEN excluded.bytes_done > transfers.bytes_done THEN excluded.bytes_done ELSE transfers.bytes_done END,
            status = CASE WHEN excluded.updated_at >= transfers.updated_at THEN excluded.status ELSE transfers.status END,
            attempts = CASE WHEN excluded.attempts > transfers.attempts THEN excluded.attempts ELSE transfers.attempts END,
            started_at = COALESCE(excluded.started_at, transfers.started_at),
            ended_at = CASE WHEN excluded.status IN ('Queued', 'Transferring') AND excluded.updated_at >= transfers.updated_at THEN NULL ELSE COALESCE(excluded.ended_at, transfers.ended_at) END,
            error = CASE WHEN excluded.error IS NOT NULL THEN excluded.error WHEN excluded.status = 'Complete' THEN NULL ELSE transfers.error END,
            host = COALESCE(excluded.host, transfers.host),
            retry_requested_at = CASE WHEN excluded.updated_at >= transfers.updated_at THEN NULL ELSE transfers.retry_requested_at END,
            updated_at = CASE WHEN excluded.updated_at > transfers.updated_at THEN excluded.updated_at ELSE transfers.updated_at END"
    };
}

/// An event as its transfer's row takes it.
struct Change<'a> {
    e: &'a Event,
    file_name: &'a str,
    status: &'static str,
    started: Option<i64>,
    ended: Option<i64>,
}

impl<'a> Change<'a> {
    fn of(e: &'a Event) -> Self {
        Change {
            e,
            file_name: e.path.rsplit('/').next().unwrap_or(&e.path),
            status: match e.event.as_str() {
                "queued" => "Queued",
                "started" | "progress" => "Transferring",
                "complete" => "Complete",
                "error" => "Error",
                _ => "Cancelled",
            },
            started: (e.event == "started").then_some(e.at),
            ended: matches!(e.event.as_str(), "complete" | "error" | "cancelled").then_some(e.at),
        }
    }
}

/// Folds `events` (in their batch order) into the log. SQLite: a
/// statement per event (in-process, each costs microseconds). PostgreSQL:
/// a statement per round, where a round holds at most one event of each
/// transfer (one upsert may not touch a row twice) and round k the k-th
/// event of each: the same rows as one event at a time, in a few round
/// trips instead of one per event.
async fn apply_all(tx: &mut Tx, agent: &Agent, events: &[&Event]) -> Result<(), sqlx::Error> {
    match tx {
        Tx::Sqlite(tx) => {
            for e in events {
                let r = Change::of(e);
                sqlx::query(concat!(
                    "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, started_at, ended_at, error, host, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    upsert_transfer!()
                ))
                .bind(agent.id)
                .bind(&agent.name)
                .bind(&e.transfer_id)
                .bind(&e.poller)
                .bind(&e.path)
                .bind(r.file_name)
                .bind(e.size)
                .bind(e.bytes_done)
                .bind(r.status)
                .bind(e.attempt)
                .bind(r.started)
                .bind(r.ended)
                .bind(&e.error)
                .bind(&e.host)
                .bind(e.at)
                .execute(&mut **tx)
                .await?;
            }
        }
        Tx::Postgres(tx) => {
            for round in rounds(events) {
                let rows: Vec<Change> = round.into_iter().map(Change::of).collect();
                let col = |f: fn(&Change) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
                let num = |f: fn(&Change) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
                sqlx::query(concat!(
                    "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, started_at, ended_at, error, host, updated_at)
                     SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[],
                        $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::bigint[])",
                    upsert_transfer!()
                ))
                .bind(agent.id)
                .bind(&agent.name)
                .bind(col(|r| Some(r.e.transfer_id.clone())))
                .bind(col(|r| Some(r.e.poller.clone())))
                .bind(col(|r| Some(r.e.path.clone())))
                .bind(col(|r| Some(r.file_name.to_string())))
                .bind(num(|r| r.e.size))
                .bind(num(|r| Some(r.e.bytes_done)))
                .bind(col(|r| Some(r.status.to_string())))
                .bind(num(|r| Some(r.e.attempt)))
                .bind(num(|r| r.started))
                .bind(num(|r| r.ended))
                .bind(col(|r| r.e.error.clone()))
                .bind(col(|r| r.e.host.clone()))
                .bind(num(|r| Some(r.e.at)))
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// `events` in rounds: round k holds the k-th event of each transfer, in
/// batch order.
fn rounds<'a>(events: &[&'a Event]) -> Vec<Vec<&'a Event>> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<&Event>> = Vec::new();
    for e in events {
        let k = seen.entry(e.transfer_id.as_str()).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(e);
        *k += 1;
    }
    rounds
}

/// The agent is alive: its version, host name, the configuration it runs
/// and how each poller does. The answer lists the agent's open commands
/// (an older agent that ignores the body loses nothing but them).
#[utoipa::path(post, path = "/api/v1/agent/heartbeat", tag = "agent", operation_id = "agent_heartbeat", request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 422, body = crate::error::ErrorBody),
              (status = 413, description = "more poller states or done commands than a heartbeat may hold", body = crate::error::ErrorBody)), security(("agent_token" = [])))]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    agent: Agent,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> ApiResult<Json<HeartbeatReply>> {
    let Json(hb) = body?;
    check_heartbeat(&hb)?;
    let now = crate::now_ms();
    let mut tx = state.db.begin_write().await?;
    record_agent(&mut tx, &agent, &hb, now).await?;
    for p in &hb.pollers {
        if let Some(poller_id) = poller_of(&mut tx, agent.id, p).await? {
            record_poller(&mut tx, &agent, poller_id, p, now).await?;
        }
    }
    // States of pollers taken away from this agent would show forever.
    on_tx!(&mut tx, conn => {
        sqlx::query(
            "DELETE FROM agent_poller_states WHERE agent_id = $1
             AND poller_id NOT IN (SELECT poller_id FROM poller_agents WHERE agent_id = $2)",
        )
        .bind(agent.id)
        .bind(agent.id)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    mark_done(&mut tx, agent.id, &hb.done, now).await?;
    let commands = open_commands(&mut tx, agent.id).await?;
    tx.commit().await?;
    Ok(Json(HeartbeatReply { commands }))
}

/// Refuses a heartbeat past the limits (`dispatch_protocol::limits`).
fn check_heartbeat(hb: &Heartbeat) -> ApiResult<()> {
    for (field, n) in [("pollers", hb.pollers.len()), ("done", hb.done.len())] {
        if n > limits::POLLERS_PER_HEARTBEAT {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a heartbeat holds at most {} {field}, this one {n}",
                    limits::POLLERS_PER_HEARTBEAT
                ),
            ));
        }
    }
    bounded("version", hb.version.as_str(), limits::NAME_BYTES)?;
    bounded("host_name", hb.host_name.as_str(), limits::NAME_BYTES)?;
    bounded("config_etag", hb.config_etag.as_deref(), limits::ID_BYTES)?;
    bounded(
        "config_error",
        hb.config_error.as_deref(),
        limits::TEXT_BYTES,
    )?;
    for (i, d) in hb.done.iter().enumerate() {
        bounded(&format!("done[{i}]"), d.as_str(), limits::ID_BYTES)?;
    }
    for (i, p) in hb.pollers.iter().enumerate() {
        let at = |f: &str| format!("pollers[{i}].{f}");
        bounded(&at("name"), p.name.as_str(), limits::NAME_BYTES)?;
        bounded(&at("id"), p.id.as_deref(), limits::ID_BYTES)?;
        bounded(&at("reason"), p.reason.as_deref(), limits::TEXT_BYTES)?;
        bounded(
            &at("plugin_version"),
            p.plugin_version.as_deref(),
            limits::NAME_BYTES,
        )?;
        bounded(
            &at("config_error"),
            p.config_error.as_deref(),
            limits::TEXT_BYTES,
        )?;
        if p.not_ready.len() > limits::NOT_READY_LINES {
            return Err(ApiError::bad(
                &at("not_ready"),
                format!(
                    "has {} lines; at most {} are accepted",
                    p.not_ready.len(),
                    limits::NOT_READY_LINES
                ),
            ));
        }
        for (j, line) in p.not_ready.iter().enumerate() {
            bounded(
                &at(&format!("not_ready[{j}]")),
                line.as_str(),
                limits::TEXT_BYTES,
            )?;
        }
    }
    Ok(())
}

/// The agent's own columns; `poller_states` keeps the whole list for the
/// pollers only the agent knows (its own file's). Agents send the list
/// only when it changed (and now and then in full), and say so
/// (`pollers_unchanged`) when they leave it out.
async fn record_agent(tx: &mut Tx, agent: &Agent, hb: &Heartbeat, now: i64) -> ApiResult<()> {
    let states = (!hb.pollers_unchanged)
        .then(|| serde_json::to_string(&hb.pollers))
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot store agent {}'s poller states: {e}", agent.name),
            )
        })?;
    on_tx!(tx, conn => sqlx::query(
        "UPDATE agents SET version = $1, host_name = $2, last_seen = $3,
            poller_states = COALESCE($4, poller_states), config_etag = $5, config_error = $6,
            journal_bytes = COALESCE($7, journal_bytes)
         WHERE id = $8",
    )
    .bind(&hb.version)
    .bind(&hb.host_name)
    .bind(now)
    .bind(states)
    .bind(&hb.config_etag)
    .bind(hb.config_error.as_deref().filter(|e| !e.is_empty()))
    .bind(hb.journal_bytes)
    .bind(agent.id)
    .execute(conn)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// The web app's poller a state is about, among this agent's pollers only:
/// by id (the database id, as text), else by name (older agents send no
/// id; a standalone agent's id is its poller's name).
async fn poller_of(
    tx: &mut Tx,
    agent_id: i64,
    p: &PollerState,
) -> Result<Option<i64>, sqlx::Error> {
    if let Some(id) = p.id.as_deref().and_then(|s| s.parse::<i64>().ok()) {
        let found = on_tx!(&mut *tx, conn => {
            sqlx::query_scalar(
                "SELECT poller_id FROM poller_agents WHERE agent_id = $1 AND poller_id = $2",
            )
            .bind(agent_id)
            .bind(id)
            .fetch_optional(conn)
            .await
        })?;
        if found.is_some() {
            return Ok(found);
        }
    }
    on_tx!(tx, conn => {
        sqlx::query_scalar(
            "SELECT p.id FROM pollers p JOIN poller_agents pa ON pa.poller_id = p.id
             WHERE pa.agent_id = $1 AND p.name = $2",
        )
        .bind(agent_id)
        .bind(&p.name)
        .fetch_optional(conn)
        .await
    })
}

/// One (agent, poller) state, then the poller's summary columns (what the
/// pages and the pollers API read) from the states of all its agents: the
/// most errors, and the agent that disabled it, if one did.
async fn record_poller(
    tx: &mut Tx,
    agent: &Agent,
    poller_id: i64,
    p: &PollerState,
    now: i64,
) -> Result<(), sqlx::Error> {
    on_tx!(&mut *tx, conn => sqlx::query(
        "INSERT INTO agent_poller_states (agent_id, poller_id, consecutive_errors, disabled,
            disabled_until, reason, plugin_version, config_error, not_ready, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (agent_id, poller_id) DO UPDATE SET
            consecutive_errors = excluded.consecutive_errors, disabled = excluded.disabled,
            disabled_until = excluded.disabled_until, reason = excluded.reason,
            plugin_version = excluded.plugin_version, config_error = excluded.config_error,
            not_ready = excluded.not_ready, updated_at = excluded.updated_at",
    )
    .bind(agent.id)
    .bind(poller_id)
    .bind(p.consecutive_errors)
    .bind(p.disabled)
    .bind(p.disabled.then_some(p.disabled_until).flatten())
    .bind(&p.reason)
    .bind(&p.plugin_version)
    .bind(p.config_error.as_deref().filter(|e| !e.is_empty()))
    .bind((!p.not_ready.is_empty()).then(|| serde_json::json!(p.not_ready).to_string()))
    .bind(now)
    .execute(conn)
    .await
    .map(|_| ()))?;
    on_tx!(tx, conn => sqlx::query(
        "UPDATE pollers SET
            consecutive_errors = (SELECT COALESCE(MAX(consecutive_errors), 0)
                FROM agent_poller_states WHERE poller_id = pollers.id),
            disabled_by_agent = (SELECT a.name FROM agent_poller_states s JOIN agents a ON a.id = s.agent_id
                WHERE s.poller_id = pollers.id AND s.disabled ORDER BY s.updated_at DESC LIMIT 1),
            disabled_at = CASE WHEN EXISTS (SELECT 1 FROM agent_poller_states
                WHERE poller_id = pollers.id AND disabled) THEN COALESCE(disabled_at, $1) ELSE NULL END,
            disabled_reason = COALESCE((SELECT s.reason FROM agent_poller_states s
                WHERE s.poller_id = pollers.id AND s.disabled ORDER BY s.updated_at DESC LIMIT 1), disabled_reason)
         WHERE id = $2",
    )
    .bind(now)
    .bind(poller_id)
    .execute(conn)
    .await
    .map(|_| ()))
}

/// Commands the agent says it did (its own only; ids it cannot have are
/// ignored).
async fn mark_done(
    tx: &mut Tx,
    agent_id: i64,
    done: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    for id in done.iter().filter_map(|s| s.parse::<i64>().ok()) {
        on_tx!(&mut *tx, conn => {
            sqlx::query(
                "UPDATE agent_commands SET done_at = $1 WHERE id = $2 AND agent_id = $3 AND done_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(agent_id)
            .execute(conn)
            .await
            .map(|_| ())
        })?;
    }
    Ok(())
}

/// The agent's commands not done yet, oldest first.
async fn open_commands(tx: &mut Tx, agent_id: i64) -> Result<Vec<Command>, sqlx::Error> {
    let rows: Vec<(i64, String, Option<String>, Option<i64>)> = on_tx!(tx, conn => {
        sqlx::query_as(
            "SELECT id, kind, transfer_id, poller_id FROM agent_commands
             WHERE agent_id = $1 AND done_at IS NULL ORDER BY id",
        )
        .bind(agent_id)
        .fetch_all(conn)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, transfer_id, poller_id)| Command {
            id: id.to_string(),
            kind,
            transfer_id,
            poller_id: poller_id.map(|id| id.to_string()),
        })
        .collect())
}

/// A person enabled poller `poller_id`: every agent it is assigned to gets
/// an `enable` command (reset its breaker now, without waiting for the
/// configuration). Not twice while one is open. Returns how many were made.
pub async fn enable_command(tx: &mut Tx, poller_id: i64) -> Result<u64, sqlx::Error> {
    on_tx!(tx, conn => sqlx::query(
        "INSERT INTO agent_commands (agent_id, kind, poller_id, created_at)
         SELECT pa.agent_id, 'enable', pa.poller_id, $1 FROM poller_agents pa WHERE pa.poller_id = $2
         AND NOT EXISTS (SELECT 1 FROM agent_commands c WHERE c.agent_id = pa.agent_id
            AND c.kind = 'enable' AND c.poller_id = pa.poller_id AND c.done_at IS NULL)",
    )
    .bind(crate::now_ms())
    .bind(poller_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
}

/// A person asked that the failed transfer (row `id` of the log) be tried
/// again now: a `retry` command for the agent that reported it, unless
/// one is open or that agent is gone (the log outlives agents). Returns
/// whether one was made.
pub async fn retry_command(tx: &mut Tx, id: i64) -> Result<bool, sqlx::Error> {
    let made = on_tx!(tx, conn => sqlx::query(
        "INSERT INTO agent_commands (agent_id, kind, transfer_id, created_at)
         SELECT t.agent_id, 'retry', t.transfer_id, $1 FROM transfers t
         WHERE t.id = $2 AND t.agent_id IN (SELECT id FROM agents)
         AND NOT EXISTS (SELECT 1 FROM agent_commands c WHERE c.agent_id = t.agent_id
            AND c.kind = 'retry' AND c.transfer_id = t.transfer_id AND c.done_at IS NULL)",
    )
    .bind(crate::now_ms())
    .bind(id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(made == 1)
}

#[cfg(test)]
mod tests {
    use super::rounds;
    use dispatch_protocol::Event;

    fn event(id: &str, transfer: &str) -> Event {
        serde_json::from_value(serde_json::json!({"id": id, "transfer_id": transfer,
            "poller": "p", "path": "a/b", "event": "progress", "bytes_done": 0, "attempt": 1, "at": 0}))
        .expect("an event")
    }

    /// Each round touches a transfer once, and a transfer's events keep
    /// their order across rounds.
    #[test]
    fn rounds_hold_each_transfer_once_in_batch_order() {
        let batch = [
            event("1", "a"),
            event("2", "b"),
            event("3", "a"),
            event("4", "a"),
            event("5", "c"),
            event("6", "b"),
        ];
        let refs: Vec<&Event> = batch.iter().collect();
        let ids: Vec<Vec<&str>> = rounds(&refs)
            .iter()
            .map(|r| r.iter().map(|e| e.id.as_str()).collect())
            .collect();
        assert_eq!(ids, [vec!["1", "2", "5"], vec!["3", "6"], vec!["4"]]);
    }
}
