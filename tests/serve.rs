//! `skewless serve` on a real socket: Feast-shaped requests answered with what
//! backfill stored and what `skewless get` prints; push then read; every
//! error class answered with its status and code; hostile transforms failing
//! only their request; serving during a backfill in another process; and a
//! graceful SIGTERM.

use skewless_testkit as kit;

use std::time::{Duration, Instant};

use kit::*;
use serde_json::{Value, json};

/// The driver_stats example plus on-demand views over the hostile test
/// components: `trapping` panics on x = 13, `spinning` loops on x < 0.
fn hostile_driver_repo() -> TempRepo {
    let repo = TempRepo::with_data("driver_stats", next_hour());
    repo.add_hostile_views();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

fn column<'a>(response: &'a Value, name: &str) -> &'a Value {
    let names = response["metadata"]["feature_names"].as_array().unwrap();
    let index = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name} in {response}"));
    &response["results"][index]
}

fn error_code(response: &Value) -> &str {
    response["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {response}"))
}

#[test]
fn feast_requests_are_answered_with_what_backfill_stored_and_get_prints() {
    let repo = fresh_driver_repo();
    let end = next_hour();
    let server = repo.serve(&[]);

    // Feast's documented request, byte for byte the shape its docs curl.
    let (status, response) = server.post(
        "/get-online-features",
        r#"{
            "features": [
                "driver_hourly_stats:conv_rate",
                "driver_hourly_stats:acc_rate",
                "driver_hourly_stats:avg_daily_trips",
                "transformed_conv_rate:conv_rate_plus_val1"
            ],
            "entities": {"driver_id": [1001, 1500, 99999], "val_to_add": [1000, 1001, 1002]},
            "full_feature_names": false,
            "include_feature_view_version_metadata": false
        }"#,
    );
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["metadata"]["feature_names"],
        json!([
            "driver_id",
            "conv_rate",
            "acc_rate",
            "avg_daily_trips",
            "conv_rate_plus_val1"
        ])
    );
    assert_eq!(column(&response, "driver_id")["values"], json!([1001, 1500, 99999]));
    for (row, driver) in [(0, 1001), (1, 1500)] {
        let (conv, acc, trips) = newest_row(driver, end);
        assert_eq!(
            column(&response, "conv_rate")["values"][row].as_f64().unwrap(),
            conv as f64
        );
        assert_eq!(
            column(&response, "acc_rate")["values"][row].as_f64().unwrap(),
            acc as f64
        );
        assert_eq!(column(&response, "avg_daily_trips")["values"][row], json!(trips));
        assert_eq!(
            column(&response, "conv_rate_plus_val1")["values"][row]
                .as_f64()
                .unwrap(),
            conv as f64 + [1000.0, 1001.0][row]
        );
        assert_eq!(column(&response, "conv_rate")["statuses"][row], "PRESENT");
        assert_eq!(
            column(&response, "conv_rate")["event_timestamps"][row],
            skewless_runtime::time::format_timestamp(end - 3_600_000_000).as_str()
        );
    }
    // An unknown driver: NOT_FOUND, null values, Feast's epoch timestamp.
    assert_eq!(column(&response, "conv_rate")["statuses"][2], "NOT_FOUND");
    assert_eq!(column(&response, "conv_rate")["values"][2], Value::Null);
    assert_eq!(
        column(&response, "conv_rate")["event_timestamps"][2],
        "1970-01-01T00:00:00Z"
    );

    // The same read through a feature service, with lineage, equals `skewless get --json`
    // (run while the server holds the store open).
    let (status, served) = server.post(
        "/get-online-features",
        r#"{"feature_service": "driver_activity", "full_feature_names": true, "include_lineage": true,
            "entities": {"driver_id": [1001, 1500, 99999], "val_to_add": [5, 5, 5]}}"#,
    );
    assert_eq!(status, 200, "{served}");
    let printed: Value = serde_json::from_str(&repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001,1500,99999",
        "--service",
        "driver_activity",
        "--request",
        "val_to_add=5",
        "--full-feature-names",
        "--json",
    ]))
    .unwrap();
    assert_eq!(served, printed);
    assert_eq!(
        served["metadata"]["feature_names"][1], "driver_hourly_stats__conv_rate",
        "full feature names"
    );
    let lineage = served["metadata"]["lineage"].as_object().unwrap();
    assert_eq!(lineage.len(), 2);
    assert!(lineage.values().all(|d| d.as_str().unwrap().len() == 64));
}

