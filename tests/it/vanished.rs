//! Runs that vanish. A session of a partition-archiver run whose client is gone (half-open TCP:
//! the server never heard) keeps its advisory lock, idle. The next run after `STALE_LOCK_SECONDS`
//! terminates it and goes on; never before, never another application's session, never a live
//! run's (one whose other sessions work, or whose lease beats while it waits); every skipped table
//! is reported with its lock's holder and counted, and only maintained tables get a new date.

use crate::archive::{seed, NOW};
use crate::harness::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The table lock's first key (`pg::lock::LockClass::Table`).
const TABLE_LOCK: i32 = 0x5041_5243;

/// A session named `name` holding `table`'s lock and then idle, as a vanished run's backend is.
async fn lock_holder(env: &TestEnv, name: &str, table: &str) -> (tokio_postgres::Client, i32) {
    let c = connect(&format!("{}?application_name={name}", env.url)).await;
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    c.query_one("SELECT pg_advisory_lock($1, hashtext($2))", &[&TABLE_LOCK, &table]).await.unwrap();
    (c, pid)
}

async fn alive(env: &TestEnv, pid: i32) -> bool {
    env.scalar_i64(&format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")).await == 1
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap_or_else(|| panic!("{name}: {report}"))
}

/// The run's EMF line (stderr on the CLI).
fn run_metrics(stderr: &[u8]) -> Value {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("RunSucceeded").is_some())
        .expect("a run metrics line")
}

#[tokio::test]
async fn a_vanished_run_is_cleared_after_the_stale_threshold_and_no_other_session_ever_is() {
    let env = TestEnv::migrated_at(NOW).await;
    env.db
        .batch_execute(
            "CREATE TABLE public.fills (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name) VALUES ('public', 'fills');",
        )
        .await
        .unwrap();
    let started = Instant::now();
    // orders: a vanished run's session.
    let ghost_name = "partition-archiver/0ddba11ca5e0000f";
    let (_ghost, ghost) = lock_holder(&env, ghost_name, "public.orders").await;
    // trades: another application's idle session (an operator's psql, say).
    let (_other, other) = lock_holder(&env, "psql", "public.trades").await;
    // fills: a live run: its lock session is idle, another of its sessions works.
    let live_name = "partition-archiver/a11ve000000000f1";
    let (_live, live) = lock_holder(&env, live_name, "public.fills").await;
    let worker = connect(&format!("{}?application_name={live_name}", env.url)).await;
    let working = tokio::spawn(async move { worker.batch_execute("SELECT pg_sleep(100)").await });

    let vars = [("STALE_LOCK_SECONDS", "60"), ("ARCHIVE_BUCKET", "")];
    // Before the threshold: all three skipped, each with its holder; the run itself succeeds.
    let (out, report) = env.json(&["maintain", "--now", NOW], &vars);
    ok(&out);
    assert_eq!((report["ok"].as_bool(), report["tables_skipped"].as_u64()), (Some(true), Some(3)), "{report}");
    assert_eq!(report["complete"], false, "skipped tables are work left for the next run: {report}");
    for (name, pid, holder) in
        [("public.orders", ghost, ghost_name), ("public.trades", other, "psql"), ("public.fills", live, live_name)]
    {
        let t = table(&report, name);
        assert_eq!(t["status"], "already_running", "{t}");
        let h = &t["lock_holder"];
        assert_eq!((h["pid"].as_i64(), h["application_name"].as_str()), (Some(pid as i64), Some(holder)), "{t}");
        assert_eq!((h["vanished"].as_bool(), h["terminated"].as_bool()), (Some(false), Some(false)), "{t}");
        assert!(h["idle_since"].is_string() && h["backend_start"].is_string() && h["client_addr"].is_string(), "{t}");
        assert!(t["warnings"].to_string().contains(&format!("pid {pid}")), "{t}");
        assert!(alive(&env, pid).await, "{name}: nobody is terminated before the threshold");
    }
    let metrics = run_metrics(&out.stderr);
    assert_eq!((metrics["RunSucceeded"].as_f64(), metrics["TablesSkippedLocked"].as_f64()), (Some(1.0), Some(3.0)));
    assert!(metrics["OldestTableMaintenanceDays"].is_number(), "{metrics}");
    assert_eq!(env.scalar_i64("SELECT count(*) FROM partition_archiver.table_maintenance").await, 0);

    // After it: the vanished run is terminated and orders maintained; the others are not touched.
    tokio::time::sleep(Duration::from_secs(63).saturating_sub(started.elapsed())).await;
    let (out, report) = env.json(&["maintain", "--now", NOW], &vars);
    ok(&out);
    let orders = table(&report, "public.orders");
    assert_eq!(orders["status"], "ok", "{orders}");
    let h = &orders["lock_holder"];
    assert_eq!(
        (h["pid"].as_i64(), h["vanished"].as_bool(), h["terminated"].as_bool()),
        (Some(ghost as i64), Some(true), Some(true))
    );
    assert!(orders["warnings"].to_string().contains("a vanished run held the lock"), "{orders}");
    assert!(!alive(&env, ghost).await, "the vanished run's session is gone");
    assert_eq!(report["tables_skipped"], 2, "{report}");
    for (name, pid) in [("public.trades", other), ("public.fills", live)] {
        let t = table(&report, name);
        assert_eq!(
            (t["status"].as_str(), t["lock_holder"]["vanished"].as_bool()),
            (Some("already_running"), Some(false))
        );
        assert!(alive(&env, pid).await, "{name}: another application's or a live run's session is never terminated");
    }
    let maintained = env
        .scalar_text("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM partition_archiver.table_maintenance")
        .await;
    assert_eq!(maintained.as_deref(), Some("orders"), "only the table maintained gets a date");
    working.abort();
}

