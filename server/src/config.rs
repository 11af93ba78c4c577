//! Everything `skewless serve` starts with, as one value ([`ServeConfig`]),
//! and the one function that opens a repo and serves it until Ctrl-C or
//! SIGTERM ([`serve_repo`]). The CLI only parses flags into a
//! `ServeConfig` and prints; the policy lives here:
//!
//! - credentials: flags and their environment variables over
//!   `[server.auth]`, over the repo's `tokens.toml` when it has one;
//! - an address beyond loopback is refused without credentials unless
//!   `insecure_no_auth` says something in front authenticates;
//! - sampling shares are checked to be shares.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skewless_runtime::repo::AuthSettings;
use skewless_runtime::{OpenError, Views, Workspace};

use crate::auth::{Auth, AuthConfig, AuthError};
use crate::monitor::MonitorSettings;
use crate::replication::LogSettings;
use crate::state::{Server, ServerLimits, StartError};

/// How `skewless serve` was asked to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `HOST:PORT` to listen on.
    pub addr: String,
    /// What one request may ask.
    pub limits: ServerLimits,
    /// Credentials named by flags, over `[server.auth]`.
    pub auth: AuthOverrides,
    /// Serve beyond loopback with no credentials (something in front authenticates).
    pub insecure_no_auth: bool,
    /// PEM certificate chain and key: serve HTTPS.
    pub tls: Option<TlsFiles>,
    /// Share of answers logged to Parquet, over `[monitoring] log_sample_rate`.
    pub log_sample_rate: Option<f64>,
    /// Share of answers re-read offline, over `[monitoring] skew_sample_rate`.
    pub skew_sample_rate: Option<f64>,
    /// Replicated serving: the JetStream log pushes go through.
    pub replication: Option<LogSettings>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: DEFAULT_ADDR.to_string(),
            limits: ServerLimits::default(),
            auth: AuthOverrides::default(),
            insecure_no_auth: false,
            tls: None,
            log_sample_rate: None,
            skew_sample_rate: None,
            replication: None,
        }
    }
}

/// Where `skewless serve` listens unless told otherwise (Feast's port).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6566";

/// Credentials given on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct AuthOverrides {
    /// Tokens file.
    pub tokens: Option<PathBuf>,
    /// JWKS file.
    pub jwks: Option<PathBuf>,
    /// The JWT claim holding scopes.
    pub scopes_claim: Option<String>,
    /// Required JWT issuer.
    pub issuer: Option<String>,
    /// Required JWT audience.
    pub audience: Option<String>,
}

impl AuthOverrides {
    /// These over the repo's `[server.auth]` (whose `tokens` is the repo's
    /// `tokens.toml` when it names none and that file exists).
    pub fn over(&self, settings: &AuthSettings) -> AuthConfig {
        AuthConfig {
            tokens: self.tokens.clone().or_else(|| settings.tokens.clone()),
            jwks: self.jwks.clone().or_else(|| settings.jwks.clone()),
            scopes_claim: (self.scopes_claim.clone())
                .or_else(|| settings.scopes_claim.clone())
                .unwrap_or_else(|| "scope".into()),
            issuer: self.issuer.clone().or_else(|| settings.issuer.clone()),
            audience: self.audience.clone().or_else(|| settings.audience.clone()),
        }
    }
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The chain.
    pub cert: PathBuf,
    /// The key.
    pub key: PathBuf,
}

/// The server did not start, or stopped on an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The repo cannot be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The credentials cannot be loaded.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// `addr` is not `HOST:PORT`.
    #[error("--addr {addr} is not HOST:PORT: {error}")]
    Address {
        /// What was given.
        addr: String,
        /// Why it does not resolve.
        error: std::io::Error,
    },
    /// Serving beyond loopback with no credentials.
    #[error(
        "refusing to serve {addr} without authentication: anyone who can reach it could read every feature and \
         push values into any of them.\n  Make a token: `skewless token add NAME --scopes read` (serve then \
         enforces the repo's tokens.toml; or --tokens / --jwks),\n  or serve 127.0.0.1, or pass \
         --insecure-no-auth if something in front of the server authenticates"
    )]
    Unauthenticated {
        /// The address.
        addr: String,
    },
    /// A sampling share outside 0..=1.
    #[error("{flag} {rate}: a share between 0 and 1 (e.g. 0.1 for one answer in ten)")]
    Share {
        /// The flag.
        flag: &'static str,
        /// What was given.
        rate: f64,
    },
    /// The server's state could not be assembled.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr} (is another server running? choose one with --addr): {error}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// Serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the server says once it listens.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The repo's project.
    pub project: String,
    /// `http://HOST:PORT` or `https://...`.
    pub url: String,
    /// Views served.
    pub views: usize,
    /// Whether requests must carry credentials.
    pub authenticated: bool,
    /// `replica of URL stream S from message N`, when replicated.
    pub replica: Option<String>,
    /// The Kafka sources consumed (`kafka source `x` (topic t at b)`).
    pub consuming: Vec<String>,
    /// From the call to listening.
    pub startup: Duration,
}

