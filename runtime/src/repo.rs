//! The feature repo: one declarative `skewless.toml`, parsed and validated
//! in one place for every command.
//!
//! ```toml
//! project = "driver_stats"
//!
//! [entities.driver]
//! join_keys = { driver_id = "int64" }
//!
//! [sources.driver_stats_source]
//! type = "file"                       # file | request | push
//! path = "data/driver_stats.parquet"  # relative to this file; .parquet or .csv
//! timestamp_column = "event_timestamp"
//! created_column = "created"
//! event_id_column = "transaction_id"  # optional: identifies events (aggregation views)
//!
//! [sources.vals_to_add]
//! type = "request"
//! schema = { val_to_add = "int64" }
//!
//! [views.driver_hourly_stats]          # kind = "materialized" is the default
//! entities = ["driver"]
//! source = "driver_stats_source"
//! transform = "transforms/driver_hourly_stats.wasm"
//! ttl = "1d"
//! features = { conv_rate = "float32" } # optional: which outputs to store, with types
//! limits = { timeout_ms = 5000, memory_mib = 512 }
//! determinism = "strict"              # optional; also at the top, for every view
//!
//! [views.transformed_conv_rate]
//! kind = "on_demand"
//! sources = ["driver_hourly_stats", "vals_to_add"]
//! transform = "transforms/transformed_conv_rate.wasm"
//!
//! [services.driver_activity]
//! features = ["driver_hourly_stats:conv_rate", "transformed_conv_rate"]
//! ```
//!
//! Every error names the file, the line and the key concerned. Paths are
//! relative to the file. What can only be checked against the components
//! (their `describe`) is checked by [`crate::Catalog`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::determinism::Determinism;
use crate::file_format::{
    FileFormat, KafkaSasl, KafkaTopic, PostgresTable, RecordFormat, Relation, SaslMechanism, TableVersion,
};
use crate::limits::{Limits, PoolSettings};
use crate::types::{FeatureType, FieldSpec};

/// The config file's name inside a repo.
pub const CONFIG_FILE: &str = "skewless.toml";

/// Where the store lives unless `store` says otherwise (relative to the repo).
pub const DEFAULT_STORE: &str = ".skewless/store.redb";

/// The environment variable that names the store file instead of the
/// repo's `store` (or [`DEFAULT_STORE`]).
pub const STORE_VARIABLE: &str = "SKEWLESS_STORE";

/// A repo that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The config file could not be read.
    #[error("cannot read {}: {error}. Is --repo the folder that holds skewless.toml?", path.display())]
    Read {
        /// Config path.
        path: PathBuf,
        /// I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML, or a key or value is not what the format allows.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// Config path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's message, with the offending snippet.
        message: String,
    },
    /// The file parses but says something inconsistent.
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Invalid {
        /// Config path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Dotted key, e.g. `views.driver_hourly_stats.source`.
        key: String,
        /// What is wrong and, where possible, what would be right.
        message: String,
    },
    /// A view's component could not be loaded (missing, not a component,
    /// built for another contract version, or its `describe` failed).
    #[error("{}:{line}: `{key}`: {error}", path.display())]
    Component {
        /// Config path.
        path: PathBuf,
        /// 1-based line of the view.
        line: usize,
        /// Dotted key, e.g. `views.driver_hourly_stats.transform`.
        key: String,
        /// Why it could not be loaded; match on it to tell the cases apart.
        #[source]
        error: Box<crate::error::LoadError>,
    },
}

// ---------------------------------------------------------------------------
// The file as written (serde), with spans for error locations.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    project: String,
    store: Option<String>,
    /// The default for every view.
    #[serde(default)]
    determinism: Determinism,
    #[serde(default)]
    entities: IndexMap<String, Spanned<RawEntity>>,
    #[serde(default)]
    sources: IndexMap<String, Spanned<RawSource>>,
    #[serde(default)]
    views: IndexMap<String, Spanned<RawView>>,
    #[serde(default)]
    services: IndexMap<String, Spanned<RawService>>,
    #[serde(default)]
    server: ServerSettings,
    monitoring: Option<Spanned<MonitoringSettings>>,
    runtime: Option<Spanned<PoolSettings>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    join_keys: Spanned<IndexMap<String, FeatureType>>,
    #[serde(default)]
    description: String,
}

/// One struct for every source type (an internally tagged enum would lose
/// the spans that locate errors); which fields a type takes is checked below.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    timestamp_column: Option<String>,
    created_column: Option<String>,
    event_id_column: Option<String>,
    schema: Option<IndexMap<String, FeatureType>>,
    batch_source: Option<Spanned<String>>,
    /// Delta: the table version to read.
    version: Option<Spanned<u64>>,
    /// Delta: read the version as of this time.
    timestamp: Option<Spanned<String>>,
    /// PostgreSQL: a table, or a query.
    table: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    /// PostgreSQL: the environment variable with the connection URL.
    connection_env: Option<String>,
    /// PostgreSQL: the increasing column incremental loads go by.
    watermark_column: Option<String>,
    /// Kafka: bootstrap brokers, the topic, the partitions to consume.
    brokers: Option<Spanned<Vec<String>>>,
    topic: Option<Spanned<String>>,
    partitions: Option<Spanned<Vec<i32>>>,
    /// Kafka: how a record's value is decoded (`json`).
    format: Option<Spanned<String>>,
    /// Kafka: SASL mechanism, and the environment variables with the user
    /// name and password.
    sasl_mechanism: Option<Spanned<String>>,
    username_env: Option<String>,
    password_env: Option<String>,
    /// Kafka: connect over TLS, trusting `ca_file` (else the system's roots).
    tls: Option<bool>,
    ca_file: Option<String>,
    #[serde(default)]
    description: String,
}

