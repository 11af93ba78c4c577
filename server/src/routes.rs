//! Routes and thin handlers: parse, call [`Server`], answer. Bodies are read
//! as bytes and parsed as JSON whatever their content type, because the curl
//! lines in Feast's documentation send none.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use crate::api::{
    ErrorBody, ErrorDetail, FeatureColumn, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, Health,
    MaterializeIncrementalRequest, MaterializeRequest, MaterializeResponse, MaterializedView, PushRequest,
    PushResponse, ReplicationHealth, ResponseMetadata, RowErrorBody, SearchRequest, SwapRequest, SwapResponse,
    WriteToOnlineStoreRequest,
};
use crate::auth::Scope;
use crate::error::{ApiError, ErrorCode, blocking};
use crate::state::{AppState, Inline, Server};
use skewless_runtime::backfill::MaterializeWindow;

/// The whole HTTP API over `state`; tests call it with or without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/get-online-features", post(get_online_features))
        .route("/search", post(search))
        .route("/retrieve-online-documents", post(retrieve_online_documents))
        .route("/push", post(push))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/catalog", get(catalog))
        .route("/admin/swap", post(swap))
        .route("/materialize", post(materialize))
        .route("/materialize-incremental", post(materialize_incremental))
        .route("/write-to-online-store", post(write_to_online_store))
        .route("/openapi.json", get(openapi))
        .route("/ui", get(ui_page))
        .route("/ui/app.js", get(ui_script))
        .route("/ui/style.css", get(ui_style))
        .route("/ui/api/overview", get(ui_overview))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "Skewless feature server",
        description = "Feast-compatible online features, computed by the same WebAssembly components as training data."
    ),
    paths(
        get_online_features,
        search,
        retrieve_online_documents,
        push,
        health,
        metrics,
        catalog,
        swap,
        materialize,
        materialize_incremental,
        write_to_online_store,
        openapi
    ),
    components(schemas(
        GetOnlineFeaturesRequest,
        SearchRequest,
        GetOnlineFeaturesResponse,
        ResponseMetadata,
        FeatureColumn,
        PushRequest,
        PushResponse,
        RowErrorBody,
        Health,
        ReplicationHealth,
        SwapRequest,
        SwapResponse,
        MaterializeRequest,
        MaterializeIncrementalRequest,
        MaterializeResponse,
        MaterializedView,
        WriteToOnlineStoreRequest,
        ErrorBody,
        ErrorDetail
    ))
)]
struct ApiDoc;

/// The bearer scheme of module `auth`, and what every guarded route may
/// answer besides its own responses: 401, 403 and 503 `overloaded`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `skewless token add` or a JWT from the identity provider; \
                         needed only when the server is configured with tokens or a JWKS file",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(scope) = Scope::for_route(path) else { continue };
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                // Either a bearer token, or none when the server has no credentials configured.
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", [scope.to_string()]),
                    SecurityRequirement::default(),
                ]);
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "401".into(),
                    error("`invalid_token`: no, unknown, expired or badly signed token"),
                );
                responses.insert(
                    "403".into(),
                    error("`insufficient_scope`: the token lacks this route's scope"),
                );
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("`overloaded`: too many requests in flight; retry after `Retry-After`"));
            }
        }
    }
}

/// The OpenAPI document, generated from the handlers and types above.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// Times every request, counts answers
/// and errors, and logs one line per request at debug level.
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| match p.as_str() {
            "/get-online-features" => "/get-online-features",
            "/search" => "/search",
            "/retrieve-online-documents" => "/retrieve-online-documents",
            "/push" => "/push",
            "/health" => "/health",
            "/metrics" => "/metrics",
            "/v1/catalog" => "/v1/catalog",
            "/admin/swap" => "/admin/swap",
            "/materialize" => "/materialize",
            "/materialize-incremental" => "/materialize-incremental",
            "/write-to-online-store" => "/write-to-online-store",
            "/openapi.json" => "/openapi.json",
            "/ui/api/overview" => "/ui/api/overview",
            _ => "other",
        });
    let method = request.method().clone();
    // The time limit is enforced where time is spent: transform calls stop
    // at the request's deadline and say which view ran out of time. A timer
    // per request here would cost ~10% of throughput and guard nothing else
    // (a slow client holds only its own connection).
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.request(route, status, elapsed);
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics.error(route, code);
    }
    tracing::debug!(%method, route, status, micros = elapsed.as_micros() as u64, "request");
    response
}

