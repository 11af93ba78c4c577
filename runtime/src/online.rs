//! Online reads: the latest (or as-of) stored values of materialized views
//! for a set of entities, plus on-demand views computed from them at read
//! time through [`crate::Transform::run`], all requested entities in one call.
//!
//! The one read path: the HTTP server and `skewless get` read the latest
//! values ([`AsOf::Latest`]) or, with `get --at`, one past instant;
//! `skewless dataset` reads one instant per spine row ([`AsOf::Rows`]);
//! `skewless verify` compares the two. Statuses follow Feast: `PRESENT`,
//! `NULL_VALUE`, `NOT_FOUND`, `OUTSIDE_MAX_AGE`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use indexmap::IndexMap;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::codec::json::WrongValue;
use crate::digest::Digest;
use crate::error::TransformError;
use crate::format::value::{KeyEncoder, Value, ValueBuilder};
use crate::joined::JoinedCalls;
use crate::repo::{FeatureRef, SourceKind, ViewKind};
use crate::store::{StoreError, StoreReader, ViewRecord};
use crate::transform::{RowError, TransformOutput};
use crate::types::FieldSpec;

/// The status of one value, as Feast reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// A value was found.
    Present,
    /// A row was found, but this feature is null in it.
    NullValue,
    /// No row for this entity.
    NotFound,
    /// The newest row is older than the view's TTL.
    OutsideMaxAge,
}

impl Status {
    /// The name Feast uses (and JSON carries).
    pub fn name(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::NullValue => "NULL_VALUE",
            Status::NotFound => "NOT_FOUND",
            Status::OutsideMaxAge => "OUTSIDE_MAX_AGE",
        }
    }
}

/// An online read.
#[derive(Debug, Clone)]
pub struct OnlineRequest {
    /// Features to read, in output order.
    pub features: Vec<FeatureRef>,
    /// Join-key columns and request-field columns, all of one length.
    pub entities: IndexMap<String, ArrayRef>,
    /// Name columns `view__feature` rather than `feature`.
    pub full_feature_names: bool,
    /// The time each row is read at: now (the `latest` table), one instant,
    /// or one per entity row (training data).
    pub as_of: AsOf,
    /// On-demand transforms stop when this is reached (the server's
    /// per-request limit); each view's own limit applies as well.
    pub deadline: Option<std::time::Instant>,
}

