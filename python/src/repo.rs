//! `skewless.Repo`: a feature repo opened through the library's front door
//! ([`Workspace`]), as the CLI and the server open it, so each method is the
//! CLI command of the same name run in-process: the same plan, the same
//! backfill loop, the same join, the same push path, the same messages.
//!
//! The repo is opened on first use and kept open (components loaded, the
//! store's file lock held) until `close()` or the end of a `with` block:
//! redb lets one process at a time open a store, so close the repo before
//! `skewless serve` opens the same store.

use std::path::PathBuf;
use std::sync::Mutex;

use arrow_array::RecordBatch;
use indexmap::IndexMap;
use indicatif::ProgressBar;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_arrow::PyTable;
use pyo3_arrow::input::AnyRecordBatch;
use skewless_runtime::apply::AllowBatchDependent;
use skewless_runtime::backfill::{
    BackfillOptions, DEFAULT_ROWS_PER_COMMIT, ImportOptions, MaterializeWindow, ViewSummary,
};
use skewless_runtime::dataset::{JoinOptions, LINEAGE_KEY, NearestOptions};
use skewless_runtime::online::{AsOf, OnlineResponse, RawColumn, ReadSpec};
use skewless_runtime::search::Metric;
use skewless_runtime::{SearchQuery, SearchSpec, Views, Workspace, WriteTo};

use crate::{Error, canonical_batches, message};

/// A feature repo (a folder with `skewless.toml`), opened once and kept open.
#[pyclass(subclass, module = "skewless._skewless")]
pub struct Repo {
    path: PathBuf,
    /// The opened repo, with the process that opened it (a forked child opens its own).
    open: Mutex<Option<(u32, Workspace)>>,
}

impl Repo {
    /// Runs `job` on the opened repo (opening it first, with its store:
    /// `create` makes a missing store, as `apply` does).
    fn with<T>(&self, create: bool, job: impl FnOnce(&Workspace) -> PyResult<T>) -> PyResult<T> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if open.as_ref().is_none_or(|(owner, _)| *owner != pid) {
            *open = None;
            let workspace = if create {
                Workspace::create(&self.path)
            } else {
                Workspace::open(&self.path, Views::All)
            };
            *open = Some((pid, workspace.map_err(|e| Error::new_err(message(&e)))?));
        }
        job(&open.as_ref().expect("opened above").1)
    }
}

/// An online answer as `(table, statuses, event_timestamps, digests)`,
/// which the Python wrapper makes an `OnlineResponse`.
fn online_answer<'py>(py: Python<'py>, response: &OnlineResponse) -> PyResult<Bound<'py, PyAny>> {
    let fields: Vec<_> = response
        .columns
        .iter()
        .map(|c| arrow_schema::Field::new(&c.name, c.values.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        std::sync::Arc::new(arrow_schema::Schema::new(fields)),
        response.columns.iter().map(|c| c.values.clone()).collect(),
    )
    .map_err(|e| Error::new_err(e.to_string()))?;
    let table = PyTable::try_new(vec![batch.clone()], batch.schema())?.into_pyarrow(py)?;
    let statuses = PyDict::new(py);
    let timestamps = PyDict::new(py);
    for column in response.columns.iter().filter(|c| c.view.is_some()) {
        let names: Vec<String> = column
            .statuses
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .expect("a status serializes")
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        statuses.set_item(&column.name, names)?;
        timestamps.set_item(&column.name, &column.event_timestamps)?;
    }
    let digests = PyDict::new(py);
    for (view, digest) in &response.digests {
        // Hex, as the server's `metadata.lineage` and the dataset lineage have it.
        digests.set_item(view, digest.hex())?;
    }
    Ok((table, statuses, timestamps, digests).into_pyobject(py)?.into_any())
}

fn summary<'py>(py: Python<'py>, s: &ViewSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("view", &s.view)?;
    d.set_item("rows_read", s.rows_read)?;
    d.set_item("rows_written", s.rows_written)?;
    d.set_item("rows_skipped", s.rows_skipped)?;
    d.set_item("row_errors", s.row_errors)?;
    d.set_item("first_errors", &s.first_errors)?;
    d.set_item("commits", &s.commits)?;
    d.set_item("seconds", s.elapsed.as_secs_f64())?;
    d.set_item("table_version", s.table_version)?;
    d.set_item("watermark", s.watermark)?;
    Ok(d)
}

#[pymethods]
impl Repo {
    #[new]
    fn new(path: PathBuf) -> Repo {
        Repo {
            path,
            open: Mutex::new(None),
        }
    }

