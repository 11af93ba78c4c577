//! The server's state and the work behind each route. Handlers in
//! `routes` only parse and answer; what a request means lives here, on top
//! of the runtime's one read path ([`online::get_online_features`]) and one
//! write path ([`push::prepare`], committed in groups by [`Committer`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skewless_runtime::joined::JoinedCalls;
use skewless_runtime::online::{self, OnlineRequest, RawColumn, ReadSpec};
use skewless_runtime::push::{self, Prepared};
use skewless_runtime::store::{ViewRecord, versions};
use skewless_runtime::{Catalog, NotApplied, Store, StoreError, TransformErrorKind, Workspace};

use axum::body::Bytes;
use axum::http::StatusCode;
use skewless_runtime::backfill::{self, MaterializeWindow};
use skewless_runtime::repo::ViewKind;

use crate::api::{
    FeatureColumn, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, Health, MaterializeResponse, MaterializedView,
    PushRequest, PushResponse, ReplicationHealth, SearchRequest, SwapRequest, SwapResponse,
};
use crate::auth::Auth;
use crate::commit::Committer;
use crate::error::{ApiError, blocking};
use crate::live::{LiveReader, LiveStore};
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorSettings};
use crate::replication::{self, Applied, Halt, LogSettings, Outcome, Replication};
use crate::topics;

/// Limits on what one request may ask; each refusal is a 4xx that names the flag.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest request body, in bytes (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// Most entity rows in a read, or rows in a push (`--max-rows`).
    pub max_rows: usize,
    /// Time for one request, transform calls included (`--request-timeout`).
    pub request_timeout: Duration,
    /// Requests being worked on at once (`--max-in-flight`); one more is
    /// answered 503 `overloaded` at once rather than queued, so admitted
    /// requests keep their latency. `/health` is not counted.
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 4 << 20,
            max_rows: 10_000,
            request_timeout: Duration::from_secs(2),
            max_in_flight: 64,
        }
    }
}

