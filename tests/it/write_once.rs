//! Archives are write-once (invariant 7): no run, clone or second deployment ever replaces an
//! archive object or manifest. Two databases whose partitions have the same names archive to one
//! bucket and prefix, as a database and a clone of it (restored from a snapshot, same settings)
//! would.

use crate::archive::{seed, OrdersBefore, NOW};
use crate::harness::*;

/// Every object version in the bucket, by key.
async fn versions_by_key(bucket: &str) -> std::collections::BTreeMap<String, usize> {
    let out = s3().await.list_object_versions().bucket(bucket).send().await.unwrap();
    let mut by_key = std::collections::BTreeMap::new();
    for v in out.versions() {
        *by_key.entry(v.key().unwrap().to_string()).or_insert(0) += 1;
    }
    by_key
}

#[tokio::test]
async fn a_second_database_with_other_rows_is_refused_and_the_first_archive_stays_whole() {
    let first = TestEnv::migrated_at(NOW).await;
    seed(&first).await;
    let second = TestEnv::migrated_at(NOW).await;
    seed(&second).await;
    // The second database's months differ from the first's by one value each.
    second
        .db
        .batch_execute(
            "UPDATE public.orders SET quantity = quantity + 1000
              WHERE id IN (SELECT min(id) FROM public.orders GROUP BY date_trunc('month', created_at))",
        )
        .await
        .unwrap();
    let first_rows = OrdersBefore::take(&first).await;
    let second_rows = OrdersBefore::take(&second).await;
    let shared = [("ARCHIVE_BUCKET", first.bucket.as_str())];

    ok(&first.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    let archived = versions_by_key(&first.bucket).await;
    assert!(archived.len() >= 4, "two months, each an object and a manifest: {archived:?}");

    let (out, report) = second.json(&["maintain", "--now", NOW, "--table", "orders"], &shared);
    assert!(!out.status.success(), "the second database's run must fail: {report}");
    let text = report.to_string();
    assert!(text.contains("already holds another archive"), "{report}");
    assert!(text.contains("nothing is dropped"), "{report}");
    assert!(text.contains("ARCHIVE_PREFIX"), "the error says what to do: {report}");

    // Nothing was replaced: every key still has exactly its one version.
    let after = versions_by_key(&first.bucket).await;
    assert_eq!(after, archived, "an archive object or manifest was written again");
    assert!(after.values().all(|&n| n == 1), "{after:?}");
    // The second database keeps every row (detached, frozen, recorded as not archived)...
    assert_eq!(
        second
            .scalar_i64(
                "SELECT count(*) FROM partition_archiver.archive_manifest WHERE state IN ('verified', 'dropped')"
            )
            .await,
        0
    );
    second_rows.assert_none_lost(&second).await;
    // ...and the first database's archives restore identical.
    first_rows.assert_none_lost(&first).await;
    // A second attempt is refused the same way and still changes nothing.
    let (out, _) = second.json(&["maintain", "--now", NOW, "--table", "orders"], &shared);
    assert!(!out.status.success());
    assert_eq!(versions_by_key(&first.bucket).await, archived);
}

#[tokio::test]
async fn a_clone_with_the_same_rows_adopts_the_archive_without_writing_it_again() {
    let first = TestEnv::migrated_at(NOW).await;
    seed(&first).await;
    let clone = TestEnv::migrated_at(NOW).await;
    seed(&clone).await;
    // Same rows, same ids: a clone that changed nothing in these months (seed's one difference
    // between two databases is `updated_at = now()`).
    for env in [&first, &clone] {
        env.db.batch_execute("UPDATE public.orders SET updated_at = created_at").await.unwrap();
    }
    let march = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t WHERE created_at < '2026-04-01'";
    let clone_march = clone.scalar_text(&march.replace("{}", "public.orders")).await;
    ok(&first.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    let archived = versions_by_key(&first.bucket).await;

    let (out, report) =
        clone.json(&["maintain", "--now", NOW, "--table", "orders"], &[("ARCHIVE_BUCKET", first.bucket.as_str())]);
    assert!(out.status.success(), "identical rows: the archive is the clone's too: {report}");
    assert_eq!(versions_by_key(&first.bucket).await, archived, "nothing written again");
    // The clone's months are dropped only because the shared archive holds exactly its rows.
    assert_eq!(
        clone.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await,
        first.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE state = 'dropped'").await
    );
    // Restoring through the clone's database (with the shared bucket) gives its rows back.
    let schema = unique("clone_");
    let (out, restored) = clone.json(
        &["restore", "--table", "orders", "--partition", "orders_2026_03", "--into-schema", &schema],
        &[("ARCHIVE_BUCKET", first.bucket.as_str())],
    );
    assert!(out.status.success(), "{restored}");
    assert_eq!(clone.scalar_text(&march.replace("{}", &format!("{schema}.orders_2026_03"))).await, clone_march);
}

#[tokio::test]
async fn the_manifest_records_the_database_and_restore_and_verify_show_it() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "trades"], &[]));
    let id = env.scalar_text("SELECT system_identifier::text FROM pg_control_system()").await.unwrap();
    let (_, listed) = env.json(&["list", "--table", "trades"], &[]);
    assert_eq!(listed["archives"][0]["system_identifier"], id.as_str(), "{listed}");
    let (out, restored) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert!(out.status.success(), "{restored}");
    assert_eq!(restored["restore"]["system_identifier"], id.as_str(), "{restored}");
    let (_, verified) = env.json(&["verify", "--table", "trades"], &[]);
    assert_eq!(verified["archives"][0]["system_identifier"], id.as_str(), "{verified}");
    // The object carries its origin; the JSON manifest in S3 records the database too.
    let key = env.scalar_text("SELECT object_key FROM partition_archiver.archive_manifest LIMIT 1").await.unwrap();
    let head = s3().await.head_object().bucket(&env.bucket).key(&key).send().await.unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("pa-system-identifier"), Some(&id), "{meta:?}");
    assert_eq!(meta.get("pa-source").map(String::as_str), Some("public.trades/trades_2026_03"), "{meta:?}");
    let tags = s3().await.get_object_tagging().bucket(&env.bucket).key(&key).send().await.unwrap();
    assert!(
        tags.tag_set().iter().any(|t| t.key() == "partition-archiver-kind" && t.value() == "data"),
        "data objects are tagged for the cold-storage lifecycle rule: {:?}",
        tags.tag_set()
    );
    let manifest_key =
        key.replace("/public.trades/", "/public.trades/_manifests/").rsplit_once('/').unwrap().0.to_string()
            + "/trades_2026_03.manifest.json";
    let tags = s3().await.get_object_tagging().bucket(&env.bucket).key(&manifest_key).send().await.unwrap();
    assert!(tags.tag_set().is_empty(), "manifests are not tagged: they stay readable: {:?}", tags.tag_set());
}

