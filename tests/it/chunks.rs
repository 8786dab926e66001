//! Chunked archives against real PostgreSQL and LocalStack: a partition larger than
//! ARCHIVE_CHUNK_SIZE becomes one object per ctid block range, streamed in parallel, resumable
//! within a time budget, restarted after a table rewrite, and restored in parallel.

use crate::archive::{seed, NOW, ORDERS_SUM};
use crate::harness::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// Chunk settings of these tests: 1 MiB chunks (the smallest allowed), two streams.
pub(crate) const CHUNKED: &[(&str, &str)] = &[("ARCHIVE_CHUNK_SIZE", "1MiB"), ("ARCHIVE_STREAMS", "2")];

/// `seed`, plus `rows` more hostile orders in March 2026, so its partition spans several MiB.
pub(crate) async fn seed_big(env: &TestEnv, rows: i64) {
    seed(env).await;
    env.db
        .batch_execute(&format!(
            r#"INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, filled_quantity, created_at, updated_at)
               SELECT g % 97,
                      CASE g % 5 WHEN 0 THEN 'quote"d,comma' WHEN 1 THEN E'multi\nline\r\nrow' WHEN 2 THEN 'ünï©ødé 🚀' WHEN 3 THEN '' ELSE E'tab\there' END,
                      CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, 'limit', 'filled',
                      CASE WHEN g % 9 = 0 THEN NULL ELSE g * 0.000001 END,
                      1 + g % 5, 0,
                      timestamptz '2026-03-01 00:00:00+00' + ((g * 40) % (30 * 86400)) * interval '1 second', now()
                 FROM generate_series(1, {rows}) g"#
        ))
        .await
        .unwrap();
}

/// The chunk rows of a partition: (generation, chunk_no, state, object_key, row_count).
async fn chunk_rows(env: &TestEnv, partition: &str) -> Vec<(i32, i32, String, String, Option<i64>)> {
    env.db
        .query(
            "SELECT generation, chunk_no, state, object_key, row_count FROM partition_archiver.archive_chunk
              WHERE partition_name = $1 ORDER BY generation, chunk_no",
            &[&partition],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// Every version of every object under `prefix`: (key, versions).
async fn versions_under(env: &TestEnv, prefix: &str) -> Vec<(String, usize)> {
    let out = s3().await.list_object_versions().bucket(&env.bucket).prefix(prefix).send().await.unwrap();
    let mut keys: Vec<String> = out.versions().iter().filter_map(|v| v.key().map(str::to_string)).collect();
    keys.sort();
    let mut counted: Vec<(String, usize)> = Vec::new();
    for k in keys {
        match counted.last_mut() {
            Some((last, n)) if *last == k => *n += 1,
            _ => counted.push((k, 1)),
        }
    }
    counted
}

async fn get_object(env: &TestEnv, key: &str) -> Vec<u8> {
    let out = s3().await.get_object().bucket(&env.bucket).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// md5 over the rows of March and April restored into `schema`, comparable with `ORDERS_SUM`.
async fn months_sum(env: &TestEnv, schema: &str) -> Option<String> {
    env.scalar_text(&format!(
        "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM \
         (SELECT * FROM {schema}.orders_2026_03 UNION ALL SELECT * FROM {schema}.orders_2026_04) t"
    ))
    .await
}

/// md5 over March's rows in `schema`, in id order.
async fn march_md5(env: &TestEnv, schema: &str) -> Option<String> {
    env.scalar_text(&format!("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {schema}.orders_2026_03 t")).await
}

/// `seed_big(rows)`, then March archived as chunks: March's [`march_md5`] before, and its chunks.
async fn archived_march(env: &TestEnv, rows: i64) -> (Option<String>, usize) {
    seed_big(env, rows).await;
    let march = march_md5(env, "public").await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED));
    (march, chunk_rows(env, MARCH).await.len())
}

/// Restores March (chunked) and April (one object) into `schema`; returns [`months_sum`].
async fn restore_months(env: &TestEnv, schema: &str) -> Option<String> {
    ok(&env.run(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", schema], CHUNKED));
    ok(&env.run(&["restore", "--table", "orders", "--partition", "orders_2026_04", "--into-schema", schema], &[]));
    months_sum(env, schema).await
}

const MARCH: &str = "orders_2026_03";
const RESTORE_MARCH_INTO_R: [&str; 7] = ["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r"];

/// `restore` of March into `r` completes, and restores March as `march` (its md5) was.
async fn restore_march_into_r_completes(env: &TestEnv, march: &Option<String>) {
    let (out, report) = env.json(&RESTORE_MARCH_INTO_R, CHUNKED);
    ok(&out);
    assert_eq!(report["restore"]["complete"], true, "{report}");
    assert_eq!(&march_md5(env, "r").await, march);
}

/// The final step of a chunked March: a run that completes, March dropped, and every one of its
/// `chunks` chunk keys holding exactly one version.
async fn final_step_drops_march_with_each_chunk_once(env: &TestEnv, chunks: usize, settings: &[(&str, &str)]) {
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], settings);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    let state = env
        .scalar_text("SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'")
        .await;
    assert_eq!(state.as_deref(), Some("dropped"));
    let versions = versions_under(env, &format!("{MARCH_DIR}{MARCH}.g")).await;
    assert_eq!(versions.len(), chunks, "{versions:?}");
    assert!(versions.iter().all(|(_, n)| *n == 1), "every chunk once: {versions:?}");
}
const MARCH_DIR: &str = "partition-archiver/public.orders/year=2026/month=03/";
const MARCH_MANIFEST: &str =
    "partition-archiver/public.orders/_manifests/year=2026/month=03/orders_2026_03.manifest.json";

#[tokio::test]
async fn a_chunked_archive_is_one_valid_csv_per_block_range_and_restores_identical() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 40_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    let march_rows = env.scalar_i64("SELECT count(*) FROM public.orders_2026_03").await;
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    let archive_step = report["tables"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "archive" && s["partition"] == format!("public.{MARCH}"))
        .cloned()
        .unwrap_or_else(|| panic!("no archive step for March: {report}"));
    let chunks = chunk_rows(&env, MARCH).await;
    assert!(chunks.len() >= 3, "a ~5 MiB partition in 1 MiB chunks: {chunks:?}");
    assert_eq!(archive_step["chunks_done"], chunks.len(), "{archive_step}");
    for (generation, no, state, key, _) in &chunks {
        assert_eq!((*generation, state.as_str()), (1, "uploaded"));
        assert_eq!(key, &format!("{MARCH_DIR}{MARCH}.g1.c{no:05}.csv.zst"));
    }
    assert_eq!(chunks.iter().map(|c| c.4.unwrap()).sum::<i64>(), march_rows);
    // April is small: a plan of one chunk, its object under the key used before chunks existed.
    let april_chunks = chunk_rows(&env, "orders_2026_04").await;
    assert_eq!(april_chunks.len(), 1, "{april_chunks:?}");
    assert_eq!(april_chunks[0].3, "partition-archiver/public.orders/year=2026/month=04/orders_2026_04.csv.zst");
    let april = env
        .scalar_text(
            "SELECT object_key FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_04'",
        )
        .await;
    assert_eq!(april.as_deref(), Some("partition-archiver/public.orders/year=2026/month=04/orders_2026_04.csv.zst"));

    // Every chunk is a CSV on its own: a header naming the columns, then its rows, which
    // PostgreSQL loads back (HEADER MATCH checks the names).
    env.db.batch_execute("CREATE TABLE one_chunk (LIKE public.orders)").await.unwrap();
    for (_, no, _, key, rows) in &chunks {
        let mut csv = Vec::new();
        zstd::stream::read::Decoder::new(&get_object(&env, key).await[..]).unwrap().read_to_end(&mut csv).unwrap();
        assert!(csv.starts_with(b"id,user_id,symbol,"), "chunk {no} has no header");
        env.db.batch_execute("TRUNCATE one_chunk").await.unwrap();
        let sink = env.db.copy_in("COPY one_chunk FROM STDIN (FORMAT csv, HEADER MATCH)").await.unwrap();
        let mut sink = std::pin::pin!(sink);
        use futures_util::SinkExt;
        sink.send(bytes::Bytes::from(csv)).await.unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap() as i64, rows.unwrap(), "chunk {no}");
    }

    // The JSON manifest lists the chunks; verify checks each by HEAD, and --deep reads them.
    let manifest: serde_json::Value = serde_json::from_slice(&get_object(&env, MARCH_MANIFEST).await).unwrap();
    assert_eq!(manifest["chunks"].as_array().unwrap().len(), chunks.len(), "{manifest}");
    assert_eq!(manifest["row_count"], march_rows);
    assert!(manifest["chunks"][0]["sha256"].as_str().unwrap().len() == 64, "{manifest}");
    for args in [&["verify"][..], &["verify", "--deep"][..]] {
        let (out, v) = env.json(args, &[]);
        ok(&out);
        let march = v["archives"].as_array().unwrap().iter().find(|a| a["partition"] == MARCH).cloned().unwrap();
        assert_eq!(march["ok"], true, "{v}");
        if args.len() == 2 {
            assert_eq!(march["rows"], march_rows, "{v}");
        }
    }

    // Restore in parallel: identical rows, and no staging table left.
    for p in [MARCH, "orders_2026_04"] {
        let (out, v) =
            env.json(&["restore", "--table", "public.orders", "--partition", p, "--into-schema", "restored"], CHUNKED);
        ok(&out);
        assert_eq!(v["restore"]["restored_as"], format!("restored.{p}"), "{v}");
    }
    let (out, v) = env.json(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "again"], CHUNKED);
    ok(&out);
    assert_eq!(v["restore"]["chunks"], chunks.len(), "{v}");
    assert_eq!(months_sum(&env, "restored").await, original);
    assert_eq!(env.scalar_i64("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%pa_restoring'").await, 0);
    assert_eq!(env.multipart_uploads().await, 0);
}

