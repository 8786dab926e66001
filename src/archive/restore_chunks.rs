//! Restore of a chunked archive: the chunks stream in parallel (`ARCHIVE_STREAMS` connections)
//! into one staging table, each in its own transaction that commits only when the chunk's SHA-256
//! and row counts match its manifest entry; the table appears under its final name only when every
//! chunk is in (one short transaction that renames the staging table). Any failure drops the
//! staging table; a staging table left by a killed restore is dropped by the next one (it is
//! recognised by its comment, never by its name alone). One restore per staging table at a time
//! (an advisory lock), and every chunk transaction and the rename check that the staging table is
//! still the one this restore created (its oid).

use crate::archive::manifest::{ChunkRecord, ManifestRecord};
use crate::archive::pipeline::{self, Source};
use crate::archive::progress::{Measure, Progress};
use crate::archive::Archiver;
use crate::error::{Error, ErrorKind};
use crate::pg::lock::{self, LockClass};
use crate::plan::chunks;
use crate::plan::ident::{quote_ident, quote_literal, QualifiedName};
use anyhow::Context;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::Client;

/// How long dropping a leftover staging table waits for its lock.
const LEFTOVER_LOCK_TIMEOUT_MS: u64 = 5000;

/// The comment that marks a staging table as this tool's (and safe to drop when left behind).
const STAGING_COMMENT: &str = "partition-archiver restore staging table: dropped by the next restore if left behind";

/// `{partition}__pa_restoring`, cut so it stays a valid identifier (63 bytes).
pub fn staging_name(partition: &str) -> String {
    const SUFFIX: &str = "__pa_restoring";
    let mut base = partition.to_string();
    while base.len() + SUFFIX.len() > 63 {
        base.pop();
    }
    format!("{base}{SUFFIX}")
}

fn wrap(e: anyhow::Error) -> Error {
    Error::transient(e)
}

/// Drops `staging` under a lock_timeout: a session of a failed or killed load may still hold it
/// (invariant 4), and waiting for it could be waiting forever.
async fn drop_staging(client: &mut Client, staging: &QualifiedName) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LEFTOVER_LOCK_TIMEOUT_MS}ms'")).await?;
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", staging.quoted())).await?;
    tx.commit().await
}

/// Drops a staging table a killed restore left behind (only if it carries this tool's comment),
/// under a lock_timeout: a killed restore's session may still hold it (invariant 4).
async fn drop_leftover(client: &mut Client, staging: &QualifiedName) -> Result<(), Error> {
    let comment: Option<Option<String>> = client
        .query_opt(
            "SELECT obj_description(to_regclass($1), 'pg_class') WHERE to_regclass($1) IS NOT NULL",
            &[&staging.quoted()],
        )
        .await
        .map_err(|e| wrap(e.into()))?
        .map(|r| r.get(0));
    match comment {
        None => Ok(()),
        Some(Some(c)) if c == STAGING_COMMENT => {
            tracing::warn!(%staging, "dropping the staging table of an interrupted restore");
            drop_staging(client, staging).await.map_err(|e| {
                wrap(
                    anyhow::Error::new(e).context(format!(
                        "drop {staging}, left by an interrupted restore (its session may still be open)"
                    )),
                )
            })
        }
        Some(_) => Err(Error::invalid(format!(
            "{staging} exists and is not a partition-archiver staging table: restore refuses to touch it"
        ))),
    }
}

/// Restores every chunk of `rec` into `target` (which must not exist). `columns` is the column
/// list of the CREATE TABLE. Returns the rows restored.
pub async fn restore_chunks(
    client: &mut Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    target: &QualifiedName,
    columns: &str,
) -> Result<u64, Error> {
    let staging = QualifiedName::new(&target.schema, staging_name(&target.name));
    // One restore per staging table: a second restore of this partition (or of one whose name
    // shares the staging name's first 49 bytes) is refused, never let into the first's table.
    if let lock::Locked::Held(holder) =
        lock::try_lock(client, LockClass::Restore, &staging.quoted()).await.map_err(wrap)?
    {
        let by = holder.map(|h| format!(" (held by {h})")).unwrap_or_default();
        return Err(Error::new(
            ErrorKind::AlreadyRunning,
            format!("another restore is using {staging}{by}: run this one when it has finished"),
        ));
    }
    let result = restore_locked(client, archiver, rec, target, &staging, columns).await;
    if let Err(e) = lock::unlock(client, LockClass::Restore, &staging.quoted()).await {
        tracing::warn!(error = %e, "could not release the restore lock (it ends with the session)");
    }
    result
}