#[tokio::test]
async fn a_cold_object_at_the_key_is_refused_without_reading_it() {
    let first = TestEnv::migrated_at(NOW).await;
    seed(&first).await;
    ok(&first.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    crate::cold::move_to_class(&first, "orders_2026_03", "DEEP_ARCHIVE").await;
    let second = TestEnv::migrated_at(NOW).await;
    seed(&second).await;
    let before = OrdersBefore::take(&second).await;
    let (out, report) =
        second.json(&["maintain", "--now", NOW, "--table", "orders"], &[("ARCHIVE_BUCKET", first.bucket.as_str())]);
    assert!(!out.status.success(), "{report}");
    let text = report.to_string();
    assert!(text.contains("in DEEP_ARCHIVE, not readable without a retrieval"), "{report}");
    assert!(
        !text.contains("read the object already at") && !text.contains("not readable until a retrieval finishes"),
        "it never tried to read the cold object: {report}"
    );
    before.assert_none_lost(&second).await;
    // The refusal leaves the partition detached, without a key: a run under its own prefix archives
    // it, and it restores identical.
    let march = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t";
    // (Detached by the refused run, frozen, whole.)
    let second_march = second.scalar_text(&march.replace("{}", "public.orders_2026_03")).await;
    assert!(second_march.is_some());
    let own_prefix = [("ARCHIVE_BUCKET", first.bucket.as_str()), ("ARCHIVE_PREFIX", "second-database")];
    let (out, report) = second.json(&["maintain", "--now", NOW, "--table", "orders"], &own_prefix);
    assert!(out.status.success(), "{report}");
    let schema = unique("second_");
    ok(&second.run(
        &["restore", "--table", "orders", "--partition", "orders_2026_03", "--into-schema", &schema],
        &own_prefix,
    ));
    assert_eq!(second.scalar_text(&march.replace("{}", &format!("{schema}.orders_2026_03"))).await, second_march);
}

#[tokio::test]
async fn a_run_killed_after_completing_finds_its_object_even_when_the_prefix_changed() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    crate::archive::crash_at(&env, "after_complete").await;
    let completed = versions_by_key(&env.bucket).await;
    assert_eq!(completed.len(), 1, "one object completed, its `uploaded` not recorded: {completed:?}");
    let (out, report) =
        env.json(&["maintain", "--now", NOW, "--table", "orders"], &[("ARCHIVE_PREFIX", "moved-prefix")]);
    assert!(out.status.success(), "{report}");
    let after = versions_by_key(&env.bucket).await;
    let (key, _) = completed.iter().next().unwrap();
    assert_eq!(after.get(key), Some(&1), "the completed object was adopted, not written again: {after:?}");
    let march: Vec<&String> = after.keys().filter(|k| k.contains("orders_2026_03")).collect();
    assert!(march.iter().all(|k| k.starts_with("partition-archiver/")), "March stays where it was written: {march:?}");
    assert!(after.keys().any(|k| k.starts_with("moved-prefix/")), "April follows the new prefix: {after:?}");
    before.assert_none_lost(&env).await;
}

