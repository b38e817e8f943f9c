//! Forms drawn from a table of fields (a target's settings, an agent's
//! settings): the text typed is kept as typed, so a form sent back with an
//! error shows it again; turned into JSON only to call the API, whose
//! validation is the one that counts. Secrets are never drawn.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a field is typed in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Required text.
    Text,
    /// Text that may be left empty (then left out).
    OptText,
    /// A number; empty leaves it out (the default applies).
    Number,
    Bool,
    /// A password input, never prefilled.
    Secret,
    /// A secret of several lines (a key's PEM text).
    SecretText,
    /// Words separated by spaces or commas.
    List,
    Choice(&'static [&'static str]),
}

/// One field of a form: `path` is the dotted path in the JSON.
pub struct FieldDef {
    pub path: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub input: Input,
}

pub const fn def(
    path: &'static str,
    label: &'static str,
    input: Input,
    help: &'static str,
) -> FieldDef {
    FieldDef {
        path,
        label,
        help,
        input,
    }
}

/// A field as the template draws it.
pub struct Field {
    /// The HTML id (`f-` + the path, dots as dashes).
    pub id: String,
    /// The form name (`f.` + the path).
    pub name: String,
    pub label: &'static str,
    pub help: &'static str,
    /// text, number, checkbox, password, textarea, select
    pub kind: &'static str,
    pub value: String,
    pub checked: bool,
    pub options: &'static [&'static str],
    /// A secret is stored: "set — leave empty to keep".
    pub secret_set: bool,
    pub error: String,
}

/// The form's text, by path (booleans as `true`/`false`), and the
/// secrets to clear.
#[derive(Default, Clone)]
pub struct Raw {
    pub values: BTreeMap<String, String>,
    pub clear: Vec<String>,
}

impl Raw {
    /// From posted pairs: `f.<path>` values and `clear` entries.
    pub fn from_form(defs: &[FieldDef], pairs: &[(String, String)]) -> Self {
        let mut raw = Raw::default();
        for d in defs {
            if d.input == Input::Bool {
                raw.values.insert(d.path.into(), "false".into());
            }
        }
        for (k, v) in pairs {
            if let Some(path) = k.strip_prefix("f.") {
                let v = if defs
                    .iter()
                    .any(|d| d.path == path && d.input == Input::Bool)
                {
                    "true".to_string()
                } else {
                    v.clone()
                };
                raw.values.insert(path.to_string(), v);
            } else if k == "clear" {
                raw.clear.push(v.clone());
            }
        }
        raw
    }

    /// From stored JSON (secrets are not in it).
    pub fn from_json(defs: &[FieldDef], json: &Value) -> Self {
        let mut raw = Raw::default();
        for d in defs {
            let at = json.pointer(&pointer(d.path));
            let text = match (d.input, at) {
                (Input::Secret | Input::SecretText, _) | (_, None | Some(Value::Null)) => {
                    String::new()
                }
                (_, Some(Value::String(s))) => s.clone(),
                (_, Some(Value::Array(items))) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(" "),
                (_, Some(other)) => other.to_string(),
            };
            raw.values.insert(d.path.into(), text);
        }
        raw
    }

    fn get(&self, path: &str) -> &str {
        self.values.get(path).map_or("", String::as_str)
    }

    /// The JSON the API takes; a number that is not one is refused here,
    /// naming `prefix` + its path.
    pub fn to_json(&self, defs: &[FieldDef], prefix: &str) -> Result<Value, (String, String)> {
        let mut out = Value::Object(Map::new());
        for d in defs {
            let text = self.get(d.path);
            let value = match d.input {
                Input::Text | Input::Choice(_) => Some(Value::String(text.trim().to_string())),
                Input::OptText => (!text.trim().is_empty()).then(|| text.trim().into()),
                Input::Bool => Some(Value::Bool(text == "true")),
                Input::List => Some(
                    text.split([',', ' ', '\n', '\t'])
                        .filter(|w| !w.is_empty())
                        .map(|w| Value::String(w.to_string()))
                        .collect(),
                ),
                Input::Number => number(text).map_err(|m| (format!("{prefix}{}", d.path), m))?,
                Input::Secret | Input::SecretText => {
                    if self.clear.iter().any(|c| c == d.path) {
                        Some(Value::Null)
                    } else {
                        (!text.is_empty()).then(|| text.into())
                    }
                }
            };
            if let Some(v) = value {
                set(&mut out, d.path, v);
            }
        }
        Ok(out)
    }

