//! Every archive is a chunk plan: a partition is archived as one object per ctid block range
//! ([`crate::plan::chunks`]; one range, and the key `{partition}.{ext}`, for a partition under
//! `ARCHIVE_CHUNK_SIZE`), by up to `ARCHIVE_STREAMS` connections at once, chunk by chunk,
//! resumable, within the run's time budget.
//!
//! 1. [`plan`]: under the table's lock, the relation's filenode and block count are read and the
//!    ranges recorded as `archive_chunk` rows of a new plan (`chunk_generation`); chunks of older
//!    plans become `superseded` (their objects, if any, are deleted from the listing: a delete
//!    marker in a versioned bucket), and the partition's row goes to `uploading`. One object an
//!    earlier version recorded, possibly complete, is carried over as a plan of one.
//! 2. [`run_chunks`]: workers, each with its own connection, take the next unfinished chunk while
//!    the time budget allows ([`crate::plan::chunks::worth_starting`]) and archive it
//!    ([`archive_chunk`]) under an advisory lock of its own, so runs and fan-out units never
//!    archive the same chunk twice. Each chunk's rows are checked over its own range before its
//!    object is completed; an object already at its key is adopted only as provably its own.
//! 3. [`finish`], once every chunk of the plan is `uploaded`: the plan covers every block, every
//!    chunk object passes HEAD, the partition's row records the totals (`uploaded`) and the JSON
//!    manifest listing every chunk is written (`verified`). No table is read.
//!
//! # Consistency across connections and invocations
//! The partition is detached and frozen before any chunk is read, so its rows do not change; only
//! a rewrite (VACUUM FULL, CLUSTER, pg_repack) moves them to other ctids, and it gives the relation
//! a new filenode. Each chunk worker compares filenode and block count with the plan's before its
//! COPY and after its count (the COPY holds ACCESS SHARE, which a rewrite waits for): if they
//! changed, the partition's archive starts again from its first chunk under a new plan, with keys
//! of its own (archives are write-once).

use super::record::{record, Archived};
use crate::archive::check;
use crate::archive::manifest::{self, ChunkChange, ChunkRecord, ChunkState, ManifestRecord, PartitionChange};
use crate::archive::pipeline::{self, Hashes, Source};
use crate::archive::progress::Progress;
use crate::archive::retrieval::{self, Access};
use crate::archive::settings::{Compression, Format};
use crate::archive::store::{self, ObjectHead, Origin, WriteOnce};
use crate::archive::{workers, Archiver};
use crate::error::Error;
use crate::pg::lock::{self, LockClass};
use crate::plan::chunks::{self, BlockRange};
use crate::plan::ident::QualifiedName;
use crate::plan::policy::TablePolicy;
use crate::plan::snapshot::ArchiveState;
use anyhow::{anyhow, bail, Context};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// A run keeps this much time (at most a tenth of its budget) for what follows its last chunk
/// (verify, manifest, report).
const FINISH_MARGIN: Duration = Duration::from_secs(20);
/// Plans made in one run before giving up (each one follows a rewrite of the table).
const MAX_PLANS_PER_RUN: usize = 3;

/// The relation's identity as a chunk plan knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Relation {
    filenode: i64,
    blocks: i64,
    block_size: i64,
    /// Transactions in which a trigger (a foreign-key action) inserted or updated rows of the
    /// frozen table (`partition_archiver.frozen_writes_of`): a new row version may go to any page
    /// with free space, an already copied one included, so the plan's chunks only add up while it
    /// is the same.
    writes: i64,
}

/// Filenode, block count, block size and trigger writes of `table`.
async fn relation(client: &Client, table: &QualifiedName) -> anyhow::Result<Relation> {
    let row = client
        .query_one(
            "SELECT pg_relation_filenode(c.oid)::bigint, pg_relation_size(c.oid) / current_setting('block_size')::bigint, \
                    current_setting('block_size')::bigint, partition_archiver.frozen_writes_of(c.oid)
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table.quoted()],
        )
        .await
        .with_context(|| format!("read the relation size of {table} (has `partition-archiver migrate` run?)"))?;
    Ok(Relation {
        filenode: row.get::<_, Option<i64>>(0).unwrap_or(0),
        blocks: row.get::<_, Option<i64>>(1).unwrap_or(0),
        block_size: row.get(2),
        writes: row.get::<_, Option<i64>>(3).unwrap_or(0),
    })
}

/// Format, compression and object key of a partition's archive: those its row already records
/// when a completion may have happened (the streamed figures are recorded just before completing:
/// a run killed after S3 completed the object must find it where it is, whatever the settings say
/// now), else the current settings (the table's own `archive_format` / `archive_compression`
/// first), so a failed attempt never pins a key, format or compression that does not work.
pub(super) struct Target {
    pub(super) format: Format,
    pub(super) compression: Compression,
    /// Where a plan of one chunk puts its object (a larger plan's chunks go beside it).
    pub(super) key: String,
}

impl Target {
    pub(super) fn of(policy: &TablePolicy, rec: &ManifestRecord, archiver: &Archiver) -> Self {
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
        let key = manifest::object_key(&settings.prefix, rec, policy.interval, format, compression);
        Self { format, compression, key }
    }
}

/// Whether a new plan replaces the recorded one ([`needs_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replan {
    No,
    Yes,
    /// Only if no unit completed one of its chunks meanwhile (checked in the plan's transaction):
    /// the plan was replaced because the settings moved, not because it cannot be kept.
    UnlessCompletedMeanwhile,
}

/// Does a new plan replace the recorded one? When there is none (or a rewrite cleared it); when
/// it has several chunks and was made by an earlier version, which did not record trigger writes
/// (`rel_writes`), and is still uploading (a row a foreign-key action moved meanwhile could be
/// missed); and when nothing of it may have been completed yet (no chunk uploaded or with figures
/// recorded) while the current settings put archives in another folder (ARCHIVE_PREFIX changed,
/// as an operator does after a refusal: another database writes to the old one) or in another
/// format or compression (a Parquet archive refused for a value it cannot hold, then the table set
/// to CSV). Once something may be complete, the plan keeps its keys, format and compression,
/// whatever the settings say now.
fn needs_plan(rec: &ManifestRecord, target: &Target) -> Replan {
    let Some(first) = rec.current_chunks().next().filter(|_| rec.is_chunked()) else { return Replan::Yes };
    if rec.rel_writes.is_none() && rec.current_chunks().count() > 1 && rec.state == ArchiveState::Uploading {
        return Replan::Yes;
    }
    let folder = |key: &str| key.rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string());
    let nothing_complete = rec.current_chunks().all(|c| c.state != ChunkState::Uploaded && c.sha256.is_none());
    let moved = folder(&first.object_key) != folder(&target.key)
        || rec.format().ok() != Some(target.format)
        || rec.compression().ok() != Some(target.compression);
    if nothing_complete && moved {
        Replan::UnlessCompletedMeanwhile
    } else {
        Replan::No
    }
}

