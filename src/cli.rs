//! The command line: the same verbs as the Lambda, over the same [`crate::app::App`].

use crate::error::Error;
use crate::request::{parse_now, parse_tables, Request};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
    Migrate,
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
    },
    /// Same as `maintain --dry-run`.
    Plan {
        #[arg(long)]
        now: Option<String>,
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Partitions, bounds, sizes, rows in default, and what the next run would do.
    Status {
        #[arg(long)]
        now: Option<String>,
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Archive one partition now (detach, upload, verify, then drop or move).
    Archive {
        #[arg(long)]
        table: String,
        #[arg(long)]
        partition: String,
    },
    /// Restore an archived partition from S3 into a new table, verified.
    Restore {
        #[arg(long)]
        table: String,
        #[arg(long)]
        partition: String,
        /// Schema to restore into (created if missing); default RESTORE_SCHEMA or archive_restore.
        #[arg(long)]
        into_schema: Option<String>,
        /// Attach the restored table back to its parent if its range is free.
        #[arg(long)]
        attach: bool,
    },
    /// Re-read archived objects and check SHA-256 and row counts against the manifest.
    Verify {
        #[arg(long)]
        table: Option<String>,
    },
    /// List the archive manifest.
    List {
        #[arg(long)]
        table: Option<String>,
    },
}

fn one_table(t: String) -> Result<crate::plan::ident::QualifiedName, Error> {
    Ok(parse_tables(&[t])?.remove(0))
}

impl Command {
    pub fn into_request(self) -> Result<Request, Error> {
        let now = |n: Option<String>| n.as_deref().map(parse_now).transpose();
        let check = |p: &str| {
            crate::plan::ident::validate_ident(p).map_err(|e| Error::invalid(format!("partition {p:?}: {e}")))
        };
        Ok(match self {
            Command::Migrate => Request::Migrate,
            Command::Maintain { dry_run, now: n, tables } => {
                Request::Maintain { dry_run, now: now(n)?, tables: parse_tables(&tables)? }
            }
            Command::Plan { now: n, tables } => {
                Request::Maintain { dry_run: true, now: now(n)?, tables: parse_tables(&tables)? }
            }
            Command::Status { now: n, tables } => Request::Status { now: now(n)?, tables: parse_tables(&tables)? },
            Command::Archive { table, partition } => {
                check(&partition)?;
                Request::Archive { table: one_table(table)?, partition }
            }
            Command::Restore { table, partition, into_schema, attach } => {
                check(&partition)?;
                if let Some(s) = &into_schema {
                    crate::plan::ident::validate_ident(s)
                        .map_err(|e| Error::invalid(format!("--into-schema {s:?}: {e}")))?;
                }
                Request::Restore { table: one_table(table)?, partition, into_schema, attach }
            }
            Command::Verify { table } => Request::Verify { table: table.map(one_table).transpose()? },
            Command::List { table } => Request::List { table: table.map(one_table).transpose()? },
        })
    }
}

/// Exit codes: 0 done, 1 a table or step failed, 2 bad input (nothing changed), 3 transient.
pub async fn run(cli: Cli) -> i32 {
    use std::io::IsTerminal;
    let output = cli.output.unwrap_or(if std::io::stdout().is_terminal() { Output::Human } else { Output::Json });
    let result = async {
        let request = cli.command.into_request()?;
        let settings = crate::config::Settings::load(cli.config.as_deref()).await?;
        let app = crate::app::App::new(settings).await;
        app.handle(request).await
    }
    .await;
    match result {
        Ok(response) => {
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&response).expect("report serializes")),
                Output::Human => print!("{}", response.human()),
            }
            if response.ok() {
                0
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
                crate::error::ErrorKind::Integrity => 1,
            }
        }
    }
}
