//! Session advisory locks, keyed `(class, hashtext(key))`: one run per table at a time (invariant
//! 3; the PL/pgSQL `create_partitions`, the pg_cron path, takes the same table key), one worker
//! per chunk of a chunked archive, one restore per staging table (the units of one fan-out restore
//! hold it shared, side by side).
//!
//! # Vanished runs
//! A session lock lives as long as its session. When a run's client vanishes without the server
//! noticing (half-open TCP), its backend stays `idle` and keeps the lock, and every later run would
//! skip the table. So a lock that is held is looked at ([`LockHolder`], from `pg_locks` and
//! `pg_stat_activity`): its holder is a **vanished run** when it is one of ours (its
//! `application_name` is `partition-archiver/<run id>`) and no session of that run has run a
//! statement, or been active, for `STALE_LOCK_SECONDS`. A live run always has one: its lease
//! session ([`crate::pg::lease`]) runs a statement every [`crate::pg::lease::LEASE_INTERVAL`], which is
//! why `STALE_LOCK_SECONDS` may not be below [`MIN_STALE_LOCK_S`]. The sessions of a vanished run
//! are terminated (`pg_terminate_backend`, only sessions with that exact name, only while the
//! whole run still looks vanished, in the same statement) and the lock is taken. Another
//! application's session, or a run that is active or was seen recently, is never terminated: the
//! caller skips, and reports who holds the lock. Only sessions `pg_stat_activity` shows as idle
//! with a known `state_change` count as idle: with `track_activities` off (state `disabled`) or
//! for sessions of roles this one may not see (state NULL), a run is never taken for vanished.
//! Both statements run outside a transaction, so each reads `pg_stat_activity` afresh (inside one,
//! PostgreSQL would serve the transaction's first snapshot of it).

use crate::plan::ident::QualifiedName;
pub use crate::plan::snapshot::LockHolder;
use anyhow::Context;
use std::time::Duration;
use tokio_postgres::Client;

/// What an advisory lock guards: the first int4 of its key, fixed for this tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// `schema.table`: one run per table ("PARC").
    Table,
    /// `schema.partition#plan#chunk`: one worker per chunk, across runs and fan-out units ("PACH").
    Chunk,
    /// A restore's staging table: one restore per staging table ("PARS").
    Restore,
}

impl LockClass {
    fn id(self) -> i32 {
        match self {
            LockClass::Table => 0x5041_5243,
            LockClass::Chunk => 0x5041_4348,
            LockClass::Restore => 0x5041_5253,
        }
    }
}

/// `STALE_LOCK_SECONDS` default: 20 lease intervals. A vanished run holds a table for at most
/// five minutes more (nothing a monthly or daily schedule notices), and a live run, whose lease
/// runs a statement every 15 s, would have to lose its database for five minutes to be taken for
/// vanished, by which time its sessions are no use to it either.
pub const DEFAULT_STALE_LOCK_S: u64 = 300;
/// The shortest `STALE_LOCK_SECONDS`: four lease intervals, so a live run is never mistaken for a
/// vanished one over one slow lease statement or one reconnect.
pub const MIN_STALE_LOCK_S: u64 = 4 * crate::pg::lease::LEASE_INTERVAL.as_secs();
pub const MAX_STALE_LOCK_S: u64 = 86_400;

static STALE_AFTER: std::sync::RwLock<Duration> = std::sync::RwLock::new(Duration::from_secs(DEFAULT_STALE_LOCK_S));

/// Sets `STALE_LOCK_SECONDS` for this process (from the settings, when the app starts).
pub fn set_stale_after(d: Duration) {
    if let Ok(mut s) = STALE_AFTER.write() {
        *s = d;
    }
}

fn stale_after() -> Duration {
    STALE_AFTER.read().map(|d| *d).unwrap_or(Duration::from_secs(DEFAULT_STALE_LOCK_S))
}

/// The outcome of [`try_lock`].
#[derive(Debug, Clone, PartialEq)]
pub enum Locked {
    /// Taken; `Some` when a vanished run had held it and was terminated first.
    Acquired(Option<LockHolder>),
    /// Held by a live session (another run, another application); `None` if it was released
    /// before its holder could be read.
    Held(Option<LockHolder>),
}

/// How a lock is held: by one session, or shared by many (the restore units of one restore, which
/// load side by side and keep a whole restore out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Exclusive,
    Shared,
}

async fn try_once(client: &Client, class: LockClass, key: &str, hold: Hold) -> anyhow::Result<bool> {
    let sql = match hold {
        Hold::Exclusive => "SELECT pg_try_advisory_lock($1, hashtext($2))",
        Hold::Shared => "SELECT pg_try_advisory_lock_shared($1, hashtext($2))",
    };
    Ok(client
        .query_one(sql, &[&class.id(), &key])
        .await
        .with_context(|| format!("take advisory lock {class:?} {key}"))?
        .get(0))
}

/// Takes the lock if it is free, or if its holder is a vanished run (terminated first); otherwise
/// says who holds it.
pub async fn try_lock(client: &Client, class: LockClass, key: &str) -> anyhow::Result<Locked> {
    try_lock_as(client, class, key, Hold::Exclusive).await
}

