//! One harness for every integration test: PostgreSQL and LocalStack are started once by
//! `scripts/test.sh` (infra/postgres.sh, infra/localstack.sh), which exports their addresses; each
//! test gets its own database and its own bucket, and runs the real binary.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use std::process::{Command, Output};
use tokio_postgres::{Client, NoTls};

pub const BIN: &str = env!("CARGO_BIN_EXE_partition-archiver");

fn admin_url() -> String {
    std::env::var("PA_TEST_DATABASE_URL").expect(
        "PA_TEST_DATABASE_URL is not set: run the integration tests through scripts/test.sh, which starts PostgreSQL and LocalStack",
    )
}

pub fn endpoint() -> String {
    std::env::var("PA_TEST_S3_ENDPOINT").expect("PA_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh")
}

/// The day the calendar tests (`calendar.rs`, the Lambda scenario) run "on": `PA_TEST_TODAY` (RFC
/// 3339) when the test command pins it, else the real clock, read once by the test. Those tests
/// pass it to `migrate --now` and `maintain --now` and derive what they expect from it, so they
/// hold on any day; `scripts/test.sh` runs them again on days where calendars bite.
pub fn today() -> DateTime<Utc> {
    match std::env::var("PA_TEST_TODAY") {
        Ok(s) if !s.is_empty() => DateTime::parse_from_rfc3339(&s)
            .unwrap_or_else(|e| panic!("PA_TEST_TODAY {s:?} is not an RFC 3339 instant: {e}"))
            .with_timezone(&Utc),
        _ => Utc::now(),
    }
}

/// An instant as the binary's `--now` and the `now` of events take it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:012x}", fastrand::u64(..) & 0xffff_ffff_ffff)
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    client
}

pub struct TestEnv {
    pub url: String,
    pub db: Client,
    pub bucket: String,
}

impl TestEnv {
    /// A fresh database (not migrated) and a fresh, versioned bucket.
    pub async fn new() -> Self {
        Self::new_on(&admin_url()).await
    }

