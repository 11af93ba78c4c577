//! Kafka sources against a real Kafka-protocol broker (the `kafka` tier):
//! Tansu on loopback, records produced by kafka-python, consumed by
//! `skewless serve` into an aggregation view.
//!
//! The drill: records are produced at a steady rate while the server
//! consumes them; the server is killed with SIGKILL mid-stream and started
//! again; once the producer is done, the view's count must equal the
//! records produced exactly (nothing lost, nothing counted twice) and stay
//! there, and the records that cannot be stored are recorded and skipped
//! with their partition and offset.

use std::time::{Duration, Instant};

use skewless_testkit::services::Tansu;
use skewless_testkit::tier::Tier;
use skewless_testkit::{kafka_repo as repo, kafka_totals as totals, transaction};

/// A metric's value for one partition, from `/metrics`.
fn metric(server: &skewless_testkit::ServerProcess, name: &str, partition: i32) -> Option<f64> {
    let (_, text) = server.get("/metrics");
    let prefix = format!("skewless_{name}{{source=\"transactions_stream\",partition=\"{partition}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

/// Waits until `done` holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn records_are_stored_exactly_once_across_a_kill_9_mid_stream() {
    if !Tier::Kafka.enter() {
        return;
    }
    let broker = Tansu::start();
    broker.create_topic("transactions", 2);
    let repo = repo(&broker.broker(), "transactions");
    repo.ok(&["apply"]);

    // 6,000 records over ~6 s on two partitions, with two that cannot be
    // stored: one that is not JSON, one whose amount is text.
    const N: usize = 6_000;
    let mut records: Vec<(i32, String)> = (0..N).map(|i| ((i % 2) as i32, transaction(i))).collect();
    records.insert(1_000, (0, "not json".into()));
    records.insert(
        2_001,
        (
            1,
            r#"{"card_id": "card-01", "amount": "lots", "event_timestamp": "2026-01-01T00:00:00Z"}"#.into(),
        ),
    );
    let expected_sum: i64 = (0..N as i64).sum();

    let server = repo.serve(&[]);
    assert!(
        server
            .log()
            .contains("consuming kafka source `transactions_stream` (topic transactions at"),
        "{}",
        server.log()
    );
    let producing = broker.produce("transactions", &records, 1_000);
    wait_until(Duration::from_secs(60), "some records are stored", || {
        totals(&server).0 > 500
    });
    let before_kill = totals(&server).0;
    drop(server); // SIGKILL
    assert!(
        (before_kill as usize) < N,
        "the kill came after the stream ended ({before_kill})"
    );

    let server = repo.serve(&[]);
    producing.finish();
    wait_until(Duration::from_secs(60), "every record is stored", || {
        totals(&server).0 >= N as i64
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        totals(&server),
        (N as i64, expected_sum),
        "counted once each:\n{}",
        server.log()
    );

    // The two bad records: recorded and skipped, by partition and offset.
    let skipped: f64 = (0..2)
        .filter_map(|p| metric(&server, "kafka_skipped_records_total", p))
        .sum();
    let log = server.log();
    assert_eq!(skipped, 2.0, "{log}");
    assert!(
        log.contains("kafka source `transactions_stream` partition 0 offset 500: recorded and skipped: the record's value is not JSON"),
        "{log}"
    );
    assert!(
        log.contains("kafka source `transactions_stream` partition 1 offset 1000: recorded and skipped:")
            && log.contains("amount"),
        "{log}"
    );
    // Lag and position, per partition (the lag as the broker reports its
    // high watermark, which Tansu may get wrong: only its presence is checked).
    for partition in 0..2 {
        assert!(metric(&server, "kafka_lag_records", partition).is_some());
        assert_eq!(
            metric(&server, "kafka_next_offset", partition),
            Some((N / 2 + 1) as f64)
        );
    }
    drop(server);
    // And after one more restart with nothing new, still once each.
    let server = repo.serve(&[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(totals(&server), (N as i64, expected_sum));
}

#[test]
fn apply_refuses_an_unreachable_broker_and_a_missing_topic_by_name() {
    if !Tier::Kafka.enter() {
        return;
    }
    let closed = format!("127.0.0.1:{}", skewless_testkit::services::free_port());
    let error = repo(&closed, "transactions").fails(&["apply"]);
    assert!(
        error.contains("transactions_stream") && error.contains(&closed),
        "{error}"
    );

    let broker = Tansu::start();
    broker.create_topic("payments", 1);
    let error = repo(&broker.broker(), "transactions").fails(&["apply"]);
    assert!(
        error.contains("the brokers have no topic `transactions` (they have: payments)"),
        "{error}"
    );

    let with = |extra: &str| {
        let repo = repo(&broker.broker(), "payments");
        let config = repo.path().join("skewless.toml");
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("topic = \"payments\"\n", &format!("topic = \"payments\"\n{extra}\n"));
        std::fs::write(&config, text).unwrap();
        repo
    };
    let error = with("partitions = [0, 5]").fails(&["apply"]);
    assert!(error.contains("topic `payments` has no partition 5"), "{error}");
    let error =
        with("sasl_mechanism = \"SCRAM-SHA-512\"\nusername_env = \"SKEWLESS_TEST_UNSET_USER\"").fails(&["apply"]);
    assert!(
        error.contains("transactions_stream") && error.contains("environment variable SKEWLESS_TEST_UNSET_USER"),
        "{error}"
    );
    let error = with("format = \"avro\"").fails(&["apply"]);
    assert!(error.contains("unknown record format `avro`"), "{error}");
    // And with all of it right, apply records the source.
    with("partitions = [0]").ok(&["apply"]);
}

#[test]
fn a_record_whose_events_make_an_aggregation_function_trap_is_skipped_alone() {
    if !Tier::Kafka.enter() {
        return;
    }
    let broker = Tansu::start();
    broker.create_topic("transactions", 1);
    // The amount as float64, and beside the count a user-defined count
    // that panics on the amount 13.0.
    let repo = repo(&broker.broker(), "transactions");
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let trap = skewless_testkit::test_components().join("trap_aggregator.wasm");
    let text = text
        .replace(r#"amount = "int64""#, r#"amount = "float64""#)
        .replace(
            "window = \"30d\" },\n]",
            &format!(
                "window = \"30d\" }},\n  {{ name = \"lucky\", function = \"{}\", input = \"amount\", window = \"30d\" }},\n]",
                trap.display()
            ),
        );
    assert!(text.contains("lucky"));
    std::fs::write(&config, text).unwrap();
    repo.ok(&["apply"]);

    let records: Vec<(i32, String)> = (0..200).map(|i| (0, transaction(i))).collect();
    broker.produce("transactions", &records, 0).finish();
    let server = repo.serve(&[]);
    let stored = || {
        let (_, text) = server.get("/metrics");
        let line = text
            .lines()
            .find(|l| l.starts_with("skewless_kafka_next_offset{"))
            .map(str::to_string);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let started = Instant::now();
    while stored() < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not stored:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cards: Vec<String> = (0..skewless_testkit::CARDS)
        .map(|c| format!("\"card-{c:02}\""))
        .collect();
    let (status, answer) = server.post(
        "/get-online-features",
        &format!(
            r#"{{"features": ["card_activity:txn_count", "card_activity:amount_sum", "card_activity:lucky"], "entities": {{"card_id": [{}]}}}}"#,
            cards.join(",")
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let sum = |column: usize| {
        (answer["results"][column]["values"].as_array().unwrap().iter())
            .map(|v| v.as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    // Every record but amount 13.0 is counted, by the built-ins and the user's count alike.
    assert_eq!(
        (sum(1), sum(2), sum(3)),
        (199.0, (0..200).sum::<i64>() as f64 - 13.0, 199.0),
        "{answer}"
    );
    let log = server.log();
    assert!(
        log.contains("partition 0 offset 13: recorded and skipped: an aggregation function failed")
            && log.contains("unlucky amount 13"),
        "{log}"
    );
    assert_eq!(metric(&server, "kafka_skipped_records_total", 0), Some(1.0), "{log}");
}
