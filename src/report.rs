//! The structured results every verb returns: printed as JSON by the CLI (`--output json`) and
//! returned by the Lambda, or rendered for a person on a terminal.

use crate::error::{Error, ErrorKind};
use crate::plan::ident::QualifiedName;
use crate::plan::planner::Step;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Planned,
    Done,
    /// An archive the run's time budget stopped part way (or never started): the next run goes on.
    Unfinished,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub step: Step,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_moved: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_archived: Option<i64>,
    /// Uncompressed COPY bytes and compressed object bytes of an archive step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_archived: Option<i64>,
    /// A chunked archive's chunks: uploaded so far, and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_done: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_total: Option<usize>,
    pub attempts: u32,
    pub duration_ms: u64,
}

impl StepReport {
    pub fn planned(step: Step) -> Self {
        Self {
            step,
            outcome: Outcome::Planned,
            detail: None,
            rows_moved: None,
            rows_archived: None,
            raw_bytes: None,
            bytes_archived: None,
            chunks_done: None,
            chunks_total: None,
            attempts: 0,
            duration_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    Ok,
    Planned,
    Failed,
    AlreadyRunning,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<&Error> for ErrorReport {
    fn from(e: &Error) -> Self {
        Self { kind: e.kind, message: e.message.clone() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: QualifiedName,
    pub status: TableStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_cutoff: Option<NaiveDateTime>,
    pub steps: Vec<StepReport>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// Partition count and sizes when the run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::plan::snapshot::TableStats>,
    /// Who held the table's lock: the live session this run skipped the table for
    /// (`already_running`), or the vanished run it terminated (`terminated: true`) before going on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_holder: Option<crate::plan::snapshot::LockHolder>,
}

impl TableReport {
    pub fn new(table: QualifiedName) -> Self {
        Self {
            table,
            status: TableStatus::Ok,
            current_period: None,
            retention_cutoff: None,
            steps: vec![],
            warnings: vec![],
            error: None,
            stats: None,
            lock_holder: None,
        }
    }
    /// Gone through: not skipped for another run's lock, and no step left unfinished.
    pub fn complete(&self) -> bool {
        self.status != TableStatus::AlreadyRunning && !self.steps.iter().any(|s| s.outcome == Outcome::Unfinished)
    }
    pub fn failed(table: QualifiedName, e: &Error) -> Self {
        let mut r = Self::new(table);
        r.status = TableStatus::Failed;
        r.error = Some(e.into());
        r
    }
    pub fn count(&self, outcome: Outcome, pred: impl Fn(&Step) -> bool) -> usize {
        self.steps.iter().filter(|s| s.outcome == outcome && pred(&s.step)).count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub action: String,
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub ok: bool,
    /// `false` when the time budget stopped an archive part way: the next run goes on where this
    /// one stopped (the steps say which partitions, and how many chunks remain).
    pub complete: bool,
    pub tables: Vec<TableReport>,
    /// Tables skipped because another session held their lock (`already_running`). Normal once
    /// (two schedules can overlap); the alarm on `OldestTableMaintenanceDays` catches a table
    /// skipped run after run.
    pub tables_skipped: usize,
    /// For a dry run: the partitions the run would archive, as units of work for a fan-out.
    pub units: Vec<ArchiveUnit>,
}

/// One partition to archive: the unit of work a fan-out (Step Functions Map) hands to `archive`.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveUnit {
    pub table: String,
    pub partition: String,
    /// The chunk, for a partition whose chunks are planned (`archive_chunk`); none: the whole
    /// partition (`archive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<i32>,
}

impl RunReport {
    /// A report of `tables`: `ok` unless one failed; `complete` unless a time budget left an
    /// archive unfinished or a table was skipped (another run holds it); the skipped tables
    /// counted.
    pub fn of(run_id: String, action: &str, dry_run: bool, now: DateTime<Utc>, tables: Vec<TableReport>) -> Self {
        let mut r = Self {
            run_id,
            action: action.into(),
            dry_run,
            now,
            ok: tables.iter().all(|t| t.status != TableStatus::Failed),
            complete: true,
            tables_skipped: tables.iter().filter(|t| t.status == TableStatus::AlreadyRunning).count(),
            tables,
            units: vec![],
        };
        r.complete = r.all_complete();
        r
    }

    /// A failed run whose every failure is transient (a lost or silent connection, S3 timing
    /// out): the same run later is expected to go on where this one stopped (CLI exit code 3).
    pub fn failed_transiently(&self) -> bool {
        let mut failed = self.tables.iter().filter(|t| t.status == TableStatus::Failed).peekable();
        failed.peek().is_some() && failed.all(|t| t.error.as_ref().is_some_and(|e| e.kind == ErrorKind::Transient))
    }

    /// Did every table get its turn (none skipped for another run's lock) and every step that ran
    /// finish (none left unfinished by the time budget)? Else the same run again has work left.
    pub fn all_complete(&self) -> bool {
        self.tables.iter().all(TableReport::complete)
    }

    /// The archive steps of this report, as units of work.
    pub fn archive_units(&self) -> Vec<ArchiveUnit> {
        self.tables
            .iter()
            .flat_map(|t| t.steps.iter().map(move |s| (t, s)))
            .filter_map(|(t, s)| match &s.step {
                Step::Archive { partition } => {
                    Some(ArchiveUnit { table: t.table.to_string(), partition: partition.name.clone(), chunk: None })
                }
                _ => None,
            })
            .collect()
    }

    pub fn human(&self) -> String {
        let mut out = format!(
            "{} {} at {}{}\n",
            self.action,
            if self.ok { "ok" } else { "FAILED" },
            self.now.to_rfc3339(),
            if self.dry_run { " (dry run: nothing changed)" } else { "" }
        );
        for t in &self.tables {
            out.push_str(&format!("\n{}: {:?}", t.table, t.status));
            if let Some(p) = &t.current_period {
                out.push_str(&format!(" (current period {p})"));
            }
            out.push('\n');
            if t.steps.is_empty() && t.error.is_none() {
                out.push_str("  nothing to do\n");
            }
            for s in &t.steps {
                let what = match &s.step {
                    Step::FinalizeDetach { partition } => format!("finalize detach of {partition}"),
                    Step::CreateDefault { partition } => {
                        format!("create default partition {partition}")
                    }
                    Step::CreatePartition { partition, from, to, .. } => format!("create {partition} [{from}, {to})"),
                    Step::Detach { partition, concurrently } => {
                        format!("detach {partition}{}", if *concurrently { " concurrently" } else { "" })
                    }
                    Step::Archive { partition } => format!("archive {partition} to S3"),
                    Step::Drop { partition } => format!("drop {partition}"),
                    Step::MoveToSchema { partition, schema } => {
                        format!("move {partition} to schema {schema}")
                    }
                };
                let mut extra = Vec::new();
                if let Some(n) = s.rows_moved.filter(|n| *n > 0) {
                    extra.push(format!("{n} rows moved from default"));
                }
                if let Some(n) = s.rows_archived {
                    extra.push(format!("{n} rows"));
                }
                if let Some(d) = &s.detail {
                    extra.push(d.clone());
                }
                let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join("; ")) };
                let outcome = serde_json::to_value(s.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                out.push_str(&format!("  [{outcome}] {what}{extra}\n"));
            }
            for w in &t.warnings {
                out.push_str(&format!("  warning: {w}\n"));
            }
            if let Some(e) = &t.error {
                out.push_str(&format!("  error ({:?}): {}\n", e.kind, e.message));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_failed_transiently_only_when_every_failure_is_transient() {
        let table = |name: &str, kind: Option<ErrorKind>| match kind {
            Some(k) => TableReport::failed(QualifiedName::new("public", name), &Error::new(k, "x")),
            None => TableReport::new(QualifiedName::new("public", name)),
        };
        let mut skipped = table("c", None);
        skipped.status = TableStatus::AlreadyRunning;
        let cases: [(Vec<TableReport>, bool, bool); 5] = [
            (vec![table("a", None), skipped.clone()], true, false),
            (vec![table("a", Some(ErrorKind::Transient)), table("b", None)], false, true),
            (vec![table("a", Some(ErrorKind::Transient)), table("b", Some(ErrorKind::Transient))], false, true),
            (vec![table("a", Some(ErrorKind::Transient)), table("b", Some(ErrorKind::Integrity))], false, false),
            (vec![table("a", Some(ErrorKind::InvalidInput)), skipped], false, false),
        ];
        for (i, (tables, ok, transient)) in cases.into_iter().enumerate() {
            let r = RunReport::of("run".into(), "maintain", false, "2026-11-24T10:00:00Z".parse().unwrap(), tables);
            assert_eq!((r.ok, r.failed_transiently()), (ok, transient), "case {i}");
        }
    }
}
