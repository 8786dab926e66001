//! Cold storage is a normal state of an archive (invariant 8), against LocalStack, which keeps an
//! object's storage class, refuses GET on GLACIER and DEEP_ARCHIVE (`InvalidObjectState`) and
//! implements `RestoreObject` (finishing at once). Objects are moved the way S3 Batch Operations
//! and `aws s3 cp --storage-class` move them: a CopyObject onto themselves with the new class,
//! which (unlike a lifecycle transition) makes a new version with a full-object SHA-256 in place
//! of the multipart composite. The manifest row is left as it was: verify and restore follow the
//! identical copy.

use crate::archive::{seed, NOW};
use crate::harness::*;

const MARCH: &str = "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t";

/// Moves the archive object of `partition` to `class` by copying it onto itself; returns the
/// version the manifest records and the copy's version.
pub(crate) async fn move_to_class(env: &TestEnv, partition: &str, class: &str) -> (String, String) {
    let (key, recorded) = recorded_object(env, partition).await;
    let s3 = s3().await;
    let copied = s3
        .copy_object()
        .bucket(&env.bucket)
        .key(&key)
        .copy_source(format!("{}/{key}", env.bucket))
        .storage_class(aws_sdk_s3::types::StorageClass::from(class))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket(&env.bucket)
        .key(&key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.storage_class().map(|c| c.as_str()), Some(class));
    let composite = env
        .scalar_text(&format!(
            "SELECT checksum_composite FROM partition_archiver.archive_manifest WHERE partition_name = '{partition}'"
        ))
        .await;
    assert!(composite.as_deref().is_some_and(|c| c.ends_with("-1")), "{composite:?}");
    assert_ne!(head.checksum_sha256(), composite.as_deref(), "the copy has a full-object checksum");
    (recorded, copied.version_id().unwrap().to_string())
}

/// The key and version the manifest row records for `partition`.
async fn recorded_object(env: &TestEnv, partition: &str) -> (String, String) {
    let row = env
        .db
        .query_one(
            "SELECT object_key, version_id FROM partition_archiver.archive_manifest WHERE partition_name = $1",
            &[&partition],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn archived_trades(env: &TestEnv) -> Option<String> {
    seed(env).await;
    let before = env.scalar_text(&MARCH.replace("{}", "public.trades_2026_03")).await;
    ok(&env.run(&["maintain", "--now", NOW, "--table", "trades"], &[]));
    assert_eq!(env.scalar_i64("SELECT count(*) FROM pg_tables WHERE tablename = 'trades_2026_03'").await, 0);
    before
}

async fn restored_tables(env: &TestEnv) -> i64 {
    env.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'archive_restore'").await
}

#[tokio::test]
async fn deep_archive_restore_is_pending_then_identical_and_verify_reads_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    let original = archived_trades(&env).await;
    move_to_class(&env, "trades_2026_03", "DEEP_ARCHIVE").await;

    // verify: HEAD only, passes whatever the class (a GET would fail with InvalidObjectState).
    let (out, v) = env.json(&["verify", "--table", "trades"], &[]);
    assert!(out.status.success(), "{v}");
    let item = &v["archives"][0];
    assert_eq!((item["ok"].as_bool(), item["checked"].as_str()), (Some(true), Some("head")), "{v}");
    assert_eq!(item["storage_class"], "DEEP_ARCHIVE", "{v}");
    // verify --deep names the cold object instead of failing obscurely, and does not retrieve it.
    let (out, v) = env.json(&["verify", "--table", "trades", "--deep"], &[]);
    assert!(out.status.success(), "{v}");
    assert!(
        v["archives"][0]["message"].as_str().unwrap().contains("not readable without a retrieval (DEEP_ARCHIVE)"),
        "{v}"
    );
    assert_eq!(v["archives"][0]["checked"], "head", "{v}");

    // restore: the retrieval is requested, nothing changes in PostgreSQL, exit code 4.
    let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert_eq!(out.status.code(), Some(4), "{v}");
    assert_eq!((v["action"].as_str(), v["ok"].as_bool()), (Some("restore"), Some(false)), "{v}");
    let pending = &v["pending"];
    assert_eq!(
        (pending["retrieval"].as_str(), pending["tier"].as_str(), pending["storage_class"].as_str()),
        (Some("requested"), Some("Standard"), Some("DEEP_ARCHIVE")),
        "{v}"
    );
    assert_eq!(pending["days"], 7, "{v}");
    assert_eq!(restored_tables(&env).await, 0, "a pending restore changes nothing");

    // LocalStack finishes retrievals at once: the next restore finds it done and restores, verified.
    let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["restore"]["restored_as"], "archive_restore.trades_2026_03", "{v}");
    assert_eq!(env.scalar_text(&MARCH.replace("{}", "archive_restore.trades_2026_03")).await, original);
}

