//! Calendar tests: the migrations, partition creation in both implementations (the binary's planner
//! and the SQL functions), gap filling and retention, on "today" ([`today`]: `PA_TEST_TODAY` when
//! the test command pins it, else the real clock). Each test passes today to `migrate --now` and
//! `maintain --now` and derives what it expects from it by calendar arithmetic of its own
//! (`chrono`, `chrono-tz`), so it holds on any day. `scripts/test.sh` runs this module (and the
//! Lambda scenario) once with the real clock and again on the days where calendars bite: mid-month,
//! the last day of a month, 31 December, 29 February and a DST change in a non-UTC zone.

use crate::harness::*;
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Zones every calendar test covers, plus `PA_TEST_ZONE` when the test command sets one. None of
/// them moves its clocks at midnight, so every period starts at local midnight.
fn zones() -> Vec<String> {
    let mut zones: Vec<String> =
        ["UTC", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "Pacific/Kiritimati"].map(String::from).into();
    if let Ok(z) = std::env::var("PA_TEST_ZONE") {
        if !z.is_empty() && !zones.contains(&z) {
            zones.push(z);
        }
    }
    zones
}

#[derive(Clone, Copy, PartialEq)]
enum Interval {
    Month,
    Year,
}

/// The local first day of the period `k` periods after the one holding `at` in `zone`.
fn period_first_day(interval: Interval, zone: Tz, at: DateTime<Utc>, k: i32) -> NaiveDate {
    let local = at.with_timezone(&zone).date_naive();
    match interval {
        Interval::Month => {
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap();
            if k >= 0 {
                first.checked_add_months(Months::new(k as u32)).unwrap()
            } else {
                first.checked_sub_months(Months::new((-k) as u32)).unwrap()
            }
        }
        Interval::Year => NaiveDate::from_ymd_opt(local.year() + k, 1, 1).unwrap(),
    }
}

fn suffix(interval: Interval, day: NaiveDate) -> String {
    match interval {
        Interval::Month => day.format("%Y_%m").to_string(),
        Interval::Year => day.format("%Y").to_string(),
    }
}

/// `pg_get_expr(relpartbound)` of the partition for period `k`, as a session in UTC prints it:
/// timestamptz bounds are the instants of local midnight in `zone`, date bounds the local days.
fn bound(interval: Interval, zone: Tz, at: DateTime<Utc>, k: i32, key: &str) -> String {
    let (from, to) = (period_first_day(interval, zone, at, k), period_first_day(interval, zone, at, k + 1));
    let literal = |d: NaiveDate| match key {
        "date" => d.format("%Y-%m-%d").to_string(),
        _ => zone
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S+00")
            .to_string(),
    };
    format!("FOR VALUES FROM ('{}') TO ('{}')", literal(from), literal(to))
}

/// The partitions a table named `table` should have after creation on `at`: its default and the
/// periods `ks`.
fn expected(
    table: &str,
    interval: Interval,
    zone: Tz,
    at: DateTime<Utc>,
    ks: std::ops::RangeInclusive<i32>,
    key: &str,
) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String)> = ks
        .map(|k| {
            (
                format!("{table}_{}", suffix(interval, period_first_day(interval, zone, at, k))),
                bound(interval, zone, at, k, key),
            )
        })
        .collect();
    parts.push((format!("{table}_default"), "DEFAULT".into()));
    parts.sort();
    parts
}

fn utc() -> Tz {
    "UTC".parse().unwrap()
}

fn month_of(at: DateTime<Utc>, k: i32) -> String {
    suffix(Interval::Month, period_first_day(Interval::Month, utc(), at, k))
}

