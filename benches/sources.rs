//! Backfill from a Delta Lake table and from a PostgreSQL table against the
//! same rows from one Parquet file, side by side in one run: the
//! driver_stats example's view over BENCH_ROWS rows; the Delta table
//! written by PyPI's `deltalake` in BENCH_COMMITS appends (a file per
//! commit, as a table fed by a daily job looks); the PostgreSQL table in
//! Debian's PostgreSQL started on loopback. Each run is a `skewless
//! backfill` process into a new store, the three sources interleaved;
//! medians of BENCH_RUNS.
//!
//! Run: cargo bench --bench sources   (needs `pip install deltalake pyarrow`
//! and `apt install postgresql`; BENCH_ROWS=1000000, BENCH_COMMITS=10,
//! BENCH_RUNS=3)

use skewless_testkit as kit;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skewless_runtime::samples;
use skewless_testkit::services::Postgres;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// One backfill into a new store: its wall time and rows written.
fn backfill(repo: &kit::TempRepo) -> (Duration, String) {
    let _ = std::fs::remove_dir_all(repo.path().join(".skewless"));
    repo.ok(&["apply"]);
    let started = Instant::now();
    let out = repo.run(&["backfill"]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("driver_hourly_stats:"))
        .unwrap_or_default();
    (elapsed, line.trim().to_string())
}

fn write_delta(table: &Path, parquet: &Path, commits: u64) {
    let script = format!(
        "import pyarrow.parquet as pq\nfrom deltalake import write_deltalake\n\
         t = pq.read_table({parquet:?})\nn = t.num_rows\nk = {commits}\n\
         for i in range(k):\n    write_deltalake({table:?}, t.slice(i * n // k, (i + 1) * n // k - i * n // k), mode='append')\n",
        parquet = parquet.display().to_string(),
        table = table.display().to_string(),
    );
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "writing the Delta table (pip install deltalake pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let rows = env("BENCH_ROWS", 1_000_000);
    let commits = env("BENCH_COMMITS", 10);
    let runs = env("BENCH_RUNS", 3);
    let drivers = 1_000;
    let hours = (rows as usize).div_ceil(drivers);
    let batch = samples::driver_stats(drivers, hours, kit::next_hour(), 42);

    let parquet = kit::driver_repo_reading("type = \"file\"\npath = \"data/rows.parquet\"\n");
    let file = parquet.path().join("data/rows.parquet");
    samples::write_parquet(&file, &batch).unwrap();
    let delta = kit::driver_repo_reading("type = \"delta\"\npath = \"data/rows\"\n");
    write_delta(&delta.path().join("data/rows"), &file, commits);
    let database = Postgres::start();
    database.load("driver_stats", &batch);
    let mut postgres = kit::driver_repo_reading("type = \"postgres\"\ntable = \"driver_stats\"\n");
    postgres.env.push(("DATABASE_URL".into(), database.url()));
    println!(
        "driver_hourly_stats backfill, {} rows: one Parquet file vs a Delta table of {commits} commits vs a \
         PostgreSQL table",
        batch.num_rows()
    );

    let (mut from_parquet, mut from_delta, mut from_postgres) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let (p, p_line) = backfill(&parquet);
        let (d, d_line) = backfill(&delta);
        let (g, g_line) = backfill(&postgres);
        println!("  run {run}: parquet {p:.2?} ({p_line}); delta {d:.2?} ({d_line}); postgres {g:.2?} ({g_line})");
        from_parquet.push(p);
        from_delta.push(d);
        from_postgres.push(g);
    }
    let (p, d, g) = (median(from_parquet), median(from_delta), median(from_postgres));
    let ratio = |x: Duration| x.as_secs_f64() / p.as_secs_f64();
    println!(
        "median of {runs}: parquet {p:.2?}, delta {d:.2?} ({:.2}x), postgres {g:.2?} ({:.2}x); target <= 1.5x each",
        ratio(d),
        ratio(g)
    );
}
