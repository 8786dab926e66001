//! CloudWatch Embedded Metric Format: one JSON line per table and one per run, printed to stdout in
//! Lambda (CloudWatch extracts the metrics from the log; no API call, no extra permission) and to
//! stderr on the CLI, so stdout stays the report. Every metric is published both per table
//! (dimension `Table`) and aggregated (no dimension), which is what the alarms watch.

use crate::plan::planner::Step;
use crate::report::{Outcome, RunReport, TableReport};
use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "PartitionArchiver";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSink {
    Off,
    Stdout,
    Stderr,
}

impl MetricsSink {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" | "none" => Some(Self::Off),
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }

    /// Where metric lines go when `METRICS` does not say: stdout in Lambda (CloudWatch reads EMF
    /// there), stderr from the CLI for a log collector, and nowhere on a person's terminal, where
    /// they would only clutter the report.
    pub fn default_for(lambda: bool, stderr_is_terminal: bool) -> Self {
        match (lambda, stderr_is_terminal) {
            (true, _) => Self::Stdout,
            (false, false) => Self::Stderr,
            (false, true) => Self::Off,
        }
    }
}

fn emf(dimensions: &[&str], values: Vec<(&str, &str, f64)>, extra: Map<String, Value>, timestamp_ms: i64) -> Value {
    let mut root = extra;
    let metrics: Vec<Value> = values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let dims: Vec<Value> = if dimensions.is_empty() { vec![json!([])] } else { vec![json!(dimensions), json!([])] };
    root.insert(
        "_aws".into(),
        json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dims, "Metrics": metrics}]}),
    );
    for (name, _, v) in values {
        root.insert(name.into(), json!(v));
    }
    Value::Object(root)
}

/// The EMF line of one table's part of a run.
pub fn table_line(t: &TableReport, timestamp_ms: i64) -> Value {
    let done = |pred: fn(&Step) -> bool| t.count(Outcome::Done, pred) as f64;
    let sum = |f: fn(&crate::report::StepReport) -> Option<i64>| t.steps.iter().filter_map(f).sum::<i64>() as f64;
    let duration =
        |pred: fn(&Step) -> bool| t.steps.iter().filter(|s| pred(&s.step)).map(|s| s.duration_ms).sum::<u64>() as f64;
    let stats = t.stats.clone().unwrap_or_default();
    let raw = sum(|s| s.raw_bytes);
    let compressed = sum(|s| s.bytes_archived);
    let mut values = vec![
        // Counts as they stand after the run: what the alarms should judge.
        (
            "PartitionCount",
            "Count",
            (stats.partition_count as f64
                + done(|s| matches!(s, Step::CreatePartition { .. } | Step::CreateDefault { .. }))
                - done(|s| matches!(s, Step::Detach { .. } | Step::FinalizeDetach { .. })))
            .max(0.0),
        ),
        ("TotalBytes", "Bytes", stats.total_bytes as f64),
        ("LargestPartitionBytes", "Bytes", stats.largest_partition_bytes as f64),
        ("NewestPartitionBytes", "Bytes", stats.newest_partition_bytes as f64),
        ("DefaultPartitionRows", "Count", (stats.default_rows as f64 - sum(|s| s.rows_moved)).max(0.0)),
        ("PartitionsCreated", "Count", done(|s| matches!(s, Step::CreatePartition { .. }))),
        ("PartitionsArchived", "Count", done(|s| matches!(s, Step::Archive { .. }))),
        ("PartitionsDropped", "Count", done(|s| matches!(s, Step::Drop { .. } | Step::MoveToSchema { .. }))),
        ("RowsMovedFromDefault", "Count", sum(|s| s.rows_moved)),
        ("RowsArchived", "Count", sum(|s| s.rows_archived)),
        ("BytesArchived", "Bytes", compressed),
        (
            "StepFailures",
            "Count",
            (t.count(Outcome::Failed, |_| true)
                + usize::from(t.error.is_some() && t.steps.iter().all(|s| s.outcome != Outcome::Failed)))
                as f64,
        ),
        (
            "CreateDurationMs",
            "Milliseconds",
            duration(|s| matches!(s, Step::CreatePartition { .. } | Step::CreateDefault { .. })),
        ),
        (
            "DetachDurationMs",
            "Milliseconds",
            duration(|s| matches!(s, Step::Detach { .. } | Step::FinalizeDetach { .. })),
        ),
        ("ArchiveDurationMs", "Milliseconds", duration(|s| matches!(s, Step::Archive { .. }))),
        ("DropDurationMs", "Milliseconds", duration(|s| matches!(s, Step::Drop { .. } | Step::MoveToSchema { .. }))),
    ];
    if compressed > 0.0 {
        values.push(("CompressionRatio", "None", raw / compressed));
    }
    let mut extra = Map::new();
    extra.insert("Table".into(), json!(t.table.to_string()));
    extra.insert("Status".into(), json!(t.status));
    emf(&["Table"], values, extra, timestamp_ms)
}

