//! The archive manifest: one record per archived partition, kept in
//! `partition_archiver.archive_manifest` (the state machine's source of truth) and written as JSON
//! beside the object in S3 (so an archive can be found and restored without the database).

use crate::archive::settings::{Compression, Format};
use crate::pg::catalog::Column;
use crate::plan::chunks::BlockRange;
use crate::plan::ident::{quote_literal, QualifiedName};
use crate::plan::period::{local_of_literal, Interval, KeyType, Period};
use crate::plan::snapshot::ArchiveState;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManifestRecord {
    #[serde(default = "default_version")]
    pub manifest_version: u32,
    pub table_schema: String,
    pub table_name: String,
    pub partition_schema: String,
    pub partition_name: String,
    pub key_column: String,
    pub key_type: String,
    pub time_zone: String,
    pub range_from: Option<String>,
    pub range_to: Option<String>,
    pub columns: Vec<Column>,
    pub state: ArchiveState,
    pub row_count: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub compressed_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub format: Option<String>,
    pub compression: Option<String>,
    pub bucket: Option<String>,
    pub object_key: Option<String>,
    pub manifest_key: Option<String>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub checksum_composite: Option<String>,
    pub multipart_upload_id: Option<String>,
    pub pg_version: Option<String>,
    pub tool_version: Option<String>,
    /// `system_identifier` of the database that archived the partition (absent in archives made
    /// before it was recorded).
    pub system_identifier: Option<String>,
    /// The token written into the data object's metadata by the upload that made it.
    pub upload_token: Option<String>,
    pub moved_to_schema: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub uploaded_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Bytes of heap per chunk of the current plan; `None`: one object (`object_key`).
    pub chunk_size: Option<i64>,
    /// The current chunk plan's number (a rewrite between chunks makes the next one).
    #[serde(default)]
    pub chunk_generation: i32,
    /// `pg_relation_filenode()` and block count the chunk plan was made from.
    pub rel_filenode: Option<i64>,
    pub rel_blocks: Option<i64>,
    /// Transactions in which a trigger (a foreign-key action) had written rows of the frozen table
    /// when the plan was made (`frozen_writes_of`, migration 20261207000001): another number since
    /// means a row may have moved to a block range already copied. `None`: a plan of an earlier
    /// version.
    pub rel_writes: Option<i64>,
    /// Every chunk of every plan of a chunked archive (older plans' as `superseded`), in order.
    #[serde(default)]
    pub chunks: Vec<ChunkRecord>,
}

/// One chunk of a chunked archive: a ctid block range of the partition in its own object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkRecord {
    pub generation: i32,
    pub chunk_no: i32,
    pub block_from: i64,
    /// `None`: to the end of the relation.
    pub block_to: Option<i64>,
    pub state: ChunkState,
    pub object_key: String,
    pub multipart_upload_id: Option<String>,
    pub upload_token: Option<String>,
    pub row_count: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub compressed_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub checksum_composite: Option<String>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub last_error: Option<String>,
    pub uploaded_at: Option<DateTime<Utc>>,
}

/// Where a chunk is in its state machine (`archive_chunk.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// Planned, or given back after a failed or refused attempt: to be uploaded.
    Pending,
    /// An upload began (its id and token recorded); with figures, S3 may have completed it.
    Uploading,
    /// Its object is at its key, recorded.
    Uploaded,
    /// Of an older plan: not part of the archive.
    Superseded,
}

impl ChunkState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkState::Pending => "pending",
            ChunkState::Uploading => "uploading",
            ChunkState::Uploaded => "uploaded",
            ChunkState::Superseded => "superseded",
        }
    }
}

impl ChunkRecord {
    pub fn range(&self) -> BlockRange {
        BlockRange { from: self.block_from.max(0) as u64, to: self.block_to.map(|t| t.max(0) as u64) }
    }
}

/// One data object of an archive, as its manifest records it: the single object of a small
/// partition, or one chunk of a chunked one.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveObject<'a> {
    /// `None` for a single-object archive, the chunk number otherwise.
    pub chunk_no: Option<i32>,
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub sha256: Option<&'a str>,
    pub row_count: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub compressed_bytes: Option<i64>,
    pub checksum_composite: Option<&'a str>,
}

impl ArchiveObject<'_> {
    /// `chunk 3` or `object`, for messages.
    pub fn label(&self) -> String {
        self.chunk_no.map_or_else(|| "object".to_string(), |n| format!("chunk {n}"))
    }
}

fn default_version() -> u32 {
    MANIFEST_VERSION
}

impl ManifestRecord {
    pub fn table(&self) -> QualifiedName {
        QualifiedName::new(&self.table_schema, &self.table_name)
    }
    pub fn partition(&self) -> QualifiedName {
        QualifiedName::new(&self.partition_schema, &self.partition_name)
    }
    pub fn format(&self) -> anyhow::Result<Format> {
        self.format.as_deref().and_then(Format::parse).context("manifest has no valid format")
    }
    pub fn compression(&self) -> anyhow::Result<Compression> {
        self.compression.as_deref().and_then(Compression::parse).context("manifest has no valid compression")
    }
    /// Is this archive (or the attempt under way) split into chunks?
    pub fn is_chunked(&self) -> bool {
        self.chunk_size.is_some()
    }
    /// The chunks of the current plan, in order.
    pub fn current_chunks(&self) -> impl Iterator<Item = &ChunkRecord> {
        self.chunks.iter().filter(move |c| c.generation == self.chunk_generation && c.state != ChunkState::Superseded)
    }
    /// ` chunk N` where the plan has more than one chunk, for naming the work on one; nothing for a
    /// plan of one (it is the partition's one object).
    pub fn chunk_label(&self, chunk_no: i32) -> String {
        if self.current_chunks().count() > 1 {
            format!(" chunk {chunk_no}")
        } else {
            String::new()
        }
    }
    /// `{schema}.{table}`: the table's folder in the key layout.
    pub fn table_folder(&self) -> String {
        format!("{}.{}", self.table_schema, self.table_name)
    }

