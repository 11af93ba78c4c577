//! `skewless stats VIEW[:FEATURE]`: the statistics a view keeps, or those of
//! a stored time range, as one report whose `Display` is what users read (a
//! table of every feature, or one feature in detail) and whose
//! [`StatsReport::summaries`] are what `--json` prints.

use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Store, StoreError, ViewRecord};
use crate::time;
use crate::types::FeatureType;

use crate::stats::{MAX_COUNTED_VALUES, RELATIVE_ERROR, Statistics, Summary};

/// What to show: a view or one feature, over what it keeps or a time range.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    /// The materialized view.
    pub view: String,
    /// One feature in detail, or every feature in a table.
    pub feature: Option<String>,
    /// Only stored rows with event time at or after this (microseconds).
    pub from: Option<i64>,
    /// Only stored rows with event time before this.
    pub to: Option<i64>,
}

impl StatsQuery {
    /// `VIEW` or `VIEW:FEATURE`.
    pub fn parse_target(target: &str) -> StatsQuery {
        let (view, feature) = match target.split_once(':') {
            Some((view, feature)) => (view, Some(feature.to_string())),
            None => (target, None),
        };
        StatsQuery {
            view: view.to_string(),
            feature,
            ..StatsQuery::default()
        }
    }
}

/// The statistics cannot be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// No such view in the registry.
    #[error("no view `{view}` in the registry; the views are: {views} (`skewless apply` records the repo)")]
    NoSuchView {
        /// The name asked for.
        view: String,
        /// The registry's views, comma-separated.
        views: String,
    },
    /// An on-demand or aggregation view keeps no statistics.
    #[error(
        "view `{view}` is {kind} view: its feature values exist only at a point in time, so it has no stored \
         statistics; its features' statistics are in the training sets `skewless dataset` writes and in the \
         served-value logs"
    )]
    NotStored {
        /// The view.
        view: String,
        /// `an on-demand` or `an aggregation`.
        kind: &'static str,
    },
    /// The view has no such feature.
    #[error("view `{view}` has no feature `{feature}`; its features are: {features}")]
    NoSuchFeature {
        /// The view.
        view: String,
        /// The name asked for.
        feature: String,
        /// The view's features, comma-separated.
        features: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The statistics of one view, or of one of its features.
#[derive(Debug, Clone)]
pub struct StatsReport {
    /// The view.
    pub view: String,
    /// What the figures describe: `as of commit N`, or a time range.
    pub scope: String,
    /// Rows described.
    pub rows: u64,
    /// One per feature shown.
    pub summaries: Vec<Summary>,
    /// Whether one feature was asked for (shown in detail).
    pub detail: bool,
}

/// The registry record of `name`, a view that keeps statistics.
fn stored_view<'a>(views: &'a BTreeMap<String, ViewRecord>, name: &str) -> Result<&'a ViewRecord, StatsError> {
    let view = views.get(name).ok_or_else(|| StatsError::NoSuchView {
        view: name.to_string(),
        views: views.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    match view.kind_name() {
        "materialized" => Ok(view),
        kind => Err(StatsError::NotStored {
            view: name.to_string(),
            kind: if kind == "aggregation" {
                "an aggregation"
            } else {
                "an on-demand"
            },
        }),
    }
}

/// `skewless stats --rebuild [VIEW]`: recomputes the statistics of `view`
/// (or of every materialized view) from the stored history and keeps them
/// ([`Store::rebuild_statistics`]); the views and what they now hold.
pub fn rebuild(store: &Store, view: Option<&str>) -> Result<Vec<(String, Statistics)>, StatsError> {
    let views = store.views()?;
    let chosen: Vec<&ViewRecord> = match view {
        Some(name) => vec![stored_view(&views, name)?],
        None => views.values().filter(|v| v.kind_name() == "materialized").collect(),
    };
    let mut out = Vec::new();
    for view in chosen {
        out.push((view.name.clone(), store.rebuild_statistics(view)?));
    }
    Ok(out)
}

/// Reads the statistics `query` asks for from `store`.
pub fn report(store: &Store, query: &StatsQuery) -> Result<StatsReport, StatsError> {
    let views = store.views()?;
    let view = stored_view(&views, &query.view)?;
    let (stats, scope) = if query.from.is_some() || query.to.is_some() {
        let (from, to) = (query.from.unwrap_or(i64::MIN), query.to.unwrap_or(i64::MAX));
        let shown = |t: i64| {
            if t == i64::MIN || t == i64::MAX {
                "-".to_string()
            } else {
                time::format_timestamp(t)
            }
        };
        let scope = format!("stored rows with event times in {} .. {}", shown(from), shown(to));
        (store.statistics_between(view, from, to)?, scope)
    } else {
        match store.statistics(view)? {
            Some(stats) => {
                let scope = format!("as of commit {}", stats.commit.unwrap_or_default());
                (stats, scope)
            }
            None => (Statistics::new(&view.features), "no rows stored yet".to_string()),
        }
    };
    let mut summaries = stats.summaries();
    if let Some(feature) = &query.feature {
        summaries.retain(|s| &s.name == feature);
        if summaries.is_empty() {
            return Err(StatsError::NoSuchFeature {
                view: query.view.clone(),
                feature: feature.clone(),
                features: view
                    .features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(StatsReport {
        view: query.view.clone(),
        scope,
        rows: stats.rows,
        summaries,
        detail: query.feature.is_some(),
    })
}

impl StatsReport {
    /// The status line above the figures.
    pub fn heading(&self) -> String {
        format!("of view `{}`, {}: {} rows", self.view, self.scope, self.rows)
    }
}

/// A table of every feature, or one feature in detail.
impl fmt::Display for StatsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.detail, self.summaries.first()) {
            (true, Some(summary)) => f.write_str(&detail(summary)),
            _ => f.write_str(&table(&self.summaries)),
        }
    }
}

/// A number as the feature's type reads: timestamps as times.
pub fn shown(summary: &Summary, value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if summary.data_type == FeatureType::Timestamp => time::format_timestamp(v as i64),
        Some(v) => format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

fn table(summaries: &[Summary]) -> String {
    let mut rows = vec![
        [
            "feature", "type", "count", "nulls", "distinct", "min", "p50", "max", "mean", "stddev",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in summaries {
        let median = s.quantiles.iter().find(|(q, _)| *q == 0.5).map(|(_, v)| *v);
        rows.push(vec![
            s.name.clone(),
            s.data_type.to_string(),
            s.count.to_string(),
            s.nulls.to_string(),
            s.distinct.to_string(),
            shown(s, s.min),
            shown(s, median),
            shown(s, s.max),
            shown(s, s.mean),
            shown(s, s.stddev),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn detail(s: &Summary) -> String {
    let mut out = format!(
        "{} ({}): {} values, {} null ({:.2}%), {} not finite, ~{} distinct\n",
        s.name,
        s.data_type,
        s.count,
        s.nulls,
        100.0 * s.nulls as f64 / (s.count.max(1) as f64),
        s.not_finite,
        s.distinct
    );
    if s.min.is_some() {
        out.push_str(&format!(
            "  min {}  max {}  mean {}  stddev {}\n  quantiles (within {}%):",
            shown(s, s.min),
            shown(s, s.max),
            shown(s, s.mean),
            shown(s, s.stddev),
            RELATIVE_ERROR * 100.0
        ));
        for (q, v) in &s.quantiles {
            out.push_str(&format!("  p{}={}", q * 100.0, shown(s, Some(*v))));
        }
        out.push('\n');
        let most = s.histogram.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        for (low, high, n) in &s.histogram {
            let bar = "#".repeat(((*n as f64 / most as f64) * 40.0).round() as usize);
            out.push_str(&format!(
                "  [{:>14}, {:>14})  {:>9}  {bar}\n",
                shown(s, Some(*low)),
                shown(s, Some(*high)),
                n
            ));
        }
    }
    if !s.top.is_empty() {
        out.push_str("  most frequent:\n");
        for (value, n) in &s.top {
            out.push_str(&format!("    {n:>9}  {value}\n"));
        }
    } else if s.data_type == FeatureType::Utf8 && s.count > s.nulls {
        out.push_str(&format!(
            "  most frequent: more than {MAX_COUNTED_VALUES} distinct values, not ranked\n"
        ));
    }
    out
}
