//! Training data end to end: a 100,000-row spine (Parquet) over driver_stats
//! (1,000 drivers x 720 hours = 720,000 stored rows), the three driver
//! features plus the on-demand view, point-in-time joined and written to
//! Parquet. Each run is a fresh process, as a user runs `skewless dataset`
//! (cold redb cache included); the store is built once.
//!
//! Run: cargo bench --bench dataset   (BENCH_RUNS=5; BENCH_SPINE_ROWS=100000; BENCH_KEEP=1 keeps
//! the repo and spine for measuring by hand)

use skewless_testkit as kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};
use skewless_runtime::samples;

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let spine_rows: usize = std::env::var("BENCH_SPINE_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let repo = kit::TempRepo::with_data("driver_stats", kit::FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    // Random drivers and instants over the data's 720 hours.
    let hour = 3_600_000_000i64;
    let start = kit::FIXED_END - 720 * hour;
    let mut next = kit::split_mix(11);
    let (drivers, times): (Vec<i64>, Vec<i64>) = (0..spine_rows)
        .map(|_| (1001 + next(1_000) as i64, start + next(720 * hour as u64) as i64))
        .unzip();
    let values: Vec<i64> = (0..spine_rows as i64).collect();
    let spine = RecordBatch::try_from_iter([
        ("driver_id", Arc::new(Int64Array::from(drivers)) as ArrayRef),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")) as ArrayRef,
        ),
        ("val_to_add", Arc::new(Int64Array::from(values)) as ArrayRef),
    ])
    .unwrap();
    let spine_path = repo.path().join("spine.parquet");
    samples::write_parquet(&spine_path, &spine).unwrap();
    let out = repo.path().join("train.parquet");

    if std::env::var_os("BENCH_KEEP").is_some() {
        // For measuring by hand (e.g. peak memory with /usr/bin/time -v).
        let dir = repo.dir.keep();
        println!("kept: {} (spine.parquet inside)", dir.display());
        return;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        repo.ok(&[
            "dataset",
            "--spine",
            spine_path.to_str().unwrap(),
            "--service",
            "driver_activity",
            "--out",
            out.to_str().unwrap(),
        ]);
        times.push(started.elapsed());
    }
    times.sort();
    let median: Duration = times[runs / 2];
    println!(
        "| {spine_rows}-row spine over 720,000 stored rows, 3 features + on-demand view, Parquet in and out (process start to exit, median of {runs}) | {:.3} s | {:.2}M spine rows/s | min {:.3} s, max {:.3} s |",
        median.as_secs_f64(),
        spine_rows as f64 / median.as_secs_f64() / 1e6,
        times[0].as_secs_f64(),
        times[runs - 1].as_secs_f64()
    );
}
