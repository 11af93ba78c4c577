//! The server under stress, on real sockets: `kill -9` under push load, a
//! full disk, and backups taken while serving. Each drill is seeded and
//! bounded in time. (Overload is in `overload.rs`, alone in its binary.)

use kit::tier::Tier;
use skewless_testkit as kit;

use std::sync::Mutex;
use std::time::Duration;

use kit::{TempRepo, fresh_driver_repo};

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
    let mut random = kit::split_mix(seed);
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
    if !Tier::Drills.enter() {
        return;
    }
    crash_drill(0x5EED_0001, 20, false);
}

#[test]
fn kill_9_with_a_backfill_beside_loses_nothing_either() {
    if !Tier::Drills.enter() {
        return;
    }
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

/// Driver `driver`'s `avg_daily_trips`, as `server` serves it.
fn trips(server: &kit::ServerProcess, driver: i64) -> Option<i64> {
    let (status, answer) = server.post(
        "/get-online-features",
        &format!(r#"{{"features": ["driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": [{driver}]}}}}"#),
    );
    assert_eq!(status, 200, "{answer}\n{}", server.log());
    answer["results"][1]["values"][0].as_i64()
}

/// driver_stats, applied and backfilled, its store on `disk`, writes
/// refused below `reserve` free bytes.
fn repo_on(disk: &SmallDisk, reserve: u64) -> kit::TempRepo {
    let mut repo = kit::TempRepo::with_data("driver_stats", kit::next_hour());
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
    repo
}

fn current_uid() -> u32 {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_is_freed() {
    if !Tier::Drills.enter() {
        return;
    }
    let disk = SmallDisk::mount(128);
    let reserve: u64 = 24 << 20;
    let repo = repo_on(&disk, reserve);
    let server = repo.serve(&[]);
    let now = skewless_runtime::time::now_micros;
    let read = |driver: i64| trips(&server, driver);
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

#[test]
fn a_write_fault_redb_latches_is_cleared_by_reopening_the_live_store_while_serving() {
    if !Tier::Drills.enter() {
        return;
    }
    // No reserve: the disk fills inside a redb write, which then refuses
    // every write until the file is reopened, even once space is freed.
    let disk = SmallDisk::mount(128);
    let repo = repo_on(&disk, 0);
    let server = repo.serve(&[]);
    let now = skewless_runtime::time::now_micros;
    let read = |driver: i64| trips(&server, driver);
    assert_eq!(server.post_text("/push", &push_body(&[1001], 111, now())).0, 200);

    // Fill the disk, then push until a write fails for want of space.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; (disk.free_bytes() - (1 << 20)) as usize]).unwrap();
    let drivers: Vec<i64> = (2_000..4_000).collect();
    let failed = (0..200).find_map(|i| {
        let (status, text) = server.post_text("/push", &push_body(&drivers, i, now()));
        (status != 200).then_some((status, text))
    });
    let (status, text) = failed.expect("a full disk fails a push");
    assert!(status >= 500, "{status} {text}");

    // Space freed: the fault is latched until the store is reopened, and
    // the answer says so, and what to do.
    std::fs::remove_file(&filler).unwrap();
    let (status, text) = server.post_text("/push", &push_body(&[1001], 222, now()));
    assert_eq!(status, 503, "redb latched the fault: {text}");
    assert!(text.contains("store_fault") && text.contains("skewless swap"), "{text}");
    let (status, answer) = server.post("/admin/swap", "");
    assert_eq!(status, 200, "{answer}");
    assert!(answer["version"].is_null() && answer["retired"].is_null(), "{answer}");
    let (status, text) = server.post_text("/push", &push_body(&[1001], 333, now()));
    assert_eq!(status, 200, "{text}");
    assert_eq!(read(1001), Some(333));
    drop(server);
    repo.ok(&["verify", "--samples", "200", "--seed", "11"]);
}
