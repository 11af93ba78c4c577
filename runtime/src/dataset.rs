//! `skewless dataset`: point-in-time correct training data.
//!
//! For each spine row (entity keys, an event time `t`, perhaps request
//! fields), each view contributes the stored row of that entity with the
//! greatest event time `<= t` and `>= t - ttl` (both inclusive), ties on
//! event time going to the greatest created time; no such row gives nulls.
//! On-demand views are computed over the joined values and the spine's
//! request columns. All of it is one call per spine chunk to
//! [`online::get_online_features`] with [`AsOf::Rows`]: the server's own
//! read, at each row's own time, so a training row holds exactly what the
//! server would have answered at that moment, from the same component.
//!
//! Memory is bounded by the chunk (one read batch of the spine), not by the
//! spine: chunks are read, joined and written one at a time. The output is
//! written to a temporary file and renamed into place when complete.
//! [`build_in_memory`] runs the same join over a spine already in memory
//! (the Python package's DataFrames) and keeps the output there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType as ArrowType, Field, Schema};
use indexmap::IndexMap;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::digest::Digest;
use crate::file_format::FileFormat;
use crate::online::{self, AsOf, OnlineError, OnlineRequest};
use crate::search::{self, Metric, VectorHistory};
use crate::source::{self, SourceError};
use crate::stats::Statistics;
use crate::store::{Store, StoreError};
use crate::types::{FeatureType, FieldSpec};

/// What to build: a spine file joined into an output file.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// The spine: Parquet or CSV (by extension), one row per labelled event.
    pub spine: PathBuf,
    /// The output: Parquet or CSV (by extension).
    pub out: PathBuf,
    /// What to join onto it.
    pub join: JoinOptions,
}

/// What to join onto a spine, wherever the spine comes from.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Feature references (`view:feature` or `view`).
    pub features: Vec<String>,
    /// A feature service, instead of or besides `features`.
    pub service: Option<String>,
    /// The spine's event-time column.
    pub timestamp_column: String,
    /// Name feature columns `view__feature`.
    pub full_feature_names: bool,
    /// Join values of one view produced by different transform digests.
    pub allow_mixed_digests: bool,
    /// A search as of each row's time, joined as list columns.
    pub nearest: Option<NearestOptions>,
}

/// `dataset --nearest`: for each spine row, the `k` entities of `view`
/// nearest to the row's query vector as of the row's time, as the online
/// search would have answered at that instant ([`crate::search::VectorHistory`]).
/// Joined as `nearest_<join key>` (one list per join key) and
/// `nearest_distance` (a list of float32), nearest first.
#[derive(Debug, Clone)]
pub struct NearestOptions {
    /// The view searched.
    pub view: String,
    /// Its vector feature, when it has several.
    pub vector: Option<String>,
    /// Entities per row (1 to [`crate::search::MAX_K`]).
    pub k: usize,
    /// The distance.
    pub metric: Metric,
    /// The spine column holding each row's query vector.
    pub query_column: String,
}

/// Where the values of a dataset came from; written into the output
/// (Parquet key-value metadata `skewless.lineage`, or `<out>.lineage.json`
/// beside a CSV file).
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// The spine file.
    pub spine: String,
    /// The store's last commit when the dataset was built.
    pub store_commit: u64,
    /// Per view read.
    pub views: BTreeMap<String, ViewLineage>,
}

/// One view's lineage.
#[derive(Debug, Clone, Serialize)]
pub struct ViewLineage {
    /// The digest of the component the repo names now (on-demand views ran it).
    pub digest: Digest,
    /// For materialized views: the digests that produced the stored values joined.
    pub produced_by: Vec<Digest>,
    /// For materialized views: the last commit that wrote values of the view.
    pub last_commit: Option<u64>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    /// Rows written (= spine rows).
    pub rows: u64,
    /// Where values came from.
    pub lineage: Lineage,
    /// Wall time.
    pub elapsed: Duration,
}

