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
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};

/// How a Parquet object is written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub columns: Vec<ArchiveColumn>,
    /// zstd level inside the file, or None for uncompressed pages.
    pub zstd_level: Option<i32>,
    pub row_group_bytes: usize,
}

pub struct ParquetEncoder<W: Write + Send + 'static> {
    /// Taken by `finish`.
    decoder: Option<Decoder>,
    to_writer: Option<SyncSender<ToWriter>>,
    writer: Option<std::thread::JoinHandle<anyhow::Result<(W, ParquetMetaData)>>>,
}

/// The sink under the `ArrowWriter`, taken back out after `finish` wrote the footer (the writer's
/// own `into_inner` would write the footer a second time) so the footer's metadata, with every
/// row group's statistics, comes back with it.
struct Detachable<W>(Option<W>);

impl<W: Write> Write for Detachable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.as_mut().expect("written only before it is taken").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.as_mut().expect("flushed only before it is taken").flush()
    }
}

/// What the decoding thread sends the writing thread.
enum ToWriter {
    Batch(RecordBatch),
    /// Write the footer and hand the sink back. A channel closed without it (the decoding side
    /// failed) ends the file unwritten.
    Finish,
}

impl<W: Write + Send + 'static> ParquetEncoder<W> {
    /// Decoding (on the caller's thread) and encoding + compressing (on a thread of its own) run
    /// side by side, with at most two batches between them, so one stream is not limited by
    /// their sum (in the profile of the benchmark's month, decoding was about a sixth of the
    /// archiver's CPU, encoding and zstd most of the rest). On the 2-core benchmark machine,
    /// already saturated, it changed a chunk's time little (2.8 to 2.6 s).
    pub fn new(options: &WriteOptions, sink: W) -> anyhow::Result<Self> {
        let decoder = Decoder::new(options.columns.clone(), options.row_group_bytes);
        let compression = match options.zstd_level {
            Some(level) => Compression::ZSTD(ZstdLevel::try_new(level)?),
            None => Compression::UNCOMPRESSED,
        };
        let columns = serde_json::to_string(&options.columns)?;
        // Dictionary encoding only where it usually pays: strings (symbols, statuses, JSON
        // keys). For numbers, timestamps and binary, mostly distinct per row group, building the
        // dictionary cost ~12% of the archiver's CPU before the writer fell back to plain
        // encoding (measured on the benchmark's trades month).
        let mut props = WriterProperties::builder().set_dictionary_enabled(false);
        for c in &options.columns {
            if c.encoding.data_type() == arrow_schema::DataType::Utf8 {
                props = props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), true);
            }
        }
        let props = props
            .set_compression(compression)
            .set_max_row_group_bytes(Some(options.row_group_bytes))
            .set_created_by(format!("partition-archiver {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_VERSION.to_string(), PARQUET_VERSION.to_string()),
                KeyValue::new(META_COLUMNS.to_string(), columns),
            ]))
            .build();
        let mut writer = ArrowWriter::try_new(Detachable(Some(sink)), decoder.schema(), Some(props))?;
        let bound = options.row_group_bytes;
        let (to_writer, batches) = sync_channel::<ToWriter>(2);
        // The sink may wait on the async runtime (the pipeline's part buffers): the writing
        // thread runs in the caller's runtime context, as the caller's blocking thread does.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread = std::thread::Builder::new().name("parquet-writer".into()).spawn(move || {
            let _context = runtime.as_ref().map(|r| r.enter());
            for message in batches {
                match message {
                    ToWriter::Batch(batch) => write_batch(&mut writer, &batch, bound)?,
                    ToWriter::Finish => {
                        let footer = writer.finish()?;
                        let sink = writer.inner_mut().0.take().expect("taken once");
                        return Ok((sink, footer));
                    }
                }
            }
            anyhow::bail!("the Parquet file was abandoned before its end")
        })?;
        Ok(Self { decoder: Some(decoder), to_writer: Some(to_writer), writer: Some(thread) })
    }

    /// Decodes `data` (the next bytes of the COPY stream) and hands every full batch to the writer.
    pub fn write_all(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let to_writer = self.to_writer.as_ref().expect("open until finish");
        let mut stopped = false;
        let decoder = self.decoder.as_mut().expect("open until finish");
        let fed = decoder.feed(data, &mut |batch| {
            to_writer.send(ToWriter::Batch(batch)).map_err(|_| {
                stopped = true;
                anyhow::anyhow!("the Parquet writer stopped")
            })
        });
        if stopped {
            return Err(self.writer_error());
        }
        fed
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.decoder.as_ref().map_or(0, Decoder::rows)
    }

    /// Writes the last batch and the footer; the sink, the rows written and the footer's metadata.
    pub fn finish(mut self) -> anyhow::Result<(W, u64, ParquetMetaData)> {
        let decoder = self.decoder.take().expect("finished once");
        let rows = decoder.rows();
        let to_writer = self.to_writer.take().expect("open until finish");
        let last = decoder.finish()?.map(ToWriter::Batch);
        if last.into_iter().chain([ToWriter::Finish]).any(|m| to_writer.send(m).is_err()) {
            return Err(self.writer_error());
        }
        drop(to_writer);
        let (sink, footer) = self
            .writer
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| anyhow::anyhow!("the Parquet writer panicked"))??;
        Ok((sink, rows, footer))
    }

    /// The writing thread's own error, once it has stopped.
    fn writer_error(&mut self) -> anyhow::Error {
        self.to_writer = None;
        match self.writer.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => anyhow::anyhow!("the Parquet writer panicked"),
            _ => anyhow::anyhow!("the Parquet writer stopped"),
        }
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
