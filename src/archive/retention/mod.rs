//! The retention steps and the archive state machine they drive, one committed transition at a
//! time (ARCHITECTURE.md, "Archive state machine"):
//!
//! ```text
//! attached ─detach─► detaching ─► detached ─freeze, stream─► uploading ─► uploaded
//!          ─verify─► verified ─drop─► dropped        (or ─move─► moved)
//! ```
//!
//! - [`detach`]: plain DETACH and the `detached` record commit together; CONCURRENTLY (only
//!   without a default partition) records `detaching` first, then `detached`.
//! - [`archive`] (`archive.rs`), one function per phase: load the detached table, freeze it
//!   against writes, stream it (`uploading`, with the multipart upload id so a killed run's
//!   upload is aborted by the next one and an upload token; the figures recorded before the
//!   write-once completion; then `uploaded`), verify (object size and composite checksum,
//!   `count(*)`), record (JSON manifest written write-once and read back, then `verified`).
//! - `prepare`: what the streams of both need first (a Parquet archive's columns, checked against
//!   the manifest) and the side tasks on a second connection.
//! - [`drop_partition`] / [`move_to_schema`]: one transaction that first checks the manifest
//!   state (row locked, `verified`, table no longer attached), so nothing unverified is ever
//!   dropped.
//!
//! # Crash consistency
//! Every transition is committed before the next phase starts, and the planner turns a manifest
//! row in an unfinished state into the remaining steps, so a run killed anywhere is completed by
//! the next.
//!
//! May import: [`crate::pg`], [`crate::plan`], the rest of [`crate::archive`], the error types.

mod archive;
mod chunked;
mod detach;
mod prepare;
mod record;
mod remove;

pub use archive::archive;
pub use chunked::{archive_unit, UnitOutcome};
pub use detach::detach;
pub use record::Archived;
pub use remove::{drop_partition, move_to_schema};
