//! Drift: how far the values served (or stored over a time range) have
//! moved from the values a model was trained on, per feature.
//!
//! Numbers: the population stability index over ten bins cut at the
//! baseline's deciles, and the two-sample Kolmogorov-Smirnov distance.
//! Strings: the population stability index over values. Both: the change
//! in the share of nulls. Shares of zero are floored at [`FLOOR`] so the
//! index stays finite, as is usual.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::format::value::{Value, decode_columns};
use crate::repo::DriftThresholds;
use crate::served_log::number;
use crate::types::{FeatureType, FieldSpec};

/// The smallest share a bin counts with.
pub const FLOOR: f64 = 1e-4;

/// The drift of one feature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// The view.
    pub view: String,
    /// The feature.
    pub feature: String,
    /// Baseline values (nulls included).
    pub baseline_rows: usize,
    /// Compared values (nulls included).
    pub compared_rows: usize,
    /// Population stability index.
    pub psi: Option<f64>,
    /// Kolmogorov-Smirnov distance (numbers).
    pub ks: Option<f64>,
    /// Share of nulls in the baseline.
    pub baseline_null_rate: f64,
    /// Share of nulls in the compared values.
    pub compared_null_rate: f64,
    /// Strings: the values whose share moved most, `(value, baseline share, compared share)`.
    pub shifted_values: Vec<(String, f64, f64)>,
    /// The thresholds applied: `(psi, ks, null_rate)`.
    pub thresholds: (f64, f64, f64),
    /// What crossed a threshold, in words; empty when nothing did.
    pub crossed: Vec<String>,
}

/// `skewless drift`'s findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftReport {
    /// The training set compared with.
    pub baseline: String,
    /// What was compared: served-value logs since a time, or a stored range.
    pub compared: String,
    /// When (microseconds UTC).
    pub computed_at: i64,
    /// Per feature found in both.
    pub features: Vec<FeatureDrift>,
}

impl DriftReport {
    /// Whether any feature crossed a threshold.
    pub fn drifted(&self) -> bool {
        self.features.iter().any(|f| !f.crossed.is_empty())
    }
}

/// Where `skewless drift` keeps its latest report (beside the store), for
/// the server's gauges and its UI.
pub fn report_path(repo: &crate::Repo) -> std::path::PathBuf {
    repo.store_path.with_file_name("drift.json")
}

/// The latest report, if `skewless drift` has run.
pub fn latest_report(repo: &crate::Repo) -> Option<DriftReport> {
    let text = std::fs::read_to_string(report_path(repo)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A training set's columns that hold feature values, read whole: by column name.
pub fn read_baseline(path: &Path) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: not a Parquet training set: {e}", path.display()))?;
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let Some(data_type) = FeatureType::from_arrow(field.data_type()) else {
                continue;
            };
            let spec = FieldSpec {
                name: field.name().clone(),
                data_type,
                nullable: true,
            };
            let rows = decode_columns(std::slice::from_ref(column), &[spec]).map_err(|e| e.to_string())?;
            out.entry(field.name().clone())
                .or_default()
                .extend(rows.into_iter().map(|mut r| r.pop().unwrap_or(Value::Null)));
        }
    }
    Ok(out)
}

