//! Errors of the pure rules, as distinct variants the edge maps to status codes.

use std::fmt;

/// One bad input field, reported to the caller as a `google.rpc.BadRequest` violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field, in proto field names (`flags`, `ops[2].qty`, …).
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Why a rule refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input itself is wrong, whatever the session's state.
    #[error("invalid argument: {0}")]
    Invalid(FieldViolation),
    /// The input is well-formed but the session is not in a state that allows it.
    #[error("failed precondition: {reason}: {message}")]
    Precondition {
        /// Machine-readable reason, e.g. `WRONG_NODE`, `INSUFFICIENT_QUANTITY`.
        reason: &'static str,
        message: String,
    },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(FieldViolation::new(field, description))
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Precondition {
            reason,
            message: message.into(),
        }
    }

    /// Prefixes the field of an `Invalid` error, e.g. `qty` → `ops[2].add_inventory_item.qty`.
    pub fn in_field(self, prefix: &str) -> Self {
        match self {
            Self::Invalid(v) => Self::Invalid(FieldViolation::new(
                format!("{prefix}.{}", v.field),
                v.description,
            )),
            other => other,
        }
    }
}
