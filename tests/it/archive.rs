//! The archive round trip against real PostgreSQL and LocalStack S3: archive, verify, drop,
//! restore; crashes at every state transition; concurrent runs; S3 down; corrupt objects.

use crate::harness::*;

pub(crate) const NOW: &str = "2026-11-24T10:00:00Z";

/// Orders in March and April 2026 with hostile values: NULLs, quotes, commas, newlines, unicode,
/// extreme numerics. Creates the partitions first (as a run in March would have).
pub(crate) async fn seed(env: &TestEnv) {
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z"], &[("ARCHIVE_BUCKET", "")]));
    env.db
        .batch_execute(
            r#"INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, filled_quantity, created_at, updated_at)
               SELECT g % 101,
                      CASE g % 6 WHEN 0 THEN 'BTC-USD' WHEN 1 THEN 'quote"d,comma' WHEN 2 THEN E'new\nline' WHEN 3 THEN 'ünï©ødé 🚀' WHEN 4 THEN '' ELSE E'back\\slash' END,
                      CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, 'limit', 'filled',
                      CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN 99999999999999999999.999999999999999999 ELSE g * 0.000000000000000001 END,
                      1 + g % 5, 0,
                      timestamptz '2026-03-01 00:00:00+00' + (g * interval '7 minutes'), now()
                 FROM generate_series(1, 12000) g;
               INSERT INTO public.trades (order_id, user_id, symbol, side, price, quantity, fee, created_at)
               SELECT g, g % 7, 'ETH-USD', 'sell', 1.25, 2, 0.001, timestamptz '2026-03-15 00:00:00+00' + (g * interval '1 minute')
                 FROM generate_series(1, 3000) g;"#,
        )
        .await
        .unwrap();
}

pub(crate) const ORDERS_SUM: &str =
    "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.orders t WHERE created_at < '2026-05-01'";

#[tokio::test]
async fn archive_drop_and_restore_round_trip_keeps_every_value() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    let original_rows = env.scalar_i64("SELECT count(*) FROM public.orders WHERE created_at < '2026-05-01'").await;
    let (out, report) = env.json(&["maintain", "--now", NOW], &[]);
    ok(&out);
    let orders_steps = steps(&report, "public.orders");
    for p in ["orders_2026_03", "orders_2026_04"] {
        for s in ["detach", "archive", "drop"] {
            assert!(orders_steps.contains(&format!("{s} public.{p}")), "{orders_steps:?}");
        }
    }
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.orders WHERE created_at < '2026-05-01'").await, 0);
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await,
        4,
        "March and April of both tables (a run in March created Mar, Apr, May); the cutoff is May 1st"
    );
    // Objects and manifests are in S3 under Hive-style keys.
    let listed = s3()
        .await
        .list_objects_v2()
        .bucket(&env.bucket)
        .prefix("partition-archiver/public.orders/year=2026/month=03/")
        .send()
        .await
        .unwrap();
    // Only data in a month's folder (query engines read every object there); the manifest sits in
    // the table's `_manifests` folder.
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["partition-archiver/public.orders/year=2026/month=03/orders_2026_03.csv.zst"]);
    let manifest = s3()
        .await
        .head_object()
        .bucket(&env.bucket)
        .key("partition-archiver/public.orders/_manifests/year=2026/month=03/orders_2026_03.manifest.json")
        .send()
        .await;
    assert!(manifest.is_ok(), "{manifest:?}");
    // verify re-reads every object.
    let (out, v) = env.json(&["verify"], &[]);
    ok(&out);
    // The bucket alone says what there is to restore (no database: nothing listens on port 9),
    // the same archives as the database's records.
    let (out, from_bucket) =
        env.json(&["list", "--from-bucket", "--table", "orders"], &[("DATABASE_URL", "postgres://x@127.0.0.1:9/none")]);
    ok(&out);
    let (out, from_db) = env.json(&["list", "--table", "orders"], &[]);
    ok(&out);
    let summary = |v: &serde_json::Value| -> Vec<(String, String, i64)> {
        v["archives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["partition_name"].as_str().unwrap().to_string(),
                    a["sha256"].to_string(),
                    a["row_count"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&from_bucket).len(), 2, "{from_bucket}");
    assert_eq!(summary(&from_bucket), summary(&from_db));
    assert!(from_bucket["source"].as_str().unwrap().starts_with(&format!("s3://{}/", env.bucket)), "{from_bucket}");
    assert!(v["archives"].as_array().unwrap().iter().all(|a| a["ok"] == true), "{v}");
    // Restore both months into another schema: the rows are identical.
    for p in ["orders_2026_03", "orders_2026_04"] {
        let (out, v) =
            env.json(&["restore", "--table", "public.orders", "--partition", p, "--into-schema", "restored"], &[]);
        ok(&out);
        assert_eq!(v["restore"]["restored_as"], format!("restored.{p}"));
    }
    let restored = env
        .scalar_text("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM (SELECT * FROM restored.orders_2026_03 UNION ALL SELECT * FROM restored.orders_2026_04) t")
        .await;
    assert_eq!(restored, original);
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM restored.orders_2026_03").await
            + env.scalar_i64("SELECT count(*) FROM restored.orders_2026_04").await,
        original_rows
    );
    // Twice is a clear error, not duplicates.
    let (out, v) = env.json(
        &["restore", "--table", "public.orders", "--partition", "orders_2026_03", "--into-schema", "restored"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(v.to_string().contains("already restored"), "{v}");
    // --attach puts a month back under its parent.
    let (out, v) = env.json(&["restore", "--table", "public.orders", "--partition", "orders_2026_04", "--attach"], &[]);
    ok(&out);
    assert_eq!(v["restore"]["attached"], true, "{v}");
    assert!(env.names("public.orders").await.contains(&"orders_2026_04".to_string()));
    // The next run does not archive the restored month again (that would replace its archive):
    // it stays attached, with a warning, and the object keeps its single version.
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    ok(&out);
    assert!(report.to_string().contains("was already archived (state dropped): not archived again"), "{report}");
    assert!(env.names("public.orders").await.contains(&"orders_2026_04".to_string()));
    let versions = s3()
        .await
        .list_object_versions()
        .bucket(&env.bucket)
        .prefix("partition-archiver/public.orders/year=2026/month=04/orders_2026_04.csv")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1);
    assert_eq!(env.multipart_uploads().await, 0);
}

