//! The verbs, as one typed request shared by the CLI and the Lambda. Lambda payloads are parsed
//! strictly: unknown actions, unknown fields, wrong types and oversized events are refused with a
//! clear message before anything touches the database.

use crate::error::Error;
use crate::plan::ident::QualifiedName;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

/// Larger events are refused outright (a real one is a few hundred bytes).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
pub const MAX_TABLES: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Apply the migrations; `now` pins the instant the seed partitions are created around.
    Migrate {
        now: Option<DateTime<Utc>>,
    },
    Maintain {
        dry_run: bool,
        now: Option<DateTime<Utc>>,
        tables: Vec<QualifiedName>,
        /// Stop starting chunks (and archives) that would not finish within this time.
        time_budget: Option<Duration>,
        /// Plan the chunks of large partitions and return them as units (for a Step Functions
        /// Map) instead of streaming them.
        fan_out: bool,
    },
    Status {
        now: Option<DateTime<Utc>>,
        tables: Vec<QualifiedName>,
    },
    Archive {
        table: QualifiedName,
        partition: String,
        time_budget: Option<Duration>,
    },
    /// One fan-out unit: one chunk of a partition whose chunks are planned.
    ArchiveChunk {
        table: QualifiedName,
        partition: String,
        chunk: i32,
        /// Not started (`not_started`) when the chunk would not finish within this.
        time_budget: Option<Duration>,
    },
    Restore {
        table: QualifiedName,
        partition: String,
        into_schema: Option<String>,
        attach: bool,
        /// With `attach`: columns of the archive the parent no longer has, dropped from the
        /// restored table before it is attached (the archive keeps them).
        drop_columns: Vec<String>,
        /// Stop starting objects when this would be exceeded (the staging table keeps what is
        /// loaded; the next restore goes on).
        time_budget: Option<Duration>,
        /// Plan a fan-out instead: set up the staging table and return one unit per object left.
        fan_out: bool,
    },
    /// One fan-out unit of a restore: load one object into the staging table the plan made.
    RestoreChunk {
        table: QualifiedName,
        partition: String,
        chunk: i32,
        restore_id: String,
        into_schema: Option<String>,
        time_budget: Option<Duration>,
    },
    /// `deep`: also read every object back (only those S3 serves now); by default HEAD only.
    Verify {
        table: Option<QualifiedName>,
        deep: bool,
    },
    List {
        table: Option<QualifiedName>,
        /// From the JSON manifests in the bucket instead of the database's records.
        from_bucket: bool,
    },
    /// Register pg_partman's time-based parents here (`dry_run`: only say what would be).
    ImportPgPartman {
        dry_run: bool,
    },
}

impl Request {
    pub fn action(&self) -> &'static str {
        match self {
            Request::Migrate { .. } => "migrate",
            Request::Maintain { dry_run: true, .. } => "plan",
            Request::Maintain { .. } => "maintain",
            Request::Status { .. } => "status",
            Request::Archive { .. } => "archive",
            Request::ArchiveChunk { .. } => "archive_chunk",
            Request::Restore { .. } => "restore",
            Request::RestoreChunk { .. } => "restore_chunk",
            Request::Verify { .. } => "verify",
            Request::List { .. } => "list",
            Request::ImportPgPartman { .. } => "import_pg_partman",
        }
    }
}

