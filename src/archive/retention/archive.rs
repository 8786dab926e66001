//! Archive: `detached -> uploading -> uploaded -> verified`, one function per phase.
//!
//! 1. [`load_detached`]: the manifest row must exist and the table must be detached.
//! 2. [`freeze`]: a statement trigger refuses every write, so the rows copied, counted and finally
//!    dropped are the same set.
//! 3. [`stream`]: `uploading` (with the multipart upload id and an upload token, also written into
//!    the object's metadata) -> COPY -> compressor -> S3 parts -> the figures (size, SHA-256,
//!    rows, composite checksum) recorded on the `uploading` row -> completed write-once
//!    (`If-None-Match: *`) -> `uploaded` (version, ETag). An object already at the key is adopted
//!    only when it provably is this partition's archive ([`adopt_existing`]). An `uploaded` object
//!    that still verifies is not uploaded again; a failed stream aborts its upload and goes back to
//!    `detached`.
//! 4. [`verify`]: HEAD size + S3 composite checksum, and `count(*)` (on a second connection,
//!    started with the stream) equal to the rows streamed.
//! 5. [`record`]: the JSON manifest written beside the object and read back, then `verified`.

use super::chunked;
use super::prepare::{parquet_write, side_result, AbortOnDrop};
use super::record::{count_sql, record, Archived};
use crate::archive::check;
use crate::archive::manifest::{self, ManifestRecord};
use crate::archive::pipeline::{self, Hashes, Source};
use crate::archive::progress::{Measure, Progress};
use crate::archive::retrieval::{self, Access};
use crate::archive::settings::{Compression, Format};
use crate::archive::store::{self, ObjectHead, Origin, WriteOnce};
use crate::archive::Archiver;
use crate::error::Error;
use crate::pg::ddl::{exec, run_ddl, DdlOptions};
use crate::plan::ident::QualifiedName;
use crate::plan::period::Interval;
use crate::plan::policy::TablePolicy;
use anyhow::{anyhow, bail, Context};
use tokio_postgres::Client;

/// Format, compression and object key of a partition's archive: those its row already records
/// when a completion may have happened (the streamed figures are recorded just before completing:
/// a run killed after S3 completed the object must find it where it is, whatever the settings say
/// now), else the current settings (the table's own `archive_format` / `archive_compression`
/// first), so a failed attempt never pins a key, format or compression that does not work.
struct Target {
    format: Format,
    compression: Compression,
    key: String,
}

impl Target {
    fn of(policy: &TablePolicy, rec: &ManifestRecord, archiver: &Archiver) -> Self {
        let settings = &archiver.store.settings;
        if let (Some(key), Ok(format), Ok(compression), Some(true), true) = (
            rec.object_key.clone(),
            rec.format(),
            rec.compression(),
            rec.bucket.as_deref().map(|b| b == settings.bucket),
            rec.sha256.is_some(),
        ) {
            return Self { format, compression, key };
        }
        let format = policy.archive_format.as_deref().and_then(Format::parse).unwrap_or(settings.format);
        let compression =
            policy.archive_compression.as_deref().and_then(Compression::parse).unwrap_or(settings.compression);
        // (The executor refuses a pair that cannot work before any detach; `archive` checks again.)
        let key = manifest::object_key(&settings.prefix, rec, policy.interval == Interval::Year, format, compression);
        Self { format, compression, key }
    }
}

