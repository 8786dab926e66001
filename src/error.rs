//! Errors at the boundary. Inside, code uses `anyhow` with context; what reaches a caller (the CLI's
//! exit code, the Lambda's error type) is an [`Error`] that says what failed and whether a retry can
//! help.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {key}={value} is invalid: expected {expected}")]
    Invalid { key: String, value: String, expected: String },
    #[error("missing setting: {0}")]
    Missing(String),
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
}

/// A settings test's environment: `vars` as the lookup every `from_lookup` reads (and
/// [`ConfigError`] reports on).
#[cfg(test)]
pub(crate) fn lookup_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

impl ConfigError {
    pub fn invalid(key: &str, value: &str, expected: &str) -> Self {
        Self::Invalid { key: key.into(), value: format!("{value:?}"), expected: expected.into() }
    }

    /// An integer setting: `default` when `key` is not set, else its value if it lies in `range`;
    /// anything else is refused as "expected {what} in {start}..={end}" (`what`: "an integer",
    /// "seconds").
    pub fn int_setting(
        get: &dyn Fn(&str) -> Option<String>,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        what: &str,
    ) -> Result<u64, Self> {
        match get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| Self::invalid(key, &v, &format!("{what} in {}..={}", range.start(), range.end()))),
        }
    }
}

/// A table the archiver must refuse to touch. Nothing is changed when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("table {0} does not exist")]
    TableNotFound(String),
    #[error("table {0} is not partitioned")]
    NotPartitioned(String),
    #[error("table {0} is not range-partitioned (strategy {1})")]
    NotRange(String, String),
    #[error("table {0} must be partitioned on a single column, not an expression or several columns")]
    KeyNotSingleColumn(String),
    #[error("table {table} is partitioned on {column} of type {type_name}: {why}")]
    KeyType { table: String, column: String, type_name: String, why: String },
    #[error("table {table} is partitioned on {actual}, but part_config says {configured}")]
    KeyColumnMismatch { table: String, actual: String, configured: String },
    #[error("table {table}: cannot read partition bound of {partition}: {bound}")]
    Bound { table: String, partition: String, bound: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input: a retry with the same input fails the same way. Nothing was changed.
    InvalidInput,
    /// The thing asked for does not exist (table, partition, archive).
    NotFound,
    /// Another run holds the table's lock.
    AlreadyRunning,
    /// Data did not verify (checksum, row count, size): nothing was dropped or committed.
    Integrity,
    /// The database or S3 failed or was unreachable: a later retry may succeed.
    Transient,
    /// The database refused a statement for a reason a retry does not change (a permission, a
    /// constraint, a dependent object, a missing feature): someone must act first.
    Refused,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// Wraps an internal error chain; `{:#}` keeps every context layer in the message. Transient,
    /// unless the database refused a statement for good ([`refused_for_good`]).
    pub fn transient(err: anyhow::Error) -> Self {
        // An Error raised deeper keeps its kind.
        match err.downcast::<Error>() {
            Ok(e) => e,
            Err(err) => {
                let kind = if refused_for_good(&err) { ErrorKind::Refused } else { ErrorKind::Transient };
                Self::new(kind, format!("{err:#}"))
            }
        }
    }
    /// Retrying the same request may succeed (Step Functions and `restore --wait` retry these).
    pub fn retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Transient | ErrorKind::AlreadyRunning)
    }
    /// The name a Lambda caller sees as `errorType`.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyRunning => "AlreadyRunning",
            ErrorKind::Integrity => "IntegrityError",
            ErrorKind::Transient => "TransientError",
            ErrorKind::Refused => "Refused",
        }
    }
}

/// A server error whose SQLSTATE class says a retry fails the same way: 42 (a permission, an
/// undefined object, a syntax error), 23 (a constraint, such as rows outside an ATTACH's range), 2B
/// (dependent objects), 0A (not supported), 22 (bad data).
pub fn refused_for_good(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.code())
            .is_some_and(|code| matches!(&code.code()[..2], "42" | "23" | "2B" | "0A" | "22"))
    })
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::invalid(e.to_string())
    }
}
impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::TableNotFound(_) => Self::not_found(e.to_string()),
            _ => Self::invalid(e.to_string()),
        }
    }
}

/// An internal failure at the boundary: [`Error::transient`] (an [`Error`] raised deeper keeps its
/// kind; one that retrying cannot mend is `Refused`).
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Self::transient(e)
    }
}
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::transient(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
