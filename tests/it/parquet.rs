//! Parquet archives against real PostgreSQL, LocalStack and DuckDB: a table with a column of every
//! mapped type, hostile and edge values and NULLs, archived as Parquet, read by DuckDB with the
//! expected column types and PostgreSQL's aggregates, restored identical; unrepresentable values
//! refused before the drop; corrupted objects refused by verify and restore.

use crate::archive::NOW;
use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A monthly table with every type the Parquet mapping names, registered with archive_format
/// 'parquet', and rows in March 2026 full of edge values (partitions made by a run in March).
async fn typed_table(env: &TestEnv, format: &str) {
    env.db
        .batch_execute(&format!(
            r#"CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
               CREATE DOMAIN public.positive AS integer CHECK (VALUE > 0);
               CREATE TABLE public.typed (
                 id bigint NOT NULL, created_at timestamptz NOT NULL,
                 i2 smallint, i4 integer, f4 real, f8 double precision, b boolean,
                 t text, vc varchar(20), ch char(5), nm name,
                 n numeric(38,18), n2 numeric(10,2), nfree numeric,
                 d date, ts timestamp, tsz timestamptz, tm time, iv interval,
                 u uuid, by bytea, j json, jb jsonb, arr integer[], e public.mood, pos public.positive, c1 "char"
               ) PARTITION BY RANGE (created_at);
               INSERT INTO partition_archiver.part_config (schema_name, table_name, retention, archive_format)
               VALUES ('public', 'typed', 6, '{format}');"#
        ))
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z", "--table", "public.typed"], &[("ARCHIVE_BUCKET", "")]));
    env.db
        .batch_execute(
            r#"INSERT INTO public.typed
               SELECT g, timestamptz '2026-03-01 00:00:00+00' + g * interval '1 minute',
                 CASE g % 4 WHEN 0 THEN -32768 WHEN 1 THEN 32767 WHEN 2 THEN NULL ELSE g % 1000 END,
                 CASE g % 3 WHEN 0 THEN -2147483648 WHEN 1 THEN 2147483647 ELSE g END,
                 CASE g % 7 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN '-0'
                            WHEN 4 THEN 1.4e-45 WHEN 5 THEN NULL ELSE g * 0.1 END::real,
                 CASE g % 7 WHEN 0 THEN 'NaN' WHEN 1 THEN '-Infinity' WHEN 2 THEN '1.7976931348623157e308' WHEN 3 THEN '-0'
                            WHEN 4 THEN 5e-324 WHEN 5 THEN NULL ELSE g * 0.1 END::float8,
                 CASE g % 3 WHEN 0 THEN true WHEN 1 THEN false END,
                 CASE g % 6 WHEN 0 THEN '' WHEN 1 THEN 'quote"d,comma' WHEN 2 THEN E'new\nline\r\n' WHEN 3 THEN 'ünï©ødé 🚀'
                            WHEN 4 THEN NULL ELSE E'back\\slash ' || repeat('x', g % 100) END,
                 'v' || g, CASE g % 2 WHEN 0 THEN 'ab' END, 'name_' || g,
                 CASE g % 5 WHEN 0 THEN 99999999999999999999.999999999999999999 WHEN 1 THEN -99999999999999999999.999999999999999999
                            WHEN 2 THEN 0 WHEN 3 THEN NULL ELSE g * 0.000000000000000001 END,
                 CASE g % 3 WHEN 0 THEN 12345678.90 WHEN 1 THEN -0.01 END,
                 CASE g % 5 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN 1e100 + 0.5 ELSE g / 7.0 END::numeric,
                 CASE g % 6 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' WHEN 2 THEN '4713-01-01 BC' WHEN 3 THEN '5874897-12-31'
                            WHEN 4 THEN NULL ELSE date '2026-03-01' + g END::date,
                 CASE g % 6 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' WHEN 2 THEN '4713-01-01 00:00:00 BC'
                            WHEN 3 THEN '294246-12-31 23:59:59.999999' WHEN 4 THEN NULL
                            ELSE timestamp '2026-03-01' + g * interval '1.000001 second' END::timestamp,
                 CASE g % 5 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' WHEN 2 THEN '0044-03-15 12:00:00+00 BC'
                            WHEN 3 THEN NULL ELSE timestamptz '2026-03-01 00:00:00+00' + g * interval '1 second' END::timestamptz,
                 CASE g % 4 WHEN 0 THEN '24:00:00' WHEN 1 THEN '00:00:00' WHEN 2 THEN '23:59:59.999999' END::time,
                 CASE g % 2 WHEN 0 THEN interval '1 year 2 mons -3 days 04:05:06.789' END,
                 CASE WHEN g % 5 <> 0 THEN md5(g::text)::uuid END,
                 CASE g % 3 WHEN 0 THEN '\x00ff'::bytea WHEN 1 THEN ''::bytea END,
                 CASE g % 2 WHEN 0 THEN '{"a": [1, "é"], "b": null}'::json END,
                 CASE g % 2 WHEN 1 THEN '{"k": "v\"q", "n": 1.50}'::jsonb END,
                 CASE g % 3 WHEN 0 THEN ARRAY[1, NULL, 3] WHEN 1 THEN '{}'::integer[] END,
                 CASE g % 4 WHEN 0 THEN 'happy' WHEN 1 THEN 'sad' END::public.mood,
                 CASE WHEN g % 2 = 0 THEN g END,
                 CASE WHEN g % 2 = 0 THEN 'x' END::"char"
               FROM generate_series(1, 3000) g"#,
        )
        .await
        .unwrap();
}

