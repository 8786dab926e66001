//! The streaming pipelines, with memory bounded by part size x (parts in flight + 1), never by the
//! partition's size: a semaphore lets at most that many part buffers exist at once.
//!
//! Archive:  COPY TO STDOUT (async task) --256 KiB batches--> compressor thread (zstd in 2 MiB frames /
//!           gzip, row counter,
//!           SHA-256 of the object and of each part; spawn_blocking, off the async workers)
//!           --parts, queue of 1--> uploader (async; at most `parts_in_flight` UploadPart calls).
//! Restore:  GetObject body (async; SHA-256 as it streams) --chunks--> decompressor thread
//!           --chunks--> COPY FROM STDIN sink (async); the caller commits only if the SHA-256 and
//!           the row count both match.
//!
//! Parquet (`archive/parquet`) takes the compressor's and decompressor's places: on archive, the
//! binary COPY is decoded into Arrow batches (this thread) and written as a Parquet file with
//! byte-bounded row groups (a writer thread) into the same part sink; on restore, the footer is
//! read first (a ranged GET of the tail), then one ranged GET per row group, in order and hashed,
//! and each row group is turned into CSV rows for `COPY ... FROM STDIN (FORMAT csv)`.

use crate::archive::parquet::decode::DecodeError;
use crate::archive::parquet::read::{self as parquet_read, CsvReader};
use crate::archive::parquet::write::{ParquetEncoder, WriteOptions};
use crate::archive::parquet::ArchiveColumn;
use crate::archive::progress::Progress;
use crate::archive::rows::RowCounter;
use crate::archive::settings::{Compression, Format};
use crate::archive::store::{self, Store};
use crate::error::{Error, ErrorKind};
use anyhow::{anyhow, bail, Context};
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parquet::file::metadata::ParquetMetaData;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// What the archive pipeline streamed: every part is uploaded, the upload is not completed yet
/// (the caller records these figures first, then completes it write-once).
#[derive(Debug, Clone)]
pub struct Streamed {
    pub rows: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// SHA-256 of the whole object, hex.
    pub sha256: String,
    /// S3's composite checksum of the multipart object: base64(SHA-256(part digests)) + "-N".
    pub composite_sha256: String,
    /// (part number, ETag, base64 SHA-256) of every part, in order: what completing needs.
    pub parts: Vec<(i32, String, String)>,
    /// A Parquet object's footer as written (every row group's statistics), checked against the
    /// table's own before the object is completed.
    pub footer: Option<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
}

/// The `COPY ... TO STDOUT` that feeds an archive of the rows of `partition` that `condition` (a
/// chunk's ctid range) selects. A Parquet archive selects its columns by name, with the text-form
/// ones cast on the server, and reads them in binary.
pub fn copy_out_sql(
    partition: &crate::plan::ident::QualifiedName,
    format: Format,
    parquet: Option<&ParquetWrite>,
    condition: &str,
) -> String {
    let columns = parquet.map_or("*".to_string(), |p| crate::archive::parquet::columns::select_list(&p.columns));
    format!(
        "COPY (SELECT {columns} FROM {} WHERE {condition}) TO STDOUT {}",
        partition.quoted(),
        format.copy_to_options()
    )
}

/// The COPY reader's error when the compressor stage has stopped (its own error is the one to tell).
const COMPRESSOR_STOPPED: &str = "compressor stopped";

/// COPY rows are handed to the compressor in batches of about this many bytes.
const COPY_BATCH: usize = 256 * 1024;

struct Part {
    number: i32,
    data: Bytes,
    sha256: [u8; 32],
    /// Held until the part is uploaded: at most `parts_in_flight + 1` part buffers exist at once.
    _buffer: OwnedSemaphorePermit,
}

/// Collects compressed bytes into parts of exactly `part_size` (the last one shorter), hashing as
/// it goes, and hands each full part to the uploader. The buffer never grows past `part_size`.
struct PartSink {
    buf: Vec<u8>,
    buffers: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    part_size: usize,
    next_number: i32,
    object_hash: Sha256,
    total: u64,
    tx: mpsc::Sender<Part>,
}