/// `restore --attach` into a parent whose columns changed since the archive (issue 20's case: a
/// column added with a default, one dropped, and a type widened). Without `--drop-columns` it is
/// refused before anything is loaded (exit 2), naming the column; with it, the table follows the
/// parent and is attached. An attach that fails at ATTACH exits 1 and leaves the table restored
/// exactly as archived. A `--drop-columns` the archive does not have changes nothing.
#[tokio::test]
async fn restore_attach_follows_the_parents_columns_where_no_value_is_lost() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let march = |from: &str, cols: &str| {
        format!("SELECT count(*) || ':' || md5(string_agg(({cols})::text, '|' ORDER BY id)) FROM {from} WHERE created_at < '2026-04-01'")
    };
    let as_archived = env.scalar_text(&march("public.trades", "id, order_id, price, quantity, fee, created_at")).await;
    let kept = env.scalar_text(&march("public.trades", "id, order_id, price, quantity, created_at")).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "trades"], &[]));
    env.db
        .batch_execute(
            "ALTER TABLE public.trades ADD COLUMN venue text NOT NULL DEFAULT 'XNAS';
             ALTER TABLE public.trades DROP COLUMN fee;
             ALTER TABLE public.trades ALTER COLUMN price TYPE numeric",
        )
        .await
        .unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--table", "trades", "--partition", "trades_2026_03", "--into-schema", "back"];
        args.extend_from_slice(extra);
        env.json(&args, &[])
    };

    // Bad input: a column the archive does not have. Nothing changes.
    let before = env.fingerprint().await;
    let (out, v) = restore(&["--attach", "--drop-columns", "fees"]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("--drop-columns names fees"), "{v}");
    assert_eq!(env.fingerprint().await, before);
    // And --drop-columns without --attach is refused by the command line itself.
    let out = env.run(&["restore", "--table", "trades", "--partition", "trades_2026_03", "--drop-columns", "fee"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(env.fingerprint().await, before);

    // fee is gone from the parent and not named: refused before anything is loaded (a restore of
    // hundreds of GB is not made to be thrown away), fee and --drop-columns named.
    let (out, v) = restore(&["--attach"]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    let why = v["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("column fee is no longer in the parent") && why.contains("--drop-columns"), "{v}");
    assert_eq!(env.fingerprint().await, before);

    // An attach that fails at ATTACH itself (March's range taken meanwhile): exit 1, the reason in
    // the report, and the table left in its restore schema exactly as archived: the reshape
    // (fee dropped, venue added) rolled back with the attach.
    env.db
        .batch_execute("CREATE TABLE public.trades_squatter PARTITION OF public.trades FOR VALUES FROM ('2026-03-10') TO ('2026-03-11')")
        .await
        .unwrap();
    let (out, v) = restore(&["--attach", "--drop-columns", "fee"]);
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!((v["ok"].as_bool(), v["restore"]["attached"].as_bool()), (Some(false), Some(false)), "{v}");
    assert!(v["restore"]["not_attached_because"].as_str().unwrap_or_default().contains("overlap"), "{v}");
    assert!(!env.names("public.trades").await.contains(&"trades_2026_03".to_string()));
    assert_eq!(
        env.scalar_text(&march("back.trades_2026_03", "id, order_id, price, quantity, fee, created_at")).await,
        as_archived
    );
    // Restoring it again without --attach is refused; with --attach, once the range is free, the
    // table already restored is attached as it is (the same table: nothing loaded again).
    let (out, v) = restore(&[]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("`--attach` attaches it"), "{v}");
    let oid = "SELECT 'back.trades_2026_03'::regclass::oid::bigint";
    let restored_oid = env.scalar_i64(oid).await;
    env.db.batch_execute("DROP TABLE public.trades_squatter").await.unwrap();
    // A fan-out (`RestoreStateMachine`) plans no unit to load for it and changes nothing; its
    // final step, the whole restore below, attaches.
    let (out, v) = restore(&["--fan-out", "--attach", "--drop-columns", "fee"]);
    ok(&out);
    assert_eq!(
        (v["restore"]["complete"].as_bool(), v["restore"]["units"].clone()),
        (Some(false), serde_json::json!([])),
        "{v}"
    );
    assert_eq!(env.scalar_i64(oid).await, restored_oid);
    assert!(!env.names("public.trades").await.contains(&"trades_2026_03".to_string()));

    // Named: dropped from the restored table, venue added with the parent's default, price
    // widened to the parent's numeric; attached, every kept value as it was.
    let (out, v) = restore(&["--attach", "--drop-columns", "fee"]);
    ok(&out);
    assert_eq!(v["restore"]["attached"], true, "{v}");
    assert_eq!(env.scalar_i64(oid).await, restored_oid, "the table restored before, attached");
    let comment = "SELECT obj_description('back.trades_2026_03'::regclass, 'pg_class')";
    assert_eq!(env.scalar_text(comment).await, None, "attached, it is no longer marked as a restore to attach");
    assert_eq!(v["restore"]["complete"], true, "{v}");
    assert_eq!(
        v["restore"]["reshaped"],
        serde_json::json!([
            "changed column price from numeric(38,18) to numeric",
            "dropped column fee (the archive keeps it)",
            "added column venue (default 'XNAS'::text)"
        ]),
        "{v}"
    );
    assert!(env.names("public.trades").await.contains(&"trades_2026_03".to_string()));
    assert_eq!(env.scalar_text(&march("public.trades", "id, order_id, price, quantity, created_at")).await, kept);
    let rows = env.scalar_i64("SELECT count(*) FROM public.trades WHERE created_at < '2026-04-01'").await;
    assert!(rows > 0);
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM public.trades WHERE created_at < '2026-04-01' AND venue = 'XNAS'").await,
        rows
    );
    // Attached, it is restored for good: a third restore is refused.
    let (out, v) = restore(&["--attach", "--drop-columns", "fee"]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("already exists"), "{v}");
}

#[tokio::test]
async fn binary_format_and_gzip_round_trip() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let sum = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.trades t WHERE created_at < '2026-05-01'";
    let original = env.scalar_text(sum).await;
    ok(&env.run(
        &["maintain", "--now", NOW, "--table", "trades"],
        &[("ARCHIVE_FORMAT", "binary"), ("ARCHIVE_COMPRESSION", "gzip")],
    ));
    let key = env
        .scalar_text(
            "SELECT object_key FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'",
        )
        .await
        .unwrap();
    assert!(key.ends_with("trades_2026_03.pgcopy.gz"), "{key}");
    ok(&env.run(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]));
    let restored =
        env.scalar_text("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM archive_restore.trades_2026_03 t").await;
    assert_eq!(restored, original);
}

