//! Per-table policy: the row of `partition_archiver.part_config`, parsed and validated.
//!
//! Two steps, as everywhere in this crate: raw values ([`RawPolicy`], straight from the row or a
//! test) become a typed [`TablePolicy`], or a [`PolicyError`] naming the bad field. The SQL
//! functions read the same row; the table's CHECK constraints mirror these limits.

use crate::plan::ident::{validate_ident, IdentError, QualifiedName};
use crate::plan::period::{Epoch, Interval};
use chrono_tz::Tz;
use serde::Serialize;

pub const MAX_PREMAKE: i32 = 120;
pub const MAX_RETENTION: i32 = 1200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    /// Archive to S3, verify, then drop the partition (default).
    ArchiveDrop,
    /// Archive to S3, verify, then move the table to the historical schema.
    ArchiveMove,
    /// Detach and move to the historical schema; no archive.
    DetachOnly,
}

impl RetentionAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "archive_drop" => Some(Self::ArchiveDrop),
            "archive_move" => Some(Self::ArchiveMove),
            "detach_only" => Some(Self::DetachOnly),
            _ => None,
        }
    }
    /// The `part_config.retention_action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ArchiveDrop => "archive_drop",
            Self::ArchiveMove => "archive_move",
            Self::DetachOnly => "detach_only",
        }
    }
    pub fn archives(self) -> bool {
        !matches!(self, Self::DetachOnly)
    }
}

/// Values as stored in `part_config`, before validation.
#[derive(Debug, Clone)]
pub struct RawPolicy {
    pub schema_name: String,
    pub table_name: String,
    pub partition_column: String,
    pub partition_interval: String,
    pub premake: i32,
    pub retention: Option<i32>,
    pub time_zone: String,
    pub retention_action: String,
    pub historical_schema: String,
    pub create_default: bool,
    pub archive_format: Option<String>,
    pub archive_compression: Option<String>,
    pub enabled: bool,
    /// `seconds`, `milliseconds`, `microseconds` (an integer key) or `uuidv7` (a uuid key); NULL
    /// for a timestamp or date key.
    pub epoch: Option<String>,
}

