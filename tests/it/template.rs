//! cfn-lint does not look deep inside `AWS::Serverless::*` resources: check the values that matter
//! in template.yaml here (runtime, architecture, timeout, schedule, concurrency, IAM actions).

use serde_yaml::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

#[test]
fn the_function_is_configured_as_documented() {
    let t = template();
    let f = &t["Resources"]["ArchiverFunction"];
    assert_eq!(f["Type"], "AWS::Serverless::Function");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    let p = &f["Properties"];
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Handler"], "bootstrap");
    assert_eq!(p["Architectures"][0], "arm64");
    assert_eq!(p["Timeout"], 900);
    // One run at a time, unless the fan-out state machine runs chunk units side by side.
    let reserved = untag(&p["ReservedConcurrentExecutions"]);
    assert_eq!(reserved[0], "UseStepFunctions");
    assert_eq!(reserved[2], 1);
    assert_eq!(untag(&reserved[1]).as_str(), Some("FanOutConcurrency"));
    assert_eq!(t["Parameters"]["ScheduleExpression"]["Default"], "cron(0 3 1 * ? *)");
    assert_eq!(untag(&p["Events"]["Monthly"]["Properties"]["Schedule"]).as_str(), Some("ScheduleExpression"));
    assert_eq!(p["Events"]["Monthly"]["Type"], "Schedule");
    let vars = &p["Environment"]["Variables"];
    for k in [
        "DB_SECRET_ARN",
        "ARCHIVE_BUCKET",
        "ARCHIVE_PREFIX",
        "ARCHIVE_COMPRESSION",
        "LOCK_TIMEOUT_MS",
        "MAINTAIN_TABLES",
        "DEFAULT_RETENTION",
        "DEFAULT_PREMAKE",
        "DEFAULT_TIME_ZONE",
        "PGSSLMODE",
        "ARCHIVE_CHUNK_SIZE",
        "ARCHIVE_STREAMS",
    ] {
        assert!(!vars[k].is_null(), "environment variable {k} missing");
    }
    assert_eq!(vars["ARCHIVE_SSE"], "aws:kms");
    assert_eq!(untag(&p["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"]).as_str(), Some("SQS"));
}

#[test]
fn iam_is_least_privilege() {
    let t = template();
    let policies = t["Resources"]["ArchiverFunction"]["Properties"]["Policies"].as_sequence().unwrap();
    let mut actions = Vec::new();
    for policy in policies {
        if let Some(statements) = policy["Statement"].as_sequence() {
            for s in statements {
                assert_eq!(s["Effect"], "Allow");
                if s["Action"] == "s3:DeleteObject" {
                    // Only objects tagged superseded (chunks of an abandoned plan), and only a
                    // delete marker: s3:DeleteObjectVersion is never granted.
                    let tag = &s["Condition"]["StringEquals"]["s3:ExistingObjectTag/partition-archiver-kind"];
                    assert_eq!(tag, "superseded", "{s:?}");
                    assert_eq!(
                        (
                            partition_archiver::archive::store::SUPERSEDED_TAG.0,
                            partition_archiver::archive::store::SUPERSEDED_TAG.1
                        ),
                        ("partition-archiver-kind", "superseded")
                    );
                    assert_eq!(
                        t["Resources"]["ArchiveBucket"]["Properties"]["VersioningConfiguration"]["Status"], "Enabled",
                        "a delete is only a delete marker in a versioned bucket"
                    );
                    continue;
                }
                match &s["Action"] {
                    Value::String(a) => actions.push(a.clone()),
                    Value::Sequence(list) => actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string())),
                    other => panic!("unexpected Action {other:?}"),
                }
                assert_ne!(s["Resource"], "*", "no wildcard resources: {s:?}");
            }
        }
    }
    for a in &actions {
        assert!(!a.ends_with(":*") && a != "*", "wildcard action {a}");
        assert!(!a.contains("DeleteObject") && !a.contains("DeleteBucket"), "the function never deletes archives: {a}");
        assert!(!a.contains("BypassGovernanceRetention") && !a.contains("PutLifecycle"), "{a}");
    }
    for needed in [
        "secretsmanager:GetSecretValue",
        "s3:PutObject",
        "s3:GetObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucketMultipartUploads",
        "kms:GenerateDataKey",
    ] {
        assert!(actions.iter().any(|a| a == needed), "{needed} missing from {actions:?}");
    }
}

