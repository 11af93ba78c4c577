//! A value depends on the component and its input rows only, on every path:
//! a guest that counts its calls in a global answers 1 through backfill,
//! push, `get`, `dataset`, `verify` and the server; a guest whose answer
//! depends on its batch is refused at `apply`, recorded when allowed, and
//! reported by `verify`.

use skewless_testkit as kit;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use kit::*;
use redb::ReadableTable;

/// A repo with the test component `component` as a materialized view
/// `counted` (over a push source backed by a CSV file, 2 rows per guest
/// call, so a backfill makes many calls) and as an on-demand view `live`
/// over a request field `x`.
fn repo_with(component: &str) -> TempRepo {
    let wasm = test_components().join(format!("{component}.wasm"));
    let config = format!(
        r#"project = "determinism"

[entities.thing]
join_keys = {{ id = "int64" }}

[sources.events]
type = "file"
path = "events.csv"

[sources.events_push]
type = "push"
batch_source = "events"

[sources.req]
type = "request"
schema = {{ x = "int64" }}

[views.counted]
entities = ["thing"]
source = "events_push"
transform = "{wasm}"
limits = {{ max_rows_per_call = 2 }}

[views.live]
kind = "on_demand"
sources = ["counted", "req"]
transform = "{wasm}"
"#,
        wasm = wasm.display()
    );
    let repo = TempRepo::from_config(&config);
    let mut csv = String::from("id,x,event_timestamp\n");
    for id in 1..=5 {
        for hour in 0..3 {
            csv.push_str(&format!("{id},{},2026-01-01T0{hour}:00:00Z\n", id * 10 + hour));
        }
    }
    std::fs::write(repo.path().join("events.csv"), csv).unwrap();
    repo
}

/// Reads of `view` whose transform call carried other requests' rows too.
fn shared_calls(server: &ServerProcess, view: &str) -> u64 {
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200, "{metrics}");
    let line = format!("skewless_view_shared_calls_total{{view=\"{view}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn ints(values: &serde_json::Value) -> Vec<i64> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap_or(-1))
        .collect()
}

#[test]
fn a_guest_that_counts_its_calls_answers_one_on_every_path() {
    let repo = repo_with("counter");
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);

    // `get`: the stored value (backfill) and the on-demand one.
    for _ in 0..3 {
        let out = repo.ok(&[
            "get",
            "--entity",
            "id=1,2,3",
            "--features",
            "counted,live",
            "--request",
            "x=4",
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        for result in json["results"].as_array().unwrap().iter().skip(1) {
            assert_eq!(ints(&result["values"]), vec![1, 1, 1], "{out}");
        }
    }

    // `dataset`: every training row.
    std::fs::write(
        repo.path().join("spine.csv"),
        "id,x,event_timestamp\n1,5,2026-01-02T00:00:00Z\n2,6,2026-01-02T00:00:00Z\n5,7,2026-01-01T02:30:00Z\n",
    )
    .unwrap();
    let (spine, out) = (repo.path().join("spine.csv"), repo.path().join("train.parquet"));
    repo.ok(&[
        "dataset",
        "--spine",
        spine.to_str().unwrap(),
        "--features",
        "counted,live",
        "--out",
        out.to_str().unwrap(),
        "--full-feature-names",
    ]);
    let train = read_parquet(&out);
    for name in ["counted__calls", "live__calls"] {
        let column = train
            .column_by_name(name)
            .unwrap_or_else(|| panic!("{name} in {:?}", train.schema()));
        let values: Vec<i64> = column.as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(values, vec![1; 3], "{name}");
    }

    // `verify`: every check passes, the state check included.
    let verified = repo.run(&["verify", "--seed", "7"]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(stdout.contains("state") && !stdout.contains("FAILED"), "{stdout}");

    // The server: repeated reads, and a push read back.
    let server = repo.serve(&[]);
    let read = r#"{"features": ["counted:calls", "live:calls"], "entities": {"id": [1, 4], "x": [9]}, "full_feature_names": true}"#;
    for _ in 0..5 {
        let (status, json) = server.post("/get-online-features", read);
        assert_eq!(status, 200, "{json}");
        for result in json["results"].as_array().unwrap().iter().skip(1) {
            assert_eq!(ints(&result["values"]), vec![1, 1], "{json}");
        }
    }
    // Concurrent reads: instances are made ahead and dropped on a
    // background thread, and requests that arrive while a call of `live`
    // runs share the next one (x = 300,000: a call lasts long enough for
    // that); still no instance answers twice.
    let slow = read.replace(r#""x": [9]"#, r#""x": [300000]"#);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let (status, json) = server.post("/get-online-features", &slow);
                    assert_eq!(status, 200, "{json}");
                    for result in json["results"].as_array().unwrap().iter().skip(1) {
                        assert_eq!(ints(&result["values"]), vec![1, 1], "{json}");
                    }
                }
            });
        }
    });
    assert!(shared_calls(&server, "live") > 0, "no request shared a call");
    let push = r#"{"push_source_name": "events_push", "df": {"id": [6, 7, 8], "x": [1, 2, 3], "event_timestamp": ["2026-01-03T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-03T00:00:00Z"]}}"#;
    for _ in 0..2 {
        let (status, json) = server.post("/push", push);
        assert_eq!(status, 200, "{json}");
    }
    let (status, json) = server.post(
        "/get-online-features",
        r#"{"features": ["counted:calls"], "entities": {"id": [6, 7, 8]}}"#,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(ints(&json["results"][1]["values"]), vec![1, 1, 1], "{json}");
    server.stop();
}

