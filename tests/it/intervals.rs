//! Daily, weekly and quarterly tables, and epoch (seconds, milliseconds, microseconds) and UUIDv7
//! keys, the whole way, against real PostgreSQL and LocalStack: created ahead (bounds exact in the
//! table's zone, DST days among them), filled, archived past retention (counted in the table's
//! periods) under their Hive-style keys, verified, dropped, and restored under their parent with
//! `--attach`. Monthly and yearly timestamp tables are covered by the archive and calendar
//! modules. Every instant is pinned.

use crate::harness::*;

struct Case {
    table: &'static str,
    /// The key column's type, `part_config.epoch`, and its value for the row at instant `t`
    /// (row number `g`).
    key_column: (&'static str, Option<&'static str>, &'static str),
    interval: &'static str,
    zone: &'static str,
    format: &'static str,
    retention: i32,
    /// `maintain --now` of the run that creates the partitions ahead.
    created: &'static str,
    /// The partitions that run creates, with the bound PostgreSQL prints for the first.
    names: [&'static str; 3],
    first_bound: &'static str,
    /// The first period's instants (UTC) and the step between the rows put in it.
    rows: (&'static str, &'static str, &'static str),
    /// `maintain --now` of a run for which the first period is past retention.
    later: &'static str,
    /// The first period's object, under the archive prefix.
    key: &'static str,
}

const TIMESTAMPTZ: (&str, Option<&str>, &str) = ("timestamptz", None, "t");

const CASES: [Case; 7] = [
    Case {
        table: "ev_day",
        key_column: TIMESTAMPTZ,
        interval: "day",
        zone: "America/New_York",
        format: "parquet",
        retention: 2,
        // 2026-11-01 is 25 hours long in New York (clocks fall back).
        created: "2026-11-01T12:00:00Z",
        names: ["ev_day_2026_11_01", "ev_day_2026_11_02", "ev_day_2026_11_03"],
        first_bound: "FOR VALUES FROM ('2026-11-01 04:00:00+00') TO ('2026-11-02 05:00:00+00')",
        rows: ("2026-11-01 04:00:00+00", "2026-11-02 05:00:00+00", "1 minute"),
        later: "2026-11-04T12:00:00Z",
        key: "public.ev_day/year=2026/month=11/day=01/ev_day_2026_11_01.parquet",
    },
    Case {
        table: "ev_week",
        key_column: TIMESTAMPTZ,
        interval: "week",
        zone: "UTC",
        format: "csv",
        retention: 1,
        // A Wednesday of ISO week 49 (Monday 2026-11-30 to Sunday 2026-12-06).
        created: "2026-12-02T10:00:00Z",
        names: ["ev_week_2026_w49", "ev_week_2026_w50", "ev_week_2026_w51"],
        first_bound: "FOR VALUES FROM ('2026-11-30 00:00:00+00') TO ('2026-12-07 00:00:00+00')",
        rows: ("2026-11-30 00:00:00+00", "2026-12-07 00:00:00+00", "10 minutes"),
        later: "2026-12-16T10:00:00Z",
        key: "public.ev_week/year=2026/week=49/ev_week_2026_w49.csv.zst",
    },
    Case {
        table: "ev_quarter",
        key_column: TIMESTAMPTZ,
        interval: "quarter",
        zone: "Asia/Tokyo",
        format: "csv",
        retention: 1,
        created: "2026-12-06T10:00:00Z",
        names: ["ev_quarter_2026_q4", "ev_quarter_2027_q1", "ev_quarter_2027_q2"],
        first_bound: "FOR VALUES FROM ('2026-09-30 15:00:00+00') TO ('2026-12-31 15:00:00+00')",
        rows: ("2026-09-30 15:00:00+00", "2026-12-31 15:00:00+00", "1 hour"),
        later: "2027-07-02T00:00:00Z",
        key: "public.ev_quarter/year=2026/quarter=4/ev_quarter_2026_q4.csv.zst",
    },
    // Epoch keys: bounds are the periods' instants in the key's unit.
    Case {
        // An int4 key: PostgreSQL prints its bounds unquoted.
        table: "ev_sec",
        key_column: ("integer", Some("seconds"), "extract(epoch FROM t)::integer"),
        interval: "month",
        zone: "UTC",
        format: "csv",
        retention: 1,
        created: "2026-12-06T10:00:00Z",
        names: ["ev_sec_2026_12", "ev_sec_2027_01", "ev_sec_2027_02"],
        first_bound: "FOR VALUES FROM (1796083200) TO (1798761600)",
        rows: ("2026-12-01 00:00:00+00", "2027-01-01 00:00:00+00", "1 hour"),
        later: "2027-02-15T00:00:00Z",
        key: "public.ev_sec/year=2026/month=12/ev_sec_2026_12.csv.zst",
    },
    Case {
        table: "ev_ms",
        key_column: ("bigint", Some("milliseconds"), "(extract(epoch FROM t) * 1000)::bigint"),
        interval: "day",
        // 2026-10-25 is 25 hours long in Berlin.
        zone: "Europe/Berlin",
        format: "parquet",
        retention: 2,
        created: "2026-10-25T12:00:00Z",
        names: ["ev_ms_2026_10_25", "ev_ms_2026_10_26", "ev_ms_2026_10_27"],
        first_bound: "FOR VALUES FROM ('1792879200000') TO ('1792969200000')",
        rows: ("2026-10-24 22:00:00+00", "2026-10-25 23:00:00+00", "1 minute"),
        later: "2026-10-28T12:00:00Z",
        key: "public.ev_ms/year=2026/month=10/day=25/ev_ms_2026_10_25.parquet",
    },
    Case {
        table: "ev_us",
        key_column: ("bigint", Some("microseconds"), "(extract(epoch FROM t) * 1000000)::bigint"),
        interval: "week",
        zone: "UTC",
        format: "csv",
        retention: 1,
        created: "2026-12-02T10:00:00Z",
        names: ["ev_us_2026_w49", "ev_us_2026_w50", "ev_us_2026_w51"],
        first_bound: "FOR VALUES FROM ('1795996800000000') TO ('1796601600000000')",
        rows: ("2026-11-30 00:00:00+00", "2026-12-07 00:00:00+00", "10 minutes"),
        later: "2026-12-16T10:00:00Z",
        key: "public.ev_us/year=2026/week=49/ev_us_2026_w49.csv.zst",
    },
    // UUIDv7 keys: a bound is the smallest UUID of the period's first millisecond; each row's
    // UUIDv7 is its instant's milliseconds, the version 7, and random-looking bits.
    Case {
        table: "ev_uuid",
        key_column: (
            "uuid",
            Some("uuidv7"),
            "(lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7' || substr(md5(g::text), 1, 3)
              || 'a' || substr(md5(g::text), 4, 15))::uuid",
        ),
        interval: "month",
        zone: "UTC",
        format: "csv",
        retention: 1,
        created: "2026-12-06T10:00:00Z",
        names: ["ev_uuid_2026_12", "ev_uuid_2027_01", "ev_uuid_2027_02"],
        first_bound:
            "FOR VALUES FROM ('01a22ee6-b000-0000-0000-000000000000') TO ('01a2ce8b-d400-0000-0000-000000000000')",
        rows: ("2026-12-01 00:00:00+00", "2027-01-01 00:00:00+00", "1 hour"),
        later: "2027-02-15T00:00:00Z",
        key: "public.ev_uuid/year=2026/month=12/ev_uuid_2026_12.csv.zst",
    },
];

#[tokio::test]
async fn every_interval_and_key_type_goes_the_whole_way() {
    let env = TestEnv::migrated_at("2026-11-01T12:00:00Z").await;
    for case in CASES {
        let (table, what) = (case.table, format!("{} ({} {:?})", case.table, case.interval, case.key_column.1));
        let (key_type, epoch, key_value) = case.key_column;
        let epoch_sql = epoch.map_or("NULL".to_string(), |e| format!("'{e}'"));
        env.db
            .batch_execute(&format!(
                "CREATE TABLE public.{table} (id bigint NOT NULL, created_at {key_type} NOT NULL, note text)
                   PARTITION BY RANGE (created_at);
                 INSERT INTO partition_archiver.part_config
                   (schema_name, table_name, partition_interval, time_zone, premake, retention, archive_format, epoch)
                 VALUES ('public', '{table}', '{}', '{}', 2, {}, '{}', {epoch_sql})",
                case.interval, case.zone, case.retention, case.format
            ))
            .await
            .unwrap();
        // Created ahead: the current period and two more, named and bounded per the interval.
        ok(&env.run(&["maintain", "--now", case.created, "--table", table], &[("ARCHIVE_BUCKET", "")]));
        let parts = env.partitions(&format!("public.{table}")).await;
        let mut expected: Vec<String> = case.names.iter().map(|n| n.to_string()).collect();
        expected.push(format!("{table}_default"));
        assert_eq!(parts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), expected, "{what}");
        assert_eq!(parts[0].1, case.first_bound, "{what}");

        // The SQL function (for pg_cron) creates the same partitions for a twin table with a
        // timestamp key, and refuses an epoch or UUID key (the binary maintains those).
        let twin = format!("{table}_sql");
        let twin_sql = format!(
            "CREATE TABLE public.{twin} (LIKE public.{table}) PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_interval, time_zone, premake, epoch)
             VALUES ('public', '{twin}', '{}', '{}', 2, {epoch_sql});
             SELECT partition_archiver.create_partitions('public', '{twin}', '{}')",
            case.interval, case.zone, case.created
        );
        match epoch {
            None => {
                env.db.batch_execute(&twin_sql).await.unwrap();
                let from_sql: Vec<(String, String)> = env
                    .partitions(&format!("public.{twin}"))
                    .await
                    .into_iter()
                    .map(|(n, b)| (n.replacen(&twin, table, 1), b))
                    .collect();
                assert_eq!(from_sql, parts, "{what}");
            }
            Some(_) => {
                let err = env.db.batch_execute(&twin_sql).await.unwrap_err();
                assert!(format!("{err:?}").contains("must be timestamptz, timestamp or date"), "{what}: {err:?}");
                // The pg_cron entry points leave such a table alone instead of failing for all.
                let now = case.created;
                env.db
                    .batch_execute(&format!(
                        "SELECT partition_archiver.run_maintenance('{now}');
                         SELECT * FROM partition_archiver.run_archiving('{now}', true)"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the SQL functions fail with it registered: {e:?}"));
            }
        }

        let (from, to, step) = case.rows;
        env.db
            .batch_execute(&format!(
                "INSERT INTO public.{table} SELECT g, {key_value}, 'row ' || g
                   FROM generate_series(timestamptz '{from}', timestamptz '{to}' - interval '1 microsecond', interval '{step}')
                        WITH ORDINALITY AS s(t, g)"
            ))
            .await
            .unwrap();
        let first = case.names[0];
        // Through the parent (a restored partition is attached from its restore schema); the
        // table holds rows of its first period only.
        let fingerprint =
            format!("SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM public.{table} t");
        let original = env.scalar_text(&fingerprint).await;
        assert_eq!(
            env.scalar_i64(&format!("SELECT count(*) FROM public.{first}")).await,
            env.scalar_i64(&format!("SELECT count(*) FROM public.{table}")).await,
            "every row of the period is in its partition ({what})",
        );

        // Past retention (counted in the table's periods): archived, verified, dropped.
        let (out, report) = env.json(&["maintain", "--now", case.later, "--table", table], &[]);
        ok(&out);
        let done = steps(&report, &format!("public.{table}"));
        for s in ["detach", "archive", "drop"] {
            assert!(done.contains(&format!("{s} public.{first}")), "{what}: {done:?}");
        }
        assert!(!env.names(&format!("public.{table}")).await.contains(&first.to_string()));
        let key = format!("partition-archiver/{}", case.key);
        let head = s3().await.head_object().bucket(&env.bucket).key(&key).send().await;
        assert!(head.is_ok(), "{what} is archived at {key}: {head:?}");
        match (case.format, epoch) {
            ("parquet", None) => duckdb_reads_the_day_by_its_hive_keys(&env, table, &original).await,
            ("parquet", Some(unit)) => the_key_keeps_its_integer_type_and_says_its_unit(&env, &key, unit).await,
            _ => {}
        }
        let (out, v) = env.json(&["verify", "--table", table], &[]);
        ok(&out);
        assert!(v["archives"].as_array().unwrap().iter().all(|a| a["ok"] == true), "{v}");

        // Back under its parent, the rows as they were.
        let (out, v) = env.json(&["restore", "--table", table, "--partition", first, "--attach"], &[]);
        ok(&out);
        assert_eq!(v["restore"]["attached"], true, "{v}");
        let attached = env.partitions(&format!("public.{table}")).await;
        assert!(attached.contains(&(first.to_string(), case.first_bound.to_string())), "{attached:?}");
        assert_eq!(env.scalar_text(&fingerprint).await, original, "{what}");
        assert!(original.as_deref().is_some_and(|f| !f.starts_with("0:")), "{original:?}");
    }
}

/// A Parquet archive of an epoch-keyed table: the key is an Int64 column whose field metadata
/// names its unit.
async fn the_key_keeps_its_integer_type_and_says_its_unit(env: &TestEnv, key: &str, unit: &str) {
    let body = s3().await.get_object().bucket(&env.bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body.into_bytes()).unwrap();
    let field = reader.schema().field_with_name("created_at").unwrap().clone();
    assert_eq!(field.data_type(), &arrow_schema::DataType::Int64);
    assert_eq!(field.metadata().get("partition_archiver.epoch").map(String::as_str), Some(unit), "{field:?}");
}

/// The README's DuckDB query over a daily table: the objects downloaded with their keys, read with
/// `year`/`month`/`day` as Hive columns, filtered to one day.
async fn duckdb_reads_the_day_by_its_hive_keys(env: &TestEnv, table: &str, original: &Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let files =
        crate::parquet::download(env, &format!("partition-archiver/public.{table}/"), ".parquet", dir.path()).await;
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = crate::parquet::duckdb(&format!(
        "SELECT year, month, day, count(*) FROM read_parquet('{}/partition-archiver/public.{table}/*/*/*/*.parquet',
                hive_partitioning = true, hive_types = {{'year': INTEGER, 'month': INTEGER, 'day': INTEGER}})
          WHERE year = 2026 AND month = 11 AND day = 1 GROUP BY ALL",
        dir.path().display()
    ));
    let count = original.as_deref().and_then(|f| f.split(':').next()).unwrap();
    assert_eq!(rows, serde_json::json!([["2026", "11", "1", count]]));
}

