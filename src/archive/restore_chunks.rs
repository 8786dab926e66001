//! The one load path of every restore: an archive is a list of objects (its chunks, or its one
//! object as a plan of one), loaded in parallel (`ARCHIVE_STREAMS` connections) into one staging
//! table, each in its own transaction that commits only when the object's SHA-256 and row counts
//! match its manifest entry, together with its `partition_archiver.restore_loaded` row. The table
//! appears under its final name only when every object is in (one short transaction that checks
//! the loaded rows against the manifest, renames the staging table and forgets its rows).
//!
//! # Units and deadlines
//! No object is started that the time left (`--time-budget`, `"time_budget_s"`, a Lambda's
//! deadline) would not cover ([`chunks::worth_starting`], from the rate this restore measured).
//! A restore that stops keeps its staging table and what is loaded in it, and reports
//! [`Loaded::Unfinished`]; the next restore of the partition goes on from the objects without a
//! `restore_loaded` row. A time budget too short to load even the next object is refused before
//! anything changes.
//!
//! # Fan-out
//! [`Step::Plan`] sets up (or finds) the staging table and lists the objects left, [`Step::Unit`]
//! loads one of them (units of one restore hold the staging lock shared and load side by side; a
//! unit of another plan, an object the archive lacks, or a missing staging table is refused with
//! nothing changed), and [`Step::Whole`], the final step, loads what is left and renames.
//!
//! # Crash consistency
//! - Killed before the staging table is committed: nothing exists.
//! - Killed while loading: the object's transaction rolls back with its `restore_loaded` row; what
//!   committed before stays, and the next restore goes on from there.
//! - Killed around the rename: it is one transaction; either the staging table (and its rows) is
//!   still there to go on from, or the table has its name.
//!
//! A staging table is recognised as this tool's by its comment (never by its name alone), which
//! carries the restore id its `restore_loaded` rows are keyed by and the archive it restores
//! (`schema.table/partition`): one of another partition whose staging name is the same is refused
//! with nothing changed (that restore may be between two steps of its fan-out); one whose loaded
//! objects are not this archive's (another prefix's archive of the same partition) is dropped and
//! the restore starts afresh. A failure that retrying cannot mend (a checksum or row count that
//! differs) drops the staging table; a transient one keeps it. One restore per staging table at a
//! time (an advisory lock), and every load and the rename check that the staging table is still the
//! one this restore found or created (its oid).

use crate::archive::manifest::{ArchiveObject, ManifestRecord};
use crate::archive::pipeline::{self, CopyIn, Hashes, Source};
use crate::archive::progress::Progress;
use crate::archive::{workers, Archiver};
use crate::error::{Error, ErrorKind};
use crate::pg::catalog::Column;
use crate::pg::lock::{self, LockClass};
use crate::plan::chunks;
use crate::plan::ident::{quote_ident, quote_literal, QualifiedName};
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long dropping a leftover staging table, claiming an object and renaming wait for a lock.
const STAGING_LOCK_TIMEOUT_MS: u64 = 5000;

/// The start of the comment that marks a staging table as this tool's (and safe to drop when left
/// behind); the restore id follows it.
const STAGING_COMMENT: &str = "partition-archiver restore staging table: dropped by the next restore if left behind";

/// A restore keeps this much time (at most a tenth of its budget) for the rename and report.
const FINISH_MARGIN: Duration = Duration::from_secs(10);

/// `{partition}__pa_restoring`, cut so it stays a valid identifier (63 bytes).
pub fn staging_name(partition: &str) -> String {
    const SUFFIX: &str = "__pa_restoring";
    let mut base = partition.to_string();
    while base.len() + SUFFIX.len() > 63 {
        base.pop();
    }
    format!("{base}{SUFFIX}")
}

/// The staging table's comment for restore `id` of `archive` ([`archive_of`]): two restores whose
/// staging names are the same (partitions of the same name, or whose names share their first 49
/// bytes, into one schema) never take each other's table for their own, even between the steps
/// of a fan-out, when no lock is held.
fn staging_comment(id: &str, archive: &str) -> String {
    format!("{STAGING_COMMENT} (restore {id} of {archive})")
}

