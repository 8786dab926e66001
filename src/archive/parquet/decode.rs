//! PostgreSQL's binary COPY format decoded straight into Arrow arrays, value by value: exact or
//! refused. Pure (no I/O): bytes in, record batches out, so every rule is tested on hand-built
//! frames.
//!
//! Framing (COPY "Binary Format"): an 11-byte signature, flags, a header extension; then per row
//! an int16 field count and, per field, an int32 length (-1 = NULL) and that many bytes; an int16
//! -1 ends the data. Rows may straddle the chunks the stream arrives in: the tail of an incomplete
//! row is carried to the next chunk. Values are in each type's send format (`*send` in
//! PostgreSQL's `utils/adt`), big-endian.

use super::columns::{ArchiveColumn, Encoding};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use std::sync::Arc;

pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Rows per record batch, and the builder bytes at which a batch is cut earlier.
pub const BATCH_ROWS: usize = 8192;
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A value a typed column cannot hold exactly: the archive stops, nothing is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "column {column:?} ({pg_type}): the value {value} cannot be stored exactly as {arrow}; nothing was archived \
         or dropped. Archive this table with archive_format 'csv', or change the column's type"
    )]
    Unrepresentable { column: String, pg_type: String, value: String, arrow: String },
    #[error("COPY data: {0}")]
    Malformed(String),
    #[error(
        "a row of {bytes} bytes is larger than the Parquet row-group bound ARCHIVE_PARQUET_ROW_GROUP_BYTES={bound}: \
         raise it above the largest row"
    )]
    RowTooLarge { bytes: usize, bound: usize },
}

/// Why a single value was refused (the column is added by the caller).
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Refused(String),
    Malformed(String),
}

enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Dec(Decimal128Builder, u8),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
}

impl Builder {
    /// A builder sized for a batch of `rows` rows, with `bytes` of values for the variable-width
    /// types (the previous batch's size: builders are refilled, never grown value by value).
    fn new(encoding: Encoding, rows: usize, bytes: usize) -> Self {
        match encoding {
            Encoding::Bool => Self::Bool(BooleanBuilder::with_capacity(rows)),
            Encoding::Int16 => Self::I16(Int16Builder::with_capacity(rows)),
            Encoding::Int32 => Self::I32(Int32Builder::with_capacity(rows)),
            Encoding::Int64 => Self::I64(Int64Builder::with_capacity(rows)),
            Encoding::Float32 => Self::F32(Float32Builder::with_capacity(rows)),
            Encoding::Float64 => Self::F64(Float64Builder::with_capacity(rows)),
            Encoding::Utf8 | Encoding::Json | Encoding::Jsonb | Encoding::Text => {
                Self::Str(StringBuilder::with_capacity(rows, bytes))
            }
            Encoding::Binary => Self::Bin(BinaryBuilder::with_capacity(rows, bytes)),
            Encoding::Uuid => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
            Encoding::Decimal { precision, .. } => {
                Self::Dec(Decimal128Builder::with_capacity(rows).with_data_type(encoding.data_type()), precision)
            }
            Encoding::Date => Self::Date(Date32Builder::with_capacity(rows)),
            Encoding::Timestamp => Self::Ts(TimestampMicrosecondBuilder::with_capacity(rows)),
            Encoding::TimestampTz => Self::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")),
            Encoding::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(rows)),
        }
    }

    fn null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
            Self::Dec(b, _) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Bin(b) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
            Self::Dec(b, _) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
        }
    }

    /// Appends one non-NULL value in its send format.
    fn value(&mut self, encoding: Encoding, raw: &[u8]) -> Result<(), Value> {
        match self {
            Self::Bool(b) => match raw {
                [0] => b.append_value(false),
                [1] => b.append_value(true),
                _ => return Err(malformed("bool", raw)),
            },
            Self::I16(b) => b.append_value(i16::from_be_bytes(fixed(raw, "int2")?)),
            Self::I32(b) => b.append_value(i32::from_be_bytes(fixed(raw, "int4")?)),
            Self::I64(b) => b.append_value(i64::from_be_bytes(fixed(raw, "int8")?)),
            Self::F32(b) => b.append_value(f32::from_be_bytes(fixed(raw, "float4")?)),
            Self::F64(b) => b.append_value(f64::from_be_bytes(fixed(raw, "float8")?)),
            Self::Str(b) => {
                let text = if encoding == Encoding::Jsonb {
                    match raw.split_first() {
                        Some((1, rest)) => rest,
                        _ => return Err(Value::Malformed("jsonb value without version 1".into())),
                    }
                } else {
                    raw
                };
                let s = std::str::from_utf8(text).map_err(|e| Value::Malformed(format!("text is not UTF-8: {e}")))?;
                b.append_value(s)
            }
            Self::Bin(b) => b.append_value(raw),
            Self::Uuid(b) => b.append_value(fixed::<16>(raw, "uuid")?).map_err(|e| Value::Malformed(e.to_string()))?,
            Self::Dec(b, precision) => {
                let Encoding::Decimal { scale, .. } = encoding else { unreachable!("a decimal builder") };
                b.append_value(numeric_to_i128(raw, scale, *precision)?)
            }
            Self::Date(b) => b.append_value(date_to_arrow(i32::from_be_bytes(fixed(raw, "date")?))),
            Self::Ts(b) => b.append_value(timestamp_to_arrow(i64::from_be_bytes(fixed(raw, "timestamp")?))?),
            Self::Time(b) => {
                let us = i64::from_be_bytes(fixed(raw, "time")?);
                if !(0..=86_400_000_000).contains(&us) {
                    return Err(malformed("time", raw));
                }
                b.append_value(us)
            }
        }
        Ok(())
    }
}

