//! One retry helper for everything that may fail transiently: DDL under `lock_timeout`, S3 calls.
//! Exponential backoff with full jitter, a cap, a bounded number of attempts, and a caller-supplied
//! "is this worth retrying?" test, so permanent errors fail at once.

use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempt counts from 1): uniform in [0, min(cap, base * 2^(attempt-1))].
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, or attempts run out.
/// Returns the result and the number of attempts made.
pub async fn retry<T, E, Fut>(
    policy: RetryPolicy,
    label: &str,
    retryable: impl Fn(&E) -> bool,
    mut op: impl FnMut(u32) -> Fut,
) -> (Result<T, E>, u32)
where
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        match op(attempt).await {
            Ok(v) => return (Ok(v), attempt),
            Err(e) if attempt < policy.max_attempts && retryable(&e) => {
                let delay = policy.delay(attempt);
                tracing::warn!(%label, attempt, error = %e, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return (Err(e), attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn retries_transient_errors_then_gives_up() {
        let p =
            RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
        let calls = Cell::new(0);
        let (r, n) = retry(
            p,
            "t",
            |_: &String| true,
            |_| {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("busy".to_string()) }
            },
        )
        .await;
        assert_eq!((r.is_err(), n, calls.get()), (true, 3, 3));
        let (r, n) =
            retry(p, "t", |e: &String| e != "permanent", |_| async { Err::<(), _>("permanent".to_string()) }).await;
        assert_eq!((r.unwrap_err().as_str(), n), ("permanent", 1));
        let (r, n) = retry(
            p,
            "t",
            |_: &String| true,
            |a| async move {
                if a < 2 {
                    Err("busy".to_string())
                } else {
                    Ok(a)
                }
            },
        )
        .await;
        assert_eq!((r.unwrap(), n), (2, 2));
    }

    #[test]
    fn delays_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
        };
        for attempt in 1..40 {
            assert!(p.delay(attempt) <= Duration::from_millis(400));
        }
        let distinct: std::collections::BTreeSet<u128> = (0..50).map(|_| p.delay(5).as_micros()).collect();
        assert!(distinct.len() > 10, "jitter should spread delays: {distinct:?}");
    }
}