/// After a clean run: every archived partition is dropped and gone from the catalog, nothing is
/// left mid-way, no multipart upload is open.
pub(crate) async fn assert_consistent(env: &TestEnv) {
    let rows = env
        .db
        .query("SELECT partition_schema, partition_name, state FROM partition_archiver.archive_manifest", &[])
        .await
        .unwrap();
    for r in rows {
        let (schema, name, state): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(state, "dropped", "{schema}.{name} left in state {state}");
        let exists = env
            .scalar_i64(&format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}' AND tablename = '{name}'"
            ))
            .await;
        assert_eq!(exists, 0, "{schema}.{name} is dropped in the manifest but still exists");
    }
    assert_eq!(env.multipart_uploads().await, 0, "orphaned multipart upload");
}

/// md5 over the rows of March 2026 of `orders` (`None`), or of a restored month, ordered by id.
pub(crate) async fn march_sum(env: &TestEnv, restored: Option<&str>) -> Option<String> {
    let march = "(SELECT * FROM public.orders WHERE created_at >= '2026-03-01' AND created_at < '2026-04-01')";
    let from = restored.unwrap_or(march);
    env.scalar_text(&format!("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {from} t")).await
}

/// The orders of the months that get archived, taken before an attack.
pub(crate) struct OrdersBefore {
    sum: Option<String>,
    rows: i64,
}

impl OrdersBefore {
    pub(crate) async fn take(env: &TestEnv) -> Self {
        Self {
            sum: env.scalar_text(ORDERS_SUM).await,
            rows: env.scalar_i64("SELECT count(*) FROM public.orders WHERE created_at < '2026-05-01'").await,
        }
    }

    /// md5 over the rows of March and April (`ORDERS_SUM`), to compare restores with.
    pub(crate) fn sum_of_months(&self) -> Option<String> {
        self.sum.clone()
    }

    /// `assert_no_row_lost` against these rows.
    pub(crate) async fn assert_none_lost(&self, env: &TestEnv) {
        assert_no_row_lost(env, &self.sum, self.rows).await;
    }
}

