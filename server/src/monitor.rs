//! The server watching its own answers, off the request path: a sample of
//! answers goes to one background thread, which logs them to Parquet
//! ([`served_log`]) and reads some of them again through the offline path
//! ([`verify::recheck`], the skew monitor), counting mismatches per view.
//! A mismatch is expected never to happen: the same bytes go through the
//! same code on both paths.
//!
//! The request path pays a counter increment and a hash per answer, and
//! for a sampled one a clone of its columns (reference counted) pushed on
//! a bounded list under a lock: when the list is full the sample is
//! dropped and counted. The thread takes the whole list every
//! [`PERIOD`], so answers never wake it (a wake-up per sample cost a few
//! percent of throughput on 2 busy cores).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use skewless_runtime::online::{OnlineRequest, OnlineResponse};
use skewless_runtime::served_log::{self, LogWriter};
use skewless_runtime::store::{StoreReader, ViewRecord};
use skewless_runtime::{Catalog, verify};

use crate::live::LiveReader;
use crate::metrics::Metrics;

/// Samples waiting for the background thread, at most. A skew sample holds
/// a store snapshot, which keeps redb from reusing the pages it reads, for
/// at most [`PERIOD`].
const QUEUE: usize = 4096;
/// How often the background thread takes the samples waiting.
const PERIOD: Duration = Duration::from_millis(100);

/// What the server samples (`[monitoring]` in `skewless.toml`, or flags).
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Share of answers logged.
    pub log_sample_rate: f64,
    /// Folder of the logs.
    pub log_folder: PathBuf,
    /// Bytes the logs may take.
    pub log_max_bytes: u64,
    /// Share of answers read again through the offline path.
    pub skew_sample_rate: f64,
}

impl From<&skewless_runtime::repo::MonitoringSettings> for MonitorSettings {
    /// The repo's `[monitoring]`.
    fn from(m: &skewless_runtime::repo::MonitoringSettings) -> Self {
        MonitorSettings {
            log_sample_rate: m.log_sample_rate,
            log_folder: m.log_folder.clone(),
            log_max_bytes: m.log_max_megabytes.saturating_mul(1 << 20),
            skew_sample_rate: m.skew_sample_rate,
        }
    }
}

struct Sample {
    id: u64,
    request: OnlineRequest,
    response: OnlineResponse,
    /// The snapshot the answer was read from, for a skew check.
    reader: Option<Arc<LiveReader>>,
    log: bool,
}

/// What the request path hands to the background thread.
#[derive(Default)]
struct Queue {
    samples: Mutex<Vec<Sample>>,
    stopping: AtomicBool,
}

/// The sampler, on the request path, and its background thread.
pub struct Monitor {
    log_below: u64,
    skew_below: u64,
    answers: AtomicU64,
    queue: Arc<Queue>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// `rate` of all 64-bit hashes: a hash below it samples.
fn threshold(rate: f64) -> u64 {
    if rate >= 1.0 {
        u64::MAX
    } else {
        (rate * u64::MAX as f64) as u64
    }
}

/// SplitMix64: a well-mixed hash of the answer's number, so the sample is
/// spread evenly and the same answers are sampled on every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Monitor {
    /// Starts the background thread (when anything is sampled).
    pub fn start(
        settings: &MonitorSettings,
        catalog: Arc<Catalog>,
        records: Arc<BTreeMap<String, ViewRecord>>,
        metrics: Arc<Metrics>,
    ) -> Result<Monitor, served_log::LogError> {
        let mut monitor = Monitor {
            log_below: threshold(settings.log_sample_rate),
            skew_below: threshold(settings.skew_sample_rate),
            answers: AtomicU64::new(0),
            queue: Arc::new(Queue::default()),
            worker: Mutex::new(None),
        };
        if settings.log_sample_rate <= 0.0 {
            monitor.log_below = 0;
        }
        if settings.skew_sample_rate <= 0.0 {
            monitor.skew_below = 0;
        }
        if monitor.log_below == 0 && monitor.skew_below == 0 {
            return Ok(monitor);
        }
        let writer = if monitor.log_below > 0 {
            Some(LogWriter::open(&settings.log_folder, settings.log_max_bytes)?)
        } else {
            None
        };
        let queue = monitor.queue.clone();
        let worker = std::thread::Builder::new()
            .name("skewless-monitor".into())
            .spawn(move || work(&queue, writer, &catalog, &records, &metrics))
            .expect("a thread starts");
        *monitor.worker.get_mut().expect("unshared") = Some(worker);
        Ok(monitor)
    }

