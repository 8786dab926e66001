//! PostgreSQL (and, for a restore, S3) blackholed in each phase of an archive and a restore: a
//! proxy in front of the server forwards everything until the client sends a statement of the
//! phase, then goes silent (no data, no reset) on that connection, or on every connection. The run must end within a bound
//! of the silence setting with exit code 3 (transient), lose nothing, and leave a state the next
//! run completes; a restore likewise.
//!
//! Through a user-space hop, TCP keepalives see a healthy peer (the hop acknowledges everything),
//! which is what RDS Proxy, PgBouncer or a load balancer with a dead upstream look like: what
//! ends these runs is the run's watchdog ([`partition_archiver::pg::watch`]).

use crate::archive::{assert_consistent, OrdersBefore, NOW};
use crate::harness::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `DB_KEEPALIVE_SECONDS` for these runs: the silence bound is then 10 s (5 s and three probes
/// 1.7 s apart), a connect's 20 s.
const KEEPALIVE: &str = "5";
/// A run that meets the blackhole must end within this (the bound, the watchdog's tick, one
/// connect that finds the server gone, the run's own wind-down), where without the watchdog it
/// waits forever.
const RUN_BOUND: Duration = Duration::from_secs(60);

/// Which connections fall silent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    /// The one that sent the statement (a NAT mapping or a proxy's upstream lost).
    Connection,
    /// Every connection, open or new (a network partition).
    Everything,
}

struct Blackhole {
    port: u16,
    /// Set once the trigger was seen.
    triggered: Arc<AtomicBool>,
    /// Set to end the silence: the silenced connections are reset, as the server's own
    /// keepalives and `tcp_user_timeout` do to a client that went silent.
    healed: Arc<AtomicBool>,
    silenced: Arc<AtomicU64>,
}

/// When the silence starts, relative to the client message that contains the trigger.
#[derive(Clone, Copy, Debug)]
enum At {
    /// Before forwarding it: the server never hears the statement.
    Before,
    /// Just after: the server runs it; its answer, or the rows a COPY TO sends, never arrive.
    After,
    /// After this many more bytes from the client (the rows of a COPY FROM, part way).
    AfterBytes(u64),
}

