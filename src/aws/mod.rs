//! AWS outside S3: credentials for the database from Secrets Manager and RDS IAM tokens
//! ([`secrets`]), and CloudWatch metrics as Embedded Metric Format log lines ([`metrics`]).
//! (S3 itself is the archive's store: [`crate::archive::store`].)
//!
//! May import: [`crate::pg::connect`] (the settings it fills in), [`crate::report`] (what the
//! metrics are read from), [`crate::plan`], [`crate::error`].

pub mod metrics;
pub mod secrets;
