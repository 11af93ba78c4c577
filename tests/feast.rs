//! Feast 0.67's own Python client (the tier `feast`; `.ci/run` installs it
//! in a virtual environment of its own) against `skewless serve` on the
//! products example: `get_online_features` through Feast's remote online
//! store reads the list and vector features, and
//! `retrieve_online_documents_v2` runs its vector search (Feast posts
//! `/search`). What the client got must be what the server answers its own
//! routes, value for value. And Feast's remote `materialize`,
//! `materialize_incremental` and `write_to_online_store` against the
//! driver_stats example.

use kit::tier::{Tier, feast_python};
use skewless_testkit as kit;

use kit::*;
use serde_json::{Value, json};

fn column<'a>(response: &'a Value, name: &str) -> &'a Value {
    let names = response["metadata"]["feature_names"].as_array().unwrap();
    let index = names.iter().position(|n| n == name).unwrap();
    &response["results"][index]["values"]
}

#[test]
fn feasts_client_reads_lists_and_vectors_and_searches() {
    if !Tier::Feast.enter() {
        return;
    }
    let repo = TempRepo::with_data("products", next_hour());
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let server = repo.serve(&[]);
    let got = feast_script(&server, "client.py", &["42"]);

    // The read: the same values our own route answers.
    let (status, ours) = server.post(
        "/get-online-features",
        r#"{"features": ["product_embeddings:title", "product_embeddings:words", "product_embeddings:embedding"],
            "entities": {"product_id": [42, 7]}}"#,
    );
    assert_eq!(status, 200, "{ours}");
    let read = &got["read"];
    assert_eq!(read["product_id"], json!([42, 7]));
    assert_eq!(read["title"], *column(&ours, "title"));
    assert_eq!(read["words"], *column(&ours, "words"));
    assert!(read["words"][0].as_array().is_some_and(|w| !w.is_empty()), "{read}");
    assert_eq!(read["embedding"], *column(&ours, "embedding"));
    assert_eq!(read["embedding"][0].as_array().map(Vec::len), Some(128));

    // The search: Feast's answer is ours for the same query.
    let query = column(&ours, "embedding")[0].clone();
    let (status, searched) = server.post(
        "/search",
        &json!({"features": ["product_embeddings:title"], "query": query, "top_k": 5, "distance_metric": "cosine"})
            .to_string(),
    );
    assert_eq!(status, 200, "{searched}");
    let found = &got["found"];
    assert_eq!(found["product_id"], *column(&searched, "product_id"), "{found}");
    assert_eq!(found["title"], *column(&searched, "title"));
    assert_eq!(found["distance"], *column(&searched, "distance"));
    assert_eq!(found["product_id"][0], json!(42), "{found}");
    assert_eq!(found["distance"][0], json!(0.0));
    // Feast 0.67 posts `/search` (the older name only when that is 404):
    // two answered there, ours and Feast's; none on the older route.
    let (_, metrics) = server.get("/metrics");
    let answered = |route: &str| answered(&metrics, route);
    assert_eq!(answered("/search").as_deref(), Some("2"), "{metrics}");
    assert_eq!(answered("/retrieve-online-documents"), None, "{metrics}");
}

/// How many requests `/metrics` counts on `route` (any status), if any.
fn answered(metrics: &str, route: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| l.starts_with("skewless_http_requests_total") && l.contains(&format!("route=\"{route}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

/// Runs `tests/feast/<script>` with Feast's Python against `server` (its
/// address first, then `args`): the JSON of the last line it printed.
fn feast_script(server: &ServerProcess, script: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(feast_python())
        .arg(root().join("tests/feast").join(script))
        .arg(&server.base)
        .args(args)
        .env("FEAST_USAGE", "False")
        .output()
        .expect("Feast's Python runs");
    assert!(
        out.status.success(),
        "Feast's client ({script} {args:?}) failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let last = out.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap();
    serde_json::from_slice(last).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `tests/feast/materialize.py`: `step` with its microsecond times.
fn feast_materialize(server: &ServerProcess, step: &str, times: &[i64]) -> Value {
    let times: Vec<String> = times.iter().map(i64::to_string).collect();
    let mut args = vec![step];
    args.extend(times.iter().map(String::as_str));
    feast_script(server, "materialize.py", &args)
}

#[test]
fn feasts_client_materializes_and_is_told_why_it_cannot_write_values() {
    if !Tier::Feast.enter() {
        return;
    }
    const HOUR: i64 = 3_600_000_000;
    let end = next_hour();
    let repo = TempRepo::with_data("driver_stats", end);
    repo.ok(&["apply"]);
    let server = repo.serve(&[]);
    // What driver 1001 is served: its avg_daily_trips, or null when nothing is stored.
    let served = || -> Value {
        let (status, answer) = server.post(
            "/get-online-features",
            r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#,
        );
        assert_eq!(status, 200, "{answer}");
        column(&answer, "avg_daily_trips")[0].clone()
    };
    let newest_before = |t: i64| json!(newest_row_at(1001, end, t - 1).unwrap().2);
    assert_eq!(served(), Value::Null);

    // A window (within the view's one-day ttl): the newest row before its end is served.
    assert_eq!(
        feast_materialize(&server, "materialize", &[end - 10 * HOUR, end - 6 * HOUR])["ok"],
        true
    );
    assert_eq!(served(), newest_before(end - 6 * HOUR));
    // Incremental: the first from the start, then from where it ended.
    assert_eq!(feast_materialize(&server, "incremental", &[end - 3 * HOUR])["ok"], true);
    assert_eq!(served(), newest_before(end - 3 * HOUR));
    assert_eq!(feast_materialize(&server, "incremental", &[end + HOUR])["ok"], true);
    assert_eq!(served(), newest_before(end + HOUR));

    // Values computed elsewhere are refused, with where to send rows instead.
    let written = feast_materialize(&server, "write", &[end]);
    let error = written["error"].as_str().unwrap_or_default();
    for needed in [
        "409",
        "computes its values with its component",
        "POST /push",
        "POST /materialize",
    ] {
        assert!(error.contains(needed), "`{needed}` missing from: {written}");
    }
    // Every request was Feast's: two materialize calls, one of each other.
    let (_, metrics) = server.get("/metrics");
    let answered = |route: &str| answered(&metrics, route);
    assert_eq!(answered("/materialize").as_deref(), Some("1"), "{metrics}");
    assert_eq!(answered("/materialize-incremental").as_deref(), Some("2"), "{metrics}");
    assert_eq!(answered("/write-to-online-store").as_deref(), Some("1"), "{metrics}");
}