/// What a staging table's comment says: the restore id, and the archive (absent in a comment of
/// an earlier version).
fn staging_mark(comment: &str) -> Option<(&str, Option<&str>)> {
    let inner = comment.strip_prefix(STAGING_COMMENT)?.strip_prefix(" (restore ")?.strip_suffix(')')?;
    Some(inner.split_once(" of ").map_or((inner, None), |(id, archive)| (id, Some(archive))))
}

/// `schema.table/partition`: which archive a staging table is being restored from.
fn archive_of(rec: &ManifestRecord) -> String {
    format!("{}/{}", rec.table(), rec.partition_name)
}

/// The comment a restored table keeps until it is attached, saying where it came from (the archive
/// and its first object's SHA-256): a `restore --attach` that finds its table under it and not
/// attached (the attach refused, or the run killed between the rename and the attach) attaches it
/// instead of refusing to restore it again. The attach clears it: a table attached and detached
/// again later is no longer the restore.
fn restored_comment(rec: &ManifestRecord) -> String {
    let first = rec.objects().first().and_then(|o| o.sha256).unwrap_or_default().to_string();
    format!("partition-archiver: restored from the archive of {} (SHA-256 {first}), not attached", archive_of(rec))
}

/// The comment of table `name` and whether it is a partition; `None` when there is no such table.
/// The marks this module leaves on tables are comments: a staging table's, a restored one's.
async fn comment_of(client: &Client, name: &QualifiedName) -> Result<Option<(Option<String>, bool)>, Error> {
    let found = client
        .query_opt(
            "SELECT obj_description(c.oid, 'pg_class'), c.relispartition FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&name.quoted()],
        )
        .await?;
    Ok(found.map(|r| (r.get(0), r.get(1))))
}

/// Is there a table at `target`, and is it this archive's restore, not attached yet (its
/// [`restored_comment`], and not a partition)? `None`: no table there.
pub async fn restored_unattached(
    client: &Client,
    rec: &ManifestRecord,
    target: &QualifiedName,
) -> Result<Option<bool>, Error> {
    let found = comment_of(client, target).await?;
    Ok(found.map(|(comment, is_partition)| !is_partition && comment == Some(restored_comment(rec))))
}

/// One object to load: the `ArchiveObject` with the number its `restore_loaded` row has.
#[derive(Debug, Clone)]
struct Unit {
    no: i32,
    key: String,
    version_id: Option<String>,
    sha256: String,
    rows: i64,
    raw_bytes: u64,
    compressed_bytes: Option<u64>,
}

impl Unit {
    fn of(obj: &ArchiveObject<'_>) -> Self {
        Unit {
            no: obj.chunk_no.unwrap_or(1),
            key: obj.key.to_string(),
            version_id: obj.version_id.map(str::to_string),
            sha256: obj.sha256.unwrap_or_default().to_string(),
            rows: obj.row_count.unwrap_or(-1),
            raw_bytes: obj.raw_bytes.or(obj.compressed_bytes).unwrap_or(0).max(0) as u64,
            compressed_bytes: obj.compressed_bytes.map(|b| b.max(0) as u64),
        }
    }
}

/// Which part of a restore this call does: all of it, or one step of a fan-out (a Step Functions
/// Map: the plan, then one unit per object side by side, then [`Step::Whole`] as the final step,
/// which loads whatever a unit left and renames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Whole,
    /// Set up (or find) the staging table and list the objects left to load.
    Plan,
    /// Load one object into the staging table of restore `restore_id`.
    Unit {
        chunk: i32,
        restore_id: &'a str,
    },
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Every object is in and the table has its name: the rows restored.
    Complete(u64),
    /// Stopped with objects left; the staging table keeps what is loaded.
    Unfinished { done: usize, total: usize, why: String },
    /// A fan-out's plan: the staging table of restore `restore_id` is ready, and these objects
    /// (numbers) are left to load, one unit each.
    Planned { restore_id: String, left: Vec<i32>, total: usize },
    /// One unit: its object is in the staging table, loaded now (`already`: by another unit or
    /// an earlier call). `rows`: the object's rows.
    Unit { rows: i64, already: bool },
}

