//! The example transforms and the Arrow <-> WIT conversion, through real
//! components built from source: one batch in one call gives bit-identical
//! outputs to the same rows in 1-row calls, and every type makes the round
//! trip with nulls, empty batches, sliced arrays and unicode.

use skewless_testkit as kit;

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use kit::*;
use proptest::prelude::*;
use skewless_runtime::{Limits, Transform, samples};

/// Runs `transform` over `batch` in one call and in 1-row calls and checks
/// the outputs and row errors agree exactly. Returns the one-call output.
fn check_batch_equals_rows(transform: &Transform, batch: &RecordBatch) -> RecordBatch {
    let whole = transform.run(batch).expect("whole batch runs");
    let mut parts = Vec::new();
    let mut row_errors = Vec::new();
    for row in 0..batch.num_rows() {
        let one = transform.run(&batch.slice(row, 1)).expect("single row runs");
        row_errors.extend(one.row_errors.into_iter().map(|e| (row, e.message)));
        parts.push(one.batch);
    }
    let rows = arrow_select::concat::concat_batches(transform.output_schema(), &parts).unwrap();
    assert_bit_identical(&whole.batch, &rows);
    let whole_errors: Vec<_> = whole.row_errors.into_iter().map(|e| (e.row, e.message)).collect();
    assert_eq!(
        whole_errors, row_errors,
        "row errors differ between one call and 1-row calls"
    );
    whole.batch
}

fn driver_rows(rows: usize) -> RecordBatch {
    let batch = samples::driver_stats(100, 100, FIXED_END, 3);
    batch.slice(0, rows)
}

#[test]
fn driver_hourly_stats_passes_values_through_bit_for_bit() {
    let runtime = runtime();
    let transform = example(&runtime, "driver_hourly_stats");
    let input = driver_rows(10_000);
    let output = check_batch_equals_rows(&transform, &input);
    for name in ["conv_rate", "acc_rate", "avg_daily_trips"] {
        assert_eq!(
            output.column_by_name(name).unwrap(),
            input.column_by_name(name).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn transformed_conv_rate_adds_the_request_value() {
    let runtime = runtime();
    let transform = example(&runtime, "transformed_conv_rate");
    let drivers = driver_rows(10_000);
    let conv: Vec<Option<f32>> = (0..10_000)
        .map(|i| match i % 97 {
            0 => None,
            1 => Some(f32::NAN),
            2 => Some(-0.0),
            _ => Some(
                drivers
                    .column(3)
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .unwrap()
                    .value(i),
            ),
        })
        .collect();
    let vals: Vec<Option<i64>> = (0..10_000)
        .map(|i| if i % 89 == 0 { None } else { Some(i as i64 - 5_000) })
        .collect();
    let input = RecordBatch::try_from_iter([
        ("conv_rate", Arc::new(Float32Array::from(conv.clone())) as ArrayRef),
        ("val_to_add", Arc::new(Int64Array::from(vals.clone())) as ArrayRef),
    ])
    .unwrap();
    let output = check_batch_equals_rows(&transform, &input);
    let plus1 = output.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
    let plus2 = output.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    for row in 0..10_000 {
        match (conv[row], vals[row]) {
            (Some(c), Some(v)) => {
                assert_eq!(plus1.value(row).to_bits(), (c as f64 + v as f64).to_bits(), "row {row}");
                assert_eq!(
                    plus2.value(row).to_bits(),
                    (c as f64 + v as f64 * 2.0).to_bits(),
                    "row {row}"
                );
            }
            _ => assert!(plus1.is_null(row) && plus2.is_null(row), "row {row} should be null"),
        }
    }
}

#[test]
fn fraud_features_report_malformed_rows_and_keep_the_rest() {
    let runtime = runtime();
    let transform = example(&runtime, "fraud_features");
    let input = samples::transactions(50, 10_000, FIXED_END, 5);
    let output = check_batch_equals_rows(&transform, &input);
    let whole = transform.run(&input).unwrap();
    assert!(!whole.row_errors.is_empty(), "the sample has malformed rows");
    assert!(whole.row_errors.len() < 200, "only the malformed rows fail");
    let first = &whole.row_errors[0];
    assert!(
        first.message.contains("amount") || first.message.contains("merchant category"),
        "{}",
        first.message
    );
    for error in &whole.row_errors {
        for column in output.columns() {
            assert!(
                column.is_null(error.row),
                "failed row {} must be null in every output",
                error.row
            );
        }
    }
    // 2026-01-01 was a Thursday (3); the last transaction is 37 s before midnight on Wednesday.
    let weekday = output
        .column_by_name("day_of_week")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let hour = output
        .column_by_name("hour_of_day")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let last = input.num_rows() - 1;
    assert_eq!((weekday.value(last), hour.value(last)), (2, 23));
}

#[test]
fn ride_eta_computes_geometry_identically_in_batches_and_rows() {
    let runtime = runtime();
    let transform = example(&runtime, "ride_eta");
    let input = samples::rides(100, 10_000, FIXED_END, 9);
    let output = check_batch_equals_rows(&transform, &input);
    let distance = output
        .column_by_name("distance_km")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert!(
        distance.iter().flatten().all(|d| (0.0..40.0).contains(&d)),
        "rides stay in the city"
    );
}

#[test]
fn splitting_a_batch_across_calls_does_not_change_the_result() {
    let runtime = runtime();
    let path = example_components().join("fraud_features.wasm");
    let small = Limits {
        max_rows_per_call: 7,
        ..Limits::default()
    };
    let split = runtime.load("fraud", &path, small).unwrap();
    let whole = runtime.load("fraud", &path, Limits::default()).unwrap();
    let input = samples::transactions(50, 1_000, FIXED_END, 5);
    let (a, b) = (whole.run(&input).unwrap(), split.run(&input).unwrap());
    assert_bit_identical(&a.batch, &b.batch);
    assert_eq!(a.row_errors, b.row_errors);
}

/// One row of the echo component's columns: b, i, f32 bits, f64 bits, s,
/// t, a list of strings, a list of booleans, a vector of 3.
type EchoRow = (
    Option<bool>,
    Option<i64>,
    Option<u32>,
    Option<u64>,
    Option<String>,
    Option<i64>,
    Option<Vec<String>>,
    Option<Vec<bool>>,
    Option<[f32; 3]>,
);

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn echo_batch(rows: &[EchoRow]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("b", DataType::Boolean, true),
        Field::new("i", DataType::Int64, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("t", ts_type(), true),
        Field::new("ls", list_type(DataType::Utf8), true),
        Field::new("lb", list_type(DataType::Boolean), true),
        Field::new(
            "v",
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), 3),
            true,
        ),
    ]));
    let mut strings = ListBuilder::new(StringBuilder::new());
    let mut bools = ListBuilder::new(BooleanBuilder::new());
    let mut vectors = FixedSizeListBuilder::new(Float32Builder::new(), 3);
    for row in rows {
        match &row.6 {
            Some(list) => strings.append_value(list.iter().map(Some)),
            None => strings.append_null(),
        }
        match &row.7 {
            Some(list) => bools.append_value(list.iter().map(|b| Some(*b))),
            None => bools.append_null(),
        }
        match &row.8 {
            Some(v) => {
                vectors.values().append_slice(v);
                vectors.append(true);
            }
            None => {
                vectors.values().append_slice(&[0.0; 3]);
                vectors.append(false);
            }
        }
    }
    let vectors = vectors.finish();
    let vectors = FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        3,
        vectors.values().clone(),
        vectors.nulls().cloned(),
    );
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(BooleanArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Float32Array::from(
                rows.iter().map(|r| r.2.map(f32::from_bits)).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.3.map(f64::from_bits)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(rows.iter().map(|r| r.4.clone()).collect::<Vec<_>>())),
            Arc::new(
                TimestampMicrosecondArray::from(rows.iter().map(|r| r.5).collect::<Vec<_>>()).with_timezone("UTC"),
            ),
            Arc::new(strings.finish()),
            Arc::new(bools.finish()),
            Arc::new(vectors),
        ],
    )
    .unwrap()
}

fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// Finite float32 of every kind: zeros, subnormals, normals.
fn finite_f32() -> impl Strategy<Value = f32> {
    proptest::num::f32::ZERO | proptest::num::f32::SUBNORMAL | proptest::num::f32::NORMAL
}

fn row_strategy() -> impl Strategy<Value = EchoRow> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(prop_oneof![
            any::<u64>(),
            Just((-0.0f64).to_bits()),
            Just(f64::NAN.to_bits())
        ]),
        proptest::option::of(prop_oneof![Just(String::new()), "\\PC{0,12}", "[a-z]{0,4}"]),
        proptest::option::of(any::<i64>()),
        proptest::option::of(proptest::collection::vec("\\PC{0,6}", 0..5)),
        proptest::option::of(proptest::collection::vec(any::<bool>(), 0..11)),
        proptest::option::of([finite_f32(), finite_f32(), finite_f32()]),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every type, with nulls, empty batches, unicode and sliced (offset)
    /// arrays, crosses Arrow -> WIT -> guest -> WIT -> Arrow unchanged, but
    /// for NaN payloads: every NaN leaves a guest as the canonical one.
    #[test]
    fn every_type_round_trips_through_a_component(
        rows in proptest::collection::vec(row_strategy(), 0..120),
        offset in 0usize..9,
    ) {
        static RUNTIME: std::sync::OnceLock<(skewless_runtime::Runtime, Transform)> = std::sync::OnceLock::new();
        let (_, echo) = RUNTIME.get_or_init(|| {
            let runtime = runtime();
            let echo = test_component(&runtime, "echo", Limits::default());
            (runtime, echo)
        });
        let batch = echo_batch(&rows);
        let offset = offset.min(rows.len());
        let sliced = batch.slice(offset, rows.len() - offset);
        let output = echo.run(&sliced).unwrap();
        prop_assert!(output.row_errors.is_empty());
        assert_bit_identical(&canonical_nans(&sliced), &output.batch);
    }
}

