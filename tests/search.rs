//! Vector search end to end: the products example (titles embedded by the
//! `text_embedding` component) backfilled, served on a real socket, and
//! searched over HTTP and from the CLI; the index kept current by pushes
//! and by a backfill in another process; every bad request refused with
//! its reason.

use skewless_testkit as kit;

use kit::*;
use serde_json::{Value, json};

fn column<'a>(response: &'a Value, name: &str) -> &'a Value {
    let names = response["metadata"]["feature_names"].as_array().unwrap();
    let index = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name} in {names:?}"));
    &response["results"][index]
}

fn products_repo() -> TempRepo {
    let repo = TempRepo::with_data("products", next_hour());
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

/// A product's stored embedding, as `/get-online-features` serves it.
fn embedding_of(server: &ServerProcess, product: i64) -> Value {
    let (status, response) = server.post(
        "/get-online-features",
        &format!(r#"{{"features": ["product_embeddings:embedding"], "entities": {{"product_id": [{product}]}}}}"#),
    );
    assert_eq!(status, 200, "{response}");
    column(&response, "embedding")["values"][0].clone()
}

fn search(server: &ServerProcess, path: &str, query: &Value, k: usize, metric: &str) -> Value {
    let body = json!({
        "features": ["product_embeddings:title", "product_embeddings:words"],
        "query": query,
        "top_k": k,
        "distance_metric": metric,
        "api_version": 2,
    });
    let (status, response) = server.post(path, &body.to_string());
    assert_eq!(status, 200, "{response}");
    response
}

#[test]
fn search_answers_the_exact_nearest_products_over_http_and_the_cli_alike() {
    let repo = products_repo();
    let server = repo.serve(&[]);
    let query = embedding_of(&server, 42);
    let answer = search(&server, "/search", &query, 8, "cosine");
    assert_eq!(
        answer["metadata"]["feature_names"],
        json!(["product_id", "title", "words", "distance"])
    );
    let ids: Vec<i64> = column(&answer, "product_id")["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let distances: Vec<f64> = column(&answer, "distance")["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ids.len(), 8);
    assert!(ids.contains(&42), "{ids:?}");
    // Nearest first; equal distances in product_id order.
    for pair in ids.iter().zip(&distances).collect::<Vec<_>>().windows(2) {
        let ((a, da), (b, db)) = (pair[0], pair[1]);
        assert!(da < db || (da == db && a < b), "{ids:?} {distances:?}");
    }
    // Product 42's own title is at distance 0, as is every product with the same title.
    let titles = column(&answer, "title")["values"].as_array().unwrap();
    let own = &titles[ids.iter().position(|id| *id == 42).unwrap()];
    for (title, distance) in titles.iter().zip(&distances) {
        assert_eq!(title == own, *distance == 0.0, "{title} at {distance}");
    }
    assert_eq!(
        column(&answer, "words")["values"][0],
        json!(own.as_str().unwrap().split(' ').collect::<Vec<_>>())
    );

    // The older route answers the same; so does the CLI, in-process.
    assert_eq!(
        search(&server, "/retrieve-online-documents", &query, 8, "cosine"),
        answer
    );
    let printed: Value = serde_json::from_str(&repo.ok(&[
        "search",
        "product_embeddings",
        "--like",
        "product_id=42",
        "-k",
        "8",
        "--features",
        "title,words",
        "--json",
    ]))
    .unwrap();
    assert_eq!(printed["results"], answer["results"]);
    // "More like" an entity reads its vector as any read does: a key of the
    // wrong type, or an entity with none, is named.
    let wrong = repo.fails(&["search", "product_embeddings", "--like", "product_id=abc"]);
    assert!(wrong.contains("product_id") && wrong.contains("abc"), "{wrong}");
    let missing = repo.fails(&["search", "product_embeddings", "--like", "product_id=99999999"]);
    assert!(
        missing.contains("product_id=99999999 has no stored vector"),
        "{missing}"
    );

    // Every metric ranks: L2 and inner product agree with cosine on unit vectors.
    for metric in ["L2", "inner_product"] {
        let other = search(&server, "/search", &query, 8, metric);
        assert_eq!(column(&other, "product_id"), column(&answer, "product_id"), "{metric}");
    }
}

/// The nearest product by cosine, and its distance.
fn nearest(server: &ServerProcess, query: &Value) -> (i64, f64) {
    let answer = search(server, "/search", query, 1, "cosine");
    (
        column(&answer, "product_id")["values"][0].as_i64().unwrap(),
        column(&answer, "distance")["values"][0].as_f64().unwrap(),
    )
}

#[test]
fn pushes_and_a_backfill_in_another_process_keep_the_index_current() {
    let repo = products_repo();
    let server = repo.serve(&[]);
    let old_query = embedding_of(&server, 42);
    assert_eq!(nearest(&server, &old_query).1, 0.0);

    // A new product, pushed: found at once (its push's answer means the index has it).
    let later = skewless_runtime::time::format_timestamp(next_hour() + 60_000_000);
    let push = |id: i64, title: &str| {
        let (status, answer) = server.post(
            "/push",
            &json!({
                "push_source_name": "catalog_updates",
                "df": {"product_id": [id], "event_timestamp": [later], "created": [later], "title": [title]},
            })
            .to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    };
    push(900_001, "zebra quartz kettle");
    let zebra = embedding_of(&server, 900_001);
    assert_eq!(nearest(&server, &zebra), (900_001, 0.0));

    // Product 42 renamed: its old vector no longer finds it at distance 0.
    push(42, "zebra quartz kettle");
    let answer = search(&server, "/search", &zebra, 2, "cosine");
    assert_eq!(column(&answer, "product_id")["values"], json!([42, 900_001]));
    let (id, _) = nearest(&server, &old_query);
    assert_ne!(id, 42);

    // A backfill by another process (the server keeps serving): a product's
    // title changes in the source, and the next search sees it.
    drop(server);
    let server = repo.serve(&[]);
    let zebra_before = nearest(&server, &zebra);
    assert_eq!(zebra_before, (42, 0.0));
    let data = repo.path().join("data/products.parquet");
    let batch = read_parquet(&data);
    let titles: Vec<String> = (0..batch.num_rows())
        .map(|row| {
            let title = kit::value_bits(batch.column_by_name("title").unwrap(), row);
            let id = kit::value_bits(batch.column_by_name("product_id").unwrap(), row);
            if id == "7" {
                "zebra quartz kettle".to_string()
            } else {
                serde_json::from_str::<String>(&title).unwrap()
            }
        })
        .collect();
    let mut columns: Vec<(String, arrow_array::ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    // Later than the pushes (a minute past the next hour), so that the
    // backfilled row is the latest.
    let now = next_hour() + 7_200_000_000;
    columns[1].1 = std::sync::Arc::new(
        arrow_array::TimestampMicrosecondArray::from(vec![now; batch.num_rows()]).with_timezone("UTC"),
    );
    columns[2].1 = columns[1].1.clone();
    columns[3].1 = std::sync::Arc::new(arrow_array::StringArray::from(titles));
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    skewless_runtime::samples::write_parquet(&data, &batch).unwrap();
    repo.ok(&["backfill"]);
    // Product 7 is now a zebra kettle; 42 has its source title back (the
    // backfilled rows are newer than the push that renamed it).
    let answer = search(&server, "/search", &zebra, 3, "cosine");
    let ids = &column(&answer, "product_id")["values"];
    assert_eq!(ids[0], json!(7), "{answer}");
    assert_eq!(ids[1], json!(900_001), "{answer}");
    assert_ne!(ids[2], json!(42), "{answer}");
    assert_eq!(nearest(&server, &old_query).1, 0.0);
}

#[test]
fn bad_searches_are_refused_with_the_reason_and_the_server_keeps_serving() {
    let repo = products_repo();
    let server = repo.serve(&[]);
    let query = embedding_of(&server, 1);
    let refused = |body: Value| -> String {
        let (status, response) = server.post("/search", &body.to_string());
        assert_eq!(status, 400, "{body} -> {response}");
        response["error"]["message"].as_str().unwrap().to_string()
    };
    let base = || json!({"features": ["product_embeddings:title"], "query": query.clone(), "top_k": 3});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    let message = refused(with("query", json!([0.5, 0.5, 0.5])));
    assert!(
        message.contains("3 components") && message.contains("vector<128>"),
        "{message}"
    );
    assert!(refused(with("top_k", json!(0))).contains("top_k is 0"));
    assert!(refused(with("top_k", json!(1001))).contains("1 to 1000"));
    assert!(refused(with("distance_metric", json!("hamming"))).contains("cosine, inner_product or L2"));
    assert!(refused(with("query_string", json!("red wool"))).contains("text search is not supported"));
    assert!(refused(with("features", json!([]))).contains("`features` is empty"));
    assert!(refused(with("features", json!(["nope:x"]))).contains("unknown view `nope`"));
    let mut huge = vec![0.5; 128];
    huge[0] = 1e39;
    assert!(refused(with("query", json!(huge))).contains("not a finite float32"));
    assert!(refused(with("query", Value::Null)).contains("`query` is missing"));
    let message = refused(with("features", json!(["product_embeddings:title", "other:x"])));
    assert!(message.contains("several views"), "{message}");
    // A zero vector has no direction for cosine.
    let zeros = json!(vec![0.0; 128]);
    let mut body = with("query", zeros);
    body["distance_metric"] = json!("cosine");
    assert!(refused(body).contains("zero query"));

    // Still serving.
    assert_eq!(
        search(&server, "/search", &query, 1, "L2")["results"][0]["values"],
        json!([1])
    );

    // A view without a vector feature says so (the CLI and the server share the check).
    let drivers = fresh_driver_repo();
    let message = drivers.fails(&["search", "driver_hourly_stats", "--query", "[1, 2]"]);
    assert!(message.contains("has no vector feature"), "{message}");
}

#[test]
fn a_vector_of_the_wrong_dimension_or_not_finite_is_refused_and_nothing_is_stored() {
    let repo = TempRepo::from_config(&format!(
        r#"project = "vectors"
[entities.thing]
join_keys = {{ id = "int64" }}
[sources.things]
type = "file"
path = "data/things.parquet"
[sources.pushed]
type = "push"
batch_source = "things"
[views.echo]
entities = ["thing"]
source = "pushed"
transform = "{}"
"#,
        test_components().join("echo.wasm").display()
    ));
    // The echo component takes one column of every type; only `v` (vector<3>) matters here.
    let now = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros());
    let row = |v: Value| {
        json!({
            "push_source_name": "pushed",
            "df": {
                "id": [1], "event_timestamp": [now], "b": [true], "i": [1], "f32": [1.0], "f64": [1.0],
                "s": ["x"], "t": [now], "ls": [["a"]], "lb": [[true]], "v": [v],
            },
        })
        .to_string()
    };
    std::fs::create_dir_all(repo.path().join("data")).unwrap();
    repo.ok(&["apply"]);
    let server = repo.serve(&[]);
    let (status, answer) = server.post("/push", &row(json!([1.0, 2.0])));
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`v`") && message.contains("2 components") && message.contains("vector<3>"),
        "{message}"
    );
    let (status, answer) = server.post("/push", &row(json!([1.0, 2.0, 1e39])));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("float32"),
        "{answer}"
    );
    // A good row is stored and read back exactly; nothing of the bad ones.
    let (status, answer) = server.post("/push", &row(json!([0.5, -0.0, 3.25])));
    assert_eq!(status, 200, "{answer}");
    let (status, read) = server.post(
        "/get-online-features",
        r#"{"features": ["echo:v", "echo:ls", "echo:lb"], "entities": {"id": [1, 2]}}"#,
    );
    assert_eq!(status, 200, "{read}");
    assert_eq!(column(&read, "v")["values"], json!([[0.5, -0.0, 3.25], null]));
    assert_eq!(column(&read, "ls")["values"], json!([["a"], null]));
    assert_eq!(column(&read, "lb")["values"], json!([[true], null]));
}

/// A spine of (time, query vector) rows, the queries as Parquet
/// `FixedSizeList<float32>`, as a model's training job would write them.
fn query_spine(repo: &TempRepo, rows: &[(i64, &Value)]) -> std::path::PathBuf {
    use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, TimestampMicrosecondArray};
    let dimension = rows[0].1.as_array().unwrap().len();
    let components: Vec<f32> = rows
        .iter()
        .flat_map(|(_, q)| q.as_array().unwrap().iter().map(|c| c.as_f64().unwrap() as f32))
        .collect();
    let item = std::sync::Arc::new(arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true));
    let queries = FixedSizeListArray::new(
        item,
        dimension as i32,
        std::sync::Arc::new(Float32Array::from(components)),
        None,
    );
    let batch = RecordBatch::try_from_iter([
        (
            "event_timestamp",
            std::sync::Arc::new(
                TimestampMicrosecondArray::from(rows.iter().map(|(t, _)| *t).collect::<Vec<_>>()).with_timezone("UTC"),
            ) as ArrayRef,
        ),
        ("query", std::sync::Arc::new(queries) as ArrayRef),
    ])
    .unwrap();
    let path = repo.path().join("queries.parquet");
    skewless_runtime::samples::write_parquet(&path, &batch).unwrap();
    path
}

