//! The wire format: Feast's feature-server JSON, request and response, plus
//! our additions (lineage, push summaries, errors). These types are the
//! source of the OpenAPI document, so what is served is what is documented.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use skewless_runtime::online::{self, OnlineResponse};
use skewless_runtime::push::PushSummary;
use skewless_runtime::{WriteTo, time};
use utoipa::ToSchema;

/// `POST /get-online-features`, as Feast's feature server takes it.
/// Unknown fields are ignored: Feast clients add some from version to version.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "features": ["driver_hourly_stats:conv_rate", "transformed_conv_rate:conv_rate_plus_val1"],
    "entities": {"driver_id": [1001, 1002], "val_to_add": [1000, 1001]},
    "full_feature_names": false
}))]
pub struct GetOnlineFeaturesRequest {
    /// Feature references, `view:feature` (or `view` for all its features).
    #[serde(default)]
    pub features: Vec<String>,
    /// A feature service, instead of or besides `features`.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub feature_service: Option<String>,
    /// Join-key columns and request-field columns, one value per entity row.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub entities: IndexMap<String, Vec<serde_json::Value>>,
    /// Name features `view__feature` rather than `feature`.
    #[serde(default)]
    pub full_feature_names: bool,
    /// Add each view's transform digest to `metadata.lineage`.
    #[serde(default)]
    pub include_lineage: bool,
}

/// The answer: one `results` entry per column, entity keys first.
#[derive(Debug, Serialize, ToSchema)]
pub struct GetOnlineFeaturesResponse {
    /// Column names, in `results` order.
    pub metadata: ResponseMetadata,
    /// One entry per column.
    pub results: Vec<FeatureColumn>,
}

/// Column names, and lineage when asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseMetadata {
    /// Names of the columns of `results`, in order.
    pub feature_names: Vec<String>,
    /// Transform digest (sha256, hex) per view read, with `include_lineage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage: Option<BTreeMap<String, String>>,
}

/// `POST /search` (and `/retrieve-online-documents`), as Feast 0.67's
/// remote online store posts it: the `top_k` entities whose vector feature
/// is nearest to `query`, with the `features` asked for. The view is the
/// one `features` name; the vector searched is the vector feature among
/// `features`, else the view's only one. The answer is
/// `/get-online-features`'s, for those entities, nearest first, with a
/// `distance` column last.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SearchRequest {
    /// Feature references of one view, `view:feature` (at least one).
    #[serde(default)]
    #[schema(min_items = 1)]
    pub features: Vec<String>,
    /// The query vector: as many finite numbers as the feature's dimension.
    #[schema(min_items = 1)]
    pub query: Option<Vec<f64>>,
    /// How many entities to answer, from 1 to 1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub top_k: Option<usize>,
    /// `cosine` (1 - cosine similarity), `inner_product` (its negative) or
    /// `L2` (Euclidean, the default): smaller is nearer for all three.
    pub distance_metric: Option<String>,
    /// Text search: not supported (must be null).
    pub query_string: Option<String>,
    /// Feast's API version (1 or 2): both answer alike here.
    pub api_version: Option<u32>,
    /// Metadata filters: not supported (must be null).
    #[schema(value_type = Option<Object>)]
    pub filters: Option<serde_json::Value>,
    /// Name features `view__feature` rather than `feature`.
    #[serde(default)]
    pub full_feature_names: bool,
}

impl From<&online::OnlineColumn> for FeatureColumn {
    fn from(c: &online::OnlineColumn) -> Self {
        FeatureColumn {
            values: (0..c.values.len())
                .map(|row| skewless_runtime::codec::json::value_json(c.values.as_ref(), row))
                .collect(),
            statuses: c.statuses.clone(),
            event_timestamps: c
                .event_timestamps
                .iter()
                .map(|t| t.map_or_else(|| NO_EVENT_TIME.to_string(), time::format_timestamp))
                .collect(),
        }
    }
}

/// One column: a value, a status and an event time per entity row.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureColumn {
    /// Values (`null` when not present): numbers, strings, booleans, lists.
    #[schema(value_type = Vec<Value>)]
    pub values: Vec<serde_json::Value>,
    /// `PRESENT`, `NULL_VALUE`, `NOT_FOUND` or `OUTSIDE_MAX_AGE`.
    #[schema(value_type = Vec<String>)]
    pub statuses: Vec<online::Status>,
    /// Event time of each value, RFC 3339 (`1970-01-01T00:00:00Z` when none, as Feast does).
    pub event_timestamps: Vec<String>,
}

