//! The command line: the same verbs as the Lambda, over the same [`crate::app::App`].

use crate::error::Error;
use crate::request::{RawEvent, Request, Spelling};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Which chunk a fan-out unit (`archive-chunk`, `restore-chunk`) works on, as the unit gives it.
#[derive(Debug, clap::Args)]
pub struct UnitArgs {
    /// The partitioned table (schema.table).
    #[arg(long)]
    table: String,
    /// The partition.
    #[arg(long)]
    partition: String,
    /// The chunk number (from 1).
    #[arg(long, allow_hyphen_values = true)]
    chunk: i64,
}

#[derive(Debug, Parser)]
#[command(
    name = "partition-archiver",
    version,
    about = "Keeps PostgreSQL time-partitioned tables healthy: creates partitions ahead, archives old ones to S3 (verified), restores them."
)]
pub struct Cli {
    /// TOML file with settings (same keys as the environment, e.g. DATABASE_URL, ARCHIVE_BUCKET); the environment wins.
    #[arg(long, global = true, env = "PARTITION_ARCHIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format; default: human on a terminal, json otherwise.
    #[arg(long, global = true, value_enum)]
    pub output: Option<Output>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the SQL migrations embedded in this binary (idempotent).
    Migrate {
        /// Create the seed partitions as if the time were this (RFC 3339), e.g.
        /// 2026-11-24T10:00:00Z: sets `partition_archiver.now` for the migration's session.
        /// Default: the database's clock.
        #[arg(long)]
        now: Option<String>,
    },
    /// The scheduled job: create partitions ahead, archive and drop those past retention.
    Maintain {
        /// Plan only: print the steps, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Pretend the time is this (RFC 3339), e.g. 2026-11-24T10:00:00Z.
        #[arg(long)]
        now: Option<String>,
        /// Only these tables (schema.table); repeatable. Default: every enabled table in part_config.
        #[arg(long = "table")]
        tables: Vec<String>,
        /// Seconds this run may take: no chunk (or archive) is started that would not finish in
        /// time; the report says `"complete": false` and the next run goes on.
        #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
        time_budget: Option<f64>,
        /// Plan the chunks of large partitions and list them as `units` (one `archive-chunk` each,
        /// run in parallel by a Step Functions Map or by hand) instead of streaming them; the next
        /// maintain verifies and drops each partition whose chunks are all uploaded.
        #[arg(long)]
        fan_out: bool,
    },
    /// Same as `maintain --dry-run`.
    Plan {
        /// Pretend the time is this (RFC 3339), e.g. 2026-11-24T10:00:00Z.
        #[arg(long)]
        now: Option<String>,
        /// Only these tables (schema.table); repeatable. Default: every enabled table in part_config.
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Partitions, bounds, sizes, rows in default, and what the next run would do.
    Status {
        /// Pretend the time is this (RFC 3339), e.g. 2026-11-24T10:00:00Z.
        #[arg(long)]
        now: Option<String>,
        /// Only these tables (schema.table); repeatable. Default: every enabled table in part_config.
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Archive one partition now (detach, upload, verify, then drop or move).
    Archive {
        /// The partitioned table (schema.table; `public.` may be left out).
        #[arg(long)]
        table: String,
        /// The partition to archive (its table name, e.g. trades_2026_03): a whole period that has ended.
        #[arg(long)]
        partition: String,
        /// Seconds this run may take: no chunk is started that would not finish in time; the
        /// report says `"complete": false` and the next run goes on.
        #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
        time_budget: Option<f64>,
    },
    /// Archive one chunk of a partition whose chunks are planned (`maintain --fan-out` lists them
    /// as units): the work of one Step Functions Map branch. Safe to run side by side and again.
    ArchiveChunk {
        #[command(flatten)]
        unit: UnitArgs,
        /// Seconds this unit may take: a chunk that would not finish in time is not started
        /// (outcome `not_started`).
        #[arg(long)]
        time_budget: Option<f64>,
    },
    /// Restore an archived partition from S3 into a new table, verified.
    ///
    /// An object in cold storage (Glacier, Deep Archive, Intelligent-Tiering archive tiers) is
    /// requested back first (RESTORE_RETRIEVAL_TIER, RESTORE_RETRIEVAL_DAYS) and the command exits
    /// with code 4, "pending", having changed nothing: run it again later, or pass --wait.
    Restore {
        /// The partitioned table the partition belonged to (schema.table).
        #[arg(long)]
        table: String,
        /// The archived partition's name, e.g. trades_2026_03 (see `list`).
        #[arg(long)]
        partition: String,
        /// Schema to restore into (created if missing); default RESTORE_SCHEMA or archive_restore.
        #[arg(long)]
        into_schema: Option<String>,
        /// Attach the restored table back to its parent if its range is free. Columns the parent
        /// gained since the archive are added (its default, or NULL), types widened where no value
        /// is lost; the command fails (exit 1) with the reason when it cannot attach.
        #[arg(long)]
        attach: bool,
        /// With --attach: columns of the archive the parent no longer has, dropped from the
        /// restored table before it is attached (the archive keeps them). Comma-separated.
        #[arg(long, value_delimiter = ',', requires = "attach")]
        drop_columns: Vec<String>,
        /// Seconds this restore may take: no object is started that would not finish in time. What
        /// is loaded stays in the staging table, the report says "complete": false, and the next
        /// restore goes on from there.
        #[arg(long)]
        time_budget: Option<f64>,
        /// If the object is in cold storage, wait for its retrieval (checking with backoff) and then restore.
        #[arg(long)]
        wait: bool,
        /// With --wait: seconds before the first check; doubled after each, up to 15 minutes.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "wait")]
        poll_interval: u64,
        /// Plan a fan-out instead of loading: set up the staging table and print one unit per
        /// object left (`restore-chunk`), for a Step Functions Map or separate processes; then run
        /// `restore` again (without --fan-out) to load what is left and rename. With --attach (as
        /// `RestoreStateMachine` sends it) the plan first refuses what the attach would refuse.
        #[arg(long, conflicts_with = "wait")]
        fan_out: bool,
    },
    /// Load one object of a planned restore into its staging table (`restore --fan-out` lists the
    /// units); loaded side by side, each verified.
    RestoreChunk {
        #[command(flatten)]
        unit: UnitArgs,
        /// The restore id of the plan, as the unit gives it.
        #[arg(long)]
        restore_id: String,
        /// The schema the plan restores into, as the unit gives it.
        #[arg(long)]
        into_schema: Option<String>,
        /// Seconds this unit may take: refused, with nothing changed, if too short for its object.
        #[arg(long)]
        time_budget: Option<f64>,
    },
    /// Check archived objects against the manifest: size, S3 checksum, version and storage class
    /// by HEAD (no data read, no retrieval charges, whatever the storage class).
    Verify {
        /// Only this table's archives (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// Also read every object back and check its SHA-256 and row count (objects in cold storage
        /// are reported as not readable without a retrieval, and not retrieved).
        #[arg(long)]
        deep: bool,
    },
    /// List the archive manifest.
    List {
        /// Only this table's archives (schema.table).
        #[arg(long)]
        table: Option<String>,
        /// What the bucket holds, from its JSON manifests (for a database without records of them,
        /// such as a new one after a disaster); reads only.
        #[arg(long)]
        from_bucket: bool,
    },
    /// Register the time-based parents of pg_partman's part_config here (interval, premake,
    /// retention, keep-table, default partition), and list what cannot be mapped. A table stays
    /// refused by maintain while pg_partman still maintains it (automatic_maintenance = 'on').
    ImportPgPartman {
        /// Only report what would be registered.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Command {
    /// The request the flags give, checked as a Lambda event's fields are (one
    /// [`RawEvent::into_request`]), with messages that name the flags.
    pub fn into_request(self) -> Result<Request, Error> {
        let raw = match self {
            Command::Migrate { now } => RawEvent::Migrate { now },
            Command::Maintain { dry_run, now, tables, time_budget, fan_out } => {
                RawEvent::Maintain { dry_run, now, tables, time_budget_s: time_budget, fan_out }
            }
            Command::Plan { now, tables } => RawEvent::Plan { now, tables },
            Command::ArchiveChunk { unit: UnitArgs { table, partition, chunk }, time_budget } => {
                RawEvent::ArchiveChunk { table, partition, chunk, time_budget_s: time_budget }
            }
            Command::Status { now, tables } => RawEvent::Status { now, tables },
            Command::Archive { table, partition, time_budget } => {
                RawEvent::Archive { table, partition, time_budget_s: time_budget }
            }
            Command::Restore { table, partition, into_schema, attach, drop_columns, time_budget, fan_out, .. } => {
                let time_budget_s = time_budget;
                RawEvent::Restore {
                    table,
                    partition,
                    into_schema,
                    attach,
                    drop_columns,
                    wait: None,
                    time_budget_s,
                    fan_out,
                }
            }
            Command::RestoreChunk {
                unit: UnitArgs { table, partition, chunk },
                restore_id,
                into_schema,
                time_budget,
            } => {
                let time_budget_s = time_budget;
                RawEvent::RestoreChunk { table, partition, chunk, restore_id, into_schema, time_budget_s }
            }
            Command::Verify { table, deep } => RawEvent::Verify { table, deep },
            Command::List { table, from_bucket } => RawEvent::List { table, from_bucket },
            Command::ImportPgPartman { dry_run } => RawEvent::ImportPgPartman { dry_run },
        };
        raw.into_request(Spelling::Flags)
    }
}

/// Checks of a `restore --wait` are spaced out to at most this.
const MAX_POLL: Duration = Duration::from_secs(15 * 60);
/// Transient errors in a row a `restore --wait` rides out before it gives up (exit code 3).
const MAX_TRANSIENT_WHILE_WAITING: u32 = 5;

/// Exit codes: 0 done, 1 a table or step failed, 2 bad input (nothing changed), 3 transient (a
/// run whose every failure was a lost or silent connection or an S3 timeout: run it again, it goes
/// on), 4 pending (a retrieval from cold storage: run again later).
pub async fn run(cli: Cli) -> i32 {
    use std::io::IsTerminal;
    let output = cli.output.unwrap_or(if std::io::stdout().is_terminal() { Output::Human } else { Output::Json });
    let wait = match &cli.command {
        Command::Restore { wait: true, poll_interval, .. } => Some(Duration::from_secs(*poll_interval)),
        _ => None,
    };
    let result = async {
        let request = cli.command.into_request()?;
        let settings = crate::config::Settings::load(cli.config.as_deref()).await?;
        let app = crate::app::App::new(settings).await;
        let Some(first_delay) = wait else {
            return app.handle(request).await;
        };
        let mut waiting = Waiting::new(first_delay);
        let mut transient_in_a_row = 0;
        loop {
            // Hours of waiting should not end on one lost connection or S3 hiccup: transient
            // errors are retried at the same pace, a few in a row.
            let response = match app.handle(request.clone()).await {
                Err(e) if e.retryable() && transient_in_a_row < MAX_TRANSIENT_WHILE_WAITING => {
                    transient_in_a_row += 1;
                    tracing::warn!(error = %e.message, attempt = transient_in_a_row, "restore --wait: retrying");
                    waiting.pause().await;
                    continue;
                }
                other => other?,
            };
            transient_in_a_row = 0;
            match response.pending() {
                Some(pending) => waiting.wait(pending).await,
                None => return Ok(response),
            }
        }
    }
    .await;
    match result {
        Ok(response) => {
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&response).expect("report serializes")),
                Output::Human => print!("{}", response.human()),
            }
            if response.pending().is_some() {
                4
            } else if response.ok() {
                0
            } else if response.failed_transiently() {
                3
            } else {
                1
            }
        }
        Err(e) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"kind": e.kind, "type": e.type_name(), "message": e.message}})
                ),
                Output::Human => eprintln!("error: {}", e.message),
            }
            match e.kind {
                crate::error::ErrorKind::InvalidInput | crate::error::ErrorKind::NotFound => 2,
                crate::error::ErrorKind::Transient | crate::error::ErrorKind::AlreadyRunning => 3,
                crate::error::ErrorKind::Integrity | crate::error::ErrorKind::Refused => 1,
            }
        }
    }
}

