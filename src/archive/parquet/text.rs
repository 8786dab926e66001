//! Arrow values back to PostgreSQL's text input forms, as CSV rows for `COPY ... FROM STDIN (FORMAT
//! csv)`: the restore of a Parquet archive goes through PostgreSQL's own input functions, exactly
//! like a CSV archive's. Pure.
//!
//! Every form is one PostgreSQL reads back to the same value: floats in Rust's shortest
//! round-trip form (with NaN, Infinity, -Infinity), decimals at their scale, dates and timestamps
//! in ISO form with ` BC` for years before 1, the infinity sentinels as `infinity`/`-infinity`.
//! Strings are always quoted, so an empty string differs from NULL (an unquoted empty field).

use super::columns::Encoding;
use super::decode::{date_from_arrow, timestamp_from_arrow};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use std::io::Write;

const US_PER_DAY: i64 = 86_400_000_000;

/// Appends the batch's rows to `out` as CSV lines (no header).
pub fn csv_rows(batch: &RecordBatch, encodings: &[Encoding], out: &mut Vec<u8>) {
    for row in 0..batch.num_rows() {
        for (i, (array, encoding)) in batch.columns().iter().zip(encodings).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if array.is_null(row) {
                continue;
            }
            field(array.as_ref(), *encoding, row, out);
        }
        out.push(b'\n');
    }
}

fn field(array: &dyn Array, encoding: Encoding, row: usize, out: &mut Vec<u8>) {
    // Writes into a Vec cannot fail.
    match encoding {
        Encoding::Bool => out.push(if array.as_boolean().value(row) { b't' } else { b'f' }),
        Encoding::Int16 => write!(out, "{}", array.as_primitive::<Int16Type>().value(row)).expect("vec"),
        Encoding::Int32 => write!(out, "{}", array.as_primitive::<Int32Type>().value(row)).expect("vec"),
        Encoding::Int64 => write!(out, "{}", array.as_primitive::<Int64Type>().value(row)).expect("vec"),
        Encoding::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64, true, out),
        Encoding::Float64 => float(array.as_primitive::<Float64Type>().value(row), false, out),
        Encoding::Utf8 | Encoding::Json | Encoding::Jsonb | Encoding::Text => {
            quoted(array.as_string::<i32>().value(row).as_bytes(), out)
        }
        Encoding::Binary => {
            out.extend_from_slice(b"\\x");
            out.extend_from_slice(hex::encode(array.as_binary::<i32>().value(row)).as_bytes());
        }
        Encoding::Uuid => {
            let h = hex::encode(array.as_fixed_size_binary().value(row));
            write!(out, "{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]).expect("vec");
        }
        Encoding::Decimal { precision, scale } => {
            let v = array.as_primitive::<Decimal128Type>().value(row);
            out.extend_from_slice(decimal(v, precision, scale).as_bytes());
        }
        Encoding::Date => match date_from_arrow(array.as_primitive::<Date32Type>().value(row)) {
            Ok(pg_days) => date(pg_days as i64 + super::decode::PG_EPOCH_DAYS as i64, out),
            Err(positive) => infinity(positive, out),
        },
        Encoding::Timestamp | Encoding::TimestampTz => {
            match timestamp_from_arrow(array.as_primitive::<TimestampMicrosecondType>().value(row)) {
                Ok(pg_us) => {
                    let us = pg_us as i128 + super::decode::PG_EPOCH_US as i128;
                    timestamp(us, encoding == Encoding::TimestampTz, out)
                }
                Err(positive) => infinity(positive, out),
            }
        }
        Encoding::Time => time_of_day(array.as_primitive::<Time64MicrosecondType>().value(row), out),
    }
}

fn infinity(positive: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if positive { b"infinity" } else { b"-infinity" });
}

/// Shortest round-trip digits (`{:e}` of the value's own width: an f32 prints as an f32).
fn float(v: f64, single: bool, out: &mut Vec<u8>) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        infinity(v > 0.0, out);
        // PostgreSQL spells them Infinity / -Infinity (and reads either case).
    } else if single {
        write!(out, "{:e}", v as f32).expect("vec");
    } else {
        write!(out, "{v:e}").expect("vec");
    }
}

/// A decimal at its scale, as numeric's output prints it.
pub fn decimal(v: i128, precision: u8, scale: i8) -> String {
    use arrow_array::types::DecimalType;
    Decimal128Type::format_decimal(v, precision, scale)
}

fn quoted(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// (year, month, day) of the proleptic Gregorian calendar for days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`), astronomical years (0 = 1 BC): valid far beyond PostgreSQL's
/// range, where chrono stops at ±262143.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD`, then `suffix`, then ` BC` for astronomical years <= 0.
fn civil(days: i64, suffix: impl FnOnce(&mut Vec<u8>), out: &mut Vec<u8>) {
    let (y, m, d) = civil_from_days(days);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    write!(out, "{year:04}-{m:02}-{d:02}").expect("vec");
    suffix(out);
    if bc {
        out.extend_from_slice(b" BC");
    }
}

fn date(days_since_1970: i64, out: &mut Vec<u8>) {
    civil(days_since_1970, |_| {}, out)
}

fn timestamp(us_since_1970: i128, tz: bool, out: &mut Vec<u8>) {
    let (days, rem) = (us_since_1970.div_euclid(US_PER_DAY as i128), us_since_1970.rem_euclid(US_PER_DAY as i128));
    civil(
        days as i64,
        |out| {
            out.push(b' ');
            time_of_day(rem as i64, out);
            if tz {
                out.extend_from_slice(b"+00");
            }
        },
        out,
    )
}

fn time_of_day(us: i64, out: &mut Vec<u8>) {
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    write!(out, "{:02}:{:02}:{:02}.{frac:06}", secs / 3600, secs / 60 % 60, secs % 60).expect("vec");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn civil_dates_agree_with_chrono_where_it_reaches() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let days = rng.i64(-95_000_000..95_000_000);
            let d = epoch + chrono::Duration::days(days);
            assert_eq!(civil_from_days(days), (d.year() as i64, d.month(), d.day()), "{days}");
        }
    }

    #[test]
    fn postgres_text_forms() {
        assert_eq!(text(|o| date(0, o)), "1970-01-01");
        // Julian day 0, PostgreSQL's first date: 4714-11-24 BC in the proleptic Gregorian calendar.
        assert_eq!(text(|o| date(-2_440_588, o)), "4714-11-24 BC");
        assert_eq!(text(|o| date(-719_163, o)), "0001-12-31 BC");
        assert_eq!(text(|o| timestamp(1_500_000, true, o)), "1970-01-01 00:00:01.500000+00");
        assert_eq!(text(|o| timestamp(-1, false, o)), "1969-12-31 23:59:59.999999");
        assert_eq!(text(|o| time_of_day(86_400_000_000, o)), "24:00:00.000000");
        assert_eq!(text(|o| float(f64::NAN, false, o)), "NaN");
        assert_eq!(text(|o| float(f64::NEG_INFINITY, false, o)), "-infinity");
        assert_eq!(text(|o| float(-0.0, false, o)), "-0e0");
        assert_eq!(text(|o| float(0.1, false, o)), "1e-1");
        assert_eq!(text(|o| float(0.1f32 as f64, true, o)), "1e-1");
        assert_eq!(text(|o| quoted(b"a\"b,\n", o)), "\"a\"\"b,\n\"");
        assert_eq!(decimal(-1, 10, 2), "-0.01");
        assert_eq!(decimal(10i128.pow(38) - 1, 38, 18), "99999999999999999999.999999999999999999");
    }
}