/// What every step of one restore works with: the archive, where it goes, and the staging table
/// on the way there.
#[derive(Clone, Copy)]
struct Restore<'a> {
    archiver: &'a Archiver,
    rec: &'a ManifestRecord,
    target: &'a QualifiedName,
    staging: &'a QualifiedName,
}

/// Drops `staging` and forgets its loaded objects, under a lock_timeout: a session of a failed or
/// killed load may still hold it (invariant 4), and waiting for it could be waiting forever.
async fn drop_staging(
    client: &mut Client,
    staging: &QualifiedName,
    id: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{STAGING_LOCK_TIMEOUT_MS}ms'")).await?;
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", staging.quoted())).await?;
    if let Some(id) = id {
        tx.execute("DELETE FROM partition_archiver.restore_loaded WHERE restore_id = $1", &[&id]).await?;
    }
    tx.commit().await
}

/// The staging table a stopped restore of this archive left: its restore id and the objects
/// loaded in it (number -> SHA-256). Err for a table of that name that is not this tool's, or
/// that a restore of another archive uses (nothing is changed: it may be under way).
async fn leftover(client: &Client, r: Restore<'_>) -> Result<Option<(String, Vec<(i32, String)>)>, Error> {
    let staging = r.staging;
    let comment = match comment_of(client, staging).await? {
        None => return Ok(None),
        Some((Some(c), _)) if c.starts_with(STAGING_COMMENT) => c,
        Some(_) => {
            return Err(Error::invalid(format!(
                "{staging} exists and is not a partition-archiver staging table: restore refuses to touch it"
            )))
        }
    };
    // A staging table of an earlier version has no restore id: nothing of it can be resumed.
    let (id, archive) = staging_mark(&comment).unwrap_or_default();
    let ours = archive_of(r.rec);
    if let Some(other) = archive.filter(|a| *a != ours) {
        return Err(Error::new(
            ErrorKind::AlreadyRunning,
            format!(
                "{staging} is the staging table of a restore of {other}, whose name is this restore's too: run this \
                 one when that one has finished, or restore into another schema (if that restore was abandoned, \
                 DROP TABLE {staging}); nothing was changed"
            ),
        ));
    }
    let id = id.to_string();
    let loaded = client
        .query("SELECT object_no, sha256 FROM partition_archiver.restore_loaded WHERE restore_id = $1", &[&id])
        .await
        .context("read what the stopped restore loaded")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Some((id, loaded)))
}

/// Does `step` of restoring the objects of `rec` into `target` (which must not exist), within the
/// archiver's deadline.
pub async fn restore_objects(
    client: &mut Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    target: &QualifiedName,
    step: Step<'_>,
) -> Result<Loaded, Error> {
    let staging = QualifiedName::new(&target.schema, staging_name(&target.name));
    // One restore per staging table: a second restore of this partition (or of one whose name
    // shares the staging name's first 49 bytes) is refused, never let into the first's table. The
    // units of one fan-out hold the lock shared: side by side, and never beside a whole restore or
    // a plan.
    let hold = if matches!(step, Step::Unit { .. }) { lock::Hold::Shared } else { lock::Hold::Exclusive };
    if let lock::Locked::Held(holder) = lock::try_lock_as(client, LockClass::Restore, &staging.quoted(), hold).await? {
        let by = holder.map(|h| format!(" (held by {h})")).unwrap_or_default();
        return Err(Error::new(
            ErrorKind::AlreadyRunning,
            format!("another restore is using {staging}{by}: run this one when it has finished"),
        ));
    }
    let r = Restore { archiver, rec, target, staging: &staging };
    let result = match step {
        Step::Whole => restore_locked(client, r).await,
        Step::Plan => stage(client, r, false).await.map(|s| Loaded::Planned {
            restore_id: s.id,
            left: s.todo.iter().map(|u| u.no).collect(),
            total: s.total,
        }),
        Step::Unit { chunk, restore_id } => load_unit(client, r, chunk, restore_id).await,
    };
    if let Err(e) = lock::unlock_as(client, LockClass::Restore, &staging.quoted(), hold).await {
        tracing::warn!(error = %e, "could not release the restore lock (it ends with the session)");
    }
    result
}

