//! Table-driven planner tests: every case goes through [`check`]: a snapshot, a policy, `now`,
//! and the expected steps written as short strings.

use super::*;
use crate::plan::period::{Interval, KeyType};
use crate::plan::policy::{RawPolicy, TablePolicy};
use crate::plan::snapshot::{ManifestEntry, PartitionInfo};
use chrono::NaiveDate;
use std::collections::BTreeMap;

fn local(s: &str) -> NaiveDateTime {
    let s = if s.len() == 10 { format!("{s} 00:00:00") } else { s.to_string() };
    NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A partition described in a few characters:
/// `trades_2026_10` (its range from the name, of any interval: `trades_2026_12_06`,
/// `trades_2026_w49`, `trades_2026_q4`, `trades_2026`), `*trades_2026_01` (detach pending),
/// `default`, `name:2026-11-15..2026-12-01`, `legacy:MIN..2025-07-01`, `far:2030-01-01..MAX`.
fn part(desc: &str, table: &str) -> PartitionInfo {
    let (pending, desc) = match desc.strip_prefix('*') {
        Some(rest) => (true, rest),
        None => (false, desc),
    };
    let bv = |s: &str| match s {
        "MIN" => BoundValue::MinValue,
        "MAX" => BoundValue::MaxValue,
        s => BoundValue::At(local(s)),
    };
    let (name, bound) = if desc == "default" {
        (format!("{table}_default"), PartitionBound::Default)
    } else if let Some((name, range)) = desc.split_once(':') {
        let (f, t) = range.split_once("..").unwrap();
        (name.to_string(), PartitionBound::Range { from: bv(f), to: bv(t) })
    } else {
        let p = period_of_name(desc.strip_prefix(&format!("{table}_")).unwrap());
        (desc.to_string(), PartitionBound::Range { from: BoundValue::At(p.start()), to: BoundValue::At(p.end()) })
    };
    PartitionInfo {
        name: QualifiedName::new("public", name),
        bound,
        detach_pending: pending,
        total_bytes: 0,
        estimated_rows: 0,
    }
}

/// The period a name suffix states: `2026_12_06`, `2026_w49`, `2026_12`, `2026_q4` or `2026`.
fn period_of_name(suffix: &str) -> Period {
    let n = |s: &str| s.parse::<u32>().unwrap();
    let parts: Vec<&str> = suffix.split('_').collect();
    let (interval, date) = match parts[..] {
        [y, w] if w.starts_with('w') => {
            (Interval::Week, NaiveDate::from_isoywd_opt(n(y) as i32, n(&w[1..]), chrono::Weekday::Mon))
        }
        [y, q] if q.starts_with('q') => {
            (Interval::Quarter, NaiveDate::from_ymd_opt(n(y) as i32, n(&q[1..]) * 3 - 2, 1))
        }
        [y, m, d] => (Interval::Day, NaiveDate::from_ymd_opt(n(y) as i32, n(m), n(d))),
        [y, m] => (Interval::Month, NaiveDate::from_ymd_opt(n(y) as i32, n(m), 1)),
        [y] => (Interval::Year, NaiveDate::from_ymd_opt(n(y) as i32, 1, 1)),
        _ => panic!("not a period name: {suffix}"),
    };
    Period::containing(interval, date.unwrap().and_hms_opt(0, 0, 0).unwrap())
}

struct Case<'a> {
    now: &'a str,
    policy: fn(&mut RawPolicy),
    key: KeyType,
    parts: &'a [&'a str],
    /// (period start "YYYY-MM-DD", rows) in the default partition
    default_rows: &'a [(&'a str, i64)],
    other: &'a [&'a str],
    /// (partition, state) in the manifest
    manifest: &'a [(&'a str, ArchiveState)],
}

/// A table with only its default partition, planned on 2026-11-24 with the default policy.
const BASE: Case<'static> = Case {
    now: "2026-11-24T10:00:00Z",
    policy: |_| {},
    key: KeyType::Timestamptz,
    parts: &["default"],
    default_rows: &[],
    other: &[],
    manifest: &[],
};

fn render(step: &Step) -> String {
    match step {
        Step::FinalizeDetach { partition } => format!("finalize {}", partition.name),
        Step::CreateDefault { partition } => format!("default {}", partition.name),
        Step::CreatePartition { partition, from, to, rows_in_default, .. } => {
            let moved = if *rows_in_default > 0 { format!(" moving {rows_in_default}") } else { String::new() };
            format!("create {} {from}..{to}{moved}", partition.name)
        }
        Step::Detach { partition, concurrently } => {
            format!("detach{} {}", if *concurrently { " concurrently" } else { "" }, partition.name)
        }
        Step::Archive { partition } => format!("archive {}", partition.name),
        Step::Drop { partition } => format!("drop {}", partition.name),
        Step::MoveToSchema { partition, schema } => format!("move {} to {schema}", partition.name),
    }
}

fn run(case: &Case) -> Plan {
    let mut raw = RawPolicy::defaults("public", "trades");
    (case.policy)(&mut raw);
    let policy = TablePolicy::try_from(raw).unwrap();
    let snapshot = TableSnapshot {
        table: policy.table.clone(),
        key_column: "created_at".into(),
        key_type: case.key,
        partitions: case.parts.iter().map(|d| part(d, &policy.table.name)).collect(),
        default_rows: case.default_rows.iter().map(|(d, n)| (local(d), *n)).collect::<BTreeMap<_, _>>(),
        other_relations: case.other.iter().map(|s| s.to_string()).collect(),
        manifest: case
            .manifest
            .iter()
            .map(|(p, s)| ManifestEntry { partition: QualifiedName::new("public", *p), state: *s })
            .collect(),
    };
    plan(&snapshot, &policy, utc(case.now))
}

