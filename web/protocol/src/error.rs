//! A value refused by validation, naming the field.

/// What is wrong and where: `field` is a dotted path within the checked
/// value (`target.host`, `excludes[2]`), empty for the value as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("field `{field}`: ") })]
pub struct FieldError {
    /// The field, as a dotted path.
    pub field: String,
    /// What is wrong with it, in one line.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same problem, seen from the value that holds this one
    /// (`host` in `target` becomes `target.host`).
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_string()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// `Err(FieldError)` in one call.
pub(crate) fn bad<T>(field: &str, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError::new(field, message))
}