const TYPED_SUM: &str = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM public.typed_2026_03 t";

/// The python of the DuckDB wheel's venv (installed by `infra/duckdb.sh`, cached).
fn duckdb_python() -> PathBuf {
    if let Ok(p) = std::env::var("PA_TEST_DUCKDB_PYTHON") {
        return p.into();
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/infra/duckdb.sh"))
        .output()
        .expect("run infra/duckdb.sh");
    assert!(out.status.success(), "infra/duckdb.sh: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().into()
}

/// Downloads every object under `prefix` whose key ends with `suffix` into `dir`, keeping the
/// key's path (so Hive partitions stay in the path); returns the local paths.
pub(crate) async fn download(env: &TestEnv, prefix: &str, suffix: &str, dir: &Path) -> Vec<PathBuf> {
    let s3 = s3().await;
    let listed = s3.list_objects_v2().bucket(&env.bucket).prefix(prefix).send().await.unwrap();
    let mut paths = Vec::new();
    for key in listed.contents().iter().filter_map(|o| o.key()).filter(|k| k.ends_with(suffix)) {
        let body = s3.get_object().bucket(&env.bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body.into_bytes()).unwrap();
        paths.push(path);
    }
    paths
}

/// Runs a DuckDB query in the wheel's python and returns its rows as JSON.
pub(crate) fn duckdb(sql: &str) -> serde_json::Value {
    let script = r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # a query over 2 s would draw one on stdout
rows = con.execute(sys.argv[1]).fetchall()
print(json.dumps([[None if v is None else str(v) for v in r] for r in rows]))
"#;
    let out = Command::new(duckdb_python()).args(["-c", script, sql]).output().unwrap();
    assert!(out.status.success(), "duckdb: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn every_type_round_trips_through_parquet_and_duckdb_reads_it_typed() {
    let env = TestEnv::migrated_at(NOW).await;
    typed_table(&env, "parquet").await;
    let original = env.scalar_text(TYPED_SUM).await.unwrap();
    let pg_aggregates = env
        .scalar_text(
            "SELECT concat_ws('|', count(*), count(i2), sum(i4), min(n), max(n), sum(n2), min(d) FILTER (WHERE isfinite(d)),
                    max(ts) FILTER (WHERE isfinite(ts)), count(u), count(DISTINCT t), sum(length(t)))
               FROM public.typed_2026_03",
        )
        .await
        .unwrap();

    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "public.typed"], &[]);
    ok(&out);
    let steps = steps(&report, "public.typed");
    for s in ["detach", "archive", "drop"] {
        assert!(steps.contains(&format!("{s} public.typed_2026_03")), "{steps:?}");
    }
    let key = "partition-archiver/public.typed/year=2026/month=03/typed_2026_03.parquet";
    let manifest: (String, String) = {
        let r = env
            .db
            .query_one(
                "SELECT format, object_key FROM partition_archiver.archive_manifest WHERE partition_name = 'typed_2026_03'",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(manifest, ("parquet".to_string(), key.to_string()));
    // verify --deep reads the object back.
    let (out, v) = env.json(&["verify", "--deep"], &[]);
    ok(&out);
    assert!(v["archives"].as_array().unwrap().iter().all(|a| a["ok"] == true), "{v}");

    // DuckDB reads the downloaded object with the real types and PostgreSQL's aggregates.
    let dir = tempfile::tempdir().unwrap();
    let files = download(&env, "partition-archiver/public.typed/", ".parquet", dir.path()).await;
    // March, and April (empty: its partition was made by the run in March).
    assert_eq!(files.len(), 2, "{files:?}");
    // A month's folder holds only its Parquet data (Athena reads every object under a partition's
    // location): the manifest is in the table's _manifests folder.
    let month = s3()
        .await
        .list_objects_v2()
        .bucket(&env.bucket)
        .prefix("partition-archiver/public.typed/year=2026/month=03/")
        .send()
        .await
        .unwrap();
    let month: Vec<&str> = month.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(month, [key], "{month:?}");
    let glob = format!("{}/partition-archiver/public.typed/*/*/*.parquet", dir.path().display());
    let read = format!("read_parquet('{glob}', hive_partitioning = true)");
    let types: Vec<(String, String)> =
        duckdb(&format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {read})"))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
            .collect();
    let want = [
        ("id", "BIGINT"),
        ("created_at", "TIMESTAMP WITH TIME ZONE"),
        ("i2", "SMALLINT"),
        ("i4", "INTEGER"),
        ("f4", "FLOAT"),
        ("f8", "DOUBLE"),
        ("b", "BOOLEAN"),
        ("t", "VARCHAR"),
        ("vc", "VARCHAR"),
        ("ch", "VARCHAR"),
        ("nm", "VARCHAR"),
        ("n", "DECIMAL(38,18)"),
        ("n2", "DECIMAL(10,2)"),
        ("nfree", "VARCHAR"),
        ("d", "DATE"),
        ("ts", "TIMESTAMP"),
        ("tsz", "TIMESTAMP WITH TIME ZONE"),
        ("tm", "TIME"),
        ("iv", "VARCHAR"),
        ("u", "UUID"),
        ("by", "BLOB"),
        ("j", "JSON"),
        ("jb", "JSON"),
        ("arr", "VARCHAR"),
        ("e", "VARCHAR"),
        ("pos", "VARCHAR"),
        ("c1", "VARCHAR"),
    ];
    for (name, ty) in want {
        assert!(types.contains(&(name.to_string(), ty.to_string())), "{name} {ty}: {types:?}");
    }
    let duck = duckdb(&format!(
        "SELECT concat_ws('|', count(*), count(i2), sum(i4), min(n), max(n), sum(n2), min(d) FILTER (WHERE isfinite(d)),
                max(ts) FILTER (WHERE isfinite(ts)), count(u), count(DISTINCT t), sum(length(t)))
           FROM {read} WHERE year = 2026 AND month = '03'"
    ));
    let duck = duck[0][0].as_str().unwrap().to_string();
    // The same figures, BC dates and year-294246 timestamps included.
    assert_eq!(normalise(&duck), normalise(&pg_aggregates), "duckdb {duck}, postgres {pg_aggregates}");
    let infinities = duckdb(&format!(
        "SELECT count(*) FILTER (WHERE d = 'infinity'::DATE), count(*) FILTER (WHERE d = '-infinity'::DATE),
                count(*) FILTER (WHERE ts = 'infinity'::TIMESTAMP), count(*) FILTER (WHERE ts = '-infinity'::TIMESTAMP),
                count(*) FILTER (WHERE isnan(f8)) FROM {read}"
    ));
    assert_eq!(infinities, serde_json::json!([["500", "500", "500", "500", "428"]]));

    // Restored identical, every value.
    let (out, _) = env.json(
        &["restore", "--table", "public.typed", "--partition", "typed_2026_03", "--into-schema", "restored"],
        &[],
    );
    ok(&out);
    let restored = env.scalar_text(&TYPED_SUM.replace("public.typed_2026_03", "restored.typed_2026_03")).await;
    assert_eq!(restored.as_deref(), Some(original.as_str()));
}

/// "12.500" and "12.5" are the same sum; DuckDB writes "4713-01-01 (BC)" where PostgreSQL writes
/// "4713-01-01 BC".
fn normalise(s: &str) -> String {
    s.replace(" (BC)", " BC")
        .split('|')
        .map(|f| if f.contains('.') && !f.contains(':') { f.trim_end_matches('0').trim_end_matches('.') } else { f })
        .collect::<Vec<_>>()
        .join("|")
}

#[tokio::test]
async fn an_unrepresentable_value_stops_the_archive_before_the_drop() {
    let env = TestEnv::migrated_at(NOW).await;
    env.db
        .batch_execute(
            "CREATE TABLE public.prices (id bigint, created_at timestamptz NOT NULL, price numeric(10,2), at timestamp)
               PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, retention, archive_format)
             VALUES ('public', 'prices', 6, 'parquet');",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z", "--table", "public.prices"], &[("ARCHIVE_BUCKET", "")]));
    // March holds a numeric NaN in a numeric(10,2) column, after 200,000 good rows (more than the
    // pipeline's queues hold, so the refusal happens while the COPY still streams); the next table
    // a timestamp past what the Arrow column holds once shifted to the Unix epoch.
    env.db
        .batch_execute(
            "INSERT INTO public.prices SELECT g, '2026-03-02', g, '2026-03-02' FROM generate_series(1, 200000) g;
             INSERT INTO public.prices VALUES (200001, '2026-03-03', 'NaN', '2026-03-02');
             CREATE TABLE public.stamps (LIKE public.prices) PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, retention, archive_format)
             VALUES ('public', 'stamps', 6, 'parquet');",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z", "--table", "public.stamps"], &[("ARCHIVE_BUCKET", "")]));
    env.db
        .batch_execute("INSERT INTO public.stamps VALUES (1, '2026-03-03', 1, '294270-01-01 00:00:00')")
        .await
        .unwrap();
    let sum = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM (SELECT * FROM public.prices_2026_03 UNION ALL SELECT * FROM public.stamps_2026_03) t";
    let before = env.scalar_text(sum).await;
    let (out, report) = env.json(&["maintain", "--now", NOW], &[]);
    assert!(!out.status.success(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains(
            r#"column \"price\" (numeric(10,2)): the value NaN cannot be stored exactly as Decimal128(10, 2)"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"column \"at\" (timestamp without time zone): the value timestamp"#), "{text}");
    assert!(text.contains("beyond year 294246"), "{text}");
    // Nothing dropped, nothing left in S3: the partitions keep their rows, no upload is open.
    assert_eq!(env.scalar_text(sum).await, before);
    for p in ["prices_2026_03", "stamps_2026_03"] {
        assert!(env.scalar_text(&format!("SELECT to_regclass('public.{p}')::text")).await.is_some(), "{p}");
    }
    assert_eq!(env.multipart_uploads().await, 0);
    let listed = s3().await.list_objects_v2().bucket(&env.bucket).send().await.unwrap();
    assert!(listed.contents().iter().all(|o| !o.key().unwrap().ends_with(".parquet")), "{listed:?}");
    // The same months archive as CSV, exactly.
    env.db
        .batch_execute(
            "UPDATE partition_archiver.part_config SET archive_format = 'csv' WHERE table_name IN ('prices', 'stamps')",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", NOW, "--table", "public.prices"], &[]));
    assert!(env.scalar_text("SELECT to_regclass('public.prices_2026_03')::text").await.is_none());
}

#[tokio::test]
async fn a_corrupted_parquet_object_fails_verify_and_restore_changing_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    typed_table(&env, "parquet").await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "public.typed"], &[]));
    let key = "partition-archiver/public.typed/year=2026/month=03/typed_2026_03.parquet";
    let s3 = s3().await;
    let body = s3.get_object().bucket(&env.bucket).key(key).send().await.unwrap().body.collect().await.unwrap();
    let good = body.into_bytes().to_vec();
    // Put corrupted content at the key (a new version, as an attacker or a bad copy would).
    for (what, bad) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let at = b.len() / 3;
            b[at] ^= 0x55;
            b
        }),
    ] {
        s3.put_object()
            .bucket(&env.bucket)
            .key(key)
            .body(bad.into())
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap();
        let latest = s3.head_object().bucket(&env.bucket).key(key).send().await.unwrap();
        env.edit_archive_record("typed_2026_03", &format!("version_id = '{}'", latest.version_id().unwrap())).await;
        let before = env.fingerprint().await;
        let (out, v) = env.json(&["verify", "--deep", "--table", "public.typed"], &[]);
        assert!(!out.status.success(), "{what}: {v}");
        let (out, v) = env.json(
            &["restore", "--table", "public.typed", "--partition", "typed_2026_03", "--into-schema", "restored"],
            &[],
        );
        assert!(!out.status.success(), "{what}: {v}");
        assert_eq!(env.fingerprint().await, before, "{what}: a failed restore changes nothing");
        assert!(env.scalar_text("SELECT to_regclass('restored.typed_2026_03')::text").await.is_none());
    }
}