    /// Called with every answer: samples it, or not.
    pub fn answered(
        &self,
        request: &OnlineRequest,
        response: &OnlineResponse,
        reader: &Arc<LiveReader>,
        metrics: &Metrics,
    ) {
        if self.log_below == 0 && self.skew_below == 0 {
            return;
        }
        let id = self.answers.fetch_add(1, Ordering::Relaxed);
        let hash = mix(id);
        let (log, skew) = (hash < self.log_below, mix(hash) < self.skew_below);
        if !log && !skew {
            return;
        }
        if self.queue.stopping.load(Ordering::Relaxed) {
            return;
        }
        let sample = Sample {
            id,
            request: request.clone(),
            response: response.clone(),
            reader: skew.then(|| reader.clone()),
            log,
        };
        let mut samples = self.queue.samples.lock().expect("monitor queue");
        if samples.len() < QUEUE {
            samples.push(sample);
        } else {
            drop(samples);
            metrics.monitor_dropped();
        }
    }

    /// Stops sampling, and waits for the samples taken to be logged and checked.
    pub fn finish(&self) {
        self.queue.stopping.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.lock().expect("monitor worker").take() {
            worker.thread().unpark();
            let _ = worker.join();
        }
    }
}

/// The background thread: until the server stops sampling.
fn work(
    queue: &Queue,
    mut writer: Option<LogWriter>,
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    metrics: &Metrics,
) {
    let flush = |writer: &mut Option<LogWriter>| {
        if let Some(writer) = writer {
            let rows = writer.pending();
            match writer.flush() {
                Ok(Some(path)) => {
                    metrics.served_log_rows(rows as u64);
                    tracing::debug!(file = %path.display(), rows, "served-value log written");
                }
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
    };
    loop {
        let stopping = queue.stopping.load(Ordering::Relaxed);
        let samples = std::mem::take(&mut *queue.samples.lock().expect("monitor queue"));
        for sample in samples {
            if sample.log
                && let Some(w) = &mut writer
            {
                w.append(sample.id, &sample.request, &sample.response);
                if w.due() {
                    flush(&mut writer);
                }
            }
            if let Some(reader) = &sample.reader {
                check(catalog, records, reader, &sample, metrics);
            }
        }
        if stopping {
            break;
        }
        if writer.as_ref().is_some_and(LogWriter::due) {
            flush(&mut writer);
        }
        std::thread::park_timeout(PERIOD);
    }
    flush(&mut writer);
}

/// The skew check of one sampled answer.
fn check(
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    reader: &StoreReader,
    sample: &Sample,
    metrics: &Metrics,
) {
    match verify::recheck(catalog, records, reader, &sample.request, &sample.response) {
        Ok(report) => {
            for (view, compared) in &report.compared_by_view {
                metrics.skew_checked(view, *compared as u64);
            }
            for difference in &report.differences {
                metrics.skew_mismatch(&difference.view);
                tracing::error!(
                    view = %difference.view,
                    feature = %difference.feature,
                    entity = %difference.entity,
                    online = %difference.online,
                    offline = %difference.offline,
                    "skew: a served value differs from the training-data join at the same instant"
                );
            }
        }
        Err(e) => tracing::warn!("skew monitor: could not read an answer again: {e}"),
    }
}
