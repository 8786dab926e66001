//! Restore an archived partition into PostgreSQL, verified; re-verify archives; list them.
//!
//! Cold storage: before anything changes, restore HEADs every object (and, when the database has
//! no manifest row, the JSON manifest), following an identical copy of one ([`check::locate`]).
//! One S3 will not serve yet gets a `RestoreObject` request and the restore returns
//! [`RestoreOutcome::Pending`]: nothing in PostgreSQL is touched, and a later restore finds the
//! retrieval done and restores as usual.
//!
//! Restore: find the manifest (the database's row, or the JSON beside the object when the row is
//! gone), check it, then load every object, a one-object archive as a plan of one
//! (`restore_chunks`: a staging table, each object in a transaction committed only when its SHA-256
//! and row counts match, within the deadline, resumable; one short rename at the end). With
//! `attach`, attach it back to its parent if the range is free, or say why not.

use crate::archive::check;
use crate::archive::manifest::{self, ArchiveObject, ManifestRecord};
use crate::archive::restore_chunks::{self, Loaded, Step};
use crate::archive::retrieval::{self, Access, Pending};
use crate::archive::store::{self, ObjectHead};
use crate::archive::Archiver;
use crate::error::Error;
use crate::pg::catalog::parent_columns;
use crate::plan::ident::{quote_ident, quote_literal, validate_ident, QualifiedName};
use crate::plan::reshape::{reshape, ArchivedColumn, Change};
use anyhow::Context;
use futures_util::StreamExt;
use serde::Serialize;
use tokio_postgres::Client;

#[derive(Debug, Default, Serialize)]
pub struct RestoreReport {
    pub table: QualifiedName,
    pub partition: String,
    pub restored_as: QualifiedName,
    /// `false` when the time left ended the restore before every object was loaded: the staging
    /// table keeps what is loaded, and the next restore of the partition goes on from there.
    pub complete: bool,
    /// Rows restored (when complete).
    pub rows: u64,
    /// SHA-256 of the one object (a chunked archive checks each chunk's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Chunks restored, for a chunked archive (or the objects in all, for an unfinished restore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<usize>,
    /// Objects loaded so far, for an unfinished restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_done: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unfinished_because: Option<String>,
    pub source: String,
    /// The database that made the archive (`system_identifier`), when the manifest records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_attached_because: Option<String>,
    /// What `--attach` changed so the parent, whose columns changed since the archive, took the
    /// table (`plan::reshape`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reshaped: Vec<String>,
    /// A fan-out's plan (`restore --fan-out`): its restore id ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_id: Option<String>,
    /// ... and one unit per object left to load (`restore-chunk`); then `restore` renames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<RestoreUnit>>,
}

/// One unit of a fan-out restore: what a `restore_chunk` event (or `restore-chunk`) carries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreUnit {
    pub table: String,
    pub partition: String,
    pub chunk: i32,
    pub restore_id: String,
    pub into_schema: String,
}

/// What one unit did.
#[derive(Debug, Serialize)]
pub struct UnitReport {
    pub table: QualifiedName,
    pub partition: String,
    pub chunk: i32,
    pub restore_id: String,
    /// `loaded`, or `already_loaded` (by another unit or an earlier attempt).
    pub outcome: &'static str,
    /// The object's rows.
    pub rows: i64,
}

impl RestoreReport {
    /// A complete restore of `rec` into `target`, before its rows and attach are known.
    fn of(
        table: &QualifiedName,
        partition: &str,
        target: &QualifiedName,
        rec: &ManifestRecord,
        source: String,
    ) -> Self {
        let objects = rec.objects();
        RestoreReport {
            table: table.clone(),
            partition: partition.into(),
            restored_as: target.clone(),
            complete: true,
            // One object: its SHA-256 (each of a chunked archive's is checked against its own).
            sha256: (objects.len() == 1).then(|| objects[0].sha256.unwrap_or_default().to_string()),
            chunks: (objects.len() > 1).then_some(objects.len()),
            source,
            system_identifier: rec.system_identifier.clone(),
            ..Default::default()
        }
    }