/// `PROJECT on URL (N views, AUTH[, replica ...]) after T ms; Ctrl-C to stop`.
impl std::fmt::Display for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} ({} views, {}",
            self.project,
            self.url,
            self.views,
            if self.authenticated { "bearer auth" } else { "no auth" }
        )?;
        if let Some(replica) = &self.replica {
            write!(f, ", {replica}")?;
        }
        for consumed in &self.consuming {
            write!(f, ", consuming {consumed}")?;
        }
        write!(f, ") after {:.0} ms; Ctrl-C to stop", self.startup.as_secs_f64() * 1e3)
    }
}

/// Opens the repo in `dir` and serves it as `config` says until Ctrl-C or
/// SIGTERM; `listening` is called once the socket is bound. Returns after a
/// graceful stop: in-flight requests answered, logs written.
pub fn serve_repo(dir: &Path, config: &ServeConfig, listening: impl FnOnce(&Listening)) -> Result<(), ServeError> {
    let started = Instant::now();
    let workspace = Workspace::open(dir, Views::All)?;
    let auth = Auth::load(&config.auth.over(&workspace.repo().server.auth))?;
    let loopback_only = std::net::ToSocketAddrs::to_socket_addrs(config.addr.as_str())
        .map_err(|error| ServeError::Address {
            addr: config.addr.clone(),
            error,
        })?
        .all(|a| a.ip().is_loopback());
    if !auth.enabled() && !loopback_only && !config.insecure_no_auth {
        return Err(ServeError::Unauthenticated {
            addr: config.addr.clone(),
        });
    }
    let authenticated = auth.enabled();
    let mut settings = MonitorSettings::from(&workspace.repo().monitoring);
    for (flag, rate, setting) in [
        (
            "--log-sample-rate",
            config.log_sample_rate,
            &mut settings.log_sample_rate,
        ),
        (
            "--skew-sample-rate",
            config.skew_sample_rate,
            &mut settings.skew_sample_rate,
        ),
    ] {
        if let Some(rate) = rate {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ServeError::Share { flag, rate });
            }
            *setting = rate;
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let (state, replica) = match &config.replication {
            None => (
                Server::with_monitoring(workspace, config.limits.clone(), auth, &settings)?,
                None,
            ),
            Some(log) => {
                let applied = workspace.store().log_sequence().map_err(StartError::from)?;
                let replica = format!(
                    "replica of {} stream `{}` from message {}",
                    log.url,
                    log.stream,
                    applied + 1
                );
                let state = Server::replicated(workspace, config.limits.clone(), auth, &settings, log.clone()).await?;
                (state, Some(replica))
            }
        };
        let listener = tokio::net::TcpListener::bind(&config.addr)
            .await
            .map_err(|error| ServeError::Listen {
                addr: config.addr.clone(),
                error,
            })?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let consuming = crate::topics::start(&state, state.catalog());
        listening(&Listening {
            project: state.catalog().repo.project.clone(),
            url: format!("{scheme}://{}", listener.local_addr()?),
            views: state.catalog().repo.views.len(),
            authenticated,
            replica,
            consuming,
            startup: started.elapsed(),
        });
        let shutdown = crate::shutdown_signal();
        match &config.tls {
            Some(tls) => crate::serve_tls(listener, state.clone(), &tls.cert, &tls.key, shutdown).await?,
            None => crate::serve(listener, state.clone(), shutdown).await?,
        }
        state.finish_monitoring();
        Ok(())
    })
}

/// Where `skewless token add` records a token: `explicit` (`--file`), else
/// the tokens file of the repo in `dir` (`[server.auth] tokens`, or its
/// `tokens.toml`), else `dir/tokens.toml`. Each is a file the next
/// `skewless serve` of that repo enforces with no further step.
pub fn tokens_file(dir: &Path, explicit: Option<PathBuf>) -> Result<PathBuf, skewless_runtime::RepoError> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let configured = match dir.join("skewless.toml").exists() {
        true => skewless_runtime::Repo::open(dir)?.server.auth.tokens,
        false => None,
    };
    Ok(configured.unwrap_or_else(|| dir.join(skewless_runtime::repo::DEFAULT_TOKENS_FILE)))
}
