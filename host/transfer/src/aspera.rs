//! `aspera`: runs IBM Aspera's `ascp` (no shell), mapping the original
//! agent's options. Secrets never reach the command line: the password and
//! the encryption passphrase go in `ASPERA_SCP_PASS` / `ASPERA_SCP_FILEPASS`,
//! an inline SSH key is written 0600 into a private temporary directory that
//! is removed when the transfer ends. `ascp`'s stderr becomes the error text.
//!
//! `ascp` verifies what it sends itself; the agent trusts its exit status.
//!
//! Progress: unless run with `-q`, `ascp` rewrites one line per file on
//! stdout with `\r`: `<file>  45%  461MB  120Mb/s  00:12 ETA`, the last one
//! (100%, no ETA) ending in `\n`. Each line's byte figure (1024-based units,
//! rounded by ascp) is what that file has sent; the item's progress is
//! their sum, never above its size, and the rest is added once ascp
//! succeeded. With `-q` in `flags` the bytes appear only at the end.

use super::{Backend, Job, Progress, Sent, TransferError};
use dispatch_protocol::target::AsperaTarget as AsperaConfig;
use dispatch_runtime::actions::ItemKind;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

pub struct AsperaBackend {
    cfg: AsperaConfig,
}

/// A prepared `ascp` run.
#[derive(Debug)]
pub struct AscpCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Environment added for `ascp`; the values are secrets.
    pub env: Vec<(&'static str, String)>,
}

impl AsperaBackend {
    pub fn new(cfg: AsperaConfig) -> Self {
        Self { cfg }
    }

    /// The command for `job`; `key_file` is where an inline key was written.
    pub fn command(&self, job: &Job, key_file: Option<&Path>) -> AscpCommand {
        let c = &self.cfg;
        let mut args: Vec<OsString> = vec![
            "-P".into(),
            c.port.to_string().into(),
            "-l".into(),
            format!("{}M", rate(c.rate_limit_mbps)).into(),
            "-k2".into(),
            "-d".into(),
        ];
        args.extend(c.flags.iter().map(OsString::from));
        let key = key_file
            .map(Path::to_path_buf)
            .or_else(|| c.ssh_key_file.clone());
        if let Some(key) = key {
            args.push("-i".into());
            args.push(key.into());
        }
        if c.encrypt {
            args.push("--file-crypt=encrypt".into());
        }
        let mut base = OsString::from("--src-base=");
        base.push(&job.root);
        args.push(base);
        args.push(job.source().into());
        args.push(format!("{}@{}:/{}", c.user, c.host, dest_dir(&c.destination)).into());
        let mut env = Vec::new();
        if let Some(p) = &c.password {
            env.push(("ASPERA_SCP_PASS", p.expose().to_string()));
        }
        if c.encrypt
            && let Some(p) = &c.passphrase
        {
            env.push(("ASPERA_SCP_FILEPASS", p.expose().to_string()));
        }
        AscpCommand {
            program: c.ascp.clone(),
            args,
            env,
        }
    }
}

/// `150` for 150.0, `2.5` for 2.5.
fn rate(mbps: f64) -> String {
    if mbps.fract() == 0.0 {
        format!("{mbps:.0}")
    } else {
        format!("{mbps}")
    }
}

/// `dest/` (or empty for the remote's root), without leading slashes.
fn dest_dir(destination: &str) -> String {
    let d = destination.trim_matches('/');
    if d.is_empty() {
        String::new()
    } else {
        format!("{d}/")
    }
}

/// Errors from `ascp` that retrying will not fix.
fn is_permanent(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "authentication",
        "permission denied",
        "password",
        "access denied",
        "not authorized",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// One progress line of `ascp`: the file's name as shown and the bytes it
/// has sent so far. `None` for any other line (the `Completed:` summary,
/// log lines).
pub fn parse_progress(line: &str) -> Option<(&str, u64)> {
    let words: Vec<(usize, &str)> = line
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - line.as_ptr() as usize, w))
        .collect();
    // From the right, since a file name may hold anything: `NN%`, a size,
    // then a rate in `b/s`.
    (1..words.len().saturating_sub(2)).rev().find_map(|i| {
        let pct: f64 = words[i].1.strip_suffix('%')?.parse().ok()?;
        if !(0.0..=100.0).contains(&pct) || !words[i + 2].1.ends_with("b/s") {
            return None;
        }
        let bytes = parse_size(words[i + 1].1)?;
        let name = line[..words[i].0].trim();
        Some((name, bytes))
    })
}

/// `461MB`, `1.5GB`, `20KB`, `512B` -> bytes (ascp's units are 1024-based:
/// its summary counts 1048576000 bytes as `1024000K`).
fn parse_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = s.split_at(digits);
    let n: f64 = n.parse().ok()?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        _ => return None,
    };
    // Saturating float-to-int conversion: a huge figure caps at u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((n * scale as f64) as u64)
}

/// The bytes an `ascp` run reports, file by file, as one running total.
#[derive(Debug, Default)]
pub struct AscpProgress {
    files: HashMap<String, u64>,
    /// What went to `Progress` so far.
    pub reported: u64,
    /// The item's size: the total never goes above it.
    pub size: u64,
}

impl AscpProgress {
    pub fn new(size: u64) -> Self {
        Self {
            size,
            ..Self::default()
        }
    }

