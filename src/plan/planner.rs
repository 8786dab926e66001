//! The planner: a pure function of (table snapshot, policy, now) to an ordered list of steps.
//!
//! No I/O here. [`crate::executor`] carries the steps out; `plan`/`maintain --dry-run` print them.
//!
//! Rules (the SQL function `partition_archiver.create_partitions` follows the same ones):
//! - the current period and `premake` periods ahead exist, counted from `now`, not from the data;
//! - gaps between existing partitions are filled, but never with a period already past retention;
//! - a period that overlaps an existing partition (a foreign-named one, say) is not created, and a
//!   partial overlap is reported as a warning, except when the existing partitions cover a prefix
//!   of it without a hole: then the rest of it is created under its name (after a change of
//!   interval, the new one applies from the first instant not covered); the part of a period
//!   before the table's first partition is not a gap to fill (warned about for the current and
//!   future periods, where rows still arrive);
//! - rows already in the default partition for a new range are moved into it (the executor does it
//!   in the same transaction);
//! - a detach left pending by an interrupted run is finalized first; one left by someone else (no
//!   record of ours) that is past retention is detached by its Detach step, which records it and
//!   then finishes it with FINALIZE, and it is archived as any other;
//! - a partition is due for retention when its whole range ends on or before the start of
//!   (current period - retention); never the current or a future one, never the default;
//! - partitions part-way through the archive state machine resume where they stopped.

use crate::plan::ident::QualifiedName;
use crate::plan::period::{bound_literal, to_local, Period};
use crate::plan::policy::{RetentionAction, TablePolicy};
use crate::plan::snapshot::{ArchiveState, BoundValue, PartitionBound, PartitionInfo, TableSnapshot};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `ALTER TABLE parent DETACH PARTITION p FINALIZE`.
    FinalizeDetach { partition: QualifiedName },
    /// `CREATE TABLE {table}_default PARTITION OF parent DEFAULT`.
    CreateDefault { partition: QualifiedName },
    /// Create one period's partition; moves `rows_in_default` rows out of the default partition.
    CreatePartition { partition: QualifiedName, period: String, from: String, to: String, rows_in_default: i64 },
    /// Detach a partition past retention (`CONCURRENTLY` only when the parent has no default, or
    /// when someone else's detach left it pending: then FINALIZE, after its record).
    Detach { partition: QualifiedName, concurrently: bool },
    /// Stream the detached partition to S3, verify the object, record it in the manifest.
    Archive { partition: QualifiedName },
    /// Drop the detached, archived-and-verified partition.
    Drop { partition: QualifiedName },
    /// Move the detached partition to the historical schema.
    MoveToSchema { partition: QualifiedName, schema: String },
}