/// The settings of a `type = "kafka"` source; an error says where, the
/// key and what is wrong.
fn kafka_topic(raw: &RawSource, kind_at: usize, root: &Path) -> Result<KafkaTopic, (usize, &'static str, String)> {
    let brokers = raw.brokers.as_ref().filter(|b| !b.get_ref().is_empty()).ok_or((
        kind_at,
        "brokers",
        "a kafka source needs `brokers`, e.g. [\"localhost:9092\"]".to_string(),
    ))?;
    if let Some(bad) = brokers
        .get_ref()
        .iter()
        .find(|b| b.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()))
    {
        return Err((brokers.span().start, "brokers", format!("`{bad}` is not HOST:PORT")));
    }
    let topic = raw.topic.as_ref().filter(|t| !t.get_ref().is_empty()).ok_or((
        kind_at,
        "topic",
        "a kafka source needs a `topic`".to_string(),
    ))?;
    let partitions = match &raw.partitions {
        Some(list) if list.get_ref().is_empty() || list.get_ref().iter().any(|p| *p < 0) => {
            return Err((
                list.span().start,
                "partitions",
                "partitions are a non-empty list of numbers from 0; leave `partitions` out to consume them all".into(),
            ));
        }
        Some(list) => Some(list.get_ref().clone()),
        None => None,
    };
    let format = match raw.format.as_ref().map(|f| (f.span().start, f.get_ref().as_str())) {
        None | Some((_, "json")) => RecordFormat::Json,
        Some((at, other)) => {
            return Err((
                at,
                "format",
                format!("unknown record format `{other}` (use json: one JSON object per record)"),
            ));
        }
    };
    let sasl = match &raw.sasl_mechanism {
        None => {
            if raw.username_env.is_some() || raw.password_env.is_some() {
                return Err((
                    kind_at,
                    "sasl_mechanism",
                    "`username_env` and `password_env` need a `sasl_mechanism` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
                        .into(),
                ));
            }
            None
        }
        Some(mechanism) => {
            let at = mechanism.span().start;
            let mechanism = match mechanism.get_ref().to_ascii_uppercase().as_str() {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                other => {
                    return Err((
                        at,
                        "sasl_mechanism",
                        format!("unknown SASL mechanism `{other}` (use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"),
                    ));
                }
            };
            KafkaSasl {
                mechanism,
                username_env: raw.username_env.clone().unwrap_or_else(|| "KAFKA_USERNAME".into()),
                password_env: raw.password_env.clone().unwrap_or_else(|| "KAFKA_PASSWORD".into()),
            }
            .into()
        }
    };
    Ok(KafkaTopic {
        brokers: brokers.get_ref().clone(),
        topic: topic.get_ref().clone(),
        partitions,
        format,
        sasl,
        tls: raw.tls.unwrap_or(false) || raw.ca_file.is_some(),
        ca_file: raw.ca_file.as_ref().map(|f| root.join(f)),
    })
}

fn default_timestamp_column() -> String {
    "event_timestamp".to_string()
}

#[derive(Deserialize, Default, PartialEq, Eq, Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    #[default]
    Materialized,
    OnDemand,
    Aggregation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    #[serde(default)]
    kind: RawKind,
    entities: Option<Spanned<Vec<String>>>,
    source: Option<Spanned<String>>,
    sources: Option<Spanned<Vec<String>>>,
    transform: Option<Spanned<String>>,
    aggregations: Option<Spanned<Vec<Spanned<RawAggregation>>>>,
    /// Types of event columns an aggregation view reads without a transform.
    inputs: Option<IndexMap<String, FeatureType>>,
    ttl: Option<Spanned<String>>,
    #[serde(default = "yes")]
    online: bool,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    features: Option<Spanned<IndexMap<String, FeatureType>>>,
    #[serde(default)]
    limits: Limits,
    determinism: Option<Determinism>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregation {
    name: String,
    function: String,
    input: Option<String>,
    window: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    features: Spanned<Vec<String>>,
    #[serde(default)]
    description: String,
}

// ---------------------------------------------------------------------------
// The validated model.

/// A parsed, validated feature repo.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The folder holding `skewless.toml`.
    pub root: PathBuf,
    /// Path of the config file.
    pub config_path: PathBuf,
    /// Project name.
    pub project: String,
    /// The redb store file: `SKEWLESS_STORE`, else `store`, else
    /// [`DEFAULT_STORE`], under the repo's root.
    pub store_path: PathBuf,
    /// Entities by name, in file order.
    pub entities: IndexMap<String, Entity>,
    /// Sources by name, in file order.
    pub sources: IndexMap<String, Source>,
    /// Feature views by name, in file order.
    pub views: IndexMap<String, View>,
    /// Feature services by name, in file order.
    pub services: IndexMap<String, Service>,
    /// `[server]`: settings of `skewless serve` (paths made absolute).
    pub server: ServerSettings,
    /// `[monitoring]`: served-value logs, the skew monitor, drift thresholds.
    pub monitoring: MonitoringSettings,
    /// `[runtime]`: the memory the instance pool keeps between calls.
    pub runtime: PoolSettings,
}

/// `[server]` in `skewless.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `[server.auth]`.
    #[serde(default)]
    pub auth: AuthSettings,
}

/// `[monitoring]` in `skewless.toml`: what the server samples, and when
/// `skewless drift` fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringSettings {
    /// Whether writes keep each view's feature statistics (`skewless stats`).
    pub statistics: bool,
    /// The share of answers logged to Parquet (0 turns logging off).
    pub log_sample_rate: f64,
    /// The folder of served-value logs, relative to the repo.
    pub log_folder: PathBuf,
    /// The most the logs may take, in megabytes: the oldest files go first.
    pub log_max_megabytes: u64,
    /// The share of answers the skew monitor reads again through the
    /// offline path (0 turns it off).
    pub skew_sample_rate: f64,
    /// `[monitoring.drift]`: thresholds.
    pub drift: DriftThresholds,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        MonitoringSettings {
            statistics: true,
            log_sample_rate: 0.1,
            log_folder: PathBuf::from("logs/served"),
            log_max_megabytes: 512,
            skew_sample_rate: 0.01,
            drift: DriftThresholds::default(),
        }
    }
}

/// `[monitoring.drift]`: when `skewless drift` reports a feature as drifted.
/// `[monitoring.drift.features."VIEW:FEATURE"]` overrides any of them for
/// one feature.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftThresholds {
    /// Population stability index of numbers (10 bins on the baseline's
    /// deciles) and of strings (by value): 0.1 is a change to look at,
    /// 0.2 a significant one (the usual reading).
    pub psi: f64,
    /// Kolmogorov-Smirnov distance between the two distributions of numbers.
    pub ks: f64,
    /// Change in the share of nulls, absolute.
    pub null_rate: f64,
    /// Per feature overrides, by `VIEW:FEATURE`.
    pub features: IndexMap<String, DriftOverride>,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        DriftThresholds {
            psi: 0.2,
            ks: 0.2,
            null_rate: 0.05,
            features: IndexMap::new(),
        }
    }
}

/// One feature's thresholds, where they differ from `[monitoring.drift]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftOverride {
    /// See [`DriftThresholds::psi`].
    pub psi: Option<f64>,
    /// See [`DriftThresholds::ks`].
    pub ks: Option<f64>,
    /// See [`DriftThresholds::null_rate`].
    pub null_rate: Option<f64>,
}

impl DriftThresholds {
    /// The thresholds of `view:feature`: `(psi, ks, null_rate)`.
    pub fn of(&self, view: &str, feature: &str) -> (f64, f64, f64) {
        let own = self.features.get(&format!("{view}:{feature}"));
        let own = own.cloned().unwrap_or_default();
        (
            own.psi.unwrap_or(self.psi),
            own.ks.unwrap_or(self.ks),
            own.null_rate.unwrap_or(self.null_rate),
        )
    }
}

/// The tokens file of a repo whose `[server.auth]` names none: `skewless
/// token add` writes it, and once it exists `skewless serve` enforces it.
/// A token a user made is never silently ignored.
pub const DEFAULT_TOKENS_FILE: &str = "tokens.toml";

