//! Windowed features (the fraud example's `card_activity` view, 12 window
//! features) over 1,000,000 bursty card transactions (10,000 cards, 60
//! days), side by side with DuckDB computing the same windows with SQL over
//! the same Parquet file, in the same run:
//! - backfill of the events into tiles, end to end (a `skewless` process);
//! - `dataset` for a 100,000-row spine x 12 window features, against
//!   DuckDB's query of the same windows (its time includes reading the
//!   Parquet files, as ours does); and for 12 short windows (count, sum,
//!   mean, max over 1h, 1d, 7d), DuckDB's fastest form;
//! - online: 1 card x 12 features over HTTP at 1, 4 and 16 connections;
//! - a push of 1 event, and a read right after it;
//! - store size per million events;
//! - a user-defined function (the `approx_median` component, 2 windows):
//!   backfill and `dataset`, next to the built-ins;
//! - list windows (`last_n(5)` x 3, and the example's `card_recent`)
//!   against counts of the same inputs and windows: backfill.
//!
//! Run: cargo bench --bench aggregations   (needs `pip install duckdb`;
//! BENCH_EVENTS=1000000, BENCH_SPINE_ROWS=100000, BENCH_RUNS=3, BENCH_SECS=3)
//!
//! The scale point, `BENCH_SCALE=1 cargo bench --bench aggregations`: the
//! same backfill and 100,000-row `dataset` at 1M events over 10k cards and
//! at 10M over 100k cards, side by side, with each process's peak RSS and
//! the store's bytes per event (the cost should follow the work, not the
//! store).

use skewless_testkit as kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use skewless_runtime::samples;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Runs `sql` in DuckDB (2 threads) with the spine and events files for
/// its `?`s (spine first, then events): (rows, the query's time).
const DUCKDB_RUN: &str = r#"
import sys, time, duckdb
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("SET enable_progress_bar = false")
sql = sys.argv[3]
params = [sys.argv[1]] + [sys.argv[2]] * (sql.count("?") - 1)
started = time.perf_counter()
rows = con.execute(sql, params).fetchall()
print(len(rows), time.perf_counter() - started)
"#;

/// The same 12 windows as `card_activity`, in DuckDB SQL: events with
/// `t - W <= event_time < t` per spine row.
const CARD_ACTIVITY_SQL: &str = r#"
WITH s AS (SELECT row_number() OVER () AS r, card_id, event_timestamp AS t FROM read_parquet(?)),
e AS (SELECT card_id, event_timestamp AS et, amount, merchant FROM read_parquet(?))
SELECT s.r,
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 10 MINUTE),
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR),
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY),
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 30 DAY),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 10 MINUTE), 0),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR), 0),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY), 0),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 30 DAY), 0),
  avg(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 7 DAY),
  stddev_samp(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 7 DAY),
  approx_count_distinct(e.merchant) FILTER (WHERE e.et >= s.t - INTERVAL 30 DAY),
  (SELECT min(f.event_timestamp) FROM read_parquet(?) f WHERE f.card_id = s.card_id AND f.event_timestamp < s.t)
FROM s LEFT JOIN e ON e.card_id = s.card_id AND e.et < s.t AND e.et >= s.t - INTERVAL 30 DAY
GROUP BY s.r, s.card_id, s.t
"#;

/// A second set of 12 windows, where DuckDB is at its best: count, sum,
/// mean and max over 1 hour, 1 day and 7 days, as one range join on the
/// card and `[t - 7d, t)` with `FILTER`ed aggregates.
const SHORT_WINDOWS_VIEW: &str = r#"
[views.card_short_windows]
kind = "aggregation"
entities = ["card"]
source = "transactions_push"
inputs = { amount = "float64" }
aggregations = [
  { name = "count_1h", function = "count", window = "1h" },
  { name = "count_1d", function = "count", window = "1d" },
  { name = "count_7d", function = "count", window = "7d" },
  { name = "sum_1h", function = "sum", input = "amount", window = "1h" },
  { name = "sum_1d", function = "sum", input = "amount", window = "1d" },
  { name = "sum_7d", function = "sum", input = "amount", window = "7d" },
  { name = "mean_1h", function = "mean", input = "amount", window = "1h" },
  { name = "mean_1d", function = "mean", input = "amount", window = "1d" },
  { name = "mean_7d", function = "mean", input = "amount", window = "7d" },
  { name = "max_1h", function = "max", input = "amount", window = "1h" },
  { name = "max_1d", function = "max", input = "amount", window = "1d" },
  { name = "max_7d", function = "max", input = "amount", window = "7d" },
]
"#;