impl PartSink {
    /// Waits (on this blocking thread) until a part buffer may exist.
    fn buffer_permit(buffers: &Arc<Semaphore>) -> std::io::Result<OwnedSemaphorePermit> {
        tokio::runtime::Handle::current()
            .block_on(buffers.clone().acquire_owned())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "uploader stopped"))
    }

    fn ship(&mut self, last: bool) -> std::io::Result<()> {
        let data = std::mem::take(&mut self.buf);
        let sha256: [u8; 32] = Sha256::digest(&data).into();
        let permit = self.permit.take().expect("a buffer always holds a permit");
        let part = Part { number: self.next_number, data: Bytes::from(data), sha256, _buffer: permit };
        self.next_number += 1;
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "uploader stopped"))?;
        if !last {
            self.permit = Some(Self::buffer_permit(&self.buffers)?);
            self.buf = Vec::with_capacity(self.part_size);
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<(u64, String)> {
        if !self.buf.is_empty() || self.next_number == 1 {
            self.ship(true)?;
        }
        Ok((self.total, hex::encode(self.object_hash.finalize())))
    }
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.object_hash.update(&data[..n]);
        self.total += n as u64;
        if self.buf.len() == self.part_size {
            self.ship(false)?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// zstd input is compressed in independent frames of this many bytes (the window of levels <= 3),
/// concatenated into one object: a standard zstd stream that every decoder reads whole (the zstd
/// CLI, DuckDB, Spark, our restore). Measured on a 624 MiB CSV partition at level 3: 3.3 s of CPU
/// against 4.1 s for the streaming encoder, same size; the streaming encoder's ring buffer sends
/// most blocks through zstd's slower non-contiguous ("extDict") match finder, a whole frame is
/// contiguous. Memory: one input and one output buffer of about this size.
const ZSTD_FRAME: usize = 2 * 1024 * 1024;

/// zstd in frames of `ZSTD_FRAME` input bytes, each with its content checksum.
struct ZstdFrames {
    compressor: zstd::bulk::Compressor<'static>,
    input: Vec<u8>,
    output: Vec<u8>,
    frames: u64,
    sink: PartSink,
}

impl ZstdFrames {
    fn new(level: i32, sink: PartSink) -> std::io::Result<Self> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.include_checksum(true)?;
        let bound = zstd::zstd_safe::compress_bound(ZSTD_FRAME);
        Ok(Self {
            compressor,
            input: Vec::with_capacity(ZSTD_FRAME),
            output: Vec::with_capacity(bound),
            frames: 0,
            sink,
        })
    }

    fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = (ZSTD_FRAME - self.input.len()).min(data.len());
            self.input.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.input.len() == ZSTD_FRAME {
                self.frame()?;
            }
        }
        Ok(())
    }

    fn frame(&mut self) -> std::io::Result<()> {
        self.output.clear();
        self.compressor.compress_to_buffer(&self.input, &mut self.output)?;
        self.input.clear();
        self.frames += 1;
        self.sink.write_all(&self.output)
    }

    /// Compresses what is left; an empty stream still gets one (empty) frame, so the object is a
    /// valid zstd file.
    fn finish(mut self) -> std::io::Result<PartSink> {
        if !self.input.is_empty() || self.frames == 0 {
            self.frame()?;
        }
        Ok(self.sink)
    }
}

enum Encoder {
    Zstd(ZstdFrames),
    Gzip(flate2::write::GzEncoder<PartSink>),
    Plain(PartSink),
    Parquet(Box<ParquetEncoder<PartSink>>),
}

impl Encoder {
    fn new(encoding: &Encoding, sink: PartSink) -> anyhow::Result<Self> {
        if let Some(options) = encoding.parquet_options() {
            return Ok(Self::Parquet(Box::new(ParquetEncoder::new(&options, sink)?)));
        }
        let level = encoding.level;
        Ok(match encoding.compression {
            Compression::Zstd => Self::Zstd(ZstdFrames::new(level, sink)?),
            Compression::Gzip => {
                Self::Gzip(flate2::write::GzEncoder::new(sink, flate2::Compression::new(level as u32)))
            }
            Compression::None => Self::Plain(sink),
        })
    }
    fn write_all(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Self::Zstd(e) => e.write_all(data)?,
            Self::Gzip(e) => e.write_all(data)?,
            Self::Plain(s) => s.write_all(data)?,
            Self::Parquet(e) => e.write_all(data)?,
        }
        Ok(())
    }
    /// Rows the Parquet encoder has decoded (progress; the byte encoders do not count).
    fn rows_so_far(&self) -> u64 {
        match self {
            Self::Parquet(e) => e.rows(),
            _ => 0,
        }
    }
    /// The sink, and the rows the Parquet encoder decoded with the footer it wrote (None for the
    /// byte encoders).
    fn finish(self) -> anyhow::Result<(PartSink, Option<(u64, ParquetMetaData)>)> {
        Ok(match self {
            Self::Zstd(e) => (e.finish()?, None),
            Self::Gzip(e) => (e.finish()?, None),
            Self::Plain(s) => (s, None),
            Self::Parquet(e) => {
                let (sink, rows, footer) = e.finish()?;
                (sink, Some((rows, footer)))
            }
        })
    }
}

