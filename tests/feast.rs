//! Feast 0.67's own Python client (the tier `feast`; `.ci/run` installs it
//! in a virtual environment of its own) against `skewless serve` on the
//! products example: `get_online_features` through Feast's remote online
//! store reads the list and vector features, and
//! `retrieve_online_documents_v2` runs its vector search (Feast posts
//! `/search`). What the client got must be what the server answers its own
//! routes, value for value.

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
    let client = root().join("tests/feast/client.py");
    let out = std::process::Command::new(feast_python())
        .arg(&client)
        .args([server.base.as_str(), "42"])
        .env("FEAST_USAGE", "False")
        .output()
        .expect("Feast's Python runs");
    assert!(
        out.status.success(),
        "Feast's client failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let got: Value = serde_json::from_slice(out.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

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
    let answered = |route: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("skewless_http_requests_total") && l.contains(&format!("route=\"{route}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(answered("/search").as_deref(), Some("2"), "{metrics}");
    assert_eq!(answered("/retrieve-online-documents"), None, "{metrics}");
}
