//! `cargo xtask deb`: the Debian package, from the release binaries (the
//! built-in pollers compiled into them) and `packaging/`: the binaries in
//! `/usr/bin`, the systemd units, `/etc/dispatch` (conffiles), and the
//! maintainer scripts that make the `dispatch` user and `/var/lib/dispatch`.
//! Built with `dpkg-deb`, so no packaging tool beyond Debian's own is needed.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const BINARIES: &[&str] = &["dispatch-web", "dispatch-agent"];

/// (file under `packaging/`, where it is installed, mode).
const FILES: &[(&str, &str, u32)] = &[
    (
        "systemd/dispatch-web.service",
        "lib/systemd/system/dispatch-web.service",
        0o644,
    ),
    (
        "systemd/dispatch-agent.service",
        "lib/systemd/system/dispatch-agent.service",
        0o644,
    ),
    ("etc/web.toml", "etc/dispatch/web.toml", 0o640),
    ("etc/agent.env", "etc/dispatch/agent.env", 0o640),
    ("INSTALL", "usr/share/doc/dispatch/INSTALL", 0o644),
    ("debian/postinst", "DEBIAN/postinst", 0o755),
    ("debian/prerm", "DEBIAN/prerm", 0o755),
    ("debian/postrm", "DEBIAN/postrm", 0o755),
];

/// Writes `target/dist/dispatch_<version>_amd64.deb`; returns its path.
pub fn deb(root: &Path, target: &Path) -> Result<PathBuf> {
    let stage = target.join("dist/deb-root");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    for bin in BINARIES {
        install_stripped(
            &target.join("release").join(bin),
            &stage.join("usr/bin").join(bin),
        )?;
    }
    for (from, to, mode) in FILES {
        install(&root.join("packaging").join(from), &stage.join(to), *mode)?;
    }
    std::fs::write(
        stage.join("DEBIAN/conffiles"),
        "/etc/dispatch/web.toml\n/etc/dispatch/agent.env\n",
    )?;
    std::fs::write(stage.join("DEBIAN/control"), control(&stage)?)?;
    let out = target.join(format!("dist/dispatch_{VERSION}_amd64.deb"));
    crate::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&stage)
            .arg(&out),
    )
    .context("building the package (dpkg-deb)")?;
    Ok(out)
}

/// A release binary, installed 0755 and stripped.
pub fn install_stripped(from: &Path, to: &Path) -> Result<()> {
    install(from, to, 0o755)?;
    crate::run(Command::new("strip").arg("--strip-unneeded").arg(to))
        .context("stripping the binaries (binutils)")
}

pub fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The control file: the libraries the binaries link are all glibc's.
fn control(stage: &Path) -> Result<String> {
    let size_kib = bytes_in(stage)?.div_ceil(1024);
    for bin in BINARIES {
        let out = Command::new("ldd")
            .arg(stage.join("usr/bin").join(bin))
            .output()?;
        let libs = String::from_utf8_lossy(&out.stdout);
        let foreign: Vec<&str> = libs
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|l| {
                ![
                    "linux-vdso",
                    "libc.so",
                    "libm.so",
                    "libgcc_s",
                    "ld-linux",
                    "/lib64/ld-linux",
                ]
                .iter()
                .any(|ok| l.starts_with(ok))
            })
            .collect();
        if !foreign.is_empty() {
            bail!("{bin} links {foreign:?}: add them to the package's Depends");
        }
    }
    Ok(format!(
        "Package: dispatch
Version: {VERSION}
Architecture: amd64
Maintainer: Dispatch <dispatch@localhost>
Depends: libc6 (>= 2.36), libgcc-s1, adduser
Section: net
Priority: optional
Installed-Size: {size_kib}
Description: watches directories and sends what is ready to remote servers
 dispatch-agent polls watched directories with sandboxed WebAssembly
 pollers and sends what is ready (local copy, SFTP, FTP, WebDAV, S3,
 Aspera), verified, then removes the source. dispatch-web holds the
 configuration, the poller modules and the central transfer log.
"
    ))
}

fn bytes_in(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        total += if meta.is_dir() {
            bytes_in(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