#[tokio::test]
async fn a_time_budget_stops_between_chunks_and_the_next_run_goes_on_without_redoing_any() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 64_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    // Each chunk pauses 5 s after its upload, so the run measures ~0.2 MiB/s (a 1 MiB chunk is
    // then expected to take 8 s with the 1.5x margin) and stops starting chunks once the 25 s
    // budget, less 2.5 s kept for verify and report, would not cover one: after three rounds of
    // two streams. At mid-October only March is past the retention (April's one chunk would pause
    // too, and a 5 s pause is no cost an estimate from bytes can foresee).
    let slow = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "after_complete=pause")]].concat();
    let started = Instant::now();
    let october = "2026-10-15T00:00:00Z";
    let (out, report) = env.json(&["maintain", "--now", october, "--table", "orders", "--time-budget", "25"], &slow);
    ok(&out);
    assert!(started.elapsed() < Duration::from_secs(25), "the run kept to its budget: {:?}", started.elapsed());
    assert_eq!(report["complete"], false, "{report}");
    let steps = report["tables"][0]["steps"].as_array().unwrap().clone();
    let archive = steps.iter().find(|s| s["step"] == "archive" && s["partition"] == format!("public.{MARCH}")).unwrap();
    assert_eq!(archive["outcome"], "unfinished", "{report}");
    let (done, total) = (archive["chunks_done"].as_u64().unwrap(), archive["chunks_total"].as_u64().unwrap());
    assert!(done >= 1 && done < total, "{archive}");
    let drop = steps.iter().find(|s| s["step"] == "drop" && s["partition"] == format!("public.{MARCH}")).unwrap();
    assert_eq!(drop["outcome"], "skipped", "nothing unverified is dropped: {report}");
    assert!(env.scalar_i64("SELECT count(*) FROM public.orders_2026_03").await > 0, "March is still in PostgreSQL");
    let uploaded_first: Vec<String> =
        chunk_rows(&env, MARCH).await.into_iter().filter(|c| c.2 == "uploaded").map(|c| c.3).collect();
    assert_eq!(uploaded_first.len() as u64, done);
    // Not maintained through: the stale alarm's date is not this run's.
    let maintained_by = |report: &serde_json::Value| {
        format!(
            "SELECT count(*) FROM partition_archiver.table_maintenance WHERE table_name = 'orders' AND last_run_id = '{}'",
            report["run_id"].as_str().unwrap()
        )
    };
    assert_eq!(env.scalar_i64(&maintained_by(&report)).await, 0);

    // The next run finishes: every chunk uploaded exactly once (one version per key).
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(env.scalar_i64(&maintained_by(&report)).await, 1);
    let chunks = chunk_rows(&env, MARCH).await;
    assert_eq!(chunks.len() as u64, total);
    assert!(chunks.iter().all(|c| c.0 == 1 && c.2 == "uploaded"), "{chunks:?}");
    let versions = versions_under(&env, &format!("{MARCH_DIR}{MARCH}.g")).await;
    assert_eq!(versions.len() as u64, total, "{versions:?}");
    assert!(versions.iter().all(|(_, n)| *n == 1), "a chunk was uploaded twice: {versions:?}");
    assert_eq!(
        env.scalar_text(
            "SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'"
        )
        .await
        .as_deref(),
        Some("dropped")
    );
    assert_eq!(restore_months(&env, "restored").await, original);
}

