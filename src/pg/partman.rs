//! pg_partman in this database: its `part_config` rows, read for `import-pg-partman`
//! ([`crate::plan::partman`] maps them), and whether it still maintains a table, which `maintain`
//! refuses: two managers would create and drop the same partitions.
//!
//! pg_partman 4.x and 5.x keep the columns read here under the same names. Its schema is wherever
//! `CREATE EXTENSION pg_partman` put it (`partman` by convention), found in `pg_extension`.

use crate::error::{Error, ErrorKind};
use crate::pg::catalog::parse_bound;
use crate::plan::ident::{quote_ident, QualifiedName};
use crate::plan::partman::{interval_of, map, Imported, IntervalParts, PartmanParent};
use crate::plan::period::{Epoch, Interval, KeyType};
use crate::plan::policy::{RawPolicy, TablePolicy};
use crate::plan::snapshot::{BoundValue, PartitionBound};
use anyhow::Context;
use tokio_postgres::GenericClient;

/// pg_partman's schema and version, or `None` when the extension is not installed here.
pub async fn installed(client: &impl GenericClient) -> Result<Option<(String, String)>, Error> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'pg_partman'",
            &[],
        )
        .await
        .context("look for the pg_partman extension")
        .map_err(Error::transient)?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Refuses a table that pg_partman still maintains (`automatic_maintenance = 'on'`), saying how
/// to hand it over. A role that may not read pg_partman's `part_config` (pg_partman installed for
/// other tables, its schema not granted) is not stopped by it: that is logged, and the table goes on.
pub async fn refuse_if_maintained(client: &impl GenericClient, table: &QualifiedName) -> Result<(), Error> {
    let Some((schema, _)) = installed(client).await? else { return Ok(()) };
    let readable: Result<bool, _> = client
        .query_one(
            "SELECT has_schema_privilege($1, 'USAGE')
                    AND coalesce(has_table_privilege(to_regclass(format('%I.part_config', $1)), 'SELECT'), false)",
            &[&schema],
        )
        .await
        .map(|r| r.get(0));
    if !matches!(readable, Ok(true)) {
        tracing::warn!(table = %table, schema = %schema,
            "pg_partman is installed but its part_config cannot be read by this role: whether it still maintains the table is not checked");
        return Ok(());
    }
    let sql = format!(
        "SELECT parent_table FROM {}.part_config WHERE to_regclass(parent_table) = to_regclass($1)
            AND automatic_maintenance = 'on'",
        quote_ident(&schema)
    );
    let row = client
        .query_opt(&sql, &[&table.quoted()])
        .await
        .with_context(|| format!("read {schema}.part_config"))
        .map_err(Error::transient)?;
    match row {
        None => Ok(()),
        Some(r) => {
            let parent: String = r.get(0);
            Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{table} is still maintained by pg_partman (automatic_maintenance = 'on' in {schema}.part_config): \
                     two managers would create and drop its partitions. Hand it over: \
                     UPDATE {schema}.part_config SET automatic_maintenance = 'off' WHERE parent_table = '{parent}'; \
                     then run maintain again (import-pg-partman registers its policy here)"
                ),
            ))
        }
    }
}