/// `N rows in Ts (R rows/s)`.
impl std::fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} rows in {secs:.2}s ({:.0} rows/s)",
            self.rows,
            self.rows as f64 / secs.max(1e-9)
        )
    }
}

impl DatasetSummary {
    /// Views whose stored values another build of their component produced
    /// than the repo names now, each with what to run.
    pub fn stale_warnings(&self) -> Vec<String> {
        self.lineage
            .views
            .iter()
            .filter(|(_, l)| !l.produced_by.is_empty() && l.produced_by.iter().any(|d| *d != l.digest))
            .map(|(view, _)| {
                format!(
                    "view `{view}`: stored values were produced by another build of its component than the repo \
                     names now; `skewless backfill --view {view}` rematerializes them"
                )
            })
            .collect()
    }
}

/// A dataset that could not be built. No output file is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A file name whose extension says no format.
    #[error("{}: say the format with the extension: .parquet or .csv", path.display())]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// The spine could not be read.
    #[error("spine {0}")]
    Spine(SourceError),
    /// A spine row without an event time.
    #[error("spine {}: row {row} (0-based) has no `{column}`: every spine row needs an event time", path.display())]
    NoTime {
        /// The spine.
        path: PathBuf,
        /// The row.
        row: u64,
        /// The timestamp column.
        column: String,
    },
    /// The join failed (unknown feature, a missing key column, a transform error).
    #[error(transparent)]
    Join(#[from] OnlineError),
    /// Values of one view produced by several transform digests.
    #[error(
        "feature view `{view}`: the stored values joined were produced by {} transform digests ({}); \
         rerun `skewless backfill --view {view}` to materialize them all with the current component, \
         or pass --allow-mixed-digests",
        digests.len(), digests.join(", ")
    )]
    MixedDigests {
        /// The view.
        view: String,
        /// The digests (short hex).
        digests: Vec<String>,
    },
    /// The output could not be written.
    #[error("{}: {message}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--nearest` cannot run: an unknown view, no vector feature, a bad
    /// `k`, or a spine row's query refused (the message names it).
    #[error("--nearest: {0}")]
    Nearest(String),
}

impl From<SourceError> for DatasetError {
    fn from(error: SourceError) -> Self {
        DatasetError::Spine(error)
    }
}

/// The format a file name says.
pub fn format_of(path: &Path) -> Result<FileFormat, DatasetError> {
    FileFormat::of(path).ok_or_else(|| DatasetError::Format {
        path: path.to_path_buf(),
    })
}

/// Builds the dataset `options` describes from `store`.
pub fn build(
    catalog: &Catalog,
    store: &Store,
    options: &DatasetOptions,
    progress: &ProgressBar,
) -> Result<DatasetSummary, DatasetError> {
    let started = Instant::now();
    let spine_format = format_of(&options.spine)?;
    let out_format = format_of(&options.out)?;
    let same = |a: &Path, b: &Path| a == b || a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a));
    if same(&options.spine, &options.out) {
        return Err(DatasetError::Output {
            path: options.out.clone(),
            message: "is the spine itself: write the dataset to another file".into(),
        });
    }
    let columns = source::columns(&options.spine, spine_format)?;
    let open = |needed: &[FieldSpec]| source::open_all(&options.spine, spine_format, needed);

    let temporary = temporary_path(&options.out);
    let mut writer: Option<Writer> = None;
    let mut statistics: Option<Statistics> = None;
    let sink = |output: RecordBatch| -> Result<(), DatasetError> {
        let stats = statistics.get_or_insert_with(|| Statistics::for_schema(&output.schema()));
        stats.add_batch(&output).map_err(|e| DatasetError::Output {
            path: options.out.clone(),
            message: format!("statistics: {e}"),
        })?;
        let writer = match &mut writer {
            Some(w) => w,
            None => writer.insert(Writer::create(&temporary, out_format, output.schema())?),
        };
        writer.write(&output)
    };
    let joined = join(
        catalog,
        store,
        &options.spine,
        &columns,
        open,
        &options.join,
        progress,
        sink,
    );
    let (rows, lineage) = match joined {
        Ok(joined) => joined,
        Err(error) => {
            drop(writer);
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
    };
    let writer = writer.expect("a spine with rows wrote a batch");
    let statistics = statistics.expect("a spine with rows wrote a batch");
    writer.finish(&lineage, &statistics, &options.out)?;
    std::fs::rename(&temporary, &options.out).map_err(|e| DatasetError::Output {
        path: options.out.clone(),
        message: format!("cannot move the finished file into place: {e}"),
    })?;
    Ok(DatasetSummary {
        rows,
        lineage,
        elapsed: started.elapsed(),
    })
}

