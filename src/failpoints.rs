//! Named fault points for crash-safety tests. Compiled in only with the `failpoints` cargo feature
//! (the test command enables it; release builds do not), and inert unless
//! `PARTITION_ARCHIVER_FAILPOINTS` names the point:
//! - `name`: the process exits on the spot (code 86), as if killed: no cleanup, no upload aborted,
//!   no transaction finished;
//! - `name=error`: the point returns the given error instead (for points that take one), so the
//!   ordinary error path (abort the upload, record the error) runs;
//! - `name=pause`: the process sleeps there for 5 seconds (`name=pause:N`: N seconds), so a test
//!   can act in between (put an object at a key the run is about to complete, say, or find the
//!   run's sessions idle while it lives). Only this thread sleeps: the run's other tasks (its
//!   lease) go on.

#[macro_export]
macro_rules! fail_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        let _ = $crate::failpoints::hit($name);
    };
    ($name:expr, $error:expr) => {
        #[cfg(feature = "failpoints")]
        if $crate::failpoints::hit($name) {
            return $error;
        }
    };
}

/// Exits if `name` is listed; returns true if `name=error` is listed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> bool {
    let Ok(list) = std::env::var("PARTITION_ARCHIVER_FAILPOINTS") else {
        return false;
    };
    for entry in list.split(',').map(str::trim) {
        match entry.split_once('=') {
            None if entry == name => {
                eprintln!("failpoint {name}: exiting");
                std::process::exit(86);
            }
            Some((n, "error")) if n == name => return true,
            Some((n, action)) if n == name && (action == "pause" || action.starts_with("pause:")) => {
                let secs = action.strip_prefix("pause:").and_then(|s| s.parse().ok()).unwrap_or(5);
                eprintln!("failpoint {name}: pausing {secs} s");
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
            _ => {}
        }
    }
    false
}
