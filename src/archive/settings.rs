//! Archive settings: where and how objects are written. From the environment (and the same keys in
//! the TOML file); per-table `archive_format` / `archive_compression` in part_config override them.

use crate::archive::retrieval::RetrievalSettings;
use crate::error::ConfigError;
use serde::Serialize;

pub const MIB: usize = 1024 * 1024;
/// S3's minimum part size (every part but the last).
pub const MIN_PART_SIZE: usize = 5 * MIB;
/// S3's maximum part count.
pub const MAX_PARTS: usize = 10_000;
/// The smallest `ARCHIVE_CHUNK_SIZE`: below it, per-object and per-stream costs dominate.
pub const MIN_CHUNK_SIZE: u64 = MIB as u64;
/// The largest `ARCHIVE_CHUNK_SIZE`: S3 objects end at 5 TiB, and a chunk's CSV can be larger than
/// its heap (bytea in hex is twice its size; uncompressed archives are the CSV itself), so a chunk
/// of heap may be at most 2 TiB.
pub const MAX_CHUNK_SIZE: u64 = 2 * 1024 * 1024 * MIB as u64;
/// The largest `ARCHIVE_CHUNK_SIZE` in a Lambda: a chunk starts only if it fits the invocation's
/// remaining time at the throughput assumed before any is measured (20 MiB/s, x1.5): 8 GiB takes
/// ~10 minutes at that rate.
pub const MAX_LAMBDA_CHUNK_SIZE: u64 = 8 * 1024 * MIB as u64;
/// The largest `ARCHIVE_STREAMS`; the server's own connection limit is checked at run time.
pub const MAX_STREAMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Binary,
    /// Typed columns (`archive/parquet`), compressed inside the file.
    Parquet,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Csv, Self::Binary, Self::Parquet].into_iter().find(|f| f.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Binary => "binary",
            Self::Parquet => "parquet",
        }
    }
    /// The object name's ending: `.csv.zst`, `.pgcopy.gz`, `.parquet` (a Parquet file compresses
    /// its pages itself; the object is not compressed again).
    pub fn suffix(self, compression: Compression) -> String {
        match self {
            Self::Csv => format!(".csv{}", compression.extension()),
            Self::Binary => format!(".pgcopy{}", compression.extension()),
            Self::Parquet => ".parquet".into(),
        }
    }
    /// Options of the `COPY ... TO STDOUT` that feeds an archive: Parquet is decoded from binary.
    pub fn copy_to_options(self) -> &'static str {
        match self {
            Self::Csv => "(FORMAT csv, HEADER)",
            Self::Binary | Self::Parquet => "(FORMAT binary)",
        }
    }
    /// Options of the `COPY ... FROM STDIN` that restores one: a Parquet object is read back into
    /// CSV rows (no header), so PostgreSQL's input functions rebuild each value.
    pub fn copy_from_options(self) -> &'static str {
        match self {
            Self::Csv => "(FORMAT csv, HEADER)",
            Self::Binary => "(FORMAT binary)",
            Self::Parquet => "(FORMAT csv)",
        }
    }
    /// Whether `compression` can be used with this format.
    pub fn supports(self, compression: Compression) -> bool {
        self != Self::Parquet || compression != Compression::Gzip
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Binary => "application/octet-stream",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Zstd, Self::Gzip, Self::None].into_iter().find(|c| c.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
            Self::None => "none",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zstd => ".zst",
            Self::Gzip => ".gz",
            Self::None => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sse {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS (`aws:kms`), with the bucket's default key when no key id is given.
    Kms { key_id: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    pub days: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSettings {
    pub bucket: String,
    pub prefix: String,
    pub format: Format,
    pub compression: Compression,
    pub compression_level: i32,
    pub part_size: usize,
    pub parts_in_flight: usize,
    pub sse: Sse,
    pub object_lock: Option<ObjectLock>,
    /// How `restore` brings back objects in cold storage.
    pub retrieval: RetrievalSettings,
    /// Seconds between progress log lines of a long stream (`PROGRESS_LOG_SECONDS`).
    pub progress_log_seconds: u64,
    /// Bytes of heap per chunk (`ARCHIVE_CHUNK_SIZE`): a partition larger than this is archived
    /// as several objects, one per ctid block range.
    pub chunk_size: u64,
    /// Chunks archived (and restored) at once, each on its own connection (`ARCHIVE_STREAMS`).
    pub streams: usize,
    /// Parquet row groups are cut when the writer's buffers reach this many bytes
    /// (`ARCHIVE_PARQUET_ROW_GROUP_BYTES`); a row larger than this is refused.
    pub parquet_row_group_bytes: usize,
    /// How long an S3 call may take before it is abandoned (and retried as transient).
    pub s3_timeouts: S3Timeouts,
}

/// Timeouts of every S3 call (the SDK's `TimeoutConfig`), so a connection that goes silent ends
/// the call with a transient error, retried by the SDK and by our own retries, instead of a wait
/// without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct S3Timeouts {
    /// `S3_CONNECT_TIMEOUT_SECONDS` (default 10): to open a connection.
    pub connect: std::time::Duration,
    /// `S3_READ_TIMEOUT_SECONDS` (default 120): from sending a request to the first byte of its
    /// response, so it covers the upload of one part (64 MiB at 1 MB/s is about 64 s), and between
    /// bytes of a response body being read.
    pub read: std::time::Duration,
    /// `S3_ATTEMPT_TIMEOUT_SECONDS` (default 900, a Lambda's whole life): one attempt of one call,
    /// a CompleteMultipartUpload of 10,000 parts included.
    pub attempt: std::time::Duration,
}

impl S3Timeouts {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let secs = |key: &str, default: u64, max: u64| {
            ConfigError::int_setting(get, key, default, 1..=max, "seconds").map(std::time::Duration::from_secs)
        };
        let t = Self {
            connect: secs("S3_CONNECT_TIMEOUT_SECONDS", 10, 300)?,
            read: secs("S3_READ_TIMEOUT_SECONDS", 120, 3600)?,
            attempt: secs("S3_ATTEMPT_TIMEOUT_SECONDS", 900, 43_200)?,
        };
        if t.attempt < t.read || t.attempt < t.connect {
            return Err(ConfigError::invalid(
                "S3_ATTEMPT_TIMEOUT_SECONDS",
                &t.attempt.as_secs().to_string(),
                "at least S3_READ_TIMEOUT_SECONDS and S3_CONNECT_TIMEOUT_SECONDS (an attempt connects and reads)",
            ));
        }
        Ok(t)
    }
}

impl ArchiveSettings {
    /// The format and compression new archives of `policy`'s table get: the table's own
    /// `archive_format` / `archive_compression` first, then these settings. An error when the
    /// pair cannot work (Parquet with gzip, from a table's format and the deployment's
    /// compression), checked before the table's first detach so nothing is detached that could
    /// not be archived.
    pub fn table_format(&self, policy: &crate::plan::policy::TablePolicy) -> Result<(Format, Compression), String> {
        let format = policy.archive_format.as_deref().and_then(Format::parse).unwrap_or(self.format);
        let compression =
            policy.archive_compression.as_deref().and_then(Compression::parse).unwrap_or(self.compression);
        if !format.supports(compression) {
            return Err(format!(
                "{}: archive_format {} does not go with compression {} (a Parquet file compresses its pages with zstd \
                 or not at all): set archive_compression for the table, or ARCHIVE_COMPRESSION; nothing was detached",
                policy.table,
                format.as_str(),
                compression.as_str()
            ));
        }
        Ok((format, compression))
    }

    pub fn progress_log_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.progress_log_seconds)
    }

    /// `None` when `ARCHIVE_BUCKET` is not set: the archiver then creates partitions but never
    /// detaches one that it would have to archive.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(bucket) = get("ARCHIVE_BUCKET").filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let prefix = bucket_and_prefix(&bucket, get)?;
        let (format, compression, compression_level) = encoding(get)?;
        let (part_size, parts_in_flight) = upload_parts(get)?;
        let (sse, object_lock) = protection(get)?;
        let retrieval = RetrievalSettings::from_lookup(get)?;
        // Often enough that CloudWatch shows where a 15-minute invocation is, rarely enough not to
        // matter in the bill.
        let every = |s: &str| s.trim().parse().ok().filter(|n| *n <= 3600);
        let progress_log_seconds =
            setting(get, "PROGRESS_LOG_SECONDS", 30, every, "seconds from 0 (every batch) to 3600")?;
        let chunk_size = chunk_size(get)?;
        // Two: on the 2-core benchmark machine the second stream takes the 5M-row month from 1.39x
        // to 1.22x a raw single COPY (both cores are then busy; BENCHMARKS.md), and two server
        // backends stay a small share of a production database's cores while the application
        // runs. Raise it on a large database with a Lambda of several vCPUs.
        let connections = |s: &str| s.trim().parse().ok().filter(|n| (1..=MAX_STREAMS).contains(n));
        let expected = "1-64 connections (and fewer than the server's max_connections allows)";
        let streams = setting(get, "ARCHIVE_STREAMS", 2, connections, expected)?;
        // 32 MiB: row groups large enough for engines to read in few requests, small enough that
        // two streams stay well under 256 MiB of memory (ARCHITECTURE.md has the sum).
        use crate::archive::parquet::write::{DEFAULT_ROW_GROUP_BYTES, MIN_ROW_GROUP_BYTES};
        let row_group = |s: &str| parse_size(s).filter(|v| (MIN_ROW_GROUP_BYTES..=1024 * MIB).contains(v));
        let expected = "a size from 1MiB to 1GiB, such as 32MiB";
        let parquet_row_group_bytes =
            setting(get, "ARCHIVE_PARQUET_ROW_GROUP_BYTES", DEFAULT_ROW_GROUP_BYTES, row_group, expected)?;
        let s3_timeouts = S3Timeouts::from_lookup(get)?;
        Ok(Some(Self {
            s3_timeouts,
            parquet_row_group_bytes,
            chunk_size,
            streams,
            retrieval,
            progress_log_seconds,
            bucket,
            prefix,
            format,
            compression,
            compression_level,
            part_size,
            parts_in_flight,
            sse,
            object_lock,
        }))
    }

    /// The part size for an object of about `expected_bytes`: the configured size, grown so the
    /// object never needs more than 10,000 parts.
    pub fn part_size_for(&self, expected_bytes: u64) -> usize {
        let needed = expected_bytes.div_ceil((MAX_PARTS - 100) as u64) as usize;
        self.part_size.max(needed.next_multiple_of(MIB))
    }
}

