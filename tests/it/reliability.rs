//! Attacks on the invariants: kill -9 at random moments, the database connection terminated
//! mid-COPY and mid-DDL, the database server restarted between steps and mid-COPY, many runs at
//! once. After each attack the data itself is checked: rows in PostgreSQL plus rows in verified
//! archives equal the original rows, none twice, no orphaned multipart upload, manifest states
//! consistent with the catalog.

use crate::archive::{assert_consistent, crash_at, next_run_completes, seed, OrdersBefore, NOW};
use crate::harness::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn spawn_maintain(env: &TestEnv) -> std::process::Child {
    env.command(&["maintain", "--now", NOW, "--table", "orders"], &[("METRICS", "off")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One campaign: fresh databases, each with a run killed with SIGKILL after a random delay spread
/// over a whole run, then a clean run, then the invariant on the data; until `kills` runs were
/// really killed mid-way (a run that finished before its kill does not count).
async fn kill_campaign(kills: usize) {
    // Calibrate: how long does an uninterrupted run take on this machine right now?
    let calibration = TestEnv::migrated_at(NOW).await;
    seed(&calibration).await;
    let started = Instant::now();
    let status = spawn_maintain(&calibration).wait().unwrap();
    assert!(status.success());
    let run_ms = (started.elapsed().as_millis() as u64).max(50);
    let mut killed = 0;
    let mut attempts = 0;
    while killed < kills {
        attempts += 1;
        assert!(attempts <= kills * 4, "only {killed} of {attempts} runs were still running when killed");
        let env = TestEnv::migrated_at(NOW).await;
        seed(&env).await;
        let before = OrdersBefore::take(&env).await;
        let mut child = spawn_maintain(&env);
        // Spread the kills over the whole run: connecting, planning, detaching, COPY, upload,
        // verification, drop.
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..run_ms)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        env.wait_for_orphaned_backends().await;
        before.assert_none_lost(&env).await;
        let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
        assert!(out.status.success(), "attempt {attempts}: the clean run after a kill must succeed: {report}");
        assert_consistent(&env).await;
        before.assert_none_lost(&env).await;
    }
}

// 50 kills in all, in five tests so they spread over the test threads.
#[tokio::test]
async fn kill_9_campaign_1() {
    kill_campaign(10).await;
}
#[tokio::test]
async fn kill_9_campaign_2() {
    kill_campaign(10).await;
}
#[tokio::test]
async fn kill_9_campaign_3() {
    kill_campaign(10).await;
}
#[tokio::test]
async fn kill_9_campaign_4() {
    kill_campaign(10).await;
}
#[tokio::test]
async fn kill_9_campaign_5() {
    kill_campaign(10).await;
}

/// Waits until a backend of the archiver matches `condition` (SQL on pg_stat_activity) and
/// evaluates `select` on it (`pid`, or `pg_terminate_backend(pid)`). Returns whether it found one.
async fn when_backend(env: &TestEnv, condition: &str, select: &str, deadline: Duration) -> bool {
    let admin = connect(&env.url).await;
    let started = Instant::now();
    let sql = format!(
        "SELECT {select} FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'partition-archiver/%' AND {condition}"
    );
    while started.elapsed() < deadline {
        if !admin.query(&sql, &[]).await.unwrap().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

async fn terminate_when(env: &TestEnv, condition: &str, deadline: Duration) -> bool {
    when_backend(env, condition, "pg_terminate_backend(pid)", deadline).await
}

/// Enough rows in March that the COPY of that month lasts long enough to be caught.
async fn seed_for_a_long_copy(env: &TestEnv) {
    seed(env).await;
    env.db
        .batch_execute(
            "INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, created_at)
             SELECT g, 'BTC-USD', 'buy', 'limit', 'filled', g, 1, timestamptz '2026-03-01 00:00+00' + (g * interval '10 seconds')
               FROM generate_series(1, 200000) g",
        )
        .await
        .unwrap();
}

/// After a COPY was cut off: its multipart upload was aborted and nothing was verified or dropped.
async fn assert_interrupted_copy_left_nothing(env: &TestEnv) {
    assert_eq!(env.multipart_uploads().await, 0, "the upload of the interrupted COPY was aborted");
    assert_eq!(
        env.scalar_i64(
            "SELECT count(*) FROM partition_archiver.archive_manifest WHERE state IN ('verified', 'dropped')"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn connection_terminated_mid_copy_fails_cleanly_and_the_next_run_completes() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_for_a_long_copy(&env).await;
    let before = OrdersBefore::take(&env).await;
    let child = spawn_maintain(&env);
    let found = terminate_when(&env, "query LIKE 'COPY %'", Duration::from_secs(30)).await;
    let out = child.wait_with_output().unwrap();
    assert!(found, "never saw the COPY");
    assert!(!out.status.success(), "the run must report the lost connection");
    assert_interrupted_copy_left_nothing(&env).await;
    before.assert_none_lost(&env).await;
    next_run_completes(&env).await;
    before.assert_none_lost(&env).await;
}

#[tokio::test]
async fn connection_terminated_while_ddl_waits_for_a_lock_changes_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    let blocker = connect(&env.url).await;
    blocker.batch_execute("BEGIN; LOCK TABLE public.orders IN ACCESS SHARE MODE").await.unwrap();
    let mut cmd = env
        .command(&["maintain", "--now", NOW, "--table", "orders"], &[("LOCK_TIMEOUT_MS", "10000"), ("METRICS", "off")]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    let found = terminate_when(&env, "wait_event_type = 'Lock'", Duration::from_secs(20)).await;
    let out = child.wait_with_output().unwrap();
    assert!(found, "the DDL never waited for the lock");
    assert!(!out.status.success());
    blocker.batch_execute("ROLLBACK").await.unwrap();
    before.assert_none_lost(&env).await;
    next_run_completes(&env).await;
    before.assert_none_lost(&env).await;
}

/// The crash points of the archive lifecycle, in order (see `a_crash_at_any_step_is_completed_by_the_next_run`).
/// `after_complete` is the write-once resume case: the object exists, `uploaded` is not recorded.
pub(crate) const LIFECYCLE_POINTS: [&str; 8] = [
    "after_detach",
    "after_create_upload",
    "upload_part",
    "before_complete",
    "after_complete",
    "after_upload",
    "after_verify",
    "after_drop",
];

/// The database crashes (an immediate shutdown: no checkpoint, crash recovery on start) right after
/// the archiver died between two steps: whatever the last committed state, the next run against the
/// recovered server completes it, with every row in PostgreSQL or in a verified archive. Each point
/// twice: after a CHECKPOINT (every commit survives the crash), and at once, when the test server's
/// `synchronous_commit = off` may lose the last commits (as a real crash does under asynchronous
/// commit: each transition is one transaction, so a lost one is simply redone).
#[tokio::test]
async fn a_database_crash_between_steps_is_completed_by_the_next_run() {
    let server = PrivateServer::start();
    for (point, checkpoint) in LIFECYCLE_POINTS.into_iter().flat_map(|p| [(p, true), (p, false)]) {
        let mut env = TestEnv::migrated_on(&server.admin_url, NOW).await;
        seed(&env).await;
        let before = OrdersBefore::take(&env).await;
        crash_at(&env, point).await;
        let started_at = "SELECT pg_postmaster_start_time()::text";
        let first_start = env.scalar_text(started_at).await;
        if checkpoint {
            env.db.batch_execute("CHECKPOINT").await.unwrap();
        }
        server.restart("immediate");
        env.reconnect().await;
        assert_ne!(env.scalar_text(started_at).await, first_start, "the server was restarted");
        before.assert_none_lost(&env).await;
        let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
        assert!(
            out.status.success(),
            "{point} ({checkpoint}): the run after the database crash must succeed: {report}"
        );
        assert_consistent(&env).await;
        before.assert_none_lost(&env).await;
    }
}

/// The database server restarts while the archiver is in the middle of a COPY: the run fails with a
/// clear error and aborts its multipart upload, nothing is dropped, and the next run completes.
#[tokio::test]
async fn a_database_restart_mid_copy_fails_the_run_cleanly_and_the_next_run_completes() {
    let server = PrivateServer::start();
    let mut env = TestEnv::migrated_on(&server.admin_url, NOW).await;
    seed_for_a_long_copy(&env).await;
    let before = OrdersBefore::take(&env).await;
    let mut cmd = env.command(&["maintain", "--now", NOW, "--table", "orders"], &[("METRICS", "off")]);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let copying = when_backend(&env, "state = 'active' AND query LIKE 'COPY %'", "pid", Duration::from_secs(30)).await;
    assert!(copying, "never saw the COPY");
    server.restart("fast");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the run must report the lost connection");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("COPY"), "the error says which step failed: {stderr}");
    env.reconnect().await;
    assert_interrupted_copy_left_nothing(&env).await;
    before.assert_none_lost(&env).await;
    next_run_completes(&env).await;
    before.assert_none_lost(&env).await;
}

/// With a password source (RDS IAM authentication: a token is valid 15 minutes, a warm Lambda
/// process connects for hours), every new session gets a password made for it, not the one made
/// at start.
#[tokio::test]
async fn every_session_gets_a_password_made_for_it() {
    use partition_archiver::pg::connect::DbConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let env = TestEnv::new().await;
    let url = env.url.clone();
    let mut config = DbConfig::from_lookup(&|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "PGSSLMODE" => Some("disable".into()),
        _ => None,
    })
    .unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    config.password_source = Some(Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(format!("token-{n}")) })
    }));
    for expected in 1..=2 {
        let client = config.connect().await.unwrap();
        assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1);
        assert_eq!(made.load(Ordering::SeqCst), expected);
    }
    // A source that fails fails the connect, saying so.
    config.password_source = Some(Arc::new(|| Box::pin(async { Err(anyhow::anyhow!("no credentials")) })));
    let Err(e) = config.connect().await else { panic!("no password, no session") };
    assert!(format!("{e:#}").contains("no credentials"), "{e:#}");
}