#[test]
fn bucket_and_alarms_protect_the_archive() {
    let t = template();
    let b = &t["Resources"]["ArchiveBucket"]["Properties"];
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(b["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"], true);
    let rules = b["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    assert!(rules.iter().any(|r| r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7));
    let deny = &t["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        (deny["Effect"].as_str(), deny["Condition"]["Bool"]["aws:SecureTransport"].as_str()),
        (Some("Deny"), Some("false"))
    );
    for (alarm, metric) in [
        ("FunctionErrorsAlarm", "Errors"),
        ("PartitionTooLargeAlarm", "LargestPartitionBytes"),
        ("DefaultPartitionRowsAlarm", "DefaultPartitionRows"),
        ("NoRecentSuccessAlarm", "DaysSinceLastSuccess"),
    ] {
        assert_eq!(t["Resources"][alarm]["Properties"]["MetricName"], metric, "{alarm}");
    }
    // The metrics the alarms watch are the ones the binary publishes.
    for m in ["LargestPartitionBytes", "DefaultPartitionRows", "StepFailures", "DaysSinceLastSuccess"] {
        assert!(include_str!("../../src/aws/metrics.rs").contains(&format!("\"{m}\"")), "{m} is not published");
    }
}

#[test]
fn cold_storage_moves_only_data_objects_and_restores_wait_in_a_state_machine() {
    let t = template();
    let rules = t["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    let cold = rules.iter().find(|r| r["Id"] == "cold-storage").expect("a cold-storage rule");
    let transitions: Vec<&str> =
        cold["Transitions"].as_sequence().unwrap().iter().map(|t| t["StorageClass"].as_str().unwrap()).collect();
    assert_eq!(transitions, ["GLACIER_IR", "DEEP_ARCHIVE"]);
    // Only objects tagged as data move: manifests stay readable at once. The tag is the one the
    // binary writes at upload.
    let tags = cold["TagFilters"].as_sequence().expect("the rule filters on the data tag");
    assert_eq!(tags.len(), 1);
    assert_eq!((tags[0]["Key"].as_str(), tags[0]["Value"].as_str()), (Some("partition-archiver-kind"), Some("data")));
    assert!(include_str!("../../src/archive/store.rs")
        .contains(r#"DATA_TAG: (&str, &str) = ("partition-archiver-kind", "data")"#));

    let f = &t["Resources"]["ArchiverFunction"]["Properties"];
    let vars = &f["Environment"]["Variables"];
    assert_eq!(untag(&vars["RESTORE_RETRIEVAL_TIER"]).as_str(), Some("RestoreRetrievalTier"));
    assert_eq!(untag(&vars["RESTORE_RETRIEVAL_DAYS"]).as_str(), Some("RestoreRetrievalDays"));
    assert_eq!(t["Parameters"]["RestoreRetrievalTier"]["Default"], "Standard");
    assert_eq!(t["Parameters"]["RestoreRetrievalDays"]["Default"], 7);
    let objects =
        &f["Policies"][0]["Statement"].as_sequence().unwrap().iter().find(|s| s["Sid"] == "ArchiveObjects").unwrap()
            ["Action"];
    for needed in ["s3:RestoreObject", "s3:PutObjectTagging"] {
        assert!(objects.as_sequence().unwrap().iter().any(|a| a == needed), "{needed} missing: {objects:?}");
    }

    // request -> (pending? wait, ask again) -> restored.
    let m = &t["Resources"]["RestoreStateMachine"];
    assert_eq!(m["Type"], "AWS::Serverless::StateMachine");
    let states = &m["Properties"]["Definition"]["States"];
    assert_eq!(m["Properties"]["Definition"]["StartAt"], "Restore");
    assert_eq!(states["Restore"]["Parameters"]["Payload.$"], "$.request");
    assert_eq!(states["Restore"]["Next"], "RestoredOrPending");
    let choices = states["RestoredOrPending"]["Choices"].as_sequence().unwrap();
    assert_eq!(
        (choices[0]["Variable"].as_str(), choices[0]["Next"].as_str()),
        (Some("$.result.report.pending"), Some("WaitForRetrieval"))
    );
    assert_eq!(states["WaitForRetrieval"]["Type"], "Wait");
    assert_eq!(untag(&states["WaitForRetrieval"]["Seconds"]).as_str(), Some("RestorePollSeconds"));
    assert_eq!(states["WaitForRetrieval"]["Next"], "Restore");
    assert_eq!(states[choices[1]["Next"].as_str().unwrap()]["Type"], "Succeed");
}

#[test]
fn the_fan_out_state_machine_runs_chunk_units_then_finishes_each_partition() {
    let t = template();
    let sm = &t["Resources"]["FanOutStateMachine"]["Properties"];
    let states = &sm["Definition"]["States"];
    assert_eq!(sm["Definition"]["StartAt"], "FirstRound");
    assert_eq!(states["FirstRound"]["Next"], "Prepare");
    assert_eq!(states["Prepare"]["Parameters"]["Payload"]["action"], "maintain");
    assert_eq!(states["Prepare"]["Parameters"]["Payload"]["fan_out"], true);
    assert_eq!(states["Prepare"]["ResultSelector"]["units.$"], "$.Payload.units");
    let map = &states["ArchiveChunks"];
    assert_eq!(map["Type"], "Map");
    assert_eq!(untag(&map["MaxConcurrency"]).as_str(), Some("FanOutConcurrency"));
    let unit = &map["ItemProcessor"]["States"]["ArchiveChunk"]["Parameters"]["Payload"];
    assert_eq!(unit["action"], "archive_chunk");
    for field in ["table", "partition", "chunk"] {
        assert_eq!(unit[format!("{field}.$").as_str()], format!("$.{field}"), "the unit's {field}");
    }
    assert_eq!(map["Next"], "Finish");
    assert_eq!(states["Finish"]["Parameters"]["Payload"]["action"], "maintain");
    assert!(states["Finish"]["Parameters"]["Payload"]["fan_out"].is_null(), "Finish archives what is left");
    // The loop: a failed Finish fails the execution; complete ends it; otherwise another round
    // after a pause, at most 24.
    let choices = &states["Complete?"]["Choices"];
    assert_eq!((&choices[0]["Variable"], &choices[0]["Next"]), (&"$.finished.ok".into(), &"StepFailed".into()));
    assert_eq!((&choices[1]["Variable"], &choices[1]["Next"]), (&"$.finished.complete".into(), &"Done".into()));
    assert_eq!(choices[2]["NumericGreaterThanEquals"], 24);
    assert_eq!(states["Complete?"]["Default"], "NextRound");
    assert_eq!(states["NextRound"]["Next"], "Pause");
    assert_eq!(states["Pause"]["Type"], "Wait");
    assert_eq!(states["Pause"]["Next"], "Prepare");
    assert_eq!(map["ItemsPath"], "$.prepared.units");
    assert_eq!(states["Finish"]["ResultSelector"]["ok.$"], "$.Payload.ok");
    // The state machine takes over the monthly schedule.
    assert_eq!(untag(&sm["Events"]["Monthly"]["Properties"]["Schedule"]).as_str(), Some("ScheduleExpression"));
    let fn_schedule = &t["Resources"]["ArchiverFunction"]["Properties"]["Events"]["Monthly"]["Properties"]["State"];
    assert_eq!(untag(fn_schedule)[1], "DISABLED");
    // The event fields the Map sends are the ones the function accepts.
    let event = serde_json::json!({"action": "archive_chunk", "table": "public.trades", "partition": "trades_2026_01", "chunk": 2});
    assert!(partition_archiver::request::from_event(&event).is_ok());
    let prepare = serde_json::json!({"action": "maintain", "fan_out": true});
    assert!(partition_archiver::request::from_event(&prepare).is_ok());
}
