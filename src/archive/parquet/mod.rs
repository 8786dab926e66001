//! Parquet archives: each object a Parquet file whose columns carry PostgreSQL's types, written
//! from a binary COPY stream and read back into a CSV COPY for restore.
//!
//! - [`columns`]: which Arrow type each PostgreSQL column becomes; the schema and its metadata.
//! - [`decode`]: binary COPY -> Arrow arrays, value by value: exact or refused.
//! - [`text`]: Arrow values -> PostgreSQL's text input forms (restore).
//! - [`write`]: the encoder stage of the archive pipeline (row groups bounded in bytes).
//! - [`read`]: footer parsing and the row-group-at-a-time reader of the restore pipeline.
//! - [`stats`]: the footer's statistics against PostgreSQL's own aggregates (verification).
//!
//! May import: [`crate::pg`], [`crate::plan`], [`crate::error`] (it is part of the archive layer).

pub mod columns;
pub mod decode;
pub mod read;
pub mod stats;
pub mod text;
pub mod write;

pub use columns::ArchiveColumn;
