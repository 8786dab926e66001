//! Settings: environment first (Lambda's way), then an optional TOML file for the CLI whose keys
//! are the same names (`DATABASE_URL = "..."`, `ARCHIVE_BUCKET = "..."`). Parsed in two steps: raw
//! strings from a lookup function, then typed and validated, so parsing is tested from strings.

use crate::archive::settings::ArchiveSettings;
use crate::error::ConfigError;
use crate::pg::connect::DbConfig;
use crate::pg::ddl::DdlOptions;
use crate::retry::RetryPolicy;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub db: DbConfig,
    pub ddl: DdlOptions,
    pub archive: Option<ArchiveSettings>,
    /// Schema that `restore` writes into when none is given (`RESTORE_SCHEMA`, default `archive_restore`).
    pub restore_schema: String,
    /// `MAINTAIN_TABLES`: tables a run without an explicit table list maintains (default: every
    /// enabled table in part_config). A listed partitioned table that part_config does not know
    /// yet is registered with the `DEFAULT_*` policy below.
    pub maintain_tables: Vec<crate::plan::ident::QualifiedName>,
    /// `DEFAULT_RETENTION`, `DEFAULT_PREMAKE`, `DEFAULT_TIME_ZONE`, `DEFAULT_INTERVAL`,
    /// `DEFAULT_PARTITION_COLUMN`: the policy given to tables registered that way.
    pub register_defaults: crate::plan::policy::RawPolicy,
    /// `PARTITION_SIZE_WARN_BYTES`: `status` flags partitions larger than this.
    pub partition_size_warn_bytes: Option<i64>,
    /// `METRICS`: where CloudWatch EMF lines go (`stdout` in Lambda, `stderr` on the CLI, `off`).
    pub metrics: crate::aws::metrics::MetricsSink,
    /// `STALE_LOCK_SECONDS`: a partition-archiver run whose sessions all stayed idle this long
    /// while one of them holds a lock has vanished; the next run terminates it (`pg::lock`).
    pub stale_lock: Duration,
}

