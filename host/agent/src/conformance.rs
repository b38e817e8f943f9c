//! `dispatch-agent plugin test`: the conformance suite of a poller kind,
//! kept as data (`sdk/conformance/<kind>.toml`, compiled in), so a build in
//! any language proves it behaves as every poller of its kind must. Each
//! case builds its tree in a fresh temp dir, polls once under the default
//! limits, and compares the actions (their short form, `file a.mpg`), the
//! items said not ready and the names left out as not UTF-8.

use anyhow::Context as _;
use dispatch_runtime::{Limits, Plugin, Polled};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The suites: (kind, TOML).
const SUITES: &[(&str, &str)] = &[
    ("dir", include_str!("../../../sdk/conformance/dir.toml")),
    ("file", include_str!("../../../sdk/conformance/file.toml")),
    (
        "manifest",
        include_str!("../../../sdk/conformance/manifest.toml"),
    ),
];

/// The kinds that have a suite.
pub fn kinds() -> Vec<&'static str> {
    SUITES.iter().map(|(k, _)| *k).collect()
}

/// The suite of `kind`; an unknown kind names the known ones.
pub fn suite(kind: &str) -> anyhow::Result<Suite> {
    let (_, text) = SUITES.iter().find(|(k, _)| *k == kind).ok_or_else(|| {
        anyhow::anyhow!(
            "no conformance suite for kind `{kind}`: the known kinds are {} (give --kind)",
            kinds().join(", ")
        )
    })?;
    let suite: Suite =
        toml::from_str(text).with_context(|| format!("sdk/conformance/{kind}.toml"))?;
    for case in &suite.case {
        case.check()
            .with_context(|| format!("sdk/conformance/{kind}.toml: case `{}`", case.name))?;
    }
    Ok(suite)
}

/// One kind's cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub case: Vec<Case>,
}

/// A tree, parameters, and what one poll of it must give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    tree: Vec<Entry>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Compared as a set: the order of actions is not part of a kind's
    /// rules.
    actions: Vec<Expected>,
    /// Not compared when absent.
    not_ready: Option<Vec<Waiting>>,
    /// Names left out as not UTF-8 (`dir/name`, bad bytes as U+FFFD); not
    /// compared when absent.
    unreadable: Option<Vec<String>>,
    /// The expectation holds only where mode 000 stops reads (not as root).
    #[serde(default)]
    needs_unreadable: bool,
}

/// An entry of a case's tree. Paths are `/`-separated, relative to the root
/// (or to the directory outside it with `outside = true`); `\xNN` in a path
/// is that byte, for names that are not UTF-8.
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Entry {
    /// A file with `text`, or `size` zero bytes (sparse), or empty.
    File {
        file: String,
        text: Option<String>,
        size: Option<u64>,
        mode: Option<u32>,
        #[serde(default)]
        outside: bool,
    },
    /// `count` files in `dir` (`.`: the root) named by `name`, where `{}` or
    /// `{:0N}` is the number from 0.
    Many {
        dir: String,
        count: usize,
        name: String,
    },
    /// A directory (empty unless other entries fill it).
    Dir {
        dir: String,
        mode: Option<u32>,
        #[serde(default)]
        outside: bool,
    },
    /// A symlink to `to` (relative to the root, or to the outside directory
    /// with `outside = true`).
    Link {
        link: String,
        to: String,
        #[serde(default)]
        outside: bool,
    },
    Fifo {
        fifo: String,
    },
}

/// An expected action in its short form, or `count` of them numbered as
/// in [`Entry::Many`].
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Expected {
    One(String),
    Many { pattern: String, count: usize },
}

/// An item expected not ready, with its reason (exact) or the reason's
/// start (where the words depend on the language's parser).
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Waiting {
    Item(String),
    Reason {
        item: String,
        reason: Option<String>,
        reason_starts: Option<String>,
    },
}

impl Waiting {
    fn item(&self) -> &str {
        match self {
            Waiting::Item(i) | Waiting::Reason { item: i, .. } => i,
        }
    }

    fn matches(&self, reason: &str) -> bool {
        match self {
            Waiting::Item(_) => true,
            Waiting::Reason {
                reason: want,
                reason_starts: start,
                ..
            } => {
                want.as_deref().is_none_or(|w| w == reason)
                    && start.as_deref().is_none_or(|s| reason.starts_with(s))
            }
        }
    }

    fn show(&self) -> String {
        match self {
            Waiting::Reason {
                item,
                reason: Some(r),
                ..
            } => format!("{item}: {r}"),
            Waiting::Reason {
                item,
                reason_starts: Some(r),
                ..
            } => format!("{item}: {r}..."),
            _ => self.item().to_string(),
        }
    }
}

impl Case {
    /// The numbered patterns are well formed.
    fn check(&self) -> anyhow::Result<()> {
        for e in &self.tree {
            if let Entry::Many { name, .. } = e {
                numbered(name, 0)?;
            }
        }
        for a in &self.actions {
            if let Expected::Many { pattern, .. } = a {
                numbered(pattern, 0)?;
            }
        }
        Ok(())
    }