/// Runs `maintain` of orders with the fault point `point` armed: the process must die there (exit
/// 86). Returns once the killed run's sessions are gone.
pub(crate) async fn crash_at(env: &TestEnv, point: &str) {
    let out = env.run(&["maintain", "--now", NOW, "--table", "orders"], &[("PARTITION_ARCHIVER_FAILPOINTS", point)]);
    assert_eq!(
        out.status.code(),
        Some(86),
        "{point}: the run should die at the fault point: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.wait_for_orphaned_backends().await;
}

/// The first orders partition whose archive is in `state`, as `schema.name`.
pub(crate) async fn partition_in_state(env: &TestEnv, state: &str) -> String {
    env.scalar_text(&format!(
        "SELECT min(partition_schema || '.' || partition_name) FROM partition_archiver.archive_manifest WHERE state = '{state}'"
    ))
    .await
    .unwrap_or_else(|| panic!("no partition in state {state}"))
}

/// Seeded orders whose first archive the run left `verified` (killed just before the DROP): the
/// environment and the partition, as `schema.name`.
async fn verified_before_drop(env: TestEnv) -> (TestEnv, String) {
    seed(&env).await;
    crash_at(&env, "after_verify").await;
    let table = partition_in_state(&env, "verified").await;
    (env, table)
}

/// The next `maintain` refuses to drop `table` (it may hold rows its archive does not), saying so,
/// and leaves every row of it in place.
async fn assert_drop_refused(env: &TestEnv, table: &str, what: &str) {
    let rows = env.scalar_i64(&format!("SELECT count(*) FROM {table}")).await;
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    assert!(!out.status.success(), "{what}: {report}");
    assert!(report.to_string().contains("not dropped"), "{what}: {report}");
    assert_eq!(env.scalar_i64(&format!("SELECT count(*) FROM {table}")).await, rows, "{what}: still there, whole");
}

/// A clean `maintain` of orders after an attack: it succeeds and leaves everything consistent.
pub(crate) async fn next_run_completes(env: &TestEnv) {
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    assert!(out.status.success(), "the run after the attack must succeed: {report}");
    assert_consistent(env).await;
}

/// The invariant on the data itself: rows still in PostgreSQL plus rows in verified archives equal
/// the original rows, none lost, none twice.
pub(crate) async fn assert_no_row_lost(env: &TestEnv, original: &Option<String>, original_rows: i64) {
    let archived: Vec<String> = env
        .db
        .query("SELECT partition_name FROM partition_archiver.archive_manifest WHERE table_name = 'orders' AND state IN ('verified', 'dropped', 'moved') ORDER BY 1", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let schema = unique("check_");
    let mut parts = vec!["SELECT * FROM public.orders WHERE created_at < '2026-05-01'".to_string()];
    for p in &archived {
        ok(&env.run(&["restore", "--table", "orders", "--partition", p, "--into-schema", &schema], &[]));
        // A verified archive whose table still exists (not yet dropped) holds the same rows twice: count each once.
        let still_here = env
            .scalar_i64(&format!("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = '{p}'"))
            .await;
        if still_here == 0 {
            parts.push(format!("SELECT * FROM {schema}.{p}"));
        }
    }
    let detached: Vec<String> = env
        .db
        .query("SELECT partition_name FROM partition_archiver.archive_manifest WHERE table_name = 'orders' AND partition_schema = 'public' AND state NOT IN ('dropped', 'moved')", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    for p in detached {
        parts.push(format!("SELECT * FROM public.{p}"));
    }
    let union = parts.join(" UNION ALL ");
    assert_eq!(
        env.scalar_i64(&format!("SELECT count(*) FROM ({union}) t")).await,
        original_rows,
        "rows lost or duplicated"
    );
    assert_eq!(
        &env.scalar_text(&format!("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM ({union}) t")).await,
        original
    );
    env.db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
}

#[tokio::test]
async fn a_crash_at_any_step_is_completed_by_the_next_run() {
    for point in crate::reliability::LIFECYCLE_POINTS {
        let env = TestEnv::migrated_at(NOW).await;
        seed(&env).await;
        let before = OrdersBefore::take(&env).await;
        crash_at(&env, point).await;
        before.assert_none_lost(&env).await;
        // The second run finishes every partition and leaves no orphaned multipart upload.
        next_run_completes(&env).await;
        before.assert_none_lost(&env).await;
        // And a third run has nothing to do.
        let (_, again) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
        assert!(steps(&again, "public.orders").is_empty(), "{point}: {again}");
    }
}

#[tokio::test]
async fn concurrent_runs_archive_each_partition_exactly_once() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let mut cmd = env.command(&["maintain", "--now", NOW], &[]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outs.iter().all(|o| o.status.code() == Some(0)), "every run ends cleanly (done or already running)");
    let archived_by_runs: usize = outs
        .iter()
        .map(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap())
        .flat_map(|r| r["tables"].as_array().unwrap().clone())
        .flat_map(|t| t["steps"].as_array().unwrap().clone())
        .filter(|s| s["step"] == "archive" && s["outcome"] == "done")
        .count();
    assert_eq!(
        archived_by_runs as i64,
        env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest").await,
        "each partition archived by exactly one run"
    );
    // Exactly one object version per archive: nothing was uploaded twice.
    let versions = s3().await.list_object_versions().bucket(&env.bucket).send().await.unwrap();
    let data_versions =
        versions.versions().iter().filter(|v| !v.key().unwrap_or_default().ends_with(".manifest.json")).count();
    assert_eq!(data_versions as i64, env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest").await);
    before.assert_none_lost(&env).await;
}

#[tokio::test]
async fn s3_down_mid_run_drops_nothing_and_the_next_run_succeeds() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    // Nothing listens on port 9 of loopback.
    let (out, report) = env.json(
        &["maintain", "--now", NOW, "--table", "orders"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9"), ("AWS_MAX_ATTEMPTS", "2")],
    );
    assert_eq!(out.status.code(), Some(3), "S3 unreachable: transient, run again");
    assert!(report.to_string().contains("multipart upload"), "{report}");
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await,
        0
    );
    before.assert_none_lost(&env).await;
    next_run_completes(&env).await;
    before.assert_none_lost(&env).await;
}

#[tokio::test]
async fn s3_failing_mid_upload_aborts_the_upload_and_drops_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    let (out, report) = env.json(
        &["maintain", "--now", NOW, "--table", "orders"],
        &[("PARTITION_ARCHIVER_FAILPOINTS", "upload_part=error")],
    );
    assert_eq!(out.status.code(), Some(3), "a failed upload: transient, run again");
    assert!(report.to_string().contains("injected fault: upload_part failed"), "{report}");
    assert_eq!(env.multipart_uploads().await, 0, "the failed upload was aborted");
    assert_eq!(
        env.scalar_i64(
            "SELECT count(*) FROM partition_archiver.archive_manifest WHERE state IN ('verified', 'dropped')"
        )
        .await,
        0
    );
    let last_error = env
        .scalar_text(
            "SELECT last_error FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'",
        )
        .await;
    assert!(last_error.unwrap_or_default().contains("injected fault"), "the error is recorded on the manifest row");
    before.assert_none_lost(&env).await;
    next_run_completes(&env).await;
    before.assert_none_lost(&env).await;
}

#[tokio::test]
async fn corrupt_truncated_or_foreign_objects_and_edited_manifests_are_refused() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "trades"], &[]));
    let key = env
        .scalar_text(
            "SELECT object_key FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'",
        )
        .await
        .unwrap();
    let s3 = s3().await;
    let good =
        s3.get_object().bucket(&env.bucket).key(&key).send().await.unwrap().body.collect().await.unwrap().into_bytes();
    let mut flipped = good.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let foreign = b"id,name\n1,not an archive\n".to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // zstd's frame checksum or our SHA-256 catches it, whichever reads it first.
        ("bit flip", flipped, "\"kind\":\"integrity\""),
        ("truncated", good[..good.len() / 2].to_vec(), "nothing was kept"),
        ("foreign", foreign, "nothing was kept"),
    ];
    for (what, body, needle) in cases {
        // Overwrite the object and point the manifest at the new version (as a hand edit would).
        let put = s3.put_object().bucket(&env.bucket).key(&key).body(body.into()).send().await.unwrap();
        let version = put.version_id.unwrap();
        env.edit_archive_record("trades_2026_03", &format!("version_id = '{version}'")).await;
        let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
        assert_ne!(out.status.code(), Some(0), "{what}");
        assert!(v.to_string().contains(needle), "{what}: {v}");
        assert_eq!(
            env.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'archive_restore'").await,
            0,
            "{what}: nothing left behind"
        );
        let (_, ver) = env.json(&["verify", "--table", "trades"], &[]);
        assert!(
            ver["archives"].as_array().unwrap().iter().any(|a| a["ok"] == false),
            "{what}: verify must flag it: {ver}"
        );
    }
    // A manifest edited by hand to smuggle SQL into a column type.
    env.db
        .batch_execute("UPDATE partition_archiver.archive_manifest SET columns = '[{\"name\":\"id\",\"type\":\"int); DROP TABLE public.orders; --\"}]' WHERE partition_name = 'trades_2026_03'")
        .await
        .unwrap();
    let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(v.to_string().contains("invalid type"), "{v}");
    assert!(env.scalar_i64("SELECT count(*) FROM pg_class WHERE relname = 'orders'").await == 1);
    // A manifest swapped, consistently, to another table's archive (checksums, size, rows): refused
    // by its key before anything is read.
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    for table in ["archive_manifest", "archive_chunk"] {
        env.db
            .batch_execute(&format!(
                "UPDATE partition_archiver.{table} t
                    SET (object_key, version_id, sha256, row_count, compressed_bytes, checksum_composite) =
                        (SELECT o.object_key, o.version_id, o.sha256, o.row_count, o.compressed_bytes, o.checksum_composite
                           FROM partition_archiver.{table} o WHERE o.partition_name = 'orders_2026_03')
                  WHERE t.partition_name = 'trades_2026_03'"
            ))
            .await
            .unwrap();
    }
    let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert!(v.to_string().contains("which is not an archive of public.trades trades_2026_03"), "{v}");
}