#[test]
fn pushed_rows_are_stored_durably_and_read_back_on_the_side_they_were_sent_to() {
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let read = |driver: i64| {
        let (status, response) = server.post(
            "/get-online-features",
            &format!(r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": [{driver}]}}}}"#),
        );
        assert_eq!(status, 200, "{response}");
        (
            column(&response, "conv_rate")["values"][0].clone(),
            column(&response, "avg_daily_trips")["values"][0].clone(),
        )
    };
    let push = |driver: i64, time: &str, trips: i64, to: &str| {
        server.post(
            "/push",
            &format!(
                r#"{{"push_source_name": "driver_stats_push_source",
                    "df": {{"driver_id": [{driver}], "event_timestamp": ["{time}"], "created": ["{time}"],
                           "conv_rate": [0.25], "acc_rate": [0.5], "avg_daily_trips": [{trips}]}},
                    "to": "{to}"}}"#
            ),
        )
    };
    let future = skewless_runtime::time::format_timestamp(next_hour() + 60_000_000);

    // online_and_offline: served at once, and in the history.
    let (status, answer) = push(1001, &future, 4242, "online_and_offline");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["views"], json!(["driver_hourly_stats"]));
    assert_eq!(read(1001), (json!(0.25), json!(4242)));

    // A brand-new driver, online only.
    assert_eq!(push(777_777, &future, 7, "online").0, 200);
    assert_eq!(read(777_777).1, json!(7));

    // offline only: not served (the online value stays), as in Feast.
    let before = read(1002);
    assert_eq!(push(1002, &future, 999, "offline").0, 200);
    assert_eq!(read(1002), before);

    // Durable: a new process reading the store sees the pushed values.
    drop(server);
    let printed: Value = serde_json::from_str(&repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001,777777",
        "--features",
        "driver_hourly_stats:avg_daily_trips",
        "--json",
    ]))
    .unwrap();
    assert_eq!(column(&printed, "avg_daily_trips")["values"], json!([4242, 7]));
}

