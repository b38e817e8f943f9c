//! The scenarios every backend must pass, written once. Each one uses a
//! fresh agent site (config, sources, journal) and its own destination
//! folder on the row's server, which is started once per row.

use crate::backends::{Creds, Denial, Kind, Row};
use crate::common::{AgentSite, JournalEvent, Live, add, in_namespace, part_files, pattern};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Runs every scenario against `row`, in sequence, on its one server.
pub fn run(mut row: Row) {
    a_big_file_and_a_tree_arrive_byte_identical(&row);
    wrong_credentials_are_a_permanent_error_naming_the_server(&row);
    a_server_stopped_mid_upload_is_retried_and_never_shows_a_partial_file(&mut row);
    the_rate_limit_is_honoured(&row);
    a_source_changed_during_upload_is_not_counted_as_sent(&row);
    a_missing_destination_folder_is_created(&row);
    an_unwritable_destination_is_a_permanent_error(&row);
    a_folder_swapped_for_a_symlink_out_of_the_root_is_not_followed(&row);
}

/// Says, in the test's output, that a scenario does not apply and why.
fn not_applicable(row: &Row, scenario: &str, why: &str) {
    println!("{}: {scenario}: does not apply: {why}", row.name);
}

/// One `[[poller]]`: `name` polls `path` with `plugin`, sending with
/// `target` lines.
fn poller(name: &str, path: &str, plugin: &str, extra: &str, target: &str) -> String {
    format!(
        "[[poller]]\nname = \"{name}\"\npath = \"{path}\"\nplugin = \"{plugin}\"\nstability = \"0s\"\n{extra}\n\
         [poller.target]\n{target}\n"
    )
}

/// The agent's config: quick retries without jitter (so a backoff can be
/// measured), then `pollers`.
fn config(site: &AgentSite, pollers: &[String]) {
    let cache = std::env::temp_dir().join("dispatch-test-cache");
    let text = format!(
        "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\nshutdown_grace = \"5s\"\n\
         [agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\njitter = 0.0\n\n{}",
        cache.display().to_string(),
        pollers.concat()
    );
    std::fs::write(site.path("agent.toml"), text).unwrap();
}

/// One poller `row` sending each file of each folder of `src` into `dest`.
fn files_config(site: &AgentSite, target: &str) {
    config(site, &[poller("row", "src", "subdir", "", target)]);
}

/// `dispatch-agent run` on the site with the row's environment and the
/// test pauses `pause`.
fn agent(site: &AgentSite, row: &Row, until_idle: bool, pause: &str) -> Command {
    let mut args = vec!["run", "--config", "agent.toml"];
    if until_idle {
        args.push("--until-idle");
    }
    let mut cmd = site.command(&args);
    cmd.envs(row.env());
    if !pause.is_empty() {
        cmd.env("DISPATCH_TEST_PAUSE", pause);
    }
    cmd
}

fn until_idle(site: &AgentSite, row: &Row, limit: Duration) -> String {
    let (ok, log) = Live::spawn(agent(site, row, true, "")).wait(limit);
    assert!(ok, "{}: the agent failed:\n{log}", row.name);
    log
}

fn rows(site: &AgentSite) -> Vec<serde_json::Value> {
    site.transfers().as_array().unwrap().clone()
}

/// The events of the transfers of `path`, oldest first.
fn events_of(site: &AgentSite, path: &str) -> Vec<JournalEvent> {
    site.events()
        .into_iter()
        .filter(|e| e.path == path)
        .collect()
}

/// Names starting with a dot anywhere under `dir`: temporary names.
fn hidden_names(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                found.push(e.path());
            }
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

fn big() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| pattern(100_000_000, 7))
}

