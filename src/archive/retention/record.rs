//! What every archive ends with: the step's report ([`Archived`]),
//! and the last phase ([`record`]): the JSON manifest
//! written beside the objects, read back and compared, then the row `verified`.

use crate::archive::check::shown;
use crate::archive::manifest::{self, ManifestRecord, PartitionChange};
use crate::archive::store::WriteOnce;
use crate::archive::Archiver;
use crate::error::Error;
use crate::pg::ddl::exec;
use crate::plan::policy::TablePolicy;
use crate::plan::snapshot::ArchiveState;
use anyhow::{anyhow, bail, Context};
use tokio_postgres::Client;

/// What an archive step did, for its report.
#[derive(Debug, Clone, Default)]
pub struct Archived {
    /// `false` when the run's time budget ended before every chunk was archived: the partition
    /// stays detached and frozen, and the next run goes on at its first unfinished chunk.
    pub complete: bool,
    /// Chunks of a chunked archive: uploaded so far, and in all.
    pub chunks_done: Option<usize>,
    pub chunks_total: Option<usize>,
    /// Why an unfinished archive stopped (time budget, chunks another run holds, fan-out).
    pub unfinished_because: Option<String>,
    pub rows: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub compressed_bytes: Option<i64>,
    /// `s3://bucket/key` of the object.
    pub location: Option<String>,
}

/// Phase 5: the JSON manifest beside the object, read back and compared, then the row `verified`.
/// Returns the record as written.
pub(super) async fn record(
    client: &Client,
    policy: &TablePolicy,
    archiver: &Archiver,
    mut rec: ManifestRecord,
    manifest_key: String,
) -> anyhow::Result<ManifestRecord> {
    let store = &archiver.store;
    rec.state = ArchiveState::Verified;
    rec.manifest_key = Some(manifest_key.clone());
    rec.verified_at = Some(chrono::Utc::now());
    let doc = serde_json::to_vec_pretty(&rec)?;
    if store.put_json(&manifest_key, doc).await? == WriteOnce::Exists {
        // Written by a run that died before recording `verified` (or by a clone that archived the
        // same object): accepted below only if it describes this very object.
        tracing::info!(%manifest_key, "a manifest is already there: checking it describes this archive");
    }
    let back = store
        .get_small(&manifest_key)
        .await?
        .ok_or_else(|| anyhow!("manifest {manifest_key} is missing right after it was written"))?;
    let back: ManifestRecord = serde_json::from_slice(&back).context("manifest read back is not valid JSON")?;
    if !manifest::describe_the_same_archive(&back, &rec) {
        bail!(Error::integrity(format!(
            "manifest {manifest_key} does not describe this archive (it says {} version {}, {} rows, sha256 {}): \
             manifests are never replaced, nothing is dropped",
            shown(back.object_key.as_deref()),
            shown(back.version_id.as_deref()),
            shown(back.row_count),
            shown(back.sha256.as_deref())
        )));
    }
    exec(
        client,
        &manifest::partition_change_sql(
            &policy.table,
            &rec.partition_name,
            &PartitionChange::Verified { manifest_key: &manifest_key },
        ),
    )
    .await?;
    crate::fail_point!("after_verify");
    Ok(rec)
}