/// The epoch, Feast's event time for values that have none.
const NO_EVENT_TIME: &str = "1970-01-01T00:00:00Z";

impl GetOnlineFeaturesResponse {
    /// The Feast-shaped form of a runtime answer (also `skewless get --json`).
    pub fn from_online(response: &OnlineResponse, include_lineage: bool) -> Self {
        let results = response.columns.iter().map(FeatureColumn::from).collect();
        GetOnlineFeaturesResponse {
            metadata: ResponseMetadata {
                feature_names: response.columns.iter().map(|c| c.name.clone()).collect(),
                lineage: include_lineage.then(|| {
                    response
                        .digests
                        .iter()
                        .map(|(view, d)| (view.clone(), d.hex()))
                        .collect()
                }),
            },
            results,
        }
    }
}

/// `POST /push`, as Feast's feature server takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "push_source_name": "driver_stats_push_source",
    "df": {"driver_id": [1001], "event_timestamp": ["2022-05-13 10:59:42"], "created": ["2022-05-13 10:59:42"],
           "conv_rate": [1.0], "acc_rate": [1.0], "avg_daily_trips": [1000]},
    "to": "online_and_offline"
}))]
pub struct PushRequest {
    /// A source with `type = "push"`.
    #[schema(min_length = 1)]
    pub push_source_name: String,
    /// Columns of rows: join keys, the event-time column, the transform's inputs.
    #[schema(value_type = Object)]
    pub df: IndexMap<String, Vec<serde_json::Value>>,
    /// `online` (the default, as in Feast), `offline` or `online_and_offline`.
    #[serde(default = "default_push_target")]
    #[schema(value_type = String)]
    pub to: WriteTo,
}

fn default_push_target() -> WriteTo {
    WriteTo::Online
}

/// What a push stored (durably, before this answer was sent).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushResponse {
    /// Rows received.
    pub rows: usize,
    /// Feature views written.
    pub views: Vec<String>,
    /// The store commit holding them (on this server); null when a
    /// replicated server answers on the log's ack (`--ack-on-log`) or the
    /// push repeats one applied earlier.
    pub commit: Option<u64>,
    /// Rows whose transform failed: stored with null features.
    pub row_errors: Vec<RowErrorBody>,
    /// Replicated serving: the push's message in the replication log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_sequence: Option<u64>,
    /// Replicated serving: the log already held this push (same
    /// Idempotency-Key, or same body, within its duplicate window); it is
    /// stored once.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A row a transform reported as failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RowErrorBody {
    /// The view.
    pub view: String,
    /// The row, 0-based.
    pub row: usize,
    /// The transform's message.
    pub message: String,
}

impl From<PushSummary> for PushResponse {
    fn from(summary: PushSummary) -> Self {
        PushResponse {
            rows: summary.rows,
            views: summary.views,
            commit: Some(summary.commit),
            log_sequence: None,
            duplicate: false,
            row_errors: summary
                .row_errors
                .into_iter()
                .map(|(view, e)| RowErrorBody {
                    view,
                    row: e.row,
                    message: e.message,
                })
                .collect(),
        }
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The repo's project.
    pub project: String,
    /// Feature views served.
    pub views: usize,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Replicated serving: where this replica stands in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationHealth>,
}

/// Where a replica stands in the replication log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicationHealth {
    /// The last message applied to this replica's store.
    pub applied_sequence: u64,
    /// The stream's last message, when last read.
    pub stream_sequence: u64,
    /// Messages not applied yet.
    pub lag: u64,
}

/// Every error: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: `malformed_json`, `unknown_feature`, `wrong_type`, ...
    pub code: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

/// `POST /admin/swap`: which store to serve from now on.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": "nightly-2026-12-06"}))]
pub struct SwapRequest {
    /// A store version built beside the live store with `skewless backfill
    /// --new-version NAME` (or a retired one, to undo a swap). Absent: the
    /// live store is reopened, which clears a write fault that redb keeps
    /// until then (a disk that filled up and was freed).
    #[serde(default)]
    #[schema(min_length = 1, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")]
    pub version: Option<String>,
}

