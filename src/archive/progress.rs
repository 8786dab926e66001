//! People watching a long stream see it move: on a terminal (the CLI), a progress bar with rows,
//! bytes, rate and ETA; elsewhere (Lambda, cron, CI), one log line every 30 seconds with the
//! partition, rows, bytes and MB/s, so CloudWatch shows where a long run is. Nothing else is
//! printed, and a short stream logs nothing. The interval is `PROGRESS_LOG_SECONDS` (default
//! 30; 0 logs every batch, for debugging).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    what: String,
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Instant,
    log_every: Duration,
}

impl Progress {
    /// `what` names the work ("archive public.trades_2026_03"); `total` is the expected number of
    /// bytes, if known (an object's size; an estimate is fine: it only feeds the ETA).
    pub fn start(what: impl Into<String>, total: Option<u64>, log_every: Duration) -> Self {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total.filter(|t| *t > 0) {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            let template = "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ETA {eta}";
            bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(what.clone());
            bar
        });
        let now = Instant::now();
        Self { what, bar, started: now, last_log: now, log_every }
    }

    /// Reports `rows` and `bytes` done so far (either may be 0 when the stream does not know it).
    pub fn update(&mut self, rows: u64, bytes: u64) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let mb_per_s = bytes as f64 / 1e6 / elapsed;
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{mb_per_s:.1} MB/s"));
            }
            None if self.last_log.elapsed() >= self.log_every => {
                self.last_log = Instant::now();
                tracing::info!(work = %self.what, rows, bytes, mb_per_s = format!("{mb_per_s:.1}"), elapsed_s = elapsed as u64, "progress");
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
