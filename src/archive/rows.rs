//! Counting rows in a COPY stream as it passes, without parsing values: CSV rows end at a newline
//! outside quotes (PostgreSQL doubles quotes inside quoted fields, so toggling on every `"` is
//! exact); binary COPY is walked tuple by tuple. The count is checked against `count(*)` of the
//! partition before anything is dropped, and against `COPY FROM`'s count on restore.

use crate::archive::parquet::decode::SIGNATURE;
use crate::archive::settings::Format;

pub enum RowCounter {
    Csv { in_quotes: bool, newlines: u64, header: bool },
    Binary(BinaryCounter),
}

impl RowCounter {
    pub fn new(format: Format, header: bool) -> Self {
        match format {
            Format::Csv => Self::Csv { in_quotes: false, newlines: 0, header },
            // A Parquet archive is fed by a binary COPY.
            Format::Binary | Format::Parquet => Self::Binary(BinaryCounter::default()),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            Self::Csv { in_quotes, newlines, .. } => {
                for pos in memchr::memchr2_iter(b'"', b'\n', chunk) {
                    if chunk[pos] == b'"' {
                        *in_quotes = !*in_quotes;
                    } else if !*in_quotes {
                        *newlines += 1;
                    }
                }
            }
            Self::Binary(b) => b.feed(chunk),
        }
    }

    /// Rows seen so far (for progress reports; [`RowCounter::finish`] is the checked count).
    pub fn so_far(&self) -> u64 {
        match self {
            Self::Csv { newlines, header, .. } => newlines.saturating_sub(u64::from(*header)),
            Self::Binary(b) => b.rows,
        }
    }

    /// Rows seen; `Err` when the stream was not well formed (truncated, garbage).
    pub fn finish(&self) -> Result<u64, String> {
        match self {
            Self::Csv { in_quotes: true, .. } => Err("CSV stream ends inside a quoted field".into()),
            Self::Csv { newlines, header: true, .. } => {
                newlines.checked_sub(1).ok_or_else(|| "CSV stream has no header line".to_string())
            }
            Self::Csv { newlines, .. } => Ok(*newlines),
            Self::Binary(b) => b.finish(),
        }
    }
}

#[derive(Default)]
pub struct BinaryCounter {
    /// Bytes of a fixed-size item being assembled.
    pending: Vec<u8>,
    state: BinState,
    skip: u64,
    fields_left: i16,
    rows: u64,
    error: Option<String>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum BinState {
    #[default]
    Header,
    ExtLen,
    Ext,
    FieldCount,
    FieldLen,
    FieldData,
    Done,
}

impl BinaryCounter {
    fn need(&self) -> usize {
        match self.state {
            BinState::Header => 15, // signature + flags
            BinState::ExtLen | BinState::FieldLen => 4,
            BinState::FieldCount => 2,
            _ => 0,
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && self.error.is_none() {
            match self.state {
                BinState::Done => {
                    self.error = Some("data after the binary COPY trailer".into());
                    return;
                }
                BinState::Ext | BinState::FieldData => {
                    let n = (self.skip as usize).min(chunk.len());
                    chunk = &chunk[n..];
                    self.skip -= n as u64;
                    if self.skip == 0 {
                        self.after_skip();
                    }
                }
                _ => {
                    let want = self.need() - self.pending.len();
                    let n = want.min(chunk.len());
                    self.pending.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.pending.len() == self.need() {
                        let item = std::mem::take(&mut self.pending);
                        self.item(&item);
                    }
                }
            }
        }
    }

    fn after_skip(&mut self) {
        self.state = match self.state {
            BinState::Ext => BinState::FieldCount,
            _ => self.next_field(),
        };
    }

    fn next_field(&mut self) -> BinState {
        if self.fields_left == 0 {
            self.rows += 1;
            BinState::FieldCount
        } else {
            BinState::FieldLen
        }
    }

    fn item(&mut self, item: &[u8]) {
        match self.state {
            BinState::Header => {
                if &item[..11] != SIGNATURE {
                    self.error = Some("not a PostgreSQL binary COPY stream (bad signature)".into());
                }
                self.state = BinState::ExtLen;
            }
            BinState::ExtLen => {
                let n = u32::from_be_bytes(item.try_into().expect("4 bytes"));
                self.skip = n as u64;
                self.state = if n == 0 { BinState::FieldCount } else { BinState::Ext };
            }
            BinState::FieldCount => {
                let n = i16::from_be_bytes(item.try_into().expect("2 bytes"));
                if n == -1 {
                    self.state = BinState::Done;
                } else if n < 0 {
                    self.error = Some(format!("bad field count {n}"));
                } else {
                    self.fields_left = n;
                    self.state = self.next_field();
                }
            }
            BinState::FieldLen => {
                let len = i32::from_be_bytes(item.try_into().expect("4 bytes"));
                self.fields_left -= 1;
                if len == -1 || len == 0 {
                    self.state = self.next_field();
                } else if len < 0 {
                    self.error = Some(format!("bad field length {len}"));
                } else {
                    self.skip = len as u64;
                    self.state = BinState::FieldData;
                }
            }
            _ => unreachable!("fixed-size items only"),
        }
    }

    fn finish(&self) -> Result<u64, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.state != BinState::Done {
            return Err("binary COPY stream is truncated (no trailer)".into());
        }
        Ok(self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(format: Format, data: &[u8], chunk: usize) -> Result<u64, String> {
        let mut c = RowCounter::new(format, true);
        for part in data.chunks(chunk.max(1)) {
            c.feed(part);
        }
        c.finish()
    }

    #[test]
    fn csv_rows_with_quotes_and_newlines_in_fields() {
        let data = b"id,note\n1,plain\n2,\"with \"\"quotes\"\", commas, and\nnewlines\"\n3,\n";
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(count(Format::Csv, data, chunk), Ok(3), "chunk {chunk}");
        }
        assert!(count(Format::Csv, b"id\n1,\"open", 4).is_err());
        assert_eq!(count(Format::Csv, b"id\n", 4), Ok(0));
    }

    #[test]
    fn binary_rows_across_chunk_boundaries() {
        let mut data = SIGNATURE.to_vec();
        data.extend(0u32.to_be_bytes()); // flags
        data.extend(0u32.to_be_bytes()); // no extension
        for i in 0..5i32 {
            data.extend(2i16.to_be_bytes());
            data.extend(4i32.to_be_bytes());
            data.extend(i.to_be_bytes());
            data.extend((-1i32).to_be_bytes()); // NULL
        }
        let trailer = (-1i16).to_be_bytes();
        let mut full = data.clone();
        full.extend(trailer);
        for chunk in [1, 3, 5, 64] {
            assert_eq!(count(Format::Binary, &full, chunk), Ok(5), "chunk {chunk}");
        }
        assert!(count(Format::Binary, &data, 8).unwrap_err().contains("truncated"));
        assert!(count(Format::Binary, b"id,note\n1,2\n3,4\n5,6\n", 8).unwrap_err().contains("signature"));
    }
}