/// Joins `options` onto a spine held in memory as Arrow batches (the
/// Python package's DataFrames): the same join as [`build`], output kept
/// in memory. `label` names the spine in errors and in the lineage.
pub fn build_in_memory(
    catalog: &Catalog,
    store: &Store,
    label: &str,
    spine: Vec<RecordBatch>,
    options: &JoinOptions,
) -> Result<(Vec<RecordBatch>, Lineage), DatasetError> {
    let label = Path::new(label);
    let Some(first) = spine.first() else {
        return Err(DatasetError::Output {
            path: label.to_path_buf(),
            message: "the spine has no rows".into(),
        });
    };
    let schema = first.schema();
    let columns: Vec<(String, ArrowType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let open = |needed: &[FieldSpec]| source::from_batches(label, &schema, spine, needed);
    let mut outputs = Vec::new();
    let sink = |output: RecordBatch| -> Result<(), DatasetError> {
        outputs.push(output);
        Ok(())
    };
    let (_, lineage) = join(
        catalog,
        store,
        label,
        &columns,
        open,
        options,
        &ProgressBar::hidden(),
        sink,
    )?;
    Ok((outputs, lineage))
}

/// The join itself: each spine chunk is read, joined by
/// [`online::get_online_features`] at its rows' own times and handed to
/// `sink`. Returns the rows joined and the lineage.
#[allow(clippy::too_many_arguments)]
fn join(
    catalog: &Catalog,
    store: &Store,
    spine: &Path,
    spine_columns: &[(String, ArrowType)],
    open: impl FnOnce(&[FieldSpec]) -> Result<source::OpenedFile, SourceError>,
    options: &JoinOptions,
    progress: &ProgressBar,
    mut sink: impl FnMut(RecordBatch) -> Result<(), DatasetError>,
) -> Result<(u64, Lineage), DatasetError> {
    let refs = online::resolve_features(catalog, &options.features, options.service.as_deref())?;
    // The spine columns the join reads: the time, and each join key or request field it has.
    let known = catalog.repo.request_columns();
    let mut needed = vec![FieldSpec {
        name: options.timestamp_column.clone(),
        data_type: FeatureType::Timestamp,
        nullable: true,
    }];
    for (name, _) in spine_columns {
        if let Some(data_type) = known.get(name)
            && *name != options.timestamp_column
        {
            needed.push(FieldSpec {
                name: name.clone(),
                data_type: *data_type,
                nullable: true,
            });
        }
    }
    let records = store.views()?;
    let mut nearest = match &options.nearest {
        Some(spec) => Some(Nearest::load(store, &records, spec)?),
        None => None,
    };
    if let Some(nearest) = &nearest {
        needed.retain(|f| f.name != nearest.spec.query_column);
        needed.push(FieldSpec {
            name: nearest.spec.query_column.clone(),
            data_type: FeatureType::Vector(nearest.dimension),
            nullable: true,
        });
    }
    let opened = open(&needed)?;
    progress.set_length(opened.total_rows.unwrap_or(0));

    let reader = store.reader()?;
    let mut produced_by: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let digests = store.digests()?;
    let short = |id: &u32| digests.get(id).map_or_else(|| format!("#{id}"), |d| d.short());

    let mut rows = 0u64;
    for batch in opened.batches {
        let batch = batch?;
        let times = micros(batch.column_by_name(&options.timestamp_column).expect("opened with it"));
        if let Some(row) = (0..times.len()).find(|r| times.is_null(*r)) {
            return Err(DatasetError::NoTime {
                path: spine.to_path_buf(),
                row: rows + row as u64,
                column: options.timestamp_column.clone(),
            });
        }
        let mut entities = IndexMap::new();
        for field in needed[1..]
            .iter()
            .filter(|f| nearest.as_ref().is_none_or(|n| n.spec.query_column != f.name))
        {
            let column = batch.column_by_name(&field.name).expect("opened with it");
            let column = match field.data_type {
                FeatureType::Timestamp => Arc::new(micros(column)) as ArrayRef,
                FeatureType::Bool
                | FeatureType::Int64
                | FeatureType::Float32
                | FeatureType::Float64
                | FeatureType::Utf8
                | FeatureType::List(_)
                | FeatureType::Vector(_) => column.clone(),
            };
            entities.insert(field.name.clone(), column);
        }
        let request = OnlineRequest {
            features: refs.clone(),
            entities,
            full_feature_names: options.full_feature_names,
            as_of: AsOf::Rows(times.values().to_vec()),
            deadline: None,
        };
        // Only `--nearest`: no feature to read.
        let response = match refs.is_empty() {
            true => None,
            false => Some(online::get_online_features(catalog, &records, &reader, &request)?),
        };
        let (stored_digests, read) = response.map(|r| (r.stored_digests, r.columns)).unwrap_or_default();
        for (view, ids) in stored_digests {
            let seen = produced_by.entry(view.clone()).or_default();
            seen.extend(ids);
            if seen.len() > 1 && !options.allow_mixed_digests {
                return Err(DatasetError::MixedDigests {
                    view,
                    digests: seen.iter().map(short).collect(),
                });
            }
        }
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for column in read.into_iter().filter(|c| c.view.is_some()) {
            fields.push(Field::new(&column.name, column.values.data_type().clone(), true));
            columns.push(column.values);
        }
        if let Some(nearest) = &mut nearest {
            let query = batch
                .column_by_name(&nearest.spec.query_column)
                .expect("opened with it");
            for (name, column) in nearest.join(times.values(), query, rows)? {
                fields.push(Field::new(name, column.data_type().clone(), true));
                columns.push(column);
            }
        }
        let output =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| DatasetError::Output {
                path: spine.to_path_buf(),
                message: format!("a spine column and a feature share a name? {e}"),
            })?;
        rows += output.num_rows() as u64;
        progress.inc(output.num_rows() as u64);
        sink(output)?;
    }
    if rows == 0 {
        return Err(DatasetError::Output {
            path: spine.to_path_buf(),
            message: "the spine has no rows".into(),
        });
    }

    let mut views = BTreeMap::new();
    for r in &refs {
        if views.contains_key(&r.view) {
            continue;
        }
        let digest = catalog
            .view_record(&catalog.repo.views[&r.view])
            .expect("resolved against the catalog")
            .digest;
        let record = records.get(&r.view);
        views.insert(
            r.view.clone(),
            ViewLineage {
                digest,
                produced_by: produced_by
                    .get(&r.view)
                    .map(|ids| ids.iter().filter_map(|id| digests.get(id).copied()).collect())
                    .unwrap_or_default(),
                last_commit: record.and_then(|r| r.last_commit),
            },
        );
    }
    let lineage = Lineage {
        spine: spine.display().to_string(),
        store_commit: store.last_commit()?,
        views,
    };
    Ok((rows, lineage))
}