impl Step {
    pub fn partition(&self) -> &QualifiedName {
        match self {
            Step::FinalizeDetach { partition }
            | Step::CreateDefault { partition }
            | Step::CreatePartition { partition, .. }
            | Step::Detach { partition, .. }
            | Step::Archive { partition }
            | Step::Drop { partition }
            | Step::MoveToSchema { partition, .. } => partition,
        }
    }
    pub fn is_retention(&self) -> bool {
        matches!(self, Step::Detach { .. } | Step::Archive { .. } | Step::Drop { .. } | Step::MoveToSchema { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub table: QualifiedName,
    pub current_period: String,
    /// Partitions whose range ends on or before this local time are past retention.
    pub retention_cutoff: Option<NaiveDateTime>,
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

/// Plans one table. Pure: same inputs, same plan.
pub fn plan(snapshot: &TableSnapshot, policy: &TablePolicy, now: DateTime<Utc>) -> Plan {
    let tz = policy.time_zone;
    let current = Period::containing(policy.interval, to_local(tz, now));
    let last = current.offset(policy.premake as i64);
    let cutoff = policy.retention.map(|r| current.offset(-(r as i64)).start());
    let mut steps = Vec::new();
    let mut warnings = Vec::new();

    // 1. Finish what an interrupted DETACH ... CONCURRENTLY left behind. One that is not ours (no
    // record) and is past retention is left to its Detach step below, which records it first:
    // finalized here without a record, it would leave the parent and every later plan.
    let cutoff_bound = cutoff.map(BoundValue::At);
    let adopted = |p: &PartitionInfo| {
        let due = matches!((&p.bound, cutoff_bound), (PartitionBound::Range { to, .. }, Some(c)) if *to <= c);
        p.detach_pending && due && snapshot.record_of(&p.name.name).is_none()
    };
    for p in snapshot.partitions.iter().filter(|p| p.detach_pending && !adopted(p)) {
        steps.push(Step::FinalizeDetach { partition: p.name.clone() });
    }

    // Ranges that stay attached after step 1.
    let ranges: Vec<(BoundValue, BoundValue, &QualifiedName)> = snapshot
        .partitions
        .iter()
        .filter(|p| !p.detach_pending)
        .filter_map(|p| p.range().map(|(f, t)| (f, t, &p.name)))
        .collect();
    let attached_names: BTreeSet<&str> = snapshot.partitions.iter().map(|p| p.name.name.as_str()).collect();

    // 2. The default partition.
    let has_default = snapshot.default_partition().is_some();
    if policy.create_default && !has_default {
        let name = format!("{}_default", policy.table.name);
        if name.len() > crate::plan::ident::MAX_IDENT_BYTES {
            // PostgreSQL would truncate it, and the name checks here would look for another.
            warnings.push(format!(
                "cannot create default partition {name}: longer than {} bytes",
                crate::plan::ident::MAX_IDENT_BYTES
            ));
        } else if snapshot.other_relations.contains(&name) {
            warnings.push(format!(
                "cannot create default partition: {name} already exists and is not a partition of {}",
                policy.table
            ));
        } else {
            steps.push(Step::CreateDefault { partition: policy.table.sibling(name) });
        }
    }

    // 3. Partitions ahead, and gaps between existing ones (never past retention).
    let mut first = current;
    for (from, to, _) in &ranges {
        let start = match (from, to) {
            (BoundValue::At(f), _) => Period::containing(policy.interval, *f),
            (BoundValue::MinValue, BoundValue::At(t)) => Period::containing(policy.interval, *t),
            _ => continue,
        };
        first = first.min(start);
    }
    if let Some(c) = cutoff {
        first = first.max(Period::containing(policy.interval, c));
    }
    // Rows stranded in the default partition get their period's partition, whatever its age (an
    // old one is then archived by the retention steps below), but never beyond the premake window.
    if let Some(oldest) = snapshot.default_rows.keys().next() {
        first = first.min(Period::containing(policy.interval, *oldest));
    }
    // However old the oldest partition, never plan more than this many periods back.
    first = first.max(current.offset(-(crate::plan::policy::MAX_RETENTION as i64)));

    // Where the table's history starts.
    let history_start = ranges.iter().map(|(f, _, _)| *f).min().unwrap_or(BoundValue::MinValue);
    let mut created_periods = BTreeSet::new();
    let mut created_past_retention = Vec::new();
    let mut period = first;
    while period <= last {
        let rows_in_default = snapshot.default_rows.get(&period.start()).copied().unwrap_or(0);
        if rows_in_default == 0 && cutoff.is_some_and(|c| period.end() <= c) {
            period = period.offset(1);
            continue;
        }
        let (start, end) = (BoundValue::At(period.start()), BoundValue::At(period.end()));
        let overlapping: Vec<&QualifiedName> =
            ranges.iter().filter(|(f, t, _)| *f < end && start < *t).map(|(_, _, n)| *n).collect();
        let name = period.partition_name(&policy.table.name);
        // The part of a period before the table's first partition is not a gap between
        // partitions (a table that went from weekly to monthly starts mid-month): covered from
        // there on, the rest of the period is created. For a past period that is silent; for the
        // current and future ones, where rows still arrive, the uncovered start is also warned
        // about. (A partition of exactly this period makes the coverage `Whole`.)
        let covered = coverage(&ranges, history_start.max(start), end);
        let partly = || {
            let names: Vec<String> = overlapping.iter().map(|n| n.to_string()).collect();
            format!(
                "period {period} is only partly covered by {}: rows outside it go to the default partition",
                names.join(", ")
            )
        };
        if period >= current && covered != Coverage::Hole && coverage(&ranges, start, end) == Coverage::Hole {
            warnings.push(partly());
        }
        if overlapping.iter().any(|n| n.name == name) || covered == Coverage::Whole {
            // exists
        } else if let Coverage::Hole = covered {
            warnings.push(partly());
        } else if name.len() > crate::plan::ident::MAX_IDENT_BYTES {
            warnings.push(format!("cannot create {name}: longer than {} bytes", crate::plan::ident::MAX_IDENT_BYTES));
        } else if snapshot.other_relations.contains(&name) || attached_names.contains(name.as_str()) {
            warnings.push(format!(
                "cannot create period {period}: a relation named {name} already exists in schema {}",
                policy.table.schema
            ));
        } else {
            // After a change of interval, the period that straddles the end of the existing
            // partitions gets only its rest: the change applies from the first instant not covered.
            let from = match covered {
                Coverage::Prefix(BoundValue::At(x)) => x,
                _ => period.start(),
            };
            created_periods.insert(period.start());
            if cutoff.is_some_and(|c| period.end() <= c) {
                created_past_retention.push((BoundValue::At(from), policy.table.sibling(name.clone())));
            }
            steps.push(Step::CreatePartition {
                partition: policy.table.sibling(name),
                period: if from == period.start() { period.to_string() } else { format!("{period} from {from}") },
                from: bound_literal(snapshot.key_type, tz, from),
                to: bound_literal(snapshot.key_type, tz, period.end()),
                rows_in_default,
            });
        }
        period = period.offset(1);
    }
    let stranded: i64 =
        snapshot.default_rows.iter().filter(|(start, _)| !created_periods.contains(*start)).map(|(_, n)| n).sum();
    if stranded > 0 {
        warnings.push(format!(
            "{stranded} rows in the default partition fall outside the periods this run creates; they stay there"
        ));
    }

    // A default partition this run creates exists by the time partitions are detached.
    let has_default = has_default || steps.iter().any(|s| matches!(s, Step::CreateDefault { .. }));

    // 4. Retention.
    if let Some(cutoff) = cutoff {
        let cutoff = BoundValue::At(cutoff);
        // (start, partition, left "detach pending", adopted: someone else's pending detach)
        let mut due: Vec<(BoundValue, &QualifiedName, bool, bool)> = Vec::new();
        for p in &snapshot.partitions {
            if let PartitionBound::Range { from, to } = p.bound {
                if to <= cutoff {
                    due.push((from, &p.name, p.detach_pending, adopted(p)));
                }
            }
        }
        for (from, name) in &created_past_retention {
            due.push((*from, name, false, false));
        }
        due.sort();
        for (_, name, pending, adopted) in due {
            // A name archived before (then restored and attached, or recreated for late rows that
            // reached the default partition) is never archived again under the same key: that would
            // replace a verified archive. Its rows stay in PostgreSQL until someone decides.
            if let Some(m) =
                snapshot.manifest.iter().find(|m| m.partition.name == name.name && m.state >= ArchiveState::Verified)
            {
                warnings.push(format!(
                    "{name} is past retention but was already archived (state {}): not archived again; \
                     detach and keep or drop it by hand",
                    m.state.as_str()
                ));
                continue;
            }
            // Ours, pending, is finalized by step 1; an adopted one is finished with FINALIZE by its
            // detach, after its record.
            if !pending || adopted {
                steps.push(Step::Detach { partition: name.clone(), concurrently: !has_default || pending });
            }
            push_after_detach(&mut steps, policy, name, ArchiveState::Detached);
        }
    }
    // Partitions already detached by an earlier run (no longer attached) resume where they stopped.
    for entry in &snapshot.manifest {
        if entry.state.is_final() || attached_names.contains(entry.partition.name.as_str()) {
            continue;
        }
        push_after_detach(&mut steps, policy, &entry.partition, entry.state);
    }

    Plan { table: policy.table.clone(), current_period: current.to_string(), retention_cutoff: cutoff, steps, warnings }
}

/// How the existing ranges cover a period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// Nothing overlaps it.
    None,
    /// Covered without a hole, from `start` up to the value (`start < x < end`): `[x, end)` is free.
    Prefix(BoundValue),
    /// Covered entirely, by one range or several.
    Whole,
    /// Something overlaps it, but not as a prefix: creating any part would leave or need a hole.
    Hole,
}

fn coverage(ranges: &[(BoundValue, BoundValue, &QualifiedName)], start: BoundValue, end: BoundValue) -> Coverage {
    let mut overlapping: Vec<(BoundValue, BoundValue)> =
        ranges.iter().filter(|(f, t, _)| *f < end && start < *t).map(|(f, t, _)| (*f, *t)).collect();
    if overlapping.is_empty() {
        return Coverage::None;
    }
    overlapping.sort();
    let mut reached = start;
    for (f, t) in overlapping {
        if f > reached {
            return Coverage::Hole;
        }
        reached = reached.max(t);
    }
    if reached >= end {
        Coverage::Whole
    } else {
        Coverage::Prefix(reached)
    }
}

/// The steps of `archive --partition P`: detach (if attached), archive, drop or move, one ended
/// partition now, whatever the retention; or resume it from its manifest state. Refuses the
/// default partition, the current or a future period, and anything already archived.
pub fn archive_now(
    snapshot: &TableSnapshot,
    policy: &TablePolicy,
    now: DateTime<Utc>,
    partition: &str,
) -> Result<Vec<Step>, crate::error::Error> {
    use crate::error::Error;
    let current_start = Period::containing(policy.interval, to_local(policy.time_zone, now)).start();
    let mut steps = Vec::new();
    match snapshot.partitions.iter().find(|p| p.name.name == partition) {
        Some(p) => match p.bound {
            PartitionBound::Default => {
                return Err(Error::invalid(format!("{} is the default partition: it is never archived", p.name)))
            }
            PartitionBound::Range { to, .. } if to > BoundValue::At(current_start) => {
                return Err(Error::invalid(format!(
                    "{} holds the current or a future period: only ended periods are archived",
                    p.name
                )))
            }
            PartitionBound::Range { .. } => {
                if p.detach_pending && snapshot.record_of(partition).is_some() {
                    steps.push(Step::FinalizeDetach { partition: p.name.clone() });
                } else {
                    // Pending and not ours: the detach records it, then finishes it with FINALIZE.
                    let concurrently = p.detach_pending || snapshot.default_partition().is_none();
                    steps.push(Step::Detach { partition: p.name.clone(), concurrently });
                }
                push_after_detach(&mut steps, policy, &p.name, ArchiveState::Detached);
            }
        },
        None => match snapshot.record_of(partition) {
            Some(m) if !m.state.is_final() => push_after_detach(&mut steps, policy, &m.partition, m.state),
            Some(m) => {
                return Err(Error::invalid(format!("{} is already archived (state {})", m.partition, m.state.as_str())))
            }
            None => return Err(Error::not_found(format!("{partition} is not a partition of {}", policy.table))),
        },
    }
    Ok(steps)
}

fn push_after_detach(steps: &mut Vec<Step>, policy: &TablePolicy, partition: &QualifiedName, state: ArchiveState) {
    let archives = policy.retention_action.archives();
    if archives && state < ArchiveState::Verified {
        steps.push(Step::Archive { partition: partition.clone() });
    }
    match policy.retention_action {
        RetentionAction::ArchiveDrop => steps.push(Step::Drop { partition: partition.clone() }),
        RetentionAction::ArchiveMove | RetentionAction::DetachOnly => {
            steps.push(Step::MoveToSchema { partition: partition.clone(), schema: policy.historical_schema.clone() })
        }
    }
}

#[cfg(test)]
mod tests;