/// The real binary, alive but idle behind its table lock for longer than the threshold (paused
/// after its detach, its main session idle): its lease keeps it from looking vanished, so a second
/// run skips the table, and the first finishes its work.
#[tokio::test]
async fn a_live_run_idle_behind_its_lock_for_longer_than_the_threshold_is_never_terminated() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    // In October only March is past retention: one detach, one pause.
    let october = "2026-10-15T00:00:00Z";
    let first = env
        .command(
            &["maintain", "--now", october, "--table", "orders"],
            &[("PARTITION_ARCHIVER_FAILPOINTS", "after_detach=pause:90"), ("METRICS", "off")],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its session holding the table lock has been idle for more than 62 s.
    let idle_holder = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                        WHERE l.locktype = 'advisory' AND l.classid = 1346458179 AND a.state LIKE 'idle%'
                          AND a.datname = current_database()
                          AND a.application_name LIKE 'partition-archiver/%'
                          AND a.state_change < clock_timestamp() - interval '62 seconds'";
    let started = Instant::now();
    while env.scalar_i64(idle_holder).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(100), "the first run never sat idle behind its lock");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (out, report) = env.json(&["maintain", "--now", october, "--table", "orders"], &[("STALE_LOCK_SECONDS", "60")]);
    ok(&out);
    let t = table(&report, "public.orders");
    // ... although the session holding the lock had been idle for longer than the threshold.
    let idle_since: chrono::DateTime<chrono::Utc> = t["lock_holder"]["idle_since"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now() - idle_since).num_seconds() > 60, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["lock_holder"]["vanished"].as_bool()),
        (Some("already_running"), Some(false)),
        "{t}"
    );
    let first = first.wait_with_output().unwrap();
    ok(&first);
    let done: Value = serde_json::from_slice(&first.stdout).unwrap();
    let steps = steps(&done, "public.orders");
    assert!(steps.contains(&"drop public.orders_2026_03".to_string()), "the first run finished: {steps:?}");
}