/// Three `last_n` windows and three counts of the same inputs over the
/// same windows: the list functions' backfill against the cheapest state.
/// (The example's `card_recent` mixes the three list functions.)
const LIST_WINDOWS_VIEWS: &str = r#"
[views.card_counts]
kind = "aggregation"
entities = ["card"]
source = "transactions_push"
inputs = { amount = "float64", merchant = "utf8", merchant_category = "utf8" }
aggregations = [
  { name = "amounts_7d", function = "count", input = "amount", window = "7d" },
  { name = "merchants_30d", function = "count", input = "merchant", window = "30d" },
  { name = "categories_30d", function = "count", input = "merchant_category", window = "30d" },
]

[views.card_last_n]
kind = "aggregation"
entities = ["card"]
source = "transactions_push"
inputs = { amount = "float64", merchant = "utf8", merchant_category = "utf8" }
aggregations = [
  { name = "amounts_7d", function = "last_n(5)", input = "amount", window = "7d" },
  { name = "merchants_30d", function = "last_n(5)", input = "merchant", window = "30d" },
  { name = "categories_30d", function = "last_n(5)", input = "merchant_category", window = "30d" },
]
"#;

/// [`SHORT_WINDOWS_VIEW`] in DuckDB SQL.
const SHORT_WINDOWS_SQL: &str = r#"
WITH s AS (SELECT row_number() OVER () AS r, card_id, event_timestamp AS t FROM read_parquet(?)),
e AS (SELECT card_id, event_timestamp AS et, amount FROM read_parquet(?))
SELECT s.r,
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR),
  count(e.et) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY),
  count(e.et),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR), 0),
  coalesce(sum(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY), 0),
  coalesce(sum(e.amount), 0),
  avg(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR),
  avg(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY),
  avg(e.amount),
  max(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 HOUR),
  max(e.amount) FILTER (WHERE e.et >= s.t - INTERVAL 1 DAY),
  max(e.amount)
FROM s LEFT JOIN e ON e.card_id = s.card_id AND e.et < s.t AND e.et >= s.t - INTERVAL 7 DAY
GROUP BY s.r
"#;

fn duckdb(sql: &str, spine: &std::path::Path, events: &std::path::Path) -> Option<(usize, Duration)> {
    let out = std::process::Command::new("python3")
        .args(["-c", DUCKDB_RUN, spine.to_str().unwrap(), events.to_str().unwrap(), sql])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "duckdb: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.split_whitespace();
    let rows = parts.next()?.parse().ok()?;
    let secs: f64 = parts.next()?.parse().ok()?;
    Some((rows, Duration::from_secs_f64(secs)))
}

/// Closed-loop reads of one card from `connections` threads for `secs`:
/// (requests/s, p50, p99) in microseconds.
fn online(base: &str, connections: usize, secs: u64, cards: usize) -> (f64, f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let base = base.to_string();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let mut latencies = Vec::new();
                let mut next = kit::split_mix(c as u64);
                while Instant::now() < deadline {
                    let card = 1 + next(cards as u64);
                    let body =
                        format!(r#"{{"features": ["card_activity"], "entities": {{"card_id": ["card-{card:05}"]}}}}"#);
                    let started = Instant::now();
                    let mut response = agent.post(&format!("{base}/get-online-features")).send(&body).unwrap();
                    response.body_mut().read_to_string().unwrap();
                    latencies.push(started.elapsed().as_micros() as u64);
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_unstable();
    let at = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64;
    (all.len() as f64 / secs as f64, at(0.5), at(0.99))
}

/// A spine of `rows` random (card, instant) pairs over the last 30 days
/// before `end`, written to `spine.parquet` in `repo`.
fn write_spine(repo: &kit::TempRepo, cards: usize, rows: usize, end: i64) -> std::path::PathBuf {
    let mut next = kit::split_mix(3);
    let day = 86_400_000_000u64;
    let (spine_cards, times): (Vec<String>, Vec<i64>) = (0..rows)
        .map(|_| {
            (
                format!("card-{:05}", 1 + next(cards as u64)),
                end - next(30 * day) as i64,
            )
        })
        .unzip();
    let spine = RecordBatch::try_from_iter([
        ("card_id", Arc::new(StringArray::from(spine_cards)) as ArrayRef),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")) as ArrayRef,
        ),
    ])
    .unwrap();
    let path = repo.path().join("spine.parquet");
    samples::write_parquet(&path, &spine).unwrap();
    path
}

/// Runs `skewless` in `repo` under `/usr/bin/time`: (wall time, peak RSS
/// in MB if `time` is there).
fn timed(repo: &kit::TempRepo, args: &[&str]) -> (Duration, Option<f64>) {
    let gnu_time = std::path::Path::new("/usr/bin/time").exists();
    let mut command = if gnu_time {
        let mut c = std::process::Command::new("/usr/bin/time");
        c.args(["-f", "peak-rss-kb %M"]).arg(kit::skewless_bin());
        c
    } else {
        std::process::Command::new(kit::skewless_bin())
    };
    command.args(args).arg("--repo").arg(repo.path());
    let started = Instant::now();
    let out = command.output().unwrap();
    let elapsed = started.elapsed();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "skewless {args:?}: {said}");
    let rss = said
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb "))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map(|kb| kb / 1e3);
    (elapsed, rss)
}

