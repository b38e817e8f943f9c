//! Benchmarks of the web app (results and method in BENCHMARKS.md).
//!
//! 1. `search`: transfer search over 1,000,000 log rows (file-name substring,
//!    status and poller; newest first, page of 50) through the HTTP API;
//!    baseline: the same query with a plain `LIKE '%…%'` scan, same run;
//!    then the substring alone (no other filter), and `.mxf` (in every
//!    name), pages 1-5, against the trigram index alone.
//! 2. `ingest`: agent events in batches of 500 through the HTTP API;
//!    baseline: the same rows inserted by plain SQL, same run; on
//!    PostgreSQL also the API with the counting triggers (the hourly and
//!    daily rollups and the per-status totals, migration 0013) disabled,
//!    alternating with the API's runs.
//!
//! 3. `stats`: the dashboard, the statistics page and `/api/v1/stats` over
//!    the last 24 hours and 30 days of a log of 1,000,000 transfers spread
//!    over 30 days (`DISPATCH_BENCH_TRANSFERS` for another count), read
//!    from the daily and hourly rollups; baseline: the aggregate the API made before
//!    the rollups (a scan of the log's range), in-process, same run; and
//!    a `/metrics` scrape (its transfer counts kept by triggers).
//!
//! Each runs on SQLite and on PostgreSQL in the same go (a cluster of its
//! own with fsync on, as SQLite syncs each commit);
//! `DISPATCH_BENCH_BACKENDS=sqlite` or `postgres` runs one. The log's size:
//! `DISPATCH_BENCH_TRANSFERS` (1,000,000; the issue's figure is 10,000,000).
//! `DISPATCH_BENCH_POSTGRES=postgres://user@host:port` runs PostgreSQL on
//! that server instead, where `search`'s filled log is kept between runs
//! (as SQLite's file is under `target/bench-web`).
//!
//! Run: `cargo xtask bench -- search` (or `ingest`, `stats`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::zombie_processes,
    dead_code
)] // a benchmark that fails panics

#[path = "../tests/support/mod.rs"]
mod support;

use dispatch_web::db::Db;
use dispatch_web::{on_db, on_tx};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The log's size in `search` and `stats`.
fn rows() -> i64 {
    std::env::var("DISPATCH_BENCH_TRANSFERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The backends to run on (`DISPATCH_BENCH_BACKENDS`, both by default).
fn backends() -> Vec<Backend> {
    let wanted = std::env::var("DISPATCH_BENCH_BACKENDS").unwrap_or_default();
    [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter(|b| {
            wanted.is_empty()
                || wanted
                    .to_lowercase()
                    .contains(&b.name().to_lowercase()[..6])
        })
        .collect()
}

/// One PostgreSQL cluster for the whole run, fsync on; stopped and removed
/// when the run ends.
fn cluster() -> &'static support::postgres::Postgres {
    static PG: std::sync::OnceLock<support::postgres::Postgres> = std::sync::OnceLock::new();
    PG.get_or_init(|| {
        let pg = support::postgres::Postgres::start_durable();
        pg.stop_with_this_process();
        pg
    })
}

/// The URL to serve `backend` from: none for SQLite (in `data`); for
/// PostgreSQL a new database `name`, on the server `DISPATCH_BENCH_POSTGRES`
/// names (where a database `keep` says to keep is used again) or on the
/// run's own cluster.
async fn database(backend: Backend, name: &str, keep: bool) -> Option<String> {
    use sqlx::Connection as _;
    if backend == Backend::Sqlite {
        return None;
    }
    let Ok(server) = std::env::var("DISPATCH_BENCH_POSTGRES") else {
        return Some(cluster().database(name).await);
    };
    let server = server.trim_end_matches('/');
    let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !(exists && keep) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        support::postgres::create_database(&mut conn, name).await;
    }
    Some(format!("{server}/{name}"))
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| name.contains(f.as_str()) || f == "web")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("benchmark                                   median        (runs)  notes");
    for backend in backends() {
        if wants("search") {
            rt.block_on(search(backend));
        }
        if wants("ingest") {
            rt.block_on(ingest(backend));
        }
    }
    if wants("stats") {
        rt.block_on(stats(&backends()));
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    state: Arc<dispatch_web::AppState>,
    cookie: String,
}

impl Server {
    /// GET as the logged-in admin; the answer must be a success.
    async fn get(&self, path: &str) -> reqwest::Response {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res
    }

    /// A JSON answer, and how long it took, read in full.
    async fn timed_json(&self, path: &str) -> (Duration, Value) {
        let t = Instant::now();
        let body = self.get(path).await.json().await.unwrap();
        (t.elapsed(), body)
    }
}

async fn serve(data: &Path, database_url: Option<String>) -> Server {
    serve_with(data, database_url, None).await
}

/// A web app on `data`; with `key_file`, a replica of the app whose key
/// that is.
async fn serve_with(
    data: &Path,
    database_url: Option<String>,
    key_file: Option<std::path::PathBuf>,
) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let state = dispatch_web::AppState::open(dispatch_web::Settings {
        data_dir: data.to_path_buf(),
        database_url,
        secret_key: None,
        secret_key_file: key_file,
        upload_limit: 50 << 20,
        upload_check: std::time::Duration::from_secs(60),
        secure_cookies: false,
    })
    .await
    .unwrap();
    dispatch_web::ensure_admin(&state.db, "admin", Some("pw"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = dispatch_web::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"username": "admin", "password": "pw"}))
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
    Server {
        base,
        http,
        state,
        cookie,
    }
}