#[tokio::test]
async fn parquet_settings_that_cannot_work_are_refused_changing_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    let before = env.fingerprint().await;
    for (key, value, says) in [
        ("ARCHIVE_FORMAT", "orc", "csv, binary or parquet"),
        ("ARCHIVE_COMPRESSION", "gzip", "zstd or none with ARCHIVE_FORMAT=parquet"),
        ("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "100KiB", "from 1MiB to 1GiB"),
    ] {
        let mut extra = vec![(key, value)];
        if key != "ARCHIVE_FORMAT" {
            extra.push(("ARCHIVE_FORMAT", "parquet"));
        }
        let (out, v) = env.json(&["maintain", "--now", NOW], &extra);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {v}");
        assert!(v.to_string().contains(says), "{key}={value}: {v}");
        assert_eq!(env.fingerprint().await, before, "{key}={value} changed nothing");
    }
    // part_config refuses gzip with parquet for a table.
    let err = env
        .db
        .batch_execute(
            "UPDATE partition_archiver.part_config SET archive_format = 'parquet', archive_compression = 'gzip'
              WHERE table_name = 'orders'",
        )
        .await
        .unwrap_err();
    assert!(err.as_db_error().unwrap().constraint() == Some("part_config_parquet_compression_check"), "{err:?}");
    // A table that asks for parquet while the deployment compresses with gzip: refused, clearly.
    env.db
        .batch_execute(
            "UPDATE partition_archiver.part_config SET archive_format = 'parquet' WHERE table_name = 'orders'",
        )
        .await
        .unwrap();
    crate::archive::seed(&env).await;
    // The deployment compresses with gzip: orders (parquet) is refused before its first detach,
    // with its partitions still created; trades (csv) archives as usual.
    let (out, v) = env.json(&["maintain", "--now", NOW], &[("ARCHIVE_COMPRESSION", "gzip")]);
    assert!(!out.status.success(), "{v}");
    assert!(v.to_string().contains("archive_format parquet does not go with compression gzip"), "{v}");
    let orders = steps(&v, "public.orders");
    assert!(orders.iter().any(|s| s.starts_with("create_partition")), "{orders:?}");
    assert_eq!(
        env.scalar_i64("SELECT count(*) FROM partition_archiver.archive_manifest WHERE table_name = 'orders'").await,
        0
    );
    assert!(env.names("public.orders").await.contains(&"orders_2026_03".to_string()), "nothing detached");
    assert!(steps(&v, "public.trades").contains(&"drop public.trades_2026_03".to_string()), "{v}");
}

