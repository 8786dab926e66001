//! The one way this tool works through a list of units side by side: an archive's chunks and a
//! restore's objects alike. Up to `ARCHIVE_STREAMS` workers, each on its own connection, take the
//! next unit from one [`Queue`] while the time left covers it ([`chunks::worth_starting`], from
//! the rate this pass measured, the prior until one unit is done); the first failure, or a worker
//! that finds the work must start again, stops them all ([`Queue::stop`], [`join`]).

use crate::plan::chunks;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The units of one pass, shared by its workers.
pub struct Queue<U> {
    units: Mutex<VecDeque<U>>,
    /// A unit's size in the bytes the rate is measured in (heap bytes, bytes before compression).
    size: fn(&U) -> u64,
    /// When the pass must be done, and the time kept after its last unit.
    deadline: Option<Instant>,
    margin: Duration,
    stopped: AtomicBool,
    out_of_time: AtomicBool,
    /// Units another run held (a worker's say-so, counted for the report).
    busy: AtomicUsize,
    /// Bytes done and the time they took, summed over the workers: the per-stream rate.
    observed: Mutex<(u64, Duration)>,
}

impl<U> Queue<U> {
    pub fn new(units: Vec<U>, size: fn(&U) -> u64, deadline: Option<Instant>, margin: Duration) -> Self {
        Queue {
            units: Mutex::new(units.into()),
            size,
            deadline,
            margin,
            stopped: AtomicBool::new(false),
            out_of_time: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            observed: Mutex::new((0, Duration::ZERO)),
        }
    }

    /// The next unit to work on; `None` once the queue is empty, the pass stopped, or the time
    /// left would not cover the next unit (which stops every worker: units are taken in order, and
    /// a later one is no smaller a promise).
    pub fn next(&self) -> Option<U> {
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let unit = self.units.lock().expect("queue").pop_front()?;
        let seen = *self.observed.lock().expect("observed");
        let remaining = self.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if !chunks::worth_starting(remaining, (self.size)(&unit), (seen.0 > 0).then_some(seen), self.margin) {
            tracing::info!(bytes = (self.size)(&unit), "not started: the time left would not cover the next unit");
            self.units.lock().expect("queue").push_front(unit);
            self.out_of_time.store(true, Ordering::SeqCst);
            self.stop();
            return None;
        }
        Some(unit)
    }

    /// A unit was streamed: `bytes` in `took` join the measured rate (a unit found done, which
    /// streamed nothing, adds nothing).
    pub fn measured(&self, bytes: u64, took: Duration) {
        let mut seen = self.observed.lock().expect("observed");
        seen.0 += bytes;
        seen.1 += took;
    }

    /// Another run holds `unit`: it is left to that run, and counted.
    pub fn busy(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// No worker takes another unit.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// How the pass ended: units not taken, units another run held, and whether the time budget
    /// stopped it.
    pub fn ended(&self) -> Ended {
        Ended {
            left: self.units.lock().expect("queue").len(),
            busy: self.busy.load(Ordering::SeqCst),
            out_of_time: self.out_of_time.load(Ordering::SeqCst),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub left: usize,
    pub busy: usize,
    pub out_of_time: bool,
}

/// Waits for every worker: the first error (a panic is one, through `panicked`), else the first
/// reason a worker gave to start the work again, else `None`.
pub async fn join<E: Send + 'static>(
    mut workers: tokio::task::JoinSet<Result<Option<String>, E>>,
    panicked: fn(tokio::task::JoinError) -> E,
) -> Result<Option<String>, E> {
    let (mut first_error, mut again) = (None, None);
    while let Some(joined) = workers.join_next().await {
        match joined.map_err(panicked).and_then(|r| r) {
            Ok(why) => again = again.or(why),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(again), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn size(u: &u64) -> u64 {
        *u
    }

    #[test]
    fn units_are_taken_in_order_until_the_time_left_would_not_cover_the_next() {
        // No deadline: every unit, in order.
        let q = Queue::new(vec![1, 2, 3], size, None, Duration::ZERO);
        let taken: Vec<u64> = std::iter::from_fn(|| q.next()).collect();
        assert_eq!(taken, [1, 2, 3]);
        assert_eq!(q.ended(), Ended { left: 0, busy: 0, out_of_time: false });

        // 30 s left, 10 s kept: at the prior rate (20 MiB/s, x1.5) 100 MiB fits, 400 MiB does not,
        // and the unit not started stays in the queue; nothing after it is taken.
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        let q = Queue::new(vec![100 * MIB, 400 * MIB, MIB], size, deadline, Duration::from_secs(10));
        assert_eq!(q.next(), Some(100 * MIB));
        // Measured at 10 MiB/s: 400 MiB would take 60 s.
        q.measured(100 * MIB, Duration::from_secs(10));
        assert!(q.next().is_none());
        // 1 MiB would fit, but units are taken in order and the pass has stopped.
        assert!(q.next().is_none());
        q.busy();
        assert_eq!(q.ended(), Ended { left: 2, busy: 1, out_of_time: true });
    }

    #[test]
    fn a_stop_ends_the_pass_without_spending_time() {
        let q = Queue::new(vec![1, 2], size, None, Duration::ZERO);
        q.stop();
        assert!(q.next().is_none());
        assert_eq!(q.ended(), Ended { left: 2, busy: 0, out_of_time: false });
    }

    #[tokio::test]
    async fn join_reports_the_first_error_before_any_reason_to_start_again() {
        let panicked = |e: tokio::task::JoinError| e.to_string();
        let mut set = tokio::task::JoinSet::new();
        set.spawn(async { Ok::<_, String>(None) });
        set.spawn(async { Ok(Some("rewritten".to_string())) });
        assert_eq!(join(set, panicked).await, Ok(Some("rewritten".into())));
        let mut set = tokio::task::JoinSet::new();
        set.spawn(async { Ok::<_, String>(Some("rewritten".to_string())) });
        set.spawn(async { Err("failed".to_string()) });
        assert_eq!(join(set, panicked).await, Err("failed".into()));
        let mut set = tokio::task::JoinSet::<Result<Option<String>, String>>::new();
        set.spawn(async { panic!("worker") });
        assert!(join(set, panicked).await.unwrap_err().contains("panic"));
    }
}
