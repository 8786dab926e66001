//! Reads what the planner needs from PostgreSQL: policies from `part_config`, and per table its
//! partitions (`pg_inherits`, `pg_get_expr(relpartbound)`), pending detaches, sizes, the rows that
//! sit in the default partition, and the archive manifest.
//!
//! Refuses, with a [`CatalogError`] and no change, a table that is missing, not range-partitioned,
//! or partitioned on anything but one `timestamptz`/`timestamp`/`date` column, or an integer or
//! `uuid` column with the matching `part_config.epoch` ([`KeyType::of_column`]).

use crate::error::{CatalogError, Error};
use crate::plan::ident::QualifiedName;
use crate::plan::period::{local_of_literal, KeyType};
use crate::plan::policy::{RawPolicy, TablePolicy};
use crate::plan::reshape::ParentColumn;
use crate::plan::snapshot::{ArchiveState, BoundValue, ManifestEntry, PartitionBound, PartitionInfo, TableSnapshot};
use anyhow::Context;
use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::GenericClient;

/// Policies of the enabled tables, or of exactly the tables asked for (an unknown one is an error).
pub async fn load_policies(client: &impl GenericClient, only: &[QualifiedName]) -> Result<Vec<TablePolicy>, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('partition_archiver.part_config') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::transient(e.into()))?
        .get(0);
    if !exists {
        return Err(Error::not_found(
            "partition_archiver.part_config does not exist: run `partition-archiver migrate` first",
        ));
    }
    let rows = client
        .query(
            "SELECT schema_name, table_name, partition_column, partition_interval, premake, retention, time_zone,
                    retention_action, historical_schema, create_default, archive_format, archive_compression, enabled,
                    epoch
               FROM partition_archiver.part_config ORDER BY schema_name, table_name",
            &[],
        )
        .await
        .map_err(|e| Error::transient(anyhow::Error::new(e).context("read partition_archiver.part_config")))?;
    let mut all = Vec::new();
    for r in rows {
        let raw = RawPolicy {
            schema_name: r.get(0),
            table_name: r.get(1),
            partition_column: r.get(2),
            partition_interval: r.get(3),
            premake: r.get(4),
            retention: r.get(5),
            time_zone: r.get(6),
            retention_action: r.get(7),
            historical_schema: r.get(8),
            create_default: r.get(9),
            archive_format: r.get(10),
            archive_compression: r.get(11),
            enabled: r.get(12),
            epoch: r.get(13),
        };
        all.push(TablePolicy::try_from(raw)?);
    }
    if only.is_empty() {
        return Ok(all.into_iter().filter(|p| p.enabled).collect());
    }
    let mut chosen = Vec::new();
    for name in only {
        match all.iter().find(|p| &p.table == name) {
            Some(p) => chosen.push(p.clone()),
            None => {
                return Err(Error::not_found(format!(
                    "unknown table {name}: it is not registered in partition_archiver.part_config"
                )))
            }
        }
    }
    Ok(chosen)
}

/// The parent's OID after checking it is a table we can manage.
pub async fn check_parent(client: &impl GenericClient, policy: &TablePolicy) -> Result<(u32, KeyType), Error> {
    let t = policy.table.to_string();
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text, pt.partstrat::text, pt.partnatts::int4, a.attname::text,
                    format_type(a.atttypid, NULL)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
               LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&policy.table.schema, &policy.table.name],
        )
        .await
        .map_err(|e| Error::transient(e.into()))?
        .ok_or_else(|| CatalogError::TableNotFound(t.clone()))?;
    let oid: u32 = row.get(0);
    let relkind: String = row.get(1);
    if relkind != "p" {
        return Err(CatalogError::NotPartitioned(t).into());
    }
    let strategy: String = row.get(2);
    if strategy != "r" {
        let s = match strategy.as_str() {
            "l" => "list",
            "h" => "hash",
            other => other,
        };
        return Err(CatalogError::NotRange(t, s.into()).into());
    }
    let natts: i32 = row.get(3);
    let column: Option<String> = row.get(4);
    let column = match (natts, column) {
        (1, Some(c)) => c,
        _ => return Err(CatalogError::KeyNotSingleColumn(t).into()),
    };
    let type_name: String = row.get(5);
    let key = KeyType::of_column(&type_name, policy.epoch).map_err(|why| CatalogError::KeyType {
        table: t.clone(),
        column: column.clone(),
        type_name,
        why,
    })?;
    if column != policy.column {
        return Err(
            CatalogError::KeyColumnMismatch { table: t, actual: column, configured: policy.column.clone() }.into()
        );
    }
    Ok((oid, key))
}

