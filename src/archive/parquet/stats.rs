//! Verification of a Parquet archive by its statistics: for every column, the null count, min and
//! max that the footers of the archive's objects record (folded over every row group of every
//! object) must equal PostgreSQL's own `count(col)`, `min` and `max` over the partition, computed
//! in one query. Pure: builds the query and compares its answer with the footers.
//!
//! min/max are compared where Parquet's order is PostgreSQL's: integers, decimals, dates,
//! timestamps and times (as integers, the infinity sentinels included: they sort first and last
//! in both), floats (numerically, NaN excluded on both sides: Parquet leaves NaN out of min/max),
//! booleans (min = `bool_and`, max = `bool_or`) and text, varchar and name (byte order, `COLLATE
//! "C"`; a statistic truncated by the writer bounds PostgreSQL's value instead of equalling it).
//! char(n) (blank-padded comparison), json, jsonb, bytea, uuid and text-form columns are checked
//! by null count only.

use super::columns::{oid, ArchiveColumn, Encoding};
use crate::plan::ident::quote_ident;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;
use std::cmp::Ordering;

/// A statistic's value, in the domain both sides are compared in.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Integers, decimals (unscaled), dates (days since 1970), timestamps and times (µs).
    Int(i128),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl Scalar {
    /// None when the two cannot be ordered (different kinds, or a NaN): never taken as equal.
    fn cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(b)),
            (Self::Float(a), Self::Float(b)) => a.partial_cmp(b),
            (Self::Bool(a), Self::Bool(b)) => Some(a.cmp(b)),
            (Self::Bytes(a), Self::Bytes(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// How a column's min/max are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Null count only.
    Nulls,
    /// Null count, and min/max equal (or bounding, for truncated text statistics).
    MinMax,
}

pub fn check_of(column: &ArchiveColumn) -> Check {
    match column.encoding {
        Encoding::Utf8 if column.type_oid == oid::BPCHAR => Check::Nulls,
        Encoding::Json | Encoding::Jsonb | Encoding::Binary | Encoding::Uuid | Encoding::Text => Check::Nulls,
        _ => Check::MinMax,
    }
}

/// The one query over the partition (or over the rows of `condition`: a chunk's ctid range):
/// `count(*)`, then per column `count(col)` and the min and max as int8 / numeric text / float8 /
/// bool / text in the Arrow value domain (NULL where unchecked).
pub fn query(partition_quoted: &str, columns: &[ArchiveColumn], condition: Option<&str>) -> String {
    let mut select = vec!["count(*)::int8".to_string()];
    for c in columns {
        let q = quote_ident(&c.name);
        select.push(format!("count({q})::int8"));
        let (min, max) = match (check_of(c), c.encoding) {
            (Check::Nulls, _) => ("NULL::text".to_string(), "NULL::text".to_string()),
            (_, Encoding::Int16 | Encoding::Int32 | Encoding::Int64) => {
                (format!("min({q})::int8::text"), format!("max({q})::int8::text"))
            }
            (_, Encoding::Decimal { scale, .. }) => {
                let unscaled = |agg: &str| format!("trunc({agg}({q}) * 1e{scale})::text");
                (unscaled("min"), unscaled("max"))
            }
            (_, Encoding::Date) => {
                let days = |agg: &str| {
                    format!(
                        "(CASE {agg}({q}) WHEN 'infinity' THEN {} WHEN '-infinity' THEN {} \
                         ELSE {agg}({q}) - date '1970-01-01' END)::text",
                        i32::MAX,
                        i32::MIN + 1
                    )
                };
                (days("min"), days("max"))
            }
            (_, Encoding::Timestamp | Encoding::TimestampTz) => {
                let us = |agg: &str| {
                    format!(
                        "(CASE WHEN {agg}({q}) = 'infinity' THEN {} WHEN {agg}({q}) = '-infinity' THEN {} \
                         ELSE extract(epoch FROM {agg}({q})) * 1000000 END)::numeric(39,0)::text",
                        i64::MAX,
                        i64::MIN + 1
                    )
                };
                (us("min"), us("max"))
            }
            (_, Encoding::Time) => {
                let us = |agg: &str| format!("(extract(epoch FROM {agg}({q})) * 1000000)::numeric(39,0)::text");
                (us("min"), us("max"))
            }
            (_, Encoding::Float32 | Encoding::Float64) => (
                format!("(min({q}::float8) FILTER (WHERE {q} <> 'NaN'))::text"),
                format!("(max({q}::float8) FILTER (WHERE {q} <> 'NaN'))::text"),
            ),
            (_, Encoding::Bool) => (format!("bool_and({q})::text"), format!("bool_or({q})::text")),
            (_, Encoding::Utf8) => (format!("min({q} COLLATE \"C\")::text"), format!("max({q} COLLATE \"C\")::text")),
            (_, _) => ("NULL::text".to_string(), "NULL::text".to_string()),
        };
        select.push(min);
        select.push(max);
    }
    let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
    // Not ONLY: the rows the COPY reads and `count(*)` counts (a sub-partitioned partition's too).
    format!("SELECT {} FROM {partition_quoted}{filter}", select.join(", "))
}

/// A column's statistics, as PostgreSQL computed them.
#[derive(Debug, Clone, PartialEq)]
pub struct PgStats {
    pub non_null: i64,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// A column's statistics, folded from the footers.
#[derive(Debug, Clone, Default)]
struct Folded {
    nulls: u64,
    min: Option<(Scalar, bool)>,
    max: Option<(Scalar, bool)>,
}

/// Every value of a statistics array (one per row group) as a scalar; None where a row group has
/// none (all its values NULL, or NaN).
fn scalars(array: &ArrayRef) -> Result<Vec<Option<Scalar>>, String> {
    let n = array.len();
    let get = |f: &dyn Fn(usize) -> Scalar| (0..n).map(|i| (!array.is_null(i)).then(|| f(i))).collect();
    Ok(match array.data_type() {
        DataType::Int16 => get(&|i| Scalar::Int(array.as_primitive::<Int16Type>().value(i) as i128)),
        DataType::Int32 => get(&|i| Scalar::Int(array.as_primitive::<Int32Type>().value(i) as i128)),
        DataType::Int64 => get(&|i| Scalar::Int(array.as_primitive::<Int64Type>().value(i) as i128)),
        DataType::Decimal128(..) => get(&|i| Scalar::Int(array.as_primitive::<Decimal128Type>().value(i))),
        DataType::Date32 => get(&|i| Scalar::Int(array.as_primitive::<Date32Type>().value(i) as i128)),
        DataType::Timestamp(..) => {
            get(&|i| Scalar::Int(array.as_primitive::<TimestampMicrosecondType>().value(i) as i128))
        }
        DataType::Time64(..) => get(&|i| Scalar::Int(array.as_primitive::<Time64MicrosecondType>().value(i) as i128)),
        DataType::Float32 => get(&|i| Scalar::Float(array.as_primitive::<Float32Type>().value(i) as f64)),
        DataType::Float64 => get(&|i| Scalar::Float(array.as_primitive::<Float64Type>().value(i))),
        DataType::Boolean => get(&|i| Scalar::Bool(array.as_boolean().value(i))),
        DataType::Utf8 => get(&|i| Scalar::Bytes(array.as_string::<i32>().value(i).as_bytes().to_vec())),
        other => return Err(format!("no statistics comparison for {other}")),
    })
}

/// Folds one footer's per-row-group minimums (`beyond` Less) or maximums (Greater) into `slot`,
/// with whether the value is exact (not truncated).
fn keep_extreme(
    slot: &mut Option<(Scalar, bool)>,
    values: Vec<Option<Scalar>>,
    exact: &arrow_array::BooleanArray,
    beyond: Ordering,
) {
    for (i, v) in values.into_iter().enumerate() {
        let Some(v) = v else { continue };
        if slot.as_ref().is_none_or(|(m, _)| v.cmp(m) == Some(beyond)) {
            *slot = Some((v, !exact.is_null(i) && exact.value(i)));
        }
    }
}

fn fold(metadatas: &[ParquetMetaData], columns: &[ArchiveColumn]) -> Result<(u64, Vec<Folded>), String> {
    let mut rows = 0u64;
    let mut folded = vec![Folded::default(); columns.len()];
    for meta in metadatas {
        let row_groups = meta.row_groups();
        rows += row_groups.iter().map(|rg| rg.num_rows() as u64).sum::<u64>();
        let descr = meta.file_metadata().schema_descr();
        let schema = parquet_to_arrow_schema(descr, meta.file_metadata().key_value_metadata())
            .map_err(|e| format!("the footer's schema: {e}"))?;
        for (c, f) in columns.iter().zip(folded.iter_mut()) {
            let conv = StatisticsConverter::try_new(&c.name, &schema, descr).map_err(|e| format!("{}: {e}", c.name))?;
            let nulls = conv.row_group_null_counts(row_groups.iter()).map_err(|e| e.to_string())?;
            for i in 0..nulls.len() {
                if nulls.is_null(i) {
                    return Err(format!("column {:?}: a row group has no null count", c.name));
                }
                f.nulls += nulls.value(i);
            }
            if check_of(c) == Check::Nulls {
                continue;
            }
            let groups = || row_groups.iter();
            let mins = scalars(&conv.row_group_mins(groups()).map_err(|e| e.to_string())?)?;
            let maxes = scalars(&conv.row_group_maxes(groups()).map_err(|e| e.to_string())?)?;
            let min_exact = conv.row_group_is_min_value_exact(groups()).map_err(|e| e.to_string())?;
            let max_exact = conv.row_group_is_max_value_exact(groups()).map_err(|e| e.to_string())?;
            keep_extreme(&mut f.min, mins, &min_exact, Ordering::Less);
            keep_extreme(&mut f.max, maxes, &max_exact, Ordering::Greater);
        }
    }
    Ok((rows, folded))
}

/// PostgreSQL's text of a min/max (from [`query`]) as a scalar of the column's domain.
fn pg_scalar(encoding: Encoding, text: &str) -> Result<Scalar, String> {
    let bad = || format!("cannot read PostgreSQL's statistic {text:?}");
    Ok(match encoding {
        Encoding::Float32 | Encoding::Float64 => {
            let v: f64 = text.parse().map_err(|_| bad())?;
            // A float4 column's value, as float4 rounds it (the footer holds f32).
            Scalar::Float(if encoding == Encoding::Float32 { v as f32 as f64 } else { v })
        }
        Encoding::Bool => Scalar::Bool(text == "true"),
        Encoding::Utf8 => Scalar::Bytes(text.as_bytes().to_vec()),
        _ => Scalar::Int(text.parse().map_err(|_| bad())?),
    })
}

/// Compares PostgreSQL's statistics (`count(*)` and one [`PgStats`] per column) with the footers
/// of the archive's objects. The error names the first difference.
pub fn compare(
    columns: &[ArchiveColumn],
    metadatas: &[ParquetMetaData],
    pg_rows: i64,
    pg: &[PgStats],
) -> Result<(), String> {
    let (rows, folded) = fold(metadatas, columns)?;
    if rows as i64 != pg_rows {
        return Err(format!("the Parquet footers hold {rows} rows, the table {pg_rows}"));
    }
    for ((c, f), p) in columns.iter().zip(&folded).zip(pg) {
        let pg_nulls = pg_rows - p.non_null;
        if f.nulls as i64 != pg_nulls {
            return Err(format!(
                "column {:?}: {} NULLs in the Parquet statistics, {pg_nulls} in the table",
                c.name, f.nulls
            ));
        }
        if check_of(c) == Check::Nulls {
            continue;
        }
        for (which, stat, pg_text) in [("min", &f.min, &p.min), ("max", &f.max, &p.max)] {
            let pg_value = pg_text.as_deref().map(|t| pg_scalar(c.encoding, t)).transpose()?;
            let ok = match (stat, &pg_value) {
                (None, None) => true,
                (Some((s, true)), Some(v)) => s.cmp(v) == Some(Ordering::Equal),
                // A truncated byte-array statistic bounds the value.
                (Some((s, false)), Some(v)) => match which {
                    "min" => matches!(s.cmp(v), Some(Ordering::Less | Ordering::Equal)),
                    _ => matches!(s.cmp(v), Some(Ordering::Greater | Ordering::Equal)),
                },
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "column {:?} ({}): {which} is {:?} in the Parquet statistics, {:?} in the table",
                    c.name,
                    c.pg_type,
                    stat.as_ref().map(|(s, _)| s),
                    pg_value
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::columns::oid;
    use super::super::decode::SIGNATURE;
    use super::super::read::parse_footer;
    use super::super::write::{ParquetEncoder, WriteOptions};
    use super::*;

    fn column(name: &str, type_oid: u32) -> ArchiveColumn {
        ArchiveColumn {
            name: name.into(),
            pg_type: format!("t{type_oid}"),
            type_oid,
            typmod: -1,
            encoding: Encoding::of(type_oid, -1),
            epoch: None,
        }
    }

    /// A Parquet file of (id int8, x float8, note text) rows.
    fn file(rows: &[(Option<i64>, Option<f64>, Option<&str>)]) -> ParquetMetaData {
        let mut copy = SIGNATURE.to_vec();
        copy.extend_from_slice(&[0; 8]);
        for (id, x, note) in rows {
            copy.extend_from_slice(&3i16.to_be_bytes());
            for v in [
                id.map(|v| v.to_be_bytes().to_vec()),
                x.map(|v| v.to_be_bytes().to_vec()),
                note.map(|n| n.as_bytes().to_vec()),
            ] {
                match v {
                    None => copy.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        copy.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        copy.extend_from_slice(&v);
                    }
                }
            }
        }
        copy.extend_from_slice(&(-1i16).to_be_bytes());
        let options = WriteOptions { columns: columns(), zstd_level: None, row_group_bytes: 1 << 20 };
        let mut enc = ParquetEncoder::new(&options, Vec::new()).unwrap();
        enc.write_all(&copy).unwrap();
        let (out, _, written) = enc.finish().unwrap();
        let parsed = parse_footer(&bytes::Bytes::from(out.clone()), out.len() as u64).unwrap();
        // The footer the encoder hands back (a chunk is checked with it before its object is
        // completed) says what the file's own footer says.
        assert_eq!(written.file_metadata().num_rows(), parsed.file_metadata().num_rows());
        assert_eq!(written.num_row_groups(), parsed.num_row_groups());
        for (w, p) in written.row_groups().iter().zip(parsed.row_groups()) {
            assert_eq!(w.num_rows(), p.num_rows());
            for (wc, pc) in w.columns().iter().zip(p.columns()) {
                let (ws, ps) = (wc.statistics().unwrap(), pc.statistics().unwrap());
                let what = wc.column_path();
                assert_eq!(
                    (ws.min_bytes_opt(), ws.max_bytes_opt()),
                    (ps.min_bytes_opt(), ps.max_bytes_opt()),
                    "{what}"
                );
                assert_eq!(ws.null_count_opt(), ps.null_count_opt(), "{what}");
            }
        }
        parsed
    }

    fn columns() -> Vec<ArchiveColumn> {
        vec![column("id", oid::INT8), column("x", oid::FLOAT8), column("note", oid::TEXT)]
    }

    fn pg(non_null: i64, min: Option<&str>, max: Option<&str>) -> PgStats {
        PgStats { non_null, min: min.map(Into::into), max: max.map(Into::into) }
    }

    #[test]
    fn footers_fold_over_objects_and_match_postgres() {
        let a = file(&[(Some(5), Some(f64::NAN), Some("b")), (None, Some(-0.5), None)]);
        let b = file(&[(Some(-3), Some(2.0), Some("a")), (Some(9), None, Some("c"))]);
        let good = [pg(3, Some("-3"), Some("9")), pg(3, Some("-0.5"), Some("2")), pg(3, Some("a"), Some("c"))];
        assert_eq!(compare(&columns(), &[a.clone(), b.clone()], 4, &good), Ok(()));

        let rows = compare(&columns(), std::slice::from_ref(&a), 4, &good).unwrap_err();
        assert!(rows.contains("2 rows"), "{rows}");
        let mut max = good.clone();
        max[0].max = Some("10".into());
        let err = compare(&columns(), &[a.clone(), b.clone()], 4, &max).unwrap_err();
        assert!(err.contains("\"id\"") && err.contains("max"), "{err}");
        let mut nulls = good.clone();
        nulls[2].non_null = 4;
        assert!(compare(&columns(), &[a.clone(), b.clone()], 4, &nulls).unwrap_err().contains("NULLs"));
        let mut text = good;
        text[2].min = Some("A".into());
        assert!(compare(&columns(), &[a, b], 4, &text).unwrap_err().contains("\"note\""));
    }

    #[test]
    fn the_query_reads_each_column_in_the_statistics_domain() {
        let q = query("\"s\".\"p\"", &columns(), None);
        assert!(q.starts_with("SELECT count(*)::int8, count(\"id\")::int8, min(\"id\")::int8::text"), "{q}");
        assert!(q.contains("FILTER (WHERE \"x\" <> 'NaN')"), "{q}");
        assert!(q.contains("min(\"note\" COLLATE \"C\")"), "{q}");
        assert!(q.ends_with("FROM \"s\".\"p\""), "{q}");
        let json = query("p", &[column("j", oid::JSONB)], None);
        assert!(json.contains("count(\"j\")::int8, NULL::text, NULL::text"), "{json}");
        // A chunk's statistics: the same query over its block range.
        let chunk = query("p", &columns(), Some("ctid >= '(0,0)'::tid AND ctid < '(8,0)'::tid"));
        assert!(chunk.ends_with("FROM p WHERE ctid >= '(0,0)'::tid AND ctid < '(8,0)'::tid"), "{chunk}");
    }
}
