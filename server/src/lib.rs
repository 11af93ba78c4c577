//! The Skewless online feature server (`skewless serve`).
//!
//! Feast's HTTP API (`/get-online-features`, `/push`) over the runtime's
//! store and transforms, on axum and tokio, plus `/health`, `/metrics`
//! (Prometheus), `/v1/catalog` and `/openapi.json`. On-demand views run at
//! request time through the same `Transform::run` as backfill, and pushes
//! go through the backfill's own materialization path, so served values are
//! bit-identical to stored and training values.
//!
//! Reads run on the async workers, on-demand transform calls included, for
//! at most 10 ms each; a longer call moves its request to the blocking pool,
//! cut off at the request's time limit (`state::INLINE_BUDGET`). Pushes are
//! prepared on the blocking pool and made durable by one committer thread
//! that commits every push waiting in one transaction (group commit).
//! Readers never wait for a writer: each read is a redb snapshot, and a
//! backfill in another process shows up when it commits.

#![deny(missing_docs)]

mod api;
pub mod auth;
mod commit;
mod config;
mod error;
mod live;
mod metrics;
pub mod monitor;
mod replication;
#[cfg(test)]
mod replication_tests;
mod routes;
mod state;
mod topics;
mod ui;

use std::future::Future;

pub use api::{
    ErrorBody, ErrorDetail, FeatureColumn, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, Health, PushRequest,
    PushResponse, ReplicationHealth, ResponseMetadata, RowErrorBody,
};
pub use auth::{Auth, AuthConfig, Scope};
pub use config::{AuthOverrides, DEFAULT_ADDR, Listening, ServeConfig, ServeError, TlsFiles, serve_repo, tokens_file};
pub use error::ApiError;
pub use replication::{LogError, LogSettings};
pub use routes::{app, openapi_json, served_openapi_json};
pub use state::{AppState, Server, ServerLimits, StartError};

/// Serves `state` on `listener` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish, and returns (the store closes
/// when the last reference to the state is dropped).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// As [`serve`], over TLS with the PEM certificate chain and private key
/// at `cert` and `key` (rustls; TLS 1.2 and 1.3, HTTP/1.1).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("TLS certificate {} or key {}: {e}", cert.display(), key.display()),
            )
        })?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // As axum::serve's graceful shutdown: stop accepting, finish what is in flight.
        stopping.graceful_shutdown(None);
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