    /// Points the archive's object (`chunk_no` None) or one of its current chunks at another version
    /// of its key: an identical copy of the recorded one ([`crate::archive::check::locate`]).
    pub fn follow(&mut self, chunk_no: Option<i32>, version_id: Option<String>) {
        match chunk_no {
            None => self.version_id = version_id,
            Some(n) => {
                let generation = self.chunk_generation;
                if let Some(c) = self
                    .chunks
                    .iter_mut()
                    .find(|c| c.generation == generation && c.chunk_no == n && c.state != ChunkState::Superseded)
                {
                    c.version_id = version_id;
                }
            }
        }
    }
    /// The data objects that make up the archive: the chunks of the current plan, or the one
    /// object an earlier version recorded without chunk rows. Empty while nothing is recorded.
    pub fn objects(&self) -> Vec<ArchiveObject<'_>> {
        if self.is_chunked() {
            return self
                .current_chunks()
                .map(|c| ArchiveObject {
                    chunk_no: Some(c.chunk_no),
                    key: &c.object_key,
                    version_id: c.version_id.as_deref(),
                    sha256: c.sha256.as_deref(),
                    row_count: c.row_count,
                    raw_bytes: c.raw_bytes,
                    compressed_bytes: c.compressed_bytes,
                    checksum_composite: c.checksum_composite.as_deref(),
                })
                .collect();
        }
        self.object_key
            .as_deref()
            .map(|key| ArchiveObject {
                chunk_no: None,
                key,
                version_id: self.version_id.as_deref(),
                sha256: self.sha256.as_deref(),
                row_count: self.row_count,
                raw_bytes: self.raw_bytes,
                compressed_bytes: self.compressed_bytes,
                checksum_composite: self.checksum_composite.as_deref(),
            })
            .into_iter()
            .collect()
    }
}

/// The key of chunk `chunk_no` of plan `generation`, beside where the single object would be:
/// `{dir}/{partition}.g{generation}.c{chunk_no:05}.csv.zst` (the plan's number in the name, so a
/// new plan never meets an older plan's object at its key).
pub fn chunk_key(
    single_key: &str,
    partition: &str,
    generation: i32,
    chunk_no: i32,
    format: Format,
    compression: Compression,
) -> String {
    let name = format!("{partition}.g{generation}.c{chunk_no:05}{}", format.suffix(compression));
    match single_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name,
    }
}

/// `{prefix}/{schema}.{table}/year=YYYY/month=MM/{partition}.csv.zst` (Hive-style, so query
/// engines prune by period). The period is that of the lower bound; a partition with no lower
/// bound (MINVALUE) goes under `year=0000`.
pub fn object_key(
    prefix: &str,
    record: &ManifestRecord,
    interval: Interval,
    format: Format,
    compression: Compression,
) -> String {
    // The bound literals as the record's key type writes them (older records: any time literal).
    let tz = record.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let keys =
        KeyType::parse(&record.key_type).into_iter().chain([KeyType::Timestamptz, KeyType::Timestamp, KeyType::Date]);
    let local = |bound: Option<&str>| bound.and_then(|b| keys.clone().find_map(|k| local_of_literal(k, tz, b)));
    // Keyed by the interval the range is one period of (a month archived after the table went
    // daily keeps its month's key), else by the table's interval (the rest of a period after an
    // interval change, a foreign range).
    let period = match (local(record.range_from.as_deref()), local(record.range_to.as_deref())) {
        (Some(from), to) => {
            let keyed_by = to.and_then(|to| Interval::of_range(interval, from, to)).unwrap_or(interval);
            Period::containing(keyed_by, from).hive_path()
        }
        (None, _) => "year=0000".to_string(),
    };
    let base = format!("{}/{period}/{}{}", record.table_folder(), record.partition_name, format.suffix(compression));
    if prefix.is_empty() {
        base
    } else {
        format!("{prefix}/{base}")
    }
}

/// The folder of a table's JSON manifests, beside its period folders: query engines read every
/// object under a partition's folder (Athena cannot skip any by name), so only data goes there.
/// Hive, Trino and Spark also treat a folder whose name starts with `_` as hidden.
pub const MANIFEST_DIR: &str = "_manifests";

/// The key of the JSON manifest of an archive whose (first) object is at `object_key`:
/// `{prefix}/{schema}.{table}/_manifests/year=YYYY/month=MM/{partition}.manifest.json`, from the
/// partition name, not the file name, which may itself contain dots. Archives recorded before
/// keep the key their row records (`{dir}/{partition}.manifest.json`, beside the object), and
/// restore's lookup in S3 finds both.
pub fn manifest_key(object_key: &str, table_folder: &str, partition: &str) -> String {
    let segments: Vec<&str> = object_key.split('/').collect();
    let dirs = &segments[..segments.len() - 1];
    let file = format!("{partition}.manifest.json");
    match dirs.iter().rposition(|d| *d == table_folder) {
        Some(i) => [&dirs[..=i], &[MANIFEST_DIR], &dirs[i + 1..], &[file.as_str()]].concat().join("/"),
        None => [dirs, &[file.as_str()]].concat().join("/"),
    }
}

/// Does a manifest found in S3 describe the same archive as `ours`: the same partition of the same
/// table, with the same bounds and columns, and the same object (bucket, key, version, sizes,
/// checksums, rows, format, compression)? Only these identity fields are compared: state,
/// timestamps, token, the writer's `system_identifier`, tool and manifest versions may differ (a
/// run that resumes, or a clone that adopted the same object, writes an equal manifest).
pub fn describe_the_same_archive(found: &ManifestRecord, ours: &ManifestRecord) -> bool {
    const IDENTITY: &[&str] = &[
        "table_schema",
        "table_name",
        "partition_schema",
        "partition_name",
        "key_column",
        "key_type",
        "time_zone",
        "range_from",
        "range_to",
        "columns",
        "row_count",
        "raw_bytes",
        "compressed_bytes",
        "sha256",
        "checksum_composite",
        "format",
        "compression",
        "bucket",
        "object_key",
        "version_id",
    ];
    match (serde_json::to_value(found), serde_json::to_value(ours)) {
        (Ok(a), Ok(b)) => {
            // A manifest an earlier version wrote for one object has no chunks; it describes a plan
            // of one whose object its top-level fields (compared above) name.
            let one_object = found.chunks.is_empty() && ours.current_chunks().count() == 1;
            IDENTITY.iter().all(|k| a.get(k) == b.get(k))
                && (one_object || chunk_identity(found) == chunk_identity(ours))
        }
        _ => false,
    }
}

