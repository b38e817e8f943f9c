//! Agents under the web app, with real processes: `dispatch-web` on a
//! SQLite file and `dispatch-agent run --server` in connected mode, on
//! loopback. What a person sets up in the web app is what the agent runs,
//! changes reach it while it runs, and an outage of the web app loses and
//! doubles nothing.
#![allow(clippy::unwrap_used, clippy::zombie_processes)] // a test helper that fails panics

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Site, test_plugin, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_agent_runs_the_web_apps_pollers_and_follows_every_change() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let v1 = site.upload(test_plugin("stamp-v1")).await;
    let v1_sha = v1["sha256"].as_str().unwrap().to_string();
    let one = site.local_target("one", json!({})).await;
    // 40 Mb/s: a 24 MiB file stays in flight for about 5 s.
    let slow = site
        .local_target("slow", json!({"rate_limit_mbps": 40.0}))
        .await;
    let (stamp, src) = site.poller("stamp", "stamp", "one", json!({})).await;
    let (_, bulk) = site.poller("bulk", "file", "slow", json!({})).await;
    site.start_agent(&token);

    std::fs::write(src.join("a.v1"), b"a").unwrap();
    wait_until(
        "the web app's poller runs",
        Duration::from_secs(15),
        async || one.join("a.v1").exists(),
    )
    .await;

    // A large transfer of another poller in flight...
    std::fs::write(bulk.join("big.mxf"), vec![7u8; 24 << 20]).unwrap();
    wait_until(
        "the big file in flight",
        Duration::from_secs(15),
        async || {
            std::fs::read_dir(&slow)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".dispatch-part"))
        },
    )
    .await;
    // ...while a new version of `stamp` is uploaded (the poller follows
    // the latest): the agent runs it without a restart.
    site.upload(test_plugin("stamp-v2")).await;
    std::fs::write(src.join("b.v2"), b"b").unwrap();
    wait_until(
        "the new version runs",
        Duration::from_secs(15),
        async || one.join("b.v2").exists(),
    )
    .await;
    // The version no poller runs any more is not kept compiled on the agent.
    let cache = site.path("agent-state/cache");
    let cached = |sha: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(sha))
    };
    wait_until(
        "stamp 1.0.0's compiled artifact is dropped",
        Duration::from_secs(15),
        async || !cached(&v1_sha),
    )
    .await;
    assert!(
        std::fs::read_dir(&cache).unwrap().count() >= 2,
        "stamp 2.0.0 and the file poller stay compiled"
    );
    assert!(
        !slow.join("big.mxf").exists(),
        "the big transfer should still be in flight (rate limited)"
    );
    wait_until(
        "the big file arrives",
        Duration::from_secs(30),
        async || slow.join("big.mxf").exists(),
    )
    .await;
    assert_eq!(
        std::fs::metadata(slow.join("big.mxf")).unwrap().len(),
        24 << 20
    );
    site.wait_logged("the big transfer in the log", |t| {
        t["path"] == "big.mxf" && t["status"] == "Complete"
    })
    .await;
    let big: Vec<Value> = site
        .transfers()
        .await
        .into_iter()
        .filter(|t| t["path"] == "big.mxf")
        .collect();
    assert_eq!(big.len(), 1, "one transfer id: {big:?}");
    assert_eq!(big[0]["attempts"], 1, "{big:?}");

    // The poller's target changed: new polls send there.
    let two = site.local_target("two", json!({})).await;
    site.edit_poller(stamp, json!({"target": "two", "target_id": null}))
        .await;
    std::fs::write(src.join("c.v2"), b"c").unwrap();
    wait_until("the new target", Duration::from_secs(15), async || {
        two.join("c.v2").exists()
    })
    .await;
    assert!(!one.join("c.v2").exists());

    // Renamed: the same poller (its id), not a new one.
    site.edit_poller(stamp, json!({"name": "stamp_renamed"}))
        .await;
    std::fs::write(src.join("d.v2"), b"d").unwrap();
    wait_until("the renamed poller", Duration::from_secs(15), async || {
        two.join("d.v2").exists()
    })
    .await;
    site.wait_logged("the new name in the log", |t| {
        t["path"] == "d.v2" && t["poller"] == "stamp_renamed"
    })
    .await;

    // Disabled, then deleted: polling stops.
    site.call(Method::POST, &format!("/pollers/{stamp}/disable"), None)
        .await;
    wait_until("the poller stopped", Duration::from_secs(15), async || {
        site.agent_log().contains("poller stopped")
    })
    .await;
    std::fs::write(src.join("e.v2"), b"e").unwrap();
    site.call(Method::DELETE, &format!("/pollers/{stamp}"), None)
        .await;
    std::fs::write(bulk.join("small.mxf"), b"s").unwrap();
    wait_until(
        "the other poller goes on",
        Duration::from_secs(15),
        async || slow.join("small.mxf").exists(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(src.join("e.v2").exists() && !two.join("e.v2").exists());
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_does_not_match_its_sha256_is_refused_and_the_previous_version_runs() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    site.upload(test_plugin("stamp-v1")).await;
    let one = site.local_target("one", json!({})).await;
    let (stamp, src) = site
        .poller("stamp", "stamp", "one", json!({"plugin_version": "1.0.0"}))
        .await;
    site.start_agent(&token);
    std::fs::write(src.join("a.v1"), b"a").unwrap();
    wait_until("v1 runs", Duration::from_secs(15), async || {
        one.join("a.v1").exists()
    })
    .await;

    // Version 2 uploaded, then its stored bytes (the database's; the web
    // app's cache is dropped) tampered with before the agent asks for them.
    let v2 = site.upload(test_plugin("stamp-v2")).await;
    let sha = v2["sha256"].as_str().unwrap().to_string();
    std::fs::remove_file(site.path(&format!("web/modules/{sha}.wasm"))).unwrap();
    let db = support::connect(&site.database_url()).await;
    let mut bytes = test_plugin("stamp-v2");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    dispatch_web::on_db!(&db, pool => {
        sqlx::query("UPDATE plugin_modules SET bytes = $1 WHERE sha256 = $2")
            .bind(&bytes)
            .bind(&sha)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    site.edit_poller(stamp, json!({"plugin_version": "2.0.0"}))
        .await;

    wait_until(
        "the refusal reaches the web app",
        Duration::from_secs(15),
        async || {
            site.call(Method::GET, "/agents", None)
                .await
                .to_string()
                .contains("does not match its sha256")
        },
    )
    .await;
    // Version 1 keeps running; nothing of version 2 ran.
    std::fs::write(src.join("b.v1"), b"b").unwrap();
    std::fs::write(src.join("b.v2"), b"b").unwrap();
    wait_until("v1 still runs", Duration::from_secs(15), async || {
        one.join("b.v1").exists()
    })
    .await;
    assert!(!one.join("b.v2").exists());
    assert!(
        !site
            .path(&format!("agent-state/modules/{sha}.wasm"))
            .exists(),
        "a tampered module was kept"
    );
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_web_app_loses_and_doubles_nothing() {
    const FILES: usize = 200;
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let out = site.local_target("out", json!({})).await;
    let (_, src) = site.poller("flow", "file", "out", json!({})).await;
    site.start_agent(&token);
    let write = |range: std::ops::Range<usize>| {
        for i in range {
            std::fs::write(src.join(format!("f{i:03}.mxf")), format!("{i}")).unwrap();
        }
    };
    write(0..50);
    wait_until("the first files", Duration::from_secs(20), async || {
        out.join("f049.mxf").exists()
    })
    .await;

    // The web app goes away while files keep flowing; the agent is even
    // restarted meanwhile and runs its last configuration.
    site.web.take().unwrap().stop();
    let down = Instant::now();
    write(50..120);
    site.agent.take().unwrap().stop();
    site.start_agent(&token);
    write(120..FILES);
    wait_until(
        "all delivered without the web app",
        Duration::from_secs(60),
        async || (0..FILES).all(|i| out.join(format!("f{i:03}.mxf")).exists()),
    )
    .await;
    // Down for 30 s in all.
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    site.start_web();
    site.login().await;
    wait_until(
        "every transfer in the log",
        Duration::from_secs(60),
        async || {
            site.transfers()
                .await
                .iter()
                .filter(|t| t["status"] == "Complete")
                .count()
                >= FILES
        },
    )
    .await;
    let log = site.transfers().await;
    for i in 0..FILES {
        let name = format!("f{i:03}.mxf");
        let rows: Vec<&Value> = log.iter().filter(|t| t["path"] == name.as_str()).collect();
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        assert_eq!(rows[0]["status"], "Complete", "{name}: {rows:?}");
    }
    assert_eq!(log.len(), FILES, "transfers the agent never made");
    site.agent.take().unwrap().stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_enable_resets_the_agents_breaker() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let agents = site.call(Method::GET, "/agents", None).await;
    let agent_id = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    // One failure disables a poller; the cooldown is long.
    let mut settings = site
        .call(Method::GET, &format!("/agents/{agent_id}/settings"), None)
        .await;
    settings["failures_before_disable"] = json!(1);
    settings["retry"] = json!({"initial": "100ms", "max": "200ms", "jitter": 0.1});
    site.call(
        Method::PUT,
        &format!("/agents/{agent_id}/settings"),
        Some(settings),
    )
    .await;
    // The destination is a file, not a directory: every transfer fails.
    let out = site.local_target("out", json!({})).await;
    std::fs::remove_dir(&out).unwrap();
    std::fs::write(&out, b"in the way").unwrap();
    let (id, src) = site.poller("flaky", "file", "out", json!({})).await;
    site.start_agent(&token);
    std::fs::write(src.join("x.mxf"), b"x").unwrap();
    wait_until("the breaker trips", Duration::from_secs(20), async || {
        site.poller_view(id)
            .await
            .to_string()
            .contains("\"disabled\":true")
            || site
                .agent_log()
                .contains("disabled after 1 consecutive failures")
    })
    .await;
    // The poller's page shows it, per agent.
    wait_until(
        "the state on the poller's page",
        Duration::from_secs(10),
        async || {
            site.page(&format!("/pollers/{id}"))
                .await
                .contains("Disabled by agent")
        },
    )
    .await;
    // Fixed, and a person enables the poller: the agent resets its breaker
    // (not after its 4 h cooldown).
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    site.call(Method::POST, &format!("/pollers/{id}/enable"), None)
        .await;
    wait_until(
        "sent after the reset",
        Duration::from_secs(15),
        async || out.join("x.mxf").exists(),
    )
    .await;
    site.agent.take().unwrap().stop();
}

/// A Google asset that is not ready says why on the poller's page, per
/// agent: a marker missing (the plugin's reason, from its poll), an
/// excluded name in it (the agent's: a group goes whole or not at all).
/// Once the marker comes, the asset goes and its reason with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_asset_that_is_not_ready_says_why_on_the_pollers_page() {
    let mut site = Site::start().await;
    let token = site.agent_token("edge").await;
    let out = site.local_target("out", json!({})).await;
    let (id, src) = site
        .poller("google", "google", "out", json!({"excludes": "*.tmp"}))
        .await;
    let asset = |dir: &str, names: &[&str]| {
        std::fs::create_dir_all(src.join(dir)).unwrap();
        for n in names {
            std::fs::write(src.join(dir).join(n), n.as_bytes()).unwrap();
        }
    };
    asset("A1", &["ADI.XML", "movie.mpg"]);
    asset("B2", &["ADI.XML", "ADI.DTD", "movie.mpg", "notes.tmp"]);
    asset("C3", &["ADI.XML", "ADI.DTD", "movie.mpg"]);
    site.start_agent(&token);
    wait_until(
        "the ready asset is sent",
        Duration::from_secs(20),
        async || out.join("C3/delivery.complete").exists(),
    )
    .await;
    let page = format!("/pollers/{id}");
    wait_until(
        "each asset's reason on the poller's page",
        Duration::from_secs(15),
        async || {
            let html = site.page(&page).await;
            html.contains("A1: waiting for the markers: ADI.DTD missing")
                && html.contains("B2/notes.tmp")
        },
    )
    .await;
    assert!(!out.join("A1").exists() && !out.join("B2").exists());

    asset("A1", &["ADI.DTD"]);
    // Once in a full run (six of these tests at once on two cores) this
    // took longer than 20 s, with no log to say why: the log is shown now.
    assert!(
        support::waited(Duration::from_secs(45), async || out
            .join("A1/delivery.complete")
            .exists())
        .await,
        "the asset did not go once ready; the agent's log:\n{}",
        site.agent_log()
    );
    wait_until(
        "its reason leaves the page",
        Duration::from_secs(15),
        async || !site.page(&page).await.contains("A1: waiting"),
    )
    .await;
    site.agent.take().unwrap().stop();
}

/// `cargo xtask up`'s two processes, as it starts them, on a clean data
/// directory: the demo pollers exist, and a ready folder dropped into the
/// demo directory is delivered and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_command_start_runs_the_demo_through_a_connected_agent() {
    let mut site = Site::start_with(|dir| {
        vec![
            "--local-agent".into(),
            "local".into(),
            "--local-agent-token-file".into(),
            dir.join("local-agent.token").into(),
            "--demo-dir".into(),
            dir.join("demo").into(),
        ]
    })
    .await;
    let token = site.path("local-agent.token");
    wait_until("the token file", Duration::from_secs(30), async || {
        token.exists()
    })
    .await;
    site.start_agent(&token);
    // A ready folder for the `dir` poller.
    let demo = site.path("demo");
    let folder = demo.join("outgoing/dir/EP101");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("EP101.mxf"), b"video").unwrap();
    std::fs::write(folder.join("READY"), b"").unwrap();
    let delivered = demo.join("delivered/dir/EP101/EP101.mxf");
    wait_until("the demo delivery", Duration::from_secs(30), async || {
        delivered.exists()
    })
    .await;
    // Removal comes after the Complete record, a moment after the rename.
    wait_until(
        "the source removed after the verified transfer",
        Duration::from_secs(30),
        async || !folder.exists(),
    )
    .await;

    // The Pollers page lists what the agent runs; the log has the transfer.
    let pollers = site.call(Method::GET, "/pollers", None).await;
    let names: Vec<&str> = pollers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"demo_dir") && names.contains(&"demo_google"),
        "{names:?}"
    );
    site.wait_logged("the transfer in the log", |t| {
        t["poller"] == "demo_dir" && t["status"] == "Complete"
    })
    .await;
    site.agent.take().unwrap().stop();
}
