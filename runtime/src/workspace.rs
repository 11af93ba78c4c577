//! The library's front door: a feature repo opened once (its config, the
//! wasmtime runtime with the repo's compile cache, the components checked
//! against the config, and the store), and every job run on it. The CLI's
//! commands, the server and the Python package all open repos here, so a
//! repo means the same thing to each of them.
//!
//! ```no_run
//! use skewless_runtime::{Workspace, Views};
//! let workspace = Workspace::open("examples/repos/driver_stats".as_ref(), Views::All)?;
//! print!("{}", workspace.registry()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use indicatif::ProgressBar;

use crate::apply::{self, AllowBatchDependent, ApplyError, Plan};
use crate::backfill::{
    self, BackfillError, BackfillOptions, ImportOptions, MaterializeWindow, Materialized, ViewSummary,
};
use crate::catalog::Catalog;
use crate::dataset::{self, DatasetError, DatasetOptions, DatasetSummary, JoinOptions, Lineage};
use crate::drift::{self, DriftError, DriftQuery, DriftReport};
use crate::engine::Runtime;
use crate::error::LoadError;
use arrow_array::Array;
use arrow_array::cast::AsArray;

use crate::online::{self, AsOf, OnlineColumn, OnlineError, OnlineRequest, OnlineResponse, RawColumn, ReadSpec};
use crate::push::{self, PushError, PushSummary};
use crate::repo::{FeatureRef, Repo, RepoError};
use crate::search::{self, Metric};
use crate::stats::Statistics;
use crate::stats_report::{StatsError, StatsQuery, StatsReport};
use crate::store::{BackupSummary, Registry, SearchError, Store, StoreError, WriteTo};
use crate::verify::{self, Report, VerifyError};

/// What a search looks for.
#[derive(Debug, Clone)]
pub enum SearchQuery<'a> {
    /// This vector.
    Vector(Vec<f32>),
    /// The served vector of the one entity these join-key columns name
    /// ("more like this"), read as any read is.
    Like(Vec<(&'a str, RawColumn<'a>)>),
}

/// One search: [`Workspace::search`].
#[derive(Debug, Clone)]
pub struct SearchSpec<'a> {
    /// The view searched.
    pub view: &'a str,
    /// Its vector feature, when it has several.
    pub vector: Option<&'a str>,
    /// The query.
    pub query: SearchQuery<'a>,
    /// Entities answered (1 to [`search::MAX_K`]).
    pub k: usize,
    /// The distance.
    pub metric: Metric,
    /// The hits' features to read, as `view:feature` or `view`.
    pub features: &'a [String],
}