/// Before a detached partition is copied it is frozen: a write into it by name (the only way left
/// to reach it) is refused, so the table that is finally dropped holds exactly the archived rows.
#[tokio::test]
async fn a_partition_is_frozen_before_it_is_copied_and_writes_to_it_are_refused() {
    // Frozen already when the upload is created (before the COPY), and still when verified.
    for (point, state) in [("after_create_upload", "uploading"), ("after_verify", "verified")] {
        let env = TestEnv::migrated_at(NOW).await;
        seed(&env).await;
        crash_at(&env, point).await;
        assert_frozen_then_completed(&env, state).await;
    }
}

async fn assert_frozen_then_completed(env: &TestEnv, state: &str) {
    let verified = partition_in_state(env, state).await;
    for write in [
        format!("INSERT INTO {verified} SELECT * FROM {verified} LIMIT 1"),
        format!("UPDATE {verified} SET status = 'cancelled'"),
        format!("DELETE FROM {verified}"),
        format!("TRUNCATE {verified}"),
    ] {
        let err = env.db.batch_execute(&write).await.expect_err(&write);
        let db = err.as_db_error().unwrap_or_else(|| panic!("{write}: {err}"));
        assert!(db.message().contains("writes are refused"), "{write}: {}", db.message());
    }
    next_run_completes(env).await;
}

