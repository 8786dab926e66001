//! partition-archiver: keeps PostgreSQL time-partitioned tables healthy. Partitions are created
//! before rows arrive, old ones are detached, streamed to S3, verified and only then dropped, and
//! any archived month can be restored, verified.
//!
//! Bird's-eye view, from the outside in (each layer imports only the layers below it; the test
//! `tidy` checks it, and that no file imports another that imports it back):
//!
//! - Front doors: [`lambda`] and [`cli`] parse into a [`request::Request`]; [`app`] runs it with
//!   [`config`]'s settings and returns a [`report`] (JSON or text).
//! - [`executor`]: one table at a time, under its advisory lock: snapshot, plan, steps.
//! - [`archive`]: the retention state machine, the COPY -> zstd -> S3 pipeline, the manifest,
//!   restore and verify.
//! - [`aws`]: Secrets Manager, RDS IAM tokens, CloudWatch EMF metrics.
//! - [`pg`]: the PostgreSQL shell: connections, catalog reads, DDL under `lock_timeout` with
//!   retries, advisory locks, partition creation, migrations.
//! - [`plan`]: the pure core: identifiers, periods, policies, snapshots, the planner. No I/O.
//! - Below everything: [`error`] (the error types), [`retry`] (the one backoff helper),
//!   [`failpoints`] (test-only crash points).
//!
//! ARCHITECTURE.md has the map, the invariants and where each is enforced.
pub mod failpoints;

pub mod app;
pub mod archive;
pub mod aws;
pub mod cli;
pub mod config;
pub mod error;
pub mod executor;
pub mod lambda;
pub mod pg;
pub mod plan;
pub mod report;
pub mod request;
pub mod retry;
