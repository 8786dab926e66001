//! What the planner sees: a snapshot of one table's partitions (read from `pg_catalog` by
//! [`crate::pg::catalog`]) and of its archive manifest. Plain data, so the planner is a pure function
//! and tests build snapshots by hand. Also [`LockHolder`], what the catalog says about the session
//! holding a table's lock (shared by `pg::lock`, which reads it, and the reports).

use crate::plan::ident::QualifiedName;
use crate::plan::period::KeyType;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One end of a range partition, as local wall time in the table's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum BoundValue {
    MinValue,
    At(NaiveDateTime),
    MaxValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartitionBound {
    Default,
    Range { from: BoundValue, to: BoundValue },
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub name: QualifiedName,
    pub bound: PartitionBound,
    /// `pg_inherits.inhdetachpending`: an interrupted `DETACH ... CONCURRENTLY`.
    pub detach_pending: bool,
    pub total_bytes: i64,
    /// `pg_class.reltuples`: -1 when the table was never analyzed.
    pub estimated_rows: i64,
}

impl PartitionInfo {
    pub fn range(&self) -> Option<(BoundValue, BoundValue)> {
        match self.bound {
            PartitionBound::Range { from, to } => Some((from, to)),
            PartitionBound::Default => None,
        }
    }
}

/// Archive state of one partition, persisted in `partition_archiver.archive_manifest`.
/// `attached -> detaching -> detached -> uploading -> uploaded -> verified -> dropped | moved`;
/// every transition is committed before the next step starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveState {
    /// The first state of a record (a `DETACH ... CONCURRENTLY` under way).
    #[default]
    Detaching,
    Detached,
    Uploading,
    Uploaded,
    Verified,
    Dropped,
    Moved,
}

impl ArchiveState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "detaching" => Self::Detaching,
            "detached" => Self::Detached,
            "uploading" => Self::Uploading,
            "uploaded" => Self::Uploaded,
            "verified" => Self::Verified,
            "dropped" => Self::Dropped,
            "moved" => Self::Moved,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detaching => "detaching",
            Self::Detached => "detached",
            Self::Uploading => "uploading",
            Self::Uploaded => "uploaded",
            Self::Verified => "verified",
            Self::Dropped => "dropped",
            Self::Moved => "moved",
        }
    }
    /// Its archive is verified (whether the table is still there, dropped or moved): what
    /// restore and verify read.
    pub fn is_archived(self) -> bool {
        matches!(self, Self::Verified | Self::Dropped | Self::Moved)
    }
    /// The partition has left the database's hot set for good (nothing more to do).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Dropped | Self::Moved)
    }
}

impl std::fmt::Display for ArchiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestEntry {
    pub partition: QualifiedName,
    pub state: ArchiveState,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSnapshot {
    pub table: QualifiedName,
    pub key_column: String,
    pub key_type: KeyType,
    pub partitions: Vec<PartitionInfo>,
    /// Rows in the default partition, by the start of the period they fall in (local time).
    pub default_rows: BTreeMap<NaiveDateTime, i64>,
    /// Relations in the table's schema that share its name prefix but are not its partitions
    /// (a detached partition awaiting archive, a user's table): never created over.
    pub other_relations: BTreeSet<String>,
    pub manifest: Vec<ManifestEntry>,
}

impl TableSnapshot {
    pub fn default_partition(&self) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|p| p.bound == PartitionBound::Default)
    }
    pub fn default_rows_total(&self) -> i64 {
        self.default_rows.values().sum()
    }
    /// This tool's record of partition `name` in the manifest, if it has one.
    pub fn record_of(&self, name: &str) -> Option<&ManifestEntry> {
        self.manifest.iter().find(|m| m.partition.name == name)
    }
}

/// What the catalog says about a table, for `status` and the metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableStats {
    pub partition_count: usize,
    pub total_bytes: i64,
    pub largest_partition_bytes: i64,
    pub newest_partition_bytes: i64,
    pub default_rows: i64,
}

impl TableStats {
    pub fn of(snapshot: &TableSnapshot) -> Self {
        let ranges: Vec<_> = snapshot.partitions.iter().filter(|p| p.bound != PartitionBound::Default).collect();
        let newest = ranges.iter().filter_map(|p| p.range().map(|(f, _)| (f, p.total_bytes))).max_by_key(|(f, _)| *f);
        Self {
            partition_count: snapshot.partitions.len(),
            total_bytes: snapshot.partitions.iter().map(|p| p.total_bytes).sum(),
            largest_partition_bytes: ranges.iter().map(|p| p.total_bytes).max().unwrap_or(0),
            newest_partition_bytes: newest.map_or(0, |(_, b)| b),
            default_rows: snapshot.default_rows_total(),
        }
    }
}

/// Who holds an advisory lock, as `pg_locks` and `pg_stat_activity` tell (fields the server does
/// not show this role are `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub backend_start: Option<DateTime<Utc>>,
    pub state: Option<String>,
    /// When the session last changed state: for an idle session, when it went idle.
    pub idle_since: Option<DateTime<Utc>>,
    /// A session of a partition-archiver run that has shown no sign of life for
    /// `STALE_LOCK_SECONDS` (see `pg::lock`).
    pub vanished: bool,
    /// This run terminated the holder's run (it was vanished) and then took the lock.
    pub terminated: bool,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        write!(
            f,
            "pid {} ({}, client {}, started {}, {}",
            self.pid,
            opt(&self.application_name),
            opt(&self.client_addr),
            self.backend_start.map(|t| t.to_rfc3339()).unwrap_or_else(|| "?".into()),
            opt(&self.state)
        )?;
        if let Some(t) = self.idle_since {
            write!(f, " since {}", t.to_rfc3339())?;
        }
        f.write_str(")")
    }
}