/// Why [`Workspace::search`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// No such view in the store.
    #[error("unknown view `{view}` (views: {known}): run `skewless apply` first")]
    UnknownView {
        /// The view asked for.
        view: String,
        /// The views there are.
        known: String,
    },
    /// "More like this" for an entity without a served vector (none
    /// stored, past the TTL, or not one entity).
    #[error("entity {0} has no stored vector to search with (or names more than one entity)")]
    NoStoredVector(String),
    /// The search was refused or failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The read of the hits' features failed.
    #[error(transparent)]
    Read(#[from] OnlineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which views' components to load: loading compiles (or maps from the
/// cache) each component, so a command loads only what it runs.
#[derive(Debug, Clone, Copy)]
pub enum Views<'a> {
    /// Every view.
    All,
    /// No view: for commands that read the store only (`stats`, `drift`,
    /// `backup`).
    None,
    /// These materialized views, or every materialized view when empty.
    Materialized(&'a [String]),
    /// The views these feature references and this service read.
    Read {
        /// Feature references, `view:feature` or `view`.
        features: &'a [String],
        /// A feature service.
        service: Option<&'a str>,
    },
}

/// A repo that cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// `skewless.toml` or a component does not check out.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The wasmtime engine could not start.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where compiled components are cached for a repo rooted at `repo_root`,
/// unless `SKEWLESS_CACHE_DIR` says otherwise.
pub fn cache_dir(repo_root: &Path) -> PathBuf {
    match std::env::var_os("SKEWLESS_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root.join(".skewless").join("cache"),
    }
}

/// A feature repo, opened once: see the module docs.
pub struct Workspace {
    catalog: Catalog,
    store: Store,
    runtime: Runtime,
}

impl Workspace {
    /// Opens the repo in `dir` with the components `views` selects, and its
    /// existing store (a missing store is an error that says what to run).
    pub fn open(dir: &Path, views: Views<'_>) -> Result<Workspace, OpenError> {
        Workspace::open_with(dir, views, false)
    }

    /// Opens the repo in `dir` with every component, creating its store if
    /// there is none yet: what `apply` needs.
    pub fn create(dir: &Path) -> Result<Workspace, OpenError> {
        Workspace::open_with(dir, Views::All, true)
    }

    fn open_with(dir: &Path, views: Views<'_>, create_store: bool) -> Result<Workspace, OpenError> {
        let repo = Repo::open(dir)?;
        let runtime = Runtime::with_pool(Some(cache_dir(&repo.root)), repo.runtime)?;
        let wanted = wanted_views(&repo, views);
        let catalog = Catalog::load_views(repo, &runtime, |v| wanted.as_ref().is_none_or(|w| w.contains(&v.name)))?;
        let mut store = if create_store {
            Store::open(&catalog.repo.store_path)?
        } else {
            Store::open_existing(&catalog.repo.store_path)?
        };
        store.keep_statistics(catalog.repo.monitoring.statistics);
        Ok(Workspace {
            catalog,
            store,
            runtime,
        })
    }

    /// The registry of the repo in `dir`, without loading any component:
    /// what `ls` and `describe` print.
    pub fn registry_of(dir: &Path) -> Result<Registry, OpenError> {
        let repo = Repo::open(dir)?;
        Ok(Store::open_existing(&repo.store_path)?.registry()?)
    }

    /// The repo as parsed.
    pub fn repo(&self) -> &Repo {
        &self.catalog.repo
    }

    /// The repo with its components loaded.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The wasmtime runtime the components were loaded with.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The catalog and the store, for a server that owns them.
    pub fn into_parts(self) -> (Catalog, Store) {
        (self.catalog, self.store)
    }

    /// The registry as recorded.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        self.store.registry()
    }

    /// What `apply` would change.
    pub fn plan(&self, allow: &AllowBatchDependent) -> Result<Plan, ApplyError> {
        apply::plan(&self.catalog, &self.store, allow)
    }

    /// Records `plan` in the registry.
    pub fn apply(&self, plan: Plan) -> Result<Registry, StoreError> {
        apply::apply(plan, &self.store)
    }

    /// Backfills materialized views; `progress` counts rows.
    pub fn backfill(
        &self,
        options: &BackfillOptions,
        progress: &ProgressBar,
    ) -> Result<Vec<ViewSummary>, BackfillError> {
        backfill::backfill(&self.catalog, &self.store, options, progress)
    }

    /// Feast's materialize ([`backfill::materialize`]): `views` (every
    /// stored view when empty) over `window`.
    pub fn materialize(&self, views: &[String], window: MaterializeWindow) -> Result<Vec<Materialized>, BackfillError> {
        backfill::materialize(&self.catalog, &self.store, views, window)
    }

    /// Backfills materialized views into a new version of the store, built
    /// beside the live one (which servers go on reading and writing): a
    /// copy of the live store plus this backfill, ready for a server to
    /// swap in (`POST /admin/swap`). `progress` counts rows.
    pub fn backfill_new_version(
        &self,
        name: &str,
        options: &BackfillOptions,
        progress: &ProgressBar,
    ) -> Result<NewVersion, BackfillError> {
        let building = self.store.begin_version(name)?;
        let views = backfill::backfill(&self.catalog, &building.store, options, progress)?;
        let (base_commit, log_sequence) = (building.base.commit, building.base.log_sequence);
        let path = building.finish()?;
        Ok(NewVersion {
            name: name.to_string(),
            path,
            base_commit,
            log_sequence,
            views,
        })
    }

    /// Stores values of a view computed elsewhere by its own component.
    pub fn import(&self, options: &ImportOptions, progress: &ProgressBar) -> Result<ViewSummary, BackfillError> {
        backfill::import(&self.catalog, &self.store, options, progress)
    }

    /// One online read (latest, or as of an instant), built from names and
    /// JSON or text columns by [`OnlineRequest::build`], from one snapshot.
    pub fn read(&self, spec: ReadSpec<'_>) -> Result<OnlineResponse, OnlineError> {
        let request = OnlineRequest::build(&self.catalog, spec)?;
        let records = self.store.views()?;
        let reader = self.store.reader()?;
        online::get_online_features(&self.catalog, &records, &reader, &request)
    }

    /// A search of a view's vector feature, then a read of the hits'
    /// features (newest values) with their distances as a last column: what
    /// `skewless search` and Python's `Repo.search` run (the server runs the
    /// same two steps on its own snapshot).
    pub fn search(&self, spec: SearchSpec<'_>) -> Result<OnlineResponse, FindError> {
        let records = self.store.views()?;
        let record = records.get(spec.view).ok_or_else(|| FindError::UnknownView {
            view: spec.view.to_string(),
            known: records.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let query = match spec.query {
            SearchQuery::Vector(vector) => vector,
            // The entity's vector as a read answers it (TTL included): the one
            // read path, so its keys are typed as every read types them.
            SearchQuery::Like(columns) => {
                let (position, _) = search::vector_feature(&record.name, &record.features, spec.vector)
                    .map_err(SearchError::NoVector)?;
                let feature = [format!("{}:{}", record.name, record.features[position].name)];
                let read = self.read(ReadSpec {
                    features: &feature,
                    service: None,
                    columns: columns.clone(),
                    full_feature_names: false,
                    as_of: AsOf::Latest,
                    deadline: None,
                })?;
                let vectors = read.columns.iter().find(|c| c.view.is_some()).map(|c| &c.values);
                match vectors.and_then(|v| v.as_fixed_size_list_opt()) {
                    Some(v) if v.len() == 1 && v.is_valid(0) => v
                        .value(0)
                        .as_primitive::<arrow_array::types::Float32Type>()
                        .values()
                        .to_vec(),
                    _ => {
                        let named: Vec<String> = (columns.iter())
                            .map(|(name, column)| match column {
                                RawColumn::Json(values) => {
                                    let shown: Vec<String> = (values.iter())
                                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                                        .collect();
                                    format!("{name}={}", shown.join(","))
                                }
                                RawColumn::Text(values) => format!("{name}={}", values.join(",")),
                            })
                            .collect();
                        return Err(FindError::NoStoredVector(named.join(" ")));
                    }
                }
            }
        };
        let now = crate::time::now_micros();
        let hits = self
            .store
            .nearest(record, spec.vector, &query, spec.k, spec.metric, now)?;
        let entities = search::entity_columns(&record.join_keys, &hits);
        let mut response = self.read(ReadSpec {
            features: spec.features,
            service: None,
            columns: entities
                .iter()
                .map(|(name, values)| (name.as_str(), RawColumn::Json(values)))
                .collect(),
            full_feature_names: false,
            as_of: AsOf::Latest,
            deadline: None,
        })?;
        response.columns.push(OnlineColumn::distances(&hits));
        Ok(response)
    }

    /// Pushes `df` (columns of JSON values) to the push source `source`
    /// and commits it: what `POST /push` does, without the server's group
    /// commit.
    pub fn push(
        &self,
        source: &str,
        df: &IndexMap<String, Vec<serde_json::Value>>,
        to: WriteTo,
    ) -> Result<PushSummary, PushError> {
        let records = self.store.views()?;
        let mut prepared = push::prepare(&self.catalog, &self.store, &records, source, df, to, None)?;
        let to = prepared.to;
        let mut views: Vec<_> = prepared.views.iter_mut().map(|(r, p)| (&*r, p, to)).collect();
        let commit = self.store.write_views(&mut views)?;
        Ok(prepared.summary(commit))
    }

    /// Point-in-time correct training data; `progress` counts spine rows.
    pub fn dataset(&self, options: &DatasetOptions, progress: &ProgressBar) -> Result<DatasetSummary, DatasetError> {
        dataset::build(&self.catalog, &self.store, options, progress)
    }

    /// Point-in-time correct training data for a spine held in memory.
    pub fn dataset_in_memory(
        &self,
        label: &str,
        spine: Vec<arrow_array::RecordBatch>,
        options: &JoinOptions,
    ) -> Result<(Vec<arrow_array::RecordBatch>, Lineage), DatasetError> {
        dataset::build_in_memory(&self.catalog, &self.store, label, spine, options)
    }

    /// Compares the online and offline paths on `samples` entities per view,
    /// and probes every transform (`seed` picks where batches are split).
    pub fn verify(&self, samples: usize, seed: u64) -> Result<Report, VerifyError> {
        verify::verify(&self.catalog, &self.store, samples, seed)
    }

    /// `skewless stats`: a view's statistics, or one feature's.
    pub fn stats(&self, query: &StatsQuery) -> Result<StatsReport, StatsError> {
        crate::stats_report::report(&self.store, query)
    }

    /// `skewless stats --rebuild [VIEW]`: statistics recomputed from the
    /// stored history and kept.
    pub fn rebuild_statistics(&self, view: Option<&str>) -> Result<Vec<(String, Statistics)>, StatsError> {
        crate::stats_report::rebuild(&self.store, view)
    }

    /// `skewless drift`: served or stored values against a training set.
    pub fn drift(&self, query: &DriftQuery) -> Result<DriftReport, DriftError> {
        drift::compare(&self.catalog.repo, &self.store, query)
    }

    /// `skewless backup`: a consistent copy of the store at `out`.
    pub fn backup(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        self.store.backup(out)
    }
}

/// A store version built by [`Workspace::backfill_new_version`].
#[derive(Debug)]
pub struct NewVersion {
    /// Its name, for the swap.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// The live store's commit it copies.
    pub base_commit: u64,
    /// The replication-log message it includes (0: none).
    pub log_sequence: u64,
    /// What the backfill stored in it.
    pub views: Vec<ViewSummary>,
}

/// The views whose components `views` needs, `None` for all of them.
fn wanted_views(repo: &Repo, views: Views<'_>) -> Option<Vec<String>> {
    match views {
        Views::All => None,
        Views::None => Some(Vec::new()),
        Views::Materialized(names) => Some(
            repo.views
                .values()
                .filter(|v| v.is_materialized() && (names.is_empty() || names.contains(&v.name)))
                .map(|v| v.name.clone())
                .collect(),
        ),
        Views::Read { features, service } => {
            let mut wanted: Vec<String> = features
                .iter()
                .filter_map(|f| FeatureRef::parse(f))
                .map(|f| f.view)
                .collect();
            if let Some(service) = service.and_then(|s| repo.services.get(s)) {
                wanted.extend(service.features.iter().map(|f| f.view.clone()));
            }
            Some(wanted)
        }
    }
}
