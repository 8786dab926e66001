//! Carries out a plan against the database, one table at a time: below the front doors ([`crate::app`]),
//! above the PostgreSQL shell ([`crate::pg`]), the pure planner ([`crate::plan`]) and the archive
//! ([`crate::archive`]). It may import those, [`crate::report`] and the error types; nothing
//! imports it but [`crate::app`].
//!
//! - One table at a time, under a session advisory lock on that table ([`crate::pg::lock`]): a
//!   second run skips it with `already_running` instead of racing (invariant 3).
//! - Every step's DDL runs under [`crate::pg::ddl`]: short `lock_timeout`, retried with backoff
//!   (invariant 4).
//! - A failed step stops the rest of that table's steps (later ones may depend on it) and is
//!   reported; other tables still run.
//! - Each step is one named function: creation in [`crate::pg::partitions`], the retention steps
//!   and the manifest state they write in [`crate::archive::retention`].

use crate::archive::retention;
use crate::archive::Archiver;
use crate::error::{Error, ErrorKind};
use crate::pg::ddl::DdlOptions;
use crate::pg::lock::{try_lock_table, unlock_table, Locked};
use crate::pg::partitions;
use crate::plan::ident::QualifiedName;
use crate::plan::planner::{self, Step};
use crate::plan::policy::TablePolicy;
use crate::plan::snapshot::{TableSnapshot, TableStats};
use crate::report::{Outcome, StepReport, TableReport, TableStatus};
use chrono::{DateTime, Utc};
use std::time::Instant;
use tokio_postgres::Client;

/// Whether a run changes anything (`plan` and `maintain --dry-run` do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Execute,
    DryRun,
}