/// A key and an epoch that do not go together are refused by name, and nothing changes; an
/// unknown unit is refused by part_config itself.
#[tokio::test]
async fn a_key_and_an_epoch_that_do_not_go_together_are_refused_and_nothing_changes() {
    let env = TestEnv::migrated_at("2026-11-01T12:00:00Z").await;
    let cases = [
        ("bad_int", "bigint", "NULL", "is time only with part_config.epoch"),
        ("bad_ts", "timestamptz", "'seconds'", "which is for integer or uuid keys"),
        ("bad_uuid_int", "bigint", "'uuidv7'", "'uuidv7' is for a uuid key"),
        ("bad_int_ms", "integer", "'milliseconds'", "do not fit an integer"),
        ("bad_uuid", "uuid", "'milliseconds'", "needs part_config.epoch = 'uuidv7'"),
    ];
    for (table, key_type, epoch, _) in cases {
        env.db
            .batch_execute(&format!(
                "CREATE TABLE public.{table} (id bigint, created_at {key_type} NOT NULL) PARTITION BY RANGE (created_at);
                 INSERT INTO partition_archiver.part_config (schema_name, table_name, epoch) VALUES ('public', '{table}', {epoch})"
            ))
            .await
            .unwrap();
    }
    let before = env.fingerprint().await;
    for (table, _, _, needle) in cases {
        let (out, v) =
            env.json(&["maintain", "--now", "2026-11-01T12:00:00Z", "--table", table], &[("ARCHIVE_BUCKET", "")]);
        assert!(!out.status.success(), "{table}: {v}");
        assert!(v.to_string().contains(needle), "{table} should say {needle:?}: {v}");
    }
    assert_eq!(env.fingerprint().await, before);
    let err = env
        .db
        .batch_execute("INSERT INTO partition_archiver.part_config (schema_name, table_name, epoch) VALUES ('public', 'x', 'nanoseconds')")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("part_config_epoch_check"), "{err:?}");
}