/// `key`'s value as `parse` reads it, or `default` when it is not set; a value `parse` refuses is
/// an error that says what was `expected`.
fn setting<T>(
    get: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<T, ConfigError> {
    get(key).map_or(Ok(default), |s| parse(&s).ok_or_else(|| ConfigError::invalid(key, &s, expected)))
}

/// `16MiB`, `8388608`, `5mb` (MB and MiB both mean 2^20 here).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `ARCHIVE_BUCKET` checked as an S3 bucket name, and `ARCHIVE_PREFIX` (default
/// `partition-archiver`, without surrounding slashes).
fn bucket_and_prefix(bucket: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    if !(3..=63).contains(&bucket.len())
        || !bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(ConfigError::invalid("ARCHIVE_BUCKET", bucket, "an S3 bucket name (3-63 of a-z 0-9 . -)"));
    }
    let prefix = get("ARCHIVE_PREFIX").unwrap_or_else(|| "partition-archiver".into()).trim_matches('/').to_string();
    if prefix.contains("..") || prefix.chars().any(char::is_control) {
        return Err(ConfigError::invalid("ARCHIVE_PREFIX", &prefix, "a key prefix without '..' or control characters"));
    }
    Ok(prefix)
}

/// `ARCHIVE_FORMAT`, `ARCHIVE_COMPRESSION` and `ARCHIVE_COMPRESSION_LEVEL`, checked together.
fn encoding(get: &dyn Fn(&str) -> Option<String>) -> Result<(Format, Compression, i32), ConfigError> {
    let format = setting(get, "ARCHIVE_FORMAT", Format::Csv, Format::parse, "csv, binary or parquet")?;
    let compression = setting(get, "ARCHIVE_COMPRESSION", Compression::Zstd, Compression::parse, "zstd, gzip or none")?;
    if !format.supports(compression) {
        return Err(ConfigError::invalid(
            "ARCHIVE_COMPRESSION",
            compression.as_str(),
            "zstd or none with ARCHIVE_FORMAT=parquet (pages are compressed inside the file)",
        ));
    }
    let compression_level = match get("ARCHIVE_COMPRESSION_LEVEL") {
        // zstd 1, not zstd's own default of 3: measured on the benchmark's CSV partitions
        // (random trades, and orders with sequential ids and timestamps), level 1 gave the
        // smaller object (214 vs 232 MB; 43 vs 47 MB) for about half the CPU, and compression
        // shares the one or two cores of a Lambda with COPY parsing, TLS and hashing
        // (BENCHMARKS.md). Higher levels remain a setting away.
        None => match compression {
            Compression::Gzip => 6,
            _ => 1,
        },
        Some(l) => {
            let v: i32 = l.parse().map_err(|_| ConfigError::invalid("ARCHIVE_COMPRESSION_LEVEL", &l, "an integer"))?;
            let ok = match compression {
                Compression::Zstd => (1..=19).contains(&v),
                Compression::Gzip => (1..=9).contains(&v),
                Compression::None => true,
            };
            if !ok {
                return Err(ConfigError::invalid("ARCHIVE_COMPRESSION_LEVEL", &l, "1-19 for zstd, 1-9 for gzip"));
            }
            v
        }
    };
    Ok((format, compression, compression_level))
}

