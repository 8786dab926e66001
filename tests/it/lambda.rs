//! The real Lambda, locally: `cargo lambda watch` emulates the Lambda Runtime API, the function
//! runs against it with its database credentials from a LocalStack Secrets Manager secret (no
//! database variable in its environment), and it is invoked with `cargo lambda invoke`, as in the
//! README. Twice: with the binary under test (host, with fault points), and with the artifact
//! users deploy (release, arm64, under qemu on an x86_64 machine).

use crate::harness::*;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // Each child is a single process (cargo-lambda itself, not through `cargo`; the function):
        // kill exactly it, never a process group.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cargo_lambda_dir() -> String {
    std::env::var("PA_TEST_CARGO_LAMBDA_DIR").expect(
        "PA_TEST_CARGO_LAMBDA_DIR is not set: run the tests through scripts/test.sh, which installs cargo-lambda",
    )
}

fn cargo_lambda_path() -> String {
    format!("{}:{}", cargo_lambda_dir(), std::env::var("PATH").unwrap_or_default())
}

fn invoke(port: u16, event: &str) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("120")
        .arg("cargo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", cargo_lambda_path())
        .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .args(["--data-ascii", event])
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn the_function_runs_under_cargo_lambda_with_credentials_from_the_secret() {
    scheduled_maintain_then_restore(Command::new(BIN)).await;
}

#[tokio::test]
async fn the_arm64_artifact_runs_the_same_under_cargo_lambda() {
    scheduled_maintain_then_restore(crate::artifact::arm64_command()).await;
}

