//! Which Arrow type each PostgreSQL column becomes in a Parquet archive, and the schema and
//! key-value metadata that say so. Pure: a function of the columns' type oids and typmods.
//!
//! A column is typed only where every value the PostgreSQL type can hold has an exact Arrow value
//! (or a lossless sentinel, for infinities); every other type travels in PostgreSQL's own text
//! form (`col::text` on the server), which restore feeds back through the type's input function.

use crate::pg::catalog::Column;
use arrow_schema::extension::{Json, Uuid};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Key-value metadata: the archive's columns with their PostgreSQL types and encodings (JSON).
pub const META_COLUMNS: &str = "partition_archiver.columns";
/// Key-value metadata: the version of this file contract.
pub const META_VERSION: &str = "partition_archiver.parquet_version";
pub const PARQUET_VERSION: &str = "1";
/// Field metadata: the column's PostgreSQL type as `format_type` prints it.
pub const FIELD_PG_TYPE: &str = "pg.type";
/// Field metadata of the partition key when it holds time as an integer or a UUIDv7: `seconds`,
/// `milliseconds`, `microseconds` (since 1970-01-01 UTC) or `uuidv7`.
pub const FIELD_EPOCH: &str = "partition_archiver.epoch";

/// The largest precision Decimal128 holds.
pub const MAX_DECIMAL_PRECISION: i32 = 38;

/// How a column's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// text, varchar, char(n) (padding kept), name.
    Utf8,
    Json,
    /// jsonb: its binary form is a version byte and the text.
    Jsonb,
    Binary,
    Uuid,
    /// numeric(p, s) with 1 <= p <= 38 and 0 <= s <= p.
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// Days since 1970-01-01; -infinity = i32::MIN + 1, infinity = i32::MAX.
    Date,
    /// Microseconds since 1970-01-01; -infinity = i64::MIN + 1, infinity = i64::MAX (what DuckDB
    /// reads as the infinities).
    Timestamp,
    TimestampTz,
    /// Microseconds since midnight (24:00:00 included).
    Time,
    /// PostgreSQL's text form of any other type (numeric without a typmod, interval, arrays,
    /// enums, domains, composites, ...), cast on the server.
    Text,
}

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// numeric's (precision, scale) from its typmod (`numeric.c`: `((typmod - VARHDRSZ) >> 16) & 0xffff`
/// and the 11-bit signed scale), or None without one.
pub fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    Some(((t >> 16) & 0xffff, ((t & 0x7ff) ^ 1024) - 1024))
}

impl Encoding {
    /// The encoding of a column of type `type_oid` with `typmod`. Only built-in types are typed (a
    /// domain or a user type has its own oid and goes as text).
    pub fn of(type_oid: u32, typmod: i32) -> Self {
        match type_oid {
            oid::BOOL => Self::Bool,
            oid::INT2 => Self::Int16,
            oid::INT4 => Self::Int32,
            oid::INT8 => Self::Int64,
            oid::FLOAT4 => Self::Float32,
            oid::FLOAT8 => Self::Float64,
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => Self::Utf8,
            oid::JSON => Self::Json,
            oid::JSONB => Self::Jsonb,
            oid::BYTEA => Self::Binary,
            oid::UUID => Self::Uuid,
            oid::DATE => Self::Date,
            oid::TIMESTAMP => Self::Timestamp,
            oid::TIMESTAMPTZ => Self::TimestampTz,
            oid::TIME => Self::Time,
            oid::NUMERIC => match numeric_typmod(typmod) {
                Some((p, s)) if (1..=MAX_DECIMAL_PRECISION).contains(&p) && (0..=p).contains(&s) => {
                    Self::Decimal { precision: p as u8, scale: s as i8 }
                }
                _ => Self::Text,
            },
            _ => Self::Text,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Utf8 | Self::Json | Self::Jsonb | Self::Text => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Uuid => DataType::FixedSizeBinary(16),
            Self::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
        }
    }

    /// Whether the server sends the column's text form (`col::text`) rather than its binary form.
    pub fn cast_to_text(self) -> bool {
        self == Self::Text
    }
}

/// A column of a Parquet archive: what the manifest says, plus how it is encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveColumn {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    pub pg_type: String,
    pub type_oid: u32,
    pub typmod: i32,
    pub encoding: Encoding,
    /// The key's epoch unit, when this column is an integer or UUIDv7 partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<crate::plan::period::Epoch>,
}

/// The archive columns of a manifest's columns; an error if one has no type oid (a manifest
/// written before typed archives: its partition's columns must be read again).
pub fn archive_columns(columns: &[Column]) -> Result<Vec<ArchiveColumn>, String> {
    columns
        .iter()
        .map(|c| match (c.type_oid, c.typmod) {
            (Some(type_oid), Some(typmod)) => Ok(ArchiveColumn {
                name: c.name.clone(),
                pg_type: c.type_name.clone(),
                type_oid,
                typmod,
                encoding: Encoding::of(type_oid, typmod),
                epoch: None,
            }),
            _ => Err(format!("column {:?} has no type oid in the manifest", c.name)),
        })
        .collect()
}