/// The server cannot start on this repo and store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A view differs from what `skewless apply` recorded.
    #[error(transparent)]
    NotApplied(#[from] NotApplied),
    /// The served-value log folder cannot be made.
    #[error(transparent)]
    Log(#[from] skewless_runtime::served_log::LogError),
    /// The replication log cannot be used.
    #[error(transparent)]
    ReplicationLog(#[from] replication::LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything a request needs, shared by all of them.
pub struct Server {
    catalog: Arc<Catalog>,
    /// The store, replaced whole by [`Server::swap_store`].
    live: Arc<LiveStore>,
    committer: Committer,
    records: Arc<BTreeMap<String, ViewRecord>>,
    pub(crate) limits: ServerLimits,
    pub(crate) metrics: Arc<Metrics>,
    /// Samples answers for the served-value logs and the skew monitor.
    monitor: Monitor,
    pub(crate) auth: Auth,
    /// One permit per request in flight ([`ServerLimits::max_in_flight`]).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// `/openapi.json` for this repo, made on first request (by routes.rs).
    pub(crate) openapi: std::sync::OnceLock<String>,
    started: Instant,
    /// Replicated serving: pushes go through the log, which this replica
    /// follows ([`crate::replication`]).
    replication: Option<Arc<Replication>>,
    snapshot: Mutex<Option<Snapshot>>,
    /// Pushes committed: a snapshot taken before the latest is stale.
    pushes: AtomicU64,
    /// Micros after `started` until which transform calls skip the inline
    /// attempt ([`INLINE_PAUSE`]).
    inline_paused_until: AtomicU64,
    /// On-demand views whose concurrent requests share guest calls: those
    /// checked batch-invariant at `apply` ([`JoinedCalls::for_view`]).
    joined: BTreeMap<String, Arc<JoinedCalls>>,
    /// Views a `/materialize` is loading: another one of them answers 409.
    materializing: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

/// Views reserved by one `/materialize`, released when it ends (or fails).
struct Reserved {
    set: Arc<Mutex<std::collections::BTreeSet<String>>>,
    names: Vec<String>,
}

impl Reserved {
    fn take(set: &Arc<Mutex<std::collections::BTreeSet<String>>>, names: &[String]) -> Result<Reserved, ApiError> {
        let mut held = set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(busy) = names.iter().find(|n| held.contains(*n)) {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "materializing",
                message: format!("feature view `{busy}` is being materialized; wait for that load to finish"),
            });
        }
        held.extend(names.iter().cloned());
        Ok(Reserved {
            set: set.clone(),
            names: names.to_vec(),
        })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut held = self.set.lock().unwrap_or_else(|e| e.into_inner());
        for name in &self.names {
            held.remove(name);
        }
    }
}

/// A failed load: the view's mistake (unknown, not applied) is the
/// caller's; a source that cannot be read or a transform that fails is
/// answered with its message, which names the view and the file.
fn materialize_failed(error: skewless_runtime::backfill::BackfillError) -> ApiError {
    use skewless_runtime::backfill::BackfillError;
    match error {
        BackfillError::View { .. } => ApiError::bad_request("unknown_feature_view", error.to_string()),
        BackfillError::NotApplied(e) => ApiError {
            status: StatusCode::CONFLICT,
            code: "not_applied",
            message: e.to_string(),
        },
        BackfillError::Store(e) => ApiError::store(e),
        // A source that cannot be read, a transform that fails (and any kind to come).
        other => {
            tracing::error!("materialize: {other}");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "materialize_failed",
                message: format!("{other}; what was stored before it stays"),
            }
        }
    }
}

struct Snapshot {
    taken: Instant,
    generation: u64,
    reader: Arc<LiveReader>,
}

/// How long reads may share one store snapshot: commits by other processes
/// (a backfill) are served at most this much later.
const SNAPSHOT_AGE: Duration = Duration::from_millis(1);

/// How long one request's transform calls may hold an async worker; past
/// it they run on the blocking pool ([`Server::get_online_features_inline`]).
/// A 1-entity call of a Rust transform takes microseconds, of a Python or
/// JavaScript one well under a millisecond; the margin is for the time
/// limit being wall-clock time, which goes on while a loaded machine has
/// the worker descheduled (2 ms was overrun every few seconds under load).
const INLINE_BUDGET: Duration = Duration::from_millis(10);

/// How long transform calls stay on the blocking pool after one ran past
/// [`INLINE_BUDGET`]: a slow view costs one wasted budget per pause, not
/// one per request.
const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// Where [`Server::get_online_features_inline`] got to.
pub(crate) enum Inline {
    /// Answered on the calling thread.
    Answered(Result<GetOnlineFeaturesResponse, ApiError>),
    /// To be answered on the blocking pool with [`Server::get_online_features`].
    Offload,
}

/// Why a read stopped.
enum Refusal {
    /// A transform call ran past the inline budget.
    OverBudget {
        view: String,
    },
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for Refusal {
    fn from(error: E) -> Self {
        Refusal::Api(error.into())
    }
}

/// What handlers get: the server, shared.
pub type AppState = Arc<Server>;

impl Server {
    /// A server for an opened repo (its catalog and store), provided every
    /// view is applied as the repo declares it now (else: run `skewless apply`);
    /// `auth` says who may call what ([`Auth::none`]: anyone).
    pub fn new(workspace: Workspace, limits: ServerLimits, auth: Auth) -> Result<AppState, StartError> {
        let settings = MonitorSettings::from(&workspace.catalog().repo.monitoring);
        Server::with_monitoring(workspace, limits, auth, &settings)
    }

    /// As [`Server::new`], sampling answers as `monitoring` says rather
    /// than as the repo's `[monitoring]` does.
    pub fn with_monitoring(
        workspace: Workspace,
        limits: ServerLimits,
        auth: Auth,
        monitoring: &MonitorSettings,
    ) -> Result<AppState, StartError> {
        let (catalog, store) = workspace.into_parts();
        Server::assemble(catalog, store, limits, auth, monitoring, None)
    }

    /// As [`Server::with_monitoring`], replicated: pushes are published to
    /// the log `log` names, and this replica applies the log from the
    /// message after the last one its store holds.
    pub async fn replicated(
        workspace: Workspace,
        limits: ServerLimits,
        auth: Auth,
        monitoring: &MonitorSettings,
        log: LogSettings,
    ) -> Result<AppState, StartError> {
        let applied = workspace.store().log_sequence()?;
        let replication = Replication::connect(log, applied).await?;
        Server::following(workspace, limits, auth, monitoring, replication)
    }

    /// A replica over `replication`'s log: starts following it.
    pub(crate) fn following(
        workspace: Workspace,
        limits: ServerLimits,
        auth: Auth,
        monitoring: &MonitorSettings,
        replication: Replication,
    ) -> Result<AppState, StartError> {
        let (catalog, store) = workspace.into_parts();
        let replication = Arc::new(replication);
        let server = Server::assemble(catalog, store, limits, auth, monitoring, Some(replication.clone()))?;
        let following = Arc::downgrade(&server);
        replication.start(server.metrics.clone(), move |messages| match following.upgrade() {
            Some(server) => server.apply_log(messages),
            None => Halt::Retry("the server is stopping".into()).into(),
        });
        Ok(server)
    }

    fn assemble(
        catalog: Catalog,
        store: Store,
        limits: ServerLimits,
        auth: Auth,
        monitoring: &MonitorSettings,
        replication: Option<Arc<Replication>>,
    ) -> Result<AppState, StartError> {
        let records = store.views()?;
        for view in catalog.repo.views.values() {
            catalog.applied_record(view, records.get(&view.name))?;
        }
        let joined = records
            .values()
            .filter_map(|record| Some((record.name.clone(), JoinedCalls::for_view(record)?)))
            .collect();
        let live = Arc::new(LiveStore::new(store));
        let (catalog, records, metrics) = (Arc::new(catalog), Arc::new(records), Arc::new(Metrics::default()));
        let monitor = Monitor::start(monitoring, catalog.clone(), records.clone(), metrics.clone())?;
        Ok(Arc::new(Server {
            catalog,
            committer: Committer::start(live.clone()),
            live,
            records,
            monitor,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
            openapi: std::sync::OnceLock::new(),
            limits,
            metrics,
            auth,
            started: Instant::now(),
            replication,
            snapshot: Mutex::new(None),
            pushes: AtomicU64::new(0),
            inline_paused_until: AtomicU64::new(0),
            joined,
            materializing: Arc::default(),
        }))
    }

    /// The repo being served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether answering `request` calls a transform (it names an on-demand
    /// view); unknown names are left for the read to report.
    pub fn runs_transforms(&self, request: &GetOnlineFeaturesRequest) -> bool {
        let views = &self.catalog.repo.views;
        let on_demand = |view: &str| views.get(view).is_some_and(|v| !v.is_materialized());
        let service = request
            .feature_service
            .as_ref()
            .and_then(|s| self.catalog.repo.services.get(s));
        request
            .features
            .iter()
            .any(|f| on_demand(f.split(':').next().unwrap_or_default()))
            || service.is_some_and(|s| s.features.iter().any(|f| on_demand(&f.view)))
    }

    /// `POST /get-online-features` on the calling thread, an async worker:
    /// answered there unless a transform call would hold the worker longer
    /// than [`INLINE_BUDGET`]. Such a call is stopped at the budget (the
    /// transform is pure, so calling it again gives the same values) and
    /// the request is [`Inline::Offload`]ed to the blocking pool, where
    /// [`Server::get_online_features`] has the rest of the request's time;
    /// for [`INLINE_PAUSE`] after that, transform calls go there directly.
    pub(crate) async fn get_online_features_inline(
        &self,
        request: &GetOnlineFeaturesRequest,
        started: Instant,
    ) -> Inline {
        // A read without transform calls never meets the budget; only the
        // pause needs to know whether this one makes any.
        let paused = self.started.elapsed().as_micros() < u128::from(self.inline_paused_until.load(Ordering::Relaxed));
        if paused && self.runs_transforms(request) {
            return Inline::Offload;
        }
        match self.read(request, started, Some(Instant::now() + INLINE_BUDGET)).await {
            Err(Refusal::OverBudget { view }) => {
                let until = (self.started.elapsed() + INLINE_PAUSE).as_micros() as u64;
                self.inline_paused_until.fetch_max(until, Ordering::Relaxed);
                tracing::debug!(
                    view,
                    "a transform call ran past the {INLINE_BUDGET:?} an async worker may spend on it: \
                     transform calls run on the blocking pool for the next {INLINE_PAUSE:?}"
                );
                Inline::Offload
            }
            Err(Refusal::Api(e)) => Inline::Answered(Err(e)),
            Ok(response) => Inline::Answered(Ok(response)),
        }
    }

    /// `POST /get-online-features`, with the request's whole time budget,
    /// on a thread of tokio's blocking pool (it may wait for a joined call).
    pub fn get_online_features(
        &self,
        request: &GetOnlineFeaturesRequest,
        started: Instant,
    ) -> Result<GetOnlineFeaturesResponse, ApiError> {
        let read = self.read(request, started, None);
        tokio::runtime::Handle::current()
            .block_on(read)
            .map_err(|refusal| match refusal {
                Refusal::Api(e) => e,
                Refusal::OverBudget { .. } => unreachable!("no budget shorter than the request's was set"),
            })
    }

    /// `POST /search`: the nearest entities by the view's vector feature
    /// ([`skewless_runtime::search`]), then an ordinary read of the
    /// features asked for, for those entities, and their distances. On a
    /// thread of tokio's blocking pool (the scan and the read block).
    pub fn search(&self, request: &SearchRequest, started: Instant) -> Result<GetOnlineFeaturesResponse, ApiError> {
        use skewless_runtime::search::Metric;
        let bad = |message: String| ApiError::bad_request("invalid_search", message);
        if request.query_string.is_some() {
            return Err(bad(
                "`query_string`: text search is not supported; send a `query` vector".into(),
            ));
        }
        if request.filters.is_some() {
            return Err(bad(
                "`filters` are not supported: search a view, then filter the answer".into(),
            ));
        }
        let views: std::collections::BTreeSet<&str> = request
            .features
            .iter()
            .map(|f| f.split_once(':').map_or(f.as_str(), |(view, _)| view))
            .collect();
        let view = match views.into_iter().collect::<Vec<_>>().as_slice() {
            [view] => *view,
            [] => {
                return Err(bad(
                    "`features` is empty: name the view's features to answer, as `view:feature`".into(),
                ));
            }
            several => {
                return Err(bad(format!(
                    "`features` name several views ({}): a search reads one",
                    several.join(", ")
                )));
            }
        };
        let record = self.records.get(view).ok_or_else(|| {
            bad(format!(
                "unknown view `{view}` (views: {})",
                self.records.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let query: Vec<f32> = match &request.query {
            None => return Err(bad("`query` is missing: send the query vector".into())),
            Some(query) => query.iter().map(|v| *v as f32).collect(),
        };
        let metric = Metric::parse(request.distance_metric.as_deref().unwrap_or("L2")).map_err(bad)?;
        // The vector asked for among `features`, else the view's only one.
        let vector = request
            .features
            .iter()
            .filter_map(|f| f.split_once(':'))
            .find_map(|(_, feature)| {
                record
                    .features
                    .iter()
                    .find(|f| f.name == feature && f.data_type.dimension().is_some())
                    .map(|f| f.name.as_str())
            });
        let searched = (self.live.current())
            .nearest(
                record,
                vector,
                &query,
                request.top_k.unwrap_or(10),
                metric,
                skewless_runtime::time::now_micros(),
            )
            .map_err(|e| match e {
                skewless_runtime::store::SearchError::Store(e) => ApiError::store(e),
                other => bad(other.to_string()),
            })?;
        let entities = skewless_runtime::search::entity_columns(&record.join_keys, &searched);
        let read = GetOnlineFeaturesRequest {
            features: request.features.clone(),
            feature_service: None,
            entities,
            full_feature_names: request.full_feature_names,
            include_lineage: false,
        };
        let mut response = self.get_online_features(&read, started)?;
        let distances = online::OnlineColumn::distances(&searched);
        response.metadata.feature_names.push(distances.name.clone());
        response.results.push(FeatureColumn::from(&distances));
        Ok(response)
    }

    /// Reads `request`, with transform calls stopped at `budget` when it
    /// comes before the request's own deadline.
    async fn read(
        &self,
        request: &GetOnlineFeaturesRequest,
        started: Instant,
        budget: Option<Instant>,
    ) -> Result<GetOnlineFeaturesResponse, Refusal> {
        if let Some(log) = &self.replication {
            log.refuse_if_stale()?;
        }
        self.check_rows(
            request.entities.values().map(Vec::len).max().unwrap_or(0),
            "entity rows",
        )?;
        let request_deadline = started + self.limits.request_timeout;
        let budget = budget.filter(|budget| *budget < request_deadline);
        let read = OnlineRequest::build(
            &self.catalog,
            ReadSpec {
                features: &request.features,
                service: request.feature_service.as_deref(),
                columns: request
                    .entities
                    .iter()
                    .map(|(name, values)| (name.as_str(), RawColumn::Json(values)))
                    .collect(),
                full_feature_names: request.full_feature_names,
                as_of: online::AsOf::Latest,
                deadline: Some(budget.unwrap_or(request_deadline)),
            },
        )?;
        let reader = self.snapshot()?;
        let response = match online::answer(&self.catalog, &self.records, &reader, &read, &self.joined).await {
            Ok(response) => {
                self.monitor.answered(&read, &response, &reader, &self.metrics);
                response
            }
            Err(online::OnlineError::Transform(t)) => {
                // `caller`: the budget, not the view's own shorter limit, stopped it.
                if budget.is_some() && matches!(t.kind, TransformErrorKind::Timeout { caller: true, .. }) {
                    return Err(Refusal::OverBudget { view: t.view });
                }
                self.metrics.view_error(&t.view);
                return Err(Refusal::Api(online::OnlineError::Transform(t).into()));
            }
            Err(e) => return Err(Refusal::Api(e.into())),
        };
        for timing in &response.timings {
            self.metrics.view(timing);
        }
        Ok(GetOnlineFeaturesResponse::from_online(
            &response,
            request.include_lineage,
        ))
    }

    /// `POST /push`, first half: checks, transform calls and encoding, on
    /// the calling thread. [`Server::commit_push`] then makes them durable.
    pub fn prepare_push(&self, request: PushRequest, started: Instant) -> Result<Prepared, ApiError> {
        if let Some(log) = &self.replication {
            log.refuse_if_stale()?;
        }
        self.check_rows(request.df.values().map(Vec::len).max().unwrap_or(0), "rows")?;
        let budget = self.limits.request_timeout.saturating_sub(started.elapsed());
        push::prepare(
            &self.catalog,
            &self.live.current(),
            &self.records,
            &request.push_source_name,
            &request.df,
            request.to,
            Some(budget),
        )
        .map_err(|e| {
            if let push::PushError::Transform(t) = &e {
                self.metrics.view_error(&t.view);
            }
            e.into()
        })
    }

    /// `POST /push`, second half: durable (with other pushes, in one commit).
    pub async fn commit_push(&self, prepared: Prepared) -> Result<PushResponse, ApiError> {
        let (prepared, result) = self.committer.commit(prepared).await;
        let (commit, elapsed) = result.map_err(|e| ApiError::commit(&e))?;
        self.metrics.store_write(elapsed);
        // Reads from now on must see this push.
        self.pushes.fetch_add(1, Ordering::AcqRel);
        Ok(prepared.summary(commit).into())
    }

    /// `POST /materialize` and `/materialize-incremental`: the backfill of
    /// `views` (every materialized and aggregation view when null) over
    /// `window`, on the live store, by [`backfill::materialize`]. Swaps wait
    /// for it; pushes and reads go on. With `run_async` it answers
    /// `accepted` at once and runs on; either way it runs in a task of its
    /// own, so a client that goes away does not stop it halfway. A view
    /// already being loaded is refused (409), as Feast's server does.
    pub async fn materialize(
        self: &Arc<Self>,
        views: Option<Vec<String>>,
        window: MaterializeWindow,
        run_async: bool,
    ) -> Result<MaterializeResponse, ApiError> {
        if self.replication.is_some() {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "replicated",
                message: "this server replicates pushes through a log; a load here would reach this replica \
                          only: run `skewless backfill` into a store version and swap it in on each replica"
                    .into(),
            });
        }
        let repo = &self.catalog.repo;
        let names: Vec<String> = match views {
            None => (repo.views.values().filter(|v| v.is_materialized()))
                .map(|v| v.name.clone())
                .collect(),
            Some(names) => names,
        };
        for name in &names {
            match repo.views.get(name) {
                Some(view) if view.is_materialized() => {}
                found => {
                    let known: Vec<&str> = (repo.views.values().filter(|v| v.is_materialized()))
                        .map(|v| v.name.as_str())
                        .collect();
                    let what = if found.is_some() {
                        "is on-demand: nothing to load"
                    } else {
                        "does not exist"
                    };
                    return Err(ApiError::bad_request(
                        "unknown_feature_view",
                        format!("feature view `{name}` {what} (views to load: {})", known.join(", ")),
                    ));
                }
            }
        }
        let reserved = Reserved::take(&self.materializing, &names)?;
        let server = self.clone();
        let loaded = names.clone();
        let work = async move {
            let _reserved = reserved;
            let _swaps = server.live.lock_swaps().await;
            let (catalog, store) = (server.catalog.clone(), server.live.current());
            let done =
                blocking(move || backfill::materialize(&catalog, &store, &loaded, window).map_err(materialize_failed))
                    .await;
            // Reads from now on must see what was stored, even after a failure halfway.
            server.pushes.fetch_add(1, Ordering::AcqRel);
            done
        };
        if run_async {
            tokio::spawn(async move {
                if let Err(e) = work.await {
                    tracing::error!("materialize failed: {}", e.message);
                }
            });
            return Ok(MaterializeResponse {
                status: "accepted",
                feature_views: names,
                views: Vec::new(),
            });
        }
        let done = tokio::spawn(work)
            .await
            .map_err(|e| ApiError::internal(format!("the materialize task failed: {e}")))??;
        let time = |t: Option<i64>| t.map(skewless_runtime::time::format_timestamp);
        Ok(MaterializeResponse {
            status: "done",
            feature_views: names,
            views: done
                .into_iter()
                .map(|m| MaterializedView {
                    view: m.summary.view,
                    start_ts: time(m.start),
                    end_ts: time(m.end),
                    rows_read: m.summary.rows_read,
                    rows_written: m.summary.rows_written,
                    rows_skipped: m.summary.rows_skipped,
                    row_errors: m.summary.row_errors,
                })
                .collect(),
        })
    }

    /// `POST /write-to-online-store`: refused. Every view here computes its
    /// values with its component (or, for an aggregation view, folds them
    /// from its events), so values computed elsewhere would bypass it and
    /// break online = offline.
    pub fn write_to_online_store(&self, view: &str) -> ApiError {
        let refused = |message: String| ApiError {
            status: StatusCode::CONFLICT,
            code: "computed_by_component",
            message,
        };
        match self.catalog.repo.views.get(view).map(|v| &v.kind) {
            None => ApiError::bad_request(
                "unknown_feature_view",
                format!(
                    "feature view `{view}` does not exist (views: {})",
                    self.catalog.repo.views.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(ViewKind::Materialized { source, .. }) => refused(format!(
                "feature view `{view}` computes its values with its component, so values computed elsewhere would \
                 bypass it: send the source rows to POST /push (push source `{source}`, or the push source over \
                 it), or load them with POST /materialize"
            )),
            Some(ViewKind::Aggregation { source, .. }) => refused(format!(
                "feature view `{view}` folds its values from events: send the events to POST /push (source \
                 `{source}`), or load them with POST /materialize"
            )),
            Some(ViewKind::OnDemand { .. }) => refused(format!(
                "feature view `{view}` is on-demand: its values are computed at read time, nothing is stored"
            )),
        }
    }

    /// Whether pushes go through a replication log ([`Server::push_to_log`]).
    pub fn is_replicated(&self) -> bool {
        self.replication.is_some()
    }

    /// `POST /push`, second half, replicated: publishes `body` (the request
    /// as received, checked by [`Server::prepare_push`]) to the log with
    /// de-duplication id `id`, then answers once this replica has applied
    /// it (a client reads its own writes here), or on the log's ack with
    /// `--ack-on-log`.
    pub async fn push_to_log(
        &self,
        prepared: Prepared,
        id: &str,
        body: Bytes,
        started: Instant,
    ) -> Result<PushResponse, ApiError> {
        let log = self
            .replication
            .as_ref()
            .expect("push_to_log is called on replicated servers");
        let (sequence, duplicate) = log.publish(id, body).await?;
        let mut response = PushResponse::from(prepared.summary(0));
        if !duplicate {
            log.keep_own(sequence, prepared);
        }
        (response.commit, response.log_sequence, response.duplicate) = (None, Some(sequence), duplicate);
        if log.settings().ack_on_log {
            return Ok(response);
        }
        let wait = self.limits.request_timeout.saturating_sub(started.elapsed());
        match log.wait_applied(sequence, wait).await {
            Some(Some(Outcome::Applied(commit))) => response.commit = Some(commit),
            // Applied before this server started, or long ago: a duplicate.
            Some(None) => {}
            Some(Some(Outcome::Skipped(why))) => {
                return Err(ApiError::internal(format!("log message {sequence} was skipped: {why}")));
            }
            None => {
                return Err(ApiError {
                    status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    code: "apply_pending",
                    message: format!(
                        "the push is stored in the replication log as message {sequence}, but this replica has \
                         applied only up to {} after {wait:?}; it will be applied (other replicas may have it \
                         already). Retrying with the same body or Idempotency-Key is safe",
                        log.applied()
                    ),
                });
            }
        }
        Ok(response)
    }

    /// Applies consecutive log messages ([`replication::apply`]); reads
    /// from now on see them.
    fn apply_log(&self, messages: &[(u64, Bytes)]) -> Applied {
        let log = self
            .replication
            .as_deref()
            .expect("a replicated server applies the log");
        let started = Instant::now();
        let applied = self
            .live
            .write(|store| replication::apply(&self.catalog, store, &self.records, log, messages));
        self.metrics.store_write(started.elapsed());
        for (sequence, outcome) in &applied.outcomes {
            if let Outcome::Skipped(why) = outcome {
                tracing::warn!("replication: log message {sequence} recorded and skipped: {why}");
                self.metrics.replication_skipped();
            }
        }
        self.pushes.fetch_add(1, Ordering::AcqRel);
        applied
    }

    /// `POST /admin/swap`: serves store version `request.version` from now
    /// on (built beside the live store by `skewless backfill --new-version`),
    /// or reopens the live store when none is named.
    ///
    /// The version is opened and checked first, while the live store
    /// serves: it must hold the views as applied here. A replica then
    /// replays the log onto it up to where the live store is, so no read
    /// goes back in time; a single node refuses a version built from an
    /// older commit than the live store's (its later pushes are nowhere
    /// else). Then, under the writer lock (pushes wait; reads go on), the
    /// last messages are replayed, the file is renamed into place
    /// ([`versions::promote`]) and the store replaced. Requests that took
    /// the old store finish on it.
    pub async fn swap_store(self: &Arc<Self>, request: SwapRequest) -> Result<SwapResponse, ApiError> {
        // A task of its own: a client that goes away mid-swap must not stop
        // it between renaming the file into place and serving it.
        let server = self.clone();
        tokio::spawn(async move { server.swap(request).await })
            .await
            .map_err(|e| ApiError::internal(format!("the swap task failed: {e}")))?
    }

    async fn swap(self: &Arc<Self>, request: SwapRequest) -> Result<SwapResponse, ApiError> {
        // One swap at a time, from the version's check to the switch.
        let _swapping = self.live.lock_swaps().await;
        let started = Instant::now();
        let live_path = self.catalog.repo.store_path.clone();
        let version = request.version;
        let path = match &version {
            Some(name) => versions::version_path(&live_path, name).map_err(swap_refused)?,
            None => live_path.clone(),
        };
        let opening = self.clone();
        let candidate = Arc::new(blocking(move || opening.open_version(&path)).await?);
        let replay = |server: &Arc<Server>| {
            let server = server.clone();
            move |store: &Store, batch: &[(u64, Bytes)]| {
                let log = server.replication.as_deref().expect("replicated");
                replication::apply(&server.catalog, store, &server.records, log, batch)
            }
        };
        let mut replayed = 0;
        let replicated = self.replication.as_ref().filter(|_| version.is_some());
        if let Some(log) = replicated {
            let target = self.live.current().log_sequence().map_err(ApiError::store)?;
            replayed += log
                .catch_up(&candidate, target, replay(self))
                .await
                .map_err(swap_conflict)?;
        }

        let writing = self.live.lock_writers().await;
        let locked = Instant::now();
        let old = self.live.current();
        // Not read on a reopen: the old store may refuse every use (redb's
        // latch after an I/O error), which is what the reopen clears.
        let old_commit = match &version {
            Some(_) => old.last_commit().map_err(ApiError::store)?,
            None => 0,
        };
        if let Some(log) = replicated {
            let target = old.log_sequence().map_err(ApiError::store)?;
            replayed += log
                .catch_up(&candidate, target, replay(self))
                .await
                .map_err(swap_conflict)?;
        } else if let Some(name) = &version {
            let base = candidate.version_base().map_err(ApiError::store)?;
            if base != Some(old_commit) {
                return Err(swap_conflict(format!(
                    "version `{name}` was built from commit {} of this store, which is at commit {old_commit} now: \
                     the commits since (pushes, backfills) are not in it, so swapping it in would lose them. Build \
                     it again (`skewless backfill --new-version {name}`) and swap it in before more land, or serve \
                     replicated (`--log`), where replicas replay them from the log",
                    base.map_or("(none: not a store version)".to_string(), |b| b.to_string())
                )));
            }
        }
        let Ok(candidate) = Arc::try_unwrap(candidate) else {
            unreachable!("the replay tasks that shared the version have ended")
        };
        let (store, promotion) = match &version {
            None => (candidate, None),
            Some(_) => {
                let version_path = candidate.path().to_path_buf();
                drop(candidate);
                let (live, statistics) = (live_path.clone(), self.catalog.repo.monitoring.statistics);
                blocking(move || {
                    let promotion = versions::promote(&live, &version_path, old_commit).map_err(swap_failed)?;
                    match Store::open_existing(&live) {
                        Ok(mut store) => {
                            store.keep_statistics(statistics);
                            Ok((store, Some(promotion)))
                        }
                        Err(e) => {
                            versions::demote(&live, &promotion).map_err(swap_failed)?;
                            Err(swap_failed(e))
                        }
                    }
                })
                .await?
            }
        };
        let (commit, log_sequence) = (
            store.last_commit().map_err(ApiError::store)?,
            store.log_sequence().map_err(ApiError::store)?,
        );
        drop(self.live.replace(&writing, store));
        // A cached snapshot of the old store must not answer another read.
        self.pushes.fetch_add(1, Ordering::AcqRel);
        if let Some(log) = &self.replication {
            log.swapped_in(log_sequence);
        }
        let locked_ms = locked.elapsed().as_secs_f64() * 1e3;
        drop(writing);
        let display = |p: &std::path::Path| p.display().to_string();
        Ok(SwapResponse {
            version,
            store: display(&live_path),
            commit,
            log_sequence,
            replayed,
            retired: promotion.as_ref().and_then(|p| {
                let name = p.retired.file_stem()?.to_str()?;
                Some(name.to_string())
            }),
            removed: promotion.map_or_else(Vec::new, |p| p.removed.iter().map(|r| display(r)).collect()),
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
            locked_ms,
        })
    }

    /// Opens the store at `path` to swap it in: it must hold every view as
    /// this server serves it (applied from the same repo).
    fn open_version(&self, path: &std::path::Path) -> Result<Store, ApiError> {
        let mut store = Store::open_existing(path).map_err(swap_failed)?;
        store.keep_statistics(self.catalog.repo.monitoring.statistics);
        let records = store.views().map_err(swap_failed)?;
        let alike = |name: &String| match (records.get(name), self.records.get(name)) {
            (Some(found), Some(served)) => served.applied_alike(found),
            _ => false,
        };
        let differs: std::collections::BTreeSet<&str> = (self.records.keys().chain(records.keys()))
            .filter(|name| !alike(name))
            .map(String::as_str)
            .collect();
        if !differs.is_empty() {
            let differs: Vec<&str> = differs.into_iter().collect();
            return Err(swap_conflict(format!(
                "{} holds views applied differently from the ones this server serves ({}): it was built from \
                 another version of the repo. Apply the same repo to both, or restart the server on the new one",
                path.display(),
                differs.join(", ")
            )));
        }
        Ok(store)
    }

    /// Stops sampling answers and writes the served-value logs held in
    /// memory; called once the server has stopped answering.
    pub fn finish_monitoring(&self) {
        self.monitor.finish();
    }

    /// `GET /metrics`: the Prometheus text, with each view's freshness and
    /// the latest drift report read at this moment.
    pub fn metrics_text(&self) -> String {
        let now = skewless_runtime::time::now_micros();
        for record in self.records.values() {
            if let Ok(Some(stats)) = self.live.current().statistics(record)
                && let Some(newest) = stats.newest_event_time
            {
                self.metrics.freshness(&record.name, (now - newest) as f64 / 1e6);
            }
        }
        if let Some(report) = skewless_runtime::drift::latest_report(&self.catalog.repo) {
            report.features.iter().for_each(|f| self.metrics.drift(f));
        }
        if let Some(log) = &self.replication {
            log.refresh_metrics(&self.metrics);
        }
        self.metrics.encode()
    }

    /// The store now, for the UI's reads.
    pub(crate) fn store(&self) -> Arc<Store> {
        self.live.current()
    }

    /// What `skewless apply` recorded of each view.
    pub(crate) fn records(&self) -> &BTreeMap<String, ViewRecord> {
        &self.records
    }

    /// `GET /health`: the store answers a read and, when replicated, the
    /// replica is within `--max-lag` of the log (else 503 `catching_up`,
    /// or `stale_replica` when it can no longer catch up).
    pub fn health(&self) -> Result<Health, ApiError> {
        self.live.current().reader().map_err(online::OnlineError::from)?;
        let replication = match &self.replication {
            Some(log) => {
                let (applied_sequence, stream_sequence, lag) = log.readiness()?;
                Some(ReplicationHealth {
                    applied_sequence,
                    stream_sequence,
                    lag,
                })
            }
            None => None,
        };
        Ok(Health {
            replication,
            status: "ok",
            project: self.catalog.repo.project.clone(),
            views: self.catalog.repo.views.len(),
            uptime_secs: self.started.elapsed().as_secs(),
        })
    }

    /// `GET /v1/catalog`: the registry as `skewless apply` recorded it.
    pub fn catalog_json(&self) -> Result<serde_json::Value, ApiError> {
        let registry = self.live.current().registry().map_err(online::OnlineError::from)?;
        let mut out = serde_json::Map::new();
        out.insert("project".into(), self.catalog.repo.project.clone().into());
        if let serde_json::Value::Object(kinds) = serde_json::to_value(registry).expect("registry records serialize") {
            out.extend(kinds);
        }
        Ok(serde_json::Value::Object(out))
    }

    /// A store snapshot at most [`SNAPSHOT_AGE`] old that includes every
    /// push this server has answered. Opening a redb read transaction on a
    /// store shared between processes costs file-lock and read system calls;
    /// sharing one for a millisecond costs none of that per request.
    fn snapshot(&self) -> Result<Arc<LiveReader>, ApiError> {
        // Read before opening: a push committed after this load bumps the
        // generation, so a snapshot that might predate it is never reused.
        let generation = self.pushes.load(Ordering::Acquire);
        let mut cached = self.snapshot.lock().expect("snapshot lock");
        if let Some(snapshot) = cached.as_ref()
            && snapshot.generation == generation
            && snapshot.taken.elapsed() < SNAPSHOT_AGE
        {
            return Ok(snapshot.reader.clone());
        }
        let reader = Arc::new(self.live.reader().map_err(online::OnlineError::from)?);
        *cached = Some(Snapshot {
            taken: Instant::now(),
            generation,
            reader: reader.clone(),
        });
        Ok(reader)
    }

    fn check_rows(&self, rows: usize, what: &str) -> Result<(), ApiError> {
        if rows > self.limits.max_rows {
            return Err(ApiError::bad_request(
                "too_many_rows",
                format!(
                    "{rows} {what} in one request; the limit is {} (`skewless serve --max-rows`)",
                    self.limits.max_rows
                ),
            ));
        }
        Ok(())
    }
}

/// A version that cannot be named or found: 400, 404.
fn swap_refused(error: StoreError) -> ApiError {
    let (status, code) = match &error {
        StoreError::NoVersion { .. } => (axum::http::StatusCode::NOT_FOUND, "no_such_version"),
        _ => (axum::http::StatusCode::BAD_REQUEST, "bad_version_name"),
    };
    ApiError {
        status,
        code,
        message: error.to_string(),
    }
}

/// A version that cannot replace the live store as it is: 409.
fn swap_conflict(message: String) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::CONFLICT,
        code: "version_conflict",
        message: format!("{message}; the live store is unchanged and still served"),
    }
}

/// The version's file cannot be opened or put in place: 500, naming it.
fn swap_failed(error: StoreError) -> ApiError {
    tracing::error!("store swap: {error}");
    ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        code: "swap_failed",
        message: format!("{error}; the live store is unchanged and still served"),
    }
}

/// The Kafka consumer's view of the server ([`topics`]).
impl topics::Sink for Server {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn topic_offsets(&self, source: &str) -> Result<BTreeMap<i32, u64>, StoreError> {
        self.live.current().topic_offsets(source)
    }

    fn push_columns(&self, source: &str) -> Vec<String> {
        push::columns(&self.catalog, &self.records, source)
            .into_iter()
            .map(|column| column.field.name)
            .collect()
    }

    /// Reads from now on see the records stored.
    fn apply_records(
        &self,
        source: &str,
        partition: i32,
        from: u64,
        end: u64,
        decoded: skewless_runtime::kafka::Decoded,
    ) -> Result<topics::Stored, String> {
        let started = Instant::now();
        let stored = self.live.write(|store| {
            topics::apply(
                &self.catalog,
                store,
                &self.records,
                source,
                partition,
                (from, end),
                decoded,
            )
        });
        self.metrics.store_write(started.elapsed());
        self.pushes.fetch_add(1, Ordering::AcqRel);
        stored
    }
}
