//! Observing features in production: statistics (against a direct
//! computation, the same whether rows came by backfill or by pushes in any
//! order), drift (a shifted copy crosses the thresholds, a resample does
//! not), served-value logs, and the skew monitor (no mismatch under load, a
//! mismatch for a value corrupted on disk).

use skewless_testkit as kit;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use kit::*;
use serde_json::Value;
use skewless_runtime::samples;
use skewless_runtime::time::format_timestamp;

const HOUR: i64 = 3_600_000_000;

/// Source rows of driver_stats: (driver, event time, conv_rate, acc_rate, trips).
type Row = (i64, i64, Option<f32>, f32, i64);

/// `count` rows over `drivers` drivers, an hour apart, back from
/// `FIXED_END`; a tenth of conv_rate null, some trips negative.
fn source_rows(seed: u64, count: i64, drivers: i64) -> Vec<Row> {
    let mut random = split_mix(seed);
    (0..count)
        .map(|i| {
            let conv = (random(10) != 0).then(|| random(1_000_000) as f32 / 1e6);
            (
                1000 + i % drivers,
                FIXED_END - (i / drivers + 1) * HOUR,
                conv,
                random(1000) as f32 / 1e3,
                random(5000) as i64 - 100,
            )
        })
        .collect()
}

fn write_source(repo: &TempRepo, rows: &[Row]) {
    let times = |f: &dyn Fn(&Row) -> i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC"))
    };
    let batch = RecordBatch::try_from_iter([
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("event_timestamp", times(&|r| r.1)),
        ("created", times(&|r| r.1)),
        (
            "conv_rate",
            Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.2))) as ArrayRef,
        ),
        (
            "acc_rate",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.3))) as ArrayRef,
        ),
        (
            "avg_daily_trips",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))) as ArrayRef,
        ),
    ])
    .unwrap();
    samples::write_parquet(&repo.path().join("data/driver_stats.parquet"), &batch).unwrap();
}

fn stats_json(repo: &TempRepo, target: &str) -> Vec<Value> {
    serde_json::from_str(&repo.ok(&["stats", target, "--json"])).unwrap()
}

/// The value of rank floor(q (n - 1)) of sorted values, as the sketch defines it.
/// A view's kept statistics as stored, but for the commit they are as of.
fn kept_statistics(repo: &TempRepo) -> String {
    let store = skewless_runtime::Store::open_existing(&repo.store()).unwrap();
    let view = store.views().unwrap().remove("driver_hourly_stats").unwrap();
    let mut kept = store.statistics(&view).unwrap().expect("statistics are kept");
    kept.commit = None;
    kept.to_json()
}

