//! Replicated serving against a real `nats-server -js` (Debian's) on a free
//! loopback port: replicas bootstrapped from `skewless backup` snapshots,
//! pushes through the log read on every replica, the log going down and
//! coming back, a trimmed stream, poison messages skipped identically, and
//! the replicas' store digests equal at the end; a store version swapped in
//! under load; HAProxy (the shipped config) in front of two replicas, one
//! killed. Each wait is bounded.

use kit::tier::Tier;
use skewless_testkit as kit;

use std::process::Command;
use std::time::{Duration, Instant};

use kit::services::{HaProxy, Nats, free_port};
use kit::*;

fn push_body(driver: i64, trips: i64) -> String {
    let time = skewless_runtime::time::format_timestamp(next_hour() + trips);
    format!(
        r#"{{"push_source_name": "driver_stats_push_source",
            "df": {{"driver_id": [{driver}], "event_timestamp": ["{time}"], "created": ["{time}"],
                   "conv_rate": [0.5], "acc_rate": [0.25], "avg_daily_trips": [{trips}]}},
            "to": "online_and_offline"}}"#
    )
}

/// A push that traps in the `doubled` view's transform (trap.wasm panics on 13).
fn poison_body() -> String {
    r#"{"push_source_name": "numbers_push", "df": {"id": [1], "event_timestamp": ["2026-01-01T00:00:00Z"], "x": [13]}}"#
        .into()
}

/// The driver_stats repo with data ending now, plus a view `doubled` over a
/// push source `numbers_push` whose transform traps on 13; applied and
/// backfilled.
fn primary_repo() -> TempRepo {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};

    let repo = TempRepo::with_data("driver_stats", next_hour());
    let config = repo.path().join("skewless.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[entities.number]\njoin_keys = {{ id = \"int64\" }}\n\
         [sources.numbers]\ntype = \"file\"\npath = \"data/numbers.parquet\"\n\
         [sources.numbers_push]\ntype = \"push\"\nbatch_source = \"numbers\"\n\
         [views.doubled]\nentities = [\"number\"]\nsource = \"numbers_push\"\ntransform = \"{}\"\n",
        test_components().join("trap.wasm").display()
    ));
    std::fs::write(&config, text).unwrap();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from_iter_values(0..10).with_timezone("UTC")) as ArrayRef,
        ),
        ("x", Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef),
    ])
    .unwrap();
    skewless_runtime::samples::write_parquet(&repo.path().join("data/numbers.parquet"), &batch).unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

fn health(server: &ServerProcess) -> (u16, serde_json::Value) {
    let (status, text) = server.get("/health");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}")))
}

