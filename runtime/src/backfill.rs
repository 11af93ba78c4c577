//! `skewless backfill`: run materialized views over their file sources and
//! store every value, time-versioned.
//!
//! Per view: read the source in batches of the needed columns, keep rows in
//! `[start, end)` with an event time and every join key, run the view's
//! transform on the batch ([`crate::Transform::run`], the one execution
//! path), encode rows and write them in transactions of `rows_per_commit`
//! rows. Writing merges by (entity, event time, created), so a rerun, or a
//! run after a `kill -9`, converges on the same store.
//!
//! `skewless import` ([`import`]) goes through the same loop with rows whose
//! features were computed elsewhere by the view's own component (Spark,
//! Ray): only the transform call is skipped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use indicatif::ProgressBar;

use crate::aggregate::IdMode;
use crate::catalog::{Catalog, NotApplied};
use crate::file_format::FileFormat;
use crate::materialize::{MaterializeError, Materializer};
use crate::repo::View;
use crate::source::{self, SourceError};
use crate::store::{Pending, Store, StoreError, ViewRecord, WriteTo};

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
    /// An incremental load of a Delta table or a PostgreSQL relation: where
    /// the last load ended (a table version: the commits after it; a
    /// watermark's bits: the rows with a greater watermark).
    pub since: Option<u64>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            views: Vec::new(),
            start: None,
            end: None,
            rows_per_commit: DEFAULT_ROWS_PER_COMMIT,
            since: None,
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
    /// Delta sources: the table version read.
    pub table_version: Option<u64>,
    /// PostgreSQL sources: the greatest watermark read (its value's bits;
    /// microseconds for a timestamp).
    pub watermark: Option<i64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// `VIEW: N rows in Ts (R rows/s), C commits[, S rows skipped]`: the line
/// `backfill` and `import` print per view.
impl std::fmt::Display for ViewSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{}: {} rows in {secs:.2}s ({:.0} rows/s), {} commits",
            self.view,
            self.rows_written,
            self.rows_written as f64 / secs.max(1e-9),
            self.commits.len()
        )?;
        if self.rows_skipped > 0 {
            write!(
                f,
                ", {} rows skipped (no key or time, or outside --start/--end)",
                self.rows_skipped
            )?;
        }
        Ok(())
    }
}

impl ViewSummary {
    /// Rows whose transform call failed, with the first few located: what
    /// a user must hear about, though the backfill succeeded.
    pub fn row_error_warning(&self) -> Option<String> {
        (self.row_errors > 0).then(|| {
            let mut text = format!(
                "view `{}`: {} rows failed in the transform and were stored with null features; first:",
                self.view, self.row_errors
            );
            for e in &self.first_errors {
                text.push_str(&format!("\n    {e}"));
            }
            text
        })
    }
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

/// The window `materialize` loads, as Feast's endpoints ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaterializeWindow {
    /// Every row (`disable_event_timestamp`).
    All,
    /// Rows with event time in `start..end` (`POST /materialize`).
    Between {
        /// Inclusive, microseconds UTC.
        start: i64,
        /// Exclusive, microseconds UTC.
        end: i64,
    },
    /// Rows from where each view's last incremental run ended (every row
    /// the first time) up to `end` (`POST /materialize-incremental`).
    Incremental {
        /// Exclusive, microseconds UTC.
        end: i64,
    },
}

/// What `materialize` stored for one view, and the window it read.
#[derive(Debug, Clone)]
pub struct Materialized {
    /// The backfill's summary.
    pub summary: ViewSummary,
    /// First event time read (inclusive); `None`: from the first row.
    pub start: Option<i64>,
    /// Last event time read (exclusive); `None`: to the last row.
    pub end: Option<i64>,
}