    /// Like `new`, on the PostgreSQL server behind `admin` (a `PrivateServer`'s, say).
    pub async fn new_on(admin: &str) -> Self {
        let dbname = unique("pa_it_");
        connect(admin).await.batch_execute(&format!("CREATE DATABASE {dbname}")).await.unwrap();
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{dbname}"),
            None => panic!("PA_TEST_DATABASE_URL must end with /database"),
        };
        let db = connect(&url).await;
        let bucket = unique("pa-it-");
        let s3 = s3().await;
        s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
        Self { url, db, bucket }
    }

    /// A fresh database with the migrations applied through the binary "on" `now` (RFC 3339):
    /// `migrate --now` pins the instant the seed migrations create partitions around (the current
    /// month and two ahead), so what exists before a test's first step follows from the instant
    /// the test states, never from the day it runs.
    pub async fn migrated_at(now: &str) -> Self {
        Self::migrated_on(&admin_url(), now).await
    }

    pub async fn migrated_on(admin: &str, now: &str) -> Self {
        let env = Self::new_on(admin).await;
        let out = env.run(&["migrate", "--now", now], &[]);
        assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        env
    }

    /// A new connection for `db`, after the server was restarted under it.
    pub async fn reconnect(&mut self) {
        self.db = connect(&self.url).await;
    }

    /// Runs the binary with this test's database and bucket; `extra` env wins.
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        self.command(args, extra).output().expect("run partition-archiver")
    }

    /// The binary as `run` starts it, for tests that spawn, kill or run it from other threads.
    pub fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["--output", "json"]).args(args);
        for k in [
            "DATABASE_URL",
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "AWS_LAMBDA_RUNTIME_API",
            "PARTITION_ARCHIVER_FAILPOINTS",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("DATABASE_URL", &self.url)
            .env("PGSSLMODE", "disable")
            .env("ARCHIVE_BUCKET", &self.bucket)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("ARCHIVE_PART_SIZE", "5MiB")
            .env("RUST_LOG", "partition_archiver=debug,warn");
        for (k, v) in extra {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd
    }

    /// Runs the binary and parses its JSON report.
    pub fn json(&self, args: &[&str], extra: &[(&str, &str)]) -> (Output, Value) {
        let out = self.run(args, extra);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stdout is not JSON ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, v)
    }

    pub async fn partitions(&self, table: &str) -> Vec<(String, String)> {
        self.db
            .query(
                "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1::text::regclass ORDER BY 1",
                &[&table],
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    pub async fn names(&self, table: &str) -> Vec<String> {
        self.partitions(table).await.into_iter().map(|(n, _)| n).collect()
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).get(0)
    }

    pub async fn scalar_text(&self, sql: &str) -> Option<String> {
        self.db.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).get(0)
    }

    /// Edits the record of a one-object archive by hand: `set` (an SQL SET list, e.g.
    /// `version_id = 'v'`) on its manifest row and on its one chunk, where the archive's objects
    /// are recorded.
    pub async fn edit_archive_record(&self, partition: &str, set: &str) {
        for table in ["archive_manifest", "archive_chunk"] {
            let sql = format!("UPDATE partition_archiver.{table} SET {set} WHERE partition_name = $1");
            self.db.execute(&sql, &[&partition]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Everything in the database that a failed command must not have changed.
    pub async fn fingerprint(&self) -> String {
        self.scalar_text(
            "SELECT md5(coalesce((SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || coalesce(pg_get_expr(c.relpartbound, c.oid), ''), ',' ORDER BY n.nspname, c.relname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')), '')
              || coalesce((SELECT string_agg(m::text, ',' ORDER BY m.id) FROM partition_archiver.archive_manifest m), ''))",
        )
        .await
        .unwrap()
    }

    /// Waits until no session of a partition-archiver run is left in this test's database. A
    /// killed client's backend finishes the statement it is running (a COMMIT sent just before the
    /// kill still commits) and only then notices the closed socket, holding its locks until it
    /// exits: look at the data, or start the next run, after that (seen: a drop committing between
    /// two reads of a check). A restore started meanwhile can be refused for the killed one's lock.
    pub async fn wait_for_orphaned_backends(&self) {
        let started = std::time::Instant::now();
        let ours = "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name LIKE 'partition-archiver/%'";
        while self.scalar_i64(ours).await > 0 {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "the killed run's backend did not exit");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub async fn multipart_uploads(&self) -> usize {
        s3().await.list_multipart_uploads().bucket(&self.bucket).send().await.unwrap().uploads().len()
    }
}

/// A PostgreSQL server of one test's own, started by the project's script (`infra/postgres.sh`) in
/// a temporary directory, for tests that restart the server (the shared one serves parallel tests).
/// Stopped by PID when dropped.
pub struct PrivateServer {
    run_dir: std::path::PathBuf,
    pub admin_url: String,
}

impl PrivateServer {
    pub fn start() -> Self {
        let run_dir = std::env::temp_dir().join(unique("pa-private-pg."));
        std::fs::create_dir_all(&run_dir).unwrap();
        let mut server = Self { run_dir, admin_url: String::new() };
        server.script(&["start"]);
        let env = std::fs::read_to_string(server.run_dir.join("postgres.env")).unwrap();
        server.admin_url = env
            .lines()
            .find_map(|l| l.strip_prefix("export DATABASE_URL="))
            .map(|v| v.trim_matches('\'').to_string())
            .expect("postgres.env has DATABASE_URL");
        server
    }

    /// `fast` (clean shutdown) or `immediate` (no shutdown checkpoint: crash recovery on start).
    pub fn restart(&self, mode: &str) {
        self.script(&["restart", mode]);
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/postgres.sh"))
            .args(args)
            .env("PA_RUN_DIR", &self.run_dir)
            .output()
            .expect("run infra/postgres.sh");
        assert!(out.status.success(), "infra/postgres.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.script(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

pub async fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "command failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
}

/// Steps of one table in a run report, as "step partition" strings.
pub fn steps(report: &Value, table: &str) -> Vec<String> {
    report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["table"] == table)
        .flat_map(|t| t["steps"].as_array().unwrap().clone())
        .map(|s| format!("{} {}", s["step"].as_str().unwrap(), s["partition"].as_str().unwrap()))
        .collect()
}
