//! The retention steps and the archive state machine they drive, one committed transition at a
//! time (see ARCHITECTURE.md, "Archive state machine"):
//!
//! - Detach: plain DETACH and the `detached` record commit together; CONCURRENTLY (only without a
//!   default partition) records `detaching` first, then `detached`.
//! - Archive: `uploading` (with the multipart upload id, so a killed run's upload is aborted by the
//!   next one) -> stream -> `uploaded` (size, SHA-256, rows) -> verify (HEAD size + composite
//!   checksum, `count(*)`, JSON manifest written and read back) -> `verified`. An `uploaded` object
//!   that still verifies is not uploaded again. First of all the table is frozen (a trigger refuses
//!   every write), so what was copied, counted and finally dropped is the same set of rows; the
//!   `count(*)` runs on a second connection while the COPY streams.
//! - Drop / MoveToSchema: one transaction that first calls `require_archive_state` (row locked,
//!   state `verified`, table no longer attached), so nothing unverified is ever dropped.

use crate::archive::manifest::{self, ManifestRecord};
use crate::archive::pipeline;
use crate::archive::settings::{Compression, Format};
use crate::archive::Archiver;
use crate::error::Error;
use crate::executor::{ddl_outside_transaction, run_ddl, ExecOptions, StepResult};
use crate::ident::{quote_ident, quote_literal, QualifiedName};
use crate::period::{bound_literal, Interval};
use crate::planner::Step;
use crate::policy::{RetentionAction, TablePolicy};
use crate::snapshot::{BoundValue, TableSnapshot};
use anyhow::{anyhow, bail, Context};
use tokio_postgres::Client;

pub async fn execute(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    step: &Step,
    opts: &ExecOptions,
    archiver: Option<&Archiver>,
) -> (anyhow::Result<StepResult>, u32) {
    match step {
        Step::Detach { partition, concurrently } => {
            detach(client, policy, snapshot, partition, *concurrently, opts).await
        }
        Step::Archive { partition } => match archiver {
            Some(a) => (archive(client, policy, partition, a, opts).await, 1),
            None => (Err(anyhow!("cannot archive {partition}: no archive bucket is configured (ARCHIVE_BUCKET)")), 0),
        },
        Step::Drop { partition } => {
            // Whatever happened to the freeze trigger since (dropped, disabled), the table may not
            // hold more rows than its archive (and exactly as many if the trigger is gone; fewer
            // are rows foreign-key cascades removed), checked under the lock the DROP takes anyway
            // (the table is detached: nobody else waits for it).
            let statements = [
                require_sql(&policy.table, &partition.name, &["verified"]),
                format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", partition.quoted()),
                format!(
                    "SELECT partition_archiver.require_row_count({}::regclass, m.row_count) \
                     FROM partition_archiver.archive_manifest m \
                     WHERE m.table_schema = {} AND m.table_name = {} AND m.partition_name = {}",
                    quote_literal(&partition.quoted()),
                    quote_literal(&policy.table.schema),
                    quote_literal(&policy.table.name),
                    quote_literal(&partition.name)
                ),
                format!("DROP TABLE {}", partition.quoted()),
                manifest::set_state_sql(
                    &policy.table,
                    &partition.name,
                    "dropped",
                    &[("finished_at", Some("now()".into()))],
                ),
            ];
            let (r, n) = run_ddl(client, opts, &format!("drop {partition}"), &statements).await;
            crate::fail_point!("after_drop");
            (r.map(|_| StepResult::default()), n)
        }
        Step::MoveToSchema { partition, schema } => {
            let allowed: &[&str] = match policy.retention_action {
                RetentionAction::DetachOnly => &["detaching", "detached"],
                _ => &["verified"],
            };
            let statements = [
                require_sql(&policy.table, &partition.name, allowed),
                format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
                format!("ALTER TABLE {} SET SCHEMA {}", partition.quoted(), quote_ident(schema)),
                manifest::set_state_sql(
                    &policy.table,
                    &partition.name,
                    "moved",
                    &[
                        ("moved_to_schema", Some(schema.clone())),
                        ("partition_schema", Some(schema.clone())),
                        ("finished_at", Some("now()".into())),
                    ],
                ),
            ];
            let (r, n) = run_ddl(client, opts, &format!("move {partition} to {schema}"), &statements).await;
            (r.map(|_| StepResult::default()), n)
        }
        other => (Err(anyhow!("not a retention step: {other:?}")), 0),
    }
}