/// Backfill and a 100,000-row `dataset` at 1M events / 10k cards and 10M
/// / 100k cards, in one run.
fn scale_point(spine_rows: usize) {
    let end = skewless_runtime::time::now_micros();
    let mut rows = Vec::new();
    for (events, cards) in [(1_000_000usize, 10_000usize), (10_000_000, 100_000)] {
        let repo = kit::TempRepo::new("fraud");
        let data = repo.path().join("data/transactions.parquet");
        samples::write_parquet(&data, &samples::card_transactions(cards, events, 60, end, 7)).unwrap();
        repo.ok(&["apply"]);
        let (backfill, backfill_rss) = timed(&repo, &["backfill", "--view", "card_activity"]);
        let size = std::fs::metadata(repo.store()).unwrap().len() as f64;
        let spine_path = write_spine(&repo, cards, spine_rows, end);
        let out = repo.path().join("train.parquet");
        let (dataset, dataset_rss) = timed(&repo, &kit::dataset_args(&spine_path, "card_activity", &out));
        let mb = |rss: Option<f64>| rss.map_or("n/a".to_string(), |r| format!("{r:.0} MB"));
        println!(
            "{events} events / {cards} cards: backfill {:.2} s ({:.0} events/s, peak {}); store {:.1} bytes/event; \
             dataset {spine_rows} rows {:.2} s (peak {})",
            backfill.as_secs_f64(),
            events as f64 / backfill.as_secs_f64(),
            mb(backfill_rss),
            size / events as f64,
            dataset.as_secs_f64(),
            mb(dataset_rss)
        );
        rows.push((
            events as f64 / backfill.as_secs_f64(),
            size / events as f64,
            dataset.as_secs_f64(),
        ));
    }
    let (small, large) = (rows[0], rows[1]);
    println!(
        "10M against 1M: backfill rate {:.2}x (target at least 0.8x), bytes per event {:.2}x (target at most 1x), \
         dataset time {:.2}x (target at most 1.5x)",
        large.0 / small.0,
        large.1 / small.1,
        large.2 / small.2
    );
}

