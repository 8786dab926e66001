//! One run per table at a time (invariant 3): a session advisory lock keyed on the table's name.
//! The PL/pgSQL `create_partitions` (the pg_cron path) takes the same key.

use crate::plan::ident::QualifiedName;
use anyhow::Context;
use tokio_postgres::Client;

/// Advisory-lock key of a table: two int4s, the first fixed for this tool.
const LOCK_CLASS: i32 = 0x5041_5243; // "PARC"

pub async fn try_lock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<bool> {
    let key = format!("{}.{}", table.schema, table.name);
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &key])
        .await
        .context("take advisory lock")?
        .get(0))
}

pub async fn unlock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<()> {
    let key = format!("{}.{}", table.schema, table.name);
    client
        .query_one("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &key])
        .await
        .context("release advisory lock")?;
    Ok(())
}