#[tokio::test]
async fn restore_wait_polls_until_the_retrieval_is_done() {
    let env = TestEnv::migrated_at(NOW).await;
    let original = archived_trades(&env).await;
    move_to_class(&env, "trades_2026_03", "GLACIER").await;
    let out = env.run(
        &["restore", "--table", "trades", "--partition", "trades_2026_03", "--wait", "--poll-interval", "1"],
        &[("RESTORE_RETRIEVAL_TIER", "Bulk"), ("RESTORE_RETRIEVAL_DAYS", "2")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("waiting for the GLACIER retrieval") && stderr.contains("Bulk tier"),
        "it shows that it waits: {stderr}"
    );
    assert_eq!(env.scalar_text(&MARCH.replace("{}", "archive_restore.trades_2026_03")).await, original);
}

#[tokio::test]
async fn bad_retrieval_input_is_refused_by_name_and_changes_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    archived_trades(&env).await;
    move_to_class(&env, "trades_2026_03", "DEEP_ARCHIVE").await;
    let restore = ["restore", "--table", "trades", "--partition", "trades_2026_03"];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("RESTORE_RETRIEVAL_TIER", "Fast")], "RESTORE_RETRIEVAL_TIER=\"Fast\""),
        (&[("RESTORE_RETRIEVAL_DAYS", "0")], "RESTORE_RETRIEVAL_DAYS=\"0\""),
        (&[("RESTORE_RETRIEVAL_DAYS", "-1")], "RESTORE_RETRIEVAL_DAYS=\"-1\""),
        (&[("RESTORE_RETRIEVAL_TIER", "Expedited")], "Expedited retrieval is not offered for Deep Archive"),
    ];
    for (extra, needle) in cases {
        let (out, v) = env.json(&restore, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{extra:?}: {v}");
    }
    // None of them asked S3 for anything: no retrieval was started.
    let key = env
        .scalar_text(
            "SELECT object_key FROM partition_archiver.archive_manifest WHERE partition_name = 'trades_2026_03'",
        )
        .await
        .unwrap();
    let head = s3().await.head_object().bucket(&env.bucket).key(&key).send().await.unwrap();
    assert_eq!(head.restore(), None, "no retrieval was requested");
    // A version the manifest records that does not exist (for this key: a real version id of
    // another object, so S3 answers NoSuchVersion rather than a malformed-id error), and a SHA-256
    // the object at the key does not have: no copy to follow.
    let other = s3()
        .await
        .list_object_versions()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap()
        .versions()
        .iter()
        .find(|v| v.key().unwrap().ends_with(".manifest.json"))
        .and_then(|v| v.version_id().map(str::to_string))
        .unwrap();
    env.edit_archive_record("trades_2026_03", &format!("version_id = '{other}', sha256 = repeat('0', 64)")).await;
    let (out, v) = env.json(&restore, &[]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(&format!("version {other} does not exist")), "{v}");
    assert_eq!(restored_tables(&env).await, 0);
    // `--poll-interval` needs `--wait`.
    let out = env.run(&[&restore[..], &["--poll-interval", "5"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The function's core as the Lambda runtime builds it, set up for `env`.
async fn function_of(env: &TestEnv) -> partition_archiver::app::App {
    let settings = partition_archiver::config::Settings::from_lookup(&|k| match k {
        "DATABASE_URL" => Some(env.url.clone()),
        "PGSSLMODE" => Some("disable".into()),
        "ARCHIVE_BUCKET" => Some(env.bucket.clone()),
        _ => None,
    })
    .unwrap();
    partition_archiver::app::App::new(settings).await
}

#[tokio::test]
async fn the_lambda_returns_a_pending_restore_as_a_normal_report_and_refuses_wait() {
    let env = TestEnv::migrated_at(NOW).await;
    archived_trades(&env).await;
    move_to_class(&env, "trades_2026_03", "DEEP_ARCHIVE").await;
    let app = function_of(&env).await;
    let event = serde_json::json!({"action": "restore", "table": "public.trades", "partition": "trades_2026_03"});
    let report = partition_archiver::lambda::handle(&app, event.clone(), None).await.expect("pending is not an error");
    assert_eq!((report["ok"].as_bool(), report["pending"]["retrieval"].as_str()), (Some(false), Some("requested")));
    let mut waiting = event.clone();
    waiting["wait"] = serde_json::json!(true);
    let err = partition_archiver::lambda::handle(&app, waiting, None).await.unwrap_err();
    assert_eq!(err.type_name(), "InvalidInput");
    assert!(err.message.contains("restore --wait") && err.message.contains("RestoreStateMachine"), "{}", err.message);
    let done = partition_archiver::lambda::handle(&app, event, None).await.unwrap();
    assert_eq!(done["ok"], true, "{done}");
}

#[tokio::test]
async fn an_archive_rewritten_by_a_copy_verifies_and_restores_from_the_copy_when_its_version_is_gone() {
    let env = TestEnv::migrated_at(NOW).await;
    let original = archived_trades(&env).await;
    let (recorded, copy) = move_to_class(&env, "trades_2026_03", "STANDARD_IA").await;
    // The recorded version is still there and identical to its copy: the copy is followed.
    let (out, v) = env.json(&["verify", "--table", "trades"], &[]);
    assert!(out.status.success(), "{v}");
    let item = &v["archives"][0];
    assert_eq!((item["ok"].as_bool(), item["storage_class"].as_str()), (Some(true), Some("STANDARD_IA")), "{v}");
    let message = item["message"].as_str().unwrap();
    assert!(message.contains(&format!("version {recorded} was copied to version {copy} (STANDARD_IA)")), "{v}");
    // A lifecycle rule expiring noncurrent versions removes the recorded one.
    let (key, _) = recorded_object(&env, "trades_2026_03").await;
    s3().await.delete_object().bucket(&env.bucket).key(&key).version_id(&recorded).send().await.unwrap();
    for deep in [false, true] {
        let args: &[&str] =
            if deep { &["verify", "--table", "trades", "--deep"] } else { &["verify", "--table", "trades"] };
        let (out, v) = env.json(args, &[]);
        assert!(out.status.success(), "{v}");
        let item = &v["archives"][0];
        assert_eq!(item["ok"], true, "{v}");
        assert_eq!(item["checked"], if deep { "deep" } else { "head" }, "{v}");
        if !deep {
            let message = item["message"].as_str().unwrap();
            assert!(message.contains(&format!("version {recorded} is gone; its copy, version {copy}")), "{v}");
        }
    }
    let (out, v) = env.json(&["restore", "--table", "trades", "--partition", "trades_2026_03"], &[]);
    assert!(out.status.success(), "{v}");
    assert_eq!(env.scalar_text(&MARCH.replace("{}", "archive_restore.trades_2026_03")).await, original);
    // A newest version that is not the archive is never followed.
    s3().await
        .put_object()
        .bucket(&env.bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"not the archive"))
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    let (out, v) = env.json(&["verify", "--table", "trades"], &[]);
    assert!(!out.status.success(), "{v}");
    let message = v["archives"][0]["message"].as_str().unwrap();
    assert!(message.contains(&format!("version {recorded} does not exist, and the newest version")), "{v}");
    assert!(message.contains("is 15 bytes, the manifest says") && !message.contains("Some("), "{v}");
}

/// The event a state of the template sends for `input`: its `Payload` with every `"key.$":
/// "$.field"` taken from `input` (the only paths the restore machine's Map uses).
fn payload_for(payload: &serde_yaml::Value, input: &serde_json::Value) -> serde_json::Value {
    let mut event = serde_json::Map::new();
    for (k, v) in payload.as_mapping().expect("a Payload mapping") {
        let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
        match k.strip_suffix(".$") {
            Some(field) => {
                let path = v.strip_prefix("$.").expect("a top-level path");
                event.insert(field.to_string(), input[path].clone());
            }
            None => {
                event.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
        }
    }
    serde_json::Value::Object(event)
}

#[tokio::test]
async fn the_restore_state_machine_plans_waits_loads_each_unit_and_renames_through_the_function() {
    let env = TestEnv::migrated_at(NOW).await;
    let original = archived_trades(&env).await;
    move_to_class(&env, "trades_2026_03", "DEEP_ARCHIVE").await;
    let app = function_of(&env).await;
    let states =
        crate::template::template()["Resources"]["RestoreStateMachine"]["Properties"]["Definition"]["States"].clone();
    let request = serde_json::json!({"action": "restore", "table": "public.trades", "partition": "trades_2026_03"});
    // Plan: a copy of the request with "fan_out": true (the PlanRequest and AsPlan states).
    let mut plan = request.clone();
    plan["fan_out"] = true.into();
    let first = partition_archiver::lambda::handle(&app, plan.clone(), None).await.unwrap();
    assert!(first["pending"].is_object(), "a cold object is retrieved first: {first}");
    assert_eq!(restored_tables(&env).await, 0, "nothing changed while pending");
    // After the wait (LocalStack has the retrieval done at once), plan again: one unit.
    let planned = partition_archiver::lambda::handle(&app, plan, None).await.unwrap();
    let units = planned["restore"]["units"].as_array().expect("units").clone();
    assert_eq!(units.len(), 1, "{planned}");
    // The Map: each unit as the template's LoadChunk state sends it.
    let load = &states["LoadChunks"]["ItemProcessor"]["States"]["LoadChunk"]["Parameters"]["Payload"];
    for unit in &units {
        let event = payload_for(load, unit);
        assert_eq!(event["action"], "restore_chunk");
        let loaded = partition_archiver::lambda::handle(&app, event, None).await.unwrap();
        assert_eq!((loaded["ok"].as_bool(), loaded["outcome"].as_str()), (Some(true), Some("loaded")), "{loaded}");
    }
    // The final step: the request itself.
    let done = partition_archiver::lambda::handle(&app, request, None).await.unwrap();
    assert_eq!((done["ok"].as_bool(), done["restore"]["complete"].as_bool()), (Some(true), Some(true)), "{done}");
    assert_eq!(env.scalar_text(&MARCH.replace("{}", "archive_restore.trades_2026_03")).await, original);
}
