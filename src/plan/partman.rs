//! `import-pg-partman`: pg_partman's `part_config` rows (4.x and 5.x) mapped to this tool's
//! `part_config` rows. Pure: [`crate::pg::partman`] reads the rows and the facts about each parent
//! (control column type, default partition, children that do not fit the interval); this decides
//! what each becomes, or why it is not imported.
//!
//! The mapping:
//! - `partition_interval` `1 day`, `7 days`, `1 mon`, `3 mons`, `1 year` (pg_partman's daily,
//!   weekly, monthly, quarterly, yearly) become `day`, `week`, `month`, `quarter`, `year`; any
//!   other interval is not imported;
//! - `premake` is kept (at most [`MAX_PREMAKE`]);
//! - `retention` (an interval) becomes a number of periods, rounded up when it is not a whole
//!   number (keeping more, never less), and said so; none keeps everything;
//! - `retention_keep_table = true` (detached tables stay in the database) becomes `archive_move`
//!   into `retention_schema` (or `partition_history`); `false` (pg_partman drops them) becomes
//!   `archive_drop`: archived and verified first, then dropped;
//! - a default partition present is kept (`create_default`);
//! - `epoch` `seconds`, `milliseconds`, `microseconds` is kept (an integer time key);
//! - not imported: id-based parents, `nanoseconds` epochs, sub-partitioned parents, trigger-based (4.x
//!   `partman`) or list partitioning, and parents whose existing children are not whole periods
//!   of their interval in UTC (pg_partman made them in another session time zone).

use crate::plan::period::{Epoch, Interval, KeyType};
use crate::plan::policy::{RetentionAction, MAX_PREMAKE, MAX_RETENTION};
use serde::Serialize;

/// An interval's parts, as PostgreSQL keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalParts {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// One row of pg_partman's `part_config`, with what the catalog says about its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartmanParent {
    pub schema: String,
    pub table: String,
    pub control: String,
    /// `format_type` of the control column.
    pub control_type: String,
    /// 4.x: `native` or `partman` (trigger-based); 5.x: `range` or `list`.
    pub partition_type: String,
    pub interval_text: String,
    /// `None` when the interval is not a time interval (an id-based parent).
    pub interval: Option<IntervalParts>,
    /// `none`, or the unit of an integer time key.
    pub epoch: String,
    pub premake: i32,
    pub retention_text: Option<String>,
    pub retention: Option<IntervalParts>,
    pub retention_keep_table: bool,
    pub retention_schema: Option<String>,
    pub automatic_maintenance: bool,
    pub sub_partitioned: bool,
    pub has_default: bool,
    /// Children that are not one whole period of the interval in UTC.
    pub misfits: Vec<String>,
}