/// `skewless dataset --nearest product_embeddings -k K` over `spine`: what it wrote.
fn nearest_dataset(repo: &TempRepo, spine: &std::path::Path, k: usize) -> arrow_array::RecordBatch {
    let out = repo.path().join("nearest.parquet");
    let k = k.to_string();
    repo.ok(&[
        "dataset",
        "--spine",
        spine.to_str().unwrap(),
        "--nearest",
        "product_embeddings",
        "-k",
        &k,
        "--out",
        out.to_str().unwrap(),
    ]);
    read_parquet(&out)
}

#[test]
fn search_as_of_a_time_equals_the_online_answer_at_that_instant() {
    let repo = products_repo();
    let server = repo.serve(&[]);
    let queries: Vec<Value> = [42, 7, 1_234].iter().map(|p| embedding_of(&server, *p)).collect();
    // The online answers after each change, at that change's event time:
    // the backfilled catalog, a new product, a rename, a second rename.
    let start = next_hour();
    let mut instants: Vec<(i64, Vec<Value>)> = Vec::new();
    let answers = |server: &ServerProcess| -> Vec<Value> {
        let answers = queries.iter().map(|q| search(server, "/search", q, 5, "cosine"));
        answers
            .map(|a| json!([column(&a, "product_id")["values"], column(&a, "distance")["values"]]))
            .collect()
    };
    instants.push((start, answers(&server)));
    for (i, (id, title)) in [
        (900_001, "zebra quartz kettle"),
        (42, "zebra quartz kettle"),
        (900_001, "walnut desk lamp"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = start + (i as i64 + 1) * 60_000_000;
        let stamp = skewless_runtime::time::format_timestamp(at);
        // Into the history too (Feast's default `to` is online only).
        let (status, answer) = server.post(
            "/push",
            &json!({
                "push_source_name": "catalog_updates",
                "df": {"product_id": [id], "event_timestamp": [stamp], "created": [stamp], "title": [title]},
                "to": "online_and_offline",
            })
            .to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        instants.push((at, answers(&server)));
    }
    server.stop();
    // The answers changed along the way (else this test would show nothing).
    assert_ne!(instants[0].1, instants[2].1);

    // Spine rows at each instant and a microsecond before the next change
    // (the same answer), in shuffled time order; and one before any data.
    let mut rows: Vec<(i64, &Value)> = Vec::new();
    let mut expected: Vec<Value> = Vec::new();
    for (at, answers) in instants.iter().rev() {
        for (q, answer) in queries.iter().zip(answers) {
            for t in [*at, at + 59_999_999] {
                rows.push((t, q));
                expected.push(answer.clone());
            }
        }
    }
    rows.push((0, &queries[0]));
    expected.push(json!([[], []]));
    let spine = query_spine(&repo, &rows);
    let out = repo.path().join("nearest.parquet");
    let train = nearest_dataset(&repo, &spine, 5);
    assert_eq!(train.num_rows(), rows.len());
    let (ids, distances) = (
        train.column_by_name("nearest_product_id").unwrap(),
        train.column_by_name("nearest_distance").unwrap(),
    );
    for (row, want) in expected.iter().enumerate() {
        let got = json!([
            skewless_runtime::codec::json::value_json(ids.as_ref(), row),
            skewless_runtime::codec::json::value_json(distances.as_ref(), row),
        ]);
        assert_eq!(&got, want, "spine row {row} at {}", rows[row].0);
    }

    // Refused with the reason: a view without vectors, no query column, k of 0.
    for (args, says) in [
        (vec!["--nearest", "product_embeddings:title"], "is utf8, not a vector"),
        (vec!["--nearest", "product_embeddings", "--query-column", "q"], "`q`"),
        (
            vec!["--nearest", "product_embeddings", "-k", "0"],
            "ask for 1 to 1000 results",
        ),
        (vec!["--nearest", "no_such_view"], "no view `no_such_view`"),
    ] {
        let mut command = vec![
            "dataset",
            "--spine",
            spine.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        command.extend(args);
        let refused = repo.fails(&command);
        assert!(refused.contains(says), "`{says}` missing from: {refused}");
    }
}

#[test]
fn search_skips_vectors_older_than_the_views_ttl_online_and_as_of_a_time() {
    // Data up to the start of this hour: none of it after the instants asked about.
    let repo = TempRepo::with_data("products", next_hour() - 3_600_000_000);
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "owner = \"search@example.com\"",
        "owner = \"search@example.com\"\nttl = \"2h\"",
    );
    std::fs::write(&config, text).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let server = repo.serve(&[]);
    // The same title twice: one row a minute old, one three hours old.
    let now = skewless_runtime::time::now_micros();
    let (fresh, stale) = (now - 60_000_000, now - 3 * 3_600_000_000);
    for (id, at) in [(900_001, fresh), (900_002, stale)] {
        let stamp = skewless_runtime::time::format_timestamp(at);
        let (status, answer) = server.post(
            "/push",
            &json!({
                "push_source_name": "catalog_updates",
                "df": {"product_id": [id], "event_timestamp": [stamp], "created": [stamp], "title": ["zebra quartz kettle"]},
                "to": "online_and_offline",
            })
            .to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let (status, read) = server.post(
        "/get-online-features",
        r#"{"features": ["product_embeddings:embedding"], "entities": {"product_id": [900001]}}"#,
    );
    assert_eq!(status, 200, "{read}");
    let zebra = column(&read, "embedding")["values"][0].clone();
    let found = search(&server, "/search", &zebra, 3, "cosine");
    let ids = column(&found, "product_id")["values"].as_array().unwrap().clone();
    assert!(
        ids.contains(&json!(900_001)) && !ids.contains(&json!(900_002)),
        "{found}"
    );
    server.stop();

    // As of a time: the same rule at each row's instant.
    let spine = query_spine(&repo, &[(fresh, &zebra), (stale + 60_000_000, &zebra)]);
    let train = nearest_dataset(&repo, &spine, 3);
    let ids = train.column_by_name("nearest_product_id").unwrap();
    let at_fresh = skewless_runtime::codec::json::value_json(ids.as_ref(), 0);
    let at_stale = skewless_runtime::codec::json::value_json(ids.as_ref(), 1);
    assert_eq!(at_fresh.as_array().unwrap(), ids_of(&found), "{at_fresh} vs {found}");
    // A minute after the old row was written it was fresh, and the new one did not exist.
    assert!(at_stale.as_array().unwrap().contains(&json!(900_002)), "{at_stale}");
    assert!(!at_stale.as_array().unwrap().contains(&json!(900_001)), "{at_stale}");
}

fn ids_of(answer: &Value) -> &Vec<Value> {
    column(answer, "product_id")["values"].as_array().unwrap()
}
