//! The server under stress, on real sockets: overload past capacity,
//! `kill -9` under push load, a full disk, and backups taken while serving.
//! Each drill is seeded and bounded in time.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TempRepo, fresh_driver_repo, test_components};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

/// A repo whose on-demand view `burning` costs `x` rounds of CPU per row.
fn burning_repo() -> TempRepo {
    let repo = fresh_driver_repo();
    let config = repo.path().join("skewless.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[views.burning]\nkind = \"on_demand\"\nsources = [\"burn_input\"]\ntransform = \"{}\"\n\
         \n[sources.burn_input]\ntype = \"request\"\nschema = {{ x = \"int64\" }}\n",
        test_components().join("burn.wasm").display()
    ));
    std::fs::write(&config, text).unwrap();
    repo.ok(&["apply"]);
    repo
}

/// What one request got: status, whether it said when to retry, latency.
#[derive(Clone, Copy)]
struct Answer {
    status: u16,
    retry_after: bool,
    latency: Duration,
}

/// An HTTP/1.1 keep-alive connection pool over loopback, for load.
struct Load {
    addr: String,
    body: Bytes,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Load {
    fn new(base: &str, body: String) -> Arc<Load> {
        Arc::new(Load {
            addr: base.trim_start_matches("http://").to_string(),
            body: Bytes::from(body),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// One request on an idle connection (or a new one), timed from the call.
    async fn request(self: Arc<Self>) -> Answer {
        let started = Instant::now();
        let pooled = self.idle.lock().unwrap().pop();
        let mut sender = match pooled {
            Some(sender) => sender,
            None => {
                let tcp = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
                tokio::spawn(connection);
                sender
            }
        };
        let request = hyper::Request::post("/get-online-features")
            .header("host", "localhost")
            .body(Full::new(self.body.clone()))
            .unwrap();
        let response = sender.send_request(request).await.expect("the server answers");
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        response.into_body().collect().await.unwrap();
        let latency = started.elapsed();
        self.idle.lock().unwrap().push(sender);
        Answer {
            status,
            retry_after,
            latency,
        }
    }

    /// `clients` closed loops (each sends when its last answer came) for `time`.
    async fn closed(self: &Arc<Self>, clients: usize, time: Duration) -> Vec<Answer> {
        let until = Instant::now() + time;
        let loops = (0..clients).map(|_| {
            let load = self.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while Instant::now() < until {
                    answers.push(load.clone().request().await);
                }
                answers
            })
        });
        let mut all = Vec::new();
        for handle in loops.collect::<Vec<_>>() {
            all.extend(handle.await.unwrap());
        }
        all
    }

    /// An open loop: `rate` requests per second for `time`, each sent on
    /// schedule whether or not earlier ones were answered (as independent
    /// clients do), so an overloaded server cannot slow the load down.
    async fn open(self: &Arc<Self>, rate: f64, time: Duration) -> Vec<Answer> {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let until = Instant::now() + time;
        let mut pending = Vec::new();
        while Instant::now() < until {
            ticks.tick().await;
            pending.push(tokio::spawn(self.clone().request()));
        }
        let mut all = Vec::new();
        for handle in pending {
            all.push(handle.await.unwrap());
        }
        all
    }
}

/// The `q` quantile of the latencies (0.5: median).
fn quantile(answers: &[Answer], q: f64) -> Duration {
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    assert!(!latencies.is_empty(), "no answers to take a quantile of");
    latencies.sort();
    latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)]
}

