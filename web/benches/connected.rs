//! Connected agents: how fast a change made in the web app reaches a
//! running agent. Real `dispatch-web` and `dispatch-agent` processes on
//! loopback (see BENCHMARKS.md).
//!
//! - `config_apply`: 50 changes of a poller (its pinned plugin version,
//!   toggled between stamp 1.0.0 and 2.0.0, which send different file
//!   suffixes): from the PUT to the arrival of a file only the new settings
//!   send. Baseline, in the same run: a file dropped into the running poller
//!   (no change) to its arrival, so the difference is what applying costs.
//! - `new_version`: a version uploaded while the poller follows the latest,
//!   to the arrival of a file only it sends (download, sha256, compile,
//!   swap, poll); 5 fresh agents (empty module store and compile cache).
//! - `fleet`: 50 simulated agents (lightweight clients speaking the real
//!   protocol) with 20 pollers each: every second each posts a heartbeat
//!   with its 20 poller states and a batch of 10 events, and each holds a
//!   configuration long-poll. For 30 s: the web app's CPU (from
//!   /proc/<pid>/stat), p95 of the heartbeat and event calls, and how long
//!   the 50 long-polls take to answer a change.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{Site, test_plugin, wait_until};

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95))
}

async fn arrival(path: &std::path::Path, start: Instant) -> f64 {
    wait_until("arrival", Duration::from_secs(30), async || path.exists()).await;
    start.elapsed().as_secs_f64() * 1000.0
}

async fn config_apply() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    site.upload(test_plugin("stamp-v1")).await;
    site.upload(test_plugin("stamp-v2")).await;
    let out = site.local_target("out", json!({})).await;
    let (id, src) = site
        .poller(
            "stamp",
            "stamp",
            "out",
            json!({"plugin_version": "1.0.0", "stability_secs": 0.0}),
        )
        .await;
    site.start_agent(&token);
    std::fs::write(src.join("warm.v1"), b"w").unwrap();
    arrival(&out.join("warm.v1"), Instant::now()).await;
    let (mut applied, mut baseline) = (Vec::new(), Vec::new());
    for i in 0..50 {
        // Baseline: no change, a file the running version sends.
        let v = if i % 2 == 0 { 1 } else { 2 };
        let t = Instant::now();
        std::fs::write(src.join(format!("b{i}.v{v}")), b"b").unwrap();
        baseline.push(arrival(&out.join(format!("b{i}.v{v}")), t).await);
        // The change: only the other version sends this file.
        let next = 3 - v;
        std::fs::write(src.join(format!("c{i}.v{next}")), b"c").unwrap();
        let t = Instant::now();
        site.edit_poller(id, json!({"plugin_version": format!("{next}.0.0")}))
            .await;
        applied.push(arrival(&out.join(format!("c{i}.v{next}")), t).await);
    }
    let (am, ap) = stats(applied);
    let (bm, bp) = stats(baseline);
    println!(
        "config_apply: change saved -> file sent by the new settings: median {am:.0} ms, p95 {ap:.0} ms (50 changes)"
    );
    println!(
        "config_apply: baseline, file dropped -> sent (no change): median {bm:.0} ms, p95 {bp:.0} ms"
    );
    site.agent.take().unwrap().stop();
}

async fn new_version() {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut site = Site::start().await;
        let token = site.agent_token("edge").await;
        site.upload(test_plugin("stamp-v1")).await;
        let out = site.local_target("out", json!({})).await;
        let (_, src) = site
            .poller("stamp", "stamp", "out", json!({"stability_secs": 0.0}))
            .await;
        site.start_agent(&token);
        std::fs::write(src.join("a.v1"), b"a").unwrap();
        arrival(&out.join("a.v1"), Instant::now()).await;
        std::fs::write(src.join("b.v2"), b"b").unwrap();
        let t = Instant::now();
        site.upload(test_plugin("stamp-v2")).await;
        samples.push(arrival(&out.join("b.v2"), t).await);
        site.agent.take().unwrap().stop();
    }
    let (m, _) = stats(samples.clone());
    println!("new_version: upload -> first file sent by it: median {m:.0} ms of {samples:.0?}");
}

/// One simulated agent's token and its poller ids.
struct Sim {
    token: String,
    pollers: Vec<String>,
}