fn a_big_file_and_a_tree_arrive_byte_identical(row: &Row) {
    let site = AgentSite::new();
    std::fs::create_dir_all(site.path("src/big")).unwrap();
    std::fs::write(site.path("src/big/feature.mxf"), big()).unwrap();
    // A directory item (the `dir` poller): 199 files in nested folders and
    // its ready marker.
    let mut names = vec!["tree/READY".to_string()];
    names.extend((0..199).map(|i| format!("tree/sub{}/deep/part{i:03}.ts", i % 4)));
    add(
        &site.path("trees"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (dest, trees) = ("big", "trees");
    // The path-style S3 row sends the big file as a multipart upload, the
    // virtual-host one in a single PUT.
    let multipart = if row.kind
        == (Kind::S3 {
            virtual_host: false,
        }) {
        "multipart_threshold_mb = 50\npart_size_mb = 8\n"
    } else {
        ""
    };
    config(
        &site,
        &[
            poller(
                "files",
                "src",
                "subdir",
                "",
                &format!("{}{multipart}", row.target(dest, Creds::Right)),
            ),
            // Its own destination folder: two pollers may not share one.
            poller(
                "trees",
                "trees",
                "dir",
                "params = { markers = [\"READY\"] }",
                &row.target(trees, Creds::Right),
            ),
        ],
    );
    let log = until_idle(&site, row, Duration::from_secs(240));
    let name = row.name;
    assert!(
        std::fs::read(row.landed(dest).join("big/feature.mxf")).unwrap() == big(),
        "{name}: the 100 MB file differs"
    );
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(row.landed(trees).join(n))
                .unwrap_or_else(|e| panic!("{name}: {n}: {e}\n{log}")),
            *n,
            "{name}"
        );
    }
    assert!(
        !site.path("src/big/feature.mxf").exists(),
        "{name}: source kept"
    );
    assert!(
        !site.path("trees/tree").exists(),
        "{name}: source tree kept"
    );
    for d in [dest, trees] {
        assert_eq!(part_files(&row.landed(d)), Vec::<PathBuf>::new(), "{name}");
        assert_eq!(
            hidden_names(&row.landed(d)),
            Vec::<PathBuf>::new(),
            "{name}"
        );
    }
    let rows = rows(&site);
    assert_eq!(rows.len(), 2, "{name}: {rows:?}");
    assert!(
        rows.iter().all(|r| r["status"] == "Complete"),
        "{name}: {rows:?}"
    );
    site.assert_no_secret(&log, &row.secrets());
}

fn wrong_credentials_are_a_permanent_error_naming_the_server(row: &Row) {
    let scenario = "wrong credentials";
    let expected = match row.login_refused() {
        Ok(e) => e,
        Err(why) => return not_applicable(row, scenario, why),
    };
    let name = row.name;
    let site = AgentSite::new();
    add(&site.path("src"), &["show/ep1.mxf"]);
    let dest = "refused";
    files_config(&site, &row.target(dest, Creds::Wrong));
    let live = Live::spawn(agent(&site, row, false, ""));
    // Two failed attempts: the second comes after the longest backoff.
    let events = site.wait_events("error", 2, Duration::from_secs(60));
    let log = live.terminate();
    assert!(
        site.path("src/show/ep1.mxf").exists(),
        "{name}: source kept"
    );
    assert!(
        !row.landed(dest).join("show/ep1.mxf").exists(),
        "{name}: nothing stored"
    );
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .and_then(|e| e.error.clone())
        .unwrap();
    for part in &expected {
        assert!(
            error.contains(part.as_str()),
            "{name}: `{part}` not in: {error}"
        );
    }
    assert!(
        log.contains("poller=row") && log.contains("permanent=true"),
        "{name}: not a permanent error:\n{log}"
    );
    // Permanent: retried only after the longest backoff (2 s), not in a
    // loop. Measured on the agent's clock.
    let first_error = events.iter().find(|e| e.event == "error").unwrap().at;
    let second_start = events
        .iter()
        .filter(|e| e.event == "started")
        .nth(1)
        .unwrap_or_else(|| panic!("{name}: no second attempt: {events:?}"))
        .at;
    assert!(
        second_start - first_error >= 1_950,
        "{name}: retried {} ms after a permanent error",
        second_start - first_error
    );
    let rows = rows(&site);
    assert!(
        rows[0]["attempts"].as_i64().unwrap() <= 3,
        "{name}: {}",
        rows[0]
    );
    site.assert_no_secret(&log, &row.secrets());
}

