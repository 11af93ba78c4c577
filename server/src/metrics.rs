//! Prometheus metrics (`GET /metrics`, text format): requests, errors and
//! latency per route; reads, errors, store time and transform time per view;
//! store write time for pushes.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds: 25 us to 5 s, so both a memory-speed read
/// and a transform near its time limit land in a bucket of their own.
const BUCKETS: [f64; 16] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0, 5.0,
];

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

type Latency<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViewLabels {
    view: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    view: String,
    stage: &'static str,
}

/// Every metric the server keeps, and the registry that prints them.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    request_seconds: Latency<RouteLabels>,
    view_reads: Family<ViewLabels, Counter>,
    view_errors: Family<ViewLabels, Counter>,
    view_seconds: Latency<StageLabels>,
    store_write_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("skewless");
        let requests = Family::default();
        let errors = Family::default();
        let request_seconds = Latency::new_with_constructor(latency as fn() -> Histogram);
        let view_reads = Family::default();
        let view_errors = Family::default();
        let view_seconds = Latency::new_with_constructor(latency as fn() -> Histogram);
        let store_write_seconds = latency();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register("http_errors", "Error answers, by route and error code", errors.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time from request to answer, by route",
            request_seconds.clone(),
        );
        registry.register("view_reads", "Online reads that included the view", view_reads.clone());
        registry.register(
            "view_errors",
            "Online reads or pushes that failed in the view's transform",
            view_errors.clone(),
        );
        registry.register(
            "view_duration_seconds",
            "Time per view and request: `store` reads of materialized views, `transform` calls",
            view_seconds.clone(),
        );
        registry.register(
            "store_write_duration_seconds",
            "Time to commit a push durably",
            store_write_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            request_seconds,
            view_reads,
            view_errors,
            view_seconds,
            store_write_seconds,
        }
    }
}

impl Metrics {
    /// One answered request.
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&StatusLabels { route, status }).inc();
        self.request_seconds
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// One error answer.
    pub fn error(&self, route: &'static str, code: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                route,
                code: code.to_string(),
            })
            .inc();
    }

    /// Time spent on one view in one request.
    pub fn view(&self, view: &str, transform: bool, elapsed: Duration) {
        let labels = ViewLabels { view: view.to_string() };
        if !transform {
            self.view_reads.get_or_create(&labels).inc();
        }
        self.view_seconds
            .get_or_create(&StageLabels {
                view: labels.view,
                stage: if transform { "transform" } else { "store" },
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A transform failure in a view.
    pub fn view_error(&self, view: &str) {
        self.view_errors
            .get_or_create(&ViewLabels { view: view.to_string() })
            .inc();
    }

    /// One durable push commit.
    pub fn store_write(&self, elapsed: Duration) {
        self.store_write_seconds.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
