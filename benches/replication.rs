//! Replicated serving, measured (issue 29), against Debian's nats-server
//! and HAProxy on loopback, on the driver_stats store of 720,000 rows:
//!
//! - `bootstrap`: a new replica from a backup of the primary taken under
//!   no load, while 1,000 pushes land after it: backup, copy, then start
//!   to ready with every push replayed;
//! - `lag`: pushes to replica A in an open loop (BENCH_RATE, 1,000/s by
//!   default) for BENCH_SECS; the lag of each is from A's acknowledgement
//!   to replica B having applied it (B's /health polled in a tight loop);
//! - `push`: push throughput through JetStream (replica A) against a
//!   single node serving a copy of the same store, side by side, at 1, 4
//!   and 16 connections;
//! - `swap`: a store version swapped into replica A while 16 connections
//!   read and 4 push: failed requests, and how long pushes were held;
//! - `haproxy`: reads of one entity at 16 connections, straight to one
//!   replica, and through HAProxy (the shipped config) over two.
//!
//! Run: cargo bench --bench replication (BENCH_FILTER=substring of a
//! workload; BENCH_SECS=10; BENCH_RATE=1000). The load generator is this
//! process, on one thread (the test kit's `load`); on 2 cores the servers,
//! nats-server and HAProxy share the other.

use skewless_testkit as kit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kit::load::{Answer, Load, Request, on_one_thread, quantile};
use kit::services::{HaProxy, Nats, free_port};
use kit::{ServerProcess, TempRepo, next_hour};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn wanted(workload: &str) -> bool {
    std::env::var("BENCH_FILTER").map_or(true, |f| workload.contains(&f))
}

/// A push of one row: driver `driver`, `avg_daily_trips = trips`, newer
/// than the backfilled data; distinct (driver, trips) make distinct log
/// messages (the log de-duplicates equal bodies).
fn push_body(driver: i64, trips: i64) -> String {
    let time = skewless_runtime::time::format_timestamp(next_hour() + trips);
    format!(
        r#"{{"push_source_name": "driver_stats_push_source",
            "df": {{"driver_id": [{driver}], "event_timestamp": ["{time}"], "created": ["{time}"],
                   "conv_rate": [0.5], "acc_rate": [0.25], "avg_daily_trips": [{trips}]}}}}"#
    )
}

const READ: &str = r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#;

/// (applied sequence, stream sequence) from `/health`.
fn applied(server: &ServerProcess) -> Option<(u64, u64)> {
    let (status, text) = server.get("/health");
    let health: serde_json::Value = serde_json::from_str(&text).ok()?;
    let replication = &health["replication"];
    (status == 200).then(|| {
        (
            replication["applied_sequence"].as_u64().unwrap_or(0),
            replication["stream_sequence"].as_u64().unwrap_or(0),
        )
    })
}

