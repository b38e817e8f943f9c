//! Stability signatures: an item (file or whole tree) is ready once its
//! names, kinds, sizes and mtimes stayed the same for the stability window.

use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The signature of the file or tree at `path`, or `None` when nothing is
/// there. Symlinks count as themselves (never followed).
pub fn signature(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(format!("f:{}:{}", meta.len(), mtime_ns(&meta)));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // Unreadable or vanished while walking: not stable.
            lines.push(format!("?{}", dir.display()));
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let Ok(m) = entry.metadata() else { continue };
            let rel = p
                .strip_prefix(path)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let kind = if m.is_dir() {
                'd'
            } else if m.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            lines.push(format!(
                "{rel}\t{kind}\t{}\t{}",
                if m.is_dir() { 0 } else { m.len() },
                mtime_ns(&m)
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    lines.sort_unstable();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    Some(format!("d:{}", hex::encode(h.finalize())))
}

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn changes_with_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/x"), "1").unwrap();
        let s1 = signature(&a).unwrap();
        assert_eq!(signature(&a).unwrap(), s1);
        std::fs::write(a.join("sub/x"), "12").unwrap();
        let s2 = signature(&a).unwrap();
        assert_ne!(s1, s2, "a nested file grew");
        std::fs::write(a.join("sub/y"), "").unwrap();
        assert_ne!(signature(&a).unwrap(), s2, "a nested file appeared");
        assert!(signature(&d.path().join("none")).is_none());
    }
}
