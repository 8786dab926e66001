//! cfn-lint does not look deep inside `AWS::Serverless::*` resources: check the values that matter
//! in template.yaml here (runtime, architecture, timeout, schedule, concurrency, IAM actions).

use serde_yaml::Value;

pub(crate) fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template.yaml parses")
}

pub(crate) fn untag(v: &Value) -> &Value {
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
    // The archive format is a parameter the binary parses (csv by default), and the one pair it
    // refuses at start (parquet with gzip) is refused at deploy time by a rule.
    assert_eq!(untag(&vars["ARCHIVE_FORMAT"]).as_str(), Some("ArchiveFormat"));
    let format = &t["Parameters"]["ArchiveFormat"];
    assert_eq!(format["Default"], "csv");
    let formats: Vec<&str> =
        format["AllowedValues"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for f in &formats {
        assert!(partition_archiver::archive::settings::Format::parse(f).is_some(), "{f}");
    }
    assert!(formats.contains(&"parquet"), "{formats:?}");
    let rule = serde_json::to_string(&t["Rules"]["ParquetIsNotGzipped"]["Assertions"]).unwrap();
    assert!(rule.contains("parquet") && rule.contains("gzip") && rule.contains("ArchiveCompression"), "{rule}");
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
        ("TableMaintenanceStaleAlarm", "OldestTableMaintenanceDays"),
    ] {
        assert_eq!(t["Resources"][alarm]["Properties"]["MetricName"], metric, "{alarm}");
    }
    // The metrics the alarms watch are the ones the binary publishes.
    for m in [
        "LargestPartitionBytes",
        "DefaultPartitionRows",
        "StepFailures",
        "DaysSinceLastSuccess",
        "OldestTableMaintenanceDays",
    ] {
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

    // plan (pending? wait, plan again) -> a Map of units -> the final restore (not complete? plan
    // again, at most 24 rounds) -> restored.
    let m = &t["Resources"]["RestoreStateMachine"];
    assert_eq!(m["Type"], "AWS::Serverless::StateMachine");
    let states = &m["Properties"]["Definition"]["States"];
    assert_eq!(m["Properties"]["Definition"]["StartAt"], "FirstRound");
    // The plan: a copy of the request with "fan_out": true (the final step sends the request).
    assert_eq!(states["FirstRound"]["Next"], "PlanRequest");
    assert_eq!(states["PlanRequest"]["Parameters"]["request.$"], "$.request");
    assert_eq!(states["PlanRequest"]["ResultPath"], "$.plan_request");
    assert_eq!(states["PlanRequest"]["Next"], "AsPlan");
    assert_eq!(
        (&states["AsPlan"]["Result"], &states["AsPlan"]["ResultPath"]),
        (&true.into(), &"$.plan_request.request.fan_out".into())
    );
    assert_eq!(states["AsPlan"]["Next"], "Plan");
    assert_eq!(states["Plan"]["Parameters"]["Payload.$"], "$.plan_request.request");
    assert_eq!(states["Plan"]["Next"], "PlannedOrPending");
    let planned = states["PlannedOrPending"]["Choices"].as_sequence().unwrap();
    assert_eq!(
        (planned[0]["Variable"].as_str(), planned[0]["Next"].as_str()),
        (Some("$.plan.report.pending"), Some("WaitForRetrieval"))
    );
    assert_eq!(
        (planned[1]["Variable"].as_str(), planned[1]["Next"].as_str()),
        (Some("$.plan.report.restore.units"), Some("LoadChunks"))
    );
    assert_eq!(states["WaitForRetrieval"]["Type"], "Wait");
    assert_eq!(untag(&states["WaitForRetrieval"]["Seconds"]).as_str(), Some("RestorePollSeconds"));
    assert_eq!(states["WaitForRetrieval"]["Next"], "Plan");
    let map = &states["LoadChunks"];
    assert_eq!((map["Type"].as_str(), map["ItemsPath"].as_str()), (Some("Map"), Some("$.plan.report.restore.units")));
    assert_eq!(untag(&map["MaxConcurrency"]).as_str(), Some("FanOutConcurrency"));
    assert_eq!(map["Next"], "Restore");
    let unit = &map["ItemProcessor"]["States"]["LoadChunk"]["Parameters"]["Payload"];
    assert_eq!(unit["action"], "restore_chunk");
    for field in ["table", "partition", "chunk", "restore_id", "into_schema"] {
        assert_eq!(unit[format!("{field}.$").as_str()], format!("$.{field}"), "the unit's {field}");
    }
    assert_eq!(states["Restore"]["Parameters"]["Payload.$"], "$.request");
    assert_eq!(states["Restore"]["Next"], "RestoredOrPending");
    let choices = states["RestoredOrPending"]["Choices"].as_sequence().unwrap();
    assert_eq!(
        (choices[0]["Variable"].as_str(), choices[0]["Next"].as_str()),
        (Some("$.result.report.pending"), Some("WaitForRetrieval"))
    );
    // A final restore stopped by the invocation's deadline ("complete": false) plans again, at
    // most 24 rounds; after them it fails, never succeeds.
    let unfinished = choices[1]["And"].as_sequence().unwrap();
    assert_eq!(unfinished[1]["Variable"], "$.result.report.restore.complete");
    assert_eq!(unfinished[1]["BooleanEquals"], false);
    assert_eq!(unfinished[2]["NumericLessThan"], 24);
    assert_eq!(choices[1]["Next"], "NextRound");
    assert_eq!(states["NextRound"]["Next"], "Plan");
    assert_eq!(choices[2]["And"][1]["BooleanEquals"], false);
    assert_eq!(choices[2]["Next"], "RestoreFailed");
    assert_eq!(states[choices[3]["Next"].as_str().unwrap()]["Type"], "Succeed");
    // The events the machine sends are the ones the function accepts.
    let plan = serde_json::json!({"action": "restore", "table": "public.trades", "partition": "trades_2026_01", "fan_out": true});
    assert!(partition_archiver::request::from_event(&plan).is_ok());
    let unit = serde_json::json!({"action": "restore_chunk", "table": "public.trades", "partition": "trades_2026_01",
        "chunk": 2, "restore_id": "0123456789abcdef0123456789abcdef", "into_schema": "archive_restore"});
    assert!(partition_archiver::request::from_event(&unit).is_ok());
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

/// Glue's exclude patterns (crawler docs, "Include and exclude patterns"), matched against a key
/// relative to the include path: `**` crosses folders, `*` stays within one name, `?` is one
/// character of a name, anything else is itself (the template uses no `[...]` or `{...}`).
fn glue_glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| glue_glob(rest, &path[i..])),
        [b'*', rest @ ..] => {
            (0..=path.len()).take_while(|&i| i == 0 || path[i - 1] != b'/').any(|i| glue_glob(rest, &path[i..]))
        }
        [b'?', rest @ ..] => matches!(path, [c, tail @ ..] if *c != b'/' && glue_glob(rest, tail)),
        [p, rest @ ..] => matches!(path, [c, tail @ ..] if c == p && glue_glob(rest, tail)),
    }
}

