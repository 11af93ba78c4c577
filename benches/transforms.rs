//! Each example transform through its Wasm component against the same
//! logic compiled natively, at 1, 64, 4,096 and 65,536 rows per call,
//! side by side in one run; the component compiled both ways
//! (`determinism` default: NaNs canonicalized at the boundary; `strict`:
//! after every float operation too).
//!
//! Both sides do the same work per call: Arrow columns in, the transform's
//! typed columns, Arrow columns out. Wasm: `Transform::run` (the product's
//! one execution path). Native: copy the Arrow buffers into SDK columns,
//! call `skewless_sdk::run`, wrap the outputs as Arrow buffers.
//!
//! Run: cargo bench --bench transforms
//! (BENCH_FILTER=ride_eta for one transform, BENCH_ROWS=1,4096 for some sizes,
//! BENCH_MS=1000 for longer samples)

use skewless_testkit as kit;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;
use skewless_runtime::{Determinism, Limits, Transform, samples};
use skewless_sdk::{Batch, Column, Transform as SdkTransform, Values};

/// Arrow -> SDK columns, copying each buffer once (what the host does for a guest).
fn to_sdk(batch: &RecordBatch, names: &[&str]) -> Batch {
    let columns = names
        .iter()
        .map(|name| {
            let array = batch.column_by_name(name).unwrap();
            let validity = array
                .logical_nulls()
                .filter(|n| n.null_count() > 0)
                .map(|n| n.inner().sliced().as_slice().to_vec());
            let values = match array.data_type() {
                DataType::Int64 => Values::Int64(array.as_primitive::<Int64Type>().values().to_vec()),
                DataType::Float32 => Values::Float32(array.as_primitive::<Float32Type>().values().to_vec()),
                DataType::Float64 => Values::Float64(array.as_primitive::<Float64Type>().values().to_vec()),
                DataType::Timestamp(..) => {
                    Values::Timestamp(array.as_primitive::<TimestampMicrosecondType>().values().to_vec())
                }
                DataType::Utf8 => {
                    let s = array.as_string::<i32>();
                    let offsets = s.value_offsets();
                    let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
                    let bytes = s.values()[first as usize..last as usize].to_vec();
                    Values::Utf8 {
                        offsets: offsets.iter().map(|o| o - first).collect(),
                        bytes,
                    }
                }
                other => panic!("unexpected {other}"),
            };
            Column::from_parts(name, values, validity)
        })
        .collect();
    Batch::new(batch.num_rows(), columns)
}

/// SDK outputs -> Arrow arrays without copying values (as the host does).
fn to_arrow(output: skewless_sdk::Output) -> Vec<ArrayRef> {
    let rows = output.num_rows();
    output
        .columns()
        .to_vec()
        .into_iter()
        .map(|c| {
            let (_, values, validity) = c.into_parts();
            let nulls = validity.map(|bits| NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows)));
            match values {
                Values::Int64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef,
                Values::Timestamp(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef,
                Values::Float64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef,
                Values::Float32(v) => Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef,
                Values::Boolean(bits) => Arc::new(BooleanArray::new(
                    BooleanBuffer::new(Buffer::from_vec(bits), 0, rows),
                    nulls,
                )) as ArrayRef,
                Values::Utf8 { offsets, bytes } => Arc::new(StringArray::new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Buffer::from_vec(bytes),
                    nulls,
                )) as ArrayRef,
                Values::List { .. } | Values::Vector { .. } => {
                    panic!("the benchmarked transforms output scalars only")
                }
            }
        })
        .collect()
}

fn native<T: SdkTransform>(batch: &RecordBatch, names: &[&str]) -> usize {
    let input = to_sdk(batch, names);
    let output = skewless_sdk::run::<T>(&input).unwrap();
    to_arrow(output).len()
}

/// Median time per call of each contender, and the median of the per-round
/// ratios of each to the last one (native).
struct Timings {
    per_call: Vec<Duration>,
    to_last: Vec<f64>,
}

