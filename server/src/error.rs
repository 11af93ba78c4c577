//! One error type for every handler. Client mistakes are 4xx with a message
//! that names the field; server faults are 5xx, logged in full, and answered
//! without internals. A transform that fails is the deployed component's
//! fault: 5xx, with the transform's own message (it is the user's code).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use skewless_runtime::online::OnlineError;
use skewless_runtime::push::PushError;
use skewless_runtime::{StoreError, TransformError, TransformErrorKind};

use crate::api::{ErrorBody, ErrorDetail};
use crate::auth::Denied;

/// An error answered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// A client mistake.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// 503 with `Retry-After`: too much work in flight.
    pub(crate) fn overloaded(message: String) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "overloaded",
            message,
        }
    }

    /// A server fault: logged here with its details, answered without them.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the server log has the details".into(),
        }
    }

    /// A store error, as [`ApiError::commit`] answers it.
    pub(crate) fn store(error: StoreError) -> Self {
        Self::commit(&error)
    }

    fn transform(error: TransformError) -> Self {
        Self::transform_ref(&error)
    }

    /// A push's commit failed: a user-defined aggregation function's error
    /// is the view's (as a transform's), anything else the server's.
    pub(crate) fn commit(error: &StoreError) -> Self {
        match error {
            StoreError::Aggregator(e) => Self::transform_ref(e),
            StoreError::StorageFull { .. } => {
                tracing::error!("{error}");
                ApiError {
                    status: StatusCode::INSUFFICIENT_STORAGE,
                    code: "storage_full",
                    message: format!("{error}; nothing of this request was stored, reads go on"),
                }
            }
            latched if latched.needs_reopen() => {
                tracing::error!("{latched}");
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_fault",
                    message: "the store hit an I/O error (a disk that filled up, a failing device) and refuses \
                              every use until it is reopened: fix the cause, then reopen it with `skewless swap` \
                              (POST /admin/swap with no body); nothing acknowledged is lost"
                        .into(),
                }
            }
            other => Self::internal(other),
        }
    }

    fn transform_ref(error: &TransformError) -> Self {
        let (status, code) = match &error.kind {
            TransformErrorKind::Timeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "transform_timeout"),
            TransformErrorKind::MemoryLimit { .. } => (StatusCode::SERVICE_UNAVAILABLE, "transform_memory_limit"),
            TransformErrorKind::TooManyCalls { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "transform_failed"),
        };
        tracing::warn!("{error}");
        ApiError {
            status,
            code,
            message: error.to_string(),
        }
    }
}

/// Runs `work` on tokio's blocking pool: transform calls past the inline
/// budget (a guest may run to its time limit), push preparation, and a
/// store swap's file work never hold an async worker.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("the request's task failed: {e}"),
    })?
}

/// The code of an error answer, kept on the response for the metrics.
#[derive(Clone, Copy)]
pub(crate) struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match (self.status, self.code) {
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded") => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            (StatusCode::UNAUTHORIZED, code) => {
                let challenge = format!("Bearer realm=\"skewless\", error=\"{code}\"");
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::try_from(challenge).expect("ASCII"),
                );
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

impl From<OnlineError> for ApiError {
    fn from(error: OnlineError) -> Self {
        let code = match &error {
            OnlineError::UnknownView { .. } => "unknown_feature_view",
            OnlineError::UnknownFeature { .. } => "unknown_feature",
            OnlineError::UnknownService(_) => "unknown_feature_service",
            OnlineError::BadReference(_) => "bad_feature_reference",
            OnlineError::MissingJoinKey { .. } => "missing_join_key",
            OnlineError::MissingRequestField { .. } => "missing_request_field",
            OnlineError::WrongType(_) => "wrong_type",
            OnlineError::NoFeatures => "no_features",
            OnlineError::UnknownEntityColumn { .. } => "unknown_entity_column",
            OnlineError::Length { .. } => "length_mismatch",
            _ => {
                return match error {
                    OnlineError::Transform(e) => Self::transform(e),
                    OnlineError::Store(e) => Self::store(e),
                    other => Self::internal(other),
                };
            }
        };
        ApiError::bad_request(code, error.to_string())
    }
}

impl From<PushError> for ApiError {
    fn from(error: PushError) -> Self {
        let code = match &error {
            PushError::UnknownSource { .. } => "unknown_push_source",
            PushError::NotPush(_) => "not_a_push_source",
            PushError::NoViews(_) => "no_views_for_push_source",
            PushError::MissingColumn { .. } => "missing_column",
            PushError::NullKey { .. } => "null_key",
            PushError::WrongType(_) => "wrong_type",
            PushError::Length { .. } => "length_mismatch",
            _ => {
                return match error {
                    PushError::Transform(e) => Self::transform(e),
                    PushError::Store(e) => Self::store(e),
                    other => Self::internal(other),
                };
            }
        };
        ApiError::bad_request(code, error.to_string())
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(message) => ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "invalid_token",
                message,
            },
            Denied::Forbidden(message) => ApiError {
                status: StatusCode::FORBIDDEN,
                code: "insufficient_scope",
                message,
            },
        }
    }
}