/// A `maintain` of orders with one stream that pauses 3 s after each chunk's upload, once its
/// first chunk is streamed: the test changes the table during that pause.
async fn maintain_paused_after_the_first_chunk(env: &TestEnv) -> std::process::Child {
    let vars = [
        ("ARCHIVE_CHUNK_SIZE", "1MiB"),
        ("ARCHIVE_STREAMS", "1"),
        ("PARTITION_ARCHIVER_FAILPOINTS", "after_complete=pause:3"),
    ];
    let child = env
        .command(&["maintain", "--now", NOW, "--table", "orders"], &vars)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_chunk WHERE sha256 IS NOT NULL").await == 0 {
        assert!(Instant::now() < deadline, "no chunk was streamed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

#[tokio::test]
async fn a_rewrite_between_two_chunks_starts_the_archive_again_under_new_keys() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    // VACUUM FULL runs during the pause after the first chunk.
    let child = maintain_paused_after_the_first_chunk(&env).await;
    let filenode = env.scalar_i64("SELECT pg_relation_filenode('public.orders_2026_03')::bigint").await;
    env.db.batch_execute("VACUUM FULL public.orders_2026_03").await.unwrap();
    assert_ne!(env.scalar_i64("SELECT pg_relation_filenode('public.orders_2026_03')::bigint").await, filenode);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], true, "{report}");
    let chunks = chunk_rows(&env, MARCH).await;
    let old: Vec<_> = chunks.iter().filter(|c| c.0 == 1).collect();
    let new: Vec<_> = chunks.iter().filter(|c| c.0 == 2).collect();
    assert!(!old.is_empty() && old.iter().all(|c| c.2 == "superseded"), "{chunks:?}");
    assert!(!new.is_empty() && new.iter().all(|c| c.2 == "uploaded" && c.3.contains(".g2.c")), "{chunks:?}");
    // The first plan's objects left the directory (a delete marker; their versions stay), so a
    // query engine reading it sees each row once.
    let listed = s3().await.list_objects_v2().bucket(&env.bucket).prefix(MARCH_DIR).send().await.unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(keys.iter().all(|k| !k.contains(".g1.")), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.contains(".g2.c")).count(), new.len(), "{keys:?}");
    // The manifest JSON lists the superseded chunks as such.
    let manifest: serde_json::Value = serde_json::from_slice(&get_object(&env, MARCH_MANIFEST).await).unwrap();
    assert_eq!(manifest["chunk_generation"], 2);
    assert!(manifest["chunks"].as_array().unwrap().iter().any(|c| c["state"] == "superseded"), "{manifest}");
    assert_eq!(restore_months(&env, "restored").await, original);
}

#[tokio::test]
async fn a_row_a_foreign_key_action_writes_between_two_chunks_starts_the_archive_again() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    // orders.user_id references users ON UPDATE CASCADE; the detached March keeps the constraint, so
    // changing a user's id updates March's rows of that user (a write the freeze lets through: the
    // application's UPDATE of users must not fail). Each updated row gets a new version, which
    // PostgreSQL may put in a page of a chunk already copied.
    env.db
        .batch_execute(
            "CREATE TABLE public.users (id bigint PRIMARY KEY);
             INSERT INTO public.users SELECT DISTINCT user_id FROM public.orders;
             ALTER TABLE public.orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id)
               REFERENCES public.users (id) ON UPDATE CASCADE",
        )
        .await
        .unwrap();
    let child = maintain_paused_after_the_first_chunk(&env).await;
    let user = "(SELECT min(user_id) FROM public.orders_2026_03)";
    let moved = env.scalar_i64(&format!("SELECT count(*) FROM public.orders_2026_03 WHERE user_id = {user}")).await;
    assert!(moved > 0);
    env.db.batch_execute(&format!("UPDATE public.users SET id = id + 1000000 WHERE id = {user}")).await.unwrap();
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.orders_2026_03 WHERE user_id >= 1000000").await, moved);
    let counted = "SELECT partition_archiver.frozen_writes_of('public.orders_2026_03')";
    assert_eq!(env.scalar_i64(counted).await, 1, "the transaction the action wrote rows in is recorded, once");
    let march = march_md5(&env, "public").await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["complete"], true, "{report}");
    // The plan the write came after was given up; the next one archived March as it is now.
    let chunks = chunk_rows(&env, MARCH).await;
    assert!(chunks.iter().filter(|c| c.0 == 1).all(|c| c.2 == "superseded"), "{chunks:?}");
    let new: Vec<_> = chunks.iter().filter(|c| c.0 == 2).collect();
    assert!(!new.is_empty() && new.iter().all(|c| c.2 == "uploaded" && c.3.contains(".g2.c")), "{chunks:?}");
    let state = "SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'";
    assert_eq!(env.scalar_text(state).await.as_deref(), Some("dropped"));
    ok(&env.run(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "restored"], CHUNKED));
    assert_eq!(march_md5(&env, "restored").await, march, "March restores as it was after the update");
}

