//! The archive path: settings, the S3 store, the streaming pipelines, the manifest, the retention
//! state machine ([`lifecycle`]) and restore / verify ([`restore`]).

pub mod lifecycle;
pub mod manifest;
pub mod pipeline;
pub mod restore;
pub mod rows;
pub mod settings;
pub mod store;

use crate::db::DbConfig;
use settings::ArchiveSettings;
use store::Store;

/// Everything the archive steps need, built once per process (outside the Lambda handler).
#[derive(Clone)]
pub struct Archiver {
    pub store: Store,
    /// For a second connection that counts a frozen partition's rows while its COPY streams.
    pub db: Option<DbConfig>,
}

impl Archiver {
    pub async fn new(settings: ArchiveSettings, db: Option<DbConfig>) -> Self {
        Self { store: Store::connect(settings).await, db }
    }
}