/// What a Parquet archive needs besides the compression: its columns and the row-group bound.
#[derive(Debug, Clone)]
pub struct ParquetWrite {
    pub columns: Vec<ArchiveColumn>,
    pub row_group_bytes: usize,
}

/// How an archive object is encoded.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub format: Format,
    pub compression: Compression,
    /// The compression level (zstd's or gzip's; a Parquet file's zstd pages).
    pub level: i32,
    /// A Parquet archive's columns and row-group bound; `None` for the byte formats.
    pub parquet: Option<ParquetWrite>,
}

impl Encoding {
    /// The Parquet writer's options, for a Parquet archive.
    fn parquet_options(&self) -> Option<WriteOptions> {
        self.parquet.as_ref().map(|p| WriteOptions {
            columns: p.columns.clone(),
            zstd_level: (self.compression == Compression::Zstd).then_some(self.level),
            row_group_bytes: p.row_group_bytes,
        })
    }
}

/// Where an archive stream's bytes go: the multipart upload `upload_id` of `key`, in parts of
/// `part_size` bytes, at most `parts_in_flight` of them uploading at once.
#[derive(Clone, Copy)]
pub struct Upload<'a> {
    pub store: &'a Store,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub part_size: usize,
    pub parts_in_flight: usize,
}

/// Streams `copy_sql` (a `COPY ... TO STDOUT`), encoded, into `upload`. Neither completes the
/// upload nor aborts it on error: the caller does both (it owns the record).
pub async fn archive_stream(
    db: &tokio_postgres::Client,
    copy_sql: &str,
    upload: Upload<'_>,
    encoding: Encoding,
    mut progress: Progress,
) -> anyhow::Result<Streamed> {
    let Upload { store, key, upload_id, part_size, parts_in_flight } = upload;
    let format = encoding.format;
    anyhow::ensure!(encoding.parquet.is_some() == (format == Format::Parquet), "a Parquet archive needs its columns");
    let copy = db.copy_out(copy_sql).await.context("start COPY TO STDOUT")?;
    let (raw_tx, mut raw_rx) = mpsc::channel::<Bytes>(8);
    let (part_tx, mut part_rx) = mpsc::channel::<Part>(1);

    let reader = tokio::spawn(forward_copy(copy, raw_tx));

    // Compressor, off the async worker threads.
    type Encoded = ((u64, u64, String), Option<std::sync::Arc<ParquetMetaData>>);
    let compressor = tokio::task::spawn_blocking(move || -> anyhow::Result<Encoded> {
        let buffers = Arc::new(Semaphore::new(parts_in_flight + 1));
        let permit = Some(PartSink::buffer_permit(&buffers).context("part buffer")?);
        let sink = PartSink {
            buf: Vec::with_capacity(part_size),
            buffers,
            permit,
            part_size,
            next_number: 1,
            object_hash: Sha256::new(),
            total: 0,
            tx: part_tx,
        };
        let mut encoder = Encoder::new(&encoding, sink).context("start compressor")?;
        // The Parquet encoder walks the binary COPY framing itself and counts the rows it wrote.
        let mut counter = (format != Format::Parquet).then(|| RowCounter::new(format, format == Format::Csv));
        let mut raw = 0u64;
        while let Some(chunk) = raw_rx.blocking_recv() {
            if let Some(c) = counter.as_mut() {
                c.feed(&chunk);
            }
            raw += chunk.len() as u64;
            progress.update(counter.as_ref().map_or_else(|| encoder.rows_so_far(), RowCounter::so_far), raw);
            encoder.write_all(&chunk).map_err(encode_error)?;
        }
        progress.finish();
        let (sink, decoded) = encoder.finish().map_err(encode_error)?;
        let (compressed, sha) = sink.finish().context("ship last part")?;
        let (rows, footer) = match (counter, decoded) {
            (Some(c), _) => (c.finish().map_err(|e| anyhow!("COPY stream: {e}"))?, None),
            (None, Some((decoded, footer))) => (decoded, Some(std::sync::Arc::new(footer))),
            (None, None) => unreachable!("a Parquet encoder counts its rows"),
        };
        Ok(((rows, compressed, sha), footer))
    });

    let uploaded = upload_parts(store, key, upload_id, &mut part_rx, parts_in_flight).await;
    let done = match uploaded {
        Ok(done) => done,
        Err(e) => {
            drop(part_rx);
            reader.abort();
            let _ = compressor.await;
            return Err(e);
        }
    };
    let read = reader.await.context("COPY reader panicked")?;
    let compressed = compressor.await.context("compressor panicked")?;
    let (((rows, compressed_bytes, sha256), footer), raw_bytes) = joined(compressed, read)?;
    let (composite_sha256, parts) = composite_of(done);
    Ok(Streamed { rows, raw_bytes, compressed_bytes, sha256, composite_sha256, parts, footer })
}