/// Waits (at most 60 s) until `server` has applied message `sequence`.
fn wait_applied(server: &ServerProcess, sequence: u64) {
    let started = Instant::now();
    loop {
        let (_, health) = health(server);
        if health["replication"]["applied_sequence"].as_u64() >= Some(sequence) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "message {sequence} not applied: {health}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn trips(server: &ServerProcess, driver: i64) -> serde_json::Value {
    let (status, answer) = server.post(
        "/get-online-features",
        &format!(r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": [{driver}]}}}}"#),
    );
    assert_eq!(status, 200, "{answer}\n{}", server.log());
    answer["results"][1]["values"][0].clone()
}

/// `skewless verify`'s store line: the content digest, the log position
/// and the messages skipped.
fn store_line(repo: &TempRepo) -> String {
    let out = repo.run(&["verify", "--samples", "20"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.contains("content digest"))
        .unwrap_or_else(|| panic!("no digest line:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
        .trim()
        .to_string()
}

#[test]
fn replicas_bootstrapped_from_a_snapshot_apply_every_push_once_skip_poison_alike_and_end_equal() {
    if !Tier::Replication.enter() {
        return;
    }
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let log = nats.url();
    let primary = primary_repo();
    let a = primary.serve(&["--log", &log]);
    wait_applied(&a, 0);
    assert_eq!(a.post("/push", &push_body(1001, 1)).0, 200);

    // B bootstraps from a snapshot taken while pushes flow into A.
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("snapshot.redb");
    let pushing = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| {
            (0..40)
                .map(|i| a.post("/push", &push_body(1002, 100 + i)).0)
                .filter(|s| *s == 200)
                .count()
        });
        std::thread::sleep(Duration::from_millis(100));
        primary.ok(&["backup", "--out", snapshot.to_str().unwrap()]);
        pusher.join().unwrap()
    });
    assert_eq!(pushing, 40);
    let b_repo = primary.replica(&snapshot);
    let b = b_repo.serve(&["--log", &log]);
    wait_applied(&b, 41);
    assert_eq!(trips(&b, 1002), 139, "B replayed the log after its snapshot");

    // Push to A, read from B, and the other way round: the receiving
    // replica answers after its own apply, so it reads its own write.
    let (status, answer) = a.post("/push", &push_body(1003, 4242));
    assert_eq!(status, 200, "{answer}");
    let sequence = answer["log_sequence"].as_u64().unwrap();
    assert_eq!(trips(&a, 1003), 4242);
    wait_applied(&b, sequence);
    assert_eq!(trips(&b, 1003), 4242);
    let (status, answer) = b.post("/push", &push_body(1004, 77));
    assert_eq!((status, trips(&b, 1004)), (200, serde_json::json!(77)), "{answer}");

    // The same push twice (same body; then the same Idempotency-Key) is stored once.
    let (_, first) = a.post("/push", &push_body(1005, 5));
    let (_, again) = b.post("/push", &push_body(1005, 5));
    assert_eq!(again["log_sequence"], first["log_sequence"]);
    assert_eq!(again["duplicate"], true, "{again}");

    // Poison: a body no server would accept, published straight to the log,
    // and a push whose transform traps. Recorded and skipped everywhere.
    nats.publish("not json");
    nats.publish(&poison_body());
    let (status, answer) = a.post("/push", &push_body(1006, 6));
    assert_eq!(status, 200, "after poison messages the log goes on: {answer}");
    let last = answer["log_sequence"].as_u64().unwrap();
    wait_applied(&b, last);
    assert_eq!(trips(&b, 1006), 6);
    let metrics = b.get("/metrics").1;
    assert!(
        metrics.contains("skewless_replication_skipped_messages_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("skewless_replication_lag_messages 0"), "{metrics}");

    // Kill -9 B while pushes flow into A: restarted, it converges.
    let b_pid = b.pid();
    let late = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| {
            (0..60)
                .filter_map(|i| {
                    let (status, answer) = a.post("/push", &push_body(1007, 1_000 + i));
                    (status == 200).then(|| answer["log_sequence"].as_u64().unwrap())
                })
                .max()
        });
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            Command::new("kill")
                .args(["-9", &b_pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        pusher.join().unwrap().unwrap()
    });
    drop(b);
    let b = b_repo.serve(&["--log", &log]);
    wait_applied(&b, late);
    assert_eq!(trips(&b, 1007), 1_059);

    let a_log = a.stop().1;
    assert!(a_log.contains("skipped"), "A logs the skipped messages:\n{a_log}");
    b.stop();
    let (a_line, b_line) = (store_line(&primary), store_line(&b_repo));
    assert_eq!(a_line, b_line, "the replicas hold different values");
    assert!(a_line.contains(&format!("log message {late}, 2 skipped")), "{a_line}");
}

#[test]
fn with_the_log_down_pushes_answer_503_and_reads_go_on_then_pushes_resume() {
    if !Tier::Replication.enter() {
        return;
    }
    let js = tempfile::tempdir().unwrap();
    let port = free_port();
    let nats = Nats::start(js.path(), port);
    let repo = fresh_driver_repo();
    let server = repo.serve(&["--log", &nats.url()]);
    wait_applied(&server, 0);
    assert_eq!(server.post("/push", &push_body(1001, 11)).0, 200);

    drop(nats);
    let started = Instant::now();
    let answer = loop {
        let (status, answer) = server.post("/push", &push_body(1001, 12));
        if status == 503 {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "push still {status} with the log down"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer["error"]["code"], "log_unavailable", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(trips(&server, 1001), 11, "reads go on with the log down");
    assert_eq!(health(&server).0, 200, "a replica that was in sync stays ready");

    let _nats = Nats::start(js.path(), port);
    let started = Instant::now();
    loop {
        let (status, answer) = server.post("/push", &push_body(1001, 13));
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pushes did not resume: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(trips(&server, 1001), 13);
}

#[test]
fn a_replica_whose_next_message_was_trimmed_refuses_to_serve_and_says_how_to_rebootstrap() {
    if !Tier::Replication.enter() {
        return;
    }
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let repo = fresh_driver_repo();
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("old.redb");
    repo.ok(&["backup", "--out", snapshot.to_str().unwrap()]);
    let server = repo.serve(&["--log", &nats.url()]);
    wait_applied(&server, 0);
    for i in 0..3 {
        assert_eq!(server.post("/push", &push_body(1001, i)).0, 200);
    }
    nats.purge();

    let old = repo.replica(&snapshot);
    let stale = old.serve(&["--log", &nats.url()]);
    let started = Instant::now();
    let (status, answer) = loop {
        let (status, answer) = health(&stale);
        if answer["error"]["code"] == "stale_replica" {
            break (status, answer);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{answer}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("message 1 is gone") && message.contains("skewless backup --out"),
        "{message}"
    );
    let (status, text) = stale.post_text(
        "/get-online-features",
        r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#,
    );
    assert!(
        status == 503 && text.contains("stale_replica"),
        "stale values served: {status} {text}"
    );

    // The replica that had applied everything goes on.
    assert_eq!(server.post("/push", &push_body(1001, 9)).0, 200);
    assert_eq!(trips(&server, 1001), 9);
}

#[test]
fn a_store_version_is_swapped_into_both_replicas_under_push_and_read_load_and_they_end_equal() {
    if !Tier::Replication.enter() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let log = nats.url();
    let primary = primary_repo();
    let a = primary.serve(&["--log", &log]);
    wait_applied(&a, 0);
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("b.redb");
    primary.ok(&["backup", "--out", snapshot.to_str().unwrap()]);
    let b_repo = primary.replica(&snapshot);
    let b = b_repo.serve(&["--log", &log]);
    wait_applied(&b, 0);
    for i in 0..5 {
        assert_eq!(a.post("/push", &push_body(90_010, i)).0, 200);
    }

    // (Driver 90010 is in no sample data: only pushes write it.)
    // A builder backfills three more hours into a version of A's store
    // (while A serves), and the version is copied to B.
    let later = next_hour() + 3 * 3_600_000_000;
    skewless_runtime::samples::generate("driver_stats", primary.path(), later).unwrap();
    let out = primary.run(&["backfill", "--new-version", "v2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let version = primary.path().join(".skewless/versions/v2.redb");
    std::fs::create_dir_all(b_repo.path().join(".skewless/versions")).unwrap();
    std::fs::copy(&version, b_repo.path().join(".skewless/versions/v2.redb")).unwrap();

    // Both swap it in while pushes go to A and reads to both: none fails,
    // and both replay the pushes the version missed.
    let stop = AtomicBool::new(false);
    let (pushed, reads) = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| {
            let mut last = 0;
            for i in 100.. {
                let (status, answer) = a.post("/push", &push_body(90_010, i));
                assert_eq!(status, 200, "a push failed during the swaps: {answer}");
                last = answer["log_sequence"].as_u64().unwrap();
                if stop.load(Ordering::SeqCst) {
                    return (i, last);
                }
            }
            unreachable!("{last}")
        });
        let readers: Vec<_> = [&a, &b]
            .map(|server| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut reads = 0;
                    while !stop.load(Ordering::SeqCst) {
                        trips(server, 90_010);
                        reads += 1;
                    }
                    reads
                })
            })
            .into();
        std::thread::sleep(Duration::from_millis(200));
        let swaps: Vec<_> = [(&primary, &a), (&b_repo, &b)]
            .iter()
            .map(|(repo, server)| repo.run(&["swap", "v2", "--server", &server.base]))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        for out in swaps {
            let printed = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{printed}");
            // "... (log message N, R replayed) ...": the pushes since the version was built.
            let replayed: u64 = printed
                .split(" replayed)")
                .next()
                .and_then(|head| head.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{printed}"));
            assert!(
                replayed > 0,
                "the version missed pushes, replayed before it was served: {printed}"
            );
        }
        (pusher.join().unwrap(), reads)
    });
    assert!(reads > 20, "only {reads} reads around the swaps");
    let (value, sequence) = pushed;
    for server in [&a, &b] {
        wait_applied(server, sequence);
        assert_eq!(
            trips(server, 90_010),
            value,
            "every acknowledged push is served after the swap: {}\n{}",
            health(server).1,
            server.log()
        );
    }
    let (_, _, newest) = newest_row(1001, later);
    assert_eq!(trips(&b, 1001), newest, "B serves the version's backfill");

    a.stop();
    b.stop();
    assert_eq!(
        store_line(&primary),
        store_line(&b_repo),
        "the replicas hold different values"
    );
}

#[test]
fn behind_haproxy_a_replica_killed_under_load_fails_reads_only_until_its_health_check_and_loses_no_push() {
    if !Tier::Replication.enter() {
        return;
    }
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let js = tempfile::tempdir().unwrap();
    let nats = Nats::start(js.path(), free_port());
    let log = nats.url();
    let primary = primary_repo();
    let snapshots = tempfile::tempdir().unwrap();
    let snapshot = snapshots.path().join("b.redb");
    primary.ok(&["backup", "--out", snapshot.to_str().unwrap()]);
    let a = primary.serve(&["--log", &log]);
    let b_repo = primary.replica(&snapshot);
    let b = b_repo.serve(&["--log", &log]);
    wait_applied(&a, 0);
    wait_applied(&b, 0);
    let proxy = HaProxy::start(&a, &b);
    let read = r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#;
    // Both replicas in rotation (2 good checks, 200 ms apart).
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(proxy.post("/get-online-features", read).map(|r| r.0), Some(200));

    // Two readers and a pusher through HAProxy; A is killed after a second.
    let stop = AtomicBool::new(false);
    let failed_reads = Mutex::new(Vec::new());
    let (acknowledged, reads, killed) = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reads = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        match proxy.post("/get-online-features", read) {
                            Some((200, _)) => {}
                            answer => failed_reads.lock().unwrap().push((sent, answer)),
                        }
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let pusher = scope.spawn(|| {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Some((200, _)) = proxy.post("/push", &push_body(100_000 + i, i)) {
                    acknowledged.push(i);
                }
            }
            acknowledged
        });
        std::thread::sleep(Duration::from_secs(1));
        let killed = Instant::now();
        assert!(
            Command::new("kill")
                .args(["-9", &a.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        (pusher.join().unwrap(), reads, killed)
    });
    drop(a);

    // Reads failed only between the kill and the health check taking A
    // out: at most fall (2) x inter (200 ms), plus a check's time.
    let failed = failed_reads.into_inner().unwrap();
    let window = failed
        .iter()
        .map(|(sent, _)| sent.saturating_duration_since(killed))
        .max()
        .unwrap_or_default();
    eprintln!(
        "haproxy drill: {reads} reads, {} failed, the last sent {window:?} after the kill; {} pushes acknowledged",
        failed.len(),
        acknowledged.len()
    );
    assert!(
        failed
            .iter()
            .all(|(sent, _)| *sent + Duration::from_millis(50) >= killed),
        "a read failed before the kill: {failed:?}"
    );
    assert!(
        window < Duration::from_secs(1),
        "reads failed for {window:?} after the kill: {failed:?}"
    );
    assert!(
        reads > 50 && acknowledged.len() > 10,
        "{reads} reads, {} pushes",
        acknowledged.len()
    );

    // Every acknowledged push is readable through HAProxy (on B).
    let drivers: Vec<i64> = acknowledged.iter().map(|i| 100_000 + i).collect();
    let (status, text) = proxy
        .post(
            "/get-online-features",
            &format!(
                r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": {drivers:?}}}}}"#
            ),
        )
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let served: Vec<i64> = answer["results"][1]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(served, acknowledged, "an acknowledged push is missing");

    // A restarted replays what it missed, rejoins, and ends equal to B.
    let a = primary.serve(&["--log", &log]);
    let last = health(&b).1["replication"]["applied_sequence"].as_u64().unwrap();
    wait_applied(&a, last);
    a.stop();
    b.stop();
    assert_eq!(
        store_line(&primary),
        store_line(&b_repo),
        "the replicas hold different values"
    );
}
