//! `skewless dataset`: point-in-time correct training data, checked on
//! hand-built edge cases and against a brute-force scan of driver_stats.

use skewless_testkit as kit;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use kit::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use skewless_runtime::samples;

const HOUR: i64 = 3_600_000_000;
const T0: i64 = FIXED_END - 30 * 24 * HOUR;

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// Source rows: (driver, event time, created, conv_rate, trips).
fn write_source(repo: &TempRepo, rows: &[(i64, i64, i64, Option<f32>, i64)]) {
    let batch = RecordBatch::try_from_iter([
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("event_timestamp", timestamps(rows.iter().map(|r| r.1).collect())),
        ("created", timestamps(rows.iter().map(|r| r.2).collect())),
        (
            "conv_rate",
            Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.3))) as ArrayRef,
        ),
        (
            "acc_rate",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|_| 0.5))) as ArrayRef,
        ),
        (
            "avg_daily_trips",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))) as ArrayRef,
        ),
    ])
    .unwrap();
    samples::write_parquet(&repo.path().join("data/driver_stats.parquet"), &batch).unwrap();
}

/// `skewless --repo REPO dataset ARGS`, with `--spine` and `--out` relative to the repo.
fn dataset(repo: &TempRepo, args: &[&str]) -> std::process::Output {
    let mut full: Vec<String> = vec!["dataset".into()];
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        full.push(arg.to_string());
        if *arg == "--spine" || *arg == "--out" {
            full.push(repo.path().join(iter.next().unwrap()).display().to_string());
        }
    }
    repo.run(&full.iter().map(String::as_str).collect::<Vec<_>>())
}

