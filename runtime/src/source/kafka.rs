//! Kafka topics as sources: the client that `apply` checks a topic with
//! and `skewless serve` consumes it with, and the decoding of records into
//! the columns a push carries. Consumption itself (offsets stored with the
//! rows, so each record applies once) is the server's.
//!
//! rskafka is partition-level, with no consumer groups: the offsets live
//! in the store's transaction, not in the broker, which is what makes a
//! restart resume exactly where the store is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
pub use rskafka::client::partition::PartitionClient;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::RecordAndOffset;

use super::error::{SourceError, fail};
use crate::file_format::{KafkaTopic, RecordFormat, SaslMechanism};

/// How long connecting to the brokers may take before the source is
/// reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// rskafka's retries of one request: a few quick ones, then the error
/// comes back to the consumer, which logs it and reads again from the
/// stored offset (rskafka's default backs off up to 500 s, forever).
fn retries() -> rskafka::BackoffConfig {
    rskafka::BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(Duration::from_secs(5)),
    }
}

/// `kafka source `NAME` (topic T at BROKERS)`: what errors name.
pub fn label(source: &str, topic: &KafkaTopic) -> PathBuf {
    PathBuf::from(format!("kafka source `{source}` ({topic})"))
}

/// Connects to the brokers, with the SASL credentials from the environment
/// and TLS when the source asks; an error names the address, or the
/// variable that is not set.
pub async fn connect(source: &str, topic: &KafkaTopic) -> Result<Client, SourceError> {
    let label = label(source, topic);
    let mut builder = ClientBuilder::new(topic.brokers.clone())
        .client_id("skewless")
        .backoff_config(retries());
    if let Some(sasl) = &topic.sasl {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                fail(
                    &label,
                    format!(
                        "its SASL credentials are read from the environment variable {name}, which is not set: \
                         export {name}=..."
                    ),
                )
            })
        };
        let credentials = Credentials::new(var(&sasl.username_env)?, var(&sasl.password_env)?);
        builder = builder.sasl_config(match sasl.mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        });
    }
    if topic.tls {
        builder = builder.tls_config(Arc::new(tls_config(&label, topic.ca_file.as_deref())?));
    }
    let brokers = topic.brokers.join(",");
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(fail(&label, format!("cannot connect to {brokers}: {e}"))),
        Err(_) => Err(fail(
            &label,
            format!(
                "cannot connect to {brokers}: no broker answered within {} s; is the address right and the broker up?",
                CONNECT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// rustls trusting `ca_file`'s certificates, or the system's.
fn tls_config(label: &Path, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SourceError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(label, format!("cannot read ca_file {}: {e}", path.display())))?
            {
                let cert = cert.map_err(|e| fail(label, format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(label, format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(label, format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The partitions to consume: those the source lists, each checked to
/// exist, or every partition of the topic. A missing topic is refused by
/// name, with the topics the brokers have.
pub async fn partitions(source: &str, topic: &KafkaTopic, client: &Client) -> Result<Vec<i32>, SourceError> {
    let label = label(source, topic);
    let topics = client
        .list_topics()
        .await
        .map_err(|e| fail(&label, format!("cannot list the topics: {e}")))?;
    let Some(found) = topics.iter().find(|t| t.name == topic.topic) else {
        let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        return Err(fail(
            &label,
            format!(
                "the brokers have no topic `{}` (they have: {}); create it, or fix `topic`",
                topic.topic,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    match &topic.partitions {
        None => Ok(found.partitions.iter().copied().collect()),
        Some(listed) => {
            if let Some(missing) = listed.iter().find(|p| !found.partitions.contains(p)) {
                return Err(fail(
                    &label,
                    format!(
                        "topic `{}` has no partition {missing} (it has {} partitions, 0 to {})",
                        topic.topic,
                        found.partitions.len(),
                        found.partitions.len().saturating_sub(1)
                    ),
                ));
            }
            Ok(listed.clone())
        }
    }
}

/// `apply`'s check: the brokers answer and have the topic and partitions.
pub fn check(source: &str, topic: &KafkaTopic) -> Result<Vec<i32>, SourceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&label(source, topic), format!("cannot start its client: {e}")))?;
    runtime.block_on(async {
        let client = connect(source, topic).await?;
        partitions(source, topic, &client).await
    })
}

/// A client for one partition.
pub async fn partition(
    source: &str,
    topic: &KafkaTopic,
    client: &Client,
    partition: i32,
) -> Result<PartitionClient, SourceError> {
    client
        .partition_client(topic.topic.clone(), partition, UnknownTopicHandling::Error)
        .await
        .map_err(|e| fail(&label(source, topic), format!("partition {partition}: {e}")))
}

/// The partition's earliest offset still held by the brokers: where a
/// partition the store has not read yet starts.
pub async fn earliest(client: &PartitionClient) -> Result<u64, rskafka::client::error::Error> {
    Ok(client.get_offset(OffsetAt::Earliest).await?.max(0) as u64)
}

/// Records decoded into the columns of a push (column name to one JSON
/// value per row, absent fields null), with the offset of each row, and
/// the records that could not be decoded, with why.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The push's columns.
    pub columns: IndexMap<String, Vec<serde_json::Value>>,
    /// Each row's record offset.
    pub offsets: Vec<u64>,
    /// Records skipped: (offset, why).
    pub skipped: Vec<(u64, String)>,
}

/// Decodes `records` as `format` says; only `columns` are kept.
pub fn decode(records: &[RecordAndOffset], format: RecordFormat, columns: &[String]) -> Decoded {
    let mut out = Decoded {
        columns: columns
            .iter()
            .map(|c| (c.clone(), Vec::with_capacity(records.len())))
            .collect(),
        ..Decoded::default()
    };
    for record in records {
        let offset = record.offset.max(0) as u64;
        let row = match format {
            RecordFormat::Json => json_object(record.record.value.as_deref()),
        };
        match row {
            Ok(mut row) => {
                for (name, values) in out.columns.iter_mut() {
                    values.push(row.remove(name).unwrap_or(serde_json::Value::Null));
                }
                out.offsets.push(offset);
            }
            Err(why) => out.skipped.push((offset, why)),
        }
    }
    out
}

fn json_object(value: Option<&[u8]>) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let Some(bytes) = value else {
        return Err("the record has no value (a tombstone)".into());
    };
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(row)) => Ok(row),
        Ok(other) => Err(format!(
            "the record's value is JSON but not an object (column name to value): {:.80}",
            other.to_string()
        )),
        Err(e) => Err(format!(
            "the record's value is not JSON ({e}): {:.80}",
            String::from_utf8_lossy(bytes)
        )),
    }
}