#[test]
fn the_optional_query_layer_reads_only_parquet_under_the_archive_prefix() {
    use partition_archiver::archive::manifest::{chunk_key, manifest_key};
    use partition_archiver::archive::settings::{Compression, Format};
    let t = template();
    let params = &t["Parameters"];
    let res = &t["Resources"];

    // Off by default, and nothing of it exists unless QueryLayer=glue-athena.
    assert_eq!(params["QueryLayer"]["Default"], "none");
    assert_eq!(params["QueryLayer"]["AllowedValues"], serde_yaml::from_str::<Value>("[none, glue-athena]").unwrap());
    let on = untag(&t["Conditions"]["UseQueryLayer"]);
    assert_eq!((untag(&on[0]).as_str(), on[1].as_str()), (Some("QueryLayer"), Some("glue-athena")));
    let mut layer = Vec::new();
    for (name, r) in res.as_mapping().unwrap() {
        let ty = r["Type"].as_str().unwrap();
        if ty.starts_with("AWS::Glue::")
            || ty.starts_with("AWS::Athena::")
            || name.as_str().unwrap().starts_with("Query")
        {
            assert_eq!(r["Condition"], "UseQueryLayer", "{name:?} would exist without QueryLayer=glue-athena");
            layer.push(ty);
        }
    }
    layer.sort_unstable();
    assert_eq!(
        layer,
        [
            "AWS::Athena::WorkGroup",
            "AWS::Glue::Crawler",
            "AWS::Glue::Database",
            "AWS::IAM::Role",
            "AWS::S3::Bucket",
            "AWS::S3::BucketPolicy"
        ]
    );
    for (output, resource) in [("QueryDatabaseName", "QueryDatabase"), ("QueryWorkGroupName", "QueryWorkGroup")] {
        assert_eq!(t["Outputs"][output]["Condition"], "UseQueryLayer", "{output}");
        assert_eq!(untag(&t["Outputs"][output]["Value"]).as_str(), Some(resource), "{output}");
    }

    // The database: a name given, or the stack's with underscores for hyphens.
    let db = &res["QueryDatabase"]["Properties"];
    assert_eq!(untag(&db["CatalogId"]).as_str(), Some("AWS::AccountId"));
    let name = untag(&db["DatabaseInput"]["Name"]);
    assert_eq!(name[0], "HasGlueDatabaseName");
    assert_eq!(untag(&name[1]).as_str(), Some("GlueDatabaseName"));
    let derived = untag(&name[2]);
    assert_eq!((derived[0].as_str(), untag(&derived[1])[0].as_str()), (Some("_"), Some("-")));

    // The crawler reads the bucket and prefix the function writes to.
    let vars = &res["ArchiverFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(untag(&vars["ARCHIVE_PREFIX"]).as_str(), Some("ArchivePrefix"));
    let crawler = &res["QueryCrawler"]["Properties"];
    assert_eq!(untag(&crawler["Role"]).as_str(), Some("QueryCrawlerRole.Arn"));
    assert_eq!(untag(&crawler["DatabaseName"]).as_str(), Some("QueryDatabase"));
    let targets = crawler["Targets"]["S3Targets"].as_sequence().unwrap();
    assert_eq!(targets.len(), 1);
    let path = untag(&targets[0]["Path"]);
    assert_eq!(path[0], "s3://${Bucket}/${ArchivePrefix}/");
    assert_eq!(path[1]["Bucket"], vars["ARCHIVE_BUCKET"]);

    // Its exclusions leave only Parquet objects, for keys named by the binary's own functions.
    let exclusions: Vec<&str> =
        targets[0]["Exclusions"].as_sequence().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(exclusions.iter().all(|e| !e.contains(['[', ']', '{', '}', '\\', '!'])), "{exclusions:?}");
    assert!(glue_glob(b"**.json", b"s.t/year=2026/month=03/p.manifest.json"));
    assert!(!glue_glob(b"*.json", b"s.t/p.manifest.json") && glue_glob(b"*.json", b"p.manifest.json"));
    // A looser "**.csv*" would also drop the Parquet object of a partition named report.csv_2026_03.
    assert!(glue_glob(b"**.csv*", b"s.t/year=2026/month=03/report.csv_2026_03.parquet"));
    let excluded = |key: &str| exclusions.iter().any(|e| glue_glob(e.as_bytes(), key.as_bytes()));
    for dir in ["public.trades/year=2026/month=03", "public.events/year=2026", "public.trades/year=0000"] {
        for partition in ["trades_2026_03", "report.csv_2026_03", "x.pgcopy.json_2026"] {
            for format in [Format::Csv, Format::Binary, Format::Parquet] {
                for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
                    let single = format!("{dir}/{partition}{}", format.suffix(compression));
                    let chunk = chunk_key(&single, partition, 2, 17, format, compression);
                    for key in [&single, &chunk] {
                        assert_eq!(excluded(key.as_str()), format != Format::Parquet, "{key} against {exclusions:?}");
                    }
                    let manifest = manifest_key(&single, dir.split('/').next().unwrap(), partition);
                    assert!(manifest.contains("/_manifests/"), "{manifest}");
                    assert!(excluded(manifest.as_str()), "{manifest} against {exclusions:?}");
                }
            }
        }
    }
    assert_eq!(crawler["SchemaChangePolicy"]["UpdateBehavior"], "UPDATE_IN_DATABASE");
    assert_eq!(crawler["SchemaChangePolicy"]["DeleteBehavior"], "LOG");
    // CRAWL_NEW_FOLDERS_ONLY is refused together with UPDATE_IN_DATABASE.
    assert_eq!(crawler["RecrawlPolicy"]["RecrawlBehavior"], "CRAWL_EVERYTHING");

    // One table per {prefix}/{schema}.{table}/: the bucket is level 1, then each prefix segment.
    let level = params["CrawlerTableLevel"]["Default"].as_u64().unwrap();
    let config = untag(&crawler["Configuration"]).as_str().unwrap().replace("${CrawlerTableLevel}", &level.to_string());
    let config: serde_json::Value = serde_json::from_str(&config).expect("the crawler's Configuration is JSON");
    let segments = params["ArchivePrefix"]["Default"].as_str().unwrap().split('/').count() as u64;
    assert_eq!(config["Grouping"]["TableLevelConfiguration"], serde_json::json!(segments + 2), "{config}");
    assert_eq!(config["CrawlerOutput"]["Partitions"]["AddOrUpdateBehavior"], "InheritFromTable");

    // Monthly, after the archiver's own monthly run: cron(minutes hours day-of-month ...).
    assert_eq!(untag(&crawler["Schedule"]["ScheduleExpression"]).as_str(), Some("CrawlerScheduleExpression"));
    let day = |cron: &Value| -> u32 {
        cron.as_str().unwrap().trim_start_matches("cron(").split(' ').nth(2).unwrap().parse().unwrap()
    };
    assert!(day(&params["CrawlerScheduleExpression"]["Default"]) > day(&params["ScheduleExpression"]["Default"]));

    // The crawler's role reads the archive prefix and nothing else of it: no write, no delete.
    let role = &res["QueryCrawlerRole"]["Properties"];
    assert_eq!(role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"], "glue.amazonaws.com");
    assert_eq!(
        untag(&role["ManagedPolicyArns"][0]).as_str(),
        Some("arn:${AWS::Partition}:iam::aws:policy/service-role/AWSGlueServiceRole")
    );
    assert_eq!(role["Policies"].as_sequence().unwrap().len(), 1);
    let function_key = res["ArchiverFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ArchiveKey")
        .unwrap()["Resource"]
        .clone();
    let mut actions = Vec::new();
    for s in role["Policies"][0]["PolicyDocument"]["Statement"].as_sequence().unwrap() {
        assert_eq!(s["Effect"], "Allow", "{s:?}");
        let action = s["Action"].as_str().expect("one action per statement");
        assert!(!action.contains("Put") && !action.contains("Delete") && !action.ends_with('*'), "{action}");
        actions.push(action);
        let resource = untag(&s["Resource"]);
        match action {
            "s3:GetObject" => {
                assert_eq!(resource[0], "arn:${AWS::Partition}:s3:::${Bucket}/${ArchivePrefix}/*");
                assert_eq!(resource[1]["Bucket"], vars["ARCHIVE_BUCKET"]);
            }
            "s3:ListBucket" => {
                assert_eq!(resource[0], "arn:${AWS::Partition}:s3:::${Bucket}");
                let prefixes = s["Condition"]["StringLike"]["s3:prefix"].as_sequence().expect("listing is limited");
                for p in prefixes {
                    assert!(untag(p).as_str().unwrap().starts_with("${ArchivePrefix}/"), "{p:?}");
                }
            }
            "kms:Decrypt" => assert_eq!(s["Resource"], function_key, "the archive key"),
            other => panic!("the crawler needs no {other}"),
        }
    }
    actions.sort_unstable();
    assert_eq!(actions, ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]);

    // The workgroup: its settings win over the client's, results SSE-S3 in a bucket of their own.
    let wg = &res["QueryWorkGroup"]["Properties"];
    assert_eq!((wg["State"].as_str(), wg["RecursiveDeleteOption"].as_bool()), (Some("ENABLED"), Some(true)));
    let conf = &wg["WorkGroupConfiguration"];
    assert_eq!(conf["EnforceWorkGroupConfiguration"], true);
    assert_eq!(conf["EngineVersion"]["SelectedEngineVersion"], "Athena engine version 3");
    assert_eq!(untag(&conf["BytesScannedCutoffPerQuery"]).as_str(), Some("AthenaBytesScannedCutoff"));
    let cutoff = &params["AthenaBytesScannedCutoff"];
    assert!(cutoff["MinValue"].as_u64().unwrap() >= 10_000_000, "Athena's minimum");
    assert!(cutoff["Default"].as_u64().unwrap() >= cutoff["MinValue"].as_u64().unwrap());
    let results = &conf["ResultConfiguration"];
    assert_eq!(results["EncryptionConfiguration"]["EncryptionOption"], "SSE_S3");
    let out = untag(&results["OutputLocation"]).as_str().unwrap();
    assert!(out.starts_with("s3://${QueryResultsBucket}/"), "{out}");
    for archive in ["ArchivePrefix", "ArchiveBucket", "ExistingBucketName"] {
        assert!(!out.contains(archive), "query results under the archive: {out}");
    }
    let results_bucket = &res["QueryResultsBucket"]["Properties"];
    assert!(results_bucket["ObjectLockEnabled"].is_null(), "results must be deletable");
    let rules = results_bucket["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    assert!(rules.iter().any(|r| r["ExpirationInDays"].as_u64().is_some()), "query results expire");
}
