//! A run's lease: one session of the run's own that runs a statement every [`LEASE_INTERVAL`]
//! while the run lives, and watches the run's other sessions for a dead path.
//!
//! - **Sign of life.** A run's other sessions can sit idle for long (the one holding a table's
//!   lock while workers stream chunks on theirs, or while an upload completes); the lease is what
//!   keeps the run, as `pg_stat_activity` sees it under its `application_name`, from looking
//!   vanished ([`crate::pg::lock`]). It holds no lock and changes nothing.
//! - **Watchdog.** Every few seconds it looks at the wire of each of the run's sessions
//!   ([`crate::pg::watch`]); for those silent past the bound (`DB_KEEPALIVE_SECONDS` and its
//!   probes, 30 s by default) it asks the server how it sees them, closes the dead ones and
//!   terminates their backends. When no session reaches the server for that long, a silent
//!   session is dead too: the run then fails its steps with transient errors instead of waiting.
//!
//! When its connection breaks it connects again; when the run ends (or the process dies) it stops.

use crate::pg::connect::DbConfig;
use crate::pg::watch::{self, ServerView};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the lease runs its statement.
pub const LEASE_INTERVAL: Duration = Duration::from_secs(15);

/// Stops the lease when dropped.
pub struct RunLease {
    task: tokio::task::JoinHandle<()>,
}

impl RunLease {
    /// Starts the lease on a connection of its own (named for the current run).
    pub fn start(db: DbConfig) -> Self {
        let bound = db.dead_peer_bound();
        // Look often enough that a dead session is closed within about twice the bound.
        let tick = (bound / 4).clamp(Duration::from_secs(1), LEASE_INTERVAL);
        let task = tokio::spawn(async move {
            let mut session: Option<(tokio_postgres::Client, Arc<watch::Wire>)> = None;
            // A connect runs beside the watch (through a blackhole it takes its whole bound); one
            // still running when the run ends finishes on its own and closes what it opened.
            let mut connecting: Option<tokio::task::JoinHandle<anyhow::Result<_>>> = None;
            let mut last_beat: Option<Instant> = None;
            // The last time the server answered us on any statement of the lease.
            let mut last_answer = Instant::now();
            loop {
                if session.is_none() {
                    match connecting.take() {
                        None => {
                            connecting = Some(tokio::spawn({
                                let db = db.clone();
                                async move { db.connect_watched().await }
                            }))
                        }
                        Some(task) if !task.is_finished() => connecting = Some(task),
                        Some(task) => match task.await {
                            Ok(Ok(s)) => session = Some(s),
                            // A run without its lease can be taken for vanished after
                            // STALE_LOCK_SECONDS of idleness: say so where an operator looks.
                            Ok(Err(e)) => {
                                tracing::warn!(error = %format!("{e:#}"), "lease: could not connect; trying again")
                            }
                            Err(e) => tracing::warn!(error = %e, "lease: the connect failed; trying again"),
                        },
                    }
                }
                if let Some((c, _)) = &session {
                    if last_beat.is_none_or(|b| b.elapsed() >= LEASE_INTERVAL) {
                        match tokio::time::timeout(bound, c.simple_query("SELECT 1")).await {
                            Ok(Ok(_)) => {
                                last_answer = Instant::now();
                                last_beat = Some(last_answer);
                            }
                            _ => {
                                tracing::warn!("lease: the session broke; connecting again");
                                session = None;
                            }
                        }
                    }
                }
                let own = session.as_ref().map(|(_, w)| w.clone());
                let suspects: Vec<watch::Session> = watch::sessions()
                    .into_iter()
                    .filter(|s| !own.as_ref().is_some_and(|w| Arc::ptr_eq(w, &s.wire)))
                    .filter(|s| s.wire.view().suspect(bound))
                    .collect();
                if !suspects.is_empty() {
                    let seen = match &session {
                        Some((c, _)) => match tokio::time::timeout(bound, server_views(c, &suspects)).await {
                            Ok(Ok(seen)) => {
                                last_answer = Instant::now();
                                Some(seen)
                            }
                            _ => {
                                session = None;
                                None
                            }
                        },
                        None => None,
                    };
                    if seen.is_some() || last_answer.elapsed() >= bound {
                        close_dead(session.as_ref().map(|(c, _)| c), &suspects, seen.as_ref(), bound).await;
                    }
                }
                tokio::time::sleep(tick).await;
            }
        });
        Self { task }
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the server sees the suspects' backends.
async fn server_views(
    c: &tokio_postgres::Client,
    suspects: &[watch::Session],
) -> Result<HashMap<i32, ServerView>, tokio_postgres::Error> {
    let pids: Vec<i32> =
        suspects.iter().map(|s| s.wire.backend_pid.load(std::sync::atomic::Ordering::Relaxed)).collect();
    let rows = c.query("SELECT pid, state, wait_event FROM pg_stat_activity WHERE pid = ANY($1)", &[&pids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let state: Option<String> = r.get(1);
            let view = match state.as_deref() {
                Some(s) if s.starts_with("idle") => ServerView::Idle,
                // Active, or hidden from us: taken as working.
                _ => ServerView::Active { wait_event: r.get(2) },
            };
            (r.get::<_, i32>(0), view)
        })
        .collect())
}

/// Closes each suspect the verdict finds dead, and terminates its backend when the server can be
/// asked (`seen`); with no answer from the server, every suspect is judged unreachable.
async fn close_dead(
    lease: Option<&tokio_postgres::Client>,
    suspects: &[watch::Session],
    seen: Option<&HashMap<i32, ServerView>>,
    bound: Duration,
) {
    for s in suspects {
        let pid = s.wire.backend_pid.load(std::sync::atomic::Ordering::Relaxed);
        if pid == 0 {
            continue; // Still connecting: the connect has its own bound.
        }
        let server = match seen {
            Some(seen) => seen.get(&pid).cloned().unwrap_or(ServerView::Gone),
            None => ServerView::Unreachable,
        };
        let wire = s.wire.view();
        let Some(why) = watch::verdict(&wire, &server, bound) else { continue };
        tracing::warn!(pid, why, wire = ?wire, server = ?server, "closing a dead database session");
        // Terminated first, closed after: closing fails the step at once, and a run that then
        // exits would take the termination with it, leaving the backend (and its locks) to a
        // user-space hop that keeps the server's socket open.
        if let (Some(c), Some(_)) = (lease, seen) {
            // Ours (same run), so its locks go now rather than when the server's timers fire.
            // Never another application's session, even were the pid reused in between.
            let terminated = tokio::time::timeout(
                bound,
                c.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND application_name = $2",
                    &[&pid, &crate::pg::connect::application_name()],
                ),
            )
            .await;
            if !matches!(terminated, Ok(Ok(_))) {
                tracing::warn!(pid, "could not terminate the dead session's backend; the server's keepalives will");
            }
        }
        s.close.abort();
    }
}
