//! Soak: `skewless serve` under 16 connections of mixed reads and pushes for
//! 10 minutes (one push in ten; reads of 1 entity with the on-demand view),
//! reporting per minute the requests/s, p50 and p99 and errors, and the
//! server's resident memory and the store file's size at start and at each
//! minute (redb caches pages of a growing store). Halfway through, a
//! `skewless backup` runs beside the load. Run on demand, not in CI:
//!
//!   cargo bench --bench soak            (SOAK_SECS=600, SOAK_INTERVAL_SECS=60)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kit::load::{Load, Request, on_one_thread};
use skewless_testkit as kit;

/// Latencies (µs) and errors of one interval.
#[derive(Default)]
struct Interval {
    latencies: Vec<u32>,
    errors: usize,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let total = Duration::from_secs(env_secs("SOAK_SECS", 600));
    let interval = Duration::from_secs(env_secs("SOAK_INTERVAL_SECS", 60));
    let repo = kit::fresh_driver_repo();
    let server = repo.serve(&[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let pid = server.pid();
    let read = |driver: u64| {
        format!(
            r#"{{"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "transformed_conv_rate:conv_rate_plus_val1"], "entities": {{"driver_id": [{}], "val_to_add": [1000]}}}}"#,
            1001 + driver % 1000
        )
    };
    let push = |driver: u64, trips: u64| {
        let time = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros());
        format!(
            r#"{{"push_source_name": "driver_stats_push_source", "df": {{"driver_id": [{}], "event_timestamp": ["{time}"], "created": ["{time}"], "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [{trips}]}}, "to": "online_and_offline"}}"#,
            1001 + driver % 1000
        )
    };
    let intervals = (total.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
    let results: Vec<Mutex<Interval>> = (0..intervals).map(|_| Mutex::new(Interval::default())).collect();
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    eprintln!(
        "soak: {total:?} at 16 connections, 1 push in 10; server RSS at start {} MiB",
        rss_start / 1024
    );

    std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let next = move |connection: usize, n: u64| {
                let mut random = kit::split_mix((connection as u64 + 1) << 32 | n);
                if random(10) == 0 {
                    Request::post("/push", push(random(1000), n))
                } else {
                    Request::post("/get-online-features", read(random(1000)))
                }
            };
            for answer in on_one_thread(Load::new(&addr).closed(16, total, next)) {
                let at = answer.sent.saturating_duration_since(started);
                let slot = ((at.as_secs_f64() / interval.as_secs_f64()) as usize).min(intervals - 1);
                let mut result = results[slot].lock().unwrap();
                result.latencies.push(answer.latency.as_micros() as u32);
                result.errors += usize::from(!answer.is_success());
            }
        });

        // Halfway: a backup beside the load. Each interval: memory.
        let mut rss = Vec::new();
        let mut backup_done = false;
        for i in 1..=intervals {
            while started.elapsed() < interval * i as u32 {
                if !backup_done && started.elapsed() >= total / 2 {
                    backup_done = true;
                    let out = repo.path().join("soak-backup.redb");
                    let printed = repo.run(&["backup", "--out", out.to_str().unwrap()]);
                    let log = String::from_utf8_lossy(&printed.stderr);
                    eprintln!("  backup under load: {}", log.trim());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            rss.push((rss_kib(pid), std::fs::metadata(repo.store()).map_or(0, |m| m.len())));
        }
        load.join().unwrap();

        println!("| interval | requests/s | p50 ms | p99 ms | errors | server RSS MiB | store file MB |");
        println!("|---|---|---|---|---|---|---|");
        for (i, (result, (rss, store))) in results.iter().zip(&rss).enumerate() {
            let mut result = result.lock().unwrap();
            result.latencies.sort_unstable();
            let at = |q: f64| {
                let l = &result.latencies;
                l[((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1))] as f64 / 1e3
            };
            println!(
                "| {} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
                i + 1,
                result.latencies.len() as f64 / interval.as_secs_f64(),
                at(0.5),
                at(0.99),
                result.errors,
                *rss as f64 / 1024.0,
                *store as f64 / 1e6
            );
        }
        println!(
            "server RSS: {:.1} MiB at start, {:.1} MiB at the end",
            rss_start as f64 / 1024.0,
            rss.last().unwrap().0 as f64 / 1024.0
        );
    });
    server.stop();
}