/// A staging table ready to load into: its restore id and oid, the objects left, of `total`.
struct Staged {
    id: String,
    oid: u32,
    todo: Vec<Unit>,
    total: usize,
}

/// Refuses a database without `restore_loaded` (this version's migrations).
async fn require_migrated(client: &Client) -> Result<(), Error> {
    let migrated: bool =
        client.query_one("SELECT to_regclass('partition_archiver.restore_loaded') IS NOT NULL", &[]).await?.get(0);
    if !migrated {
        return Err(Error::invalid(
            "partition_archiver.restore_loaded does not exist: run `partition-archiver migrate` (this version's \
             migrations) before restoring; nothing was changed",
        ));
    }
    Ok(())
}

/// Finds the staging table a stopped restore of this archive left (going on with it), or creates
/// one (dropping a leftover of another archive). With `loads_next`, a time left too short to load
/// the next object is refused first, with nothing changed.
async fn stage(client: &mut Client, r: Restore<'_>, loads_next: bool) -> Result<Staged, Error> {
    let Restore { archiver, rec, staging, .. } = r;
    require_migrated(client).await?;
    let units: Vec<Unit> = rec.objects().iter().map(Unit::of).collect();
    let total = units.len();
    // Go on with a stopped restore of this archive: its staging table holds only objects of it.
    let found = leftover(client, r).await?;
    let resumable = found.as_ref().is_some_and(|(id, loaded)| {
        !id.is_empty() && loaded.iter().all(|(no, sha)| units.iter().any(|u| u.no == *no && u.sha256 == *sha))
    });
    let loaded: Vec<i32> = match (&found, resumable) {
        (Some((_, loaded)), true) => loaded.iter().map(|(no, _)| *no).collect(),
        _ => Vec::new(),
    };
    let todo: Vec<Unit> = units.iter().filter(|u| !loaded.contains(&u.no)).cloned().collect();
    // A budget that would not cover the next object is refused before anything changes.
    if let Some(next) = todo.first().filter(|_| loads_next) {
        if !chunks::worth_starting(archiver.remaining(), next.raw_bytes, None, archiver.margin(FINISH_MARGIN)) {
            return Err(Error::invalid(format!(
                "the time left ({:.0} s) would not cover loading object {} of {} ({} bytes before compression) and \
                 renaming: give restore a longer --time-budget; nothing was changed",
                archiver.remaining().unwrap_or_default().as_secs_f64(),
                next.no,
                rec.partition_name,
                next.raw_bytes
            )));
        }
    }
    let id = match (found, resumable) {
        (Some((id, _)), true) => {
            tracing::info!(%staging, loaded = loaded.len(), total, "going on with a stopped restore");
            id
        }
        (found, _) => {
            if let Some((old, _)) = found {
                tracing::warn!(%staging, "dropping the staging table of an interrupted restore of another archive");
                drop_staging(client, staging, Some(&old)).await.with_context(|| {
                    format!("drop {staging}, left by an interrupted restore (its session may still be open)")
                })?;
            }
            create_staging(client, r).await?
        }
    };
    // The workers load into this very table (its oid), not whatever has its name by then.
    let oid: u32 = client.query_one("SELECT to_regclass($1)::oid", &[&staging.quoted()]).await?.get(0);
    Ok(Staged { id, oid, todo, total })
}