/// A part uploaded: its number, ETag and SHA-256.
type UploadedPart = (i32, String, [u8; 32]);

/// Uploads the parts arriving on `parts`, at most `in_flight` at once, until the channel closes.
/// On an error the uploads under way are aborted.
async fn upload_parts(
    store: &Store,
    key: &str,
    upload_id: &str,
    parts: &mut mpsc::Receiver<Part>,
    in_flight: usize,
) -> anyhow::Result<Vec<UploadedPart>> {
    let mut running: JoinSet<anyhow::Result<UploadedPart>> = JoinSet::new();
    let mut done = Vec::new();
    let result: anyhow::Result<()> = async {
        while let Some(part) = parts.recv().await {
            while running.len() >= in_flight {
                done.push(running.join_next().await.expect("non-empty")??);
            }
            let (store, key, upload_id) = (store.clone(), key.to_string(), upload_id.to_string());
            running.spawn(async move {
                let (started, bytes) = (std::time::Instant::now(), part.data.len());
                let etag = store.upload_part(&key, &upload_id, part.number, part.data, &part.sha256).await?;
                tracing::debug!(part = part.number, bytes, ms = started.elapsed().as_millis() as u64, "part uploaded");
                Ok((part.number, etag, part.sha256))
            });
        }
        while let Some(r) = running.join_next().await {
            done.push(r??);
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        running.abort_all();
    }
    result.map(|()| done)
}

/// The object's composite checksum (S3's SHA-256 of the parts' SHA-256s, `-{parts}`) and the
/// parts in order, as the completion and the record want them.
fn composite_of(mut done: Vec<UploadedPart>) -> (String, Vec<(i32, String, String)>) {
    done.sort_by_key(|(n, _, _)| *n);
    let mut composite = Sha256::new();
    for (_, _, digest) in &done {
        composite.update(digest);
    }
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let composite_sha256 = format!("{}-{}", b64(&composite.finalize()), done.len());
    (composite_sha256, done.into_iter().map(|(n, etag, d)| (n, etag, b64(&d))).collect())
}

/// Forwards a COPY stream to `tx`. PostgreSQL sends one CopyData message per row: they go in
/// batches of `COPY_BATCH`, so the encoding thread wakes once per 256 KiB rather than once per row
/// (measured: per-row hand-offs spent more time in futex calls than in COPY itself). Returns the
/// bytes read.
async fn forward_copy(copy: tokio_postgres::CopyOutStream, tx: mpsc::Sender<Bytes>) -> anyhow::Result<u64> {
    let mut copy = std::pin::pin!(copy);
    let mut raw_bytes = 0u64;
    let mut batch = bytes::BytesMut::with_capacity(COPY_BATCH);
    while let Some(chunk) = copy.next().await {
        let chunk = chunk.context("read COPY stream")?;
        raw_bytes += chunk.len() as u64;
        batch.extend_from_slice(&chunk);
        if batch.len() >= COPY_BATCH && tx.send(batch.split().freeze()).await.is_err() {
            bail!(COMPRESSOR_STOPPED);
        }
    }
    if !batch.is_empty() && tx.send(batch.freeze()).await.is_err() {
        bail!(COMPRESSOR_STOPPED);
    }
    Ok(raw_bytes)
}

/// The outcomes of an encoder and the COPY reader feeding it, as one: when the reader stopped
/// because the encoder did (a value a Parquet column cannot hold), the encoder's error says why.
fn joined<T, U>(encoder: anyhow::Result<T>, reader: anyhow::Result<U>) -> anyhow::Result<(T, U)> {
    match (encoder, reader) {
        (Ok(e), Ok(r)) => Ok((e, r)),
        (Err(e), Err(r)) if r.to_string() == COMPRESSOR_STOPPED => Err(e),
        (_, Err(r)) => Err(r),
        (Err(e), Ok(_)) => Err(e),
    }
}

/// An encoder's error: a value a Parquet column cannot hold (or a row over the row-group bound)
/// becomes an integrity error, which stops the partition's archive before anything is dropped.
fn encode_error(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<DecodeError>() {
        Ok(d @ (DecodeError::Unrepresentable { .. } | DecodeError::RowTooLarge { .. })) => {
            anyhow::Error::new(crate::error::Error::integrity(d.to_string()))
        }
        Ok(d) => anyhow::Error::new(d).context("decode the binary COPY stream"),
        Err(e) => e.context("compress"),
    }
}

/// A `Read` over chunks arriving on a channel (the decompressor's input).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// The footer of the Parquet object at `key` (a ranged GET of its tail, again if the footer is
/// larger) and the object's size.
pub async fn parquet_metadata(
    store: &Store,
    key: &str,
    version_id: Option<&str>,
) -> anyhow::Result<(parquet::file::metadata::ParquetMetaData, u64)> {
    let bucket = &store.settings.bucket;
    let head = store
        .head(key, version_id)
        .await?
        .ok_or_else(|| anyhow!("archive object s3://{bucket}/{key} does not exist"))?;
    let size = head.size.max(0) as u64;
    let mut want = parquet_read::TAIL_BYTES.min(size);
    loop {
        let tail = store.get_range(key, version_id, size - want, size).await?;
        match parquet_read::parse_footer(&tail, size) {
            Ok(m) => return Ok((m, size)),
            Err(Some(n)) if n > want => want = n,
            Err(_) => bail!(
                "s3://{bucket}/{key} is not a readable Parquet file (no valid footer in its {size} bytes: truncated or \
                 corrupted)"
            ),
        }
    }
}

/// The footer of the Parquet object at `key`, checked against the manifest's columns, as a reader
/// ready for the object's bytes.
async fn parquet_footer(
    store: &Store,
    key: &str,
    version_id: Option<&str>,
    columns: &[crate::pg::catalog::Column],
) -> anyhow::Result<CsvReader> {
    let (metadata, size) = parquet_metadata(store, key, version_id).await?;
    let columns = parquet_read::expected_columns(columns, &metadata)
        .with_context(|| format!("s3://{}/{key} does not match its manifest", store.settings.bucket))?;
    CsvReader::new(metadata, &columns, size)
}

/// The restore's middle stage for a Parquet object: its bytes in, CSV rows out.
fn parquet_to_csv(
    mut reader: CsvReader,
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
    hashes: Hashes,
) -> anyhow::Result<(u64, Option<String>)> {
    let mut raw_hash = (hashes == Hashes::Content).then(Sha256::new);
    while let Some(chunk) = input.blocking_recv() {
        reader
            .feed(&chunk, &mut |csv| {
                if let Some(h) = raw_hash.as_mut() {
                    h.update(&csv);
                }
                output.blocking_send(Bytes::from(csv)).map_err(|_| anyhow!("COPY FROM stopped"))
            })
            .context("read the Parquet object (corrupt or truncated?)")?;
    }
    let rows = reader.finish().context("read the Parquet object")?;
    Ok((rows, raw_hash.map(|h| hex::encode(h.finalize()))))
}

/// The restore's middle stage: an object's bytes in (`input`), its content out (`output`) as COPY
/// FROM reads it, rows counted (and hashed, for [`Hashes::Content`]). A Parquet object (`parquet`:
/// its reader) becomes CSV; the others are decompressed.
fn decompress(
    parquet: Option<CsvReader>,
    comp_rx: mpsc::Receiver<Bytes>,
    raw_tx: mpsc::Sender<Bytes>,
    (format, compression): (Format, Compression),
    hashes: Hashes,
) -> anyhow::Result<(u64, Option<String>)> {
    if let Some(reader) = parquet {
        return parquet_to_csv(reader, comp_rx, raw_tx, hashes);
    }
    let input = ChannelReader { rx: comp_rx, current: Bytes::new() };
    let mut decoder: Box<dyn Read> = match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input).context("start zstd decoder")?),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::None => Box::new(input),
    };
    let mut counter = RowCounter::new(format, format == Format::Csv);
    let mut raw_hash = (hashes == Hashes::Content).then(Sha256::new);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = decoder.read(&mut buf).context("decompress (corrupt or truncated object?)")?;
        if n == 0 {
            break;
        }
        counter.feed(&buf[..n]);
        if let Some(h) = raw_hash.as_mut() {
            h.update(&buf[..n]);
        }
        if raw_tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
            bail!("COPY FROM stopped");
        }
    }
    let rows = counter.finish().map_err(|e| anyhow!("archive content: {e}"))?;
    Ok((rows, raw_hash.map(|h| hex::encode(h.finalize()))))
}

