//! The Parquet stage of the archive pipeline: binary COPY bytes in, a Parquet file out through any
//! `Write` (the pipeline's part sink), with row groups bounded in bytes.
//!
//! Memory: the writer buffers the row group being built (encoded, compressed pages plus the open
//! page of each column); it is flushed as a row group as soon as its buffers reach
//! `row_group_bytes`, checked after every batch (at most [`decode::BATCH_ROWS`] rows or
//! [`decode::BATCH_BYTES`] bytes), so it never holds more than the bound plus one batch, whatever
//! the partition's size. The decoder's builders hold one batch.

use super::columns::{ArchiveColumn, META_COLUMNS, META_VERSION, PARQUET_VERSION};
use super::decode::{self, Decoder};
use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::io::Write;

/// How a Parquet object is written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub columns: Vec<ArchiveColumn>,
    /// zstd level inside the file, or None for uncompressed pages.
    pub zstd_level: Option<i32>,
    pub row_group_bytes: usize,
}

pub struct ParquetEncoder<W: Write + Send> {
    decoder: Decoder,
    writer: ArrowWriter<W>,
    row_group_bytes: usize,
}

impl<W: Write + Send> ParquetEncoder<W> {
    pub fn new(options: &WriteOptions, sink: W) -> anyhow::Result<Self> {
        let decoder = Decoder::new(options.columns.clone(), options.row_group_bytes);
        let compression = match options.zstd_level {
            Some(level) => Compression::ZSTD(ZstdLevel::try_new(level)?),
            None => Compression::UNCOMPRESSED,
        };
        let columns = serde_json::to_string(&options.columns)?;
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_bytes(Some(options.row_group_bytes))
            .set_created_by(format!("partition-archiver {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_VERSION.to_string(), PARQUET_VERSION.to_string()),
                KeyValue::new(META_COLUMNS.to_string(), columns),
            ]))
            .build();
        let writer = ArrowWriter::try_new(sink, decoder.schema(), Some(props))?;
        Ok(Self { decoder, writer, row_group_bytes: options.row_group_bytes })
    }

    /// Decodes `data` (the next bytes of the COPY stream) and writes every full batch.
    pub fn write_all(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let (writer, bound) = (&mut self.writer, self.row_group_bytes);
        self.decoder.feed(data, &mut |batch| write_batch(writer, &batch, bound))
    }

    /// Writes the last batch and the footer; the sink and the rows written.
    pub fn finish(mut self) -> anyhow::Result<(W, u64)> {
        let rows = self.decoder.rows();
        if let Some(batch) = self.decoder.finish()? {
            write_batch(&mut self.writer, &batch, self.row_group_bytes)?;
        }
        Ok((self.writer.into_inner()?, rows))
    }
}

fn write_batch<W: Write + Send>(writer: &mut ArrowWriter<W>, batch: &RecordBatch, bound: usize) -> anyhow::Result<()> {
    writer.write(batch)?;
    if writer.memory_size() >= bound {
        writer.flush()?;
    }
    Ok(())
}

/// The default row-group bound.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// The smallest accepted: below it, row groups are too small for engines to read efficiently and
/// a wide row may not fit.
pub const MIN_ROW_GROUP_BYTES: usize = 1024 * 1024;

#[allow(dead_code)]
const _: () = assert!(decode::BATCH_BYTES < DEFAULT_ROW_GROUP_BYTES);