/// `ARCHIVE_PART_SIZE` and `ARCHIVE_PARTS_IN_FLIGHT`.
fn upload_parts(get: &dyn Fn(&str) -> Option<String>) -> Result<(usize, usize), ConfigError> {
    let expected = "a size such as 16MiB (at least 5MiB, at most 5GiB)";
    let part_size = setting(get, "ARCHIVE_PART_SIZE", 16 * MIB, parse_size, expected)?;
    if !(MIN_PART_SIZE..=5 * 1024 * MIB).contains(&part_size) {
        return Err(ConfigError::invalid(
            "ARCHIVE_PART_SIZE",
            &part_size.to_string(),
            "at least 5MiB (S3's minimum part size) and at most 5GiB",
        ));
    }
    // One part uploads while the next fills: enough when S3 is faster than compression (measured
    // against LocalStack: 16 MiB in 130-200 ms vs ~400 ms to fill), and it keeps peak memory near
    // 2 x part size. Raise it when the network is the bottleneck.
    let in_flight = |s: &str| s.parse().ok().filter(|n| (1..=64).contains(n));
    let parts_in_flight = setting(get, "ARCHIVE_PARTS_IN_FLIGHT", 1, in_flight, "1-64")?;
    Ok((part_size, parts_in_flight))
}