/// Every parent of pg_partman's `part_config`, with what the catalog says about it.
pub async fn parents(client: &impl GenericClient, schema: &str) -> Result<Vec<PartmanParent>, Error> {
    let read = |what: String| move |e: tokio_postgres::Error| Error::transient(anyhow::Error::new(e).context(what));
    let s = quote_ident(schema);
    let rows = client
        .query(
            &format!(
                "SELECT c.parent_table, c.control, c.partition_interval, c.partition_type, coalesce(c.epoch, 'none'),
                        c.premake, c.retention, coalesce(c.retention_keep_table, true), c.retention_schema,
                        c.automatic_maintenance = 'on',
                        EXISTS (SELECT 1 FROM {s}.part_config_sub x WHERE x.sub_parent = c.parent_table),
                        to_regclass(c.parent_table)::oid, n.nspname::text, p.relname::text
                   FROM {s}.part_config c
                   LEFT JOIN pg_class p ON p.oid = to_regclass(c.parent_table)
                   LEFT JOIN pg_namespace n ON n.oid = p.relnamespace
                  ORDER BY c.parent_table"
            ),
            &[],
        )
        .await
        .map_err(read(format!("read {schema}.part_config")))?;
    let mut out = Vec::new();
    for r in rows {
        let parent_table: String = r.get(0);
        let Some(oid) = r.get::<_, Option<u32>>(11) else {
            tracing::warn!(parent = %parent_table, "pg_partman's part_config names a table that does not exist: skipped");
            continue;
        };
        let control: String = r.get(1);
        let control_type: Option<String> = client
            .query_opt(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2",
                &[&oid, &control],
            )
            .await
            .map_err(read(format!("read the control column of {parent_table}")))?
            .map(|r| r.get(0));
        let control_type = control_type.unwrap_or_default();
        let epoch: String = r.get(4);
        let key = KeyType::of_column(&control_type, Epoch::parse(&epoch)).ok();
        let interval_text: String = r.get(2);
        let retention_text: Option<String> = r.get(6);
        // Only a time parent's intervals are intervals (an id parent's '100000' would read as
        // 100000 seconds).
        let (interval, retention) = match key {
            Some(_) => (
                interval_parts(client, &interval_text).await?,
                match &retention_text {
                    Some(t) => interval_parts(client, t).await?,
                    None => None,
                },
            ),
            None => (None, None),
        };
        let (has_default, misfits) = match (key, interval.and_then(interval_of)) {
            (Some(key), Some(interval)) => children(client, oid, key, interval).await?,
            _ => (false, Vec::new()),
        };
        out.push(PartmanParent {
            schema: r.get(12),
            table: r.get(13),
            control,
            control_type,
            partition_type: r.get(3),
            interval_text,
            interval,
            epoch,
            premake: r.get(5),
            retention_text,
            retention,
            retention_keep_table: r.get(7),
            retention_schema: r.get(8),
            automatic_maintenance: r.get::<_, Option<bool>>(9).unwrap_or(false),
            sub_partitioned: r.get(10),
            has_default,
            misfits,
        });
    }
    Ok(out)
}

/// An interval's months, days and microseconds, as PostgreSQL reads the text; `None` when it is
/// not an interval.
async fn interval_parts(client: &impl GenericClient, text: &str) -> Result<Option<IntervalParts>, Error> {
    // Read outside any transaction: text that is not an interval fails this query alone.
    let parts = client
        .query_one(
            "SELECT (extract(year FROM i) * 12 + extract(month FROM i))::int4, extract(day FROM i)::int4,
                    ((extract(hour FROM i) * 3600 + extract(minute FROM i) * 60 + extract(second FROM i)) * 1000000)::int8
               FROM (SELECT $1::text::interval AS i) x",
            &[&text],
        )
        .await;
    Ok(parts.ok().map(|r| IntervalParts { months: r.get(0), days: r.get(1), micros: r.get(2) }))
}

/// Whether the parent has a default partition, and its children that are not one whole period
/// of `interval` in UTC.
async fn children(
    client: &impl GenericClient,
    oid: u32,
    key: KeyType,
    interval: Interval,
) -> Result<(bool, Vec<String>), Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = $1 ORDER BY 1",
            &[&oid],
        )
        .await
        .context("list the children")
        .map_err(Error::transient)?;
    let (mut has_default, mut misfits) = (false, Vec::new());
    for r in rows {
        let (name, expr): (String, String) = (r.get(0), r.get(1));
        match parse_bound(&expr, key, chrono_tz::UTC) {
            Some(PartitionBound::Default) => has_default = true,
            Some(PartitionBound::Range { from: BoundValue::At(f), to: BoundValue::At(t) }) => {
                if Interval::of_range(interval, f, t) != Some(interval) {
                    misfits.push(name);
                }
            }
            Some(PartitionBound::Range { .. }) => {}
            None => misfits.push(name),
        }
    }
    Ok((has_default, misfits))
}

