//! The command line's arguments (clap): what each command takes, with the
//! help text users read, and how flags become the library's options. No
//! command runs here; `main.rs` dispatches and prints.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indexmap::IndexMap;
use skewless_runtime::apply::AllowBatchDependent;
use skewless_runtime::drift::DriftQuery;
use skewless_runtime::online::AsOf;
use skewless_runtime::stats_report::StatsQuery;
use skewless_runtime::{backfill, dataset, time};
use skewless_server::{AuthOverrides, LogSettings, ServeConfig, ServerLimits, TlsFiles};
use skewless_toolchain as toolchain;

#[derive(Parser)]
#[command(
    name = "skewless",
    version,
    about = "Feature transforms compiled once to WebAssembly, run the same in training and serving"
)]
pub struct Cli {
    /// The feature repo: the folder holding skewless.toml.
    #[arg(long, global = true, default_value = ".")]
    pub repo: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate the repo (config, components, sources) and record it in the store's registry.
    Apply {
        /// Show the plan without recording it.
        #[arg(long)]
        dry_run: bool,
        /// Record these views (comma-separated; all views if none is named) even though their
        /// transform's output for a row depends on the other rows of its batch.
        #[arg(long, value_name = "VIEW", num_args = 0.., value_delimiter = ',')]
        allow_batch_dependent: Option<Vec<String>>,
    },
    /// Run materialized views over their file sources and store every value.
    Backfill {
        /// Only this view (repeatable).
        #[arg(long = "view")]
        views: Vec<String>,
        /// Only rows with event time at or after this (e.g. 2021-04-12 or 2021-04-12T10:00:00Z).
        #[arg(long)]
        start: Option<String>,
        /// Only rows with event time before this.
        #[arg(long)]
        end: Option<String>,
        /// Rows per transaction: the most a crash can lose (the rest is kept; rerun to complete).
        #[arg(long, default_value_t = backfill::DEFAULT_ROWS_PER_COMMIT)]
        rows_per_commit: usize,
        /// Backfill into a new version of the store, built beside the live one (a copy of it plus
        /// this backfill) while servers go on; then `skewless swap NAME` makes a server serve it.
        #[arg(long, value_name = "NAME")]
        new_version: Option<String>,
        /// Only what is new since the last incremental load (what `POST /materialize-incremental`
        /// does): a Delta table's commits after the version last loaded, a file's rows from where
        /// the last one ended up to now.
        #[arg(long, conflicts_with_all = ["start", "end", "new_version"])]
        incremental: bool,
    },
    /// Store a view's values computed elsewhere (by skewless.spark / skewless.ray) as backfill would.
    Import(ImportArgs),
    /// Read features for entities from the store, computing on-demand views.
    Get(GetArgs),
    /// The entities nearest to a query vector by a view's vector feature, exactly, with their
    /// features (what `POST /search` answers).
    Search(SearchArgs),
    /// Point-in-time correct training data: features as of each labelled event of a spine.
    Dataset(DatasetArgs),
    /// Prove online/offline parity: read sampled entities through the server's path and the
    /// dataset's path and compare bit for bit; report stale materializations; probe every
    /// transform for batch invariance and state. Exits non-zero on any difference.
    Verify {
        /// Entities sampled per materialized view.
        #[arg(long, default_value_t = 1_000)]
        samples: usize,
        /// Seed for where the probes split batches (default: a new one each run, printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Show the statistics of a materialized view's features (count, nulls, min, max, mean,
    /// stddev, quantiles, histogram, distinct values, most frequent strings).
    Stats(StatsArgs),
    /// Compare served values (the server's logs) or stored values with a training set, per
    /// feature: PSI, Kolmogorov-Smirnov, null rate. Exits 2 when a threshold of
    /// `[monitoring.drift]` is crossed, so a scheduler can act on it.
    Drift(DriftArgs),
    /// Write a consistent copy of the store (one commit's state) while servers and backfills
    /// carry on: to keep, or to seed another server replica.
    Backup {
        /// The copy to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Serve features over HTTP: Feast's API, on-demand views, push; until Ctrl-C or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Make a running server serve store version NAME (`backfill --new-version NAME`) without
    /// failing a request; with no NAME, reopen its live store (after a disk fault was fixed).
    Swap {
        /// The version; a `retired-...` name undoes an earlier swap.
        version: Option<String>,
        /// The server (plain HTTP; for a TLS server, POST /admin/swap with curl).
        #[arg(long, value_name = "URL", default_value_t = format!("http://{}", skewless_server::DEFAULT_ADDR))]
        server: String,
        /// A bearer token with the admin scope, when the server checks tokens.
        #[arg(long, env = "SKEWLESS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Manage the server's bearer tokens (the tokens file holds their hashes only).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List entities, views, features and services recorded in the registry.
    Ls,
    /// Show one entity, source, view or service.
    Describe {
        /// Its name.
        name: String,
    },
    /// Build a transform project into a WebAssembly component. The language is
    /// told by the entry file: Cargo.toml (Rust; a workspace builds every
    /// crate), transform.py (Python), transform.js (JavaScript), transform.c (C).
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Make a new transform project, which is also a feature repo: then
    /// `skewless build NAME` and `skewless --repo NAME apply`, `backfill`, `get`.
    New {
        /// The language: rust, python, js or c.
        #[arg(long, default_value = "rust")]
        lang: toolchain::Language,
        /// The folder to create; its name names the transform and its view.
        name: PathBuf,
    },
    /// Write an example repo's sample data (driver_stats, fraud, rides, products) into `<repo>/data/`,
    /// ending now. For fraud, `--events` writes that many bursty card transactions instead.
    SampleData {
        /// driver_stats, fraud, rides or products (default: the project of the repo, for the example repos).
        example: Option<String>,
        /// fraud: card transactions to write (e.g. 1000000).
        #[arg(long)]
        events: Option<usize>,
        /// fraud with --events: cards.
        #[arg(long, default_value_t = 10_000)]
        cards: usize,
        /// fraud with --events: days of history.
        #[arg(long, default_value_t = 60)]
        days: i64,
    },
    /// Run the driver_stats example end to end: build, generate data, apply, backfill, read.
    Demo {
        /// The examples folder (holding transforms/ and repos/).
        #[arg(long)]
        examples: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token, record its hash in the tokens file, and print it (once: keep it).
    Add {
        /// A name for who holds it, e.g. `trainer` or `ingest`.
        name: String,
        /// What it grants: read, push, admin (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// The tokens file (default: `[server.auth] tokens` in skewless.toml, else the repo's
        /// tokens.toml, which `skewless serve` then enforces).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// `skewless import`'s arguments.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The materialized view the values belong to.
    #[arg(long)]
    pub view: String,
    /// A Parquet file, or a folder of them (partition folders included).
    #[arg(long = "from")]
    pub from: PathBuf,
    /// Rows per transaction: the most a crash can lose (rerun to complete).
    #[arg(long, default_value_t = backfill::DEFAULT_ROWS_PER_COMMIT)]
    pub rows_per_commit: usize,
}

/// `skewless get`'s arguments.
#[derive(clap::Args)]
pub struct GetArgs {
    /// Entity keys, e.g. driver_id=1001 or driver_id=1001,1002 (repeatable).
    #[arg(long = "entity", required = true)]
    pub entities: Vec<String>,
    /// Features as view:feature or view, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// A feature service.
    #[arg(long)]
    pub service: Option<String>,
    /// Request fields for on-demand views, e.g. val_to_add=10 (repeatable).
    #[arg(long = "request")]
    pub requests: Vec<String>,
    /// Name columns view__feature.
    #[arg(long)]
    pub full_feature_names: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read as of this time (e.g. 2026-11-20T10:00:00Z): the values a model would have been
    /// served then, from the history, TTL counted back from it.
    #[arg(long)]
    pub at: Option<String>,
}

/// `skewless search`'s arguments.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// The view to search.
    pub view: String,
    /// The query vector, as a JSON array: --query '[0.1, 0.2, ...]'.
    #[arg(long, required_unless_present = "like", conflicts_with = "like")]
    pub query: Option<String>,
    /// Search with an entity's own stored vector ("more like this"), e.g. product_id=42.
    #[arg(long, value_name = "KEY=VALUE")]
    pub like: Vec<String>,
    /// The vector feature, when the view has several.
    #[arg(long)]
    pub vector: Option<String>,
    /// How many entities to answer (1 to 1000).
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// cosine, inner_product or L2 (smaller is nearer for all three).
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// The features to show, comma-separated (default: all of the view's).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Print JSON (the shape `POST /search` answers) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `skewless dataset`'s arguments.
#[derive(clap::Args)]
pub struct DatasetArgs {
    /// The spine: Parquet or CSV, one row per labelled event (entity keys, an event time).
    #[arg(long)]
    pub spine: PathBuf,
    /// Features as view:feature or view, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// A feature service.
    #[arg(long)]
    pub service: Option<String>,
    /// The output: .parquet or .csv.
    #[arg(long)]
    pub out: PathBuf,
    /// The spine's event-time column.
    #[arg(long, default_value = "event_timestamp")]
    pub timestamp_column: String,
    /// Name feature columns view__feature.
    #[arg(long)]
    pub full_feature_names: bool,
    /// Join values of one view produced by different transform digests.
    #[arg(long)]
    pub allow_mixed_digests: bool,
    /// Search VIEW (or VIEW:VECTOR) as of each row's time with the row's query vector, and
    /// join the nearest entities as lists (nearest_<key>, nearest_distance).
    #[arg(long, value_name = "VIEW[:VECTOR]")]
    pub nearest: Option<String>,
    /// With --nearest: the spine column holding each row's query vector.
    #[arg(long, default_value = "query", requires = "nearest")]
    pub query_column: String,
    /// With --nearest: entities per row (1 to 1000).
    #[arg(short, long, default_value_t = 10, requires = "nearest")]
    pub k: usize,
    /// With --nearest: cosine, inner_product or L2.
    #[arg(long, default_value = "cosine", requires = "nearest")]
    pub metric: String,
}

/// `skewless stats`'s arguments.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// VIEW or VIEW:FEATURE (one feature in detail); with --rebuild, the view (default: every one).
    #[arg(required_unless_present = "rebuild")]
    pub target: Option<String>,
    /// Recompute the statistics from the stored history and keep them (for a store written
    /// before statistics were kept, with them off, or after a crash).
    #[arg(long, conflicts_with_all = ["from", "to", "json"])]
    pub rebuild: bool,
    /// Only stored rows with event time at or after this (read from the store's history).
    #[arg(long)]
    pub from: Option<String>,
    /// Only stored rows with event time before this.
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `skewless drift`'s arguments.
#[derive(clap::Args)]
pub struct DriftArgs {
    /// The training set (Parquet, as `skewless dataset` writes it).
    #[arg(long, value_name = "TRAINING.parquet")]
    pub baseline: PathBuf,
    /// Only values served at or after this time.
    #[arg(long)]
    pub since: Option<String>,
    /// Compare stored values with event time at or after this instead of served ones.
    #[arg(long)]
    pub from: Option<String>,
    /// Compare stored values with event time before this instead of served ones.
    #[arg(long)]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `skewless serve`'s flags, parsed into the server's one config type.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = skewless_server::DEFAULT_ADDR)]
    pub addr: String,
    #[command(flatten)]
    pub limits: ServeLimits,
    #[command(flatten)]
    pub security: ServeSecurity,
    #[command(flatten)]
    pub monitoring: ServeMonitoring,
    #[command(flatten)]
    pub replication: ServeReplication,
}

impl ServeArgs {
    /// The server's config.
    pub fn config(self) -> ServeConfig {
        let ServeArgs {
            addr,
            limits,
            security,
            monitoring,
            replication,
        } = self;
        ServeConfig {
            addr,
            limits: ServerLimits {
                max_body_bytes: limits.max_body_bytes,
                max_rows: limits.max_rows,
                request_timeout: limits.request_timeout.into(),
                max_in_flight: limits.max_in_flight,
            },
            auth: AuthOverrides {
                tokens: security.tokens,
                jwks: security.jwks,
                scopes_claim: security.jwt_scopes_claim,
                issuer: security.jwt_issuer,
                audience: security.jwt_audience,
            },
            insecure_no_auth: security.insecure_no_auth,
            tls: security
                .tls_cert
                .zip(security.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            log_sample_rate: monitoring.log_sample_rate,
            skew_sample_rate: monitoring.skew_sample_rate,
            replication: replication.log.map(|url| LogSettings {
                url,
                stream: replication.stream,
                ack_on_log: replication.ack_on_log,
                max_lag: replication.max_lag,
            }),
        }
    }
}

/// Who may call the server, and over what.
#[derive(clap::Args)]
pub struct ServeSecurity {
    /// Tokens file of hashes and scopes (default: `[server.auth] tokens` in skewless.toml).
    #[arg(long, env = "SKEWLESS_TOKENS", value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// JWKS file of an identity provider's public keys: accept its RS256/ES256 JWTs.
    #[arg(long, env = "SKEWLESS_JWKS", value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// The JWT claim holding scopes (default `scope`).
    #[arg(long, env = "SKEWLESS_JWT_SCOPES_CLAIM", value_name = "CLAIM")]
    pub jwt_scopes_claim: Option<String>,
    /// Accept only JWTs from this issuer (`iss`).
    #[arg(long, env = "SKEWLESS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accept only JWTs for this audience (`aud`).
    #[arg(long, env = "SKEWLESS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Serve an address other than loopback with no authentication configured.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// What the server samples of its answers (over `[monitoring]`).
#[derive(clap::Args)]
pub struct ServeMonitoring {
    /// Share of answers logged to Parquet in `[monitoring] log_folder` (0: none; default 0.1).
    #[arg(long, value_name = "SHARE")]
    pub log_sample_rate: Option<f64>,
    /// Share of answers the skew monitor reads again through the offline path (0: none; default 0.01).
    #[arg(long, value_name = "SHARE")]
    pub skew_sample_rate: Option<f64>,
}

/// Replicated serving: many servers fed by one NATS JetStream stream.
#[derive(clap::Args)]
pub struct ServeReplication {
    /// Publish pushes to this NATS JetStream log (nats://HOST:PORT) and apply
    /// the log, in order, to this server's store; start every replica with it.
    #[arg(long, value_name = "URL")]
    pub log: Option<String>,
    /// The JetStream stream (created if missing, on subject STREAM.push).
    #[arg(long, default_value = "skewless", requires = "log")]
    pub stream: String,
    /// Answer a push once the log stored it, not once this replica applied it.
    #[arg(long, requires = "log")]
    pub ack_on_log: bool,
    /// /health is ready while at most this many log messages are not applied yet.
    #[arg(long, default_value_t = 100, requires = "log")]
    pub max_lag: u64,
}

/// What one request may ask of the server.
#[derive(clap::Args)]
pub struct ServeLimits {
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = ServerLimits::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// Most entity rows per read, or rows per push.
    #[arg(long, default_value_t = ServerLimits::default().max_rows)]
    pub max_rows: usize,
    /// Time limit per request, transform calls included (e.g. 500ms, 2s).
    #[arg(long, default_value_t = ServerLimits::default().request_timeout.into())]
    pub request_timeout: humantime::Duration,
    /// Requests worked on at once; more are answered 503 `overloaded` with Retry-After.
    #[arg(long, default_value_t = ServerLimits::default().max_in_flight,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_in_flight: usize,
}

/// A time flag's value (`2021-04-12`, `2021-04-12T10:00:00Z`), or an error naming the flag.
pub fn timestamp(flag: &str, text: Option<&str>) -> Result<Option<i64>> {
    text.map(time::parse_timestamp)
        .transpose()
        .map_err(anyhow::Error::msg)
        .with_context(|| flag.to_string())
}

/// `backfill`'s flags as the library's options.
pub fn backfill_options(
    views: Vec<String>,
    start: Option<&str>,
    end: Option<&str>,
    rows_per_commit: usize,
) -> Result<backfill::BackfillOptions> {
    Ok(backfill::BackfillOptions {
        views,
        start: timestamp("--start", start)?,
        end: timestamp("--end", end)?,
        rows_per_commit: rows_per_commit.max(1),
        since: None,
    })
}

/// `--allow-batch-dependent [VIEW,...]`: absent, every view (no name), or these.
pub fn allow_batch_dependent(views: Option<Vec<String>>) -> AllowBatchDependent {
    match views {
        None => AllowBatchDependent::None,
        Some(views) if views.is_empty() => AllowBatchDependent::All,
        Some(views) => AllowBatchDependent::Views(views),
    }
}

/// `key=v1,v2` arguments as ordered columns of text values.
pub fn pairs(args: &[String], flag: &str) -> Result<IndexMap<String, Vec<String>>> {
    let mut out: IndexMap<String, Vec<String>> = IndexMap::new();
    for arg in args {
        let Some((key, values)) = arg.split_once('=') else {
            bail!("{flag} {arg}: expected NAME=VALUE[,VALUE...]");
        };
        out.entry(key.trim().to_string())
            .or_default()
            .extend(values.split(',').map(|v| v.trim().to_string()));
    }
    Ok(out)
}

impl ImportArgs {
    /// The library's options.
    pub fn options(self) -> backfill::ImportOptions {
        backfill::ImportOptions {
            view: self.view,
            from: self.from,
            rows_per_commit: self.rows_per_commit.max(1),
        }
    }
}

impl GetArgs {
    /// The read `--at` asks for.
    pub fn as_of(&self) -> Result<AsOf> {
        Ok(match timestamp("--at", self.at.as_deref())? {
            None => AsOf::Latest,
            Some(at) => AsOf::At(at),
        })
    }
}

impl DatasetArgs {
    /// The library's options; what to join must be named.
    pub fn options(self) -> Result<dataset::DatasetOptions> {
        if self.features.is_empty() && self.service.is_none() && self.nearest.is_none() {
            bail!("say which features to join: --features view:feature,..., --service NAME or --nearest VIEW");
        }
        let nearest = match &self.nearest {
            None => None,
            Some(target) => {
                let (view, vector) = match target.split_once(':') {
                    Some((view, vector)) => (view.to_string(), Some(vector.to_string())),
                    None => (target.clone(), None),
                };
                Some(dataset::NearestOptions {
                    view,
                    vector,
                    k: self.k,
                    metric: skewless_runtime::search::Metric::parse(&self.metric).map_err(anyhow::Error::msg)?,
                    query_column: self.query_column,
                })
            }
        };
        Ok(dataset::DatasetOptions {
            spine: self.spine,
            out: self.out,
            join: dataset::JoinOptions {
                features: self.features,
                service: self.service,
                timestamp_column: self.timestamp_column,
                full_feature_names: self.full_feature_names,
                allow_mixed_digests: self.allow_mixed_digests,
                nearest,
            },
        })
    }
}

impl StatsArgs {
    /// The library's query.
    pub fn query(&self) -> Result<StatsQuery> {
        Ok(StatsQuery {
            from: timestamp("--from", self.from.as_deref())?,
            to: timestamp("--to", self.to.as_deref())?,
            ..StatsQuery::parse_target(self.target.as_deref().unwrap_or_default())
        })
    }
}

impl DriftArgs {
    /// The library's query.
    pub fn query(&self) -> Result<DriftQuery> {
        Ok(DriftQuery {
            baseline: self.baseline.clone(),
            since: timestamp("--since", self.since.as_deref())?,
            from: timestamp("--from", self.from.as_deref())?,
            to: timestamp("--to", self.to.as_deref())?,
        })
    }
}
