//! An archive object against its manifest record, two ways:
//! - [`by_head`]: HEAD with checksum mode, free whatever the storage class (no retrieval, no GET):
//!   each object (the one object, or every chunk) exists at the recorded version, with the recorded size and S3 composite SHA-256,
//!   in a storage class this tool knows. Before `verified`, and what `verify` does by default.
//! - [`by_reading`]: the object read through SHA-256, the decompressor and the row counter
//!   (`verify --deep`); only for objects S3 serves now.

use crate::archive::manifest::{ArchiveObject, ManifestRecord};
use crate::archive::parquet;
use crate::archive::pipeline::{self, Hashes, Source};
use crate::archive::progress::Progress;
use crate::archive::retrieval::{self, Access};
use crate::archive::store::ObjectHead;
use crate::archive::Archiver;
use anyhow::Context;
use base64::Engine;
use futures_util::StreamExt;

/// What a passing HEAD check saw.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The version that holds the archive's bytes: the recorded one, or the copy it was followed to.
    pub head: ObjectHead,
    pub access: Access,
    /// Set when the recorded version was left for an identical copy (see [`locate`]): what
    /// happened, for the report.
    pub followed: Option<String>,
}

/// HEADs at once when an archive has many chunks.
pub const HEADS_AT_ONCE: usize = 16;

/// The HEAD check of every object of the archive (its chunks, or its one object). `Ok(Err(reason))`
/// when one does not match its record.
pub async fn by_head(archiver: &Archiver, rec: &ManifestRecord) -> anyhow::Result<Result<Vec<Checked>, String>> {
    let objects = rec.objects();
    if objects.is_empty() {
        return Ok(Err("no object key recorded".into()));
    }
    let results: Vec<anyhow::Result<Result<Checked, String>>> =
        futures_util::stream::iter(objects.iter().map(|o| object_by_head(archiver, o)))
            .buffered(HEADS_AT_ONCE)
            .collect()
            .await;
    // In order: the first object's failure or mismatch is the one reported.
    results.into_iter().collect()
}

/// Does the object S3 describes hold the recorded bytes? Its size must be the recorded size, and
/// its S3 checksum either the multipart composite recorded at upload (`base64-N`) or, for an
/// object rewritten by a copy (S3 Batch Operations, `aws s3 cp --storage-class`: S3 gives the copy
/// a full-object SHA-256), the recorded SHA-256 of the whole object. `Err` says what differs, in
/// values.
pub fn same_bytes(head: &ObjectHead, obj: &ArchiveObject<'_>) -> Result<SameBytes, String> {
    if Some(head.size) != obj.compressed_bytes {
        return Err(format!("is {} bytes, the manifest says {}", head.size, shown(obj.compressed_bytes)));
    }
    let full =
        obj.sha256.and_then(|hex| hex::decode(hex).ok()).map(|d| base64::engine::general_purpose::STANDARD.encode(d));
    match head.checksum_sha256.as_deref() {
        Some(got) if Some(got) == obj.checksum_composite => Ok(SameBytes::AsUploaded),
        Some(got) if Some(got) == full.as_deref() => Ok(SameBytes::Copied),
        got => Err(format!(
            "has checksum {}, the manifest says {} (or {} for the whole object after a copy)",
            shown(got),
            shown(obj.checksum_composite),
            shown(full.as_deref())
        )),
    }
}

/// How an object's S3 checksum matched its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameBytes {
    /// The multipart composite recorded at upload: the object as uploaded.
    AsUploaded,
    /// A full-object SHA-256 equal to the recorded one: a copy of it.
    Copied,
}

/// A value for a message: the value itself, or "none recorded".
pub fn shown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none recorded".to_string(), |v| v.to_string())
}