/// [`load_snapshot`] in one transaction under `lock_timeout`: its size functions and its count of
/// the default partition's rows take ACCESS SHARE on each partition, which an `ALTER TABLE`
/// holding ACCESS EXCLUSIVE on one (an application's migration, say) would make wait without end,
/// the table's lock held all the while. A lock not granted in time is a transient error: the next
/// run tries again. Every read of a snapshot goes through here.
pub async fn load_snapshot_within(
    client: &mut tokio_postgres::Client,
    policy: &TablePolicy,
    lock_timeout: std::time::Duration,
) -> Result<TableSnapshot, Error> {
    let db = |e: tokio_postgres::Error| Error::transient(anyhow::Error::new(e).context("read the table's snapshot"));
    let tx = client.transaction().await.map_err(db)?;
    let timeout_ms = lock_timeout.as_millis().max(1);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout_ms}ms'")).await.map_err(db)?;
    let snapshot = load_snapshot(&tx, policy).await?;
    tx.commit().await.map_err(db)?;
    Ok(snapshot)
}

/// The table's snapshot: its partitions, bounds, sizes, the default partition's rows per period,
/// the manifest. Read it with [`load_snapshot_within`].
async fn load_snapshot(client: &impl GenericClient, policy: &TablePolicy) -> Result<TableSnapshot, Error> {
    let (oid, key_type) = check_parent(client, policy).await?;
    let db = |e: tokio_postgres::Error, what: &str| Error::transient(anyhow::Error::new(e).context(what.to_string()));
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending,
                    pg_total_relation_size(c.oid), c.reltuples::int8
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE i.inhparent = $1
              ORDER BY c.relname",
            &[&oid],
        )
        .await
        .map_err(|e| db(e, "list partitions"))?;
    let mut partitions = Vec::with_capacity(rows.len());
    for r in rows {
        let name = QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let expr: String = r.get(2);
        let bound = parse_bound(&expr, key_type, policy.time_zone).ok_or_else(|| CatalogError::Bound {
            table: policy.table.to_string(),
            partition: name.to_string(),
            bound: expr.clone(),
        })?;
        partitions.push(PartitionInfo {
            name,
            bound,
            detach_pending: r.get(3),
            total_bytes: r.get(4),
            estimated_rows: r.get(5),
        });
    }

    let mut default_rows = BTreeMap::new();
    if let Some(default) = partitions.iter().find(|p| p.bound == PartitionBound::Default) {
        let col = crate::plan::ident::quote_ident(&policy.column);
        let local = match key_type {
            KeyType::Timestamptz => format!("({col} AT TIME ZONE $2)"),
            KeyType::Timestamp => col.clone(),
            KeyType::Date => format!("{col}::timestamp"),
            KeyType::EpochSeconds => format!("(to_timestamp({col}) AT TIME ZONE $2)"),
            KeyType::EpochMilliseconds => format!("(to_timestamp({col} / 1000.0) AT TIME ZONE $2)"),
            KeyType::EpochMicroseconds => format!("(to_timestamp({col} / 1000000.0) AT TIME ZONE $2)"),
            // A UUIDv7's first 48 bits: milliseconds since the epoch.
            KeyType::Uuidv7 => format!(
                "(to_timestamp(('x' || substr(replace({col}::text, '-', ''), 1, 12))::bit(48)::int8 / 1000.0) AT TIME ZONE $2)"
            ),
        };
        // A key outside years 1 to 9999 has no period to create: such rows are left out of the
        // count and stay in the default partition. An epoch value there (microseconds written into
        // a seconds table, say) would make to_timestamp fail the whole snapshot, and an infinite
        // or far-future timestamp cannot be read into a calendar date at all.
        let sane = match key_type {
            KeyType::EpochSeconds => format!(" AND {col} BETWEEN -62135596800 AND 253402300799"),
            KeyType::EpochMilliseconds => format!(" AND {col} BETWEEN -62135596800000 AND 253402300799999"),
            KeyType::EpochMicroseconds => format!(" AND {col} BETWEEN -62135596800000000 AND 253402300799999999"),
            KeyType::Uuidv7 => String::new(),
            KeyType::Timestamptz | KeyType::Timestamp | KeyType::Date => {
                format!(" AND {local} BETWEEN '0001-01-01' AND '9999-12-31 23:59:59.999999'")
            }
        };
        let sql = format!(
            "SELECT date_trunc($1, {local}) AS period, count(*) FROM {} WHERE $2::text IS NOT NULL{sane} GROUP BY 1",
            default.name.quoted()
        );
        let tz = policy.time_zone.name().to_string();
        for r in client
            .query(&sql, &[&policy.interval.as_str(), &tz])
            .await
            .map_err(|e| db(e, "count rows in the default partition"))?
        {
            let period: Option<NaiveDateTime> =
                r.try_get(0).map_err(|e| db(e, "read a period of the rows in the default partition"))?;
            if let Some(p) = period {
                default_rows.insert(p, r.get::<_, i64>(1));
            }
        }
    }

    let other_relations: BTreeSet<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND starts_with(c.relname::text, $2) AND c.oid <> $3
                AND c.oid NOT IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = $3)",
            &[&policy.table.schema, &policy.table.name, &oid],
        )
        .await
        .map_err(|e| db(e, "list relations"))?
        .into_iter()
        .map(|r| r.get(0))
        .collect();

    let manifest = load_manifest_states(client, &policy.table).await?;
    Ok(TableSnapshot {
        table: policy.table.clone(),
        key_column: policy.column.clone(),
        key_type,
        partitions,
        default_rows,
        other_relations,
        manifest,
    })
}

