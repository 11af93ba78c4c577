//! Load on `skewless serve` over loopback, beside a bare axum JSON handler
//! measured in the same run: requests/s and p50/p99 latency at 1, 4 and 16
//! connections for 1 entity with the on-demand view (in Rust, and in Python), 100 entities, and a
//! push of 1 row; the on-demand read with a bearer token and with an RS256
//! JWT; the same reads with the monitor off (no served-value logging, no
//! skew checks) against its defaults (10% logged, 1% re-read), A/B round by
//! round; and the server's cold start (process start to first answer,
//! compile cache warm).
//!
//! The load generator is this process (the test kit's `load`): HTTP/1.1
//! keep-alive connections (hyper), closed loop, all on one thread, so it takes one of the
//! machine's cores and the server the rest, as wrk would.
//!
//! Run: cargo bench --bench serve
//! (BENCH_SECS=3 per point; BENCH_ROUNDS=3, each running every point once,
//! the floor included; BENCH_FILTER=substring of a workload;
//! BENCH_CONNECTIONS=1,4,16; LOUD_ARGS="--log-sample-rate=1" serves the
//! monitored workloads with these flags instead of the defaults: a cost
//! too small to see through this machine's noise at 10% is measured at
//! 100% and scaled)

use skewless_testkit as kit;

use std::time::{Duration, Instant};

use kit::load::{Load, Request, on_one_thread};

/// The floor every workload is compared with.
const BARE: &str = "bare axum JSON echo (floor)";

/// Set in the child process that serves the bare axum handler.
const BARE_SERVER: &str = "SKEWLESS_BENCH_BARE_SERVER";

struct Point {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Point {
    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        let index = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index] as f64
    }
}

/// (min, median, max) of `values`.
fn spread(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    (values[0], values[values.len() / 2], values[values.len() - 1])
}

/// Closed-loop load: `connections` keep-alive connections, each sending
/// `body` to `path` as soon as the previous answer arrived, for `duration`.
fn load(addr: &str, path: &str, body: &str, auth: Option<&str>, connections: usize, duration: Duration) -> Point {
    let request = Request::post(path, body.to_string()).with_token(auth);
    let started = Instant::now();
    let answers = on_one_thread(Load::new(addr).closed(connections, duration, move |_, _| request.clone()));
    let elapsed = started.elapsed();
    let mut latencies: Vec<u32> = answers.iter().map(|a| a.latency.as_micros() as u32).collect();
    latencies.sort_unstable();
    Point {
        requests: answers.len(),
        errors: answers.iter().filter(|a| !a.is_success()).count(),
        elapsed,
        latencies,
    }
}

