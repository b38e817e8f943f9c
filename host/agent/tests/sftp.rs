//! The SFTP backend against a real OpenSSH `sshd` on loopback (installed by
//! .ci/run), through real `dispatch-agent` processes. The tests run as root:
//! key logins use root, password logins the user `dispatchtest` (made here
//! if missing, as .ci/run does).
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{add, part_file, part_files, pattern, terminate, wait_limited};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const PASSWORD_USER: &str = "dispatchtest";
const PASSWORD: &str = "sftp-Pa55-secret";

/// A private `sshd -D` on a free loopback port with its own keys and
/// config; it and every session process it forked are killed on drop.
struct Sshd {
    server: common::ServerProcess,
    port: u16,
    dir: PathBuf,
}

impl Sshd {
    fn start(dir: &Path) -> Self {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: .ci/run installs it (apt install openssh-server)"
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for key in ["host_ed25519", "client_ed25519"] {
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let port = common::free_port();
        let d = dir.display();
        // OpenSSH's sftp-server, logging each request it serves to
        // sftp.log (root's sessions; others cannot write there).
        let sftp_server = dir.join("sftp-server.sh");
        std::fs::write(
            &sftp_server,
            format!(
                "#!/bin/sh\nif [ -w {d}/sftp.log ]; then exec /usr/lib/openssh/sftp-server -e -l VERBOSE 2>>{d}/sftp.log; fi\n\
                 exec /usr/lib/openssh/sftp-server\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("sftp.log"), "").unwrap();
        std::fs::set_permissions(
            &sftp_server,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                 PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nUsePAM no\n\
                 StrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp {d}/sftp-server.sh\n"
            ),
        )
        .unwrap();
        let (config, log) = (dir.join("sshd_config"), dir.join("sshd.log"));
        let server = common::ServerProcess::start("sshd", port, Some(log.clone()), move || {
            let mut c = Command::new(SSHD);
            c.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log);
            c
        });
        Sshd {
            server,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn restart(&mut self) {
        self.server.restart();
    }

    /// Kills the listener and the session processes it forked (by pid),
    /// as a crash of the server would.
    fn stop(&mut self) {
        if let Some(pid) = self.server.pid() {
            let pids = descendants(pid);
            for pid in &pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            self.server.stop();
            // Dead (gone or a zombie), so no write lands after this returns.
            let deadline = Instant::now() + Duration::from_secs(5);
            for pid in pids {
                while Instant::now() < deadline
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, r)| !r.starts_with(" Z"))
                    })
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("host_ed25519.pub"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// A known_hosts file with this server's key.
    fn known_hosts(&self) -> PathBuf {
        let public = std::fs::read_to_string(self.dir.join("host_ed25519.pub")).unwrap();
        let mut fields = public.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        let path = self.dir.join("known_hosts");
        std::fs::write(&path, line).unwrap();
        path
    }

    fn client_key(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every process below `pid` (read from /proc), deepest last.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the comm may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The password user exists with the known password, or the test fails
/// (never skips): .ci/run makes it; tests run as root and make it too.
fn password_user() {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap();
    if *done {
        return;
    }
    let exists = Command::new("id")
        .arg(PASSWORD_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let out = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", PASSWORD_USER])
            .output()
            .unwrap_or_else(|e| panic!("cannot run useradd to make `{PASSWORD_USER}`: {e}"));
        assert!(
            out.status.success(),
            "cannot make the password-login user `{PASSWORD_USER}` (useradd as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD_USER}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(
        chpasswd.wait().unwrap().success(),
        "cannot set the password of `{PASSWORD_USER}` (chpasswd as root)"
    );
    *done = true;
}

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

    /// An agent config sending to `sshd` with `auth` (credential and host
    /// key lines) plus `extra` target lines.
    fn config(&self, sshd: &Sshd, user: &str, auth: &str, extra: &str) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"sftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{user}\"\n\
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
        self.config(sshd, "root", &auth, extra);
    }

    /// Password login as the password user (who must reach the folder).
    fn password_config(&self, sshd: &Sshd, password: &str) {
        password_user();
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(self.path("server")).unwrap();
        std::fs::set_permissions(self.path("server"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let auth = format!(
            "password = \"{password}\"\nhost_key_fingerprint = \"{}\"",
            sshd.fingerprint()
        );
        self.config(sshd, PASSWORD_USER, &auth, "");
    }

    /// Whether `needle` is in any file of the site but the config (the
    /// journal, its WAL, logs).
    fn leaks(&self, needle: &str) -> Vec<PathBuf> {
        let mut hits = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|n| n != "agent.toml")
                    && std::fs::read(&p)
                        .unwrap_or_default()
                        .windows(needle.len())
                        .any(|w| w == needle.as_bytes())
                {
                    hits.push(p);
                }
            }
        }
        hits
    }
}

fn site() -> Site {
    Site(common::AgentSite::new())
}

#[test]
fn a_100_mb_file_and_a_200_file_tree_arrive_byte_identical() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    let big = pattern(100_000_000, 7);
    std::fs::create_dir_all(s.path("src/big")).unwrap();
    std::fs::write(s.path("src/big/feature.mxf"), &big).unwrap();
    // A directory item (the `dir` poller): 199 files in nested folders and
    // its ready marker.
    let mut names = vec!["tree/READY".to_string()];
    for i in 0..199 {
        names.push(format!("tree/sub{}/deep/part{i:03}.ts", i % 4));
    }
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
    // Its own destination folder: two pollers may not share one.
    let trees_remote = s.path("server/incoming/trees");
    let trees = format!(
        "\n[[poller]]\nname = \"trees\"\npath = \"trees\"\nplugin = \"dir\"\nstability = \"0s\"\n\
         params = {{ markers = [\"READY\"] }}\n\
         [poller.target]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"root\"\n\
         destination = {:?}\n{auth}\n",
        sshd.port,
        trees_remote.display().to_string(),
    );
    s.config(&sshd, "root", &auth, &trees);
    s.run_until_idle(Duration::from_secs(120));
    let remote = s.remote();
    assert_eq!(std::fs::read(remote.join("big/feature.mxf")).unwrap(), big);
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(trees_remote.join(n)).unwrap(),
            *n,
            "{n}"
        );
    }
    assert!(!s.path("src/big/feature.mxf").exists(), "source removed");
    assert!(!s.path("trees/tree").exists(), "source tree removed");
    assert_eq!(part_files(&remote), Vec::<PathBuf>::new());
    assert_eq!(part_files(&trees_remote), Vec::<PathBuf>::new());
    // Each file was flushed to the server's disk before its rename.
    let sftp_log = std::fs::read_to_string(s.path("sshd/sftp.log")).unwrap();
    let fsyncs = sftp_log.lines().filter(|l| l.contains("fsync")).count();
    assert_eq!(fsyncs, 1 + names.len(), "{sftp_log}");
    let rows = s.transfers();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "Complete"),
        "{rows}"
    );
}