/// What a swap did. Requests that started before it finished on the store
/// they began with; every later one reads the new store.
#[derive(Debug, Serialize, ToSchema)]
pub struct SwapResponse {
    /// The version swapped in; null when the live store was reopened.
    pub version: Option<String>,
    /// The live store file (the version now has its name).
    pub store: String,
    /// The new store's last commit.
    pub commit: u64,
    /// Replicated serving: the last log message the new store holds.
    pub log_sequence: u64,
    /// Replicated serving: log messages applied to the version before it
    /// was swapped in, to bring it level with the store it replaces.
    pub replayed: u64,
    /// Where the replaced store is kept (swap it back in by this name to
    /// undo the swap); null when the live store was reopened.
    pub retired: Option<String>,
    /// Older retired stores removed.
    pub removed: Vec<String>,
    /// How long the swap took, in milliseconds; the writer lock was held
    /// for `locked_ms` of it.
    pub elapsed_ms: f64,
    /// How long pushes waited on the swap, in milliseconds.
    pub locked_ms: f64,
}

/// `POST /materialize`: Feast's request (`FeatureStore.materialize` in
/// remote mode posts it). Loads the named views' (every one's when null)
/// source rows with event time in `[start_ts, end_ts)` through their
/// components, as `skewless backfill --start --end` does.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "start_ts": "2026-11-01T00:00:00+00:00", "end_ts": "2026-12-01T00:00:00+00:00",
    "feature_views": ["driver_hourly_stats"], "disable_event_timestamp": false
}))]
pub struct MaterializeRequest {
    /// RFC 3339; required unless `disable_event_timestamp`.
    pub start_ts: Option<String>,
    /// RFC 3339; required unless `disable_event_timestamp`.
    pub end_ts: Option<String>,
    /// Views to load; null: every materialized and aggregation view.
    pub feature_views: Option<Vec<String>>,
    /// Load every row, whatever its time. (Feast's `full_feature_names` is
    /// accepted and ignored: names do not matter to a load.)
    #[serde(default)]
    pub disable_event_timestamp: bool,
    /// Feast's feature view versions: not supported (must be null).
    pub version: Option<String>,
}

/// `POST /materialize-incremental`: Feast's request. Each view loads from
/// where its last incremental run ended (every row the first time) up to
/// `end_ts`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"end_ts": "2026-12-01T00:00:00+00:00", "feature_views": ["driver_hourly_stats"]}))]
pub struct MaterializeIncrementalRequest {
    /// RFC 3339.
    pub end_ts: String,
    /// Views to load; null: every materialized and aggregation view.
    /// (Feast's `full_feature_names` is accepted and ignored.)
    pub feature_views: Option<Vec<String>>,
    /// Feast's feature view versions: not supported (must be null).
    pub version: Option<String>,
}

/// What a materialize stored, view by view (once it finished; `?async=true`
/// answers 202 at once instead, with `status` and `feature_views`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MaterializeResponse {
    /// `done`, or `accepted` for `?async=true`.
    pub status: &'static str,
    /// The views loaded.
    pub feature_views: Vec<String>,
    /// Per view (empty when accepted): the window read and the rows.
    pub views: Vec<MaterializedView>,
}

/// One view's load.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaterializedView {
    /// The view.
    pub view: String,
    /// First event time read (inclusive); null: from the first row.
    pub start_ts: Option<String>,
    /// Last event time read (exclusive); null: to the last row.
    pub end_ts: Option<String>,
    /// Source rows read.
    pub rows_read: u64,
    /// Rows (or events) stored.
    pub rows_written: u64,
    /// Rows left out (no event time, outside the window's view).
    pub rows_skipped: u64,
    /// Rows whose transform failed: stored with null features.
    pub row_errors: u64,
}

/// `POST /write-to-online-store`: Feast's request (its `df` of values is
/// not read), refused for every view here (see
/// [`crate::state::Server::write_to_online_store`]).
#[derive(Debug, Deserialize, ToSchema)]
pub struct WriteToOnlineStoreRequest {
    /// The view whose values would be written.
    pub feature_view_name: String,
}