fn rank(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

#[test]
fn statistics_match_a_direct_computation_whether_rows_were_backfilled_or_pushed_in_any_order() {
    let mut random = split_mix(16);
    let end = FIXED_END;
    let rows = source_rows(16, 1_500, 50);

    let backfilled = TempRepo::new("driver_stats");
    write_source(&backfilled, &rows);
    backfilled.ok(&["apply"]);
    backfilled.ok(&["backfill"]);
    let by_backfill = stats_json(&backfilled, "driver_hourly_stats");

    // conv_rate, computed plainly.
    let conv: Vec<f64> = rows.iter().filter_map(|r| r.2).map(f64::from).collect();
    let mut sorted = conv.clone();
    sorted.sort_by(f64::total_cmp);
    let n = conv.len() as f64;
    let mean = conv.iter().sum::<f64>() / n;
    let stddev = (conv.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    let s = &by_backfill[0];
    assert_eq!(s["name"], "conv_rate");
    assert_eq!(s["count"], 1_500);
    assert_eq!(s["nulls"].as_u64().unwrap() as usize, 1_500 - conv.len());
    assert_eq!(s["min"].as_f64().unwrap(), sorted[0]);
    assert_eq!(s["max"].as_f64().unwrap(), *sorted.last().unwrap());
    assert!((s["mean"].as_f64().unwrap() - mean).abs() <= 1e-12 * mean.abs(), "{s}");
    assert!((s["stddev"].as_f64().unwrap() - stddev).abs() <= 1e-9 * stddev, "{s}");
    for pair in s["quantiles"].as_array().unwrap() {
        let (q, got) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
        let exact = rank(&sorted, q);
        assert!(
            (got - exact).abs() <= 0.01 * exact.abs(),
            "q {q}: {got} against {exact}"
        );
    }
    let distinct = {
        let mut bits: Vec<u32> = rows.iter().filter_map(|r| r.2).map(f32::to_bits).collect();
        bits.sort_unstable();
        bits.dedup();
        bits.len() as f64
    };
    assert!(
        (s["distinct"].as_f64().unwrap() - distinct).abs() <= 0.03 * distinct,
        "{s} {distinct}"
    );
    let histogram: u64 = s["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[2].as_u64().unwrap())
        .sum();
    assert_eq!(histogram as usize, conv.len());
    // avg_daily_trips: integers, some negative.
    let trips = &by_backfill[2];
    assert_eq!(
        trips["min"].as_f64().unwrap(),
        rows.iter().map(|r| r.4).min().unwrap() as f64
    );
    let trips_mean = rows.iter().map(|r| r.4 as f64).sum::<f64>() / 1_500.0;
    assert!((trips["mean"].as_f64().unwrap() - trips_mean).abs() < 1e-9, "{trips}");

    // A second backfill of the same rows changes nothing.
    backfilled.ok(&["backfill"]);
    assert_eq!(stats_json(&backfilled, "driver_hourly_stats"), by_backfill);

    // The same rows pushed, shuffled, in batches of 64: the same statistics, to the bit.
    let pushed = TempRepo::new("driver_stats");
    write_source(&pushed, &rows);
    pushed.ok(&["apply"]);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, random(i as u64 + 1) as usize);
    }
    let server = pushed.serve(&["--log-sample-rate", "0"]);
    for chunk in order.chunks(64) {
        let pick = |f: &dyn Fn(&Row) -> String| chunk.iter().map(|&i| f(&rows[i])).collect::<Vec<_>>().join(",");
        let body = format!(
            r#"{{"push_source_name": "driver_stats_push_source", "df": {{"driver_id": [{}], "event_timestamp": [{}],
               "created": [{}], "conv_rate": [{}], "acc_rate": [{}], "avg_daily_trips": [{}]}},
               "to": "online_and_offline"}}"#,
            pick(&|r| r.0.to_string()),
            pick(&|r| format!("\"{}\"", format_timestamp(r.1))),
            pick(&|r| format!("\"{}\"", format_timestamp(r.1))),
            pick(&|r| r.2.map_or("null".into(), |v| format!("{v:?}"))),
            pick(&|r| format!("{:?}", r.3)),
            pick(&|r| r.4.to_string()),
        );
        let (status, answer) = server.post("/push", &body);
        assert_eq!(status, 200, "{answer}");
    }
    drop(server);
    assert_eq!(stats_json(&pushed, "driver_hourly_stats"), by_backfill);

    // Recomputed from the stored history, the kept statistics come out the
    // same bits, after a backfill and after shuffled pushes alike (the
    // commit they are as of aside).
    for repo in [&backfilled, &pushed] {
        let kept = kept_statistics(repo);
        let printed = repo.run(&["stats", "--rebuild"]);
        let said = String::from_utf8_lossy(&printed.stderr);
        assert!(printed.status.success(), "{said}");
        assert!(
            said.contains("Rebuilt statistics of view `driver_hourly_stats`: 1500 stored rows"),
            "{said}"
        );
        assert_eq!(
            kept_statistics(repo),
            kept,
            "rebuilt statistics differ from the kept ones"
        );
    }
    let refused = pushed.fails(&["stats", "--rebuild", "transformed_conv_rate"]);
    assert!(refused.contains("on-demand"), "{refused}");

    // A time range reads the stored rows: the newest 10 hours, 500 rows.
    let recent = pushed.ok(&[
        "stats",
        "driver_hourly_stats:avg_daily_trips",
        "--from",
        &format_timestamp(end - 10 * HOUR),
        "--json",
    ]);
    let recent: Vec<Value> = serde_json::from_str(&recent).unwrap();
    assert_eq!(recent[0]["count"], 500);
    let printed = pushed.ok(&["stats", "driver_hourly_stats:conv_rate"]);
    assert!(
        printed.contains("quantiles (within 1%)") && printed.contains("p50="),
        "{printed}"
    );
    let refused = pushed.fails(&["stats", "driver_hourly_stats:nope"]);
    assert!(
        refused.contains("no feature `nope`") && refused.contains("conv_rate"),
        "{refused}"
    );
    let refused = pushed.fails(&["stats", "transformed_conv_rate"]);
    assert!(refused.contains("on-demand"), "{refused}");
}