async fn restore_locked(
    client: &mut Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    target: &QualifiedName,
    staging: &QualifiedName,
    columns: &str,
) -> Result<u64, Error> {
    drop_leftover(client, staging).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {staging} ({columns}); COMMENT ON TABLE {staging} IS {comment}",
            schema = quote_ident(&target.schema),
            staging = staging.quoted(),
            comment = quote_literal(STAGING_COMMENT),
        ))
        .await
        .map_err(|e| wrap(anyhow::Error::new(e).context(format!("create {staging}"))))?;
    // The workers load into this very table (its oid), not whatever has its name by then.
    let oid: u32 =
        client.query_one("SELECT to_regclass($1)::oid", &[&staging.quoted()]).await.map_err(|e| wrap(e.into()))?.get(0);
    let loaded = load_chunks(archiver, rec, staging, oid).await.and_then(|rows| {
        if Some(rows as i64) == rec.row_count {
            Ok(rows)
        } else {
            Err(Error::integrity(format!(
                "restore of {}: {rows} rows in the chunks, the manifest says {}: nothing was kept",
                rec.partition_name,
                crate::archive::check::shown(rec.row_count)
            )))
        }
    });
    // One short transaction: the table appears under its name with every chunk in it.
    let renamed = match loaded {
        Ok(rows) => rename(client, staging, target, oid).await.map(|()| rows),
        Err(e) => Err(e),
    };
    if renamed.is_err() {
        if let Err(d) = drop_staging(client, staging).await {
            let d = anyhow::Error::new(d);
            tracing::error!(%staging, error = format!("{d:#}"), "could not drop the staging table; the next restore drops it");
        }
    }
    renamed
}