/// Compares `compared` with `baseline` for one feature.
pub fn feature_drift(
    view: &str,
    feature: &str,
    baseline: &[Value],
    compared: &[Value],
    thresholds: &DriftThresholds,
) -> FeatureDrift {
    let null_rate = |values: &[Value]| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().filter(|v| matches!(v, Value::Null)).count() as f64 / values.len() as f64
        }
    };
    let numbers = |values: &[Value]| -> Vec<f64> {
        let mut out: Vec<f64> = values.iter().filter_map(number).filter(|x| x.is_finite()).collect();
        out.sort_by(f64::total_cmp);
        out
    };
    let strings = |values: &[Value]| -> Vec<String> {
        values
            .iter()
            .filter_map(|v| match v {
                Value::Utf8(s) => Some(s.clone()),
                Value::Null
                | Value::Bool(_)
                | Value::Int64(_)
                | Value::Float32(_)
                | Value::Float64(_)
                | Value::Timestamp(_)
                | Value::List(_)
                | Value::Vector(_) => None,
            })
            .collect()
    };
    let (a, b) = (numbers(baseline), numbers(compared));
    let (psi, ks, shifted_values) = if !a.is_empty() && !b.is_empty() {
        (Some(numeric_psi(&a, &b)), Some(ks_distance(&a, &b)), Vec::new())
    } else {
        let (a, b) = (strings(baseline), strings(compared));
        if a.is_empty() || b.is_empty() {
            (None, None, Vec::new())
        } else {
            let (psi, shifted) = categorical_psi(&a, &b);
            (Some(psi), None, shifted)
        }
    };
    let (baseline_null_rate, compared_null_rate) = (null_rate(baseline), null_rate(compared));
    let limits = thresholds.of(view, feature);
    let mut crossed = Vec::new();
    if let Some(psi) = psi.filter(|&p| p > limits.0) {
        crossed.push(format!("PSI {psi:.3} > {}", limits.0));
    }
    if let Some(ks) = ks.filter(|&k| k > limits.1) {
        crossed.push(format!("KS {ks:.3} > {}", limits.1));
    }
    let null_change = (compared_null_rate - baseline_null_rate).abs();
    if null_change > limits.2 {
        crossed.push(format!(
            "null rate {:.1}% -> {:.1}% (change > {}%)",
            baseline_null_rate * 100.0,
            compared_null_rate * 100.0,
            limits.2 * 100.0
        ));
    }
    FeatureDrift {
        view: view.to_string(),
        feature: feature.to_string(),
        baseline_rows: baseline.len(),
        compared_rows: compared.len(),
        psi,
        ks,
        baseline_null_rate,
        compared_null_rate,
        shifted_values,
        thresholds: limits,
        crossed,
    }
}

fn psi_of(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    pairs
        .map(|(a, b)| {
            let (a, b) = (a.max(FLOOR), b.max(FLOOR));
            (b - a) * (b / a).ln()
        })
        .sum()
}

/// Ten bins cut at the baseline's deciles (fewer when values repeat).
fn numeric_psi(baseline: &[f64], compared: &[f64]) -> f64 {
    let mut edges: Vec<f64> = (1..10).map(|i| baseline[i * (baseline.len() - 1) / 10]).collect();
    edges.dedup();
    let shares = |sorted: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; edges.len() + 1];
        for x in sorted {
            counts[edges.partition_point(|e| e < x)] += 1;
        }
        counts.iter().map(|&c| c as f64 / sorted.len() as f64).collect()
    };
    let (a, b) = (shares(baseline), shares(compared));
    psi_of(a.into_iter().zip(b))
}

/// The largest distance between the two empirical distribution functions.
fn ks_distance(a: &[f64], b: &[f64]) -> f64 {
    let (mut i, mut j, mut distance) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        distance = distance.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    distance
}