/// The function, started by `function` as the Lambda service would start it: what the fan-out
/// state machine sends (Prepare with `fan_out`, one `archive_chunk` per unit), then the scheduled
/// event finishes and drops the month; a restore event brings it back identical (in parallel, from
/// its chunks); a malformed event is a typed error.
async fn scheduled_maintain_then_restore(mut function: Command) {
    // A calendar test (scripts/test.sh runs it on pinned days too): migrated on `today`, with the
    // trades of the month nine months before it, which is past the six months of retention both
    // on `today` (the Prepare event's `now`) and on the real clock of the scheduled event.
    let today = today();
    let month = today.checked_sub_months(chrono::Months::new(9)).unwrap().format("%Y_%m").to_string();
    let month_start = format!("{}-01 00:00:00+00", month.replace('_', "-"));
    let partition = format!("trades_{month}");
    let env = TestEnv::migrated_at(&rfc3339(today)).await;
    env.db
        .batch_execute(&format!(
            "INSERT INTO public.trades (order_id, user_id, symbol, side, price, quantity, created_at)
             SELECT g, g % 10, 'BTC-USD', 'buy', 100.5 + g, 1, timestamptz '{month_start}' + (g * interval '40 seconds')
               FROM generate_series(1, 60000) g;
             -- trades as Parquet (the orders months, empty here, as CSV): the deployed artifact
             -- runs both encoders and the Parquet restore.
             UPDATE partition_archiver.part_config SET archive_format = 'parquet' WHERE table_name = 'trades';"
        ))
        .await
        .unwrap();
    let sum = format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.trades t
          WHERE created_at < timestamptz '{month_start}' + interval '1 month'"
    );
    let original = env.scalar_text(&sum).await;

    // The database secret, in the standard RDS shape, in LocalStack's Secrets Manager.
    let url = url::Url::parse(&env.url).unwrap();
    let secret = serde_json::json!({
        "engine": "postgres", "host": url.host_str().unwrap(), "port": url.port().unwrap(),
        "username": url.username(), "password": "unused", "dbname": url.path().trim_start_matches('/'),
    });
    let sm_conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new("test", "test", None, None, "tests"))
        .build();
    let arn = aws_sdk_secretsmanager::Client::from_conf(sm_conf)
        .create_secret()
        .name(unique("pa/db/"))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    // `cargo lambda watch --only-lambda-apis` serves the Lambda Runtime API; the function is the
    // binary under test, started as the Lambda service would start it (no database variables in
    // its environment: the credentials come from the secret).
    let port = free_port();
    let log_path = format!("{}/cargo-lambda-watch-{port}.log", env!("CARGO_TARGET_TMPDIR"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut api = Command::new(format!("{}/cargo-lambda", cargo_lambda_dir()));
    api.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", cargo_lambda_path())
        .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log.try_clone().unwrap()));
    let _api = Watch(api.spawn().expect("start cargo lambda watch"));
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "cargo lambda watch did not start; see {log_path}");
        std::thread::sleep(Duration::from_millis(200));
    }
    function.env_clear();
    for (k, v) in [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        // What `cargo lambda watch --only-lambda-apis` says to set ("_" is its default function).
        ("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt")),
        ("AWS_LAMBDA_FUNCTION_NAME", "_".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
        ("DB_SECRET_ARN", arn.clone()),
        ("PGSSLMODE", "disable".into()),
        ("ARCHIVE_BUCKET", env.bucket.clone()),
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        // March (60,000 trades, ~5 MiB of heap) is archived in 1 MiB chunks.
        ("ARCHIVE_CHUNK_SIZE", "1MiB".into()),
    ] {
        function.env(k, v);
    }
    function.stdout(Stdio::from(log.try_clone().unwrap())).stderr(Stdio::from(log));
    let _function = Watch(function.spawn().expect("start the function"));

    // The fan-out state machine's Prepare: chunks planned, one unit each; then every unit.
    let prepare = serde_json::json!({"action": "maintain", "fan_out": true, "now": rfc3339(today)});
    let (ok, out) = invoke(port, &prepare.to_string());
    assert!(ok, "{out}\nlog: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let prepared: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(prepared["complete"], false, "{prepared}");
    let units = prepared["units"].as_array().unwrap().clone();
    assert!(units.len() >= 3, "{prepared}");
    for unit in &units {
        assert_eq!(unit["partition"], partition.as_str(), "{unit}");
        let event = serde_json::json!({"action": "archive_chunk", "table": unit["table"], "partition": unit["partition"], "chunk": unit["chunk"]});
        let (ok, out) = invoke(port, &event.to_string());
        assert!(ok, "{out}");
        let done: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(done["outcome"], "uploaded", "{done}");
    }
    // (Other partitions due on some days are plans of one chunk: only this one's chunks count.)
    assert_eq!(
        env.scalar_i64(&format!(
            "SELECT count(*) FROM partition_archiver.archive_chunk WHERE state = 'uploaded' AND partition_name = '{partition}'"
        ))
        .await,
        units.len() as i64
    );

    // The EventBridge Scheduled Event runs maintain: it verifies and drops the month.
    let scheduled = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/events/scheduled.json")).unwrap();
    let (ok, out) = invoke(port, &scheduled);
    assert!(ok, "{out}\nlog: {}", std::fs::read_to_string(&log_path).unwrap_or_default());
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((report["action"].as_str(), report["ok"].as_bool()), (Some("maintain"), Some(true)), "{report}");
    let trade_steps = steps(&report, "public.trades");
    // (Prepare detached it; this run finishes the archive and drops it.)
    for s in [format!("archive public.{partition}"), format!("drop public.{partition}")] {
        assert!(trade_steps.contains(&s), "{trade_steps:?}");
    }
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(env.scalar_i64(&format!("SELECT count(*) FROM pg_tables WHERE tablename = '{partition}'")).await, 0);
    assert_eq!(
        env.scalar_text(&format!(
            "SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = '{partition}'"
        ))
        .await
        .as_deref(),
        Some("dropped")
    );
    let keys = env
        .db
        .query(
            "SELECT object_key FROM partition_archiver.archive_chunk WHERE state = 'uploaded' AND partition_name = $1",
            &[&partition],
        )
        .await
        .unwrap();
    assert_eq!(keys.len(), units.len());
    for k in keys {
        let key: String = k.get(0);
        assert!(key.ends_with(".parquet"), "{key}");
        s3().await.head_object().bucket(&env.bucket).key(&key).send().await.expect("every chunk object exists");
    }

    // The restore event brings the month back, identical.
    let restore = serde_json::json!({"action": "restore", "table": "public.trades", "partition": partition, "into_schema": "restored"});
    let (ok, out) = invoke(port, &restore.to_string());
    assert!(ok, "{out}");
    let restored =
        env.scalar_text(&format!("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM restored.{partition} t")).await;
    assert_eq!(restored, original);

    // A malformed event is a typed, non-retryable error.
    let (ok, out) = invoke(port, r#"{"action": "explode"}"#);
    assert!(!ok && out.contains("InvalidInput") && out.contains("unknown variant"), "{out}");
}
