//! Planner speed on a large catalog: 100 tables x 120 monthly partitions, planned at once.
//! Prints figures; the target (issue 2) is well under 100 ms for the whole catalog.
//! Run: `cargo bench --bench planner`.

use chrono::{TimeZone, Utc};
use partition_archiver::plan::ident::QualifiedName;
use partition_archiver::plan::period::{Interval, KeyType, Period};
use partition_archiver::plan::planner::plan;
use partition_archiver::plan::policy::{RawPolicy, TablePolicy};
use partition_archiver::plan::snapshot::{BoundValue, PartitionBound, PartitionInfo, TableSnapshot};
use std::time::Instant;

fn main() {
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
    let first = Period::containing(
        Interval::Month,
        chrono::NaiveDate::from_ymd_opt(2017, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap(),
    );
    let tables: Vec<(TablePolicy, TableSnapshot)> = (0..100)
        .map(|t| {
            let name = format!("table_{t:03}");
            let policy = TablePolicy::try_from(RawPolicy::defaults("public", &name)).unwrap();
            let mut partitions: Vec<PartitionInfo> = (0..120)
                .map(|i| {
                    let p = first.offset(i);
                    PartitionInfo {
                        name: QualifiedName::new("public", p.partition_name(&name)),
                        bound: PartitionBound::Range { from: BoundValue::At(p.start()), to: BoundValue::At(p.end()) },
                        detach_pending: false,
                        total_bytes: 1 << 30,
                        estimated_rows: 5_000_000,
                    }
                })
                .collect();
            partitions.push(PartitionInfo {
                name: QualifiedName::new("public", format!("{name}_default")),
                bound: PartitionBound::Default,
                detach_pending: false,
                total_bytes: 0,
                estimated_rows: 0,
            });
            let snapshot = TableSnapshot {
                table: policy.table.clone(),
                key_column: "created_at".into(),
                key_type: KeyType::Timestamptz,
                partitions,
                default_rows: Default::default(),
                other_relations: Default::default(),
                manifest: vec![],
            };
            (policy, snapshot)
        })
        .collect();
    let mut samples = Vec::new();
    let mut steps = 0;
    for _ in 0..20 {
        let started = Instant::now();
        steps = tables.iter().map(|(p, s)| plan(s, p, now).steps.len()).sum::<usize>();
        samples.push(started.elapsed());
    }
    samples.sort();
    println!("planner: 100 tables x 120 partitions -> {steps} steps");
    println!("  min    {:>8.3} ms", samples[0].as_secs_f64() * 1e3);
    println!("  median {:>8.3} ms", samples[samples.len() / 2].as_secs_f64() * 1e3);
    println!("  max    {:>8.3} ms", samples[samples.len() - 1].as_secs_f64() * 1e3);
}
