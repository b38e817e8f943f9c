//! What a poll asks the host to do, checked against the root, and printed as
//! JSON or as a table.

use crate::confine::{PathError, Root, normalize};
use serde_json::{Value, json};

/// One file or a whole directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    File,
    Dir,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::File => "file",
            ItemKind::Dir => "dir",
        }
    }
}

/// A request to send `path` (relative to the root, normal form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    pub path: String,
    pub kind: ItemKind,
}

/// Run after every transfer of a group succeeded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FollowUp {
    Touch(String),
    RemoveDir(String),
}

/// One action of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Transfer(Transfer),
    Touch(String),
    RemoveDir(String),
    Group {
        transfers: Vec<Transfer>,
        then: Vec<FollowUp>,
    },
}

impl Action {
    /// The transfers it asks for (none for a touch or a removal).
    pub fn transfers(&self) -> &[Transfer] {
        match self {
            Action::Transfer(t) => std::slice::from_ref(t),
            Action::Group { transfers, .. } => transfers,
            Action::Touch(_) | Action::RemoveDir(_) => &[],
        }
    }

    /// The JSON form printed by `dispatch-agent poll --json`.
    pub fn to_json(&self) -> Value {
        match self {
            Action::Transfer(t) => transfer_json(t),
            Action::Touch(p) => json!({"action": "touch", "path": p}),
            Action::RemoveDir(p) => json!({"action": "remove", "path": p}),
            Action::Group { transfers, then } => json!({
                "action": "group",
                "transfers": transfers.iter().map(transfer_json).collect::<Vec<_>>(),
                "then": then.iter().map(follow_up_json).collect::<Vec<_>>(),
            }),
        }
    }
}

/// The short form people and tests read: `file a/b`, `dir a`, `touch a/x`,
/// `remove a`, `group[file a/b, file a/c] then[touch a/x]`.
impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.path)
    }
}

impl std::fmt::Display for FollowUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowUp::Touch(p) => write!(f, "touch {p}"),
            FollowUp::RemoveDir(p) => write!(f, "remove {p}"),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list<T: std::fmt::Display>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
        match self {
            Action::Transfer(t) => t.fmt(f),
            Action::Touch(p) => write!(f, "touch {p}"),
            Action::RemoveDir(p) => write!(f, "remove {p}"),
            Action::Group { transfers, then } => {
                write!(f, "group[{}] then[{}]", list(transfers), list(then))
            }
        }
    }
}

fn transfer_json(t: &Transfer) -> Value {
    json!({"action": "transfer", "path": t.path, "kind": t.kind.as_str()})
}

fn follow_up_json(f: &FollowUp) -> Value {
    match f {
        FollowUp::Touch(p) => json!({"action": "touch", "path": p}),
        FollowUp::RemoveDir(p) => json!({"action": "remove", "path": p}),
    }
}

/// A JSON array of the actions.
pub fn to_json(actions: &[Action]) -> Value {
    Value::Array(actions.iter().map(Action::to_json).collect())
}

/// A readable table: one row per action, follow-ups indented under their
/// group.
pub fn to_table(actions: &[Action]) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for a in actions {
        match a {
            Action::Transfer(t) => {
                rows.push(("transfer".into(), t.kind.as_str().into(), t.path.clone()))
            }
            Action::Touch(p) => rows.push(("touch".into(), String::new(), p.clone())),
            Action::RemoveDir(p) => rows.push(("remove".into(), "dir".into(), p.clone())),
            Action::Group { transfers, then } => {
                for t in transfers {
                    rows.push(("transfer".into(), t.kind.as_str().into(), t.path.clone()));
                }
                for f in then {
                    let (what, kind, p) = match f {
                        FollowUp::Touch(p) => ("touch", "", p),
                        FollowUp::RemoveDir(p) => ("remove", "dir", p),
                    };
                    rows.push((format!("  then {what}"), kind.into(), p.clone()));
                }
            }
        }
    }
    if rows.is_empty() {
        return "nothing to do\n".to_string();
    }
    let w0 = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max("ACTION".len());
    let w1 = rows
        .iter()
        .map(|r| r.1.len())
        .max()
        .unwrap_or(0)
        .max("KIND".len());
    let mut out = format!("{:w0$}  {:w1$}  PATH\n", "ACTION", "KIND");
    for (a, k, p) in rows {
        out.push_str(&format!("{a:w0$}  {k:w1$}  {p}\n"));
    }
    out
}

/// Checks every path of `actions` against the root and puts it in normal
/// form. A path that is absolute, has `..`, is empty where a file or
/// directory is meant, or resolves outside the root fails the whole poll.
pub fn confine(root: &Root, actions: Vec<Action>) -> Result<Vec<Action>, PathError> {
    let check = |p: String| -> Result<String, PathError> {
        let normal = normalize(&p)?;
        if normal.is_empty() {
            return Err(PathError::Io {
                path: p,
                reason: "names the root itself".into(),
            });
        }
        root.resolve(&normal)?;
        Ok(normal)
    };
    let transfer = |t: Transfer| -> Result<Transfer, PathError> {
        Ok(Transfer {
            path: check(t.path)?,
            kind: t.kind,
        })
    };
    actions
        .into_iter()
        .map(|a| {
            Ok(match a {
                Action::Transfer(t) => Action::Transfer(transfer(t)?),
                Action::Touch(p) => Action::Touch(check(p)?),
                Action::RemoveDir(p) => Action::RemoveDir(check(p)?),
                Action::Group { transfers, then } => Action::Group {
                    transfers: transfers
                        .into_iter()
                        .map(transfer)
                        .collect::<Result<_, _>>()?,
                    then: then
                        .into_iter()
                        .map(|f| {
                            Ok(match f {
                                FollowUp::Touch(p) => FollowUp::Touch(check(p)?),
                                FollowUp::RemoveDir(p) => FollowUp::RemoveDir(check(p)?),
                            })
                        })
                        .collect::<Result<_, PathError>>()?,
                },
            })
        })
        .collect()
}
