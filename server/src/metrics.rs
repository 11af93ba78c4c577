//! Prometheus metrics (`GET /metrics`, text format): requests, errors and
//! latency per route; reads, errors, store time and transform time per view;
//! store write time for pushes; and what the monitor sees: skew checks and
//! mismatches, logged rows, each view's freshness, the latest drift figures.

use std::time::Duration;

use skewless_runtime::online::ViewTiming;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
struct FeatureLabels {
    view: String,
    feature: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    source: String,
    partition: i32,
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
    view_shared_calls: Family<ViewLabels, Counter>,
    view_seconds: Latency<StageLabels>,
    store_write_seconds: Histogram,
    skew_checked: Family<ViewLabels, Counter>,
    skew_mismatches: Family<ViewLabels, Counter>,
    served_log_rows: Counter,
    monitor_dropped: Counter,
    freshness: Family<ViewLabels, FloatGauge>,
    drift_psi: Family<FeatureLabels, FloatGauge>,
    drift_ks: Family<FeatureLabels, FloatGauge>,
    drift_null_rate: Family<FeatureLabels, FloatGauge>,
    drift_crossed: Family<FeatureLabels, FloatGauge>,
    replication_lag: Gauge,
    replication_applied: Gauge,
    replication_skipped: Counter,
    kafka_records: Family<PartitionLabels, Counter>,
    kafka_skipped: Family<PartitionLabels, Counter>,
    kafka_lag: Family<PartitionLabels, Gauge>,
    kafka_offset: Family<PartitionLabels, Gauge>,
    /// The skew counters by view, readable (for the UI): (checked, mismatches).
    skew: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("skewless");
        let requests = Family::default();
        let errors = Family::default();
        let request_seconds = Latency::new_with_constructor(latency as fn() -> Histogram);
        let view_reads = Family::default();
        let view_errors = Family::default();
        let view_shared_calls = Family::default();
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
            "view_shared_calls",
            "Online reads whose on-demand transform call also carried other requests' rows",
            view_shared_calls.clone(),
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
        let skew_checked = Family::default();
        let skew_mismatches = Family::default();
        let served_log_rows = Counter::default();
        let monitor_dropped = Counter::default();
        let freshness = Family::default();
        let drift_psi = Family::default();
        let drift_ks = Family::default();
        let drift_null_rate = Family::default();
        let drift_crossed = Family::default();
        registry.register(
            "skew_checked",
            "Served values read again through the offline path by the skew monitor, by view",
            skew_checked.clone(),
        );
        registry.register(
            "skew_mismatches",
            "Served values that differed from the offline path at the same instant (expected: 0)",
            skew_mismatches.clone(),
        );
        registry.register(
            "served_log_rows",
            "Rows written to the served-value logs",
            served_log_rows.clone(),
        );
        registry.register(
            "monitor_dropped",
            "Sampled answers dropped because the monitor's queue was full",
            monitor_dropped.clone(),
        );
        registry.register(
            "view_freshness_seconds",
            "Age of the newest event time stored for the view",
            freshness.clone(),
        );
        registry.register(
            "drift_psi",
            "Population stability index at the latest `skewless drift`",
            drift_psi.clone(),
        );
        registry.register(
            "drift_ks",
            "Kolmogorov-Smirnov distance at the latest `skewless drift`",
            drift_ks.clone(),
        );
        registry.register(
            "drift_null_rate_change",
            "Change in the share of nulls at the latest `skewless drift`",
            drift_null_rate.clone(),
        );
        registry.register(
            "drift_threshold_crossed",
            "1 when the feature crossed a threshold at the latest `skewless drift`",
            drift_crossed.clone(),
        );
        let (replication_lag, replication_applied, replication_skipped) =
            (Gauge::default(), Gauge::default(), Counter::default());
        registry.register(
            "replication_lag_messages",
            "Replicated serving: messages in the log this replica has not applied yet",
            replication_lag.clone(),
        );
        registry.register(
            "replication_applied_sequence",
            "Replicated serving: stream sequence of the last log message applied",
            replication_applied.clone(),
        );
        registry.register(
            "replication_skipped_messages",
            "Replicated serving: log messages recorded and skipped (they fail on every replica)",
            replication_skipped.clone(),
        );
        let (kafka_records, kafka_skipped, kafka_lag, kafka_offset) = (
            Family::default(),
            Family::default(),
            Family::default(),
            Family::default(),
        );
        registry.register(
            "kafka_records",
            "Kafka sources: records stored, by source and partition",
            kafka_records.clone(),
        );
        registry.register(
            "kafka_skipped_records",
            "Kafka sources: records recorded and skipped (undecodable, or refused by the view), by source and partition",
            kafka_skipped.clone(),
        );
        registry.register(
            "kafka_lag_records",
            "Kafka sources: records behind the partition's high watermark as the broker last reported it",
            kafka_lag.clone(),
        );
        registry.register(
            "kafka_next_offset",
            "Kafka sources: the next offset to read, as stored with the rows",
            kafka_offset.clone(),
        );
        Metrics {
            kafka_records,
            kafka_skipped,
            kafka_lag,
            kafka_offset,
            replication_lag,
            replication_applied,
            replication_skipped,
            skew: Default::default(),
            skew_checked,
            skew_mismatches,
            served_log_rows,
            monitor_dropped,
            freshness,
            drift_psi,
            drift_ks,
            drift_null_rate,
            drift_crossed,
            registry,
            requests,
            errors,
            request_seconds,
            view_reads,
            view_errors,
            view_shared_calls,
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
    pub fn view(&self, timing: &ViewTiming) {
        let labels = ViewLabels {
            view: timing.view.clone(),
        };
        if !timing.transform {
            self.view_reads.get_or_create(&labels).inc();
        }
        if timing.shared {
            self.view_shared_calls.get_or_create(&labels).inc();
        }
        self.view_seconds
            .get_or_create(&StageLabels {
                view: labels.view,
                stage: if timing.transform { "transform" } else { "store" },
            })
            .observe(timing.elapsed.as_secs_f64());
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

    /// Values of `view` read again by the skew monitor.
    pub fn skew_checked(&self, view: &str, values: u64) {
        let labels = ViewLabels { view: view.to_string() };
        self.skew_checked.get_or_create(&labels).inc_by(values);
        self.skew
            .lock()
            .expect("skew counts")
            .entry(view.to_string())
            .or_default()
            .0 += values;
        // Shown from the first check on, at 0: a flat line is the good news.
        drop(self.skew_mismatches.get_or_create(&labels));
    }

    /// A served value that the offline path reads differently.
    pub fn skew_mismatch(&self, view: &str) {
        self.skew
            .lock()
            .expect("skew counts")
            .entry(view.to_string())
            .or_default()
            .1 += 1;
        self.skew_mismatches
            .get_or_create(&ViewLabels { view: view.to_string() })
            .inc();
    }

    /// The skew counters by view: (values checked, mismatches).
    pub fn skew_counts(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        self.skew.lock().expect("skew counts").clone()
    }

    /// Rows written to a served-value log file.
    pub fn served_log_rows(&self, rows: u64) {
        self.served_log_rows.inc_by(rows);
    }

    /// A sampled answer the monitor had no room for.
    pub fn monitor_dropped(&self) {
        self.monitor_dropped.inc();
    }

    /// Where this replica stands in the replication log.
    pub fn replication(&self, applied: u64, lag: u64) {
        self.replication_applied.set(applied as i64);
        self.replication_lag.set(lag as i64);
    }

    /// Records of a Kafka partition stored (`stored`) and skipped, and
    /// where the partition stands.
    pub fn kafka(&self, source: &str, partition: i32, stored: u64, skipped: u64, next: u64) {
        let labels = PartitionLabels {
            source: source.to_string(),
            partition,
        };
        self.kafka_records.get_or_create(&labels).inc_by(stored);
        self.kafka_skipped.get_or_create(&labels).inc_by(skipped);
        self.kafka_offset.get_or_create(&labels).set(next as i64);
    }

    /// A Kafka partition's lag: records behind the high watermark the
    /// broker reported with the last fetch.
    pub fn kafka_lag(&self, source: &str, partition: i32, lag: u64) {
        let labels = PartitionLabels {
            source: source.to_string(),
            partition,
        };
        self.kafka_lag.get_or_create(&labels).set(lag as i64);
    }

    /// One log message recorded and skipped.
    pub fn replication_skipped(&self) {
        self.replication_skipped.inc();
    }

    /// The age of a view's newest stored event time.
    pub fn freshness(&self, view: &str, seconds: f64) {
        self.freshness
            .get_or_create(&ViewLabels { view: view.to_string() })
            .set(seconds);
    }

    /// One feature's figures from the latest drift report.
    pub fn drift(&self, f: &skewless_runtime::drift::FeatureDrift) {
        let labels = FeatureLabels {
            view: f.view.clone(),
            feature: f.feature.clone(),
        };
        if let Some(psi) = f.psi {
            self.drift_psi.get_or_create(&labels).set(psi);
        }
        if let Some(ks) = f.ks {
            self.drift_ks.get_or_create(&labels).set(ks);
        }
        self.drift_null_rate
            .get_or_create(&labels)
            .set(f.compared_null_rate - f.baseline_null_rate);
        self.drift_crossed
            .get_or_create(&labels)
            .set(if f.crossed.is_empty() { 0.0 } else { 1.0 });
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
