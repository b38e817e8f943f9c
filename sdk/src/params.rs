//! Parameter values handed to `poll`, with typed getters.

use std::collections::BTreeMap;

/// The poller's parameters: every one of its schema, defaults filled in.
///
/// ```
/// use dispatch_poller_sdk::Params;
/// let p = Params::from_pairs([("markers", "ADI.XML, ADI.DTD"), ("include_hidden", "true")]);
/// assert_eq!(p.list("markers").unwrap(), vec!["ADI.XML", "ADI.DTD"]);
/// assert!(p.flag("include_hidden").unwrap());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Builds parameters from name/value pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Sets a value (used by test harnesses to fill defaults).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// A required text value.
    ///
    /// ```
    /// let p = dispatch_poller_sdk::Params::from_pairs([("suffix", ".tar")]);
    /// assert_eq!(p.text("suffix").unwrap(), ".tar");
    /// assert!(p.text("missing").is_err());
    /// ```
    pub fn text(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("parameter `{name}` is not set"))
    }

    /// A boolean: `true` or `false`; unset is `false`.
    ///
    /// ```
    /// let p = dispatch_poller_sdk::Params::from_pairs([("x", "yes")]);
    /// assert!(p.flag("x").is_err());
    /// assert_eq!(p.flag("unset"), Ok(false));
    /// ```
    pub fn flag(&self, name: &str) -> Result<bool, String> {
        match self.get(name).map(str::trim) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(format!(
                "parameter `{name}` must be true or false, not `{other}`"
            )),
        }
    }

    /// A whole number.
    ///
    /// ```
    /// let p = dispatch_poller_sdk::Params::from_pairs([("n", "42")]);
    /// assert_eq!(p.integer("n"), Ok(42));
    /// ```
    pub fn integer(&self, name: &str) -> Result<i64, String> {
        let raw = self.text(name)?.trim();
        raw.parse()
            .map_err(|_| format!("parameter `{name}` must be a whole number, not `{raw}`"))
    }

    /// A comma-separated list, items trimmed, empty items dropped; unset is
    /// empty.
    ///
    /// ```
    /// let p = dispatch_poller_sdk::Params::from_pairs([("m", "a, b,,c ")]);
    /// assert_eq!(p.list("m").unwrap(), vec!["a", "b", "c"]);
    /// ```
    pub fn list(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(self
            .get(name)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
}
