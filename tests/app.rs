//! The HTTP app in-process: `skewless_server::app` called with
//! `tower::ServiceExt::oneshot`, no socket and no server process, one
//! request per error code. These are the fast tests for the common edit-test
//! loop (`cargo test --release --test app`); `tests/serve.rs` drives the
//! same cases through a real server on a real socket.

use skewless_testkit as kit;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use skewless_runtime::{Views, Workspace};
use skewless_server::{AppState, Auth, Server, ServerLimits, app};
use tower::ServiceExt;

use kit::TempRepo;

/// The driver_stats repo with the hostile test components as on-demand
/// views, applied (through the library, not the binary), nothing stored.
fn state() -> (TempRepo, AppState) {
    let repo = TempRepo::new("driver_stats");
    repo.add_hostile_views();
    let workspace = Workspace::create(repo.path()).unwrap();
    workspace.apply(workspace.plan(&Default::default()).unwrap()).unwrap();
    drop(workspace);
    let limits = ServerLimits {
        max_rows: 100,
        max_body_bytes: 20_000,
        request_timeout: std::time::Duration::from_millis(300),
        ..ServerLimits::default()
    };
    let server = Server::new(Workspace::open(repo.path(), Views::All).unwrap(), limits, Auth::none()).unwrap();
    (repo, server)
}

/// One request through the app; the status and the body as JSON.
async fn call(state: &AppState, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_in_process() {
    let (_repo, state) = state();
    let many: Vec<i64> = (0..101).collect();
    let huge = format!(
        r#"{{"features": ["driver_hourly_stats"], "pad": "{}"}}"#,
        "x".repeat(30_000)
    );
    let get = "/get-online-features";
    let cases: Vec<(Method, &str, String, u16, &str, &str)> = vec![
        (Method::POST, get, r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"#.into(), 400, "malformed_json", "line 1 column"),
        (Method::POST, get, r#"{"features": "driver_hourly_stats", "entities": {}}"#.into(), 400, "invalid_request", "expected a sequence"),
        (Method::POST, get, r#"{"features": ["nope:conv_rate"], "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature_view", "`nope`"),
        (Method::POST, get, r#"{"features": ["driver_hourly_stats:nope"], "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature", "no feature `nope`"),
        (Method::POST, get, r#"{"features": ["a:b:c"], "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature_view", "`a`"),
        (Method::POST, get, r#"{"features": [":x"], "entities": {"driver_id": [1]}}"#.into(), 400, "bad_feature_reference", "`:x`"),
        (Method::POST, get, r#"{"feature_service": "nope", "entities": {"driver_id": [1]}}"#.into(), 400, "unknown_feature_service", "`nope`"),
        (Method::POST, get, r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_id": ["1001"]}}"#.into(), 400, "wrong_type", "`driver_id` must be int64"),
        (Method::POST, get, r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"driver_idd": [1001]}}"#.into(), 400, "unknown_entity_column", "driver_idd"),
        (Method::POST, get, r#"{"features": ["driver_hourly_stats:conv_rate"], "entities": {"val_to_add": [1]}}"#.into(), 400, "missing_join_key", "driver_id"),
        (Method::POST, get, r#"{"features": ["transformed_conv_rate"], "entities": {"driver_id": [1001]}}"#.into(), 400, "missing_request_field", "val_to_add"),
        (Method::POST, get, r#"{"features": ["driver_hourly_stats"], "entities": {"driver_id": [1, 2], "val_to_add": [1, 2, 3]}}"#.into(), 400, "length_mismatch", "`driver_id` has 2 values but `val_to_add` has 3"),
        (Method::POST, get, format!(r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": {many:?}}}}}"#), 400, "too_many_rows", "--max-rows"),
        (Method::POST, get, r#"{"entities": {"driver_id": [1]}}"#.into(), 400, "no_features", "feature_service"),
        (Method::POST, get, huge, 413, "body_too_large", "--max-body-bytes"),
        (Method::POST, get, r#"{"features": ["trapping"], "entities": {"x": [1, 13]}}"#.into(), 500, "transform_failed", "unlucky value 13 at row 1"),
        (Method::POST, get, r#"{"features": ["spinning"], "entities": {"x": [-1]}}"#.into(), 503, "transform_timeout", "--request-timeout"),
        (Method::POST, "/push", r#"{"push_source_name": "nope", "df": {}}"#.into(), 400, "unknown_push_source", "driver_stats_push_source"),
        (Method::POST, "/push", r#"{"push_source_name": "driver_stats_source", "df": {}}"#.into(), 400, "not_a_push_source", "type = \"push\""),
        (Method::POST, "/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1]}}"#.into(), 400, "missing_column", "event_timestamp"),
        (Method::POST, "/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1], "event_timestamp": ["2026-01-01"], "conv_rate": [1], "acc_rate": [1], "avg_daily_trips": [1.5]}}"#.into(), 400, "wrong_type", "avg_daily_trips"),
        (Method::POST, "/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [null], "event_timestamp": ["2026-01-01"], "conv_rate": [1], "acc_rate": [1], "avg_daily_trips": [1]}}"#.into(), 400, "null_key", "driver_id"),
        (Method::POST, "/push", r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1, 2], "event_timestamp": ["2026-01-01"]}}"#.into(), 400, "length_mismatch", "event_timestamp"),
        (Method::POST, "/nowhere", "{}".into(), 404, "not_found", "/nowhere"),
        (Method::POST, "/health", "{}".into(), 405, "method_not_allowed", "POST"),
    ];
    for (method, path, body, status, code, fragment) in &cases {
        let (got, response) = call(&state, method.clone(), path, body).await;
        assert_eq!(
            (got.as_u16(), response["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{method} {path} {body:.200}: {response}"
        );
        let message = response["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(fragment),
            "{code}: `{message}` should mention {fragment}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_read_back_and_one_value_applies_to_every_row() {
    let (_repo, state) = state();
    let at = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros() - 60_000_000);
    let push = format!(
        r#"{{"push_source_name": "driver_stats_push_source", "to": "online_and_offline",
            "df": {{"driver_id": [1001, 1002], "event_timestamp": ["{at}", "{at}"],
                   "conv_rate": [0.5, 0.25], "acc_rate": [0.75, 1.0], "avg_daily_trips": [10, 20]}}}}"#
    );
    let (status, pushed) = call(&state, Method::POST, "/push", &push).await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    // One `val_to_add` for two drivers: it applies to both (the `get` rule).
    let read = r#"{"features": ["driver_hourly_stats:avg_daily_trips", "transformed_conv_rate:conv_rate_plus_val1"],
                   "entities": {"driver_id": [1001, 1002], "val_to_add": [1000]}}"#;
    let (status, answer) = call(&state, Method::POST, "/get-online-features", read).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let names = answer["metadata"]["feature_names"].as_array().unwrap();
    let column = |name: &str| &answer["results"][names.iter().position(|n| n == name).unwrap()];
    assert_eq!(column("avg_daily_trips")["values"], serde_json::json!([10, 20]));
    assert_eq!(
        column("conv_rate_plus_val1")["values"],
        serde_json::json!([1000.5, 1000.25])
    );

    for path in ["/health", "/v1/catalog", "/openapi.json", "/metrics"] {
        let (status, body) = call(&state, Method::GET, path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, catalog) = call(&state, Method::GET, "/v1/catalog", "").await;
    assert_eq!(catalog["views"]["driver_hourly_stats"]["last_commit"], pushed["commit"]);
    assert!(pushed["commit"].as_u64().is_some(), "{pushed}");
}