/// Times `contenders` in alternating rounds (so machine noise hits all alike)
/// until `budget` is spent.
fn compare(budget: Duration, contenders: &mut [&mut dyn FnMut()]) -> Timings {
    for run in contenders.iter_mut() {
        run();
    }
    let n = contenders.len();
    let (mut times, mut ratios) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let started = Instant::now();
    while started.elapsed() < budget || times[0].len() < 5 {
        let round: Vec<Duration> = contenders
            .iter_mut()
            .map(|run| {
                let t = Instant::now();
                run();
                t.elapsed()
            })
            .collect();
        for (i, time) in round.iter().enumerate() {
            times[i].push(*time);
            ratios[i].push(time.as_secs_f64() / round[n - 1].as_secs_f64());
        }
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let median_ratio = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Timings {
        per_call: times.into_iter().map(median).collect(),
        to_last: ratios.into_iter().map(median_ratio).collect(),
    }
}

fn main() {
    let runtime = kit::runtime();
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400),
    );
    let drivers = samples::driver_stats(1_000, 720, kit::FIXED_END, 42);
    let vals: ArrayRef = Arc::new(Int64Array::from_iter_values(
        (0..drivers.num_rows() as i64).map(|i| i % 100),
    ));
    let conv = RecordBatch::try_from_iter([("conv_rate", drivers.column(3).clone()), ("val_to_add", vals)]).unwrap();
    let fraud = samples::transactions(500, 70_000, kit::FIXED_END, 7);
    let rides = samples::rides(2_000, 70_000, kit::FIXED_END, 11);

    type Native = fn(&RecordBatch, &[&str]) -> usize;
    let cases: [(&str, &RecordBatch, &[&str], Native); 4] = [
        (
            "driver_hourly_stats",
            &drivers,
            &["conv_rate", "acc_rate", "avg_daily_trips"],
            native::<driver_hourly_stats::DriverHourlyStats>,
        ),
        (
            "transformed_conv_rate",
            &conv,
            &["conv_rate", "val_to_add"],
            native::<transformed_conv_rate::TransformedConvRate>,
        ),
        (
            "fraud_features",
            &fraud,
            &["amount", "merchant_category", "event_timestamp"],
            native::<fraud_features::FraudFeatures>,
        ),
        (
            "ride_eta",
            &rides,
            &["pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "duration_s"],
            native::<ride_eta::RideEta>,
        ),
    ];
    println!(
        "| transform | rows/call | wasm per call | strict per call | native per call | wasm ns/row | native ns/row | wasm/native | strict/native | wasm Mrows/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("BENCH_FILTER").unwrap_or_default();
    for (name, batch, inputs, native) in cases {
        if !name.contains(&only) {
            continue;
        }
        let transform: Transform = kit::example(&runtime, name);
        let strict = runtime
            .load_with(
                name,
                &kit::example_components().join(format!("{name}.wasm")),
                Limits::default(),
                Determinism::Strict,
            )
            .unwrap();
        let sizes: Vec<usize> = match std::env::var("BENCH_ROWS") {
            Ok(rows) => rows.split(',').filter_map(|r| r.parse().ok()).collect(),
            Err(_) => vec![1, 64, 4_096, 65_536],
        };
        for rows in sizes {
            let slice = batch.slice(0, rows);
            let t = compare(
                budget,
                &mut [
                    &mut || {
                        black_box(transform.run(black_box(&slice)).unwrap());
                    },
                    &mut || {
                        black_box(strict.run(black_box(&slice)).unwrap());
                    },
                    &mut || {
                        black_box(native(black_box(&slice), inputs));
                    },
                ],
            );
            let (wasm, strict_time, nat) = (t.per_call[0], t.per_call[1], t.per_call[2]);
            println!(
                "| {name} | {rows} | {:.2?} | {:.2?} | {:.2?} | {:.1} | {:.1} | {:.2}x | {:.2}x | {:.1} |",
                wasm,
                strict_time,
                nat,
                wasm.as_nanos() as f64 / rows as f64,
                nat.as_nanos() as f64 / rows as f64,
                t.to_last[0],
                t.to_last[1],
                rows as f64 / wasm.as_secs_f64() / 1e6,
            );
        }
    }
}
