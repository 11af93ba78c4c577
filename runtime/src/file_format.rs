//! The formats sources, spines and datasets come in: files told by their
//! name's extension in one place, and Delta Lake tables (a folder, named
//! by the source's `type`). A leaf: the repo, the source reader and the
//! dataset writer all name it, and it names none of them.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Format of a source, spine or dataset: a file by its extension, or a
/// Delta Lake table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Apache Parquet (`.parquet`, `.pq`).
    Parquet,
    /// Comma-separated values with a header row (`.csv`).
    Csv,
    /// A Delta Lake table ([`crate::delta`]): a folder of Parquet files
    /// and its transaction log, at this version (the newest when `None`).
    /// Sources only: never a spine or a dataset.
    Delta(Option<TableVersion>),
    /// A PostgreSQL table or query ([`PostgresTable`], in the source's
    /// settings); the source's `path` is only a label for messages.
    Postgres,
}

/// A PostgreSQL source: what to read, and where the connection comes from
/// (the environment: never the repo file, which is committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresTable {
    /// A table (`schema.table`) or a query (`SELECT ...`).
    pub relation: Relation,
    /// The environment variable holding the connection URL
    /// (`postgres://user:password@host:port/database`).
    pub connection_env: String,
    /// An increasing column (a timestamp or an integer, e.g. a sequence or
    /// an `updated_at` the database sets): an incremental load reads the
    /// rows whose value is greater than the greatest one loaded before.
    pub watermark_column: Option<String>,
}

/// What a PostgreSQL source reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// A table or view, as SQL names it (`public.driver_stats`).
    Table(String),
    /// A `SELECT` whose columns are the source's columns.
    Query(String),
}

impl Relation {
    /// The relation as a `FROM` item.
    pub fn sql_from(&self) -> String {
        match self {
            Relation::Table(name) => name.clone(),
            Relation::Query(query) => format!("({query}) AS source"),
        }
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Relation::Table(name) => write!(f, "table {name}"),
            Relation::Query(query) => write!(f, "query `{query:.60}`"),
        }
    }
}

/// Which version of a Delta table a source reads (`version = N` or
/// `timestamp = "..."` in `skewless.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableVersion {
    /// This version.
    Version(u64),
    /// The newest version committed at or before this time (microseconds
    /// UTC): the commit's in-commit timestamp when the table records one,
    /// else its log file's modification time, as the Delta protocol says.
    AsOf(i64),
}

impl FileFormat {
    /// The format `path`'s extension says (any case), if it is one of ours.
    pub fn of(path: &Path) -> Option<FileFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            _ => None,
        }
    }

    /// `parquet`, `csv` or `delta`.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Delta(_) => "delta",
            FileFormat::Postgres => "postgres",
        }
    }

    /// Whether the format records its columns' types (Parquet, Delta), so
    /// they can type a view's inputs; CSV columns are text until read.
    pub fn typed(self) -> bool {
        match self {
            FileFormat::Parquet | FileFormat::Delta(_) | FileFormat::Postgres => true,
            FileFormat::Csv => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileFormat;
    use std::path::Path;

    #[test]
    fn told_by_extension_in_any_case() {
        assert_eq!(FileFormat::of(Path::new("a/b.parquet")), Some(FileFormat::Parquet));
        assert_eq!(FileFormat::of(Path::new("b.PQ")), Some(FileFormat::Parquet));
        assert_eq!(FileFormat::of(Path::new("b.Csv")), Some(FileFormat::Csv));
        assert_eq!(FileFormat::of(Path::new("b.json")), None);
        assert_eq!(FileFormat::of(Path::new("parquet")), None);
    }
}

/// A Kafka topic a push source consumes (`type = "kafka"`): its records
/// go through the push path, and the offsets read are stored with the rows
/// ([`crate::store::TopicPosition`]), so each record is applied once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTopic {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// The partitions to consume; every partition of the topic when `None`.
    pub partitions: Option<Vec<i32>>,
    /// How a record's value is decoded.
    pub format: RecordFormat,
    /// SASL credentials, when the brokers require them.
    pub sasl: Option<KafkaSasl>,
    /// Connect over TLS (the system's root certificates, or `ca_file`).
    pub tls: bool,
    /// PEM file of the certificate authorities to trust, for TLS.
    pub ca_file: Option<std::path::PathBuf>,
}

/// How a Kafka record's value becomes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// A JSON object: column name to value, in the JSON shapes `/push`
    /// takes (timestamps as RFC 3339 text or microseconds).
    Json,
}

/// SASL authentication to Kafka brokers; the credentials are read from
/// the environment when the source connects, never from the repo file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// The environment variable holding the user name.
    pub username_env: String,
    /// The environment variable holding the password.
    pub password_env: String,
}

/// A SASL mechanism Kafka brokers offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN` (over TLS, in practice).
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl std::fmt::Display for KafkaTopic {
    /// `topic T at BROKERS`, for messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {} at {}", self.topic, self.brokers.join(","))
    }
}