async fn fleet() {
    const AGENTS: usize = 50;
    const POLLERS: usize = 20;
    let site = Site::start().await;
    let _out = site.local_target("out", json!({})).await;
    let mut sims = Vec::new();
    for a in 0..AGENTS {
        let name = format!("edge{a}");
        let token = std::fs::read_to_string(site.agent_token(&name).await).unwrap();
        let mut pollers = Vec::new();
        for p in 0..POLLERS {
            let src = site.path(&format!("src/{a}/{p}"));
            let v = site
                .call(
                    Method::POST,
                    "/pollers",
                    Some(
                        json!({"name": format!("p{a}_{p}"), "path": src, "plugin": "file",
                        "target": "out", "agents": [name]}),
                    ),
                )
                .await;
            pollers.push(v["id"].as_i64().unwrap().to_string());
        }
        sims.push(Sim { token, pollers });
    }
    let web_pid = site.web.as_ref().unwrap().0.id();
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{web_pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime, fields 14 and 15 (11 and 12 after the name).
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    };
    let http = reqwest::Client::new();
    let base = site.base();
    let stop = Instant::now() + Duration::from_secs(30);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(&'static str, f64)>();
    let cpu0 = cpu();
    let changed_at = std::sync::Arc::new(std::sync::Mutex::new(Instant::now()));
    let mut tasks = Vec::new();
    for (a, sim) in sims.into_iter().enumerate() {
        let (http, base, tx) = (http.clone(), base.clone(), tx.clone());
        // The configuration long-poll, answered on a change.
        let (h2, b2, t2, tok) = (http.clone(), base.clone(), tx.clone(), sim.token.clone());
        let changed = changed_at.clone();
        tasks.push(tokio::spawn(async move {
            let mut etag = String::new();
            while Instant::now() < stop {
                let res = h2
                    .get(format!("{b2}/api/v1/agent/config?wait=30"))
                    .bearer_auth(&tok)
                    .header("if-none-match", &etag)
                    .send()
                    .await
                    .unwrap();
                if res.status() == 200 && !etag.is_empty() {
                    let since = changed.lock().unwrap().elapsed();
                    t2.send(("change -> long-poll answered", since.as_secs_f64() * 1000.0))
                        .ok();
                }
                if let Some(tag) = res.headers().get("etag") {
                    etag = tag.to_str().unwrap().to_string();
                }
                let _ = res.bytes().await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < stop {
                let beat = json!({"version": "bench", "host_name": format!("h{a}"),
                    "pollers": sim.pollers.iter().map(|id| json!({"id": id, "name": format!("x{id}"), "consecutive_errors": seq % 3})).collect::<Vec<_>>()});
                let t = Instant::now();
                let res = http.post(format!("{base}/api/v1/agent/heartbeat")).bearer_auth(&sim.token).json(&beat).send().await.unwrap();
                assert!(res.status().is_success());
                tx.send(("heartbeat", t.elapsed().as_secs_f64() * 1000.0)).ok();
                let events: Vec<_> = (0..10).map(|i| {
                    seq += 1;
                    json!({"id": format!("e{a}-{seq}"), "transfer_id": format!("t{a}-{}", seq / 3), "poller": "p",
                        "path": format!("f{seq}.mxf"), "event": if i % 2 == 0 { "started" } else { "complete" },
                        "size": 1000, "bytes_done": 1000, "attempt": 1, "at": 1_764_000_000_000i64 + seq as i64})
                }).collect();
                let t = Instant::now();
                let res = http.post(format!("{base}/api/v1/agent/events")).bearer_auth(&sim.token).json(&json!({"events": events})).send().await.unwrap();
                assert!(res.status().is_success());
                tx.send(("events", t.elapsed().as_secs_f64() * 1000.0)).ok();
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(t.elapsed())).await;
            }
        }));
    }
    // Configuration changes while the fleet runs: one every 5 s (each wakes
    // the agent that runs the poller; a new target wakes nobody).
    for i in 0..5 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        site.local_target(&format!("spare{i}"), json!({})).await;
        let id = 1 + i * POLLERS as i64;
        *changed_at.lock().unwrap() = Instant::now();
        site.edit_poller(id, json!({"excludes": format!("*.tmp{i}")}))
            .await;
    }
    drop(tx);
    tokio::time::sleep_until(stop.into()).await;
    let used = cpu() - cpu0;
    let wall = 30.0;
    for t in tasks {
        t.abort();
    }
    let mut by: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    while let Some((k, v)) = rx.recv().await {
        by.entry(k).or_default().push(v);
    }
    println!(
        "fleet: {AGENTS} agents x {POLLERS} pollers, 30 s: web app CPU {:.0}% of one core",
        used / wall * 100.0
    );
    for (k, v) in by {
        let n = v.len();
        let (m, p) = stats(v);
        println!("fleet: {k}: {n} calls, median {m:.1} ms, p95 {p:.1} ms");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if wants("config_apply") {
        config_apply().await;
    }
    if wants("new_version") {
        new_version().await;
    }
    if wants("fleet") {
        fleet().await;
    }
}