/// Lets a request through if its bearer token grants the route's scope
/// (module `auth`); with no credentials configured, everyone may.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.auth.enabled() {
        return next.run(request).await;
    }
    let path = request.extensions().get::<MatchedPath>().map_or("", |p| p.as_str());
    let Some(needed) = Scope::for_route(path) else {
        return next.run(request).await;
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.check(header, needed) {
        Ok(()) => next.run(request).await,
        Err(denied) => ApiError::from(denied).into_response(),
    }
}

/// Admits a request if fewer than `--max-in-flight` are being worked on;
/// else answers 503 `overloaded` at once. Queueing the excess instead would
/// make every request late once load passes capacity; shedding keeps the
/// admitted ones as fast as before and tells the rest when to retry.
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::overloaded(format!(
            "{} requests are in flight (`skewless serve --max-in-flight`); retry after a second",
            state.limits.max_in_flight
        ))
        .into_response(),
    }
}

/// Reads a JSON body: 413 past the size limit, 400 naming line and column
/// for malformed JSON or a field of the wrong shape.
fn parse<T: DeserializeOwned>(state: &Server, body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    from_json(&body_bytes(state, body)?)
}

/// The body: 413 past the size limit.
fn body_bytes(state: &Server, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!(
                    "the request body is larger than {} bytes (`skewless serve --max-body-bytes`)",
                    state.limits.max_body_bytes
                ),
            }
        } else {
            ApiError::bad_request("bad_body", rejection.body_text())
        }
    })
}

/// A JSON body: 400 naming line and column. Every request is an object:
/// serde would also take a struct's fields from an array, in order, so an
/// array is refused here, for every route.
fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the request body is a JSON array; it must be a JSON object of named fields",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request(
                "invalid_request",
                format!("the request does not have the expected shape: {e}"),
            )
        } else {
            ApiError::bad_request("malformed_json", format!("the request body is not valid JSON: {e}"))
        }
    })
}

type Answer<T> = Result<Json<T>, ApiError>;

/// Online features for entity rows (Feast's `get-online-features`).
#[utoipa::path(
    post,
    path = "/get-online-features",
    request_body = GetOnlineFeaturesRequest,
    responses(
        (status = 200, description = "One column per key and feature", body = GetOnlineFeaturesResponse),
        (status = 400, description = "Malformed JSON, unknown feature or view, wrong key type, missing field, too many rows", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "An on-demand transform failed", body = ErrorBody),
        (status = 503, description = "`overloaded` (retry after `Retry-After`), or an on-demand transform ran out of time or memory", body = ErrorBody),
    )
)]
async fn get_online_features(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<GetOnlineFeaturesResponse> {
    let started = Instant::now();
    let request: GetOnlineFeaturesRequest = parse(&state, body)?;
    match state.get_online_features_inline(&request, started).await {
        Inline::Answered(response) => Ok(Json(response?)),
        Inline::Offload => Ok(Json(
            blocking(move || state.get_online_features(&request, started)).await?,
        )),
    }
}

/// The `top_k` entities nearest to a query vector, exactly, with features
/// (Feast's `search`).
#[utoipa::path(
    post,
    path = "/search",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Join keys, the features asked for and `distance`, nearest first; equal distances in entity-key order", body = GetOnlineFeaturesResponse),
        (status = 400, description = "Malformed JSON, unknown view or feature, no vector feature, a query of the wrong dimension or not finite, top_k of 0 or past 1000, an unknown metric, a text query or filters", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "An on-demand transform failed", body = ErrorBody),
    )
)]
async fn search(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<GetOnlineFeaturesResponse> {
    let started = Instant::now();
    let request: SearchRequest = parse(&state, body)?;
    Ok(Json(blocking(move || state.search(&request, started)).await?))
}

/// `/search` by its older name, which Feast clients before 0.66 post.
#[utoipa::path(
    post,
    path = "/retrieve-online-documents",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "As `/search`", body = GetOnlineFeaturesResponse),
        (status = 400, description = "As `/search`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "An on-demand transform failed", body = ErrorBody),
    )
)]
async fn retrieve_online_documents(
    state: State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer<GetOnlineFeaturesResponse> {
    search(state, body).await
}

/// Rows to store through the views of a push source (Feast's `push`);
/// answered once they are committed durably.
#[utoipa::path(
    post,
    path = "/push",
    request_body = PushRequest,
    responses(
        (status = 200, description = "Stored", body = PushResponse),
        (status = 400, description = "Malformed JSON, unknown source, missing column, wrong type, too many rows", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 500, description = "A transform failed the batch; nothing was stored", body = ErrorBody),
        (status = 503, description = "`overloaded` (retry after `Retry-After`), or a transform ran out of time or memory", body = ErrorBody),
        (status = 507, description = "`storage_full`: too little disk space left; nothing was stored", body = ErrorBody),
    )
)]
async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer<PushResponse> {
    let started = Instant::now();
    let body = body_bytes(&state, body)?;
    let request: PushRequest = from_json(&body)?;
    let preparing = state.clone();
    let prepared = blocking(move || preparing.prepare_push(request, started)).await?;
    if !state.is_replicated() {
        return Ok(Json(state.commit_push(prepared).await?));
    }
    // The log stores one message per de-duplication id: the client's key
    // when it gives one, else the body's digest (the same push sent twice).
    let id = match headers.get("idempotency-key") {
        Some(key) => key
            .to_str()
            .map_err(|_| ApiError::bad_request("bad_idempotency_key", "the Idempotency-Key header is not ASCII text"))?
            .to_string(),
        None => format!("{:x}", Sha256::digest(&body)),
    };
    Ok(Json(state.push_to_log(prepared, &id, body, started).await?))
}