/// `restore --wait`: sleeps between checks with backoff, and shows that it waits: a spinner with
/// the next check's time on a terminal, one log line per check otherwise.
struct Waiting {
    delay: Duration,
    checks: u32,
    started: std::time::Instant,
    spinner: Option<indicatif::ProgressBar>,
}

impl Waiting {
    fn new(first: Duration) -> Self {
        use std::io::IsTerminal;
        let spinner = std::io::stderr().is_terminal().then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"),
            );
            s.enable_steady_tick(Duration::from_millis(200));
            s
        });
        Self { delay: first, checks: 0, started: std::time::Instant::now(), spinner }
    }

    async fn wait(&mut self, pending: &crate::archive::retrieval::Pending) {
        self.checks += 1;
        let line = format!(
            "waiting for the {} retrieval of {} ({} tier, {}): check {}, next in {} s",
            pending.storage_class,
            pending.object,
            pending.tier.as_str(),
            pending.retrieval,
            self.checks,
            self.delay.as_secs()
        );
        match &self.spinner {
            Some(s) => s.set_message(line),
            None => tracing::info!(waited_s = self.started.elapsed().as_secs(), "{line}"),
        }
        self.pause().await;
    }

    /// Sleeps the current delay, then doubles it (up to [`MAX_POLL`]).
    async fn pause(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_POLL.max(self.delay));
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_verb_and_option_has_help_text() {
        let cli = Cli::command();
        let mut missing = vec![];
        for verb in cli.get_subcommands() {
            if verb.get_about().is_none() {
                missing.push(verb.get_name().to_string());
            }
            for arg in verb.get_arguments().filter(|a| a.get_id() != "help") {
                if arg.get_help().is_none() {
                    missing.push(format!("{} --{}", verb.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
        // And the check sees the options it should.
        let restore = cli.find_subcommand("restore").unwrap();
        let ids: Vec<&str> = restore.get_arguments().map(|a| a.get_id().as_str()).collect();
        for id in ["table", "partition", "into_schema", "attach", "wait", "poll_interval"] {
            assert!(ids.contains(&id), "{ids:?}");
        }
    }

    /// The flags are checked by the same code as a Lambda event's fields, and the messages name
    /// the flags (an event's name its keys: `request::tests`).
    #[test]
    fn flags_are_checked_as_events_are_and_messages_name_the_flags() {
        let request = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["partition-archiver"], args].concat()).expect("flags parse");
            cli.command.into_request()
        };
        let restore = ["restore", "--table", "public.orders", "--partition", "orders_2026_01"];
        let cases: [(&[&str], &str); 5] = [
            (&["maintain", "--time-budget", "-1"], "--time-budget -1 is not a time budget"),
            (&[&restore[..], &["--into-schema", "a\tb"]].concat(), "--into-schema \"a\\tb\""),
            (&[&restore[..], &["--attach", "--drop-columns", "a\tb"]].concat(), "--drop-columns \"a\\tb\""),
            (&["archive-chunk", "--table", "public.orders", "--partition", "p", "--chunk", "0"], "chunk 0"),
            (&["plan", "--now", "yesterday"], "is not an RFC 3339 timestamp"),
        ];
        for (args, needle) in cases {
            let e = request(args).expect_err(needle).to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        let ok = request(&[&restore[..], &["--time-budget", "30", "--fan-out"]].concat()).unwrap();
        assert!(
            matches!(ok, Request::Restore { fan_out: true, time_budget: Some(t), .. } if t.as_secs() == 30),
            "{ok:?}"
        );
    }

    #[test]
    fn poll_interval_needs_wait_and_stays_in_range() {
        for args in [
            &["pa", "restore", "--table", "t", "--partition", "p", "--poll-interval", "5"][..],
            &["pa", "restore", "--table", "t", "--partition", "p", "--wait", "--poll-interval", "0"][..],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let ok = Cli::try_parse_from(["pa", "restore", "--table", "t", "--partition", "p", "--wait"]).unwrap();
        assert!(matches!(ok.command, Command::Restore { wait: true, poll_interval: 60, .. }));
    }
}