/// Archives a partition as far as the time budget allows, as a plan of chunks (one, for a
/// partition under `ARCHIVE_CHUNK_SIZE`), under the [`Target`]'s format, compression and key when
/// it is planned.
pub(super) async fn archive_chunked(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    mut rec: ManifestRecord,
    target: &Target,
) -> anyhow::Result<Archived> {
    same_bucket(&rec, archiver, partition)?;
    let mut plans = 0;
    loop {
        let replan = needs_plan(&rec, target);
        if replan != Replan::No {
            if plans == MAX_PLANS_PER_RUN {
                bail!(Error::integrity(format!(
                    "{partition} was rewritten (or written by a trigger) {plans} times while its chunks were archived: \
                     stopped, nothing dropped; the next run starts again"
                )));
            }
            let only_if_nothing_complete = replan == Replan::UnlessCompletedMeanwhile;
            rec = plan(client, policy, partition, archiver, target, only_if_nothing_complete).await?;
            plans += 1;
        }
        if archiver.fan_out && rec.current_chunks().count() > 1 {
            // The chunks are the fan-out's units (a plan of one is archived here, at once):
            // planned here, streamed by `archive_chunk` invocations, finished by the next maintain
            // once all are uploaded. Once all are, the archive is whole whatever happened to the
            // table since (each chunk checked its rows under the plan, and the rows are frozen):
            // it is finished, never planned again (its JSON manifest may already be written).
            // Otherwise a plan the table no longer matches (a rewrite) is made again first, so
            // the units are valid.
            if all_uploaded(&rec) {
                break;
            }
            if let Err(why) = unchanged(client, partition, &rec).await? {
                tracing::warn!(%partition, why, "rewritten since its chunks were planned: planning again");
                rec.chunk_size = None;
                continue;
            }
            return Ok(unfinished(&rec, "fan-out: the chunks are left to archive_chunk units".into()));
        }
        match run_chunks(client, policy, partition, archiver, &rec).await? {
            Ran::Rewritten(why) => {
                tracing::warn!(%partition, why, "the table was rewritten since its chunks were planned: planning again");
                rec.chunk_size = None;
            }
            Ran::Stopped { busy, out_of_time } => {
                rec = reload(client, policy, partition).await?;
                let mut why = Vec::new();
                if out_of_time {
                    why.push("the time budget would not cover the next chunk".to_string());
                }
                if busy > 0 {
                    why.push(format!("{busy} chunk(s) held by another run or fan-out unit"));
                }
                let why = if why.is_empty() { "chunks left".into() } else { why.join("; ") };
                if !all_uploaded(&rec) {
                    return Ok(unfinished(&rec, why));
                }
                break;
            }
        }
    }
    finish(client, policy, partition, archiver).await
}

fn all_uploaded(rec: &ManifestRecord) -> bool {
    rec.current_chunks().all(|c| c.state == ChunkState::Uploaded)
}

/// The report of an archive left unfinished for `why`, with the chunks done so far. No rows: they
/// are reported once, by the run that completes the archive (the `RowsArchived` metric sums every
/// run's).
fn unfinished(rec: &ManifestRecord, why: String) -> Archived {
    Archived {
        complete: false,
        chunks_done: Some(rec.current_chunks().filter(|c| c.state == ChunkState::Uploaded).count()),
        chunks_total: Some(rec.current_chunks().count()),
        unfinished_because: Some(why),
        ..Default::default()
    }
}

/// A plan under way keeps its bucket: its chunks (some perhaps uploaded) are there, and one
/// archive never spans two buckets.
fn same_bucket(rec: &ManifestRecord, archiver: &Archiver, partition: &QualifiedName) -> anyhow::Result<()> {
    let bucket = &archiver.store.settings.bucket;
    if let Some(planned) = rec.bucket.as_deref().filter(|b| rec.is_chunked() && b != bucket) {
        bail!(Error::invalid(format!(
            "the chunks of {partition} are being archived to bucket {planned}, but ARCHIVE_BUCKET is {bucket}: \
             set it back to {planned} until this partition is archived; nothing was changed"
        )));
    }
    Ok(())
}

async fn reload(client: &Client, policy: &TablePolicy, partition: &QualifiedName) -> anyhow::Result<ManifestRecord> {
    manifest::load(client, &policy.table, &partition.name).await?.context("manifest row vanished")
}

