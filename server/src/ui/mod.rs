//! The web UI at `/ui`: one page, its script and style embedded in the
//! binary (nothing is fetched from the network), drawing from one JSON
//! document, `/ui/api/overview`: the catalog (who uses what), freshness,
//! each feature's distribution (stored, training set, served), the latest
//! drift report and the skew counters.
//!
//! The page and its assets hold no data and need no credentials; the
//! overview needs the `read` scope (the page asks for a token when the
//! server answers 401, and keeps it in the browser's local storage).
//!
//! Plots are SVG drawn by the page's own few lines of JavaScript: a
//! histogram is a row of rectangles, and a charting library would be the
//! largest thing in the binary for that.

use std::collections::BTreeMap;

use serde::Serialize;
use skewless_runtime::repo::{FeatureRef, ViewKind};
use skewless_runtime::stats::{FeatureStats, Statistics, Summary};
use skewless_runtime::{drift, served_log};

use crate::error::ApiError;
use crate::state::Server;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script.
pub const APP_JS: &str = include_str!("app.js");
/// Its style.
pub const STYLE_CSS: &str = include_str!("style.css");

/// Served values read for the plots, at most (newest log files first).
const SERVED_ROWS: usize = 200_000;
/// Bins of a distribution plot.
const BINS: usize = 20;

#[derive(Serialize)]
struct Overview {
    project: String,
    entities: Vec<EntityInfo>,
    views: Vec<ViewInfo>,
    services: Vec<ServiceInfo>,
    distributions: Vec<Distribution>,
    drift: Option<drift::DriftReport>,
    training_set: Option<String>,
}

#[derive(Serialize)]
struct EntityInfo {
    name: String,
    join_keys: Vec<(String, String)>,
    description: String,
    views: Vec<String>,
}

#[derive(Serialize)]
struct ViewInfo {
    name: String,
    kind: &'static str,
    entities: Vec<String>,
    reads: Vec<String>,
    features: Vec<(String, String)>,
    owner: String,
    description: String,
    tags: BTreeMap<String, String>,
    digest: String,
    ttl_secs: Option<u64>,
    used_by_services: Vec<String>,
    used_by_views: Vec<String>,
    stored_rows: Option<u64>,
    freshness_secs: Option<f64>,
    skew_checked: u64,
    skew_mismatches: u64,
}

#[derive(Serialize)]
struct ServiceInfo {
    name: String,
    features: Vec<String>,
    description: String,
}

/// One feature's distributions, on shared bins.
#[derive(Serialize)]
struct Distribution {
    view: String,
    feature: String,
    data_type: String,
    stored: Option<Summary>,
    /// `(low, high)` of each bin.
    bins: Vec<(f64, f64)>,
    /// Counts per bin, by series: `stored`, `training`, `served`.
    series: BTreeMap<&'static str, Vec<u64>>,
    /// Strings: the most frequent values, by series.
    top: BTreeMap<&'static str, Vec<(String, u64)>>,
}