    /// The repo's folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `skewless apply`: records the repo's entities, sources and views in
    /// the store (creating it), probing new or changed transforms. Returns
    /// the plan as the CLI prints it (empty when nothing changed).
    #[pyo3(signature = (*, dry_run = false, allow_batch_dependent = None))]
    fn apply(&self, py: Python<'_>, dry_run: bool, allow_batch_dependent: Option<Vec<String>>) -> PyResult<String> {
        let allow = match allow_batch_dependent {
            None => AllowBatchDependent::None,
            Some(views) if views.is_empty() => AllowBatchDependent::All,
            Some(views) => AllowBatchDependent::Views(views),
        };
        // A repo opened before may have been edited since: apply reopens it.
        self.close();
        self.with(true, |workspace| {
            py.detach(|| {
                let plan = workspace.plan(&allow).map_err(|e| message(&e))?;
                let text = if plan.has_changes() {
                    plan.to_string()
                } else {
                    String::new()
                };
                if !dry_run && plan.has_changes() {
                    workspace.apply(plan).map_err(|e| message(&e))?;
                }
                Ok::<_, String>(text)
            })
            .map_err(Error::new_err)
        })
    }

    /// `skewless backfill`: runs materialized views (all, or `views`) over
    /// their sources, events with time in `[start, end)` (RFC 3339 or a
    /// date), and stores every value. `incremental=True` loads only what is
    /// new since the last incremental load (`backfill --incremental`: a
    /// Delta table's commits since the version last loaded). Returns one
    /// summary per view.
    #[pyo3(signature = (views = None, *, start = None, end = None, rows_per_commit = DEFAULT_ROWS_PER_COMMIT, incremental = false))]
    fn backfill<'py>(
        &self,
        py: Python<'py>,
        views: Option<Vec<String>>,
        start: Option<&str>,
        end: Option<&str>,
        rows_per_commit: usize,
        incremental: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        if incremental {
            if start.is_some() || end.is_some() {
                return Err(Error::new_err(
                    "`incremental=True` loads from where the last incremental load ended: give no `start` or `end`",
                ));
            }
            let views = views.unwrap_or_default();
            let window = MaterializeWindow::Incremental {
                end: skewless_runtime::time::now_micros(),
            };
            let loaded = self.with(false, |workspace| {
                py.detach(|| workspace.materialize(&views, window))
                    .map_err(|e| Error::new_err(message(&e)))
            })?;
            let out = PyList::empty(py);
            for m in &loaded {
                out.append(summary(py, &m.summary)?)?;
            }
            return Ok(out);
        }
        let time = |t: Option<&str>, what: &str| {
            t.map(skewless_runtime::time::parse_timestamp)
                .transpose()
                .map_err(|e| Error::new_err(format!("{what}: {e}")))
        };
        let options = BackfillOptions {
            views: views.unwrap_or_default(),
            start: time(start, "start")?,
            end: time(end, "end")?,
            rows_per_commit: rows_per_commit.max(1),
            ..BackfillOptions::default()
        };
        let summaries = self.with(false, |workspace| {
            py.detach(|| workspace.backfill(&options, &ProgressBar::hidden()))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        let out = PyList::empty(py);
        for s in &summaries {
            out.append(summary(py, s)?)?;
        }
        Ok(out)
    }

    /// `skewless import`: stores values of `view` computed elsewhere by its
    /// own component (the Parquet that `skewless.spark.transform` or
    /// `skewless.ray.Transform` wrote, a file or a folder), as backfill would.
    #[pyo3(signature = (view, path, *, rows_per_commit = DEFAULT_ROWS_PER_COMMIT))]
    fn import_materialized<'py>(
        &self,
        py: Python<'py>,
        view: String,
        path: PathBuf,
        rows_per_commit: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let options = ImportOptions {
            view,
            from: path,
            rows_per_commit: rows_per_commit.max(1),
        };
        let s = self.with(false, |workspace| {
            py.detach(|| workspace.import(&options, &ProgressBar::hidden()))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        summary(py, &s)
    }

    /// The online read (`skewless get`, `POST /get-online-features`):
    /// `entities` maps join keys and request fields to lists of values (a
    /// list of one applies to every row). `as_of` (microseconds UTC) reads
    /// the history as of that instant instead of the newest values.
    /// Returns `(table, statuses, event_timestamps, digests)`; the Python
    /// wrapper makes it an `OnlineResponse`.
    #[pyo3(signature = (features, entities_json, as_of = None, full_feature_names = false))]
    fn _get_online_features<'py>(
        &self,
        py: Python<'py>,
        features: Vec<String>,
        entities_json: &str,
        as_of: Option<i64>,
        full_feature_names: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let entities: IndexMap<String, Vec<serde_json::Value>> = serde_json::from_str(entities_json)
            .map_err(|e| Error::new_err(format!("entities: each must be a list of values: {e}")))?;
        let response = self.with(false, |workspace| {
            py.detach(|| {
                workspace.read(ReadSpec {
                    features: &features,
                    service: None,
                    columns: entities
                        .iter()
                        .map(|(name, values)| (name.as_str(), RawColumn::Json(values)))
                        .collect(),
                    full_feature_names,
                    as_of: as_of.map_or(AsOf::Latest, AsOf::At),
                    deadline: None,
                })
            })
            .map_err(|e| Error::new_err(message(&e)))
        })?;
        online_answer(py, &response)
    }

    /// `skewless search`: the `k` entities of `view` nearest to `query`
    /// (or, with `like_json`, to the stored vector of the entity with those
    /// join-key values), then their `features` (default: every feature of
    /// the view but vectors), with a last column `distance`. Returns what
    /// `_get_online_features` returns.
    #[pyo3(signature = (view, query = None, like_json = None, k = 10, metric = "cosine", features = None, vector = None))]
    #[allow(clippy::too_many_arguments)]
    fn _search<'py>(
        &self,
        py: Python<'py>,
        view: &str,
        query: Option<Vec<f32>>,
        like_json: Option<&str>,
        k: usize,
        metric: &str,
        features: Option<Vec<String>>,
        vector: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let metric = Metric::parse(metric).map_err(Error::new_err)?;
        let response = self.with(false, |workspace| {
            let registry = workspace.registry().map_err(|e| Error::new_err(message(&e)))?;
            let record = registry
                .views
                .get(view)
                .ok_or_else(|| Error::new_err(format!("unknown view `{view}`: run `apply` first")))?;
            let features: Vec<String> = match features {
                Some(features) => features.iter().map(|f| format!("{view}:{f}")).collect(),
                None => (record.features.iter())
                    .filter(|f| f.data_type.dimension().is_none())
                    .map(|f| format!("{view}:{}", f.name))
                    .collect(),
            };
            let like: Option<IndexMap<String, Vec<serde_json::Value>>> = like_json
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| Error::new_err(format!("like: a dict of join keys to values: {e}")))?;
            let query = match (query, &like) {
                (Some(query), None) => SearchQuery::Vector(query),
                (None, Some(like)) => SearchQuery::Like(
                    like.iter()
                        .map(|(name, values)| (name.as_str(), RawColumn::Json(values)))
                        .collect(),
                ),
                _ => {
                    return Err(Error::new_err(
                        "search: give a `query` vector or `like` (an entity), one of them",
                    ));
                }
            };
            let spec = SearchSpec {
                view,
                vector: vector.as_deref(),
                query,
                k,
                metric,
                features: &features,
            };
            py.detach(|| workspace.search(spec))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        online_answer(py, &response)
    }

    /// The training-data join (`skewless dataset`) over a spine held in
    /// memory: each row gets, per feature, the value the server would have
    /// answered at the row's own time. Returns a `pyarrow.Table` (the spine's
    /// columns, then the features) whose schema metadata holds the lineage
    /// under `skewless.lineage` (JSON).
    ///
    /// `nearest = "view"` (or `"view:vector"`) also searches that view as
    /// of each row's time with the row's `query_column` vector, joining
    /// `nearest_<join key>` and `nearest_distance` lists (`dataset --nearest`).
    #[pyo3(signature = (spine, features, *, timestamp_column = "event_timestamp".to_string(), full_feature_names = false, allow_mixed_digests = false, nearest = None, query_column = "query".to_string(), k = 10, metric = "cosine"))]
    #[allow(clippy::too_many_arguments)]
    fn get_historical_features<'py>(
        &self,
        py: Python<'py>,
        spine: AnyRecordBatch,
        features: Vec<String>,
        timestamp_column: String,
        full_feature_names: bool,
        allow_mixed_digests: bool,
        nearest: Option<String>,
        query_column: String,
        k: usize,
        metric: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spine = canonical_batches(spine)?;
        let nearest = match nearest {
            None => None,
            Some(target) => {
                let (view, vector) = match target.split_once(':') {
                    Some((view, vector)) => (view.to_string(), Some(vector.to_string())),
                    None => (target, None),
                };
                Some(NearestOptions {
                    view,
                    vector,
                    k,
                    metric: Metric::parse(metric).map_err(Error::new_err)?,
                    query_column,
                })
            }
        };
        let options = JoinOptions {
            features,
            service: None,
            timestamp_column,
            full_feature_names,
            allow_mixed_digests,
            nearest,
        };
        let (batches, lineage) = self.with(false, |workspace| {
            py.detach(|| workspace.dataset_in_memory("(in memory)", spine, &options))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        let json = serde_json::to_string(&lineage).expect("lineage serializes");
        let schema = batches.first().expect("a spine with rows").schema();
        let mut metadata = schema.metadata().clone();
        metadata.insert(LINEAGE_KEY.to_string(), json);
        let schema = std::sync::Arc::new(schema.as_ref().clone().with_metadata(metadata));
        let batches = batches
            .into_iter()
            .map(|b| b.with_schema(schema.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::new_err(e.to_string()))?;
        PyTable::try_new(batches, schema)?.into_pyarrow(py)
    }

    /// `POST /push` in-process: `columns_json` maps each column of the push
    /// source to a list of JSON values. `to` is `online`, `offline` or
    /// `online_and_offline` (the default is `online`, as for `POST /push` and Feast). Returns the commit and the views written.
    #[pyo3(signature = (source, columns_json, to = "online"))]
    fn _push<'py>(&self, py: Python<'py>, source: &str, columns_json: &str, to: &str) -> PyResult<Bound<'py, PyDict>> {
        let df: IndexMap<String, Vec<serde_json::Value>> = serde_json::from_str(columns_json)
            .map_err(|e| Error::new_err(format!("rows: each column must be a list of values: {e}")))?;
        let to = match to {
            "online" => WriteTo::Online,
            "offline" => WriteTo::Offline,
            "online_and_offline" => WriteTo::OnlineAndOffline,
            other => {
                return Err(Error::new_err(format!(
                    "to = {other:?}: say \"online\", \"offline\" or \"online_and_offline\""
                )));
            }
        };
        let pushed = self.with(false, |workspace| {
            py.detach(|| workspace.push(source, &df, to))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        let d = PyDict::new(py);
        d.set_item("rows", pushed.rows)?;
        d.set_item("views", &pushed.views)?;
        d.set_item("commit", pushed.commit)?;
        let errors: Vec<(String, usize, String)> = pushed
            .row_errors
            .iter()
            .map(|(view, e)| (view.clone(), e.row, e.message.clone()))
            .collect();
        d.set_item("row_errors", errors)?;
        Ok(d)
    }

    /// `skewless verify`: compares the online and offline paths on
    /// `samples` entities per view, checks staleness and probes every
    /// transform. Returns the CLI's report: `report["text"]` is what
    /// `skewless verify` prints, `report["ok"]` what its exit code says,
    /// and `report["tiles"]` each aggregation view's tiles and mismatches.
    #[pyo3(signature = (samples = 100, seed = 0))]
    fn verify<'py>(&self, py: Python<'py>, samples: usize, seed: u64) -> PyResult<Bound<'py, PyDict>> {
        let report = self.with(false, |workspace| {
            py.detach(|| workspace.verify(samples, seed))
                .map_err(|e| Error::new_err(message(&e)))
        })?;
        // The CLI's own report: the same type, the same text, the same verdict.
        let d = PyDict::new(py);
        d.set_item("ok", report.is_clean())?;
        d.set_item("summary", report.summary())?;
        d.set_item("text", report.to_string())?;
        d.set_item("compared", report.compared)?;
        let differences: Vec<String> = report
            .differences
            .iter()
            .map(|x| {
                format!(
                    "`{}:{}` for {}: online {} but offline {}",
                    x.view, x.feature, x.entity, x.online, x.offline
                )
            })
            .collect();
        d.set_item("differences", differences)?;
        let stale: Vec<&str> = report.stale.iter().map(|s| s.view.as_str()).collect();
        d.set_item("stale", stale)?;
        d.set_item("failed_probes", report.failing_probes())?;
        let tiles: Vec<(String, u64, Vec<String>)> = report
            .tiles
            .iter()
            .map(|t| (t.view.clone(), t.tiles, t.mismatches.clone()))
            .collect();
        d.set_item("tiles", tiles)?;
        d.set_item("tile_mismatches", report.tile_mismatches())?;
        d.set_item("content_digest", report.store.as_ref().map(|s| s.digest.hex()))?;
        Ok(d)
    }

    /// A digest of the store's logical content: two stores holding the same
    /// values (however they were written) have the same one.
    fn content_digest(&self, py: Python<'_>) -> PyResult<String> {
        self.with(false, |workspace| {
            py.detach(|| workspace.store().content_digest())
                .map(|d| d.to_string())
                .map_err(|e| Error::new_err(message(&e)))
        })
    }

    /// Closes the repo: releases the store (so `skewless serve` or another
    /// process can open it) and the loaded components.
    fn close(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, _kind: Py<PyAny>, _value: Py<PyAny>, _traceback: Py<PyAny>) {
        self.close();
    }

    fn __repr__(&self) -> String {
        format!("<skewless.Repo {}>", self.path.display())
    }
}