fn require_sql(table: &QualifiedName, partition: &str, states: &[&str]) -> String {
    let states: Vec<String> = states.iter().map(|s| quote_literal(s)).collect();
    format!(
        "SELECT partition_archiver.require_archive_state({}, {}, {}, ARRAY[{}]::text[])",
        quote_literal(&table.schema),
        quote_literal(&table.name),
        quote_literal(partition),
        states.join(", ")
    )
}

async fn detach(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
    concurrently: bool,
    opts: &ExecOptions,
) -> (anyhow::Result<StepResult>, u32) {
    let record = match detach_record(client, policy, snapshot, partition).await {
        Ok(r) => r,
        Err(e) => return (Err(e), 0),
    };
    let detach = format!(
        "ALTER TABLE {} DETACH PARTITION {}{}",
        policy.table.quoted(),
        partition.quoted(),
        if concurrently { " CONCURRENTLY" } else { "" }
    );
    let label = format!("detach {partition}");
    // Never replace the record of an archived partition of the same name (its object would be
    // overwritten): the guard raises, the transaction rolls back, the partition stays attached.
    let guard = format!(
        "SELECT partition_archiver.require_not_archived({}, {}, {})",
        quote_literal(&policy.table.schema),
        quote_literal(&policy.table.name),
        quote_literal(&partition.name)
    );
    if !concurrently {
        let mut rec = record;
        rec.state = "detached".into();
        let (r, n) = run_ddl(client, opts, &label, &[guard, manifest::upsert_sql(&rec), detach]).await;
        crate::fail_point!("after_detach");
        return (r.map(|_| StepResult::default()), n);
    }
    let mut rec = record;
    rec.state = "detaching".into();
    let (r, mut n) = run_ddl(client, opts, &label, &[guard, manifest::upsert_sql(&rec)]).await;
    if let Err(e) = r {
        return (Err(e), n);
    }
    crate::fail_point!("before_detach_concurrently");
    let (r, m) = ddl_outside_transaction(client, opts, &label, &detach).await;
    n += m;
    if let Err(e) = r {
        return (Err(e), n);
    }
    let (r, m) =
        run_ddl(client, opts, &label, &[manifest::set_state_sql(&policy.table, &partition.name, "detached", &[])])
            .await;
    crate::fail_point!("after_detach");
    (r.map(|_| StepResult::default()), n + m)
}

async fn detach_record(
    client: &Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
) -> anyhow::Result<ManifestRecord> {
    // A partition this run created (for rows found in the default partition) is not in the
    // snapshot taken before the run: read the catalog again for it.
    let fresh;
    let snapshot = if snapshot.partitions.iter().any(|p| &p.name == partition) {
        snapshot
    } else {
        fresh = crate::catalog::load_snapshot(client, policy).await.map_err(anyhow::Error::new)?;
        &fresh
    };
    let info = snapshot
        .partitions
        .iter()
        .find(|p| &p.name == partition)
        .ok_or_else(|| anyhow!("{partition} is not a partition of {}", policy.table))?;
    let (from, to) = info.range().ok_or_else(|| anyhow!("{partition} is the default partition: never archived"))?;
    let lit = |b: BoundValue| match b {
        BoundValue::At(t) => Some(bound_literal(snapshot.key_type, policy.time_zone, t)),
        _ => None,
    };
    let columns = crate::catalog::columns(client, partition).await?;
    let key_type = serde_json::to_value(snapshot.key_type)?.as_str().unwrap_or_default().to_string();
    Ok(ManifestRecord {
        manifest_version: manifest::MANIFEST_VERSION,
        table_schema: policy.table.schema.clone(),
        table_name: policy.table.name.clone(),
        partition_schema: partition.schema.clone(),
        partition_name: partition.name.clone(),
        key_column: policy.column.clone(),
        key_type,
        time_zone: policy.time_zone.name().to_string(),
        range_from: lit(from),
        range_to: lit(to),
        columns,
        state: "detaching".into(),
        row_count: None,
        raw_bytes: None,
        compressed_bytes: None,
        sha256: None,
        format: None,
        compression: None,
        bucket: None,
        object_key: None,
        manifest_key: None,
        version_id: None,
        etag: None,
        checksum_composite: None,
        multipart_upload_id: None,
        pg_version: None,
        tool_version: None,
        moved_to_schema: None,
        created_at: None,
        uploaded_at: None,
        verified_at: None,
        finished_at: None,
    })
}