/// `batch` with every float NaN replaced by the canonical quiet NaN.
fn canonical_nans(batch: &RecordBatch) -> RecordBatch {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type};
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Float32 => Arc::new(
                column
                    .as_primitive::<Float32Type>()
                    .unary::<_, Float32Type>(|v| if v.is_nan() { f32::NAN } else { v }),
            ) as ArrayRef,
            DataType::Float64 => Arc::new(
                column
                    .as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(|v| if v.is_nan() { f64::NAN } else { v }),
            ) as ArrayRef,
            _ => column.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn timestamps_in_other_units_arrive_as_microseconds() {
    let runtime = runtime();
    let echo = test_component(&runtime, "echo", Limits::default());
    let row = (
        Some(true),
        Some(1),
        Some(0),
        Some(0),
        Some("é".to_string()),
        Some(0),
        None,
        None,
        None,
    );
    let base = echo_batch(&[row.clone(), row.clone(), row]);
    let nanos: ArrayRef =
        Arc::new(TimestampNanosecondArray::from(vec![Some(1_500_999), None, Some(-1_001)]).with_timezone("UTC"));
    let mut columns = base.columns().to_vec();
    columns[5] = nanos;
    let mut fields: Vec<Field> = base.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[5] = Field::new("t", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true);
    let input = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let output = echo.run(&input).unwrap();
    let t = output
        .batch
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(t.iter().collect::<Vec<_>>(), vec![Some(1_500), None, Some(-2)]);
}

#[test]
fn a_second_load_comes_from_the_compile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let path = example_components().join("ride_eta.wasm");
    let first = skewless_runtime::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let started = std::time::Instant::now();
    let cold = first.load("ride", &path, Limits::default()).unwrap();
    let cold_time = started.elapsed();
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry: {entries:?}");
    let name = entries[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(&cold.digest().hex()) && name.ends_with(".cwasm"),
        "{name}"
    );
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    let second = skewless_runtime::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let started = std::time::Instant::now();
    let warm = second.load("ride", &path, Limits::default()).unwrap();
    let warm_time = started.elapsed();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        written,
        "the entry was reused, not rewritten"
    );
    eprintln!("ride_eta load: cold {cold_time:?}, warm {warm_time:?}");
    let input = samples::rides(10, 100, FIXED_END, 1);
    assert_bit_identical(&cold.run(&input).unwrap().batch, &warm.run(&input).unwrap().batch);

    // A damaged entry is recompiled, not trusted; and a transform loaded from
    // it before it was rewritten in place keeps running (it runs a private copy).
    std::fs::write(&entries[0], b"garbage").unwrap();
    assert_bit_identical(&cold.run(&input).unwrap().batch, &warm.run(&input).unwrap().batch);
    let third = skewless_runtime::Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let repaired = third.load("ride", &path, Limits::default()).unwrap();
    assert_bit_identical(&cold.run(&input).unwrap().batch, &repaired.run(&input).unwrap().batch);
    assert!(
        std::fs::metadata(&entries[0]).unwrap().len() > 1000,
        "the entry was rewritten"
    );
}

#[test]
fn every_example_transform_passes_the_batch_invariance_probe_on_edge_case_rows() {
    use skewless_runtime::invariance::{self, SampleOrigin};
    let runtime = runtime();
    for name in [
        "driver_hourly_stats",
        "transformed_conv_rate",
        "fraud_features",
        "ride_eta",
    ] {
        let transform = example(&runtime, name);
        for seed in [1, 2, 3] {
            let rows = invariance::generated(&transform.description().inputs, invariance::PROBE_ROWS, seed);
            let probed = invariance::probe(&transform, &rows, SampleOrigin::Generated, seed)
                .unwrap_or_else(|found| panic!("{found}"));
            assert_eq!(probed.rows + probed.failing_alone, invariance::PROBE_ROWS, "{name}");
            assert!(!probed.splits.is_empty(), "{name}");
        }
    }
    // And the probe does catch a guest that reads its batch.
    let batch_size = test_component(&runtime, "batch_size", Limits::default());
    let rows = invariance::generated(&batch_size.description().inputs, 50, 9);
    let found = invariance::probe(&batch_size, &rows, SampleOrigin::Generated, 9).unwrap_err();
    assert_eq!(found.how, invariance::Arrangement::OneRowAtATime);
    assert_eq!((found.together.as_str(), found.apart.as_str()), ("50", "1"), "{found}");
}

/// A guest that dirties 256 scattered pages per call (more regions than
/// one page-reset scan returns) finds its memory as it started, on every
/// call: from several threads, so slots and instances made ahead rotate.
#[test]
fn a_guest_that_dirties_many_scattered_pages_sees_its_initial_memory_on_every_call() {
    let runtime = runtime();
    let transform = test_component(&runtime, "scatter", Limits::default());
    let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for call in 0..100 {
                    let out = transform.run(&batch).expect("scatter runs");
                    let stale = out
                        .batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .value(0);
                    assert_eq!(stale, 0, "call {call} found {stale} pages written by an earlier call");
                }
            });
        }
    });
}