    /// Takes one line; returns the bytes to add to the progress (the
    /// total's growth; a file's figure never moves it back).
    pub fn line(&mut self, line: &str) -> u64 {
        let Some((name, bytes)) = parse_progress(line) else {
            return 0;
        };
        let seen = self.files.entry(name.to_string()).or_default();
        *seen = (*seen).max(bytes);
        let total = self.files.values().sum::<u64>().min(self.size);
        let grew = total.saturating_sub(self.reported);
        self.reported += grew;
        grew
    }
}

/// Reads `ascp`'s stdout to its end, a `\r`- or `\n`-ended line at a time,
/// adding what each progress line says to `progress`; returns the total.
async fn follow_progress(
    out: Option<tokio::process::ChildStdout>,
    progress: &Progress,
    size: u64,
) -> u64 {
    use tokio::io::AsyncReadExt;
    /// A line longer than this is no progress line: dropped.
    const MAX_LINE: usize = 64 * 1024;
    let mut seen = AscpProgress::new(size);
    let Some(mut out) = out else { return 0 };
    let (mut buf, mut line) = (vec![0u8; 8192], Vec::new());
    while let Ok(n @ 1..) = out.read(&mut buf).await {
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                progress.add(seen.line(&String::from_utf8_lossy(&line)));
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    progress.add(seen.line(&String::from_utf8_lossy(&line)));
    seen.reported
}

#[async_trait::async_trait]
impl Backend for AsperaBackend {
    async fn send(&self, job: &Job, progress: Arc<Progress>) -> Result<Sent, TransferError> {
        // Progress comes from ascp's stdout; the rest of the item's size once
        // it succeeded.
        let size = super::item_size(&job.source());
        // `ascp` reads the item itself, following whatever it finds: checked
        // beneath the root first, so a folder swapped for a symlink out of it
        // since the poll is refused (a swap after this check is not caught).
        match job.kind {
            ItemKind::File => drop(job.open_source(&job.source())?),
            ItemKind::Dir => drop(super::tree::walk(job)?),
        }
        // An inline key lives only for this run, in a 0700 directory.
        let key_dir = match &self.cfg.ssh_key {
            Some(key) => Some(write_key(key.expose())?),
            None => None,
        };
        let key_file = key_dir.as_ref().map(|d| d.path().join("id_key"));
        let cmd = self.command(job, key_file.as_deref());
        let mut child = tokio::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TransferError::permanent(format!("cannot run {}: {e}", cmd.program.display()))
            })?;
        let stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_err = async move {
            let mut text = String::new();
            if let Some(s) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_string(&mut text).await;
            }
            text
        };
        let status = tokio::select! {
            (status, text, reported) = async {
                tokio::join!(child.wait(), read_err, follow_progress(stdout, &progress, size))
            } => (status, text, reported),
            () = progress.cancel.cancelled() => {
                let _ = child.kill().await;
                return Err(TransferError::cancelled());
            }
        };
        drop(key_dir);
        let (status, text, reported) = status;
        let status = status.map_err(|e| TransferError::transient(format!("ascp: {e}")))?;
        if status.success() {
            progress.add(size.saturating_sub(reported));
            return Ok(Sent::of(size));
        }
        let said = text.trim();
        let message = if said.is_empty() {
            format!("ascp failed ({status})")
        } else {
            format!(
                "ascp failed ({status}): {}",
                said.lines().collect::<Vec<_>>().join(" ")
            )
        };
        Err(if is_permanent(said) {
            TransferError::permanent(message)
        } else {
            TransferError::transient(message)
        })
    }

    fn describe(&self) -> String {
        format!(
            "aspera:{}@{}:/{}",
            self.cfg.user,
            self.cfg.host,
            dest_dir(&self.cfg.destination)
        )
    }
}

fn write_key(key: &str) -> Result<tempfile::TempDir, TransferError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dispatch-ascp-")
        .tempdir()
        .map_err(|e| TransferError::io("cannot create a private key directory", &e))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.path().join("id_key"))
        .map_err(|e| TransferError::io("cannot write the SSH key file", &e))?;
    f.write_all(key.as_bytes())
        .and_then(|()| {
            if key.ends_with('\n') {
                Ok(())
            } else {
                f.write_all(b"\n")
            }
        })
        .map_err(|e| TransferError::io("cannot write the SSH key file", &e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_protocol::Secret;
    use dispatch_runtime::actions::ItemKind;

    fn cfg() -> AsperaConfig {
        AsperaConfig {
            host: "aspera.example".into(),
            user: "affiliate".into(),
            password: Some(Secret::new("pw")),
            ssh_key: None,
            ssh_key_file: None,
            port: 22,
            destination: "/incoming/".into(),
            rate_limit_mbps: 150.0,
            encrypt: false,
            passphrase: None,
            ascp: "ascp".into(),
            flags: vec!["-T".into(), "-Q".into()],
        }
    }

    #[test]
    fn maps_the_original_options() {
        let job = Job {
            root: "/srv/google".into(),
            path: "A/ADI.XML".into(),
            kind: ItemKind::File,
            excludes: Arc::default(),
            id: "0011223344556677".into(),
            sig: String::new(),
            restarted: false,
        };
        let cmd = AsperaBackend::new(cfg()).command(&job, None);
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-P",
                "22",
                "-l",
                "150M",
                "-k2",
                "-d",
                "-T",
                "-Q",
                "--src-base=/srv/google",
                "/srv/google/A/ADI.XML",
                "affiliate@aspera.example:/incoming/"
            ]
        );
        assert_eq!(cmd.env, [("ASPERA_SCP_PASS", "pw".to_string())]);
    }
}