/// The last check before a DROP: a table that gained rows after its archive was verified (here the
/// freeze trigger was dropped by hand and a row written) is not dropped, and says why.
#[tokio::test]
async fn a_verified_partition_that_gained_rows_is_not_dropped() {
    let (env, table) = verified_before_drop(TestEnv::migrated_at(NOW).await).await;
    env.db
        .batch_execute(&format!(
            "SELECT partition_archiver.unfreeze('{table}');
             INSERT INTO {table} (id, user_id, symbol, side, type, status, quantity, created_at)
             SELECT id + 10000000, user_id, symbol, side, type, status, quantity, created_at FROM {table} ORDER BY id LIMIT 1"
        ))
        .await
        .unwrap();
    assert_drop_refused(&env, &table, "a row written with the freeze trigger dropped by hand").await;
}

/// The freeze is the proof the DROP reads. Both freeze triggers fire for every session (ALWAYS,
/// replica mode included), the row trigger on its own too (for writers no statement trigger
/// sees). A freeze changed after the first COPY no longer proves anything, whatever was restored
/// after the change: the DROP falls back to counting the table, which holds a row its archive does
/// not, and refuses.
#[tokio::test]
async fn a_freeze_changed_after_the_first_copy_makes_the_drop_count_and_refuse() {
    const ROW: &str = "(id, user_id, symbol, side, type, status, quantity, created_at)
        SELECT id + 10000000, user_id, symbol, side, type, status, quantity, created_at FROM public.orders_2026_03 ORDER BY id LIMIT 1";
    let scenarios = [
        (
            "disabled for a write, then enabled again as it was",
            format!(
                "ALTER TABLE {{t}} DISABLE TRIGGER USER; INSERT INTO {{t}} {ROW};
                 ALTER TABLE {{t}} ENABLE ALWAYS TRIGGER partition_archiver_frozen;
                 ALTER TABLE {{t}} ENABLE ALWAYS TRIGGER partition_archiver_frozen_rows;"
            ),
        ),
        (
            "attached again, written through its parent, detached again",
            format!(
                "ALTER TABLE public.orders ATTACH PARTITION {{t}} FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00');
                 INSERT INTO public.orders {ROW};
                 ALTER TABLE public.orders DETACH PARTITION {{t}};"
            ),
        ),
    ];
    for (what, change) in scenarios {
        let (env, table) = verified_before_drop(TestEnv::migrated_at(NOW).await).await;
        let mark_sql = format!(
            "SELECT m.frozen_by || '|' || coalesce(partition_archiver.freeze_mark('{table}'::regclass), 'none')
               FROM partition_archiver.archive_manifest m WHERE m.partition_name = 'orders_2026_03'"
        );
        let marks = env.scalar_text(&mark_sql).await.unwrap();
        let (recorded, now) = marks.split_once('|').unwrap();
        assert_eq!(recorded, now, "recorded at the first freeze, untouched since");
        for (who, write) in [
            ("a replica-mode session", "SET session_replication_role = replica; DELETE FROM {t}"),
            ("the row trigger alone", "ALTER TABLE {t} DISABLE TRIGGER partition_archiver_frozen; DELETE FROM {t}"),
        ] {
            let err = env.db.batch_execute(&format!("BEGIN; {}", write.replace("{t}", &table))).await.expect_err(who);
            assert!(err.as_db_error().unwrap().message().contains("writes are refused"), "{who}: {err}");
            env.db.batch_execute("ROLLBACK; SET session_replication_role = origin").await.unwrap();
        }
        assert_eq!(env.scalar_text(&mark_sql).await.unwrap(), marks, "refused writes change nothing");
        env.db.batch_execute(&change.replace("{t}", &table)).await.unwrap();
        let after = env.scalar_text(&mark_sql).await.unwrap();
        assert_ne!(after.split_once('|').unwrap().1, recorded, "{what}: the mark changed: {after}");
        assert_drop_refused(&env, &table, what).await;
    }
}

/// A `DETACH ... CONCURRENTLY` that a killed run left for the next one to finalize leaves the row
/// `detaching` with the table detached: its archive still starts with nothing copied, so the
/// freeze records its proof (not 'unproven', which would make the DROP count the whole table).
#[tokio::test]
async fn an_archive_that_starts_from_detaching_records_the_freeze_proof() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    crash_at(&env, "after_detach").await;
    let table = partition_in_state(&env, "detached").await;
    let name = table.split_once('.').unwrap().1.to_string();
    env.db
        .batch_execute(&format!(
            "UPDATE partition_archiver.archive_manifest SET state = 'detaching' WHERE partition_name = '{name}'"
        ))
        .await
        .unwrap();
    next_run_completes(&env).await;
    let proof = env
        .scalar_text(&format!(
            "SELECT state || ' ' || frozen_by FROM partition_archiver.archive_manifest WHERE partition_name = '{name}'"
        ))
        .await
        .unwrap();
    let (state, frozen_by) = proof.split_once(' ').unwrap();
    assert_eq!(state, "dropped");
    assert!(frozen_by != "unproven" && frozen_by.contains('/'), "a freeze mark: {proof}");
}