    /// A fan-out's plan: one unit per object `left` of `total`.
    fn planned(self, restore_id: String, left: Vec<i32>, total: usize) -> Self {
        let unit = |chunk| RestoreUnit {
            table: self.table.to_string(),
            partition: self.partition.clone(),
            chunk,
            restore_id: restore_id.clone(),
            into_schema: self.restored_as.schema.clone(),
        };
        RestoreReport {
            complete: false,
            chunks: Some(total),
            chunks_done: Some(total - left.len()),
            units: Some(left.iter().copied().map(unit).collect()),
            restore_id: Some(restore_id.clone()),
            unfinished_because: Some("planned: load the units, then restore again to rename".into()),
            ..self
        }
    }

    /// A fan-out's plan for a table restored before and not attached: no unit to load; the
    /// final step attaches it.
    fn left_to_attach(self) -> Self {
        RestoreReport {
            complete: false,
            units: Some(Vec::new()),
            unfinished_because: Some("restored before and not attached: restore again to attach it".into()),
            ..self
        }
    }

    /// Stopped by the deadline with `done` of `total` objects loaded.
    fn unfinished(self, done: usize, total: usize, why: String, attach: bool) -> Self {
        RestoreReport {
            complete: false,
            chunks_done: Some(done),
            chunks: Some(total),
            unfinished_because: Some(why),
            not_attached_because: attach.then(|| "the restore is not complete yet".into()),
            ..self
        }
    }
}

impl From<RestoreReport> for RestoreOutcome {
    fn from(report: RestoreReport) -> Self {
        RestoreOutcome::Restored(Box::new(report))
    }
}

impl UnitReport {
    fn of(table: &QualifiedName, partition: &str, step: Step<'_>, rows: i64, already: bool) -> Self {
        let Step::Unit { chunk, restore_id } = step else { unreachable!("only a unit step loads one unit") };
        let outcome = if already { "already_loaded" } else { "loaded" };
        UnitReport {
            table: table.clone(),
            partition: partition.into(),
            chunk,
            restore_id: restore_id.into(),
            outcome,
            rows,
        }
    }
}

/// What a restore did: restored (or planned, or stopped at its deadline), loaded one unit, or asked
/// S3 for a retrieval and changed nothing.
#[derive(Debug)]
pub enum RestoreOutcome {
    Restored(Box<RestoreReport>),
    Unit(UnitReport),
    Pending(Pending),
}

/// Can the object at `key`, as `head` describes it, be read now? `None` when it can; otherwise the
/// retrieval it waits for, requested here if none is running (RestoreObject). Reads no data.
async fn readable_now(archiver: &Archiver, key: &str, head: &ObjectHead) -> Result<Option<Pending>, Error> {
    let store = &archiver.store;
    let object = format!("s3://{}/{key}", store.settings.bucket);
    let (class, status) = (head.storage_class.as_deref(), head.archive_status.as_deref());
    let access = retrieval::access(class, status, head.restore.as_deref())
        .map_err(|e| Error::integrity(format!("{object}: {e}: nothing was changed")))?;
    let settings = store.settings.retrieval;
    let class_name = class.unwrap_or("STANDARD");
    match access {
        Access::Readable => Ok(None),
        Access::InProgress => Ok(Some(Pending::new(false, settings.tier, class_name, status, object, None))),
        Access::Archived => {
            let (tier, days) = retrieval::request_for(class, status, settings)
                .map_err(|e| Error::invalid(format!("{object} is in {class_name}: {e}")))?;
            let version_id = head.version_id.as_deref();
            let started = store.request_retrieval(key, version_id, tier, days).await?;
            tracing::info!(%object, storage_class = class_name, tier = tier.as_str(), started, "retrieval pending");
            Ok(Some(Pending::new(started, tier, class_name, status, object, days)))
        }
    }
}