/// Fetches an object's bytes (one stream, or its ranges in order) into `tx`, through SHA-256;
/// returns its size and SHA-256 (hex). Stops early, without error, when the receiver is gone (the
/// decompressor failed; its error is the one to report).
async fn download(
    store: Store,
    key: String,
    version: Option<String>,
    body: Body,
    tx: mpsc::Sender<Bytes>,
    mut progress: Progress,
) -> anyhow::Result<(u64, String)> {
    let mut hash = Sha256::new();
    let mut total = 0u64;
    // false: the decompressor failed; its error is the one to report.
    let mut deliver = async |chunk: Bytes| {
        hash.update(&chunk);
        total += chunk.len() as u64;
        progress.update(0, total);
        tx.send(chunk).await.is_ok()
    };
    match body {
        Body::Stream(mut body) => {
            // The SDK's read timeout ends a call whose response does not start; a body that
            // stops arriving part way is ended here, as transient as the rest.
            let silence = store.settings.s3_timeouts.read;
            loop {
                let Ok(next) = tokio::time::timeout(silence, body.next()).await else {
                    return Err(Error::transient(anyhow::anyhow!(
                        "read object body: S3 sent nothing for {} s (S3_READ_TIMEOUT_SECONDS)",
                        silence.as_secs()
                    ))
                    .into());
                };
                let Some(chunk) = next else { break };
                let chunk = chunk.context("read object body").map_err(Error::transient)?;
                if !deliver(chunk).await {
                    break;
                }
            }
        }
        Body::Ranges(ranges) => {
            for (from, to) in ranges {
                let range = store.get_range(&key, version.as_deref(), from, to).await;
                if !deliver(range.map_err(Error::transient)?).await {
                    break;
                }
            }
        }
    }
    Ok((total, hex::encode(hash.finalize())))
}