/// A row bigger than the row-group bound is refused, naming the setting.
#[tokio::test]
async fn a_row_larger_than_the_row_group_bound_is_refused() {
    let env = TestEnv::migrated_at(NOW).await;
    env.db
        .batch_execute(
            "CREATE TABLE public.blobs (id bigint, created_at timestamptz NOT NULL, body text) PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, retention, archive_format)
             VALUES ('public', 'blobs', 6, 'parquet');",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z", "--table", "public.blobs"], &[("ARCHIVE_BUCKET", "")]));
    env.db.batch_execute("INSERT INTO public.blobs VALUES (1, '2026-03-02', repeat(md5('x'), 70000))").await.unwrap();
    let (out, v) = env
        .json(&["maintain", "--now", NOW, "--table", "public.blobs"], &[("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "1MiB")]);
    assert!(!out.status.success(), "{v}");
    assert!(
        v.to_string().contains("larger than the Parquet row-group bound ARCHIVE_PARQUET_ROW_GROUP_BYTES=1048576"),
        "{v}"
    );
    assert_eq!(env.scalar_i64("SELECT count(*) FROM public.blobs_2026_03").await, 1);
    // With a larger bound the same partition archives and drops.
    ok(&env
        .run(&["maintain", "--now", NOW, "--table", "public.blobs"], &[("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "8MiB")]));
    assert!(env.scalar_text("SELECT to_regclass('public.blobs_2026_03')::text").await.is_none());
}

/// A partition larger than the chunk size becomes one Parquet file per block range, each verified
/// by its footer's statistics, restored in parallel; an older month archived as CSV before the
/// switch to Parquet restores beside it (a mixed archive), and DuckDB reads the chunk files.
#[tokio::test]
async fn chunked_parquet_and_a_mixed_csv_parquet_archive_restore_identical() {
    let env = TestEnv::migrated_at(NOW).await;
    crate::chunks::seed_big(&env, 40_000).await;
    let month_sum = |p: &str| format!("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {p} t");
    let original_march = env.scalar_text(&month_sum("public.orders_2026_03")).await;
    let chunked =
        [("ARCHIVE_CHUNK_SIZE", "1MiB"), ("ARCHIVE_STREAMS", "2"), ("ARCHIVE_PARQUET_ROW_GROUP_BYTES", "1MiB")];
    // October: only March is past the retention, and the deployment writes CSV.
    ok(&env.run(&["maintain", "--now", "2026-10-15T00:00:00Z", "--table", "orders"], &chunked));
    // Then the table switches to Parquet: April is archived as Parquet.
    env.db
        .batch_execute(
            "UPDATE partition_archiver.part_config SET archive_format = 'parquet' WHERE table_name = 'orders'",
        )
        .await
        .unwrap();
    env.db
        .batch_execute(
            "INSERT INTO public.orders (user_id, symbol, side, type, status, price, quantity, filled_quantity, created_at, updated_at)
             SELECT g % 97, repeat('s', g % 40), 'buy', 'limit', 'filled', g * 0.000001, 1 + g % 5, 0,
                    timestamptz '2026-04-01 00:00:00+00' + ((g * 40) % (29 * 86400)) * interval '1 second', now()
               FROM generate_series(1, 40000) g",
        )
        .await
        .unwrap();
    let original_april = env.scalar_text(&month_sum("public.orders_2026_04")).await;
    let april_figures = env
        .scalar_text("SELECT concat_ws('|', count(*), sum(quantity), count(DISTINCT id)) FROM public.orders_2026_04")
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], &chunked));
    let formats: Vec<(String, String, i64)> = env
        .db
        .query(
            "SELECT m.partition_name, m.format, count(c.*) FROM partition_archiver.archive_manifest m
               LEFT JOIN partition_archiver.archive_chunk c USING (table_schema, table_name, partition_name)
              WHERE m.table_name = 'orders' GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(formats[0].0, "orders_2026_03");
    assert_eq!(formats[0].1, "csv");
    assert_eq!((formats[1].0.as_str(), formats[1].1.as_str()), ("orders_2026_04", "parquet"));
    assert!(formats[1].2 > 1, "April is chunked: {formats:?}");

    // DuckDB reads April's chunk files, row for row.
    let dir = tempfile::tempdir().unwrap();
    let files = download(&env, "partition-archiver/public.orders/year=2026/month=04/", ".parquet", dir.path()).await;
    assert_eq!(files.len() as i64, formats[1].2, "{files:?}");
    assert!(files.iter().all(|f| f.to_str().unwrap().contains("orders_2026_04.g1.c0")), "{files:?}");
    let glob = format!("{}/partition-archiver/public.orders/year=2026/month=04/*.parquet", dir.path().display());
    let duck = duckdb(&format!(
        "SELECT concat_ws('|', count(*), sum(quantity), count(DISTINCT id)) FROM read_parquet('{glob}')"
    ));
    assert_eq!(normalise(duck[0][0].as_str().unwrap()), normalise(&april_figures));

    // Both months come back, each from its own format.
    for p in ["orders_2026_03", "orders_2026_04"] {
        ok(&env.run(&["restore", "--table", "orders", "--partition", p, "--into-schema", "restored"], &chunked));
    }
    assert_eq!(env.scalar_text(&month_sum("restored.orders_2026_04")).await, original_april);
    assert_eq!(env.scalar_text(&month_sum("restored.orders_2026_03")).await, original_march);
}

/// Months archived before and after the table's columns changed (one added, one dropped) are
/// read together by DuckDB with `union_by_name`: each column where a month has it, NULL where
/// not; the README's query.
#[tokio::test]
async fn months_with_different_columns_are_read_together_by_name() {
    let env = TestEnv::migrated_at(NOW).await;
    env.db
        .batch_execute(
            "CREATE TABLE public.evolving (id bigint, created_at timestamptz NOT NULL, note text)
               PARTITION BY RANGE (created_at);
             INSERT INTO partition_archiver.part_config (schema_name, table_name, retention, archive_format)
             VALUES ('public', 'evolving', 1, 'parquet');",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-03-05T00:00:00Z", "--table", "evolving"], &[("ARCHIVE_BUCKET", "")]));
    env.db
        .batch_execute("INSERT INTO public.evolving SELECT g, '2026-03-10', 'n' || g FROM generate_series(1, 300) g")
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-05-05T00:00:00Z", "--table", "evolving"], &[])); // March goes
    env.db
        .batch_execute(
            "ALTER TABLE public.evolving ADD COLUMN venue text DEFAULT 'XNAS';
             ALTER TABLE public.evolving DROP COLUMN note;
             INSERT INTO public.evolving (id, created_at) SELECT g, '2026-04-10' FROM generate_series(301, 500) g;",
        )
        .await
        .unwrap();
    ok(&env.run(&["maintain", "--now", "2026-06-05T00:00:00Z", "--table", "evolving"], &[])); // April goes
    let dir = tempfile::tempdir().unwrap();
    let files = download(&env, "partition-archiver/public.evolving/", ".parquet", dir.path()).await;
    assert_eq!(files.len(), 2, "{files:?}");
    let rows = duckdb(&format!(
        "SELECT month, count(*), count(note), count(venue), min(id), max(id)
           FROM read_parquet('{}/partition-archiver/public.evolving/*/*/*.parquet', union_by_name = true,
                             hive_partitioning = true, hive_types = {{'year': INTEGER, 'month': INTEGER}})
          GROUP BY month ORDER BY month",
        dir.path().display()
    ));
    assert_eq!(rows, serde_json::json!([["3", "300", "300", "0", "1", "300"], ["4", "200", "0", "200", "301", "500"]]));
}