/// Finds every object of the archive ([`check::locate`]: the recorded version, or an identical copy
/// of it) and points `rec` at the versions found, so the restore reads what is there now. A
/// missing object is `NotFound`. A recorded version whose HEAD does not say it holds the recorded
/// bytes (a copy without a SHA-256 checksum, say) is still read: the SHA-256 of every byte loaded
/// decides, and nothing is kept if it differs.
/// `only`: just that chunk's object (a unit reads no other). The HEADs go out
/// [`check::HEADS_AT_ONCE`] at a time: an archive of a 500 GB partition has thousands of chunks.
async fn locate_objects(
    archiver: &Archiver,
    rec: &mut ManifestRecord,
    only: Option<i32>,
) -> Result<Vec<(Option<i32>, ObjectHead)>, Error> {
    let objects: Vec<ArchiveObject<'_>> =
        rec.objects().into_iter().filter(|o| only.is_none() || o.chunk_no.or(Some(1)) == only).collect();
    let located: Vec<_> = futures_util::stream::iter(objects.iter().map(|o| check::locate(archiver, o)))
        .buffered(check::HEADS_AT_ONCE)
        .collect()
        .await;
    let mut found = Vec::new();
    for (o, at) in objects.iter().zip(located) {
        match at? {
            Ok(at) => {
                if let Some(note) = &at.followed {
                    tracing::warn!(note, "restoring from the copy the archive object was rewritten into");
                }
                found.push((o.chunk_no, at.head));
            }
            Err(check::Unlocated::Missing(why)) => {
                return Err(Error::not_found(format!("archive {why} (the manifest records that version)")))
            }
            Err(check::Unlocated::Differs(why, Some(head))) => {
                tracing::warn!(why, "the object's HEAD does not match its record: restoring it, checked by SHA-256");
                found.push((o.chunk_no, *head));
            }
            Err(check::Unlocated::Differs(why, None)) => {
                return Err(Error::integrity(format!("archive {why}: nothing was changed")))
            }
        }
    }
    for (chunk_no, head) in &found {
        rec.follow(*chunk_no, head.version_id.clone());
    }
    Ok(found)
}

/// Where a manifest was found.
pub enum Found {
    Manifest(Box<ManifestRecord>, String),
    /// The JSON manifest itself is in cold storage (archives made before manifests were kept out
    /// of the lifecycle rule): its retrieval.
    Pending(Pending),
}

/// The manifest of `partition`: from the database, or from S3 when the database has no row.
pub async fn find_manifest(
    client: &Client,
    archiver: &Archiver,
    table: &QualifiedName,
    partition: &str,
) -> Result<Found, Error> {
    let from_db = manifest::load(client, table, partition).await?;
    if let Some(rec) = from_db {
        return Ok(Found::Manifest(Box::new(rec), "database manifest".into()));
    }
    let store = &archiver.store;
    let wanted = format!("/{partition}.manifest.json");
    if let Some(key) = manifest_keys(archiver, Some(table)).await?.into_iter().find(|k| k.ends_with(&wanted)) {
        let head = store.head(&key, None).await?.ok_or_else(|| Error::not_found(format!("{key} vanished")))?;
        if let Some(pending) = readable_now(archiver, &key, &head).await? {
            return Ok(Found::Pending(pending));
        }
        let rec = read_bucket_manifest(archiver, &key).await?;
        return Ok(Found::Manifest(Box::new(rec), format!("s3://{}/{key}", store.settings.bucket)));
    }
    Err(Error::not_found(format!(
        "no archive of partition {partition} of {table}: neither the database manifest nor S3 has one"
    )))
}

/// The keys of the JSON manifests under the archive prefix, of `table` or of every table.
async fn manifest_keys(archiver: &Archiver, table: Option<&QualifiedName>) -> Result<Vec<String>, Error> {
    let store = &archiver.store;
    let folder = table.map(|t| format!("{}.{}/", t.schema, t.name)).unwrap_or_default();
    let prefix = if store.settings.prefix.is_empty() { folder } else { format!("{}/{folder}", store.settings.prefix) };
    let mut keys = Vec::new();
    let mut pages =
        store.client.list_objects_v2().bucket(&store.settings.bucket).prefix(&prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(store::sdk_err).with_context(|| format!("list s3://{}/{prefix}", store.settings.bucket))?;
        keys.extend(
            page.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with(".manifest.json")).map(String::from),
        );
    }
    Ok(keys)
}

