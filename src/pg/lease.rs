//! A run's lease: one session of the run's own that runs a statement every [`LEASE_INTERVAL`]
//! while the run lives. A run's other sessions can sit idle for long (the one holding a table's
//! lock while workers stream chunks on theirs, or while an upload completes); the lease is what
//! keeps the run, as `pg_stat_activity` sees it under its `application_name`, from looking
//! vanished ([`crate::pg::lock`]). It holds no lock and changes nothing. When its connection
//! breaks it connects again at the next beat; when the run ends (or the process dies) it stops.

use crate::pg::connect::DbConfig;
use std::time::Duration;

/// How often the lease runs its statement.
pub const LEASE_INTERVAL: Duration = Duration::from_secs(15);

/// Stops the lease when dropped.
pub struct RunLease {
    task: tokio::task::JoinHandle<()>,
}

impl RunLease {
    /// Starts the lease on a connection of its own (named for the current run).
    pub fn start(db: DbConfig) -> Self {
        let task = tokio::spawn(async move {
            let mut session = None;
            loop {
                if session.is_none() {
                    match db.connect().await {
                        Ok(c) => session = Some(c),
                        // A run without its lease can be taken for vanished after
                        // STALE_LOCK_SECONDS of idleness: say so where an operator looks.
                        Err(e) => tracing::warn!(error = %e, "lease: could not connect; trying again"),
                    }
                }
                if let Some(c) = &session {
                    let beat = tokio::time::timeout(LEASE_INTERVAL, c.simple_query("SELECT 1")).await;
                    if !matches!(beat, Ok(Ok(_))) {
                        tracing::warn!("lease: the session broke; reconnecting at the next beat");
                        session = None;
                    }
                }
                tokio::time::sleep(LEASE_INTERVAL).await;
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