    fn expected_actions(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for a in &self.actions {
            match a {
                Expected::One(s) => {
                    out.insert(s.clone());
                }
                Expected::Many { pattern, count } => {
                    out.extend((0..*count).filter_map(|i| numbered(pattern, i).ok()));
                }
            }
        }
        out
    }
}

/// `pattern` with its `{}` or `{:0N}` replaced by `i`.
fn numbered(pattern: &str, i: usize) -> anyhow::Result<String> {
    let bad = || anyhow::anyhow!("`{pattern}` needs one `{{}}` or `{{:0N}}`");
    let (head, rest) = pattern.split_once('{').ok_or_else(bad)?;
    let (spec, tail) = rest.split_once('}').ok_or_else(bad)?;
    let number = match spec.strip_prefix(":0") {
        None if spec.is_empty() => i.to_string(),
        Some(width) => {
            let width: usize = width.parse().map_err(|_| bad())?;
            format!("{i:0width$}")
        }
        None => return Err(bad()),
    };
    Ok(format!("{head}{number}{tail}"))
}

/// `\xNN` in a suite's path is the byte NN (names that are not UTF-8).
fn os_path(path: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail
            .strip_prefix(b"x")
            .and_then(|t| t.get(..2))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'\\', Some(byte)) => {
                bytes.push(byte);
                rest = &tail[3..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    PathBuf::from(OsString::from_vec(bytes))
}

/// A case's tree on disk: `root` and a directory beside it for what lies
/// outside; the modes to set once everything exists.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    /// (path, mode), set last, cleared before the temp dir is removed.
    modes: Vec<(PathBuf, u32)>,
}