async fn read_bucket_manifest(archiver: &Archiver, key: &str) -> Result<ManifestRecord, Error> {
    let body = archiver.store.get_small(key).await?.ok_or_else(|| Error::not_found(format!("{key} vanished")))?;
    serde_json::from_slice(&body)
        .map_err(|e| Error::integrity(format!("manifest {key} is not a valid partition-archiver manifest: {e}")))
}

/// What the bucket holds, from its JSON manifests alone (`list --from-bucket`): for a database
/// that lost its records (a new one after a disaster), what there is to restore. Reads only: a
/// manifest that cannot be read (in cold storage, not a manifest) is named with the reason, and no
/// retrieval is requested.
pub async fn list_bucket(
    archiver: &Archiver,
    table: Option<&QualifiedName>,
) -> Result<(Vec<ManifestRecord>, Vec<String>), Error> {
    let (mut archives, mut unreadable) = (Vec::new(), Vec::new());
    for key in manifest_keys(archiver, table).await? {
        match read_bucket_manifest(archiver, &key).await {
            Ok(rec) => archives.push(rec),
            Err(e) => unreadable.push(format!("s3://{}/{key}: {}", archiver.store.settings.bucket, e.message)),
        }
    }
    archives.sort_by(|a, b| {
        (&a.table_schema, &a.table_name, &a.partition_name).cmp(&(&b.table_schema, &b.table_name, &b.partition_name))
    });
    Ok((archives, unreadable))
}

/// Checks a manifest before it drives any SQL: it must name this table and partition, be complete,
/// and every column type must be one PostgreSQL parses as a type.
async fn check_manifest(
    client: &Client,
    rec: &ManifestRecord,
    table: &QualifiedName,
    partition: &str,
) -> Result<(), Error> {
    if &rec.table() != table || rec.partition_name != partition {
        return Err(Error::integrity(format!(
            "manifest is for {}.{}, not {table} {partition}",
            rec.table(),
            rec.partition_name
        )));
    }
    if !rec.state.is_archived() {
        return Err(Error::invalid(format!(
            "partition {partition} is in archive state {}: only verified archives are restored",
            rec.state
        )));
    }
    let objects = rec.objects();
    let sha_ok = |s: Option<&str>| s.is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    if objects.is_empty()
        || rec.row_count.is_none()
        || objects.iter().any(|o| !sha_ok(o.sha256) || o.row_count.is_none())
        || (rec.is_chunked()
            && objects.iter().map(|o| o.row_count.unwrap_or(0)).sum::<i64>() != rec.row_count.unwrap_or(-1))
    {
        return Err(Error::integrity(format!(
            "manifest of {partition} is incomplete or inconsistent (sha256, row_count, object key of every object)"
        )));
    }
    for o in &objects {
        check_key(o.key, table, partition)?;
    }
    rec.format().map_err(|e| Error::integrity(e.to_string()))?;
    rec.compression().map_err(|e| Error::integrity(e.to_string()))?;
    if rec.columns.is_empty() {
        return Err(Error::integrity(format!("manifest of {partition} has no columns")));
    }
    for c in &rec.columns {
        validate_ident(&c.name).map_err(|e| Error::integrity(format!("manifest column: {e}")))?;
        // Type names come from format_type() at archive time; anything else is refused before it
        // reaches DDL (to_regtype parses a type name and nothing more).
        let ok = c.type_name.len() < 200
            && !c.type_name.contains(';')
            && !c.type_name.contains("--")
            && !c.type_name.contains("/*")
            && client
                .query_one("SELECT to_regtype($1) IS NOT NULL", &[&c.type_name])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
        if !ok {
            return Err(Error::integrity(format!("manifest column {} has an invalid type {:?}", c.name, c.type_name)));
        }
    }
    Ok(())
}

