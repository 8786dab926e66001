#![recursion_limit = "512"]
//! One binary, two front doors: the Lambda runtime loop when `AWS_LAMBDA_RUNTIME_API` is set,
//! the CLI otherwise. Logs are JSON lines on stderr (text on a terminal); reports go to stdout.

use clap::Parser;
use std::io::IsTerminal;

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| "partition_archiver=info,warn".into());
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if !lambda && std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().with_current_span(true).with_span_list(false).init();
    }
    if lambda {
        if let Err(e) = partition_archiver::lambda::run().await {
            eprintln!("lambda runtime: {e}");
            std::process::exit(1);
        }
        return;
    }
    let code = partition_archiver::cli::run(partition_archiver::cli::Cli::parse()).await;
    std::process::exit(code);
}
