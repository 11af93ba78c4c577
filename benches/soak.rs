//! Soak: `skewless serve` under 16 connections of mixed reads and pushes for
//! 10 minutes (one push in ten; reads of 1 entity with the on-demand view),
//! reporting per minute the requests/s, p50 and p99 and errors, and the
//! server's resident memory and the store file's size at start and at each
//! minute (redb caches pages of a growing store). Halfway through, a
//! `skewless backup` runs beside the load. Run on demand, not in CI:
//!
//!   cargo bench --bench soak            (SOAK_SECS=600, SOAK_INTERVAL_SECS=60)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

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
    let repo = common::fresh_driver_repo();
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
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut tasks = Vec::new();
                for connection in 0..16u64 {
                    let (addr, results, read, push) = (addr.clone(), &results, &read, &push);
                    tasks.push(async move {
                        let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        let (mut sender, connection_task) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                        tokio::spawn(connection_task);
                        let mut random = common::split_mix(connection + 1);
                        let mut n = 0u64;
                        loop {
                            let elapsed = started.elapsed();
                            if elapsed >= total {
                                break;
                            }
                            n += 1;
                            let (path, body) = if random(10) == 0 {
                                ("/push", push(random(1000), n))
                            } else {
                                ("/get-online-features", read(random(1000)))
                            };
                            let request = Request::post(path)
                                .header("host", addr.as_str())
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            let sent = Instant::now();
                            let ok = match sender.send_request(request).await {
                                Ok(response) => {
                                    let ok = response.status().is_success();
                                    response.into_body().collect().await.is_ok() && ok
                                }
                                Err(_) => false,
                            };
                            let micros = sent.elapsed().as_micros() as u32;
                            let slot = ((elapsed.as_secs_f64() / interval.as_secs_f64()) as usize).min(intervals - 1);
                            let mut result = results[slot].lock().unwrap();
                            result.latencies.push(micros);
                            result.errors += usize::from(!ok);
                        }
                    });
                }
                futures_join_all(tasks).await;
            })
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

/// Awaits every future (tokio's current-thread runtime drives them together).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