/// Show names: 2,000 shows × episodes; a show's name is a 6-letter word.
fn show(i: i64) -> String {
    let mut x = (i % 2000) as u64 * 2_654_435_761 + 12345;
    (0..6)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (b'a' + ((x >> 33) % 26) as u8) as char
        })
        .collect()
}

const STATUSES: [&str; 4] = ["Complete", "Complete", "Complete", "Error"];

/// `rows` transfers of one agent and 34 pollers, one every `step` ms from
/// `t0` (kept when the database already has them); the same rows on
/// either backend.
async fn fill(db: &Db, rows: i64, t0: i64, step: i64) {
    let have: i64 = on_db!(db, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM transfers").fetch_one(pool).await
    })
    .unwrap();
    if have >= rows {
        return;
    }
    on_db!(db, pool => {
        sqlx::query("INSERT INTO agents (name, token_hash, created_at) VALUES ('edge1', 'x', 0)")
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    match db {
        Db::Sqlite(pool) => fill_sqlite(pool, rows, t0, step).await,
        Db::Postgres(pool) => fill_postgres(pool, rows, t0, step).await,
    }
}

async fn fill_sqlite(pool: &sqlx::SqlitePool, rows: i64, t0: i64, step: i64) {
    let mut tx = pool.begin().await.unwrap();
    for i in 0..rows {
        let name = format!("{}_S{:02}E{:03}_{:07}.mxf", show(i), i % 7, i % 997, i);
        sqlx::query(
            "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, started_at, ended_at, host, updated_at)
             VALUES (1, 'edge1', $1, $2, $3, $4, 1000000, 1000000, $5, 1, $6, $7, 'media-01', $8)",
        )
        .bind(format!("t{i}"))
        .bind(format!("p{:02}", i % 34))
        .bind(format!("{}/{name}", show(i)))
        .bind(&name)
        .bind(STATUSES[(i % 4) as usize])
        .bind(t0 + i * step)
        .bind(t0 + i * step + step / 2)
        .bind(t0 + i * step + step / 2)
        .execute(&mut *tx)
        .await
        .unwrap();
        if i % 100_000 == 99_999 {
            tx.commit().await.unwrap();
            tx = pool.begin().await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

/// The same rows as `fill_sqlite`, made by the server (`generate_series`)
/// 500,000 at a time.
async fn fill_postgres(pool: &sqlx::PgPool, rows: i64, t0: i64, step: i64) {
    let shows: Vec<String> = (0..2000).map(show).collect();
    let statuses: Vec<&str> = STATUSES.to_vec();
    let mut from = 0;
    while from < rows {
        let to = (from + 500_000).min(rows) - 1;
        sqlx::query(
            "INSERT INTO transfers (agent_id, agent, transfer_id, poller, path, file_name, size, bytes_done, status, attempts, started_at, ended_at, host, updated_at)
             SELECT 1, 'edge1', 't' || i, 'p' || lpad((i % 34)::text, 2, '0'), s || '/' || n, n, 1000000, 1000000,
                    ($4::text[])[i % 4 + 1], 1, $5 + i * $6, $5 + i * $6 + $6 / 2, 'media-01', $5 + i * $6 + $6 / 2
             FROM generate_series($1::bigint, $2::bigint) AS i,
             LATERAL (SELECT ($3::text[])[i % 2000 + 1] AS s) AS sh,
             LATERAL (SELECT s || '_S' || lpad((i % 7)::text, 2, '0') || 'E' || lpad((i % 997)::text, 3, '0') || '_'
                          || CASE WHEN i >= 1000000 THEN i::text ELSE lpad(i::text, 7, '0') END || '.mxf' AS n) AS nm",
        )
        .bind(from)
        .bind(to)
        .bind(&shows)
        .bind(&statuses)
        .bind(t0)
        .bind(step)
        .execute(pool)
        .await
        .unwrap();
        from = to + 1;
    }
    // As autovacuum leaves it in time: each row updated a rollup cell.
    sqlx::query("VACUUM ANALYZE").execute(pool).await.unwrap();
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn search(backend: Backend) {
    let rows = rows();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-web")
        .join(format!("search-{rows}"));
    std::fs::create_dir_all(&data).unwrap();
    let s = serve(
        &data,
        database(backend, &format!("search_{rows}"), true).await,
    )
    .await;
    let db = &s.state.db;
    let t = Instant::now();
    fill(db, rows, 1_700_000_000_000, 1000).await;
    let filled = t.elapsed();
    let runs = 200;
    let (mut api, mut like) = (Vec::new(), Vec::new());
    let mut hits = 0usize;
    for k in 0..runs {
        let i = (k * 7919) as i64;
        let q = show(i)[..5].to_string();
        let poller = format!("p{:02}", (i % 34));
        let (took, page) = s
            .timed_json(&format!(
                "/api/v1/transfers?q={q}&status=Complete&poller={poller}&per_page=50"
            ))
            .await;
        api.push(took);
        hits += page["items"].as_array().unwrap().len();
        // Baseline: the same filter as a scan no index answers (`instr` /
        // `strpos` of the lowered name), in-process.
        let t = Instant::now();
        let find = match backend {
            Backend::Sqlite => "instr(lower(file_name), $1) > 0",
            Backend::Postgres => "strpos(lower(file_name), $1) > 0",
        };
        let sql = format!(
            "SELECT id FROM transfers WHERE {find} AND status = 'Complete' AND poller = $2 ORDER BY updated_at DESC, id DESC LIMIT 51"
        );
        let found: Vec<(i64,)> = on_db!(db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(&q)
                .bind(&poller)
                .fetch_all(pool)
                .await
        })
        .unwrap();
        like.push(t.elapsed());
        assert!(found.len() <= 51);
    }
    println!(
        "search on {}: {rows} rows (filled in {:.0} s or reused), {} queries, {:.1} rows/page avg",
        backend.name(),
        filled.as_secs_f64(),
        runs,
        hits as f64 / runs as f64
    );
    println!(
        "search API (trigram), p50                   {:>12}  ({runs})",
        ms(percentile(api.clone(), 0.5))
    );
    println!(
        "search API (trigram), p95                   {:>12}  ({runs})  floor: < 50 ms",
        ms(percentile(api, 0.95))
    );
    println!(
        "search scan in-process, p50 (baseline)      {:>12}  ({runs})",
        ms(percentile(like.clone(), 0.5))
    );
    println!(
        "search scan in-process, p95 (baseline)      {:>12}  ({runs})",
        ms(percentile(like, 0.95))
    );

    // The substring alone: every match must be read to sort by time.
    let mut alone = Vec::new();
    for k in 0..runs {
        let q = show((k * 7919) as i64)[..5].to_string();
        let (took, page) = s
            .timed_json(&format!("/api/v1/transfers?q={q}&per_page=50"))
            .await;
        alone.push(took);
        assert!(!page["items"].as_array().unwrap().is_empty());
    }
    println!(
        "search API, the substring alone, p50        {:>12}  ({runs})",
        ms(percentile(alone.clone(), 0.5))
    );
    println!(
        "search API, the substring alone, p95        {:>12}  ({runs})  no floor",
        ms(percentile(alone, 0.95))
    );

    // A substring in every name, pages 1 to 5; baseline: the trigram index
    // alone, in-process (SQLite's FTS5 table; on PostgreSQL `ILIKE` with
    // index scans turned off, so the trigram index answers).
    let runs = 50;
    let (mut common, mut index_only) = (Vec::new(), Vec::new());
    for k in 0..runs {
        let page = k % 5 + 1;
        let (took, got) = s
            .timed_json(&format!("/api/v1/transfers?q=.mxf&per_page=50&page={page}"))
            .await;
        common.push(took);
        assert_eq!(got["items"].as_array().unwrap().len(), 50);
        if k % 5 == 0 {
            let t = Instant::now();
            let found = match db {
                Db::Sqlite(pool) => sqlx::query_as::<_, (i64,)>(
                    "SELECT t.id FROM transfers t WHERE t.id IN (SELECT rowid FROM transfers_fts WHERE transfers_fts MATCH '\".mxf\"')
                     ORDER BY t.updated_at DESC, t.id DESC LIMIT 51 OFFSET $1",
                )
                .bind((page - 1) * 50)
                .fetch_all(pool)
                .await
                .unwrap(),
                Db::Postgres(pool) => {
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query("SET LOCAL enable_indexscan = off")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    let found = sqlx::query_as::<_, (i64,)>(
                        "SELECT t.id FROM transfers t WHERE t.file_name ILIKE '%.mxf%'
                         ORDER BY t.updated_at DESC, t.id DESC LIMIT 51 OFFSET $1",
                    )
                    .bind((page - 1) * 50)
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                    tx.rollback().await.unwrap();
                    found
                }
            };
            index_only.push(t.elapsed());
            assert_eq!(found.len(), 51);
        }
    }
    println!(
        "search \".mxf\" (every row), p50            {:>12}  ({runs})",
        ms(percentile(common.clone(), 0.5))
    );
    println!(
        "search \".mxf\" (every row), p95            {:>12}  ({runs})  floor: < 200 ms",
        ms(percentile(common, 0.95))
    );
    println!(
        "\".mxf\" by the trigram index alone, p50      {:>12}  ({})  baseline",
        ms(percentile(index_only, 0.5)),
        runs / 5
    );
}

async fn ingest(backend: Backend) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-web/ingest");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let url = database(backend, "ingest", false).await;
    let s = serve(&data, url.clone()).await;
    let csrf = s.get("/api/v1/me").await.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let agent: Value = s
        .http
        .post(format!("{}/api/v1/agents", s.base))
        .header("cookie", &s.cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "edge1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = agent["token"].as_str().unwrap().to_string();
    let runs = 5;
    let batches = 40;
    let (mut api_rates, mut sql_rates) = (Vec::new(), Vec::new());
    // What the counting triggers (migration 0013: the rollups, hourly and
    // daily, and the per-status totals) cost: the same load with them
    // disabled, in the same runs, order alternating. PostgreSQL only
    // (SQLite cannot disable a trigger; the floor is PostgreSQL's).
    let mut uncounted_rates = Vec::new();
    let counting_triggers = async |verb: &str| {
        if let Db::Postgres(pool) = &s.state.db {
            for t in ["transfers_counts_ai", "transfers_counts_au"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE transfers {verb} TRIGGER {t}"
                )))
                .execute(pool)
                .await
                .unwrap();
            }
        }
    };
    let rate = async |bodies: &[Value]| {
        let t = Instant::now();
        send_events(&s, &token, bodies).await;
        (batches * 500) as f64 / t.elapsed().as_secs_f64()
    };
    for run in 0..runs {
        let counted = event_batches("e", "A", run, batches);
        let without =
            matches!(backend, Backend::Postgres).then(|| event_batches("u", "U", run, batches));
        for side in [run % 2, 1 - run % 2] {
            if side == 0 {
                api_rates.push(rate(&counted).await);
            } else if let Some(bodies) = &without {
                counting_triggers("DISABLE").await;
                uncounted_rates.push(rate(bodies).await);
                counting_triggers("ENABLE").await;
            }
        }

        // Baseline: the same number of rows by plain SQL in batches of 500.
        let t = Instant::now();
        for b in 0..batches {
            let mut tx = s.state.db.begin_write().await.unwrap();
            for e in 0..500 {
                let n = (run * batches + b) * 500 + e;
                on_tx!(&mut tx, conn => {
                    sqlx::query("INSERT INTO ingested_events (agent_id, event_id, at) VALUES (99, $1, 0)")
                        .bind(format!("b{n}"))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
                .unwrap();
            }
            tx.commit().await.unwrap();
        }
        sql_rates.push((batches * 500) as f64 / t.elapsed().as_secs_f64());
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };

    // Through two replicas of the same database: half of the batches to
    // each, sent at the same time.
    let url = url.unwrap_or_else(|| format!("sqlite://{}", data.join("dispatch.sqlite").display()));
    let s2 = serve_with(
        &data.join("second"),
        Some(url),
        Some(data.join("secret.key")),
    )
    .await;
    let mut two_rates = Vec::new();
    for run in 0..runs {
        let bodies = event_batches("r", "B", run, batches);
        let (first, second) = bodies.split_at(bodies.len() / 2);
        let t = Instant::now();
        tokio::join!(
            send_events(&s, &token, first),
            send_events(&s2, &token, second)
        );
        two_rates.push((batches * 500) as f64 / t.elapsed().as_secs_f64());
    }
    println!("ingest on {}:", backend.name());
    println!(
        "ingest API, batches of 500 (20k events/run) {:>9.0} ev/s  ({runs})  floor: >= 10,000",
        med(api_rates)
    );
    println!(
        "ingest API through two replicas, same load  {:>9.0} ev/s  ({runs})",
        med(two_rates)
    );
    println!(
        "ingest plain SQL inserts, same batches      {:>9.0} ev/s  ({runs})  baseline (id rows only)",
        med(sql_rates)
    );
    if !uncounted_rates.is_empty() {
        println!(
            "ingest API without the counting triggers    {:>9.0} ev/s  ({runs})  baseline (no statistics kept)",
            med(uncounted_rates)
        );
    }
}

/// `batches` batches of 500 events of run `run`: four events (queued,
/// started, progress, complete) for each transfer, ids and transfer ids
/// starting with `prefix`, paths in folder `dir`.
fn event_batches(prefix: &str, dir: &str, run: usize, batches: usize) -> Vec<Value> {
    let kinds = ["queued", "started", "progress", "complete"];
    (0..batches)
        .map(|b| {
            let events: Vec<Value> = (0..500)
                .map(|e| {
                    let n = (run * batches + b) * 500 + e;
                    json!({"id": format!("{prefix}{n}"), "transfer_id": format!("{prefix}{}", n / 4), "poller": "p01",
                           "path": format!("{dir}/clip_{}.mxf", n / 4), "event": kinds[n % 4], "size": 1000,
                           "bytes_done": 1000, "attempt": 1, "at": 1_700_000_000_000i64 + n as i64, "host": "media-01"})
                })
                .collect();
            json!({ "events": events })
        })
        .collect()
}

/// Posts the event batches to one app as an agent, one after another.
async fn send_events(server: &Server, token: &str, bodies: &[Value]) {
    for body in bodies {
        let res = server
            .http
            .post(format!("{}/api/v1/agent/events", server.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

const DAY: i64 = 86_400_000;

/// The backends' logs filled at once (each fill is one thread's work:
/// SQLite's in this process, PostgreSQL's in its server, so two fit the
/// two cores and halve a 10,000,000-row run), then each measured alone.
async fn stats(backends: &[Backend]) {
    let rows = rows();
    let mut servers = Vec::new();
    for &backend in backends {
        let data = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/bench-web")
            .join(format!("stats-{}-{rows}", backend.name()));
        // The log must end now for "the last 24 hours" to hold its share: a
        // kept database from another day is made again.
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        servers.push((
            backend,
            serve(&data, database(backend, "stats", false).await).await,
        ));
    }
    let now = dispatch_web::now_ms();
    let mut fills = tokio::task::JoinSet::new();
    for (backend, s) in &servers {
        let (name, state) = (backend.name(), s.state.clone());
        fills.spawn(async move {
            let t = Instant::now();
            fill(&state.db, rows, now - 30 * DAY, 30 * DAY / rows).await;
            (name, t.elapsed())
        });
    }
    for (name, filled) in fills.join_all().await {
        println!(
            "stats on {name}: {rows} transfers over 30 days (filled in {:.0} s, both at once; rollups kept by triggers)",
            filled.as_secs_f64()
        );
    }
    for (backend, s) in &servers {
        stats_of(*backend, s, now).await;
    }
}

/// The statistics' timings on one filled backend.
async fn stats_of(backend: Backend, s: &Server, now: i64) {
    println!("stats on {}:", backend.name());
    let runs = 30;
    let get = async |path: &str| {
        let t = Instant::now();
        let body = s.get(path).await.bytes().await.unwrap();
        assert!(!body.is_empty());
        t.elapsed()
    };
    // What `/api/v1/stats` ran before the rollups: the log's range, scanned.
    let scan = async |from: i64| {
        let t = Instant::now();
        type PerPoller = (String, i64, i64, i64, i64);
        let per_poller: Vec<PerPoller> = on_db!(&s.state.db, pool => {
            sqlx::query_as(
                "SELECT poller, COUNT(*) AS n,
                        CAST(SUM(CASE WHEN status = 'Complete' THEN 1 ELSE 0 END) AS BIGINT) AS ok,
                        CAST(SUM(CASE WHEN status = 'Error' THEN 1 ELSE 0 END) AS BIGINT) AS err,
                        CAST(COALESCE(SUM(CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END), 0) AS BIGINT) AS bytes
                 FROM transfers WHERE updated_at >= $1 AND updated_at < $2 GROUP BY poller ORDER BY poller",
            )
            .bind(from)
            .bind(i64::MAX)
            .fetch_all(pool)
            .await
        })
        .unwrap();
        assert_eq!(per_poller.len(), 34);
        t.elapsed()
    };
    let from_24h = now - DAY;
    let from_30d = now - 30 * DAY;
    const FLOOR: &str = "floor: p95 < 200 ms";
    let cases: [(&str, String, &str); 5] = [
        (
            "/api/v1/stats, last 24 hours",
            format!("/api/v1/stats?from={from_24h}"),
            FLOOR,
        ),
        (
            "/api/v1/stats, last 30 days",
            format!("/api/v1/stats?from={from_30d}"),
            FLOOR,
        ),
        (
            "dashboard page (24 h and 7 d charts)",
            "/".to_string(),
            FLOOR,
        ),
        (
            "statistics page, last 30 days",
            "/stats?last=30d".to_string(),
            FLOOR,
        ),
        ("/metrics (a Prometheus scrape)", "/metrics".to_string(), ""),
    ];
    // `/metrics`' transfer counts, in-process: the totals it reads now,
    // and the sum of the rollups it read before.
    let by_status = async |sql: &'static str| {
        let t = Instant::now();
        let mut rows: Vec<(String, i64)> = on_db!(&s.state.db, pool => {
            sqlx::query_as(sql).fetch_all(pool).await
        })
        .unwrap();
        let took = t.elapsed();
        rows.sort();
        (took, rows)
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let (mut totals, mut rollup_sums) = (Vec::new(), Vec::new());
    let (mut scan_24h, mut scan_30d) = (Vec::new(), Vec::new());
    // The baseline's 30-day scan takes seconds: 5 of its runs, spread
    // among ours.
    let base_runs = 5;
    for run in 0..runs {
        for (i, (_, path, _)) in cases.iter().enumerate() {
            times[i].push(get(path).await);
        }
        let (t, kept) =
            by_status("SELECT status, CAST(transfers AS BIGINT) FROM transfer_totals").await;
        let (t_before, summed) = by_status(
            "SELECT status, CAST(SUM(transfers) AS BIGINT) FROM transfer_rollups GROUP BY status",
        )
        .await;
        assert_eq!(kept, summed, "the totals are the rollups' sums");
        assert_eq!(kept.iter().map(|(_, n)| n).sum::<i64>(), rows());
        totals.push(t);
        rollup_sums.push(t_before);
        if run % (runs / base_runs) == 0 {
            scan_24h.push(scan(from_24h).await);
            scan_30d.push(scan(from_30d).await);
        }
    }
    for ((what, _, floor), t) in cases.iter().zip(times) {
        println!(
            "{:<44}{:>12}  ({runs})  p95 {}  {floor}",
            format!("{what}, p50"),
            ms(percentile(t.clone(), 0.5)),
            ms(percentile(t, 0.95)),
        );
    }
    for (what, t, note) in [
        ("transfers by status (totals)", totals, ""),
        ("the same, summing the rollups", rollup_sums, "baseline"),
    ] {
        println!(
            "{:<44}{:>12}  ({runs})  p95 {}  {note}",
            format!("{what}, p50"),
            ms(percentile(t.clone(), 0.5)),
            ms(percentile(t, 0.95)),
        );
    }
    for (what, t) in [("last 24 hours", scan_24h), ("last 30 days", scan_30d)] {
        println!(
            "{:<44}{:>12}  ({base_runs})  p95 {}  baseline",
            format!("scan of the log, {what}, p50"),
            ms(percentile(t.clone(), 0.5)),
            ms(percentile(t, 0.95)),
        );
    }
}