/// Records a new chunk plan: ranges from the relation as it is now, chunks of older plans
/// superseded, the partition's row `uploading`. Returns the record with its chunks.
async fn plan(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    target: &Target,
    only_if_nothing_complete: bool,
) -> anyhow::Result<ManifestRecord> {
    let (format, compression, single_key) = (target.format, target.compression, target.key.as_str());
    let store = &archiver.store;
    // As recorded now: the chunks the workers have just recorded are the ones to retire.
    let rec = &reload(client, policy, partition).await?;
    // One object recorded by an earlier version that may already be complete is carried over as a
    // plan of one chunk; an upload of one that cannot have completed is aborted.
    let carried = carried_object(rec);
    if let (None, Some(key), Some(id)) = (carried, rec.object_key.as_deref(), rec.multipart_upload_id.as_deref()) {
        store.abort_upload(key, id).await?;
    }
    let rel = relation(client, partition).await?;
    let chunk_size = store.settings.chunk_size;
    let whole = vec![BlockRange { from: 0, to: None }];
    let ranges = match carried {
        Some(_) => whole,
        None => {
            chunks::plan_chunks(rel.blocks.max(0) as u64, rel.block_size.max(1) as u64, chunk_size).unwrap_or(whole)
        }
    };
    let generation = rec.chunks.iter().map(|c| c.generation).max().unwrap_or(0) + 1;
    let (table, name) = (&policy.table, partition.name.as_str());
    let mut sql = vec![manifest::supersede_chunks_sql(table, name)];
    // A plan of one chunk keeps the key archives had before chunks existed, `{partition}.{ext}`
    // (readers and query engines see the same keys), unless an earlier plan used it.
    let single_free = !rec.chunks.iter().any(|c| c.object_key == single_key);
    for (i, range) in ranges.iter().enumerate() {
        let no = i as i32 + 1;
        let key = match (carried, ranges.len() == 1 && single_free) {
            (Some(key), _) => key.to_string(),
            (None, true) => single_key.to_string(),
            (None, false) => manifest::chunk_key(single_key, name, generation, no, format, compression),
        };
        sql.push(manifest::new_chunk_sql(table, name, generation, no, *range, &key));
    }
    if carried.is_some() {
        sql.push(manifest::chunk_change_sql(table, name, generation, 1, &ChunkChange::CarriedOver(rec)));
    }
    // The partition `uploading` under this plan: its figures recorded, an earlier version's
    // one-object figures cleared.
    let planned = PartitionChange::Planned {
        chunk_size,
        generation,
        rel_filenode: rel.filenode,
        rel_blocks: rel.blocks,
        rel_writes: rel.writes,
        bucket: &store.settings.bucket,
        format,
        compression,
    };
    sql.push(manifest::partition_change_sql(table, name, &planned));
    let tx = client.transaction().await?;
    if only_if_nothing_complete && completed_meanwhile(&tx, policy, partition).await? {
        tx.rollback().await?;
        tracing::info!(%partition, "a chunk of the plan was completed meanwhile: the plan keeps its keys");
        return reload(client, policy, partition).await;
    }
    for s in &sql {
        tx.batch_execute(s).await.with_context(|| format!("record the chunk plan of {partition}"))?;
    }
    tx.commit().await.with_context(|| format!("record the chunk plan of {partition}"))?;
    tracing::info!(%partition, generation, chunks = ranges.len(), blocks = rel.blocks, filenode = rel.filenode, "chunks planned");
    let rec = reload(client, policy, partition).await?;
    retire_superseded(archiver, &rec).await;
    Ok(rec)
}

/// Has a chunk of the current plan been completed (or its figures recorded)? The plan's rows are
/// locked in `tx` for the answer: a unit (which holds only its chunk's lock) that records figures
/// or `uploaded` waits for this transaction, and one that already did keeps the plan.
async fn completed_meanwhile(
    tx: &tokio_postgres::Transaction<'_>,
    policy: &TablePolicy,
    partition: &QualifiedName,
) -> anyhow::Result<bool> {
    let started: i64 = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'uploaded' OR sha256 IS NOT NULL) FROM (
               SELECT state, sha256 FROM partition_archiver.archive_chunk
                WHERE table_schema = $1 AND table_name = $2 AND partition_name = $3 AND state <> 'superseded'
                  FOR UPDATE) c",
            &[&policy.table.schema, &policy.table.name, &partition.name],
        )
        .await
        .with_context(|| format!("lock the chunk plan of {partition}"))?
        .get(0);
    Ok(started > 0)
}

/// The key of the one object an earlier version recorded on the partition's row (no chunk plan)
/// that may already be complete: its figures are recorded (so a run may have died between S3
/// completing it and `uploaded` being recorded), or it is `uploaded`. It becomes chunk 1 of a plan
/// of one ([`ChunkChange::CarriedOver`]), so it is adopted (or verified) as any chunk's own upload
/// is.
fn carried_object(rec: &ManifestRecord) -> Option<&str> {
    let key = rec.object_key.as_deref()?;
    (!rec.is_chunked() && (rec.sha256.is_some() || rec.state == ArchiveState::Uploaded)).then_some(key)
}

/// Chunks of older plans leave the archive's directory (query engines read every object in it): a
/// multipart upload is aborted, and a completed object that this tool's upload wrote (its token)
/// and that is still the key's latest version is tagged superseded and deleted (a delete marker in
/// a versioned bucket; the manifest lists the chunk as superseded). Best effort, and repeated by
/// every run that plans or finishes the partition, so an interrupted or failed attempt is retried.
async fn retire_superseded(archiver: &Archiver, rec: &ManifestRecord) {
    for old in rec.chunks.iter().filter(|c| c.state == ChunkState::Superseded) {
        if let Err(e) = retire(archiver, old).await {
            tracing::warn!(key = %old.object_key, error = %format!("{e:#}"), "could not retire a superseded chunk object; the next run tries again");
        }
    }
}

/// Takes a superseded chunk's object out of the listing, if this tool's upload wrote it.
async fn retire(archiver: &Archiver, old: &ChunkRecord) -> anyhow::Result<()> {
    let store = &archiver.store;
    if let Some(id) = old.multipart_upload_id.as_deref() {
        store.abort_upload(&old.object_key, id).await?;
    }
    if let Some(head) = store.head(&old.object_key, None).await? {
        if old.upload_token.is_some() && head.metadata.get(store::META_UPLOAD_TOKEN) == old.upload_token.as_ref() {
            store.hide_superseded(&old.object_key, head.version_id.as_deref()).await?;
        }
    }
    Ok(())
}

/// How a worker pass over the chunks ended.
enum Ran {
    /// Every worker stopped: no chunk left it could take, or no time to start one. Counts the
    /// chunks another run held, and says whether the time budget stopped a worker.
    Stopped { busy: usize, out_of_time: bool },
    /// The relation changed since the plan.
    Rewritten(String),
}

/// What one chunk did.
enum ChunkRun {
    /// Uploaded (or found uploaded): heap bytes streamed and the time it took (zero when found).
    Done(u64, Duration),
    /// Another run holds the chunk's lock.
    Busy,
    Rewritten(String),
}