/// `--nearest`, ready: the view's vector history and its join keys.
struct Nearest<'o> {
    spec: &'o NearestOptions,
    history: VectorHistory,
    join_keys: Vec<FieldSpec>,
    dimension: u32,
}

impl<'o> Nearest<'o> {
    fn load(
        store: &Store,
        records: &BTreeMap<String, crate::store::ViewRecord>,
        spec: &'o NearestOptions,
    ) -> Result<Self, DatasetError> {
        let fail = |message: String| DatasetError::Nearest(message);
        let view = records.get(&spec.view).ok_or_else(|| {
            let known: Vec<&str> = records.keys().map(String::as_str).collect();
            fail(format!(
                "no view `{}` in the store (views: {}); run `skewless apply` and a backfill first",
                spec.view,
                known.join(", ")
            ))
        })?;
        search::check_k(spec.k).map_err(|e| fail(e.to_string()))?;
        let (_, dimension) =
            search::vector_feature(&view.name, &view.features, spec.vector.as_deref()).map_err(fail)?;
        let history = store
            .vector_history(view, spec.vector.as_deref())
            .map_err(|e| match e {
                crate::store::SearchError::Store(e) => DatasetError::Store(e),
                other => fail(other.to_string()),
            })?;
        Ok(Nearest {
            spec,
            history,
            join_keys: view.join_keys.clone(),
            dimension,
        })
    }

