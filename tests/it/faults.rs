//! S3 faults: a small fault-injecting TCP proxy in front of LocalStack drops connections, resets
//! them part-way through a request, and stalls them, at random points of multipart uploads. The
//! SDK's retries and ours must either complete the archive or fail cleanly, with nothing dropped
//! that is not verified; a later clean run completes and leaves no orphaned upload. A second
//! proxy blackholes S3 part way through (no data, no reset): the S3 timeouts end the step in a
//! bounded time.

use crate::archive::{assert_consistent, seed, OrdersBefore, NOW};
use crate::harness::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct FaultCounts {
    passed: AtomicU64,
    reset: AtomicU64,
    stalled: AtomicU64,
    refused: AtomicU64,
}

/// A zero linger makes dropping the socket send a TCP reset instead of a FIN (the deprecation
/// warns about blocking on drop, which only a non-zero linger does).
#[allow(deprecated)]
fn reset_on_drop(s: &TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

/// Forwards `from` to `to`; when `cut_after` is reached, stops (the caller then resets).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut_after: Option<u64>,
    stall: Option<(u64, Duration)>,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    let mut stalled = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if let Some((at, d)) = stall {
            if !stalled && seen + n as u64 >= at {
                stalled = true;
                tokio::time::sleep(d).await;
            }
        }
        if let Some(cut) = cut_after {
            if seen + n as u64 >= cut {
                return true;
            }
        }
        seen += n as u64;
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}

async fn handle(client: TcpStream, upstream: SocketAddr, counts: Arc<FaultCounts>) {
    let roll = fastrand::u32(0..100);
    if roll < 10 {
        // Accept, then drop at once.
        counts.refused.fetch_add(1, Ordering::Relaxed);
        reset_on_drop(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (cut, stall) = match roll {
        10..=29 => {
            counts.reset.fetch_add(1, Ordering::Relaxed);
            (Some(fastrand::u64(0..6 * 1024 * 1024)), None)
        }
        30..=44 => {
            counts.stalled.fetch_add(1, Ordering::Relaxed);
            (None, Some((fastrand::u64(0..1024 * 1024), Duration::from_millis(fastrand::u64(100..1500)))))
        }
        _ => {
            counts.passed.fetch_add(1, Ordering::Relaxed);
            (None, None)
        }
    };
    reset_on_drop(&client);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(pump(cr, sw, cut, stall));
    let down = tokio::spawn(pump(sr, cw, None, None));
    // When the request side is cut, drop everything: the client sees a connection reset.
    if up.await.unwrap_or(false) {
        down.abort();
    } else {
        let _ = down.await;
    }
}

async fn start_proxy(upstream: SocketAddr) -> (u16, Arc<FaultCounts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(FaultCounts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(handle(client, upstream, c.clone()));
        }
    });
    (port, counts)
}

async fn faulty_env() -> (TestEnv, OrdersBefore) {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    // Enough data for two 5 MiB parts per month without compression.
    env.db
        .batch_execute(
            "INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, created_at)
             SELECT g, md5(g::text), 'buy', 'limit', 'filled', g, 1, timestamptz '2026-03-01 00:00+00' + (g * interval '30 seconds')
               FROM generate_series(1, 150000) g",
        )
        .await
        .unwrap();
    let before = OrdersBefore::take(&env).await;
    (env, before)
}