/// Plans and runs one table: lock, snapshot, plan, steps, unlock.
pub async fn maintain_table(
    client: &mut Client,
    policy: &TablePolicy,
    now: DateTime<Utc>,
    opts: &DdlOptions,
    mode: Mode,
    archiver: Option<&Archiver>,
) -> TableReport {
    run_table(client, policy, opts, mode, archiver, |snapshot, report| {
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
    opts: &DdlOptions,
    mode: Mode,
    archiver: Option<&Archiver>,
    build: impl FnOnce(&TableSnapshot, &mut TableReport) -> Result<Vec<Step>, Error>,
) -> TableReport {
    let mut report = TableReport::new(policy.table.clone());
    let dry_run = mode == Mode::DryRun;
    if !dry_run {
        match try_lock_table(client, &policy.table).await {
            Ok(Locked::Acquired(None)) => {}
            Ok(Locked::Acquired(Some(ghost))) => {
                report.warnings.push(format!(
                    "a vanished run held the lock on {}: terminated its sessions ({ghost}) and went on",
                    policy.table
                ));
                report.lock_holder = Some(ghost);
            }
            Ok(Locked::Held(holder)) => {
                report.status = TableStatus::AlreadyRunning;
                let by = holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
                report.warnings.push(format!("another session holds the lock on {}{by}: skipped", policy.table));
                report.lock_holder = holder;
                return report;
            }
            Err(e) => return TableReport::failed(policy.table.clone(), &Error::transient(e)),
        }
    }
    let result: Result<(), Error> = async {
        // Two managers never work on one table.
        crate::pg::partman::refuse_if_maintained(&*client, &policy.table).await?;
        let snapshot = crate::pg::catalog::load_snapshot_within(client, policy, opts.lock_timeout).await?;
        report.stats = Some(TableStats::of(&snapshot));
        let steps = build(&snapshot, &mut report)?;
        if dry_run {
            report.status = TableStatus::Planned;
            report.steps = steps.into_iter().map(StepReport::planned).collect();
            return Ok(());
        }
        execute_steps(client, policy, &snapshot, steps, opts, archiver, &mut report).await
    }
    .await;
    if !dry_run {
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
    opts: &DdlOptions,
    archiver: Option<&Archiver>,
    report: &mut TableReport,
) -> Result<(), Error> {
    // The table's failure ([`keep_worse`]): the run reports it, after the other partitions' steps.
    let mut failed: Option<Error> = None;
    // Partitions whose later steps wait for the next run, and why: a step of theirs failed, or
    // the time budget left their archive unfinished (nothing unverified is dropped). After a
    // failed retention step (or FINALIZE) the table's later retention steps wait too: an S3 or
    // database fault would fail each partition in turn. Creation never waits for another
    // partition: a month that cannot be created (its rows in the default partition referenced by
    // another table, say) or a FINALIZE that keeps timing out must not keep the next months from
    // being created, and a creation failing run after run must not stop retention either.
    let mut held: Vec<(QualifiedName, &'static str)> = Vec::new();
    let mut retention_failed = false;
    const FAILED: &str = "an earlier step of this partition failed: the next run tries again";
    const UNFINISHED: &str = "this partition's archive is not finished: the next run goes on";
    for step in steps {
        let why = match held.iter().find(|(p, _)| p == step.partition()) {
            Some((_, why)) => Some(*why),
            // A session lost fails every step after it: they wait for the next run.
            None if client.is_closed() => Some("the database session was lost: the next run goes on"),
            None if retention_failed && step.is_retention() => {
                Some("an earlier retention step of this table failed: its retention waits for the next run")
            }
            None => None,
        };
        if let Some(why) = why {
            let mut s = StepReport::planned(step);
            s.outcome = Outcome::Skipped;
            s.detail = Some(why.into());
            report.steps.push(s);
            continue;
        }
        // A run out of time starts no archive (small ones have no chunk to stop at).
        if let (Step::Archive { partition }, Some(a)) = (&step, archiver) {
            if !crate::plan::chunks::worth_starting(a.remaining(), 0, None, a.margin(ARCHIVE_START_MARGIN)) {
                held.push((partition.clone(), UNFINISHED));
                let mut s = StepReport::planned(step);
                s.outcome = Outcome::Unfinished;
                s.detail = Some("not started: the run's time budget is spent; the next run archives it".into());
                report.steps.push(s);
                continue;
            }
        }
        // A table whose archive format and compression cannot go together is refused before its
        // first detach (its partitions keep being created).
        if let (Step::Detach { .. } | Step::Archive { .. }, Some(a)) = (&step, archiver) {
            if let Err(why) = a.store.settings.table_format(policy) {
                held.push((step.partition().clone(), FAILED));
                let mut s = StepReport::planned(step);
                s.outcome = Outcome::Failed;
                s.detail = Some(why.clone());
                report.steps.push(s);
                retention_failed = true;
                keep_worse(&mut failed, Error::invalid(why));
                continue;
            }
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
                s.outcome = if r.unfinished { Outcome::Unfinished } else { Outcome::Done };
                if r.unfinished {
                    held.push((s.step.partition().clone(), UNFINISHED));
                }
                s.chunks_done = r.chunks_done;
                s.chunks_total = r.chunks_total;
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
                held.push((s.step.partition().clone(), FAILED));
                // (A default partition the plan counted on for a plain DETACH is missing too.)
                retention_failed |=
                    s.step.is_retention() || matches!(s.step, Step::FinalizeDetach { .. } | Step::CreateDefault { .. });
                keep_worse(&mut failed, e);
            }
        }
        report.steps.push(s);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Of a table's failures, the one it reports: the first that a retry does not cure (the run is
/// then not a transient failure), else the first.
fn keep_worse(failed: &mut Option<Error>, e: Error) {
    match failed {
        Some(f) if f.kind != ErrorKind::Transient || e.kind == ErrorKind::Transient => {}
        _ => *failed = Some(e),
    }
}

/// What a step did, for its report.
#[derive(Debug, Default)]
struct StepResult {
    rows_moved: Option<i64>,
    rows_archived: Option<i64>,
    raw_bytes: Option<i64>,
    bytes_archived: Option<i64>,
    detail: Option<String>,
    /// The archive stopped part way for the time budget.
    unfinished: bool,
    chunks_done: Option<usize>,
    chunks_total: Option<usize>,
}

/// An archive step starts only with this much of the run's time budget left (at most a tenth of
/// the budget).
const ARCHIVE_START_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs one step through its named function. Returns what it did and the attempts its DDL took.
async fn execute_step(
    client: &mut Client,
    policy: &TablePolicy,
    snapshot: &TableSnapshot,
    step: &Step,
    opts: &DdlOptions,
    archiver: Option<&Archiver>,
) -> (anyhow::Result<StepResult>, u32) {
    let parent = &policy.table;
    let nothing = |(r, n): (anyhow::Result<()>, u32)| (r.map(|()| StepResult::default()), n);
    match step {
        Step::FinalizeDetach { partition } => {
            nothing(partitions::finalize_detach(client, parent, partition, opts).await)
        }
        Step::CreateDefault { partition } => nothing(partitions::create_default(client, parent, partition, opts).await),
        Step::CreatePartition { partition, from, to, rows_in_default, .. } => {
            let (r, n) =
                partitions::create_partition(client, policy, snapshot, partition, from, to, *rows_in_default, opts)
                    .await;
            (r.map(|moved| StepResult { rows_moved: Some(moved), ..Default::default() }), n)
        }
        Step::Detach { partition, concurrently } => {
            nothing(retention::detach(client, policy, snapshot, partition, *concurrently, opts).await)
        }
        Step::Archive { partition } => match archiver {
            Some(a) => {
                let r = retention::archive(client, policy, partition, a, opts).await.map(|archived| StepResult {
                    rows_archived: archived.rows,
                    raw_bytes: archived.raw_bytes,
                    bytes_archived: archived.compressed_bytes,
                    unfinished: !archived.complete,
                    chunks_done: archived.chunks_done,
                    chunks_total: archived.chunks_total,
                    detail: match (archived.complete, archived.chunks_done, archived.chunks_total) {
                        (false, Some(done), Some(total)) => Some(format!(
                            "{done} of {total} chunks archived ({}): the next run goes on",
                            archived.unfinished_because.as_deref().unwrap_or("chunks left")
                        )),
                        _ => archived.location,
                    },
                    ..Default::default()
                });
                (r, 1)
            }
            None => (
                Err(anyhow::anyhow!("cannot archive {partition}: no archive bucket is configured (ARCHIVE_BUCKET)")),
                0,
            ),
        },
        Step::Drop { partition } => nothing(retention::drop_partition(client, policy, partition, opts).await),
        Step::MoveToSchema { partition, schema } => {
            nothing(retention::move_to_schema(client, policy, partition, schema, opts).await)
        }
    }
}