/// Serve another store version from now on (built beside the live store
/// by `skewless backfill --new-version NAME`), or reopen the live store
/// (no `version`). Reads go on throughout; pushes wait for the last step.
#[utoipa::path(
    post,
    path = "/admin/swap",
    request_body = Option<SwapRequest>,
    responses(
        (status = 200, description = "Swapped: later requests read the new store", body = SwapResponse),
        (status = 400, description = "Malformed JSON, or a version name that cannot be a file name", body = ErrorBody),
        (status = 404, description = "`no_such_version`: no built version has this name (the message lists them)", body = ErrorBody),
        (status = 409, description = "`version_conflict`: the version holds other views, misses commits of the live store, or cannot catch up with the log; nothing changed", body = ErrorBody),
        (status = 500, description = "`swap_failed`: the version's file cannot be opened or put in place; nothing changed", body = ErrorBody),
    )
)]
async fn swap(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Answer<SwapResponse> {
    let body = body_bytes(&state, body)?;
    // `curl -X POST .../admin/swap` with no body (or `null`) reopens the live store.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        SwapRequest::default()
    } else {
        from_json::<Option<SwapRequest>>(&body)?.unwrap_or_default()
    };
    Ok(Json(state.swap_store(request).await?))
}

/// Feast's `?async=true` (its `force` has nothing to undo here: a load in
/// flight is this process's, and ends with it).
fn run_async(uri: &axum::http::Uri) -> Result<bool, ApiError> {
    let mut run_async = false;
    for pair in uri.query().unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("async=") else {
            continue;
        };
        run_async = match value {
            "true" | "True" | "1" => true,
            "false" | "False" | "0" => false,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_materialize",
                    format!("`async` is `true` or `false`, not `{other}`"),
                ));
            }
        };
    }
    Ok(run_async)
}