/// The object must be one of this table's and this partition's archives: `.../{schema}.{table}/
/// .../{partition}.{ext}` (any prefix, which a deployment may have changed since). A manifest
/// edited to point at another table's object, checksums and all, stops here.
fn check_key(key: &str, table: &QualifiedName, partition: &str) -> Result<(), Error> {
    let table_dir = format!("{}.{}/", table.schema, table.name);
    let under_table = if key.starts_with(&table_dir) {
        Some(&key[table_dir.len()..])
    } else {
        key.find(&format!("/{table_dir}")).map(|i| &key[i + 1 + table_dir.len()..])
    };
    // The file name starts with the partition name (which may itself contain '/').
    let named = under_table
        .is_some_and(|rest| rest.starts_with(&format!("{partition}.")) || rest.contains(&format!("/{partition}.")));
    if !named {
        return Err(Error::integrity(format!(
            "manifest of {partition} points at {key}, which is not an archive of {table} {partition}"
        )));
    }
    Ok(())
}

/// `restore --attach`: put the restored table back under its parent, reshaped to the parent's
/// columns where no value is lost, dropping the `drop_columns` the parent no longer has.
#[derive(Debug, Clone, Copy)]
pub struct Attach<'a> {
    pub drop_columns: &'a [String],
}

/// Restores `partition` of `table` into `into_schema`, or does one `step` of a fan-out restore.
#[allow(clippy::too_many_arguments)]
pub async fn restore(
    client: &mut Client,
    archiver: &Archiver,
    table: &QualifiedName,
    partition: &str,
    into_schema: &str,
    attach: Option<Attach<'_>>,
    lock_timeout_ms: u64,
    step: Step<'_>,
) -> Result<RestoreOutcome, Error> {
    validate_ident(partition)?;
    validate_ident(into_schema)?;
    let (mut rec, source) = match find_manifest(client, archiver, table, partition).await? {
        Found::Manifest(rec, source) => (*rec, source),
        Found::Pending(p) => return Ok(RestoreOutcome::Pending(p)),
    };
    check_manifest(client, &rec, table, partition).await?;
    if let Some(Attach { drop_columns }) = attach {
        // Bad input changes nothing: checked before anything is loaded.
        if let Some(c) = drop_columns.iter().find(|c| !rec.columns.iter().any(|a| &a.name == *c)) {
            let names: Vec<&str> = rec.columns.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "--drop-columns names {c}, which the archive of {partition} does not have (its columns: {})",
                names.join(", ")
            )));
        }
    }
    if let (Some(Attach { drop_columns }), Step::Whole | Step::Plan) = (attach, step) {
        refuse_unattachable(client, &rec, drop_columns).await?;
    }
    let target = QualifiedName::new(into_schema, partition);
    if let Some(unattached) = restore_chunks::restored_unattached(client, &rec, &target).await? {
        // Restored before and not attached (the attach refused, or the run killed before it):
        // `--attach` attaches it, nothing loaded again; a fan-out's plan has no unit to load,
        // and its final step (a whole restore) attaches.
        let report = RestoreReport::of(table, partition, &target, &rec, source);
        match (attach, step, unattached) {
            (Some(attach), Step::Whole, true) => {
                let report = RestoreReport { rows: rec.row_count.unwrap_or_default().max(0) as u64, ..report };
                return Ok(attached(client, &rec, &target, attach, lock_timeout_ms, report).await.into());
            }
            (Some(_), Step::Plan, true) => return Ok(report.left_to_attach().into()),
            _ => {}
        }
        return Err(Error::invalid(format!(
            "{target} already exists: this partition was already restored (drop it or restore into another schema{})",
            if unattached { "; `--attach` attaches it as it is" } else { "" }
        )));
    }
    if let Some(pending) = readable_or_retrieving(archiver, &mut rec, step).await? {
        return Ok(RestoreOutcome::Pending(pending));
    }
    let loaded = Box::pin(restore_chunks::restore_objects(client, archiver, &rec, &target, step)).await?;
    let report = RestoreReport::of(table, partition, &target, &rec, source);
    let report = match loaded {
        Loaded::Complete(rows) => RestoreReport { rows, ..report },
        Loaded::Unit { rows, already } => {
            return Ok(RestoreOutcome::Unit(UnitReport::of(table, partition, step, rows, already)))
        }
        Loaded::Planned { restore_id, left, total } => return Ok(report.planned(restore_id, left, total).into()),
        Loaded::Unfinished { done, total, why } => {
            return Ok(report.unfinished(done, total, why, attach.is_some()).into())
        }
    };
    Ok(match attach {
        Some(attach) => attached(client, &rec, &target, attach, lock_timeout_ms, report).await,
        None => report,
    }
    .into())
}