/// The floor: an axum handler that parses the JSON body and echoes it.
fn bare_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/get-online-features",
            axum::routing::post(|axum::Json(body): axum::Json<serde_json::Value>| async move { axum::Json(body) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("Serving bare on http://{} ", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

fn main() {
    if std::env::var_os(BARE_SERVER).is_some() {
        return bare_server();
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let duration = Duration::from_secs_f64(secs);
    let connection_counts: Vec<usize> = std::env::var("BENCH_CONNECTIONS")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_CONNECTIONS: numbers, e.g. 1,4,16"))
        .collect();

    let repo = kit::fresh_driver_repo();
    // The same on-demand view written in Python, beside the Rust one.
    let python = kit::language_example("python", "transformed_conv_rate");
    let config = repo.path().join("skewless.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[views.transformed_conv_rate_py]\nkind = \"on_demand\"\nsources = [\"driver_hourly_stats\", \"vals_to_add\"]\ntransform = \"{}\"\n",
        python.display()
    ));
    std::fs::write(&config, text).unwrap();
    repo.ok(&["apply"]);
    // The repo's defaults: 10% of answers logged, 1% re-read by the skew monitor.
    let loud = std::env::var("LOUD_ARGS").unwrap_or_default();
    let loud: Vec<&str> = loud.split(' ').filter(|a| !a.is_empty()).collect();
    let server = repo.serve(&loud);
    let ours = server.base.trim_start_matches("http://").to_string();
    let quiet = repo.serve(&["--log-sample-rate", "0", "--skew-sample-rate", "0"]);
    let quiet_addr = quiet.base.trim_start_matches("http://").to_string();
    let mut bare = std::process::Command::new(std::env::current_exe().unwrap())
        .env(BARE_SERVER, "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bare_addr = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(bare.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.split("http://").nth(1).unwrap().trim().to_string()
    };

    let one = r#"{"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "driver_hourly_stats:avg_daily_trips", "transformed_conv_rate:conv_rate_plus_val1", "transformed_conv_rate:conv_rate_plus_val2"], "entities": {"driver_id": [1001], "val_to_add": [1000]}}"#.to_string();
    let python_one = one.replace("transformed_conv_rate:", "transformed_conv_rate_py:");
    let stored = r#"{"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "driver_hourly_stats:avg_daily_trips"], "entities": {"driver_id": [1001]}}"#.to_string();
    let ids: Vec<i64> = (1001..1101).collect();
    let hundred = format!(
        r#"{{"features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate", "driver_hourly_stats:avg_daily_trips"], "entities": {{"driver_id": {ids:?}}}}}"#
    );
    let push = r#"{"push_source_name": "driver_stats_push_source", "df": {"driver_id": [1001], "event_timestamp": ["2026-01-01T00:00:00Z"], "created": ["2026-01-01T00:00:00Z"], "conv_rate": [0.5], "acc_rate": [0.5], "avg_daily_trips": [10]}, "to": "online_and_offline"}"#.to_string();
    // Every body must be answered 200 before it is timed.
    for (path, body) in [
        ("/get-online-features", &one),
        ("/get-online-features", &python_one),
        ("/get-online-features", &stored),
        ("/get-online-features", &hundred),
        ("/push", &push),
    ] {
        let (status, response) = server.post(path, body);
        assert_eq!(status, 200, "{response}");
    }

    // The same server with auth: a bearer token (a hash lookup) and an RS256 JWT
    // (verified once, then cached until it expires).
    let token = repo
        .ok(&["token", "add", "bench", "--scopes", "admin"])
        .trim()
        .to_string();
    let fixtures = kit::root().join("tests/fixtures");
    let jwk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("jwt_rs256_test_key.jwk.json")).unwrap()).unwrap();
    let jwks = repo.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({"keys": [jwk]}).to_string()).unwrap();
    let tokens = repo.path().join("tokens.toml");
    let authed = repo.serve(&["--tokens", tokens.to_str().unwrap(), "--jwks", jwks.to_str().unwrap()]);
    let authed_addr = authed.base.trim_start_matches("http://").to_string();
    let jwt = {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixtures.join("jwt_rs256_test_key.pem")).unwrap())
                .unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-rsa".into());
        let exp = skewless_runtime::time::now_micros() / 1_000_000 + 3600;
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "bench", "exp": exp, "scope": "read"}),
            &key,
        )
        .unwrap()
    };
    for auth in [&token, &jwt] {
        let (status, response) = authed.post_as(Some(auth), "/get-online-features", &one);
        assert_eq!(status, 200, "{response}");
    }

    let workloads: [(&str, &str, &str, &str, Option<&str>); 10] = [
        (BARE, &bare_addr, "/get-online-features", &one, None),
        (
            "1 entity, 3 stored features",
            &ours,
            "/get-online-features",
            &stored,
            None,
        ),
        ("1 entity + on-demand view", &ours, "/get-online-features", &one, None),
        (
            "1 entity + on-demand view in Python",
            &ours,
            "/get-online-features",
            &python_one,
            None,
        ),
        (
            "1 entity, 3 stored features, monitor off",
            &quiet_addr,
            "/get-online-features",
            &stored,
            None,
        ),
        (
            "1 entity + on-demand view, monitor off",
            &quiet_addr,
            "/get-online-features",
            &one,
            None,
        ),
        (
            "1 entity + on-demand view, bearer token",
            &authed_addr,
            "/get-online-features",
            &one,
            Some(&token),
        ),
        (
            "1 entity + on-demand view, RS256 JWT",
            &authed_addr,
            "/get-online-features",
            &one,
            Some(&jwt),
        ),
        (
            "100 entities, 3 features",
            &ours,
            "/get-online-features",
            &hundred,
            None,
        ),
        ("push 1 row, durable", &ours, "/push", &push, None),
    ];
    // The floor runs in every round, beside the workloads chosen: the
    // machine's speed drifts, so ratios are taken within a round.
    let chosen: Vec<_> = workloads
        .iter()
        .filter(|(name, ..)| *name == BARE || name.contains(&filter))
        .collect();
    for (_, addr, path, body, auth) in &chosen {
        load(addr, path, body, *auth, 4, Duration::from_millis(300)); // warm-up
    }
    let mut points: Vec<Vec<Vec<Point>>> = chosen
        .iter()
        .map(|_| connection_counts.iter().map(|_| Vec::new()).collect())
        .collect();
    for _ in 0..rounds {
        for (w, (_, addr, path, body, auth)) in chosen.iter().enumerate() {
            for (c, connections) in connection_counts.iter().enumerate() {
                points[w][c].push(load(addr, path, body, *auth, *connections, duration));
            }
        }
    }
    println!("Medians of {rounds} rounds ({secs} s per point); in brackets, the range over rounds.\n");
    println!("| workload | connections | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (w, (name, ..)) in chosen.iter().enumerate() {
        for (c, connections) in connection_counts.iter().enumerate() {
            let rounds = &points[w][c];
            let rps = spread(rounds.iter().map(Point::requests_per_second));
            let p50 = spread(rounds.iter().map(|p| p.percentile(0.50)));
            let p99 = spread(rounds.iter().map(|p| p.percentile(0.99)));
            let errors: usize = rounds.iter().map(|p| p.errors).sum();
            println!(
                "| {name} | {connections} | {:.0} [{:.0}-{:.0}] | {:.0} us | {:.0} us [{:.0}-{:.0}] | {errors} |",
                rps.1, rps.0, rps.2, p50.1, p99.1, p99.0, p99.2
            );
        }
    }
    println!("\nAgainst the floor, round by round (median [range]):\n");
    println!("| workload | connections | requests/s vs floor | p99 vs floor |");
    println!("|---|---:|---:|---:|");
    for (w, (name, ..)) in chosen.iter().enumerate().skip(1) {
        for (c, connections) in connection_counts.iter().enumerate() {
            let pairs = || points[w][c].iter().zip(&points[0][c]);
            let rps = spread(pairs().map(|(ours, bare)| ours.requests_per_second() / bare.requests_per_second()));
            let p99 = spread(pairs().map(|(ours, bare)| ours.percentile(0.99) / bare.percentile(0.99)));
            println!(
                "| {name} | {connections} | {:.2}x [{:.2}-{:.2}] | {:.2}x [{:.2}-{:.2}] |",
                rps.1, rps.0, rps.2, p99.1, p99.0, p99.2
            );
        }
    }
    println!("\nThe monitor at its defaults against off, round by round (median [range]):\n");
    println!("| workload | connections | requests/s, defaults vs off | p99, defaults vs off |");
    println!("|---|---:|---:|---:|");
    for (w, (name, ..)) in chosen.iter().enumerate() {
        let off = format!("{name}, monitor off");
        let Some(o) = chosen.iter().position(|(n, ..)| *n == off) else {
            continue;
        };
        for (c, connections) in connection_counts.iter().enumerate() {
            let pairs = || points[w][c].iter().zip(&points[o][c]);
            let rps = spread(pairs().map(|(on, off)| on.requests_per_second() / off.requests_per_second()));
            let p99 = spread(pairs().map(|(on, off)| on.percentile(0.99) / off.percentile(0.99)));
            println!(
                "| {name} | {connections} | {:.3}x [{:.3}-{:.3}] | {:.2}x [{:.2}-{:.2}] |",
                rps.1, rps.0, rps.2, p99.1, p99.0, p99.2
            );
        }
    }
    let _ = bare.kill();
    let _ = bare.wait();
    drop(server);
    drop(quiet);
    drop(authed);

    // Cold start: process start to the first answered request, cache warm.
    if "cold start".contains(&filter) || filter.is_empty() {
        let mut times = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let server = repo.serve(&[]);
            let (status, _) = server.post("/get-online-features", &one);
            assert_eq!(status, 200);
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "\ncold start (spawn `skewless serve` to first answered /get-online-features, warm cache, median of 7): {:.1} ms (min {:.1}, max {:.1})",
            times[3].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[6].as_secs_f64() * 1e3
        );
    }
}