/// `ARCHIVE_SSE` (and `ARCHIVE_KMS_KEY_ID`), and the Object Lock pair.
fn protection(get: &dyn Fn(&str) -> Option<String>) -> Result<(Sse, Option<ObjectLock>), ConfigError> {
    let sse = match get("ARCHIVE_SSE").as_deref() {
        None | Some("AES256") | Some("aes256") => Sse::Aes256,
        Some("aws:kms") | Some("kms") => Sse::Kms { key_id: get("ARCHIVE_KMS_KEY_ID").filter(|k| !k.is_empty()) },
        Some(other) => {
            return Err(ConfigError::invalid(
                "ARCHIVE_SSE",
                other,
                "AES256 or aws:kms (server-side encryption is always on)",
            ))
        }
    };
    let object_lock = match (get("ARCHIVE_OBJECT_LOCK_MODE"), get("ARCHIVE_OBJECT_LOCK_DAYS")) {
        (None, None) => None,
        (Some(mode), Some(days)) => {
            let mode = mode.to_ascii_uppercase();
            if mode != "GOVERNANCE" && mode != "COMPLIANCE" {
                return Err(ConfigError::invalid("ARCHIVE_OBJECT_LOCK_MODE", &mode, "GOVERNANCE or COMPLIANCE"));
            }
            let days = days
                .parse()
                .ok()
                .filter(|d| (1..=36500).contains(d))
                .ok_or_else(|| ConfigError::invalid("ARCHIVE_OBJECT_LOCK_DAYS", &days, "1-36500"))?;
            Some(ObjectLock { mode, days })
        }
        _ => {
            return Err(ConfigError::Missing(
                "ARCHIVE_OBJECT_LOCK_MODE and ARCHIVE_OBJECT_LOCK_DAYS go together".into(),
            ))
        }
    };
    Ok((sse, object_lock))
}

