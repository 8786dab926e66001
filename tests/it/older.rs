//! Archives recorded by earlier versions, before every archive was a chunk plan: a partition's one
//! object on its manifest row (no `archive_chunk` rows) and JSON manifests without chunk fields.
//! Each shape is made here from a real archive, by rewriting its records to the older shape, and
//! must still be completed (in flight), verified and restored.

use crate::archive::{crash_at, march_sum, seed, OrdersBefore, NOW};
use crate::harness::*;

const MARCH: &str = "orders_2026_03";

/// Rewrites the records of `partition` to the shape earlier versions wrote: its one object (chunk
/// 1's key, upload, token and figures) on the manifest row, no chunk plan, no chunk rows.
async fn to_older_row_shape(env: &TestEnv, partition: &str) {
    let plan: i64 = env
        .scalar_i64(&format!(
            "SELECT count(*) FROM partition_archiver.archive_chunk WHERE partition_name = '{partition}' AND state <> 'superseded'"
        ))
        .await;
    assert_eq!(plan, 1, "{partition}: a plan of one chunk to rewrite");
    env.db
        .batch_execute(&format!(
            "UPDATE partition_archiver.archive_manifest m
                SET object_key = c.object_key, upload_token = c.upload_token, multipart_upload_id = c.multipart_upload_id,
                    row_count = c.row_count, raw_bytes = c.raw_bytes, compressed_bytes = c.compressed_bytes,
                    sha256 = c.sha256, checksum_composite = c.checksum_composite, etag = c.etag, version_id = c.version_id,
                    chunk_size = NULL, chunk_generation = 0, rel_filenode = NULL, rel_blocks = NULL
               FROM partition_archiver.archive_chunk c
              WHERE c.partition_name = m.partition_name AND m.partition_name = '{partition}' AND c.state <> 'superseded';
             DELETE FROM partition_archiver.archive_chunk WHERE partition_name = '{partition}';"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn one_object_in_flight_from_an_earlier_version_is_completed_without_uploading_it_again() {
    for point in ["before_complete", "after_complete"] {
        let env = TestEnv::migrated_at(NOW).await;
        seed(&env).await;
        let before = OrdersBefore::take(&env).await;
        crash_at(&env, point).await;
        let partition = env
            .scalar_text("SELECT partition_name FROM partition_archiver.archive_manifest WHERE state = 'uploading'")
            .await
            .unwrap();
        to_older_row_shape(&env, &partition).await;
        let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
        assert!(out.status.success(), "{point}: {report}");
        assert_eq!(report["complete"], true, "{point}: {report}");
        let states =
            env.scalar_text("SELECT string_agg(DISTINCT state, ',') FROM partition_archiver.archive_manifest").await;
        assert_eq!(states.as_deref(), Some("dropped"), "{point}");
        // Carried over as a plan of one under its recorded key, uploaded once.
        let key = env
            .scalar_text(&format!(
                "SELECT object_key FROM partition_archiver.archive_chunk WHERE partition_name = '{partition}'"
            ))
            .await
            .unwrap();
        assert!(key.ends_with(&format!("/{partition}.csv.zst")), "{point}: {key}");
        let versions = s3().await.list_object_versions().bucket(&env.bucket).prefix(&key).send().await.unwrap();
        assert_eq!(versions.versions().len(), 1, "{point}: uploaded once");
        assert_eq!(env.multipart_uploads().await, 0, "{point}");
        before.assert_none_lost(&env).await;
    }
}

#[tokio::test]
async fn an_archive_with_the_older_row_and_manifest_shapes_verifies_and_restores() {
    let env = TestEnv::migrated_at(NOW).await;
    seed(&env).await;
    let original = march_sum(&env, None).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "orders"], &[]));
    to_older_row_shape(&env, MARCH).await;
    // The older row shape: verified by HEAD and by reading, restored identical.
    let (out, v) = env.json(&["verify", "--table", "orders", "--deep"], &[]);
    assert!(out.status.success(), "{v}");
    assert!(v["archives"].as_array().unwrap().iter().all(|a| a["ok"] == true && a["checked"] == "deep"), "{v}");
    ok(&env.run(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "from_row"], &[]));
    assert_eq!(march_sum(&env, Some("from_row.orders_2026_03")).await, original);

    // The older JSON manifest (no chunk fields), with no database row: listed and restored from it.
    let json = to_older_json_manifest(&env).await;
    assert!(json.get("object_key").is_some() && json.get("sha256").is_some(), "{json}");
    env.db
        .batch_execute(&format!("DELETE FROM partition_archiver.archive_manifest WHERE partition_name = '{MARCH}'"))
        .await
        .unwrap();
    let (out, listed) = env.json(&["list", "--from-bucket", "--table", "orders"], &[]);
    assert!(out.status.success(), "{listed}");
    assert!(listed.to_string().contains(MARCH), "{listed}");
    let (out, v) = env.json(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "from_json"], &[]);
    assert!(out.status.success(), "{v}");
    assert!(v["restore"]["source"].as_str().unwrap().ends_with("orders_2026_03.manifest.json"), "{v}");
    assert_eq!(march_sum(&env, Some("from_json.orders_2026_03")).await, original);
}

