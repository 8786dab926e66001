//! Carries out a plan against the database.
//!
//! - One table at a time, under a session advisory lock on that table: a second run skips it with
//!   `already_running` instead of racing (invariant 3).
//! - Every DDL runs under a short `lock_timeout` and is retried with jittered backoff when the lock
//!   is not granted, so application traffic never queues behind us for longer than that timeout
//!   (invariant 4).
//! - A failed step stops the rest of that table's steps (later ones may depend on it) and is
//!   reported; other tables still run.
//! - Creating a partition whose range has rows in the default partition moves them, in the same
//!   transaction: detach default, create, move, attach default.
//! - Retention steps and the manifest state they write live in [`crate::archive::lifecycle`].

use crate::archive::Archiver;
use crate::error::Error;
use crate::ident::{quote_ident, QualifiedName};
use crate::planner::{self, Step};
use crate::policy::TablePolicy;
use crate::report::{Outcome, StepReport, TableReport, TableStatus};
use crate::retry::{retry, RetryPolicy};

use crate::snapshot::TableSnapshot;
use anyhow::Context;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub lock_timeout: Duration,
    pub retry: RetryPolicy,
    pub dry_run: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self { lock_timeout: Duration::from_secs(2), retry: RetryPolicy::default(), dry_run: false }
    }
}

/// What a step returns when it succeeds.
#[derive(Debug, Default)]
pub struct StepResult {
    pub rows_moved: Option<i64>,
    pub rows_archived: Option<i64>,
    pub raw_bytes: Option<i64>,
    pub bytes_archived: Option<i64>,
    pub detail: Option<String>,
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

fn sqlstate(e: &anyhow::Error) -> Option<SqlState> {
    e.chain().find_map(|c| c.downcast_ref::<tokio_postgres::Error>().and_then(|e| e.code().cloned()))
}

/// Advisory-lock key of a table: two int4s, the first fixed for this tool.
const LOCK_CLASS: i32 = 0x5041_5243; // "PARC"

pub async fn try_lock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<bool> {
    let key = format!("{}.{}", table.schema, table.name);
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1, hashtext($2))", &[&LOCK_CLASS, &key])
        .await
        .context("take advisory lock")?
        .get(0))
}

pub async fn unlock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<()> {
    let key = format!("{}.{}", table.schema, table.name);
    client
        .query_one("SELECT pg_advisory_unlock($1, hashtext($2))", &[&LOCK_CLASS, &key])
        .await
        .context("release advisory lock")?;
    Ok(())
}

