//! Daily, weekly and quarterly tables the whole way, against real PostgreSQL and LocalStack:
//! created ahead (bounds exact in the table's zone, a DST day among them), filled, archived past
//! retention (counted in the table's periods) under their Hive-style keys, verified, dropped, and
//! restored under their parent with `--attach`. Monthly and yearly tables are covered by the
//! archive and calendar modules. Every instant is pinned.

use crate::harness::*;

struct Case {
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

const CASES: [Case; 3] = [
    Case {
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
];

#[tokio::test]
async fn daily_weekly_and_quarterly_tables_go_the_whole_way() {
    let env = TestEnv::migrated_at("2026-11-01T12:00:00Z").await;
    for case in CASES {
        let table = format!("ev_{}", case.interval);
        env.db
            .batch_execute(&format!(
                "CREATE TABLE public.{table} (id bigint NOT NULL, created_at timestamptz NOT NULL, note text)
                   PARTITION BY RANGE (created_at);
                 INSERT INTO partition_archiver.part_config
                   (schema_name, table_name, partition_interval, time_zone, premake, retention, archive_format)
                 VALUES ('public', '{table}', '{}', '{}', 2, {}, '{}')",
                case.interval, case.zone, case.retention, case.format
            ))
            .await
            .unwrap();
        // Created ahead: the current period and two more, named and bounded per the interval.
        ok(&env.run(&["maintain", "--now", case.created, "--table", &table], &[("ARCHIVE_BUCKET", "")]));
        let parts = env.partitions(&format!("public.{table}")).await;
        let mut expected: Vec<String> = case.names.iter().map(|n| n.to_string()).collect();
        expected.push(format!("{table}_default"));
        assert_eq!(parts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), expected, "{}", case.interval);
        assert_eq!(parts[0].1, case.first_bound, "{}", case.interval);

        // The SQL function (for pg_cron) creates the same partitions for a twin table.
        let twin = format!("{table}_sql");
        env.db
            .batch_execute(&format!(
                "CREATE TABLE public.{twin} (LIKE public.{table}) PARTITION BY RANGE (created_at);
                 INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_interval, time_zone, premake)
                 VALUES ('public', '{twin}', '{}', '{}', 2);
                 SELECT partition_archiver.create_partitions('public', '{twin}', '{}')",
                case.interval, case.zone, case.created
            ))
            .await
            .unwrap();
        let from_sql: Vec<(String, String)> = env
            .partitions(&format!("public.{twin}"))
            .await
            .into_iter()
            .map(|(n, b)| (n.replacen(&twin, &table, 1), b))
            .collect();
        assert_eq!(from_sql, parts, "{}", case.interval);

        let (from, to, step) = case.rows;
        env.db
            .batch_execute(&format!(
                "INSERT INTO public.{table} SELECT g, t, 'row ' || g
                   FROM generate_series(timestamptz '{from}', timestamptz '{to}' - interval '1 microsecond', interval '{step}')
                        WITH ORDINALITY AS s(t, g)"
            ))
            .await
            .unwrap();
        let first = case.names[0];
        // Through the parent: a restored partition is attached from its restore schema.
        let fingerprint = format!(
            "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM public.{table} t
              WHERE created_at >= '{from}' AND created_at < '{to}'"
        );
        let original = env.scalar_text(&fingerprint).await;
        assert_eq!(
            env.scalar_i64(&format!("SELECT count(*) FROM public.{table}_default")).await,
            0,
            "every row of the period is in its partition ({})",
            case.interval
        );

        // Past retention (counted in the table's periods): archived, verified, dropped.
        let (out, report) = env.json(&["maintain", "--now", case.later, "--table", &table], &[]);
        ok(&out);
        let done = steps(&report, &format!("public.{table}"));
        for s in ["detach", "archive", "drop"] {
            assert!(done.contains(&format!("{s} public.{first}")), "{}: {done:?}", case.interval);
        }
        assert!(!env.names(&format!("public.{table}")).await.contains(&first.to_string()));
        let key = format!("partition-archiver/{}", case.key);
        let head = s3().await.head_object().bucket(&env.bucket).key(&key).send().await;
        assert!(head.is_ok(), "{} is archived at {key}: {head:?}", case.interval);
        if case.format == "parquet" {
            duckdb_reads_the_day_by_its_hive_keys(&env, &table, &original).await;
        }
        let (out, v) = env.json(&["verify", "--table", &table], &[]);
        ok(&out);
        assert!(v["archives"].as_array().unwrap().iter().all(|a| a["ok"] == true), "{v}");

        // Back under its parent, the rows as they were.
        let (out, v) = env.json(&["restore", "--table", &table, "--partition", first, "--attach"], &[]);
        ok(&out);
        assert_eq!(v["restore"]["attached"], true, "{v}");
        let attached = env.partitions(&format!("public.{table}")).await;
        assert!(attached.contains(&(first.to_string(), case.first_bound.to_string())), "{attached:?}");
        assert_eq!(env.scalar_text(&fingerprint).await, original, "{}", case.interval);
        assert!(original.as_deref().is_some_and(|f| !f.starts_with("0:")), "{original:?}");
    }
}