/// PSI over values, and the five values whose share moved most.
fn categorical_psi(baseline: &[String], compared: &[String]) -> (f64, Vec<(String, f64, f64)>) {
    let mut shares: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for v in baseline {
        shares.entry(v).or_default().0 += 1.0 / baseline.len() as f64;
    }
    for v in compared {
        shares.entry(v).or_default().1 += 1.0 / compared.len() as f64;
    }
    let psi = psi_of(shares.values().copied());
    let mut shifted: Vec<(String, f64, f64)> = shares.iter().map(|(v, &(a, b))| (v.to_string(), a, b)).collect();
    shifted.sort_by(|x, y| (y.2 - y.1).abs().total_cmp(&(x.2 - x.1).abs()).then(x.0.cmp(&y.0)));
    shifted.truncate(5);
    (psi, shifted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_and_psi_of_known_distributions() {
        let a: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(ks_distance(&a, &a), 0.0);
        assert!(numeric_psi(&a, &a).abs() < 1e-12);
        let shifted: Vec<f64> = a.iter().map(|x| x + 500.0).collect();
        assert!((ks_distance(&a, &shifted) - 0.5).abs() < 1e-9);
        assert!(numeric_psi(&a, &shifted) > 1.0);
        let (psi, moved) = categorical_psi(
            &["a".into(), "a".into(), "b".into(), "b".into()],
            &["a".into(), "b".into(), "b".into(), "b".into()],
        );
        assert!(psi > 0.1, "{psi}");
        assert_eq!(moved[0].0, "a");
    }
}

/// What `skewless drift` compares with a training set.
#[derive(Debug, Clone, Default)]
pub struct DriftQuery {
    /// The training set (Parquet, as `skewless dataset` writes it).
    pub baseline: std::path::PathBuf,
    /// Served values logged at or after this time (microseconds).
    pub since: Option<i64>,
    /// Stored values with event time at or after this, instead of served ones.
    pub from: Option<i64>,
    /// Stored values with event time before this, instead of served ones.
    pub to: Option<i64>,
}

/// Drift cannot be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriftError {
    /// The training set cannot be read.
    #[error("{0}")]
    Baseline(String),
    /// Nothing was served and logged to compare.
    #[error(
        "no served values logged in {folder}{since}: `skewless serve` logs a sample of its answers there \
         (`[monitoring] log_sample_rate`); or compare stored values with --from/--to"
    )]
    NothingServed {
        /// The log folder.
        folder: String,
        /// ` since TIME`, or nothing.
        since: String,
    },
    /// No compared feature is a column of the training set.
    #[error(
        "no feature of {compared} is a column of {baseline} (columns: {columns}); name its columns `feature` or \
         `view__feature`, as `skewless dataset` does"
    )]
    NoCommonFeature {
        /// What was compared.
        compared: String,
        /// The training set.
        baseline: String,
        /// Its columns, comma-separated.
        columns: String,
    },
    /// The served-value logs cannot be read.
    #[error(transparent)]
    Log(#[from] crate::served_log::LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The report cannot be kept beside the store.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The report's file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Compares what `query` names with its training set, per feature, and
/// keeps the report beside the store ([`report_path`]) for the server's
/// gauges and UI.
pub fn compare(repo: &crate::Repo, store: &crate::Store, query: &DriftQuery) -> Result<DriftReport, DriftError> {
    let baseline = read_baseline(&query.baseline).map_err(DriftError::Baseline)?;
    let since_text = query
        .since
        .map(|s| format!(" since {}", crate::time::format_timestamp(s)))
        .unwrap_or_default();
    let (compared, what) = if query.from.is_some() || query.to.is_some() {
        let (from, to) = (query.from.unwrap_or(i64::MIN), query.to.unwrap_or(i64::MAX));
        let mut compared: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        for view in store.views()?.values().filter(|v| v.kind_name() == "materialized") {
            store.for_each_row_between(view, from, to, |_, values| {
                for (field, value) in view.features.iter().zip(values) {
                    compared
                        .entry((view.name.clone(), field.name.clone()))
                        .or_default()
                        .push(value);
                }
            })?;
        }
        let to = if to == i64::MAX {
            "now".to_string()
        } else {
            crate::time::format_timestamp(to)
        };
        let what = format!(
            "stored values with event times in {} .. {to}",
            crate::time::format_timestamp(from.max(0))
        );
        (compared, what)
    } else {
        let folder = &repo.monitoring.log_folder;
        let compared = crate::served_log::read_served(folder, query.since, None)?;
        if compared.is_empty() {
            return Err(DriftError::NothingServed {
                folder: folder.display().to_string(),
                since: since_text,
            });
        }
        (
            compared,
            format!("served values logged in {}{since_text}", folder.display()),
        )
    };
    let mut features = Vec::new();
    for ((view, feature), values) in &compared {
        let column = baseline
            .get(&format!("{view}__{feature}"))
            .or_else(|| baseline.get(feature));
        if let Some(column) = column {
            features.push(feature_drift(view, feature, column, values, &repo.monitoring.drift));
        }
    }
    if features.is_empty() {
        return Err(DriftError::NoCommonFeature {
            compared: what,
            baseline: query.baseline.display().to_string(),
            columns: baseline.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let report = DriftReport {
        baseline: query.baseline.display().to_string(),
        compared: what,
        computed_at: crate::time::now_micros(),
        features,
    };
    let path = report_path(repo);
    let text = serde_json::to_string_pretty(&report).expect("a drift report serializes");
    std::fs::write(&path, text).map_err(|error| DriftError::Write { path, error })?;
    Ok(report)
}

/// One line per feature: sizes, PSI, KS, null rates, and what crossed a
/// threshold.
impl std::fmt::Display for DriftReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
        writeln!(
            f,
            "{:<40} {:>9} {:>9} {:>8} {:>8} {:>15}  drifted",
            "feature", "baseline", "compared", "psi", "ks", "null rate"
        )?;
        for d in &self.features {
            writeln!(
                f,
                "{:<40} {:>9} {:>9} {:>8} {:>8} {:>6.1}%->{:>5.1}%  {}",
                format!("{}:{}", d.view, d.feature),
                d.baseline_rows,
                d.compared_rows,
                show(d.psi),
                show(d.ks),
                d.baseline_null_rate * 100.0,
                d.compared_null_rate * 100.0,
                if d.crossed.is_empty() {
                    "no".to_string()
                } else {
                    format!("YES: {}", d.crossed.join("; "))
                }
            )?;
        }
        Ok(())
    }
}