fn maintain_via(env: &TestEnv, endpoint_url: &str) -> std::process::Output {
    env.run(
        &["maintain", "--now", NOW, "--table", "orders"],
        &[("AWS_ENDPOINT_URL", endpoint_url), ("ARCHIVE_COMPRESSION", "none"), ("METRICS", "off")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_connection_faults_complete_or_fail_cleanly() {
    let upstream: SocketAddr = endpoint().trim_start_matches("http://").parse().unwrap();
    let (port, counts) = start_proxy(upstream).await;
    let faulty = format!("http://127.0.0.1:{port}");
    let mut succeeded = 0;
    const RUNS: usize = 4;
    for _ in 0..RUNS {
        let (env, before) = faulty_env().await;
        let out = tokio::task::block_in_place(|| maintain_via(&env, &faulty));
        if out.status.success() {
            succeeded += 1;
        }
        // Whatever happened, no row is lost or duplicated, and nothing unverified was dropped.
        before.assert_none_lost(&env).await;
        let bad = env
            .scalar_i64(
                "SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'
                   AND (verified_at IS NULL OR sha256 IS NULL OR row_count IS NULL)",
            )
            .await;
        assert_eq!(bad, 0);
        // A clean run completes whatever the faulty one left, and leaves no orphaned upload.
        let out = tokio::task::block_in_place(|| maintain_via(&env, &endpoint()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert_consistent(&env).await;
        before.assert_none_lost(&env).await;
    }
    let injected = counts.reset.load(Ordering::Relaxed)
        + counts.stalled.load(Ordering::Relaxed)
        + counts.refused.load(Ordering::Relaxed);
    assert!(injected > 0, "the proxy injected no fault");
    eprintln!(
        "fault proxy: {} passed, {} reset, {} stalled, {} dropped at once; {succeeded}/{RUNS} faulty runs succeeded",
        counts.passed.load(Ordering::Relaxed),
        counts.reset.load(Ordering::Relaxed),
        counts.stalled.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed)
    );
}

/// A proxy that forwards each connection's first `after` bytes of requests, then goes silent
/// both ways without closing anything: what a blackholed route (a dropped NAT mapping, a partition)
/// looks like to a client, which gets neither data nor a reset.
async fn start_blackhole(upstream: SocketAddr, after: u64) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silenced = Arc::new(AtomicU64::new(0));
    let s = silenced.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let down = tokio::spawn(pump(sr, cw, None, None));
                if pump(cr, sw, Some(after), None).await {
                    // Silent from here: stop the responses too, and hold both sockets open.
                    down.abort();
                    s.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
            });
        }
    });
    (port, silenced)
}