/// Renames the staging table (still the one created, by oid) to `target`, in one transaction.
async fn rename(client: &mut Client, staging: &QualifiedName, target: &QualifiedName, oid: u32) -> Result<(), Error> {
    let tx = client.transaction().await.map_err(|e| wrap(e.into()))?;
    tx.batch_execute(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", staging.quoted()))
        .await
        .map_err(|e| wrap(anyhow::Error::new(e).context(format!("lock {staging}"))))?;
    let same: bool = tx
        .query_one("SELECT to_regclass($1)::oid = $2", &[&staging.quoted(), &oid])
        .await
        .map_err(|e| wrap(e.into()))?
        .get::<_, Option<bool>>(0)
        .unwrap_or(false);
    if !same {
        return Err(Error::integrity(format!("{staging} was replaced during the restore: nothing was kept")));
    }
    tx.batch_execute(&format!(
        "ALTER TABLE {staging} RENAME TO {name}; COMMENT ON TABLE {target} IS NULL",
        staging = staging.quoted(),
        name = quote_ident(&target.name),
        target = target.quoted(),
    ))
    .await
    .map_err(|e| wrap(anyhow::Error::new(e).context(format!("rename {staging} to {target}"))))?;
    tx.commit().await.map_err(|e| wrap(e.into()))
}

/// Streams every chunk into `staging` on up to `ARCHIVE_STREAMS` connections, each chunk in its
/// own verified transaction. Stops at the first failure.
async fn load_chunks(
    archiver: &Archiver,
    rec: &ManifestRecord,
    staging: &QualifiedName,
    oid: u32,
) -> Result<u64, Error> {
    let objects: Vec<ChunkRecord> = rec.current_chunks().cloned().collect();
    let format = rec.format().map_err(wrap)?;
    let compression = rec.compression().map_err(wrap)?;
    let db = archiver.db.clone().ok_or_else(|| Error::invalid("a chunked restore needs database settings"))?;
    let streams = chunks::streams_for(archiver.store.settings.streams, objects.len());
    let queue = Arc::new(Mutex::new(VecDeque::from(objects)));
    let stop = Arc::new(AtomicBool::new(false));
    let copy_sql = format!("COPY {} FROM STDIN {}", staging.quoted(), format.copy_from_options());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (db, queue, stop, copy_sql, archiver) =
            (db.clone(), queue.clone(), stop.clone(), copy_sql.clone(), archiver.clone());
        let partition = rec.partition_name.clone();
        let staging = staging.clone();
        let columns = rec.columns.clone();
        workers.spawn(async move {
            let mut conn = db.connect().await.context("connect a restore stream").map_err(wrap)?;
            let mut rows = 0u64;
            loop {
                if stop.load(Ordering::SeqCst) {
                    return Ok(rows);
                }
                let Some(chunk) = queue.lock().expect("queue").pop_front() else {
                    return Ok(rows);
                };
                let (no, key, version) = (chunk.chunk_no, &chunk.object_key, chunk.version_id.as_deref());
                let (sha, want_rows) = (chunk.sha256.as_deref().unwrap_or_default(), chunk.row_count.unwrap_or(-1));
                let result: Result<u64, Error> = async {
                    let tx = conn.transaction().await.map_err(|e| wrap(e.into()))?;
                    let same: Option<bool> = tx
                        .query_one("SELECT to_regclass($1)::oid = $2", &[&staging.quoted(), &oid])
                        .await
                        .map_err(|e| wrap(e.into()))?
                        .get(0);
                    if same != Some(true) {
                        return Err(Error::integrity(format!(
                            "{staging} is no longer the table this restore created: nothing was kept"
                        )));
                    }
                    let source = Source { key, version_id: version, format, compression, columns: &columns };
                    let progress = Progress::start(
                        format!("restore {partition} chunk {no}"),
                        Measure::Bytes,
                        chunk.compressed_bytes.map(|b| b.max(0) as u64),
                        archiver.store.settings.progress_log_every(),
                    );
                    let got = pipeline::restore_stream(&tx, &copy_sql, &archiver.store, source, progress, archiver.reply_bound())
                        .await
                        .map_err(|e| pipeline::load_failure(&format!("restore of {partition} chunk {no}"), e))?;
                    if got.sha256 != sha {
                        return Err(Error::integrity(format!(
                            "chunk {no} object s3://{}/{key} has SHA-256 {}, the manifest says {sha}: nothing was kept",
                            archiver.store.settings.bucket, got.sha256
                        )));
                    }
                    if got.rows_copied as i64 != want_rows || got.rows_counted as i64 != want_rows {
                        return Err(Error::integrity(format!(
                            "restore of {partition} chunk {no}: {} rows copied ({} counted in the stream), the manifest \
                             says {want_rows}: nothing was kept",
                            got.rows_copied, got.rows_counted
                        )));
                    }
                    crate::fail_point!(
                        "restore_chunk_before_commit",
                        Err(Error::transient(anyhow::anyhow!("failpoint restore_chunk_before_commit")))
                    );
                    tx.commit().await.map_err(|e| wrap(e.into()))?;
                    Ok(got.rows_copied)
                }
                .await;
                match result {
                    Ok(n) => rows += n,
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
        });
    }
    let (mut total, mut first_error) = (0u64, None);
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(e) => first_error = first_error.or(Some(wrap(anyhow::anyhow!("restore worker panicked: {e}")))),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_stay_valid_identifiers() {
        assert_eq!(staging_name("orders_2026_03"), "orders_2026_03__pa_restoring");
        let long = "p".repeat(63);
        let s = staging_name(&long);
        assert_eq!(s.len(), 63);
        assert!(s.ends_with("__pa_restoring"));
    }
}
