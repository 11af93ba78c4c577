//! `skewless stats` and `skewless drift`: reading the statistics the
//! runtime keeps ([`skewless_runtime::stats`]) and printing them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use skewless_runtime::stats::{Statistics, Summary};
use skewless_runtime::store::ViewRecord;
use skewless_runtime::{Repo, Store, time};

use crate::status;

/// `skewless stats VIEW[:FEATURE]`.
pub fn cmd_stats(dir: &Path, target: &str, from: Option<&str>, to: Option<&str>, json: bool) -> Result<()> {
    let (view_name, feature) = match target.split_once(':') {
        Some((view, feature)) => (view, Some(feature)),
        None => (target, None),
    };
    let repo = Repo::open(dir)?;
    let store = Store::open_existing(&repo.store_path)?;
    let views = store.views()?;
    let view: &ViewRecord = views.get(view_name).with_context(|| {
        format!(
            "no view `{view_name}` in the registry; the views are: {} (`skewless apply` records the repo)",
            views.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    if view.kind_name() != "materialized" {
        bail!(
            "view `{view_name}` is {} view: its feature values exist only at a point in time, so it has no stored \
             statistics; its features' statistics are in the training sets `skewless dataset` writes and in the \
             served-value logs",
            if view.kind_name() == "aggregation" {
                "an aggregation"
            } else {
                "an on-demand"
            }
        );
    }
    let parse = |flag: &str, text: Option<&str>| -> Result<Option<i64>> {
        text.map(time::parse_timestamp)
            .transpose()
            .map_err(anyhow::Error::msg)
            .with_context(|| flag.to_string())
    };
    let (from, to) = (parse("--from", from)?, parse("--to", to)?);
    let (stats, scope) = if from.is_some() || to.is_some() {
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
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
    if let Some(feature) = feature {
        summaries.retain(|s| s.name == feature);
        if summaries.is_empty() {
            bail!(
                "view `{view_name}` has no feature `{feature}`; its features are: {}",
                view.features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    status(
        "Statistics",
        &format!("of view `{view_name}`, {scope}: {} rows", stats.rows),
    );
    if feature.is_some() {
        print!("{}", detail(&summaries[0]));
    } else {
        print!("{}", table(&summaries));
    }
    Ok(())
}

/// A number as the feature's type reads: timestamps as times.
pub fn shown(summary: &Summary, value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if summary.data_type == skewless_runtime::FeatureType::Timestamp => time::format_timestamp(v as i64),
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
            s.data_type.name().to_string(),
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
        s.data_type.name(),
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
            skewless_runtime::stats::RELATIVE_ERROR * 100.0
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
    } else if s.data_type == skewless_runtime::FeatureType::Utf8 && s.count > s.nulls {
        out.push_str(&format!(
            "  most frequent: more than {} distinct values, not ranked\n",
            skewless_runtime::stats::MAX_COUNTED_VALUES
        ));
    }
    out
}

/// `skewless drift`: exits 2 when a feature crossed a threshold.
pub fn cmd_drift(
    dir: &Path,
    baseline_path: &Path,
    since: Option<&str>,
    stored: (Option<&str>, Option<&str>),
    json: bool,
) -> Result<bool> {
    use skewless_runtime::codec::row::Value;
    use skewless_runtime::drift::{self, DriftReport};
    let repo = Repo::open(dir)?;
    let baseline = drift::read_baseline(baseline_path).map_err(anyhow::Error::msg)?;
    let parse = |flag: &str, text: Option<&str>| -> Result<Option<i64>> {
        text.map(time::parse_timestamp)
            .transpose()
            .map_err(anyhow::Error::msg)
            .with_context(|| flag.to_string())
    };
    let since = parse("--since", since)?;
    let (from, to) = (parse("--from", stored.0)?, parse("--to", stored.1)?);
    let mut compared: std::collections::BTreeMap<(String, String), Vec<Value>> = Default::default();
    let what = if from.is_some() || to.is_some() {
        let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        let store = Store::open_existing(&repo.store_path)?;
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
        format!(
            "stored values with event times in {} .. {}",
            time::format_timestamp(from.max(0)),
            if to == i64::MAX {
                "now".to_string()
            } else {
                time::format_timestamp(to)
            }
        )
    } else {
        let folder = &repo.monitoring.log_folder;
        compared = skewless_runtime::served_log::read_served(folder, since, None)?;
        if compared.is_empty() {
            bail!(
                "no served values logged in {}{}: `skewless serve` logs a sample of its answers there \
                 (`[monitoring] log_sample_rate`); or compare stored values with --from/--to",
                folder.display(),
                since
                    .map(|s| format!(" since {}", time::format_timestamp(s)))
                    .unwrap_or_default()
            );
        }
        format!(
            "served values logged in {}{}",
            folder.display(),
            since
                .map(|s| format!(" since {}", time::format_timestamp(s)))
                .unwrap_or_default()
        )
    };
    let mut features = Vec::new();
    for ((view, feature), values) in &compared {
        let column = baseline
            .get(&format!("{view}__{feature}"))
            .or_else(|| baseline.get(feature));
        if let Some(column) = column {
            features.push(drift::feature_drift(
                view,
                feature,
                column,
                values,
                &repo.monitoring.drift,
            ));
        }
    }
    if features.is_empty() {
        bail!(
            "no feature of {what} is a column of {} (columns: {}); name its columns `feature` or `view__feature`, as \
             `skewless dataset` does",
            baseline_path.display(),
            baseline.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let report = DriftReport {
        baseline: baseline_path.display().to_string(),
        compared: what,
        computed_at: time::now_micros(),
        features,
    };
    let path = drift::report_path(&repo);
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        status("Compared", &format!("{} with {}", report.compared, report.baseline));
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
        println!(
            "{:<40} {:>9} {:>9} {:>8} {:>8} {:>15}  drifted",
            "feature", "baseline", "compared", "psi", "ks", "null rate"
        );
        for f in &report.features {
            println!(
                "{:<40} {:>9} {:>9} {:>8} {:>8} {:>6.1}%->{:>5.1}%  {}",
                format!("{}:{}", f.view, f.feature),
                f.baseline_rows,
                f.compared_rows,
                show(f.psi),
                show(f.ks),
                f.baseline_null_rate * 100.0,
                f.compared_null_rate * 100.0,
                if f.crossed.is_empty() {
                    "no".to_string()
                } else {
                    format!("YES: {}", f.crossed.join("; "))
                }
            );
        }
    }
    Ok(report.drifted())
}