fn malformed(what: &str, raw: &[u8]) -> Value {
    Value::Malformed(format!("a {what} value of {} bytes ({})", raw.len(), hex::encode(&raw[..raw.len().min(32)])))
}

fn fixed<const N: usize>(raw: &[u8], what: &str) -> Result<[u8; N], Value> {
    raw.try_into().map_err(|_| malformed(what, raw))
}

/// PostgreSQL's date (days since 2000-01-01, infinities at the i32 extremes) as Arrow's Date32.
/// -infinity becomes i32::MIN + 1, which DuckDB reads as -infinity (it reads i32::MIN as a date
/// in 5877642 BC). PostgreSQL's finite dates (4713 BC to 5874897 AD) all fit after the shift.
pub fn date_to_arrow(pg: i32) -> i32 {
    match pg {
        i32::MIN => i32::MIN + 1,
        i32::MAX => i32::MAX,
        d => d + PG_EPOCH_DAYS,
    }
}

/// The inverse of [`date_to_arrow`]: None for the infinities (Some(true) = +infinity).
pub fn date_from_arrow(days: i32) -> Result<i32, bool> {
    match days {
        i32::MAX => Err(true),
        d if d == i32::MIN + 1 => Err(false),
        // Wrapping: only a value this tool never writes (a foreign or corrupt file, which the
        // object's SHA-256 check refuses anyway) could overflow.
        d => Ok(d.wrapping_sub(PG_EPOCH_DAYS)),
    }
}

/// PostgreSQL's timestamp (µs since 2000-01-01, infinities at the i64 extremes) as µs since
/// 1970-01-01, -infinity as i64::MIN + 1 (DuckDB's -infinity). A finite value whose shifted form
/// would overflow or land on a sentinel (after year 294247) is refused.
fn timestamp_to_arrow(pg: i64) -> Result<i64, Value> {
    match pg {
        i64::MIN => Ok(i64::MIN + 1),
        i64::MAX => Ok(i64::MAX),
        t => match t.checked_add(PG_EPOCH_US) {
            Some(u) if u != i64::MAX => Ok(u),
            _ => Err(Value::Refused(format!("timestamp {t} µs after 2000-01-01 (beyond year 294246)"))),
        },
    }
}

