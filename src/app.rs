//! The core both front doors call: one [`App`] built once per process (settings, S3 client), and
//! [`App::handle`] that runs one [`Request`] and returns a [`Response`] (JSON for machines, text
//! for people).

use crate::archive::manifest::{ChunkState, ManifestRecord};
use crate::archive::restore::{Attach, RestoreOutcome, RestoreReport, UnitReport, VerifyItem};
use crate::archive::restore_chunks::Step;
use crate::archive::retrieval::Pending;
use crate::archive::Archiver;
use crate::aws::metrics::RunHealth;
use crate::config::Settings;
use crate::error::Error;
use crate::executor::{maintain_table, Mode};
use crate::pg::migrate::MigrationOutcome;
use crate::plan::ident::QualifiedName;
use crate::plan::snapshot::{ArchiveState, BoundValue, PartitionBound};
use crate::report::{ArchiveUnit, RunReport, TableReport, TableStatus};
use crate::request::Request;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Instant;

pub struct App {
    pub settings: Settings,
    pub archiver: Option<Archiver>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Response {
    Run(RunReport),
    Migrate {
        action: &'static str,
        ok: bool,
        migrations: Vec<MigrationOutcome>,
    },
    Status {
        action: &'static str,
        ok: bool,
        now: DateTime<Utc>,
        tables: Vec<TableStatusReport>,
    },
    Restore {
        action: &'static str,
        ok: bool,
        restore: Box<RestoreReport>,
    },
    /// One fan-out unit (`archive_chunk`).
    Unit {
        action: &'static str,
        ok: bool,
        table: QualifiedName,
        partition: String,
        chunk: i32,
        outcome: crate::archive::retention::UnitOutcome,
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<i64>,
    },
    /// One unit of a fan-out restore (`restore_chunk`).
    RestoreUnit {
        action: &'static str,
        ok: bool,
        #[serde(flatten)]
        unit: UnitReport,
    },
    /// A restore waiting for S3 to bring an object back from cold storage: nothing was changed.
    RestorePending {
        action: &'static str,
        ok: bool,
        pending: Pending,
    },
    Verify {
        action: &'static str,
        ok: bool,
        archives: Vec<VerifyItem>,
    },
    List {
        action: &'static str,
        ok: bool,
        /// `database` (its manifest records) or the bucket (`s3://bucket/prefix`).
        source: String,
        archives: Vec<ManifestRecord>,
        /// Manifests in the bucket that could not be read, with why (in cold storage, not a
        /// manifest).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        unreadable: Vec<String>,
    },
    ImportPgPartman {
        action: &'static str,
        ok: bool,
        #[serde(flatten)]
        import: crate::pg::partman::ImportReport,
    },
}

impl Response {
    pub fn ok(&self) -> bool {
        match self {
            Response::Run(r) => r.ok,
            Response::Migrate { ok, .. }
            | Response::Status { ok, .. }
            | Response::Restore { ok, .. }
            | Response::Unit { ok, .. }
            | Response::RestoreUnit { ok, .. }
            | Response::RestorePending { ok, .. }
            | Response::Verify { ok, .. }
            | Response::List { ok, .. }
            | Response::ImportPgPartman { ok, .. } => *ok,
        }
    }

    /// Failed, and only for transient reasons (CLI exit code 3: run again).
    pub fn failed_transiently(&self) -> bool {
        matches!(self, Response::Run(r) if r.failed_transiently())
    }

    /// Waiting for a retrieval (CLI exit code 4: run again later).
    pub fn pending(&self) -> Option<&Pending> {
        match self {
            Response::RestorePending { pending, .. } => Some(pending),
            _ => None,
        }
    }