/// The whole restore: stage, load what is left within the deadline, rename once all is in.
async fn restore_locked(client: &mut Client, r: Restore<'_>) -> Result<Loaded, Error> {
    let Staged { id, oid, todo, total } = stage(client, r, true).await?;
    let staging = r.staging;
    let stopped = load(r, oid, &id, todo).await;
    let result = match stopped {
        Ok(None) => rename(client, r, oid, &id, total).await.map(Loaded::Complete),
        Ok(Some(why)) => {
            let done: i64 = client
                .query_one("SELECT count(*) FROM partition_archiver.restore_loaded WHERE restore_id = $1", &[&id])
                .await?
                .get(0);
            return Ok(Loaded::Unfinished { done: done as usize, total, why });
        }
        Err(e) => Err(e),
    };
    // What retrying cannot mend leaves nothing behind; a transient failure keeps what is loaded.
    if let Err(e) = &result {
        if !matches!(e.kind, ErrorKind::Transient | ErrorKind::AlreadyRunning) {
            if let Err(d) = drop_staging(client, staging, Some(&id)).await {
                let d = anyhow::Error::new(d);
                tracing::error!(%staging, error = format!("{d:#}"), "could not drop the staging table; the next restore drops it");
            }
        }
    }
    result
}

/// Creates the staging table, with the archive's columns (their names and types checked by
/// `restore::check_manifest`) and a new restore id in its comment; returns the id.
async fn create_staging(client: &Client, r: Restore<'_>) -> Result<String, Error> {
    let Restore { rec, target, staging, .. } = r;
    let not_null = |c: &Column| if c.not_null { " NOT NULL" } else { "" };
    let columns: Vec<String> =
        rec.columns.iter().map(|c| format!("{} {}{}", quote_ident(&c.name), c.type_name, not_null(c))).collect();
    let id = crate::archive::store::new_upload_token();
    client
        .batch_execute(&format!(
            "BEGIN; CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {staging} ({columns}); \
             COMMENT ON TABLE {staging} IS {comment}; COMMIT",
            columns = columns.join(", "),
            schema = quote_ident(&target.schema),
            staging = staging.quoted(),
            comment = quote_literal(&staging_comment(&id, &archive_of(rec))),
        ))
        .await
        .context(format!("create {staging}"))?;
    Ok(id)
}

/// Renames the staging table (still the one loaded, by oid) to `target` once every object is in,
/// in one transaction that checks the `restore_loaded` rows against the manifest (every object,
/// the manifest's row count) and deletes them. Returns the rows restored.
async fn rename(client: &mut Client, r: Restore<'_>, oid: u32, id: &str, total: usize) -> Result<u64, Error> {
    let Restore { rec, staging, target, .. } = r;
    let tx = client.transaction().await?;
    // Not for ever: a session that read the staging table (a pg_dump, an open transaction) holds a
    // lock until it ends. A lock not granted is transient: the load is kept, and the next restore
    // only renames.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{STAGING_LOCK_TIMEOUT_MS}ms'; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        staging.quoted()
    ))
    .await
    .context(format!("lock {staging} to rename it (another session holds a lock on it: restore again later)"))?;
    let same: bool = tx
        .query_one("SELECT to_regclass($1)::oid = $2", &[&staging.quoted(), &oid])
        .await?
        .get::<_, Option<bool>>(0)
        .unwrap_or(false);
    if !same {
        return Err(Error::integrity(format!("{staging} was replaced during the restore: nothing was kept")));
    }
    let row = tx
        .query_one(
            "SELECT count(*), coalesce(sum(row_count), 0)::bigint FROM partition_archiver.restore_loaded WHERE restore_id = $1",
            &[&id],
        )
        .await?;
    let (objects, rows): (i64, i64) = (row.get(0), row.get(1));
    if objects as usize != total || Some(rows) != rec.row_count {
        return Err(Error::integrity(format!(
            "restore of {}: {objects} of {total} objects loaded with {rows} rows, the manifest says {}: nothing was kept",
            rec.partition_name,
            crate::archive::check::shown(rec.row_count)
        )));
    }
    tx.batch_execute(&format!(
        "ALTER TABLE {staging} RENAME TO {name}; COMMENT ON TABLE {target} IS {comment}",
        staging = staging.quoted(),
        name = quote_ident(&target.name),
        target = target.quoted(),
        comment = quote_literal(&restored_comment(rec)),
    ))
    .await
    .context(format!("rename {staging} to {target}"))?;
    tx.execute("DELETE FROM partition_archiver.restore_loaded WHERE restore_id = $1", &[&id]).await?;
    tx.commit().await?;
    Ok(rows as u64)
}

