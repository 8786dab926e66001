//! partition-archiver: keeps PostgreSQL time-partitioned tables healthy.
//!
//! See ARCHITECTURE.md for the map. Pure core: [`ident`], [`period`], [`policy`], [`snapshot`],
//! [`planner`]. I/O shell: [`db`], [`catalog`], [`executor`], [`migrate`]. Front doors: [`cli`],
//! [`lambda`], over [`app`].
pub mod ident;
pub mod period;
pub mod planner;
pub mod policy;
pub mod snapshot;