/// A request as given, before any check: a Lambda event's fields, which the CLI's flags fill in
/// too, so both are checked by one [`RawEvent::into_request`].
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawEvent {
    Maintain {
        #[serde(default)]
        dry_run: bool,
        now: Option<String>,
        #[serde(default)]
        tables: Vec<String>,
        time_budget_s: Option<f64>,
        #[serde(default)]
        fan_out: bool,
    },
    Plan {
        now: Option<String>,
        #[serde(default)]
        tables: Vec<String>,
    },
    Status {
        now: Option<String>,
        #[serde(default)]
        tables: Vec<String>,
    },
    Migrate {
        now: Option<String>,
    },
    Archive {
        table: String,
        partition: String,
        time_budget_s: Option<f64>,
    },
    ArchiveChunk {
        table: String,
        partition: String,
        chunk: i64,
        time_budget_s: Option<f64>,
    },
    Restore {
        table: String,
        partition: String,
        into_schema: Option<String>,
        #[serde(default)]
        attach: bool,
        #[serde(default)]
        drop_columns: Vec<String>,
        /// Refused with a clear message: waiting is the CLI's (`restore --wait`).
        wait: Option<serde_json::Value>,
        time_budget_s: Option<f64>,
        #[serde(default)]
        fan_out: bool,
    },
    RestoreChunk {
        table: String,
        partition: String,
        chunk: i64,
        restore_id: String,
        into_schema: Option<String>,
        time_budget_s: Option<f64>,
    },
    Verify {
        table: Option<String>,
        #[serde(default)]
        deep: bool,
    },
    List {
        table: Option<String>,
        #[serde(default)]
        from_bucket: bool,
    },
    ImportPgPartman {
        #[serde(default)]
        dry_run: bool,
    },
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).map_err(|e| {
        Error::invalid(format!("now {s:?} is not an RFC 3339 timestamp such as 2026-11-24T10:00:00Z: {e}"))
    })
}

/// The longest time budget accepted: a day (a Lambda has 15 minutes; a CLI run may have hours).
const MAX_TIME_BUDGET_S: f64 = 86_400.0;

/// A time budget in seconds: positive and at most a day.
fn time_budget(seconds: f64, name: &str) -> Result<Duration, Error> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_TIME_BUDGET_S) {
        return Err(Error::invalid(format!(
            "{name} {seconds} is not a time budget: give the seconds the run may take, more than 0 and at most {MAX_TIME_BUDGET_S}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A chunk number: 1 or more.
fn chunk_number(n: i64) -> Result<i32, Error> {
    i32::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| Error::invalid(format!("chunk {n} is not a chunk number: chunks are numbered from 1")))
}

fn parse_tables(tables: &[String]) -> Result<Vec<QualifiedName>, Error> {
    if tables.len() > MAX_TABLES {
        return Err(Error::invalid(format!("{} tables given: at most {MAX_TABLES}", tables.len())));
    }
    tables.iter().map(|t| QualifiedName::parse(t).map_err(|e| Error::invalid(format!("table {t:?}: {e}")))).collect()
}

/// An optional schema name, checked as an identifier.
fn schema_name(s: Option<String>, what: &str) -> Result<Option<String>, Error> {
    if let Some(s) = &s {
        crate::plan::ident::validate_ident(s).map_err(|e| Error::invalid(format!("{what} {s:?}: {e}")))?;
    }
    Ok(s)
}

/// `--drop-columns` / `"drop_columns"`: identifiers, only with an attach.
fn drop_columns_of(columns: Vec<String>, attach: bool, what: &str) -> Result<Vec<String>, Error> {
    if !columns.is_empty() && !attach {
        return Err(Error::invalid(format!(
            "{what} only goes with an attach: a restore without it gives the partition exactly as archived"
        )));
    }
    for c in &columns {
        crate::plan::ident::validate_ident(c).map_err(|e| Error::invalid(format!("{what} {c:?}: {e}")))?;
    }
    Ok(columns)
}

/// A restore id as a plan gives it: 32 hexadecimal digits.
fn restore_id_of(id: String) -> Result<String, Error> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!(
            "restore_id {id:?} is not a restore id: use the one `restore --fan-out` gave (32 hexadecimal digits)"
        )));
    }
    Ok(id)
}

fn partition_name(p: &str) -> Result<String, Error> {
    crate::plan::ident::validate_ident(p).map_err(|e| Error::invalid(format!("partition {p:?}: {e}")))?;
    Ok(p.to_string())
}