#[test]
fn a_password_login_sends() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    s.password_config(&sshd, PASSWORD);
    let log = s.run_until_idle(Duration::from_secs(60));
    assert_eq!(
        std::fs::read_to_string(s.remote().join("show/ep1.mxf")).unwrap(),
        "show/ep1.mxf"
    );
    assert!(!s.path("src/show/ep1.mxf").exists());
    assert!(!log.contains(PASSWORD));
    assert_eq!(s.leaks(PASSWORD), Vec::<PathBuf>::new());
}

#[test]
fn a_wrong_password_is_a_clear_permanent_error_and_keeps_the_source() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    let wrong = "wrong-Pa55word";
    s.password_config(&sshd, wrong);
    let agent = s.agent(false);
    std::thread::sleep(Duration::from_secs(4));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    assert!(!s.remote().exists(), "nothing made on the server");
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(row["status"], "Error");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{}", sshd.port))
            && error.contains("authentication refused")
            && error.contains(PASSWORD_USER),
        "{error}"
    );
    assert!(
        log.contains("poller=sftp") && log.contains("permanent=true"),
        "{log}"
    );
    // Permanent: retried only after the longest backoff (2 s here), not in a loop.
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
    assert!(!log.contains(wrong) && !error.contains(wrong));
    assert_eq!(s.leaks(wrong), Vec::<PathBuf>::new());
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
    s.config(&sshd, "root", &auth, "");
    let agent = s.agent(false);
    std::thread::sleep(Duration::from_secs(4));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    assert!(!s.remote().exists(), "nothing uploaded");
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(row["status"], "Error");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains("host key mismatch")
            && error.contains(&format!("127.0.0.1:{}", sshd.port))
            && error.contains(&sshd.fingerprint()),
        "{error}"
    );
    assert!(log.contains("permanent=true"), "{log}");
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
}