fn main() {
    if env("BENCH_SCALE", 0) == 1 {
        return scale_point(env("BENCH_SPINE_ROWS", 100_000) as usize);
    }
    let events = env("BENCH_EVENTS", 1_000_000) as usize;
    let spine_rows = env("BENCH_SPINE_ROWS", 100_000) as usize;
    let runs = env("BENCH_RUNS", 3) as usize;
    let secs = env("BENCH_SECS", 3);
    let cards = 10_000;
    let end = skewless_runtime::time::now_micros();
    let repo = kit::TempRepo::new("fraud");
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap() + SHORT_WINDOWS_VIEW + LIST_WINDOWS_VIEWS;
    std::fs::write(&config, text).unwrap();
    let data = repo.path().join("data/transactions.parquet");
    samples::write_parquet(&data, &samples::card_transactions(cards, events, 60, end, 7)).unwrap();
    repo.ok(&["apply"]);

    // Backfill: a fresh store per run.
    let mut backfills = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(repo.store());
        repo.ok(&["apply"]);
        let started = Instant::now();
        repo.ok(&["backfill", "--view", "card_activity"]);
        backfills.push(started.elapsed());
    }
    let backfill = median(backfills);
    let size = std::fs::metadata(repo.store()).unwrap().len();
    println!(
        "backfill {events} events into tiles: {:.2} s ({:.0} events/s); store {:.1} MB ({:.1} MB per million events)",
        backfill.as_secs_f64(),
        events as f64 / backfill.as_secs_f64(),
        size as f64 / 1e6,
        size as f64 / 1e6 / (events as f64 / 1e6)
    );

    // List windows against counts of the same inputs and windows, each run
    // backfilling one after the other into fresh stores (the machine's drift
    // reaches both alike).
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..runs {
        for (i, view) in ["card_counts", "card_last_n", "card_recent"].iter().enumerate() {
            let _ = std::fs::remove_file(repo.store());
            repo.ok(&["apply"]);
            let started = Instant::now();
            repo.ok(&["backfill", "--view", view]);
            times[i].push(started.elapsed());
        }
    }
    let [counts, last_n, recent] = times.map(median);
    println!(
        "backfill {events} events, 3 windows: count {:.2} s, last_n(5) {:.2} s ({:.2}x count), \
         card_recent (last_n, last_distinct_n, most_frequent_n) {:.2} s ({:.2}x count)",
        counts.as_secs_f64(),
        last_n.as_secs_f64(),
        last_n.as_secs_f64() / counts.as_secs_f64(),
        recent.as_secs_f64(),
        recent.as_secs_f64() / counts.as_secs_f64()
    );
    let _ = std::fs::remove_file(repo.store());
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_activity"]);

    // Dataset: random cards and instants over the last 30 days; the bench's
    // 12 windows, then 12 short ones in DuckDB's fastest form.
    repo.ok(&["backfill", "--view", "card_short_windows"]);
    let spine_path = write_spine(&repo, cards, spine_rows, end);
    let out = repo.path().join("train.parquet");
    for (view, sql) in [
        ("card_activity", CARD_ACTIVITY_SQL),
        ("card_short_windows", SHORT_WINDOWS_SQL),
    ] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let started = Instant::now();
            repo.ok(&kit::dataset_args(&spine_path, view, &out));
            ours.push(started.elapsed());
            if let Some((rows, elapsed)) = duckdb(sql, &spine_path, &data) {
                assert_eq!(rows, spine_rows);
                theirs.push(elapsed);
            }
        }
        let ours = median(ours);
        match theirs.is_empty() {
            true => println!(
                "dataset {spine_rows} rows x 12 windows of {view}: {:.2} s (DuckDB not run: pip install duckdb)",
                ours.as_secs_f64()
            ),
            false => {
                let theirs = median(theirs);
                println!(
                    "dataset {spine_rows} rows x 12 windows of {view}: skewless {:.2} s (process, Parquet in and out), \
                     DuckDB {:.2} s (query): {:.2}x",
                    ours.as_secs_f64(),
                    theirs.as_secs_f64(),
                    theirs.as_secs_f64() / ours.as_secs_f64()
                );
            }
        }
    }

    // A user-defined function (the approx_median component, 2 windows):
    // what the Wasm calls cost next to the built-ins above.
    let started = Instant::now();
    repo.ok(&["backfill", "--view", "card_amount_median"]);
    let user_backfill = started.elapsed();
    let started = Instant::now();
    repo.ok(&kit::dataset_args(&spine_path, "card_amount_median", &out));
    let user_dataset = started.elapsed();
    println!(
        "user-defined approx_median (Wasm), 2 windows: backfill {events} events {:.2} s ({:.0} events/s); dataset {spine_rows} rows {:.2} s",
        user_backfill.as_secs_f64(),
        events as f64 / user_backfill.as_secs_f64(),
        user_dataset.as_secs_f64()
    );

    // Online and push, through a real socket.
    let server = repo.serve(&[]);
    for connections in [1, 4, 16] {
        let (rps, p50, p99) = online(&server.base, connections, secs, cards);
        println!(
            "online 1 card x 12 windows, {connections:>2} connections: {rps:.0} requests/s, p50 {p50:.0} us, p99 {p99:.0} us"
        );
    }
    let (mut pushes, mut reads) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let time = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros() - 1_000_000);
        let body = format!(
            r#"{{"push_source_name": "transactions_push", "df": {{"card_id": ["card-00042"], "event_timestamp": ["{time}"],
               "amount": [{i}.5], "merchant": ["m-00001"], "merchant_category": ["fuel"]}}}}"#
        );
        let started = Instant::now();
        let (status, _) = server.post("/push", &body);
        assert_eq!(status, 200);
        pushes.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = server.post(
            "/get-online-features",
            r#"{"features": ["card_activity"], "entities": {"card_id": ["card-00042"]}}"#,
        );
        assert_eq!(status, 200);
        reads.push(started.elapsed());
    }
    server.stop();
    println!(
        "push of 1 event (durable): median {:.2} ms; read right after it: median {:.2} ms",
        median(pushes).as_secs_f64() * 1e3,
        median(reads).as_secs_f64() * 1e3
    );
}