/// A partition moved to the historical schema stays frozen, and foreign-key actions still reach it
/// (the application's writes do not fail); their writes are no longer recorded: no DROP follows.
#[tokio::test]
async fn trigger_writes_into_a_moved_partition_pass_and_are_not_recorded() {
    let env = with_accounts(TestEnv::migrated_at(NOW).await, "ON UPDATE CASCADE").await;
    seed(&env).await;
    env.db
        .batch_execute(
            "UPDATE partition_archiver.part_config SET retention_action = 'archive_move', historical_schema = 'hist'
              WHERE table_name = 'orders'",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    let moved = "hist.orders_2026_03";
    let state = "SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'";
    assert_eq!(env.scalar_text(state).await.as_deref(), Some("moved"));
    let rows = env.scalar_i64(&format!("SELECT count(*) FROM {moved} WHERE user_id = 5")).await;
    assert!(rows > 0);
    env.db.batch_execute("UPDATE public.accounts SET id = 500 WHERE id = 5").await.unwrap();
    assert_eq!(env.scalar_i64(&format!("SELECT count(*) FROM {moved} WHERE user_id = 500")).await, rows);
    assert_eq!(env.scalar_i64("SELECT count(*) FROM partition_archiver.frozen_writes").await, 0);
    // A write by name is still refused.
    let err = env.db.batch_execute(&format!("DELETE FROM {moved}")).await.expect_err("frozen");
    assert!(err.as_db_error().unwrap().message().contains("writes are refused"), "{err}");
}

/// With the recorded trigger in place the DROP's check reads that catalog row only: asked to
/// expect no rows at all of a table full of them, it still passes (it did not count), and with any
/// other record it counts and refuses.
#[tokio::test]
async fn the_drop_check_reads_the_freeze_record_and_counts_only_without_it() {
    let (env, table) = verified_before_drop(TestEnv::migrated_at(NOW).await).await;
    assert!(env.scalar_i64(&format!("SELECT count(*) FROM {table}")).await > 0);
    // (frozen_by, rows written by triggers when the chunk plan was made)
    let check = |frozen_by: &str, writes: &str| {
        format!("SELECT partition_archiver.require_unchanged('{table}'::regclass, 0, {frozen_by}, {writes})")
    };
    let mark = format!("partition_archiver.freeze_mark('{table}'::regclass)");
    for writes in ["0", "NULL"] {
        env.db.batch_execute(&check(&mark, writes)).await.unwrap();
    }
    // Another mark, or a count of trigger writes other than the plan's (a foreign-key action wrote
    // a row since): counted, and refused.
    for (frozen_by, writes) in [("NULL", "0"), ("'unproven'", "0"), ("'1:1'", "0"), (mark.as_str(), "1")] {
        let err = env.db.batch_execute(&check(frozen_by, writes)).await.expect_err(frozen_by);
        assert!(err.as_db_error().unwrap().message().contains("not dropped"), "{frozen_by}, {writes}: {err}");
    }
    // The run that drops it takes that path: told its archive holds one row fewer than the table
    // (which a count would refuse), it still drops the table, as nothing was written since the
    // freeze. (Only this test lies to it; the rows are all archived.)
    env.edit_archive_record("orders_2026_03", "row_count = row_count - 1").await;
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    assert!(out.status.success(), "{report}");
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'orders_2026_03'").await,
        0,
        "{report}"
    );
}

/// `env` whose orders reference `public.accounts` (ids 0 to 100) with the foreign-key `action`.
async fn with_accounts(env: TestEnv, action: &str) -> TestEnv {
    env.db
        .batch_execute(&format!(
            "CREATE TABLE public.accounts (id bigint PRIMARY KEY);
             INSERT INTO public.accounts SELECT generate_series(0, 100);
             ALTER TABLE public.orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (user_id)
               REFERENCES public.accounts (id) {action};"
        ))
        .await
        .unwrap();
    env
}

/// Foreign-key actions still reach a frozen table: deleting a referenced row cascades into it
/// (the application's DELETE does not fail), and the partition is then dropped as usual (it holds
/// fewer rows than its archive, never more).
#[tokio::test]
async fn foreign_key_cascades_pass_the_freeze_and_the_partition_is_still_dropped() {
    let (env, table) =
        verified_before_drop(with_accounts(TestEnv::migrated_at(NOW).await, "ON DELETE CASCADE").await).await;
    let before = env.scalar_i64(&format!("SELECT count(*) FROM {table} WHERE user_id = 5")).await;
    assert!(before > 0);
    env.db.batch_execute("DELETE FROM public.accounts WHERE id = 5").await.unwrap();
    assert_eq!(env.scalar_i64(&format!("SELECT count(*) FROM {table} WHERE user_id = 5")).await, 0, "cascaded");
    // A delete moves no row: it is not counted as a write that could (migration 20261207000001).
    let writes = format!("SELECT partition_archiver.frozen_writes_of('{table}'::regclass)");
    assert_eq!(env.scalar_i64(&writes).await, 0);
    next_run_completes(&env).await;
}