/// What a parent becomes here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub schema: String,
    pub table: String,
    pub partition_column: String,
    pub partition_interval: Interval,
    /// The unit of an integer time key (pg_partman's `epoch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    pub premake: i32,
    pub retention: Option<i32>,
    pub retention_action: RetentionAction,
    pub historical_schema: Option<String>,
    pub create_default: bool,
    /// pg_partman still maintains it (`automatic_maintenance = 'on'`): `maintain` refuses the
    /// table until that is turned off, so two managers never work on one table.
    pub still_maintained_by_pg_partman: bool,
    /// What did not carry over exactly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub fn map(p: &PartmanParent) -> Result<Imported, String> {
    if p.sub_partitioned {
        return Err("sub-partitioned: only single-level parents are imported".into());
    }
    if !matches!(p.partition_type.as_str(), "native" | "range") {
        return Err(format!("partition_type {}: only native range partitioning is imported", p.partition_type));
    }
    let epoch = match p.epoch.as_str() {
        "none" => None,
        "seconds" => Some(Epoch::Seconds),
        "milliseconds" => Some(Epoch::Milliseconds),
        "microseconds" => Some(Epoch::Microseconds),
        other => return Err(format!("epoch {other}: only seconds, milliseconds and microseconds are imported")),
    };
    if epoch.is_none() && matches!(p.control_type.as_str(), "bigint" | "integer" | "smallint" | "numeric") {
        return Err(format!(
            "control column {} is {}: an id-based parent, not a time range",
            p.control, p.control_type
        ));
    }
    KeyType::of_column(&p.control_type, epoch).map_err(|why| format!("control column {}: {why}", p.control))?;
    let parts = p.interval.ok_or_else(|| format!("partition_interval {} is not a time interval", p.interval_text))?;
    let interval = interval_of(parts).ok_or_else(|| {
        format!("partition_interval {}: only a day, a week, a month, a quarter or a year is imported", p.interval_text)
    })?;
    if !p.misfits.is_empty() {
        return Err(format!(
            "{} not one whole {} in UTC ({}): pg_partman made them in another time zone; register the table by hand with its time_zone",
            if p.misfits.len() == 1 { "a child is" } else { "children are" },
            interval.as_str(),
            p.misfits.join(", ")
        ));
    }
    let mut notes = Vec::new();
    let premake = p.premake.clamp(0, MAX_PREMAKE);
    if premake != p.premake {
        notes.push(format!("premake {} lowered to {premake}", p.premake));
    }
    let retention = match (&p.retention_text, p.retention) {
        (None, _) => None,
        (Some(text), None) => return Err(format!("retention {text} is not a time interval")),
        (Some(text), Some(r)) => {
            let exact = exact_periods(r, interval);
            let periods = exact.ceil().max(1.0) as i32;
            if exact.fract() != 0.0 {
                notes.push(format!(
                    "retention {text} is not a whole number of {}s: {periods} kept (rounded up, never fewer)",
                    interval.as_str()
                ));
            }
            if periods > MAX_RETENTION {
                // Never keep less than pg_partman did: keep everything instead.
                notes.push(format!(
                    "retention {text} is {periods} {}s, more than {MAX_RETENTION}: everything is kept (set retention by hand)",
                    interval.as_str()
                ));
                None
            } else {
                Some(periods)
            }
        }
    };
    let (retention_action, historical_schema) = if p.retention_keep_table {
        if p.retention_schema.is_none() {
            notes.push(
                "retention_keep_table: detached partitions are archived, then kept in partition_history (pg_partman left them in place)"
                    .into(),
            );
        }
        (RetentionAction::ArchiveMove, p.retention_schema.clone())
    } else {
        (RetentionAction::ArchiveDrop, None)
    };
    Ok(Imported {
        schema: p.schema.clone(),
        table: p.table.clone(),
        partition_column: p.control.clone(),
        partition_interval: interval,
        epoch,
        premake,
        retention,
        retention_action,
        historical_schema,
        create_default: p.has_default,
        still_maintained_by_pg_partman: p.automatic_maintenance,
        notes,
    })
}

/// The interval pg_partman's interval is, if it is one of ours (`1 day`, `7 days`, `1 mon`,
/// `3 mons`, `1 year`).
pub fn interval_of(p: IntervalParts) -> Option<Interval> {
    match (p.months, p.days, p.micros) {
        (0, 1, 0) => Some(Interval::Day),
        (0, 7, 0) => Some(Interval::Week),
        (1, 0, 0) => Some(Interval::Month),
        (3, 0, 0) => Some(Interval::Quarter),
        (12, 0, 0) => Some(Interval::Year),
        _ => None,
    }
}

