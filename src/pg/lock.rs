//! Session advisory locks, keyed `(class, hashtext(key))`: one run per table at a time (invariant
//! 3; the PL/pgSQL `create_partitions`, the pg_cron path, takes the same table key), one worker
//! per chunk of a chunked archive, one restore per staging table.

use crate::plan::ident::QualifiedName;
use anyhow::Context;
use tokio_postgres::Client;

/// What an advisory lock guards: the first int4 of its key, fixed for this tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// `schema.table`: one run per table ("PARC").
    Table,
    /// `schema.partition#plan#chunk`: one worker per chunk, across runs and fan-out units ("PACH").
    Chunk,
    /// A restore's staging table: one restore per staging table ("PARS").
    Restore,
}

impl LockClass {
    fn id(self) -> i32 {
        match self {
            LockClass::Table => 0x5041_5243,
            LockClass::Chunk => 0x5041_4348,
            LockClass::Restore => 0x5041_5253,
        }
    }
}

/// Takes the lock if it is free; `false` when another session holds it.
pub async fn try_lock(client: &Client, class: LockClass, key: &str) -> anyhow::Result<bool> {
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&class.id(), &key])
        .await
        .with_context(|| format!("take advisory lock {class:?} {key}"))?
        .get(0))
}

pub async fn unlock(client: &Client, class: LockClass, key: &str) -> anyhow::Result<()> {
    client
        .query_one("SELECT pg_advisory_unlock($1, hashtext($2))", &[&class.id(), &key])
        .await
        .with_context(|| format!("release advisory lock {class:?} {key}"))?;
    Ok(())
}

pub async fn try_lock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<bool> {
    try_lock(client, LockClass::Table, &format!("{}.{}", table.schema, table.name)).await
}

pub async fn unlock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<()> {
    unlock(client, LockClass::Table, &format!("{}.{}", table.schema, table.name)).await
}
