//! What is FTP's own against a real server on loopback (pyftpdlib from the
//! test venv, with explicit TLS), through real `dispatch-agent` processes:
//! certificate checks. What every backend does (plain FTP and FTPS as rows)
//! is in the conformance suite (tests/conformance).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::servers::{FTP_PASS, FTP_USER, certs, ftpd};
use common::{AgentSite, terminate};
use std::time::Duration;

#[test]
fn ftps_refuses_a_server_certificate_it_cannot_verify() {
    let s = AgentSite::new();
    let c = certs(&s.path("certs"));
    // The server demands TLS on both connections.
    let server = ftpd(&s.path("server"), Some(&c));
    common::add(&s.path("src"), &["show/ep0.mxf"]);
    // No ca_file: the test CA is not among the trusted roots.
    let cache = std::env::temp_dir().join("dispatch-test-cache");
    std::fs::write(
        s.path("agent.toml"),
        format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"to_ftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\n\
             username = \"{FTP_USER}\"\npassword = \"{FTP_PASS}\"\ndestination = \"incoming/dispatch\"\ntls = \"explicit\"\n",
            cache.display().to_string(),
            server.port
        ),
    )
    .unwrap();
    let agent = s.agent(false);
    let events = s.wait_events("error", 1, Duration::from_secs(30));
    let log = String::from_utf8_lossy(&terminate(agent).stderr).into_owned();
    assert!(s.path("src/show/ep0.mxf").exists(), "source kept");
    let error = events.iter().find_map(|e| e.error.clone()).unwrap();
    assert!(
        error.contains("certificate") && error.contains("ftps://127.0.0.1"),
        "{error}"
    );
    assert!(log.contains("permanent=true"), "{log}");
    assert!(!s.path("server/incoming").exists(), "nothing stored");
}
