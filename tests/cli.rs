//! The catalog and online-read commands against a backfilled store: what
//! `skewless get` prints equals the newest source row per entity, computed
//! here by a brute-force scan of the generated data.

use skewless_testkit as kit;

use kit::*;
use skewless_runtime::samples;

#[test]
fn get_returns_the_newest_stored_values_and_computes_on_demand_views() {
    let repo = fresh_driver_repo();
    let end = next_hour();
    let out = repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001,1500,99999",
        "--service",
        "driver_activity",
        "--request",
        "val_to_add=1000",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = json["metadata"]["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "driver_id",
            "conv_rate",
            "acc_rate",
            "avg_daily_trips",
            "conv_rate_plus_val1",
            "conv_rate_plus_val2"
        ]
    );
    let results = json["results"].as_array().unwrap();
    for (row, driver) in [1001i64, 1500].into_iter().enumerate() {
        let (conv, acc, trips) = newest_row(driver, end);
        assert_eq!(
            results[1]["values"][row].as_f64().unwrap() as f32,
            conv,
            "conv_rate of {driver}"
        );
        assert_eq!(
            results[2]["values"][row].as_f64().unwrap() as f32,
            acc,
            "acc_rate of {driver}"
        );
        assert_eq!(
            results[3]["values"][row].as_i64().unwrap(),
            trips,
            "avg_daily_trips of {driver}"
        );
        assert_eq!(
            results[4]["values"][row].as_f64().unwrap().to_bits(),
            (conv as f64 + 1000.0).to_bits()
        );
        assert_eq!(
            results[5]["values"][row].as_f64().unwrap().to_bits(),
            (conv as f64 + 2000.0).to_bits()
        );
        assert_eq!(results[1]["statuses"][row], "PRESENT");
    }
    assert_eq!(results[1]["statuses"][2], "NOT_FOUND");
    assert!(results[1]["values"][2].is_null() && results[4]["values"][2].is_null());
    assert_eq!(results[4]["statuses"][2], "NULL_VALUE");
    assert!(
        json["metadata"]["lineage"]["driver_hourly_stats"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );

    let table = repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001",
        "--features",
        "driver_hourly_stats:conv_rate",
    ]);
    let (conv, _, _) = newest_row(1001, end);
    assert!(
        table.contains("conv_rate") && table.contains(&conv.to_string()),
        "{table}"
    );
}