fn wait_applied(server: &ServerProcess, sequence: u64) -> Duration {
    let started = Instant::now();
    while applied(server).is_none_or(|(a, _)| a < sequence) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "message {sequence} not applied"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

/// Closed-loop pushes of distinct rows at `connections` for `time`.
fn push_load(base: &str, connections: usize, time: Duration, salt: i64) -> Vec<Answer> {
    on_one_thread(Load::new(base).closed(connections, time, move |connection, n| {
        Request::post("/push", push_body(salt + connection as i64, n as i64))
    }))
}

fn summary(answers: &[Answer], time: Duration) -> String {
    let ok = answers.iter().filter(|a| a.is_success()).count();
    format!(
        "{:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        ok as f64 / time.as_secs_f64(),
        quantile(answers, 0.5).as_secs_f64() * 1e3,
        quantile(answers, 0.99).as_secs_f64() * 1e3,
        answers.len() - ok
    )
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test` runs benches once as tests: nothing to check here.
    }
    let secs = Duration::from_secs(env("BENCH_SECS", 10));
    let rate: f64 = env("BENCH_RATE", 1000.0);

    let started = Instant::now();
    let primary = TempRepo::with_data("driver_stats", next_hour());
    primary.ok(&["apply"]);
    primary.ok(&["backfill"]);
    println!("== replication (issue 29): 2 cores, nats-server and HAProxy from Debian, on loopback");
    println!(
        "primary: driver_stats, 720,000 rows, applied and backfilled in {:?}",
        started.elapsed()
    );
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let log = nats.url();
    let a = primary.serve(&["--log", &log]);
    wait_applied(&a, 0);
    let snapshots = tempfile::tempdir().unwrap();

    // Bootstrap: backup, 1,000 pushes after it, then a replica from it.
    let started = Instant::now();
    let backup = snapshots.path().join("b.redb");
    primary.ok(&["backup", "--out", backup.to_str().unwrap()]);
    let backed_up = started.elapsed();
    for n in 0..1_000 {
        assert_eq!(a.post("/push", &push_body(1_000_000 + n % 100, n)).0, 200);
    }
    let (_, stream_last) = applied(&a).unwrap();
    let started = Instant::now();
    let b_repo = primary.replica(&backup);
    let copied = started.elapsed();
    let b = b_repo.serve(&["--log", &log]);
    let caught_up = wait_applied(&b, stream_last) + copied;
    if wanted("bootstrap") {
        let size = std::fs::metadata(&backup).unwrap().len();
        println!(
            "bootstrap: backup of 720,000 rows ({:.0} MB) {backed_up:.2?}; copy and start to ready with \
             {stream_last} messages replayed {caught_up:.2?}; total {:.2?} (target 10 s)",
            size as f64 / 1e6,
            backed_up + caught_up
        );
    }

    if wanted("lag") {
        // B's applied sequence, polled in a tight loop: when each became visible.
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (stop, base) = (stop.clone(), b.base.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                let mut last = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut response) = agent.get(&format!("{base}/health")).call() else {
                        continue;
                    };
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let now = Instant::now();
                    let health: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(applied) = health["replication"]["applied_sequence"].as_u64()
                        && applied > last
                    {
                        seen.push((applied, now));
                        last = applied;
                    }
                }
                seen
            })
        };
        let load = Load::new(&a.base);
        let acks: Vec<(Answer, u64)> = on_one_thread(async {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let until = Instant::now() + secs;
            let mut pending = Vec::new();
            let mut n = 0i64;
            while Instant::now() < until {
                ticks.tick().await;
                let (load, request) = (load.clone(), Request::post("/push", push_body(2_000_000 + n % 1000, n)));
                n += 1;
                pending.push(tokio::spawn(async move {
                    let (answer, body) = load.send_reading(&request).await;
                    let answer_json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    (answer, answer_json["log_sequence"].as_u64().unwrap_or(0))
                }));
            }
            let mut all = Vec::new();
            for handle in pending {
                all.push(handle.await.unwrap());
            }
            all
        });
        let newest = acks.iter().map(|(_, s)| *s).max().unwrap_or(0);
        wait_applied(&b, newest);
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::SeqCst);
        let seen = poller.join().unwrap();
        let mut lags: Vec<Duration> = acks
            .iter()
            .filter(|(answer, sequence)| answer.is_success() && *sequence > 0)
            .map(|(answer, sequence)| {
                let acknowledged = answer.sent + answer.latency;
                let visible = seen[seen.partition_point(|(applied, _)| applied < sequence)].1;
                visible.saturating_duration_since(acknowledged)
            })
            .collect();
        lags.sort_unstable();
        let at = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).clamp(1, lags.len()) - 1];
        let answers: Vec<Answer> = acks.iter().map(|(a, _)| *a).collect();
        println!(
            "lag at {rate:.0} pushes/s for {secs:?}: {} pushes; acknowledged by A: {}; visible on B after the \
             acknowledgement: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 100 ms; B polled every ~{:.2} ms)",
            lags.len(),
            summary(&answers, secs),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            at(1.0).as_secs_f64() * 1e3,
            secs.as_secs_f64() * 1e3 / seen.len().max(1) as f64,
        );
    }

    if wanted("push") {
        let single_repo = primary.replica(&backup);
        let single = single_repo.serve(&[]);
        let time = secs / 2;
        for connections in [1, 4, 16] {
            let salt = 3_000_000 + 100 * connections as i64;
            let replicated = push_load(&a.base, connections, time, salt);
            let alone = push_load(&single.base, connections, time, salt);
            let rate = |answers: &[Answer]| answers.iter().filter(|a| a.is_success()).count() as f64;
            println!(
                "push, {connections:>2} connections: through JetStream {} | single node {} | ratio {:.2}x",
                summary(&replicated, time),
                summary(&alone, time),
                rate(&replicated) / rate(&alone)
            );
        }
    }

    if wanted("swap") {
        // A version built beside A's live store, swapped in while 16
        // connections read and 4 push.
        let out = primary.run(&["backfill", "--new-version", "bench"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let time = Duration::from_secs(3);
        let (answers, swap) = std::thread::scope(|scope| {
            let swap = scope.spawn(|| {
                std::thread::sleep(time / 3);
                a.post("/admin/swap", r#"{"version": "bench"}"#)
            });
            let pushes = scope.spawn(|| push_load(&a.base, 4, time, 5_000_000));
            let request = Request::post("/get-online-features", READ);
            let reads = on_one_thread(Load::new(&a.base).closed(16, time, move |_, _| request.clone()));
            (reads, (swap.join().unwrap(), pushes.join().unwrap()))
        });
        let ((status, answer), pushes) = swap;
        assert_eq!(status, 200, "{answer}");
        println!(
            "swap under load: took {:.1} ms, pushes held {:.1} ms, {} log messages replayed; reads {}; pushes {}",
            answer["elapsed_ms"].as_f64().unwrap(),
            answer["locked_ms"].as_f64().unwrap(),
            answer["replayed"],
            summary(&answers, time),
            summary(&pushes, time)
        );
    }

    if wanted("haproxy") {
        let proxy = HaProxy::start(&a, &b);
        std::thread::sleep(Duration::from_millis(800));
        for (label, base) in [
            ("one replica, direct", a.base.clone()),
            ("two replicas behind HAProxy", proxy.base.clone()),
        ] {
            let request = Request::post("/get-online-features", READ);
            let answers = on_one_thread(Load::new(&base).closed(16, secs, move |_, _| request.clone()));
            println!("reads, 16 connections, {label}: {}", summary(&answers, secs));
        }
    }
}