impl Site {
    fn build(tree: &[Entry]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot make a temp dir")?;
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root)?;
        std::fs::create_dir(&outside)?;
        let mut site = Self {
            _dir: dir,
            root,
            outside,
            modes: Vec::new(),
        };
        for e in tree {
            site.add(e)?;
        }
        // Deepest last, so a closed directory is closed after its contents.
        for (path, mode) in site.modes.iter().rev() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        Ok(site)
    }

    fn at(&self, rel: &str, outside: bool) -> anyhow::Result<PathBuf> {
        let path = if outside { &self.outside } else { &self.root }.join(os_path(rel));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("mkdir {}", parent.display()))?;
        }
        Ok(path)
    }

    fn add(&mut self, entry: &Entry) -> anyhow::Result<()> {
        match entry {
            Entry::File {
                file,
                text,
                size,
                mode,
                outside,
            } => {
                let path = self.at(file, *outside)?;
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("create {}", path.display()))?;
                if let Some(text) = text {
                    std::fs::write(&path, text)?;
                }
                if let Some(size) = size {
                    f.set_len(*size)?;
                }
                self.modes.extend(mode.map(|m| (path, m)));
            }
            Entry::Many { dir, count, name } => {
                let base = self.root.join(os_path(dir));
                std::fs::create_dir_all(&base)
                    .with_context(|| format!("mkdir {}", base.display()))?;
                for i in 0..*count {
                    std::fs::File::create(base.join(numbered(name, i)?))?;
                }
            }
            Entry::Dir { dir, mode, outside } => {
                let path = self.at(dir, *outside)?;
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("mkdir {}", path.display()))?;
                self.modes.extend(mode.map(|m| (path, m)));
            }
            Entry::Link { link, to, outside } => {
                let path = self.at(link, false)?;
                // Inside the root, relative (`../a`), as people link; an
                // absolute link into the root is refused by the host's
                // beneath-the-root opens.
                let target = if *outside {
                    self.outside.join(os_path(to))
                } else {
                    let up = "../".repeat(link.matches('/').count());
                    PathBuf::from(up).join(os_path(to))
                };
                std::os::unix::fs::symlink(&target, &path)
                    .with_context(|| format!("symlink {}", path.display()))?;
            }
            Entry::Fifo { fifo } => {
                let path = self.at(fifo, false)?;
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .with_context(|| format!("mkfifo {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Whether mode 000 stops reads here (it does not for root).
    fn modes_hold(&self) -> bool {
        self.modes
            .iter()
            .filter(|(_, m)| m & 0o444 == 0)
            .all(|(p, _)| {
                if p.is_dir() {
                    std::fs::read_dir(p).is_err()
                } else {
                    std::fs::File::open(p).is_err()
                }
            })
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The temp dir can be removed only once its entries are open again.
        for (path, _) in &self.modes {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// What one case gave.
pub struct Outcome {
    pub name: String,
    pub time: Duration,
    pub memory_peak: usize,
    /// Empty: passed. Else the lines saying what differed or failed.
    pub problems: Vec<String>,
    /// Why the expectation was not compared (the case still ran).
    pub skipped: Option<&'static str>,
}

impl Outcome {
    /// `ok|FAIL name (time, memory)`, and the problems indented under it.
    pub fn report(&self) -> String {
        let status = if self.problems.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        let mut out = format!(
            "{status} {} ({:.1} ms, {:.1} MiB)",
            self.name,
            self.time.as_secs_f64() * 1000.0,
            self.memory_peak as f64 / f64::from(1 << 20)
        );
        if let Some(why) = self.skipped {
            out.push_str(&format!(" [expectation not checked: {why}]"));
        }
        for p in &self.problems {
            out.push_str("\n    ");
            out.push_str(p);
        }
        out
    }
}

/// The limits every case runs under (the agent's defaults).
pub fn limits() -> Limits {
    Limits::default()
}

/// Runs one case on `plugin`.
pub fn run_case(plugin: &Plugin, case: &Case) -> Outcome {
    let mut outcome = Outcome {
        name: case.name.clone(),
        time: Duration::ZERO,
        memory_peak: 0,
        problems: Vec::new(),
        skipped: None,
    };
    let site = match Site::build(&case.tree) {
        Ok(site) => site,
        Err(e) => {
            outcome
                .problems
                .push(format!("cannot build the tree: {e:#}"));
            return outcome;
        }
    };
    let params: Vec<(String, String)> = case
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let started = Instant::now();
    let polled = plugin.poll_full(&site.root, &params);
    outcome.time = started.elapsed();
    match polled {
        Err(e) => outcome.problems.push(format!("the poll failed: {e}")),
        Ok(polled) => {
            outcome.memory_peak = polled.memory_peak;
            if case.needs_unreadable && !site.modes_hold() {
                outcome.skipped = Some("running as root, where mode 000 does not stop reads");
            } else {
                outcome.problems = compare(case, &polled);
            }
        }
    }
    outcome
}

/// Expected vs got: `- x` expected and missing, `+ x` got and unexpected.
fn compare(case: &Case, polled: &Polled) -> Vec<String> {
    let mut out = Vec::new();
    let got: BTreeSet<String> = polled.actions.iter().map(ToString::to_string).collect();
    diff("actions", &case.expected_actions(), &got, &mut out);
    if let Some(want) = &case.not_ready {
        let said: BTreeMap<&str, &str> = polled
            .not_ready
            .iter()
            .map(|n| (n.item.as_str(), n.reason.as_str()))
            .collect();
        let mut lines = Vec::new();
        for w in want {
            match said.get(w.item()) {
                None => lines.push(format!("- {}", w.show())),
                Some(reason) if !w.matches(reason) => {
                    lines.push(format!("- {}", w.show()));
                    lines.push(format!("+ {}: {reason}", w.item()));
                }
                Some(_) => {}
            }
        }
        let wanted: BTreeSet<&str> = want.iter().map(Waiting::item).collect();
        for (item, reason) in &said {
            if !wanted.contains(item) {
                lines.push(format!("+ {item}: {reason}"));
            }
        }
        section("not ready", lines, &mut out);
    }
    if let Some(want) = &case.unreadable {
        let want: BTreeSet<String> = want.iter().cloned().collect();
        let got: BTreeSet<String> = polled.unreadable.iter().cloned().collect();
        diff("left out as not UTF-8", &want, &got, &mut out);
    }
    out
}

/// At most this many lines of one list's diff (a 10,000-file case).
const MAX_DIFF_LINES: usize = 20;

fn diff(what: &str, want: &BTreeSet<String>, got: &BTreeSet<String>, out: &mut Vec<String>) {
    let lines = want
        .difference(got)
        .map(|x| format!("- {x}"))
        .chain(got.difference(want).map(|x| format!("+ {x}")))
        .collect();
    section(what, lines, out);
}

fn section(what: &str, lines: Vec<String>, out: &mut Vec<String>) {
    if lines.is_empty() {
        return;
    }
    out.push(format!("{what} (- expected, + got):"));
    let more = lines.len().saturating_sub(MAX_DIFF_LINES);
    out.extend(
        lines
            .into_iter()
            .take(MAX_DIFF_LINES)
            .map(|l| format!("  {l}")),
    );
    if more > 0 {
        out.push(format!("  ... and {more} more"));
    }
}

/// Runs every case of `kind`'s suite on `plugin`, printing one line per
/// case as it ends and a summary; an error when any case failed.
pub fn run_suite(plugin: &Plugin, kind: &str) -> anyhow::Result<()> {
    let suite = suite(kind)?;
    println!(
        "{} {}: {} cases of kind `{kind}` (limits {} MiB, {:?})",
        plugin.info().name,
        plugin.info().version,
        suite.case.len(),
        limits().memory_bytes >> 20,
        limits().timeout
    );
    let mut failed = 0;
    let mut skipped = 0;
    for case in &suite.case {
        let outcome = run_case(plugin, case);
        println!("{}", outcome.report());
        failed += usize::from(!outcome.problems.is_empty());
        skipped += usize::from(outcome.skipped.is_some());
    }
    let passed = suite.case.len() - failed;
    let note = if skipped > 0 {
        format!(" ({skipped} ran without their expectation checked, as said above)")
    } else {
        String::new()
    };
    println!("{passed} passed, {failed} failed{note}");
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} conformance cases of kind `{kind}` failed",
        suite.case.len()
    );
    Ok(())
}