/// Parses a Lambda event: an EventBridge Scheduled Event runs `maintain`; anything else must be a
/// `{"action": ...}` request.
pub fn from_event(event: &serde_json::Value) -> Result<Request, Error> {
    let size = serde_json::to_vec(event).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_EVENT_BYTES {
        return Err(Error::invalid(format!("event is {size} bytes: at most {MAX_EVENT_BYTES}")));
    }
    let obj = event.as_object().ok_or_else(|| Error::invalid("event must be a JSON object"))?;
    if obj.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event") {
        if obj.get("source").and_then(|v| v.as_str()) != Some("aws.events") {
            return Err(Error::invalid("a Scheduled Event must come from source aws.events"));
        }
        return Ok(Request::Maintain { dry_run: false, now: None, tables: vec![], time_budget: None, fan_out: false });
    }
    if !obj.contains_key("action") {
        return Err(Error::invalid("event has no \"action\" (expected one of maintain, plan, status, migrate, archive, archive_chunk, restore, restore_chunk, verify, list) and is not an EventBridge Scheduled Event"));
    }
    let raw: RawEvent =
        serde_json::from_value(event.clone()).map_err(|e| Error::invalid(format!("malformed event: {e}")))?;
    raw.into_request(Spelling::Event)
}

/// Whose names a message gives a field by: the CLI's flags or the Lambda event's keys.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spelling {
    Flags,
    Event,
}

impl Spelling {
    /// `time_budget_s` is `--time-budget` on the command line; `into_schema` is `--into-schema`.
    fn of(self, key: &str) -> String {
        match self {
            Spelling::Event => key.into(),
            Spelling::Flags => format!("--{}", key.strip_suffix("_s").unwrap_or(key).replace('_', "-")),
        }
    }
}

