//! An archive object against its manifest record, two ways:
//! - [`by_head`]: HEAD with checksum mode, free whatever the storage class (no retrieval, no GET):
//!   the object exists at the recorded version, with the recorded size and S3 composite SHA-256,
//!   in a storage class this tool knows. Before `verified`, and what `verify` does by default.
//! - [`by_reading`]: the object read through SHA-256, the decompressor and the row counter
//!   (`verify --deep`); only for objects S3 serves now.

use crate::archive::manifest::ManifestRecord;
use crate::archive::pipeline::{self, Hashes, Source};
use crate::archive::progress::{Measure, Progress};
use crate::archive::retrieval::{self, Access};
use crate::archive::store::ObjectHead;
use crate::archive::Archiver;
use anyhow::Context;

/// What a passing HEAD check saw.
#[derive(Debug, Clone)]
pub struct Checked {
    pub head: ObjectHead,
    pub access: Access,
}

/// The HEAD check. `Ok(Err(reason))` when the object does not match its record.
pub async fn by_head(archiver: &Archiver, rec: &ManifestRecord) -> anyhow::Result<Result<Checked, String>> {
    let Some(key) = rec.object_key.as_deref() else {
        return Ok(Err("no object key recorded".into()));
    };
    let bucket = &archiver.store.settings.bucket;
    let Some(head) = archiver.store.head(key, rec.version_id.as_deref()).await? else {
        return Ok(Err(match rec.version_id.as_deref() {
            Some(v) => format!("object s3://{bucket}/{key} version {v} does not exist"),
            None => format!("object s3://{bucket}/{key} does not exist"),
        }));
    };
    if Some(head.size) != rec.compressed_bytes {
        return Ok(Err(format!("object {key} is {} bytes, the manifest says {:?}", head.size, rec.compressed_bytes)));
    }
    if head.checksum_sha256.is_none() || head.checksum_sha256 != rec.checksum_composite {
        return Ok(Err(format!(
            "object {key} has checksum {:?}, the manifest says {:?}",
            head.checksum_sha256, rec.checksum_composite
        )));
    }
    let access =
        match retrieval::access(head.storage_class.as_deref(), head.archive_status.as_deref(), head.restore.as_deref())
        {
            Ok(a) => a,
            Err(unknown) => return Ok(Err(format!("object {key}: {unknown}"))),
        };
    Ok(Ok(Checked { head, access }))
}

/// The deep check: SHA-256 and row count of the object as read, against the record. Returns the
/// rows counted.
pub async fn by_reading(archiver: &Archiver, rec: &ManifestRecord) -> anyhow::Result<u64> {
    let key = rec.object_key.as_deref().context("no object key")?;
    let progress = Progress::start(
        format!("verify {}", rec.partition()),
        Measure::Bytes,
        rec.compressed_bytes.map(|b| b.max(0) as u64),
        archiver.store.settings.progress_log_every(),
    );
    let source =
        Source { key, version_id: rec.version_id.as_deref(), format: rec.format()?, compression: rec.compression()? };
    let got = pipeline::scan_object(&archiver.store, source, Hashes::Object, progress).await?;
    anyhow::ensure!(
        Some(got.sha256.as_str()) == rec.sha256.as_deref(),
        "SHA-256 {} differs from the manifest's {:?}",
        got.sha256,
        rec.sha256
    );
    anyhow::ensure!(
        Some(got.rows_counted as i64) == rec.row_count,
        "{} rows, the manifest says {:?}",
        got.rows_counted,
        rec.row_count
    );
    Ok(got.rows_counted)
}
