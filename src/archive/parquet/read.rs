//! Reading a Parquet archive back without holding it: the footer first (a ranged GET of the
//! object's tail), then the object streamed once from its start, one row group at a time: the
//! bytes of a row group are buffered until it is whole, decoded into CSV for `COPY FROM`, and
//! dropped. Memory: one compressed row group (at most the writer's bound) plus one decoded batch.
//! Pure: bytes in, CSV out.

use super::columns::{check_schema, ArchiveColumn, Encoding, META_COLUMNS};
use super::text::csv_rows;
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use std::sync::Arc;

/// How many bytes of an object's tail to fetch first: enough for the footer of most archives.
pub const TAIL_BYTES: u64 = 64 * 1024;

/// The footer parsed from the object's last bytes; Err(Some(n)) asks for the last `n` bytes.
pub fn parse_footer(tail: &Bytes, file_size: u64) -> Result<ParquetMetaData, Option<u64>> {
    let mut reader = ParquetMetaDataReader::new();
    match reader.try_parse_sized(tail, file_size) {
        Ok(()) => reader.finish().map_err(|_| None),
        Err(ParquetError::NeedMoreData(n)) if (n as u64) <= file_size && n > tail.len() => Err(Some(n as u64)),
        Err(_) => Err(None),
    }
}

/// The columns recorded in the file's key-value metadata.
pub fn file_columns(metadata: &ParquetMetaData) -> anyhow::Result<Vec<ArchiveColumn>> {
    let kv = metadata.file_metadata().key_value_metadata().into_iter().flatten();
    let json = kv.filter(|kv| kv.key == META_COLUMNS).find_map(|kv| kv.value.clone()).ok_or_else(|| {
        anyhow!("the Parquet object has no {META_COLUMNS} metadata: not a partition-archiver archive")
    })?;
    serde_json::from_str(&json).context("the Parquet object's column metadata does not parse")
}

/// The columns to read the object as: the manifest's, each with the file's type oid and typmod
/// where the manifest (written before typed archives) has none; the names, PostgreSQL types and
/// Arrow schema must all agree, or the object is not this archive.
pub fn expected_columns(
    manifest: &[crate::pg::catalog::Column],
    metadata: &ParquetMetaData,
) -> anyhow::Result<Vec<ArchiveColumn>> {
    let file = file_columns(metadata)?;
    if file.len() != manifest.len() {
        bail!("the object has {} columns, the manifest {}", file.len(), manifest.len());
    }
    let mut columns = Vec::with_capacity(file.len());
    for (f, m) in file.iter().zip(manifest) {
        if f.name != m.name || f.pg_type != m.type_name {
            bail!(
                "the object's column {:?} ({}) differs from the manifest's {:?} ({})",
                f.name,
                f.pg_type,
                m.name,
                m.type_name
            );
        }
        let (type_oid, typmod) = (m.type_oid.unwrap_or(f.type_oid), m.typmod.unwrap_or(f.typmod));
        let encoding = Encoding::of(type_oid, typmod);
        if encoding != f.encoding {
            bail!("the object stores column {:?} as {:?}, its type maps to {encoding:?}", f.name, f.encoding);
        }
        columns.push(ArchiveColumn { type_oid, typmod, encoding, ..f.clone() });
    }
    let arrow = ArrowReaderMetadata::try_new(Arc::new(metadata.clone()), ArrowReaderOptions::new())?;
    check_schema(arrow.schema(), &columns).map_err(|e| anyhow!(e))?;
    Ok(columns)
}

/// The bytes of the object from `offset`: what the stream has delivered and not yet dropped.
struct Window {
    offset: u64,
    data: Bytes,
    file_size: u64,
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.file_size
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let end = self.offset + self.data.len() as u64;
        let length = end.checked_sub(start).ok_or_else(|| {
            ParquetError::General(format!("offset {start} is past the buffered row group {}..{end}", self.offset))
        })?;
        Ok(self.get_bytes(start, length as usize)?.reader())
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start + length as u64;
        if start < self.offset || end > self.offset + self.data.len() as u64 {
            return Err(ParquetError::General(format!(
                "bytes {start}..{end} are outside the buffered row group {}..{}",
                self.offset,
                self.offset + self.data.len() as u64
            )));
        }
        let from = (start - self.offset) as usize;
        Ok(self.data.slice(from..from + length))
    }
}

/// Byte range of row group `i`: from its first column chunk to the end of its last.
fn row_group_range(metadata: &ParquetMetaData, i: usize) -> (u64, u64) {
    let rg = metadata.row_group(i);
    let (mut start, mut end) = (u64::MAX, 0);
    for c in rg.columns() {
        let (s, len) = c.byte_range();
        start = start.min(s);
        end = end.max(s + len);
    }
    (start, end)
}