impl RawEvent {
    /// The typed request, every field checked (bad input changes nothing); messages name fields
    /// as `spelling` does.
    pub(crate) fn into_request(self, spelling: Spelling) -> Result<Request, Error> {
        let now = |n: Option<String>| n.as_deref().map(parse_now).transpose();
        let budget = |b: Option<f64>| b.map(|s| time_budget(s, &spelling.of("time_budget_s"))).transpose();
        Ok(match self {
            Self::Maintain { dry_run, now: n, tables, time_budget_s, fan_out } => Request::Maintain {
                dry_run,
                now: now(n)?,
                tables: parse_tables(&tables)?,
                time_budget: budget(time_budget_s)?,
                fan_out,
            },
            Self::Plan { now: n, tables } => Request::Maintain {
                dry_run: true,
                now: now(n)?,
                tables: parse_tables(&tables)?,
                time_budget: None,
                fan_out: false,
            },
            Self::ArchiveChunk { table, partition, chunk, time_budget_s } => Request::ArchiveChunk {
                table: parse_tables(&[table])?.remove(0),
                partition: partition_name(&partition)?,
                chunk: chunk_number(chunk)?,
                time_budget: budget(time_budget_s)?,
            },
            Self::Status { now: n, tables } => Request::Status { now: now(n)?, tables: parse_tables(&tables)? },
            Self::Migrate { now: n } => Request::Migrate { now: now(n)? },
            Self::Archive { table, partition, time_budget_s } => Request::Archive {
                table: parse_tables(&[table])?.remove(0),
                partition: partition_name(&partition)?,
                time_budget: budget(time_budget_s)?,
            },
            Self::Restore { table, partition, into_schema, attach, drop_columns, wait, time_budget_s, fan_out } => {
                if wait.is_some() {
                    return Err(Error::invalid(
                        "\"wait\" is a CLI option (restore --wait): a Lambda invocation cannot wait the hours a retrieval \
                         takes. Invoke restore again later (it reports \"pending\" until the object is back), or start the \
                         template's RestoreStateMachine",
                    ));
                }
                Request::Restore {
                    table: parse_tables(&[table])?.remove(0),
                    partition: partition_name(&partition)?,
                    into_schema: schema_name(into_schema, &spelling.of("into_schema"))?,
                    attach,
                    drop_columns: drop_columns_of(drop_columns, attach, &spelling.of("drop_columns"))?,
                    time_budget: budget(time_budget_s)?,
                    fan_out,
                }
            }
            Self::RestoreChunk { table, partition, chunk, restore_id, into_schema, time_budget_s } => {
                Request::RestoreChunk {
                    table: parse_tables(&[table])?.remove(0),
                    partition: partition_name(&partition)?,
                    chunk: chunk_number(chunk)?,
                    restore_id: restore_id_of(restore_id)?,
                    into_schema: schema_name(into_schema, &spelling.of("into_schema"))?,
                    time_budget: budget(time_budget_s)?,
                }
            }
            Self::Verify { table, deep } => {
                Request::Verify { table: table.map(|t| parse_tables(&[t])).transpose()?.map(|mut v| v.remove(0)), deep }
            }
            Self::ImportPgPartman { dry_run } => Request::ImportPgPartman { dry_run },
            Self::List { table, from_bucket } => Request::List {
                table: table.map(|t| parse_tables(&[t])).transpose()?.map(|mut v| v.remove(0)),
                from_bucket,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_documented_events() {
        let scheduled = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "account": "1", "time": "2026-11-01T00:00:00Z", "region": "us-east-1", "resources": [], "detail": {}});
        assert_eq!(
            from_event(&scheduled).unwrap(),
            Request::Maintain { dry_run: false, now: None, tables: vec![], time_budget: None, fan_out: false }
        );
        assert_eq!(
            from_event(&json!({"action": "maintain", "time_budget_s": 90})).unwrap(),
            Request::Maintain {
                dry_run: false,
                now: None,
                tables: vec![],
                time_budget: Some(Duration::from_secs(90)),
                fan_out: false
            }
        );
        assert_eq!(
            from_event(
                &json!({"action": "archive_chunk", "table": "trades", "partition": "trades_2026_01", "chunk": 3, "time_budget_s": 10})
            )
            .unwrap(),
            Request::ArchiveChunk {
                table: QualifiedName::new("public", "trades"),
                partition: "trades_2026_01".into(),
                chunk: 3,
                time_budget: Some(Duration::from_secs(10)),
            }
        );
        assert_eq!(
            from_event(
                &json!({"action": "archive", "table": "trades", "partition": "trades_2026_01", "time_budget_s": 0.5})
            )
            .unwrap(),
            Request::Archive {
                table: QualifiedName::new("public", "trades"),
                partition: "trades_2026_01".into(),
                time_budget: Some(Duration::from_millis(500))
            }
        );
        assert_eq!(from_event(&json!({"action": "migrate"})).unwrap(), Request::Migrate { now: None });
        assert_eq!(
            from_event(&json!({"action": "migrate", "now": "2026-12-31T23:30:00-05:00"})).unwrap(),
            Request::Migrate { now: Some("2027-01-01T04:30:00Z".parse().unwrap()) }
        );
        let err = from_event(&json!({"action": "migrate", "now": "tomorrow"})).unwrap_err();
        assert!(err.message.contains("not an RFC 3339 timestamp"), "{}", err.message);
        let r = from_event(&json!({"action": "maintain", "dry_run": true, "now": "2026-11-24T10:00:00Z", "tables": ["public.trades", "orders"]})).unwrap();
        assert_eq!(r.action(), "plan");
        let r = from_event(&json!({"action": "restore", "table": "trades", "partition": "trades_2025_12", "attach": true, "drop_columns": ["fee"]})).unwrap();
        assert!(
            matches!(r, Request::Restore { attach: true, ref drop_columns, .. } if drop_columns == &["fee"]),
            "{r:?}"
        );
        let r = from_event(&json!({"action": "restore", "table": "public.trades", "partition": "trades_2025_12", "into_schema": "restored", "attach": false, "time_budget_s": 840})).unwrap();
        assert_eq!(
            r,
            Request::Restore {
                table: QualifiedName::new("public", "trades"),
                partition: "trades_2025_12".into(),
                into_schema: Some("restored".into()),
                attach: false,
                drop_columns: vec![],
                time_budget: Some(Duration::from_secs(840)),
                fan_out: false,
            }
        );
        let unit = json!({"action": "restore_chunk", "table": "trades", "partition": "trades_2025_12", "chunk": 3,
            "restore_id": "00000000000000000000000000abcdef", "into_schema": "r", "time_budget_s": 60});
        assert_eq!(
            from_event(&unit).unwrap(),
            Request::RestoreChunk {
                table: QualifiedName::new("public", "trades"),
                partition: "trades_2025_12".into(),
                chunk: 3,
                restore_id: "00000000000000000000000000abcdef".into(),
                into_schema: Some("r".into()),
                time_budget: Some(Duration::from_secs(60)),
            }
        );
        for (field, bad, why) in [
            ("restore_id", json!("abc"), "not a restore id"),
            ("restore_id", json!("00000000000000000000000000abcdeg"), "not a restore id"),
            ("chunk", json!(0), "numbered from 1"),
            ("into_schema", json!(""), "into_schema"),
        ] {
            let mut event = unit.clone();
            event[field] = bad;
            let err = from_event(&event).unwrap_err();
            assert!(err.message.contains(why), "{field}: {}", err.message);
        }
        for bad in [json!(0), json!(-5), json!("840")] {
            let event =
                json!({"action": "restore", "table": "trades", "partition": "trades_2025_12", "time_budget_s": bad});
            assert!(from_event(&event).is_err(), "{event}");
        }
        assert_eq!(from_event(&json!({"action": "list"})).unwrap(), Request::List { table: None, from_bucket: false });
        assert_eq!(
            from_event(&json!({"action": "import_pg_partman", "dry_run": true})).unwrap(),
            Request::ImportPgPartman { dry_run: true }
        );
        assert_eq!(
            from_event(&json!({"action": "list", "table": "trades", "from_bucket": true})).unwrap(),
            Request::List { table: Some(QualifiedName::new("public", "trades")), from_bucket: true }
        );
        assert!(from_event(&json!({"action": "list", "from_bucket": "yes"})).is_err());
        assert_eq!(
            from_event(&json!({"action": "verify", "deep": true})).unwrap(),
            Request::Verify { table: None, deep: true }
        );
        assert_eq!(from_event(&json!({"action": "verify"})).unwrap(), Request::Verify { table: None, deep: false });
    }

    #[test]
    fn refuses_bad_events_with_clear_messages() {
        let big = "x".repeat(MAX_EVENT_BYTES);
        let cases = vec![
            (json!([1, 2]), "must be a JSON object"),
            (json!({"hello": "world"}), "has no \"action\""),
            (json!({"action": "explode"}), "unknown variant `explode`"),
            (json!({"action": "maintain", "dry_run": "yes"}), "invalid type"),
            (json!({"action": "maintain", "tables": "trades"}), "invalid type"),
            (json!({"action": "verify", "deep": "yes"}), "invalid type"),
            (json!({"action": "restore", "table": "t", "partition": "p", "wait": true}), "restore --wait"),
            (json!({"action": "restore", "table": "t", "partition": "p", "wait": false}), "RestoreStateMachine"),
            (json!({"action": "maintain", "bogus": 1}), "unknown field `bogus`"),
            (json!({"action": "maintain", "now": "yesterday"}), "not an RFC 3339 timestamp"),
            (json!({"action": "maintain", "tables": ["x; drop table trades"]}), "not a valid identifier"),
            (json!({"action": "maintain", "tables": ["a.b.c"]}), "more than two parts"),
            (json!({"action": "restore", "table": "trades"}), "missing field `partition`"),
            (
                json!({"action": "restore", "table": "t", "partition": "p", "drop_columns": ["fee"]}),
                "only goes with an attach",
            ),
            (
                json!({"action": "restore", "table": "t", "partition": "p", "attach": true, "drop_columns": [""]}),
                "drop_columns \"\": empty identifier",
            ),
            (json!({"action": "restore", "table": "trades", "partition": ""}), "empty identifier"),
            (
                json!({"action": "restore", "table": "trades", "partition": "p", "into_schema": "s".repeat(70)}),
                "longer than 63",
            ),
            (json!({"action": "maintain", "note": big}), "at most 65536"),
            (json!({"detail-type": "Scheduled Event", "source": "evil"}), "source aws.events"),
            (json!({"action": 7}), "malformed event"),
            (json!({"action": "maintain", "time_budget_s": 0}), "not a time budget"),
            (json!({"action": "maintain", "time_budget_s": -5}), "not a time budget"),
            (json!({"action": "maintain", "time_budget_s": 1e9}), "at most 86400"),
            (json!({"action": "maintain", "time_budget_s": "soon"}), "invalid type"),
            (json!({"action": "archive", "table": "t", "partition": "p", "time_budget_s": -1}), "not a time budget"),
            (json!({"action": "plan", "time_budget_s": 60}), "unknown field `time_budget_s`"),
            (json!({"action": "archive_chunk", "table": "t", "partition": "p", "chunk": 0}), "numbered from 1"),
            (json!({"action": "archive_chunk", "table": "t", "partition": "p", "chunk": -2}), "numbered from 1"),
            (json!({"action": "archive_chunk", "table": "t", "partition": "p", "chunk": 1e12}), "invalid type"),
            (json!({"action": "archive_chunk", "table": "t", "partition": "p"}), "missing field `chunk`"),
            (json!({"action": "archive_chunk", "table": "t", "partition": "", "chunk": 1}), "empty identifier"),
        ];
        for (event, needle) in cases {
            let e = from_event(&event).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput, "{event}");
            assert!(e.message.contains(needle), "{event}: {} should contain {needle:?}", e.message);
        }
        let too_many: Vec<String> = (0..=MAX_TABLES).map(|i| format!("t{i}")).collect();
        assert!(from_event(&json!({"action": "status", "tables": too_many}))
            .unwrap_err()
            .message
            .contains("at most 1000"));
    }
}

#[cfg(test)]
mod properties {
    //! Fuzzing the parsers with proptest: no input makes them panic, and what they accept is
    //! consistent. Runs in the normal test suite (256 cases each).
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::from),
            prop_oneof![
                Just("maintain"),
                Just("plan"),
                Just("status"),
                Just("migrate"),
                Just("archive"),
                Just("restore"),
                Just("verify"),
                Just("list")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("action".to_string()),
                        Just("tables".to_string()),
                        Just("table".to_string()),
                        Just("partition".to_string()),
                        Just("now".to_string()),
                        Just("dry_run".to_string()),
                        Just("into_schema".to_string()),
                        Just("attach".to_string()),
                        Just("detail-type".to_string()),
                        Just("source".to_string()),
                        ".{0,12}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn events_never_panic_and_errors_are_invalid_input(event in arb_json()) {
            match from_event(&event) {
                Ok(req) => prop_assert!(!req.action().is_empty()),
                Err(e) => prop_assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput),
            }
        }

        #[test]
        fn any_text_as_a_table_name_is_parsed_or_refused(text in "\\PC{0,80}") {
            if let Ok(q) = QualifiedName::parse(&text) {
                // What was accepted is quoted safely and reads back the same.
                prop_assert_eq!(QualifiedName::parse(&q.to_string()).unwrap(), q.clone());
                prop_assert!(q.quoted().starts_with('"') && q.quoted().ends_with('"'));
            }
        }

        #[test]
        fn now_strings_never_panic(text in "\\PC{0,40}") {
            let _ = parse_now(&text);
        }
    }
}