/// What the database says about the tool's health, published with every run and heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunHealth {
    /// Days since the last successful `maintain` run (`DaysSinceLastSuccess`).
    pub days_since_last_success: Option<f64>,
    /// Days since the enabled table maintained longest ago was last maintained
    /// (`OldestTableMaintenanceDays`): a table skipped run after run (its lock held) grows it while
    /// the runs themselves succeed.
    pub oldest_table_maintenance_days: Option<f64>,
}

/// The EMF line of a whole run.
pub fn run_line(r: &RunReport, health: &RunHealth, timestamp_ms: i64) -> Value {
    let mut values = vec![
        ("RunSucceeded", "Count", if r.ok { 1.0 } else { 0.0 }),
        ("TablesSkippedLocked", "Count", r.tables_skipped as f64),
    ];
    if let Some(d) = health.days_since_last_success {
        values.push(("DaysSinceLastSuccess", "None", d));
    }
    if let Some(d) = health.oldest_table_maintenance_days {
        values.push(("OldestTableMaintenanceDays", "None", d));
    }
    let mut extra = Map::new();
    extra.insert("RunId".into(), json!(r.run_id));
    extra.insert("Action".into(), json!(r.action));
    emf(&[], values, extra, timestamp_ms)
}

pub fn emit(sink: MetricsSink, lines: &[Value]) {
    use std::io::Write;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    match sink {
        MetricsSink::Off => {}
        MetricsSink::Stdout => {
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
        MetricsSink::Stderr => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ident::QualifiedName;
    use crate::plan::snapshot::TableStats;
    use crate::report::StepReport;

    #[test]
    fn metric_lines_go_to_cloudwatch_and_collectors_not_to_a_terminal() {
        let cases = [
            ((true, false), MetricsSink::Stdout),
            ((true, true), MetricsSink::Stdout),
            ((false, false), MetricsSink::Stderr),
            ((false, true), MetricsSink::Off),
        ];
        for ((lambda, terminal), sink) in cases {
            assert_eq!(MetricsSink::default_for(lambda, terminal), sink, "lambda {lambda}, terminal {terminal}");
        }
    }

    #[test]
    fn emf_lines_carry_values_and_both_dimension_sets() {
        let mut t = TableReport::new(QualifiedName::new("public", "trades"));
        t.stats = Some(TableStats {
            partition_count: 9,
            total_bytes: 900,
            largest_partition_bytes: 300,
            newest_partition_bytes: 10,
            default_rows: 4,
        });
        let mut s = StepReport::planned(Step::Archive { partition: QualifiedName::new("public", "trades_2026_03") });
        s.outcome = Outcome::Done;
        s.rows_archived = Some(1000);
        s.raw_bytes = Some(8000);
        s.bytes_archived = Some(2000);
        s.duration_ms = 1500;
        t.steps.push(s);
        let line = table_line(&t, 1_790_000_000_000);
        assert_eq!(line["Table"], "public.trades");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Table"], []]));
        assert_eq!((line["RowsArchived"].as_f64(), line["CompressionRatio"].as_f64()), (Some(1000.0), Some(4.0)));
        assert_eq!(
            (line["DefaultPartitionRows"].as_f64(), line["LargestPartitionBytes"].as_f64()),
            (Some(4.0), Some(300.0))
        );
        assert_eq!(line["ArchiveDurationMs"].as_f64(), Some(1500.0));
        // Every declared metric has a value.
        for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap() {
            assert!(line[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
        let mut skipped = TableReport::new(QualifiedName::new("public", "orders"));
        skipped.status = crate::report::TableStatus::AlreadyRunning;
        let mut failed = TableReport::new(QualifiedName::new("public", "fills"));
        failed.status = crate::report::TableStatus::Failed;
        let run = RunReport::of("r".into(), "maintain", false, chrono::Utc::now(), vec![t, skipped, failed]);
        let health = RunHealth { days_since_last_success: Some(36.5), oldest_table_maintenance_days: Some(40.25) };
        let line = run_line(&run, &health, 0);
        assert_eq!((line["RunSucceeded"].as_f64(), line["DaysSinceLastSuccess"].as_f64()), (Some(0.0), Some(36.5)));
        assert_eq!(
            (line["TablesSkippedLocked"].as_f64(), line["OldestTableMaintenanceDays"].as_f64()),
            (Some(1.0), Some(40.25))
        );
        let line = run_line(&run, &RunHealth::default(), 0);
        assert!(line.get("OldestTableMaintenanceDays").is_none(), "{line}");
    }
}