/// One unit of a fan-out restore: loads object `chunk` into the staging table of restore
/// `restore_id`, which the plan made. Refused, with nothing changed, when that staging table is
/// not there (planned yet? renamed already?), is another restore's, or has no such object. A unit
/// never drops the staging table (other units load into it): a failure no retry mends is left
/// for the final step, whose own load of the object meets it and drops the table.
async fn load_unit(client: &mut Client, r: Restore<'_>, chunk: i32, restore_id: &str) -> Result<Loaded, Error> {
    let Restore { archiver, rec, staging, .. } = r;
    require_migrated(client).await?;
    let partition = &rec.partition_name;
    let Some((id, loaded)) = leftover(client, r).await? else {
        return Err(Error::invalid(format!(
            "no restore of {partition} is planned ({staging} does not exist): plan one with `restore --fan-out`"
        )));
    };
    if id != restore_id {
        return Err(Error::invalid(format!(
            "this unit belongs to restore {restore_id}, and {staging} is restore {id}'s: plan again with \
             `restore --fan-out` and run its units; nothing was changed"
        )));
    }
    let objects = rec.objects();
    let Some(unit) = objects.iter().map(Unit::of).find(|u| u.no == chunk) else {
        return Err(Error::invalid(format!(
            "chunk {chunk} does not exist in the archive of {partition} ({} objects); nothing was changed",
            objects.len()
        )));
    };
    if loaded.iter().any(|(no, _)| *no == chunk) {
        return Ok(Loaded::Unit { rows: unit.rows, already: true });
    }
    if !chunks::worth_starting(archiver.remaining(), unit.raw_bytes, None, archiver.margin(FINISH_MARGIN)) {
        return Err(Error::invalid(format!(
            "the time left ({:.0} s) would not cover loading chunk {chunk} of {partition} ({} bytes before \
             compression): give the unit a longer time budget; nothing was changed",
            archiver.remaining().unwrap_or_default().as_secs_f64(),
            unit.raw_bytes
        )));
    }
    let oid: u32 = client.query_one("SELECT to_regclass($1)::oid", &[&staging.quoted()]).await?.get(0);
    let loaded_now = load_one(client, archiver, rec, staging, oid, &id, &unit).await?;
    Ok(Loaded::Unit { rows: unit.rows, already: !loaded_now })
}

/// Loads `todo` into `staging` on up to `ARCHIVE_STREAMS` connections ([`workers::Queue`]), each
/// object in its own verified transaction, while the time left covers the next one. `Ok(None)`:
/// all loaded; `Ok(Some(why))`: stopped with objects left. Stops at the first failure.
async fn load(r: Restore<'_>, oid: u32, id: &str, todo: Vec<Unit>) -> Result<Option<String>, Error> {
    let Restore { archiver, rec, staging, .. } = r;
    let db = archiver.db.clone().ok_or_else(|| Error::invalid("a restore needs database settings"))?;
    let streams = chunks::streams_for(archiver.store.settings.streams, todo.len());
    let margin = archiver.margin(FINISH_MARGIN);
    let queue = Arc::new(workers::Queue::new(todo, |u: &Unit| u.raw_bytes, archiver.deadline, margin));
    let mut pool = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (db, queue, archiver, rec) = (db.clone(), queue.clone(), archiver.clone(), rec.clone());
        let (staging, id) = (staging.clone(), id.to_string());
        pool.spawn(async move {
            let mut conn = db.connect().await.context("connect a restore stream")?;
            while let Some(unit) = queue.next() {
                let started = Instant::now();
                match load_one(&mut conn, &archiver, &rec, &staging, oid, &id, &unit).await {
                    Ok(true) => queue.measured(unit.raw_bytes, started.elapsed()),
                    // Another unit had loaded it: nothing streamed, so nothing joins the rate.
                    Ok(false) => {}
                    Err(e) => {
                        queue.stop();
                        return Err(e);
                    }
                }
            }
            Ok(None)
        });
    }
    workers::join(pool, |e| anyhow::anyhow!("restore worker panicked: {e}").into()).await?;
    Ok((queue.ended().left > 0)
        .then(|| "the time left would not cover the next object: restore again to go on from it".to_string()))
}