/// Runs up to `ARCHIVE_STREAMS` workers over the plan's unfinished chunks ([`workers::Queue`]).
async fn run_chunks(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    rec: &ManifestRecord,
) -> anyhow::Result<Ran> {
    let block_size = relation(client, partition).await?.block_size;
    let todo: Vec<(ChunkRecord, u64)> = rec
        .current_chunks()
        .filter(|c| c.state != ChunkState::Uploaded)
        .map(|c| (c.clone(), heap_bytes(rec, c, block_size)))
        .collect();
    let streams = chunks::streams_for(archiver.store.settings.streams, todo.len());
    if streams == 0 {
        return Ok(Ran::Stopped { busy: 0, out_of_time: false });
    }
    let db = archiver.db.clone().context("chunked archives need database settings for their stream connections")?;
    let margin = archiver.margin(FINISH_MARGIN);
    let queue = Arc::new(workers::Queue::new(todo, |(_, bytes)| *bytes, archiver.deadline, margin));
    let mut pool = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (db, queue) = (db.clone(), queue.clone());
        let (policy, partition, archiver, rec) = (policy.clone(), partition.clone(), archiver.clone(), rec.clone());
        pool.spawn(async move {
            let conn = db.connect().await.context("connect a chunk stream")?;
            let job = Job { conn: &conn, policy: &policy, partition: &partition, archiver: &archiver, rec: &rec };
            while let Some((chunk, bytes)) = queue.next() {
                match archive_chunk(&job, &chunk, bytes).await {
                    Ok(ChunkRun::Done(bytes, took)) => queue.measured(bytes, took),
                    Ok(ChunkRun::Busy) => queue.busy(),
                    Ok(ChunkRun::Rewritten(why)) => {
                        queue.stop();
                        return Ok(Some(why));
                    }
                    Err(e) => {
                        queue.stop();
                        return Err(e.context(format!("{partition} chunk {}", chunk.chunk_no)));
                    }
                }
            }
            Ok(None)
        });
    }
    let rewritten = workers::join(pool, |e| anyhow!("chunk worker panicked: {e}")).await?;
    let ended = queue.ended();
    Ok(rewritten.map_or(Ran::Stopped { busy: ended.busy, out_of_time: ended.out_of_time }, Ran::Rewritten))
}

/// The bytes of heap in `chunk`'s block range of the plan: what its stream reads, and what the
/// time budget is weighed against.
fn heap_bytes(rec: &ManifestRecord, chunk: &ChunkRecord, block_size: i64) -> u64 {
    chunk.range().blocks(rec.rel_blocks.unwrap_or(0).max(0) as u64) * block_size.max(1) as u64
}

/// The chunk's advisory lock: runs, their streams and fan-out units never archive one chunk at once.
fn chunk_lock_key(partition: &QualifiedName, chunk: &ChunkRecord) -> String {
    format!("{}.{}#{}#{}", partition.schema, partition.name, chunk.generation, chunk.chunk_no)
}

/// Archives one chunk (`heap_bytes` of heap) on the job's connection, under the chunk's advisory
/// lock.
async fn archive_chunk(job: &Job<'_>, chunk: &ChunkRecord, heap_bytes: u64) -> anyhow::Result<ChunkRun> {
    let (conn, partition) = (job.conn, job.partition);
    let key = chunk_lock_key(partition, chunk);
    if let lock::Locked::Held(holder) = lock::try_lock(conn, LockClass::Chunk, &key).await? {
        let holder = holder.map(|h| h.to_string()).unwrap_or_default();
        tracing::info!(%partition, chunk = chunk.chunk_no, %holder, "another run is archiving this chunk");
        return Ok(ChunkRun::Busy);
    }
    let result = archive_locked_chunk(job, chunk, heap_bytes).await;
    if let Err(e) = lock::unlock(conn, LockClass::Chunk, &key).await {
        tracing::warn!(error = %e, "could not release a chunk lock (it ends with the session)");
    }
    result
}

/// Does the relation still match the plan: the same filenode (no rewrite), block count, and rows
/// written by triggers (none moved into a range already copied)? A plan of one chunk from block 0
/// to the end reads every row in one COPY, wherever it is: it always does.
async fn unchanged(
    conn: &Client,
    partition: &QualifiedName,
    rec: &ManifestRecord,
) -> anyhow::Result<Result<(), String>> {
    let ranges: Vec<BlockRange> = rec.current_chunks().map(|c| c.range()).collect();
    if ranges == [BlockRange { from: 0, to: None }] {
        return Ok(Ok(()));
    }
    let now = relation(conn, partition).await?;
    let planned = (rec.rel_filenode, rec.rel_blocks, rec.rel_writes.unwrap_or(0));
    if planned == (Some(now.filenode), Some(now.blocks), now.writes) {
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "{partition} was filenode {} with {} blocks and {} trigger writes when its chunks were planned, and is \
         filenode {} with {} blocks and {} trigger writes now",
        check::shown(rec.rel_filenode),
        check::shown(rec.rel_blocks),
        planned.2,
        now.filenode,
        now.blocks,
        now.writes
    )))
}

/// What one chunk's attempt works with: a connection of its own, and the partition's plan.
struct Job<'a> {
    conn: &'a Client,
    policy: &'a TablePolicy,
    partition: &'a QualifiedName,
    archiver: &'a Archiver,
    rec: &'a ManifestRecord,
}

impl Job<'_> {
    /// The chunk's row as it is now (another run may have finished or superseded it).
    async fn load_chunk(&self, chunk: &ChunkRecord) -> anyhow::Result<Option<ChunkRecord>> {
        let (table, partition) = (&self.policy.table, &self.partition.name);
        manifest::load_chunk(self.conn, table, partition, chunk.generation, chunk.chunk_no).await
    }

    /// Records one transition of a chunk's row ([`ChunkChange`]); `false` when the chunk was
    /// superseded meanwhile (no row changed).
    async fn set_chunk(&self, chunk: &ChunkRecord, change: ChunkChange<'_>) -> anyhow::Result<bool> {
        let (table, partition) = (&self.policy.table, &self.partition.name);
        let sql = manifest::chunk_change_sql(table, partition, chunk.generation, chunk.chunk_no, &change);
        Ok(self.conn.execute(&sql, &[]).await.context("record chunk state")? == 1)
    }

    /// Records `message` as the partition's last error (what `list` and `status` show).
    async fn note_error(&self, message: &str) -> anyhow::Result<()> {
        manifest::note_error(self.conn, &self.policy.table, &self.partition.name, message).await
    }
}