/// How an object's bytes are fetched.
enum Body {
    Stream(aws_sdk_s3::primitives::ByteStream),
    /// Byte ranges, in order, covering the whole object.
    Ranges(Vec<(u64, u64)>),
}

/// What the restore pipeline saw.
#[derive(Debug)]
pub struct Restored {
    pub rows_copied: u64,
    pub rows_counted: u64,
    pub compressed_bytes: u64,
    /// SHA-256 of the object as stored (compressed), hex.
    pub sha256: String,
    /// SHA-256 (hex) of the decompressed COPY data; only when asked for ([`Hashes::Content`]: it
    /// costs a second hash over the larger stream).
    pub raw_sha256: Option<String>,
}

impl Restored {
    /// The SHA-256 a [`RowsDigest`] in `format` is compared with: a Parquet object's as stored, a CSV or
    /// binary object's decompressed content (read with [`Hashes::for_comparing`]).
    pub fn comparable_sha256(&self, format: Format) -> Option<&str> {
        match format {
            Format::Parquet => Some(&self.sha256),
            Format::Csv | Format::Binary => self.raw_sha256.as_deref(),
        }
    }
}

/// What the rows of a `COPY ... TO STDOUT` give in an archive's encoding, hashed and never kept:
/// comparable with an object read back ([`Restored::comparable_sha256`]) to tell whether the
/// object holds exactly these rows.
pub struct RowsDigest {
    pub rows: u64,
    /// Bytes of the COPY stream.
    pub raw_bytes: u64,
    /// SHA-256 (hex): of the COPY data itself for a CSV or binary archive (an object's
    /// decompressed content); of the Parquet file the encoder writes for a Parquet one. The
    /// encoder is deterministic (same rows in the same order, same version and settings: the same
    /// bytes, footer included).
    pub sha256: String,
}

