//! The applier's invariants, over [`MemoryLog`] and real redb stores: each
//! message applied once and in order, a gap stopping the replica, poison
//! skipped and recorded alike on every replica, a repeated id answered as a
//! duplicate, and the receiving replica committing the push it prepared.
//! (The same paths against a real nats-server: `tests/replication.rs`.)
//! Beside `replication/` rather than in it: they build whole servers
//! (`state`), which depend on the replication module.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use skewless_runtime::Workspace;
use tower::ServiceExt;

use crate::monitor::MonitorSettings;
use crate::replication::*;
use crate::state::{AppState, Server, ServerLimits};

/// A push source and a lifetime count and sum over it: no component to
/// build, and every applied message shows in the count.
const REPO: &str = r#"project = "replicated"

[entities.card]
join_keys = { card_id = "utf8" }

[sources.events]
type = "file"
path = "events.csv"

[sources.events_push]
type = "push"
batch_source = "events"

[views.spend]
kind = "aggregation"
entities = ["card"]
source = "events_push"
inputs = { amount = "float64" }
aggregations = [
  { name = "n", function = "count", window = "lifetime" },
  { name = "total", function = "sum", input = "amount", window = "lifetime" },
]
"#;

fn push(card: &str, amount: f64) -> String {
    format!(
        r#"{{"push_source_name": "events_push", "df": {{"card_id": ["{card}"],
            "event_timestamp": ["2026-01-01T00:00:00Z"], "amount": [{amount}]}}}}"#
    )
}

fn settings() -> LogSettings {
    LogSettings {
        url: "memory".into(),
        stream: "test".into(),
        ack_on_log: false,
        max_lag: 0,
    }
}

fn workspace(dir: &Path) -> Workspace {
    if !dir.join("skewless.toml").exists() {
        std::fs::write(dir.join("skewless.toml"), REPO).unwrap();
        std::fs::write(dir.join("events.csv"), "card_id,event_timestamp,amount\n").unwrap();
        let workspace = Workspace::create(dir).unwrap();
        workspace.apply(workspace.plan(&Default::default()).unwrap()).unwrap();
    }
    Workspace::open(dir, skewless_runtime::Views::All).unwrap()
}

/// A replica of the repo in `dir` over `log`; `before` sees its
/// replication before it starts following.
fn replica(dir: &Path, log: &MemoryLog, before: impl FnOnce(&Replication)) -> AppState {
    let workspace = workspace(dir);
    let applied = workspace.store().log_sequence().unwrap();
    let replication = Replication::over(Box::new(log.clone()), settings(), applied);
    before(&replication);
    let monitoring = MonitorSettings::from(&workspace.catalog().repo.monitoring);
    let limits = ServerLimits::default();
    Server::following(workspace, limits, crate::Auth::none(), &monitoring, replication).unwrap()
}