/// How many periods of `interval` a retention interval spans, as a fraction: months for the
/// month-based intervals, days (a month counted as 31, an hour's part as a whole day) otherwise.
fn exact_periods(r: IntervalParts, interval: Interval) -> f64 {
    let days = r.days as f64 + r.micros as f64 / 86_400e6;
    match interval {
        Interval::Day => r.months as f64 * 31.0 + days,
        Interval::Week => (r.months as f64 * 31.0 + days) / 7.0,
        Interval::Month => r.months as f64 + days / 28.0,
        Interval::Quarter => (r.months as f64 + days / 28.0) / 3.0,
        Interval::Year => (r.months as f64 + days / 28.0) / 12.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn months(n: i32) -> Option<IntervalParts> {
        Some(IntervalParts { months: n, days: 0, micros: 0 })
    }
    fn days(n: i32) -> Option<IntervalParts> {
        Some(IntervalParts { months: 0, days: n, micros: 0 })
    }

    fn parent() -> PartmanParent {
        PartmanParent {
            schema: "public".into(),
            table: "events".into(),
            control: "created_at".into(),
            control_type: "timestamp with time zone".into(),
            partition_type: "native".into(),
            interval_text: "1 mon".into(),
            interval: months(1),
            epoch: "none".into(),
            premake: 4,
            retention_text: Some("6 mons".into()),
            retention: months(6),
            retention_keep_table: false,
            retention_schema: None,
            automatic_maintenance: true,
            sub_partitioned: false,
            has_default: true,
            misfits: vec![],
        }
    }

    #[test]
    fn each_interval_premake_and_retention() {
        // (interval text, parts, retention text, parts) -> (interval, retention, a note?)
        let cases = [
            ("1 day", days(1), "30 days", days(30), Interval::Day, Some(30), false),
            ("7 days", days(7), "28 days", days(28), Interval::Week, Some(4), false),
            ("7 days", days(7), "1 mon", months(1), Interval::Week, Some(5), true),
            ("1 mon", months(1), "6 mons", months(6), Interval::Month, Some(6), false),
            ("1 mon", months(1), "1 year", months(12), Interval::Month, Some(12), false),
            ("3 mons", months(3), "1 year", months(12), Interval::Quarter, Some(4), false),
            ("3 mons", months(3), "4 mons", months(4), Interval::Quarter, Some(2), true),
            ("1 year", months(12), "5 years", months(60), Interval::Year, Some(5), false),
        ];
        for (text, parts, rtext, rparts, interval, retention, noted) in cases {
            let p = PartmanParent {
                interval_text: text.into(),
                interval: parts,
                retention_text: Some(rtext.into()),
                retention: rparts,
                ..parent()
            };
            let got = map(&p).unwrap();
            assert_eq!((got.partition_interval, got.retention), (interval, retention), "{text} / {rtext}");
            assert_eq!(!got.notes.is_empty(), noted, "{text} / {rtext}: {:?}", got.notes);
            assert_eq!(
                (got.premake, got.create_default, got.retention_action),
                (4, true, RetentionAction::ArchiveDrop)
            );
        }
        let keep_all = map(&PartmanParent { retention_text: None, retention: None, ..parent() }).unwrap();
        assert_eq!(keep_all.retention, None);
        let daily = PartmanParent { interval_text: "1 day".into(), interval: days(1), ..parent() };
        let long =
            map(&PartmanParent { retention_text: Some("5 years".into()), retention: months(60), ..daily }).unwrap();
        assert_eq!(long.retention, None, "never fewer days than pg_partman kept");
        assert!(long.notes[0].contains("more than 1200: everything is kept"), "{:?}", long.notes);
        let far = map(&PartmanParent { premake: 500, ..parent() }).unwrap();
        assert_eq!(far.premake, MAX_PREMAKE);
        assert!(far.notes[0].contains("premake 500 lowered"), "{:?}", far.notes);
    }

    #[test]
    fn keep_table_becomes_archive_then_move() {
        let p = PartmanParent { retention_keep_table: true, retention_schema: Some("old".into()), ..parent() };
        let got = map(&p).unwrap();
        assert_eq!(
            (got.retention_action, got.historical_schema.as_deref()),
            (RetentionAction::ArchiveMove, Some("old"))
        );
        let p = PartmanParent { retention_keep_table: true, ..parent() };
        let got = map(&p).unwrap();
        assert_eq!((got.retention_action, got.historical_schema), (RetentionAction::ArchiveMove, None));
        assert!(got.notes[0].contains("partition_history"), "{:?}", got.notes);
    }

    #[test]
    fn what_cannot_be_mapped_is_refused_with_its_reason() {
        let cases = [
            (
                PartmanParent { interval_text: "2 days".into(), interval: days(2), ..parent() },
                "partition_interval 2 days",
            ),
            (
                PartmanParent {
                    interval_text: "01:00:00".into(),
                    interval: Some(IntervalParts { months: 0, days: 0, micros: 3_600_000_000 }),
                    ..parent()
                },
                "partition_interval 01:00:00",
            ),
            (
                PartmanParent {
                    control_type: "bigint".into(),
                    interval_text: "100000".into(),
                    interval: None,
                    ..parent()
                },
                "id-based",
            ),
            (
                PartmanParent { epoch: "nanoseconds".into(), control_type: "bigint".into(), ..parent() },
                "epoch nanoseconds",
            ),
            (PartmanParent { control_type: "text".into(), ..parent() }, "control column created_at: expected"),
            (PartmanParent { sub_partitioned: true, ..parent() }, "sub-partitioned"),
            (PartmanParent { partition_type: "partman".into(), ..parent() }, "partition_type partman"),
            (PartmanParent { misfits: vec!["events_p2026_05".into()], ..parent() }, "events_p2026_05"),
        ];
        for (p, needle) in cases {
            let why = map(&p).unwrap_err();
            assert!(why.contains(needle), "{why} should say {needle}");
        }
        // An epoch parent is imported with its unit.
        let p = PartmanParent { epoch: "milliseconds".into(), control_type: "bigint".into(), ..parent() };
        assert_eq!(map(&p).unwrap().epoch, Some(Epoch::Milliseconds));
        // pg_partman 5.x spells native range partitioning `range`.
        assert!(map(&PartmanParent { partition_type: "range".into(), ..parent() }).is_ok());
    }
}