    /// The fields to draw; `error` is the API's (field, message), shown
    /// beside `prefix` + its path; `secrets` says which are stored.
    pub fn draw(
        &self,
        defs: &[FieldDef],
        prefix: &str,
        error: Option<&(String, String)>,
        secrets: &BTreeMap<String, bool>,
    ) -> Vec<Field> {
        defs.iter()
            .map(|d| {
                let value = self.get(d.path).to_string();
                let (kind, options): (&'static str, &'static [&'static str]) = match d.input {
                    Input::Text | Input::OptText | Input::List => ("text", &[]),
                    Input::Number => ("number", &[]),
                    Input::Bool => ("checkbox", &[]),
                    Input::Secret => ("password", &[]),
                    Input::SecretText => ("textarea", &[]),
                    Input::Choice(options) => ("select", options),
                };
                let secret = matches!(d.input, Input::Secret | Input::SecretText);
                Field {
                    id: format!("f-{}", d.path.replace('.', "-")),
                    name: format!("f.{}", d.path),
                    label: d.label,
                    help: d.help,
                    kind,
                    checked: value == "true",
                    value: if secret { String::new() } else { value },
                    options,
                    secret_set: secrets.get(d.path).copied().unwrap_or(false),
                    error: error
                        .filter(|(f, _)| f.strip_prefix(prefix) == Some(d.path))
                        .map(|(_, m)| m.clone())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// An error that no field of `defs` shows (then shown above the form).
pub fn is_field_error(defs: &[FieldDef], prefix: &str, field: &str) -> bool {
    defs.iter()
        .any(|d| field.strip_prefix(prefix) == Some(d.path))
}

fn pointer(path: &str) -> String {
    format!("/{}", path.replace('.', "/"))
}

/// Empty: left out; an integer stays one (ports are `u16`).
fn number(text: &str) -> Result<Option<Value>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Some(i.into()));
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(serde_json::Number::from_f64(f).map(Value::Number)),
        _ => Err(format!("`{t}` is not a number")),
    }
}

/// Sets `path` (dotted) in `out`, making the objects on the way.
fn set(out: &mut Value, path: &str, v: Value) {
    let mut at = out;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Value::Object(map) = at else { return };
        if parts.peek().is_none() {
            map.insert(part.to_string(), v);
            return;
        }
        at = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: &[FieldDef] = &[
        def("a.b", "B", Input::Number, ""),
        def("a.c", "C", Input::Secret, ""),
        def("d", "D", Input::Bool, ""),
        def("e", "E", Input::List, ""),
    ];

    #[test]
    fn form_text_becomes_nested_json() {
        let pairs: Vec<(String, String)> = [("f.a.b", "22"), ("f.d", "on"), ("f.e", "-T  -Q")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let raw = Raw::from_form(DEFS, &pairs);
        let json = raw.to_json(DEFS, "").expect("valid");
        assert_eq!(
            json,
            serde_json::json!({"a": {"b": 22}, "d": true, "e": ["-T", "-Q"]})
        );
        let mut bad = raw.clone();
        bad.values.insert("a.b".into(), "x".into());
        assert_eq!(bad.to_json(DEFS, "t.").expect_err("nan").0, "t.a.b");
        let mut clear = raw;
        clear.clear.push("a.c".into());
        assert_eq!(clear.to_json(DEFS, "").expect("ok")["a"]["c"], Value::Null);
    }
}