/// Loads views' source rows between two times through their components
/// (Feast's remote `materialize`); admin scope. `?async=true`: 202 at once.
#[utoipa::path(post, path = "/materialize", request_body = MaterializeRequest,
    params(("async" = Option<bool>, Query, description = "answer 202 at once and load on")),
    responses((status = 200, body = MaterializeResponse), (status = 202, body = MaterializeResponse),
               (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn materialize(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MaterializeResponse>), ApiError> {
    let request: MaterializeRequest = from_json(&body_bytes(&state, body)?)?;
    refuse_versions(request.version.as_deref())?;
    let window = if request.disable_event_timestamp {
        MaterializeWindow::All
    } else {
        let (Some(start), Some(end)) = (&request.start_ts, &request.end_ts) else {
            return Err(ApiError::bad_request(
                "invalid_materialize",
                "`start_ts` and `end_ts` are required unless `disable_event_timestamp` is true",
            ));
        };
        let (start, end) = (instant("start_ts", start)?, instant("end_ts", end)?);
        if start >= end {
            return Err(ApiError::bad_request(
                "invalid_window",
                format!(
                    "`start_ts` ({}) must be before `end_ts` ({})",
                    request.start_ts.unwrap_or_default(),
                    request.end_ts.unwrap_or_default()
                ),
            ));
        }
        MaterializeWindow::Between { start, end }
    };
    answer_materialize(
        state
            .materialize(request.feature_views, window, run_async(&uri)?)
            .await?,
    )
}

/// Loads views' source rows from where the last incremental load ended up
/// to `end_ts` (Feast's remote `materialize_incremental`); admin scope.
#[utoipa::path(post, path = "/materialize-incremental", request_body = MaterializeIncrementalRequest,
    params(("async" = Option<bool>, Query, description = "answer 202 at once and load on")),
    responses((status = 200, body = MaterializeResponse), (status = 202, body = MaterializeResponse),
               (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn materialize_incremental(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MaterializeResponse>), ApiError> {
    let request: MaterializeIncrementalRequest = from_json(&body_bytes(&state, body)?)?;
    refuse_versions(request.version.as_deref())?;
    let window = MaterializeWindow::Incremental {
        end: instant("end_ts", &request.end_ts)?,
    };
    answer_materialize(
        state
            .materialize(request.feature_views, window, run_async(&uri)?)
            .await?,
    )
}

fn answer_materialize(response: MaterializeResponse) -> Result<(StatusCode, Json<MaterializeResponse>), ApiError> {
    let status = if response.status == "accepted" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)))
}

fn refuse_versions(version: Option<&str>) -> Result<(), ApiError> {
    match version {
        None => Ok(()),
        Some(v) => Err(ApiError::bad_request(
            "invalid_materialize",
            format!(
                "`version` ({v}): feature view versions are Feast's; a view here has one definition, and whole \
                     store versions are built with `skewless backfill --new-version`"
            ),
        )),
    }
}

/// An RFC 3339 time (Feast sends Python's `isoformat()`), in microseconds.
fn instant(field: &str, text: &str) -> Result<i64, ApiError> {
    skewless_runtime::time::parse_timestamp(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_materialize",
            format!("`{field}` is not a time ({text:?}): {e}"),
        )
    })
}

/// Feast's direct write of feature values: refused, with what to use.
#[utoipa::path(post, path = "/write-to-online-store", request_body = WriteToOnlineStoreRequest,
    responses((status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn write_to_online_store(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Answer<()> {
    let request: WriteToOnlineStoreRequest = from_json(&body_bytes(&state, body)?)?;
    Err(state.write_to_online_store(&request.feature_view_name))
}

/// Whether the server is up and its store answers.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 500, body = ErrorBody)))]
async fn health(State(state): State<AppState>) -> Answer<Health> {
    Ok(Json(state.health()?))
}

/// The web UI's page ([`crate::ui`]).
async fn ui_page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::ui::INDEX_HTML,
    )
}

async fn ui_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        crate::ui::APP_JS,
    )
}

async fn ui_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        crate::ui::STYLE_CSS,
    )
}

/// What the web UI shows, in one document.
async fn ui_overview(State(state): State<AppState>) -> Answer<serde_json::Value> {
    let overview = tokio::task::spawn_blocking(move || crate::ui::overview(&state))
        .await
        .map_err(|e| ApiError::internal(format!("the UI overview failed: {e}")))??;
    Ok(Json(overview))
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics_text(),
    )
}

/// The registry: entities, sources, views (with digests) and services.
#[utoipa::path(get, path = "/v1/catalog", responses((status = 200, description = "The registry", body = Object), (status = 500, body = ErrorBody)))]
async fn catalog(State(state): State<AppState>) -> Answer<serde_json::Value> {
    Ok(Json(state.catalog_json()?))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3", body = Object)))]
async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        (state.openapi)
            .get_or_init(|| served_openapi_json(state.catalog(), state.records()))
            .clone(),
    )
}