async fn load_manifest_states(client: &impl GenericClient, table: &QualifiedName) -> Result<Vec<ManifestEntry>, Error> {
    let rows = client
        .query(
            "SELECT partition_schema, partition_name, state FROM partition_archiver.archive_manifest
              WHERE table_schema = $1 AND table_name = $2 ORDER BY range_from NULLS FIRST, partition_name",
            &[&table.schema, &table.name],
        )
        .await
        .context("read partition_archiver.archive_manifest (run `partition-archiver migrate`?)")
        .map_err(Error::transient)?;
    let mut out = Vec::new();
    for r in rows {
        let state: String = r.get(2);
        let state = ArchiveState::parse(&state)
            .ok_or_else(|| Error::integrity(format!("archive_manifest has an unknown state {state:?}")))?;
        out.push(ManifestEntry { partition: QualifiedName::new(r.get::<_, String>(0), r.get::<_, String>(1)), state });
    }
    Ok(out)
}

/// Parses `pg_get_expr(relpartbound)` (session TimeZone UTC) into local bounds in `tz`.
pub fn parse_bound(expr: &str, key: KeyType, tz: Tz) -> Option<PartitionBound> {
    if expr == "DEFAULT" {
        return Some(PartitionBound::Default);
    }
    let rest = expr.strip_prefix("FOR VALUES FROM (")?;
    let (from, to) = rest.split_once(") TO (")?;
    let to = to.strip_suffix(')')?;
    Some(PartitionBound::Range { from: parse_value(from, key, tz)?, to: parse_value(to, key, tz)? })
}

fn parse_value(v: &str, key: KeyType, tz: Tz) -> Option<BoundValue> {
    match v {
        "MINVALUE" => return Some(BoundValue::MinValue),
        "MAXVALUE" => return Some(BoundValue::MaxValue),
        _ => {}
    }
    // Quoted, except an int4 key's bounds, which PostgreSQL prints bare (`FROM (1782878400)`).
    let text = match v.strip_prefix('\'') {
        Some(quoted) => quoted.strip_suffix('\'')?,
        None if v.bytes().all(|b| b.is_ascii_digit() || b == b'-') => v,
        None => return None,
    };
    match text {
        "-infinity" => return Some(BoundValue::MinValue),
        "infinity" => return Some(BoundValue::MaxValue),
        _ => {}
    }
    let local = local_of_literal(key, tz, text)?;
    Some(BoundValue::At(local))
}

/// A column as the manifest records it (and restore recreates it): name, type as
/// `format_type` prints it, NOT NULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub not_null: bool,
    /// The type's oid and typmod (`pg_attribute.atttypid`, `atttypmod`): what a typed archive
    /// (Parquet) maps the column by. Absent in manifests written before typed archives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_oid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typmod: Option<i32>,
}

/// Column names, types and NOT NULL of a relation, in order, as `CREATE TABLE` would need them:
/// what COPY reads (generated columns are left out, as COPY leaves them out).
pub async fn columns(client: &impl GenericClient, rel: &QualifiedName) -> anyhow::Result<Vec<Column>> {
    let columns = attributes(client, rel).await?.into_iter().filter(|a| a.generated.is_none());
    Ok(columns.map(|a| a.column).collect())
}