fn a_server_stopped_mid_upload_is_retried_and_never_shows_a_partial_file(row: &mut Row) {
    let scenario = "server stopped mid-upload";
    if let Some(why) = match row.kind {
        Kind::Local => Some("a local folder has no server to stop"),
        Kind::Aspera => Some("the ascp stand-in is a program per transfer, not a server to stop"),
        _ => None,
    } {
        return not_applicable(row, scenario, why);
    }
    let name = row.name;
    let site = AgentSite::new();
    let data = pattern(30_000_000, 3);
    std::fs::create_dir_all(site.path("src/show")).unwrap();
    std::fs::write(site.path("src/show/ep2.mxf"), &data).unwrap();
    let dest = "stopped";
    // 40 Mbps: ~6 s for 30 MB.
    files_config(
        &site,
        &format!("{}rate_limit_mbps = 40\n", row.target(dest, Creds::Right)),
    );
    let final_path = row.landed(dest).join("show/ep2.mxf");
    let before = row.arrived(dest);
    let live = Live::spawn(agent(&site, row, true, ""));
    // A quarter of the file has reached the server.
    crate::common::wait_until(
        &format!("{name}: 7.5 MB at the server"),
        Duration::from_secs(30),
        || {
            assert!(!final_path.exists(), "{name}: a final name while uploading");
            row.arrived(dest) - before >= 7_500_000
        },
    );
    row.stop().unwrap();
    // Dead, so this is all the server kept.
    let kept = row.arrived(dest);
    assert!(!final_path.exists(), "{name}: a final name after the stop");
    // The attempt failed while the server was down (SFTP notices only
    // when its 30 s request timeout ends: russh-sftp leaves the writes in
    // flight waiting on a dead connection).
    site.wait_events("error", 1, Duration::from_secs(60));
    assert!(!final_path.exists(), "{name}: a final name while down");
    row.restart();
    // The final name appears only whole. The bound is generous: a retry
    // that began while the server was down waits its doubled backoff, and
    // on a loaded 2-core machine SFTP's 30 s request timeout can be hit
    // once more (seen once in a full run: over 60 s; 53 s alone).
    crate::common::wait_until(
        &format!("{name}: the final name"),
        Duration::from_secs(120),
        || final_path.exists(),
    );
    assert_eq!(
        std::fs::metadata(&final_path).unwrap().len(),
        data.len() as u64,
        "{name}: a partial final file"
    );
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{name}: {log}");
    assert!(
        std::fs::read(&final_path).unwrap() == data,
        "{name}: content differs"
    );
    assert_eq!(
        part_files(&row.landed(dest)),
        Vec::<PathBuf>::new(),
        "{name}"
    );
    let rows = rows(&site);
    assert_eq!(rows.len(), 1, "{name}: {rows:?}");
    assert_eq!(rows[0]["status"], "Complete", "{name}");
    assert!(
        rows[0]["attempts"].as_i64().unwrap() >= 2,
        "{name}: {}",
        rows[0]
    );
    match row.resumed_at(&log) {
        Ok(at) => assert_eq!(
            at, kept,
            "{name}: resumed at byte {at}, the server had {kept}"
        ),
        Err(why) => {
            not_applicable(row, "resume", why);
            assert!(
                !log.contains("resuming"),
                "{name}: resumed after all:\n{log}"
            );
        }
    }
}

fn the_rate_limit_is_honoured(row: &Row) {
    let name = row.name;
    let site = AgentSite::new();
    std::fs::create_dir_all(site.path("src/show")).unwrap();
    // 10 MB at 16 Mbps (2 MB/s): 5 s.
    std::fs::write(site.path("src/show/ep3.mxf"), pattern(10_000_000, 9)).unwrap();
    let parts = if matches!(row.kind, Kind::S3 { .. }) {
        // Several parts in flight under one limit.
        "multipart_threshold_mb = 5\npart_size_mb = 5\n"
    } else {
        ""
    };
    files_config(
        &site,
        &format!(
            "{}rate_limit_mbps = 16\n{parts}",
            row.target("rate", Creds::Right)
        ),
    );
    until_idle(&site, row, Duration::from_secs(60));
    if row.kind == Kind::Aspera {
        // ascp enforces the rate; the agent's part is to pass it on.
        not_applicable(row, "rate measured", "ascp limits the rate (`-l`)");
        assert!(
            row.ascp_record().contains("ARG -l\nARG 16M\n"),
            "{name}: {}",
            row.ascp_record()
        );
        return;
    }
    // The agent's own clock, from the attempt's start to its Complete
    // record: a busy machine slows the test's clock, not this span.
    let events = events_of(&site, "show/ep3.mxf");
    let at = |kind: &str| events.iter().find(|e| e.event == kind).unwrap().at;
    let took = at("complete") - at("started");
    // Never faster than the limit; a little slower for logins and checks.
    assert!(
        (4_500..=6_000).contains(&took),
        "{name}: 10 MB at 16 Mbps took {took} ms"
    );
}

