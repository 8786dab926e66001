//! `partition-archiver migrate`: applies the SQL files of `migrations/postgres/`, embedded at build
//! time, in order, under an advisory lock, recording each file's SHA-256 in
//! `partition_archiver.schema_migrations`. Every file is idempotent (it can also be applied with
//! `psql -f`, which records nothing), so a file whose checksum changed is simply applied again.
//! A file is split on `-- migrate:split` lines, each chunk its own transaction.
//!
//! The seed migrations create partitions around "now", which is `partition_archiver.now()`: the
//! real clock, or the instant `migrate --now` pins for this session (the setting
//! `partition_archiver.now`), so a test or a rehearsal migrates "on" the day it then plans for.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($name:literal) => {
        Migration { name: $name, sql: include_str!(concat!("../../migrations/postgres/", $name)) }
    };
}

/// In the order they apply: the dated files by name, then the SQL-only archiving functions.
pub const MIGRATIONS: &[Migration] = &[
    migration!("20250528000000_partition_archiver_schema.sql"),
    migration!("20250528000001_partition_orders.sql"),
    migration!("20250528000002_create_trades.sql"),
    migration!("20250701000001_partition_trades.sql"),
    migration!("20250701000002_partition_orders_dynamic.sql"),
    migration!("20250701000003_partition_trades_yearly.sql"),
    migration!("20250701000004_partition_orders_yearly.sql"),
    migration!("20250801000001_archive_manifest.sql"),
    migration!("20250801000002_run_log.sql"),
    migration!("20250801000003_freeze_detached.sql"),
    migration!("20261126000001_archive_origin.sql"),
    migration!("20261126000002_archive_chunks.sql"),
    migration!("20261126000003_archive_format_parquet.sql"),
    migration!("20261206000001_table_maintenance.sql"),
    migration!("20261206000002_restore_loaded.sql"),
    migration!("20261206000003_freeze_proof.sql"),
    migration!("20261206000004_intervals.sql"),
    migration!("20261206000005_epoch_keys.sql"),
    migration!("20261207000001_frozen_writes.sql"),
    migration!("20261207000002_partition_moves.sql"),
    migration!("partition_archiving.sql"),
];

#[derive(Debug, Serialize)]
pub struct MigrationOutcome {
    pub name: &'static str,
    pub checksum: String,
    /// `applied`, `reapplied` (the file changed since it was recorded) or `unchanged`.
    pub outcome: &'static str,
}

const MIGRATE_LOCK: (i32, i32) = (0x5041_5243, 0);

/// Applies every migration; `now` pins the instant the SQL side treats as now (`None`: the real
/// clock).
pub async fn migrate(client: &mut Client, now: Option<DateTime<Utc>>) -> anyhow::Result<Vec<MigrationOutcome>> {
    client
        .query_one("SELECT pg_advisory_lock($1, $2)", &[&MIGRATE_LOCK.0, &MIGRATE_LOCK.1])
        .await
        .context("take the migration lock")?;
    let result = async {
        pin_clock(client, now).await?;
        apply_all(client).await
    }
    .await;
    // The session may be reused by the caller: never leave it pinned.
    let _ = client.batch_execute("RESET partition_archiver.now").await;
    let _ = client.query_one("SELECT pg_advisory_unlock($1, $2)", &[&MIGRATE_LOCK.0, &MIGRATE_LOCK.1]).await;
    result
}

/// Sets `partition_archiver.now` for this session (RFC 3339 with its offset, so the session's
/// TimeZone never changes the instant), or leaves it unset for the real clock.
async fn pin_clock(client: &Client, now: Option<DateTime<Utc>>) -> anyhow::Result<()> {
    if let Some(now) = now {
        let instant = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        client
            .query_one("SELECT set_config('partition_archiver.now', $1, false)", &[&instant])
            .await
            .with_context(|| format!("pin partition_archiver.now to {instant}"))?;
    }
    Ok(())
}

async fn apply_all(client: &mut Client) -> anyhow::Result<Vec<MigrationOutcome>> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS partition_archiver;
             CREATE TABLE IF NOT EXISTS partition_archiver.schema_migrations (
               name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .context("create partition_archiver.schema_migrations")?;
    let mut out = Vec::new();
    for m in MIGRATIONS {
        let checksum = hex::encode(Sha256::digest(m.sql.as_bytes()));
        let recorded: Option<String> = client
            .query_opt("SELECT checksum FROM partition_archiver.schema_migrations WHERE name = $1", &[&m.name])
            .await?
            .map(|r| r.get(0));
        let outcome = match recorded.as_deref() {
            Some(c) if c == checksum => "unchanged",
            Some(_) => "reapplied",
            None => "applied",
        };
        if outcome != "unchanged" {
            let chunks: Vec<&str> = m.sql.split("\n-- migrate:split\n").collect();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                if i < last {
                    client.batch_execute(chunk).await.with_context(|| format!("apply {}", m.name))?;
                } else {
                    // The last chunk commits together with its record.
                    let tx = client.transaction().await?;
                    tx.batch_execute(chunk).await.with_context(|| format!("apply {}", m.name))?;
                    tx.execute(
                        "INSERT INTO partition_archiver.schema_migrations (name, checksum) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                        &[&m.name, &checksum],
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
            tracing::info!(migration = m.name, outcome, "migration");
        }
        out.push(MigrationOutcome { name: m.name, checksum, outcome });
    }
    client.batch_execute("RESET client_min_messages").await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_in_the_directory_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort_by_key(|n| (!n.chars().next().unwrap().is_ascii_digit(), n.clone()));
        let embedded: Vec<&str> = super::MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(embedded, on_disk);
    }
}