    pub fn human(&self) -> String {
        match self {
            Response::Run(r) => r.human(),
            Response::Migrate { migrations, .. } => {
                migrations.iter().map(|m| format!("{:<52} {}\n", m.name, m.outcome)).collect()
            }
            Response::Status { tables, now, .. } => {
                let mut out = format!("status at {}\n", now.to_rfc3339());
                for t in tables {
                    out.push_str(&format!(
                        "\n{} (partitioned on {}, {} partitions, {} rows in default)\n",
                        t.table,
                        t.key_column,
                        t.partitions.len(),
                        t.default_rows
                    ));
                    for p in &t.partitions {
                        let flag = if p.detach_pending { " DETACH PENDING" } else { "" };
                        let rows = match p.estimated_rows {
                            Some(n) => format!("~{n} rows"),
                            None => "rows not estimated yet (never analyzed)".to_string(),
                        };
                        out.push_str(&format!(
                            "  {:<32} {:<22} {:<22} {:>12} bytes {rows}{flag}\n",
                            p.name, p.from, p.to, p.total_bytes
                        ));
                    }
                    out.push_str(
                        &t.next_run
                            .human()
                            .lines()
                            .skip(2)
                            .map(|l| format!("  next run: {}\n", l.trim()))
                            .collect::<String>(),
                    );
                }
                out
            }
            Response::Restore { restore: r, .. } if r.units.is_some() => {
                let units = r.units.as_deref().unwrap_or_default();
                let mut s = format!(
                    "restore {} of {} {} planned into {}: {} of {} objects to load, one unit each; then run the \
                     restore again (without --fan-out) to rename\n",
                    r.restore_id.as_deref().unwrap_or_default(),
                    r.table,
                    r.partition,
                    r.restored_as,
                    units.len(),
                    r.chunks.unwrap_or(0),
                );
                for u in units {
                    s.push_str(&format!(
                        "  restore-chunk --table {} --partition {} --chunk {} --restore-id {} --into-schema {}\n",
                        u.table, u.partition, u.chunk, u.restore_id, u.into_schema
                    ));
                }
                s
            }
            Response::Restore { restore: r, .. } if !r.complete => format!(
                "restore of {} {} NOT complete: {} of {} objects loaded, each SHA-256 verified ({}); run the same restore \
                 again to go on from there\n",
                r.table,
                r.partition,
                r.chunks_done.unwrap_or(0),
                r.chunks.unwrap_or(0),
                r.unfinished_because.as_deref().unwrap_or("stopped")
            ),
            Response::Restore { restore: r, .. } => {
                let checked = match (&r.sha256, r.chunks) {
                    (Some(sha), _) => format!("SHA-256 {sha} verified"),
                    (None, Some(n)) => format!("{n} chunks, each SHA-256 verified"),
                    (None, None) => "verified".to_string(),
                };
                let mut s = format!(
                    "restored {} rows of {} {} into {} ({checked}, from {})\n",
                    r.rows, r.table, r.partition, r.restored_as, r.source
                );
                if let Some(id) = &r.system_identifier {
                    s.push_str(&format!("archived by the database with system_identifier {id}\n"));
                }
                for change in &r.reshaped {
                    s.push_str(&format!("to attach it: {change}\n"));
                }
                if r.attached {
                    s.push_str(&format!("attached to {}\n", r.table));
                } else if let Some(why) = &r.not_attached_because {
                    s.push_str(&format!("NOT attached: {why}; the restored table stays as {}\n", r.restored_as));
                }
                s
            }
            Response::RestorePending { pending, .. } => format!("pending: {}\n", pending.message),
            Response::RestoreUnit { unit: u, .. } => format!(
                "{} {} chunk {}: {} ({} rows, SHA-256 and row count verified) into restore {}\n",
                u.table, u.partition, u.chunk, u.outcome, u.rows, u.restore_id
            ),
            Response::Unit { table, partition, chunk, outcome, rows, .. } => format!(
                "{table} {partition} chunk {chunk}: {}{}\n",
                serde_json::to_value(outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                rows.map(|r| format!(" ({r} rows)")).unwrap_or_default()
            ),
            Response::Verify { archives, .. } => archives
                .iter()
                .map(|a| {
                    format!(
                        "{} {:<32} {:<5} {}\n",
                        if a.ok { "ok  " } else { "FAIL" },
                        format!("{}.{}", a.table, a.partition),
                        a.checked,
                        a.message
                    )
                })
                .collect(),
            Response::List { archives, source, unreadable, .. } => {
                let mut out = if archives.is_empty() {
                    let hint = if source == "database" {
                        " (a database without records of its archives, such as a new one: `list --from-bucket`)"
                    } else {
                        ""
                    };
                    format!("no archives in the {source}{hint}\n")
                } else {
                    format!("{} archives, from the {source}:\n", archives.len())
                };
                for a in archives {
                    out.push_str(&format!(
                        "{}.{:<24} {:<9} rows={:<10} bytes={:<12} s3://{}/{}\n",
                        a.table(),
                        a.partition_name,
                        a.state,
                        a.row_count.map_or("-".into(), |n| n.to_string()),
                        a.compressed_bytes.map_or("-".into(), |n| n.to_string()),
                        a.bucket.as_deref().unwrap_or("-"),
                        a.object_key.as_deref().unwrap_or("-")
                    ));
                }
                for u in unreadable {
                    out.push_str(&format!("could not read {u}\n"));
                }
                out
            }
            Response::ImportPgPartman { import: r, .. } => {
                let verb = if r.dry_run { "would register" } else { "registered" };
                let mut out = format!("pg_partman ({}):\n", r.pg_partman);
                for i in &r.imported {
                    let retention = i.retention.map_or("everything kept".into(), |n| format!("retention {n}"));
                    out.push_str(&format!(
                        "{verb} {}.{}: {} on {}, premake {}, {retention}, {}\n",
                        i.schema,
                        i.table,
                        i.partition_interval.as_str(),
                        i.partition_column,
                        i.premake,
                        i.retention_action.as_str()
                    ));
                    for note in &i.notes {
                        out.push_str(&format!("  note: {note}\n"));
                    }
                    if i.still_maintained_by_pg_partman {
                        out.push_str("  pg_partman still maintains it (automatic_maintenance = 'on'): maintain refuses it until that is 'off'\n");
                    }
                }
                for t in &r.already_registered {
                    out.push_str(&format!("{t}: registered here already, left as it is\n"));
                }
                for n in &r.not_imported {
                    out.push_str(&format!("not imported {}: {}\n", n.table, n.reason));
                }
                out
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PartitionStatus {
    pub name: String,
    pub from: String,
    pub to: String,
    pub total_bytes: i64,
    /// `pg_class.reltuples`; `null` before the table was first vacuumed or analyzed (PostgreSQL
    /// has no estimate yet).
    pub estimated_rows: Option<i64>,
    pub detach_pending: bool,
    pub is_default: bool,
}

#[derive(Debug, Serialize)]
pub struct TableStatusReport {
    pub table: QualifiedName,
    pub key_column: String,
    pub partitions: Vec<PartitionStatus>,
    pub total_bytes: i64,
    pub default_rows: i64,
    pub next_run: RunReport,
}

fn show(b: BoundValue) -> String {
    match b {
        BoundValue::MinValue => "MINVALUE".into(),
        BoundValue::MaxValue => "MAXVALUE".into(),
        BoundValue::At(t) => t.format("%Y-%m-%d %H:%M").to_string(),
    }
}

impl App {
    /// Built once per process (outside the Lambda handler): the S3 client is reused across calls.
    pub async fn new(settings: Settings) -> Self {
        crate::pg::lock::set_stale_after(settings.stale_lock);
        let archiver = match &settings.archive {
            Some(a) => Some(Archiver::new(a.clone(), Some(settings.db.clone())).await),
            None => None,
        };
        Self { settings, archiver }
    }

    fn archiver(&self) -> Result<&Archiver, Error> {
        self.archiver
            .as_ref()
            .ok_or_else(|| Error::invalid("ARCHIVE_BUCKET is not set: this verb needs the archive bucket"))
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, Error> {
        self.settings.db.connect().await.map_err(Error::transient)
    }

    /// `ARCHIVE_STREAMS` connections, plus this run's own and the one that counts rows, must fit in
    /// what the server allows (max_connections less the superuser reserve, and the database's and
    /// role's CONNECTION LIMIT): refused before anything changes otherwise.
    async fn check_streams(&self, client: &tokio_postgres::Client) -> Result<(), Error> {
        let Some(archiver) = &self.archiver else { return Ok(()) };
        let allowed: i64 = client
            .query_one(
                "SELECT least(current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint,
                              (SELECT nullif(datconnlimit, -1) FROM pg_database WHERE datname = current_database()),
                              (SELECT nullif(rolconnlimit, -1) FROM pg_roles WHERE rolname = current_user))",
                &[],
            )
            .await
            .map_err(|e| Error::transient(e.into()))?
            .get(0);
        let streams = archiver.store.settings.streams as i64;
        if streams + 3 > allowed {
            return Err(Error::invalid(format!(
                "ARCHIVE_STREAMS={streams} needs {} connections (one per stream, this run's own, a row count and the \
                 run's lease) but the server allows {allowed} (max_connections less superuser_reserved_connections, or \
                 the database's or role's CONNECTION LIMIT): lower ARCHIVE_STREAMS",
                streams + 3
            )));
        }
        Ok(())
    }

    pub async fn handle(&self, request: Request) -> Result<Response, Error> {
        // Boxed: the request futures are deep (layout queries overflow otherwise).
        Box::pin(self.handle_until(request, None)).await
    }

    /// Handles a request that must be done by `deadline` (the Lambda's invocation deadline); a
    /// request's own time budget may make it earlier.
    pub async fn handle_until(&self, request: Request, deadline: Option<Instant>) -> Result<Response, Error> {
        let started = Instant::now();
        let action = request.action();
        let run_id = format!("{:016x}", fastrand::u64(..));
        let span = tracing::info_span!("run", run_id = %run_id, action);
        let _enter = span.enter();
        // Every session from here on is named for this run, and the lease keeps the run looking
        // alive to other runs while it lasts (`pg::lock`, `pg::lease`).
        crate::pg::connect::set_run_id(&run_id);
        // A listing from the bucket touches no database.
        let uses_database = !matches!(request, Request::List { from_bucket: true, .. });
        let _lease = uses_database.then(|| crate::pg::lease::RunLease::start(self.settings.db.clone()));
        match request {
            Request::Migrate { now } => {
                let mut client = self.connect().await?;
                let migrations = crate::pg::migrate::migrate(&mut client, now).await.map_err(Error::transient)?;
                Ok(Response::Migrate { action, ok: true, migrations })
            }
            Request::Maintain { dry_run, now, tables, time_budget, fan_out } => {
                let now = now.unwrap_or_else(Utc::now);
                let deadline = earliest(deadline, time_budget.map(|b| started + b));
                let archiver = self.archiver.as_ref().map(|a| a.with_deadline(deadline).fanning_out(fan_out));
                Ok(Response::Run(self.maintain(run_id, action, now, dry_run, &tables, archiver.as_ref()).await?))
            }
            Request::ArchiveChunk { table, partition, chunk, time_budget } => {
                // The invocation's deadline counts, as everywhere: a chunk that would overrun it is
                // not started.
                let archiver = &self.archiver()?.with_deadline(earliest(deadline, time_budget.map(|b| started + b)));
                let client = self.connect().await?;
                let policy = crate::pg::catalog::load_policies(&client, std::slice::from_ref(&table)).await?.remove(0);
                let name = QualifiedName::new(&table.schema, &partition);
                // The partition may live in another schema than its parent: the manifest knows.
                let name = match crate::archive::manifest::load(&client, &table, &partition)
                    .await
                    .map_err(Error::transient)?
                {
                    Some(rec) => rec.partition(),
                    None => name,
                };
                let (outcome, rows) = crate::archive::retention::archive_unit(&client, &policy, &name, archiver, chunk)
                    .await
                    .map_err(Error::transient)?;
                Ok(Response::Unit { action, ok: true, table, partition, chunk, outcome, rows })
            }
            Request::Status { now, tables } => self.status(now.unwrap_or_else(Utc::now), &tables).await,
            Request::ImportPgPartman { dry_run } => {
                let mut client = self.connect().await?;
                let import = crate::pg::partman::import(&mut client, dry_run).await?;
                Ok(Response::ImportPgPartman { action, ok: true, import })
            }
            Request::Archive { table, partition, time_budget } => {
                let deadline = earliest(deadline, time_budget.map(|b| started + b));
                Ok(Response::Run(self.archive_one(run_id, &table, &partition, deadline).await?))
            }
            Request::Restore { table, partition, into_schema, attach, drop_columns, time_budget, fan_out } => {
                let step = if fan_out { Step::Plan } else { Step::Whole };
                let deadline = earliest(deadline, time_budget.map(|b| started + b));
                let attach = attach.then_some(Attach { drop_columns: &drop_columns });
                self.restore(action, &table, &partition, into_schema, attach, deadline, step).await
            }
            Request::RestoreChunk { table, partition, chunk, restore_id, into_schema, time_budget } => {
                let step = Step::Unit { chunk, restore_id: &restore_id };
                let deadline = earliest(deadline, time_budget.map(|b| started + b));
                self.restore(action, &table, &partition, into_schema, None, deadline, step).await
            }
            Request::Verify { table, deep } => {
                let archiver = self.archiver()?;
                let client = self.connect().await?;
                let archives = crate::archive::restore::verify_all(&client, archiver, table.as_ref(), deep).await?;
                Ok(Response::Verify { action, ok: archives.iter().all(|a| a.ok), archives })
            }
            Request::List { table, from_bucket: true } => {
                // No database needed: this is for one that has no records.
                let archiver = self.archiver()?;
                let (archives, unreadable) = crate::archive::restore::list_bucket(archiver, table.as_ref()).await?;
                let s = &archiver.store.settings;
                let source = format!("s3://{}/{}", s.bucket, s.prefix);
                Ok(Response::List { action, ok: unreadable.is_empty(), source, archives, unreadable })
            }
            Request::List { table, from_bucket: false } => {
                let client = self.connect().await?;
                let archives =
                    crate::archive::manifest::list(&client, table.as_ref()).await.map_err(Error::transient)?;
                Ok(Response::List { action, ok: true, source: "database".into(), archives, unreadable: vec![] })
            }
        }
    }

    /// A restore, or one step of a fan-out restore (its plan, one unit).
    #[allow(clippy::too_many_arguments)]
    async fn restore(
        &self,
        action: &'static str,
        table: &QualifiedName,
        partition: &str,
        into_schema: Option<String>,
        attach: Option<Attach<'_>>,
        deadline: Option<Instant>,
        step: Step<'_>,
    ) -> Result<Response, Error> {
        let archiver = &self.archiver()?.with_deadline(deadline);
        let mut client = self.connect().await?;
        self.check_streams(&client).await?;
        let schema = into_schema.unwrap_or_else(|| self.settings.restore_schema.clone());
        let lock_timeout_ms = self.settings.ddl.lock_timeout.as_millis() as u64;
        let restore = crate::archive::restore::restore(
            &mut client,
            archiver,
            table,
            partition,
            &schema,
            attach,
            lock_timeout_ms,
            step,
        )
        .await?;
        Ok(match restore {
            // An --attach that was not done is not success: a script that asked for it must not
            // go on as if the month were back under its parent.
            RestoreOutcome::Restored(restore) => {
                Response::Restore { action, ok: restore.not_attached_because.is_none(), restore }
            }
            RestoreOutcome::Unit(unit) => Response::RestoreUnit { action, ok: true, unit },
            RestoreOutcome::Pending(pending) => Response::RestorePending { action, ok: false, pending },
        })
    }

    /// Runs (or plans) every table; one table's failure is reported and does not stop the others.
    /// `archiver`: this run's (its deadline, fan-out or not).
    pub async fn maintain(
        &self,
        run_id: String,
        action: &str,
        now: DateTime<Utc>,
        dry_run: bool,
        only: &[QualifiedName],
        archiver: Option<&Archiver>,
    ) -> Result<RunReport, Error> {
        let fan_out = archiver.is_some_and(|a| a.fan_out);
        let started = Utc::now();
        let mut client = self.connect().await?;
        if !dry_run {
            self.check_streams(&client).await?;
        }
        let only = if only.is_empty() && !self.settings.maintain_tables.is_empty() {
            self.register_missing(&client, &self.settings.maintain_tables).await?;
            self.settings.maintain_tables.as_slice()
        } else {
            only
        };
        let policies = crate::pg::catalog::load_policies(&client, only).await?;
        let mode = if dry_run { Mode::DryRun } else { Mode::Execute };
        let mut tables = Vec::new();
        for policy in &policies {
            // A session closed under a table (the watch found its path dead) is replaced, so the
            // other tables go on.
            if client.is_closed() {
                match self.connect().await {
                    Ok(c) => client = c,
                    Err(e) => {
                        tables.push(TableReport::failed(policy.table.clone(), &e));
                        continue;
                    }
                }
            }
            let report = maintain_table(&mut client, policy, now, &self.settings.ddl, mode, archiver).await;
            tables.push(report);
        }
        if client.is_closed() {
            // The run's record and health still count (they are what the alarms read).
            if let Ok(c) = self.connect().await {
                client = c;
            }
        }
        let mut report = RunReport::of(run_id, action, dry_run, now, tables);
        if dry_run || fan_out {
            report.units = fan_out_units(&client, &report, dry_run).await?;
        }
        if !dry_run {
            let summary = serde_json::to_value(&report).unwrap_or_default();
            if let Err(e) = client
                .execute(
                    "INSERT INTO partition_archiver.run_log (run_id, action, ok, started_at, summary) VALUES ($1, $2, $3, $4, $5)",
                    &[&report.run_id, &report.action, &report.ok, &started, &summary],
                )
                .await
            {
                tracing::warn!(error = %e, "could not record the run in partition_archiver.run_log");
            }
            record_maintained_tables(&client, &report).await;
            self.emit_metrics(&report, &run_health(&client).await);
        }
        Ok(report)
    }

    fn emit_metrics(&self, report: &RunReport, health: &RunHealth) {
        let ts = Utc::now().timestamp_millis();
        let mut lines: Vec<serde_json::Value> =
            report.tables.iter().map(|t| crate::aws::metrics::table_line(t, ts)).collect();
        lines.push(crate::aws::metrics::run_line(report, health, ts));
        crate::aws::metrics::emit(self.settings.metrics, &lines);
    }

    /// Registers listed tables that part_config does not know yet, if they are partitioned tables.
    async fn register_missing(&self, client: &tokio_postgres::Client, tables: &[QualifiedName]) -> Result<(), Error> {
        let d = &self.settings.register_defaults;
        for t in tables {
            let n = client
                .execute(
                    "INSERT INTO partition_archiver.part_config
                       (schema_name, table_name, partition_column, partition_interval, premake, retention, time_zone)
                     SELECT $1, $2, $3, $4, $5, $6, $7
                      WHERE EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'p')
                     ON CONFLICT DO NOTHING",
                    &[
                        &t.schema,
                        &t.name,
                        &d.partition_column,
                        &d.partition_interval,
                        &d.premake,
                        &d.retention,
                        &d.time_zone,
                    ],
                )
                .await
                .map_err(|e| Error::transient(anyhow::Error::new(e).context(format!("register {t} in part_config"))))?;
            if n > 0 {
                tracing::info!(table = %t, "registered in partition_archiver.part_config with the DEFAULT_* policy");
            }
        }
        Ok(())
    }

    async fn status(&self, now: DateTime<Utc>, only: &[QualifiedName]) -> Result<Response, Error> {
        let mut client = self.connect().await?;
        let policies = crate::pg::catalog::load_policies(&client, only).await?;
        let mut tables = Vec::new();
        for policy in &policies {
            let snapshot =
                crate::pg::catalog::load_snapshot_within(&mut client, policy, self.settings.ddl.lock_timeout).await?;
            let mut next = crate::plan::planner::plan(&snapshot, policy, now);
            let mut report = TableReport::new(policy.table.clone());
            report.status = TableStatus::Planned;
            report.current_period = Some(next.current_period.clone());
            report.warnings.append(&mut next.warnings);
            if let Err(e) = crate::pg::partman::refuse_if_maintained(&client, &policy.table).await {
                report.warnings.push(e.message);
            }
            report.steps = next.steps.into_iter().map(crate::report::StepReport::planned).collect();
            report.stats = Some(crate::plan::snapshot::TableStats::of(&snapshot));
            if let Some(limit) = self.settings.partition_size_warn_bytes {
                for p in snapshot.partitions.iter().filter(|p| p.total_bytes > limit) {
                    report.warnings.push(format!(
                        "{} is {} bytes, larger than PARTITION_SIZE_WARN_BYTES ({limit})",
                        p.name, p.total_bytes
                    ));
                }
            }
            let partitions: Vec<PartitionStatus> = snapshot
                .partitions
                .iter()
                .map(|p| {
                    let (from, to, is_default) = match p.bound {
                        PartitionBound::Default => ("DEFAULT".into(), String::new(), true),
                        PartitionBound::Range { from, to } => (show(from), show(to), false),
                    };
                    PartitionStatus {
                        name: p.name.to_string(),
                        from,
                        to,
                        total_bytes: p.total_bytes,
                        estimated_rows: (p.estimated_rows >= 0).then_some(p.estimated_rows),
                        detach_pending: p.detach_pending,
                        is_default,
                    }
                })
                .collect();
            tables.push(TableStatusReport {
                table: policy.table.clone(),
                key_column: policy.column.clone(),
                total_bytes: partitions.iter().map(|p| p.total_bytes).sum(),
                default_rows: snapshot.default_rows_total(),
                partitions,
                next_run: RunReport::of(String::new(), "plan", true, now, vec![report]),
            });
        }
        // The heartbeat: status publishes the same per-table metrics and DaysSinceLastSuccess.
        let heartbeat = RunReport::of(
            String::new(),
            "status",
            true,
            now,
            tables
                .iter()
                .map(|t| {
                    let mut r = TableReport::new(t.table.clone());
                    r.stats = t.next_run.tables.first().and_then(|x| x.stats.clone());
                    r
                })
                .collect(),
        );
        self.emit_metrics(&heartbeat, &run_health(&client).await);
        Ok(Response::Status { action: "status", ok: true, now, tables })
    }

    /// `archive --table T --partition P`: detach (if attached), archive, verify and drop/move one
    /// partition now, whatever the retention, but only a whole period that has ended.
    async fn archive_one(
        &self,
        run_id: String,
        table: &QualifiedName,
        partition: &str,
        deadline: Option<Instant>,
    ) -> Result<RunReport, Error> {
        let archiver = &self.archiver()?.with_deadline(deadline);
        let mut client = self.connect().await?;
        self.check_streams(&client).await?;
        let policy = crate::pg::catalog::load_policies(&client, std::slice::from_ref(table)).await?.remove(0);
        let now = Utc::now();
        // Bad input (default partition, current period, unknown partition) is refused before any
        // change; the steps are chosen again under the table's lock.
        let snapshot =
            crate::pg::catalog::load_snapshot_within(&mut client, &policy, self.settings.ddl.lock_timeout).await?;
        crate::plan::planner::archive_now(&snapshot, &policy, now, partition)?;
        let report = crate::executor::run_table(
            &mut client,
            &policy,
            &self.settings.ddl,
            Mode::Execute,
            Some(archiver),
            |snapshot, _| crate::plan::planner::archive_now(snapshot, &policy, now, partition),
        )
        .await;
        let report = RunReport::of(run_id, "archive", false, now, vec![report]);
        self.emit_metrics(&report, &RunHealth::default());
        Ok(report)
    }
}

/// The units of work of a fan-out: every unfinished chunk of each partition whose chunks are
/// planned, and (for a dry run) every other partition the run would archive, whole.
async fn fan_out_units(
    client: &tokio_postgres::Client,
    report: &RunReport,
    dry_run: bool,
) -> Result<Vec<ArchiveUnit>, Error> {
    let mut units = Vec::new();
    let whole = if dry_run { report.archive_units() } else { vec![] };
    for t in &report.tables {
        let records = crate::archive::manifest::list(client, Some(&t.table)).await.map_err(Error::transient)?;
        for rec in records.iter().filter(|r| r.is_chunked() && r.state == ArchiveState::Uploading) {
            units.extend(rec.current_chunks().filter(|c| c.state != ChunkState::Uploaded).map(|c| ArchiveUnit {
                table: t.table.to_string(),
                partition: rec.partition_name.clone(),
                chunk: Some(c.chunk_no),
            }));
        }
    }
    for unit in whole {
        if !units.iter().any(|u| u.table == unit.table && u.partition == unit.partition) {
            units.push(unit);
        }
    }
    // A Step Functions state carries at most 256 KB: a round takes the first MAX_UNITS (about
    // 500 GB of 256 MiB chunks), and the state machine's next round lists the rest.
    units.truncate(MAX_UNITS);
    Ok(units)
}

/// Units listed per fan-out round (each is about 80 bytes of JSON).
const MAX_UNITS: usize = 2000;

/// The earlier of two deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// From the run log and the table maintenance record. Days since the last successful
/// `maintain`; before the first one, days since the archiver's schema was installed (so a fresh
/// install does not alarm on its first day). The oldest table: the enabled table whose last
/// successful maintenance (or registration, before its first) is the longest ago.
async fn run_health(client: &tokio_postgres::Client) -> RunHealth {
    let last_success = client
        .query_one(
            "SELECT extract(epoch FROM now() - coalesce(
                      (SELECT max(finished_at) FROM partition_archiver.run_log WHERE ok AND action = 'maintain'),
                      (SELECT min(applied_at) FROM partition_archiver.schema_migrations)))::float8 / 86400",
            &[],
        )
        .await;
    // Apart: a database not yet migrated to the maintenance record still reports the first.
    let oldest_table = client
        .query_one(
            "SELECT (SELECT max(extract(epoch FROM now() - coalesce(m.last_success_at, c.created_at)))::float8 / 86400
                       FROM partition_archiver.part_config c
                       LEFT JOIN partition_archiver.table_maintenance m USING (schema_name, table_name)
                      WHERE c.enabled)",
            &[],
        )
        .await;
    let read = |r: Result<tokio_postgres::Row, tokio_postgres::Error>, what: &str| match r {
        Ok(r) => r.get::<_, Option<f64>>(0),
        Err(e) => {
            tracing::warn!(error = %e, "could not read {what} for the health metrics");
            None
        }
    };
    RunHealth {
        days_since_last_success: read(last_success, "the run log"),
        oldest_table_maintenance_days: read(oldest_table, "the table maintenance record"),
    }
}

/// Records the tables this run maintained without failure or skip (the source of
/// `OldestTableMaintenanceDays`). A table skipped because another run held it keeps its old date.
async fn record_maintained_tables(client: &tokio_postgres::Client, report: &RunReport) {
    // Only a table maintained through: one whose archive a time budget (or a busy chunk) leaves
    // unfinished run after run must come to the stale alarm, as a skipped one does.
    for t in report.tables.iter().filter(|t| t.status == TableStatus::Ok && t.complete()) {
        if let Err(e) = client
            .execute(
                "INSERT INTO partition_archiver.table_maintenance (schema_name, table_name, last_success_at, last_run_id)
                 VALUES ($1, $2, now(), $3)
                 ON CONFLICT (schema_name, table_name)
                 DO UPDATE SET last_success_at = EXCLUDED.last_success_at, last_run_id = EXCLUDED.last_run_id",
                &[&t.table.schema, &t.table.name, &report.run_id],
            )
            .await
        {
            tracing::warn!(table = %t.table, error = %e, "could not record the table's maintenance");
        }
    }
}