/// Feast's materialize: the backfill of `views` (every materialized and
/// aggregation view when empty) over `window`, one view after the other.
///
/// Invariant, kept here: an incremental run records where it ended for a
/// view only after that view's rows are committed, so the next run starts
/// there. A crash in between makes the next run read the window again,
/// which stores the same rows (writes merge on entity, event time and
/// created time; events keep their ids), so nothing is lost or doubled.
pub fn materialize(
    catalog: &Catalog,
    store: &Store,
    views: &[String],
    window: MaterializeWindow,
) -> Result<Vec<Materialized>, BackfillError> {
    let names: Vec<String> = match views {
        [] => (catalog.repo.views.values())
            .filter(|v| v.is_materialized())
            .map(|v| v.name.clone())
            .collect(),
        named => named.to_vec(),
    };
    let mut done = Vec::new();
    for view in names {
        // A Delta table loads incrementally by its versions, a PostgreSQL
        // relation by its watermark, whatever the rows' event times.
        let marked = (catalog.repo.views.get(&view))
            .and_then(|v| catalog.repo.file_source(v))
            .is_some_and(|f| match f.format {
                FileFormat::Delta(_) | FileFormat::Postgres => true,
                FileFormat::Parquet | FileFormat::Csv => false,
            });
        let (start, end, since) = match window {
            MaterializeWindow::All => (None, None, None),
            MaterializeWindow::Between { start, end } => (Some(start), Some(end), None),
            MaterializeWindow::Incremental { .. } if marked => (None, None, store.load_mark(&view)?),
            // An end before the last run's: nothing new, and the mark stays.
            MaterializeWindow::Incremental { end } => match store.materialized_until(&view)? {
                Some(last) => (Some(last), Some(end.max(last)), None),
                None => (None, Some(end), None),
            },
        };
        let options = BackfillOptions {
            views: vec![view.clone()],
            start,
            end,
            since,
            ..BackfillOptions::default()
        };
        let summary = backfill(catalog, store, &options, &ProgressBar::hidden())?.remove(0);
        if let (MaterializeWindow::Incremental { .. }, Some(end)) = (window, end) {
            store.set_materialized_until(&view, end)?;
        }
        done.push(Materialized { summary, start, end });
    }
    Ok(done)
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
    let (opened, loaded) =
        source::open_source(materializer.source, &materializer.needed, options.since).map_err(|error| {
            BackfillError::Source {
                view: view.name.clone(),
                error,
            }
        })?;
    progress.reset();
    progress.set_length(opened.total_rows.unwrap_or(0));
    progress.set_message(view.name.clone());
    let mut summary = store_batches(
        store,
        record,
        &materializer,
        opened.batches,
        Step::RunTransform,
        options,
        progress,
    )?;
    // Every row up to the mark is stored: the next incremental load reads
    // what came after it (a load of some times only leaves the mark).
    if let Some(mark) = loaded.mark()
        && options.start.is_none()
        && options.end.is_none()
    {
        store.set_load_mark(&view.name, mark)?;
    }
    match loaded {
        source::Loaded::TableVersion(version) => summary.table_version = Some(version),
        source::Loaded::Watermark(_) => summary.watermark = loaded.mark().map(|m| m as i64),
        source::Loaded::Rows => {}
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// What [`store_batches`] does to a batch before storing it.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    /// Source rows: run the view's transform.
    RunTransform,
    /// Rows imported with their features computed elsewhere by the same
    /// component: store them as they are.
    Imported,
}

/// The loop backfill and import share: keep the storable rows of each
/// batch, compute (or take) their features, and commit every
/// `rows_per_commit` rows.
fn store_batches(
    store: &Store,
    record: &ViewRecord,
    materializer: &Materializer<'_>,
    batches: source::Batches,
    step: Step,
    options: &BackfillOptions,
    progress: &ProgressBar,
) -> Result<ViewSummary, BackfillError> {
    let path = &materializer.source.path;
    let mut summary = ViewSummary {
        view: record.name.clone(),
        ..ViewSummary::default()
    };
    let mut pending = materializer.pending();
    for batch in batches {
        let batch = batch.map_err(|error| BackfillError::Source {
            view: record.name.clone(),
            error,
        })?;
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

        let row_errors = match (step, &mut pending) {
            (Step::RunTransform, pending) => materializer.add(&batch, pending, None)?,
            (Step::Imported, Pending::Rows(rows)) => {
                materializer.add_output(&batch, &batch, rows)?;
                Vec::new()
            }
            (Step::Imported, Pending::Events(_)) => unreachable!("import refuses aggregation views"),
        };
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
    Ok(summary)
}

/// The Parquet metadata key (schema or field metadata) naming the digest of
/// the component that computed a file's features: written by
/// `skewless.spark.transform` and `skewless.ray.Transform`.
pub const DIGEST_KEY: &str = "skewless.digest";

/// Spark keeps a DataFrame's column metadata in this Parquet key (JSON).
const SPARK_SCHEMA_KEY: &str = "org.apache.spark.sql.parquet.row.metadata";

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The materialized view the values belong to.
    pub view: String,
    /// A Parquet file, or a folder of them (searched recursively, as
    /// Spark and Ray write them, partition folders included).
    pub from: PathBuf,
    /// Rows per transaction.
    pub rows_per_commit: usize,
}

/// Stores values of a view computed elsewhere by the view's own component
/// (Spark's `mapInArrow` or Ray's `map_batches` through the Python package),
/// exactly as backfill would have stored them: the same rows, keys, times
/// and feature bits, through the same encoder and the same writes. Files
/// whose recorded digest is not the applied component's are refused before
/// anything is written.
pub fn import(
    catalog: &Catalog,
    store: &Store,
    options: &ImportOptions,
    progress: &ProgressBar,
) -> Result<ViewSummary, BackfillError> {
    let started = Instant::now();
    let fail = |message: String| BackfillError::View {
        view: options.view.clone(),
        message,
    };
    let view = catalog
        .repo
        .views
        .get(&options.view)
        .filter(|v| v.is_materialized())
        .ok_or_else(|| {
            let known: Vec<_> = catalog
                .repo
                .views
                .values()
                .filter(|v| v.is_materialized())
                .map(|v| v.name.as_str())
                .collect();
            fail(format!(
                "no such materialized view (materialized views: {})",
                known.join(", ")
            ))
        })?;
    let records = store.views()?;
    let record = catalog.applied_record(view, records.get(&view.name))?;
    let digest_id = store.digest_id(&record.digest)?;
    let materializer = Materializer::new(catalog, view, &record, digest_id, IdMode::Replace)?;
    if materializer.is_aggregation() {
        return Err(fail(
            "is an aggregation view: its events are folded as they are written, so there are no \
             computed values to import; run `skewless backfill` on its source"
                .into(),
        ));
    }
    let files = parquet_files(&options.from).map_err(fail)?;
    let source_error = |error: SourceError| BackfillError::Source {
        view: view.name.clone(),
        error,
    };
    let needed = materializer.stored_columns();
    let mut total_rows = 0;
    for file in &files {
        check_digest(file, &record, &view.name).map_err(source_error)?;
        total_rows += source::open(file, FileFormat::Parquet, &needed)
            .map_err(source_error)?
            .total_rows
            .unwrap_or(0);
    }
    progress.reset();
    progress.set_length(total_rows);
    progress.set_message(view.name.clone());
    let batches = files.into_iter().flat_map(move |file| {
        let opened: source::Batches = match source::open(&file, FileFormat::Parquet, &needed) {
            Ok(opened) => opened.batches,
            Err(error) => Box::new(std::iter::once(Err(error))),
        };
        opened
    });
    let backfill_options = BackfillOptions {
        rows_per_commit: options.rows_per_commit,
        ..BackfillOptions::default()
    };
    let mut summary = store_batches(
        store,
        &record,
        &materializer,
        Box::new(batches),
        Step::Imported,
        &backfill_options,
        progress,
    )?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The Parquet files at `from`: the file itself, or every `*.parquet` under
/// the folder (hidden and `_`-prefixed names, Spark's bookkeeping, skipped),
/// sorted by path.
fn parquet_files(from: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata = std::fs::metadata(from).map_err(|e| format!("{}: {e}", from.display()))?;
    if metadata.is_file() {
        return Ok(vec![from.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut folders = vec![from.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", folder.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(format!("{}: no .parquet files in this folder", from.display()));
    }
    files.sort();
    Ok(files)
}

/// Refuses `file` unless its metadata records the digest of the component
/// `record` was applied with.
fn check_digest(file: &Path, record: &ViewRecord, view: &str) -> Result<(), SourceError> {
    let fail = |message: String| SourceError {
        path: file.to_path_buf(),
        message,
    };
    let found = recorded_digest(file)?;
    let expected = record.digest.to_string();
    match found {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(fail(format!(
            "was computed by component {found}, but view `{view}` is applied with {expected} ({}): \
             rerun the job that wrote it with that component, or, if {found} is the one you want, \
             point the view's `transform` at it and run `skewless apply` first",
            record.transform
        ))),
        None => Err(fail(format!(
            "records no `{DIGEST_KEY}` in its metadata, so nothing says which component computed it: \
             write it with skewless.spark.transform or skewless.ray.Transform (they record it), or run \
             `skewless backfill --view {view}`"
        ))),
    }
}

/// The digest a file's metadata records: in the Arrow schema's metadata, in
/// a column's metadata, or in the column metadata Spark writes as JSON.
fn recorded_digest(file: &Path) -> Result<Option<String>, SourceError> {
    let fail = |message: String| SourceError {
        path: file.to_path_buf(),
        message,
    };
    let handle = std::fs::File::open(file).map_err(|e| fail(format!("cannot open: {e}")))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema();
    if let Some(digest) = schema.metadata().get(DIGEST_KEY) {
        return Ok(Some(digest.clone()));
    }
    if let Some(digest) = schema.fields().iter().find_map(|f| f.metadata().get(DIGEST_KEY)) {
        return Ok(Some(digest.clone()));
    }
    let spark = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key == SPARK_SCHEMA_KEY)
        .and_then(|kv| kv.value.as_deref())
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
    Ok(spark.and_then(|schema| {
        schema["fields"]
            .as_array()?
            .iter()
            .find_map(|field| field["metadata"][DIGEST_KEY].as_str().map(str::to_string))
    }))
}
