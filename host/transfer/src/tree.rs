//! What of a directory item is sent: one walk that every backend copying a
//! tree uses, and that the engine uses again to remove exactly what was
//! sent (never what was skipped).

use super::{Job, TransferError};
use std::path::PathBuf;

/// Folders (parents first) and files of a tree, as segment lists, with each
/// file's path on disk.
pub type Tree = (Vec<Vec<String>>, Vec<(Vec<String>, PathBuf)>);

/// Folders (parents first) and files of the job's directory item. Left
/// out, and so never sent: names matched by `excludes` (a folder with
/// everything in it), symlinks (they could lead out of the root), fifos,
/// sockets and devices, and names that are not UTF-8 (no remote path can
/// carry them faithfully). Every folder is listed beneath the root (see
/// [`super::beneath`]): one swapped for a symlink out of it fails the walk.
pub fn walk(job: &Job) -> Result<Tree, TransferError> {
    use rustix::fs::FileType;
    let beneath = job.beneath()?;
    let top = job.source();
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![Vec::<String>::new()];
    while let Some(rel) = stack.pop() {
        let dir = rel.iter().fold(top.clone(), |p, s| p.join(s));
        let mut entries = beneath
            .read_dir(&dir)
            .map_err(|e| TransferError::io(&format!("cannot list {}", dir.display()), &e))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let Ok(name) = e.name.into_string() else {
                continue;
            };
            if job.excludes.is_match(&name) {
                continue;
            }
            let mut child = rel.clone();
            child.push(name);
            if e.kind == FileType::Directory {
                dirs.push(child.clone());
                stack.push(child);
            } else if e.kind == FileType::RegularFile {
                let path = child.iter().fold(top.clone(), |p, s| p.join(s));
                files.push((child, path));
            } else if e.kind == FileType::Unknown {
                // File systems without d_type: one lstat tells.
                let path = child.iter().fold(top.clone(), |p, s| p.join(s));
                match path.symlink_metadata().map(|m| m.file_type()) {
                    Ok(t) if t.is_dir() => {
                        dirs.push(child.clone());
                        stack.push(child);
                    }
                    Ok(t) if t.is_file() => files.push((child, path)),
                    _ => {}
                }
            }
        }
    }
    dirs.sort_by_key(Vec::len);
    Ok((dirs, files))
}