async fn archive_locked_chunk(job: &Job<'_>, chunk: &ChunkRecord, heap_bytes: u64) -> anyhow::Result<ChunkRun> {
    let Job { conn, policy, partition, archiver, rec } = *job;
    let store = &archiver.store;
    let Some(chunk) = job.load_chunk(chunk).await? else {
        return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into()));
    };
    match chunk.state {
        ChunkState::Uploaded => return Ok(ChunkRun::Done(0, Duration::ZERO)),
        ChunkState::Superseded => return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into())),
        ChunkState::Pending | ChunkState::Uploading => {}
    }
    let key = chunk.object_key.as_str();
    if let Some(old) = chunk.multipart_upload_id.as_deref() {
        store.abort_upload(key, old).await?;
    }
    store.abort_uploads_of(key).await?;
    // The plan first: after a rewrite, an object at the key (this chunk's own upload whose record
    // was lost) holds rows of the old layout, which no range of the new one matches; a new plan,
    // with keys of its own, retires it instead of refusing it at every run.
    if let Err(why) = unchanged(conn, partition, rec).await? {
        return Ok(ChunkRun::Rewritten(why));
    }
    if let Some(head) = store.head(key, None).await? {
        return found_at_key(job, &chunk, &head).await;
    }
    let started = Instant::now();
    let format = rec.format()?;
    let token = store::new_upload_token();
    let origin = Origin {
        upload_token: token.clone(),
        system_identifier: rec.system_identifier.clone(),
        // `#N` names a chunk of a larger plan; a plan of one is the partition's one object.
        source: match rec.current_chunks().count() {
            1 => format!("{}/{}", policy.table, partition.name),
            _ => format!("{}/{}#{}", policy.table, partition.name, chunk.chunk_no),
        },
    };
    let parquet = super::prepare::parquet_write(conn, rec, format, partition, &store.settings).await?;
    let upload_id = store.create_upload(key, format.content_type(), &origin).await?;
    let recorded = job.set_chunk(&chunk, ChunkChange::Uploading { upload_id: &upload_id, token: &token }).await;
    if !matches!(recorded, Ok(true)) {
        let _ = store.abort_upload(key, &upload_id).await;
        recorded?;
        return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into()));
    }
    crate::fail_point!("after_create_upload");
    let up = match stream_checked(job, &chunk, &upload_id, parquet, heap_bytes).await {
        Ok(Ok(up)) => up,
        Ok(Err(why)) => {
            let _ = store.abort_upload(key, &upload_id).await;
            return Ok(ChunkRun::Rewritten(why));
        }
        Err(e) => return Err(give_back(job, &chunk, &upload_id, e).await),
    };
    let run = complete(job, &chunk, &upload_id, &up).await?;
    if matches!(run, ChunkRun::Done(..)) {
        tracing::info!(%partition, chunk = chunk.chunk_no, rows = up.rows, bytes = up.compressed_bytes, "chunk uploaded");
        return Ok(ChunkRun::Done(heap_bytes, started.elapsed()));
    }
    Ok(run)
}

/// Streams the chunk's block range into the upload, then checks its rows over the same range
/// ([`check_rows`]) and that the relation was not rewritten meanwhile (`Ok(Err(why))` if it was).
async fn stream_checked(
    job: &Job<'_>,
    chunk: &ChunkRecord,
    upload_id: &str,
    parquet: Option<pipeline::ParquetWrite>,
    heap_bytes: u64,
) -> anyhow::Result<Result<pipeline::Streamed, String>> {
    let (partition, rec, store) = (job.partition, job.rec, &job.archiver.store);
    let settings = &store.settings;
    let (format, compression) = (rec.format()?, rec.compression()?);
    let condition = chunk.range().ctid_condition();
    let work = format!("archive {partition}{}", rec.chunk_label(chunk.chunk_no));
    let progress = Progress::start(work, None, settings.progress_log_every());
    let copy_sql = pipeline::copy_out_sql(partition, format, parquet.as_ref(), &condition);
    let written_columns = parquet.as_ref().map(|p| p.columns.clone());
    let encoding = pipeline::Encoding { format, compression, level: settings.compression_level, parquet };
    let upload = pipeline::Upload {
        store,
        key: &chunk.object_key,
        upload_id,
        part_size: settings.part_size_for(heap_bytes),
        parts_in_flight: settings.parts_in_flight,
    };
    let up = pipeline::archive_stream(job.conn, &copy_sql, upload, encoding, progress).await?;
    // The rows of the same range, counted after the COPY (with a Parquet chunk's statistics);
    // the relation checked again after the count, so a rewrite anywhere between the first check
    // and here is seen.
    let footer = written_columns.as_deref().zip(up.footer.as_deref());
    let checked = check_rows(job.conn, partition, &condition, up.rows as i64, footer).await?;
    if let Err(why) = unchanged(job.conn, partition, rec).await? {
        return Ok(Err(why));
    }
    checked.map_err(|why| Error::integrity(format!("{partition} chunk {}: {why}: not uploaded", chunk.chunk_no)))?;
    Ok(Ok(up))
}

/// Records what was streamed, completes the upload write-once and records the chunk `uploaded`.
/// An object another writer completed at the key meanwhile is adopted only as provably this
/// chunk's ([`found_at_key`]).
async fn complete(
    job: &Job<'_>,
    chunk: &ChunkRecord,
    upload_id: &str,
    up: &pipeline::Streamed,
) -> anyhow::Result<ChunkRun> {
    let (store, key) = (&job.archiver.store, chunk.object_key.as_str());
    // The figures before the object exists: a run killed right after S3 completes it finds the
    // object described by the chunk's own row.
    let streamed = ChunkChange::Streamed {
        rows: up.rows,
        raw_bytes: up.raw_bytes,
        compressed_bytes: up.compressed_bytes,
        sha256: &up.sha256,
        composite: &up.composite_sha256,
    };
    if !job.set_chunk(chunk, streamed).await? {
        let _ = store.abort_upload(key, upload_id).await;
        return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into()));
    }
    crate::fail_point!("before_complete");
    let (etag, version_id) = match store.complete_upload(key, upload_id, &up.parts).await {
        Ok(WriteOnce::Written(ids)) => ids,
        Ok(WriteOnce::Exists) => {
            let _ = store.abort_upload(key, upload_id).await;
            // Our own completion, answered 412 on a retry of the call, or another writer's.
            let head = store.head(key, None).await?.context("the key that refused our upload holds no object")?;
            let Some(chunk) = job.load_chunk(chunk).await? else {
                return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into()));
            };
            return found_at_key(job, &chunk, &head).await;
        }
        Err(e) => return Err(give_back(job, chunk, upload_id, e).await),
    };
    crate::fail_point!("after_complete");
    let uploaded = ChunkChange::Uploaded { etag: etag.as_deref(), version_id: version_id.as_deref() };
    if !job.set_chunk(chunk, uploaded).await? {
        // A new plan superseded this chunk while it streamed: its object is not part of the
        // archive, so it leaves the directory now (the new plan's run also retries this).
        if let Err(e) = store.hide_superseded(key, version_id.as_deref()).await {
            tracing::warn!(%key, error = %format!("{e:#}"), "could not retire a superseded chunk object; the next run tries again");
        }
        return Ok(ChunkRun::Rewritten("the chunk plan was replaced while this chunk streamed".into()));
    }
    Ok(ChunkRun::Done(0, Duration::ZERO))
}

