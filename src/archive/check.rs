//! An archive object against its manifest record, two ways:
//! - [`by_head`]: HEAD with checksum mode, free whatever the storage class (no retrieval, no GET):
//!   each object (the one object, or every chunk) exists at the recorded version, with the recorded size and S3 composite SHA-256,
//!   in a storage class this tool knows. Before `verified`, and what `verify` does by default.
//! - [`by_reading`]: the object read through SHA-256, the decompressor and the row counter
//!   (`verify --deep`); only for objects S3 serves now.

use crate::archive::manifest::{ArchiveObject, ManifestRecord};
use crate::archive::parquet;
use crate::archive::pipeline::{self, Hashes, Source};
use crate::archive::progress::{Measure, Progress};
use crate::archive::retrieval::{self, Access};
use crate::archive::store::ObjectHead;
use crate::archive::Archiver;
use anyhow::Context;
use futures_util::StreamExt;

/// What a passing HEAD check saw.
#[derive(Debug, Clone)]
pub struct Checked {
    pub head: ObjectHead,
    pub access: Access,
}

/// HEADs at once when an archive has many chunks.
const HEADS_AT_ONCE: usize = 16;

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
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r? {
            Ok(c) => out.push(c),
            Err(reason) => return Ok(Err(reason)),
        }
    }
    Ok(Ok(out))
}

/// The HEAD check of one object. `Ok(Err(reason))` when it does not match its record.
pub async fn object_by_head(archiver: &Archiver, obj: &ArchiveObject<'_>) -> anyhow::Result<Result<Checked, String>> {
    let key = obj.key;
    let what = match obj.chunk_no {
        Some(n) => format!("chunk {n}: object"),
        None => "object".to_string(),
    };
    let bucket = &archiver.store.settings.bucket;
    let Some(head) = archiver.store.head(key, obj.version_id).await? else {
        return Ok(Err(match obj.version_id {
            Some(v) => format!("{what} s3://{bucket}/{key} version {v} does not exist"),
            None => format!("{what} s3://{bucket}/{key} does not exist"),
        }));
    };
    if Some(head.size) != obj.compressed_bytes {
        return Ok(Err(format!("{what} {key} is {} bytes, the manifest says {:?}", head.size, obj.compressed_bytes)));
    }
    if head.checksum_sha256.is_none() || head.checksum_sha256.as_deref() != obj.checksum_composite {
        return Ok(Err(format!(
            "{what} {key} has checksum {:?}, the manifest says {:?}",
            head.checksum_sha256, obj.checksum_composite
        )));
    }
    let access =
        match retrieval::access(head.storage_class.as_deref(), head.archive_status.as_deref(), head.restore.as_deref())
        {
            Ok(a) => a,
            Err(unknown) => return Ok(Err(format!("{what} {key}: {unknown}"))),
        };
    Ok(Ok(Checked { head, access }))
}

/// The deep check: SHA-256 and row count of every object as read, against the record. Returns the
/// rows counted.
pub async fn by_reading(archiver: &Archiver, rec: &ManifestRecord) -> anyhow::Result<u64> {
    let objects = rec.objects();
    anyhow::ensure!(!objects.is_empty(), "no object key recorded");
    let mut rows = 0;
    for obj in &objects {
        rows += object_by_reading(archiver, rec, obj).await.with_context(|| obj.label())?;
    }
    Ok(rows)
}

async fn object_by_reading(archiver: &Archiver, rec: &ManifestRecord, obj: &ArchiveObject<'_>) -> anyhow::Result<u64> {
    let progress = Progress::start(
        format!("verify {} {}", rec.partition(), obj.label()),
        Measure::Bytes,
        obj.compressed_bytes.map(|b| b.max(0) as u64),
        archiver.store.settings.progress_log_every(),
    );
    let source = Source {
        key: obj.key,
        version_id: obj.version_id,
        format: rec.format()?,
        compression: rec.compression()?,
        columns: &rec.columns,
    };
    let got = pipeline::scan_object(&archiver.store, source, Hashes::Object, progress).await?;
    anyhow::ensure!(
        Some(got.sha256.as_str()) == obj.sha256,
        "SHA-256 {} differs from the manifest's {:?}",
        got.sha256,
        obj.sha256
    );
    anyhow::ensure!(
        Some(got.rows_counted as i64) == obj.row_count,
        "{} rows, the manifest says {:?}",
        got.rows_counted,
        obj.row_count
    );
    Ok(got.rows_counted)
}

/// The statistics check of a Parquet archive: every object's footer matches the manifest's
/// columns, and the footers' row count, null counts, min and max equal PostgreSQL's own over the
/// partition (one query; `parquet::stats` says which columns compare min/max). Ok(Err(why)) on a
/// difference; other formats pass.
pub async fn by_statistics(
    client: &tokio_postgres::Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
) -> anyhow::Result<Result<(), String>> {
    Ok(match statistics(client, archiver, rec, None).await? {
        Some((_, compared)) => compared,
        None => Ok(()),
    })
}

/// PostgreSQL's side of the statistics check: `count(*)`, then per column its non-NULL count, min
/// and max, from one scan of the (frozen) partition.
#[derive(Debug, Clone)]
pub struct PgStatistics {
    /// The columns the query was built for.
    pub columns: Vec<parquet::ArchiveColumn>,
    pub rows: i64,
    pub per_column: Vec<parquet::stats::PgStats>,
}

pub async fn pg_statistics(
    client: &tokio_postgres::Client,
    partition: &crate::plan::ident::QualifiedName,
    columns: &[parquet::ArchiveColumn],
) -> anyhow::Result<PgStatistics> {
    let row = client
        .query_one(&parquet::stats::query(&partition.quoted(), columns), &[])
        .await
        .with_context(|| format!("compute the statistics of {partition}"))?;
    let per_column = (0..columns.len())
        .map(|i| parquet::stats::PgStats {
            non_null: row.get(1 + 3 * i),
            min: row.get(2 + 3 * i),
            max: row.get(3 + 3 * i),
        })
        .collect();
    Ok(PgStatistics { columns: columns.to_vec(), rows: row.get(0), per_column })
}

/// [`by_statistics`], also returning the partition's `count(*)` (the statistics query computes it
/// in the same scan); None for formats other than Parquet. `computed`: PostgreSQL's side already
/// computed (on a second connection while the chunks streamed), used if it was computed for the
/// columns the objects hold.
pub async fn statistics(
    client: &tokio_postgres::Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    computed: Option<PgStatistics>,
) -> anyhow::Result<Option<(i64, Result<(), String>)>> {
    if rec.format()? != crate::archive::settings::Format::Parquet {
        return Ok(None);
    }
    let mut metadatas = Vec::new();
    let mut columns = None;
    for obj in rec.objects() {
        let (meta, _) = pipeline::parquet_metadata(&archiver.store, obj.key, obj.version_id).await?;
        match parquet::read::expected_columns(&rec.columns, &meta) {
            Ok(c) => columns = Some(c),
            Err(e) => return Ok(Some((-1, Err(format!("{}: {e:#}", obj.label()))))),
        }
        metadatas.push(meta);
    }
    let columns = columns.context("no object recorded")?;
    let partition = rec.partition();
    let pg = match computed {
        Some(pg) if pg.columns == columns => pg,
        _ => pg_statistics(client, &partition, &columns).await?,
    };
    Ok(Some((
        pg.rows,
        parquet::stats::compare(&columns, &metadatas, pg.rows, &pg.per_column)
            .map_err(|why| format!("{partition}: the Parquet archive's statistics differ from the table's: {why}")),
    )))
}