#[test]
fn a_server_killed_mid_upload_is_resumed_and_never_shows_a_partial_final_file() {
    let s = site();
    let mut sshd = Sshd::start(&s.path("sshd"));
    let data = pattern(60_000_000, 3);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep2.mxf"), &data).unwrap();
    // 80 Mbps: ~6 s for 60 MB.
    s.key_config(&sshd, "rate_limit_mbps = 80");
    let agent = s.agent(true);
    let final_path = s.remote().join("show/ep2.mxf");
    // The part's name is made from the transfer id: whatever ends in
    // `.dispatch-part` beside the final name.
    let part = || part_file(&s.remote().join("show"));
    let part_len = || {
        part()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    // Kill the server once a quarter of the file is up (~1.5 s in).
    let deadline = Instant::now() + Duration::from_secs(30);
    while part_len() < 15_000_000 {
        assert!(!final_path.exists(), "a final name while uploading");
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    sshd.stop();
    let first_part = part();
    let partial = part_len();
    assert!(
        partial > 0 && !final_path.exists(),
        "a part file ({partial} bytes) and no final name while uploading"
    );
    std::thread::sleep(Duration::from_secs(1));
    sshd.restart();
    // The final name appears only whole.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) && !final_path.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Ok(m) = std::fs::metadata(&final_path) {
        assert_eq!(m.len(), data.len() as u64, "a partial final file");
    }
    let out = wait_limited(agent, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&final_path).unwrap(), data);
    assert_eq!(part_files(&s.remote()), Vec::<PathBuf>::new());
    assert!(first_part.is_some_and(|p| !p.exists()));
    let rows = s.transfers();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["status"], "Complete");
    assert!(rows[0]["attempts"].as_i64().unwrap() >= 2, "{}", rows[0]);
    // The retry continued where the part file ended instead of from zero.
    let resumed_at: u64 = log
        .lines()
        .find_map(|l| {
            l.split("resuming the upload of")
                .nth(1)?
                .split(" at byte ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no resume in the log:\n{log}"));
    assert_eq!(resumed_at, partial, "resumed where the part file ended");
}

#[test]
fn the_rate_limit_holds_within_ten_percent_over_ten_seconds() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    // 20 MB at 16 Mbps (2 MB/s): 10 s.
    std::fs::write(s.path("src/show/ep3.mxf"), pattern(20_000_000, 9)).unwrap();
    s.key_config(&sshd, "rate_limit_mbps = 16");
    let out = wait_limited(s.agent(true), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = s.transfers();
    let took = rows[0]["ended_at"].as_i64().unwrap() - rows[0]["started_at"].as_i64().unwrap();
    assert!(
        (9_000..=11_000).contains(&took),
        "20 MB at 16 Mbps took {took} ms"
    );
}

#[test]
fn a_key_the_server_does_not_accept_is_a_clear_permanent_error() {
    let s = site();
    let sshd = Sshd::start(&s.path("sshd"));
    add(&s.path("src"), &["show/ep1.mxf"]);
    // An encrypted key the server never saw.
    let other = s.path("other_ed25519");
    let passphrase = "key-Pa55phrase";
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-f"])
            .arg(&other)
            .status()
            .unwrap()
            .success()
    );
    let auth = format!(
        "private_key_file = {:?}\npassphrase = \"{passphrase}\"\nhost_key_fingerprint = \"{}\"",
        other.display().to_string(),
        sshd.fingerprint()
    );
    s.config(&sshd, "root", &auth, "");
    let agent = s.agent(false);
    std::thread::sleep(Duration::from_secs(4));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(row["status"], "Error");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{}", sshd.port))
            && error.contains("authentication refused (wrong private key?)"),
        "{error}"
    );
    assert!(log.contains("permanent=true"), "{log}");
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
    assert_eq!(s.leaks(passphrase), Vec::<PathBuf>::new());
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
    s.config(&sshd, "root", &auth, "");
    let agent = s.agent(false);
    std::thread::sleep(Duration::from_secs(3));
    terminate(agent);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    assert!(!s.remote().exists(), "nothing uploaded");
    let rows = s.transfers();
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("host key mismatch") && error.contains("line 1 of"),
        "{error}"
    );
}

/// Waits until `path` exists, for up to 30 s.
fn arrives(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never arrived",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