/// `[server.auth]`: who may call the server. `skewless serve --tokens/--jwks`
/// and their environment variables override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Tokens file (hashes and scopes), made by `skewless token add`.
    pub tokens: Option<PathBuf>,
    /// JWKS file of an identity provider's public keys, for JWTs.
    pub jwks: Option<PathBuf>,
    /// The JWT claim holding scopes (default `scope`).
    pub scopes_claim: Option<String>,
    /// Required JWT issuer (`iss`).
    pub issuer: Option<String>,
    /// Required JWT audience (`aud`).
    pub audience: Option<String>,
}

/// What features describe, with typed join keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Entity name.
    pub name: String,
    /// Join keys in order: int64 or utf8.
    pub join_keys: Vec<FieldSpec>,
    /// Free text.
    pub description: String,
}

/// Where raw data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Source name.
    pub name: String,
    /// What kind of source, with its settings.
    pub kind: SourceKind,
    /// Free text.
    pub description: String,
}

/// A Parquet or CSV file, or a Delta Lake table, of historical rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSource {
    /// Absolute path (a Delta table's folder).
    pub path: PathBuf,
    /// Parquet or CSV.
    pub format: FileFormat,
    /// Column with each row's event time.
    pub timestamp_column: String,
    /// Column with each row's creation time (tie-break), if any.
    pub created_column: Option<String>,
    /// Column identifying each event, for aggregation views: a row whose
    /// (entity, id) is already stored replaces it, so retried pushes and
    /// reruns are idempotent (`AGGREGATIONS.md`).
    #[serde(default)]
    pub event_id_column: Option<String>,
    /// A PostgreSQL source's table or query and connection (its `path` is
    /// then a label for messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresTable>,
}

impl FileSource {
    /// Whether its rows can be read now: the file or table is there (a
    /// database is asked when it is read).
    pub fn present(&self) -> bool {
        match self.format {
            FileFormat::Postgres => true,
            FileFormat::Parquet | FileFormat::Csv | FileFormat::Delta(_) => self.path.exists(),
        }
    }
}

/// The kinds of source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    /// A Parquet or CSV file, or a Delta Lake table, of historical rows.
    File(FileSource),
    /// Fields that arrive with an online request.
    Request {
        /// The fields and their types.
        schema: Vec<FieldSpec>,
    },
    /// Rows pushed to the server, or consumed from a Kafka topic;
    /// backfilled from `batch_source`.
    Push {
        /// The file source that holds the same rows historically.
        batch_source: String,
        /// The Kafka topic `skewless serve` consumes into the source
        /// (`type = "kafka"`); none for a push source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<KafkaTopic>,
    },
}

/// Whether a view stores values or computes them at read time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ViewKind {
    /// Runs over source rows at backfill or push time; values are stored.
    Materialized {
        /// Entities, whose join keys identify a row.
        entities: Vec<String>,
        /// The file or push source.
        source: String,
    },
    /// Runs at read time over other views' features and request fields.
    OnDemand {
        /// Materialized views and request sources it reads.
        sources: Vec<String>,
    },
    /// Windowed aggregations over the events of a file or push source
    /// ([`crate::aggregate`]); events and tiles are stored.
    Aggregation {
        /// Entities, whose join keys identify an event's group.
        entities: Vec<String>,
        /// The file or push source of events.
        source: String,
        /// The aggregations, one feature each.
        aggregations: Vec<crate::aggregate::AggregationSpec>,
        /// Declared types of event columns (for CSV sources without a transform).
        inputs: Vec<FieldSpec>,
    },
}

/// A named set of features for one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// View name.
    pub name: String,
    /// Materialized or on-demand, with inputs.
    pub kind: ViewKind,
    /// Absolute path of the component (optional for aggregation views:
    /// their row transform).
    pub transform: Option<PathBuf>,
    /// Values older than this (relative to the time asked about) are not served.
    #[serde(with = "duration_secs")]
    pub ttl: Option<Duration>,
    /// Whether the view is served online.
    pub online: bool,
    /// Owner, e.g. an email.
    pub owner: String,
    /// Free text.
    pub description: String,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// Outputs to store and serve, with types; `None`: every output.
    pub features: Option<Vec<FieldSpec>>,
    /// Per-call limits.
    pub limits: Limits,
    /// How the component is compiled (the view's, else the repo's setting).
    #[serde(default)]
    pub determinism: Determinism,
    /// Line of the view in the config, for later errors.
    #[serde(skip)]
    pub line: usize,
}

impl View {
    /// Whether values are stored (materialized, or aggregated from stored
    /// events) rather than computed at read time.
    pub fn is_materialized(&self) -> bool {
        !matches!(self.kind, ViewKind::OnDemand { .. })
    }

    /// Whether this is an aggregation view.
    pub fn is_aggregation(&self) -> bool {
        matches!(self.kind, ViewKind::Aggregation { .. })
    }

    /// The source of a stored view (materialized or aggregation).
    pub fn source(&self) -> Option<&str> {
        match &self.kind {
            ViewKind::Materialized { source, .. } | ViewKind::Aggregation { source, .. } => Some(source),
            ViewKind::OnDemand { .. } => None,
        }
    }

    /// The entities of a stored view.
    pub fn entities(&self) -> &[String] {
        match &self.kind {
            ViewKind::Materialized { entities, .. } | ViewKind::Aggregation { entities, .. } => entities,
            ViewKind::OnDemand { .. } => &[],
        }
    }
}

mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// A reference to one feature (`view:feature`) or a whole view (`view`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeatureRef {
    /// View name.
    pub view: String,
    /// Feature name; `None` for every feature of the view.
    pub feature: Option<String>,
}

impl FeatureRef {
    /// Parses `view:feature` or `view`.
    pub fn parse(text: &str) -> Option<FeatureRef> {
        let (view, feature) = match text.split_once(':') {
            Some((v, f)) => (v, Some(f.to_string())),
            None => (text, None),
        };
        if view.is_empty() || feature.as_deref() == Some("") {
            return None;
        }
        Some(FeatureRef {
            view: view.to_string(),
            feature,
        })
    }
}

impl std::fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.feature {
            Some(feature) => write!(f, "{}:{feature}", self.view),
            None => f.write_str(&self.view),
        }
    }
}

/// A named list of features: the set one model uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Feature references.
    pub features: Vec<FeatureRef>,
    /// Free text.
    pub description: String,
    /// Line in the config.
    #[serde(skip)]
    pub line: usize,
}