fn dataset_ok(repo: &TempRepo, args: &[&str]) {
    let out = dataset(repo, args);
    assert!(
        out.status.success(),
        "dataset {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// driver_stats with a second materialized view over the same source whose
/// TTL is 1 hour (the example's is 1 day).
fn two_ttl_repo() -> TempRepo {
    let repo = TempRepo::new("driver_stats");
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let short = text
        .split("[views.driver_hourly_stats]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap()
        .replace("ttl = \"1d\"", "ttl = \"1h\"");
    std::fs::write(&config, format!("{text}\n[views.hourly_short]{short}\n")).unwrap();
    repo
}

#[test]
fn every_time_travel_edge_case_is_answered_as_feast_defines_it() {
    let repo = two_ttl_repo();
    write_source(
        &repo,
        &[
            (1, T0, T0, Some(0.1), 1),
            (1, T0 + HOUR, T0 + HOUR, Some(0.2), 2),
            // A tie on event time: the later created wins...
            (1, T0 + 2 * HOUR, T0 + 3 * HOUR, Some(0.4), 4),
            (1, T0 + 2 * HOUR, T0 + 2 * HOUR, Some(0.3), 3),
            // ...and an exact duplicate (same event and created time) is stored once.
            (1, T0 + 2 * HOUR, T0 + 3 * HOUR, Some(0.4), 4),
            // A null feature value.
            (2, T0, T0, None, 10),
        ],
    );
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    let day = 24 * HOUR;
    // (driver, time, val_to_add): deliberately unsorted, with a duplicate.
    let spine: Vec<(i64, i64, i64)> = vec![
        (1, T0 + HOUR, 100),          // 0: exact match of an event time
        (1, T0 + HOUR + HOUR / 2, 1), // 1: between two rows
        (1, T0 + 2 * HOUR, 2),        // 2: tie on event time
        (1, T0 - 1, 3),               // 3: before any data
        (2, T0 + day, 4),             // 4: exactly at the 1-day TTL (inclusive), outside 1h
        (2, T0 + day + 1, 5),         // 5: one microsecond past the TTL
        (3, T0 + HOUR, 6),            // 6: an entity with no rows
        (1, T0 + HOUR, 100),          // 7: duplicate of row 0
        (2, T0 + HOUR / 2, 7),        // 8: null feature value, within both TTLs
    ];
    let batch = RecordBatch::try_from_iter([
        (
            "label",
            Arc::new(StringArray::from_iter_values(
                spine.iter().map(|r| format!("row{}", r.2)),
            )) as ArrayRef,
        ),
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(spine.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("event_timestamp", timestamps(spine.iter().map(|r| r.1).collect())),
        (
            "val_to_add",
            Arc::new(Int64Array::from_iter_values(spine.iter().map(|r| r.2))) as ArrayRef,
        ),
    ])
    .unwrap();
    samples::write_parquet(&repo.path().join("spine.parquet"), &batch).unwrap();
    dataset_ok(
        &repo,
        &[
            "--spine",
            "spine.parquet",
            "--features",
            "driver_hourly_stats:conv_rate,driver_hourly_stats:avg_daily_trips,hourly_short:avg_daily_trips,transformed_conv_rate:conv_rate_plus_val1",
            "--full-feature-names",
            "--out",
            "out/train.parquet",
        ],
    );
    let out = read_parquet(&repo.path().join("out/train.parquet"));
    let schema = out.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "label",
            "driver_id",
            "event_timestamp",
            "val_to_add",
            "driver_hourly_stats__conv_rate",
            "driver_hourly_stats__avg_daily_trips",
            "hourly_short__avg_daily_trips",
            "transformed_conv_rate__conv_rate_plus_val1"
        ]
    );
    assert_eq!(out.num_rows(), spine.len());
    // Spine columns come back unchanged, in spine order.
    assert_eq!(out.column(0).as_string::<i32>(), batch.column(0).as_string::<i32>());
    assert_eq!(
        out.column(1).as_primitive::<Int64Type>(),
        batch.column(1).as_primitive::<Int64Type>()
    );

    let trips = |column: usize| -> Vec<Option<i64>> { out.column(column).as_primitive::<Int64Type>().iter().collect() };
    let conv: Vec<Option<f32>> = out.column(4).as_primitive::<Float32Type>().iter().collect();
    assert_eq!(
        trips(5),
        [Some(2), Some(2), Some(4), None, Some(10), None, None, Some(2), Some(10)]
    );
    assert_eq!(
        trips(6),
        [Some(2), Some(2), Some(4), None, None, None, None, Some(2), Some(10)]
    );
    assert_eq!(
        conv,
        [Some(0.2), Some(0.2), Some(0.4), None, None, None, None, Some(0.2), None]
    );
    // The on-demand view ran over the joined values and the spine's request column;
    // missing inputs give nulls.
    let plus: Vec<Option<f64>> = out.column(7).as_primitive::<Float64Type>().iter().collect();
    assert_eq!(
        plus,
        [
            Some(0.2f32 as f64 + 100.0),
            Some(0.2f32 as f64 + 1.0),
            Some(0.4f32 as f64 + 2.0),
            None,
            None,
            None,
            None,
            Some(0.2f32 as f64 + 100.0),
            None
        ]
    );

    // Lineage: the digest of each view and the commit the values came from.
    let file =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(repo.path().join("out/train.parquet")).unwrap())
            .unwrap();
    let metadata = file.metadata().file_metadata().key_value_metadata().unwrap();
    let lineage = metadata.iter().find(|kv| kv.key == "skewless.lineage").unwrap();
    let lineage: serde_json::Value = serde_json::from_str(lineage.value.as_deref().unwrap()).unwrap();
    let view = &lineage["views"]["driver_hourly_stats"];
    assert_eq!(view["digest"].as_str().unwrap().len(), 64);
    assert_eq!(view["produced_by"], serde_json::json!([view["digest"]]));
    assert!(view["last_commit"].as_u64().unwrap() >= 1);
}

#[test]
fn a_spine_over_driver_stats_equals_a_brute_force_scan() {
    let repo = TempRepo::new("driver_stats");
    // 1,000 drivers x 720 hours, plus duplicates: re-sent rows with a later created time.
    let data = samples::driver_stats(1_000, 720, FIXED_END, 42);
    let again: Vec<u32> = (0..data.num_rows() as u32).step_by(97).collect();
    let again = arrow_select::take::take_record_batch(&data, &UInt32Array::from(again)).unwrap();
    let later: TimestampMicrosecondArray = again
        .column(2)
        .as_primitive::<TimestampMicrosecondType>()
        .unary::<_, TimestampMicrosecondType>(|c| c + 1)
        .with_timezone("UTC");
    let trips: Int64Array = again.column(5).as_primitive::<Int64Type>().unary(|t| t + 5_000);
    let mut columns = again.columns().to_vec();
    columns[2] = Arc::new(later);
    columns[5] = Arc::new(trips);
    let again = RecordBatch::try_new(again.schema(), columns).unwrap();
    let data = arrow_select::concat::concat_batches(&data.schema(), &[data, again]).unwrap();
    samples::write_parquet(&repo.path().join("data/driver_stats.parquet"), &data).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    // 100,000 spine rows: random drivers (some unknown), random instants over the data and past it.
    let mut next = split_mix(7);
    let start = FIXED_END - 722 * HOUR;
    let spine: Vec<(i64, i64)> = (0..100_000)
        .map(|_| (1001 + next(1_010) as i64, start + next(730 * HOUR as u64) as i64))
        .collect();
    let batch = RecordBatch::try_from_iter([
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(spine.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("event_timestamp", timestamps(spine.iter().map(|r| r.1).collect())),
    ])
    .unwrap();
    samples::write_parquet(&repo.path().join("spine.parquet"), &batch).unwrap();
    dataset_ok(
        &repo,
        &[
            "--spine",
            "spine.parquet",
            "--features",
            "driver_hourly_stats",
            "--out",
            "train.parquet",
        ],
    );
    let out = read_parquet(&repo.path().join("train.parquet"));
    assert_eq!(out.num_rows(), 100_000);

    // Brute force: every source row of the driver, newest (event, created) with
    // t - 1 day <= event <= t.
    let ids = data.column(0).as_primitive::<Int64Type>();
    let times = data.column(1).as_primitive::<TimestampMicrosecondType>();
    let created = data.column(2).as_primitive::<TimestampMicrosecondType>();
    let mut by_driver: std::collections::HashMap<i64, Vec<usize>> = Default::default();
    for row in 0..data.num_rows() {
        by_driver.entry(ids.value(row)).or_default().push(row);
    }
    let conv = out.column_by_name("conv_rate").unwrap().as_primitive::<Float32Type>();
    let trips = out
        .column_by_name("avg_daily_trips")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut found = 0;
    for (i, (driver, t)) in spine.iter().enumerate() {
        let best = by_driver.get(driver).and_then(|rows| {
            rows.iter()
                .copied()
                .filter(|r| times.value(*r) <= *t && times.value(*r) >= t - 24 * HOUR)
                .max_by_key(|r| (times.value(*r), created.value(*r)))
        });
        match best {
            Some(r) => {
                found += 1;
                assert_eq!(
                    conv.value(i).to_bits(),
                    data.column(3).as_primitive::<Float32Type>().value(r).to_bits(),
                    "row {i}"
                );
                assert_eq!(
                    trips.value(i),
                    data.column(5).as_primitive::<Int64Type>().value(r),
                    "row {i}"
                );
            }
            None => assert!(conv.is_null(i) && trips.is_null(i), "row {i}: expected no value"),
        }
    }
    assert!(found > 90_000, "only {found} rows had values");
}

#[test]
fn a_bad_spine_is_named_and_no_output_is_left_behind() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let write = |name: &str, text: &str| std::fs::write(repo.path().join(name), text).unwrap();
    write(
        "no_time.csv",
        "driver_id,event_timestamp\n1001,2025-12-30T00:00:00Z\n1002,\n",
    );
    write("no_key.csv", "event_timestamp\n2025-12-30T00:00:00Z\n");
    write("bad_key.csv", "driver_id,event_timestamp\nabc,2025-12-30T00:00:00Z\n");
    for (spine, expected) in [
        ("no_time.csv", "row 1 (0-based) has no `event_timestamp`"),
        ("no_key.csv", "missing join key `driver_id`"),
        ("bad_key.csv", "bad_key.csv"),
        ("missing.csv", "missing.csv"),
        ("spine.txt", "say the format with the extension"),
        ("out.parquet", "is the spine itself"),
    ] {
        let out = dataset(
            &repo,
            &[
                "--spine",
                spine,
                "--features",
                "driver_hourly_stats",
                "--out",
                "out.parquet",
            ],
        );
        assert!(!out.status.success(), "{spine} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{spine}: {stderr}");
        assert!(!repo.path().join("out.parquet").exists() && !repo.path().join("out.parquet.partial").exists());
    }
    // An output that is the spine itself is refused before anything is written.
    let spine = "driver_id,event_timestamp\n1001,2025-12-30T00:00:00Z\n";
    write("same.csv", spine);
    let out = dataset(
        &repo,
        &[
            "--spine",
            "same.csv",
            "--features",
            "driver_hourly_stats",
            "--out",
            "same.csv",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the spine itself"));
    assert_eq!(std::fs::read_to_string(repo.path().join("same.csv")).unwrap(), spine);
}

#[test]
fn csv_in_csv_out_matches_parquet() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    std::fs::write(
        repo.path().join("spine.csv"),
        "driver_id,event_timestamp,val_to_add\n1001,2025-12-30T10:30:00Z,5\n1005,2025-12-29T00:00:00Z,6\n",
    )
    .unwrap();
    dataset_ok(
        &repo,
        &[
            "--spine",
            "spine.csv",
            "--service",
            "driver_activity",
            "--out",
            "train.csv",
        ],
    );
    dataset_ok(
        &repo,
        &[
            "--spine",
            "spine.csv",
            "--service",
            "driver_activity",
            "--out",
            "train.parquet",
        ],
    );
    let csv = std::fs::read_to_string(repo.path().join("train.csv")).unwrap();
    let parquet = read_parquet(&repo.path().join("train.parquet"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0]
            .starts_with("driver_id,event_timestamp,val_to_add,conv_rate,acc_rate,avg_daily_trips,conv_rate_plus_val1")
    );
    let trips = parquet
        .column_by_name("avg_daily_trips")
        .unwrap()
        .as_primitive::<Int64Type>();
    for (row, line) in lines[1..].iter().enumerate() {
        assert_eq!(line.split(',').nth(5).unwrap(), trips.value(row).to_string());
    }
    assert!(repo.path().join("train.csv.lineage.json").exists());

    // The spine's time column under another name.
    std::fs::write(
        repo.path().join("spine_ts.csv"),
        "driver_id,label_time,val_to_add\n1001,2025-12-30T10:30:00Z,5\n1005,2025-12-29T00:00:00Z,6\n",
    )
    .unwrap();
    dataset_ok(
        &repo,
        &[
            "--spine",
            "spine_ts.csv",
            "--timestamp-column",
            "label_time",
            "--service",
            "driver_activity",
            "--out",
            "train_ts.parquet",
        ],
    );
    let renamed = read_parquet(&repo.path().join("train_ts.parquet"));
    assert_eq!(renamed.schema().field(1).name(), "label_time");
    assert_eq!(
        renamed
            .column_by_name("avg_daily_trips")
            .unwrap()
            .as_primitive::<Int64Type>(),
        trips
    );
}

#[test]
fn values_of_two_builds_of_a_component_are_not_mixed_unless_asked() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    // Another build of the view's component (one more custom section), applied, and
    // backfilled over the last day only: older values stay from the first build.
    swap_in_another_build(&repo, "driver_hourly_stats");
    repo.ok(&["apply"]);
    let last_day = skewless_runtime::time::format_timestamp(FIXED_END - 24 * HOUR);
    repo.ok(&["backfill", "--start", &last_day]);

    std::fs::write(
        repo.path().join("spine.csv"),
        "driver_id,event_timestamp\n1001,2025-12-31T12:00:00Z\n1001,2025-12-20T12:00:00Z\n",
    )
    .unwrap();
    let args = [
        "--spine",
        "spine.csv",
        "--features",
        "driver_hourly_stats",
        "--out",
        "train.parquet",
    ];
    let refused = dataset(&repo, &args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("produced by 2 transform digests") && stderr.contains("--allow-mixed-digests"),
        "{stderr}"
    );
    assert!(!repo.path().join("train.parquet").exists());

    dataset_ok(&repo, &[&args[..], &["--allow-mixed-digests"]].concat());
    let file =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(repo.path().join("train.parquet")).unwrap())
            .unwrap();
    let metadata = file.metadata().file_metadata().key_value_metadata().unwrap();
    let lineage: serde_json::Value = serde_json::from_str(
        metadata
            .iter()
            .find(|kv| kv.key == "skewless.lineage")
            .unwrap()
            .value
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        lineage["views"]["driver_hourly_stats"]["produced_by"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
