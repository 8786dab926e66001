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
    assert_eq!(p["ReservedConcurrentExecutions"], 1);
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