impl Repo {
    /// Reads and validates `DIR/skewless.toml`.
    pub fn open(dir: &Path) -> Result<Repo, RepoError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|source| RepoError::Read {
            path: config_path.clone(),
            error: source,
        })?;
        Repo::parse(dir, &config_path, &text)
    }

    /// Validates config text (`path` is for messages, `dir` for relative paths).
    pub fn parse(dir: &Path, path: &Path, text: &str) -> Result<Repo, RepoError> {
        let raw: RawRepo = toml::from_str(text).map_err(|e| RepoError::Syntax {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().to_string(),
        })?;
        let root = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let invalid = |start: usize, key: String, message: String| RepoError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, start),
            key,
            message,
        };

        let check_name = |kind: &str, name: &str, start: usize| -> Result<(), RepoError> {
            let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if ok {
                Ok(())
            } else {
                Err(invalid(
                    start,
                    format!("{kind}.{name}"),
                    "names may hold only ASCII letters, digits, `_` and `-`".into(),
                ))
            }
        };

        let mut entities = IndexMap::new();
        for (name, spanned) in &raw.entities {
            let start = spanned.span().start;
            check_name("entities", name, start)?;
            let entity = spanned.get_ref();
            let keys = entity.join_keys.get_ref();
            if keys.is_empty() {
                return Err(invalid(
                    start,
                    format!("entities.{name}.join_keys"),
                    "an entity needs at least one join key".into(),
                ));
            }
            let mut join_keys = Vec::new();
            for (key, ty) in keys {
                if !matches!(ty, FeatureType::Int64 | FeatureType::Utf8) {
                    return Err(invalid(
                        entity.join_keys.span().start,
                        format!("entities.{name}.join_keys.{key}"),
                        format!("join keys are int64 or utf8, not {ty}"),
                    ));
                }
                join_keys.push(FieldSpec {
                    name: key.clone(),
                    data_type: *ty,
                    nullable: false,
                });
            }
            entities.insert(
                name.clone(),
                Entity {
                    name: name.clone(),
                    join_keys,
                    description: entity.description.clone(),
                },
            );
        }

        let mut sources = IndexMap::new();
        for (name, spanned) in &raw.sources {
            let start = spanned.span().start;
            check_name("sources", name, start)?;
            let raw_source = spanned.get_ref();
            let key = |field: &str| format!("sources.{name}.{field}");
            let kind_at = raw_source.kind.span().start;
            let only = |allowed: &[&str]| -> Result<(), RepoError> {
                let given = [
                    ("path", raw_source.path.is_some()),
                    ("timestamp_column", raw_source.timestamp_column.is_some()),
                    ("created_column", raw_source.created_column.is_some()),
                    ("event_id_column", raw_source.event_id_column.is_some()),
                    ("schema", raw_source.schema.is_some()),
                    ("batch_source", raw_source.batch_source.is_some()),
                    ("version", raw_source.version.is_some()),
                    ("timestamp", raw_source.timestamp.is_some()),
                    ("table", raw_source.table.is_some()),
                    ("query", raw_source.query.is_some()),
                    ("connection_env", raw_source.connection_env.is_some()),
                    ("watermark_column", raw_source.watermark_column.is_some()),
                    ("brokers", raw_source.brokers.is_some()),
                    ("topic", raw_source.topic.is_some()),
                    ("partitions", raw_source.partitions.is_some()),
                    ("format", raw_source.format.is_some()),
                    ("sasl_mechanism", raw_source.sasl_mechanism.is_some()),
                    ("username_env", raw_source.username_env.is_some()),
                    ("password_env", raw_source.password_env.is_some()),
                    ("tls", raw_source.tls.is_some()),
                    ("ca_file", raw_source.ca_file.is_some()),
                ];
                match given.iter().find(|(field, set)| *set && !allowed.contains(field)) {
                    Some((field, _)) => Err(invalid(
                        kind_at,
                        key(field),
                        format!("a `{}` source does not take `{field}`", raw_source.kind.get_ref()),
                    )),
                    None => Ok(()),
                }
            };
            // A source of historical rows: a file, a Delta table or a PostgreSQL relation.
            let file_source = |path: PathBuf, format: FileFormat, postgres: Option<PostgresTable>| {
                SourceKind::File(FileSource {
                    path,
                    format,
                    timestamp_column: (raw_source.timestamp_column.clone()).unwrap_or_else(default_timestamp_column),
                    created_column: raw_source.created_column.clone(),
                    event_id_column: raw_source.event_id_column.clone(),
                    postgres,
                })
            };
            let kind = match raw_source.kind.get_ref().as_str() {
                kind @ ("file" | "delta") => {
                    let delta = kind == "delta";
                    let mut allowed = vec!["path", "timestamp_column", "created_column", "event_id_column"];
                    if delta {
                        allowed.extend(["version", "timestamp"]);
                    }
                    only(&allowed)?;
                    let file = raw_source.path.as_ref().ok_or_else(|| {
                        let example = if delta {
                            "a table's folder"
                        } else {
                            "a .parquet or .csv file"
                        };
                        invalid(
                            kind_at,
                            key("path"),
                            format!("a {kind} source needs a `path` ({example})"),
                        )
                    })?;
                    let relative = file.get_ref();
                    let format = if delta {
                        let version = match (&raw_source.version, &raw_source.timestamp) {
                            (Some(_), Some(time)) => {
                                return Err(invalid(
                                    time.span().start,
                                    key("timestamp"),
                                    "give `version` or `timestamp`, not both".into(),
                                ));
                            }
                            (Some(version), None) => Some(TableVersion::Version(*version.get_ref())),
                            (None, Some(time)) => Some(TableVersion::AsOf(
                                crate::time::parse_timestamp(time.get_ref())
                                    .map_err(|e| invalid(time.span().start, key("timestamp"), e.to_string()))?,
                            )),
                            (None, None) => None,
                        };
                        FileFormat::Delta(version)
                    } else {
                        match FileFormat::of(Path::new(relative)) {
                            Some(format) => format,
                            None => {
                                return Err(invalid(
                                    file.span().start,
                                    key("path"),
                                    format!(
                                        "`{relative}` is neither .parquet nor .csv (a Delta table is `type = \"delta\"`)"
                                    ),
                                ));
                            }
                        }
                    };
                    file_source(root.join(relative), format, None)
                }
                "postgres" => {
                    only(&[
                        "table",
                        "query",
                        "connection_env",
                        "watermark_column",
                        "timestamp_column",
                        "created_column",
                        "event_id_column",
                    ])?;
                    let relation = match (&raw_source.table, &raw_source.query) {
                        (Some(table), None) => Relation::Table(table.get_ref().clone()),
                        (None, Some(query)) => Relation::Query(query.get_ref().clone()),
                        (Some(_), Some(query)) => {
                            return Err(invalid(
                                query.span().start,
                                key("query"),
                                "give `table` or `query`, not both".into(),
                            ));
                        }
                        (None, None) => {
                            return Err(invalid(
                                kind_at,
                                key("table"),
                                "a postgres source needs a `table` (schema.table) or a `query` (SELECT ...)".into(),
                            ));
                        }
                    };
                    let label = format!("postgres source `{name}` ({relation})");
                    let table = PostgresTable {
                        relation,
                        connection_env: (raw_source.connection_env.clone())
                            .unwrap_or_else(|| "DATABASE_URL".to_string()),
                        watermark_column: raw_source.watermark_column.clone(),
                    };
                    file_source(PathBuf::from(label), FileFormat::Postgres, Some(table))
                }
                "request" => {
                    only(&["schema"])?;
                    let schema = raw_source
                        .schema
                        .as_ref()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            invalid(
                                kind_at,
                                key("schema"),
                                "a request source needs a `schema`, e.g. { val_to_add = \"int64\" }".into(),
                            )
                        })?
                        .iter()
                        .map(|(n, t)| FieldSpec {
                            name: n.clone(),
                            data_type: *t,
                            nullable: true,
                        })
                        .collect();
                    SourceKind::Request { schema }
                }
                kind @ ("push" | "kafka") => {
                    let kafka = kind == "kafka";
                    let mut allowed = vec!["batch_source"];
                    if kafka {
                        allowed.extend([
                            "brokers",
                            "topic",
                            "partitions",
                            "format",
                            "sasl_mechanism",
                            "username_env",
                            "password_env",
                            "tls",
                            "ca_file",
                        ]);
                    }
                    only(&allowed)?;
                    let batch_source = raw_source.batch_source.as_ref().ok_or_else(|| {
                        invalid(
                            kind_at,
                            key("batch_source"),
                            format!("a {kind} source needs a `batch_source` (a file, delta or postgres source with the same columns)"),
                        )
                    })?;
                    let target = batch_source.get_ref();
                    if raw
                        .sources
                        .get(target)
                        .is_none_or(|s| !["file", "delta", "postgres"].contains(&s.get_ref().kind.get_ref().as_str()))
                    {
                        return Err(invalid(
                            batch_source.span().start,
                            key("batch_source"),
                            format!("`{target}` is not a file, delta or postgres source of this repo"),
                        ));
                    }
                    let topic = if kafka {
                        let topic = kafka_topic(raw_source, kind_at, &root)
                            .map_err(|(at, field, message)| invalid(at, key(field), message))?;
                        Some(topic)
                    } else {
                        None
                    };
                    SourceKind::Push {
                        batch_source: target.clone(),
                        topic,
                    }
                }
                other => {
                    return Err(invalid(
                        kind_at,
                        key("type"),
                        format!("unknown source type `{other}` (use file, delta, postgres, request, push or kafka)"),
                    ));
                }
            };
            let description = raw_source.description.clone();
            sources.insert(
                name.clone(),
                Source {
                    name: name.clone(),
                    kind,
                    description,
                },
            );
        }

        let mut views: IndexMap<String, View> = IndexMap::new();
        for (name, spanned) in &raw.views {
            let start = spanned.span().start;
            check_name("views", name, start)?;
            if sources.contains_key(name) {
                return Err(invalid(
                    start,
                    format!("views.{name}"),
                    "a source has the same name; rename one".into(),
                ));
            }
            let view = spanned.get_ref();
            let key = |field: &str| format!("views.{name}.{field}");
            let listed = |list: &Option<Spanned<Vec<String>>>| -> (Vec<String>, usize) {
                list.as_ref()
                    .map_or((Vec::new(), start), |l| (l.get_ref().clone(), l.span().start))
            };
            let (view_entities, entities_at) = listed(&view.entities);
            let (view_sources, sources_at) = listed(&view.sources);
            let kind = match view.kind {
                RawKind::Materialized | RawKind::Aggregation => {
                    let Some(source) = &view.source else {
                        return Err(invalid(
                            start,
                            key("source"),
                            "a materialized view needs a `source` (a file or push source)".into(),
                        ));
                    };
                    match sources.get(source.get_ref()).map(|s| &s.kind) {
                        Some(SourceKind::File(_) | SourceKind::Push { .. }) => {}
                        Some(SourceKind::Request { .. }) => {
                            return Err(invalid(
                                source.span().start,
                                key("source"),
                                format!(
                                    "`{}` is a request source; only on-demand views read request sources",
                                    source.get_ref()
                                ),
                            ));
                        }
                        None => {
                            return Err(invalid(
                                source.span().start,
                                key("source"),
                                format!("unknown source `{}` (known: {})", source.get_ref(), names(&sources)),
                            ));
                        }
                    }
                    if view_entities.is_empty() {
                        return Err(invalid(
                            start,
                            key("entities"),
                            "a materialized view needs at least one entity".into(),
                        ));
                    }
                    for entity in &view_entities {
                        if !entities.contains_key(entity) {
                            return Err(invalid(
                                entities_at,
                                key("entities"),
                                format!("unknown entity `{entity}` (known: {})", names(&entities)),
                            ));
                        }
                    }
                    if !view_sources.is_empty() {
                        return Err(invalid(
                            sources_at,
                            key("sources"),
                            "`sources` is for on-demand views; use `source`".into(),
                        ));
                    }
                    if view.kind == RawKind::Aggregation {
                        ViewKind::Aggregation {
                            entities: view_entities,
                            source: source.get_ref().clone(),
                            aggregations: parse_aggregations(view, name, &root, &invalid, |at| line_of(text, at))?,
                            inputs: view
                                .inputs
                                .iter()
                                .flatten()
                                .map(|(n, t)| FieldSpec {
                                    name: n.clone(),
                                    data_type: *t,
                                    nullable: true,
                                })
                                .collect(),
                        }
                    } else {
                        if view.aggregations.is_some() || view.inputs.is_some() {
                            return Err(invalid(
                                start,
                                key("aggregations"),
                                "`aggregations` and `inputs` are for aggregation views: add `kind = \"aggregation\"`"
                                    .into(),
                            ));
                        }
                        ViewKind::Materialized {
                            entities: view_entities,
                            source: source.get_ref().clone(),
                        }
                    }
                }
                RawKind::OnDemand => {
                    if view_sources.is_empty() {
                        return Err(invalid(
                            start,
                            key("sources"),
                            "an on-demand view needs `sources` (materialized views and request sources)".into(),
                        ));
                    }
                    for source in &view_sources {
                        let ok = matches!(sources.get(source).map(|s| &s.kind), Some(SourceKind::Request { .. }))
                            || views.get(source).is_some_and(View::is_materialized);
                        if !ok {
                            return Err(invalid(
                                sources_at,
                                key("sources"),
                                format!(
                                    "`{source}` is neither a materialized view declared above nor a request source"
                                ),
                            ));
                        }
                    }
                    if view.source.is_some() || !view_entities.is_empty() {
                        return Err(invalid(
                            start,
                            key("kind"),
                            "on-demand views take `sources` only (their entities come from the views they read)".into(),
                        ));
                    }
                    if view.aggregations.is_some() || view.inputs.is_some() {
                        return Err(invalid(
                            start,
                            key("aggregations"),
                            "`aggregations` and `inputs` are for aggregation views: use `kind = \"aggregation\"`"
                                .into(),
                        ));
                    }
                    ViewKind::OnDemand { sources: view_sources }
                }
            };
            let transform = match (&view.transform, &kind) {
                (Some(path), _) => Some(root.join(path.get_ref())),
                (None, ViewKind::Aggregation { .. }) => None,
                (None, _) => {
                    return Err(invalid(
                        start,
                        key("transform"),
                        "this view needs a `transform` (the path of its .wasm component)".into(),
                    ));
                }
            };
            let ttl = match &view.ttl {
                None => None,
                Some(ttl) => Some(humantime::parse_duration(ttl.get_ref()).map_err(|e| {
                    invalid(
                        ttl.span().start,
                        key("ttl"),
                        format!("`{}` is not a duration like \"1d\" or \"90m\": {e}", ttl.get_ref()),
                    )
                })?),
            }
            .filter(|d| !d.is_zero());
            if view.limits.timeout_ms == 0 || view.limits.memory_mib == 0 || view.limits.max_rows_per_call == 0 {
                return Err(invalid(start, key("limits"), "limits must be greater than zero".into()));
            }
            let features = view.features.as_ref().map(|f| {
                f.get_ref()
                    .iter()
                    .map(|(n, t)| FieldSpec {
                        name: n.clone(),
                        data_type: *t,
                        nullable: true,
                    })
                    .collect()
            });
            views.insert(
                name.clone(),
                View {
                    name: name.clone(),
                    kind,
                    transform,
                    ttl,
                    online: view.online,
                    owner: view.owner.clone(),
                    description: view.description.clone(),
                    tags: view.tags.clone(),
                    features,
                    limits: view.limits,
                    determinism: view.determinism.unwrap_or(raw.determinism),
                    line: line_of(text, start),
                },
            );
        }

        let mut services = IndexMap::new();
        for (name, spanned) in &raw.services {
            let start = spanned.span().start;
            check_name("services", name, start)?;
            let service = spanned.get_ref();
            let mut features = Vec::new();
            for text_ref in service.features.get_ref() {
                let at = service.features.span().start;
                let feature_ref = FeatureRef::parse(text_ref).ok_or_else(|| {
                    invalid(
                        at,
                        format!("services.{name}.features"),
                        format!("`{text_ref}` is not `view:feature` or `view`"),
                    )
                })?;
                if !views.contains_key(&feature_ref.view) {
                    return Err(invalid(
                        at,
                        format!("services.{name}.features"),
                        format!("unknown view `{}` (known: {})", feature_ref.view, names(&views)),
                    ));
                }
                features.push(feature_ref);
            }
            services.insert(
                name.clone(),
                Service {
                    name: name.clone(),
                    features,
                    description: service.description.clone(),
                    line: line_of(text, start),
                },
            );
        }

        // SKEWLESS_STORE serves the same repo from another store file (a
        // second replica on one machine), relative to where it is run.
        let store_path = match std::env::var_os(STORE_VARIABLE).filter(|v| !v.is_empty()) {
            Some(file) => std::path::absolute(PathBuf::from(file)).unwrap_or_default(),
            None => root.join(raw.store.as_deref().unwrap_or(DEFAULT_STORE)),
        };
        let mut server = raw.server;
        for path in [&mut server.auth.tokens, &mut server.auth.jwks].into_iter().flatten() {
            *path = root.join(&*path);
        }
        // Secure by default: the file `skewless token add` writes is the one
        // `serve` enforces, with no further step (see DEFAULT_TOKENS_FILE).
        if server.auth.tokens.is_none() && root.join(DEFAULT_TOKENS_FILE).exists() {
            server.auth.tokens = Some(root.join(DEFAULT_TOKENS_FILE));
        }
        let (monitoring_at, mut monitoring) = match raw.monitoring {
            Some(m) => (m.span().start, m.into_inner()),
            None => (0, MonitoringSettings::default()),
        };
        for (key, rate) in [
            ("log_sample_rate", monitoring.log_sample_rate),
            ("skew_sample_rate", monitoring.skew_sample_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(
                    monitoring_at,
                    format!("monitoring.{key}"),
                    format!("{rate} is not a share between 0 and 1 (e.g. 0.1 for one answer in ten)"),
                ));
            }
        }
        monitoring.log_folder = root.join(&monitoring.log_folder);
        let (runtime_at, runtime) = match raw.runtime {
            Some(r) => (r.span().start, r.into_inner()),
            None => (0, PoolSettings::default()),
        };
        if let Err((key, message)) = runtime.check() {
            return Err(invalid(runtime_at, format!("runtime.{key}"), message));
        }
        Ok(Repo {
            root,
            config_path: path.to_path_buf(),
            project: raw.project,
            store_path,
            entities,
            sources,
            views,
            services,
            server,
            monitoring,
            runtime,
        })
    }

    /// The file source behind a stored view (through a push source if need be).
    pub fn file_source(&self, view: &View) -> Option<&FileSource> {
        let source = view.source()?;
        let name = match &self.sources.get(source)?.kind {
            SourceKind::Push { batch_source, .. } => batch_source,
            _ => source,
        };
        match &self.sources.get(name)?.kind {
            SourceKind::File(file) => Some(file),
            _ => None,
        }
    }

    /// Every column an online request may carry, with its type: the join
    /// keys of every entity and the fields of every request source.
    pub fn request_columns(&self) -> IndexMap<String, FeatureType> {
        let keys = self.entities.values().flat_map(|e| e.join_keys.iter());
        let fields = self.sources.values().flat_map(|s| match &s.kind {
            SourceKind::Request { schema } => schema.as_slice(),
            _ => &[],
        });
        keys.chain(fields).map(|f| (f.name.clone(), f.data_type)).collect()
    }

    /// The join keys of a materialized view: its entities' keys, in order.
    pub fn join_keys(&self, view: &View) -> Vec<FieldSpec> {
        match &view.kind {
            ViewKind::Materialized { entities, .. } | ViewKind::Aggregation { entities, .. } => entities
                .iter()
                .flat_map(|e| self.entities[e].join_keys.clone())
                .collect(),
            ViewKind::OnDemand { sources } => {
                let mut keys: Vec<FieldSpec> = Vec::new();
                for source in sources {
                    if let Some(upstream) = self.views.get(source) {
                        for key in self.join_keys(upstream) {
                            if !keys.iter().any(|k| k.name == key.name) {
                                keys.push(key);
                            }
                        }
                    }
                }
                keys
            }
        }
    }
}