/// `report` once the restored table is attached back ([`attach_back`]), or with why not.
async fn attached(
    client: &mut Client,
    rec: &ManifestRecord,
    target: &QualifiedName,
    Attach { drop_columns }: Attach<'_>,
    lock_timeout_ms: u64,
    mut report: RestoreReport,
) -> RestoreReport {
    match attach_back(client, rec, target, drop_columns, lock_timeout_ms).await {
        Ok(reshaped) => (report.attached, report.reshaped) = (true, reshaped),
        Err(why) => report.not_attached_because = Some(why),
    }
    report
}

/// Every object `step` reads, located ([`locate_objects`]) and readable now; otherwise the
/// retrieval it waits for, requested for each cold object at once (so the chunks of one archive
/// come back together). A unit locates only its own object.
async fn readable_or_retrieving(
    archiver: &Archiver,
    rec: &mut ManifestRecord,
    step: Step<'_>,
) -> Result<Option<Pending>, Error> {
    let only = match step {
        Step::Unit { chunk, .. } => Some(chunk),
        _ => None,
    };
    let located = locate_objects(archiver, rec, only).await?;
    let objects = rec.objects();
    let mut pending = None;
    for (chunk_no, head) in located {
        let key = objects.iter().find(|o| o.chunk_no == chunk_no).map(|o| o.key).unwrap_or_default();
        if let Some(p) = readable_now(archiver, key, &head).await? {
            pending.get_or_insert(p);
        }
    }
    Ok(pending)
}

/// Attaches a restored table back to its parent, first reshaped to the parent's columns where no
/// value is lost (`plan::reshape`), in one transaction: returns what was changed, or
/// `Err(reason)` (the range is not free, a column cannot follow) with the table left as restored.
async fn attach_back(
    client: &mut Client,
    rec: &ManifestRecord,
    target: &QualifiedName,
    drop_columns: &[String],
    lock_timeout_ms: u64,
) -> Result<Vec<String>, String> {
    let parent = rec.table();
    let bound = |b: &Option<String>, open: &str| b.as_deref().map_or(open.to_string(), quote_literal);
    let attach = format!(
        "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})",
        parent.quoted(),
        target.quoted(),
        bound(&rec.range_from, "MINVALUE"),
        bound(&rec.range_to, "MAXVALUE")
    );
    let result: anyhow::Result<Result<Vec<String>, String>> = async {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{lock_timeout_ms}ms'")).await?;
        let changes = match reshape(&archived_columns(rec), &parent_columns(&tx, &parent).await?, drop_columns) {
            Ok(changes) => changes,
            Err(why) => return Ok(Err(why)),
        };
        for change in &changes {
            tx.batch_execute(&change.sql(target)).await.with_context(|| change.describe())?;
        }
        // ATTACH requires the parent's CHECK constraints on the table.
        let checks = tx
            .query(
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'c'",
                &[&parent.quoted()],
            )
            .await?;
        for c in checks {
            let (name, def): (String, String) = (c.get(0), c.get(1));
            tx.batch_execute(&format!("ALTER TABLE {} ADD CONSTRAINT {} {def}", target.quoted(), quote_ident(&name))).await?;
        }
        tx.batch_execute(&attach).await.context("attach")?;
        tx.batch_execute(&format!("COMMENT ON TABLE {} IS NULL", target.quoted())).await?;
        tx.commit().await?;
        Ok(Ok(changes.iter().map(Change::describe).collect()))
    }
    .await;
    let prefix = || format!("could not attach {target} to {parent}");
    result
        .map_err(|e| {
            let msg = e.chain().find_map(|c| {
                c.downcast_ref::<tokio_postgres::Error>().and_then(|d| d.as_db_error().map(|d| d.message().to_string()))
            });
            format!("{}: {}", prefix(), msg.unwrap_or_else(|| format!("{e:#}")))
        })?
        .map_err(|why| format!("{}: {why}", prefix()))
}