/// A proxy to `upstream` that falls silent at a client message containing `trigger` (see [`At`]).
async fn start_blackhole(upstream: SocketAddr, trigger: &'static str, at: At, scope: Scope) -> Blackhole {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bh = Blackhole {
        port,
        triggered: Arc::new(AtomicBool::new(false)),
        healed: Arc::new(AtomicBool::new(false)),
        silenced: Arc::new(AtomicU64::new(0)),
    };
    let (triggered, healed, silenced) = (bh.triggered.clone(), bh.healed.clone(), bh.silenced.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (triggered, healed, silenced) = (triggered.clone(), healed.clone(), silenced.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                #[allow(deprecated)]
                let _ = (client.set_linger(Some(Duration::ZERO)), server.set_linger(Some(Duration::ZERO)));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                // This connection's own silence.
                let mine = Arc::new(AtomicBool::new(false));
                let silent = {
                    let (triggered, mine) = (triggered.clone(), mine.clone());
                    move || {
                        mine.load(Ordering::SeqCst) || (scope == Scope::Everything && triggered.load(Ordering::SeqCst))
                    }
                };
                let up = {
                    let (silent, triggered, mine) = (silent.clone(), triggered.clone(), mine.clone());
                    async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        // Bytes still to forward before the silence, once the trigger was seen.
                        let mut countdown: Option<u64> = None;
                        loop {
                            // Silent: read nothing more, so the client's writes back up too.
                            while silent() {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let hit = countdown.is_none()
                                && !triggered.load(Ordering::SeqCst)
                                && String::from_utf8_lossy(&buf[..n]).contains(trigger);
                            let fall_silent = |mine: &AtomicBool| {
                                triggered.store(true, Ordering::SeqCst);
                                mine.store(true, Ordering::SeqCst);
                            };
                            match (hit, at) {
                                (true, At::Before) => {
                                    fall_silent(&mine);
                                    continue;
                                }
                                (true, At::AfterBytes(more)) => countdown = Some(more),
                                _ => {}
                            }
                            if let Some(left) = countdown.filter(|_| !hit) {
                                if left <= n as u64 {
                                    fall_silent(&mine);
                                    continue;
                                }
                                countdown = Some(left - n as u64);
                            }
                            if hit && matches!(at, At::After) {
                                // Silent first, so that not a byte of the answer gets through.
                                fall_silent(&mine);
                                let _ = sw.write_all(&buf[..n]).await;
                                continue;
                            }
                            // Silent now: drop what was read, keep the socket open.
                            if silent() {
                                continue;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let down = {
                    let silent = silent.clone();
                    async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            while silent() {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if silent() {
                                continue;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let heal = {
                    let silent = silent.clone();
                    async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if silent() && healed.load(Ordering::SeqCst) {
                                return;
                            }
                        }
                    }
                };
                let mut counted = false;
                let watch_silence = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if silent() && !counted {
                            counted = true;
                            silenced.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                };
                // Ends (and resets both sockets, by their zero linger) when either side closes,
                // or when the test heals the silence.
                tokio::select! {
                    _ = async { tokio::join!(up, down) } => {}
                    _ = heal => {}
                    _ = watch_silence => {}
                }
            });
        }
    });
    bh
}

/// Ends the silence: the proxy resets the silenced connections (as the server's keepalives end
/// them, within a minute, on a real network), and the server's sessions of the run are gone.
async fn heal(env: &TestEnv, bh: &Blackhole) {
    bh.healed.store(true, Ordering::SeqCst);
    let ours = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
                AND application_name LIKE 'partition-archiver/%'";
    let waited = Instant::now();
    while env.scalar_i64(ours).await > 0 {
        assert!(waited.elapsed() < Duration::from_secs(20), "the silenced sessions did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn through(env: &TestEnv, port: u16) -> String {
    let mut u = url::Url::parse(&env.url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

fn upstream(env: &TestEnv) -> SocketAddr {
    let u = url::Url::parse(&env.url).unwrap();
    format!("127.0.0.1:{}", u.port().unwrap()).parse().unwrap()
}

/// Runs `args` through the blackhole; returns the output and how long the run took.
fn run_through(env: &TestEnv, bh: &Blackhole, args: &[&str]) -> (std::process::Output, Duration) {
    let url = through(env, bh.port);
    let vars = [
        crate::chunks::CHUNKED,
        &[("DATABASE_URL", url.as_str()), ("DB_KEEPALIVE_SECONDS", KEEPALIVE), ("METRICS", "off")],
    ]
    .concat();
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| env.run(args, &vars));
    (out, started.elapsed())
}

/// The run ended in time, with exit code 3, and the report (when there is one) says transient.
fn assert_ended_transiently(phase: &str, out: &std::process::Output, elapsed: Duration, bh: &Blackhole) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(bh.triggered.load(Ordering::SeqCst), "{phase}: the trigger was never sent: {stdout}");
    assert!(bh.silenced.load(Ordering::Relaxed) > 0, "{phase}: nothing was silenced");
    assert!(elapsed < RUN_BOUND, "{phase}: the run took {elapsed:?}");
    assert_eq!(out.status.code(), Some(3), "{phase}: exit code; stdout {stdout}\nstderr {stderr}");
    assert!(stdout.contains("\"transient\""), "{phase}: {stdout}");
    // The watch closed the session, or a reply the server owed at once did not come.
    assert!(
        stderr.contains("closing a dead database session") || stdout.contains("no answer from the server within"),
        "{phase}: neither the watch nor a reply bound ended it: {stderr}"
    );
}

/// Each phase of an archive blackholed on the connection that runs it; after each, the next run
/// (no blackhole) completes the archive, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_silent_connection_ends_each_archive_phase_in_bounded_time_and_the_next_run_completes() {
    blackhole_phases(
        &[
            ("detach", "DETACH PARTITION", At::Before),
            ("chunk COPY", "TO STDOUT", At::After),
            ("after an upload", "archive_chunk SET state = 'uploaded'", At::After),
            ("drop", "DROP TABLE", At::After),
        ],
        Scope::Connection,
    )
    .await;
}

/// The same with every connection silenced (a network partition): no session of the run can ask
/// the server, so the watch closes the waiting ones once none has heard from it for the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_partition_ends_an_archive_in_bounded_time_and_the_next_run_completes() {
    blackhole_phases(
        &[("chunk COPY", "TO STDOUT", At::After), ("verify", "SELECT count(*) FROM", At::Before)],
        Scope::Everything,
    )
    .await;
}

async fn blackhole_phases(phases: &[(&str, &'static str, At)], scope: Scope) {
    for &(phase, trigger, at) in phases {
        let env = TestEnv::migrated_at(NOW).await;
        crate::chunks::seed_big(&env, 20_000).await;
        let before = OrdersBefore::take(&env).await;
        let bh = start_blackhole(upstream(&env), trigger, at, scope).await;
        let (out, elapsed) = run_through(&env, &bh, &["maintain", "--now", NOW, "--table", "orders"]);
        eprintln!("blackhole at {phase} ({scope:?}): the run ended after {elapsed:?}, exit {:?}", out.status.code());
        assert_ended_transiently(phase, &out, elapsed, &bh);
        before.assert_none_lost(&env).await;
        heal(&env, &bh).await;
        let out = tokio::task::block_in_place(|| {
            env.run(
                &["maintain", "--now", NOW, "--table", "orders"],
                &[crate::chunks::CHUNKED, &[("METRICS", "off")]].concat(),
            )
        });
        assert!(out.status.success(), "{phase}: the next run: {}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await,
            2,
            "{phase}: both months archived and dropped"
        );
        assert_consistent(&env).await;
        before.assert_none_lost(&env).await;
    }
}

/// A restore blackholed while it loads rows (`COPY ... FROM STDIN`): it ends in bounded time with
/// exit code 3, and the same restore run again restores identical rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_restore_load_ends_in_bounded_time_and_runs_again() {
    let env = TestEnv::migrated_at(NOW).await;
    crate::chunks::seed_big(&env, 20_000).await;
    let before = crate::archive::march_sum(&env, None).await;
    assert!(before.is_some(), "March has rows");
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], crate::chunks::CHUNKED));
    let bh = start_blackhole(upstream(&env), "FROM STDIN", At::AfterBytes(256 * 1024), Scope::Connection).await;
    let restore = ["restore", "--table", "orders", "--partition", "orders_2026_03", "--into-schema", "r"];
    let (out, elapsed) = run_through(&env, &bh, &restore);
    eprintln!("blackhole at restore load: the restore ended after {elapsed:?}, exit {:?}", out.status.code());
    assert_ended_transiently("restore load", &out, elapsed, &bh);
    heal(&env, &bh).await;
    ok(&env.run(&restore, crate::chunks::CHUNKED));
    assert_eq!(crate::archive::march_sum(&env, Some("r.orders_2026_03")).await, before, "the restore is identical");
}