#[tokio::test]
async fn chunk_settings_beyond_what_the_server_allows_are_refused_before_anything_changes() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let before = env.fingerprint().await;
    // This database takes at most 8 connections: 8 streams (+ the run's own and a count) do not fit.
    env.db
        .batch_execute(&format!("ALTER DATABASE {} CONNECTION LIMIT 8", env.url.rsplit('/').next().unwrap()))
        .await
        .unwrap();
    for (vars, needle) in [
        (vec![("ARCHIVE_STREAMS", "8")], "CONNECTION LIMIT"),
        (vec![("ARCHIVE_STREAMS", "0")], "ARCHIVE_STREAMS"),
        (vec![("ARCHIVE_CHUNK_SIZE", "0")], "at least 1MiB"),
        (vec![("ARCHIVE_CHUNK_SIZE", "100KiB")], "at least 1MiB"),
        (vec![("ARCHIVE_CHUNK_SIZE", "4096GiB")], "5 TiB"),
    ] {
        let out = env.run(&["maintain", "--now", NOW], &vars);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(err.contains(needle), "{vars:?}: {err}");
    }
    for budget in ["0", "-5", "soon"] {
        let out = env.run(&["maintain", "--now", NOW, "--time-budget", budget], &[]);
        assert_eq!(out.status.code(), Some(2), "--time-budget {budget}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for command in [
        &["archive", "--table", "orders", "--partition", "orders_2026_03"][..],
        &["restore", "--table", "orders", "--partition", "orders_2026_03"][..],
    ] {
        let out = env.run(command, &[("ARCHIVE_STREAMS", "8")]);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    ok(&env.run(&["maintain", "--now", NOW, "--dry-run"], &[("ARCHIVE_STREAMS", "8")]));
    assert_eq!(env.fingerprint().await, before, "nothing changed");
    assert_eq!(env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest").await, 0);
}

#[tokio::test]
async fn a_chunked_archive_killed_at_any_chunk_step_is_completed_by_the_next_run_uploading_each_chunk_once() {
    for point in ["after_create_upload", "before_complete", "after_complete"] {
        let env = TestEnv::migrated_at(NOW).await;
        seed_big(&env, 24_000).await;
        let original = env.scalar_text(ORDERS_SUM).await;
        let crash = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", point)]].concat();
        let out = env.run(&["maintain", "--now", NOW, "--table", "orders"], &crash);
        assert_eq!(out.status.code(), Some(86), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        env.wait_for_orphaned_backends().await;
        let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
        ok(&out);
        assert_eq!(report["complete"], true, "{point}: {report}");
        let chunks = chunk_rows(&env, MARCH).await;
        assert!(chunks.len() >= 3 && chunks.iter().all(|c| c.0 == 1 && c.2 == "uploaded"), "{point}: {chunks:?}");
        // Each chunk's key holds one version: nothing was uploaded twice or replaced.
        let versions = versions_under(&env, &format!("{MARCH_DIR}{MARCH}.g")).await;
        assert_eq!(versions.len(), chunks.len(), "{point}: {versions:?}");
        assert!(versions.iter().all(|(_, n)| *n == 1), "{point}: {versions:?}");
        assert_eq!(env.multipart_uploads().await, 0, "{point}: an interrupted upload was left open");
        assert_eq!(restore_months(&env, "r").await, original, "{point}");
    }
}

/// A run killed after S3 completed a chunk's object, before recording it; then the table is
/// rewritten (VACUUM FULL compacts the pages its deleted rows left): the object holds rows of the
/// old layout, which the chunk's range no longer has. The next run sees the rewrite before the
/// object, makes a new plan and retires the object, instead of refusing it at every run.
#[tokio::test]
async fn a_rewrite_after_a_chunk_completed_unrecorded_starts_a_new_plan() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    env.db.batch_execute("DELETE FROM public.orders_2026_03 WHERE id % 3 = 0").await.unwrap();
    let original = env.scalar_text(ORDERS_SUM).await;
    let crash = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "after_complete")]].concat();
    let out = env.run(&["maintain", "--now", NOW, "--table", "orders"], &crash);
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for_orphaned_backends().await;
    // (It compacts the pages when no snapshot still sees the deleted rows, as here on a quiet
    // server; the new filenode alone makes the next run plan again either way.)
    let filenode = "SELECT pg_relation_filenode('public.orders_2026_03')::bigint";
    let before = env.scalar_i64(filenode).await;
    env.db.batch_execute("VACUUM FULL public.orders_2026_03").await.unwrap();
    assert_ne!(env.scalar_i64(filenode).await, before, "rewritten");
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    let chunks = chunk_rows(&env, MARCH).await;
    assert!(chunks.iter().filter(|c| c.0 == 1).all(|c| c.2 == "superseded"), "{chunks:?}");
    assert!(chunks.iter().filter(|c| c.0 == 2).all(|c| c.2 == "uploaded"), "{chunks:?}");
    assert!(chunks.iter().any(|c| c.0 == 2), "{chunks:?}");
    // The first plan's completed object left the listing.
    let listed = s3().await.list_objects_v2().bucket(&env.bucket).prefix(MARCH_DIR).send().await.unwrap();
    assert!(listed.contents().iter().filter_map(|o| o.key()).all(|k| !k.contains(".g1.")), "{listed:?}");
    assert_eq!(restore_months(&env, "r").await, original);
}

