//! partition-archiver: keeps PostgreSQL time-partitioned tables healthy.
//!
//! See ARCHITECTURE.md for the map. Pure core: [`ident`], [`period`], [`policy`], [`snapshot`],
//! [`planner`], [`request`]. I/O shell: [`db`], [`catalog`], [`executor`], [`migrate`],
//! [`archive`]. Front doors: [`cli`] and [`lambda`], over [`app`].
pub mod failpoints;

pub mod app;
pub mod archive;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod executor;
pub mod ident;
pub mod lambda;
pub mod metrics;
pub mod migrate;
pub mod period;
pub mod planner;
pub mod policy;
pub mod report;
pub mod request;
pub mod retry;
pub mod secrets;
pub mod snapshot;