/// Archives a detached partition through every phase that remains, and returns what it archived.
pub async fn archive(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    opts: &DdlOptions,
) -> anyhow::Result<Archived> {
    let mut rec = load_detached(client, policy, partition).await?;
    let target = Target::of(policy, &rec, archiver);
    if !target.format.supports(target.compression) {
        bail!(Error::invalid(format!(
            "{partition}: archive_format {} does not go with compression {} (a Parquet file compresses its pages with \
             zstd or not at all): nothing was changed",
            target.format.as_str(),
            target.compression.as_str()
        )));
    }
    freeze(client, opts, &rec.partition()).await?;
    if chunked::is_chunked(client, &rec, archiver).await? {
        let (format, compression) = match (rec.is_chunked(), rec.format(), rec.compression()) {
            // A plan under way keeps its format and compression (its chunks' keys say them).
            (true, Ok(f), Ok(c)) => (f, c),
            _ => (target.format, target.compression),
        };
        let single = manifest::object_key(
            &archiver.store.settings.prefix,
            &rec,
            policy.interval == Interval::Year,
            format,
            compression,
        );
        // Boxed: the chunk workers' futures are deep, and the front doors nest this one further.
        return Box::pin(chunked::archive_chunked(
            client,
            policy,
            partition,
            archiver,
            rec,
            (format, compression, &single),
        ))
        .await;
    }

    let already = rec.state == "uploaded" && check::by_head(archiver, &rec).await?.is_ok();
    let mut side_count = None;
    if !already {
        side_count = start_side_count(archiver, &rec.partition());
        stream(client, policy, partition, archiver, &rec, &target).await?;
        rec = manifest::load(&*client, &policy.table, &partition.name).await?.context("manifest row vanished")?;
    }

    verify(client, archiver, &rec, side_count).await?;
    // The manifest goes beside the object actually recorded (an earlier run may have uploaded it
    // under other settings).
    let manifest_key = manifest::manifest_key(
        rec.object_key.as_deref().unwrap_or(&target.key),
        &rec.table_folder(),
        &rec.partition_name,
    );
    let rec = record(client, policy, archiver, rec, manifest_key).await?;
    Ok(Archived {
        complete: true,
        unfinished_because: None,
        chunks_done: None,
        chunks_total: None,
        rows: rec.row_count,
        raw_bytes: rec.raw_bytes,
        compressed_bytes: rec.compressed_bytes,
        location: rec.object_key.map(|k| format!("s3://{}/{k}", archiver.store.settings.bucket)),
    })
}

/// Phase 1: the partition's manifest row, which must exist (only partitions this tool detached
/// are archived), and its table, which must exist and be detached.
async fn load_detached(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
) -> anyhow::Result<ManifestRecord> {
    let rec = manifest::load(client, &policy.table, &partition.name)
        .await?
        .ok_or_else(|| anyhow!("no archive manifest row for {partition}: it was not detached by partition-archiver"))?;
    let attached: Option<bool> = client
        .query_opt(
            "SELECT c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
            &[&rec.partition_schema, &rec.partition_name],
        )
        .await?
        .map(|r| r.get(0));
    match attached {
        None => bail!(Error::integrity(format!(
            "{} is in archive state {} but the table no longer exists: not archived, nothing dropped",
            rec.partition(),
            rec.state
        ))),
        Some(true) => bail!("{} is still attached: refusing to archive it", rec.partition()),
        Some(false) => Ok(rec),
    }
}

/// Phase 2: freeze the table before anything reads it (migration 20250801000003): CREATE TRIGGER
/// waits for writers already in it and every later write fails, so the COPY, the row count and
/// the table that is finally dropped all hold the same rows. Idempotent (a rerun replaces it).
async fn freeze(client: &mut Client, opts: &DdlOptions, table: &QualifiedName) -> anyhow::Result<()> {
    let freeze = format!(
        "CREATE OR REPLACE TRIGGER partition_archiver_frozen BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} \
         FOR EACH STATEMENT EXECUTE FUNCTION partition_archiver.refuse_writes()",
        table.quoted()
    );
    run_ddl(client, opts, &format!("freeze {table}"), &[freeze])
        .await
        .0
        .with_context(|| format!("freeze {table} against writes (has `partition-archiver migrate` run?)"))?;
    Ok(())
}

/// The table is frozen, so a count on a second connection while the COPY streams sees exactly
/// the rows the COPY sends, and costs no wall time where the server has a core to spare.
fn start_side_count(archiver: &Archiver, table: &QualifiedName) -> Option<AbortOnDrop<anyhow::Result<i64>>> {
    let db = archiver.db.clone()?;
    let sql = count_sql(table);
    Some(AbortOnDrop(tokio::spawn(async move {
        let side = db.connect().await?;
        Ok::<i64, anyhow::Error>(side.query_one(&sql, &[]).await?.get(0))
    })))
}