/// Objects loaded into the staging table of a restore of `partition` into `schema` (its
/// `restore_loaded` rows), and whether that staging table exists.
async fn staged(env: &TestEnv, schema: &str, partition: &str) -> (i64, bool) {
    let comment = env
        .scalar_text(&format!("SELECT obj_description(to_regclass('{schema}.{partition}__pa_restoring'), 'pg_class')"))
        .await;
    let Some(comment) = comment else { return (0, false) };
    // `... (restore {id} of {table}/{partition})`
    let id = comment.rsplit_once("(restore ").unwrap().1.split(' ').next().unwrap().to_string();
    let loaded = env
        .db
        .query_one("SELECT count(*) FROM partition_archiver.restore_loaded WHERE restore_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    (loaded, true)
}

/// A session holds a lock on the staging table (a pg_dump, an open transaction that read it)
/// when the restore renames it: the rename waits a bounded time, the restore ends as transient
/// with every object still loaded, and the next restore only renames.
#[tokio::test]
async fn a_rename_blocked_by_a_lock_on_the_staging_table_ends_in_bounded_time_and_keeps_the_load() {
    let env = TestEnv::migrated_at(NOW).await;
    let (march, total) = archived_march(&env, 24_000).await;
    let restore = RESTORE_MARCH_INTO_R;
    ok(&env.run(&[&restore[..], &["--fan-out"]].concat(), CHUNKED));
    let blocker = connect(&env.url).await;
    blocker.batch_execute(&format!("BEGIN; LOCK TABLE r.{MARCH}__pa_restoring IN ACCESS SHARE MODE")).await.unwrap();
    let mut child = env.command(&restore, CHUNKED).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the rename waited for the lock without a bound");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "transient: {stdout}");
    assert!(stdout.contains("lock"), "{stdout}");
    assert_eq!(staged(&env, "r", MARCH).await, (total as i64, true), "every object stays loaded");
    blocker.batch_execute("ROLLBACK").await.unwrap();
    restore_march_into_r_completes(&env, &march).await;
}

/// Two restores whose staging tables have one name (a partition of the same name of another
/// table, or one whose name shares its first 49 bytes, into the same schema): a restore that
/// finds the other's staging table, even one with nothing loaded yet, between the steps of a
/// fan-out, refuses to go on with it or drop it, and changes nothing.
#[tokio::test]
async fn a_restore_refuses_the_staging_table_of_another_archive_and_changes_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    let (march, _) = archived_march(&env, 24_000).await;
    let restore = RESTORE_MARCH_INTO_R;
    ok(&env.run(&[&restore[..], &["--fan-out"]].concat(), CHUNKED));
    // What a plan for `other.orders`' partition of the same name would have left: its comment.
    let staging = format!("r.{MARCH}__pa_restoring");
    let comment = format!("SELECT obj_description('{staging}'::regclass, 'pg_class')");
    let ours = env.scalar_text(&comment).await.unwrap();
    let theirs = ours.replace("of public.orders/", "of other.orders/");
    assert_ne!(theirs, ours, "{ours}");
    env.db.batch_execute(&format!("COMMENT ON TABLE {staging} IS '{theirs}'")).await.unwrap();
    for args in [&[&restore[..], &["--fan-out"]].concat(), &restore[..]] {
        let out = env.run(args, CHUNKED);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {text}");
        assert!(text.contains("restore of other.orders/orders_2026_03"), "{args:?}: {text}");
        assert_eq!(env.scalar_text(&comment).await.as_deref(), Some(theirs.as_str()), "left as it was");
    }
    // That restore done (here: its staging table gone), this one plans and restores.
    env.db.batch_execute(&format!("DROP TABLE {staging}")).await.unwrap();
    restore_march_into_r_completes(&env, &march).await;
}

#[tokio::test]
async fn a_chunked_restore_killed_or_failing_keeps_only_verified_chunks_and_the_next_one_goes_on() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    let march = march_md5(&env, "public").await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED));
    let restore = ["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r"];
    let target = "SELECT count(*) FROM pg_tables WHERE schemaname = 'r' AND tablename = 'orders_2026_03'";
    // Killed before a chunk's commit: no table under the final name, nothing recorded as loaded.
    let crash = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "restore_chunk_before_commit")]].concat();
    let out = env.run(&restore, &crash);
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for_orphaned_backends().await;
    assert_eq!(env.scalar_i64(target).await, 0);
    assert_eq!(staged(&env, "r", MARCH).await, (0, true), "the killed restore's staging table, with no chunk in it");
    // Killed right after a chunk's commit: that chunk is in, and recorded.
    let crash_after = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "restore_chunk_after_commit")]].concat();
    let out = env.run(&restore, &crash_after);
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for_orphaned_backends().await;
    let (loaded, _) = staged(&env, "r", MARCH).await;
    assert!(loaded >= 1, "{loaded}");
    // A transient failure (an error, not a kill) keeps the verified chunks for the next restore.
    let fail = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "restore_chunk_before_commit=error")]].concat();
    let out = env.run(&restore, &fail);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(staged(&env, "r", MARCH).await, (loaded, true), "the verified chunks stay");
    // The next restore goes on from them and restores every row.
    let (out, v) = env.json(&restore, CHUNKED);
    ok(&out);
    assert_eq!(
        (v["restore"]["restored_as"].as_str(), v["restore"]["complete"].as_bool()),
        (Some("r.orders_2026_03"), Some(true)),
        "{v}"
    );
    assert_eq!(staged(&env, "r", MARCH).await, (0, false), "renamed, and its loaded rows forgotten");
    assert_eq!(env.scalar_i64("SELECT count(*) FROM partition_archiver.restore_loaded").await, 0);
    let restored = march_md5(&env, "r").await;
    assert_eq!(restored, march);
    // A chunk whose bytes are not the manifest's (a failure no retry mends) leaves nothing behind.
    env.db
        .batch_execute(
            "UPDATE partition_archiver.archive_chunk SET sha256 = repeat('0', 64) WHERE partition_name = 'orders_2026_03' AND chunk_no = 2",
        )
        .await
        .unwrap();
    let out = env.run(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r2"], CHUNKED);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the manifest says 0000"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(staged(&env, "r2", MARCH).await, (0, false), "an integrity failure drops the staging table");
}

#[tokio::test]
async fn a_restore_with_a_time_budget_stops_between_chunks_and_the_next_goes_on_to_an_identical_table() {
    let env = TestEnv::migrated_at(NOW).await;
    let (march, total) = archived_march(&env, 64_000).await;
    assert!(total >= 6, "{total}");
    let restore = ["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r"];
    // Too short to load any chunk: refused, nothing created.
    let (out, v) = env.json(&[&restore[..], &["--time-budget", "0.01"]].concat(), CHUNKED);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("give restore a longer --time-budget"), "{v}");
    assert_eq!(staged(&env, "r", MARCH).await, (0, false));
    // Each chunk pauses 5 s after its commit, so the restore measures a slow rate and, with 12 s,
    // stops after its first round of two streams.
    let slow = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "restore_chunk_after_commit=pause")]].concat();
    let started = Instant::now();
    let (out, v) = env.json(&[&restore[..], &["--time-budget", "12"]].concat(), &slow);
    ok(&out);
    assert!(started.elapsed() < Duration::from_secs(12), "kept to its budget: {:?}", started.elapsed());
    let r = &v["restore"];
    assert_eq!((r["complete"].as_bool(), r["chunks"].as_u64()), (Some(false), Some(total as u64)), "{v}");
    let done = r["chunks_done"].as_u64().unwrap();
    assert!(done >= 1 && done < total as u64, "{v}");
    assert_eq!(staged(&env, "r", MARCH).await, (done as i64, true));
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'r' AND tablename = 'orders_2026_03'").await,
        0
    );
    // A budget too short for the next chunk changes nothing, and leaves the staging table as it is.
    let out = env.run(&[&restore[..], &["--time-budget", "0.01"]].concat(), CHUNKED);
    assert_eq!(out.status.code(), Some(2), "still too short: nothing changed");
    assert_eq!(staged(&env, "r", MARCH).await, (done as i64, true), "the staging table is untouched");
    // The next restore (as the Lambda event would ask it) loads only what is left.
    let (out, v) = env.json(&restore, CHUNKED);
    ok(&out);
    assert_eq!(v["restore"]["complete"], true, "{v}");
    assert_eq!(
        v["restore"]["rows"].as_i64(),
        env.scalar_i64(
            "SELECT row_count FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'"
        )
        .await
        .into(),
        "{v}"
    );
    let restored = march_md5(&env, "r").await;
    assert_eq!(restored, march);
}

