//! The Python package against the CLI, side by side in one run:
//! - `Transform.run` on a 65,536-row pyarrow batch against the Rust
//!   runtime's `Transform::run` on the same batch (target within 1.2x);
//! - the cost of a 1-row call from Python, against the same call in Rust;
//! - Spark `local[2]` backfilling driver_stats (720k rows, written as
//!   Parquet partitioned by date) against `skewless backfill` of the same
//!   rows in one process;
//! - `skewless import` of Spark's output (720k rows).
//!
//! Needs what `.ci/run` installs (maturin, pyarrow, pyspark, Java).
//! Run: cargo bench --bench python

use skewless_testkit as kit;

use std::process::Command;
use std::time::{Duration, Instant};

use skewless_runtime::samples;

fn run(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn timed(repo: &kit::TempRepo, args: &[&str]) -> Duration {
    let start = Instant::now();
    repo.ok(args);
    start.elapsed()
}

fn main() {
    let components = kit::example_components();
    let component = components.join("driver_hourly_stats.wasm");
    let data = samples::driver_stats(1_000, 720, kit::FIXED_END, 42);

    // The Rust side: the same 65,536 rows through Transform::run.
    let runtime = kit::runtime();
    let transform = kit::example(&runtime, "driver_hourly_stats");
    let batch = data.slice(0, 65_536);
    transform.run(&batch).unwrap();
    let mut times: Vec<Duration> = (0..51)
        .map(|_| {
            let start = Instant::now();
            transform.run(&batch).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    let rust_batch = times[times.len() / 2];
    let one = data.slice(0, 1);
    let calls = 2_000;
    let start = Instant::now();
    for _ in 0..calls {
        transform.run(&one).unwrap();
    }
    let rust_one = start.elapsed() / calls;

    // The CLI: backfill, and import of what Spark wrote.
    let cli_repo = kit::TempRepo::with_data("driver_stats", kit::FIXED_END);
    cli_repo.ok(&["apply"]);
    let cli_backfill = timed(&cli_repo, &["backfill"]);

    // The Python side, with the wheel built here.
    let work = tempfile::tempdir().unwrap();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| kit::root().join("target").display().to_string());
    run(Command::new("maturin")
        .args(["build", "--release", "--quiet", "-o"])
        .arg(work.path().join("wheels"))
        .current_dir(kit::root().join("python"))
        .env("CARGO_TARGET_DIR", &target));
    let wheel = std::fs::read_dir(work.path().join("wheels"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let venv = work.path().join("venv");
    run(Command::new("python3")
        .args(["-m", "venv", "--system-site-packages"])
        .arg(&venv));
    let python = venv.join("bin/python");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps"])
        .arg(&wheel));
    let spark_repo = kit::TempRepo::with_data("driver_stats", kit::FIXED_END);
    let spark_out = work.path().join("spark_out");
    let report = run(Command::new(&python)
        .arg(kit::root().join("python/benches/bench_python.py"))
        .arg(&component)
        .arg(spark_repo.path().join("data/driver_stats.parquet"))
        .arg(spark_repo.path())
        .arg(&spark_out)
        .env("SKEWLESS_CACHE_DIR", work.path().join("cache")));
    let report: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    spark_repo.ok(&["apply"]);
    let import = timed(
        &spark_repo,
        &[
            "import",
            "--view",
            "driver_hourly_stats",
            "--from",
            spark_out.to_str().unwrap(),
        ],
    );
    let digest = |repo: &kit::TempRepo| {
        skewless_runtime::Store::open_existing(&repo.store())
            .unwrap()
            .content_digest()
            .unwrap()
    };
    assert_eq!(
        digest(&spark_repo),
        digest(&cli_repo),
        "Spark + import must store what backfill stores"
    );

    let python_batch = report["run_65536_s"].as_f64().unwrap();
    let rows = report["rows"].as_f64().unwrap();
    let spark = report["spark_backfill_s"].as_f64().unwrap();
    println!("| workload | Python / Spark | Rust / CLI | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `Transform.run`, 65,536 rows (driver_hourly_stats) | {:.2} ms | {:.2} ms | {:.2}x |",
        python_batch * 1e3,
        rust_batch.as_secs_f64() * 1e3,
        python_batch / rust_batch.as_secs_f64()
    );
    let python_one = report["run_1_row_us"].as_f64().unwrap();
    let rust_one_us = rust_one.as_secs_f64() * 1e6;
    println!(
        "| 1-row call | {python_one:.1} us | {rust_one_us:.1} us | {:.2}x |",
        python_one / rust_one_us
    );
    println!(
        "| backfill of driver_stats, {rows:.0} rows | Spark local[2] {spark:.2} s ({:.0} rows/s, to Parquet) | {:.2} s ({:.0} rows/s, to redb) | {:.2}x |",
        rows / spark,
        cli_backfill.as_secs_f64(),
        rows / cli_backfill.as_secs_f64(),
        spark / cli_backfill.as_secs_f64()
    );
    println!(
        "| `skewless import` of Spark's output, {rows:.0} rows | - | {:.2} s ({:.0} rows/s) | - |",
        import.as_secs_f64(),
        rows / import.as_secs_f64()
    );
}
