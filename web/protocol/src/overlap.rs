//! Pollers that would trip over each other: overlapping roots (one file
//! seen, sent and removed by both) and overlapping destinations (two items
//! of the same name written to one place at once). The agent checks with
//! symlinks followed on its machine; the web app, which cannot see that
//! machine, by name.

use crate::PollerSpec;
use crate::error::FieldError;
use crate::target::Target;
use std::path::{Path, PathBuf};

/// No symlinks followed: paths compared by name only.
pub fn by_name(_: &Path) -> Option<PathBuf> {
    None
}

/// Refuses enabled pollers that would trip over each other: overlapping
/// roots (one file seen, sent and removed by both) and overlapping
/// destinations (two items of the same name written to one place at once).
/// The error is on the later poller and names the earlier one.
pub fn no_overlaps(
    pollers: &[PollerSpec],
    real: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Result<(), (String, FieldError)> {
    match refused(pollers, real).into_iter().next() {
        Some((p, e)) => Err((p.name.clone(), e)),
        None => Ok(()),
    }
}

/// Every enabled poller that overlaps one before it that is not refused
/// itself, with why: what an agent does not start.
pub fn refused<'a>(
    pollers: &'a [PollerSpec],
    real: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Vec<(&'a PollerSpec, FieldError)> {
    let mut accepted: Vec<(&PollerSpec, Dir, Option<Place>)> = Vec::new();
    let mut out = Vec::new();
    for p in pollers.iter().filter(|p| p.enabled) {
        let (root, dest) = (Dir::new(&p.path, real), place(&p.target, real));
        match clash(&root, dest.as_ref(), &accepted) {
            Some(e) => out.push((p, e)),
            None => accepted.push((p, root, dest)),
        }
    }
    out
}

/// Why a poller with this root and destination cannot join `earlier`.
fn clash(
    root: &Dir,
    dest: Option<&Place>,
    earlier: &[(&PollerSpec, Dir, Option<Place>)],
) -> Option<FieldError> {
    if let Some((q, theirs, _)) = earlier.iter().find(|(_, r, _)| root.overlaps(r)) {
        return Some(FieldError::new(
            "path",
            format!(
                "overlaps the root of poller `{}` ({}): one file would be seen by both",
                q.name,
                theirs.describe()
            ),
        ));
    }
    let dest = dest?;
    let (q, theirs) = earlier
        .iter()
        .find_map(|(q, _, t)| t.as_ref().filter(|t| collides(dest, t)).map(|t| (q, t)))?;
    let (mine, theirs) = (dest.describe(), theirs.describe());
    let what = if mine == theirs {
        format!(
            "delivers into the same place as poller `{}` ({theirs})",
            q.name
        )
    } else {
        format!(
            "delivers into {mine}, which overlaps the destination of poller `{}` ({theirs})",
            q.name
        )
    };
    Some(FieldError::new(
        "target",
        format!(
            "{what}: two items of the same name would collide; give each poller its own \
             destination folder"
        ),
    ))
}

/// A directory of this machine, as named (absolute, `.` and `..` resolved
/// by name, as the config resolves relative paths) and as it really is
/// (symlinks followed through the part that exists; `None` when not even `/`
/// resolves).
#[derive(Debug)]
struct Dir {
    named: PathBuf,
    real: Option<PathBuf>,
}

impl Dir {
    fn new(path: &Path, real: &dyn Fn(&Path) -> Option<PathBuf>) -> Self {
        Self {
            named: lexical(path),
            real: real(path),
        }
    }

    /// The same directory, or one inside the other, by name or for real.
    fn overlaps(&self, other: &Dir) -> bool {
        let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        nested(&self.named, &other.named)
            || matches!((&self.real, &other.real), (Some(a), Some(b)) if nested(a, b))
    }

    fn describe(&self) -> String {
        match &self.real {
            Some(r) if *r != self.named => {
                format!("{}, really {}", self.named.display(), r.display())
            }
            _ => self.named.display().to_string(),
        }
    }
}

/// `path` made absolute, with `.` and `..` resolved by name.
pub fn lexical(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Where a target delivers, without credentials.
#[derive(Debug)]
enum Place {
    /// A directory of this machine.
    Local(Dir),
    /// A folder on a server.
    Remote {
        kind: &'static str,
        /// `host:port`, a URL's origin, or an S3 endpoint and bucket.
        server: String,
        /// `/` for a path from the top the target sees (for FTP that is
        /// the login folder, as servers show it); empty for an SFTP folder
        /// under the login folder and for an S3 prefix. Places with
        /// different anchors are never compared: we cannot tell where a
        /// login folder is.
        anchor: &'static str,
        folder: Vec<String>,
    },
}

impl Place {
    fn describe(&self) -> String {
        match self {
            Place::Local(dir) => dir.describe(),
            Place::Remote {
                kind,
                server,
                anchor,
                folder,
            } => {
                let what = match (*kind, *anchor) {
                    ("s3", _) => "prefix",
                    (_, "") => "folder under the login folder",
                    _ => "folder",
                };
                format!("{kind} {server}, {what} `{anchor}{}`", folder.join("/"))
            }
        }
    }
}

/// Where `target` delivers; `None` when that cannot be told (a URL that
/// does not parse: such a target fails when it is made).
fn place(target: &Target, real: &dyn Fn(&Path) -> Option<PathBuf>) -> Option<Place> {
    let host_port = |host: &str, port: u16| format!("{}:{port}", host_name(host));
    let remote = |kind, server, anchor, folder| {
        Some(Place::Remote {
            kind,
            server,
            anchor,
            folder,
        })
    };
    match target {
        Target::Local(t) => Some(Place::Local(Dir::new(&t.destination, real))),
        Target::Webdav(dav) => {
            // As the WebDAV target builds its URLs: the URL's path, then the
            // destination's segments (where `url` drops `.` and `..`).
            let mut url = url::Url::parse(dav.url.trim_end_matches('/')).ok()?;
            url.path_segments_mut()
                .ok()?
                .pop_if_empty()
                .extend(dav.destination.split('/').filter(|s| !s.is_empty()));
            let folder = url
                .path_segments()
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            remote("webdav", origin(&url), "/", folder)
        }
        Target::Sftp(sftp) => {
            // As the SFTP target: absolute when it starts with `/`, else
            // under the login folder.
            let anchor = if sftp.destination.starts_with('/') {
                "/"
            } else {
                ""
            };
            remote(
                "sftp",
                host_port(&sftp.host, sftp.port),
                anchor,
                folder(&sftp.destination, anchor),
            )
        }
        // The FTP target always goes from the login folder, shown as `/`.
        Target::Ftp(ftp) => remote(
            "ftp",
            host_port(&ftp.host, ftp.port),
            "/",
            folder(&ftp.destination, "/"),
        ),
        // Keys are the prefix's segments and the item's, joined by `/`; an
        // S3 key's `..` is just a name.
        Target::S3(s3) => {
            let url = url::Url::parse(&s3.endpoint).ok()?;
            let path = url.path().trim_end_matches('/');
            remote(
                "s3",
                format!("{}{path}, bucket `{}`", origin(&url), s3.bucket.trim()),
                "",
                s3.destination
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        }
        // `ascp` is given `user@host:/destination/`.
        Target::Aspera(asp) => remote(
            "aspera",
            host_name(&asp.host),
            "/",
            folder(&asp.destination, "/"),
        ),
    }
}

/// Two places that are the same or one inside the other.
fn collides(a: &Place, b: &Place) -> bool {
    match (a, b) {
        (Place::Local(a), Place::Local(b)) => a.overlaps(b),
        (
            Place::Remote {
                kind,
                server,
                anchor,
                folder,
            },
            Place::Remote {
                kind: kind_b,
                server: server_b,
                anchor: anchor_b,
                folder: folder_b,
            },
        ) => {
            kind == kind_b
                && server == server_b
                && anchor == anchor_b
                && (folder.starts_with(folder_b) || folder_b.starts_with(folder))
        }
        _ => false,
    }
}

/// A host name as compared: trimmed, lowercase, an IPv6 address unbracketed.
fn host_name(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `scheme://host[:port]` of a URL: never its user or password.
fn origin(url: &url::Url) -> String {
    let port = url.port().map_or(String::new(), |p| format!(":{p}"));
    format!("{}://{}{port}", url.scheme(), url.host_str().unwrap_or(""))
}

/// A remote folder's segments with `.` and `..` resolved by name (a `..`
/// above the start stays when `anchor` is empty: we cannot tell where it
/// leads).
fn folder(path: &str, anchor: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if s != ".." {
            out.push(s.to_string());
        } else if out.last().is_some_and(|l| l != "..") {
            out.pop();
        } else if anchor.is_empty() {
            out.push(s.to_string());
        }
    }
    out
}