#[test]
fn a_batch_dependent_guest_is_refused_at_apply_recorded_when_allowed_and_reported_by_verify() {
    let repo = repo_with("batch_size");
    let refused = repo.fails(&["apply"]);
    assert!(refused.contains("view `counted`"), "{refused}");
    assert!(
        // 2 rows per guest call (the view's limit), 1 online.
        refused.contains("`batch_rows` is 2 in one batch of all rows but 1 one row at a time"),
        "{refused}"
    );
    assert!(refused.contains("--allow-batch-dependent counted"), "{refused}");
    assert!(!repo.ok(&["ls"]).contains("counted"), "nothing was recorded");

    let typo = repo.fails(&["apply", "--allow-batch-dependent", "counter"]);
    assert!(
        typo.contains("names view `counter`, which the repo does not have (its views: counted, live)"),
        "{typo}"
    );
    // Allowed for one view, the other still stops the apply.
    let still = repo.fails(&["apply", "--allow-batch-dependent", "counted"]);
    assert!(still.contains("view `live`"), "{still}");
    repo.ok(&["apply", "--allow-batch-dependent", "counted,live"]);
    let described = repo.ok(&["describe", "counted"]);
    assert!(
        described.contains("batch invariance: NOT batch-invariant, allowed at apply")
            && described.contains("batch_rows"),
        "{described}"
    );
    repo.ok(&["backfill"]);
    // Reported by verify, as allowed. The allowance does not hide what it
    // causes: the on-demand view serves (1 row per call) other values than
    // the training rows hold (all sampled entities in one call), and that
    // fails the gate.
    let out = repo.run(&["verify", "--seed", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("batch invariance   allowed view `counted`: for probe row 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("difference: `live:batch_rows` for 1: online 1 (PRESENT) but offline 5 (PRESENT)"),
        "{stdout}"
    );
}

#[test]
fn verify_fails_on_a_batch_dependent_view_recorded_before_probing_existed() {
    let repo = repo_with("batch_size");
    repo.ok(&["apply", "--allow-batch-dependent"]);
    repo.ok(&["backfill"]);
    // As a store from before this check: the records say nothing of invariance.
    {
        let registry: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("registry");
        let db = redb::Database::open(repo.store()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(registry).unwrap();
            for key in ["view/counted", "view/live"] {
                let mut record: serde_json::Value =
                    serde_json::from_str(table.get(key).unwrap().expect("recorded").value()).unwrap();
                record.as_object_mut().unwrap().remove("invariance");
                table.insert(key, record.to_string().as_str()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    assert!(
        repo.ok(&["describe", "counted"])
            .contains("batch invariance: not checked")
    );
    let out = repo.run(&["verify", "--seed", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("batch invariance   FAILED view `counted`") && stdout.contains("one row at a time"),
        "{stdout}"
    );
    assert!(stderr.contains("2 views failing the batch probe"), "{stderr}");
}

#[test]
fn a_guest_that_carries_a_count_across_the_rows_of_a_call_is_refused_at_apply() {
    let repo = repo_with("running_count");
    let refused = repo.fails(&["apply"]);
    assert!(refused.contains("view `counted`"), "{refused}");
    assert!(
        // Row 1 of a 2-row call has seen 2 rows; alone, 1.
        refused.contains("`seen` is 2 in one batch of all rows but 1 one row at a time"),
        "{refused}"
    );
    assert!(!repo.ok(&["ls"]).contains("counted"), "nothing was recorded");
}

/// Concurrent requests for an on-demand view share guest calls, and each
/// gets what it gets alone, bit for bit; a request whose row makes the
/// guest trap fails alone, with its own error.
#[test]
fn concurrent_requests_get_the_answers_they_get_one_at_a_time_and_a_trapping_one_fails_alone() {
    let burn = test_components().join("burn.wasm");
    let repo = TempRepo::from_config(&format!(
        r#"project = "joined"

[sources.req]
type = "request"
schema = {{ x = "int64" }}

[views.burning]
kind = "on_demand"
sources = ["req"]
transform = "{}"
"#,
        burn.display()
    ));
    repo.ok(&["apply"]);
    assert!(
        repo.ok(&["describe", "burning"])
            .contains("batch invariance: checked at apply")
    );
    let server = repo.serve(&[]);
    // 200,000 rounds: a fraction of a millisecond per row, so a call is in
    // flight while others arrive. Request 5 traps (burn panics on 13).
    let bodies: Vec<String> = (0..16)
        .map(|i| {
            let x = if i == 5 { 13 } else { 200_000 + i };
            format!(
                r#"{{"features": ["burning:y"], "entities": {{"x": [{x}, {}]}}}}"#,
                x + 1
            )
        })
        .collect();
    let alone: Vec<(u16, String)> = bodies
        .iter()
        .map(|body| server.post_text("/get-online-features", body))
        .collect();
    assert_eq!(alone[5].0, 500, "{}", alone[5].1);
    assert!(alone[5].1.contains("unlucky value 13"), "{}", alone[5].1);
    // Five rounds at least; more, up to twenty, until a call was shared
    // (on a busy machine the requests of a round may not overlap).
    for round in 0..20 {
        if round >= 5 && shared_calls(&server, "burning") > 0 {
            break;
        }
        let start = std::sync::Barrier::new(bodies.len());
        let together: Vec<(u16, String)> = std::thread::scope(|scope| {
            let tasks: Vec<_> = bodies
                .iter()
                .map(|body| {
                    let start = &start;
                    let server = &server;
                    scope.spawn(move || {
                        start.wait();
                        server.post_text("/get-online-features", body)
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (i, (concurrent, one)) in together.iter().zip(&alone).enumerate() {
            assert_eq!(
                concurrent, one,
                "request {i}, round {round}: concurrent and alone differ"
            );
        }
    }
    assert!(shared_calls(&server, "burning") > 0, "no request shared a call");
    server.stop();
}