/// Waits (at most 10 s) until `state`'s store holds message `sequence`.
async fn wait_applied(state: &AppState, sequence: u64) {
    let started = Instant::now();
    while state.store().log_sequence().unwrap() < sequence {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "message {sequence} not applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn post(state: &AppState, path: &str, body: &str) -> (u16, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = crate::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// (count, sum) of card `card`'s events, as served.
async fn spend(state: &AppState, card: &str) -> (Value, Value) {
    let (status, answer) = post(
        state,
        "/get-online-features",
        &format!(r#"{{"features": ["spend:n", "spend:total"], "entities": {{"card_id": ["{card}"]}}}}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    (
        answer["results"][1]["values"][0].clone(),
        answer["results"][2]["values"][0].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_applied_once_in_order_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::default();
    for amount in 1..=5 {
        log.append(&push("a", amount as f64));
    }
    let state = replica(dir.path(), &log, |_| {});
    wait_applied(&state, 5).await;
    assert_eq!(spend(&state, "a").await, (5.into(), 15.0.into()));

    // Messages arriving while following are applied in turn.
    for amount in 6..=8 {
        log.append(&push("a", amount as f64));
    }
    wait_applied(&state, 8).await;
    assert_eq!(spend(&state, "a").await, (8.into(), 36.0.into()));
    drop(state);

    // A restart resumes after the stored position: nothing counted twice.
    let state = replica(dir.path(), &log, |_| {});
    log.append(&push("a", 100.0));
    wait_applied(&state, 9).await;
    assert_eq!(spend(&state, "a").await, (9.into(), 136.0.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_log_stops_the_replica_with_stale_replica() {
    let (primary_dir, replica_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = MemoryLog::default();
    let primary = replica(primary_dir.path(), &log, |_| {});
    for amount in 1..=3 {
        log.append(&push("a", amount as f64));
    }
    wait_applied(&primary, 3).await;
    log.trim_before(3);

    // A replica at message 0 needs message 1, which is gone.
    let stale = replica(replica_dir.path(), &log, |_| {});
    let started = Instant::now();
    let error = loop {
        match stale.health() {
            Err(error) if error.code == "stale_replica" => break error,
            _ => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the replica never noticed the gap"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        error.message.contains("message 1 is gone") && error.message.contains("skewless backup --out"),
        "{}",
        error.message
    );
    let (status, answer) = post(
        &stale,
        "/get-online-features",
        r#"{"features": ["spend:n"], "entities": {"card_id": ["a"]}}"#,
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (503, Some("stale_replica")));
    assert_eq!(stale.store().log_sequence().unwrap(), 0, "nothing applied past the gap");

    // The replica that holds everything goes on.
    log.append(&push("a", 4.0));
    wait_applied(&primary, 4).await;
    assert_eq!(spend(&primary, "a").await, (4.into(), 10.0.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_skipped_and_recorded_alike_on_every_replica() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = MemoryLog::default();
    let a = replica(a_dir.path(), &log, |_| {});
    log.append(&push("a", 1.0));
    log.append("not json");
    log.append(&push("a", 2.0).replace("events_push", "no_such_source"));
    log.append(&push("a", 3.0).replace("3", "\"three\""));
    log.append(&push("a", 4.0));
    wait_applied(&a, 5).await;
    // B starts late, and reads the same messages in other batches.
    let b = replica(b_dir.path(), &log, |_| {});
    wait_applied(&b, 5).await;

    for state in [&a, &b] {
        assert_eq!(spend(state, "a").await, (2.into(), 5.0.into()));
    }
    let (skipped_a, skipped_b) = (
        a.store().skipped_messages().unwrap(),
        b.store().skipped_messages().unwrap(),
    );
    assert_eq!(
        skipped_a, skipped_b,
        "the replicas record the same skips, for the same reasons"
    );
    assert_eq!(skipped_a.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3, 4]);
    assert!(skipped_a[0].1.contains("not a push request"), "{skipped_a:?}");
    assert!(skipped_a[1].1.contains("no_such_source"), "{skipped_a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_push_is_answered_as_a_duplicate_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemoryLog::default();
    let state = replica(dir.path(), &log, |_| {});
    let (status, first) = post(&state, "/push", &push("a", 7.0)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["log_sequence"].as_u64(), Some(1));
    assert_ne!(first["duplicate"], true, "{first}");
    let (status, again) = post(&state, "/push", &push("a", 7.0)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["log_sequence"], first["log_sequence"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(spend(&state, "a").await, (1.into(), 7.0.into()));

    // With the log down, a push is refused and nothing is stored.
    log.set_down(true);
    let (status, refused) = post(&state, "/push", &push("a", 8.0)).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("log_unavailable"))
    );
    assert_eq!(spend(&state, "a").await, (1.into(), 7.0.into()), "reads go on");
    log.set_down(false);
    let started = Instant::now();
    loop {
        let (status, _) = post(&state, "/push", &push("a", 8.0)).await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "pushes did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spend(&state, "a").await, (2.into(), 15.0.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_replica_commits_the_push_it_prepared() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = MemoryLog::default();
    // A push prepared for amount 50, kept as if it had been published as
    // message 1, whose body (amount 1) differs: which one is committed shows
    // whether the applier reused the push or prepared the message again.
    let workspace = workspace(other.path());
    let (catalog, store) = workspace.into_parts();
    let records = store.views().unwrap();
    let kept =
        prepare(&catalog, &store, &records, push("a", 50.0).as_bytes()).unwrap_or_else(|_| panic!("the push prepares"));
    log.append(&push("a", 1.0));
    let state = replica(dir.path(), &log, |replication| replication.keep_own(1, kept));
    wait_applied(&state, 1).await;
    assert_eq!(spend(&state, "a").await, (1.into(), 50.0.into()));

    // A push through the server is kept, and let go once applied.
    let (status, answer) = post(&state, "/push", &push("a", 2.0)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(spend(&state, "a").await, (2.into(), 52.0.into()));
}
