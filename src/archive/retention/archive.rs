//! Archive: `detached -> uploading -> uploaded -> verified`, every partition as a chunk plan (a
//! partition under `ARCHIVE_CHUNK_SIZE` is a plan of one chunk whose object keeps the key
//! `{partition}.{ext}`; see `chunked.rs` for the phases after these).
//!
//! 1. [`load_detached`]: the manifest row must exist and the table must be detached.
//! 2. [`freeze`]: a statement trigger refuses every write, so the rows copied, counted and finally
//!    dropped are the same set.
//! 3. The chunk plan: each chunk streamed, checked over its own block range, completed
//!    write-once, then every object checked by HEAD and the JSON manifest written (`verified`).

use super::chunked::{self, Target};
use crate::archive::manifest::{self, ManifestRecord};
use crate::archive::Archiver;
use crate::error::Error;
use crate::pg::ddl::{run_ddl, DdlOptions};
use crate::plan::ident::{quote_literal, QualifiedName};
use crate::plan::policy::TablePolicy;
use anyhow::{anyhow, bail, Context};
use tokio_postgres::Client;

/// Archives a detached partition through every phase that remains, and returns what it archived.
pub async fn archive(
    client: &mut Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
    archiver: &Archiver,
    opts: &DdlOptions,
) -> anyhow::Result<super::record::Archived> {
    let rec = load_detached(client, policy, partition).await?;
    let target = Target::of(policy, &rec, archiver);
    if !target.format.supports(target.compression) {
        bail!(Error::invalid(format!(
            "{partition}: archive_format {} does not go with compression {} (a Parquet file compresses its pages with \
             zstd or not at all): nothing was changed",
            target.format.as_str(),
            target.compression.as_str()
        )));
    }
    freeze(client, opts, &rec).await?;
    // Boxed: the chunk workers' futures are deep, and the front doors nest this one further.
    Box::pin(chunked::archive_chunked(client, policy, partition, archiver, rec, &target)).await
}

/// Phase 1: the partition's manifest row, which must exist (only partitions this tool detached
/// are archived), and its table, which must exist and be detached.
async fn load_detached(
    client: &Client,
    policy: &TablePolicy,
    partition: &QualifiedName,
) -> anyhow::Result<ManifestRecord> {
    let rec = manifest::load(client, &policy.table, &partition.name)
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
        Some(false) => Ok(rec),
    }
}

/// Phase 2: freeze the table before anything reads it (migrations 20250801000003 and
/// 20261206000003): CREATE TRIGGER waits for writers already in it and every later write fails, so
/// the COPY, the row counts and the table that is finally dropped all hold the same rows. The
/// trigger's catalog row is recorded at the first freeze, so the DROP proves the freeze held by
/// reading it rather than counting the table. Idempotent: a trigger untouched since is left as it
/// is (replacing it would change the row the proof compares).
async fn freeze(client: &mut Client, opts: &DdlOptions, rec: &ManifestRecord) -> anyhow::Result<()> {
    let table = rec.partition();
    let freeze = format!(
        "SELECT partition_archiver.freeze({}::regclass, {})",
        quote_literal(&table.quoted()),
        manifest::key_literals(&rec.table(), &rec.partition_name)
    );
    run_ddl(client, opts, &format!("freeze {table}"), &[freeze])
        .await
        .0
        .with_context(|| format!("freeze {table} against writes (has `partition-archiver migrate` run?)"))?;
    Ok(())
}
