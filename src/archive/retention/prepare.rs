//! What an archive's chunk streams need: a Parquet archive's columns (read from the catalog and
//! checked against the manifest's), and who wrote an object found at a key (for the refusal's
//! message).

use crate::archive::manifest::ManifestRecord;
use crate::archive::pipeline;
use crate::archive::settings::Format;
use crate::archive::store::{self, ObjectHead};
use crate::error::Error;
use crate::plan::ident::QualifiedName;
use anyhow::anyhow;
use tokio_postgres::Client;

/// What a Parquet archive of `partition` needs: its columns as the catalog has them now, which
/// must be those the manifest recorded at the detach (a column changed since would make the
/// archive disagree with its manifest), and the row-group bound. None for the other formats.
pub(super) async fn parquet_write(
    client: &Client,
    rec: &ManifestRecord,
    format: Format,
    partition: &QualifiedName,
    settings: &crate::archive::settings::ArchiveSettings,
) -> anyhow::Result<Option<pipeline::ParquetWrite>> {
    if format != Format::Parquet {
        return Ok(None);
    }
    let live = crate::pg::catalog::columns(client, partition).await?;
    let same = live.len() == rec.columns.len()
        && live.iter().zip(&rec.columns).all(|(l, m)| l.name == m.name && l.type_name == m.type_name);
    if !same {
        return Err(anyhow::Error::new(Error::integrity(format!(
            "{partition}: its columns changed since it was detached (the manifest records {}, the table has {}): not \
             archived, nothing dropped",
            describe(&rec.columns),
            describe(&live)
        ))));
    }
    let mut columns =
        crate::archive::parquet::columns::archive_columns(&live).map_err(|e| anyhow!("{partition}: {e}"))?;
    // An integer or UUIDv7 key keeps its type; the field's metadata says how it holds time.
    let epoch = crate::plan::period::KeyType::parse(&rec.key_type).and_then(|k| k.epoch());
    if let Some(key) = columns.iter_mut().find(|c| c.name == rec.key_column) {
        key.epoch = epoch;
    }
    Ok(Some(pipeline::ParquetWrite { columns, row_group_bytes: settings.parquet_row_group_bytes }))
}

fn describe(columns: &[crate::pg::catalog::Column]) -> String {
    columns.iter().map(|c| format!("{} {}", c.name, c.type_name)).collect::<Vec<_>>().join(", ")
}

/// Who wrote the object at the key, from its metadata, for the refusal's message. `compared`:
/// its rows were compared with the partition's (and differ).
pub(super) fn writer(head: &ObjectHead, rec: &ManifestRecord, compared: bool) -> String {
    let id = head.metadata.get(store::META_SYSTEM_IDENTIFIER);
    let same_database = id.is_some() && id == rec.system_identifier.as_ref();
    match (head.metadata.get(store::META_SOURCE), id) {
        (Some(source), Some(id)) if same_database && compared => format!(
            "written for {source} by this database (system_identifier {id}) or a clone of it: an earlier upload whose \
             rows are not the partition's rows now, or a clone's"
        ),
        (Some(source), Some(id)) if same_database => format!(
            "written for {source} by this database (system_identifier {id}) or a clone of it, by an upload this row \
             does not record (a clone's, or one whose record a database restore lost)"
        ),
        (Some(source), Some(id)) => format!("written for {source} by the database with system_identifier {id}"),
        (Some(source), None) => format!("written for {source}"),
        _ => "without partition-archiver metadata".to_string(),
    }
}