#[tokio::test]
async fn fan_out_units_run_as_separate_processes_with_one_killed_then_the_final_step_verifies_and_drops() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 40_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    // Prepare (the state machine's first step): chunks planned, not streamed; April, small, is
    // archived whole.
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], false, "{report}");
    let units = report["units"].as_array().unwrap().clone();
    let chunks = chunk_rows(&env, MARCH).await;
    assert!(chunks.len() >= 3, "{chunks:?}");
    assert_eq!(units.len(), chunks.len(), "one unit per chunk: {report}");
    for (unit, chunk) in units.iter().zip(&chunks) {
        assert_eq!((unit["table"].as_str(), unit["partition"].as_str()), (Some("public.orders"), Some(MARCH)));
        assert_eq!(unit["chunk"], chunk.1);
        assert_eq!(chunk.2, "pending", "nothing streamed yet");
    }
    // `plan` lists the same units.
    let (out, plan) = env.json(&["plan", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(plan["units"], report["units"], "{plan}");
    // Bad units change nothing.
    let before = chunk_rows(&env, MARCH).await;
    for (args, needle) in [
        (vec!["--partition", MARCH, "--chunk", "99"], "does not exist in the current plan"),
        (vec!["--partition", MARCH, "--chunk", "0"], "numbered from 1"),
        (vec!["--partition", "orders_2026_04", "--chunk", "1"], "no chunk plan"),
        (vec!["--partition", "trades_2026_03", "--chunk", "1"], "no archive manifest row"),
    ] {
        let out = env.run(&[&["archive-chunk", "--table", "orders"][..], &args].concat(), CHUNKED);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    assert_eq!(chunk_rows(&env, MARCH).await, before);
    // A unit whose invocation has too little time left starts nothing.
    let (out, v) = env.json(
        &["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", "1", "--time-budget", "0.01"],
        CHUNKED,
    );
    ok(&out);
    assert_eq!(v["outcome"], "not_started", "{v}");
    assert_eq!(chunk_rows(&env, MARCH).await, before);
    // The Map: every unit as its own process, all at once, plus a second branch on chunk 1; the
    // unit of chunk 2 is killed mid-upload.
    let args =
        |chunk: &str| ["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", chunk].map(String::from);
    for (_, v) in run_map(&env, &units, args, "before_complete").await {
        assert!(["uploaded", "already_uploaded", "busy"].contains(&v["outcome"].as_str().unwrap()), "{v}");
    }
    let after_map = chunk_rows(&env, MARCH).await;
    assert_eq!(
        after_map.iter().filter(|c| c.2 != "uploaded").count(),
        1,
        "only the killed unit's chunk: {after_map:?}"
    );
    // The final step: the killed chunk is archived (its open upload aborted), the partition
    // verified and dropped.
    final_step_drops_march_with_each_chunk_once(&env, chunks.len(), CHUNKED).await;
    assert_eq!(env.multipart_uploads().await, 0);
    assert_eq!(restore_months(&env, "r").await, original);
}

#[tokio::test]
async fn a_chunk_plan_keeps_its_bucket_and_another_bucket_is_refused_with_nothing_changed() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    let (out, _) = env.json(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], CHUNKED);
    ok(&out);
    let before = chunk_rows(&env, MARCH).await;
    assert!(before.len() >= 3 && before.iter().all(|c| c.2 == "pending"), "{before:?}");
    let other = [CHUNKED, &[("ARCHIVE_BUCKET", "another-bucket")]].concat();
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &other);
    assert_eq!(out.status.code(), Some(1), "a failed step: {report}");
    assert!(report.to_string().contains("are being archived to bucket"), "{report}");
    assert_eq!(chunk_rows(&env, MARCH).await, before, "nothing changed");
    // A unit too.
    let out = env.run(&["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", "1"], &other);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(chunk_rows(&env, MARCH).await, before, "nothing changed");
    // Back on its bucket, the archive completes.
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
}

/// March planned by the fan-out's prepare step (at least three chunks), every chunk uploaded by
/// its unit: its chunk rows.
async fn march_planned_and_every_unit_run(env: &TestEnv) -> Vec<(i32, i32, String, String, Option<i64>)> {
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], CHUNKED));
    let chunks = chunk_rows(env, MARCH).await;
    assert!(chunks.len() >= 3, "{chunks:?}");
    for chunk in &chunks {
        let no = chunk.1.to_string();
        ok(&env.run(&["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", &no], CHUNKED));
    }
    chunks
}

/// A plan of several chunks made by an earlier version (no record of trigger writes) and still
/// uploading is made again: a row a foreign-key action moved while it was archived could be
/// missed. The new plan records the count, and the archive completes.
#[tokio::test]
async fn a_chunk_plan_of_an_earlier_version_is_made_again() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], CHUNKED));
    let no = chunk_rows(&env, MARCH).await[0].1.to_string();
    ok(&env.run(&["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", &no], CHUNKED));
    env.db
        .batch_execute(&format!(
            "UPDATE partition_archiver.archive_manifest SET rel_writes = NULL WHERE partition_name = '{MARCH}'"
        ))
        .await
        .unwrap();
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    let chunks = chunk_rows(&env, MARCH).await;
    assert!(chunks.iter().filter(|c| c.0 == 1).all(|c| c.2 == "superseded"), "{chunks:?}");
    assert!(chunks.iter().any(|c| c.0 == 2) && chunks.iter().filter(|c| c.0 == 2).all(|c| c.2 == "uploaded"));
    assert_eq!(restore_months(&env, "r").await, original);
}

