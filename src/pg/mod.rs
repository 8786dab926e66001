//! The PostgreSQL shell: everything that talks to the database except the archive's own steps.
//!
//! - [`connect`]: connection settings and TLS modes (one `Client` per run, `TimeZone = UTC`).
//! - [`catalog`]: reads policies and partition snapshots from `pg_catalog`; refuses tables that are
//!   not range-partitioned on a time column.
//! - [`ddl`]: DDL under a short `lock_timeout`, retried with backoff (invariant 4); below both the
//!   partition-creation steps and the archive's retention steps.
//! - [`lock`]: the advisory locks (invariant 3), and the vanished runs whose sessions still hold
//!   them: recognised, terminated, or reported as the holder.
//! - [`lease`]: a run's lease session, the sign of life that keeps a live run from looking
//!   vanished.
//! - [`partitions`]: the creation steps (default partition, range partitions ahead of time, rows
//!   moved out of the default partition, FINALIZE of a pending detach).
//! - [`migrate`]: the embedded SQL migrations, checksummed.
//! - [`partman`]: pg_partman's `part_config` (for `import-pg-partman`) and the refusal of a table
//!   it still maintains.
//!
//! May import: [`crate::plan`], [`crate::error`], [`crate::retry`]; never the archive, AWS or the
//! front doors.

pub mod catalog;
pub mod connect;
pub mod ddl;
pub mod lease;
pub mod lock;
pub mod migrate;
pub mod partitions;
pub mod partman;
pub mod watch;
