//! The pure core: identifiers, calendar periods, table policies, the catalog snapshot and the
//! planner that turns (snapshot, policy, now) into ordered steps; what a restore changes to attach.
//!
//! Architecture invariant: nothing here does I/O. No `tokio`, `tokio_postgres`, `aws_*`,
//! `std::fs`, `std::net`, no clock read (`now` is an argument), and no `crate::` module outside
//! `plan/` except the error types ([`crate::error`]). So every decision is tested table-driven
//! without a database (`planner/tests.rs`), and the test `tidy` in `tests/it/tidy.rs` fails if a
//! file here imports anything else.

pub mod chunks;
pub mod ident;
pub mod partman;
pub mod period;
pub mod planner;
pub mod policy;
pub mod reshape;
pub mod snapshot;
