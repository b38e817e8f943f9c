//! The FTP backend against a real server on loopback (pyftpdlib from the
//! test venv, plain and with explicit TLS), through real `dispatch-agent`
//! processes.
#![allow(clippy::unwrap_used)] // a test helper that fails panics

mod common;
use common::{contains, part_file, part_files, pattern, terminate, venv_bin, wait_limited};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const USER: &str = "ftp_user";
const PASS: &str = "ftp-Pa55-secret";

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is not installed: .ci/run installs it");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=Dispatch Test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// pyftpdlib on a free loopback port (passive ports on loopback too),
/// stopped on drop, even when the test panics.
struct Ftpd;

impl Ftpd {
    fn start(root: &Path, tls: Option<&Certs>) -> common::ServerProcess {
        std::fs::create_dir_all(root).unwrap();
        let (root, port) = (root.to_path_buf(), common::free_port());
        let tls = tls.map(|c| (c.cert.clone(), c.key.clone()));
        // A passive range of its own per server, so parallel tests don't meet.
        let pasv = 30_000 + u32::from(port) % 20_000;
        common::ServerProcess::start("pyftpdlib", port, None, move || {
            let mut cmd = Command::new(venv_bin("python"));
            cmd.args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-w", "-p"])
                .arg(port.to_string())
                .arg("-d")
                .arg(&root)
                .args([
                    "-u",
                    USER,
                    "-P",
                    PASS,
                    "-r",
                    &format!("{pasv}-{}", pasv + 30),
                ]);
            if let Some((cert, key)) = &tls {
                cmd.args([
                    "--tls",
                    "--tls-control-required",
                    "--tls-data-required",
                    "--certfile",
                ])
                .arg(cert)
                .arg("--keyfile")
                .arg(key);
            }
            cmd
        })
    }
}

struct Site(common::AgentSite);

impl std::ops::Deref for Site {
    type Target = common::AgentSite;
    fn deref(&self) -> &common::AgentSite {
        &self.0
    }
}

impl Site {
    fn config(&self, port: u16, password: &str, extra_target: &str) {
        let cache = std::env::temp_dir().join("dispatch-test-cache");
        let text = format!(
            "[agent]\ncache_dir = {:?}\nrescan_interval = \"1s\"\n[agent.retry]\ninitial = \"200ms\"\nmax = \"2s\"\n\n\
             [[poller]]\nname = \"to_ftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n\
             [poller.target]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             username = \"{USER}\"\npassword = \"{password}\"\ndestination = \"incoming/dispatch\"\n{extra_target}\n",
            cache.display().to_string()
        );
        std::fs::write(self.path("agent.toml"), text).unwrap();
    }
}

fn site() -> Site {
    Site(common::AgentSite::new())
}

const PLAIN: &str = "tls = \"none\"\n";

fn tls_target(c: &Certs) -> String {
    format!(
        "tls = \"explicit\"\nca_file = {:?}\n",
        c.ca.display().to_string()
    )
}

/// 100 MB plus 200 small files through the agent; checks the server's copy.
fn big_and_tree(s: &Site, port: u16, extra: &str) {
    let big = pattern(100_000_000, 7);
    std::fs::create_dir_all(s.path("src/big")).unwrap();
    std::fs::write(s.path("src/big/feature.mxf"), &big).unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("tree/part{i:03}.ts")).collect();
    common::add(
        &s.path("src"),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    s.config(port, PASS, extra);
    let log = s.run_until_idle(Duration::from_secs(180));
    let remote = s.path("server/incoming/dispatch");
    assert!(std::fs::read(remote.join("big/feature.mxf")).unwrap() == big);
    for n in &names {
        assert_eq!(
            std::fs::read_to_string(remote.join(n)).unwrap_or_else(|e| panic!("{n}: {e}\n{log}")),
            *n
        );
    }
    assert!(
        !s.path("src/big/feature.mxf").exists(),
        "source removed after"
    );
    assert_eq!(std::fs::read_dir(s.path("src/tree")).unwrap().count(), 0);
    let leftovers = common::dot_files(&remote.join("tree"));
    assert!(leftovers.is_empty(), "temporary names left: {leftovers:?}");
    let rows = s.transfers();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "Complete"),
        "{rows}"
    );
    assert!(!log.contains(PASS));
}

#[test]
fn a_100_mb_file_and_a_200_file_tree_arrive_byte_identical() {
    let s = site();
    let server = Ftpd::start(&s.path("server"), None);
    big_and_tree(&s, server.port, PLAIN);
}

#[test]
fn over_ftps_a_100_mb_file_and_a_200_file_tree_arrive_byte_identical() {
    let s = site();
    let c = certs(&s.path("certs"));
    // The server demands TLS on both connections: nothing goes in clear.
    let server = Ftpd::start(&s.path("server"), Some(&c));
    big_and_tree(&s, server.port, &tls_target(&c));
}