/// Phase 3: COPY the table into a new multipart upload, recording `uploading` (with the upload id
/// and a fresh upload token, also written into the object's metadata) before, the streamed
/// figures before completing, and `uploaded` (version, ETag) after. Write-once: the upload is
/// completed with `If-None-Match: *`, and an object already at the key is adopted only if it is
/// this partition's own earlier upload (see [`adopt_existing`]); otherwise the partition stops
/// with an integrity error and nothing is written or dropped. Whatever a killed run left behind
/// for the key is aborted first; a failed stream aborts its own upload and records the row
/// `detached` again with the error.
async fn stream(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    rec: &ManifestRecord,
    target: &Target,
) -> anyhow::Result<()> {
    let store = &archiver.store;
    let settings = &store.settings;
    let Target { format, compression, ref key } = *target;
    if let Some(old) = rec.multipart_upload_id.clone() {
        store.abort_upload(key, &old).await?;
    }
    store.abort_uploads_of(key).await?;
    if let Some(head) = store.head(key, None).await? {
        return adopt_existing(client, policy, partition, archiver, rec, target, &head).await;
    }
    let token = store::new_upload_token();
    let origin = Origin {
        upload_token: token.clone(),
        system_identifier: rec.system_identifier.clone(),
        source: format!("{}/{}", policy.table, partition.name),
    };
    let parquet = parquet_write(client, rec, format, partition, settings).await?;
    let upload_id = store.create_upload(key, format.content_type(), &origin).await?;
    exec(
        client,
        &manifest::set_state_sql(
            &policy.table,
            &partition.name,
            "uploading",
            &[
                ("multipart_upload_id", Some(upload_id.clone())),
                ("upload_token", Some(token)),
                ("bucket", Some(settings.bucket.clone())),
                ("object_key", Some(key.clone())),
                ("format", Some(format.as_str().into())),
                ("compression", Some(compression.as_str().into())),
                ("row_count", None),
                ("raw_bytes", None),
                ("compressed_bytes", None),
                ("sha256", None),
                ("checksum_composite", None),
            ],
        ),
    )
    .await?;
    crate::fail_point!("after_create_upload");
    // Size (for the part size) and row estimate (for progress): the catalog's, no scan.
    let (estimated, estimated_rows) = client
        .query_one(
            "SELECT pg_total_relation_size(c.oid), c.reltuples::bigint FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&partition.quoted()],
        )
        .await
        .map(|r| (r.get::<_, Option<i64>>(0).unwrap_or(0), r.get::<_, Option<i64>>(1).unwrap_or(-1)))
        .unwrap_or((0, -1));
    let progress = Progress::start(
        format!("archive {partition}"),
        Measure::Rows,
        u64::try_from(estimated_rows).ok(),
        settings.progress_log_every(),
    );
    let streamed = pipeline::archive_stream(
        client,
        &pipeline::copy_out_sql(partition, format, parquet.as_ref(), None),
        store,
        key,
        &upload_id,
        format,
        compression,
        settings.compression_level,
        parquet,
        settings.part_size_for(estimated.max(0) as u64),
        settings.parts_in_flight,
        progress,
    )
    .await;
    let completed = match streamed {
        // What was streamed is recorded before the object exists, so a run killed right after S3
        // completes it finds the object described by its own row (token, size, checksum).
        Ok(up) => match exec(
            client,
            &manifest::set_state_sql(
                &policy.table,
                &partition.name,
                "uploading",
                &[
                    ("row_count", Some(up.rows.to_string())),
                    ("raw_bytes", Some(up.raw_bytes.to_string())),
                    ("compressed_bytes", Some(up.compressed_bytes.to_string())),
                    ("sha256", Some(up.sha256.clone())),
                    ("checksum_composite", Some(up.composite_sha256.clone())),
                ],
            ),
        )
        .await
        {
            Ok(()) => {
                crate::fail_point!("before_complete");
                store.complete_upload(key, &upload_id, &up.parts).await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let (etag, version_id) = match completed {
        Ok(WriteOnce::Written(ids)) => ids,
        Ok(WriteOnce::Exists) => {
            // Another writer completed an object at this key while we streamed: ours is dropped.
            let _ = store.abort_upload(key, &upload_id).await;
            let rec =
                manifest::load(&*client, &policy.table, &partition.name).await?.context("manifest row vanished")?;
            let head = store.head(key, None).await?.context("the key that refused our upload holds no object")?;
            return adopt_existing(client, policy, partition, archiver, &rec, target, &head).await;
        }
        Err(e) => {
            if let Err(abort) = store.abort_upload(key, &upload_id).await {
                tracing::error!(error = %format!("{abort:#}"), %key, "could not abort the multipart upload; the next run aborts it");
            }
            let _ = exec(
                client,
                &manifest::set_state_sql(
                    &policy.table,
                    &partition.name,
                    "detached",
                    &[("last_error", Some(format!("{e:#}"))), ("multipart_upload_id", None)],
                ),
            )
            .await;
            return Err(e);
        }
    };
    crate::fail_point!("after_complete");
    record_uploaded(client, policy, partition, etag, version_id, &[]).await
}

/// Records `uploaded` with the object's ETag and version (and any figures in `extra`).
async fn record_uploaded(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    etag: Option<String>,
    version_id: Option<String>,
    extra: &[(&str, Option<String>)],
) -> anyhow::Result<()> {
    let mut sets = vec![
        ("etag", etag),
        ("version_id", version_id),
        ("multipart_upload_id", None),
        ("uploaded_at", Some("now()".to_string())),
    ];
    sets.extend(extra.iter().cloned());
    exec(client, &manifest::set_state_sql(&policy.table, &partition.name, "uploaded", &sets)).await?;
    crate::fail_point!("after_upload");
    Ok(())
}

/// An object already sits at the archive's key, and archives are never replaced. It is adopted as
/// this partition's archive only when it provably is one:
/// - it carries this row's upload token and the size and composite checksum recorded before its
///   upload was completed: this partition's own upload, completed by a run that died before it
///   could record `uploaded`; or
/// - its decompressed content is byte for byte what a COPY of the (frozen) table sends now: it
///   holds exactly these rows, whoever wrote it (this partition's upload whose record a database
///   crash lost, or a clone's archive of identical rows).
///
/// Anything else is another database's or deployment's archive of a partition with this name:
/// an integrity error naming both, nothing written, nothing dropped.
async fn adopt_existing(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    rec: &ManifestRecord,
    target: &Target,
    head: &ObjectHead,
) -> anyhow::Result<()> {
    let key = &target.key;
    let bucket = &archiver.store.settings.bucket;
    // Where the archive is, whichever way it is adopted (a run that adopts at its start has not
    // recorded `uploading`).
    let location = [
        ("bucket", Some(bucket.clone())),
        ("object_key", Some(key.clone())),
        ("format", Some(target.format.as_str().to_string())),
        ("compression", Some(target.compression.as_str().to_string())),
    ];
    let token_matches =
        rec.upload_token.is_some() && head.metadata.get(store::META_UPLOAD_TOKEN) == rec.upload_token.as_ref();
    let class = head.storage_class.as_deref().unwrap_or("STANDARD");
    if token_matches
        && Some(head.size) == rec.compressed_bytes
        && head.checksum_sha256.is_some()
        && head.checksum_sha256 == rec.checksum_composite
    {
        tracing::info!(%key, "the object at the key is this partition's own completed upload: recorded");
        return record_uploaded(client, policy, partition, head.etag.clone(), head.version_id.clone(), &location).await;
    }
    // Compare contents: the object read back (checking it decompresses and parses) against a COPY
    // of the frozen table, in the same format. Only an object S3 serves now and that carries an S3
    // SHA-256 can be adopted (a cold object at the key is an old archive, not a fresh upload of
    // this run's partition; one without a checksum could never pass the HEAD check).
    let readable =
        retrieval::access(head.storage_class.as_deref(), head.archive_status.as_deref(), head.restore.as_deref());
    let parquet = target.format == Format::Parquet;
    if readable != Ok(Access::Readable) || head.checksum_sha256.is_none() || parquet {
        let why = match readable {
            Err(unknown) => unknown,
            // A Parquet file's bytes depend on the writer, not only on the rows: no COPY of
            // the table can be compared with it.
            Ok(Access::Readable) if parquet => "a Parquet object is adopted only by its upload token".to_string(),
            Ok(Access::Readable) => "it has no S3 SHA-256 checksum".to_string(),
            Ok(_) => format!("it is in {class}, not readable without a retrieval"),
        };
        return refuse(client, policy, partition, &format!(
            "s3://{bucket}/{key} already holds an object that this run did not write ({}) and whose content cannot \
             be compared: {why}. Archives are never replaced, so nothing was written and nothing is dropped; if another \
             database or deployment archives to this bucket, give each its own ARCHIVE_PREFIX.",
            super::prepare::writer(head, rec, false)
        ))
        .await;
    }
    let source = Source {
        key,
        version_id: head.version_id.as_deref(),
        format: target.format,
        compression: target.compression,
        columns: &rec.columns,
    };
    let every = archiver.store.settings.progress_log_every();
    let progress =
        Progress::start(format!("read s3://{bucket}/{key}"), Measure::Bytes, Some(head.size.max(0) as u64), every);
    let object = pipeline::scan_object(&archiver.store, source, Hashes::Content, progress)
        .await
        .with_context(|| format!("read the object already at s3://{bucket}/{key}"))?;
    let (rows, raw_bytes, raw_sha256) =
        pipeline::copy_digest(client, &pipeline::copy_out_sql(partition, target.format, None, None), target.format)
            .await?;
    if object.raw_sha256.as_deref() == Some(raw_sha256.as_str())
        && object.rows_counted == rows
        && object.compressed_bytes == head.size as u64
    {
        tracing::warn!(%key, rows, "the object at the key holds exactly this partition's rows: adopted as its archive");
        return record_uploaded(
            client,
            policy,
            partition,
            head.etag.clone(),
            head.version_id.clone(),
            &[
                &location[..],
                &[
                    ("row_count", Some(rows.to_string())),
                    ("raw_bytes", Some(raw_bytes.to_string())),
                    ("compressed_bytes", Some(head.size.to_string())),
                    ("sha256", Some(object.sha256)),
                    ("checksum_composite", head.checksum_sha256.clone()),
                    ("upload_token", None),
                ],
            ]
            .concat(),
        )
        .await;
    }
    refuse(
        client,
        policy,
        partition,
        &format!(
            "s3://{bucket}/{key} already holds another archive ({}; {} rows, {} bytes) whose rows differ from \
             {partition} of this database (system_identifier {}; {rows} rows): archives are never replaced, so nothing \
             was written and nothing is dropped. If another database (a clone restored from a snapshot, a second \
             deployment) archives to this bucket, give each its own ARCHIVE_PREFIX.",
            super::prepare::writer(head, rec, true),
            object.rows_counted,
            head.size,
            rec.system_identifier.as_deref().unwrap_or("unknown"),
        ),
    )
    .await
}

/// Stops this partition's archive for good reasons: the row goes back to `detached` with the
/// error and without a key or figures (so a run under another ARCHIVE_PREFIX starts afresh), and
/// an integrity error says why. The partition stays detached and frozen: nothing is dropped.
async fn refuse(client: &Client, policy: &TablePolicy, partition: &QualifiedName, message: &str) -> anyhow::Result<()> {
    let cleared = [
        "object_key",
        "multipart_upload_id",
        "upload_token",
        "row_count",
        "raw_bytes",
        "compressed_bytes",
        "sha256",
        "checksum_composite",
        "etag",
        "version_id",
        "uploaded_at",
    ];
    let mut sets: Vec<(&str, Option<String>)> = cleared.iter().map(|c| (*c, None)).collect();
    sets.push(("last_error", Some(message.to_string())));
    exec(client, &manifest::set_state_sql(&policy.table, &partition.name, "detached", &sets)).await?;
    bail!(Error::integrity(message.to_string()))
}

/// Phase 4: before anything can be dropped, the object is there as recorded, and the table holds
/// exactly the rows streamed (counted on the second connection if that count finished, on this
/// one otherwise).
async fn verify(
    client: &Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    side_count: Option<AbortOnDrop<anyhow::Result<i64>>>,
) -> anyhow::Result<()> {
    check::by_head(archiver, rec).await?.map_err(|m| anyhow::Error::new(Error::integrity(m)))?;
    let side = side_result(side_count, "the row count").await;
    let count: i64 = match side {
        Some(n) => n,
        None => client.query_one(&count_sql(&rec.partition()), &[]).await.context("count the partition's rows")?.get(0),
    };
    if Some(count) != rec.row_count {
        bail!(Error::integrity(format!(
            "{}: the archive holds {} rows but the table has {count}: not verified, nothing dropped",
            rec.partition(),
            check::shown(rec.row_count)
        )));
    }
    check::by_statistics(client, archiver, rec)
        .await?
        .map_err(|m| anyhow::Error::new(Error::integrity(format!("{m}: not verified, nothing dropped"))))
}