/// The OpenAPI document as a server of `catalog` serves it: the code's
/// ([`openapi_json`]), with what this repo takes spelled out, so generated
/// clients are typed and a request valid by the document is one the server
/// accepts: feature references, feature services and push sources as
/// enums, at least one of `features` and `feature_service`, and the
/// columns of `entities` and of each push's `df` with their JSON types
/// (`records` says what each view's push reads). Columns of one request
/// must also have equal lengths, which JSON Schema cannot say; the
/// descriptions do.
pub fn served_openapi_json(
    catalog: &skewless_runtime::Catalog,
    records: &std::collections::BTreeMap<String, skewless_runtime::store::ViewRecord>,
) -> String {
    use serde_json::{Value, json};
    use skewless_runtime::repo::SourceKind;
    let repo = &catalog.repo;
    let mut references = Vec::new();
    for view in repo.views.keys() {
        references.push(view.clone());
        for feature in catalog.features(view).unwrap_or_default() {
            references.push(format!("{view}:{}", feature.name));
        }
    }
    let services: Vec<&String> = repo.services.keys().collect();
    let push_sources: Vec<&String> = (repo.sources.values())
        .filter(|s| match s.kind {
            SourceKind::Push { .. } => true,
            SourceKind::File(_) | SourceKind::Request { .. } => false,
        })
        .map(|s| &s.name)
        .collect();
    // One column of values: an array of the type's JSON values.
    let column = |data_type: skewless_runtime::FeatureType, nullable: bool| {
        let mut item = json_value_schema(data_type);
        if nullable {
            item = json!({"anyOf": [item, {"type": "null"}]});
        }
        json!({"type": "array", "items": item, "minItems": 1})
    };

    let mut document: Value = serde_json::from_str(&openapi_json()).expect("the OpenAPI document is JSON");
    let schemas = &mut document["components"]["schemas"];
    let read = &mut schemas["GetOnlineFeaturesRequest"];
    if !references.is_empty() {
        read["properties"]["features"]["items"]["enum"] = json!(references);
    }
    if !services.is_empty() {
        let mut names = json!(services);
        names.as_array_mut().expect("a list").push(Value::Null);
        read["properties"]["feature_service"]["enum"] = names;
    }
    read["anyOf"] = json!([
        {"required": ["features"], "properties": {"features": {"minItems": 1}}},
        {"required": ["feature_service"], "properties": {"feature_service": {"type": "string"}}}
    ]);
    let mut entity_columns = serde_json::Map::new();
    for entity in repo.entities.values() {
        for key in &entity.join_keys {
            entity_columns.insert(key.name.clone(), column(key.data_type, false));
        }
    }
    for (name, data_type) in catalog.request_columns() {
        entity_columns.insert(name.clone(), column(*data_type, true));
    }
    let required: Vec<&String> = entity_columns.keys().collect();
    if !required.is_empty() {
        read["required"] = json!(["entities"]);
    }
    read["properties"]["entities"] = json!({
        "type": "object",
        "description": "Join-key columns and request-field columns, one value per entity row: every column of one request has the same length.",
        "properties": entity_columns,
        "required": required,
        "additionalProperties": false,
    });

    let push = &mut schemas["PushRequest"];
    push["properties"]["to"]["enum"] = json!(["online", "offline", "online_and_offline"]);
    if !push_sources.is_empty() {
        push["properties"]["push_source_name"]["enum"] = json!(push_sources);
    }
    if let [source] = push_sources.as_slice() {
        let columns = skewless_runtime::push::columns(catalog, records, source);
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for pushed in &columns {
            let name = &pushed.field.name;
            properties.insert(name.clone(), column(pushed.field.data_type, pushed.nullable));
            if !pushed.optional {
                required.push(name.clone());
            }
        }
        push["properties"]["df"] = json!({
            "type": "object",
            "description": "Columns of rows: join keys, the event-time column, the transform's inputs; every column has the same length.",
            "properties": properties,
            "required": required,
        });
    }

    // A search reads the features of one view with a vector feature: the
    // document names them, and the query's length when they share one
    // dimension. A repo without one has no search to document.
    let searchable: Vec<(String, u32)> = (repo.views.keys())
        .flat_map(|view| {
            let features = catalog.features(view).unwrap_or_default();
            let dimension = features.iter().find_map(|f| f.data_type.dimension());
            let references: Vec<(String, u32)> = match dimension {
                Some(dimension) => features
                    .iter()
                    .map(|f| (format!("{view}:{}", f.name), dimension))
                    .collect(),
                None => Vec::new(),
            };
            references
        })
        .collect();
    let dimensions: std::collections::BTreeSet<u32> = searchable.iter().map(|(_, d)| *d).collect();
    if searchable.is_empty() {
        let paths = document["paths"].as_object_mut().expect("paths");
        paths.remove("/search");
        paths.remove("/retrieve-online-documents");
    } else {
        let search = &mut document["components"]["schemas"]["SearchRequest"];
        search["required"] = json!(["features", "query"]);
        let references: Vec<&String> = searchable.iter().map(|(r, _)| r).collect();
        search["properties"]["features"]["items"] = json!({"type": "string", "enum": references});
        search["properties"]["distance_metric"] =
            json!({"anyOf": [{"type": "string", "enum": ["cosine", "inner_product", "L2"]}, {"type": "null"}]});
        search["properties"]["query_string"] = json!({"type": "null"});
        search["properties"]["filters"] = json!({"type": "null"});
        if let [dimension] = dimensions.iter().collect::<Vec<_>>().as_slice() {
            search["properties"]["query"] = json!({
                "type": "array",
                "items": {"type": "number", "minimum": -f32::MAX, "maximum": f32::MAX},
                "minItems": dimension,
                "maxItems": dimension,
            });
        }
    }
    // A load names views that can be loaded, and times (before/after, a
    // rule across properties, is said in words and answered 400
    // `invalid_window`). Feast's `version` has no use here.
    let loadable: Vec<&String> = (repo.views.values().filter(|v| v.is_materialized()))
        .map(|v| &v.name)
        .collect();
    let views = json!({"anyOf": [{"type": "array", "items": {"type": "string", "enum": loadable}}, {"type": "null"}]});
    let time = json!({"type": "string", "format": "date-time"});
    let schemas = &mut document["components"]["schemas"];
    for (name, times) in [
        ("MaterializeRequest", &["start_ts", "end_ts"][..]),
        ("MaterializeIncrementalRequest", &["end_ts"][..]),
    ] {
        let schema = &mut schemas[name];
        schema["required"] = json!(times);
        for field in times {
            schema["properties"][*field] = time.clone();
        }
        schema["properties"]["feature_views"] = views.clone();
        schema["properties"]
            .as_object_mut()
            .expect("properties")
            .remove("version");
    }
    schemas["MaterializeRequest"]["description"] = json!(
        "Loads the named views' source rows with event time in [start_ts, end_ts): start_ts must be before end_ts."
    );
    let all_views: Vec<&String> = repo.views.keys().collect();
    schemas["WriteToOnlineStoreRequest"]["properties"]["feature_view_name"] =
        json!({"type": "string", "enum": all_views});
    serde_json::to_string_pretty(&document).expect("the OpenAPI document serializes")
}