#[test]
fn ftps_refuses_a_server_certificate_it_cannot_verify() {
    let s = site();
    let c = certs(&s.path("certs"));
    let server = Ftpd::start(&s.path("server"), Some(&c));
    common::add(&s.path("src"), &["show/ep0.mxf"]);
    // No ca_file: the test CA is not among the trusted roots.
    s.config(server.port, PASS, "tls = \"explicit\"\n");
    let out = terminate({
        let a = s.agent(false);
        std::thread::sleep(Duration::from_secs(3));
        a
    });
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep0.mxf").exists(), "source kept");
    let rows = s.transfers();
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("certificate") && error.contains("ftps://127.0.0.1"),
        "{error}"
    );
    assert!(log.contains("permanent=true"), "{log}");
    assert!(!s.path("server/incoming").exists(), "nothing stored");
}

#[test]
fn a_wrong_password_is_a_clear_permanent_error_and_keeps_the_source() {
    let s = site();
    let server = Ftpd::start(&s.path("server"), None);
    common::add(&s.path("src"), &["show/ep1.mxf"]);
    let wrong = "wrong-Ftp-Pa55word";
    s.config(server.port, wrong, PLAIN);
    let agent = s.agent(false);
    // pyftpdlib answers a failed login after 3 s.
    std::thread::sleep(Duration::from_secs(6));
    let out = terminate(agent);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(s.path("src/show/ep1.mxf").exists(), "source kept");
    let rows = s.transfers();
    let row = &rows[0];
    assert_eq!(row["status"], "Error");
    let error = row["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("ftp://127.0.0.1:{}", server.port)) && error.contains("530"),
        "{error}"
    );
    assert!(
        log.contains("poller=to_ftp") && log.contains("permanent=true"),
        "{log}"
    );
    assert!(row["attempts"].as_i64().unwrap() <= 3, "{row}");
    assert!(!log.contains(wrong) && !error.contains(wrong));
    assert!(
        !contains(&s.journal_bytes(), wrong),
        "password in the journal"
    );
}

#[test]
fn a_server_stopped_mid_upload_resumes_and_never_shows_a_partial_file() {
    stopped_mid_upload(false);
}

#[test]
fn over_ftps_a_server_stopped_mid_upload_resumes_too() {
    stopped_mid_upload(true);
}

fn stopped_mid_upload(tls: bool) {
    let s = site();
    let c = tls.then(|| certs(&s.path("certs")));
    let mut server = Ftpd::start(&s.path("server"), c.as_ref());
    let data = pattern(30_000_000, 3);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    std::fs::write(s.path("src/show/ep2.mxf"), &data).unwrap();
    let target = c.as_ref().map_or(PLAIN.to_string(), tls_target);
    // 40 Mbps: ~6 s for 30 MB.
    s.config(server.port, PASS, &format!("{target}rate_limit_mbps = 40"));
    let agent = s.agent(true);
    let final_path = s.path("server/incoming/dispatch/show/ep2.mxf");
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    assert!(
        !final_path.exists(),
        "no file under the final name while uploading"
    );
    // The part's name is made from the transfer id: whatever ends in
    // `.dispatch-part` beside the final name.
    let part = part_file(&s.path("server/incoming/dispatch/show")).expect("a part file");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 5_000_000, "{kept} bytes before the stop");
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    let out = wait_limited(agent, Duration::from_secs(60));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(std::fs::read(&final_path).unwrap() == data);
    assert!(!part.exists());
    assert_eq!(
        part_files(&s.path("server/incoming/dispatch")),
        Vec::<PathBuf>::new()
    );
    let rows = s.transfers();
    assert_eq!(rows[0]["status"], "Complete");
    assert!(rows[0]["attempts"].as_i64().unwrap() >= 2, "{}", rows[0]);
    // Resumed from what the server had, not sent again from zero.
    let resumed = log
        .lines()
        .find(|l| l.contains("resuming an upload"))
        .unwrap_or_else(|| panic!("not resumed:\n{log}"));
    let offset: u64 = resumed
        .split("offset=")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(offset >= 5_000_000, "{resumed}");
}

#[test]
fn the_rate_limit_holds_within_ten_percent_over_ten_seconds() {
    let s = site();
    let server = Ftpd::start(&s.path("server"), None);
    std::fs::create_dir_all(s.path("src/show")).unwrap();
    // 20 MB at 16 Mbps (2 MB/s): 10 s.
    std::fs::write(s.path("src/show/ep3.mxf"), pattern(20_000_000, 9)).unwrap();
    s.config(server.port, PASS, &format!("{PLAIN}rate_limit_mbps = 16"));
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