/// Verified, with its JSON manifest written, by an earlier version that died before recording
/// `verified`: the older records say `uploaded`, with the older manifest in the bucket. The carried
/// object's rows are checked again before it counts (earlier versions checked them only after
/// `uploaded`), and the older manifest is accepted as describing it.
async fn uploaded_by_an_earlier_version(env: &TestEnv) -> Option<String> {
    seed(env).await;
    let original = march_sum(env, None).await;
    crash_at(env, "after_verify").await;
    let partition = env
        .scalar_text("SELECT partition_name FROM partition_archiver.archive_manifest WHERE state = 'verified'")
        .await
        .unwrap();
    assert_eq!(partition, MARCH);
    to_older_row_shape(env, MARCH).await;
    env.db
        .batch_execute(&format!(
            "UPDATE partition_archiver.archive_manifest SET state = 'uploaded', verified_at = NULL WHERE partition_name = '{MARCH}'"
        ))
        .await
        .unwrap();
    to_older_json_manifest(env).await;
    original
}

/// Rewrites March's JSON manifest in the bucket as earlier versions wrote it (no chunk fields);
/// returns it.
async fn to_older_json_manifest(env: &TestEnv) -> serde_json::Value {
    let s3 = s3().await;
    let manifest_key = "partition-archiver/public.orders/_manifests/year=2026/month=03/orders_2026_03.manifest.json";
    let body = s3.get_object().bucket(&env.bucket).key(manifest_key).send().await.unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&body.body.collect().await.unwrap().into_bytes()).unwrap();
    for newer in ["chunks", "chunk_size", "chunk_generation", "rel_filenode", "rel_blocks"] {
        json.as_object_mut().unwrap().remove(newer);
    }
    let body = serde_json::to_vec(&json).unwrap();
    s3.put_object().bucket(&env.bucket).key(manifest_key).body(body.into()).send().await.unwrap();
    json
}

#[tokio::test]
async fn an_earlier_versions_uploaded_archive_is_checked_again_then_verified_against_its_older_manifest() {
    let env = TestEnv::migrated_at(NOW).await;
    let original = uploaded_by_an_earlier_version(&env).await;
    assert!(original.is_some());
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    assert!(out.status.success(), "{report}");
    let state = env
        .scalar_text(&format!("SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = '{MARCH}'"))
        .await;
    assert_eq!(state.as_deref(), Some("dropped"), "{report}");
    ok(&env.run(&["restore", "--table", "orders", "--partition", MARCH, "--into-schema", "r"], &[]));
    assert_eq!(march_sum(&env, Some("r.orders_2026_03")).await, original);
}

#[tokio::test]
async fn an_earlier_versions_uploaded_archive_whose_rows_differ_is_never_verified_or_dropped() {
    let env = TestEnv::migrated_at(NOW).await;
    uploaded_by_an_earlier_version(&env).await;
    // A row deleted past the freeze (its owner disabled the trigger for it).
    env.db
        .batch_execute(&format!(
            "ALTER TABLE public.{MARCH} DISABLE TRIGGER USER;
             DELETE FROM public.{MARCH} WHERE id = (SELECT min(id) FROM public.{MARCH});
             ALTER TABLE public.{MARCH} ENABLE TRIGGER USER;"
        ))
        .await
        .unwrap();
    let (out, report) = env.json(&["maintain", "--now", NOW, "--table", "orders"], &[]);
    assert!(!out.status.success(), "{report}");
    assert!(report.to_string().contains("this chunk's own upload, holds"), "{report}");
    let state = env
        .scalar_text(&format!("SELECT state FROM partition_archiver.archive_manifest WHERE partition_name = '{MARCH}'"))
        .await;
    assert_ne!(state.as_deref(), Some("verified"));
    assert_eq!(
        env.scalar_i64(&format!("SELECT count(*) FROM pg_tables WHERE tablename = '{MARCH}'")).await,
        1,
        "not dropped"
    );
}