/// The fan-out's final step killed after every chunk was uploaded and recorded (its JSON manifest
/// may be written), then the table rewritten: the next final step finishes the archive it has
/// (each chunk was checked under its plan; the rows are frozen) instead of planning it again,
/// which would have met its own manifest of the first plan at the manifest's key at every run.
#[tokio::test]
async fn a_rewrite_after_every_chunk_is_uploaded_does_not_start_the_archive_again() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    env.db.batch_execute("DELETE FROM public.orders_2026_03 WHERE id % 3 = 0").await.unwrap();
    let original = env.scalar_text(ORDERS_SUM).await;
    let chunks = march_planned_and_every_unit_run(&env).await;
    let crash = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", "after_upload")]].concat();
    let out = env.run(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], &crash);
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for_orphaned_backends().await;
    env.db.batch_execute("VACUUM FULL public.orders_2026_03").await.unwrap();
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], true, "{report}");
    let after = chunk_rows(&env, MARCH).await;
    assert!(after.iter().all(|c| c.0 == 1 && c.2 == "uploaded"), "the first plan, kept: {after:?}");
    assert_eq!(after.len(), chunks.len());
    let state = "SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = 'orders_2026_03'";
    assert_eq!(env.scalar_text(state).await.as_deref(), Some("dropped"));
    assert_eq!(restore_months(&env, "r").await, original);
}

#[tokio::test]
async fn a_chunk_object_deleted_before_the_final_step_is_uploaded_again_and_nothing_is_dropped_meanwhile() {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 40_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    let chunks = march_planned_and_every_unit_run(&env).await;
    // Chunk 2's object is deleted by hand, its version and all (a plain DELETE would only add a
    // delete marker: the recorded version would still be there, and verified).
    let deleted = chunk_rows(&env, MARCH).await[1].3.clone();
    let version = env
        .scalar_text(&format!(
            "SELECT version_id FROM partition_archiver.archive_chunk WHERE partition_name = '{MARCH}' AND chunk_no = 2"
        ))
        .await
        .unwrap();
    s3().await.delete_object().bucket(&env.bucket).key(&deleted).version_id(version).send().await.unwrap();
    // The final step finds it gone: that chunk goes back to pending, nothing is verified or dropped.
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], CHUNKED);
    ok(&out);
    assert_eq!(report["complete"], false, "{report}");
    let steps = report["tables"][0]["steps"].as_array().unwrap().clone();
    let archive = steps.iter().find(|s| s["step"] == "archive" && s["partition"] == format!("public.{MARCH}")).unwrap();
    assert_eq!(archive["outcome"], "unfinished", "{report}");
    assert!(archive.to_string().contains("had disappeared from the bucket"), "{archive}");
    let after = chunk_rows(&env, MARCH).await;
    assert_eq!(
        after.iter().map(|c| (c.1, c.2.as_str())).filter(|c| c.1 != "uploaded").collect::<Vec<_>>(),
        vec![(2, "pending")],
        "{after:?}"
    );
    assert!(env.scalar_i64("SELECT count(*) FROM public.orders_2026_03").await > 0, "March is still in PostgreSQL");
    // The next run uploads it again under its key (no object there to replace), verifies, drops.
    final_step_drops_march_with_each_chunk_once(&env, chunks.len(), CHUNKED).await;
    assert_eq!(restore_months(&env, "r").await, original);
}

#[tokio::test]
async fn a_chunk_object_whose_record_was_lost_is_adopted_by_its_content_and_another_is_refused() {
    // CSV: its decompressed bytes against a COPY of the range; Parquet: its bytes against a
    // re-encode of the range.
    adopted_by_content(CHUNKED).await;
    adopted_by_content(&[CHUNKED, &[("ARCHIVE_FORMAT", "parquet")]].concat()).await;
}

async fn adopted_by_content(settings: &[(&str, &str)]) {
    let env = TestEnv::migrated_at(NOW).await;
    seed_big(&env, 24_000).await;
    let original = env.scalar_text(ORDERS_SUM).await;
    // Planned by the fan-out's prepare step; chunk 1 uploaded and completed by a unit killed before
    // recording it.
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders", "--fan-out"], settings));
    let crash = [settings, &[("PARTITION_ARCHIVER_FAILPOINTS", "after_complete")]].concat();
    let out = env.run(&["archive-chunk", "--table", "orders", "--partition", MARCH, "--chunk", "1"], &crash);
    assert_eq!(out.status.code(), Some(86), "{}", String::from_utf8_lossy(&out.stderr));
    env.wait_for_orphaned_backends().await;
    // The database then loses what that upload recorded (a point-in-time restore, a failover): the
    // chunk is pending again and knows neither the upload token nor the figures.
    env.db
        .batch_execute(&format!(
            "UPDATE partition_archiver.archive_chunk SET state = 'pending', upload_token = NULL, multipart_upload_id = NULL, \
                    row_count = NULL, raw_bytes = NULL, compressed_bytes = NULL, sha256 = NULL, checksum_composite = NULL \
              WHERE partition_name = '{MARCH}' AND chunk_no = 1"
        ))
        .await
        .unwrap();
    // Another writer's object sits at chunk 2's key: chunk 1's bytes, not chunk 2's rows.
    let keys: Vec<String> = chunk_rows(&env, MARCH).await.into_iter().map(|c| c.3).collect();
    let s3 = s3().await;
    let copied = s3
        .copy_object()
        .bucket(&env.bucket)
        .key(&keys[1])
        .copy_source(format!("{}/{}", env.bucket, keys[0]))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    assert!(copied.copy_object_result().unwrap().checksum_sha256().is_some());
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], settings);
    assert!(!out.status.success(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("already holds another archive")
            && text.contains("whose rows differ from public.orders_2026_03 chunk 2"),
        "{report}"
    );
    assert!(
        text.contains(&format!("written for public.orders/{MARCH}#1 by this database")),
        "names the writer: {report}"
    );
    let chunks = chunk_rows(&env, MARCH).await;
    assert_eq!((chunks[0].2.as_str(), chunks[1].2.as_str()), ("uploaded", "pending"), "chunk 1 adopted: {chunks:?}");
    assert!(env.scalar_i64("SELECT count(*) FROM public.orders_2026_03").await > 0, "nothing dropped");
    let format = env
        .scalar_text(&format!(
            "SELECT format FROM partition_archiver.archive_manifest WHERE partition_name = '{MARCH}'"
        ))
        .await;
    assert_eq!(format.as_deref(), settings.iter().find(|s| s.0 == "ARCHIVE_FORMAT").map(|s| s.1).or(Some("csv")));
    // The foreign object goes (an operator's decision); the next run uploads chunk 2 and finishes,
    // each key holding the one object written for it.
    s3.delete_object().bucket(&env.bucket).key(&keys[1]).version_id(copied.version_id().unwrap()).send().await.unwrap();
    final_step_drops_march_with_each_chunk_once(&env, chunks.len(), settings).await;
    assert_eq!(restore_months(&env, "r").await, original);
}