/// The Arrow schema of an archive: every field nullable (NOT NULL is the table's business and
/// restore re-checks it), the PostgreSQL type in each field's metadata, UUID and JSON as Arrow's
/// canonical extension types (which the Parquet writer turns into the UUID and JSON logical types).
pub fn arrow_schema(columns: &[ArchiveColumn]) -> Schema {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let mut metadata = HashMap::from([(FIELD_PG_TYPE.to_string(), c.pg_type.clone())]);
            if let Some(epoch) = c.epoch {
                metadata.insert(FIELD_EPOCH.to_string(), epoch.as_str().to_string());
            }
            let field = Field::new(&c.name, c.encoding.data_type(), true).with_metadata(metadata);
            match c.encoding {
                Encoding::Uuid => field.with_extension_type(Uuid),
                Encoding::Json | Encoding::Jsonb => field.with_extension_type(Json::default()),
                _ => field,
            }
        })
        .collect();
    Schema::new(fields)
}

/// The select list of the COPY that feeds a Parquet archive: each column by name, cast to text
/// where the column is stored in text form.
pub fn select_list(columns: &[ArchiveColumn]) -> String {
    columns
        .iter()
        .map(|c| {
            let name = crate::plan::ident::quote_ident(&c.name);
            if c.encoding.cast_to_text() {
                format!("{name}::text")
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a file's Arrow schema against the columns its manifest records: same names, in order,
/// with the Arrow types the encodings give. The error says what differs.
pub fn check_schema(file: &Schema, columns: &[ArchiveColumn]) -> Result<(), String> {
    if file.fields().len() != columns.len() {
        return Err(format!(
            "the object has {} columns ({}), the manifest {} ({})",
            file.fields().len(),
            file.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
            columns.len(),
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    for (f, c) in file.fields().iter().zip(columns) {
        let want = c.encoding.data_type();
        if f.name() != &c.name || f.data_type() != &want {
            return Err(format!(
                "the object's column {:?} is {}, the manifest's column {:?} ({}) is stored as {want}",
                f.name(),
                f.data_type(),
                c.name,
                c.pg_type
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// typmod of numeric(p, s) as PostgreSQL computes it.
    fn numeric(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn encodings_of_types() {
        let cases = [
            (oid::BOOL, -1, Encoding::Bool),
            (oid::INT2, -1, Encoding::Int16),
            (oid::INT4, -1, Encoding::Int32),
            (oid::INT8, -1, Encoding::Int64),
            (oid::FLOAT4, -1, Encoding::Float32),
            (oid::FLOAT8, -1, Encoding::Float64),
            (oid::TEXT, -1, Encoding::Utf8),
            (oid::VARCHAR, 14, Encoding::Utf8),
            (oid::BPCHAR, 7, Encoding::Utf8),
            (oid::NAME, -1, Encoding::Utf8),
            (oid::JSON, -1, Encoding::Json),
            (oid::JSONB, -1, Encoding::Jsonb),
            (oid::BYTEA, -1, Encoding::Binary),
            (oid::UUID, -1, Encoding::Uuid),
            (oid::DATE, -1, Encoding::Date),
            (oid::TIMESTAMP, 3, Encoding::Timestamp),
            (oid::TIMESTAMPTZ, -1, Encoding::TimestampTz),
            (oid::TIME, -1, Encoding::Time),
            (oid::NUMERIC, -1, Encoding::Text),
            (oid::NUMERIC, numeric(38, 18), Encoding::Decimal { precision: 38, scale: 18 }),
            (oid::NUMERIC, numeric(10, 0), Encoding::Decimal { precision: 10, scale: 0 }),
            (oid::NUMERIC, numeric(39, 2), Encoding::Text),
            (oid::NUMERIC, numeric(5, -2), Encoding::Text),
            (oid::NUMERIC, numeric(3, 5), Encoding::Text),
            (1186, -1, Encoding::Text),   // interval
            (1007, -1, Encoding::Text),   // int4[]
            (18, -1, Encoding::Text),     // "char"
            (16_384, -1, Encoding::Text), // a user's enum or domain
        ];
        for (oid, typmod, want) in cases {
            assert_eq!(Encoding::of(oid, typmod), want, "oid {oid} typmod {typmod}");
        }
        assert_eq!(numeric_typmod(numeric(5, -2)), Some((5, -2)));
        assert_eq!(numeric_typmod(-1), None);
    }

    fn col(name: &str, oid: u32, typmod: i32) -> ArchiveColumn {
        ArchiveColumn {
            name: name.into(),
            pg_type: format!("t{oid}"),
            type_oid: oid,
            typmod,
            encoding: Encoding::of(oid, typmod),
            epoch: None,
        }
    }

    #[test]
    fn select_list_casts_text_form_columns_and_quotes_names() {
        let cols = [col("id", oid::INT8, -1), col("Odd \"name\"", 1186, -1)];
        assert_eq!(select_list(&cols), r#""id", "Odd ""name"""::text"#);
    }

    #[test]
    fn schema_check_names_the_difference() {
        let cols = [col("id", oid::INT8, -1), col("at", oid::TIMESTAMPTZ, -1)];
        let schema = arrow_schema(&cols);
        assert_eq!(check_schema(&schema, &cols), Ok(()));
        assert_eq!(schema.field(1).metadata().get(FIELD_PG_TYPE).map(String::as_str), Some("t1184"));
        let other = [col("id", oid::INT4, -1), col("at", oid::TIMESTAMPTZ, -1)];
        assert!(check_schema(&schema, &other).unwrap_err().contains("\"id\" is Int64"));
        assert!(check_schema(&schema, &cols[..1]).unwrap_err().contains("2 columns"));
        let renamed = [col("id", oid::INT8, -1), col("at2", oid::TIMESTAMPTZ, -1)];
        assert!(check_schema(&schema, &renamed).is_err());
    }
}
