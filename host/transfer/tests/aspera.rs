//! The Aspera backend's progress: `ascp`'s progress lines become bytes while
//! it runs, through the stand-in `ascp` (the real one is proprietary), which
//! paces its copy to the `-l` rate and prints lines in ascp's format.
#![allow(clippy::unwrap_used)] // a test that fails panics

use dispatch_protocol::target::AsperaTarget;
use dispatch_runtime::actions::ItemKind;
use dispatch_transfer::aspera::{AscpProgress, AsperaBackend, parse_progress};
use dispatch_transfer::{Backend, Job, Progress};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testing/ascp-standin/ascp")
}

/// The stand-in's remote root, shared by the tests of this file (each sends
/// under its own destination): the stand-in reads it from the environment,
/// which is set once, before any test spawns a process.
fn remote() -> &'static Path {
    static REMOTE: OnceLock<tempfile::TempDir> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            // SAFETY: inside the one initialisation, which every test that
            // spawns `ascp` waits for; the other tests read no environment.
            unsafe {
                std::env::set_var("ASCP_STANDIN_RECORD", dir.path().join("record"));
                std::env::set_var("ASCP_STANDIN_ROOT", dir.path());
            }
            dir
        })
        .path()
}

fn target(rate_mbps: f64, flags: &[&str], destination: &str) -> AsperaTarget {
    AsperaTarget {
        host: "aspera.example.net".into(),
        user: "affiliate".into(),
        password: None,
        ssh_key: None,
        ssh_key_file: None,
        port: 22,
        destination: destination.into(),
        rate_limit_mbps: rate_mbps,
        encrypt: false,
        passphrase: None,
        ascp: standin(),
        flags: flags.iter().map(|f| (*f).to_string()).collect(),
    }
}

fn job(root: &Path, path: &str, kind: ItemKind) -> Job {
    Job {
        root: root.to_path_buf(),
        path: path.into(),
        kind,
        excludes: Arc::default(),
        id: "00112233445566778899".into(),
        sig: String::new(),
        restarted: false,
    }
}

/// Sends `job` while sampling its progress every 10 ms: (the samples, the
/// bytes `send` says it sent).
fn send_sampled(backend: &AsperaBackend, job: &Job) -> (Vec<u64>, u64) {
    remote();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let progress = Arc::new(Progress::default());
        let send = backend.send(job, progress.clone());
        tokio::pin!(send);
        let mut samples = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                sent = &mut send => {
                    samples.push(progress.bytes_done());
                    return (samples, sent.unwrap().bytes);
                }
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    samples.push(progress.bytes_done());
                    assert!(Instant::now() < deadline, "ascp still running after 60 s");
                }
            }
        }
    })
}

#[test]
fn progress_lines_are_read_from_the_right() {
    assert_eq!(
        parse_progress("file.mxf                45%  461MB  120Mb/s    00:12 ETA"),
        Some(("file.mxf", 461 << 20))
    );
    // The last line: 100%, no ETA; a name with spaces and a percent sign.
    assert_eq!(
        parse_progress("my 50% cut.mov 100% 1.5GB 95.9Mb/s    01:27"),
        Some(("my 50% cut.mov", 3 << 29))
    );
    assert_eq!(
        parse_progress("ADI.XML   100%   20KB  150Mb/s    00:00"),
        Some(("ADI.XML", 20 << 10))
    );
    for other in [
        "Completed: 1024000K bytes transferred in 87 seconds",
        " (95875K bits/sec), in 1 file.",
        "",
        "Session Stop  (Error: Disk write failed)",
        "x 120% 4MB 10Mb/s",
    ] {
        assert_eq!(parse_progress(other), None, "{other}");
    }
}

#[test]
fn progress_never_goes_back_nor_past_the_size() {
    let mut p = AscpProgress::new(3 << 20);
    assert_eq!(p.line("a  50%  1024KB  10Mb/s  00:01 ETA"), 1 << 20);
    // A figure rounded down later, then another file: only growth counts.
    assert_eq!(p.line("a  49%  1000KB  10Mb/s  00:01 ETA"), 0);
    assert_eq!(p.line("b  100%  4MB  10Mb/s  00:00"), 2 << 20);
    assert_eq!(p.reported, 3 << 20);
}

#[test]
fn bytes_show_while_ascp_runs_not_only_at_the_end() {
    let site = tempfile::tempdir().unwrap();
    let src = site.path().join("src/A1");
    std::fs::create_dir_all(&src).unwrap();
    let size: u64 = 4 << 20;
    std::fs::write(src.join("movie.mpg"), vec![7u8; 4 << 20]).unwrap();
    std::fs::write(src.join("ADI.XML"), b"<ADI/>").unwrap();
    let item = size + 6;
    // 16 Mb/s: 2 MB a second, so the 4 MiB file takes about 2 s, a
    // progress line every 1 MiB chunk.
    let backend = AsperaBackend::new(target(16.0, &["-T"], "/moving/"));
    let job = job(&site.path().join("src"), "A1", ItemKind::Dir);
    let (samples, sent) = send_sampled(&backend, &job);
    assert_eq!(sent, item);
    assert_eq!(*samples.last().unwrap(), item, "the whole item at the end");
    let between: Vec<u64> = samples
        .iter()
        .copied()
        .filter(|&b| b > 0 && b < item)
        .collect();
    assert!(
        between.len() >= 2 && between.windows(2).any(|w| w[0] < w[1]),
        "no bytes while ascp ran, only at the end: {samples:?}"
    );
    assert!(
        samples.windows(2).all(|w| w[0] <= w[1]),
        "went back: {samples:?}"
    );
    assert_eq!(
        std::fs::read(remote().join("moving/A1/movie.mpg")).unwrap(),
        vec![7u8; 4 << 20]
    );
}

#[test]
fn quiet_ascp_gives_the_bytes_at_the_end() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(site.path().join("src")).unwrap();
    std::fs::write(site.path().join("src/f.bin"), vec![1u8; 3 << 20]).unwrap();
    let backend = AsperaBackend::new(target(16.0, &["-q"], "/quiet/"));
    let job = job(&site.path().join("src"), "f.bin", ItemKind::File);
    let (samples, sent) = send_sampled(&backend, &job);
    assert_eq!(sent, 3 << 20);
    assert!(
        samples.iter().all(|&b| b == 0 || b == 3 << 20),
        "-q prints no progress, so nothing comes before the end: {samples:?}"
    );
    assert_eq!(*samples.last().unwrap(), 3 << 20);
}