/// `ARCHIVE_CHUNK_SIZE`, bounded tighter in a Lambda.
fn chunk_size(get: &dyn Fn(&str) -> Option<String>) -> Result<u64, ConfigError> {
    Ok(match get("ARCHIVE_CHUNK_SIZE") {
        // 256 MiB of heap: the benchmark's 5M-row month (483 MiB) becomes two chunks, so the
        // default two streams use two server cores; a chunk takes ~3 s per stream at the
        // measured ~100 MB/s (little is redone after a kill or a deadline); and its object is
        // ~30 MiB of CSV.zst, a file size query engines read well. BENCHMARKS.md has the figures.
        None => 256 * MIB as u64,
        Some(s) => {
            let v = parse_size(&s)
                .ok_or_else(|| ConfigError::invalid("ARCHIVE_CHUNK_SIZE", &s, "a size such as 256MiB or 1GiB"))?
                as u64;
            // In a Lambda, one chunk must fit in one 15-minute invocation even at the low
            // throughput a run assumes before it has measured any (plan::chunks): 8 GiB.
            if get("AWS_LAMBDA_RUNTIME_API").is_some() && v > MAX_LAMBDA_CHUNK_SIZE {
                return Err(ConfigError::invalid(
                    "ARCHIVE_CHUNK_SIZE",
                    &s,
                    "at most 8GiB in a Lambda (one chunk must fit in one 15-minute invocation)",
                ));
            }
            if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&v) {
                return Err(ConfigError::invalid(
                    "ARCHIVE_CHUNK_SIZE",
                    &s,
                    "at least 1MiB and at most 2TiB of heap (one chunk's object must stay under S3's 5 TiB limit)",
                ));
            }
            v
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Option<ArchiveSettings>, ConfigError> {
        ArchiveSettings::from_lookup(&crate::error::lookup_of(vars))
    }

    /// The settings of `vars` with `ARCHIVE_BUCKET=b-1` unless they name a bucket.
    fn in_bucket(vars: &[(&str, &str)]) -> Result<Option<ArchiveSettings>, ConfigError> {
        parse(&[&[("ARCHIVE_BUCKET", "b-1")], vars].concat())
    }

    #[test]
    fn defaults_and_validation() {
        assert!(parse(&[]).unwrap().is_none());
        let s = parse(&[("ARCHIVE_BUCKET", "my-archive")]).unwrap().unwrap();
        assert_eq!(
            (s.format, s.compression, s.compression_level, s.part_size, s.sse.clone()),
            (Format::Csv, Compression::Zstd, 1, 16 * MIB, Sse::Aes256)
        );
        assert_eq!(s.prefix, "partition-archiver");
        assert_eq!((s.chunk_size, s.streams), (256 * MIB as u64, 2));
        let secs = std::time::Duration::from_secs;
        assert_eq!(s.s3_timeouts, S3Timeouts { connect: secs(10), read: secs(120), attempt: secs(900) });
        let s = in_bucket(&[
            ("S3_CONNECT_TIMEOUT_SECONDS", "2"),
            ("S3_READ_TIMEOUT_SECONDS", "5"),
            ("S3_ATTEMPT_TIMEOUT_SECONDS", "5"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((s.s3_timeouts.read, s.s3_timeouts.attempt), (secs(5), secs(5)));
        let s = in_bucket(&[("ARCHIVE_CHUNK_SIZE", "1MiB"), ("ARCHIVE_STREAMS", "4")]).unwrap().unwrap();
        assert_eq!((s.chunk_size, s.streams), (MIB as u64, 4));
        assert!(in_bucket(&[("ARCHIVE_CHUNK_SIZE", "2TiB")]).is_err(), "no TiB unit");
        assert!(in_bucket(&[("ARCHIVE_CHUNK_SIZE", "2048GiB")]).unwrap().is_some());
        let bad: &[(&[(&str, &str)], &str)] = &[
            (&[("ARCHIVE_BUCKET", "Bad_Bucket")], "ARCHIVE_BUCKET"),
            (&[("S3_CONNECT_TIMEOUT_SECONDS", "0")], "S3_CONNECT_TIMEOUT_SECONDS"),
            (&[("S3_READ_TIMEOUT_SECONDS", "-1")], "S3_READ_TIMEOUT_SECONDS"),
            (&[("S3_READ_TIMEOUT_SECONDS", "3601")], "S3_READ_TIMEOUT_SECONDS"),
            (&[("S3_ATTEMPT_TIMEOUT_SECONDS", "1e9")], "S3_ATTEMPT_TIMEOUT_SECONDS"),
            (&[("S3_ATTEMPT_TIMEOUT_SECONDS", "60")], "S3_ATTEMPT_TIMEOUT_SECONDS"),
            (&[("ARCHIVE_FORMAT", "orc")], "ARCHIVE_FORMAT"),
            (&[("ARCHIVE_FORMAT", "parquet"), ("ARCHIVE_COMPRESSION", "gzip")], "ARCHIVE_COMPRESSION"),
            (&[("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "512KiB")], "ARCHIVE_PARQUET_ROW_GROUP_BYTES"),
            (&[("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "lots")], "ARCHIVE_PARQUET_ROW_GROUP_BYTES"),
            (&[("ARCHIVE_COMPRESSION", "lz4")], "ARCHIVE_COMPRESSION"),
            (&[("ARCHIVE_COMPRESSION_LEVEL", "42")], "ARCHIVE_COMPRESSION_LEVEL"),
            (&[("ARCHIVE_PART_SIZE", "1MiB")], "at least 5MiB"),
            (&[("ARCHIVE_PART_SIZE", "lots")], "ARCHIVE_PART_SIZE"),
            (&[("ARCHIVE_SSE", "none")], "ARCHIVE_SSE"),
            (&[("ARCHIVE_OBJECT_LOCK_MODE", "forever"), ("ARCHIVE_OBJECT_LOCK_DAYS", "3")], "GOVERNANCE or COMPLIANCE"),
            (&[("ARCHIVE_OBJECT_LOCK_DAYS", "3")], "go together"),
            (&[("ARCHIVE_PREFIX", "a/../b")], "ARCHIVE_PREFIX"),
            (&[("ARCHIVE_CHUNK_SIZE", "0")], "at least 1MiB"),
            (&[("ARCHIVE_CHUNK_SIZE", "512KiB")], "at least 1MiB"),
            (&[("ARCHIVE_CHUNK_SIZE", "3000GiB")], "5 TiB"),
            (&[("ARCHIVE_CHUNK_SIZE", "big")], "ARCHIVE_CHUNK_SIZE"),
            (&[("ARCHIVE_STREAMS", "0")], "ARCHIVE_STREAMS"),
            (
                &[("ARCHIVE_CHUNK_SIZE", "16GiB"), ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")],
                "at most 8GiB in a Lambda",
            ),
            (&[("ARCHIVE_STREAMS", "65")], "ARCHIVE_STREAMS"),
            (&[("ARCHIVE_STREAMS", "-1")], "ARCHIVE_STREAMS"),
        ];
        for (vars, needle) in bad {
            let e = in_bucket(vars).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
        let s = in_bucket(&[
            ("ARCHIVE_SSE", "aws:kms"),
            ("ARCHIVE_KMS_KEY_ID", "k1"),
            ("ARCHIVE_PART_SIZE", "8MiB"),
            ("ARCHIVE_OBJECT_LOCK_MODE", "compliance"),
            ("ARCHIVE_OBJECT_LOCK_DAYS", "365"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.sse, Sse::Kms { key_id: Some("k1".into()) });
        assert_eq!(s.part_size, 8 * MIB);
        assert_eq!(s.object_lock, Some(ObjectLock { mode: "COMPLIANCE".into(), days: 365 }));
    }

    #[test]
    fn part_size_grows_to_stay_under_10000_parts() {
        let s = in_bucket(&[]).unwrap().unwrap();
        assert_eq!(s.part_size_for(1 << 30), 16 * MIB);
        let huge = 1u64 << 40; // 1 TiB
        let p = s.part_size_for(huge);
        assert!(huge.div_ceil(p as u64) <= MAX_PARTS as u64, "{p}");
        assert_eq!(parse_size("16MiB"), Some(16 * MIB));
        assert_eq!(parse_size("5242880"), Some(5 * MIB));
    }
}
