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
//! - [`archive`] (`archive.rs`): load the detached table and freeze it against writes, then its
//!   chunk plan (`chunked.rs`; a partition under `ARCHIVE_CHUNK_SIZE` is a plan of one chunk under
//!   the key `{partition}.{ext}`): each chunk `pending -> uploading` (with the multipart upload id,
//!   so a killed run's upload is aborted by the next one, and an upload token), its rows checked
//!   over its block range and its figures recorded before the write-once completion, then
//!   `uploaded`; once every chunk is, the partition is `uploaded` (totals; every object by HEAD),
//!   then the JSON manifest is written write-once and read back (`verified`, `record.rs`).
//! - `prepare`: what the chunk streams need first (a Parquet archive's columns, checked against
//!   the manifest) and who wrote an object found at a key.
//! - [`drop_partition`] / [`move_to_schema`]: one transaction that first checks the manifest
//!   state (row locked, `verified`, table no longer attached), so nothing unverified is ever
//!   dropped.
//!
//! # Crash consistency
//! Every transition is committed before the next phase starts, and the planner turns a manifest
//! row in an unfinished state into the remaining steps, so a run killed anywhere is completed by
//! the next. Per chunk state, what is durable and what a crash there leaves:
//! - `pending`: the plan (ranges, keys) only. A killed upload may have left a multipart upload
//!   open: the next attempt aborts every unfinished upload of the key first.
//! - `uploading`, no figures: the upload id and token. Nothing can have been completed; the next
//!   attempt aborts that upload and streams again.
//! - `uploading` with figures (rows, sizes, SHA-256, composite checksum): S3 may have completed
//!   the object. The next attempt finds it at its key and records it as this chunk's own (token,
//!   size and checksum match), or streams again if it is not there.
//! - `uploaded`: the object, its version and ETag. A later run only HEADs it; one whose object no
//!   version holds any more goes back to `pending`.
//! - The partition `uploaded`: every chunk passed HEAD and the totals are recorded; `verified`:
//!   the JSON manifest is written and read back. Only then may `remove` drop the table.
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
pub use remove::{drop_partition, move_to_schema};
