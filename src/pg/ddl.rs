//! DDL under a short `lock_timeout`, retried with jittered backoff when the lock is not granted
//! (invariant 4): the one way this crate changes a table's shape, used by partition creation
//! ([`crate::pg::partitions`]) and by the retention steps ([`crate::archive::retention`]) alike.
//! Application traffic never queues behind us for longer than that timeout.

use crate::retry::{retry, RetryPolicy};
use anyhow::Context;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// How long DDL may wait for a lock, and how often a refused attempt is retried.
#[derive(Debug, Clone)]
pub struct DdlOptions {
    pub lock_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for DdlOptions {
    fn default() -> Self {
        Self { lock_timeout: Duration::from_secs(2), retry: RetryPolicy::default() }
    }
}

/// Is this database error worth another attempt (a lock not granted in time, a deadlock, a
/// serialization failure)?
pub fn is_lock_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code()).is_some_and(|code| {
            *code == SqlState::LOCK_NOT_AVAILABLE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
    })
}

/// The SQLSTATE of the first database error in the chain.
pub fn sqlstate(e: &anyhow::Error) -> Option<SqlState> {
    e.chain().find_map(|c| c.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code().cloned()))
}

/// Runs statements as one transaction under `lock_timeout`, retrying the whole transaction when a
/// lock is not granted in time. Returns the rows affected by each statement and the attempts made.
pub async fn run_ddl(
    client: &mut Client,
    opts: &DdlOptions,
    label: &str,
    statements: &[String],
) -> (anyhow::Result<Vec<u64>>, u32) {
    let timeout_ms = opts.lock_timeout.as_millis().max(1) as u64;
    let mut attempt = 1;
    loop {
        let result: anyhow::Result<Vec<u64>> = async {
            let tx = client.transaction().await.context("begin")?;
            tx.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout_ms}ms'"))
                .await
                .context("set lock_timeout")?;
            let mut counts = Vec::with_capacity(statements.len());
            for sql in statements {
                counts.push(tx.execute(sql.as_str(), &[]).await.with_context(|| label.to_string())?);
            }
            tx.commit().await.context("commit")?;
            Ok(counts)
        }
        .await;
        match result {
            Err(e) if attempt < opts.retry.max_attempts && is_lock_error(&e) => {
                let delay = opts.retry.delay(attempt);
                tracing::warn!(%label, attempt, error = %format!("{e:#}"), delay_ms = delay.as_millis() as u64, "lock not granted; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return (other, attempt),
        }
    }
}

/// Runs one statement outside a transaction block (DETACH ... CONCURRENTLY / FINALIZE) under a
/// session `lock_timeout`, with retries.
pub async fn ddl_outside_transaction(
    client: &Client,
    opts: &DdlOptions,
    label: &str,
    sql: &str,
) -> (anyhow::Result<()>, u32) {
    let timeout_ms = opts.lock_timeout.as_millis().max(1) as u64;
    let (r, attempts) = retry(opts.retry, label, is_lock_error, |_| async move {
        client.batch_execute(&format!("SET lock_timeout = '{timeout_ms}ms'")).await.context("set lock_timeout")?;
        client.batch_execute(sql).await.with_context(|| label.to_string())
    })
    .await;
    let _ = client.batch_execute("RESET lock_timeout").await;
    (r, attempts)
}

/// Runs one statement on its own (autocommit), with the statement's start as context.
pub async fn exec(client: &Client, sql: &str) -> anyhow::Result<()> {
    client.batch_execute(sql).await.with_context(|| sql.chars().take(120).collect::<String>())
}
