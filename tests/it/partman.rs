//! `import-pg-partman` against a real pg_partman (Debian's postgresql-15-partman, installed by
//! `infra/postgres.sh`): parents created and maintained by pg_partman, imported, refused while
//! pg_partman still maintains them, then maintained and archived here. Every instant this tool
//! uses is pinned; pg_partman's own maintenance runs on the real clock, so the assertions only
//! concern partitions that exist whatever the day (from the pinned start partitions on).

use crate::harness::*;

const NOW: &str = "2026-11-24T10:00:00Z";

#[tokio::test]
async fn parents_made_by_pg_partman_are_imported_refused_while_it_maintains_them_then_archived_here() {
    let env = TestEnv::migrated_at(NOW).await;
    env.db
        .batch_execute(
            "SET TimeZone = 'UTC';
             CREATE SCHEMA partman;
             CREATE EXTENSION pg_partman SCHEMA partman;
             CREATE TABLE public.pm_daily (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
             SELECT partman.create_parent('public.pm_daily', 'created_at', 'native', 'daily', p_premake := 3,
                                          p_start_partition := '2026-11-10');
             CREATE TABLE public.pm_monthly (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
             SELECT partman.create_parent('public.pm_monthly', 'created_at', 'native', 'monthly', p_premake := 2,
                                          p_start_partition := '2026-01-01');
             CREATE TABLE public.pm_ids (id bigint NOT NULL) PARTITION BY RANGE (id);
             SELECT partman.create_parent('public.pm_ids', 'id', 'native', '100000');
             CREATE TABLE public.pm_two (id bigint, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
             SELECT partman.create_parent('public.pm_two', 'created_at', 'native', '2 days');
             SELECT partman.run_maintenance();
             -- Retention set after pg_partman's maintenance ran, so it drops nothing itself.
             UPDATE partman.part_config SET retention = '7 days' WHERE parent_table = 'public.pm_daily';
             UPDATE partman.part_config SET retention = '6 months', retention_keep_table = false
              WHERE parent_table = 'public.pm_monthly';
             INSERT INTO public.pm_daily SELECT g, timestamptz '2026-11-10' + g * interval '1 minute' FROM generate_series(0, 1439) g;
             INSERT INTO public.pm_monthly SELECT g, timestamptz '2026-01-01' + g * interval '1 hour' FROM generate_series(0, 743) g;",
        )
        .await
        .unwrap();
    let registered = "SELECT count(*) FROM partition_archiver.part_config";
    let before = env.scalar_i64(registered).await;

    // --dry-run says what would be registered, and registers nothing.
    let (out, v) = env.json(&["import-pg-partman", "--dry-run"], &[]);
    ok(&out);
    assert_eq!(env.scalar_i64(registered).await, before);
    let imported = |v: &serde_json::Value| -> Vec<String> {
        v["imported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}.{}", i["schema"], i["table"]).replace('"', ""))
            .collect()
    };
    assert_eq!(imported(&v), ["public.pm_daily", "public.pm_monthly"], "{v}");
    let reasons: Vec<String> =
        v["not_imported"].as_array().unwrap().iter().map(|n| format!("{}: {}", n["table"], n["reason"])).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("public.pm_ids") && reasons[0].contains("id-based"), "{reasons:?}");
    assert!(reasons[1].contains("public.pm_two") && reasons[1].contains("partition_interval 2 days"), "{reasons:?}");

    // The import registers both, each as pg_partman had it.
    let (out, v) = env.json(&["import-pg-partman"], &[]);
    ok(&out);
    assert_eq!(imported(&v), ["public.pm_daily", "public.pm_monthly"], "{v}");
    assert!(v["imported"].as_array().unwrap().iter().all(|i| i["still_maintained_by_pg_partman"] == true), "{v}");
    let config = |t: &str| {
        format!(
            "SELECT partition_column || ' ' || partition_interval || ' ' || premake || ' ' || retention || ' ' || retention_action
                    || ' ' || create_default FROM partition_archiver.part_config WHERE table_name = '{t}'"
        )
    };
    assert_eq!(env.scalar_text(&config("pm_daily")).await.unwrap(), "created_at day 3 7 archive_move true");
    assert_eq!(env.scalar_text(&config("pm_monthly")).await.unwrap(), "created_at month 2 6 archive_drop true");
    // Again: registered already, left as they are.
    let (out, v) = env.json(&["import-pg-partman"], &[]);
    ok(&out);
    assert_eq!(v["already_registered"], serde_json::json!(["public.pm_daily", "public.pm_monthly"]), "{v}");

    // Two managers never work on one table: refused, saying how to hand it over, nothing changed.
    let unchanged = env.fingerprint().await;
    let (out, v) = env.json(&["maintain", "--now", NOW, "--table", "pm_monthly"], &[]);
    assert_eq!(out.status.code(), Some(1), "{v}");
    let text = v.to_string();
    assert!(
        text.contains("still maintained by pg_partman") && text.contains("automatic_maintenance = 'off'"),
        "{text}"
    );
    assert_eq!(env.fingerprint().await, unchanged);
    let (out, v) = env.json(&["status", "--now", NOW], &[]);
    ok(&out);
    assert!(v.to_string().contains("public.pm_monthly is still maintained by pg_partman"), "status warns: {v}");

    // Handed over: maintained and archived here (retention counted in each table's periods).
    env.db.batch_execute("UPDATE partman.part_config SET automatic_maintenance = 'off'").await.unwrap();
    for (table, gone) in [
        ("pm_monthly", (1..=4).map(|m| format!("pm_monthly_p2026_{m:02}")).collect::<Vec<_>>()),
        ("pm_daily", (10..=16).map(|d| format!("pm_daily_p2026_11_{d}")).collect::<Vec<_>>()),
    ] {
        let (out, report) = env.json(&["maintain", "--now", NOW, "--table", table], &[]);
        ok(&out);
        let done = steps(&report, &format!("public.{table}"));
        for p in &gone {
            assert!(done.contains(&format!("archive public.{p}")), "{table}: {done:?}");
        }
        let states = env
            .scalar_text(&format!(
                "SELECT string_agg(partition_name || '=' || state, ',' ORDER BY partition_name)
                   FROM partition_archiver.archive_manifest WHERE table_name = '{table}'"
            ))
            .await
            .unwrap();
        let final_state = if table == "pm_daily" { "moved" } else { "dropped" };
        let expected: Vec<String> = gone.iter().map(|p| format!("{p}={final_state}")).collect();
        assert_eq!(states, expected.join(","), "{table}");
    }
    // The archived rows are in S3: January's (744 hours) and November 10th's (1440 minutes).
    let (out, v) = env.json(&["list"], &[]);
    ok(&out);
    let rows: i64 = v["archives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ["pm_monthly_p2026_01", "pm_daily_p2026_11_10"].contains(&a["partition_name"].as_str().unwrap()))
        .map(|a| a["row_count"].as_i64().unwrap())
        .sum();
    assert_eq!(rows, 744 + 1440);
}

#[tokio::test]
async fn import_without_pg_partman_is_a_clear_error_and_changes_nothing() {
    let env = TestEnv::migrated_at(NOW).await;
    let before = env.fingerprint().await;
    let (out, v) = env.json(&["import-pg-partman"], &[]);
    assert_eq!(out.status.code(), Some(2), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("pg_partman is not installed"), "{v}");
    assert_eq!(env.fingerprint().await, before);
}