/// An aggregation view's `aggregations`, checked: known functions, windows
/// that parse, one feature per name.
fn parse_aggregations(
    view: &RawView,
    name: &str,
    root: &Path,
    invalid: &impl Fn(usize, String, String) -> RepoError,
    line: impl Fn(usize) -> usize,
) -> Result<Vec<crate::aggregate::AggregationSpec>, RepoError> {
    use crate::aggregate::{AggregateFunction, AggregationSpec, Function, Window};
    let key = format!("views.{name}.aggregations");
    let Some(list) = view.aggregations.as_ref().filter(|l| !l.get_ref().is_empty()) else {
        return Err(invalid(
            view.source.as_ref().map_or(0, |s| s.span().start),
            key,
            "an aggregation view needs `aggregations`, e.g. [{ name = \"txn_count_1h\", function = \"count\", window = \"1h\" }]".into(),
        ));
    };
    let mut specs: Vec<AggregationSpec> = Vec::new();
    for item in list.get_ref() {
        let at = item.span().start;
        let raw = item.get_ref();
        let function = if raw.function.ends_with(".wasm") {
            AggregateFunction::Wasm(root.join(&raw.function))
        } else {
            AggregateFunction::Builtin(Function::parse(&raw.function).map_err(|problem| {
                invalid(
                    at,
                    format!("{key}.{}", raw.name),
                    format!("{problem}, or the path of a user-defined aggregator, `aggregators/median.wasm`"),
                )
            })?)
        };
        let window = Window::parse(&raw.window).map_err(|e| invalid(at, format!("{key}.{}", raw.name), e))?;
        if specs.iter().any(|s| s.name == raw.name) {
            return Err(invalid(
                at,
                format!("{key}.{}", raw.name),
                format!("feature `{}` is declared twice", raw.name),
            ));
        }
        if raw.input.is_none() && function != AggregateFunction::Builtin(Function::Count) {
            return Err(invalid(
                at,
                format!("{key}.{}", raw.name),
                format!("`{function}` needs an `input` column"),
            ));
        }
        specs.push(AggregationSpec {
            name: raw.name.clone(),
            function,
            input: raw.input.clone(),
            window,
            line: line(at),
        });
    }
    Ok(specs)
}

