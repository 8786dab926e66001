//! The end of a partition's life in PostgreSQL: DROP (only `verified`) or a move to the historical
//! schema (`verified`, or `detached` for the detach-only policy). Each is one transaction that
//! first checks the manifest state, so nothing unverified is ever dropped.

use crate::archive::manifest::{self, PartitionChange};
use crate::pg::ddl::{run_ddl, DdlOptions};
use crate::plan::ident::{quote_ident, quote_literal, QualifiedName};
use crate::plan::policy::{RetentionAction, TablePolicy};

/// Drops a verified partition, checked under the lock the DROP takes anyway (the table is
/// detached: nobody else waits for it): the freeze trigger must be the very one recorded before
/// the first COPY (one catalog row, no scan), or else the table may not hold more rows than its
/// archive (and exactly as many if the trigger is gone; fewer are rows foreign-key cascades
/// removed), counted.
pub async fn drop_partition(
    client: &mut tokio_postgres::Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    opts: &DdlOptions,
) -> (anyhow::Result<()>, u32) {
    let statements = [
        manifest::require_state_sql(&policy.table, &partition.name, &["verified"]),
        format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", partition.quoted()),
        manifest::require_unchanged_sql(&policy.table, partition),
        // Its record of trigger writes goes with it (an oid is used again).
        forget_trigger_writes(partition),
        format!("DROP TABLE {}", partition.quoted()),
        manifest::partition_change_sql(&policy.table, &partition.name, &PartitionChange::Dropped),
    ];
    let (r, n) = run_ddl(client, opts, &format!("drop {partition}"), &statements).await;
    crate::fail_point!("after_drop");
    (r.map(|_| ()), n)
}

/// Moves a partition to the historical schema (it stays frozen: it mirrors its archive).
pub async fn move_to_schema(
    client: &mut tokio_postgres::Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    schema: &str,
    opts: &DdlOptions,
) -> (anyhow::Result<()>, u32) {
    let allowed: &[&str] = match policy.retention_action {
        RetentionAction::DetachOnly => &["detaching", "detached"],
        _ => &["verified"],
    };
    let statements = [
        manifest::require_state_sql(&policy.table, &partition.name, allowed),
        format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
        // Trigger writes matter no more: no DROP follows (nor are they recorded from now on).
        forget_trigger_writes(partition),
        format!("ALTER TABLE {} SET SCHEMA {}", partition.quoted(), quote_ident(schema)),
        manifest::partition_change_sql(&policy.table, &partition.name, &PartitionChange::Moved { schema }),
    ];
    let (r, n) = run_ddl(client, opts, &format!("move {partition} to {schema}"), &statements).await;
    (r.map(|_| ()), n)
}

/// SQL that deletes the record of trigger writes into `partition` (migration 20261207000001).
fn forget_trigger_writes(partition: &QualifiedName) -> String {
    format!(
        "DELETE FROM partition_archiver.frozen_writes WHERE relid = {}::regclass",
        quote_literal(&partition.quoted())
    )
}