impl OnlineRequest {
    /// Entity row `row` as text for logs and messages: every join key and
    /// request field, `driver_id=1001,val_to_add=10`.
    pub fn entity_text(&self, row: usize) -> String {
        self.entities
            .iter()
            .map(|(name, column)| format!("{name}={}", crate::codec::value_text(column.as_ref(), row)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The time an online read looks at, per entity row.
#[derive(Debug, Clone, PartialEq)]
pub enum AsOf {
    /// Now: each entity's newest value (one lookup in `latest`); the TTL
    /// counts back from the wall clock.
    Latest,
    /// The newest value with event time `<=` this instant (microseconds UTC),
    /// from the history; the TTL counts back from it.
    At(i64),
    /// As [`AsOf::At`], one instant per entity row.
    Rows(Vec<i64>),
}

impl AsOf {
    /// The instant row `row` is read at, `None` for [`AsOf::Latest`].
    fn time(&self, row: usize) -> Option<i64> {
        match self {
            AsOf::Latest => None,
            AsOf::At(t) => Some(*t),
            AsOf::Rows(times) => Some(times[row]),
        }
    }
}

/// One output column.
#[derive(Debug, Clone)]
pub struct OnlineColumn {
    /// Output name.
    pub name: String,
    /// The view, `None` for entity-key columns.
    pub view: Option<String>,
    /// One value per entity row.
    pub values: ArrayRef,
    /// One status per entity row.
    pub statuses: Vec<Status>,
    /// Event time of the value per entity row, when there is one.
    pub event_timestamps: Vec<Option<i64>>,
}

impl OnlineColumn {
    /// A search's distances as an answer's last column, `distance`
    /// (Feast's name), present in every row.
    pub fn distances(hits: &[crate::search::Hit]) -> OnlineColumn {
        OnlineColumn {
            name: "distance".into(),
            view: None,
            values: Arc::new(arrow_array::Float32Array::from_iter_values(
                hits.iter().map(|h| h.distance),
            )),
            statuses: vec![Status::Present; hits.len()],
            event_timestamps: vec![None; hits.len()],
        }
    }
}

/// The answer to an [`OnlineRequest`].
#[derive(Debug, Clone)]
pub struct OnlineResponse {
    /// Entity-key columns first, then the features in request order.
    pub columns: Vec<OnlineColumn>,
    /// Per-row errors of on-demand transforms, by view.
    pub row_errors: Vec<(String, RowError)>,
    /// Transform digest of each view read (lineage).
    pub digests: BTreeMap<String, Digest>,
    /// Per materialized view, the store ids of the transform digests that
    /// produced the values served ([`crate::Store::digests`] maps them).
    pub stored_digests: BTreeMap<String, BTreeSet<u32>>,
    /// Time spent per view: store reads of materialized views, transform
    /// calls of on-demand views (the server's per-view metrics).
    pub timings: Vec<ViewTiming>,
    /// The wall clock the read counted TTLs back from for [`AsOf::Latest`]
    /// (microseconds UTC): the instant the offline path re-reads it at.
    pub now: i64,
}

impl OnlineResponse {
    /// The answer as `skewless get` prints it: a table, one row per entity.
    /// Arrow names a time zone only with its database; every timestamp
    /// here is UTC, so it is shown without one.
    pub fn table(&self) -> Result<String, arrow_schema::ArrowError> {
        use arrow_array::TimestampMicrosecondArray;
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(
                |c| match c.values.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    Some(ts) => Arc::new(ts.clone().with_timezone_opt(None::<String>)) as ArrayRef,
                    None => c.values.clone(),
                },
            )
            .collect();
        let fields: Vec<Field> = self
            .columns
            .iter()
            .zip(&columns)
            .map(|(c, a)| Field::new(&c.name, a.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(arrow_cast::pretty::pretty_format_batches(&[batch])?.to_string())
    }

    /// What a reader of the table must know: values not found or past
    /// their TTL, and rows whose on-demand transform failed.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for column in &self.columns {
            for (row, status) in column.statuses.iter().enumerate() {
                if matches!(status, Status::NotFound | Status::OutsideMaxAge) {
                    notes.push(format!("row {row}: `{}` is {}", column.name, status.name()));
                }
            }
        }
        for (view, e) in &self.row_errors {
            notes.push(format!("view `{view}`: row {}: {}", e.row, e.message));
        }
        notes
    }
}

/// Where a read spent its time, per view.
#[derive(Debug, Clone)]
pub struct ViewTiming {
    /// The view.
    pub view: String,
    /// `true`: an on-demand transform call; `false`: store reads.
    pub transform: bool,
    /// The transform call was joined with other requests' ([`crate::joined`]).
    pub shared: bool,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

/// An online read that cannot be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// A view that is not in the repo.
    #[error("unknown feature view `{view}` (views: {known})")]
    UnknownView {
        /// The name asked for.
        view: String,
        /// The views there are.
        known: String,
    },
    /// A feature its view does not have.
    #[error("feature view `{view}` has no feature `{feature}` (its features: {known})")]
    UnknownFeature {
        /// The view.
        view: String,
        /// The feature asked for.
        feature: String,
        /// The features there are.
        known: String,
    },
    /// Neither features nor a service named.
    #[error(
        "say which features to read: `features` (`--features view:feature,...`) or `feature_service` (`--service NAME`)"
    )]
    NoFeatures,
    /// An entity column that is neither a join key nor a request field.
    #[error("`{name}` is neither a join key nor a request field of this repo (known: {known})")]
    UnknownEntityColumn {
        /// The column.
        name: String,
        /// The join keys and request fields there are.
        known: String,
    },
    /// A service that is not in the repo.
    #[error("unknown feature service `{0}`")]
    UnknownService(String),
    /// A feature reference that does not parse.
    #[error("`{0}` is not a feature reference: use `view:feature` or `view`")]
    BadReference(String),
    /// A join key the request lacks.
    #[error("missing join key `{key}` (needed by feature view `{view}`)")]
    MissingJoinKey {
        /// The view.
        view: String,
        /// The key.
        key: String,
    },
    /// A request field the request lacks.
    #[error("missing request field `{field}` (needed by on-demand view `{view}`)")]
    MissingRequestField {
        /// The view.
        view: String,
        /// The field.
        field: String,
    },
    /// A column, or a value in it, of the wrong type.
    #[error(transparent)]
    WrongType(#[from] WrongValue),
    /// Columns of different lengths.
    #[error("`{column}` has {actual} values but `{first}` has {expected}: every entity column needs one value per row")]
    Length {
        /// The first column.
        first: String,
        /// The column that differs.
        column: String,
        /// The first column's length.
        expected: usize,
        /// This column's length.
        actual: usize,
    },
    /// The view was never applied to the store.
    #[error("feature view `{0}` is not in the store's registry: run `skewless apply`")]
    NotApplied(String),
    /// An on-demand transform failed.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One entity or request-field column of a read, as its caller has it.
#[derive(Debug, Clone, Copy)]
pub enum RawColumn<'a> {
    /// JSON values: an HTTP request's `entities`.
    Json(&'a [serde_json::Value]),
    /// Text as typed: `skewless get --entity driver_id=1001,1002`.
    Text(&'a [String]),
}

impl RawColumn<'_> {
    /// Values in the column.
    pub fn len(&self) -> usize {
        match self {
            RawColumn::Json(values) => values.len(),
            RawColumn::Text(values) => values.len(),
        }
    }

    /// Whether the column has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A read as callers phrase it: names, and columns of JSON or text.
#[derive(Debug, Clone)]
pub struct ReadSpec<'a> {
    /// Feature references, `view:feature` or `view`.
    pub features: &'a [String],
    /// A feature service, whose features come first.
    pub service: Option<&'a str>,
    /// Join-key and request-field columns, by name.
    pub columns: Vec<(&'a str, RawColumn<'a>)>,
    /// Name columns `view__feature`.
    pub full_feature_names: bool,
    /// The time the read looks at.
    pub as_of: AsOf,
    /// When on-demand transforms must stop.
    pub deadline: Option<std::time::Instant>,
}

impl OnlineRequest {
    /// The one request builder, for `skewless get` and the server alike:
    /// resolves the features against the catalog, types each column as its
    /// join key or request field declares (through [`crate::codec::json`]),
    /// and applies the length rule: a column of one value applies to every
    /// entity row (one `val_to_add` for several drivers); any other column
    /// must have as many values as the longest.
    pub fn build(catalog: &Catalog, spec: ReadSpec<'_>) -> Result<OnlineRequest, OnlineError> {
        let features = resolve_features(catalog, spec.features, spec.service)?;
        if features.is_empty() {
            return Err(OnlineError::NoFeatures);
        }
        let types = catalog.request_columns();
        let rows = spec.columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let longest = spec.columns.iter().find(|(_, c)| c.len() == rows).map(|(n, _)| *n);
        let mut entities = IndexMap::with_capacity(spec.columns.len());
        for (name, column) in spec.columns {
            let Some(data_type) = types.get(name) else {
                return Err(OnlineError::UnknownEntityColumn {
                    name: name.to_string(),
                    known: types.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            };
            if column.len() != rows && column.len() != 1 {
                return Err(OnlineError::Length {
                    first: longest.unwrap_or_default().to_string(),
                    column: name.to_string(),
                    expected: rows,
                    actual: column.len(),
                });
            }
            let mut array = match column {
                RawColumn::Json(values) => crate::codec::json::array_from_json(name, values, *data_type)?,
                RawColumn::Text(values) => crate::codec::json::array_from_strings(name, values, *data_type)?,
            };
            if array.len() == 1 && rows > 1 {
                let first_row = arrow_array::UInt32Array::from(vec![0u32; rows]);
                array = arrow_select::take::take(array.as_ref(), &first_row, None).expect("index 0 of a 1-row array");
            }
            entities.insert(name.to_string(), array);
        }
        Ok(OnlineRequest {
            features,
            entities,
            full_feature_names: spec.full_feature_names,
            as_of: spec.as_of,
            deadline: spec.deadline,
        })
    }
}

/// Expands feature references (and a service, if named) into `view:feature`
/// references, checking each against the catalog.
pub fn resolve_features(
    catalog: &Catalog,
    refs: &[String],
    service: Option<&str>,
) -> Result<Vec<FeatureRef>, OnlineError> {
    let repo = &catalog.repo;
    let mut parsed = Vec::new();
    if let Some(name) = service {
        let service = repo
            .services
            .get(name)
            .ok_or_else(|| OnlineError::UnknownService(name.to_string()))?;
        parsed.extend(service.features.iter().cloned());
    }
    for text in refs {
        parsed.push(FeatureRef::parse(text).ok_or_else(|| OnlineError::BadReference(text.clone()))?);
    }
    let mut out = Vec::new();
    for r in parsed {
        let features = catalog.features(&r.view).ok_or_else(|| OnlineError::UnknownView {
            view: r.view.clone(),
            known: repo.views.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        match &r.feature {
            None => out.extend(features.iter().map(|f| FeatureRef {
                view: r.view.clone(),
                feature: Some(f.name.clone()),
            })),
            Some(name) if features.iter().any(|f| &f.name == name) => out.push(r.clone()),
            Some(name) => {
                return Err(OnlineError::UnknownFeature {
                    view: r.view.clone(),
                    feature: name.clone(),
                    known: features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
                });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.clone()));
    Ok(out)
}

/// Values of one materialized view for every entity row.
struct ViewValues {
    batch: RecordBatch,
    statuses: Vec<Option<Status>>,
    event_timestamps: Vec<Option<i64>>,
    /// Store ids of the digests that produced the values served.
    digest_ids: BTreeSet<u32>,
}

/// Answers an online read from one store snapshot: [`answer`] with every
/// on-demand call made alone, so nothing waits.
pub fn get_online_features(
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    reader: &StoreReader,
    request: &OnlineRequest,
) -> Result<OnlineResponse, OnlineError> {
    let alone = BTreeMap::new();
    let answering = std::pin::pin!(answer(catalog, records, reader, request, &alone));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match answering.poll(&mut cx) {
        std::task::Poll::Ready(answer) => answer,
        std::task::Poll::Pending => unreachable!("without joined calls nothing waits"),
    }
}

/// Answers an online read from one store snapshot: [`prepare`], each
/// on-demand view's call through [`crate::Transform::run_within`] (joined with
/// concurrent requests' calls where `joined` has the view), then
/// [`PreparedRead::finish`].
pub async fn answer(
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    reader: &StoreReader,
    request: &OnlineRequest,
    joined: &BTreeMap<String, Arc<JoinedCalls>>,
) -> Result<OnlineResponse, OnlineError> {
    let prepared = prepare(catalog, records, reader, request)?;
    let mut outputs = Vec::with_capacity(prepared.calls.len());
    for call in &prepared.calls {
        let transform = catalog.transform(&call.view).expect("resolved against the catalog");
        let started = Instant::now();
        let deadline = prepared
            .deadline
            .unwrap_or_else(|| started + transform.limits().timeout());
        let (output, shared) = match joined.get(&call.view) {
            Some(joined) => {
                let answer = joined.run(&**transform, call.input.clone(), deadline).await;
                (answer.result?, answer.shared)
            }
            None => (
                transform.run_within(&call.input, deadline.saturating_duration_since(Instant::now()))?,
                false,
            ),
        };
        outputs.push(CallOutput {
            output,
            elapsed: started.elapsed(),
            shared,
        });
    }
    prepared.finish(outputs)
}

/// What one on-demand call gave, for [`PreparedRead::finish`].
struct CallOutput {
    /// The request's outputs and row errors.
    output: TransformOutput,
    /// How long the call took, waiting for a joined call included.
    elapsed: Duration,
    /// Other requests' rows were in the same guest call.
    shared: bool,
}

/// An online read up to its on-demand transform calls: stored values read,
/// and each call's input built.
struct PreparedRead {
    rows: usize,
    now: i64,
    full_feature_names: bool,
    /// Features requested, by view, in request order.
    requested: IndexMap<String, Vec<String>>,
    /// Stored values of the materialized views read.
    values: IndexMap<String, ViewValues>,
    /// Entity-key columns of the answer.
    keys: Vec<OnlineColumn>,
    digests: BTreeMap<String, Digest>,
    timings: Vec<ViewTiming>,
    /// One call per on-demand view requested, in request order.
    calls: Vec<OnDemandCall>,
    /// When the calls must stop.
    deadline: Option<Instant>,
}

/// The input of one on-demand view's transform call, every entity row in it.
struct OnDemandCall {
    /// The on-demand view.
    view: String,
    /// Its transform's input columns.
    input: RecordBatch,
    /// The materialized views it reads, whose event times it answers with.
    sources: Vec<String>,
}

/// Reads the stored values `request` needs and builds the input of each
/// on-demand view's call.
fn prepare(
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    reader: &StoreReader,
    request: &OnlineRequest,
) -> Result<PreparedRead, OnlineError> {
    let repo = &catalog.repo;
    let rows = check_lengths(&request.entities)?;
    let now = crate::time::now_micros();

    // Views requested, and the materialized views they need.
    let mut requested: IndexMap<String, Vec<String>> = IndexMap::new();
    for r in &request.features {
        requested
            .entry(r.view.clone())
            .or_default()
            .push(r.feature.clone().unwrap_or_default());
    }
    let mut materialized: Vec<String> = Vec::new();
    for view in requested.keys() {
        let definition = &repo.views[view];
        let upstream: Vec<String> = match &definition.kind {
            ViewKind::Materialized { .. } | ViewKind::Aggregation { .. } => vec![view.clone()],
            ViewKind::OnDemand { sources } => sources
                .iter()
                .filter(|s| repo.views.contains_key(*s))
                .cloned()
                .collect(),
        };
        for v in upstream {
            if !materialized.contains(&v) {
                materialized.push(v);
            }
        }
    }

    let mut digests = BTreeMap::new();
    let mut timings = Vec::new();
    let mut values: IndexMap<String, ViewValues> = IndexMap::new();
    for view in &materialized {
        let record = records.get(view).ok_or_else(|| OnlineError::NotApplied(view.clone()))?;
        digests.insert(view.clone(), record.digest);
        let ttl = repo.views[view].ttl.map(|d| d.as_micros() as i64);
        let started = Instant::now();
        let read = match catalog.plan(view) {
            Some(plan) => read_aggregation(record, plan, reader, &request.entities, rows, &request.as_of, now)?,
            None => read_view(record, reader, &request.entities, rows, &request.as_of, now, ttl)?,
        };
        values.insert(view.clone(), read);
        timings.push(ViewTiming {
            view: view.clone(),
            transform: false,
            shared: false,
            elapsed: started.elapsed(),
        });
    }

    let mut keys = Vec::new();
    for key in key_columns(catalog, requested.keys()) {
        let Some(array) = request.entities.get(&key.name) else {
            continue;
        };
        keys.push(OnlineColumn {
            name: key.name.clone(),
            view: None,
            values: array.clone(),
            statuses: vec![Status::Present; rows],
            event_timestamps: vec![None; rows],
        });
    }

    let mut calls = Vec::new();
    for view in requested.keys().filter(|view| !values.contains_key(*view)) {
        let transform = catalog.transform(view).expect("resolved against the catalog");
        digests.insert(view.clone(), transform.digest());
        calls.push(OnDemandCall {
            view: view.clone(),
            input: on_demand_input(catalog, view, &values, &request.entities, rows)?,
            sources: values
                .keys()
                .filter(|v| is_source_of(catalog, v, view))
                .cloned()
                .collect(),
        });
    }
    Ok(PreparedRead {
        rows,
        now,
        full_feature_names: request.full_feature_names,
        requested,
        values,
        keys,
        digests,
        timings,
        calls,
        deadline: request.deadline,
    })
}

impl PreparedRead {
    /// The answer, given each call's output, in the order of
    /// [`PreparedRead::calls`].
    fn finish(self, outputs: Vec<CallOutput>) -> Result<OnlineResponse, OnlineError> {
        let PreparedRead {
            rows,
            now,
            full_feature_names,
            requested,
            values,
            keys,
            digests,
            mut timings,
            calls,
            deadline: _,
        } = self;
        assert_eq!(outputs.len(), calls.len(), "one output per call");
        let mut row_errors = Vec::new();
        let mut computed: BTreeMap<String, ViewValues> = BTreeMap::new();
        for (
            call,
            CallOutput {
                output,
                elapsed,
                shared,
            },
        ) in calls.into_iter().zip(outputs)
        {
            timings.push(ViewTiming {
                view: call.view.clone(),
                transform: true,
                shared,
                elapsed,
            });
            row_errors.extend(output.row_errors.into_iter().map(|e| (call.view.clone(), e)));
            let inputs: Vec<&ViewValues> = values
                .iter()
                .filter(|(v, _)| call.sources.contains(*v))
                .map(|(_, s)| s)
                .collect();
            let event_timestamps = (0..rows)
                .map(|row| inputs.iter().filter_map(|s| s.event_timestamps[row]).max())
                .collect();
            computed.insert(
                call.view,
                ViewValues {
                    batch: output.batch,
                    statuses: vec![None; rows],
                    event_timestamps,
                    digest_ids: BTreeSet::new(),
                },
            );
        }
        let mut columns = keys;
        for (view, features) in &requested {
            let source = values
                .get(view)
                .or_else(|| computed.get(view))
                .expect("read or computed");
            for feature in features {
                let array = source
                    .batch
                    .column_by_name(feature)
                    .expect("resolved against the catalog")
                    .clone();
                let statuses = (0..rows)
                    .map(|row| match source.statuses[row] {
                        Some(status) => status,
                        None if array.is_null(row) => Status::NullValue,
                        None => Status::Present,
                    })
                    .collect();
                columns.push(OnlineColumn {
                    name: if full_feature_names {
                        format!("{view}__{feature}")
                    } else {
                        feature.clone()
                    },
                    view: Some(view.clone()),
                    values: array,
                    statuses,
                    event_timestamps: source.event_timestamps.clone(),
                });
            }
        }
        let stored_digests = values.iter().map(|(v, s)| (v.clone(), s.digest_ids.clone())).collect();
        Ok(OnlineResponse {
            now,
            columns,
            row_errors,
            digests,
            stored_digests,
            timings,
        })
    }
}

fn is_source_of(catalog: &Catalog, source: &str, view: &str) -> bool {
    matches!(&catalog.repo.views[view].kind, ViewKind::OnDemand { sources } if sources.iter().any(|s| s == source))
}

/// The join keys of the given views, each once, in first-seen order.
fn key_columns<'a>(catalog: &Catalog, views: impl Iterator<Item = &'a String>) -> Vec<FieldSpec> {
    let mut keys: Vec<FieldSpec> = Vec::new();
    for view in views {
        for key in catalog.repo.join_keys(&catalog.repo.views[view]) {
            if !keys.iter().any(|k| k.name == key.name) {
                keys.push(key);
            }
        }
    }
    keys
}

fn check_lengths(entities: &IndexMap<String, ArrayRef>) -> Result<usize, OnlineError> {
    let Some((first, array)) = entities.first() else {
        return Ok(0);
    };
    for (name, other) in entities {
        if other.len() != array.len() {
            return Err(OnlineError::Length {
                first: first.clone(),
                column: name.clone(),
                expected: array.len(),
                actual: other.len(),
            });
        }
    }
    Ok(array.len())
}

/// The entity key of every request row (`None` where a key is null).
fn entity_keys(
    record: &ViewRecord,
    entities: &IndexMap<String, ArrayRef>,
    rows: usize,
) -> Result<Vec<Option<Vec<u8>>>, OnlineError> {
    let mut key_arrays = Vec::new();
    for key in &record.join_keys {
        let array = entities.get(&key.name).ok_or_else(|| OnlineError::MissingJoinKey {
            view: record.name.clone(),
            key: key.name.clone(),
        })?;
        if array.data_type() != &key.data_type.arrow() {
            return Err(OnlineError::WrongType(WrongValue {
                column: key.name.clone(),
                expected: key.data_type,
                message: format!("got {}", array.data_type()),
            }));
        }
        key_arrays.push(array.clone());
    }
    let key_batch = batch_of(&record.join_keys, key_arrays, rows);
    let keys = KeyEncoder::new(&key_batch, &record.join_keys).expect("types checked above");
    Ok((0..rows)
        .map(|row| {
            (!keys.is_null(row)).then(|| {
                let mut key = Vec::new();
                keys.write(row, &mut key);
                key
            })
        })
        .collect())
}

/// Feature values by request row.
type RowsValues = Vec<(usize, Vec<Value>)>;

/// Below this many entities in one read, evaluating on one thread is cheaper
/// than starting others.
const PARALLEL_ENTITIES: usize = 256;

/// Values of an aggregation view: each row's features at its instant (now
/// for a latest read, the same instant for every row), through the one
/// fold ([`crate::aggregate::fold::evaluate_all`]). The instant is the
/// values' event timestamp, so a client can ask `dataset` for the same bits.
fn read_aggregation(
    record: &ViewRecord,
    plan: &crate::aggregate::Plan,
    reader: &StoreReader,
    entities: &IndexMap<String, ArrayRef>,
    rows: usize,
    as_of: &AsOf,
    now: i64,
) -> Result<ViewValues, OnlineError> {
    let keys = entity_keys(record, entities, rows)?;
    let times: Vec<i64> = (0..rows).map(|row| as_of.time(row).unwrap_or(now)).collect();
    // Rows by entity, so each entity's tiles are read once for all its instants.
    let mut by_entity: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (row, key) in keys.iter().enumerate() {
        if let Some(key) = key {
            by_entity.entry(key.as_slice()).or_default().push(row);
        }
    }
    // Entities are independent: a large read (a `dataset` chunk) splits
    // them over the machine's cores. Each value comes from the same fold
    // whichever thread computes it.
    let entities: Vec<(&[u8], Vec<usize>)> = by_entity.into_iter().collect();
    let threads = if entities.len() < PARALLEL_ENTITIES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    // Thread `i` takes every `threads`-th entity: busy entities (whose keys
    // often sort together) spread evenly.
    let evaluate = |first: usize| -> Result<RowsValues, OnlineError> {
        let mut out = Vec::new();
        let mut instants = Vec::new();
        for (key, entity_rows) in entities.iter().skip(first).step_by(threads) {
            instants.clear();
            instants.extend(entity_rows.iter().map(|&r| times[r]));
            let data = reader.aggregate_data(record, plan, key, &instants)?;
            let values = crate::aggregate::fold::evaluate_all(plan, &data, &instants)?;
            out.extend(entity_rows.iter().copied().zip(values));
        }
        Ok(out)
    };
    let parts: Vec<Result<RowsValues, OnlineError>> = if threads == 1 {
        vec![evaluate(0)]
    } else {
        std::thread::scope(|scope| {
            let evaluate = &evaluate;
            let handles: Vec<_> = (0..threads).map(|first| scope.spawn(move || evaluate(first))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("evaluation does not panic"))
                .collect()
        })
    };
    let mut values: Vec<Option<Vec<Value>>> = vec![None; rows];
    for part in parts {
        for (row, row_values) in part? {
            values[row] = Some(row_values);
        }
    }
    let mut builders: Vec<ValueBuilder> = record
        .features
        .iter()
        .map(|f| ValueBuilder::new(f.data_type, rows))
        .collect();
    let mut statuses = Vec::with_capacity(rows);
    for row_values in values {
        match row_values {
            None => {
                statuses.push(Some(Status::NotFound));
                builders.iter_mut().for_each(ValueBuilder::push_null);
            }
            Some(row_values) => {
                statuses.push(None);
                for (builder, value) in builders.iter_mut().zip(row_values) {
                    builder.push(value);
                }
            }
        }
    }
    let arrays = builders.into_iter().map(ValueBuilder::finish).collect();
    Ok(ViewValues {
        batch: batch_of(&record.features, arrays, rows),
        statuses,
        event_timestamps: keys.iter().zip(&times).map(|(k, t)| k.as_ref().map(|_| *t)).collect(),
        digest_ids: BTreeSet::new(),
    })
}

fn read_view(
    record: &ViewRecord,
    reader: &StoreReader,
    entities: &IndexMap<String, ArrayRef>,
    rows: usize,
    as_of: &AsOf,
    now: i64,
    ttl: Option<i64>,
) -> Result<ViewValues, OnlineError> {
    let keys = entity_keys(record, entities, rows)?;
    let mut builders: Vec<ValueBuilder> = record
        .features
        .iter()
        .map(|f| ValueBuilder::new(f.data_type, rows))
        .collect();
    let mut statuses = Vec::with_capacity(rows);
    let mut event_timestamps = Vec::with_capacity(rows);
    let mut digest_ids = BTreeSet::new();
    for (row, key) in keys.iter().enumerate() {
        let found = match key {
            None => None,
            Some(key) => match as_of.time(row) {
                None => reader.latest(record, key)?,
                Some(t) => reader.as_of(record, key, t)?,
            },
        };
        match found {
            None => {
                statuses.push(Some(Status::NotFound));
                event_timestamps.push(None);
                builders.iter_mut().for_each(ValueBuilder::push_null);
            }
            // Inclusive, as in Feast: a value exactly `ttl` old is served.
            Some(stored) if ttl.is_some_and(|ttl| stored.event_time < as_of.time(row).unwrap_or(now) - ttl) => {
                statuses.push(Some(Status::OutsideMaxAge));
                event_timestamps.push(Some(stored.event_time));
                builders.iter_mut().for_each(ValueBuilder::push_null);
            }
            Some(stored) => {
                statuses.push(None);
                event_timestamps.push(Some(stored.event_time));
                digest_ids.insert(stored.digest_id);
                for (builder, value) in builders.iter_mut().zip(stored.values) {
                    builder.push(value);
                }
            }
        }
    }
    let arrays = builders.into_iter().map(ValueBuilder::finish).collect();
    Ok(ViewValues {
        batch: batch_of(&record.features, arrays, rows),
        statuses,
        event_timestamps,
        digest_ids,
    })
}

/// The input batch of an on-demand transform: each input from the view's
/// source views, the request fields or the join keys.
fn on_demand_input(
    catalog: &Catalog,
    view: &str,
    values: &IndexMap<String, ViewValues>,
    entities: &IndexMap<String, ArrayRef>,
    rows: usize,
) -> Result<RecordBatch, OnlineError> {
    let ViewKind::OnDemand { sources } = &catalog.repo.views[view].kind else {
        unreachable!("on-demand view")
    };
    let transform = catalog.transform(view).expect("resolved against the catalog");
    let mut arrays = Vec::new();
    for input in &transform.description().inputs {
        let from_view = sources
            .iter()
            .find_map(|s| values.get(s).and_then(|v| v.batch.column_by_name(&input.name)));
        let array = match from_view {
            Some(array) => array.clone(),
            None => {
                let array = entities.get(&input.name).ok_or_else(|| {
                    let is_request = sources.iter().any(|s| {
                        matches!(&catalog.repo.sources.get(s).map(|s| &s.kind),
                            Some(SourceKind::Request { schema }) if schema.iter().any(|f| f.name == input.name))
                    });
                    if is_request {
                        OnlineError::MissingRequestField {
                            view: view.to_string(),
                            field: input.name.clone(),
                        }
                    } else {
                        OnlineError::MissingJoinKey {
                            view: view.to_string(),
                            key: input.name.clone(),
                        }
                    }
                })?;
                if array.data_type() != &input.data_type.arrow() {
                    return Err(OnlineError::WrongType(WrongValue {
                        column: input.name.clone(),
                        expected: input.data_type,
                        message: format!("got {}", array.data_type()),
                    }));
                }
                array.clone()
            }
        };
        arrays.push(array);
    }
    Ok(batch_of(&transform.description().inputs, arrays, rows))
}

fn batch_of(fields: &[FieldSpec], arrays: Vec<ArrayRef>, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .zip(&arrays)
            .map(|(f, a)| Field::new(&f.name, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("arrays built to the schema")
}
