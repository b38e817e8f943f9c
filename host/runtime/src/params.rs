//! A plugin's parameter schema, and checking a poller's values against it.

use serde::{Deserialize, Serialize};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamType {
    Text,
    Boolean,
    Integer,
    TextList,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Text => "text",
            ParamType::Boolean => "boolean",
            ParamType::Integer => "integer",
            ParamType::TextList => "text-list",
        }
    }
}

/// One parameter of a plugin's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    pub default: Option<String>,
    pub help: String,
}

/// What a plugin's `describe()` returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub params: Vec<ParamSpec>,
}

/// A parameter value that does not fit the schema.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("unknown parameter `{name}` for plugin `{plugin}` (it takes: {known})")]
    Unknown {
        name: String,
        plugin: String,
        known: String,
    },
    #[error("parameter `{name}` of plugin `{plugin}` is required")]
    Missing { name: String, plugin: String },
    #[error("parameter `{name}` must be {expected}, not `{value}`")]
    BadValue {
        name: String,
        expected: &'static str,
        value: String,
    },
}

impl PluginInfo {
    /// Every parameter of the schema with its value: the given one, else the
    /// default. Unknown names, missing required ones and values of the wrong
    /// type are refused.
    pub fn resolve_params(
        &self,
        given: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ParamError> {
        for (name, _) in given {
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(ParamError::Unknown {
                    name: name.clone(),
                    plugin: self.name.clone(),
                    known: if known.is_empty() {
                        "no parameters".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let mut out = Vec::with_capacity(self.params.len());
        for spec in &self.params {
            // The last value given wins, like repeated command-line flags.
            let value = given
                .iter()
                .rev()
                .find(|(n, _)| n == &spec.name)
                .map(|(_, v)| v.clone())
                .or_else(|| spec.default.clone())
                .ok_or_else(|| ParamError::Missing {
                    name: spec.name.clone(),
                    plugin: self.name.clone(),
                })?;
            check_type(&spec.name, spec.kind, &value)?;
            out.push((spec.name.clone(), value));
        }
        Ok(out)
    }
}

fn check_type(name: &str, kind: ParamType, value: &str) -> Result<(), ParamError> {
    let ok = match kind {
        ParamType::Text | ParamType::TextList => true,
        ParamType::Boolean => matches!(value.trim(), "true" | "false"),
        ParamType::Integer => value.trim().parse::<i64>().is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(ParamError::BadValue {
            name: name.to_string(),
            expected: match kind {
                ParamType::Boolean => "true or false",
                _ => "a whole number",
            },
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "dir".into(),
            version: "1.0.0".into(),
            description: String::new(),
            params: vec![
                ParamSpec {
                    name: "markers".into(),
                    kind: ParamType::TextList,
                    default: Some("ADI.XML,ADI.DTD".into()),
                    help: String::new(),
                },
                ParamSpec {
                    name: "include_hidden".into(),
                    kind: ParamType::Boolean,
                    default: Some("false".into()),
                    help: String::new(),
                },
            ],
        }
    }

    #[test]
    fn defaults_fill_in_and_values_override() {
        let got = info()
            .resolve_params(&[("include_hidden".into(), "true".into())])
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("markers".to_string(), "ADI.XML,ADI.DTD".to_string()),
                ("include_hidden".to_string(), "true".to_string())
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = info()
            .resolve_params(&[("marker".into(), "x".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown parameter `marker` for plugin `dir` (it takes: markers, include_hidden)"
        );
        let err = info()
            .resolve_params(&[("include_hidden".into(), "yes".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "parameter `include_hidden` must be true or false, not `yes`"
        );
    }
}
