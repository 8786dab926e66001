//! Chunks: how a detached, frozen partition is split into ctid block ranges, each archived as its
//! own object by its own stream, and when a run with a time budget should stop starting them.
//!
//! A chunk is `ctid >= '(from,0)' AND ctid < '(to,0)'` (a TID range scan on PostgreSQL 14+). The
//! first chunk starts at block 0 and the last one is open-ended, so the chunks of one plan cover
//! every row of the relation whatever its block count; the block count and filenode recorded with
//! the plan tell a worker whether the table was rewritten since (then the plan starts over).

use std::time::Duration;

/// A half-open range of heap blocks; `to: None` runs to the end of the relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    pub from: u64,
    pub to: Option<u64>,
}

impl BlockRange {
    /// The `WHERE` condition selecting this range's rows (numbers only: nothing untrusted).
    pub fn ctid_condition(&self) -> String {
        match self.to {
            Some(to) => format!("ctid >= '({},0)'::tid AND ctid < '({to},0)'::tid", self.from),
            None => format!("ctid >= '({},0)'::tid", self.from),
        }
    }

    /// Blocks in the range, `rel_blocks` being the relation's size when the plan was made.
    pub fn blocks(&self, rel_blocks: u64) -> u64 {
        self.to.unwrap_or(rel_blocks.max(self.from)).saturating_sub(self.from)
    }
}

/// How a partition of `rel_blocks` blocks of `block_size` bytes is archived with chunks of about
/// `chunk_size` bytes of heap: `None` when it fits in one chunk (one object under the key used
/// before chunks existed, so small partitions and their readers are unchanged); otherwise the
/// ranges, of equal size within one block, so parallel streams finish together (the last range is
/// open-ended).
pub fn plan_chunks(rel_blocks: u64, block_size: u64, chunk_size: u64) -> Option<Vec<BlockRange>> {
    let heap = rel_blocks.saturating_mul(block_size);
    if heap <= chunk_size || block_size == 0 {
        return None;
    }
    let count = heap.div_ceil(chunk_size.max(1)).min(rel_blocks).max(1);
    let per = rel_blocks.div_ceil(count);
    let mut out = Vec::new();
    let mut from = 0;
    while from < rel_blocks {
        let to = from + per;
        out.push(BlockRange { from, to: (to < rel_blocks).then_some(to) });
        from = to;
    }
    Some(out)
}

/// Does a recorded plan cover every block of its relation, whatever its block count now? Yes when
/// its ranges run from block 0, each starting where the one before ended, to an open end: then
/// the rows the chunks counted, range by range, are every row of the table. `Err` says where not.
pub fn covers_every_block(ranges: &[BlockRange]) -> Result<(), String> {
    let Some(first) = ranges.first() else { return Err("has no chunks".into()) };
    if first.from != 0 {
        return Err(format!("starts at block {}, not 0", first.from));
    }
    for (i, pair) in ranges.windows(2).enumerate() {
        match pair[0].to {
            Some(to) if to == pair[1].from && to > pair[0].from => {}
            Some(to) => {
                return Err(format!(
                    "has chunk {} end at block {to} and chunk {} start at {}",
                    i + 1,
                    i + 2,
                    pair[1].from
                ))
            }
            None => return Err(format!("has chunk {} open-ended before chunk {}", i + 1, i + 2)),
        }
    }
    match ranges.last().and_then(|r| r.to) {
        None => Ok(()),
        Some(to) => Err(format!("ends at block {to} instead of running to the end of the relation")),
    }
}

/// Streams to run: the configured number, never more than the chunks left to do.
pub fn streams_for(configured: usize, chunks_left: usize) -> usize {
    configured.min(chunks_left)
}

/// The throughput assumed for a chunk before this run has finished one: deliberately low (about a
/// fifth of the ~83-100 MB/s of heap per stream measured on this project's benchmark machine), so a
/// run never starts a chunk it would overrun on a slow database.
pub const PRIOR_BYTES_PER_SECOND: f64 = 20.0 * 1024.0 * 1024.0;