/// The identity of a manifest's current chunks: range, key, version, figures.
fn chunk_identity(r: &ManifestRecord) -> Vec<serde_json::Value> {
    r.current_chunks()
        .map(|c| {
            serde_json::json!([
                c.chunk_no,
                c.block_from,
                c.block_to,
                c.object_key,
                c.version_id,
                c.sha256,
                c.row_count,
                c.compressed_bytes,
                c.checksum_composite
            ])
        })
        .collect()
}

/// A manifest row as JSON with its chunks (every plan's, in order) under `chunks`.
const WITH_CHUNKS: &str = "to_jsonb(m) || jsonb_build_object('chunks', COALESCE((
       SELECT jsonb_agg(to_jsonb(c) - 'table_schema' - 'table_name' - 'partition_name' - 'updated_at'
                        ORDER BY c.generation, c.chunk_no)
         FROM partition_archiver.archive_chunk c
        WHERE c.table_schema = m.table_schema AND c.table_name = m.table_name
          AND c.partition_name = m.partition_name), '[]'::jsonb))";

/// Records `message` as the partition's last error, leaving its state as it is: what `list` and
/// `status` show of a chunk's failed attempt.
pub async fn note_error(
    client: &impl GenericClient,
    table: &QualifiedName,
    partition: &str,
    message: &str,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE partition_archiver.archive_manifest SET last_error = $4, updated_at = now() \
              WHERE table_schema = $1 AND table_name = $2 AND partition_name = $3",
            &[&table.schema, &table.name, &partition, &message],
        )
        .await
        .context("record the partition's last error")?;
    Ok(())
}

pub async fn load(
    client: &impl GenericClient,
    table: &QualifiedName,
    partition: &str,
) -> anyhow::Result<Option<ManifestRecord>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {WITH_CHUNKS} FROM partition_archiver.archive_manifest m
              WHERE table_schema = $1 AND table_name = $2 AND partition_name = $3"
            ),
            &[&table.schema, &table.name, &partition],
        )
        .await
        .context("read archive manifest")?;
    row.map(decode).transpose()
}

/// One chunk's row as it is now (another run may have finished or superseded it), without the
/// plan's other rows: a chunk's attempt re-reads only its own, so its work does not grow with the
/// plan (a 500 GB partition has ~1,900 chunks; its whole manifest takes ~50 ms to read).
pub async fn load_chunk(
    client: &impl GenericClient,
    table: &QualifiedName,
    partition: &str,
    generation: i32,
    chunk_no: i32,
) -> anyhow::Result<Option<ChunkRecord>> {
    let row = client
        .query_opt(
            "SELECT to_jsonb(c) FROM partition_archiver.archive_chunk c
              WHERE table_schema = $1 AND table_name = $2 AND partition_name = $3 AND generation = $4 AND chunk_no = $5",
            &[&table.schema, &table.name, &partition, &generation, &chunk_no],
        )
        .await
        .context("read a chunk's row")?;
    row.map(|r| serde_json::from_value(r.get::<_, serde_json::Value>(0)).context("decode a chunk's row")).transpose()
}

/// A row of [`WITH_CHUNKS`].
fn decode(row: tokio_postgres::Row) -> anyhow::Result<ManifestRecord> {
    serde_json::from_value(row.get::<_, serde_json::Value>(0)).context("decode archive manifest row")
}

pub async fn list(client: &impl GenericClient, table: Option<&QualifiedName>) -> anyhow::Result<Vec<ManifestRecord>> {
    let (schema, name) = table.map_or((None, None), |t| (Some(t.schema.clone()), Some(t.name.clone())));
    let rows = client
        .query(
            &format!(
                "SELECT {WITH_CHUNKS} FROM partition_archiver.archive_manifest m
              WHERE ($1::text IS NULL OR table_schema = $1) AND ($2::text IS NULL OR table_name = $2)
              ORDER BY table_schema, table_name, range_from NULLS FIRST, partition_name"
            ),
            &[&schema, &name],
        )
        .await
        .context("list archive manifest")?;
    rows.into_iter().map(decode).collect()
}

/// What a transition writes into a column: a value (quoted with [`quote_literal`]), NULL, or the
/// transaction's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Null,
    Now,
}

impl Value {
    fn text(v: impl ToString) -> Self {
        Value::Text(v.to_string())
    }
    fn sql(&self) -> String {
        match self {
            Value::Text(v) => quote_literal(v),
            Value::Null => "NULL".to_string(),
            Value::Now => "now()".to_string(),
        }
    }
}

impl<T: ToString> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Value::text)
    }
}

/// `state = ..., updated_at = now(), col = value, ...` for a manifest or chunk row.
fn set_clause(state: &str, extra: &[(&str, Value)]) -> String {
    let mut sets = vec![format!("state = {}", quote_literal(state)), "updated_at = now()".to_string()];
    sets.extend(extra.iter().map(|(col, val)| format!("{col} = {}", val.sql())));
    sets.join(", ")
}

/// A partition's key, `'schema', 'table', 'partition'`, as literals (quoted with [`quote_literal`]:
/// these statements run inside [`crate::pg::ddl::run_ddl`]'s statement lists, without parameters).
pub fn key_literals(table: &QualifiedName, partition: &str) -> String {
    [&table.schema, &table.name, partition].map(quote_literal).join(", ")
}

