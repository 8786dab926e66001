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
    assert_eq!(out.status.code(), Some(1), "a failed step: {}", String::from_utf8_lossy(&out.stdout));
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