fn a_source_changed_during_upload_is_not_counted_as_sent(row: &Row) {
    let name = row.name;
    let site = AgentSite::new();
    let source = site.path("src/show/ep5.mxf");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    std::fs::write(&source, pattern(1_000_000, 5)).unwrap();
    files_config(&site, &row.target("changed", Creds::Right));
    // Paused once the backend said it sent the item, before the agent
    // checks the source again.
    let live = Live::spawn(agent(&site, row, true, "after-send=1000"));
    live.wait_for("test pause after-send", 1, Duration::from_secs(60));
    let mut later = pattern(1_000_000, 5);
    later.extend_from_slice(b" and a later version");
    std::fs::write(&source, &later).unwrap();
    let (ok, log) = live.wait(Duration::from_secs(60));
    assert!(ok, "{name}: {log}");
    assert!(
        std::fs::read(row.landed("changed").join("show/ep5.mxf")).unwrap() == later,
        "{name}: the later version did not arrive"
    );
    assert!(!source.exists(), "{name}: source kept");
    let events = events_of(&site, "show/ep5.mxf");
    let ends: Vec<&JournalEvent> = events
        .iter()
        .filter(|e| e.event == "complete" || e.event == "error")
        .collect();
    assert!(
        ends.len() == 2
            && ends[0].event == "error"
            && ends[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("the source changed during the transfer"))
            && ends[1].event == "complete",
        "{name}: the first send must fail, the second complete: {events:?}"
    );
}

fn a_folder_swapped_for_a_symlink_out_of_the_root_is_not_followed(row: &Row) {
    let name = row.name;
    let site = AgentSite::new();
    add(&site.path("src"), &["show/ep8.mxf"]);
    files_config(&site, &row.target("swapped", Creds::Right));
    // Polled and found stable; just before the send, the folder moves out
    // of the root and a symlink to it takes its name.
    let live = Live::spawn(agent(&site, row, false, "before-send=1000"));
    live.wait_for("test pause before-send", 1, Duration::from_secs(60));
    let outside = site.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::rename(site.path("src/show"), outside.join("show")).unwrap();
    std::os::unix::fs::symlink(outside.join("show"), site.path("src/show")).unwrap();
    // Refused as this item's own problem (retried only after the longest
    // backoff): the agent does not idle, so it is stopped once it said so.
    site.wait_events("error", 1, Duration::from_secs(60));
    let log = live.terminate();
    assert_eq!(
        std::fs::read_to_string(outside.join("show/ep8.mxf"))
            .ok()
            .as_deref(),
        Some("show/ep8.mxf"),
        "{name}: the file outside the root was touched: {log}"
    );
    assert!(
        !row.landed("swapped").join("show/ep8.mxf").exists(),
        "{name}: sent through the symlink: {log}"
    );
    let error = events_of(&site, "show/ep8.mxf")
        .iter()
        .find_map(|e| e.error.clone())
        .unwrap_or_default();
    assert!(
        error.contains("leads outside") && error.contains("not followed"),
        "{name}: the refusal is reported: `{error}`\n{log}"
    );
}

fn a_missing_destination_folder_is_created(row: &Row) {
    let name = row.name;
    let site = AgentSite::new();
    add(&site.path("src"), &["show/ep6.mxf"]);
    let dest = "missing/deeper/still";
    assert!(!row.landed("missing").exists());
    files_config(&site, &row.target(dest, Creds::Right));
    let log = until_idle(&site, row, Duration::from_secs(60));
    assert_eq!(
        std::fs::read_to_string(row.landed(dest).join("show/ep6.mxf"))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{log}")),
        "show/ep6.mxf"
    );
    assert!(!site.path("src/show/ep6.mxf").exists(), "{name}");
}

fn an_unwritable_destination_is_a_permanent_error(row: &Row) {
    let name = row.name;
    let dest = "sealed";
    let denial = match row.deny_writes(dest) {
        Ok(d) => d,
        Err(why) => return not_applicable(row, "unwritable destination", why),
    };
    let site = AgentSite::new();
    add(&site.path("src"), &["show/ep7.mxf"]);
    let target = match &denial {
        Denial::Target(t) => t.clone(),
        _ => row.target(dest, Creds::Right),
    };
    files_config(&site, &target);
    let cmd = agent(&site, row, false, "");
    let live = Live::spawn(match &denial {
        Denial::Namespace(script) => in_namespace(&cmd, script),
        _ => cmd,
    });
    let events = site.wait_events("error", 1, Duration::from_secs(60));
    live.wait_for("permanent=", 1, Duration::from_secs(10));
    let log = live.terminate();
    assert!(
        site.path("src/show/ep7.mxf").exists(),
        "{name}: source kept"
    );
    let error = events
        .iter()
        .find_map(|e| e.error.clone())
        .unwrap_or_default();
    for part in row.denied_error() {
        assert!(error.contains(&part), "{name}: `{part}` not in: {error}");
    }
    assert!(
        log.contains("permanent=true"),
        "{name}: not a permanent error:\n{log}"
    );
}