/// A table changes interval over its life: existing partitions keep their names and bounds, the
/// new interval starts where they end, and the period straddling their end gets only its rest.
#[tokio::test]
async fn a_change_of_interval_keeps_what_exists_and_applies_from_where_it_ends() {
    let env = TestEnv::migrated_at("2026-11-01T12:00:00Z").await;
    env.db
        .batch_execute(
            "CREATE TABLE public.ev_change (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, premake, retention)
             VALUES ('public', 'ev_change', 1, NULL)",
        )
        .await
        .unwrap();
    let run = |now: &str| ok(&env.run(&["maintain", "--now", now, "--table", "ev_change"], &[("ARCHIVE_BUCKET", "")]));
    run("2026-11-10T00:00:00Z"); // monthly: November and December
    env.db.batch_execute("UPDATE partition_archiver.part_config SET partition_interval = 'day', premake = 3 WHERE table_name = 'ev_change'").await.unwrap();
    run("2026-12-30T00:00:00Z"); // daily from January 1st: Dec 30 + 3 days ahead reach Jan 2
    env.db.batch_execute("UPDATE partition_archiver.part_config SET partition_interval = 'month', premake = 1 WHERE table_name = 'ev_change'").await.unwrap();
    run("2027-01-01T12:00:00Z"); // monthly again: the rest of January, then February
    let utc = |d: &str| format!("'{d} 00:00:00+00'");
    let bound = |f: &str, t: &str| format!("FOR VALUES FROM ({}) TO ({})", utc(f), utc(t));
    let expected = vec![
        ("ev_change_2026_11".to_string(), bound("2026-11-01", "2026-12-01")),
        ("ev_change_2026_12".to_string(), bound("2026-12-01", "2027-01-01")),
        ("ev_change_2027_01".to_string(), bound("2027-01-03", "2027-02-01")),
        ("ev_change_2027_01_01".to_string(), bound("2027-01-01", "2027-01-02")),
        ("ev_change_2027_01_02".to_string(), bound("2027-01-02", "2027-01-03")),
        ("ev_change_2027_02".to_string(), bound("2027-02-01", "2027-03-01")),
        ("ev_change_default".to_string(), "DEFAULT".to_string()),
    ];
    assert_eq!(env.partitions("public.ev_change").await, expected);
    // Every instant from November to the end of February has exactly one partition: a row at each
    // boundary lands outside the default.
    env.db
        .batch_execute(
            "INSERT INTO public.ev_change SELECT 1, t FROM unnest(array['2026-11-30 23:59:59+00', '2027-01-01 00:00:00+00',
               '2027-01-02 23:59:59.999999+00', '2027-01-03 00:00:00+00', '2027-02-28 23:59:59+00']::timestamptz[]) t",
        )
        .await
        .unwrap();
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.ev_change_default").await, 0);
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