async fn exec(client: &Client, sql: &str) -> anyhow::Result<()> {
    client.batch_execute(sql).await.with_context(|| sql.chars().take(120).collect::<String>())
}

/// Aborts a background task when dropped (an early return must not leave a count running).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn archive(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    opts: &ExecOptions,
) -> anyhow::Result<StepResult> {
    let store = &archiver.store;
    let settings = &store.settings;
    let mut rec = manifest::load(&*client, &policy.table, &partition.name)
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
        Some(false) => {}
    }
    let format = policy.archive_format.as_deref().and_then(Format::parse).unwrap_or(settings.format);
    let compression =
        policy.archive_compression.as_deref().and_then(Compression::parse).unwrap_or(settings.compression);
    let key = manifest::object_key(&settings.prefix, &rec, policy.interval == Interval::Year, format, compression);

    // Freeze the table before anything reads it (migration 20250801000003): CREATE TRIGGER waits
    // for writers already in it and every later write fails, so the COPY, the row count and the
    // table that is finally dropped all hold the same rows. Idempotent (a rerun replaces it).
    let table = rec.partition();
    let freeze = format!(
        "CREATE OR REPLACE TRIGGER partition_archiver_frozen BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} \
         FOR EACH STATEMENT EXECUTE FUNCTION partition_archiver.refuse_writes()",
        table.quoted()
    );
    run_ddl(client, opts, &format!("freeze {table}"), &[freeze])
        .await
        .0
        .with_context(|| format!("freeze {table} against writes (has `partition-archiver migrate` run?)"))?;
    let count_sql = format!("SELECT count(*) FROM {}", table.quoted());

    let already = rec.state == "uploaded" && object_verifies(archiver, &rec).await?.is_ok();
    // The table is frozen, so a count on a second connection while the COPY streams sees exactly
    // the rows the COPY sends, and costs no wall time where the server has a core to spare.
    let mut side_count = None;
    if !already {
        if let Some(db) = archiver.db.clone() {
            let sql = count_sql.clone();
            side_count = Some(AbortOnDrop(tokio::spawn(async move {
                let side = db.connect().await?;
                Ok::<i64, anyhow::Error>(side.query_one(&sql, &[]).await?.get(0))
            })));
        }
    }
    if !already {
        // Abort whatever a killed run left behind for this key.
        if let Some(old) = rec.multipart_upload_id.clone() {
            store.abort_upload(&key, &old).await?;
        }
        store.abort_uploads_of(&key).await?;
        let content_type = if format == Format::Csv { "text/csv" } else { "application/octet-stream" };
        let upload_id = store.create_upload(&key, content_type).await?;
        exec(
            client,
            &manifest::set_state_sql(
                &policy.table,
                &partition.name,
                "uploading",
                &[
                    ("multipart_upload_id", Some(upload_id.clone())),
                    ("bucket", Some(settings.bucket.clone())),
                    ("object_key", Some(key.clone())),
                    ("format", Some(format.as_str().into())),
                    ("compression", Some(compression.as_str().into())),
                ],
            ),
        )
        .await?;
        crate::fail_point!("after_create_upload");
        let estimated = client
            .query_one("SELECT pg_total_relation_size(to_regclass($1))", &[&partition.quoted()])
            .await
            .map(|r| r.get::<_, Option<i64>>(0).unwrap_or(0))
            .unwrap_or(0);
        let copy_sql = format!("COPY {} TO STDOUT {}", partition.quoted(), format.copy_options());
        let streamed = pipeline::archive_stream(
            client,
            &copy_sql,
            store,
            &key,
            &upload_id,
            format,
            compression,
            settings.compression_level,
            settings.part_size_for(estimated.max(0) as u64),
            settings.parts_in_flight,
        )
        .await;
        let up = match streamed {
            Ok(u) => u,
            Err(e) => {
                if let Err(abort) = store.abort_upload(&key, &upload_id).await {
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
        exec(
            client,
            &manifest::set_state_sql(
                &policy.table,
                &partition.name,
                "uploaded",
                &[
                    ("row_count", Some(up.rows.to_string())),
                    ("raw_bytes", Some(up.raw_bytes.to_string())),
                    ("compressed_bytes", Some(up.compressed_bytes.to_string())),
                    ("sha256", Some(up.sha256.clone())),
                    ("checksum_composite", Some(up.composite_sha256.clone())),
                    ("etag", up.etag.clone()),
                    ("version_id", up.version_id.clone()),
                    ("multipart_upload_id", None),
                    ("uploaded_at", Some("now()".into())),
                ],
            ),
        )
        .await?;
        crate::fail_point!("after_upload");
        rec = manifest::load(&*client, &policy.table, &partition.name).await?.context("manifest row vanished")?;
    }

    // The manifest goes beside the object actually recorded (an earlier run may have uploaded it
    // under other settings).
    let manifest_key = manifest::manifest_key(rec.object_key.as_deref().unwrap_or(&key), &rec.partition_name);

    // Verify before anything can be dropped.
    object_verifies(archiver, &rec).await?.map_err(|m| anyhow::Error::new(Error::integrity(m)))?;
    let side = match side_count.as_mut() {
        Some(task) => match (&mut task.0).await {
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "count on a second connection failed; counting on this one");
                None
            }
            Err(_) => None,
        },
        None => None,
    };
    let count: i64 = match side {
        Some(n) => n,
        None => client.query_one(&count_sql, &[]).await.context("count the partition's rows")?.get(0),
    };
    if Some(count) != rec.row_count {
        bail!(Error::integrity(format!(
            "{}: the archive holds {:?} rows but the table has {count}: not verified, nothing dropped",
            rec.partition(),
            rec.row_count
        )));
    }
    rec.state = "verified".into();
    rec.manifest_key = Some(manifest_key.clone());
    rec.verified_at = Some(chrono::Utc::now());
    let doc = serde_json::to_vec_pretty(&rec)?;
    store.put_json(&manifest_key, doc).await?;
    let back = store
        .get_small(&manifest_key)
        .await?
        .ok_or_else(|| anyhow!("manifest {manifest_key} is missing right after it was written"))?;
    let back: ManifestRecord = serde_json::from_slice(&back).context("manifest read back is not valid JSON")?;
    if back.sha256 != rec.sha256 || back.row_count != rec.row_count || back.object_key != rec.object_key {
        bail!(Error::integrity(format!("manifest {manifest_key} read back differs from what was written")));
    }
    exec(
        client,
        &manifest::set_state_sql(
            &policy.table,
            &partition.name,
            "verified",
            &[("manifest_key", Some(manifest_key)), ("verified_at", Some("now()".into()))],
        ),
    )
    .await?;
    crate::fail_point!("after_verify");
    Ok(StepResult {
        rows_archived: rec.row_count,
        raw_bytes: rec.raw_bytes,
        bytes_archived: rec.compressed_bytes,
        detail: rec.object_key.map(|k| format!("s3://{}/{k}", settings.bucket)),
        ..Default::default()
    })
}

/// Checks the uploaded object against the record: it exists, with the recorded size and S3
/// composite SHA-256. `Ok(Err(reason))` when it does not verify.
pub async fn object_verifies(archiver: &Archiver, rec: &ManifestRecord) -> anyhow::Result<Result<(), String>> {
    let Some(key) = rec.object_key.as_deref() else {
        return Ok(Err("no object key recorded".into()));
    };
    let Some(head) = archiver.store.head(key, rec.version_id.as_deref()).await? else {
        return Ok(Err(format!("object s3://{}/{key} does not exist", archiver.store.settings.bucket)));
    };
    if Some(head.size) != rec.compressed_bytes {
        return Ok(Err(format!("object {key} is {} bytes, the manifest says {:?}", head.size, rec.compressed_bytes)));
    }
    match (&head.checksum_sha256, &rec.checksum_composite) {
        (Some(got), Some(want)) if got == want => Ok(Ok(())),
        (got, want) => Ok(Err(format!("object {key} has checksum {got:?}, the manifest says {want:?}"))),
    }
}
