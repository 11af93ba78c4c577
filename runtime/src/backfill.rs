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

use arrow_array::{Array, BooleanArray, RecordBatch};
use indicatif::ProgressBar;

use crate::catalog::Catalog;
use crate::codec::row::{KeyEncoder, RowEncoder};
use crate::error::TransformError;
use crate::repo::{FileSource, View};
use crate::source::{self, SourceError};
use crate::store::{PendingRows, Store, StoreError, ViewRecord, WriteTo};
use crate::transform::{RowError, Transform};
use crate::types::{FeatureType, FieldSpec};

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
            rows_per_commit: 1_000_000,
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
    /// The transform failed a batch.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
        let record = applied_record(catalog, view, records.get(&view.name))?;
        summaries.push(backfill_view(catalog, store, view, &record, options, progress)?);
    }
    Ok(summaries)
}

/// The registry record of a view, provided it matches the repo as loaded now.
pub fn applied_record(
    catalog: &Catalog,
    view: &View,
    stored: Option<&ViewRecord>,
) -> Result<ViewRecord, BackfillError> {
    let fresh = catalog.view_record(view).ok_or_else(|| BackfillError::View {
        view: view.name.clone(),
        message: "its transform is not loaded".into(),
    })?;
    let stale = |what: &str| BackfillError::View {
        view: view.name.clone(),
        message: format!("{what} since the last `skewless apply`: run `skewless apply` first"),
    };
    let Some(stored) = stored else {
        return Err(stale("is new"));
    };
    if stored.digest != fresh.digest {
        return Err(stale("its transform changed"));
    }
    if stored.features != fresh.features || stored.join_keys != fresh.join_keys {
        return Err(stale("its schema changed"));
    }
    Ok(stored.clone())
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
    let digest_id = store.digest_id(
        &catalog
            .transform(&view.name)
            .expect("applied views are loaded")
            .digest(),
    )?;
    let materializer = Materializer::new(catalog, view, record, digest_id)?;
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
    let mut pending = PendingRows::default();
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

/// The one path from source rows of a materialized view to rows ready for
/// the store, shared by backfill (rows from files) and push (rows from the
/// server): which columns to read, which rows can be stored, and running
/// the view's transform ([`crate::Transform::run`]) and encoding its output.
pub(crate) struct Materializer<'a> {
    view: &'a View,
    record: &'a ViewRecord,
    transform: &'a Transform,
    /// The file source behind the view (a push source's batch source).
    pub source: &'a FileSource,
    digest_id: u32,
    /// Columns a source batch must hold: join keys, times, transform inputs.
    pub needed: Vec<FieldSpec>,
}

impl<'a> Materializer<'a> {
    pub fn new(
        catalog: &'a Catalog,
        view: &'a View,
        record: &'a ViewRecord,
        digest_id: u32,
    ) -> Result<Self, BackfillError> {
        let transform = catalog.transform(&view.name).ok_or_else(|| BackfillError::View {
            view: view.name.clone(),
            message: "its transform is not loaded".into(),
        })?;
        let source = catalog
            .repo
            .file_source(view)
            .expect("materialized views have a file source (checked by the repo)");
        let mut needed: Vec<FieldSpec> = record.join_keys.clone();
        let mut need = |field: FieldSpec| -> Result<(), BackfillError> {
            match needed.iter().find(|f| f.name == field.name) {
                Some(f) if f.data_type != field.data_type => Err(BackfillError::View {
                    view: view.name.clone(),
                    message: format!(
                        "column `{}` is needed as {} and as {}",
                        field.name, f.data_type, field.data_type
                    ),
                }),
                Some(_) => Ok(()),
                None => {
                    needed.push(field);
                    Ok(())
                }
            }
        };
        let time_field = |name: &str| FieldSpec {
            name: name.to_string(),
            data_type: FeatureType::Timestamp,
            nullable: true,
        };
        need(time_field(&source.timestamp_column))?;
        if let Some(created) = &source.created_column {
            need(time_field(created))?;
        }
        for input in &transform.description().inputs {
            need(input.clone())?;
        }
        Ok(Materializer {
            view,
            record,
            transform,
            source,
            digest_id,
            needed,
        })
    }

    /// Which rows of `batch` can be stored: those with an event time in
    /// `[start, end)` and every join key.
    pub fn keep(
        &self,
        batch: &RecordBatch,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<BooleanArray, BackfillError> {
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let keys = self.keys(batch)?;
        Ok((0..batch.num_rows())
            .map(|row| {
                Some(
                    event_time.is_valid(row)
                        && !keys.is_null(row)
                        && start.is_none_or(|s| event_time.value(row) >= s)
                        && end.is_none_or(|e| event_time.value(row) < e),
                )
            })
            .collect())
    }

    fn keys<'b>(&self, batch: &'b RecordBatch) -> Result<KeyEncoder<'b>, BackfillError> {
        KeyEncoder::new(batch, &self.record.join_keys).map_err(|message| BackfillError::View {
            view: self.view.name.clone(),
            message,
        })
    }

    /// Runs the transform over `batch` (every row kept by [`Self::keep`])
    /// and adds one encoded row per input row to `pending`. Returns the
    /// transform's row errors (those rows are stored with null features).
    /// `timeout` caps the view's own per-call limit (the server's request budget).
    pub fn add(
        &self,
        batch: &RecordBatch,
        pending: &mut PendingRows,
        timeout: Option<Duration>,
    ) -> Result<Vec<RowError>, BackfillError> {
        let output = match timeout {
            Some(timeout) => self.transform.run_within(batch, timeout)?,
            None => self.transform.run(batch)?,
        };
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let created = self.source.created_column.as_ref().map(|c| micros_column(batch, c));
        let keys = self.keys(batch)?;
        let features =
            RowEncoder::new(&output.batch, &self.record.features).map_err(|message| BackfillError::View {
                view: self.view.name.clone(),
                message: format!("transform output: {message}"),
            })?;
        let width = self.record.features.len();
        for row in 0..batch.num_rows() {
            let created = created
                .as_ref()
                .map_or(0, |c| if c.is_valid(row) { c.value(row) } else { 0 });
            pending.add(
                self.record.bucket_micros,
                event_time.value(row),
                created,
                self.digest_id,
                width,
                |out| keys.write(row, out),
                |out| features.write(row, out),
            );
        }
        Ok(output.row_errors)
    }
}

/// A timestamp column of `batch` in microseconds (the source was opened
/// with this column as a timestamp, so it exists and is one).
fn micros_column(batch: &RecordBatch, name: &str) -> arrow_array::TimestampMicrosecondArray {
    let array = batch.column_by_name(name).expect("opened with this column");
    crate::time::micros_array(array.as_ref()).expect("checked to be a timestamp when opened")
}
