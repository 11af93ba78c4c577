//! The server past capacity, on a real socket: requests beyond
//! `--max-in-flight` are shed with 503 `overloaded` and `Retry-After`, and
//! admitted ones keep their latency. Alone in its test binary, so that no
//! other test shares the 2 cores while latency is measured.

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