/// An object is already at the chunk's key, and archives are never replaced. It is recorded as
/// this chunk's upload only when it provably is one:
/// - it carries this chunk's upload token and the size and composite checksum recorded before its
///   upload was completed: this chunk's own upload, completed by a run that died before recording
///   it; or
/// - its content is byte for byte what the chunk's block range gives now (CSV and the other byte
///   formats: its decompressed bytes against a COPY of the range; Parquet: its bytes against a
///   re-encode of the range): it holds exactly these rows, whoever wrote it (an upload whose
///   record a database crash or point-in-time restore lost, or a clone's archive of identical
///   rows). The work is bounded by the chunk's size, never the partition's.
///
/// Anything else is another database's or deployment's archive: the chunk goes back to `pending`
/// with the reason, and an integrity error names both writers; nothing is written or dropped.
async fn found_at_key(job: &Job<'_>, chunk: &ChunkRecord, head: &ObjectHead) -> anyhow::Result<ChunkRun> {
    let Job { partition, archiver, rec, .. } = *job;
    let (key, bucket) = (chunk.object_key.as_str(), &archiver.store.settings.bucket);
    let own = chunk.upload_token.is_some()
        && head.metadata.get(store::META_UPLOAD_TOKEN) == chunk.upload_token.as_ref()
        && Some(head.size) == chunk.compressed_bytes
        && head.checksum_sha256.is_some()
        && head.checksum_sha256 == chunk.checksum_composite;
    let (etag, version_id) = (head.etag.as_deref(), head.version_id.as_deref());
    let adopted;
    let change = if own {
        if let Err(why) = recheck_own(job, chunk, head).await? {
            let message = format!(
                "{partition}: the object at s3://{bucket}/{key}, this chunk's own upload, {why}: not uploaded, nothing dropped"
            );
            return Err(refuse(job, chunk, message).await);
        }
        tracing::info!(%key, "the chunk's own completed upload: recorded");
        ChunkChange::Uploaded { etag, version_id }
    } else {
        match same_content(job, chunk, head).await? {
            Ok(figures) => {
                tracing::warn!(%key, rows = figures.rows, "the object at the chunk's key holds exactly its rows: adopted");
                adopted = figures;
                ChunkChange::Adopted {
                    etag,
                    version_id,
                    rows: adopted.rows,
                    raw_bytes: adopted.raw_bytes,
                    compressed_bytes: head.size,
                    sha256: &adopted.sha256,
                    composite: head.checksum_sha256.as_deref(),
                }
            }
            Err(refusal) => {
                let writer = super::prepare::writer(head, rec, matches!(refusal, NotSame::Differs { .. }));
                let what = format!("{partition}{}", rec.chunk_label(chunk.chunk_no));
                let found = match refusal {
                    NotSame::Uncomparable(why) => format!(
                        "already holds an object that this run did not write ({writer}) and whose content cannot be \
                         compared: {why}"
                    ),
                    NotSame::Differs { found_rows, rows } => format!(
                        "already holds another archive ({writer}; {found_rows} rows, {} bytes) whose rows differ from \
                         {what} of this database (system_identifier {}; {rows} rows)",
                        head.size,
                        rec.system_identifier.as_deref().unwrap_or("unknown")
                    ),
                };
                let message = format!(
                    "s3://{bucket}/{key} {found}: archives are never replaced, so nothing was written and nothing is \
                     dropped. If another database (a clone restored from a snapshot, a second deployment) archives to \
                     this bucket, give each its own ARCHIVE_PREFIX."
                );
                return Err(refuse(job, chunk, message).await);
            }
        }
    };
    if !job.set_chunk(chunk, change).await? {
        return Ok(ChunkRun::Rewritten("the chunk plan was replaced".into()));
    }
    Ok(ChunkRun::Done(0, Duration::ZERO))
}

/// The object at the chunk's key is not (provably) its own: the chunk goes back to `pending` with
/// `message`, which the partition's row also shows, and the integrity error to return says it.
async fn refuse(job: &Job<'_>, chunk: &ChunkRecord, message: String) -> anyhow::Error {
    let recorded = async {
        job.set_chunk(chunk, ChunkChange::Refused { why: &message }).await?;
        job.note_error(&message).await
    };
    match recorded.await {
        Ok(()) => Error::integrity(message).into(),
        Err(e) => e.context(message),
    }
}

/// The rows of an object recorded as this chunk's own upload (completed by a run that died before
/// recording it, or carried over from an earlier version, which checked rows only after `uploaded`),
/// checked again over the chunk's block range as a fresh upload's are ([`check_rows`], against the
/// rows recorded and, for Parquet, the object's footer). `Ok(Err(why))` when not.
async fn recheck_own(job: &Job<'_>, chunk: &ChunkRecord, head: &ObjectHead) -> anyhow::Result<Result<(), String>> {
    let Job { conn, partition, archiver, rec, .. } = *job;
    let condition = chunk.range().ctid_condition();
    let recorded = chunk.row_count.unwrap_or(-1);
    if rec.format()? != Format::Parquet {
        return check_rows(conn, partition, &condition, recorded, None).await;
    }
    let (footer, _) =
        pipeline::parquet_metadata(&archiver.store, &chunk.object_key, head.version_id.as_deref()).await?;
    let columns = match crate::archive::parquet::read::expected_columns(&rec.columns, &footer) {
        Ok(columns) => columns,
        Err(e) => return Ok(Err(format!("has other columns than the manifest's: {e:#}"))),
    };
    check_rows(conn, partition, &condition, recorded, Some((&columns, &footer))).await
}

/// Why an object at a chunk's key is not adopted by its content.
enum NotSame {
    /// Its content cannot be compared (cold, no S3 checksum): why.
    Uncomparable(String),
    /// Compared: it holds other rows (`found_rows` against the chunk's `rows`).
    Differs { found_rows: u64, rows: u64 },
}