/// driver_stats with data ending an hour ago, applied and backfilled.
fn backfilled(example: &str) -> TempRepo {
    let repo = TempRepo::with_data(example, next_hour() - HOUR);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

/// A training set of `rows` spine rows spread over the data's 30 days.
fn training_set(repo: &TempRepo, rows: usize) -> std::path::PathBuf {
    let mut random = split_mix(7);
    let end = next_hour() - HOUR;
    let drivers: Vec<i64> = (0..rows).map(|_| 1001 + random(1000) as i64).collect();
    let times: Vec<i64> = (0..rows)
        .map(|_| end - HOUR - random(28 * 24 * 3600) as i64 * 1_000_000)
        .collect();
    let spine = RecordBatch::try_from_iter([
        ("driver_id", Arc::new(Int64Array::from(drivers)) as ArrayRef),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")) as ArrayRef,
        ),
    ])
    .unwrap();
    samples::write_parquet(&repo.path().join("spine.parquet"), &spine).unwrap();
    let out = repo.path().join("train.parquet");
    repo.ok(&kit::dataset_args(
        &repo.path().join("spine.parquet"),
        "driver_hourly_stats",
        &out,
    ));
    out
}

fn drift(repo: &TempRepo, args: &[&str]) -> (i32, String) {
    let out = repo.run(&[&["drift"], args].concat());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn drift_flags_a_shifted_copy_and_not_a_resample_and_reads_the_served_value_logs() {
    let repo = backfilled("driver_stats");
    let train = training_set(&repo, 3_000);
    // The training set carries its statistics beside its lineage.
    let file = std::fs::File::open(&train).unwrap();
    let metadata = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let stats = parquet::file::reader::FileReader::metadata(&metadata)
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .find(|kv| kv.key == "skewless.stats")
        .and_then(|kv| kv.value.clone())
        .expect("skewless.stats in the training set");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["rows"], 3_000);
    assert_eq!(stats["features"]["conv_rate"]["count"], 3_000);

    // The stored values against a resample of them: no drift.
    let since_start = format_timestamp(next_hour() - 40 * 24 * HOUR);
    let (code, text) = drift(&repo, &["--baseline", train.to_str().unwrap(), "--from", &since_start]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("driver_hourly_stats:conv_rate") && !text.contains("YES"),
        "{text}"
    );

    // Served values, logged by the server: no drift either.
    let server = repo.serve(&["--log-sample-rate", "1", "--skew-sample-rate", "0"]);
    for driver in 1001..=1400 {
        let body = format!(r#"{{"features": ["driver_hourly_stats"], "entities": {{"driver_id": [{driver}]}}}}"#);
        assert_eq!(server.post("/get-online-features", &body).0, 200);
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    let files: Vec<_> = std::fs::read_dir(repo.path().join("logs/served"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let logged = read_parquet(&files[0]);
    let names: Vec<String> = logged.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(
        names,
        [
            "request_id",
            "now",
            "row",
            "entity",
            "view",
            "feature",
            "status",
            "value",
            "value_number",
            "event_timestamp",
            "digest"
        ]
    );
    assert_eq!(logged.num_rows(), 400 * 3);
    let entity = logged.column_by_name("entity").unwrap().as_string::<i32>();
    assert_eq!(entity.value(0), "driver_id=1001");
    let (code, text) = drift(&repo, &["--baseline", train.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("served values logged") && text.contains("   400 "),
        "{text}"
    );
    // The server exports the latest figures.
    let server = repo.serve(&["--log-sample-rate", "0"]);
    let metrics = server.get("/metrics").1;
    assert!(
        metrics.contains(r#"skewless_drift_psi{view="driver_hourly_stats",feature="conv_rate"}"#),
        "{metrics}"
    );
    let freshness = metrics
        .lines()
        .find(|l| l.starts_with(r#"skewless_view_freshness_seconds{view="driver_hourly_stats"}"#))
        .expect("freshness of driver_hourly_stats");
    let age: f64 = freshness.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((0.0..3.0 * 3_600.0).contains(&age), "{freshness}");
    drop(server);

    // A shifted copy of the data: conv_rate up by 0.3, twice the trips.
    let shifted = TempRepo::new("driver_stats");
    let data = read_parquet(&repo.path().join("data/driver_stats.parquet"));
    let conv = data.column_by_name("conv_rate").unwrap().as_primitive::<Float32Type>();
    let trips = data
        .column_by_name("avg_daily_trips")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut columns: Vec<ArrayRef> = data.columns().to_vec();
    let index = |name: &str| data.schema().index_of(name).unwrap();
    columns[index("conv_rate")] = Arc::new(Float32Array::from_iter_values(conv.values().iter().map(|v| v + 0.3)));
    columns[index("avg_daily_trips")] = Arc::new(Int64Array::from_iter_values(trips.values().iter().map(|v| v * 2)));
    let data = RecordBatch::try_new(data.schema(), columns).unwrap();
    samples::write_parquet(&shifted.path().join("data/driver_stats.parquet"), &data).unwrap();
    shifted.ok(&["apply"]);
    shifted.ok(&["backfill"]);
    let (code, text) = drift(
        &shifted,
        &["--baseline", train.to_str().unwrap(), "--from", &since_start],
    );
    assert_eq!(code, 2, "{text}");
    let line = |feature: &str| {
        text.lines()
            .find(|l| l.contains(feature))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("conv_rate").contains("YES: PSI"), "{text}");
    assert!(line("avg_daily_trips").contains("YES"), "{text}");
    assert!(!line("acc_rate").contains("YES"), "{text}");

    // A threshold raised for one feature in the repo: that feature passes.
    let config = shifted.path().join("skewless.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "\n[monitoring.drift.features.\"driver_hourly_stats:avg_daily_trips\"]\npsi = 100.0\nks = 1.0\n\n\
         [monitoring.drift.features.\"driver_hourly_stats:conv_rate\"]\npsi = 100.0\nks = 1.0\n",
    );
    std::fs::write(&config, toml).unwrap();
    let (code, text) = drift(
        &shifted,
        &["--baseline", train.to_str().unwrap(), "--from", &since_start],
    );
    assert_eq!(code, 0, "{text}");

    // Bad input: a baseline that is not Parquet, a rate out of range.
    std::fs::write(shifted.path().join("bad.parquet"), "not parquet").unwrap();
    let (code, text) = drift(
        &shifted,
        &["--baseline", shifted.path().join("bad.parquet").to_str().unwrap()],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("bad.parquet") && text.contains("not a Parquet training set"),
        "{text}"
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "\n[monitoring]\nlog_sample_rate = 2\n",
    )
    .unwrap();
    let refused = shifted.fails(&["serve"]);
    assert!(
        refused.contains("monitoring.log_sample_rate") && refused.contains("between 0 and 1"),
        "{refused}"
    );
}

/// Sum of every series of a counter in the Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn wait_for(server: &ServerProcess, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = server.get("/metrics").1;
        if ok(&metrics) {
            return metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}:\n{metrics}\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_skew_monitor_counts_no_mismatch_under_load_and_one_for_a_value_corrupted_on_disk() {
    for example in ["driver_stats", "fraud"] {
        let repo = backfilled(example);
        let server = repo.serve(&["--skew-sample-rate", "1", "--log-sample-rate", "0.1"]);
        let bodies: Vec<String> = if example == "driver_stats" {
            (1001..=1300)
                .map(|d| {
                    format!(r#"{{"feature_service": "driver_activity", "entities": {{"driver_id": [{d}, {}], "val_to_add": [1, 2]}}}}"#, d + 300)
                })
                .collect()
        } else {
            let data = read_parquet(&repo.path().join("data/transactions.parquet"));
            let cards = data.column_by_name("card_id").unwrap().as_string::<i32>();
            (0..300)
                .map(|i| {
                    format!(
                        r#"{{"features": ["transaction_features", "card_activity", "amount_vs_usual", "card_amount_median"],
                            "entities": {{"card_id": ["{}"], "amount": [{}.5]}}}}"#,
                        cards.value(i * 7 % cards.len()),
                        i
                    )
                })
                .collect()
        };
        // Four readers, and pushes beside them (driver_stats) of values as of now.
        std::thread::scope(|s| {
            for part in bodies.chunks(bodies.len() / 4) {
                let server = &server;
                s.spawn(move || {
                    for body in part {
                        let (status, text) = server.post_text("/get-online-features", body);
                        assert_eq!(status, 200, "{text}");
                    }
                });
            }
            if example == "driver_stats" {
                let server = &server;
                s.spawn(move || {
                    for i in 0..100 {
                        let at = format_timestamp(skewless_runtime::time::now_micros() - 1_000_000);
                        let body = format!(
                            r#"{{"push_source_name": "driver_stats_push_source", "df": {{"driver_id": [{}], "event_timestamp": ["{at}"],
                               "created": ["{at}"], "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [{i}]}}}}"#,
                            1001 + i * 3
                        );
                        assert_eq!(server.post("/push", &body).0, 200);
                    }
                });
            }
        });
        let metrics = wait_for(&server, "the skew monitor checks answers", |m| {
            counter(m, "skewless_skew_checked_total") >= 100 * 3
        });
        assert_eq!(
            counter(&metrics, "skewless_skew_mismatches_total"),
            0,
            "{example}: {}",
            server.log()
        );
        assert!(metrics.contains("skewless_skew_mismatches_total{view="), "{metrics}");
        if example == "fraud" {
            assert!(
                metrics.contains(r#"skewless_skew_checked_total{view="card_activity"}"#),
                "{metrics}"
            );
            continue;
        }
        drop(server);

        // Flip a bit of driver 1001's served conv_rate in the store file (as the verify test does).
        flip_served_conv_rate(&repo, 1001);
        let server = repo.serve(&["--skew-sample-rate", "1"]);
        for driver in [1002, 1001, 1003] {
            let body = format!(
                r#"{{"features": ["driver_hourly_stats:conv_rate"], "entities": {{"driver_id": [{driver}]}}}}"#
            );
            assert_eq!(server.post("/get-online-features", &body).0, 200);
        }
        let metrics = wait_for(&server, "a mismatch is counted", |m| {
            counter(m, "skewless_skew_checked_total") >= 3
        });
        assert!(
            metrics.contains(r#"skewless_skew_mismatches_total{view="driver_hourly_stats"} 1"#),
            "{metrics}"
        );
        // The warning reaches us through the server's stderr pipe, which a
        // reader thread drains: it may trail the counter by a moment.
        let warned = |log: &str| log.contains("skew") && log.contains("driver_id=1001") && log.contains("conv_rate");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !warned(&server.log()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let log = server.log();
        assert!(warned(&log), "{log}");
    }
}

/// A large write counts its statistics on a second thread while the
/// B-tree merge runs; a small one counts them inline. 40,000 rows in one
/// commit (threaded), in commits of 1,000 (inline), and recomputed from the
/// history: the same bits, three ways.
#[test]
fn statistics_are_the_same_bits_counted_on_a_second_thread_inline_or_rebuilt() {
    let rows = source_rows(27, 40_000, 100);
    let kept_after = |rows_per_commit: &str| {
        let repo = TempRepo::new("driver_stats");
        write_source(&repo, &rows);
        repo.ok(&["apply"]);
        repo.ok(&["backfill", "--rows-per-commit", rows_per_commit]);
        (kept_statistics(&repo), repo)
    };
    let (threaded, repo) = kept_after("1000000");
    let (inline, _) = kept_after("1000");
    assert!(threaded.contains("\"rows\":40000"), "{threaded}");
    assert_eq!(
        threaded, inline,
        "one commit (threaded) and commits of 1,000 (inline) differ"
    );
    repo.ok(&["stats", "--rebuild"]);
    assert_eq!(
        kept_statistics(&repo),
        threaded,
        "rebuilt statistics differ from the kept ones"
    );
}