/// Where an archive object's bytes are now. In a versioned bucket, a copy that moved the object to
/// another class made a new version; the recorded one may since be gone (a lifecycle rule expiring
/// noncurrent versions). The newest version is followed when the recorded one is gone, or when it
/// is an identical copy of it (the class the operator moved the archive to is the one that
/// counts), and the returned note says so. `Ok(Err(..))`: no version holds the recorded bytes.
pub async fn locate(archiver: &Archiver, obj: &ArchiveObject<'_>) -> anyhow::Result<Result<Checked, Unlocated>> {
    let (key, store) = (obj.key, &archiver.store);
    let what = match obj.chunk_no {
        Some(n) => format!("chunk {n}: object s3://{}/{key}", store.settings.bucket),
        None => format!("object s3://{}/{key}", store.settings.bucket),
    };
    let recorded = store.head(key, obj.version_id).await?;
    let newest = match obj.version_id {
        Some(v) => {
            store.head(key, None).await?.filter(|h| h.version_id.is_some() && h.version_id.as_deref() != Some(v))
        }
        None => None,
    };
    let checked = |head: ObjectHead, followed: Option<String>| match retrieval::access(
        head.storage_class.as_deref(),
        head.archive_status.as_deref(),
        head.restore.as_deref(),
    ) {
        Ok(access) => Ok(Checked { head, access, followed }),
        Err(unknown) => Err(Unlocated::Differs(format!("{what}: {unknown}"), None)),
    };
    let version = obj.version_id.unwrap_or("null");
    // `how`: what became of the recorded version, up to the copy's version and class.
    let follow = |new: ObjectHead, how: &str| {
        let class = new.storage_class.as_deref().unwrap_or("STANDARD");
        let copy = shown(new.version_id.as_deref());
        let note = format!(
            "{what}: version {version} {how} version {copy} ({class}), identical by size and SHA-256: followed"
        );
        checked(new, Some(note))
    };
    match (recorded, newest) {
        (Some(old), Some(new)) if same_bytes(&old, obj).is_ok() && same_bytes(&new, obj).is_ok() => {
            Ok(follow(new, "was copied to"))
        }
        (Some(old), _) => match same_bytes(&old, obj) {
            Ok(_) => Ok(checked(old, None)),
            Err(why) => Ok(Err(Unlocated::Differs(format!("{what} {why}"), Some(Box::new(old))))),
        },
        (None, Some(new)) => Ok(match same_bytes(&new, obj) {
            Ok(_) => follow(new, "is gone; its copy,"),
            Err(why) => Err(Unlocated::Missing(format!(
                "{what} version {version} does not exist, and the newest version, {}, {why}",
                shown(new.version_id.as_deref())
            ))),
        }),
        (None, None) => Ok(Err(Unlocated::Missing(match obj.version_id {
            Some(v) => format!("{what} version {v} does not exist"),
            None => format!("{what} does not exist"),
        }))),
    }
}

/// Why [`locate`] found no version holding an object's recorded bytes.
#[derive(Debug, Clone)]
pub enum Unlocated {
    /// Neither the recorded version nor an identical copy is at the key.
    Missing(String),
    /// The recorded version is there (its HEAD), but its size or S3 checksum is not the recorded
    /// one; or its storage class is one this tool does not know (no HEAD).
    Differs(String, Option<Box<ObjectHead>>),
}

impl Unlocated {
    pub fn reason(self) -> String {
        match self {
            Unlocated::Missing(why) | Unlocated::Differs(why, _) => why,
        }
    }
}

/// The HEAD check of one object ([`locate`]). `Ok(Err(reason))` when it does not match its record.
pub async fn object_by_head(archiver: &Archiver, obj: &ArchiveObject<'_>) -> anyhow::Result<Result<Checked, String>> {
    let located = locate(archiver, obj).await?;
    if let Ok(Checked { followed: Some(note), .. }) = &located {
        tracing::warn!(note, "an archive object was rewritten by a copy");
    }
    Ok(located.map_err(Unlocated::reason))
}

/// The deep check: SHA-256 and row count of every object as read (the versions [`by_head`] found,
/// in the archive's order), against the record. Returns the rows counted.
pub async fn by_reading(archiver: &Archiver, rec: &ManifestRecord, found: &[Checked]) -> anyhow::Result<u64> {
    let objects = rec.objects();
    anyhow::ensure!(!objects.is_empty() && objects.len() == found.len(), "no object key recorded");
    let mut rows = 0;
    for (obj, at) in objects.iter().zip(found) {
        rows +=
            object_by_reading(archiver, rec, obj, at.head.version_id.as_deref()).await.with_context(|| obj.label())?;
    }
    Ok(rows)
}