/// A table bigger than a quarter of shared_buffers gets synchronized sequential scans: a scan
/// starts where the last one of that table reported being, so two COPYs of the same rows can send
/// them rotated differently, and the same partition archived again would not be recognised by its
/// content. Every session of ours turns them off. Here other scans leave different positions
/// behind before each archive (a scan that stops half-way, as a LIMIT does).
#[tokio::test]
async fn the_same_large_partition_archived_twice_is_recognised_by_its_content() {
    let env = TestEnv::migrated_at(NOW).await;
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z"], &[("ARCHIVE_BUCKET", "")]));
    env.db
        .batch_execute(
            "INSERT INTO public.trades (order_id, user_id, symbol, side, price, quantity, fee, created_at)
             SELECT g, g % 1000, 'BTC-USD', 'buy', g * 0.01, 1, 0.001, timestamptz '2026-03-01 00:00+00' + (g * interval '5 seconds')
               FROM generate_series(1, 400000) g;
             UPDATE partition_archiver.part_config SET retention_action = 'archive_move', historical_schema = 'hist'
              WHERE table_name = 'trades';",
        )
        .await
        .unwrap();
    env.db.batch_execute("VACUUM ANALYZE public.trades_2026_03").await.unwrap();
    let shared_buffers =
        env.scalar_i64("SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'").await;
    let size = env.scalar_i64("SELECT pg_relation_size('public.trades_2026_03')").await;
    assert!(size > shared_buffers / 4, "the table ({size} bytes) must be large enough for synchronized scans");
    // Plain scans: the position left behind is where the LIMIT stopped a single backend.
    env.db.batch_execute("SET max_parallel_workers_per_gather = 0").await.unwrap();
    let leave_scan_position_at =
        |rows: i64| format!("SELECT count(*) FROM (SELECT 1 FROM public.trades_2026_03 LIMIT {rows}) t");
    let archive = ["archive", "--table", "trades", "--partition", "trades_2026_03"];
    env.scalar_i64(&leave_scan_position_at(100_000)).await;
    ok(&env.run(&archive, &[]));
    let first = versions_by_key(&env.bucket).await;
    // Put it back as it was, and forget the archive (as a clone or a lost record would).
    env.db
        .batch_execute(
            "SELECT partition_archiver.unfreeze('hist.trades_2026_03');
             ALTER TABLE hist.trades_2026_03 SET SCHEMA public;
             ALTER TABLE public.trades ATTACH PARTITION public.trades_2026_03
               FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00');
             DELETE FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03';",
        )
        .await
        .unwrap();
    env.scalar_i64(&leave_scan_position_at(300_000)).await;
    let (out, report) = env.json(&archive, &[]);
    assert!(out.status.success(), "the same rows are recognised: {report}");
    assert_eq!(versions_by_key(&env.bucket).await, first, "nothing was written again");
}

/// The race the HEAD before uploading cannot see: another writer puts an object at the key while
/// this run streams. Completing with `If-None-Match: *` is refused (412), the run's upload is
/// aborted, the other object is kept as it is, and nothing is dropped.
#[tokio::test]
async fn an_object_written_at_the_key_while_streaming_wins_and_nothing_is_dropped() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = OrdersBefore::take(&env).await;
    let archive = ["archive", "--table", "orders", "--partition", "orders_2026_03"];
    let run = env
        .command(&archive, &[("PARTITION_ARCHIVER_FAILPOINTS", "before_complete=pause")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The figures are recorded just before the pause: then the other writer strikes.
    let started = std::time::Instant::now();
    let key = loop {
        let key = env
            .scalar_text("SELECT min(object_key) FROM partition_archiver.archive_chunk WHERE state = 'uploading' AND sha256 IS NOT NULL")
            .await;
        if let Some(key) = key {
            break key;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the run never reached its completion");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    s3().await
        .put_object()
        .bucket(&env.bucket)
        .key(&key)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(zstd::encode_all(&b"id\n1\n"[..], 1).unwrap().into())
        .send()
        .await
        .unwrap();
    let out = run.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!out.status.success(), "{report}");
    // Read back and compared with the partition's rows (1 row against thousands): refused.
    assert!(
        report.to_string().contains("already holds another archive") && report.to_string().contains("1 rows"),
        "{report}"
    );
    assert_eq!(versions_by_key(&env.bucket).await.get(&key), Some(&1), "the other object was not replaced");
    assert_eq!(env.multipart_uploads().await, 0, "the run's own upload was aborted");
    assert_eq!(
        env.scalar_text("SELECT state FROM partition_archiver.archive_chunk WHERE partition_name = 'orders_2026_03'")
            .await
            .as_deref(),
        Some("pending"),
        "its one chunk is back to pending"
    );
    let last_error = env
        .scalar_text(
            "SELECT last_error FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'",
        )
        .await;
    assert!(last_error.is_some_and(|e| e.contains("already holds another archive")), "the refusal is recorded");
    before.assert_none_lost(&env).await;
}
