//! `skewless backfill`: run materialized views over their file sources and
//! store every value, time-versioned.
//!
//! Per view: read the source in batches of the needed columns, keep rows in
//! `[start, end)` with an event time and every join key, run the view's
//! transform on the batch ([`crate::Transform::run`], the one execution
//! path), encode rows and write them in transactions of `rows_per_commit`
//! rows. Writing merges by (entity, event time, created), so a rerun, or a
//! run after a `kill -9`, converges on the same store.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use indicatif::ProgressBar;

use crate::aggregate::IdMode;
use crate::catalog::{Catalog, NotApplied};
use crate::materialize::{MaterializeError, Materializer};
use crate::repo::View;
use crate::source::{self, SourceError};
use crate::store::{Store, StoreError, ViewRecord, WriteTo};

/// What to backfill.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Only these views (all materialized views when empty).
    pub views: Vec<String>,
    /// Only rows with event time `>= start` (microseconds UTC).
    pub start: Option<i64>,
    /// Only rows with event time `< end` (microseconds UTC).
    pub end: Option<i64>,
    /// Rows per transaction: the most work a crash can lose.
    pub rows_per_commit: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            views: Vec::new(),
            start: None,
            end: None,
            rows_per_commit: DEFAULT_ROWS_PER_COMMIT,
        }
    }
}

/// What a backfill of one view did.
#[derive(Debug, Clone, Default)]
pub struct ViewSummary {
    /// The view.
    pub view: String,
    /// Rows read from the source.
    pub rows_read: u64,
    /// Rows stored.
    pub rows_written: u64,
    /// Rows outside `[start, end)`, or without an event time or a join key.
    pub rows_skipped: u64,
    /// Rows the transform reported as failed (stored with null features).
    pub row_errors: u64,
    /// The first few row errors, located in the source file.
    pub first_errors: Vec<String>,
    /// Commits made.
    pub commits: Vec<u64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A backfill that could not complete. What was committed before stays
/// committed and consistent; rerunning completes the work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackfillError {
    /// The view is unknown, on-demand, or not applied.
    #[error("view `{view}`: {message}")]
    View {
        /// The view.
        view: String,
        /// What is wrong and what to run.
        message: String,
    },
    /// The source could not be read.
    #[error("view `{view}`: {error}")]
    Source {
        /// The view.
        view: String,
        /// The source error.
        error: SourceError,
    },
    /// The view was not applied as the repo declares it now.
    #[error(transparent)]
    NotApplied(#[from] NotApplied),
    /// The view's transform failed a batch, or its columns disagree.
    #[error(transparent)]
    Materialize(#[from] MaterializeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The default for [`BackfillOptions::rows_per_commit`] (and `--rows-per-commit`).
pub const DEFAULT_ROWS_PER_COMMIT: usize = 1_000_000;

/// How many row errors a summary quotes.
const QUOTED_ERRORS: usize = 5;

/// Backfills the selected materialized views of `catalog` into `store`.
pub fn backfill(
    catalog: &Catalog,
    store: &Store,
    options: &BackfillOptions,
    progress: &ProgressBar,
) -> Result<Vec<ViewSummary>, BackfillError> {
    let repo = &catalog.repo;
    for name in &options.views {
        match repo.views.get(name) {
            None => {
                let known: Vec<_> = repo
                    .views
                    .values()
                    .filter(|v| v.is_materialized())
                    .map(|v| v.name.as_str())
                    .collect();
                return Err(BackfillError::View {
                    view: name.clone(),
                    message: format!("no such view (materialized views: {})", known.join(", ")),
                });
            }
            Some(v) if !v.is_materialized() => {
                return Err(BackfillError::View {
                    view: name.clone(),
                    message: "is on-demand: its values are computed at read time, there is nothing to backfill".into(),
                });
            }
            Some(_) => {}
        }
    }
    let records = store.views()?;
    let mut summaries = Vec::new();
    for view in repo.views.values().filter(|v| v.is_materialized()) {
        if !options.views.is_empty() && !options.views.contains(&view.name) {
            continue;
        }
        let record = catalog.applied_record(view, records.get(&view.name))?;
        summaries.push(backfill_view(catalog, store, view, &record, options, progress)?);
    }
    Ok(summaries)
}

fn backfill_view(
    catalog: &Catalog,
    store: &Store,
    view: &View,
    record: &ViewRecord,
    options: &BackfillOptions,
    progress: &ProgressBar,
) -> Result<ViewSummary, BackfillError> {
    let started = Instant::now();
    let digest_id = store.digest_id(&record.digest)?;
    let materializer = Materializer::new(catalog, view, record, digest_id, IdMode::Replace)?;
    let path = &materializer.source.path;
    let source_error = |source: SourceError| BackfillError::Source {
        view: view.name.clone(),
        error: source,
    };
    let opened = source::open(path, materializer.source.format, &materializer.needed).map_err(source_error)?;
    progress.reset();
    progress.set_length(opened.total_rows.unwrap_or(0));
    progress.set_message(view.name.clone());

    let mut summary = ViewSummary {
        view: view.name.clone(),
        ..ViewSummary::default()
    };
    let mut pending = materializer.pending();
    for batch in opened.batches {
        let batch = batch.map_err(source_error)?;
        let batch_start = summary.rows_read;
        summary.rows_read += batch.num_rows() as u64;
        progress.inc(batch.num_rows() as u64);
        let keep = materializer.keep(&batch, options.start, options.end)?;
        let kept = keep.true_count();
        summary.rows_skipped += (batch.num_rows() - kept) as u64;
        if kept == 0 {
            continue;
        }
        let (batch, source_rows): (RecordBatch, Option<Vec<usize>>) = if kept == batch.num_rows() {
            (batch, None)
        } else {
            let rows = (0..batch.num_rows()).filter(|r| keep.value(*r)).collect();
            let filtered =
                arrow_select::filter::filter_record_batch(&batch, &keep).expect("mask has the batch's length");
            (filtered, Some(rows))
        };

        let row_errors = materializer.add(&batch, &mut pending, None)?;
        summary.row_errors += row_errors.len() as u64;
        for error in row_errors
            .iter()
            .take(QUOTED_ERRORS.saturating_sub(summary.first_errors.len()))
        {
            let row = batch_start as usize + source_rows.as_ref().map_or(error.row, |rows| rows[error.row]);
            summary.first_errors.push(format!(
                "{}: data row {row} (0-based): {}",
                path.display(),
                error.message
            ));
        }
        summary.rows_written += batch.num_rows() as u64;
        if pending.len() >= options.rows_per_commit {
            summary
                .commits
                .push(store.write(record, &mut pending, WriteTo::OnlineAndOffline)?);
        }
    }
    if !pending.is_empty() {
        summary
            .commits
            .push(store.write(record, &mut pending, WriteTo::OnlineAndOffline)?);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