/// S3 falls silent while a restore loads its second object (a partition of the way to S3, not a
/// fault of the data): the GetObject fails after the SDK's retries, the restore ends as transient
/// (exit code 3), and the staging table keeps the object already loaded; run again, the restore
/// goes on from there and restores identical rows. (Such a failure was once taken for corrupt
/// data, and the staging table with everything loaded in it was dropped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_silent_while_a_restore_loads_keeps_what_is_loaded() {
    let env = TestEnv::migrated_at(NOW).await;
    crate::chunks::seed_big(&env, 20_000).await;
    let before = crate::archive::march_sum(&env, None).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], crate::chunks::CHUNKED));
    let s3: SocketAddr = {
        let u = url::Url::parse(&endpoint()).unwrap();
        format!("127.0.0.1:{}", u.port().unwrap()).parse().unwrap()
    };
    // Silent from the moment the test says so (the trigger is never sent), on every connection.
    let bh = start_blackhole(s3, "\u{1}never sent\u{1}", At::Before, Scope::Everything).await;
    let proxy = format!("http://127.0.0.1:{}", bh.port);
    let restore = ["restore", "--table", "orders", "--partition", "orders_2026_03", "--into-schema", "r"];
    let vars = [
        ("ARCHIVE_CHUNK_SIZE", "1MiB"),
        ("ARCHIVE_STREAMS", "1"),
        ("AWS_ENDPOINT_URL", proxy.as_str()),
        ("S3_CONNECT_TIMEOUT_SECONDS", "2"),
        ("S3_READ_TIMEOUT_SECONDS", "2"),
        ("S3_ATTEMPT_TIMEOUT_SECONDS", "4"),
        ("PARTITION_ARCHIVER_FAILPOINTS", "restore_chunk_after_commit=pause:2"),
        ("METRICS", "off"),
    ];
    let child = env.command(&restore, &vars).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let loaded = "SELECT count(*) FROM partition_archiver.restore_loaded";
    let waited = Instant::now();
    while env.scalar_i64(loaded).await == 0 {
        assert!(waited.elapsed() < Duration::from_secs(60), "no object was loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bh.triggered.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "S3 silent at restore load: ended {:?} after the silence, exit {:?}",
        started.elapsed(),
        out.status.code()
    );
    assert!(started.elapsed() < RUN_BOUND, "the restore took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(3), "transient: {stdout}");
    assert!(stdout.contains("\"transient\""), "{stdout}");
    let kept = env.scalar_i64(loaded).await;
    assert!(kept >= 1, "the objects loaded before the silence are kept");
    let staging =
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'r' AND tablename = 'orders_2026_03__pa_restoring'";
    assert_eq!(env.scalar_i64(staging).await, 1, "the staging table is kept");
    bh.healed.store(true, Ordering::SeqCst);
    let (out, report) = env.json(&restore, crate::chunks::CHUNKED);
    ok(&out);
    assert_eq!(report["restore"]["complete"], true, "{report}");
    assert_eq!(crate::archive::march_sum(&env, Some("r.orders_2026_03")).await, before, "the restore is identical");
}