/// S3 blackholed part way through an upload: the S3 timeouts end the archive step within a
/// bounded time (a failed step, a transient error in the report), nothing is dropped or lost, and
/// a run with S3 back completes the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_s3_connection_ends_the_step_in_bounded_time_and_the_next_run_completes() {
    let upstream: SocketAddr = endpoint().trim_start_matches("http://").parse().unwrap();
    let (port, silenced) = start_blackhole(upstream, 256 * 1024).await;
    let (env, before) = faulty_env().await;
    let blackhole = format!("http://127.0.0.1:{port}");
    let vars = [
        ("AWS_ENDPOINT_URL", blackhole.as_str()),
        ("S3_CONNECT_TIMEOUT_SECONDS", "2"),
        ("S3_READ_TIMEOUT_SECONDS", "3"),
        ("S3_ATTEMPT_TIMEOUT_SECONDS", "5"),
        ("ARCHIVE_COMPRESSION", "none"),
        ("METRICS", "off"),
    ];
    let started = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| env.run(&["maintain", "--now", NOW, "--table", "orders"], &vars));
    let elapsed = started.elapsed();
    eprintln!(
        "blackholed S3: the run ended after {elapsed:?}, {} connections silenced",
        silenced.load(Ordering::Relaxed)
    );
    assert!(silenced.load(Ordering::Relaxed) > 0, "the proxy silenced no connection");
    assert_eq!(out.status.code(), Some(3), "a transient failure: {}", String::from_utf8_lossy(&out.stdout));
    assert!(elapsed < Duration::from_secs(240), "the run must end in bounded time: {elapsed:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&serde_json::Value> =
        report["tables"][0]["steps"].as_array().unwrap().iter().filter(|s| s["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["step"], "archive", "{report}");
    assert_eq!(report["tables"][0]["error"]["kind"], "transient", "{report}");
    before.assert_none_lost(&env).await;
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await,
        0
    );
    let out = tokio::task::block_in_place(|| maintain_via(&env, &endpoint()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_consistent(&env).await;
    before.assert_none_lost(&env).await;
}

/// Forwards `from` to `to` until the bytes counted in `sent` (shared by every connection of one
/// proxy) cross the next of `cuts`; returns true when this connection is the one to reset.
async fn pump_until_cut(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    sent: Arc<AtomicU64>,
    cuts: Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let total = sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        {
            let mut c = cuts.lock().unwrap();
            if c.front().is_some_and(|p| total >= *p) {
                c.pop_front();
                return true;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}

/// A proxy in front of PostgreSQL that resets a connection, both sides at once (as a NAT or load
/// balancer dropping its state does to a client and a server that both notice), whenever the bytes
/// sent through it in one direction cross one of `cuts`: from the server for archives (COPY TO
/// STDOUT), from the client for restores (COPY FROM STDIN). Counting across connections makes the
/// number of resets certain, not their victims.
async fn start_pg_reset_proxy(upstream: SocketAddr, from_server: bool, mut cuts: Vec<u64>) -> (u16, Arc<AtomicU64>) {
    cuts.sort_unstable();
    let cuts = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(cuts)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resets = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let r = resets.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (r, sent, cuts) = (r.clone(), sent.clone(), cuts.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                reset_on_drop(&client);
                reset_on_drop(&server);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let (counted, other) = if from_server {
                    (tokio::spawn(pump_until_cut(sr, cw, sent, cuts)), tokio::spawn(pump(cr, sw, None, None)))
                } else {
                    (tokio::spawn(pump_until_cut(cr, sw, sent, cuts)), tokio::spawn(pump(sr, cw, None, None)))
                };
                if counted.await.unwrap_or(false) {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                other.abort();
            });
        }
    });
    (port, resets)
}

/// Chunked archives and restores through PostgreSQL connections reset at random moments: every
/// run either completes or leaves a state the next completes, within a few runs; nothing is lost,
/// every key has one version, and the restores are identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_archives_and_restores_through_database_resets_complete_within_a_few_runs() {
    let env = TestEnv::migrated_at(NOW).await;
    crate::chunks::seed_big(&env, 30_000).await;
    let before = OrdersBefore::take(&env).await;
    let url = url::Url::parse(&env.url).unwrap();
    let upstream: SocketAddr = format!("127.0.0.1:{}", url.port().unwrap()).parse().unwrap();
    // Three resets somewhere in the first 2 MiB each way (archiving the two months sends ~4 MiB
    // from the server; restoring them, as much to it).
    let cuts = || (0..3).map(|_| fastrand::u64(64 * 1024..2 * 1024 * 1024)).collect::<Vec<u64>>();
    let (port, resets) = start_pg_reset_proxy(upstream, true, cuts()).await;
    let (restore_port, restore_resets) = start_pg_reset_proxy(upstream, false, cuts()).await;
    let through = |port: u16| {
        let mut u = url.clone();
        u.set_port(Some(port)).unwrap();
        u.to_string()
    };
    let (archive_url, restore_url) = (through(port), through(restore_port));
    let chunked = [crate::chunks::CHUNKED, &[("DATABASE_URL", archive_url.as_str()), ("METRICS", "off")]].concat();
    let restoring = [crate::chunks::CHUNKED, &[("DATABASE_URL", restore_url.as_str()), ("METRICS", "off")]].concat();
    let mut runs = 0;
    loop {
        runs += 1;
        let out = tokio::task::block_in_place(|| env.run(&["maintain", "--now", NOW, "--table", "orders"], &chunked));
        before.assert_none_lost(&env).await;
        let done =
            env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await;
        if out.status.success() && done == 2 {
            break;
        }
        assert!(runs < 12, "not complete after {runs} runs through resets: {}", String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(resets.load(Ordering::Relaxed), 3, "the proxy made its three resets during the archive");
    assert_consistent(&env).await;
    // One version per key: no object was written twice.
    let versions = s3().await.list_object_versions().bucket(&env.bucket).send().await.unwrap();
    let mut keys: Vec<&str> = versions.versions().iter().filter_map(|v| v.key()).collect();
    let total = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), total, "a key has more than one version");
    // Restores through the same resets: each either restores identical rows or fails and is run again.
    let mut restore_runs = 0;
    for partition in ["orders_2026_03", "orders_2026_04"] {
        loop {
            restore_runs += 1;
            let out = tokio::task::block_in_place(|| {
                env.run(&["restore", "--table", "orders", "--partition", partition, "--into-schema", "r"], &restoring)
            });
            // A reset after the final rename committed fails the command, with the month restored.
            let restored =
                format!("SELECT count(*) FROM pg_tables WHERE schemaname = 'r' AND tablename = '{partition}'");
            if out.status.success() || env.scalar_i64(&restored).await == 1 {
                break;
            }
            assert!(restore_runs < 16, "{partition} not restored through resets");
        }
    }
    let restored = env
        .scalar_text(
            "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM \
             (SELECT * FROM r.orders_2026_03 UNION ALL SELECT * FROM r.orders_2026_04) t",
        )
        .await;
    assert_eq!(restored, before.sum_of_months(), "the restores are identical");
    eprintln!(
        "database resets: {} during archives, complete after {runs} runs; {} during restores, done after {restore_runs} \
         attempts for two months",
        resets.load(Ordering::Relaxed),
        restore_resets.load(Ordering::Relaxed)
    );
    assert!(restore_resets.load(Ordering::Relaxed) > 0, "the restores went through no reset");
}