/// What an object adopted by its content holds, as a chunk row records it.
struct Figures {
    rows: u64,
    raw_bytes: u64,
    sha256: String,
}

/// Does the object at the chunk's key hold exactly the chunk's rows? Its content read back (which
/// also checks it decompresses and parses) against a COPY of the chunk's block range in the same
/// format. `Ok(Err(why))` when it cannot be compared or differs. Only an object S3 serves now and
/// that carries an S3 SHA-256 can be adopted (a cold one is an old archive, not a fresh upload;
/// one without a checksum could never pass the HEAD check). A Parquet object is compared with a
/// re-encode of the range by this version's encoder and settings ([`pipeline::digest`]):
/// a Parquet file's bytes depend on its writer too, so one written by another version or with
/// other settings is refused, never adopted wrongly.
async fn same_content(
    job: &Job<'_>,
    chunk: &ChunkRecord,
    head: &ObjectHead,
) -> anyhow::Result<Result<Figures, NotSame>> {
    let Job { conn, partition, archiver, rec, .. } = *job;
    let (format, compression) = (rec.format()?, rec.compression()?);
    let class = head.storage_class.as_deref().unwrap_or("STANDARD");
    match retrieval::access(head.storage_class.as_deref(), head.archive_status.as_deref(), head.restore.as_deref()) {
        Err(unknown) => return Ok(Err(NotSame::Uncomparable(unknown))),
        Ok(Access::Readable) => {}
        Ok(_) => return Ok(Err(NotSame::Uncomparable(format!("it is in {class}, not readable without a retrieval")))),
    }
    if head.checksum_sha256.is_none() {
        return Ok(Err(NotSame::Uncomparable("it has no S3 SHA-256 checksum".into())));
    }
    let key = chunk.object_key.as_str();
    let source = Source { key, version_id: head.version_id.as_deref(), format, compression, columns: &rec.columns };
    let settings = &archiver.store.settings;
    let parquet = super::prepare::parquet_write(conn, rec, format, partition, settings).await?;
    let what = format!("read s3://{}/{key}", settings.bucket);
    let progress = Progress::start(what.clone(), Some(head.size.max(0) as u64), settings.progress_log_every());
    let object = pipeline::read_object(None, &archiver.store, source, Hashes::for_comparing(format), progress)
        .await
        .context(what)?;
    let copy = pipeline::copy_out_sql(partition, format, parquet.as_ref(), &chunk.range().ctid_condition());
    let encoding = pipeline::Encoding { format, compression, level: settings.compression_level, parquet };
    let again = pipeline::digest(conn, &copy, &encoding).await?;
    if object.comparable_sha256(format) == Some(again.sha256.as_str())
        && object.rows_counted == again.rows
        && object.compressed_bytes == head.size as u64
    {
        return Ok(Ok(Figures { rows: again.rows, raw_bytes: again.raw_bytes, sha256: object.sha256 }));
    }
    Ok(Err(NotSame::Differs { found_rows: object.rows_counted, rows: again.rows }))
}

/// A chunk's rows against what its object holds: `count(*)` over its block range equals `rows`,
/// and for Parquet the object's footer (row count, null counts, min and max of every row group)
/// agrees with PostgreSQL's statistics over the same range. Checked before a fresh upload is
/// completed (against the rows streamed and the footer just written) and for an object taken as a
/// chunk's own, so the plan (contiguous ranges from block 0, the last one open) needs no scan of
/// the whole table at the end. `Ok(Err(why))` on a difference.
async fn check_rows(
    conn: &Client,
    partition: &QualifiedName,
    condition: &str,
    rows: i64,
    parquet: Option<(&[crate::archive::parquet::ArchiveColumn], &parquet::file::metadata::ParquetMetaData)>,
) -> anyhow::Result<Result<(), String>> {
    let differs = |counted: i64| format!("holds {rows} rows but count(*) over its block range is {counted}");
    let Some((columns, footer)) = parquet else {
        let counted: i64 = conn
            .query_one(&format!("SELECT count(*) FROM {} WHERE {condition}", partition.quoted()), &[])
            .await
            .context("count the chunk's rows")?
            .get(0);
        return Ok((counted == rows).then_some(()).ok_or_else(|| differs(counted)));
    };
    let pg = check::pg_statistics(conn, partition, columns, condition).await?;
    if pg.rows != rows {
        return Ok(Err(differs(pg.rows)));
    }
    Ok(crate::archive::parquet::stats::compare(columns, std::slice::from_ref(footer), pg.rows, &pg.per_column)
        .map_err(|why| format!("has Parquet statistics that differ from its rows in the table: {why}")))
}

/// A chunk's attempt failed with `e`: its multipart upload is aborted (or left for the next run
/// to abort) and the chunk goes back to `pending` with the error. Returns `e`.
async fn give_back(job: &Job<'_>, chunk: &ChunkRecord, upload_id: &str, e: anyhow::Error) -> anyhow::Error {
    let key = &chunk.object_key;
    if let Err(abort) = job.archiver.store.abort_upload(key, upload_id).await {
        tracing::error!(error = %format!("{abort:#}"), %key, "could not abort the multipart upload; the next run aborts it");
    }
    let message = format!("chunk {}: {e:#}", chunk.chunk_no);
    let _ = job.set_chunk(chunk, ChunkChange::Failed { why: &format!("{e:#}") }).await;
    let _ = job.note_error(&message).await;
    e
}

