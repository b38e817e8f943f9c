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
//! - `long_polls`: 2,000 agents (`DISPATCH_BENCH_AGENTS`) each holding a
//!   configuration long-poll on one web app, all running one poller: the
//!   web app's memory (VmRSS) before the agents exist, with the agents and
//!   no long-poll, and with every long-poll waiting; its CPU over 10 s of
//!   waiting; and, for 5 changes of that poller, the time from the change
//!   to the answer of the first, the median and the last long-poll.
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
    let cpu = || usage(web_pid).1;
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

/// `pid`'s resident memory (MB) and CPU seconds so far.
fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 (11 and 12 after the name).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    (rss_kb / 1024.0, ticks / 100.0)
}

async fn long_polls() {
    let agents: usize = std::env::var("DISPATCH_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let site = Site::start().await;
    let pid = site.web.as_ref().unwrap().0.id();
    let (rss_empty, _) = usage(pid);
    let mut names = Vec::new();
    let mut tokens = Vec::new();
    for a in 0..agents {
        let name = format!("edge{a}");
        let v = site
            .call(Method::POST, "/agents", Some(json!({ "name": name })))
            .await;
        tokens.push(v["token"].as_str().unwrap().to_string());
        names.push(name);
    }
    site.local_target("out", json!({})).await;
    let v = site
        .call(
            Method::POST,
            "/pollers",
            Some(
                json!({"name": "everywhere", "path": site.path("src"), "plugin": "file",
                "target": "out", "agents": names}),
            ),
        )
        .await;
    let poller = v["id"].as_i64().unwrap();
    let (rss_agents, _) = usage(pid);
    let metric = async || -> f64 {
        let text = reqwest::get(format!("{}/metrics", site.base()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("dispatch_config_long_polls "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    // One client per agent, as real agents are: its own connection.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let base = site.base();
    let mut tasks = Vec::new();
    for token in tokens {
        let (base, tx) = (base.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut etag = String::new();
            loop {
                let res = http
                    .get(format!("{base}/api/v1/agent/config?wait=60"))
                    .bearer_auth(&token)
                    .header("if-none-match", &etag)
                    .send()
                    .await
                    .unwrap();
                let changed = res.status() == 200 && !etag.is_empty();
                if let Some(tag) = res.headers().get("etag") {
                    etag = tag.to_str().unwrap().to_string();
                }
                let _ = res.bytes().await;
                if changed {
                    tx.send(Instant::now()).ok();
                }
            }
        }));
    }
    let waiting = async || metric().await as usize == agents;
    wait_until("every long-poll waits", Duration::from_secs(120), waiting).await;
    let (rss_waiting, cpu0) = usage(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, cpu1) = usage(pid);
    println!(
        "long_polls: {agents} agents: web app {rss_empty:.0} MB before them, {rss_agents:.0} MB with them, {rss_waiting:.0} MB with every long-poll waiting ({:.1} KB each); CPU while waiting {:.1}% of one core",
        (rss_waiting - rss_agents) * 1024.0 / agents as f64,
        (cpu1 - cpu0) / 10.0 * 100.0
    );
    let mut lasts = Vec::new();
    for i in 0..5 {
        let changed = Instant::now();
        site.edit_poller(poller, json!({"excludes": format!("*.tmp{i}")}))
            .await;
        let saved = changed.elapsed().as_secs_f64() * 1000.0;
        let mut took = Vec::new();
        while took.len() < agents {
            let at = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("every long-poll answers a change")
                .unwrap();
            took.push(at.saturating_duration_since(changed).as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        println!(
            "long_polls: change {i}: saved (GET + PUT of the poller) in {saved:.0} ms; answered first {:.0} ms, median {:.0} ms, last {:.0} ms",
            took[0],
            took[took.len() / 2],
            took[took.len() - 1]
        );
        lasts.push(took[took.len() - 1]);
        wait_until(
            "every long-poll waits again",
            Duration::from_secs(120),
            waiting,
        )
        .await;
    }
    let (m, _) = stats(lasts);
    println!("long_polls: a change reaches all {agents}: median of 5 changes {m:.0} ms");
    for t in tasks {
        t.abort();
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
    if wants("long_polls") {
        long_polls().await;
    }
}
