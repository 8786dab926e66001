//! Integration tests against a real PostgreSQL and a real S3-compatible server (LocalStack),
//! started by `scripts/test.sh`. One test crate, split into modules, so the suite links once.
mod archive;
mod artifact;
mod blackhole;
mod calendar;
mod chunks;
mod cold;
mod faults;
mod harness;
mod intervals;
mod lambda;
mod older;
mod parquet;
mod partitions;
mod partman;
mod progress;
mod reliability;
mod template;
mod tidy;
mod vanished;
mod write_once;