/// Turns the object's bytes, fed in order, into CSV rows, one row group at a time.
pub struct CsvReader {
    metadata: ArrowReaderMetadata,
    encodings: Vec<Encoding>,
    file_size: u64,
    /// File offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    next_group: usize,
    rows: u64,
}

impl CsvReader {
    pub fn new(metadata: ParquetMetaData, columns: &[ArchiveColumn], file_size: u64) -> anyhow::Result<Self> {
        let metadata = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())?;
        Ok(Self {
            metadata,
            encodings: columns.iter().map(|c| c.encoding).collect(),
            file_size,
            buf_start: 0,
            buf: Vec::new(),
            next_group: 0,
            rows: 0,
        })
    }

    /// Byte ranges covering the whole object, in order, each ending where a row group ends (the
    /// last one at the end of the file): what to fetch so that every fetch completes a row group.
    pub fn fetch_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        let mut from = 0;
        for i in 0..self.metadata.metadata().num_row_groups() {
            let (_, end) = row_group_range(self.metadata.metadata(), i);
            if end > from && end <= self.file_size {
                ranges.push((from, end));
                from = end;
            }
        }
        if from < self.file_size {
            ranges.push((from, self.file_size));
        }
        ranges
    }

    /// Feeds the next bytes of the object; every row group they complete goes to `emit` as CSV.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(Vec<u8>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.buf.extend_from_slice(data);
        let groups = self.metadata.metadata().num_row_groups();
        while self.next_group < groups {
            let (start, end) = row_group_range(self.metadata.metadata(), self.next_group);
            if start < self.buf_start || end > self.file_size {
                bail!("row group {} lies at bytes {start}..{end}, outside the object", self.next_group);
            }
            if self.buf_start + (self.buf.len() as u64) < end {
                break;
            }
            // The row group's bytes leave the buffer without a copy; what follows them (less
            // than one chunk of the stream) is moved to a new buffer.
            let (from, through) = ((start - self.buf_start) as usize, (end - self.buf_start) as usize);
            let rest = self.buf.split_off(through);
            let group = Bytes::from(std::mem::replace(&mut self.buf, rest)).slice(from..through);
            let window = Window { offset: start, data: group, file_size: self.file_size };
            self.buf_start = end;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(window, self.metadata.clone())
                .with_row_groups(vec![self.next_group])
                .with_batch_size(super::decode::BATCH_ROWS)
                .build()?;
            for batch in reader {
                let batch = batch.with_context(|| format!("decode row group {}", self.next_group))?;
                self.rows += batch.num_rows() as u64;
                let mut csv = Vec::with_capacity(batch.get_array_memory_size());
                csv_rows(&batch, &self.encodings, &mut csv);
                emit(csv)?;
            }
            self.next_group += 1;
        }
        // Bytes before the next row group (the leading magic, or the footer after the last one)
        // are not kept.
        if self.next_group == groups {
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Rows decoded; an error if the object ended before its last row group.
    pub fn finish(self) -> anyhow::Result<u64> {
        let groups = self.metadata.metadata().num_row_groups();
        if self.next_group != groups {
            bail!("the object ended in row group {} of {groups} (truncated)", self.next_group);
        }
        let want: i64 = self.metadata.metadata().row_groups().iter().map(|rg| rg.num_rows()).sum();
        if want as u64 != self.rows {
            bail!("decoded {} rows, the footer says {want}", self.rows);
        }
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::{oid, ArchiveColumn, Encoding};
    use super::super::decode::SIGNATURE;
    use super::super::write::{ParquetEncoder, WriteOptions};
    use super::*;
    use crate::pg::catalog::Column;

    fn columns() -> Vec<ArchiveColumn> {
        [("id", oid::INT8, "bigint"), ("note", oid::TEXT, "text")]
            .into_iter()
            .map(|(name, type_oid, pg)| ArchiveColumn {
                name: name.into(),
                pg_type: pg.into(),
                type_oid,
                typmod: -1,
                encoding: Encoding::of(type_oid, -1),
                epoch: None,
            })
            .collect()
    }

    /// A Parquet file of `n` rows (id, note), written by the archive encoder with small row groups.
    fn file(n: i64) -> Vec<u8> {
        let mut copy = SIGNATURE.to_vec();
        copy.extend_from_slice(&[0; 8]);
        for i in 0..n {
            copy.extend_from_slice(&2i16.to_be_bytes());
            copy.extend_from_slice(&8i32.to_be_bytes());
            copy.extend_from_slice(&i.to_be_bytes());
            let note = format!("note \"{i}\", {}", "x".repeat((i % 50) as usize));
            copy.extend_from_slice(&(note.len() as i32).to_be_bytes());
            copy.extend_from_slice(note.as_bytes());
        }
        copy.extend_from_slice(&(-1i16).to_be_bytes());
        let options = WriteOptions { columns: columns(), zstd_level: Some(1), row_group_bytes: 1 << 20 };
        let mut enc = ParquetEncoder::new(&options, Vec::new()).unwrap();
        for piece in copy.chunks(1000) {
            enc.write_all(piece).unwrap();
        }
        let (out, rows, _) = enc.finish().unwrap();
        assert_eq!(rows, n as u64);
        out
    }

    fn read(file: &[u8], feed: usize) -> anyhow::Result<(u64, String)> {
        let size = file.len() as u64;
        let tail = Bytes::copy_from_slice(&file[file.len().saturating_sub(TAIL_BYTES as usize)..]);
        let meta = parse_footer(&tail, size).map_err(|e| anyhow!("footer: {e:?}"))?;
        let manifest: Vec<Column> = columns()
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                type_name: c.pg_type.clone(),
                not_null: false,
                type_oid: None,
                typmod: None,
            })
            .collect();
        let cols = expected_columns(&manifest, &meta)?;
        let mut reader = CsvReader::new(meta, &cols, size)?;
        let mut csv = Vec::new();
        for piece in file.chunks(feed) {
            reader.feed(piece, &mut |c| {
                csv.extend(c);
                Ok(())
            })?;
        }
        Ok((reader.finish()?, String::from_utf8(csv)?))
    }

    #[test]
    fn a_file_read_row_group_by_row_group_gives_every_row_in_order() {
        let f = file(300_000);
        let meta = parse_footer(&Bytes::copy_from_slice(&f[f.len() - 65536..]), f.len() as u64).unwrap();
        assert!(meta.num_row_groups() > 1, "small bound: several row groups");
        for feed in [4096, 1 << 20] {
            let (rows, csv) = read(&f, feed).unwrap();
            assert_eq!(rows, 300_000);
            let lines: Vec<&str> = csv.lines().collect();
            assert_eq!(lines.len(), 300_000);
            assert_eq!(lines[1], "1,\"note \"\"1\"\", x\"");
            assert_eq!(lines[299_999].split(',').next(), Some("299999"));
        }
    }

    #[test]
    fn fetch_ranges_cover_the_file_and_each_completes_a_row_group() {
        let f = file(300_000);
        let size = f.len() as u64;
        let meta = parse_footer(&Bytes::copy_from_slice(&f), size).unwrap();
        let groups = meta.num_row_groups();
        let mut r = CsvReader::new(meta, &columns(), size).unwrap();
        let ranges = r.fetch_ranges();
        assert_eq!(ranges.len(), groups + 1, "{ranges:?}");
        assert_eq!((ranges[0].0, ranges.last().unwrap().1), (0, size));
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "contiguous: {ranges:?}");
        let mut rows_after = Vec::new();
        for (from, to) in ranges {
            let mut n = 0;
            r.feed(&f[from as usize..to as usize], &mut |csv| {
                n += csv.iter().filter(|&&b| b == b'\n').count();
                Ok(())
            })
            .unwrap();
            rows_after.push(n);
        }
        assert!(rows_after[..groups].iter().all(|&n| n > 0), "each range completes a row group: {rows_after:?}");
        assert_eq!(r.finish().unwrap(), 300_000);
    }

    #[test]
    fn truncated_or_corrupted_objects_are_errors() {
        let f = file(1000);
        // Truncated: the footer is gone.
        let cut = &f[..f.len() - 10];
        assert!(read(cut, 4096).is_err());
        // Streamed short: the footer says more than arrives.
        let size = f.len() as u64;
        let meta = parse_footer(&Bytes::copy_from_slice(&f), size).unwrap();
        let mut r = CsvReader::new(meta, &columns(), size).unwrap();
        r.feed(&f[..8], &mut |_| Ok(())).unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("truncated"));
        // A flipped byte in the data: zstd's or the page's check fails, or the values differ.
        let mut bad = f.clone();
        bad[60] ^= 0xff;
        match read(&bad, 4096) {
            Err(_) => {}
            Ok((_, csv)) => assert_ne!(csv, read(&f, 4096).unwrap().1),
        }
    }

    #[test]
    fn an_object_whose_columns_differ_from_the_manifest_is_refused() {
        let f = file(10);
        let meta = parse_footer(&Bytes::copy_from_slice(&f), f.len() as u64).unwrap();
        let other = vec![
            Column { name: "id".into(), type_name: "integer".into(), not_null: false, type_oid: None, typmod: None },
            Column { name: "note".into(), type_name: "text".into(), not_null: false, type_oid: None, typmod: None },
        ];
        assert!(expected_columns(&other, &meta).unwrap_err().to_string().contains("differs from the manifest"));
        assert!(expected_columns(&other[..1], &meta).unwrap_err().to_string().contains("2 columns"));
    }
}
