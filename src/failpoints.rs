//! Named fault points for crash-safety tests. Compiled in only with the `failpoints` cargo feature
//! (the test command enables it; release builds do not), and inert unless
//! `PARTITION_ARCHIVER_FAILPOINTS` names the point: then the process exits on the spot, as if
//! killed, with no cleanup (no upload aborted, no transaction finished).

#[macro_export]
macro_rules! fail_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::hit($name);
    };
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if let Ok(list) = std::env::var("PARTITION_ARCHIVER_FAILPOINTS") {
        if list.split(',').any(|p| p.trim() == name) {
            eprintln!("failpoint {name}: exiting");
            std::process::exit(86);
        }
    }
}