/// `GET /ui/api/overview`.
pub fn overview(server: &Server) -> Result<serde_json::Value, ApiError> {
    let catalog = server.catalog();
    let repo = &catalog.repo;
    let records = server.records();
    let store = server.store();
    let now = skewless_runtime::time::now_micros();
    let skew = server.metrics.skew_counts();
    let stored: BTreeMap<String, Statistics> = records
        .values()
        .filter_map(|r| Some((r.name.clone(), store.statistics(r).ok()??)))
        .collect();

    let drift = drift::latest_report(repo);
    let training = drift
        .as_ref()
        .and_then(|d| skewless_runtime::dataset::recorded_statistics(std::path::Path::new(&d.baseline)));
    let served = served_statistics(server);

    let reads = |kind: &ViewKind| -> (Vec<String>, Vec<String>) {
        match kind {
            ViewKind::Materialized { entities, source } | ViewKind::Aggregation { entities, source, .. } => {
                (entities.clone(), vec![source.clone()])
            }
            ViewKind::OnDemand { sources } => (Vec::new(), sources.clone()),
        }
    };
    let views = repo
        .views
        .values()
        .map(|view| {
            let record = records.get(&view.name);
            let (entities, read) = reads(&view.kind);
            let stats = stored.get(&view.name);
            let (checked, mismatches) = skew.get(&view.name).copied().unwrap_or_default();
            ViewInfo {
                name: view.name.clone(),
                kind: record.map_or("on-demand", |r| r.kind_name()),
                entities,
                reads: read,
                features: record
                    .map(|r| {
                        r.features
                            .iter()
                            .map(|f| (f.name.clone(), f.data_type.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                owner: view.owner.clone(),
                description: view.description.clone(),
                tags: view.tags.clone(),
                digest: record.map(|r| r.digest.to_string()).unwrap_or_default(),
                ttl_secs: view.ttl.map(|t| t.as_secs()),
                used_by_services: repo
                    .services
                    .values()
                    .filter(|s| s.features.iter().any(|f| f.view == view.name))
                    .map(|s| s.name.clone())
                    .collect(),
                used_by_views: repo
                    .views
                    .values()
                    .filter(|v| matches!(&v.kind, ViewKind::OnDemand { sources } if sources.contains(&view.name)))
                    .map(|v| v.name.clone())
                    .collect(),
                stored_rows: stats.filter(|s| !s.features.is_empty()).map(|s| s.rows),
                freshness_secs: stats.and_then(|s| s.newest_event_time).map(|t| (now - t) as f64 / 1e6),
                skew_checked: checked,
                skew_mismatches: mismatches,
            }
        })
        .collect();

    let mut distributions = Vec::new();
    for record in records.values() {
        for field in &record.features {
            let name = (record.name.clone(), field.name.clone());
            let stored_stats = stored.get(&record.name).and_then(|s| s.features.get(&field.name));
            let training_stats = training.as_ref().and_then(|t| {
                t.features
                    .get(&format!("{}__{}", record.name, field.name))
                    .or_else(|| t.features.get(&field.name))
            });
            let served_stats = served.get(&name);
            let series: Vec<(&'static str, &FeatureStats)> = [
                ("stored", stored_stats),
                ("training", training_stats),
                ("served", served_stats),
            ]
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
            .collect();
            if series.is_empty() {
                continue;
            }
            distributions.push(distribution(&record.name, field, stored_stats, &series));
        }
    }

    let overview = Overview {
        project: repo.project.clone(),
        entities: repo
            .entities
            .values()
            .map(|e| EntityInfo {
                name: e.name.clone(),
                join_keys: e
                    .join_keys
                    .iter()
                    .map(|k| (k.name.clone(), k.data_type.to_string()))
                    .collect(),
                description: e.description.clone(),
                views: repo
                    .views
                    .values()
                    .filter(|v| reads(&v.kind).0.contains(&e.name))
                    .map(|v| v.name.clone())
                    .collect(),
            })
            .collect(),
        views,
        services: repo
            .services
            .values()
            .map(|s| ServiceInfo {
                name: s.name.clone(),
                features: s.features.iter().map(FeatureRef::to_string).collect(),
                description: s.description.clone(),
            })
            .collect(),
        distributions,
        training_set: drift.as_ref().map(|d| d.baseline.clone()),
        drift,
    };
    Ok(serde_json::to_value(overview).expect("the overview serializes"))
}

fn distribution(
    view: &str,
    field: &skewless_runtime::FieldSpec,
    stored: Option<&FeatureStats>,
    series: &[(&'static str, &FeatureStats)],
) -> Distribution {
    let numeric: Vec<_> = series
        .iter()
        .filter_map(|(k, s)| Some((*k, s.numeric.as_ref().filter(|n| n.count > 0)?)))
        .collect();
    let low = numeric.iter().map(|(_, n)| n.min).fold(f64::INFINITY, f64::min);
    let high = numeric.iter().map(|(_, n)| n.max).fold(f64::NEG_INFINITY, f64::max);
    let width = (high - low) / BINS as f64;
    Distribution {
        view: view.to_string(),
        feature: field.name.clone(),
        data_type: field.data_type.to_string(),
        stored: stored.map(|s| s.summary(&field.name)),
        bins: if numeric.is_empty() {
            Vec::new()
        } else {
            (0..BINS)
                .map(|i| (low + width * i as f64, low + width * (i + 1) as f64))
                .collect()
        },
        series: numeric
            .iter()
            .map(|(k, n)| (*k, n.counts_over(low, high, BINS)))
            .collect(),
        top: series
            .iter()
            .filter_map(|(k, s)| {
                let top = s.values.as_ref()?.top(10);
                Some((*k, top.into_iter().map(|(v, n)| (v.to_string(), n)).collect()))
            })
            .collect(),
    }
}

/// Statistics of the newest served values in the logs, by (view, feature).
fn served_statistics(server: &Server) -> BTreeMap<(String, String), FeatureStats> {
    let folder = &server.catalog().repo.monitoring.log_folder;
    let Ok(values) = served_log::read_served(folder, None, Some(SERVED_ROWS)) else {
        return BTreeMap::new();
    };
    let records = server.records();
    values
        .into_iter()
        .filter_map(|((view, feature), values)| {
            let data_type = records
                .get(&view)?
                .features
                .iter()
                .find(|f| f.name == feature)?
                .data_type;
            let mut stats = FeatureStats::new(data_type);
            values.iter().for_each(|v| stats.add(v));
            Some(((view, feature), stats))
        })
        .collect()
}