/// The inverse of [`timestamp_to_arrow`]: Err(true) = +infinity, Err(false) = -infinity.
pub fn timestamp_from_arrow(us: i64) -> Result<i64, bool> {
    match us {
        i64::MAX => Err(true),
        u if u == i64::MIN + 1 => Err(false),
        u => Ok(u.wrapping_sub(PG_EPOCH_US)),
    }
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// numeric's send format (ndigits, weight, sign, dscale, then base-10000 digits) as an i128 at
/// `scale`, which must hold it exactly within `precision` digits; NaN and the infinities are
/// refused (Decimal128 has neither).
fn numeric_to_i128(raw: &[u8], scale: i8, precision: u8) -> Result<i128, Value> {
    if raw.len() < 8 {
        return Err(malformed("numeric", raw));
    }
    let word = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
    let (ndigits, weight, sign) = (word(0) as usize, word(2) as i16 as i32, word(4));
    if raw.len() != 8 + 2 * ndigits {
        return Err(malformed("numeric", raw));
    }
    match sign {
        NUMERIC_NAN => return Err(Value::Refused("NaN".into())),
        NUMERIC_PINF => return Err(Value::Refused("Infinity".into())),
        NUMERIC_NINF => return Err(Value::Refused("-Infinity".into())),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return Err(malformed("numeric", raw)),
    }
    let overflow = || Value::Refused(format!("a numeric with more than {precision} digits"));
    let mut v: i128 = 0;
    for i in 0..ndigits {
        let digit = word(8 + 2 * i) as i128;
        if digit >= 10_000 {
            return Err(malformed("numeric", raw));
        }
        let exp = 4 * (weight - i as i32) + scale as i32;
        let term = if exp >= 0 {
            10i128.checked_pow(exp as u32).and_then(|p| p.checked_mul(digit)).ok_or_else(overflow)?
        } else {
            let p = 10i128.pow((-exp).min(5) as u32);
            if digit % p != 0 {
                return Err(Value::Refused(format!("a numeric with more than {scale} decimal places")));
            }
            digit / p
        };
        v = v.checked_add(term).ok_or_else(overflow)?;
    }
    if v >= 10i128.pow(precision as u32) {
        return Err(overflow());
    }
    Ok(if sign == NUMERIC_NEG { -v } else { v })
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    Header,
    Rows,
    Ended,
}

/// Decodes a binary COPY stream into record batches of at most [`BATCH_ROWS`] rows.
pub struct Decoder {
    columns: Vec<ArchiveColumn>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    stage: Stage,
    carry: Vec<u8>,
    batch_rows: usize,
    batch_bytes: usize,
    rows: u64,
    max_row_bytes: usize,
}

impl Decoder {
    /// `max_row_bytes`: a row whose COPY form is larger is refused (it could not fit the
    /// row-group bound).
    pub fn new(columns: Vec<ArchiveColumn>, max_row_bytes: usize) -> Self {
        let schema = Arc::new(super::columns::arrow_schema(&columns));
        let builders = columns.iter().map(|c| Builder::new(c.encoding, BATCH_ROWS, 0)).collect();
        Self {
            columns,
            schema,
            builders,
            stage: Stage::Header,
            carry: Vec::new(),
            batch_rows: 0,
            batch_bytes: 0,
            rows: 0,
            max_row_bytes,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows decoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Decodes what `data` completes; every full batch is handed to `emit`.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(RecordBatch) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let owned;
        let buf: &[u8] = if self.carry.is_empty() {
            data
        } else {
            self.carry.extend_from_slice(data);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let mut at = 0;
        while let Some(used) = self.step(&buf[at..])? {
            at += used;
            if self.batch_rows >= BATCH_ROWS || self.batch_bytes >= BATCH_BYTES {
                emit(self.take_batch()?)?;
            }
        }
        self.carry = buf[at..].to_vec();
        Ok(())
    }

    /// Checks the stream ended with its trailer; the last (partial) batch, if any.
    pub fn finish(mut self) -> anyhow::Result<Option<RecordBatch>> {
        if self.stage != Stage::Ended {
            return Err(DecodeError::Malformed("the stream ended without its trailer (truncated)".into()).into());
        }
        Ok(if self.batch_rows > 0 { Some(self.take_batch()?) } else { None })
    }

    fn take_batch(&mut self) -> anyhow::Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        for ((builder, column), array) in self.builders.iter_mut().zip(&self.columns).zip(&arrays) {
            *builder =
                Builder::new(column.encoding, BATCH_ROWS, array.to_data().buffers().last().map_or(0, |b| b.len()));
        }
        self.batch_rows = 0;
        self.batch_bytes = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    /// Consumes one element (the header, a row or the trailer) from the front of `buf`: the
    /// bytes used, or None if `buf` does not hold a whole one yet.
    fn step(&mut self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        match self.stage {
            Stage::Header => {
                if buf.len() < 19 {
                    return Ok(None);
                }
                if &buf[..11] != SIGNATURE {
                    return Err(DecodeError::Malformed("not a binary COPY stream (bad signature)".into()));
                }
                let flags = u32::from_be_bytes(buf[11..15].try_into().expect("4 bytes"));
                if flags & 0xffff_0000 != 0 {
                    return Err(DecodeError::Malformed(format!("unsupported header flags {flags:#x}")));
                }
                let ext = u32::from_be_bytes(buf[15..19].try_into().expect("4 bytes")) as usize;
                if buf.len() < 19 + ext {
                    return Ok(None);
                }
                self.stage = Stage::Rows;
                Ok(Some(19 + ext))
            }
            Stage::Rows => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                let fields = i16::from_be_bytes([buf[0], buf[1]]);
                if fields == -1 {
                    self.stage = Stage::Ended;
                    return Ok(Some(2));
                }
                if fields as usize != self.columns.len() {
                    return Err(DecodeError::Malformed(format!(
                        "a row of {fields} fields, expected {}",
                        self.columns.len()
                    )));
                }
                // First find the row's end, so a row is appended whole or not at all.
                let mut at = 2;
                for _ in 0..self.columns.len() {
                    if buf.len() < at + 4 {
                        return self.incomplete(buf.len());
                    }
                    let len = i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
                    at += 4 + len.max(0) as usize;
                }
                if buf.len() < at {
                    return self.incomplete(buf.len());
                }
                self.too_large(at)?;
                let mut p = 2;
                for (i, column) in self.columns.iter().enumerate() {
                    let len = i32::from_be_bytes(buf[p..p + 4].try_into().expect("4 bytes"));
                    p += 4;
                    if len < 0 {
                        self.builders[i].null();
                        continue;
                    }
                    let raw = &buf[p..p + len as usize];
                    p += len as usize;
                    self.builders[i].value(column.encoding, raw).map_err(|e| match e {
                        Value::Refused(value) => DecodeError::Unrepresentable {
                            column: column.name.clone(),
                            pg_type: column.pg_type.clone(),
                            value,
                            arrow: column.encoding.data_type().to_string(),
                        },
                        Value::Malformed(why) => DecodeError::Malformed(format!("column {:?}: {why}", column.name)),
                    })?;
                }
                self.rows += 1;
                self.batch_rows += 1;
                self.batch_bytes += at;
                Ok(Some(at))
            }
            Stage::Ended => {
                if buf.is_empty() {
                    Ok(None)
                } else {
                    Err(DecodeError::Malformed("data after the trailer".into()))
                }
            }
        }
    }

    /// An incomplete row: wait for more, unless what is buffered already exceeds the bound.
    fn incomplete(&self, have: usize) -> Result<Option<usize>, DecodeError> {
        self.too_large(have)?;
        Ok(None)
    }

    fn too_large(&self, bytes: usize) -> Result<(), DecodeError> {
        if bytes > self.max_row_bytes {
            return Err(DecodeError::RowTooLarge { bytes, bound: self.max_row_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::columns::oid;
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;

    fn column(name: &str, type_oid: u32, typmod: i32) -> ArchiveColumn {
        ArchiveColumn {
            name: name.into(),
            pg_type: format!("type {type_oid}"),
            type_oid,
            typmod,
            encoding: Encoding::of(type_oid, typmod),
            epoch: None,
        }
    }

    /// A binary COPY stream of `rows` (each a list of fields, None = NULL).
    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn decode(columns: Vec<ArchiveColumn>, data: &[u8], chunk: usize) -> anyhow::Result<Vec<RecordBatch>> {
        let mut d = Decoder::new(columns, 1 << 20);
        let mut batches = Vec::new();
        for piece in data.chunks(chunk) {
            d.feed(piece, &mut |b| {
                batches.push(b);
                Ok(())
            })?;
        }
        batches.extend(d.finish()?);
        Ok(batches)
    }

    /// numeric's send format for digits in base 10000.
    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | s) + 4
    }

    #[test]
    fn rows_straddling_chunks_decode_the_same_at_any_chunk_size() {
        let rows: Vec<_> = (0..100i64)
            .map(|i| {
                vec![
                    Some(i.to_be_bytes().to_vec()),
                    if i % 7 == 0 { None } else { Some(format!("row {i} é").into_bytes()) },
                ]
            })
            .collect();
        let data = stream(&rows);
        for chunk in [1, 2, 3, 7, 19, 64, 4096] {
            let cols = vec![column("id", oid::INT8, -1), column("note", oid::TEXT, -1)];
            let batches = decode(cols, &data, chunk).unwrap();
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n, 100, "chunk {chunk}");
            let ids = batches[0].column(0).as_primitive::<Int64Type>();
            assert_eq!(ids.value(99), 99);
            let notes = batches[0].column(1).as_string::<i32>();
            assert!(notes.is_null(0));
            assert_eq!(notes.value(1), "row 1 é");
        }
    }

    #[test]
    fn numeric_to_decimal_exact() {
        let cases: &[(Vec<u8>, i8, u8, i128)] = &[
            // 1234.5678 at scale 4
            (numeric(0, NUMERIC_POS, 4, &[1234, 5678]), 4, 10, 12_345_678),
            // -0.5 at scale 2
            (numeric(-1, NUMERIC_NEG, 2, &[5000]), 2, 5, -50),
            // 0
            (numeric(0, NUMERIC_POS, 2, &[]), 2, 5, 0),
            // 10000 (weight 1, one digit) at scale 0
            (numeric(1, NUMERIC_POS, 0, &[1]), 0, 10, 10_000),
            // 0.000001 at scale 6: weight -2, digit 0100
            (numeric(-2, NUMERIC_POS, 6, &[100]), 6, 10, 1),
        ];
        for (raw, scale, precision, want) in cases {
            assert_eq!(numeric_to_i128(raw, *scale, *precision), Ok(*want), "{raw:?}");
        }
        // 38 nines: 99999999999999999999.999999999999999999
        let mut digits = vec![9999u16; 5];
        digits.extend([9999u16; 4]);
        digits.push(9900);
        let max = numeric(4, NUMERIC_POS, 18, &digits);
        assert_eq!(numeric_to_i128(&max, 18, 38), Ok(10i128.pow(38) - 1));
        assert!(matches!(numeric_to_i128(&max, 18, 37), Err(Value::Refused(_))));
    }

    #[test]
    fn numeric_specials_are_refused_naming_the_column_and_value() {
        let cols = vec![column("price", oid::NUMERIC, typmod(10, 2))];
        for (sign, value) in [(NUMERIC_NAN, "NaN"), (NUMERIC_PINF, "Infinity"), (NUMERIC_NINF, "-Infinity")] {
            let data = stream(&[vec![Some(numeric(0, sign, 0, &[]))]]);
            let err = decode(cols.clone(), &data, 4096).unwrap_err();
            let err = err.downcast::<DecodeError>().unwrap();
            assert_eq!(
                err,
                DecodeError::Unrepresentable {
                    column: "price".into(),
                    pg_type: format!("type {}", oid::NUMERIC),
                    value: value.into(),
                    arrow: "Decimal128(10, 2)".into()
                }
            );
        }
        // More decimal places than the scale cannot happen in a typed column; refused if it does.
        let data = stream(&[vec![Some(numeric(-1, NUMERIC_POS, 4, &[1234]))]]);
        assert!(decode(cols, &data, 4096).is_err());
    }

    #[test]
    fn dates_and_timestamps_shift_epochs_and_keep_infinities() {
        assert_eq!(date_to_arrow(0), 10_957);
        assert_eq!(date_to_arrow(i32::MIN), i32::MIN + 1);
        assert_eq!(date_to_arrow(i32::MAX), i32::MAX);
        for d in [0, -2_451_545, 2_145_031_948, i32::MIN, i32::MAX] {
            let back = date_from_arrow(date_to_arrow(d));
            match d {
                i32::MIN => assert_eq!(back, Err(false)),
                i32::MAX => assert_eq!(back, Err(true)),
                _ => assert_eq!(back, Ok(d)),
            }
        }
        assert_eq!(timestamp_to_arrow(0), Ok(PG_EPOCH_US));
        assert_eq!(timestamp_to_arrow(i64::MIN), Ok(i64::MIN + 1));
        assert_eq!(timestamp_to_arrow(i64::MAX), Ok(i64::MAX));
        assert_eq!(timestamp_from_arrow(i64::MIN + 1), Err(false));
        assert_eq!(
            timestamp_from_arrow(timestamp_to_arrow(-211_813_488_000_000_000).unwrap()),
            Ok(-211_813_488_000_000_000)
        );
        // PostgreSQL's last finite timestamp (294276 AD) does not fit after the shift: refused.
        assert!(matches!(timestamp_to_arrow(9_223_371_331_199_999_999), Err(Value::Refused(_))));
        assert!(matches!(timestamp_to_arrow(i64::MAX - PG_EPOCH_US), Err(Value::Refused(_))));
        assert_eq!(timestamp_to_arrow(i64::MAX - PG_EPOCH_US - 1), Ok(i64::MAX - 1));

        let cols = vec![column("d", oid::DATE, -1), column("t", oid::TIMESTAMPTZ, -1)];
        let data = stream(&[vec![Some(i32::MIN.to_be_bytes().to_vec()), Some(i64::MAX.to_be_bytes().to_vec())]]);
        let b = &decode(cols, &data, 5).unwrap()[0];
        assert_eq!(b.column(0).as_primitive::<Date32Type>().value(0), i32::MIN + 1);
        assert_eq!(b.column(1).as_primitive::<TimestampMicrosecondType>().value(0), i64::MAX);
        assert_eq!(b.schema().field(1).data_type().to_string(), "Timestamp(µs, \"UTC\")");
    }

    #[test]
    fn malformed_streams_are_errors() {
        let cols = || vec![column("id", oid::INT8, -1)];
        let good = stream(&[vec![Some(1i64.to_be_bytes().to_vec())]]);
        assert!(decode(cols(), &good[..good.len() - 2], 4096).unwrap_err().to_string().contains("truncated"));
        assert!(decode(cols(), b"id,note\n1,2\n3,4\n5,6\n", 4096).unwrap_err().to_string().contains("signature"));
        let short = stream(&[vec![Some(vec![0, 1])]]);
        assert!(decode(cols(), &short, 4096).unwrap_err().to_string().contains("int8"));
        let two = stream(&[vec![None, None]]);
        assert!(decode(cols(), &two, 4096).unwrap_err().to_string().contains("2 fields"));
        let mut after = good.clone();
        after.push(0);
        assert!(decode(cols(), &after, 4096).is_err());
        let bad_jsonb = stream(&[vec![Some(b"\x02{}".to_vec())]]);
        assert!(decode(vec![column("j", oid::JSONB, -1)], &bad_jsonb, 4096).is_err());
        let bad_utf8 = stream(&[vec![Some(vec![0xff, 0xfe])]]);
        assert!(decode(vec![column("t", oid::TEXT, -1)], &bad_utf8, 4096).is_err());
    }

    #[test]
    fn a_row_larger_than_the_bound_is_refused() {
        let cols = vec![column("t", oid::TEXT, -1)];
        let data = stream(&[vec![Some(vec![b'x'; 1000])]]);
        let mut d = Decoder::new(cols, 500);
        let err = d.feed(&data, &mut |_| Ok(())).unwrap_err().downcast::<DecodeError>().unwrap();
        assert!(matches!(err, DecodeError::RowTooLarge { bound: 500, .. }), "{err}");
    }

    #[test]
    fn batches_are_cut_at_the_row_limit() {
        let rows: Vec<_> = (0..(BATCH_ROWS as i64 + 5)).map(|i| vec![Some(i.to_be_bytes().to_vec())]).collect();
        let batches = decode(vec![column("id", oid::INT8, -1)], &stream(&rows), 65536).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), vec![BATCH_ROWS, 5]);
    }

    #[test]
    fn decimals_carry_precision_and_scale() {
        let cols = vec![column("q", oid::NUMERIC, typmod(38, 18))];
        let data = stream(&[vec![Some(numeric(0, NUMERIC_NEG, 18, &[1, 5000]))]]);
        let b = &decode(cols, &data, 3).unwrap()[0];
        let a = b.column(0).as_primitive::<Decimal128Type>();
        assert_eq!(a.value(0), -1_500_000_000_000_000_000);
        assert_eq!(a.value_as_string(0), "-1.500000000000000000");
    }
}