/// [`try_lock`], held as `hold`.
pub async fn try_lock_as(client: &Client, class: LockClass, key: &str, hold: Hold) -> anyhow::Result<Locked> {
    if try_once(client, class, key, hold).await? {
        return Ok(Locked::Acquired(None));
    }
    let stale = stale_after();
    let Some(mut holder) = holder(client, class, key, hold, stale).await? else {
        // Released in between: one more try.
        return Ok(if try_once(client, class, key, hold).await? { Locked::Acquired(None) } else { Locked::Held(None) });
    };
    if !holder.vanished {
        return Ok(Locked::Held(Some(holder)));
    }
    let name = holder.application_name.clone().unwrap_or_default();
    let terminated = match terminate_vanished_run(client, &name, stale).await {
        Ok(n) => n,
        // Not allowed to signal that role's sessions (no pg_signal_backend): report it as held,
        // as any other holder, rather than failing the table at every run.
        Err(e) if crate::pg::ddl::sqlstate(&e) == Some(tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            tracing::warn!(lock = ?class, key, holder = %holder, error = %e,
                "a vanished run holds the lock, but this role may not terminate its sessions");
            return Ok(Locked::Held(Some(holder)));
        }
        Err(e) => return Err(e),
    };
    tracing::warn!(lock = ?class, key, holder = %holder, sessions = terminated,
        "terminated the sessions of a vanished partition-archiver run that held the lock");
    holder.terminated = terminated > 0;
    if try_once(client, class, key, hold).await? {
        Ok(Locked::Acquired(Some(holder)))
    } else {
        Ok(Locked::Held(Some(holder)))
    }
}

/// SQL: the run whose sessions are named `run` (an expression) shows no sign of life for `secs`
/// (a parameter) seconds: none of its sessions is active, in a state this role cannot see, or has
/// changed state since. The one definition of "vanished" both statements below use.
fn run_shows_no_life(run: &str, secs: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_stat_activity b
                      WHERE b.application_name = {run}
                        AND (b.state IS NULL OR b.state NOT LIKE 'idle%' OR b.state_change IS NULL
                             OR b.state_change > clock_timestamp() - make_interval(secs => {secs})))"
    )
}

/// The session holding the lock `(class, key)` in this database in a way that keeps `wanted` out
/// (only an exclusive holder keeps a shared lock out), and whether it is a vanished run.
async fn holder(
    client: &Client,
    class: LockClass,
    key: &str,
    wanted: Hold,
    stale: Duration,
) -> anyhow::Result<Option<LockHolder>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.state, a.state_change,
                        coalesce(starts_with(a.application_name, $3) AND a.state LIKE 'idle%' AND a.state_change IS NOT NULL
                                 AND {}, false)
                   FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2
                    AND (NOT $5 OR l.mode = 'ExclusiveLock')
                  LIMIT 1",
                run_shows_no_life("a.application_name", "$4")
            ),
            &[
                &class.id(),
                &key,
                &crate::pg::connect::APPLICATION_PREFIX,
                &stale.as_secs_f64(),
                &(wanted == Hold::Shared),
            ],
        )
        .await
        .with_context(|| format!("read who holds advisory lock {class:?} {key}"))?;
    Ok(row.map(|r| LockHolder {
        pid: r.get(0),
        application_name: r.get(1),
        client_addr: r.get(2),
        backend_start: r.get(3),
        state: r.get(4),
        idle_since: r.get(5),
        vanished: r.get(6),
        terminated: false,
    }))
}

/// Terminates every session named `application_name` (one vanished run's), if the run still
/// shows no sign of life in this very statement; waits up to 5 s for each to end. Returns how many
/// were terminated.
async fn terminate_vanished_run(client: &Client, application_name: &str, stale: Duration) -> anyhow::Result<u64> {
    let rows = client
        .query(
            &format!(
                "SELECT pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a
                  WHERE a.application_name = $1 AND starts_with(a.application_name, $3) AND a.pid <> pg_backend_pid()
                    AND {}",
                run_shows_no_life("$1", "$2")
            ),
            &[&application_name, &stale.as_secs_f64(), &crate::pg::connect::APPLICATION_PREFIX],
        )
        .await
        .with_context(|| format!("terminate the vanished run {application_name}"))?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64)
}

pub async fn unlock(client: &Client, class: LockClass, key: &str) -> anyhow::Result<()> {
    unlock_as(client, class, key, Hold::Exclusive).await
}

pub async fn unlock_as(client: &Client, class: LockClass, key: &str, hold: Hold) -> anyhow::Result<()> {
    let sql = match hold {
        Hold::Exclusive => "SELECT pg_advisory_unlock($1, hashtext($2))",
        Hold::Shared => "SELECT pg_advisory_unlock_shared($1, hashtext($2))",
    };
    client
        .query_one(sql, &[&class.id(), &key])
        .await
        .with_context(|| format!("release advisory lock {class:?} {key}"))?;
    Ok(())
}

pub async fn try_lock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<Locked> {
    try_lock(client, LockClass::Table, &format!("{}.{}", table.schema, table.name)).await
}

pub async fn unlock_table(client: &Client, table: &QualifiedName) -> anyhow::Result<()> {
    unlock(client, LockClass::Table, &format!("{}.{}", table.schema, table.name)).await
}