/// The rows of a partition, of `archive_manifest` or `archive_chunk`.
fn where_partition(table: &QualifiedName, partition: &str) -> String {
    format!("(table_schema, table_name, partition_name) = ({})", key_literals(table, partition))
}

/// SQL that sets `state` (and any extra `column = value` pairs) on one manifest row.
fn set_state_sql(table: &QualifiedName, partition: &str, state: &str, extra: &[(&str, Value)]) -> String {
    format!(
        "UPDATE partition_archiver.archive_manifest SET {} WHERE {}",
        set_clause(state, extra),
        where_partition(table, partition)
    )
}

/// What an upload found out about its object, on a chunk's row or (a plan of one) the partition's.
const FIGURES: [&str; 5] = ["row_count", "raw_bytes", "compressed_bytes", "sha256", "checksum_composite"];

/// `columns` set to NULL.
fn null(columns: &[&'static str]) -> Vec<(&'static str, Value)> {
    columns.iter().map(|c| (*c, Value::Null)).collect()
}

/// One transition of a partition's manifest row after [`upsert_sql`] created it: the state it moves
/// to and every column it writes, written here and nowhere else (the call sites name the
/// transition, not columns).
#[derive(Debug, Clone)]
pub enum PartitionChange<'a> {
    /// A `DETACH ... CONCURRENTLY` finished: `detaching` to `detached`.
    Detached,
    /// A new chunk plan (`uploading`): its size, number and the relation it was made from, where
    /// and how its objects go; an earlier version's one-object figures are cleared.
    Planned {
        chunk_size: u64,
        generation: i32,
        rel_filenode: i64,
        rel_blocks: i64,
        rel_writes: i64,
        bucket: &'a str,
        format: Format,
        compression: Compression,
    },
    /// Every chunk uploaded and found by HEAD: the totals; a plan of one is also described as its
    /// one object, as archives were before chunks existed (readers find `object_key`, `sha256`, ...
    /// where they always were).
    Uploaded { rows: Option<i64>, raw_bytes: Option<i64>, compressed_bytes: Option<i64>, one: Option<&'a ChunkRecord> },
    /// The JSON manifest is written at `manifest_key` and read back.
    Verified { manifest_key: &'a str },
    /// The table is dropped.
    Dropped,
    /// The table is moved to `schema` (where the row now finds it).
    Moved { schema: &'a str },
}

impl PartitionChange<'_> {
    pub fn state(&self) -> ArchiveState {
        match self {
            PartitionChange::Detached => ArchiveState::Detached,
            PartitionChange::Planned { .. } => ArchiveState::Uploading,
            PartitionChange::Uploaded { .. } => ArchiveState::Uploaded,
            PartitionChange::Verified { .. } => ArchiveState::Verified,
            PartitionChange::Dropped => ArchiveState::Dropped,
            PartitionChange::Moved { .. } => ArchiveState::Moved,
        }
    }

    /// The columns written, with their values.
    pub fn sets(&self) -> Vec<(&'static str, Value)> {
        match *self {
            PartitionChange::Detached => vec![],
            PartitionChange::Planned {
                chunk_size,
                generation,
                rel_filenode,
                rel_blocks,
                rel_writes,
                bucket,
                format,
                compression,
            } => [
                vec![
                    ("chunk_size", Value::text(chunk_size)),
                    ("chunk_generation", Value::text(generation)),
                    ("rel_filenode", Value::text(rel_filenode)),
                    ("rel_blocks", Value::text(rel_blocks)),
                    ("rel_writes", Value::text(rel_writes)),
                    ("bucket", Value::text(bucket)),
                    ("format", Value::text(format.as_str())),
                    ("compression", Value::text(compression.as_str())),
                ],
                null(&FIGURES),
                null(&["object_key", "multipart_upload_id", "upload_token", "etag", "version_id"]),
            ]
            .concat(),
            PartitionChange::Uploaded { rows, raw_bytes, compressed_bytes, one } => {
                let mut sets = vec![
                    ("row_count", rows.into()),
                    ("raw_bytes", raw_bytes.into()),
                    ("compressed_bytes", compressed_bytes.into()),
                    ("uploaded_at", Value::Now),
                ];
                if let Some(one) = one {
                    sets.extend([
                        ("object_key", Value::text(&one.object_key)),
                        ("version_id", one.version_id.as_deref().into()),
                        ("etag", one.etag.as_deref().into()),
                        ("sha256", one.sha256.as_deref().into()),
                        ("checksum_composite", one.checksum_composite.as_deref().into()),
                    ]);
                }
                sets
            }
            PartitionChange::Verified { manifest_key } => {
                vec![("manifest_key", Value::text(manifest_key)), ("verified_at", Value::Now)]
            }
            PartitionChange::Dropped => vec![("finished_at", Value::Now)],
            PartitionChange::Moved { schema } => vec![
                ("moved_to_schema", Value::text(schema)),
                ("partition_schema", Value::text(schema)),
                ("finished_at", Value::Now),
            ],
        }
    }
}

/// SQL that makes `change` on the partition's manifest row.
pub fn partition_change_sql(table: &QualifiedName, partition: &str, change: &PartitionChange<'_>) -> String {
    set_state_sql(table, partition, change.state().as_str(), &change.sets())
}

/// One transition of a chunk's row: the state it moves to and every column it writes, written
/// here and nowhere else (the chunk state machine's call sites name the transition, not columns).
#[derive(Debug, Clone)]
pub enum ChunkChange<'a> {
    /// A new upload began: its multipart upload id and token; an earlier attempt's figures go.
    Uploading { upload_id: &'a str, token: &'a str },
    /// Every part is uploaded: what was streamed, recorded before the completion (a run killed
    /// right after S3 completes the object finds it described by its own row).
    Streamed { rows: u64, raw_bytes: u64, compressed_bytes: u64, sha256: &'a str, composite: &'a str },
    /// The object is at its key, completed by this chunk's own upload.
    Uploaded { etag: Option<&'a str>, version_id: Option<&'a str> },
    /// An object found at the key holds exactly the chunk's rows: recorded as its archive, with
    /// what it holds and no upload token of this tool's.
    Adopted {
        etag: Option<&'a str>,
        version_id: Option<&'a str>,
        rows: u64,
        raw_bytes: u64,
        compressed_bytes: i64,
        sha256: &'a str,
        composite: Option<&'a str>,
    },
    /// The attempt failed: back to `pending`, saying why.
    Failed { why: &'a str },
    /// The object at its key is not provably this chunk's (or its rows are not the chunk's): back
    /// to `pending` with no figures or token of an upload of ours, since none can be complete
    /// there; so a plan with nothing else complete may be made again under other settings.
    Refused { why: &'a str },
    /// Its recorded object is gone while the partition is still in PostgreSQL: back to `pending`
    /// with nothing of that upload kept, so it is uploaded again.
    Lost { why: &'a str },
    /// The one object an earlier version recorded on the partition's row (no chunk rows), which
    /// may be complete, becomes the new plan's one chunk with that upload's token, id and figures:
    /// `uploading`, never `uploaded` at once (that version checked rows only after that state), so
    /// it is found at its key and its rows checked as any chunk's own upload's are.
    CarriedOver(&'a ManifestRecord),
}

impl ChunkChange<'_> {
    pub fn state(&self) -> ChunkState {
        match self {
            ChunkChange::Uploading { .. } | ChunkChange::Streamed { .. } | ChunkChange::CarriedOver(_) => {
                ChunkState::Uploading
            }
            ChunkChange::Uploaded { .. } | ChunkChange::Adopted { .. } => ChunkState::Uploaded,
            ChunkChange::Failed { .. } | ChunkChange::Refused { .. } | ChunkChange::Lost { .. } => ChunkState::Pending,
        }
    }

    /// The columns written, with their values.
    pub fn sets(&self) -> Vec<(&'static str, Value)> {
        let figures = |rows: u64, raw: u64, compressed: i64, sha256: &str, composite: Option<&str>| {
            vec![
                ("row_count", Value::text(rows)),
                ("raw_bytes", Value::text(raw)),
                ("compressed_bytes", Value::text(compressed)),
                ("sha256", Value::text(sha256)),
                ("checksum_composite", composite.into()),
            ]
        };
        match *self {
            ChunkChange::Uploading { upload_id, token } => [
                vec![
                    ("multipart_upload_id", Value::text(upload_id)),
                    ("upload_token", Value::text(token)),
                    ("last_error", Value::Null),
                ],
                null(&FIGURES),
            ]
            .concat(),
            ChunkChange::Streamed { rows, raw_bytes, compressed_bytes, sha256, composite } => {
                figures(rows, raw_bytes, compressed_bytes as i64, sha256, Some(composite))
            }
            ChunkChange::Uploaded { etag, version_id } => vec![
                ("etag", etag.into()),
                ("version_id", version_id.into()),
                ("multipart_upload_id", Value::Null),
                ("uploaded_at", Value::Now),
            ],
            ChunkChange::Adopted { etag, version_id, rows, raw_bytes, compressed_bytes, sha256, composite } => [
                ChunkChange::Uploaded { etag, version_id }.sets(),
                figures(rows, raw_bytes, compressed_bytes, sha256, composite),
                null(&["upload_token", "last_error"]),
            ]
            .concat(),
            ChunkChange::Failed { why } => vec![("last_error", Value::text(why)), ("multipart_upload_id", Value::Null)],
            ChunkChange::Refused { why } => {
                [null(&FIGURES), null(&["multipart_upload_id", "upload_token"]), vec![("last_error", Value::text(why))]]
                    .concat()
            }
            ChunkChange::CarriedOver(rec) => vec![
                ("upload_token", rec.upload_token.as_deref().into()),
                ("multipart_upload_id", rec.multipart_upload_id.as_deref().into()),
                ("row_count", rec.row_count.into()),
                ("raw_bytes", rec.raw_bytes.into()),
                ("compressed_bytes", rec.compressed_bytes.into()),
                ("sha256", rec.sha256.as_deref().into()),
                ("checksum_composite", rec.checksum_composite.as_deref().into()),
                ("etag", rec.etag.as_deref().into()),
                ("version_id", rec.version_id.as_deref().into()),
            ],
            ChunkChange::Lost { why } => [
                null(&FIGURES),
                null(&["multipart_upload_id", "upload_token", "etag", "version_id", "uploaded_at"]),
                vec![("last_error", Value::text(format!("{why}: uploaded again")))],
            ]
            .concat(),
        }
    }
}

/// SQL that makes `change` on one chunk row of the current plan, unless it was superseded
/// meanwhile (a rewrite made a new plan): the caller checks that one row changed.
pub fn chunk_change_sql(
    table: &QualifiedName,
    partition: &str,
    generation: i32,
    chunk_no: i32,
    change: &ChunkChange<'_>,
) -> String {
    format!(
        "UPDATE partition_archiver.archive_chunk SET {} WHERE {} \
         AND generation = {generation} AND chunk_no = {chunk_no} AND state <> 'superseded'",
        set_clause(change.state().as_str(), &change.sets()),
        where_partition(table, partition)
    )
}

/// SQL that supersedes every chunk of the partition's plans: the first statement of a new plan.
pub fn supersede_chunks_sql(table: &QualifiedName, partition: &str) -> String {
    format!(
        "UPDATE partition_archiver.archive_chunk SET state = 'superseded', updated_at = now() \
         WHERE {} AND state <> 'superseded'",
        where_partition(table, partition)
    )
}

/// SQL that records chunk `chunk_no` of plan `generation`, `pending`: its block range and key.
pub fn new_chunk_sql(
    table: &QualifiedName,
    partition: &str,
    generation: i32,
    chunk_no: i32,
    range: BlockRange,
    key: &str,
) -> String {
    format!(
        "INSERT INTO partition_archiver.archive_chunk (table_schema, table_name, partition_name, generation, chunk_no, \
         block_from, block_to, object_key, state) VALUES ({}, {generation}, {chunk_no}, {}, {}, {}, 'pending')",
        key_literals(table, partition),
        range.from,
        range.to.map_or("NULL".to_string(), |t| t.to_string()),
        quote_literal(key)
    )
}

/// SQL that raises unless the partition's manifest row is in one of `states` (and locks that row,
/// and checks the table is no longer attached): the guard before every DROP and schema move.
pub fn require_state_sql(table: &QualifiedName, partition: &str, states: &[&str]) -> String {
    let states: Vec<String> = states.iter().map(|s| quote_literal(s)).collect();
    format!(
        "SELECT partition_archiver.require_archive_state({}, ARRAY[{}]::text[])",
        key_literals(table, partition),
        states.join(", ")
    )
}

/// SQL that raises if the partition name already has an archive (`verified`, `dropped`, `moved`):
/// its object must never be replaced, so such a partition is never detached for archiving again.
pub fn require_not_archived_sql(table: &QualifiedName, partition: &str) -> String {
    format!("SELECT partition_archiver.require_not_archived({})", key_literals(table, partition))
}

/// SQL that raises if `partition` may hold rows its archive does not: the last check before its
/// DROP. Reads catalog rows when the freeze trigger is the one recorded before the first COPY
/// (migration 20261206000003) and no trigger has written a row into the table since the chunk plan
/// (20261207000001); otherwise counts the table, which may not hold more rows than its archive (or
/// a different count when its freeze trigger is gone or disabled).
pub fn require_unchanged_sql(table: &QualifiedName, partition: &QualifiedName) -> String {
    format!(
        "SELECT partition_archiver.require_unchanged({}::regclass, m.row_count, m.frozen_by, m.rel_writes) \
         FROM partition_archiver.archive_manifest m WHERE {}",
        quote_literal(&partition.quoted()),
        where_partition(table, &partition.name)
    )
}

/// SQL that inserts (or resets) the manifest row of a partition about to be detached.
pub fn upsert_sql(r: &ManifestRecord) -> String {
    let lit = |v: &str| quote_literal(v);
    let opt = |v: &Option<String>| v.as_deref().map_or("NULL".to_string(), quote_literal);
    let columns = serde_json::to_string(&r.columns).expect("columns serialize");
    format!(
        "INSERT INTO partition_archiver.archive_manifest
           (table_schema, table_name, partition_schema, partition_name, key_column, key_type, time_zone,
            range_from, range_to, columns, state, pg_version, tool_version, system_identifier)
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}::jsonb, {}, current_setting('server_version'), {},
                 (SELECT system_identifier::text FROM pg_control_system()))
         ON CONFLICT (table_schema, table_name, partition_name) DO UPDATE SET
           partition_schema = EXCLUDED.partition_schema, key_column = EXCLUDED.key_column, key_type = EXCLUDED.key_type,
           time_zone = EXCLUDED.time_zone, range_from = EXCLUDED.range_from, range_to = EXCLUDED.range_to,
           columns = EXCLUDED.columns, state = EXCLUDED.state, pg_version = EXCLUDED.pg_version,
           tool_version = EXCLUDED.tool_version, system_identifier = EXCLUDED.system_identifier,
           upload_token = NULL, row_count = NULL, raw_bytes = NULL, compressed_bytes = NULL,
           sha256 = NULL, object_key = NULL, manifest_key = NULL, version_id = NULL, etag = NULL,
           checksum_composite = NULL, moved_to_schema = NULL, last_error = NULL, uploaded_at = NULL,
           chunk_size = NULL, rel_filenode = NULL, rel_blocks = NULL, rel_writes = NULL, frozen_by = NULL,
           verified_at = NULL, finished_at = NULL, updated_at = now()
         WHERE archive_manifest.state NOT IN ('verified', 'dropped', 'moved')",
        lit(&r.table_schema),
        lit(&r.table_name),
        lit(&r.partition_schema),
        lit(&r.partition_name),
        lit(&r.key_column),
        lit(&r.key_type),
        lit(&r.time_zone),
        opt(&r.range_from),
        opt(&r.range_to),
        lit(&columns),
        lit(r.state.as_str()),
        lit(env!("CARGO_PKG_VERSION")),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn each_chunk_transition_writes_its_state_and_columns_in_one_place() {
        use ChunkChange::*;
        let streamed = Streamed { rows: 5, raw_bytes: 50, compressed_bytes: 20, sha256: "ab", composite: "cd-1" };
        let adopted = Adopted {
            etag: Some("e"),
            version_id: Some("v"),
            rows: 5,
            raw_bytes: 50,
            compressed_bytes: 20,
            sha256: "ab",
            composite: Some("ef"),
        };
        // What an upload found out about its object, written (or cleared) together.
        let figures = || vec!["row_count", "raw_bytes", "compressed_bytes", "sha256", "checksum_composite"];
        let and = |a: Vec<&'static str>, b: &[&'static str]| [a, b.to_vec()].concat();
        // (change, state, columns set to a value, columns cleared)
        let cases: Vec<(ChunkChange<'_>, &str, Vec<&str>, Vec<&str>)> = vec![
            (
                Uploading { upload_id: "u", token: "t" },
                "uploading",
                vec!["multipart_upload_id", "upload_token"],
                and(figures(), &["last_error"]),
            ),
            (streamed, "uploading", figures(), vec![]),
            (
                Uploaded { etag: Some("e"), version_id: None },
                "uploaded",
                vec!["etag", "uploaded_at"],
                vec!["version_id", "multipart_upload_id"],
            ),
            (
                adopted,
                "uploaded",
                and(figures(), &["etag", "version_id", "uploaded_at"]),
                vec!["multipart_upload_id", "upload_token", "last_error"],
            ),
            (Failed { why: "w" }, "pending", vec!["last_error"], vec!["multipart_upload_id"]),
            (
                Refused { why: "w" },
                "pending",
                vec!["last_error"],
                and(figures(), &["multipart_upload_id", "upload_token"]),
            ),
            (
                Lost { why: "w" },
                "pending",
                vec!["last_error"],
                and(figures(), &["multipart_upload_id", "upload_token", "etag", "version_id", "uploaded_at"]),
            ),
        ];
        for (change, state, set, cleared) in cases {
            assert_eq!(change.state().as_str(), state, "{change:?}");
            assert_writes(&change.sets(), set, cleared, &format!("{change:?}"));
        }
        // An earlier version's one object carries its upload's token, id and figures as they are.
        let older = ManifestRecord {
            upload_token: Some("t".into()),
            row_count: Some(5),
            raw_bytes: Some(50),
            compressed_bytes: Some(20),
            sha256: Some("ab".into()),
            checksum_composite: Some("cd-1".into()),
            etag: Some("e".into()),
            ..record(None)
        };
        let carried = CarriedOver(&older);
        assert_eq!(carried.state(), ChunkState::Uploading);
        let set =
            vec!["upload_token", "row_count", "raw_bytes", "compressed_bytes", "sha256", "checksum_composite", "etag"];
        assert_writes(&carried.sets(), set, vec!["multipart_upload_id", "version_id"], "carried over");
        let sql = chunk_change_sql(&QualifiedName::new("s", "t"), "p'x", 2, 3, &Failed { why: "it's gone" });
        assert!(sql.contains("state = 'pending'") && sql.contains("last_error = 'it''s gone'"), "{sql}");
        assert!(
            sql.contains("(table_schema, table_name, partition_name) = ('s', 't', 'p''x')")
                && sql.contains("generation = 2 AND chunk_no = 3"),
            "{sql}"
        );
    }

    /// `sets` gives a value to exactly the columns `set` and clears exactly `cleared`.
    fn assert_writes(sets: &[(&str, Value)], set: Vec<&str>, cleared: Vec<&str>, what: &str) {
        let mut got_set: Vec<&str> = sets.iter().filter(|(_, v)| *v != Value::Null).map(|(c, _)| *c).collect();
        let mut got_cleared: Vec<&str> = sets.iter().filter(|(_, v)| *v == Value::Null).map(|(c, _)| *c).collect();
        let (mut set, mut cleared) = (set, cleared);
        for v in [&mut got_set, &mut got_cleared, &mut set, &mut cleared] {
            v.sort_unstable();
        }
        assert_eq!((got_set, got_cleared), (set, cleared), "{what}");
    }

    #[test]
    fn each_partition_transition_writes_its_state_and_columns_in_one_place() {
        use PartitionChange::*;
        // A chunk row as the database gives it (no version: an unversioned bucket).
        let chunk: ChunkRecord = serde_json::from_value(serde_json::json!({
            "generation": 1, "chunk_no": 1, "block_from": 0, "block_to": null, "state": "uploaded",
            "object_key": "k", "upload_token": "t", "row_count": 5, "raw_bytes": 50, "compressed_bytes": 20,
            "sha256": "ab", "checksum_composite": "cd-1", "etag": "e", "version_id": null
        }))
        .unwrap();
        assert_eq!(chunk.state, ChunkState::Uploaded);
        let planned = Planned {
            chunk_size: 64,
            generation: 2,
            rel_filenode: 7,
            rel_blocks: 9,
            rel_writes: 2,
            bucket: "b",
            format: Format::Csv,
            compression: Compression::Zstd,
        };
        let totals = ["row_count", "raw_bytes", "compressed_bytes", "uploaded_at"];
        // (change, state, columns set to a value, columns cleared)
        let cases: Vec<(PartitionChange<'_>, &str, Vec<&str>, Vec<&str>)> = vec![
            (Detached, "detached", vec![], vec![]),
            (
                planned,
                "uploading",
                vec![
                    "chunk_size",
                    "chunk_generation",
                    "rel_filenode",
                    "rel_blocks",
                    "rel_writes",
                    "bucket",
                    "format",
                    "compression",
                ],
                vec![
                    "object_key",
                    "multipart_upload_id",
                    "upload_token",
                    "row_count",
                    "raw_bytes",
                    "compressed_bytes",
                    "sha256",
                    "checksum_composite",
                    "etag",
                    "version_id",
                ],
            ),
            (
                Uploaded { rows: Some(5), raw_bytes: Some(50), compressed_bytes: Some(20), one: None },
                "uploaded",
                totals.to_vec(),
                vec![],
            ),
            // A plan of one is described as its one object too (its missing version recorded so).
            (
                Uploaded { rows: Some(5), raw_bytes: Some(50), compressed_bytes: Some(20), one: Some(&chunk) },
                "uploaded",
                [&totals[..], &["object_key", "etag", "sha256", "checksum_composite"]].concat(),
                vec!["version_id"],
            ),
            (Verified { manifest_key: "m" }, "verified", vec!["manifest_key", "verified_at"], vec![]),
            (Dropped, "dropped", vec!["finished_at"], vec![]),
            (Moved { schema: "h" }, "moved", vec!["moved_to_schema", "partition_schema", "finished_at"], vec![]),
        ];
        for (change, state, set, cleared) in cases {
            assert_eq!(change.state().as_str(), state, "{change:?}");
            assert_writes(&change.sets(), set, cleared, &format!("{change:?}"));
        }
        let sql = partition_change_sql(&QualifiedName::new("s", "t"), "p'x", &Moved { schema: "o'h" });
        assert!(sql.contains("state = 'moved'") && sql.contains("moved_to_schema = 'o''h'"), "{sql}");
        assert!(
            sql.contains("(table_schema, table_name, partition_name) = ('s', 't', 'p''x')")
                && sql.contains("finished_at = now()"),
            "{sql}"
        );
    }

    use super::*;

    fn record(from: Option<&str>) -> ManifestRecord {
        serde_json::from_value(serde_json::json!({
            "table_schema": "public", "table_name": "trades", "partition_schema": "public",
            "partition_name": "trades_2026_01", "key_column": "created_at", "key_type": "timestamptz",
            "time_zone": "UTC", "range_from": from, "range_to": null, "columns": [], "state": "detached",
            "row_count": null, "raw_bytes": null, "compressed_bytes": null, "sha256": null, "format": null,
            "compression": null, "bucket": null, "object_key": null, "manifest_key": null, "version_id": null,
            "etag": null, "checksum_composite": null, "pg_version": null, "tool_version": null,
            "created_at": null, "uploaded_at": null, "verified_at": null
        }))
        .unwrap()
    }

    #[test]
    fn hive_style_keys() {
        let r = record(Some("2026-01-01T00:00:00+00:00"));
        let k = object_key("arch", &r, Interval::Month, Format::Csv, Compression::Zstd);
        assert_eq!(k, "arch/public.trades/year=2026/month=01/trades_2026_01.csv.zst");
        assert_eq!(
            manifest_key(&k, "public.trades", "trades_2026_01"),
            "arch/public.trades/_manifests/year=2026/month=01/trades_2026_01.manifest.json"
        );
        assert_eq!(
            manifest_key("p/s.odd.table/year=2026/odd.table_2026.csv.zst", "s.odd.table", "odd.table_2026"),
            "p/s.odd.table/_manifests/year=2026/odd.table_2026.manifest.json"
        );
        assert_eq!(
            manifest_key("public.t/year=0000/t_min.parquet", "public.t", "t_min"),
            "public.t/_manifests/year=0000/t_min.manifest.json"
        );
        // A key not in the layout (never made by object_key): beside the object.
        assert_eq!(manifest_key("x/y/t.csv", "public.t", "t"), "x/y/t.manifest.json");
        assert_eq!(
            object_key("", &r, Interval::Year, Format::Binary, Compression::None),
            "public.trades/year=2026/trades_2026_01.pgcopy"
        );
        assert_eq!(
            object_key("p", &record(None), Interval::Month, Format::Csv, Compression::Gzip),
            "p/public.trades/year=0000/trades_2026_01.csv.gz"
        );
        let mut tokyo = record(Some("2026-11-30T15:00:00+00:00"));
        tokyo.time_zone = "Asia/Tokyo".into();
        assert_eq!(
            object_key("", &tokyo, Interval::Month, Format::Csv, Compression::None),
            "public.trades/year=2026/month=12/trades_2026_01.csv"
        );
        // Every interval's layout; a range keyed by the interval it is one period of.
        let ranged = |from: &str, to: &str| ManifestRecord { range_to: Some(to.into()), ..record(Some(from)) };
        let key = |r: &ManifestRecord, i| object_key("", r, i, Format::Parquet, Compression::Zstd);
        let cases = [
            (("2026-12-06T00:00:00+00:00", "2026-12-07T00:00:00+00:00"), Interval::Day, "year=2026/month=12/day=06"),
            (("2026-11-30", "2026-12-07"), Interval::Week, "year=2026/week=49"),
            (("2026-10-01T00:00:00", "2027-01-01T00:00:00"), Interval::Quarter, "year=2026/quarter=4"),
            // A month archived after the table went daily keeps a month's key.
            (("2026-05-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00"), Interval::Day, "year=2026/month=05"),
            // The rest of December after a change from daily to monthly: the table's interval.
            (("2026-12-14T00:00:00+00:00", "2027-01-01T00:00:00+00:00"), Interval::Month, "year=2026/month=12"),
        ];
        for ((from, to), interval, path) in cases {
            assert_eq!(key(&ranged(from, to), interval), format!("public.trades/{path}/trades_2026_01.parquet"));
        }
        assert_eq!(
            object_key("p", &record(Some("2026-03-01")), Interval::Month, Format::Csv, Compression::Gzip),
            "p/public.trades/year=2026/month=03/trades_2026_01.csv.gz"
        );
    }

    #[test]
    fn state_sql_quotes_values() {
        let sql = set_state_sql(
            &QualifiedName::new("public", "t'x"),
            "p",
            "uploaded",
            &[
                ("sha256", Value::text("ab'c")),
                ("etag", Value::Null),
                ("uploaded_at", Value::Now),
                ("x", Value::text("now()")),
            ],
        );
        assert!(sql.contains("= ('public', 't''x', 'p')"), "{sql}");
        assert!(
            sql.contains("sha256 = 'ab''c'") && sql.contains("etag = NULL") && sql.contains("uploaded_at = now()"),
            "{sql}"
        );
        // Only `Value::Now` is the function: a text that reads `now()` is a quoted value.
        assert!(sql.contains("x = 'now()'"), "{sql}");
    }

    #[test]
    fn a_manifest_describes_the_same_archive_only_if_object_and_table_agree() {
        let mut ours = record(Some("2026-03-01T00:00:00+00:00"));
        ours.object_key = Some("p/public.trades/year=2026/month=03/trades_2026_03.csv.zst".into());
        ours.sha256 = Some("ab".repeat(32));
        ours.row_count = Some(10);
        ours.columns = vec![Column {
            name: "price".into(),
            type_name: "double precision".into(),
            not_null: false,
            type_oid: Some(701),
            typmod: Some(-1),
        }];
        let mut same = ours.clone();
        same.state = ArchiveState::Dropped;
        same.upload_token = Some("other".into());
        same.system_identifier = Some("42".into());
        same.manifest_version += 1;
        same.tool_version = Some("9.9.9".into());
        assert!(describe_the_same_archive(&same, &ours), "state, token and writer may differ");
        type Edit = fn(&mut ManifestRecord);
        let changes: [(&str, Edit); 7] = [
            ("rows", |r| r.row_count = Some(11)),
            ("sha256", |r| r.sha256 = Some("cd".repeat(32))),
            ("version", |r| r.version_id = Some("v2".into())),
            ("key", |r| r.object_key = Some("elsewhere.csv.zst".into())),
            ("columns", |r| r.columns[0].type_name = "real".into()),
            ("bounds", |r| r.range_to = Some("2026-05-01T00:00:00+00:00".into())),
            ("format", |r| r.format = Some("binary".into())),
        ];
        for (what, change) in changes {
            let mut other = ours.clone();
            change(&mut other);
            assert!(!describe_the_same_archive(&other, &ours), "{what}");
        }
    }
}