    /// The search columns of one spine chunk (`first_row` is its first
    /// row's number in the spine, for errors). Rows are searched in time
    /// order, so the history is replayed once per chunk at most.
    fn join(
        &mut self,
        times: &[i64],
        query: &ArrayRef,
        first_row: u64,
    ) -> Result<Vec<(String, ArrayRef)>, DatasetError> {
        use crate::format::value::{Value, ValueBuilder};
        use arrow_array::cast::AsArray;
        // Opened as this dimension's vectors.
        let queries = query.as_fixed_size_list();
        let components = queries
            .values()
            .as_primitive::<arrow_array::types::Float32Type>()
            .values();
        let dimension = self.dimension as usize;
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by_key(|&row| times[row]);
        let mut hits = vec![Vec::new(); times.len()];
        for row in order {
            if queries.is_null(row) {
                return Err(DatasetError::Nearest(format!(
                    "spine row {} has no `{}`: every row needs a query vector",
                    first_row + row as u64,
                    self.spec.query_column
                )));
            }
            let at = queries.value_offset(row) as usize;
            hits[row] = self
                .history
                .search_at(
                    times[row],
                    &components[at..at + dimension],
                    self.spec.k,
                    self.spec.metric,
                )
                .map_err(|e| DatasetError::Nearest(format!("spine row {}: {e}", first_row + row as u64)))?;
        }
        let mut out = Vec::new();
        for (i, key) in self.join_keys.iter().enumerate() {
            let item = key.data_type.scalar().expect("join keys are scalars");
            let mut column = ValueBuilder::new(FeatureType::List(item), times.len());
            for row_hits in &hits {
                let values = row_hits.iter().map(|h| key_value(&h.entity[i])).collect();
                column.push(Value::List(values));
            }
            out.push((format!("nearest_{}", key.name), column.finish()));
        }
        let mut distances = ValueBuilder::new(FeatureType::List(crate::types::Scalar::Float32), times.len());
        for row_hits in &hits {
            distances.push(Value::List(
                row_hits.iter().map(|h| Value::Float32(h.distance)).collect(),
            ));
        }
        out.push(("nearest_distance".to_string(), distances.finish()));
        Ok(out)
    }
}

fn key_value(key: &crate::format::layout::KeyValue) -> crate::format::value::Value {
    use crate::format::layout::KeyValue;
    use crate::format::value::Value;
    match key {
        KeyValue::Int64(v) => Value::Int64(*v),
        KeyValue::Utf8(s) => Value::Utf8(s.clone()),
    }
}

fn temporary_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// A timestamp column in microseconds UTC (opened as a timestamp).
fn micros(array: &ArrayRef) -> arrow_array::TimestampMicrosecondArray {
    crate::time::micros_array(array.as_ref()).expect("checked to be a timestamp when opened")
}

/// The output file being written.
enum Writer {
    Parquet(Box<parquet::arrow::ArrowWriter<File>>, PathBuf),
    Csv(Box<arrow_csv::Writer<File>>, PathBuf),
}