/// Runs statements as one transaction under `lock_timeout`, retrying the whole transaction when a
/// lock is not granted in time. Returns the rows affected by each statement and the attempts made.
pub async fn run_ddl(
    client: &mut Client,
    opts: &ExecOptions,
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
    opts: &ExecOptions,
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

/// Plans and runs one table: lock, snapshot, plan, steps, unlock.
pub async fn maintain_table(
    client: &mut Client,
    policy: &TablePolicy,
    now: DateTime<Utc>,
    opts: &ExecOptions,
    archiver: Option<&Archiver>,
) -> TableReport {
    run_table(client, policy, opts, archiver, |snapshot, report| {
        let mut plan = planner::plan(snapshot, policy, now);
        report.current_period = Some(plan.current_period.clone());
        report.retention_cutoff = plan.retention_cutoff;
        report.warnings.append(&mut plan.warnings);
        if policy.retention_action.archives() && archiver.is_none() && plan.steps.iter().any(Step::is_retention) {
            plan.steps.retain(|s| !s.is_retention());
            report.warnings.push(
                "retention skipped: no archive bucket is configured (set ARCHIVE_BUCKET); nothing was detached".into(),
            );
        }
        Ok(plan.steps)
    })
    .await
}

/// The frame of every table run: take the table's advisory lock (not for a dry run), read the
/// snapshot under it, let `build` choose the steps, run them, release the lock. The snapshot is
/// read only once the lock is held, so no other run changes the table between plan and work.
pub async fn run_table(
    client: &mut Client,
    policy: &TablePolicy,
    opts: &ExecOptions,
    archiver: Option<&Archiver>,
    build: impl FnOnce(&TableSnapshot, &mut TableReport) -> Result<Vec<Step>, Error>,
) -> TableReport {
    let mut report = TableReport::new(policy.table.clone());
    if !opts.dry_run {
        match try_lock_table(client, &policy.table).await {
            Ok(true) => {}
            Ok(false) => {
                report.status = TableStatus::AlreadyRunning;
                report
                    .warnings
                    .push(format!("another partition-archiver run holds the lock on {}: skipped", policy.table));
                return report;
            }
            Err(e) => return TableReport::failed(policy.table.clone(), &Error::transient(e)),
        }
    }
    let result: Result<(), Error> = async {
        let snapshot = crate::catalog::load_snapshot(&*client, policy).await?;
        report.stats = Some(crate::metrics::TableStats::of(&snapshot));
        let steps = build(&snapshot, &mut report)?;
        if opts.dry_run {
            report.status = TableStatus::Planned;
            report.steps = steps.into_iter().map(StepReport::planned).collect();
            return Ok(());
        }
        execute_steps(client, policy, &snapshot, steps, opts, archiver, &mut report).await
    }
    .await;
    if !opts.dry_run {
        if let Err(e) = unlock_table(client, &policy.table).await {
            tracing::warn!(table = %policy.table, error = %e, "could not release advisory lock (it ends with the session)");
        }
    }
    if let Err(e) = result {
        report.status = TableStatus::Failed;
        report.error = Some((&e).into());
    }
    report
}

async fn execute_steps(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    steps: Vec<Step>,
    opts: &ExecOptions,
    archiver: Option<&Archiver>,
    report: &mut TableReport,
) -> Result<(), Error> {
    let mut failed: Option<Error> = None;
    for step in steps {
        if failed.is_some() {
            let mut s = StepReport::planned(step);
            s.outcome = Outcome::Skipped;
            s.detail = Some("an earlier step of this table failed".into());
            report.steps.push(s);
            continue;
        }
        let started = Instant::now();
        let span = tracing::info_span!("step", table = %policy.table, partition = %step.partition().name);
        let _enter = span.enter();
        let (result, attempts) = execute_step(client, policy, snapshot, &step, opts, archiver).await;
        let mut s = StepReport::planned(step);
        s.attempts = attempts;
        s.duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(r) => {
                tracing::info!(step = ?s.step, rows_moved = r.rows_moved, "step done");
                s.outcome = Outcome::Done;
                s.rows_moved = r.rows_moved;
                s.rows_archived = r.rows_archived;
                s.raw_bytes = r.raw_bytes;
                s.bytes_archived = r.bytes_archived;
                s.detail = r.detail;
            }
            Err(e) => {
                let e = Error::transient(e);
                tracing::error!(step = ?s.step, error = %e, "step failed");
                s.outcome = Outcome::Failed;
                s.detail = Some(e.message.clone());
                failed = Some(e);
            }
        }
        report.steps.push(s);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn execute_step(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    step: &Step,
    opts: &ExecOptions,
    archiver: Option<&Archiver>,
) -> (anyhow::Result<StepResult>, u32) {
    let parent = policy.table.quoted();
    match step {
        Step::FinalizeDetach { partition } => {
            let sql = format!("ALTER TABLE {parent} DETACH PARTITION {} FINALIZE", partition.quoted());
            let (r, n) = ddl_outside_transaction(client, opts, &format!("finalize detach of {partition}"), &sql).await;
            (r.map(|_| StepResult::default()), n)
        }
        Step::CreateDefault { partition } => {
            let sql = format!("CREATE TABLE {} PARTITION OF {parent} DEFAULT", partition.quoted());
            let (r, n) = run_ddl(client, opts, &format!("create {partition}"), &[sql]).await;
            (r.map(|_| StepResult::default()), n)
        }
        Step::CreatePartition { partition, from, to, rows_in_default, .. } => {
            create_partition(client, policy, snapshot, partition, from, to, *rows_in_default, opts).await
        }
        Step::Detach { .. } | Step::Archive { .. } | Step::Drop { .. } | Step::MoveToSchema { .. } => {
            crate::archive::lifecycle::execute(client, policy, snapshot, step, opts, archiver).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn create_partition(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    partition: &QualifiedName,
    from: &str,
    to: &str,
    rows_in_default: i64,
    opts: &ExecOptions,
) -> (anyhow::Result<StepResult>, u32) {
    let parent = policy.table.quoted();
    // Not `CREATE TABLE ... PARTITION OF`, which holds ACCESS EXCLUSIVE on the parent (every insert
    // and query of the table waits): a table shaped like the parent, then ATTACH, which holds only
    // SHARE UPDATE EXCLUSIVE on the parent, so inserts into the other partitions go on. (ATTACH
    // still locks the default partition while it checks that no row there belongs to the new
    // range: the planner saw none, so that scan is of an empty or small table.) ATTACH creates the
    // parent's indexes, foreign keys and row triggers on the new table, as PARTITION OF does;
    // the LIKE options copy what ATTACH requires to match (NOT NULL, CHECKs, generated columns)
    // and what PARTITION OF would have given (defaults, storage, compression). One transaction:
    // a failed ATTACH leaves no stray table.
    // PARTITION OF would also put the table in the parent's tablespace, if it has one.
    let tablespace = match client
        .query_opt(
            "SELECT t.spcname::text FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.oid = $1::text::regclass",
            &[&parent],
        )
        .await
    {
        Ok(row) => row.map(|r| format!(" TABLESPACE {}", quote_ident(&r.get::<_, String>(0)))).unwrap_or_default(),
        Err(e) => return (Err(anyhow::Error::new(e).context(format!("read the tablespace of {parent}"))), 1),
    };
    let create = [
        format!(
            "CREATE TABLE {} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED \
             INCLUDING STORAGE INCLUDING COMPRESSION){tablespace}",
            partition.quoted()
        ),
        format!(
            "ALTER TABLE {parent} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})",
            partition.quoted(),
            crate::ident::quote_literal(from),
            crate::ident::quote_literal(to)
        ),
    ];
    let label = format!("create {partition}");
    let default = snapshot.default_partition().map(|d| d.name.clone());
    if rows_in_default == 0 || default.is_none() {
        let (r, n) = run_ddl(client, opts, &label, &create).await;
        match r {
            Ok(_) => return (Ok(StepResult { rows_moved: Some(0), ..Default::default() }), n),
            // Rows reached the default partition after the snapshot was taken: move them.
            Err(e) if default.is_some() && sqlstate(&e) == Some(SqlState::CHECK_VIOLATION) => {}
            Err(e) => return (Err(e), n),
        }
    }
    let default = default.expect("checked above");
    let columns = match crate::catalog::columns(&*client, &policy.table).await {
        Ok(c) => c.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", "),
        Err(e) => return (Err(e), 1),
    };
    let key = quote_ident(&policy.column);
    let move_rows = format!(
        "WITH moved AS (DELETE FROM {d} WHERE {key} >= {f} AND {key} < {t} RETURNING {columns}) \
         INSERT INTO {p} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM moved",
        d = default.quoted(),
        f = crate::ident::quote_literal(from),
        t = crate::ident::quote_literal(to),
        p = partition.quoted(),
    );
    let [create_table, attach] = create;
    let statements = [
        format!("ALTER TABLE {parent} DETACH PARTITION {}", default.quoted()),
        create_table,
        attach,
        move_rows,
        format!("ALTER TABLE {parent} ATTACH PARTITION {} DEFAULT", default.quoted()),
    ];
    let (r, n) = run_ddl(client, opts, &label, &statements).await;
    (r.map(|counts| StepResult { rows_moved: Some(counts[3] as i64), ..Default::default() }), n)
}