#[tokio::test]
async fn a_fan_out_restore_loads_its_units_side_by_side_and_the_final_step_renames_an_identical_table() {
    let env = TestEnv::migrated_at(NOW).await;
    let (march, total) = archived_march(&env, 40_000).await;
    assert!(total >= 3, "{total}");
    let restore = ["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r"];
    // The plan: the staging table, and one unit per object; planning again gives the same.
    let (out, plan) = env.json(&[&restore[..], &["--fan-out"]].concat(), CHUNKED);
    ok(&out);
    let r = &plan["restore"];
    assert_eq!(
        (r["complete"].as_bool(), r["chunks"].as_u64(), r["chunks_done"].as_u64()),
        (Some(false), Some(total as u64), Some(0)),
        "{plan}"
    );
    let id = r["restore_id"].as_str().unwrap().to_string();
    let units = r["units"].as_array().unwrap().clone();
    assert_eq!(units.len(), total, "{plan}");
    for (n, u) in units.iter().enumerate() {
        let want = serde_json::json!({"table": "public.orders", "partition": MARCH, "chunk": n + 1, "restore_id": id, "into_schema": "r"});
        assert_eq!(u, &want);
    }
    assert_eq!(staged(&env, "r", MARCH).await, (0, true));
    let (out, again) = env.json(&[&restore[..], &["--fan-out"]].concat(), CHUNKED);
    ok(&out);
    assert_eq!(again["restore"]["units"], r["units"], "planning again goes on with the same staging table");
    // Bad units change nothing.
    let unit_args = |partition: &str, chunk: &str, id: &str| -> Vec<String> {
        [
            "restore-chunk",
            "--table",
            "orders",
            "--partition",
            partition,
            "--chunk",
            chunk,
            "--restore-id",
            id,
            "--into-schema",
            "r",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let other_id = "0123456789abcdef0123456789abcdef";
    for (args, needle) in [
        (unit_args(MARCH, "99", &id), "chunk 99 does not exist in the archive of orders_2026_03"),
        (unit_args(MARCH, "0", &id), "numbered from 1"),
        (unit_args(MARCH, "1", other_id), &format!("belongs to restore {other_id}") as &str),
        (unit_args(MARCH, "1", "x'; DROP TABLE orders; --"), "is not a restore id"),
        (unit_args("orders_2026_04", "1", &id), "no restore of orders_2026_04 is planned"),
        (unit_args("orders_2026_05", "1", &id), "no archive of partition orders_2026_05"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&args, CHUNKED);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(needle), "{args:?}: {text}");
    }
    assert_eq!(staged(&env, "r", MARCH).await, (0, true));
    // The Map: every unit as its own process, all at once, plus a second one of chunk 1; chunk 2's
    // is killed before its commit.
    let mut outcomes = Vec::new();
    for (chunk, v) in run_map(&env, &units, |chunk| unit_args(MARCH, chunk, &id), "restore_chunk_before_commit").await {
        assert_eq!((v["action"].as_str(), v["chunk"].to_string()), (Some("restore_chunk"), chunk.clone()), "{v}");
        assert!(v["rows"].as_i64().unwrap() > 0, "{v}");
        outcomes.push((chunk, v["outcome"].as_str().unwrap().to_string()));
    }
    // Chunk 1's two units: one loaded it, the other found it loaded.
    let mut ones: Vec<&str> = outcomes.iter().filter(|(c, _)| c == "1").map(|(_, o)| o.as_str()).collect();
    ones.sort();
    assert_eq!(ones, ["already_loaded", "loaded"], "{outcomes:?}");
    assert_eq!(staged(&env, "r", MARCH).await, (total as i64 - 1, true), "every unit but the killed one");
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'r' AND tablename = 'orders_2026_03'").await,
        0
    );
    // The final step loads the killed unit's object and renames.
    let (out, v) = env.json(&restore, CHUNKED);
    ok(&out);
    assert_eq!(
        (v["restore"]["complete"].as_bool(), v["restore"]["restored_as"].as_str()),
        (Some(true), Some("r.orders_2026_03")),
        "{v}"
    );
    assert_eq!(staged(&env, "r", MARCH).await, (0, false));
    let restored = march_md5(&env, "r").await;
    assert_eq!(restored, march);
    // A unit after the final step: refused, nothing changed.
    let args = unit_args(MARCH, "1", &id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, v) = env.json(&args, CHUNKED);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("r.orders_2026_03 already exists"), "{v}");
    assert_eq!(march_md5(&env, "r").await, march);
}

/// A Step Functions Map as processes: one per unit, all at once, plus a second one of the first
/// unit's chunk; chunk 2's with fail point `kill` armed. Waits for them all: chunk 2's must have
/// died at the fail point (exit 86), every other succeeded; returns their chunks and JSON reports.
async fn run_map<A: AsRef<[String]>>(
    env: &TestEnv,
    units: &[serde_json::Value],
    args: impl Fn(&str) -> A,
    kill: &str,
) -> Vec<(String, serde_json::Value)> {
    let mut children = Vec::new();
    for unit in units.iter().chain(std::iter::once(&units[0])) {
        let chunk = unit["chunk"].to_string();
        let vars = [CHUNKED, &[("PARTITION_ARCHIVER_FAILPOINTS", if chunk == "2" { kill } else { "" })]].concat();
        let args = args(&chunk);
        let args: Vec<&str> = args.as_ref().iter().map(String::as_str).collect();
        let piped = std::process::Stdio::piped;
        children.push((chunk, env.command(&args, &vars).stdout(piped()).stderr(piped()).spawn().unwrap()));
    }
    let mut reports = Vec::new();
    for (chunk, child) in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        if chunk == "2" {
            assert_eq!(out.status.code(), Some(86), "chunk 2 was killed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        ok(&out);
        reports.push((chunk, serde_json::from_slice(&out.stdout).unwrap()));
    }
    reports
}