#[test]
fn get_explains_bad_requests() {
    let repo = fresh_driver_repo();
    let cases: [(&[&str], &str); 5] = [
        (
            &["get", "--entity", "driver_id=1001", "--features", "nope:x"],
            "unknown feature view `nope`",
        ),
        (
            &[
                "get",
                "--entity",
                "driver_id=1001",
                "--features",
                "driver_hourly_stats:speed",
            ],
            "has no feature `speed`",
        ),
        (
            &["get", "--entity", "driver_id=abc", "--features", "driver_hourly_stats"],
            "`driver_id` must be int64",
        ),
        (
            &["get", "--entity", "rider=1", "--features", "driver_hourly_stats"],
            "neither a join key nor a request field",
        ),
        (
            &[
                "get",
                "--entity",
                "driver_id=1001",
                "--features",
                "transformed_conv_rate",
            ],
            "missing request field `val_to_add`",
        ),
    ];
    for (args, expected) in cases {
        let stderr = repo.fails(args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn ls_and_describe_show_the_registry() {
    let repo = fresh_driver_repo();
    let ls = repo.ok(&["ls"]);
    for word in [
        "driver",
        "driver_hourly_stats",
        "materialized",
        "transformed_conv_rate",
        "on-demand",
        "conv_rate",
        "float32",
        "driver_activity",
    ] {
        assert!(ls.contains(word), "ls lacks {word}: {ls}");
    }
    let describe = repo.ok(&["describe", "driver_hourly_stats"]);
    for word in [
        "ttl:         1d",
        "owner:",
        "test@example.com",
        "team=driver_performance",
        "last commit: #",
        "avg_daily_trips",
    ] {
        assert!(describe.contains(word), "describe lacks {word}: {describe}");
    }
    assert!(repo.fails(&["describe", "nothing"]).contains("nothing named `nothing`"));
}

#[test]
fn apply_prints_a_plan_and_then_nothing_to_do() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    let first = repo.ok(&["apply", "--dry-run"]);
    assert!(first.contains("+ view driver_hourly_stats"), "{first}");
    assert!(repo.ok(&["apply"]).contains("+ service driver_activity"));
    let again = repo.run(&["apply"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("up to date"));
    // Changing a description is an update, not a new view.
    let text = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    std::fs::write(
        repo.path().join("skewless.toml"),
        text.replace("Hourly driver statistics", "Hourly stats"),
    )
    .unwrap();
    assert!(
        repo.ok(&["apply"])
            .contains("~ source driver_stats_source: description changed")
    );
}

#[test]
fn backfill_refuses_an_unapplied_or_stale_view() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    assert!(repo.fails(&["backfill"]).contains("run `skewless apply`"));
    repo.ok(&["apply"]);
    assert!(
        repo.fails(&["backfill", "--view", "transformed_conv_rate"])
            .contains("is on-demand")
    );
    assert!(repo.fails(&["backfill", "--view", "nope"]).contains("no such view"));
}

#[test]
fn every_type_is_stored_and_read_back_exactly() {
    use std::sync::Arc;

    use arrow_array::builder::{BooleanBuilder, Float64Builder, ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::Field;

    let repo = TempRepo::from_config(&format!(
        r#"project = "types"
[entities.thing]
join_keys = {{ id = "utf8" }}
[sources.things]
type = "file"
path = "data/things.parquet"
[views.echo]
entities = ["thing"]
source = "things"
transform = "{}"
"#,
        test_components().join("echo.wasm").display()
    ));
    let now = skewless_runtime::time::now_micros();
    let ts = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(arrow_array::TimestampMicrosecondArray::from(v).with_timezone("UTC"))
    };
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["ä-1", "b-2", ""])) as ArrayRef),
        (
            "event_timestamp",
            ts(vec![Some(now - 1_000), Some(now - 2_000), Some(now - 3_000)]),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])) as ArrayRef,
        ),
        (
            "i",
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None])) as ArrayRef,
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![Some(-0.0f32), Some(f32::MAX), None])) as ArrayRef,
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![Some(0.1f64), None, Some(-1e300)])) as ArrayRef,
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![Some("naïve ☃"), Some(""), None])) as ArrayRef,
        ),
        ("t", ts(vec![Some(-1), None, Some(1_700_000_000_123_456)])),
    ])
    .unwrap();
    // Lists as other writers lay them out: Spark names the element field
    // `element` and makes it non-null; pandas writes an embedding as a list
    // of float64, not a fixed-size list of float32.
    let strings = {
        let mut builder = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
            "element",
            arrow_schema::DataType::Utf8,
            false,
        )));
        builder.append_value([Some("a"), Some("ü b")]);
        builder.append_value(Vec::<Option<&str>>::new());
        builder.append_null();
        Arc::new(builder.finish()) as ArrayRef
    };
    let flags = {
        let mut builder = ListBuilder::new(BooleanBuilder::new());
        builder.append_value([Some(true), Some(false), Some(true)]);
        builder.append_null();
        builder.append_value([Some(false)]);
        Arc::new(builder.finish()) as ArrayRef
    };
    let vectors = {
        let mut builder = ListBuilder::new(Float64Builder::new());
        builder.append_value([Some(0.5), Some(-0.0), Some(1e-40)]);
        builder.append_value([Some(1.0), Some(2.0), Some(3.0)]);
        builder.append_null();
        Arc::new(builder.finish()) as ArrayRef
    };
    let mut columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    columns.extend([("ls".into(), strings), ("lb".into(), flags), ("v".into(), vectors)]);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    samples::write_parquet(&repo.path().join("data/things.parquet"), &batch).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    let out = repo.ok(&["get", "--entity", "id=ä-1,b-2,", "--features", "echo", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let values = |column: usize| json["results"][column]["values"].clone();
    assert_eq!(values(1), serde_json::json!([true, null, false]));
    assert_eq!(values(2), serde_json::json!([i64::MIN, 0, null]));
    assert_eq!(values(3)[0].as_f64().unwrap().to_bits(), (-0.0f64).to_bits());
    assert_eq!(values(3)[1].as_f64().unwrap() as f32, f32::MAX);
    assert_eq!(values(4), serde_json::json!([0.1, null, -1e300]));
    assert_eq!(values(5), serde_json::json!(["naïve ☃", "", null]));
    assert_eq!(
        values(6),
        serde_json::json!(["1969-12-31T23:59:59.999999Z", null, "2023-11-14T22:13:20.123456Z"])
    );
    assert_eq!(
        json["results"][1]["statuses"],
        serde_json::json!(["PRESENT", "NULL_VALUE", "PRESENT"])
    );
    // Lists and vectors in Feast's wire shape: JSON arrays; float32
    // components widened exactly.
    assert_eq!(values(7), serde_json::json!([["a", "ü b"], [], null]));
    assert_eq!(values(8), serde_json::json!([[true, false, true], null, [false]]));
    assert_eq!(
        values(9),
        serde_json::json!([[0.5, -0.0, 1e-40f32 as f64], [1.0, 2.0, 3.0], null])
    );

    let table = repo.ok(&["get", "--entity", "id=ä-1", "--features", "echo"]);
    assert!(
        table.contains("naïve ☃") && table.contains("1969-12-31T23:59:59.999999"),
        "{table}"
    );
}

#[test]
fn get_at_reads_what_a_model_would_have_been_served_then() {
    let repo = fresh_driver_repo();
    let end = next_hour();
    // Half an hour past a data point, ten days back: the row of that hour, from the history.
    let at = end - 10 * 86_400_000_000 - 1_800_000_000;
    let printed: serde_json::Value = serde_json::from_str(&repo.ok(&[
        "get",
        "--entity",
        "driver_id=1001,1002",
        "--features",
        "driver_hourly_stats:conv_rate,driver_hourly_stats:avg_daily_trips",
        "--at",
        &skewless_runtime::time::format_timestamp(at),
        "--json",
    ]))
    .unwrap();
    for (row, driver) in [(0, 1001), (1, 1002)] {
        let (conv, _, trips) = newest_row_at(driver, end, at).unwrap();
        assert_eq!(printed["results"][1]["values"][row].as_f64().unwrap(), conv as f64);
        assert_eq!(printed["results"][2]["values"][row].as_i64().unwrap(), trips);
        assert_eq!(
            printed["results"][1]["event_timestamps"][row],
            skewless_runtime::time::format_timestamp(at - 1_800_000_000).as_str()
        );
    }
    // Before any data: NOT_FOUND. Long after it: OUTSIDE_MAX_AGE (1-day TTL counted back from --at).
    for (at, status) in [
        (end - 800 * 3_600_000_000, "NOT_FOUND"),
        (end + 2 * 86_400_000_000, "OUTSIDE_MAX_AGE"),
    ] {
        let printed: serde_json::Value = serde_json::from_str(&repo.ok(&[
            "get",
            "--entity",
            "driver_id=1001",
            "--features",
            "driver_hourly_stats:conv_rate",
            "--at",
            &skewless_runtime::time::format_timestamp(at),
            "--json",
        ]))
        .unwrap();
        assert_eq!(printed["results"][1]["statuses"][0], status);
    }
    assert!(
        repo.fails(&[
            "get",
            "--entity",
            "driver_id=1",
            "--features",
            "driver_hourly_stats",
            "--at",
            "soon"
        ])
        .contains("--at")
    );
}

/// Found as a new user: `skewless sample-data --repo examples/repos/driver_stats`
/// (the first line of python/examples/spark_backfill.py) failed, wanting the
/// example's name. In an example repo it is the project's.
#[test]
fn sample_data_in_an_example_repo_needs_no_name() {
    let repo = TempRepo::new("driver_stats");
    let out = repo.run(&["sample-data"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = repo.path().join("data/driver_stats.parquet");
    assert_eq!(read_parquet(&data).num_rows(), 720_000);

    let other = TempRepo::from_config("project = \"mine\"\n");
    let said = other.fails(&["sample-data"]);
    assert!(
        said.contains("project `mine` is not an example repo")
            && said.contains("skewless sample-data driver_stats|fraud|rides"),
        "{said}"
    );
}