impl Settings {
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lock_timeout_ms = int(get, "LOCK_TIMEOUT_MS", 2000, 1..=600_000)?;
        let attempts = int(get, "DDL_MAX_ATTEMPTS", 5, 1..=50)?;
        let restore_schema = get("RESTORE_SCHEMA").unwrap_or_else(|| "archive_restore".into());
        crate::plan::ident::validate_ident(&restore_schema)
            .map_err(|e| ConfigError::invalid("RESTORE_SCHEMA", &restore_schema, &e.to_string()))?;
        let maintain_tables = match get("MAINTAIN_TABLES").filter(|s| !s.trim().is_empty()) {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(|t| {
                    crate::plan::ident::QualifiedName::parse(t.trim())
                        .map_err(|e| ConfigError::invalid("MAINTAIN_TABLES", t, &e.to_string()))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut defaults = crate::plan::policy::RawPolicy::defaults("public", "x");
        defaults.retention = Some(int(get, "DEFAULT_RETENTION", 6, 1..=1200)? as i32);
        defaults.premake = int(get, "DEFAULT_PREMAKE", 2, 0..=120)? as i32;
        if let Some(tz) = get("DEFAULT_TIME_ZONE") {
            tz.parse::<chrono_tz::Tz>()
                .map_err(|_| ConfigError::invalid("DEFAULT_TIME_ZONE", &tz, "an IANA time zone such as UTC"))?;
            defaults.time_zone = tz;
        }
        if let Some(i) = get("DEFAULT_INTERVAL") {
            crate::plan::period::Interval::parse(&i)
                .ok_or_else(|| ConfigError::invalid("DEFAULT_INTERVAL", &i, "day, week, month, quarter or year"))?;
            defaults.partition_interval = i;
        }
        if let Some(c) = get("DEFAULT_PARTITION_COLUMN") {
            crate::plan::ident::validate_ident(&c)
                .map_err(|e| ConfigError::invalid("DEFAULT_PARTITION_COLUMN", &c, &e.to_string()))?;
            defaults.partition_column = c;
        }
        let partition_size_warn_bytes = match get("PARTITION_SIZE_WARN_BYTES").filter(|s| !s.is_empty()) {
            None => None,
            Some(v) => Some(
                crate::archive::settings::parse_size(&v)
                    .ok_or_else(|| ConfigError::invalid("PARTITION_SIZE_WARN_BYTES", &v, "a size such as 100GiB"))?
                    as i64,
            ),
        };
        let stale_lock = stale_lock_seconds(get)?;
        let lambda = get("AWS_LAMBDA_RUNTIME_API").is_some();
        let metrics = match get("METRICS") {
            None => crate::aws::metrics::MetricsSink::default_for(lambda, false),
            Some(m) => crate::aws::metrics::MetricsSink::parse(&m)
                .ok_or_else(|| ConfigError::invalid("METRICS", &m, "stdout, stderr or off"))?,
        };
        Ok(Self {
            maintain_tables,
            register_defaults: defaults,
            partition_size_warn_bytes,
            metrics,
            stale_lock,
            db: DbConfig::from_lookup(get)?,
            ddl: DdlOptions {
                lock_timeout: Duration::from_millis(lock_timeout_ms),
                retry: RetryPolicy { max_attempts: attempts as u32, ..RetryPolicy::default() },
            },
            archive: ArchiveSettings::from_lookup(get)?,
            restore_schema,
        })
    }

    /// From the process environment, then `file` (TOML) for keys the environment does not set.
    /// On AWS, `DB_SECRET_ARN` (and `DB_IAM_AUTH`) replace the connection settings.
    pub async fn load(file: Option<&Path>) -> Result<Self, crate::error::Error> {
        let from_file = match file {
            Some(p) => read_toml(p)?,
            None => HashMap::new(),
        };
        let get = |k: &str| std::env::var(k).ok().or_else(|| from_file.get(k).cloned());
        let mut settings = Self::from_lookup(&get)?;
        if get("METRICS").is_none() {
            use std::io::IsTerminal;
            let lambda = get("AWS_LAMBDA_RUNTIME_API").is_some();
            settings.metrics = crate::aws::metrics::MetricsSink::default_for(lambda, std::io::stderr().is_terminal());
        }
        settings.db = crate::aws::secrets::resolve_db(&get, settings.db).await?;
        Ok(settings)
    }
}

fn int(
    get: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    ConfigError::int_setting(get, key, default, range, "an integer")
}

/// `STALE_LOCK_SECONDS`: never below four lease intervals (a live run beats every 15 s, so it is
/// never idle that long), at most a day.
fn stale_lock_seconds(get: &dyn Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    use crate::pg::lock::{DEFAULT_STALE_LOCK_S, MAX_STALE_LOCK_S, MIN_STALE_LOCK_S};
    let Some(v) = get("STALE_LOCK_SECONDS") else { return Ok(Duration::from_secs(DEFAULT_STALE_LOCK_S)) };
    match v.trim().parse::<u64>() {
        Ok(n) if (MIN_STALE_LOCK_S..=MAX_STALE_LOCK_S).contains(&n) => Ok(Duration::from_secs(n)),
        Ok(n) if n < MIN_STALE_LOCK_S => Err(ConfigError::invalid(
            "STALE_LOCK_SECONDS",
            &v,
            &format!(
                "at least {MIN_STALE_LOCK_S}: a live run runs a statement every {} s, and a threshold this close \
                 to that gap would take live runs for vanished ones",
                crate::pg::lease::LEASE_INTERVAL.as_secs()
            ),
        )),
        _ => Err(ConfigError::invalid(
            "STALE_LOCK_SECONDS",
            &v,
            &format!("seconds in {MIN_STALE_LOCK_S}..={MAX_STALE_LOCK_S}"),
        )),
    }
}

fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let err = |message: String| ConfigError::File { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    // Not the parser's Display, which quotes the offending line: a line that may hold a password.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| {
            let before = &text[..s.start];
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {}, column {column}: ", before.matches('\n').count() + 1)
        });
        err(format!("{}{}", at.unwrap_or_default(), e.message()))
    })?;
    let mut out = HashMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(err(format!("{k}: expected a string or number, got {}", other.type_str()))),
        };
        out.insert(k.to_ascii_uppercase(), s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(&crate::error::lookup_of(vars))
    }

    #[test]
    fn defaults_and_bad_values() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.ddl.lock_timeout, Duration::from_secs(2));
        assert_eq!(s.ddl.retry.max_attempts, 5);
        assert!(s.archive.is_none());
        assert_eq!(s.restore_schema, "archive_restore");
        assert_eq!(s.stale_lock, Duration::from_secs(300));
        assert_eq!(parse(&[("STALE_LOCK_SECONDS", "60")]).unwrap().stale_lock, Duration::from_secs(60));
        let e = parse(&[("STALE_LOCK_SECONDS", "59")]).unwrap_err().to_string();
        assert!(e.contains("would take live runs for vanished ones"), "{e}");
        assert_eq!(parse(&[("LOCK_TIMEOUT_MS", "250")]).unwrap().ddl.lock_timeout, Duration::from_millis(250));
        let s = parse(&[
            ("MAINTAIN_TABLES", "public.trades, orders"),
            ("DEFAULT_RETENTION", "12"),
            ("DEFAULT_TIME_ZONE", "Europe/London"),
            ("PARTITION_SIZE_WARN_BYTES", "100GiB"),
            ("METRICS", "off"),
        ])
        .unwrap();
        assert_eq!(s.maintain_tables.len(), 2);
        assert_eq!(
            (s.register_defaults.retention, s.register_defaults.time_zone.as_str()),
            (Some(12), "Europe/London")
        );
        assert_eq!(s.partition_size_warn_bytes, Some(100 << 30));
        assert_eq!(s.metrics, crate::aws::metrics::MetricsSink::Off);
        for (k, v) in [
            ("LOCK_TIMEOUT_MS", "0"),
            ("LOCK_TIMEOUT_MS", "soon"),
            ("DDL_MAX_ATTEMPTS", "1000"),
            ("RESTORE_SCHEMA", ""),
            ("MAINTAIN_TABLES", "a.b.c"),
            ("DEFAULT_RETENTION", "0"),
            ("DEFAULT_TIME_ZONE", "Nowhere/Land"),
            ("DEFAULT_INTERVAL", "fortnight"),
            ("PARTITION_SIZE_WARN_BYTES", "huge"),
            ("METRICS", "loud"),
            ("STALE_LOCK_SECONDS", "0"),
            ("STALE_LOCK_SECONDS", "-300"),
            ("STALE_LOCK_SECONDS", "30"),
            ("STALE_LOCK_SECONDS", "86401"),
            ("STALE_LOCK_SECONDS", "soon"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn toml_file_fills_in_what_the_environment_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "LOCK_TIMEOUT_MS = 750\narchive_bucket = \"from-file\"\n").unwrap();
        let file = read_toml(&p).unwrap();
        let s = Settings::from_lookup(&|k| file.get(k).cloned()).unwrap();
        assert_eq!(s.ddl.lock_timeout, Duration::from_millis(750));
        assert_eq!(s.archive.unwrap().bucket, "from-file");
        std::fs::write(&p, "LOCK_TIMEOUT_MS = [1]").unwrap();
        assert!(read_toml(&p).unwrap_err().to_string().contains("expected a string"));
        // A line the parser refuses is located, never quoted: it may hold a password.
        std::fs::write(&p, "LOCK_TIMEOUT_MS = 750\nDATABASE_URL = \"postgres://app:hunter2@db.example/shop\n").unwrap();
        let e = read_toml(&p).unwrap_err().to_string();
        assert!(e.contains("line 2, column") && !e.contains("hunter2"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    //! Fuzzing the settings parser with proptest: no value makes it panic.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn settings_from_arbitrary_values_never_panic(key in prop_oneof![
            Just("LOCK_TIMEOUT_MS"), Just("DDL_MAX_ATTEMPTS"), Just("ARCHIVE_PART_SIZE"), Just("ARCHIVE_COMPRESSION_LEVEL"),
            Just("ARCHIVE_PARTS_IN_FLIGHT"), Just("ARCHIVE_OBJECT_LOCK_DAYS"), Just("DATABASE_URL"), Just("PGPORT"),
            Just("MAINTAIN_TABLES"), Just("DEFAULT_TIME_ZONE"), Just("PARTITION_SIZE_WARN_BYTES")], value in "\\PC{0,60}") {
            let get = |k: &str| match k {
                "ARCHIVE_BUCKET" => Some("bucket-1".to_string()),
                k if k == key => Some(value.clone()),
                _ => None,
            };
            let _ = Settings::from_lookup(&get);
        }
    }
}
