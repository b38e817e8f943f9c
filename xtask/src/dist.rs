//! `cargo xtask dist` and `cargo xtask image`: static release builds.
//!
//! `dist` builds both binaries for musl (statically linked, the built-in
//! pollers compiled in), strips them and writes
//! `target/dist/dispatch-<version>-x86_64-linux.tar.gz` (binaries,
//! `examples/`, systemd units, sample settings, INSTALL) with a
//! `sha256sum -c` file beside it. `image` puts those binaries on `scratch`
//! with `packaging/container/Containerfile` and `podman build`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::package::{BINARIES, VERSION, install, install_stripped};

pub const MUSL: &str = "x86_64-unknown-linux-musl";
/// The image's user: not root, and no user of a typical host.
const IMAGE_UID: u32 = 10001;

/// (file under `packaging/`, where it goes in the tarball, mode).
const FILES: &[(&str, &str, u32)] = &[
    ("dist/INSTALL", "INSTALL", 0o644),
    ("etc/web.toml", "etc/web.toml", 0o644),
    ("etc/agent.env", "etc/agent.env", 0o644),
    (
        "systemd/dispatch-web.service",
        "systemd/dispatch-web.service",
        0o644,
    ),
    (
        "systemd/dispatch-agent.service",
        "systemd/dispatch-agent.service",
        0o644,
    ),
];

fn name() -> String {
    format!("dispatch-{VERSION}-x86_64-linux")
}

/// Stages the tarball's tree under `target/dist/<name>` (the musl binaries
/// must be built) and writes the tarball and its checksum; returns the
/// tarball's path.
pub fn tarball(root: &Path, target: &Path) -> Result<PathBuf> {
    let dist = target.join("dist");
    let stage = dist.join(name());
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    for bin in BINARIES {
        let to = stage.join("bin").join(bin);
        install_stripped(&target.join(MUSL).join("release").join(bin), &to)?;
        static_only(&to)?;
    }
    for (from, to, mode) in FILES {
        install(&root.join("packaging").join(from), &stage.join(to), *mode)?;
    }
    // The package installs to /usr/bin; from a tarball they go to
    // /usr/local/bin, and the units must say so.
    for unit in ["dispatch-web.service", "dispatch-agent.service"] {
        let path = stage.join("systemd").join(unit);
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, text.replace("/usr/bin/", "/usr/local/bin/"))?;
    }
    copy_tree(&root.join("examples"), &stage.join("examples"))?;

    let file = format!("{}.tar.gz", name());
    let out = dist.join(&file);
    // Sorted, owned by root, dated by the commit: no trace of this machine.
    crate::run(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(format!("--mtime=@{}", commit_time(root)))
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(&dist)
            .arg(name()),
    )
    .context("writing the tarball (tar, gzip)")?;
    let sum = Command::new("sha256sum")
        .arg(&file)
        .current_dir(&dist)
        .output()
        .context("running sha256sum")?;
    if !sum.status.success() {
        bail!("sha256sum {file}: {}", String::from_utf8_lossy(&sum.stderr));
    }
    std::fs::write(dist.join(format!("{file}.sha256")), sum.stdout)?;
    Ok(out)
}

/// The image `dispatch:<version>` from the tarball's staged binaries
/// (`tarball` first); returns its name.
pub fn image(root: &Path, target: &Path) -> Result<String> {
    let bins = target.join("dist").join(name()).join("bin");
    let ctx = target.join("dist/image");
    if ctx.exists() {
        std::fs::remove_dir_all(&ctx)?;
    }
    // rootfs/ is copied owned by root, own/ by the image's user (copying
    // a tree keeps the modes of the directories in it, /data's 0700).
    let rootfs = ctx.join("rootfs");
    for bin in BINARIES {
        install(&bins.join(bin), &rootfs.join("usr/bin").join(bin), 0o755)?;
    }
    // scratch has no files at all: the users for `USER` and for tools that
    // look names up, the CA roots for HTTPS targets, and the directories.
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/:/sbin/nologin\ndispatch:x:{IMAGE_UID}:{IMAGE_UID}:Dispatch:/data:/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\ndispatch:x:{IMAGE_UID}:\n"),
    )?;
    let roots = Path::new("/etc/ssl/certs/ca-certificates.crt");
    install(roots, &etc.join("ssl/certs/ca-certificates.crt"), 0o644).context(
        "the image's CA certificates come from this machine's (apt install ca-certificates)",
    )?;
    for (dir, mode) in [(rootfs.join("tmp"), 0o1777), (ctx.join("own/data"), 0o700)] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
    }
    let tag = format!("dispatch:{VERSION}");
    crate::run(
        Command::new("podman")
            .args(["build", "--format", "docker", "--tag", &tag, "--file"])
            .arg(root.join("packaging/container/Containerfile"))
            .arg(&ctx),
    )
    .context("building the image (podman)")?;
    Ok(tag)
}

/// Refuses a binary that needs a dynamic loader: the tarball and the image
/// promise files that run on any x86-64 Linux.
fn static_only(bin: &Path) -> Result<()> {
    let out = Command::new("ldd").arg(bin).output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if said.contains("=>") || said.contains("ld-linux") {
        bail!("{} is linked dynamically: {said}", bin.display());
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            install(&src, &dst, 0o644)?;
        }
    }
    Ok(())
}

/// The commit's time (seconds), or 0 outside a git checkout.
fn commit_time(root: &Path) -> u64 {
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(root)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