#[tokio::test]
async fn migrations_create_todays_month_and_two_ahead_and_apply_again_unchanged() {
    let today = today();
    let now = rfc3339(today);
    let env = TestEnv::migrated_at(&now).await;
    for t in ["orders", "trades"] {
        assert_eq!(
            env.partitions(&format!("public.{t}")).await,
            expected(t, Interval::Month, utc(), today, 0..=2, "timestamptz"),
            "{t} migrated on {now}"
        );
    }
    let idx = env.scalar_i64("SELECT count(*) FROM pg_indexes WHERE indexname IN ('idx_orders_user_created', 'idx_orders_symbol_status', 'idx_trades_user_created', 'idx_trades_symbol_side')").await;
    assert_eq!(idx, 4);

    let (out, second) = env.json(&["migrate", "--now", &now], &[]);
    ok(&out);
    let outcomes: Vec<&str> =
        second["migrations"].as_array().unwrap().iter().map(|m| m["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.len() >= 9 && outcomes.iter().all(|o| *o == "unchanged"), "{outcomes:?}");
    let before = env.fingerprint().await;
    // psql -f works too, pinned the same way through the session setting, and changes nothing.
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let out = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &env.url, "-f"])
            .arg(&f)
            .env("PGOPTIONS", format!("-c partition_archiver.now={now}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "psql -f {}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(env.fingerprint().await, before);
}

#[tokio::test]
async fn the_sql_clock_is_the_pinned_instant_or_the_real_one() {
    let env = TestEnv::migrated_at(&rfc3339(today())).await;
    let unpinned = env.scalar_i64("SELECT CASE WHEN partition_archiver.now() = now() THEN 1::int8 ELSE 0 END").await;
    assert_eq!(unpinned, 1, "without the setting, now() of the transaction");
    env.db.batch_execute("SET partition_archiver.now = '2028-02-29T23:30:00-05:00'").await.unwrap();
    assert_eq!(
        env.scalar_text("SELECT partition_archiver.now()::text").await.as_deref(),
        Some("2028-03-01 04:30:00+00"),
        "the instant with its offset, whatever the session's TimeZone"
    );
    env.db.batch_execute("RESET partition_archiver.now").await.unwrap();
    assert_eq!(
        env.scalar_i64("SELECT CASE WHEN partition_archiver.now() = now() THEN 1::int8 ELSE 0 END").await,
        1,
        "after RESET"
    );
    env.db.batch_execute("SET partition_archiver.now = 'next tuesday'").await.unwrap();
    let err = env.db.query_one("SELECT partition_archiver.now()", &[]).await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| err.to_string());
    assert!(message.contains("invalid input syntax for type timestamp with time zone"), "{message}");
    env.db.batch_execute("RESET partition_archiver.now").await.unwrap();
    // `migrate --now` refuses what is not an instant before touching the database.
    let before = env.fingerprint().await;
    let (out, v) = env.json(&["migrate", "--now", "2026-13-01"], &[]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v.to_string().contains("not an RFC 3339 timestamp"), "{v}");
    assert_eq!(env.fingerprint().await, before);
}

/// The planner and `partition_archiver.create_partitions` follow the same rules: on today, in
/// every zone, monthly and yearly, timestamptz and date keys, both create exactly the expected
/// partitions, and the planner finds nothing to do on a table the SQL function prepared.
#[tokio::test]
async fn the_binary_and_the_sql_function_create_the_same_partitions_in_every_zone() {
    let today = today();
    let now = rfc3339(today);
    let env = TestEnv::migrated_at(&now).await;
    let mut cases: Vec<(String, Interval, &str)> = Vec::new();
    for z in zones() {
        cases.push((z.clone(), Interval::Month, "timestamptz"));
        cases.push((z.clone(), Interval::Year, "timestamptz"));
        cases.push((z, Interval::Month, "date"));
    }
    let mut bin_args: Vec<String> = vec!["maintain".into(), "--now".into(), now.clone()];
    let mut plan_args: Vec<String> = vec!["plan".into(), "--now".into(), now.clone()];
    for (i, (zone, interval, key)) in cases.iter().enumerate() {
        let interval_name = if *interval == Interval::Month { "month" } else { "year" };
        for side in ["sql", "bin"] {
            env.db
                .batch_execute(&format!(
                    "CREATE TABLE public.{side}_{i} (id bigint, at {key} NOT NULL) PARTITION BY RANGE (at);
                     INSERT INTO partition_archiver.part_config (schema_name, table_name, partition_column, partition_interval, time_zone, premake)
                     VALUES ('public', '{side}_{i}', 'at', '{interval_name}', '{zone}', 2);"
                ))
                .await
                .unwrap();
        }
        bin_args.extend(["--table".into(), format!("public.bin_{i}")]);
        plan_args.extend(["--table".into(), format!("public.sql_{i}")]);
    }
    // The SQL side reads the pinned clock through create_partitions' default argument.
    let sql = connect(&env.url).await;
    sql.batch_execute(&format!("SET partition_archiver.now = '{now}'; SET TimeZone = 'Pacific/Honolulu'"))
        .await
        .unwrap();
    for i in 0..cases.len() {
        sql.batch_execute(&format!("SELECT partition_archiver.create_partitions('public', 'sql_{i}')")).await.unwrap();
    }
    let bin_args: Vec<&str> = bin_args.iter().map(String::as_str).collect();
    ok(&env.run(&bin_args, &[("ARCHIVE_BUCKET", "")]));

    for (i, (zone, interval, key)) in cases.iter().enumerate() {
        let tz: Tz = zone.parse().unwrap();
        let want = expected("t", *interval, tz, today, 0..=2, key);
        for side in ["sql", "bin"] {
            let got: Vec<(String, String)> = env
                .partitions(&format!("public.{side}_{i}"))
                .await
                .into_iter()
                .map(|(n, b)| (n.replacen(&format!("{side}_{i}"), "t", 1), b))
                .collect();
            assert_eq!(got, want, "{side}: {zone} {key}, on {now}");
        }
    }
    let plan_args: Vec<&str> = plan_args.iter().map(String::as_str).collect();
    let (out, plan) = env.json(&plan_args, &[("ARCHIVE_BUCKET", "")]);
    ok(&out);
    for t in plan["tables"].as_array().unwrap() {
        assert!(t["steps"].as_array().unwrap().is_empty(), "the SQL function left nothing to do: {t}");
    }
}

/// Runs on later days (today plus 1, 2, 7, 13 and 25 months, the day clamped to the month's end)
/// create exactly the months from the first one missing (or the retention cutoff) up to two ahead.
#[tokio::test]
async fn maintain_on_later_days_creates_the_missing_months_up_to_two_ahead() {
    let today = today();
    let env = TestEnv::migrated_at(&rfc3339(today)).await;
    let mut last = 2; // the migration created today's month and two ahead
    for k in [1, 2, 7, 13, 25] {
        let then = today.checked_add_months(Months::new(k as u32)).unwrap();
        let args = ["maintain", "--now", &rfc3339(then), "--table", "orders"];
        let (out, report) = env.json(&args, &[("ARCHIVE_BUCKET", "")]);
        ok(&out);
        let want: Vec<String> = ((last + 1).max(k - 6)..=k + 2)
            .map(|m| format!("create_partition public.orders_{}", month_of(today, m)))
            .collect();
        assert_eq!(steps(&report, "public.orders"), want, "on {then} (today {today} + {k} months)");
        // Months that ended before the cutoff stay: no bucket, so retention is skipped, and said.
        let warnings = report["tables"][0]["warnings"].to_string();
        assert_eq!(warnings.contains("retention skipped"), k >= 7, "on {then}: {warnings}");
        last = k + 2;
        let fp = env.fingerprint().await;
        let (out, again) = env.json(&args, &[("ARCHIVE_BUCKET", "")]);
        ok(&out);
        assert!(steps(&again, "public.orders").is_empty(), "{again}");
        assert_eq!(env.fingerprint().await, fp);
    }
}

/// Rows of the ninth and eighth months before today sit in the default partition: a run on today
/// gives them their months (and fills the months within retention up to today's), archives both
/// (past the six months of retention) under their months' keys, and drops them; a second run has
/// nothing to do.
#[tokio::test]
async fn months_past_retention_on_today_are_archived_under_their_own_keys() {
    let today = today();
    let now = rfc3339(today);
    let env = TestEnv::migrated_at(&now).await;
    let (m9, m8) = (month_of(today, -9), month_of(today, -8));
    let start = |m: &str| format!("{}-01 00:00:00+00", m.replace('_', "-"));
    env.db
        .batch_execute(&format!(
            "INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, created_at)
             SELECT g, 'BTC-USD', 'buy', 'limit', 'filled', 1, 1, t
               FROM generate_series(timestamptz '{}', timestamptz '{}' - interval '1 second', interval '97 minutes')
                    WITH ORDINALITY AS s(t, g)",
            start(&m9),
            start(&month_of(today, -7)),
        ))
        .await
        .unwrap();
    let in_month = |m: &str| {
        format!(
            "SELECT count(*) FROM public.orders WHERE created_at >= '{}' AND created_at < timestamptz '{}' + interval '1 month'",
            start(m),
            start(m)
        )
    };
    let (rows9, rows8) = (env.scalar_i64(&in_month(&m9)).await, env.scalar_i64(&in_month(&m8)).await);
    assert!(rows9 > 0 && rows8 > 0);
    let (out, report) = env.json(&["maintain", "--now", &now, "--table", "orders"], &[]);
    ok(&out);
    // Their months get partitions (so they can be archived), and so does every month within
    // retention between them and the migrated ones (the gap is filled; the seventh month before
    // today, past the cutoff and without rows, is not).
    let mut want = vec![format!("create_partition public.orders_{m9}"), format!("create_partition public.orders_{m8}")];
    want.extend((-6..=-1).map(|k| format!("create_partition public.orders_{}", month_of(today, k))));
    for m in [&m9, &m8] {
        for s in ["detach", "archive", "drop"] {
            want.push(format!("{s} public.orders_{m}"));
        }
    }
    assert_eq!(steps(&report, "public.orders"), want, "on {now}");
    for (m, rows) in [(&m9, rows9), (&m8, rows8)] {
        let (year, month) = m.split_once('_').unwrap();
        let row = env
            .db
            .query_one(
                "SELECT state, object_key, row_count FROM partition_archiver.archive_manifest WHERE partition_name = $1",
                &[&format!("orders_{m}")],
            )
            .await
            .unwrap();
        let (state, key, count): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(state, "dropped");
        assert_eq!(key, format!("partition-archiver/public.orders/year={year}/month={month}/orders_{m}.csv.zst"));
        assert_eq!(count, rows);
        s3().await.head_object().bucket(&env.bucket).key(&key).send().await.expect("the object is there");
    }
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.orders_default").await, 0);
    let (out, again) = env.json(&["maintain", "--now", &now, "--table", "orders"], &[]);
    ok(&out);
    assert!(steps(&again, "public.orders").is_empty(), "{again}");
}
