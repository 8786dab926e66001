//! Detach: the first transition, `attached -> detached` (through `detaching` for CONCURRENTLY).
//! The manifest row is written with the partition's bounds and columns before or with the DETACH,
//! so a detached table is never without its record.

use crate::archive::manifest::{self, ManifestRecord, PartitionChange};
use crate::pg::ddl::{ddl_outside_transaction, run_ddl, DdlOptions};
use crate::plan::ident::QualifiedName;
use crate::plan::period::bound_literal;
use crate::plan::policy::TablePolicy;
use crate::plan::snapshot::{ArchiveState, BoundValue, TableSnapshot};
use anyhow::anyhow;
use tokio_postgres::Client;

/// Detaches `partition` and records it `detached`. A plain DETACH and its record commit in one
/// transaction; CONCURRENTLY (which cannot run in one) records `detaching` first.
pub async fn detach(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
    concurrently: bool,
    opts: &DdlOptions,
) -> (anyhow::Result<()>, u32) {
    crate::fail_point!("before_detach");
    let record = match detach_record(client, policy, snapshot, partition, opts).await {
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
    let guard = manifest::require_not_archived_sql(&policy.table, &partition.name);
    if !concurrently {
        let mut rec = record;
        rec.state = ArchiveState::Detached;
        let (r, n) = run_ddl(client, opts, &label, &[guard, manifest::upsert_sql(&rec), detach]).await;
        crate::fail_point!("after_detach");
        return (r.map(|_| ()), n);
    }
    let mut rec = record;
    rec.state = ArchiveState::Detaching;
    let (r, mut n) = run_ddl(client, opts, &label, &[guard, manifest::upsert_sql(&rec)]).await;
    if let Err(e) = r {
        return (Err(e), n);
    }
    crate::fail_point!("before_detach_concurrently");
    // A partition "detach pending" is finished with FINALIZE (DETACH CONCURRENTLY again would be
    // refused as "already pending"): one someone's interrupted detach left so, and one ours leaves
    // so when, its first transaction committed, its wait for older queries runs out of time. If
    // FINALIZE cannot finish it either, the next run's plan starts with it.
    let mut left_pending_by = None;
    let pending = if detach_pending(client, partition).await {
        true
    } else {
        let (r, m) = ddl_outside_transaction(client, opts, &label, &detach).await;
        n += m;
        match r {
            Ok(()) => false,
            Err(e) if detach_pending(client, partition).await => {
                left_pending_by = Some(e);
                true
            }
            Err(e) => return (Err(e), n),
        }
    };
    if pending {
        let (r, m) = crate::pg::partitions::finalize_detach(client, &policy.table, partition, opts).await;
        n += m;
        if let Err(f) = r {
            let f = match left_pending_by {
                Some(e) => f.context(format!("{e:#}")),
                None => f,
            };
            return (Err(f), n);
        }
    }
    let detached = manifest::partition_change_sql(&policy.table, &partition.name, &PartitionChange::Detached);
    let (r, m) = run_ddl(client, opts, &label, &[detached]).await;
    crate::fail_point!("after_detach");
    (r.map(|_| ()), n + m)
}

/// Is `partition` left "detach pending" by a DETACH CONCURRENTLY that did not finish?
async fn detach_pending(client: &Client, partition: &QualifiedName) -> bool {
    let sql = "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = $1::text::regclass";
    matches!(client.query_opt(sql, &[&partition.quoted()]).await, Ok(Some(row)) if row.get::<_, bool>(0))
}

/// The manifest row of a partition about to be detached: its bounds as exact literals, its columns.
async fn detach_record(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
    opts: &DdlOptions,
) -> anyhow::Result<ManifestRecord> {
    // A partition this run created (for rows found in the default partition) is not in the
    // snapshot taken before the run: read the catalog again for it.
    let fresh;
    let snapshot = if snapshot.partitions.iter().any(|p| &p.name == partition) {
        snapshot
    } else {
        fresh = crate::pg::catalog::load_snapshot_within(client, policy, opts.lock_timeout)
            .await
            .map_err(anyhow::Error::new)?;
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
    let columns = crate::pg::catalog::columns(&*client, partition).await?;
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
        state: ArchiveState::Detaching,
        ..Default::default()
    })
}