/// Loads one object into `staging` in one transaction with its `restore_loaded` row, committed
/// only when its SHA-256 and row counts match the manifest. `Ok(false)`: the object was already
/// loaded (by another unit), nothing done.
async fn load_one(
    conn: &mut Client,
    archiver: &Archiver,
    rec: &ManifestRecord,
    staging: &QualifiedName,
    oid: u32,
    id: &str,
    unit: &Unit,
) -> Result<bool, Error> {
    let (partition, no, key) = (&rec.partition_name, unit.no, &unit.key);
    let tx = conn.transaction().await?;
    let same: Option<bool> = tx.query_one("SELECT to_regclass($1)::oid = $2", &[&staging.quoted(), &oid]).await?.get(0);
    if same != Some(true) {
        return Err(Error::integrity(format!(
            "{staging} is no longer the table this restore created: nothing was kept"
        )));
    }
    // The object's row first: a second unit of the same object waits here for this transaction,
    // then finds the row (this one committed) and loads nothing, or takes over (it rolled back).
    // Not for ever: a dead session's claim holds until the server notices it is gone.
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{STAGING_LOCK_TIMEOUT_MS}ms'")).await?;
    let claimed = tx
        .execute(
            "INSERT INTO partition_archiver.restore_loaded (restore_id, object_no, sha256, row_count) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&id, &no, &unit.sha256, &unit.rows],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => Error::new(
                ErrorKind::AlreadyRunning,
                format!("object {no} of {partition} is being loaded by another unit (or a session not ended yet): try again later"),
            ),
            _ => anyhow::Error::new(e).context("record the object as loaded").into(),
        })?;
    tx.batch_execute("SET LOCAL lock_timeout = 0").await?;
    if claimed == 0 {
        return Ok(false);
    }
    let (format, compression) = (rec.format()?, rec.compression()?);
    let copy_sql = format!("COPY {} FROM STDIN {}", staging.quoted(), format.copy_from_options());
    let source = Source { key, version_id: unit.version_id.as_deref(), format, compression, columns: &rec.columns };
    let every = archiver.store.settings.progress_log_every();
    let work = format!("restore {}.{partition}{}", rec.table(), rec.chunk_label(no));
    let progress = Progress::start(work, unit.compressed_bytes, every);
    let into = CopyIn { tx: &tx, sql: &copy_sql, reply_within: archiver.reply_bound() };
    let got = pipeline::read_object(Some(into), &archiver.store, source, Hashes::Object, progress)
        .await
        .map_err(|e| pipeline::load_failure(&format!("restore of {partition} object {no}"), e))?;
    if got.sha256 != unit.sha256 {
        return Err(Error::integrity(format!(
            "object {no} s3://{}/{key} has SHA-256 {}, the manifest says {}: nothing was kept",
            archiver.store.settings.bucket, got.sha256, unit.sha256
        )));
    }
    if got.rows_copied as i64 != unit.rows || got.rows_counted as i64 != unit.rows {
        return Err(Error::integrity(format!(
            "restore of {partition} object {no}: {} rows copied ({} counted in the stream), the manifest says {}: \
             nothing was kept",
            got.rows_copied, got.rows_counted, unit.rows
        )));
    }
    crate::fail_point!(
        "restore_chunk_before_commit",
        Err(Error::transient(anyhow::anyhow!("failpoint restore_chunk_before_commit")))
    );
    tx.commit().await?;
    crate::fail_point!("restore_chunk_after_commit");
    Ok(true)
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

    #[test]
    fn a_staging_comment_carries_its_restore_id_and_archive() {
        let comment = staging_comment("abc123", "public.orders/orders_2026_03");
        assert_eq!(staging_mark(&comment), Some(("abc123", Some("public.orders/orders_2026_03"))));
        // Earlier versions: with an id only; with none (this tool's, with nothing to resume).
        assert_eq!(staging_mark(&format!("{STAGING_COMMENT} (restore abc123)")), Some(("abc123", None)));
        assert_eq!(staging_mark(STAGING_COMMENT), None);
        assert_eq!(staging_mark("some other comment (restore x)"), None);
    }
}