/// Should a run with `remaining` time start a chunk of `chunk_bytes` of heap? Its duration is
/// estimated from what this run measured (`observed`: heap bytes done, seconds taken, per stream)
/// or the prior, with a 1.5x margin and at least `min_margin` to spare (for the verify, manifest and
/// report that follow). `remaining: None` means no budget.
pub fn worth_starting(
    remaining: Option<Duration>,
    chunk_bytes: u64,
    observed: Option<(u64, Duration)>,
    min_margin: Duration,
) -> bool {
    let Some(remaining) = remaining else { return true };
    let rate = match observed {
        Some((bytes, took)) if bytes > 0 && took.as_secs_f64() > 0.0 => bytes as f64 / took.as_secs_f64(),
        _ => PRIOR_BYTES_PER_SECOND,
    };
    let estimate = Duration::from_secs_f64(chunk_bytes as f64 / rate * 1.5);
    estimate + min_margin <= remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn partitions_are_split_into_equal_block_ranges_covering_everything() {
        // (blocks, chunk size, expected ranges as (from, to))
        type Ranges = &'static [(u64, Option<u64>)];
        let cases: &[(u64, u64, Option<Ranges>)] = &[
            // Under or at the chunk size: one object, as before chunks existed.
            (0, MIB, None),
            (128, MIB, None),
            (1, 8192, None),
            // Just over: two halves.
            (129, MIB, Some(&[(0, Some(65)), (65, None)])),
            // The benchmark's 5M-row month (61,807 blocks, 483 MiB) with the 256 MiB default.
            (61_807, 256 * MIB, Some(&[(0, Some(30_904)), (30_904, None)])),
            // Exact multiples.
            (512, MIB, Some(&[(0, Some(128)), (128, Some(256)), (256, Some(384)), (384, None)])),
            // Chunk size under one block: one block per chunk.
            (3, 100, Some(&[(0, Some(1)), (1, Some(2)), (2, None)])),
        ];
        for (blocks, size, want) in cases {
            let got = plan_chunks(*blocks, 8192, *size);
            let want: Option<Vec<BlockRange>> =
                want.map(|w| w.iter().map(|(from, to)| BlockRange { from: *from, to: *to }).collect());
            assert_eq!(got, want, "{blocks} blocks in chunks of {size}");
        }
    }

    #[test]
    fn plans_are_contiguous_and_balanced_for_many_sizes() {
        for blocks in [2u64, 7, 129, 1000, 61_807, 1 << 26] {
            for size in [MIB, 3 * MIB, 256 * MIB, 1024 * MIB] {
                let Some(chunks) = plan_chunks(blocks, 8192, size) else {
                    assert!(blocks * 8192 <= size);
                    continue;
                };
                assert_eq!(chunks[0].from, 0);
                assert_eq!(chunks.last().unwrap().to, None, "the last chunk is open-ended");
                for w in chunks.windows(2) {
                    assert_eq!(w[0].to, Some(w[1].from), "contiguous");
                }
                let sizes: Vec<u64> = chunks.iter().map(|c| c.blocks(blocks)).collect();
                assert_eq!(sizes.iter().sum::<u64>(), blocks);
                let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
                assert!(max * 8192 <= size.max(8192) + 8192, "{blocks}/{size}: a chunk of {max} blocks");
                assert!(max - min <= max / 2 + 1 || chunks.len() <= 2, "{blocks}/{size}: {sizes:?}");
            }
        }
    }

    #[test]
    fn a_plan_covers_every_block_only_from_block_0_contiguously_to_an_open_end() {
        // Every plan the planner makes (and the one range of a partition under the chunk size).
        for blocks in [0u64, 1, 2, 7, 129, 1000, 61_807, 1 << 26] {
            for size in [100, MIB, 3 * MIB, 256 * MIB] {
                let ranges = plan_chunks(blocks, 8192, size).unwrap_or_else(|| vec![BlockRange { from: 0, to: None }]);
                assert_eq!(covers_every_block(&ranges), Ok(()), "{blocks} blocks in chunks of {size}: {ranges:?}");
            }
        }
        let r = |from, to| BlockRange { from, to };
        // (ranges, what the refusal names)
        let cases: &[(&[BlockRange], &str)] = &[
            (&[], "has no chunks"),
            (&[r(1, None)], "starts at block 1, not 0"),
            (&[r(0, Some(4)), r(5, None)], "has chunk 1 end at block 4 and chunk 2 start at 5"),
            (&[r(0, Some(4)), r(3, None)], "has chunk 1 end at block 4 and chunk 2 start at 3"),
            (&[r(0, Some(0)), r(0, None)], "has chunk 1 end at block 0 and chunk 2 start at 0"),
            (&[r(0, None), r(4, None)], "has chunk 1 open-ended before chunk 2"),
            (&[r(0, Some(4)), r(4, Some(8))], "ends at block 8 instead of running to the end of the relation"),
        ];
        for (ranges, want) in cases {
            assert_eq!(covers_every_block(ranges), Err(want.to_string()), "{ranges:?}");
        }
    }

    #[test]
    fn conditions_name_block_numbers_only() {
        assert_eq!(
            BlockRange { from: 5, to: Some(9) }.ctid_condition(),
            "ctid >= '(5,0)'::tid AND ctid < '(9,0)'::tid"
        );
        assert_eq!(BlockRange { from: 9, to: None }.ctid_condition(), "ctid >= '(9,0)'::tid");
        assert_eq!(BlockRange { from: 9, to: None }.blocks(20), 11);
        assert_eq!(BlockRange { from: 30, to: None }.blocks(20), 0, "a relation truncated since the plan");
    }

    #[test]
    fn streams_never_exceed_the_chunks_left() {
        for (configured, left, want) in [(2, 10, 2), (4, 3, 3), (1, 0, 0), (8, 8, 8)] {
            assert_eq!(streams_for(configured, left), want);
        }
    }

    #[test]
    fn a_chunk_is_started_only_if_it_fits_the_remaining_time() {
        let s = Duration::from_secs;
        let margin = s(10);
        // (remaining, chunk bytes, observed, start?)
        type Observed = Option<(u64, Duration)>;
        let cases: &[(Option<Duration>, u64, Observed, bool)] = &[
            (None, 1 << 40, None, true),
            // Prior 20 MiB/s: 200 MiB take 10 s, 15 s with the margin, + 10 s to spare.
            (Some(s(30)), 200 * MIB, None, true),
            (Some(s(20)), 200 * MIB, None, false),
            // Observed 100 MiB/s: 200 MiB take 3 s (x1.5), + 10 s.
            (Some(s(14)), 200 * MIB, Some((1000 * MIB, s(10))), true),
            (Some(s(12)), 200 * MIB, Some((1000 * MIB, s(10))), false),
            // Nothing left, or a degenerate observation (falls back to the prior).
            (Some(s(0)), 1, None, false),
            (Some(s(30)), 200 * MIB, Some((0, s(0))), true),
        ];
        for (remaining, bytes, observed, want) in cases {
            assert_eq!(
                worth_starting(*remaining, *bytes, *observed, margin),
                *want,
                "{remaining:?} {bytes} {observed:?}"
            );
        }
    }
}
