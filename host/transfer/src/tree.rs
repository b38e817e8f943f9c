//! What of a directory item is sent: one walk that every backend copying a
//! tree uses, and that the engine uses again to remove exactly what was
//! sent (never what was skipped).

use super::TransferError;
use std::path::{Path, PathBuf};

/// Folders (parents first) and files of a tree, as segment lists, with each
/// file's path on disk.
pub type Tree = (Vec<Vec<String>>, Vec<(Vec<String>, PathBuf)>);

/// Folders (parents first) and files of a tree. Left out, and so never
/// sent: names matched by `excludes` (a folder with everything in it),
/// symlinks (they could lead out of the root), fifos, sockets and devices,
/// and names that are not UTF-8 (no remote path can carry them faithfully).
pub fn walk(root: &Path, excludes: &globset::GlobSet) -> Result<Tree, TransferError> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![Vec::<String>::new()];
    while let Some(rel) = stack.pop() {
        let dir = rel.iter().fold(root.to_path_buf(), |p, s| p.join(s));
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| TransferError::io(&format!("cannot list {}", dir.display()), &e))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if excludes.is_match(&name) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            let mut child = rel.clone();
            child.push(name);
            if ft.is_dir() {
                dirs.push(child.clone());
                stack.push(child);
            } else if ft.is_file() {
                files.push((child, e.path()));
            }
        }
    }
    dirs.sort_by_key(Vec::len);
    Ok((dirs, files))
}
