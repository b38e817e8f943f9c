//! What is SFTP's own (host keys, one login for many items, flushes to
//! the server's disk) against a real OpenSSH `sshd` on loopback, through
//! real `dispatch-agent` processes. What every backend does (big files and
//! trees, wrong credentials, a server stopped mid-upload, rate limits, ...)
//! is in the conformance suite (tests/conformance), with password and key
//! logins as rows.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::servers::{Server, Sshd};
use common::{add, part_files, terminate};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Site(common::AgentSite);

impl std::ops::Deref for Site {
    type Target = common::AgentSite;
    fn deref(&self) -> &common::AgentSite {
        &self.0
    }
}

impl Site {
    /// The remote folder every item goes under.
    fn remote(&self) -> PathBuf {
        self.path("server/incoming/dispatch")
    }

    /// An agent config sending to `sshd` as root with `auth` (credential
    /// and host key lines) plus `extra` target lines.
    fn config(&self, sshd: &Sshd, auth: &str, extra: &str) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"sftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"root\"\n\
             destination = {:?}\n{auth}\n{extra}\n",
            cache.display().to_string(),
            sshd.port,
            self.remote().display().to_string(),
        );
        std::fs::write(self.path("agent.toml"), text).unwrap();
    }

    /// Key login as root with the pinned fingerprint.
    fn key_config(&self, sshd: &Sshd, extra: &str) {
        let auth = format!(
            "private_key_file = {:?}\nhost_key_fingerprint = \"{}\"",
            sshd.client_key().display().to_string(),
            sshd.fingerprint()
        );
        self.config(sshd, &auth, extra);
    }

    /// Runs an agent until its first failed attempt is in the journal,
    /// stops it, and gives that error and the log.
    fn first_error(&self) -> (String, String) {
        let agent = self.agent(false);
        let events = self.wait_events("error", 1, Duration::from_secs(30));
        let log = String::from_utf8_lossy(&terminate(agent).stderr).into_owned();
        let error = events.iter().find_map(|e| e.error.clone()).unwrap();
        (error, log)
    }
}

fn site() -> Site {
    Site(common::AgentSite::new())
}

#[test]
fn each_file_is_flushed_to_the_servers_disk_before_its_rename() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    // A file item and a directory item (the `dir` poller) of 20 files.
    add(&s.path("src"), &["show/ep1.mxf"]);
    let mut names = vec!["tree/READY".to_string()];
    names.extend((0..19).map(|i| format!("tree/sub{}/part{i:02}.ts", i % 3)));
    add(
        &s.path("trees"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // Key login, host key from a known_hosts file.
    let auth = format!(
        "private_key_file = {:?}\nknown_hosts = {:?}",
        sshd.client_key().display().to_string(),
        sshd.known_hosts().display().to_string()
    );
    let trees_remote = s.path("server/incoming/trees");
    let trees = format!(
        "\n[[poller]]\nname = \"trees\"\npath = \"trees\"\nplugin = \"dir\"\nstability = \"0s\"\n\
         params = {{ markers = [\"READY\"] }}\n\
         [poller.target]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"root\"\n\
         destination = {:?}\n{auth}\n",
        sshd.port,
        trees_remote.display().to_string(),
    );
    s.config(&sshd, &auth, &trees);
    s.run_until_idle(Duration::from_secs(60));
    assert!(s.remote().join("show/ep1.mxf").exists());
    for n in &names {
        assert_eq!(std::fs::read_to_string(trees_remote.join(n)).unwrap(), *n);
    }
    assert_eq!(part_files(&trees_remote), Vec::<PathBuf>::new());
    let sftp_log = std::fs::read_to_string(s.path("sshd/sftp.log")).unwrap();
    let fsyncs = sftp_log.lines().filter(|l| l.contains("fsync")).count();
    assert_eq!(fsyncs, 1 + names.len(), "{sftp_log}");
}

#[test]
fn a_wrong_host_key_fingerprint_is_refused_before_anything_is_sent() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    let auth = format!(
        "private_key_file = {:?}\nhost_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"",
        sshd.client_key().display().to_string(),
    );
    s.config(&sshd, &auth, "");
    let (error, log) = s.first_error();
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    assert!(!s.remote().exists(), "nothing uploaded");
    assert!(
        error.contains("host key mismatch")
            && error.contains(&format!("127.0.0.1:{}", sshd.port))
            && error.contains(&sshd.fingerprint()),
        "{error}"
    );
    assert!(log.contains("permanent=true"), "{log}");
}

#[test]
fn a_changed_host_key_in_known_hosts_is_refused() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    // known_hosts holds another key of the same type for this host:port.
    let known = sshd.known_hosts();
    let other = s.path("other_host");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = public.split_whitespace();
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    let auth = format!(
        "private_key_file = {:?}\nknown_hosts = {:?}",
        sshd.client_key().display().to_string(),
        known.display().to_string()
    );
    s.config(&sshd, &auth, "");
    let (error, _) = s.first_error();
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    assert!(!s.remote().exists(), "nothing uploaded");
    assert!(
        error.contains("host key mismatch") && error.contains("line 1 of"),
        "{error}"
    );
}

/// Waits until `path` exists, for up to 30 s.
fn arrives(path: &Path) {
    common::wait_until(&path.display().to_string(), Duration::from_secs(30), || {
        path.exists()
    });
}

#[test]
fn items_in_a_row_share_one_ssh_login() {
    let s = site();
    let mut sshd = Sshd::start(&s.path("sshd"));
    let names: Vec<String> = (0..6).map(|i| format!("show/ep{i}.mxf")).collect();
    s.key_config(&sshd, "");
    // One transfer at a time: each item starts after the last one ended.
    let toml = std::fs::read_to_string(s.path("agent.toml"))
        .unwrap()
        .replace(
            "stability = \"0s\"\n",
            "stability = \"0s\"\nmax_transfers = 1\n",
        );
    std::fs::write(s.path("agent.toml"), toml).unwrap();
    let agent = s.agent(false);
    add(
        &s.path("src"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    for n in &names {
        arrives(&s.remote().join(n));
    }
    let logins = || {
        std::fs::read_to_string(s.path("sshd/sshd.log"))
            .unwrap()
            .matches("Accepted publickey for root")
            .count()
    };
    assert_eq!(logins(), 1);
    // The server drops every session: the idle connection fails its check
    // and a new login sends the next item on its first attempt.
    sshd.stop();
    sshd.restart();
    add(&s.path("src"), &["late/ep9.mxf"]);
    arrives(&s.remote().join("late/ep9.mxf"));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(logins(), 2, "{log}");
    let rows = s.transfers();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), names.len() + 1);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "Complete" && r["attempts"] == 1),
        "{rows:?}"
    );
}