/// The JSON values a feature type takes in requests (`codec::json`).
fn json_value_schema(data_type: skewless_runtime::FeatureType) -> serde_json::Value {
    use serde_json::json;
    use skewless_runtime::FeatureType;
    match data_type {
        FeatureType::Bool => json!({"type": "boolean"}),
        FeatureType::Int64 => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
        FeatureType::Float32 | FeatureType::Float64 => json!({"type": "number"}),
        FeatureType::Utf8 => json!({"type": "string"}),
        FeatureType::Timestamp => json!({"type": "string", "format": "date-time"}),
        FeatureType::List(item) => json!({"type": "array", "items": json_value_schema(item.feature_type())}),
        // Finite components only: JSON has no NaN, and a number past
        // float32's range is refused.
        FeatureType::Vector(dimension) => json!({
            "type": "array",
            "items": {"type": "number", "minimum": -f32::MAX, "maximum": f32::MAX},
            "minItems": dimension,
            "maxItems": dimension,
        }),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no route {}; see GET /openapi.json", request.uri().path()),
    }
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{} is not allowed on {}; see GET /openapi.json",
            request.method(),
            request.uri().path()
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Admission and auth through the whole router, in process (`oneshot`),
    //! over a repo with no views: no component to build, no socket.

    use super::*;
    use crate::auth::{AuthConfig, add_token};
    use crate::state::ServerLimits;
    use axum::body::Body;
    use skewless_runtime::Workspace;
    use tower::ServiceExt;

    /// A server over an empty repo in `dir`, admitting `max_in_flight`.
    fn server(dir: &std::path::Path, max_in_flight: usize, auth: crate::Auth) -> AppState {
        std::fs::write(
            dir.join("skewless.toml"),
            "project = \"empty\"\n[entities.rider]\njoin_keys = { rider_id = \"int64\" }\n",
        )
        .unwrap();
        let workspace = Workspace::create(dir).unwrap();
        let plan = workspace.plan(&Default::default()).unwrap();
        workspace.apply(plan).unwrap();
        let limits = ServerLimits {
            max_in_flight,
            ..ServerLimits::default()
        };
        Server::new(workspace, limits, auth).unwrap()
    }

    async fn get(state: &AppState, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        app(state.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn code_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        body["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn past_max_in_flight_a_request_is_shed_with_retry_after_and_health_still_answers() {
        let dir = tempfile::tempdir().unwrap();
        let state = server(dir.path(), 2, crate::Auth::none());
        let held: Vec<_> = (0..2)
            .map(|_| state.in_flight.clone().try_acquire_owned().unwrap())
            .collect();

        let shed = get(&state, "/metrics", None).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            shed.headers().contains_key(header::RETRY_AFTER),
            "a shed request says when to retry"
        );
        assert_eq!(code_of(shed).await, "overloaded");
        assert_eq!(
            get(&state, "/health", None).await.status(),
            StatusCode::OK,
            "health is never shed"
        );

        drop(held);
        assert_eq!(get(&state, "/metrics", None).await.status(), StatusCode::OK);
        assert_eq!(state.in_flight.available_permits(), 2, "every permit came back");
    }

    #[tokio::test]
    async fn a_swap_request_is_an_object_naming_a_built_version_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = server(dir.path(), 4, crate::Auth::none());
        let swap = |body: &'static str| {
            let request = Request::post("/admin/swap").body(Body::from(body)).unwrap();
            app(state.clone()).oneshot(request)
        };
        for (body, status, code) in [
            ("[]", StatusCode::BAD_REQUEST, "invalid_request"),
            (r#"{"verison": "v2"}"#, StatusCode::BAD_REQUEST, "invalid_request"),
            (r#"{"version": "../v2"}"#, StatusCode::BAD_REQUEST, "bad_version_name"),
            (r#"{"version": "v2"}"#, StatusCode::NOT_FOUND, "no_such_version"),
        ] {
            let response = swap(body).await.unwrap();
            assert_eq!(response.status(), status, "{body}");
            assert_eq!(code_of(response).await, code, "{body}");
        }
        // An array is no request on any route (serde would take it as the fields).
        let request = Request::post("/get-online-features")
            .body(Body::from(r#"[["rider:x"], {"rider_id": [1]}]"#))
            .unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(code_of(response).await, "invalid_request");
        // No body (or null): the live store is reopened.
        for body in ["", "null"] {
            let response = swap(body).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{body:?}");
        }
    }

    #[tokio::test]
    async fn auth_runs_before_admission_and_answers_401_then_403() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.toml");
        let reader = add_token(&tokens, "reader", vec![Scope::Read]).unwrap();
        let auth = crate::Auth::load(&AuthConfig {
            tokens: Some(tokens),
            ..AuthConfig::default()
        })
        .unwrap();
        let state = server(dir.path(), 1, auth);
        let response = get(&state, "/v1/catalog", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(code_of(response).await, "invalid_token");
        assert_eq!(get(&state, "/v1/catalog", Some(&reader)).await.status(), StatusCode::OK);
        let response = get(&state, "/metrics", Some(&reader)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "metrics need admin");
        assert_eq!(code_of(response).await, "insufficient_scope");
        assert_eq!(
            get(&state, "/health", None).await.status(),
            StatusCode::OK,
            "health needs no token"
        );
        // A refused request is refused before admission: it holds no permit.
        let _held = state.in_flight.clone().try_acquire_owned().unwrap();
        let response = get(&state, "/v1/catalog", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