async fn object_by_reading(
    archiver: &Archiver,
    rec: &ManifestRecord,
    obj: &ArchiveObject<'_>,
    version_id: Option<&str>,
) -> anyhow::Result<u64> {
    let progress = Progress::start(
        format!("verify {} {}", rec.partition(), obj.label()),
        obj.compressed_bytes.map(|b| b.max(0) as u64),
        archiver.store.settings.progress_log_every(),
    );
    let source = Source {
        key: obj.key,
        version_id,
        format: rec.format()?,
        compression: rec.compression()?,
        columns: &rec.columns,
    };
    let got = pipeline::read_object(None, &archiver.store, source, Hashes::Object, progress).await?;
    anyhow::ensure!(
        Some(got.sha256.as_str()) == obj.sha256,
        "SHA-256 {} differs from the manifest's {}",
        got.sha256,
        shown(obj.sha256)
    );
    anyhow::ensure!(
        Some(got.rows_counted as i64) == obj.row_count,
        "{} rows, the manifest says {}",
        got.rows_counted,
        shown(obj.row_count)
    );
    Ok(got.rows_counted)
}

/// PostgreSQL's side of a Parquet chunk's statistics check: `count(*)`, then per column its
/// non-NULL count, min and max, from one scan of the chunk's block range.
#[derive(Debug, Clone)]
pub struct PgStatistics {
    pub rows: i64,
    pub per_column: Vec<parquet::stats::PgStats>,
}

/// [`PgStatistics`] of the rows of `partition` that `condition` (a chunk's ctid range) selects.
pub async fn pg_statistics(
    client: &tokio_postgres::Client,
    partition: &crate::plan::ident::QualifiedName,
    columns: &[parquet::ArchiveColumn],
    condition: &str,
) -> anyhow::Result<PgStatistics> {
    let row = client
        .query_one(&parquet::stats::query(&partition.quoted(), columns, Some(condition)), &[])
        .await
        .with_context(|| format!("compute the statistics of {partition}"))?;
    let per_column = (0..columns.len())
        .map(|i| parquet::stats::PgStats {
            non_null: row.get(1 + 3 * i),
            min: row.get(2 + 3 * i),
            max: row.get(3 + 3 * i),
        })
        .collect();
    Ok(PgStatistics { rows: row.get(0), per_column })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: i64, checksum: Option<&str>) -> ObjectHead {
        ObjectHead {
            size,
            checksum_sha256: checksum.map(str::to_string),
            version_id: None,
            etag: None,
            storage_class: None,
            restore: None,
            archive_status: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn an_object_holds_its_recorded_bytes_as_uploaded_or_as_a_copy_and_nothing_else() {
        // SHA-256 of "abc": hex as the manifest records it, base64 as S3 reports a full-object checksum.
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let full = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
        let obj = ArchiveObject {
            chunk_no: None,
            key: "k",
            version_id: None,
            sha256: Some(hex),
            row_count: Some(1),
            raw_bytes: Some(3),
            compressed_bytes: Some(3),
            checksum_composite: Some("r8EQ-1"),
        };
        let cases: &[(i64, Option<&str>, Result<SameBytes, &str>)] = &[
            (3, Some("r8EQ-1"), Ok(SameBytes::AsUploaded)),
            (3, Some(full), Ok(SameBytes::Copied)),
            (4, Some(full), Err("is 4 bytes, the manifest says 3")),
            (
                3,
                Some("other="),
                Err(&format!(
                    "has checksum other=, the manifest says r8EQ-1 (or {full} for the whole object after a copy)"
                )),
            ),
            (3, None, Err("has checksum none recorded, the manifest says r8EQ-1")),
        ];
        for (size, checksum, want) in cases {
            let got = same_bytes(&head(*size, *checksum), &obj);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g),
                (Err(w), Err(g)) => assert!(g.starts_with(w) && !g.contains("Some("), "{g}"),
                _ => panic!("{size} {checksum:?}: {got:?}, wanted {want:?}"),
            }
        }
        // A manifest without a SHA-256 (or not hex) matches only the composite.
        let no_sha = ArchiveObject { sha256: Some("not hex"), ..obj };
        assert!(same_bytes(&head(3, Some(full)), &no_sha).is_err());
    }
}