/// The [`RowsDigest`] of `copy_sql` in `encoding` (its compression applies only to Parquet pages).
pub async fn digest(db: &tokio_postgres::Client, copy_sql: &str, encoding: &Encoding) -> anyhow::Result<RowsDigest> {
    let (format, parquet) = (encoding.format, encoding.parquet_options());
    anyhow::ensure!(parquet.is_some() == (format == Format::Parquet), "a Parquet digest needs its columns");
    let copy = db.copy_out(copy_sql).await.context("start COPY TO STDOUT")?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    // `Sha256` is a `Write` that keeps nothing: the encoder writes the Parquet file into it.
    let digester = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, Sha256)> {
        let Some(options) = parquet else {
            let (mut sink, mut counter) = (Sha256::new(), RowCounter::new(format, format == Format::Csv));
            while let Some(chunk) = rx.blocking_recv() {
                counter.feed(&chunk);
                sink.update(&chunk);
            }
            return Ok((counter.finish().map_err(|e| anyhow!("COPY stream: {e}"))?, sink));
        };
        let mut encoder = ParquetEncoder::new(&options, Sha256::new())?;
        while let Some(chunk) = rx.blocking_recv() {
            encoder.write_all(&chunk).map_err(encode_error)?;
        }
        let (sink, rows, _) = encoder.finish().map_err(encode_error)?;
        Ok((rows, sink))
    });
    let read = forward_copy(copy, tx).await;
    let digested = digester.await.context("digest panicked")?;
    let ((rows, sink), raw_bytes) = joined(digested, read)?;
    Ok(RowsDigest { rows, raw_bytes, sha256: hex::encode(sink.finalize()) })
}

/// An archive object to read back: where it is and how it is encoded.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub format: Format,
    pub compression: Compression,
    /// The manifest's columns: a Parquet object's schema must match them.
    pub columns: &'a [crate::pg::catalog::Column],
}

/// Why a restore's load failed decides its kind. The way there failing (a database connection
/// lost, reset or silent; the server shutting down or out of resources; an S3 request failing,
/// [`store::S3Failure`], or marked transient by the pipeline) is transient: the same restore run
/// again goes on. Anything else is about the data (rows PostgreSQL rejects, an object that does
/// not decode): integrity.
pub(crate) fn load_failure(what: &str, e: anyhow::Error) -> Error {
    let e = match e.downcast::<Error>() {
        Ok(inner) => return inner,
        Err(e) => e,
    };
    let kind = if lost_the_way(&e) { ErrorKind::Transient } else { ErrorKind::Integrity };
    Error::new(kind, format!("{what} failed, nothing was kept: {e:#}"))
}

/// A database error that is not about the statement's data: no server error at all (the
/// connection closed or failed), or SQLSTATE class 08 (connection), 25 (a read-only transaction:
/// a failover), 40 (rolled back), 53 (resources), 55 (a lock not granted, an object in use), 57
/// (operator intervention: shutdown, terminated) or 58 (system).
fn lost_the_way(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<tokio_postgres::Error>() {
        Some(pg) => {
            pg.code().is_none_or(|code| matches!(&code.code()[..2], "08" | "25" | "40" | "53" | "55" | "57" | "58"))
        }
        None => {
            c.is::<store::S3Failure>()
                || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    use std::io::ErrorKind::*;
                    matches!(io.kind(), TimedOut | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected)
                })
        }
    })
}

/// What a read hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashes {
    /// The object as stored (always).
    Object,
    /// Also its decompressed content.
    Content,
}

impl Hashes {
    /// What a read of an object in `format` hashes to be compared with a [`RowsDigest`].
    pub fn for_comparing(format: Format) -> Self {
        match format {
            Format::Parquet => Self::Object,
            Format::Csv | Format::Binary => Self::Content,
        }
    }
}

/// Where a read object's rows go: `sql` (a `COPY ... FROM STDIN`) on `tx`'s connection. The caller
/// decides to commit after comparing the returned SHA-256 and row counts with the manifest.
///
/// The server answers the start and the end of the COPY at once (the rows go to a table with no
/// index or trigger), so each must come within `reply_within`. In between, the client may have
/// nothing to send for a while (S3 is slow), and the server waits to read: from outside, a COPY
/// whose last rows or end were lost on the way looks the same, so the watch
/// ([`crate::pg::watch`]) cannot tell, and these two bounds do.
pub struct CopyIn<'a> {
    pub tx: &'a tokio_postgres::Transaction<'a>,
    pub sql: &'a str,
    pub reply_within: Duration,
}