/// Every chunk of the plan is uploaded: the plan covers every block of the relation, each chunk
/// object passes HEAD, the totals are recorded (`uploaded`), then the JSON manifest (`verified`).
/// Reads catalog rows and HEADs, never the table: each chunk checked its own rows against
/// `count(*)` over its range (and a Parquet chunk its statistics) before it was completed, so
/// contiguous ranges from block 0 to an open end sum to the table's count.
async fn finish(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
) -> anyhow::Result<Archived> {
    let rec = reload(client, policy, partition).await?;
    // Again here: a run killed (or a delete refused) after an earlier plan left objects behind.
    retire_superseded(archiver, &rec).await;
    let chunks: Vec<&ChunkRecord> = rec.current_chunks().collect();
    anyhow::ensure!(!chunks.is_empty() && all_uploaded(&rec), "not every chunk is uploaded");
    let ranges: Vec<BlockRange> = chunks.iter().map(|c| c.range()).collect();
    chunks::covers_every_block(&ranges).map_err(|why| {
        Error::integrity(format!("{partition}: the recorded chunk plan {why}: not verified, nothing dropped"))
    })?;
    let sum = |f: fn(&ChunkRecord) -> Option<i64>| -> Option<i64> { chunks.iter().map(|c| f(c)).sum() };
    let (rows, raw, compressed) = (sum(|c| c.row_count), sum(|c| c.raw_bytes), sum(|c| c.compressed_bytes));
    if let Err(reason) = check::by_head(archiver, &rec).await? {
        let reset = upload_missing_again(&Job { conn: client, policy, partition, archiver, rec: &rec }).await?;
        if reset == 0 {
            bail!(Error::integrity(reason));
        }
        let why = format!(
            "{reset} chunk object(s) recorded as uploaded had disappeared from the bucket: they are uploaded again"
        );
        // Reloaded: a unit may have uploaded a reset chunk again meanwhile; the next run finishes.
        return Ok(unfinished(&reload(client, policy, partition).await?, why));
    }
    let one = match chunks[..] {
        [one] => Some(one),
        _ => None,
    };
    let uploaded = PartitionChange::Uploaded { rows, raw_bytes: raw, compressed_bytes: compressed, one };
    crate::pg::ddl::exec(client, &manifest::partition_change_sql(&policy.table, &partition.name, &uploaded)).await?;
    crate::fail_point!("after_upload");
    let rec = reload(client, policy, partition).await?;
    let first = rec.current_chunks().next().map(|c| c.object_key.clone()).unwrap_or_default();
    let manifest_key = manifest::manifest_key(&first, &rec.table_folder(), &rec.partition_name);
    let rec = record(client, policy, archiver, rec, manifest_key).await?;
    let total = rec.current_chunks().count();
    let bucket = &archiver.store.settings.bucket;
    let (chunks_counted, location) = match first.rsplit_once('/') {
        _ if total == 1 => (None, format!("s3://{bucket}/{first}")),
        Some((dir, _)) => (Some(total), format!("s3://{bucket}/{dir}/ ({total} chunks)")),
        None => (Some(total), format!("s3://{bucket}/ ({total} chunks)")),
    };
    Ok(Archived {
        complete: true,
        unfinished_because: None,
        chunks_done: chunks_counted,
        chunks_total: chunks_counted,
        rows: rec.row_count,
        raw_bytes: rec.raw_bytes,
        compressed_bytes: rec.compressed_bytes,
        location: Some(location),
    })
}

/// Chunks recorded `uploaded` whose object is no longer at its key (deleted by hand, or a bucket
/// rule), while the partition is still in PostgreSQL: they go back to `pending`, without their
/// upload's figures, so they are uploaded again (by this run's next pass or the next run). The
/// key holds no object, so nothing is replaced; an object of other bytes at the key is still
/// refused when the upload finds it. Returns how many.
async fn upload_missing_again(job: &Job<'_>) -> anyhow::Result<usize> {
    let Job { partition, archiver, rec, .. } = *job;
    let mut reset = 0;
    for (obj, chunk) in rec.objects().iter().zip(rec.current_chunks()) {
        let Err(check::Unlocated::Missing(why)) = check::locate(archiver, obj).await? else { continue };
        tracing::warn!(%partition, chunk = chunk.chunk_no, why, "a chunk's object is gone while the partition is still in PostgreSQL: it is uploaded again");
        if job.set_chunk(chunk, ChunkChange::Lost { why: &why }).await? {
            reset += 1;
        }
    }
    Ok(reset)
}

/// What one `archive_chunk` unit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitOutcome {
    Uploaded,
    /// An earlier unit or run uploaded it.
    AlreadyUploaded,
    /// Another unit or run holds the chunk's lock.
    Busy,
    /// The table was rewritten since the plan: the next maintain plans again.
    Rewritten,
    /// The invocation's remaining time would not cover the chunk (see `ARCHIVE_CHUNK_SIZE`).
    NotStarted,
}

/// One fan-out unit: chunk `chunk_no` of the current plan of `partition`, on `client`, under the
/// chunk's advisory lock (not the table's: units of one partition run side by side). A chunk that
/// does not exist, or a partition without a chunk plan, is refused with nothing changed.
pub async fn archive_unit(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    chunk_no: i32,
) -> anyhow::Result<(UnitOutcome, Option<i64>)> {
    let rec = manifest::load(client, &policy.table, &partition.name).await?.ok_or_else(|| {
        Error::not_found(format!("{partition} of {} has no archive manifest row: no chunk to archive", policy.table))
    })?;
    if !rec.is_chunked() || rec.state != ArchiveState::Uploading {
        bail!(Error::invalid(format!(
            "{partition} has no chunk plan being archived (archive state {}): run `maintain --fan-out` to plan its chunks",
            rec.state
        )));
    }
    let count = rec.current_chunks().count();
    let chunk = rec.current_chunks().find(|c| c.chunk_no == chunk_no).cloned().ok_or_else(|| {
        Error::invalid(format!(
            "chunk {chunk_no} does not exist in the current plan of {partition} (chunks 1 to {count}, plan {})",
            rec.chunk_generation
        ))
    })?;
    if chunk.state == ChunkState::Uploaded {
        return Ok((UnitOutcome::AlreadyUploaded, chunk.row_count));
    }
    same_bucket(&rec, archiver, partition)?;
    let bytes = heap_bytes(&rec, &chunk, relation(client, partition).await?.block_size);
    if !chunks::worth_starting(archiver.remaining(), bytes, None, archiver.margin(FINISH_MARGIN)) {
        tracing::warn!(%partition, chunk = chunk_no, bytes, "not started: this invocation's time would not cover it");
        return Ok((UnitOutcome::NotStarted, None));
    }
    let job = Job { conn: client, policy, partition, archiver, rec: &rec };
    let outcome = match archive_chunk(&job, &chunk, bytes).await? {
        ChunkRun::Done(..) => UnitOutcome::Uploaded,
        ChunkRun::Busy => UnitOutcome::Busy,
        ChunkRun::Rewritten(why) => {
            tracing::warn!(%partition, why, "rewritten since the chunks were planned: the next maintain plans again");
            UnitOutcome::Rewritten
        }
    };
    let rows = job.load_chunk(&chunk).await?.and_then(|c| c.row_count);
    Ok((outcome, rows))
}
