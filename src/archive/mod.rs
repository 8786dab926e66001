//! The archive: where a partition's rows go when they leave PostgreSQL, and how they come back.
//!
//! - [`retention`]: the retention state machine (detach, archive phase by phase, drop or move).
//! - [`pipeline`]: the streaming pipelines (COPY -> compressor -> S3 multipart, and back).
//! - [`store`]: S3 calls (multipart, SSE, Object Lock, conditional writes, HEAD with checksums).
//! - [`manifest`]: the manifest record (database row = JSON document) and the key layout.
//! - [`parquet`]: Parquet archives: PostgreSQL types mapped to Arrow, exact or refused.
//! - [`rows`]: row counting in CSV and binary COPY streams.
//! - [`progress`]: a bar on a terminal, a log line every 30 s elsewhere, for every long stream.
//! - [`restore`]: restore's front (manifest from the database or S3, checked; cold objects
//!   retrieved first; attach), verify, list the bucket.
//! - [`restore_chunks`]: every restore's one load path: objects in parallel into a staging table,
//!   each verified, in units a deadline can stop, then one rename.
//! - [`retrieval`]: cold storage: which objects S3 serves now, what to request for the others.
//! - [`check`]: an object against its manifest record, by HEAD (free) or by reading it.
//! - [`settings`]: bucket, prefix, format, compression, part sizes, retrieval, validated.
//! - [`workers`]: the streams that take an archive's chunks or a restore's objects side by side.
//!
//! May import: [`crate::pg`], [`crate::plan`], [`crate::error`], [`crate::retry`]; never the
//! executor, AWS metrics or the front doors.

pub mod check;
pub mod manifest;
pub mod parquet;
pub mod pipeline;
pub mod progress;
pub mod restore;
pub mod restore_chunks;
pub mod retention;
pub mod retrieval;
pub mod rows;
pub mod settings;
pub mod store;
pub mod workers;

use crate::pg::connect::DbConfig;
use settings::ArchiveSettings;
use std::time::{Duration, Instant};
use store::Store;

/// Everything the archive steps need, built once per process (outside the Lambda handler).
#[derive(Clone)]
pub struct Archiver {
    pub store: Store,
    /// For the connections of parallel chunk streams, and the one that counts a frozen
    /// partition's rows while its COPY streams.
    pub db: Option<DbConfig>,
    /// When this run must be done (the Lambda's deadline, `--time-budget`): no chunk is started
    /// that would not finish by then.
    pub deadline: Option<Instant>,
    /// The run's whole time budget (deadline less its start), for the margins kept at its end.
    pub budget: Option<Duration>,
    /// Fan-out (Step Functions Map): a chunked partition's chunks are planned, not streamed; each
    /// is a unit of work for `archive_chunk`.
    pub fan_out: bool,
}

impl Archiver {
    pub async fn new(settings: ArchiveSettings, db: Option<DbConfig>) -> Self {
        Self { store: Store::connect(settings).await, db, deadline: None, budget: None, fan_out: false }
    }

    /// This archiver for a run that must be done by `deadline`.
    pub fn with_deadline(&self, deadline: Option<Instant>) -> Self {
        let budget = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        Self { deadline, budget, ..self.clone() }
    }

    /// Time kept at the end of a budgeted run for what follows the last chunk (verify, manifest,
    /// report): `most`, or a tenth of the budget when that is less (a short CLI budget is not
    /// all margin).
    pub fn margin(&self, most: Duration) -> Duration {
        self.budget.map_or(most, |b| most.min(b / 10))
    }

    /// How long the server may take to answer where it has no work to do (the start and the end
    /// of a COPY FROM into a bare staging table): as long as a silent connection is given
    /// anywhere ([`DbConfig::dead_peer_bound`]).
    pub fn reply_bound(&self) -> Duration {
        self.db
            .as_ref()
            .map_or(Duration::from_secs(2 * crate::pg::connect::DEFAULT_KEEPALIVE_S), DbConfig::dead_peer_bound)
    }

    /// This archiver for a fan-out run (chunks planned, left to `archive_chunk` units).
    pub fn fanning_out(&self, fan_out: bool) -> Self {
        Self { fan_out, ..self.clone() }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}