impl RawPolicy {
    /// The defaults of `part_config`, for `schema.table`.
    pub fn defaults(schema: &str, table: &str) -> Self {
        Self {
            schema_name: schema.into(),
            table_name: table.into(),
            partition_column: "created_at".into(),
            partition_interval: "month".into(),
            premake: 2,
            retention: Some(6),
            time_zone: "UTC".into(),
            retention_action: "archive_drop".into(),
            historical_schema: "partition_history".into(),
            create_default: true,
            archive_format: None,
            archive_compression: None,
            enabled: true,
            epoch: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TablePolicy {
    pub table: QualifiedName,
    pub column: String,
    pub interval: Interval,
    pub premake: u32,
    /// Periods kept online before the current one; `None` keeps everything.
    pub retention: Option<u32>,
    #[serde(serialize_with = "serialize_tz")]
    pub time_zone: Tz,
    pub retention_action: RetentionAction,
    pub historical_schema: String,
    pub create_default: bool,
    pub archive_format: Option<String>,
    pub archive_compression: Option<String>,
    pub enabled: bool,
    pub epoch: Option<Epoch>,
}

fn serialize_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{table}: bad identifier: {source}")]
    Ident { table: String, source: IdentError },
    #[error("{table}: partition_interval {value:?} is not 'day', 'week', 'month', 'quarter' or 'year'")]
    Interval { table: String, value: String },
    #[error("{table}: premake {value} is out of range 0..={MAX_PREMAKE}")]
    Premake { table: String, value: i32 },
    #[error("{table}: retention {value} is out of range 1..={MAX_RETENTION} (NULL keeps everything)")]
    Retention { table: String, value: i32 },
    #[error("{table}: unknown time zone {value:?} (use an IANA name such as 'UTC' or 'Europe/London')")]
    TimeZone { table: String, value: String },
    #[error("{table}: retention_action {value:?} is not archive_drop, archive_move or detach_only")]
    RetentionAction { table: String, value: String },
    #[error("{table}: archive_format {value:?} is not csv, binary or parquet")]
    Format { table: String, value: String },
    #[error("{table}: archive_compression 'gzip' does not go with archive_format 'parquet' (zstd or none)")]
    ParquetCompression { table: String },
    #[error("{table}: epoch {value:?} is not 'seconds', 'milliseconds', 'microseconds' or 'uuidv7'")]
    Epoch { table: String, value: String },
    #[error("{table}: archive_compression {value:?} is not zstd, gzip or none")]
    Compression { table: String, value: String },
}

impl TryFrom<RawPolicy> for TablePolicy {
    type Error = PolicyError;

    fn try_from(raw: RawPolicy) -> Result<Self, PolicyError> {
        let table_label = format!("{}.{}", raw.schema_name, raw.table_name);
        let t = || table_label.clone();
        for ident in [&raw.schema_name, &raw.table_name, &raw.partition_column, &raw.historical_schema] {
            validate_ident(ident).map_err(|source| PolicyError::Ident { table: t(), source })?;
        }
        let epoch = match raw.epoch.as_deref() {
            None => None,
            Some(e) => Some(Epoch::parse(e).ok_or_else(|| PolicyError::Epoch { table: t(), value: e.into() })?),
        };
        let interval = Interval::parse(&raw.partition_interval)
            .ok_or_else(|| PolicyError::Interval { table: t(), value: raw.partition_interval.clone() })?;
        if !(0..=MAX_PREMAKE).contains(&raw.premake) {
            return Err(PolicyError::Premake { table: t(), value: raw.premake });
        }
        if let Some(r) = raw.retention {
            if !(1..=MAX_RETENTION).contains(&r) {
                return Err(PolicyError::Retention { table: t(), value: r });
            }
        }
        let time_zone: Tz =
            raw.time_zone.parse().map_err(|_| PolicyError::TimeZone { table: t(), value: raw.time_zone.clone() })?;
        let retention_action = RetentionAction::parse(&raw.retention_action)
            .ok_or_else(|| PolicyError::RetentionAction { table: t(), value: raw.retention_action.clone() })?;
        if let Some(f) = &raw.archive_format {
            if !matches!(f.as_str(), "csv" | "binary" | "parquet") {
                return Err(PolicyError::Format { table: t(), value: f.clone() });
            }
        }
        if let Some(c) = &raw.archive_compression {
            if !matches!(c.as_str(), "zstd" | "gzip" | "none") {
                return Err(PolicyError::Compression { table: t(), value: c.clone() });
            }
        }
        if raw.archive_format.as_deref() == Some("parquet") && raw.archive_compression.as_deref() == Some("gzip") {
            return Err(PolicyError::ParquetCompression { table: t() });
        }
        Ok(TablePolicy {
            table: QualifiedName::new(raw.schema_name, raw.table_name),
            column: raw.partition_column,
            interval,
            premake: raw.premake as u32,
            retention: raw.retention.map(|r| r as u32),
            time_zone,
            retention_action,
            historical_schema: raw.historical_schema,
            create_default: raw.create_default,
            archive_format: raw.archive_format,
            archive_compression: raw.archive_compression,
            enabled: raw.enabled,
            epoch,
        })
    }
}

impl From<PolicyError> for crate::error::Error {
    fn from(e: PolicyError) -> Self {
        Self::invalid(format!("bad policy in partition_archiver.part_config: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(edit: impl FnOnce(&mut RawPolicy), expect_err: Option<&str>) {
        let mut raw = RawPolicy::defaults("public", "trades");
        edit(&mut raw);
        match (TablePolicy::try_from(raw), expect_err) {
            (Ok(_), None) => {}
            (Err(e), Some(needle)) => assert!(e.to_string().contains(needle), "{e} should mention {needle:?}"),
            (got, want) => panic!("got {got:?}, expected error {want:?}"),
        }
    }

    #[test]
    fn validates_every_field() {
        check(|_| {}, None);
        check(|r| r.partition_interval = "year".into(), None);
        check(|r| r.partition_interval = "week".into(), None);
        check(|r| r.partition_interval = "fortnight".into(), Some("partition_interval \"fortnight\""));
        check(|r| r.epoch = Some("milliseconds".into()), None);
        check(|r| r.epoch = Some("uuidv7".into()), None);
        check(|r| r.epoch = Some("nanoseconds".into()), Some("epoch \"nanoseconds\""));
        check(|r| r.premake = 0, None);
        check(|r| r.premake = 1000, Some("premake 1000"));
        check(|r| r.premake = -1, Some("premake -1"));
        check(|r| r.retention = None, None);
        check(|r| r.retention = Some(0), Some("retention 0"));
        check(|r| r.retention = Some(10_000), Some("retention 10000"));
        check(|r| r.time_zone = "Europe/London".into(), None);
        check(|r| r.time_zone = "Mars/Olympus".into(), Some("unknown time zone \"Mars/Olympus\""));
        check(|r| r.retention_action = "shred".into(), Some("retention_action \"shred\""));
        check(|r| r.archive_format = Some("orc".into()), Some("archive_format \"orc\""));
        check(|r| r.archive_format = Some("parquet".into()), None);
        check(
            |r| {
                r.archive_format = Some("parquet".into());
                r.archive_compression = Some("gzip".into());
            },
            Some("does not go with archive_format 'parquet'"),
        );
        check(|r| r.archive_compression = Some("lz4".into()), Some("archive_compression"));
        check(|r| r.partition_column = String::new(), Some("bad identifier"));
        check(|r| r.historical_schema = "h".repeat(64), Some("longer than 63"));
    }
}
