//! People watching long work see it move: off a terminal (Lambda, cron) a log line every
//! `PROGRESS_LOG_SECONDS` with the work, rows, bytes and MB/s; on a terminal a progress bar; and
//! nothing extra for a short stream at the default interval.

use crate::archive::{seed, NOW};
use crate::harness::*;
use serde_json::Value;
use std::process::Command;

/// The `progress` log lines (JSON) among a run's stderr.
fn progress_lines(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "progress")
        .collect()
}

#[tokio::test]
async fn long_streams_log_progress_off_a_terminal_and_draw_a_bar_on_one() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;

    // The default interval (30 s): a short archive logs no progress line.
    let out = env.run(&["archive", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    ok(&out);
    assert!(progress_lines(&out.stderr).is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // Every batch: lines naming the work, with rows, bytes and the rate.
    let every = [("PROGRESS_LOG_SECONDS", "0")];
    let out = env.run(&["archive", "--table", "orders", "--partition", "orders_2026_03"], &every);
    ok(&out);
    let lines = progress_lines(&out.stderr);
    let last = lines.last().unwrap_or_else(|| panic!("no progress line: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(last["fields"]["work"], "archive public.orders_2026_03", "{last}");
    let rows = env
        .scalar_i64("SELECT row_count FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'")
        .await;
    assert!(last["fields"]["rows"].as_i64().unwrap() > 0, "{last}");
    assert!(last["fields"]["rows"].as_i64().unwrap() <= rows, "{last}");
    assert!(last["fields"]["bytes"].as_u64().unwrap() > 0, "{last}");
    assert!(last["fields"]["mb_per_s"].as_str().unwrap().parse::<f64>().is_ok(), "{last}");

    let out = env.run(&["restore", "--table", "orders", "--partition", "orders_2026_03"], &every);
    ok(&out);
    let lines = progress_lines(&out.stderr);
    assert!(lines.iter().any(|l| l["fields"]["work"] == "restore public.orders.orders_2026_03"), "{lines:?}");

    // On a terminal (a pseudo-terminal from script(1)): a bar with rows and ETA, no log lines.
    let inner = env.command(&["verify", "--table", "orders", "--deep"], &every);
    let mut line = shell_quote(BIN);
    for a in inner.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(&a.to_string_lossy()));
    }
    let mut tty = Command::new("script");
    tty.args(["-qec", &line, "/dev/null"]);
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => tty.env(k, v),
            None => tty.env_remove(k),
        };
    }
    let out = tty.output().expect("run script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("verify public.orders_2026_03") && screen.contains("ETA"), "no bar drawn: {screen:?}");
    assert!(!screen.contains("\"progress\""), "a terminal gets the bar, not log lines: {screen}");
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