/// A foreign-key action that updates rows of a verified partition (ON UPDATE CASCADE) passes the
/// freeze and is recorded (once per transaction); the DROP then counts the table instead of
/// trusting the freeze alone (the archive holds every row, with its value before the update),
/// drops it, and forgets the record.
#[tokio::test]
async fn a_row_a_foreign_key_action_updates_after_the_archive_makes_the_drop_count() {
    let (env, table) =
        verified_before_drop(with_accounts(TestEnv::migrated_at(NOW).await, "ON UPDATE CASCADE").await).await;
    let updated = env.scalar_i64(&format!("SELECT count(*) FROM {table} WHERE user_id = 5")).await;
    assert!(updated > 0);
    env.db.batch_execute("UPDATE public.accounts SET id = 500 WHERE id = 5").await.unwrap();
    assert_eq!(env.scalar_i64(&format!("SELECT count(*) FROM {table} WHERE user_id = 500")).await, updated);
    let writes = format!("SELECT partition_archiver.frozen_writes_of('{table}'::regclass)");
    assert_eq!(env.scalar_i64(&writes).await, 1, "the transaction the action wrote rows in is recorded, once");
    env.db.batch_execute("UPDATE public.accounts SET id = 5 WHERE id = 500").await.unwrap();
    assert_eq!(env.scalar_i64(&writes).await, 2, "and the next one");
    // A transaction rolled back leaves no record (nor any row changed).
    env.db.batch_execute("BEGIN; UPDATE public.accounts SET id = 500 WHERE id = 5; ROLLBACK").await.unwrap();
    assert_eq!(env.scalar_i64(&writes).await, 2);
    // The freeze's catalog rows alone would have let it drop a table that (for all they say) holds
    // one row more than its archive; with a trigger's write since the plan, it counts and refuses.
    env.edit_archive_record("orders_2026_03", "row_count = row_count - 1").await;
    assert_drop_refused(&env, &table, "a trigger wrote rows since the plan").await;
    env.edit_archive_record("orders_2026_03", "row_count = row_count + 1").await;
    next_run_completes(&env).await;
    assert_eq!(env.scalar_i64("SELECT count(*) FROM partition_archiver.frozen_writes").await, 0);
}

/// Without a default partition the detach is CONCURRENTLY. When its wait for the queries begun
/// before it runs out of `lock_timeout`, the partition is left "detach pending", and the same
/// statement again is refused ("already pending"): the step finishes it with FINALIZE once the
/// query ends, instead of failing and holding the partition for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_concurrently_that_times_out_is_finalized_in_the_same_step() {
    let env = orders_without_default().await;
    let reader = connect(&env.url).await;
    reader.batch_execute("BEGIN; SELECT count(*) FROM public.orders").await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        reader.batch_execute("COMMIT").await.unwrap();
    });
    let vars = [("LOCK_TIMEOUT_MS", "500"), ("DDL_MAX_ATTEMPTS", "10")];
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &vars);
    release.await.unwrap();
    ok(&out);
    let steps = report["tables"][0]["steps"].as_array().unwrap();
    let first = steps.iter().find(|s| s["step"] == "detach").unwrap();
    assert_eq!((first["concurrently"].as_bool(), first["outcome"].as_str()), (Some(true), Some("done")), "{report}");
    assert!(first["attempts"].as_u64().unwrap() > 2, "it waited for the reader: {first}");
    assert!(steps.iter().all(|s| s["outcome"] == "done"), "{report}");
    assert_consistent(&env).await;
}

/// A seeded database whose orders table has no default partition (and gets none): its detaches
/// are CONCURRENTLY.
async fn orders_without_default() -> TestEnv {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.orders_default").await, 0);
    env.db
        .batch_execute(
            "DROP TABLE public.orders_default;
             UPDATE partition_archiver.part_config SET create_default = false WHERE table_name = 'orders'",
        )
        .await
        .unwrap();
    env
}

/// Someone else's `DETACH ... CONCURRENTLY` of a partition past retention, interrupted (here its
/// wait for an older query timed out), leaves it "detach pending" with no record of ours. The run
/// records it, finishes the detach with FINALIZE, and archives it as its own: finalized without a
/// record, it left the parent and every later plan, archived by nobody.
#[tokio::test]
async fn a_pending_detach_not_made_by_the_archiver_is_recorded_and_archived() {
    let env = orders_without_default().await;
    let march = |t: &str| format!("SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY id)) FROM {t} t");
    let before = env.scalar_text(&march("public.orders_2026_03")).await;
    let reader = connect(&env.url).await;
    reader.batch_execute("BEGIN; SELECT count(*) FROM public.orders").await.unwrap();
    env.db.batch_execute("SET lock_timeout = '200ms'").await.unwrap();
    let err = env
        .db
        .batch_execute("ALTER TABLE public.orders DETACH PARTITION public.orders_2026_03 CONCURRENTLY")
        .await
        .expect_err("the wait for the reader times out");
    assert!(err.to_string().contains("lock timeout") || format!("{err:?}").contains("55P03"), "{err:?}");
    env.db.batch_execute("RESET lock_timeout").await.unwrap();
    reader.batch_execute("COMMIT").await.unwrap();
    let pending =
        "SELECT count(*) FROM pg_inherits WHERE inhdetachpending AND inhrelid = 'public.orders_2026_03'::regclass";
    assert_eq!(env.scalar_i64(pending).await, 1);

    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    ok(&out);
    assert!(steps(&report, "public.orders").contains(&"detach public.orders_2026_03".to_string()), "{report}");
    assert_consistent(&env).await;
    ok(&env.run(&["restore", "--table", "orders", "--partition", "orders_2026_03"], &[]));
    assert_eq!(env.scalar_text(&march("archive_restore.orders_2026_03")).await, before);
}