/// Every column of a relation, generated ones included, with its default, generation expression
/// and identity: what `restore --attach` reshapes a restored table to ([`crate::plan::reshape`]).
pub async fn parent_columns(client: &impl GenericClient, rel: &QualifiedName) -> anyhow::Result<Vec<ParentColumn>> {
    Ok(attributes(client, rel)
        .await?
        .into_iter()
        .map(|a| ParentColumn {
            name: a.column.name,
            type_name: a.column.type_name,
            not_null: a.column.not_null,
            default: a.default,
            generated: a.generated,
            identity: a.identity,
        })
        .collect())
}

/// One column of `pg_attribute` with its `pg_attrdef` expression.
struct Attribute {
    column: Column,
    default: Option<String>,
    generated: Option<String>,
    identity: bool,
}

/// The one catalog read of a relation's columns, in order ([`columns`], [`parent_columns`]).
async fn attributes(client: &impl GenericClient, rel: &QualifiedName) -> anyhow::Result<Vec<Attribute>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atttypid, a.atttypmod,
                    CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                    CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                    a.attidentity <> ''
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&rel.quoted()],
        )
        .await
        .with_context(|| format!("read the columns of {rel}"))?;
    Ok(rows
        .into_iter()
        .map(|r| Attribute {
            column: Column {
                name: r.get(0),
                type_name: r.get(1),
                not_null: r.get(2),
                type_oid: Some(r.get(3)),
                typmod: Some(r.get(4)),
            },
            default: r.get(5),
            generated: r.get(6),
            identity: r.get(7),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> BoundValue {
        BoundValue::At(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
    }

    #[test]
    fn parses_catalog_bounds() {
        let utc: Tz = "UTC".parse().unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        let range = |f, t| Some(PartitionBound::Range { from: f, to: t });
        let cases: Vec<(&str, KeyType, Tz, Option<PartitionBound>)> = vec![
            ("DEFAULT", KeyType::Timestamptz, utc, Some(PartitionBound::Default)),
            (
                "FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')",
                KeyType::Timestamptz,
                utc,
                range(at("2026-11-01 00:00:00"), at("2026-12-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('2026-03-01 05:00:00+00') TO ('2026-04-01 04:00:00+00')",
                KeyType::Timestamptz,
                ny,
                range(at("2026-03-01 00:00:00"), at("2026-04-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('2026-03-01 05:30:00.5+05:30') TO (MAXVALUE)",
                KeyType::Timestamptz,
                utc,
                range(
                    BoundValue::At(
                        NaiveDateTime::parse_from_str("2026-03-01 00:00:00.5", "%Y-%m-%d %H:%M:%S%.f").unwrap(),
                    ),
                    BoundValue::MaxValue,
                ),
            ),
            // Epoch keys: a bigint's bounds are quoted, an int4's bare; a UUIDv7's time is its
            // first 48 bits.
            (
                "FOR VALUES FROM ('1796083200') TO ('1798761600')",
                KeyType::EpochSeconds,
                utc,
                range(at("2026-12-01 00:00:00"), at("2027-01-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM (1796083200) TO (1798761600)",
                KeyType::EpochSeconds,
                utc,
                range(at("2026-12-01 00:00:00"), at("2027-01-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('01a22ee6-b000-0000-0000-000000000000') TO ('01a2ce8b-d400-0000-0000-000000000000')",
                KeyType::Uuidv7,
                utc,
                range(at("2026-12-01 00:00:00"), at("2027-01-01 00:00:00")),
            ),
            ("FOR VALUES FROM (17961x) TO (1798761600)", KeyType::EpochSeconds, utc, None),
            (
                "FOR VALUES FROM (MINVALUE) TO ('2026-12-01 00:00:00+00')",
                KeyType::Timestamptz,
                utc,
                range(BoundValue::MinValue, at("2026-12-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('2026-11-01 00:00:00') TO ('2026-12-01 00:00:00')",
                KeyType::Timestamp,
                ny,
                range(at("2026-11-01 00:00:00"), at("2026-12-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')",
                KeyType::Date,
                utc,
                range(at("2026-11-01 00:00:00"), at("2026-12-01 00:00:00")),
            ),
            (
                "FOR VALUES FROM ('-infinity') TO ('2026-12-01')",
                KeyType::Date,
                utc,
                range(BoundValue::MinValue, at("2026-12-01 00:00:00")),
            ),
            ("FOR VALUES IN (1, 2)", KeyType::Date, utc, None),
            ("FOR VALUES FROM ('garbage') TO ('2026-12-01')", KeyType::Date, utc, None),
        ];
        for (expr, key, tz, want) in cases {
            assert_eq!(parse_bound(expr, key, tz), want, "{expr}");
        }
    }
}
