//! What is WebDAV's own against a real server on loopback (`rclone serve
//! webdav`, installed by .ci/run), through real `dispatch-agent` processes:
//! a failed PUT's part is deleted, since WebDAV cannot resume it. What
//! every backend does is in the conformance suite (tests/conformance).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::servers::{DAV_PASS, DAV_USER, Relay, webdav};
use common::{AgentSite, part_file, part_files, pattern, terminate, wait_until};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn a_failed_upload_leaves_no_temporary_file_on_the_server() {
    let s = AgentSite::new();
    let dav = webdav(&s.path("server"));
    let relay = Relay::start(dav.port);
    let data = pattern(30_000_000, 5);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep4.mxf"), &data).unwrap();
    // 40 Mbps: ~6 s for 30 MB; the retry waits a minute, so what the
    // failed attempt left (or not) stays in view.
    let cache = std::env::temp_dir().join("dispatch-test-cache");
    std::fs::write(
        s.path("agent.toml"),
        format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"60s\"\nmax = \"60s\"\n\n\
             [[poller]]\nname = \"dav\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"webdav\"\nurl = \"http://127.0.0.1:{}\"\nusername = \"{DAV_USER}\"\n\
             password = \"{DAV_PASS}\"\ndestination = \"incoming/dispatch\"\nrate_limit_mbps = 40\n",
            cache.display().to_string(),
            relay.port
        ),
    )
    .unwrap();
    let agent = s.agent(false);
    let show = s.path("server/incoming/dispatch/show");
    let part_len = || {
        part_file(&show)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    // The server holds part of the upload under its temporary name.
    wait_until("3 MB in the part file", Duration::from_secs(30), || {
        part_len() >= 3_000_000
    });
    // The network drops the upload; the server stays up.
    relay.cut();
    // The failed attempt is recorded, then its part goes.
    s.wait_events("error", 1, Duration::from_secs(30));
    wait_until("the part deleted", Duration::from_secs(15), || {
        part_files(&s.path("server")).is_empty()
    });
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        part_files(&s.path("server")),
        Vec::<PathBuf>::new(),
        "{log}"
    );
    assert!(!show.join("ep4.mxf").exists(), "no final name");
    assert!(s.path("src/show/ep4.mxf").exists(), "source kept");
    assert!(log.contains("WebDAV PUT on"), "the attempt failed:\n{log}");
    let rows = s.transfers();
    assert_eq!(rows[0]["status"], "Error", "{}", rows[0]);
}