/// The archive's columns, as `plan::reshape` compares them with the parent's.
fn archived_columns(rec: &ManifestRecord) -> Vec<ArchivedColumn> {
    rec.columns
        .iter()
        .map(|c| ArchivedColumn { name: c.name.clone(), type_name: c.type_name.clone(), not_null: c.not_null })
        .collect()
}

/// Before anything is loaded: a restore that asks to attach, into a parent whose columns it could
/// not follow, is refused now (bad input, nothing changed) rather than after hours of loading.
/// The attach checks again in its own transaction. No parent: the attach will say so.
async fn refuse_unattachable(client: &Client, rec: &ManifestRecord, drop_columns: &[String]) -> Result<(), Error> {
    let parent = rec.table();
    let columns = parent_columns(client, &parent).await?;
    if columns.is_empty() {
        return Ok(());
    }
    reshape(&archived_columns(rec), &columns, drop_columns).map(|_| ()).map_err(|why| {
        Error::invalid(format!(
            "not restored: {} could not be attached to {parent} as asked: {why}. \
             Without --attach it is restored exactly as archived",
            rec.partition_name
        ))
    })
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyItem {
    pub table: QualifiedName,
    pub partition: String,
    pub ok: bool,
    /// `head`: size, S3 checksum and storage class by HEAD, no data read; `deep`: also read back
    /// through SHA-256 and recounted.
    pub checked: &'static str,
    /// As S3 reports it (`STANDARD` when S3 names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    pub rows: Option<u64>,
    pub message: String,
}

/// Checks every archived object against its manifest row: by HEAD (no data read, no retrieval,
/// whatever the storage class), and with `deep` also by reading it back (objects S3 serves now;
/// a cold one is reported as not readable without a retrieval, and never retrieved by verify).
pub async fn verify_all(
    client: &Client,
    archiver: &Archiver,
    table: Option<&QualifiedName>,
    deep: bool,
) -> Result<Vec<VerifyItem>, Error> {
    let records = manifest::list(client, table).await?;
    let mut out = Vec::new();
    for rec in records.into_iter().filter(|r| r.state.is_archived() && !r.objects().is_empty()) {
        let mut item = VerifyItem {
            table: rec.table(),
            partition: rec.partition_name.clone(),
            checked: "head",
            system_identifier: rec.system_identifier.clone(),
            ..Default::default()
        };
        match check::by_head(archiver, &rec).await {
            Err(e) => item.message = format!("{e:#}"),
            Ok(Err(reason)) => item.message = reason,
            Ok(Ok(checked)) => {
                // Every object's class (chunks may differ while a lifecycle rule moves them).
                let mut classes: Vec<String> =
                    checked.iter().map(|c| c.head.storage_class.clone().unwrap_or_else(|| "STANDARD".into())).collect();
                classes.dedup();
                let class = classes.join(",");
                let readable = checked.iter().all(|c| c.access == Access::Readable);
                item.storage_class = Some(class.clone());
                item.ok = true;
                item.message = format!("size, S3 checksum and version match the manifest ({class})");
                let followed: Vec<&str> = checked.iter().filter_map(|c| c.followed.as_deref()).collect();
                if !followed.is_empty() {
                    item.message = format!("size and SHA-256 match the manifest ({class}); {}", followed.join("; "));
                }
                if deep && !readable {
                    item.message = format!(
                        "{}; not readable without a retrieval ({class}): content not re-read (restore requests one)",
                        item.message
                    );
                } else if deep {
                    item.checked = "deep";
                    match check::by_reading(archiver, &rec, &checked).await {
                        Ok(rows) => {
                            item.rows = Some(rows);
                            item.message = format!("SHA-256 and row count match the manifest ({class})");
                        }
                        Err(e) => {
                            item.ok = false;
                            item.message = format!("{e:#}");
                        }
                    }
                }
            }
        }
        out.push(item);
    }
    Ok(out)
}