/// The one helper: plan the case and compare steps (and warnings, by substring).
fn check(case: Case, expected: &[&str], warnings: &[&str]) {
    let plan = run(&case);
    let got: Vec<String> = plan.steps.iter().map(render).collect();
    assert_eq!(got, expected, "steps for now={} parts={:?}", case.now, case.parts);
    assert_eq!(plan.warnings.len(), warnings.len(), "warnings: {:?}", plan.warnings);
    for (w, needle) in plan.warnings.iter().zip(warnings) {
        assert!(w.contains(needle), "warning {w:?} should contain {needle:?}");
    }
}

/// `trades_2026_04` plus every month from `first` through January 2027 (no gaps) and the default.
fn contiguous(extra: &[&'static str], first_month: u32) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = extra.to_vec();
    for m in first_month..=12 {
        v.push(Box::leak(format!("trades_2026_{m:02}").into_boxed_str()));
    }
    v.extend(["trades_2027_01", "default"]);
    v
}

const NOV: &str = "create trades_2026_11 2026-11-01T00:00:00+00:00..2026-12-01T00:00:00+00:00";
const DEC: &str = "create trades_2026_12 2026-12-01T00:00:00+00:00..2027-01-01T00:00:00+00:00";
const JAN: &str = "create trades_2027_01 2027-01-01T00:00:00+00:00..2027-02-01T00:00:00+00:00";
const HOT: &[&str] = &["trades_2026_11", "trades_2026_12", "trades_2027_01", "default"];

#[test]
fn empty_table_gets_default_current_and_two_ahead() {
    check(Case { parts: &[], ..BASE }, &["default trades_default", NOV, DEC, JAN], &[]);
}

#[test]
fn nothing_to_do_when_everything_exists() {
    check(Case { parts: HOT, ..BASE }, &[], &[]);
}

#[test]
fn counts_from_now_not_from_the_newest_data() {
    // Partitions run far ahead already: nothing is created, nothing removed.
    let parts = &["trades_2026_11", "trades_2026_12", "trades_2027_01", "trades_2027_02", "trades_2027_03", "default"];
    check(Case { parts, ..BASE }, &[], &[]);
    // Only old partitions exist: the plan fills from the oldest within retention to now + 2.
    let parts = &["trades_2026_09", "default"];
    check(
        Case { parts, ..BASE },
        &["create trades_2026_10 2026-10-01T00:00:00+00:00..2026-11-01T00:00:00+00:00", NOV, DEC, JAN],
        &[],
    );
}

#[test]
fn premake_zero_creates_only_the_current_period() {
    check(Case { policy: |p| p.premake = 0, ..BASE }, &[NOV], &[]);
}

#[test]
fn premake_large() {
    let plan = run(&Case { policy: |p| p.premake = 120, ..BASE });
    assert_eq!(plan.steps.len(), 121);
    assert_eq!(render(plan.steps.last().unwrap()).split(' ').nth(1), Some("trades_2036_11"));
}

#[test]
fn no_default_when_policy_says_so() {
    check(Case { policy: |p| p.create_default = false, parts: &[], ..BASE }, &[NOV, DEC, JAN], &[]);
}

#[test]
fn default_name_taken_by_another_table() {
    check(
        Case { parts: &["trades_2026_11", "trades_2026_12", "trades_2027_01"], other: &["trades_default"], ..BASE },
        &[],
        &["cannot create default partition"],
    );
}

#[test]
fn month_boundaries_in_utc() {
    // The last second of a month, the first second of the next.
    check(Case { now: "2026-11-30T23:59:59Z", parts: HOT, ..BASE }, &[], &[]);
    check(
        Case { now: "2026-12-01T00:00:00Z", parts: HOT, ..BASE },
        &["create trades_2027_02 2027-02-01T00:00:00+00:00..2027-03-01T00:00:00+00:00"],
        &[],
    );
}

#[test]
fn year_boundary_monthly() {
    check(
        Case { now: "2026-12-31T23:00:00Z", ..BASE },
        &[DEC, JAN, "create trades_2027_02 2027-02-01T00:00:00+00:00..2027-03-01T00:00:00+00:00"],
        &[],
    );
}

#[test]
fn leap_year_february() {
    check(
        Case { now: "2028-02-29T12:00:00Z", policy: |p| p.premake = 0, ..BASE },
        &["create trades_2028_02 2028-02-01T00:00:00+00:00..2028-03-01T00:00:00+00:00"],
        &[],
    );
    check(
        Case { now: "2028-01-31T12:00:00Z", policy: |p| p.premake = 1, ..BASE },
        &[
            "create trades_2028_01 2028-01-01T00:00:00+00:00..2028-02-01T00:00:00+00:00",
            "create trades_2028_02 2028-02-01T00:00:00+00:00..2028-03-01T00:00:00+00:00",
        ],
        &[],
    );
}

#[test]
fn yearly_interval() {
    check(
        Case {
            policy: |p| {
                p.partition_interval = "year".into();
                p.premake = 1
            },
            ..BASE
        },
        &[
            "create trades_2026 2026-01-01T00:00:00+00:00..2027-01-01T00:00:00+00:00",
            "create trades_2027 2027-01-01T00:00:00+00:00..2028-01-01T00:00:00+00:00",
        ],
        &[],
    );
}

#[test]
fn yearly_retention_and_boundary() {
    check(
        Case {
            now: "2027-01-01T00:00:00Z",
            policy: |p| {
                p.partition_interval = "year".into();
                p.premake = 1;
                p.retention = Some(2)
            },
            parts: &["trades_2024", "trades_2025", "trades_2026", "trades_2027", "default"],
            ..BASE
        },
        &[
            "create trades_2028 2028-01-01T00:00:00+00:00..2029-01-01T00:00:00+00:00",
            "detach trades_2024",
            "archive trades_2024",
            "drop trades_2024",
        ],
        &[],
    );
}

#[test]
fn yearly_table_with_existing_monthly_partitions_warns_not_overlaps() {
    // The table's history starts with x (November): the rest of the year after it is created;
    // January to October, where rows of the current period can still arrive, is warned about.
    check(
        Case {
            policy: |p| {
                p.partition_interval = "year".into();
                p.premake = 0
            },
            parts: &["x:2026-11-01..2026-12-01", "default"],
            ..BASE
        },
        &[&create("trades_2026", "2026-12-01", "2027-01-01")],
        &["period 2026 is only partly covered by public.x"],
    );
}

#[test]
fn new_york_bounds_follow_dst() {
    // 00:00 in New York is 05:00 UTC in winter (EST) and 04:00 UTC in summer (EDT).
    check(
        Case { now: "2026-03-15T12:00:00Z", policy: |p| p.time_zone = "America/New_York".into(), ..BASE },
        &[
            "create trades_2026_03 2026-03-01T05:00:00+00:00..2026-04-01T04:00:00+00:00",
            "create trades_2026_04 2026-04-01T04:00:00+00:00..2026-05-01T04:00:00+00:00",
            "create trades_2026_05 2026-05-01T04:00:00+00:00..2026-06-01T04:00:00+00:00",
        ],
        &[],
    );
    check(
        Case { now: "2026-10-20T12:00:00Z", policy: |p| p.time_zone = "America/New_York".into(), ..BASE },
        &[
            "create trades_2026_10 2026-10-01T04:00:00+00:00..2026-11-01T04:00:00+00:00",
            "create trades_2026_11 2026-11-01T04:00:00+00:00..2026-12-01T05:00:00+00:00",
            "create trades_2026_12 2026-12-01T05:00:00+00:00..2027-01-01T05:00:00+00:00",
        ],
        &[],
    );
}

#[test]
fn local_month_differs_from_utc_month() {
    // 2026-12-01 03:00 UTC is still November 30th in New York.
    let plan = run(&Case {
        now: "2026-12-01T03:00:00Z",
        policy: |p| {
            p.time_zone = "America/New_York".into();
            p.premake = 0
        },
        ..BASE
    });
    assert_eq!(plan.current_period, "2026-11");
    // ...and 2026-11-30 23:30 UTC is already December 1st in Tokyo.
    let plan = run(&Case {
        now: "2026-11-30T23:30:00Z",
        policy: |p| {
            p.time_zone = "Asia/Tokyo".into();
            p.premake = 0
        },
        ..BASE
    });
    assert_eq!(plan.current_period, "2026-12");
    assert_eq!(render(&plan.steps[0]), "create trades_2026_12 2026-11-30T15:00:00+00:00..2026-12-31T15:00:00+00:00");
}

#[test]
fn london_bounds_follow_bst() {
    check(
        Case {
            now: "2026-03-10T00:00:00Z",
            policy: |p| {
                p.time_zone = "Europe/London".into();
                p.premake = 1
            },
            ..BASE
        },
        &[
            // British Summer Time starts on March 29th: April begins at 23:00 UTC on March 31st.
            "create trades_2026_03 2026-03-01T00:00:00+00:00..2026-03-31T23:00:00+00:00",
            "create trades_2026_04 2026-03-31T23:00:00+00:00..2026-04-30T23:00:00+00:00",
        ],
        &[],
    );
    check(
        Case {
            now: "2026-05-10T00:00:00Z",
            policy: |p| {
                p.time_zone = "Europe/London".into();
                p.premake = 0
            },
            ..BASE
        },
        &["create trades_2026_05 2026-04-30T23:00:00+00:00..2026-05-31T23:00:00+00:00"],
        &[],
    );
}

#[test]
fn timestamp_and_date_keys_get_local_literals() {
    check(
        Case {
            key: KeyType::Timestamp,
            policy: |p| {
                p.time_zone = "America/New_York".into();
                p.premake = 0
            },
            ..BASE
        },
        &["create trades_2026_11 2026-11-01T00:00:00..2026-12-01T00:00:00"],
        &[],
    );
    check(
        Case { key: KeyType::Date, policy: |p| p.premake = 0, ..BASE },
        &["create trades_2026_11 2026-11-01..2026-12-01"],
        &[],
    );
}

#[test]
fn fills_gaps_between_partitions() {
    check(
        Case { parts: &["trades_2026_08", "trades_2026_10", "trades_2026_12", "default"], ..BASE },
        &["create trades_2026_09 2026-09-01T00:00:00+00:00..2026-10-01T00:00:00+00:00", NOV, JAN],
        &[],
    );
}

#[test]
fn never_fills_a_gap_past_retention() {
    check(
        Case { parts: &["trades_2026_01", "trades_2026_05", "default"], ..BASE },
        &[
            "create trades_2026_06 2026-06-01T00:00:00+00:00..2026-07-01T00:00:00+00:00",
            "create trades_2026_07 2026-07-01T00:00:00+00:00..2026-08-01T00:00:00+00:00",
            "create trades_2026_08 2026-08-01T00:00:00+00:00..2026-09-01T00:00:00+00:00",
            "create trades_2026_09 2026-09-01T00:00:00+00:00..2026-10-01T00:00:00+00:00",
            "create trades_2026_10 2026-10-01T00:00:00+00:00..2026-11-01T00:00:00+00:00",
            NOV,
            DEC,
            JAN,
            "detach trades_2026_01",
            "archive trades_2026_01",
            "drop trades_2026_01",
        ],
        &[],
    );
}

#[test]
fn gaps_without_retention_go_back_to_the_oldest_partition() {
    let plan = run(&Case { policy: |p| p.retention = None, parts: &["trades_2025_11", "default"], ..BASE });
    assert_eq!(plan.steps.len(), 14, "{:?}", plan.steps); // 2025-12 .. 2027-01
    assert!(plan.steps.iter().all(|s| matches!(s, Step::CreatePartition { .. })));
}

#[test]
fn ancient_partition_without_retention_is_capped() {
    let plan = run(&Case { policy: |p| p.retention = None, parts: &["trades_1900_01", "default"], ..BASE });
    assert!(plan.steps.len() <= (crate::plan::policy::MAX_RETENTION + 3) as usize);
}

#[test]
fn foreign_named_partition_covering_a_period_is_respected() {
    // A hand-made partition covers November exactly: no trades_2026_11 over it.
    check(Case { parts: &["nov_by_hand:2026-11-01..2026-12-01", "default"], ..BASE }, &[DEC, JAN], &[]);
}

#[test]
fn foreign_partition_covering_several_periods() {
    check(Case { parts: &["q4:2026-10-01..2027-01-01", "default"], ..BASE }, &[JAN], &[]);
}

#[test]
fn partial_overlap_warns_and_skips() {
    check(
        Case { parts: &["half:2026-11-15..2026-12-01", "default"], ..BASE },
        &[DEC, JAN],
        &["period 2026-11 is only partly covered by public.half"],
    );
}

#[test]
fn legacy_minvalue_partition() {
    // The rolling migration's trades_legacy [MINVALUE, 2026-12-01).
    check(Case { parts: &["trades_legacy:MIN..2026-12-01", "default"], ..BASE }, &[DEC, JAN], &[]);
    // Once its upper bound is past retention it is archived like any partition.
    check(
        Case {
            now: "2027-06-10T00:00:00Z",
            parts: &["trades_legacy:MIN..2026-12-01", "trades_2027_06", "trades_2027_07", "trades_2027_08", "default"],
            ..BASE
        },
        &[
            "create trades_2026_12 2026-12-01T00:00:00+00:00..2027-01-01T00:00:00+00:00",
            "create trades_2027_01 2027-01-01T00:00:00+00:00..2027-02-01T00:00:00+00:00",
            "create trades_2027_02 2027-02-01T00:00:00+00:00..2027-03-01T00:00:00+00:00",
            "create trades_2027_03 2027-03-01T00:00:00+00:00..2027-04-01T00:00:00+00:00",
            "create trades_2027_04 2027-04-01T00:00:00+00:00..2027-05-01T00:00:00+00:00",
            "create trades_2027_05 2027-05-01T00:00:00+00:00..2027-06-01T00:00:00+00:00",
            "detach trades_legacy",
            "archive trades_legacy",
            "drop trades_legacy",
        ],
        &[],
    );
}

#[test]
fn maxvalue_partition_is_never_due_and_blocks_creation() {
    check(Case { parts: &["rest:2026-12-01..MAX", "trades_2026_11", "default"], ..BASE }, &[], &[]);
}

#[test]
fn name_taken_by_a_non_partition() {
    check(
        Case { parts: &["trades_2026_11", "trades_2026_12", "default"], other: &["trades_2027_01"], ..BASE },
        &[],
        &["a relation named trades_2027_01 already exists"],
    );
}

#[test]
fn long_table_names_are_refused_not_truncated() {
    let plan = run(&Case { policy: |p| p.table_name = "t".repeat(60), parts: &[], ..BASE });
    assert!(plan.warnings.iter().any(|w| w.contains("longer than 63 bytes")), "{:?}", plan.warnings);
    assert!(plan.warnings.iter().any(|w| w.starts_with("cannot create default partition")), "{:?}", plan.warnings);
    assert!(plan.steps.is_empty(), "{:?}", plan.steps);
}

#[test]
fn default_rows_are_moved_into_new_partitions() {
    check(
        Case { parts: &["trades_2026_11", "default"], default_rows: &[("2026-12-01", 42), ("2027-01-01", 7)], ..BASE },
        &[format!("{DEC} moving 42").as_str(), format!("{JAN} moving 7").as_str()],
        &[],
    );
}

#[test]
fn default_rows_outside_the_window_are_reported() {
    check(
        Case { parts: HOT, default_rows: &[("2031-01-01", 3)], ..BASE },
        &[],
        &["3 rows in the default partition fall outside"],
    );
}

#[test]
fn default_rows_in_a_gap_are_moved() {
    check(
        Case {
            parts: &["trades_2026_10", "trades_2026_12", "trades_2027_01", "default"],
            default_rows: &[("2026-11-01", 9)],
            ..BASE
        },
        &[format!("{NOV} moving 9").as_str()],
        &[],
    );
}

#[test]
fn pending_detach_is_finalized_first() {
    check(
        Case {
            parts: &[
                "*trades_2026_09",
                "trades_2026_10",
                "trades_2026_11",
                "trades_2026_12",
                "trades_2027_01",
                "default",
            ],
            ..BASE
        },
        &["finalize trades_2026_09"],
        &[],
    );
}

#[test]
fn pending_detach_past_retention_is_finalized_then_archived() {
    // Ours (recorded `detaching`): finalized, then archived.
    let parts = &["*trades_2026_03", "trades_2026_11", "trades_2026_12", "trades_2027_01", "default"];
    check(
        Case { parts, manifest: &[("trades_2026_03", ArchiveState::Detaching)], ..BASE },
        &["finalize trades_2026_03", "archive trades_2026_03", "drop trades_2026_03"],
        &[],
    );
    // Someone else's (no record): detached by the Detach step, which records it before it
    // finishes it with FINALIZE; finalized first, it would leave every later plan unarchived.
    check(
        Case { parts, ..BASE },
        &["detach concurrently trades_2026_03", "archive trades_2026_03", "drop trades_2026_03"],
        &[],
    );
}

#[test]
fn retention_six_months_keeps_may_onward() {
    check(
        Case {
            parts: &[
                "trades_2026_03",
                "trades_2026_04",
                "trades_2026_05",
                "trades_2026_06",
                "trades_2026_07",
                "trades_2026_08",
                "trades_2026_09",
                "trades_2026_10",
                "trades_2026_11",
                "trades_2026_12",
                "trades_2027_01",
                "default",
            ],
            ..BASE
        },
        &[
            "detach trades_2026_03",
            "archive trades_2026_03",
            "drop trades_2026_03",
            "detach trades_2026_04",
            "archive trades_2026_04",
            "drop trades_2026_04",
        ],
        &[],
    );
}

#[test]
fn retention_on_the_first_instant_of_a_month() {
    // At 2026-11-01 00:00 the cutoff is 2026-05-01: April is due, May is not.
    check(
        Case { now: "2026-11-01T00:00:00Z", parts: &contiguous(&["trades_2026_04"], 5), ..BASE },
        &["detach trades_2026_04", "archive trades_2026_04", "drop trades_2026_04"],
        &[],
    );
    // One second earlier the cutoff is 2026-04-01: nothing is due.
    check(Case { now: "2026-10-31T23:59:59Z", parts: &contiguous(&[], 4), ..BASE }, &[], &[]);
}

#[test]
fn retention_one_period() {
    check(
        Case {
            policy: |p| p.retention = Some(1),
            parts: &[
                "trades_2026_09",
                "trades_2026_10",
                "trades_2026_11",
                "trades_2026_12",
                "trades_2027_01",
                "default",
            ],
            ..BASE
        },
        &["detach trades_2026_09", "archive trades_2026_09", "drop trades_2026_09"],
        &[],
    );
}

#[test]
fn no_retention_keeps_everything() {
    check(
        Case {
            policy: |p| p.retention = None,
            parts: &["trades_2026_10", "trades_2026_11", "trades_2026_12", "trades_2027_01", "default"],
            ..BASE
        },
        &[],
        &[],
    );
}

#[test]
fn detach_is_concurrent_only_without_default() {
    check(
        Case {
            policy: |p| p.create_default = false,
            parts: &contiguous(&["trades_2026_04"], 5).into_iter().filter(|p| *p != "default").collect::<Vec<_>>(),
            ..BASE
        },
        &["detach concurrently trades_2026_04", "archive trades_2026_04", "drop trades_2026_04"],
        &[],
    );
}

#[test]
fn archive_move_and_detach_only_actions() {
    check(
        Case {
            policy: |p| p.retention_action = "archive_move".into(),
            parts: &contiguous(&["trades_2026_04"], 5),
            ..BASE
        },
        &["detach trades_2026_04", "archive trades_2026_04", "move trades_2026_04 to partition_history"],
        &[],
    );
    check(
        Case {
            policy: |p| {
                p.retention_action = "detach_only".into();
                p.historical_schema = "old".into()
            },
            parts: &contiguous(&["trades_2026_04"], 5),
            ..BASE
        },
        &["detach trades_2026_04", "move trades_2026_04 to old"],
        &[],
    );
}

#[test]
fn default_partition_is_never_due() {
    check(
        Case { now: "2040-01-01T00:00:00Z", policy: |p| p.premake = 0, parts: &["trades_2040_01", "default"], ..BASE },
        &[],
        &[],
    );
}

#[test]
fn resumes_detached_partitions_from_the_manifest() {
    for (state, expected) in [
        (ArchiveState::Detaching, vec!["archive trades_2026_04", "drop trades_2026_04"]),
        (ArchiveState::Detached, vec!["archive trades_2026_04", "drop trades_2026_04"]),
        (ArchiveState::Uploading, vec!["archive trades_2026_04", "drop trades_2026_04"]),
        (ArchiveState::Uploaded, vec!["archive trades_2026_04", "drop trades_2026_04"]),
        (ArchiveState::Verified, vec!["drop trades_2026_04"]),
        (ArchiveState::Dropped, vec![]),
        (ArchiveState::Moved, vec![]),
    ] {
        check(Case { parts: HOT, manifest: &[("trades_2026_04", state)], ..BASE }, &expected, &[]);
    }
}

#[test]
fn detaching_state_with_partition_still_attached_detaches_again() {
    // The run died before DETACH committed: the partition is still attached.
    check(
        Case {
            parts: &contiguous(&["trades_2026_04"], 5),
            manifest: &[("trades_2026_04", ArchiveState::Detaching)],
            ..BASE
        },
        &["detach trades_2026_04", "archive trades_2026_04", "drop trades_2026_04"],
        &[],
    );
}

#[test]
fn a_name_archived_before_is_never_archived_again() {
    // Restored and attached again, or recreated for late rows: rows stay, the archive stays.
    check(
        Case {
            parts: &contiguous(&["trades_2026_04"], 5),
            manifest: &[("trades_2026_04", ArchiveState::Dropped)],
            ..BASE
        },
        &[],
        &["trades_2026_04 is past retention but was already archived (state dropped)"],
    );
}

#[test]
fn detach_is_plain_when_this_run_creates_the_default() {
    check(
        Case {
            parts: &contiguous(&["trades_2026_04"], 5).into_iter().filter(|p| *p != "default").collect::<Vec<_>>(),
            ..BASE
        },
        &["default trades_default", "detach trades_2026_04", "archive trades_2026_04", "drop trades_2026_04"],
        &[],
    );
}

#[test]
fn verified_with_move_action_moves() {
    check(
        Case {
            policy: |p| p.retention_action = "archive_move".into(),
            parts: HOT,
            manifest: &[("trades_2026_04", ArchiveState::Verified)],
            ..BASE
        },
        &["move trades_2026_04 to partition_history"],
        &[],
    );
}

#[test]
fn a_second_plan_after_applying_the_first_is_empty() {
    // Apply the plan of an empty table to the snapshot by hand, then plan again.
    let first = run(&Case { parts: &[], ..BASE });
    let mut parts: Vec<String> = first.steps.iter().map(|s| s.partition().name.clone()).collect();
    parts.iter_mut().for_each(|p| {
        if p == "trades_default" {
            *p = "default".into()
        }
    });
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    check(Case { parts: &refs, ..BASE }, &[], &[]);
}

#[test]
fn planning_is_deterministic() {
    let case =
        || Case { parts: &["trades_2026_01", "trades_2026_08", "default"], default_rows: &[("2026-09-01", 1)], ..BASE };
    assert_eq!(run(&case()).steps, run(&case()).steps);
}

#[test]
fn plans_100_tables_of_120_partitions_quickly() {
    // Correctness at scale; the speed figure itself is printed by benches/planner.rs.
    let names: Vec<String> = (0..120)
        .map(|i| Period::containing(Interval::Month, local("2017-01-01")).offset(i).partition_name("trades"))
        .collect();
    let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
    refs.push("default");
    let policy = TablePolicy::try_from(RawPolicy::defaults("public", "trades")).unwrap();
    let snapshot = TableSnapshot {
        table: policy.table.clone(),
        key_column: "created_at".into(),
        key_type: KeyType::Timestamptz,
        partitions: refs.iter().map(|d| part(d, "trades")).collect(),
        default_rows: BTreeMap::new(),
        other_relations: Default::default(),
        manifest: vec![],
    };
    let mut total_steps = 0;
    for _ in 0..100 {
        total_steps += plan(&snapshot, &policy, utc("2026-11-24T00:00:00Z")).steps.len();
    }
    // 2017-01..2026-12 exist: 2027-01 is created; 2017-01..2026-04 (112 months) are due, 3 steps each.
    assert_eq!(total_steps, 100 * (1 + 112 * 3));
}

#[test]
fn old_default_rows_get_a_partition_that_is_then_archived() {
    check(
        Case { parts: &contiguous(&[], 5), default_rows: &[("2026-03-01", 20)], ..BASE },
        &[
            "create trades_2026_03 2026-03-01T00:00:00+00:00..2026-04-01T00:00:00+00:00 moving 20",
            "detach trades_2026_03",
            "archive trades_2026_03",
            "drop trades_2026_03",
        ],
        &[],
    );
}

fn archive_now_case(parts: &[&str], manifest: &[(&str, ArchiveState)], partition: &str) -> Result<Vec<String>, String> {
    let case = Case { parts, manifest, ..BASE };
    let mut raw = RawPolicy::defaults("public", "trades");
    (case.policy)(&mut raw);
    let policy = TablePolicy::try_from(raw).unwrap();
    let snapshot = TableSnapshot {
        table: policy.table.clone(),
        key_column: "created_at".into(),
        key_type: case.key,
        partitions: case.parts.iter().map(|d| part(d, "trades")).collect(),
        default_rows: BTreeMap::new(),
        other_relations: Default::default(),
        manifest: manifest
            .iter()
            .map(|(p, s)| ManifestEntry { partition: QualifiedName::new("public", *p), state: *s })
            .collect(),
    };
    archive_now(&snapshot, &policy, utc(case.now), partition)
        .map(|steps| steps.iter().map(render).collect())
        .map_err(|e| e.message)
}

#[test]
fn archive_now_takes_one_ended_partition_whatever_the_retention() {
    assert_eq!(
        archive_now_case(HOT, &[], "trades_2026_11").unwrap_err(),
        "public.trades_2026_11 holds the current or a future period: only ended periods are archived"
    );
    assert!(archive_now_case(HOT, &[], "trades_default").unwrap_err().contains("is the default partition"));
    assert!(archive_now_case(HOT, &[], "trades_1999_01").unwrap_err().contains("is not a partition of public.trades"));
    let parts = &["trades_2026_10", "trades_2026_11", "default"];
    assert_eq!(
        archive_now_case(parts, &[], "trades_2026_10").unwrap(),
        ["detach trades_2026_10", "archive trades_2026_10", "drop trades_2026_10"]
    );
    assert_eq!(
        archive_now_case(HOT, &[("trades_2026_04", ArchiveState::Uploaded)], "trades_2026_04").unwrap(),
        ["archive trades_2026_04", "drop trades_2026_04"]
    );
    assert_eq!(
        archive_now_case(HOT, &[("trades_2026_04", ArchiveState::Verified)], "trades_2026_04").unwrap(),
        ["drop trades_2026_04"]
    );
    assert!(archive_now_case(HOT, &[("trades_2026_04", ArchiveState::Dropped)], "trades_2026_04")
        .unwrap_err()
        .contains("already archived"));
    // A pending detach: finalized when ours, detached (recorded, then finalized) when not.
    let pending = &["*trades_2026_09", "trades_2026_11", "default"];
    assert_eq!(
        archive_now_case(pending, &[("trades_2026_09", ArchiveState::Detaching)], "trades_2026_09").unwrap(),
        ["finalize trades_2026_09", "archive trades_2026_09", "drop trades_2026_09"]
    );
    assert_eq!(
        archive_now_case(pending, &[], "trades_2026_09").unwrap(),
        ["detach concurrently trades_2026_09", "archive trades_2026_09", "drop trades_2026_09"]
    );
}

/// `create {name} {from}..{to}` for a UTC table.
fn create(name: &str, from: &str, to: &str) -> String {
    format!("create {name} {from}T00:00:00+00:00..{to}T00:00:00+00:00")
}

#[test]
fn every_interval_creates_the_current_period_and_premake_ahead() {
    // 2026-12-06 is a Sunday: the last day of ISO week 49.
    let now = "2026-12-06T10:00:00Z";
    // (policy, [(name, from, to); 3])
    type Row = (fn(&mut RawPolicy), [(&'static str, &'static str, &'static str); 3]);
    let cases: [Row; 3] = [
        (
            |p| p.partition_interval = "day".into(),
            [
                ("trades_2026_12_06", "2026-12-06", "2026-12-07"),
                ("trades_2026_12_07", "2026-12-07", "2026-12-08"),
                ("trades_2026_12_08", "2026-12-08", "2026-12-09"),
            ],
        ),
        (
            |p| p.partition_interval = "week".into(),
            [
                ("trades_2026_w49", "2026-11-30", "2026-12-07"),
                ("trades_2026_w50", "2026-12-07", "2026-12-14"),
                ("trades_2026_w51", "2026-12-14", "2026-12-21"),
            ],
        ),
        (
            |p| p.partition_interval = "quarter".into(),
            [
                ("trades_2026_q4", "2026-10-01", "2027-01-01"),
                ("trades_2027_q1", "2027-01-01", "2027-04-01"),
                ("trades_2027_q2", "2027-04-01", "2027-07-01"),
            ],
        ),
    ];
    for (policy, expected) in cases {
        let expected: Vec<String> = expected.iter().map(|(n, f, t)| create(n, f, t)).collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check(Case { now, policy, ..BASE }, &expected, &[]);
    }
}

#[test]
fn retention_counts_periods_of_the_tables_interval() {
    /// The steps that retire one partition.
    fn retired(names: &[&str]) -> Vec<String> {
        names.iter().flat_map(|n| ["detach", "archive", "drop"].map(|s| format!("{s} {n}"))).collect()
    }
    // (policy, now, the partitions: every period from the first up to premake ahead, the retired)
    type Row = (fn(&mut RawPolicy), &'static str, Vec<String>, Vec<&'static str>);
    let cases: [Row; 3] = [
        // Daily, 3 days kept before today (Dec 6): Dec 1 and 2 end on or before Dec 3 and go.
        (
            |p| (p.partition_interval, p.retention) = ("day".into(), Some(3)),
            "2026-12-06T23:59:59Z",
            (1..=8).map(|d| format!("trades_2026_12_{d:02}")).collect(),
            vec!["trades_2026_12_01", "trades_2026_12_02"],
        ),
        // Weekly, 2 weeks kept before week 49: weeks 45 and 46 go (week 47 starts Nov 16).
        (
            |p| (p.partition_interval, p.retention) = ("week".into(), Some(2)),
            "2026-12-06T10:00:00Z",
            (45..=51).map(|w| format!("trades_2026_w{w}")).collect(),
            vec!["trades_2026_w45", "trades_2026_w46"],
        ),
        // Quarterly, 1 quarter kept before Q4 2026: Q2 goes, Q3 stays.
        (
            |p| (p.partition_interval, p.retention) = ("quarter".into(), Some(1)),
            "2026-12-06T10:00:00Z",
            ["trades_2026_q2", "trades_2026_q3", "trades_2026_q4", "trades_2027_q1", "trades_2027_q2"]
                .map(String::from)
                .into(),
            vec!["trades_2026_q2"],
        ),
    ];
    for (policy, now, parts, gone) in cases {
        let mut parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        parts.push("default");
        let expected = retired(&gone);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check(Case { now, policy, parts: &parts, ..BASE }, &expected, &[]);
    }
}

#[test]
fn daily_bounds_on_dst_days_in_the_tables_zone() {
    // New York falls back on 2026-11-01 (a 25-hour day) and springs forward on 2026-03-08 (23).
    for (now, expected) in [
        (
            "2026-11-01T12:00:00Z",
            [
                "create trades_2026_11_01 2026-11-01T04:00:00+00:00..2026-11-02T05:00:00+00:00",
                "create trades_2026_11_02 2026-11-02T05:00:00+00:00..2026-11-03T05:00:00+00:00",
            ],
        ),
        (
            "2026-03-08T12:00:00Z",
            [
                "create trades_2026_03_08 2026-03-08T05:00:00+00:00..2026-03-09T04:00:00+00:00",
                "create trades_2026_03_09 2026-03-09T04:00:00+00:00..2026-03-10T04:00:00+00:00",
            ],
        ),
    ] {
        check(
            Case {
                now,
                policy: |p| {
                    p.partition_interval = "day".into();
                    p.time_zone = "America/New_York".into();
                    p.premake = 1
                },
                ..BASE
            },
            &expected,
            &[],
        );
    }
}

#[test]
fn a_change_of_interval_applies_from_the_first_instant_not_covered() {
    let daily: fn(&mut RawPolicy) = |p| p.partition_interval = "day".into();
    let monthly: fn(&mut RawPolicy) = |p| p.premake = 1;
    let weekly: fn(&mut RawPolicy) = |p| p.partition_interval = "week".into();
    // Month to day: the days inside existing months are covered; days start after them.
    check(Case { policy: daily, parts: HOT, ..BASE }, &[], &[]);
    check(
        Case { now: "2027-01-31T10:00:00Z", policy: daily, parts: HOT, ..BASE },
        &[
            &create("trades_2027_02_01", "2027-02-01", "2027-02-02"),
            &create("trades_2027_02_02", "2027-02-02", "2027-02-03"),
            // Retention now counts days: whole months that ended 6 days ago go.
            "detach trades_2026_11",
            "archive trades_2026_11",
            "drop trades_2026_11",
            "detach trades_2026_12",
            "archive trades_2026_12",
            "drop trades_2026_12",
        ],
        &[],
    );
    // Day to month: December's days up to the 8th exist; the month gets the rest of December.
    let days: Vec<String> = (1..=8).map(|d| format!("trades_2026_12_{d:02}")).collect();
    let mut parts: Vec<&str> = days.iter().map(String::as_str).collect();
    parts.push("default");
    check(
        Case { now: "2026-12-06T10:00:00Z", policy: monthly, parts: &parts, ..BASE },
        &[&create("trades_2026_12", "2026-12-09", "2027-01-01"), JAN],
        &[],
    );
    // Month to week: weeks inside the months are covered (week 49 by November and December
    // together); the week that straddles the end of December gets its January days.
    check(
        Case {
            now: "2026-12-27T10:00:00Z",
            policy: weekly,
            parts: &["trades_2026_11", "trades_2026_12", "default"],
            ..BASE
        },
        &[
            &create("trades_2026_w53", "2027-01-01", "2027-01-04"),
            &create("trades_2027_w01", "2027-01-04", "2027-01-11"),
        ],
        &[],
    );
    check(Case { now: "2026-12-02T10:00:00Z", policy: weekly, parts: HOT, ..BASE }, &[], &[]);
    // Week to month: weeks 49 to 51 exist (Nov 30 .. Dec 21); the table's history starts on Nov
    // 30, so the earlier days of November (past) are not a gap; December gets Dec 21 .. Jan 1.
    check(
        Case {
            now: "2026-12-06T10:00:00Z",
            policy: monthly,
            parts: &["trades_2026_w49", "trades_2026_w50", "trades_2026_w51", "default"],
            ..BASE
        },
        &[&create("trades_2026_12", "2026-12-21", "2027-01-01"), JAN],
        &[],
    );
}

#[test]
fn a_table_begun_daily_mid_month_and_switched_to_monthly_gets_the_rest_of_the_month() {
    // Days from December 9th to the 21st exist (the table began then); now monthly, on the 15th.
    let days: Vec<String> = (9..=21).map(|d| format!("trades_2026_12_{d:02}")).collect();
    let mut parts: Vec<&str> = days.iter().map(String::as_str).collect();
    parts.push("default");
    check(
        Case { now: "2026-12-15T10:00:00Z", policy: |p| p.premake = 1, parts: &parts, ..BASE },
        &[&create("trades_2026_12", "2026-12-22", "2027-01-01"), JAN],
        &["period 2026-12 is only partly covered by public.trades_2026_12_09"],
    );
}

#[test]
fn a_hole_inside_a_period_is_never_filled_by_a_partial_partition() {
    // Two foreign ranges inside 2026 with a hole between them: the year is not created.
    check(
        Case {
            policy: |p| {
                p.partition_interval = "year".into();
                p.premake = 0
            },
            parts: &["x:2026-03-01..2026-04-01", "y:2026-11-01..2026-12-01", "default"],
            ..BASE
        },
        &[],
        &["period 2026 is only partly covered by public.x, public.y"],
    );
}
