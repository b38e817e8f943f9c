//! Plain Rust mirrors of the WIT types, so poller code never touches bindings.

/// What a directory entry is. Symlinks are reported as such and never
/// followed by listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

/// One directory entry.
///
/// ```
/// use dispatch_poller_sdk::{Entry, EntryKind};
/// let e = Entry { name: "ADI.XML".into(), kind: EntryKind::File, size: 10, mtime_ms: 0 };
/// assert!(!e.is_hidden());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's own name (no `/`).
    pub name: String,
    pub kind: EntryKind,
    /// Bytes; 0 for directories.
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub mtime_ms: u64,
}

impl Entry {
    /// Names starting with `.` are hidden (partial uploads often are).
    pub fn is_hidden(&self) -> bool {
        self.name.starts_with('.')
    }
}

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Any text.
    Text,
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// Comma-separated names.
    TextList,
}

/// One parameter in a poller's schema.
///
/// ```
/// use dispatch_poller_sdk::{ParamSpec, ParamType};
/// let p = ParamSpec::new("suffix", ParamType::Text, Some(".tar"), "Name ending to send");
/// assert_eq!(p.default.as_deref(), Some(".tar"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamType,
    /// `None` makes the parameter required.
    pub default: Option<String>,
    pub help: String,
}

/// The default ready markers of the built-in pollers.
pub const DEFAULT_MARKERS: &str = "ADI.XML,ADI.DTD";

impl ParamSpec {
    /// A parameter with a name, type, default and one line of help.
    pub fn new(name: &str, kind: ParamType, default: Option<&str>, help: &str) -> Self {
        Self {
            name: name.to_string(),
            kind,
            default: default.map(str::to_string),
            help: help.to_string(),
        }
    }

    /// The standard `include_hidden` flag (default `false`): when true,
    /// [`Context::files_of`](crate::Context::files_of) and friends also return
    /// names starting with `.`.
    ///
    /// ```
    /// assert_eq!(dispatch_poller_sdk::ParamSpec::include_hidden().name, "include_hidden");
    /// ```
    pub fn include_hidden() -> Self {
        Self::new(
            crate::INCLUDE_HIDDEN,
            ParamType::Boolean,
            Some("false"),
            "Also consider names starting with '.' (often partial uploads)",
        )
    }

    /// The standard `markers` list (default `ADI.XML,ADI.DTD`): the files whose
    /// presence makes a directory ready. Matched exactly, case-sensitively.
    ///
    /// ```
    /// let m = dispatch_poller_sdk::ParamSpec::markers();
    /// assert_eq!(m.default.as_deref(), Some("ADI.XML,ADI.DTD"));
    /// ```
    pub fn markers() -> Self {
        Self::new(
            crate::MARKERS,
            ParamType::TextList,
            Some(DEFAULT_MARKERS),
            "Comma-separated file names that must all be present for a directory to be ready",
        )
    }
}

/// What `describe()` returns: name, version, description, parameters.
///
/// ```
/// use dispatch_poller_sdk::{Info, ParamSpec};
/// let info = Info::new("file", "1.0.0", "Sends each file of the root.")
///     .param(ParamSpec::include_hidden());
/// assert_eq!(info.params.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
}

impl Info {
    /// Metadata with no parameters yet.
    pub fn new(name: &str, version: &str, description: &str) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            description: description.to_string(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter to the schema.
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.params.push(spec);
        self
    }
}

/// Whether a transfer is one file or a whole directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    File,
    Dir,
}

/// A request to send `path` (relative to the root).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub path: String,
    pub kind: ItemKind,
}

/// Run by the host after every transfer of a [`Group`] succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Create an empty file.
    Touch(String),
    /// Remove a directory tree.
    RemoveDir(String),
}

/// Transfers whose follow-ups run only once all of them succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub transfers: Vec<Transfer>,
    pub then: Vec<FollowUp>,
}

/// One thing a poll asks the host to do.
///
/// ```
/// use dispatch_poller_sdk::Action;
/// let a = Action::transfer_file("asset/ADI.XML");
/// assert_eq!(a, Action::Transfer(dispatch_poller_sdk::Transfer {
///     path: "asset/ADI.XML".into(),
///     kind: dispatch_poller_sdk::ItemKind::File,
/// }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Transfer(Transfer),
    Touch(String),
    RemoveDir(String),
    Group(Group),
}

impl Action {
    /// Send one file.
    pub fn transfer_file(path: impl Into<String>) -> Self {
        Self::Transfer(Transfer {
            path: path.into(),
            kind: ItemKind::File,
        })
    }

    /// Send a directory tree as one item.
    pub fn transfer_dir(path: impl Into<String>) -> Self {
        Self::Transfer(Transfer {
            path: path.into(),
            kind: ItemKind::Dir,
        })
    }

    /// Create an empty file now.
    pub fn touch(path: impl Into<String>) -> Self {
        Self::Touch(path.into())
    }

    /// Remove a directory tree now.
    pub fn remove_dir(path: impl Into<String>) -> Self {
        Self::RemoveDir(path.into())
    }

    /// Send `transfers`, then run `then` once every one of them succeeded.
    ///
    /// ```
    /// use dispatch_poller_sdk::{Action, FollowUp, Transfer, ItemKind};
    /// let t = Transfer { path: "d/a.mpg".into(), kind: ItemKind::File };
    /// let g = Action::group(vec![t], vec![FollowUp::Touch("d/delivery.complete".into())]);
    /// assert!(matches!(g, Action::Group(_)));
    /// ```
    pub fn group(transfers: Vec<Transfer>, then: Vec<FollowUp>) -> Self {
        Self::Group(Group { transfers, then })
    }
}