#[test]
fn past_capacity_the_server_sheds_load_and_keeps_its_latency() {
    let repo = burning_repo();
    // As many requests at once as cores: admitted requests never wait for a core.
    let server = repo.serve(&["--max-in-flight", "1"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A few milliseconds of guest CPU per request, far more than a refusal costs.
        let body = r#"{"features": ["burning"], "entities": {"x": [5000000]}}"#.to_string();
        let load = Load::new(&server.base, body);
        load.closed(1, Duration::from_millis(300)).await; // warm up

        let unloaded = load.closed(1, Duration::from_secs(1)).await;
        assert!(unloaded.iter().all(|a| a.status == 200));
        let unloaded_p99 = quantile(&unloaded, 0.99);
        let unloaded_median = quantile(&unloaded, 0.5);

        let at_capacity = load.closed(1, Duration::from_secs(2)).await;
        assert!(at_capacity.iter().all(|a| a.status == 200));
        let capacity = at_capacity.len() as f64 / 2.0;

        let offered = 4.0 * capacity;
        let overload = load.open(offered, Duration::from_secs(3)).await;
        let answered: Vec<Answer> = overload.iter().copied().filter(|a| a.status == 200).collect();
        let shed: Vec<Answer> = overload.iter().copied().filter(|a| a.status == 503).collect();
        assert_eq!(answered.len() + shed.len(), overload.len(), "only 200 and 503 under overload");
        assert!(shed.iter().all(|a| a.retry_after), "every 503 says when to retry");
        let overload_p99 = quantile(&answered, 0.99);

        // Load drops: answered at once, as fast as before.
        let after = load.closed(1, Duration::from_millis(500)).await;
        let recovered = after.iter().all(|a| a.status == 200);
        let after_median = quantile(&after, 0.5);

        eprintln!(
            "unloaded p99 {unloaded_p99:?}; capacity {capacity:.0} req/s; offered {offered:.0} req/s for 3 s: \
             {} answered (p99 {overload_p99:?}, {:.2}x unloaded), {} shed; after: median {after_median:?} (unloaded {unloaded_median:?})",
            answered.len(),
            overload_p99.as_secs_f64() / unloaded_p99.as_secs_f64(),
            shed.len(),
        );
        assert!(shed.len() > overload.len() / 2, "4x capacity offered, yet most requests were admitted");
        assert!(
            overload_p99 <= unloaded_p99 * 3,
            "admitted requests' p99 {overload_p99:?} is over 3x the unloaded p99 {unloaded_p99:?}"
        );
        assert!(recovered, "requests failed after the load dropped");
        assert!(after_median <= unloaded_median * 2, "slow after the load dropped");
    });
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(text.contains("overloaded"), "shed requests are counted by code");
}

/// A push of one commit, online and offline: `avg_daily_trips = value` for
/// each driver, at `micros`.
fn push_body(drivers: &[i64], value: i64, micros: i64) -> String {
    let time = skewless_runtime::time::format_timestamp(micros);
    let n = drivers.len();
    format!(
        r#"{{"push_source_name": "driver_stats_push_source",
            "df": {{"driver_id": {drivers:?}, "event_timestamp": {times:?}, "created": {times:?},
                   "conv_rate": {conv:?}, "acc_rate": {conv:?}, "avg_daily_trips": {trips:?}}},
            "to": "online_and_offline"}}"#,
        times = vec![time; n],
        conv = vec![0.5; n],
        trips = vec![value; n],
    )
}

/// The repo's config, serving the store at `store` instead of its own.
fn serving_copy(repo: &TempRepo, store: &std::path::Path) -> TempRepo {
    let text = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    let data = repo.path().join("data");
    let text = text
        .replacen("\n", &format!("\nstore = \"{}\"\n", store.display()), 1)
        .replace("path = \"data/", &format!("path = \"{}/", data.display()));
    TempRepo::from_config(&text)
}