/// Reads an object through SHA-256, the decompressor and the row counter, into `copy` (a restore)
/// or nowhere (a check of what it holds).
pub async fn read_object(
    copy: Option<CopyIn<'_>>,
    store: &Store,
    source: Source<'_>,
    hashes: Hashes,
    progress: Progress,
) -> anyhow::Result<Restored> {
    let Source { key, version_id, format, compression, columns } = source;
    // A Parquet object is read footer first (a ranged GET of its tail), checked against the
    // manifest's columns before a byte is restored.
    let parquet = match format {
        Format::Parquet => Some(parquet_footer(store, key, version_id, columns).await?),
        _ => None,
    };
    // A CSV or binary object is one streaming GET. A Parquet object is read one row group per
    // ranged GET, in order (the bytes between row groups and the footer too, so the SHA-256 covers
    // every byte): the reader decodes and restores a whole row group before it wants more, and
    // one long GET left unread meanwhile was closed by the server (measured with LocalStack on
    // the benchmark's month; S3 also drops a connection that stops reading).
    let body = match &parquet {
        Some(reader) => Body::Ranges(reader.fetch_ranges()),
        None => Body::Stream(store.get(key, version_id, None).await?),
    };
    let (store_, key_, version_) = (store.clone(), key.to_string(), version_id.map(str::to_string));
    let (comp_tx, comp_rx) = mpsc::channel::<Bytes>(8);
    let (raw_tx, mut raw_rx) = mpsc::channel::<Bytes>(8);

    let decompressor =
        tokio::task::spawn_blocking(move || decompress(parquet, comp_rx, raw_tx, (format, compression), hashes));
    let downloader = tokio::spawn(download(store_, key_, version_, body, comp_tx, progress));

    let Some(CopyIn { tx: db, sql: copy_in_sql, reply_within }) = copy else {
        while raw_rx.recv().await.is_some() {}
        let (rows_counted, raw_sha256) = decompressor.await.context("decompressor panicked")??;
        let (compressed_bytes, sha256) = downloader.await.context("downloader panicked")??;
        return Ok(Restored { rows_copied: rows_counted, rows_counted, compressed_bytes, sha256, raw_sha256 });
    };
    let no_reply = |what: &str| {
        Error::transient(anyhow!(
            "{what} COPY FROM STDIN: no answer from the server within {} s: the connection is lost",
            reply_within.as_secs()
        ))
    };
    let sink = tokio::time::timeout(reply_within, db.copy_in::<_, Bytes>(copy_in_sql))
        .await
        .map_err(|_| no_reply("start"))?
        .context("start COPY FROM STDIN")?;
    let mut sink = std::pin::pin!(sink);
    let mut copy_err = None;
    while let Some(chunk) = raw_rx.recv().await {
        if let Err(e) = sink.send(chunk).await {
            copy_err = Some(e);
            break;
        }
    }
    drop(raw_rx);
    let decompressed = decompressor.await.context("decompressor panicked")?;
    let downloaded = downloader.await.context("downloader panicked")?;
    // The COPY's own failure first: when it stops, the decompressor stops too ("COPY FROM
    // stopped"), which says nothing of why.
    if let Some(e) = copy_err {
        return Err(anyhow::Error::new(e).context("COPY FROM STDIN"));
    }
    let (compressed_bytes, sha256) = downloaded?;
    let (rows_counted, raw_sha256) = decompressed?;
    let rows_copied = tokio::time::timeout(reply_within, sink.as_mut().finish())
        .await
        .map_err(|_| no_reply("finish"))?
        .context("finish COPY FROM STDIN")?;
    Ok(Restored { rows_copied, rows_counted, compressed_bytes, sha256, raw_sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_failure_is_transient_when_the_way_failed_and_integrity_when_the_data_did() {
        let io =
            |kind: std::io::ErrorKind| anyhow::Error::new(std::io::Error::new(kind, "x")).context("COPY FROM STDIN");
        let cases = [
            (io(std::io::ErrorKind::ConnectionReset), ErrorKind::Transient),
            (io(std::io::ErrorKind::TimedOut), ErrorKind::Transient),
            (io(std::io::ErrorKind::BrokenPipe), ErrorKind::Transient),
            // A truncated or corrupt object: zstd says so with these.
            (io(std::io::ErrorKind::UnexpectedEof), ErrorKind::Integrity),
            (io(std::io::ErrorKind::Other), ErrorKind::Integrity),
            (anyhow!("bad field count 7"), ErrorKind::Integrity),
            // Marked deeper (S3, a missing object): kept.
            (Error::transient(anyhow!("S3 sent nothing")).into(), ErrorKind::Transient),
            // An S3 request that failed (a GetObject or the Parquet footer's HEAD answered 503
            // SlowDown after the SDK's retries): the way, not the data.
            (
                anyhow::Error::new(store::S3Failure("service error: SlowDown".into())).context("get s3://b/k"),
                ErrorKind::Transient,
            ),
            (Error::not_found("no such key").into(), ErrorKind::NotFound),
        ];
        for (i, (e, kind)) in cases.into_iter().enumerate() {
            let got = load_failure("restore of p", e);
            assert_eq!(got.kind, kind, "case {i}: {}", got.message);
        }
    }
}