/// What `import-pg-partman` did (or, with `dry_run`, would do).
#[derive(Debug, serde::Serialize)]
pub struct ImportReport {
    /// `partman 4.7.2`: pg_partman's schema and version.
    pub pg_partman: String,
    pub dry_run: bool,
    pub imported: Vec<Imported>,
    /// Parents registered here already: left as they are.
    pub already_registered: Vec<String>,
    pub not_imported: Vec<NotImported>,
}

#[derive(Debug, serde::Serialize)]
pub struct NotImported {
    pub table: String,
    pub reason: String,
}

/// Registers pg_partman's time-based parents in `partition_archiver.part_config`, in one
/// transaction; a parent registered here already is left alone. Refused, with nothing changed,
/// when pg_partman is not installed.
pub async fn import(client: &mut tokio_postgres::Client, dry_run: bool) -> Result<ImportReport, Error> {
    let Some((schema, version)) = installed(&*client).await? else {
        return Err(Error::invalid(
            "pg_partman is not installed in this database (no pg_partman extension): nothing to import",
        ));
    };
    let found = parents(&*client, &schema).await?;
    let db = |what: &'static str| move |e: tokio_postgres::Error| Error::transient(anyhow::Error::new(e).context(what));
    let tx = client.transaction().await.map_err(db("begin"))?;
    let mut report = ImportReport {
        pg_partman: format!("{schema} {version}"),
        dry_run,
        imported: Vec::new(),
        already_registered: Vec::new(),
        not_imported: Vec::new(),
    };
    for parent in found {
        let label = format!("{}.{}", parent.schema, parent.table);
        let policy = match map(&parent).and_then(|i| policy_of(&i).map(|p| (i, p))) {
            Ok(ok) => ok,
            Err(reason) => {
                report.not_imported.push(NotImported { table: label, reason });
                continue;
            }
        };
        let (imported, raw) = policy;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM partition_archiver.part_config WHERE schema_name = $1 AND table_name = $2",
                &[&raw.schema_name, &raw.table_name],
            )
            .await
            .map_err(db("read partition_archiver.part_config (run `partition-archiver migrate`?)"))?
            .is_some();
        if exists {
            report.already_registered.push(label);
            continue;
        }
        tx.execute(
            "INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_column, partition_interval,
                    premake, retention, retention_action, historical_schema, create_default, epoch)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &raw.schema_name,
                &raw.table_name,
                &raw.partition_column,
                &raw.partition_interval,
                &raw.premake,
                &raw.retention,
                &raw.retention_action,
                &raw.historical_schema,
                &raw.create_default,
                &raw.epoch,
            ],
        )
        .await
        .map_err(db("register in partition_archiver.part_config"))?;
        report.imported.push(imported);
    }
    if !dry_run {
        tx.commit().await.map_err(db("commit the import"))?;
    }
    Ok(report)
}

/// The `part_config` row of an imported parent, validated as every policy is.
fn policy_of(i: &Imported) -> Result<RawPolicy, String> {
    let mut raw = RawPolicy::defaults(&i.schema, &i.table);
    raw.partition_column = i.partition_column.clone();
    raw.partition_interval = i.partition_interval.as_str().into();
    raw.premake = i.premake;
    raw.epoch = i.epoch.map(|e| e.as_str().into());
    raw.retention = i.retention;
    raw.retention_action = i.retention_action.as_str().into();
    if let Some(s) = &i.historical_schema {
        raw.historical_schema = s.clone();
    }
    raw.create_default = i.create_default;
    TablePolicy::try_from(raw.clone()).map_err(|e| e.to_string())?;
    Ok(raw)
}