#[test]
fn every_bad_request_gets_a_clear_error_and_the_server_keeps_serving() {
    let repo = hostile_driver_repo();
    let server = repo.serve(&[
        "--max-rows",
        "100",
        "--max-body-bytes",
        "20000",
        "--request-timeout",
        "300ms",
    ]);
    let good = r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#;
    let (_, expected) = server.post("/get-online-features", good);

    let many: Vec<i64> = (0..101).collect();
    let huge = format!(
        r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": {:?}}}, "pad": "{}"}}"#,
        many,
        "x".repeat(30_000)
    );
    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        ("/get-online-features", r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"#.into(), 400, "malformed_json", "line 1 column"),
        ("/get-online-features", r#"{"features": "driver_hourly_stats", "entities": {}}"#.into(), 400, "invalid_request", "expected a sequence"),
        ("/get-online-features", r#"{"features": ["nope:conv_rate"], "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature_view", "`nope`"),
        ("/get-online-features", r#"{"features": ["driver_hourly_stats:nope"], "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature", "no feature `nope`"),
        ("/get-online-features", r#"{"feature_service": "nope", "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature_service", "`nope`"),
        ("/get-online-features", r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": ["1001"]}}"#.into(), 400, "wrong_type", "`driver_id` must be int64"),
        ("/get-online-features", r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_idd": [1001]}}"#.into(), 400, "unknown_entity_column", "driver_idd"),
        ("/get-online-features", r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"val_to_add": [1]}}"#.into(), 400, "missing_join_key", "driver_id"),
        ("/get-online-features", r#"{"features": ["transformed_conv_rate"], "entities": {"driver_id": [1001]}}"#.into(), 400, "missing_request_field", "val_to_add"),
        ("/get-online-features", r#"{"features": ["driver_hourly_stats"], "entities": {"driver_id": [1, 2], "val_to_add": [1, 2, 3]}}"#.into(), 400, "length_mismatch", "val_to_add"),
        ("/get-online-features", format!(r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": {many:?}}}}}"#), 400, "too_many_rows", "--max-rows"),
        ("/get-online-features", r#"{"entities": {"driver_id": [1]}}"#.into(), 400, "no_features", "feature_service"),
        ("/get-online-features", huge, 413, "body_too_large", "--max-body-bytes"),
        ("/get-online-features", r#"{"features": ["trapping"], "entities": {"x": [1, 13]}}"#.into(), 500, "transform_failed", "unlucky value 13 at row 1"),
        ("/get-online-features", r#"{"features": ["spinning"], "entities": {"x": [-1]}}"#.into(), 503, "transform_timeout", "--request-timeout"),
        ("/push", r#"{"push_source_name": "nope", "df": {}}"#.into(), 400, "unknown_push_source", "driver_stats_push_source"),
        ("/push", r#"{"push_source_name": "driver_stats_source", "df": {}}"#.into(), 400, "not_a_push_source", "type = \"push\""),
        ("/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1]}}"#.into(), 400, "missing_column", "event_timestamp"),
        ("/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1], "event_timestamp": ["2026-01-01"], "conv_rate": [1], "acc_rate": [1], "avg_daily_trips": [1.5]}}"#.into(), 400, "wrong_type", "avg_daily_trips"),
        ("/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [null], "event_timestamp": ["2026-01-01"], "conv_rate": [1], "acc_rate": [1], "avg_daily_trips": [1]}}"#.into(), 400, "null_key", "driver_id"),
        ("/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1], "event_timestamp": ["yesterday"], "conv_rate": [1], "acc_rate": [1], "avg_daily_trips": [1]}}"#.into(), 400, "wrong_type", "`yesterday` is not a timestamp"),
        ("/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1, 2], "event_timestamp": ["2026-01-01"]}}"#.into(), 400, "length_mismatch", "event_timestamp"),
        ("/nowhere", "{}".into(), 404, "not_found", "/nowhere"),
        ("/health", "{}".into(), 405, "method_not_allowed", "POST"),
    ];
    for (path, body, status, code, fragment) in &cases {
        let started = Instant::now();
        let (got_status, response) = server.post(path, body);
        assert_eq!(
            (got_status, error_code(&response)),
            (*status, *code),
            "{path} {body:.200}: {response}"
        );
        let message = response["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(fragment),
            "{code}: `{message}` should mention {fragment}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{code} took {:?}",
            started.elapsed()
        );
        // The server still answers correctly after each.
        assert_eq!(server.post("/get-online-features", good), (200, expected.clone()));
    }
    // A good request to the hostile views works too: a trap does not poison the next call.
    let (status, response) = server.post(
        "/get-online-features",
        r#"{"features": ["trapping"], "entities": {"x": [1, 2]}}"#,
    );
    assert_eq!(status, 200, "{response}");
    assert_eq!(column(&response, "y")["values"], json!([2, 4]));

    // Errors are counted by route and code.
    let (_, metrics) = server.get("/metrics");
    assert!(
        metrics.contains(r#"skewless_http_errors_total{route="/get-online-features",code="transform_timeout"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"skewless_view_errors_total{view="trapping"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("skewless_view_duration_seconds_count{view=\"driver_hourly_stats\",stage=\"store\"}"),
        "{metrics}"
    );
}

#[test]
fn looping_transforms_do_not_hold_up_other_requests() {
    let repo = hostile_driver_repo();
    let server = repo.serve(&["--request-timeout", "3s"]);
    let good = r#"{"features": ["driver_hourly_stats:conv_rate", "transformed_conv_rate"], "entities": {"driver_id": [1001], "val_to_add": [7]}}"#;
    let (status, expected) = server.post("/get-online-features", good);
    assert_eq!(status, 200, "{expected}");
    std::thread::scope(|scope| {
        // More looping requests than the machine has cores, so that if they
        // kept the async workers for their whole time limit nothing else
        // would be answered until it ran out.
        let spinning: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    server.post(
                        "/get-online-features",
                        r#"{"features": ["spinning"], "entities": {"x": [-1]}}"#,
                    )
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(server.post("/get-online-features", good), (200, expected.clone()));
            let elapsed = started.elapsed();
            assert!(
                elapsed < Duration::from_secs(1),
                "a good request waited {elapsed:?} behind looping ones"
            );
        }
        for request in spinning {
            let (status, response) = request.join().unwrap();
            assert_eq!(
                (status, error_code(&response)),
                (503, "transform_timeout"),
                "{response}"
            );
        }
    });
}

#[test]
fn serving_carries_on_during_a_backfill_in_another_process() {
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let request = r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#;
    let (_, before) = server.post("/get-online-features", request);

    // Three more hours of data, backfilled while reads go on.
    let later = next_hour() + 3 * 3_600_000_000;
    skewless_runtime::samples::generate("driver_stats", repo.path(), later).unwrap();
    let mut backfill = std::process::Command::new(env!("CARGO_BIN_EXE_skewless"))
        .args(["--repo", repo.path().to_str().unwrap(), "backfill"])
        .env(
            "SKEWLESS_CACHE_DIR",
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    let output = loop {
        let started = Instant::now();
        let (status, response) = server.post("/get-online-features", request);
        slowest = slowest.max(started.elapsed());
        assert_eq!(status, 200, "{response}");
        reads += 1;
        if backfill.try_wait().unwrap().is_some() {
            break backfill.wait_with_output().unwrap();
        }
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(reads > 10, "only {reads} reads during the backfill");
    assert!(
        slowest < Duration::from_millis(500),
        "a read waited {slowest:?} for the writer"
    );

    // The backfill's values are served once committed.
    let (_, after) = server.post("/get-online-features", request);
    let (_, _, trips) = newest_row(1001, later);
    assert_eq!(column(&after, "avg_daily_trips")["values"][0], json!(trips));
    assert_ne!(before, after);
}

#[test]
fn sigterm_stops_the_server_cleanly_and_the_store_stays_usable() {
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    assert_eq!(server.get("/health").0, 200);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("Stopped"), "{log}");
    repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001",
        "--features",
        "driver_hourly_stats:conv_rate",
    ]);
}

#[test]
fn health_catalog_metrics_and_openapi_describe_the_server() {
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let (status, health) = server.get("/health");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["views"].as_u64()),
        (Some("ok"), Some(2))
    );

    let (_, catalog) = server.get("/v1/catalog");
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    assert_eq!(catalog["project"], "driver_stats");
    assert_eq!(
        catalog["views"]["driver_hourly_stats"]["digest"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(catalog["services"]["driver_activity"].is_object());

    let (_, openapi) = server.get("/openapi.json");
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/get-online-features",
        "/push",
        "/health",
        "/metrics",
        "/v1/catalog",
        "/openapi.json",
    ] {
        assert!(openapi["paths"][path].is_object(), "OpenAPI lacks {path}");
    }
    let request = &openapi["components"]["schemas"]["GetOnlineFeaturesRequest"]["properties"];
    for field in [
        "features",
        "feature_service",
        "entities",
        "full_feature_names",
        "include_lineage",
    ] {
        assert!(request[field].is_object(), "OpenAPI request lacks {field}");
    }

    server.post(
        "/get-online-features",
        r#"{"features": ["transformed_conv_rate"], "entities": {"driver_id": [1001], "val_to_add": [1]}}"#,
    );
    let (_, metrics) = server.get("/metrics");
    for line in [
        r#"skewless_http_requests_total{route="/get-online-features",status="200"} 1"#,
        r#"skewless_view_reads_total{view="driver_hourly_stats"} 1"#,
        r#"skewless_view_duration_seconds_count{view="transformed_conv_rate",stage="transform"} 1"#,
        r#"skewless_http_request_duration_seconds_count{route="/health"} 1"#,
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }
}

#[test]
fn concurrent_pushes_are_all_stored_and_share_commits() {
    let repo = fresh_driver_repo();
    let server = std::sync::Arc::new(repo.serve(&[]));
    let future = skewless_runtime::time::format_timestamp(next_hour() + 60_000_000);
    let commits: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (server, future) = (server.clone(), future.clone());
                scope.spawn(move || {
                    let (status, answer) = server.post(
                        "/push",
                        &format!(
                            r#"{{"push_source_name": "driver_stats_push_source", "to": "online_and_offline",
                                "df": {{"driver_id": [{}], "event_timestamp": ["{future}"],
                                       "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [{i}]}}}}"#,
                            900_000 + i
                        ),
                    );
                    assert_eq!(status, 200, "{answer}");
                    answer["commit"].as_u64().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<i64> = (0..32).map(|i| 900_000 + i).collect();
    let (status, response) = server.post(
        "/get-online-features",
        &format!(r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": {ids:?}}}}}"#),
    );
    assert_eq!(status, 200, "{response}");
    let expected: Vec<i64> = (0..32).collect();
    assert_eq!(column(&response, "avg_daily_trips")["values"], json!(expected));
    let mut distinct = commits.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() < 32,
        "32 concurrent pushes took 32 commits: no group commit"
    );
}

#[test]
fn a_push_keeps_what_an_apply_recorded_while_the_server_ran() {
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "Conversion rate, acceptance rate and trips per driver, hourly",
        "Hourly driver statistics, described anew",
    );
    std::fs::write(&config, text).unwrap();
    repo.ok(&["apply"]);
    let (status, answer) = server.post(
        "/push",
        r#"{"push_source_name": "driver_stats_push_source", "to": "online_and_offline",
            "df": {"driver_id": [1001], "event_timestamp": ["2026-01-01T00:00:00Z"],
                   "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [1]}}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let described = repo.ok(&["describe", "driver_hourly_stats"]);
    assert!(described.contains("described anew"), "{described}");
    let (_, catalog) = server.get("/v1/catalog");
    let catalog: Value = serde_json::from_str(&catalog).unwrap();
    assert_eq!(catalog["views"]["driver_hourly_stats"]["last_commit"], answer["commit"]);
    assert_eq!(
        catalog["views"]["driver_hourly_stats"]["definition"]["description"],
        "Hourly driver statistics, described anew"
    );
}

/// `skewless swap ARGS --server <server>`: (success, what it printed).
fn swap(repo: &TempRepo, server: &ServerProcess, args: &[&str]) -> (bool, String) {
    let out = repo.run(&[&["swap"], args, &["--server", &server.base]].concat());
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_store_version_built_beside_the_live_one_is_swapped_in_under_read_load_without_a_failed_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let request = r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#;
    let trips = |server: &ServerProcess| {
        let (status, response) = server.post("/get-online-features", request);
        assert_eq!(status, 200, "{response}");
        column(&response, "avg_daily_trips")["values"][0].clone()
    };
    let before = trips(&server);

    // Three more hours of other data, backfilled into version `v2` while
    // the live store serves on, untouched.
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    let later = next_hour() + 3 * 3_600_000_000;
    let batch = skewless_runtime::samples::driver_stats(1_000, 3, later, 7);
    skewless_runtime::samples::write_parquet(&repo.path().join("data/driver_stats.parquet"), &batch).unwrap();
    let newest = (0..batch.num_rows())
        .filter(|r| batch.column(0).as_primitive::<Int64Type>().value(*r) == 1001)
        .max_by_key(|r| {
            let time = |c: usize| batch.column(c).as_primitive::<TimestampMicrosecondType>().value(*r);
            (time(1), time(2))
        })
        .unwrap();
    let expected = json!(batch.column(5).as_primitive::<Int64Type>().value(newest));
    let out = repo.run(&["backfill", "--new-version", "v2"]);
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("store version `v2`") && printed.contains("skewless swap v2"),
        "{printed}"
    );
    assert_eq!(
        trips(&server),
        before,
        "a version is not served before it is swapped in"
    );
    assert_ne!(before, expected);

    // Swapped in while four threads read: no read fails, and none reads
    // the old store once one has read the new.
    let stop = AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let (mut reads, mut seen_new) = (0, false);
                    while !stop.load(Ordering::SeqCst) {
                        let value = trips(&server);
                        assert!(value == before || value == expected, "{value}");
                        assert!(!(seen_new && value == before), "a read went back to the old store");
                        seen_new |= value == expected;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let swapped = swap(&repo, &server, &["v2"]);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        let reads = readers.into_iter().map(|r| r.join().unwrap()).sum::<usize>();
        assert!(swapped.0, "{}", swapped.1);
        assert!(swapped.1.contains("serves store version `v2`"), "{}", swapped.1);
        reads
    });
    assert!(reads > 40, "only {reads} reads around the swap");
    assert_eq!(trips(&server), expected);
    let versions = repo.path().join(".skewless/versions");
    let retired: Vec<String> = std::fs::read_dir(&versions)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("retired-"))
        .collect();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert!(!versions.join("v2.redb").exists(), "the version became the live store");

    // Pushes go to the new store, and survive a restart on it.
    let body = format!(
        r#"{{"push_source_name": "driver_stats_push_source", "df": {{"driver_id": [1001],
            "event_timestamp": ["{t}"], "created": ["{t}"], "conv_rate": [0.5], "acc_rate": [0.5],
            "avg_daily_trips": [424242]}}}}"#,
        t = skewless_runtime::time::format_timestamp(later + 1)
    );
    assert_eq!(server.post("/push", &body).0, 200);
    assert_eq!(trips(&server), json!(424242));

    // Refusals change nothing: an unknown version (the message lists those
    // there), and a version built before commits it does not hold.
    let (swapped, printed) = swap(&repo, &server, &["nope"]);
    assert!(!swapped && printed.contains("no store version `nope`"), "{printed}");
    assert!(printed.contains(retired[0].trim_end_matches(".redb")), "{printed}");
    let out = repo.run(&["backfill", "--new-version", "v3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.post("/push", &body.replace("424242", "5")).0, 200);
    let (swapped, printed) = swap(&repo, &server, &["v3"]);
    assert!(
        !swapped && printed.contains("409") && printed.contains("would lose them"),
        "{printed}"
    );
    assert_eq!(trips(&server), json!(5), "the refused swap left the live store served");

    // The retired store misses the pushes since: refused too.
    let old = retired[0].trim_end_matches(".redb").to_string();
    let (status, answer) = server.post("/admin/swap", &format!(r#"{{"version": "{old}"}}"#));
    assert_eq!(status, 409, "it misses the pushes since: {answer}");

    // A version built now swaps in; the store it replaces is kept, and the
    // one retired before is removed.
    let out = repo.run(&["backfill", "--new-version", "v4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, answer) = server.post("/admin/swap", r#"{"version": "v4"}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["removed"].as_array().map(Vec::len), Some(1), "{answer}");
    assert!(!versions.join(&retired[0]).exists());
    let kept = answer["retired"].as_str().unwrap();
    assert!(versions.join(format!("{kept}.redb")).exists(), "{answer}");
    assert_eq!(trips(&server), json!(5));
    // Reopening the live store (what clears a write fault) keeps everything.
    let (swapped, printed) = swap(&repo, &server, &[]);
    assert!(swapped, "{printed}");
    assert_eq!(trips(&server), json!(5));
    let (status, _) = server.stop();
    assert!(status.success());
    let server = repo.serve(&[]);
    assert_eq!(
        trips(&server),
        json!(5),
        "the swapped-in store is the live one after a restart"
    );
}

#[test]
fn materialize_loads_a_window_then_incrementally_needs_admin_and_refuses_outside_values() {
    const HOUR: i64 = 3_600_000_000;
    let end = next_hour();
    let repo = TempRepo::with_data("driver_stats", end);
    repo.ok(&["apply"]);
    let admin = repo
        .ok(&["token", "add", "ops", "--scopes", "admin"])
        .trim()
        .to_string();
    let pusher = repo
        .ok(&["token", "add", "ingest", "--scopes", "push"])
        .trim()
        .to_string();
    let tokens = repo.path().join("tokens.toml");
    let server = repo.serve(&["--tokens", tokens.to_str().unwrap()]);
    let time = skewless_runtime::time::format_timestamp;
    let post = |token: &str, path: &str, body: Value| -> (u16, Value) {
        let (status, text) = server.post_as(Some(token), path, &body.to_string());
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    };
    let views = json!(["driver_hourly_stats"]);

    // A window [start, end): 1,000 drivers, one row an hour, 4 hours.
    let window = json!({"start_ts": time(end - 10 * HOUR), "end_ts": time(end - 6 * HOUR), "feature_views": views});
    let (status, pushed_only) = post(&pusher, "/materialize", window.clone());
    assert_eq!(
        (status, error_code(&pushed_only)),
        (403, "insufficient_scope"),
        "{pushed_only}"
    );
    let (status, done) = post(&admin, "/materialize", window);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "done");
    assert_eq!(done["views"][0]["view"], "driver_hourly_stats");
    assert_eq!(done["views"][0]["rows_written"], 4_000, "{done}");

    // Incremental: the whole source up to its end the first time, then from there.
    let incremental = |until: i64| {
        post(
            &admin,
            "/materialize-incremental",
            json!({"end_ts": time(until), "feature_views": views}),
        )
    };
    let (status, first) = incremental(end - 2 * HOUR);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["views"][0]["start_ts"], Value::Null, "{first}");
    let (status, second) = incremental(end + HOUR);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["views"][0]["start_ts"], json!(time(end - 2 * HOUR)), "{second}");
    assert_eq!(second["views"][0]["rows_written"], 2_000, "{second}");
    // What was loaded is served.
    let (status, read) = server.post_as(
        Some(&admin),
        "/get-online-features",
        r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#,
    );
    assert_eq!(status, 200, "{read}");
    let read: Value = serde_json::from_str(&read).unwrap();
    assert_eq!(
        column(&read, "avg_daily_trips")["values"][0],
        json!(newest_row(1001, end).2)
    );

    // Bad requests, each with its reason; nothing stored is lost.
    for (path, body, code) in [
        (
            "/materialize",
            json!({"start_ts": time(end), "end_ts": time(end - HOUR)}),
            "invalid_window",
        ),
        ("/materialize", json!({"end_ts": time(end)}), "invalid_materialize"),
        (
            "/materialize",
            json!({"start_ts": "yesterday", "end_ts": time(end)}),
            "invalid_materialize",
        ),
        (
            "/materialize",
            json!({"disable_event_timestamp": true, "feature_views": ["nope"]}),
            "unknown_feature_view",
        ),
        (
            "/materialize",
            json!({"disable_event_timestamp": true, "feature_views": ["transformed_conv_rate"]}),
            "unknown_feature_view",
        ),
        (
            "/materialize-incremental",
            json!({"end_ts": time(end), "version": "v2"}),
            "invalid_materialize",
        ),
        (
            "/materialize-incremental?async=maybe",
            json!({"end_ts": time(end)}),
            "invalid_materialize",
        ),
    ] {
        let (status, refused) = post(&admin, path, body);
        assert_eq!((status, error_code(&refused)), (400, code), "{path}: {refused}");
    }
    // Values computed elsewhere: refused for a view with a component, with where to send rows.
    let (status, refused) = post(
        &pusher,
        "/write-to-online-store",
        json!({"feature_view_name": "driver_hourly_stats", "df": {"driver_id": [1001], "conv_rate": [0.5]}}),
    );
    assert_eq!(
        (status, error_code(&refused)),
        (409, "computed_by_component"),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("POST /push") && message.contains("driver_stats_push_source"),
        "{message}"
    );
    let (status, again) = post(
        &admin,
        "/get-online-features",
        json!({"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        column(&again, "avg_daily_trips")["values"][0],
        json!(newest_row(1001, end).2)
    );

    // `?async=true`: accepted at once; the load finishes on its own.
    let (status, accepted) = post(
        &admin,
        "/materialize?async=true",
        json!({"disable_event_timestamp": true, "feature_views": views}),
    );
    assert_eq!(
        (status, accepted["status"].as_str()),
        (202, Some("accepted")),
        "{accepted}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // A second load of the same view waits its turn: 409 while the first runs.
        let (status, answer) = post(
            &admin,
            "/materialize",
            json!({"disable_event_timestamp": true, "feature_views": views}),
        );
        if status == 200 {
            assert_eq!(answer["views"][0]["rows_read"], 720_000, "{answer}");
            break;
        }
        assert_eq!((status, error_code(&answer)), (409, "materializing"), "{answer}");
        assert!(Instant::now() < deadline, "the async load never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}