#[test]
fn a_backup_taken_while_pushes_commit_holds_exactly_one_commit() {
    use skewless_runtime::time::now_micros;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let repo = fresh_driver_repo();
    let server = repo.serve(&[]);
    let stop = AtomicBool::new(false);
    let acknowledged = AtomicI64::new(0);
    let backups = tempfile::tempdir().unwrap();
    let during = backups.path().join("during.redb");
    let (before, after) = std::thread::scope(|scope| {
        // One writer sets drivers 1001 and 1002 to the same value in each commit.
        scope.spawn(|| {
            for value in 1.. {
                let (status, text) = server.post_text("/push", &push_body(&[1001, 1002], value, now_micros()));
                assert_eq!(status, 200, "{text}");
                acknowledged.store(value, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        // Others keep the committer busy.
        for thread in 0..4_i64 {
            let (stop, server) = (&stop, &server);
            scope.spawn(move || {
                for value in 1.. {
                    let drivers = [1003 + thread * 2, 1004 + thread * 2];
                    assert_eq!(
                        server.post_text("/push", &push_body(&drivers, value, now_micros())).0,
                        200
                    );
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = acknowledged.load(Ordering::SeqCst);
        let printed = repo.run(&["backup", "--out", during.to_str().unwrap()]);
        let after = acknowledged.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let log = String::from_utf8_lossy(&printed.stderr).into_owned();
        assert!(printed.status.success(), "{log}");
        assert!(log.contains("as of commit") && log.contains("during.redb"), "{log}");
        (before, after)
    });
    assert!(before > 0, "no push was acknowledged before the backup");

    // The copy serves one commit's state: both drivers hold the same value,
    // one acknowledged while the backup ran (or the one in flight).
    let copy = serving_copy(&repo, &during);
    let printed: serde_json::Value = serde_json::from_str(&copy.ok(&[
        "get",
        "--entity",
        "driver_id=1001,1002",
        "--features",
        "driver_hourly_stats:avg_daily_trips",
        "--json",
    ]))
    .unwrap();
    let values = &printed["results"][1]["values"];
    let (first, second) = (values[0].as_i64().unwrap(), values[1].as_i64().unwrap());
    assert_eq!(first, second, "the backup holds half of a commit");
    assert!(
        (before..=after + 1).contains(&first),
        "the backup holds value {first}, not one acknowledged while it ran ({before}..={after})"
    );
    copy.ok(&["verify", "--samples", "200", "--seed", "7"]);

    // Quiet, a second backup holds exactly what the store holds.
    drop(server);
    let quiet = backups.path().join("quiet.redb");
    repo.ok(&["backup", "--out", quiet.to_str().unwrap()]);
    let digest = |path: &std::path::Path| {
        skewless_runtime::Store::open_existing(path)
            .unwrap()
            .content_digest()
            .unwrap()
    };
    assert_eq!(digest(&quiet), digest(&repo.store()));
    assert_ne!(
        digest(&during),
        digest(&repo.store()),
        "pushes went on after the first backup"
    );

    // An existing file is never overwritten.
    let refused = repo.fails(&["backup", "--out", quiet.to_str().unwrap()]);
    assert!(refused.contains("the backup file exists"), "{refused}");
}

/// What a drill's pushers saw: ids answered 200, and ids whose push got no
/// answer (the server died first). Each id is a push of two rows, drivers
/// `id` and `id + PAIR`, in one commit.
#[derive(Default)]
struct Pushed {
    acknowledged: Vec<i64>,
    unanswered: Vec<i64>,
}

const PAIR: i64 = 10_000_000;

/// `kill -9` the server `rounds` times at seeded random moments under 16
/// pushing connections (and, if asked, a backfill looping beside it), then
/// check that every acknowledged push is there, no push is half there, and
/// `skewless verify` passes.
fn crash_drill(seed: u64, rounds: usize, with_backfill: bool) {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let repo = fresh_driver_repo();
    let mut random = common::split_mix(seed);
    let mut server = repo.serve(&[]);
    let base = Mutex::new(server.base.clone());
    let stop = AtomicBool::new(false);
    let next_id = AtomicI64::new(20_000_000);
    let pushed = Mutex::new(Pushed::default());
    let backfills = AtomicI64::new(0);
    let server = std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                while !stop.load(Ordering::SeqCst) {
                    let id = next_id.fetch_add(1, Ordering::SeqCst);
                    let url = format!("{}/push", base.lock().unwrap());
                    let body = push_body(&[id, id + PAIR], id, skewless_runtime::time::now_micros());
                    match agent.post(&url).send(&body) {
                        Ok(response) if response.status() == 200 => pushed.lock().unwrap().acknowledged.push(id),
                        Ok(mut response) => panic!(
                            "push answered {}: {}",
                            response.status(),
                            response.body_mut().read_to_string().unwrap_or_default()
                        ),
                        Err(_) => {
                            pushed.lock().unwrap().unanswered.push(id);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            });
        }
        if with_backfill {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    repo.ok(&["backfill"]);
                    backfills.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(50 + random(400)));
            drop(server); // SIGKILL: no shutdown, no flush
            server = repo.serve(&[]);
            *base.lock().unwrap() = server.base.clone();
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::SeqCst);
        server
    });

    // Every acknowledged push is readable; no push is half there.
    let pushed = pushed.into_inner().unwrap();
    let ids: Vec<i64> = pushed.acknowledged.iter().chain(&pushed.unanswered).copied().collect();
    let mut found = std::collections::HashMap::new();
    for chunk in ids.chunks(2_000) {
        let drivers: Vec<i64> = chunk.iter().flat_map(|id| [*id, id + PAIR]).collect();
        let (status, answer) = server.post(
            "/get-online-features",
            &format!(
                r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": {drivers:?}}}}}"#
            ),
        );
        assert_eq!(status, 200, "{answer}");
        let values = answer["results"][1]["values"].as_array().unwrap();
        for (driver, value) in drivers.iter().zip(values) {
            found.insert(*driver, value.as_i64());
        }
    }
    for id in &pushed.acknowledged {
        assert_eq!(
            (found[id], found[&(id + PAIR)]),
            (Some(*id), Some(*id)),
            "push {id} was acknowledged but is not (wholly) stored"
        );
    }
    let mut unanswered_stored = 0;
    for id in &pushed.unanswered {
        match (found[id], found[&(id + PAIR)]) {
            (Some(a), Some(b)) if a == *id && b == *id => unanswered_stored += 1,
            (None, None) => {}
            other => panic!("push {id} is half stored: {other:?}"),
        }
    }
    drop(server);
    repo.ok(&["verify", "--samples", "300", "--seed", &seed.to_string()]);
    eprintln!(
        "crash drill (seed {seed}, {rounds} kill -9 rounds{}): {} pushes acknowledged, all found; \
         {} unanswered ({unanswered_stored} of them stored whole, the rest absent); verify passed",
        if with_backfill {
            format!(", {} backfills beside", backfills.load(Ordering::SeqCst))
        } else {
            String::new()
        },
        pushed.acknowledged.len(),
        pushed.unanswered.len(),
    );
    assert!(pushed.acknowledged.len() > rounds, "too few pushes to tell anything");
}

#[test]
fn kill_9_under_push_load_loses_no_acknowledged_push() {
    crash_drill(0x5EED_0001, 20, false);
}

#[test]
fn kill_9_with_a_backfill_beside_loses_nothing_either() {
    crash_drill(0x5EED_0002, 20, true);
}

/// A size-limited tmpfs mounted for one test (as root, or through sudo);
/// unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let root = current_uid() == 0;
        let mut command = std::process::Command::new(if root { "mount" } else { "sudo" });
        if !root {
            command.args(["-n", "mount"]);
        }
        let status = command
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "the disk-full drill mounts a small tmpfs: run the tests as root or with passwordless sudo"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn free_bytes(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let root = current_uid() == 0;
        let mut command = std::process::Command::new(if root { "umount" } else { "sudo" });
        if !root {
            command.args(["-n", "umount"]);
        }
        let _ = command.arg("-l").arg(self.dir.path()).status();
    }
}

fn current_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_is_freed() {
    let disk = SmallDisk::mount(128);
    let mut repo = common::TempRepo::with_data("driver_stats", common::next_hour());
    let reserve: u64 = 24 << 20;
    repo.env.push(("SKEWLESS_MIN_FREE_BYTES".into(), reserve.to_string()));
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let store = disk.path().join("store.redb");
    std::fs::write(
        &config,
        text.replacen("\n", &format!("\nstore = \"{}\"\n", store.display()), 1),
    )
    .unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let server = repo.serve(&[]);
    let now = skewless_runtime::time::now_micros;
    let read = |driver: i64| {
        let (status, answer) = server.post(
            "/get-online-features",
            &format!(
                r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": [{driver}]}}}}"#
            ),
        );
        assert_eq!(status, 200, "{answer}");
        answer["results"][1]["values"][0].as_i64()
    };
    assert_eq!(server.post_text("/push", &push_body(&[1001], 111, now())).0, 200);
    assert_eq!(read(1001), Some(111));

    // Fill the disk to just under the reserve.
    let filler = disk.path().join("filler");
    let fill = disk.free_bytes() - reserve / 2;
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();

    let (status, text) = server.post_text("/push", &push_body(&[1001], 222, now()));
    assert_eq!(status, 507, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "storage_full");
    assert!(
        text.contains("MB free") && text.contains("nothing of this request was stored"),
        "{text}"
    );
    assert_eq!(read(1001), Some(111), "reads go on, with what was acknowledged");
    assert_eq!(server.get("/health").0, 200);
    let refused = repo.fails(&["backfill"]);
    assert!(refused.contains("MB free on its file system"), "{refused}");
    // A new server (a restart) opens the full store and reads.
    let second = repo.serve(&[]);
    assert_eq!(
        second
            .post(
                "/get-online-features",
                r#"{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#
            )
            .0,
        200
    );
    drop(second);

    // Space freed: writes work again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, text) = server.post_text("/push", &push_body(&[1001], 333, now()));
    assert_eq!(status, 200, "{text}");
    assert_eq!(read(1001), Some(333));
    drop(server);
    repo.ok(&["backfill"]);
    repo.ok(&["verify", "--samples", "200", "--seed", "11"]);
}
