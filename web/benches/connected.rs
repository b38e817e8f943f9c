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
        .poller("stamp", "stamp", "out", json!({"plugin_version": "1.0.0", "stability_secs": 0.0}))
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
    println!("config_apply: change saved -> file sent by the new settings: median {am:.0} ms, p95 {ap:.0} ms (50 changes)");
    println!("config_apply: baseline, file dropped -> sent (no change): median {bm:.0} ms, p95 {bp:.0} ms");
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
        site.call(Method::GET, "/agents", None).await;
        site.agent.take().unwrap().stop();
    }
    let (m, _) = stats(samples.clone());
    println!("new_version: upload -> first file sent by it: median {m:.0} ms of {samples:.0?}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    if wants("config_apply") {
        config_apply().await;
    }
    if wants("new_version") {
        new_version().await;
    }
}