impl Writer {
    fn create(path: &Path, format: FileFormat, schema: Arc<Schema>) -> Result<Writer, DatasetError> {
        let fail = |message: String| DatasetError::Output {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create the folder: {e}")))?;
        }
        let file = File::create(path).map_err(|e| fail(format!("cannot create: {e}")))?;
        Ok(match format {
            FileFormat::Parquet => {
                // Row groups of one chunk each: memory stays bounded by the chunk.
                let properties = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_size(source::READ_BATCH_ROWS)
                    .build();
                let writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(properties))
                    .map_err(|e| fail(e.to_string()))?;
                Writer::Parquet(Box::new(writer), path.to_path_buf())
            }
            FileFormat::Csv => Writer::Csv(
                Box::new(arrow_csv::WriterBuilder::new().with_header(true).build(file)),
                path.to_path_buf(),
            ),
            // `format_of` tells files by extension: a dataset is never a table.
            FileFormat::Delta(_) | FileFormat::Postgres => {
                return Err(fail("a dataset is written as .parquet or .csv".into()));
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        match self {
            Writer::Parquet(w, path) => w.write(batch).map_err(|e| DatasetError::Output {
                path: path.clone(),
                message: e.to_string(),
            }),
            Writer::Csv(w, path) => w.write(&text_timestamps(batch)).map_err(|e| DatasetError::Output {
                path: path.clone(),
                message: e.to_string(),
            }),
        }
    }

    /// Closes the file, recording `lineage` and the `statistics` of every
    /// column (in the Parquet metadata, or in `<out>.lineage.json` and
    /// `<out>.stats.json` beside a CSV file).
    fn finish(self, lineage: &Lineage, statistics: &Statistics, out: &Path) -> Result<(), DatasetError> {
        let json = serde_json::to_string(lineage).expect("lineage serializes");
        let stats = statistics.to_json();
        match self {
            Writer::Parquet(mut w, path) => {
                w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(LINEAGE_KEY.to_string(), json));
                w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(STATS_KEY.to_string(), stats));
                w.close().map_err(|e| DatasetError::Output {
                    path,
                    message: e.to_string(),
                })?;
            }
            Writer::Csv(w, path) => {
                drop(w);
                for (suffix, text) in [(".lineage.json", json), (".stats.json", stats)] {
                    let mut name = out.file_name().unwrap_or_default().to_os_string();
                    name.push(suffix);
                    std::fs::write(out.with_file_name(name), text).map_err(|e| DatasetError::Output {
                        path: path.clone(),
                        message: format!("cannot write {suffix}: {e}"),
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The Parquet key-value metadata key holding a dataset's [`Lineage`] (JSON).
pub const LINEAGE_KEY: &str = "skewless.lineage";

/// The Parquet key-value metadata key holding the [`Statistics`] of every
/// column of a dataset (JSON): the baseline `skewless drift` compares with.
pub const STATS_KEY: &str = "skewless.stats";

/// The statistics `dataset` recorded in a Parquet training set, `None`
/// when the file cannot be read or holds none (written by another tool).
pub fn recorded_statistics(path: &Path) -> Option<Statistics> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(File::open(path).ok()?).ok()?;
    let text = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == STATS_KEY)?
        .value
        .clone()?;
    Statistics::from_json(&text).ok()
}

/// Timestamp columns as RFC 3339 text for CSV (UTC, microseconds): Arrow's
/// CSV writer formats named time zones only with its time-zone database.
fn text_timestamps(batch: &RecordBatch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), ArrowType::Timestamp(..)) {
            let micros = micros(column);
            let text: StringArray = (0..micros.len())
                .map(|r| {
                    micros
                        .is_valid(r)
                        .then(|| crate::time::format_timestamp(micros.value(r)))
                })
                .collect();
            fields.push(Field::new(field.name(), ArrowType::Utf8, true));
            columns.push(Arc::new(text) as ArrayRef);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("same rows, matching fields")
}
