//! The server past capacity, on a real socket: requests beyond
//! `--max-in-flight` are shed with 503 `overloaded` and `Retry-After`, and
//! admitted ones keep their latency. Alone in its test binary, so that no
//! other test shares the 2 cores while latency is measured.

use skewless_testkit as kit;

use std::time::Duration;

use kit::load::{Answer, Load, Request, quantile};
use kit::{TempRepo, fresh_driver_repo, test_components};

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
        let request = Request::post(
            "/get-online-features",
            r#"{"features": ["burning"], "entities": {"x": [5000000]}}"#,
        );
        let load = Load::new(&server.base);
        let next = move |_, _| request.clone();
        let closed = |time| load.closed(1, time, next.clone());
        closed(Duration::from_millis(300)).await; // warm up

        let unloaded = closed(Duration::from_secs(1)).await;
        assert!(unloaded.iter().all(|a| a.status == 200));
        let unloaded_p99 = quantile(&unloaded, 0.99);
        let unloaded_median = quantile(&unloaded, 0.5);

        let at_capacity = closed(Duration::from_secs(2)).await;
        assert!(at_capacity.iter().all(|a| a.status == 200));
        let capacity = at_capacity.len() as f64 / 2.0;

        let offered = 4.0 * capacity;
        let overload = load.open(offered, Duration::from_secs(3), next(0, 0)).await;
        let answered: Vec<Answer> = overload.iter().copied().filter(|a| a.status == 200).collect();
        let shed: Vec<Answer> = overload.iter().copied().filter(|a| a.status == 503).collect();
        assert_eq!(answered.len() + shed.len(), overload.len(), "only 200 and 503 under overload");
        assert!(shed.iter().all(|a| a.retry_after), "every 503 says when to retry");
        let overload_p99 = quantile(&answered, 0.99);

        // Load drops: answered at once, as fast as before.
        let after = closed(Duration::from_millis(500)).await;
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