fn names<V>(map: &IndexMap<String, V>) -> String {
    if map.is_empty() {
        "none".to_string()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    //! The parser on strings: every error names the file, the line and the
    //! key. Each case edits one line of a good repo.
    use std::path::Path;

    use super::{Repo, RepoError};

    const GOOD: &str = r#"project = "p"

[entities.driver]
join_keys = { driver_id = "int64" }

[sources.stats]
type = "file"
path = "data/stats.parquet"
timestamp_column = "event_timestamp"

[sources.vals]
type = "request"
schema = { val_to_add = "int64" }

[sources.pushed]
type = "push"
batch_source = "stats"

[views.hourly]
entities = ["driver"]
source = "stats"
transform = "hourly.wasm"
ttl = "1d"
limits = { timeout_ms = 100 }

[views.plus]
kind = "on_demand"
sources = ["hourly", "vals"]
transform = "plus.wasm"

[services.model]
features = ["hourly:conv_rate", "plus"]
"#;

    fn parse(text: &str) -> Result<Repo, RepoError> {
        Repo::parse(Path::new("/repo"), Path::new("/repo/skewless.toml"), text)
    }

    /// `GOOD` with `from` replaced by `to` must fail at `line` with every
    /// fragment in its message.
    #[track_caller]
    fn fails(from: &str, to: &str, line: usize, fragments: &[&str]) {
        assert!(GOOD.contains(from), "the case edits nothing: {from}");
        let error = parse(&GOOD.replacen(from, to, 1)).expect_err(to).to_string();
        assert!(
            error.starts_with(&format!("/repo/skewless.toml:{line}: ")),
            "line {line}: {error}"
        );
        for fragment in fragments {
            assert!(error.contains(fragment), "`{fragment}` not in: {error}");
        }
    }

    #[test]
    fn kafka_sources_are_push_sources_fed_by_a_topic() {
        use crate::file_format::{KafkaSasl, KafkaTopic, RecordFormat, SaslMechanism};
        use crate::repo::SourceKind;
        let push = "type = \"push\"\nbatch_source = \"stats\"\n";
        let kafka = |settings: &str| format!("type = \"kafka\"\nbatch_source = \"stats\"\n{settings}");
        let topic_of = |repo: Repo| match repo.sources["pushed"].kind.clone() {
            SourceKind::Push { batch_source, topic } => {
                assert_eq!(batch_source, "stats");
                topic.expect("a kafka source has a topic")
            }
            other => panic!("{other:?}"),
        };
        let plain = parse(&GOOD.replacen(push, &kafka("brokers = [\"b1:9092\", \"b2:9092\"]\ntopic = \"t\"\n"), 1));
        assert_eq!(
            topic_of(plain.unwrap()),
            KafkaTopic {
                brokers: vec!["b1:9092".into(), "b2:9092".into()],
                topic: "t".into(),
                partitions: None,
                format: RecordFormat::Json,
                sasl: None,
                tls: false,
                ca_file: None,
            }
        );
        let secured = parse(&GOOD.replacen(
            push,
            &kafka(
                "brokers = [\"b:9093\"]\ntopic = \"t\"\npartitions = [1]\nsasl_mechanism = \"scram-sha-512\"\n\
                 ca_file = \"certs/ca.pem\"\n",
            ),
            1,
        ));
        let secured = topic_of(secured.unwrap());
        assert_eq!(secured.partitions, Some(vec![1]));
        assert_eq!(
            secured.sasl,
            Some(KafkaSasl {
                mechanism: SaslMechanism::ScramSha512,
                username_env: "KAFKA_USERNAME".into(),
                password_env: "KAFKA_PASSWORD".into(),
            })
        );
        assert!(secured.tls);
        assert_eq!(secured.ca_file.as_deref(), Some(Path::new("/repo/certs/ca.pem")));

        let broken = |settings: &str, line: usize, fragments: &[&str]| fails(push, &kafka(settings), line, fragments);
        broken(
            "brokers = [\"nohost\"]\ntopic = \"t\"\n",
            18,
            &["sources.pushed.brokers", "`nohost` is not HOST:PORT"],
        );
        broken(
            "brokers = [\"b:9092\"]\n",
            16,
            &["sources.pushed.topic", "needs a `topic`"],
        );
        broken("topic = \"t\"\n", 16, &["sources.pushed.brokers", "needs `brokers`"]);
        broken(
            "brokers = [\"b:9092\"]\ntopic = \"t\"\npartitions = []\n",
            20,
            &["sources.pushed.partitions", "non-empty"],
        );
        broken(
            "brokers = [\"b:9092\"]\ntopic = \"t\"\nusername_env = \"U\"\n",
            16,
            &["sources.pushed.sasl_mechanism", "need a `sasl_mechanism`"],
        );
        broken(
            "brokers = [\"b:9092\"]\ntopic = \"t\"\nsasl_mechanism = \"GSSAPI\"\n",
            20,
            &["unknown SASL mechanism `GSSAPI`"],
        );
        broken(
            "brokers = [\"b:9092\"]\ntopic = \"t\"\nformat = \"avro\"\n",
            20,
            &["unknown record format `avro`"],
        );
        broken(
            "brokers = [\"b:9092\"]\ntopic = \"t\"\ntable = \"x\"\n",
            16,
            &["a `kafka` source does not take `table`"],
        );
        // A push source takes no Kafka settings.
        fails(
            push,
            "type = \"push\"\nbatch_source = \"stats\"\ntopic = \"t\"\n",
            16,
            &["a `push` source does not take `topic`"],
        );
    }

    #[test]
    fn runtime_pool_settings_default_and_are_checked() {
        use crate::limits::PoolSettings;
        assert_eq!(parse(GOOD).unwrap().runtime, PoolSettings::default());
        let set = GOOD.replacen(
            "[services.model]",
            "[runtime]\nkeep_resident_mib = 8\nwarm_slots = 4\n\n[services.model]",
            1,
        );
        let runtime = parse(&set).unwrap().runtime;
        assert_eq!((runtime.keep_resident_mib, runtime.warm_slots), (8, 4));
        fails(
            "[services.model]",
            "[runtime]\nwarm_slots = 1000\n\n[services.model]",
            31,
            &["runtime.warm_slots", "1000", "256 slots"],
        );
        fails(
            "[services.model]",
            "[runtime]\nkeep_resident_mib = 9000\n\n[services.model]",
            31,
            &["runtime.keep_resident_mib", "4096 MiB"],
        );
    }

    #[test]
    fn determinism_is_set_for_the_repo_and_overridden_per_view() {
        use crate::determinism::Determinism;
        let repo = parse(GOOD).unwrap();
        assert_eq!(repo.views["hourly"].determinism, Determinism::Default);
        let strict_repo = GOOD.replacen("project = \"p\"", "project = \"p\"\ndeterminism = \"strict\"", 1);
        let repo = parse(&strict_repo).unwrap();
        assert!(repo.views.values().all(|v| v.determinism == Determinism::Strict));
        let one_view = GOOD.replacen(
            "transform = \"plus.wasm\"",
            "transform = \"plus.wasm\"\ndeterminism = \"strict\"",
            1,
        );
        let repo = parse(&one_view).unwrap();
        assert_eq!(repo.views["hourly"].determinism, Determinism::Default);
        assert_eq!(repo.views["plus"].determinism, Determinism::Strict);
        let error = parse(&GOOD.replacen(
            "transform = \"plus.wasm\"",
            "transform = \"plus.wasm\"\ndeterminism = \"exact\"",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("/repo/skewless.toml:30: ")
                && error.contains("unknown variant `exact`, expected `default` or `strict`"),
            "{error}"
        );
    }

    #[test]
    fn the_good_repo_parses() {
        let repo = parse(GOOD).unwrap();
        assert_eq!(repo.project, "p");
        assert_eq!(repo.views.keys().collect::<Vec<_>>(), ["hourly", "plus"]);
        assert_eq!(repo.store_path, Path::new("/repo/.skewless/store.redb"));
        assert_eq!(repo.views["hourly"].limits.timeout_ms, 100);
        assert_eq!(repo.views["hourly"].ttl, Some(std::time::Duration::from_secs(86_400)));
    }

    #[test]
    fn syntax_errors_and_unknown_keys() {
        fails(r#"ttl = "1d""#, r#"ttl = "1d"#, 23, &[]);
        fails("ttl =", "tll =", 23, &["unknown field `tll`"]);
        fails(r#"project = "p""#, r#"projekt = "p""#, 1, &["projekt"]);
        fails(
            r#"val_to_add = "int64""#,
            r#"val_to_add = "float128""#,
            13,
            &["float128"],
        );
        fails(
            "limits = { timeout_ms = 100 }",
            "limits = { timeout = 100 }",
            24,
            &["timeout"],
        );
    }

    #[test]
    fn names_entities_and_sources() {
        fails(
            "[entities.driver]",
            "[entities.\"dri ver\"]",
            3,
            &["entities.dri ver", "ASCII letters"],
        );
        fails(
            r#"join_keys = { driver_id = "int64" }"#,
            "join_keys = {}",
            3,
            &["at least one join key"],
        );
        fails(
            r#"driver_id = "int64""#,
            r#"driver_id = "float64""#,
            4,
            &["entities.driver.join_keys.driver_id", "not float64"],
        );
        fails(
            r#"type = "request""#,
            r#"type = "kinesis""#,
            12,
            &["sources.vals.type", "unknown source type `kinesis`"],
        );
        fails(
            r#"path = "data/stats.parquet""#,
            r#"path = "data/stats.json""#,
            8,
            &["sources.stats.path", "neither .parquet nor .csv"],
        );
        fails(r#"path = "data/stats.parquet""#, r#"paths = "x.csv""#, 8, &["paths"]);
        fails(
            r#"schema = { val_to_add = "int64" }"#,
            "",
            12,
            &["sources.vals.schema", "needs a `schema`"],
        );
        fails(
            r#"batch_source = "stats""#,
            "",
            16,
            &["sources.pushed.batch_source", "needs a `batch_source`"],
        );
        fails(
            r#"batch_source = "stats""#,
            r#"batch_source = "vals""#,
            17,
            &["`vals` is not a file, delta or postgres source"],
        );
        fails(
            r#"batch_source = "stats""#,
            "batch_source = \"stats\"\npath = \"x.csv\"",
            16,
            &["does not take `path`"],
        );
    }

    #[test]
    fn views_and_services() {
        fails(
            "\nsource = \"stats\"",
            "\nsource = \"stat\"",
            21,
            &[
                "views.hourly.source",
                "unknown source `stat`",
                "known: stats, vals, pushed",
            ],
        );
        fails(
            "\nsource = \"stats\"",
            "\nsource = \"vals\"",
            21,
            &["is a request source"],
        );
        fails(
            "\nsource = \"stats\"",
            "\n",
            19,
            &["views.hourly.source", "needs a `source`"],
        );
        fails(
            r#"entities = ["driver"]"#,
            r#"entities = ["rider"]"#,
            20,
            &["views.hourly.entities", "unknown entity `rider`", "known: driver"],
        );
        fails(
            r#"entities = ["driver"]"#,
            "entities = []",
            19,
            &["at least one entity"],
        );
        fails(
            r#"ttl = "1d""#,
            r#"ttl = "one fortnight""#,
            23,
            &["views.hourly.ttl", "not a duration"],
        );
        // Located at the view (its limits table carries no position of its own).
        fails(
            "limits = { timeout_ms = 100 }",
            "limits = { timeout_ms = 0 }",
            19,
            &["views.hourly.limits", "greater than zero"],
        );
        fails(
            r#"sources = ["hourly", "vals"]"#,
            r#"sources = ["hourly", "nope"]"#,
            28,
            &["views.plus.sources", "`nope` is neither"],
        );
        fails(
            r#"sources = ["hourly", "vals"]"#,
            "",
            26,
            &["views.plus.sources", "needs `sources`"],
        );
        fails(
            "[views.plus]",
            "[views.plus]\nsource = \"stats\"",
            26,
            &["views.plus.kind", "take `sources` only"],
        );
        fails("[views.plus]", "[views.vals]", 26, &["views.vals", "same name"]);
        fails(
            r#""hourly:conv_rate""#,
            r#""hourly:""#,
            32,
            &["services.model.features", "`hourly:` is not"],
        );
        fails(
            r#""hourly:conv_rate""#,
            r#""nope:x""#,
            32,
            &["services.model.features", "unknown view `nope`"],
        );
    }
}
