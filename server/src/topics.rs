//! Kafka sources (`type = "kafka"`), consumed by `skewless serve`: one
//! task per partition fetches records, decodes them into the columns of a
//! push, and stores them through the one push path ([`push::prepare`],
//! then [`commit_batch`]): the same transforms, materializer and
//! aggregation fold as `/push`.
//!
//! Invariants, and where they are enforced:
//! - A record is applied once, across restarts and `kill -9`: the offset
//!   after it is written in the transaction that writes its rows
//!   (`TopicPosition`), the store refuses a write that does not start at
//!   the offset it holds, and a partition's task always reads from the
//!   stored offset ([`follow`]). Nothing depends on the broker's high
//!   watermark (Tansu's can be wrong) or on reading "to the end".
//! - A record that cannot be decoded, or that the view refuses (a wrong
//!   type, a transform that traps), is recorded in the store with its
//!   partition, offset and why, counted, logged, and skipped; the records
//!   around it are stored.
//! - A failure of this machine (the broker unreachable, a store fault, a
//!   transform out of time) skips nothing: the task waits and reads again
//!   from the stored offset.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use indexmap::IndexMap;
use skewless_runtime::kafka::{self, Decoded, PartitionClient};
use skewless_runtime::push;
use skewless_runtime::repo::SourceKind;
use skewless_runtime::store::{StreamPosition, TopicPosition, ViewRecord, WriteTo};
use skewless_runtime::{Catalog, KafkaTopic, SourceError, Store, StoreError};

use crate::commit::{AfterFailure, Failure, commit_batch};
use crate::metrics::Metrics;

/// What the consumer needs of the server (which implements it), so this
/// module does not depend on the server's.
pub(crate) trait Sink: Send + Sync + 'static {
    /// The server's metrics.
    fn metrics(&self) -> &Metrics;
    /// Where the store stands in each partition of `source`.
    fn topic_offsets(&self, source: &str) -> Result<BTreeMap<i32, u64>, StoreError>;
    /// The columns a push to `source` reads.
    fn push_columns(&self, source: &str) -> Vec<String>;
    /// Stores records of `source`'s `partition` in `from..end` ([`apply`]).
    fn apply_records(
        &self,
        source: &str,
        partition: i32,
        from: u64,
        end: u64,
        decoded: Decoded,
    ) -> Result<Stored, String>;
}

/// Most bytes one fetch asks for: about 40,000 records of 100 bytes, one
/// transaction.
const FETCH_BYTES: i32 = 4 << 20;

/// How long the broker may hold a fetch open waiting for records: bounds
/// the time from produced to stored when records trickle in.
const MAX_WAIT_MS: i32 = 50;

/// Wait before trying again after a failure of the broker or the store.
const RETRY: Duration = Duration::from_millis(500);

/// What was stored of one fetch.
pub(crate) struct Stored {
    /// Records stored.
    pub rows: u64,
    /// Records recorded and skipped: (offset, why).
    pub skipped: Vec<(u64, String)>,
}

/// Starts consuming every Kafka source of the server's repo, each
/// partition on a task of its own; returns what is consumed, for the
/// startup line. A broker that cannot be reached is logged, by source and
/// address, and tried again: reads and pushes go on meanwhile.
pub(crate) fn start<S: Sink>(server: &Arc<S>, catalog: &Catalog) -> Vec<String> {
    let mut consumed = Vec::new();
    for (name, source) in &catalog.repo.sources {
        let SourceKind::Push { topic: Some(topic), .. } = &source.kind else {
            continue;
        };
        consumed.push(format!("kafka source `{name}` ({topic})"));
        tokio::spawn(consume(Arc::downgrade(server), name.clone(), topic.clone()));
    }
    consumed
}

/// Connects (until it can) and starts a task per partition.
async fn consume<S: Sink>(server: Weak<S>, source: String, topic: KafkaTopic) {
    loop {
        let connected = async {
            let client = kafka::connect(&source, &topic).await?;
            let partitions = kafka::partitions(&source, &topic, &client).await?;
            let mut clients = Vec::new();
            for partition in partitions {
                clients.push(kafka::partition(&source, &topic, &client, partition).await?);
            }
            Ok::<_, SourceError>(clients)
        };
        match connected.await {
            Ok(clients) => {
                tracing::info!(
                    "{}: consuming {} partitions",
                    kafka::label(&source, &topic).display(),
                    clients.len()
                );
                for client in clients {
                    tokio::spawn(follow(server.clone(), source.clone(), topic.clone(), client));
                }
                return;
            }
            Err(e) => {
                tracing::error!("{e}; trying again in {} s", RETRY.as_secs_f64());
                if server.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Reads one partition from the stored offset on, for as long as the
/// server lives.
async fn follow<S: Sink>(server: Weak<S>, source: String, topic: KafkaTopic, client: PartitionClient) {
    let partition = client.partition();
    let at = |offset: u64| format!("kafka source `{source}` partition {partition} offset {offset}");
    // What a record is decoded into: the views, and so the columns, are
    // fixed for the server's life.
    let Some(columns) = server.upgrade().map(|server| server.push_columns(&source)) else {
        return;
    };
    // Where the store stands; `None` after a failure, so it is read again.
    let mut next: Option<u64> = None;
    loop {
        let Some(offset) = next else {
            let Some(server) = server.upgrade() else { return };
            let stored = server.topic_offsets(&source).map(|o| o.get(&partition).copied());
            drop(server);
            next = match stored {
                Ok(Some(offset)) => Some(offset),
                Ok(None) => match kafka::earliest(&client).await {
                    Ok(offset) => Some(offset),
                    Err(e) => {
                        tracing::warn!("{}: cannot read the earliest offset: {e}", at(0));
                        tokio::time::sleep(RETRY).await;
                        None
                    }
                },
                Err(e) => {
                    tracing::error!("{}: {e}", at(0));
                    tokio::time::sleep(RETRY).await;
                    None
                }
            };
            continue;
        };
        let (records, high_watermark) = match client.fetch_records(offset as i64, 1..FETCH_BYTES, MAX_WAIT_MS).await {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::warn!(
                    "{}: fetch failed ({e}); reading again from the stored offset",
                    at(offset)
                );
                tokio::time::sleep(RETRY).await;
                next = None;
                continue;
            }
        };
        let Some(server) = server.upgrade() else { return };
        let Some(last) = records.last().map(|r| r.offset.max(0) as u64) else {
            server.metrics().kafka_lag(
                &source,
                partition,
                (high_watermark.max(0) as u64).saturating_sub(offset),
            );
            continue;
        };
        let end = last + 1;
        server
            .metrics()
            .kafka_lag(&source, partition, (high_watermark.max(0) as u64).saturating_sub(end));
        let decoded = kafka::decode(&records, topic.format, &columns);
        let applying = server.clone();
        let (source_name, from) = (source.clone(), offset);
        let result =
            tokio::task::spawn_blocking(move || applying.apply_records(&source_name, partition, from, end, decoded))
                .await
                .unwrap_or_else(|e| Err(format!("the applier stopped: {e}")));
        match result {
            Ok(stored) => {
                for (offset, why) in &stored.skipped {
                    tracing::warn!("{}: recorded and skipped: {why}", at(*offset));
                }
                server
                    .metrics()
                    .kafka(&source, partition, stored.rows, stored.skipped.len() as u64, end);
                next = Some(end);
            }
            Err(why) => {
                tracing::warn!(
                    "{}: not stored ({why}); reading again from the stored offset",
                    at(offset)
                );
                drop(server);
                tokio::time::sleep(RETRY).await;
                next = None;
            }
        }
    }
}

/// Stores the records of `source`'s `partition` in `from..end`, decoded,
/// with the offset `end` in the same transaction (a write of skipped
/// records alone when none is stored). A record the view refuses is found
/// by preparing each alone, and one whose events make an aggregation
/// function trap by committing each alone; either is recorded and
/// skipped, the others stored. An error is a failure of this machine: what
/// was committed before it holds its own offsets, and the caller reads on
/// from the stored offset.
pub(crate) fn apply(
    catalog: &Catalog,
    store: &Store,
    records: &BTreeMap<String, ViewRecord>,
    source: &str,
    partition: i32,
    (from, end): (u64, u64),
    decoded: Decoded,
) -> Result<Stored, String> {
    let Decoded {
        mut columns,
        mut offsets,
        mut skipped,
    } = decoded;
    let prepare = |columns: &IndexMap<String, Vec<serde_json::Value>>| {
        push::prepare(
            catalog,
            store,
            records,
            source,
            columns,
            WriteTo::OnlineAndOffline,
            None,
        )
        .map_err(Failure::from)
    };
    let row = |columns: &IndexMap<String, Vec<serde_json::Value>>, row: usize| -> IndexMap<_, _> {
        (columns.iter())
            .map(|(name, values)| (name.clone(), vec![values[row].clone()]))
            .collect()
    };
    let mut whole = match offsets.is_empty() {
        true => None,
        false => match prepare(&columns) {
            Ok(push) => Some(push),
            Err(Failure::Machine(why)) => return Err(why),
            // Some record is refused: find which, then store the others together.
            Err(Failure::Deterministic(_)) => {
                let mut kept = (IndexMap::new(), Vec::new());
                for name in columns.keys() {
                    kept.0.insert(name.clone(), Vec::new());
                }
                for (at, offset) in offsets.iter().enumerate() {
                    match prepare(&row(&columns, at)) {
                        Ok(_) => {
                            for (name, values) in &columns {
                                kept.0[name].push(values[at].clone());
                            }
                            kept.1.push(*offset);
                        }
                        Err(Failure::Deterministic(why)) => skipped.push((*offset, why)),
                        Err(Failure::Machine(why)) => return Err(why),
                    }
                }
                (columns, offsets) = kept;
                match offsets.is_empty() {
                    true => None,
                    false => {
                        Some(prepare(&columns).map_err(|(Failure::Deterministic(why) | Failure::Machine(why))| why)?)
                    }
                }
            }
        },
    };
    skipped.sort_by_key(|(offset, _)| *offset);
    // The offsets a commit covers, with the records skipped among them.
    let position = |first: u64, next: u64, also: Option<(u64, String)>| {
        let mut skipped: Vec<(u64, String)> = (skipped.iter())
            .filter(|(offset, _)| (first..next).contains(offset))
            .cloned()
            .collect();
        skipped.extend(also);
        skipped.sort_by_key(|(offset, _)| *offset);
        StreamPosition::Topic(TopicPosition {
            source: source.to_string(),
            partition,
            from: first,
            next,
            skipped,
        })
    };
    let Some(push) = whole.as_mut() else {
        store
            .write_views_at(&mut [], Some(&position(from, end, None)))
            .map_err(|e| e.to_string())?;
        return Ok(Stored { rows: 0, skipped });
    };
    match commit_batch(
        store,
        std::slice::from_mut(push),
        |_| Some(position(from, end, None)),
        |_, _| AfterFailure::Stop,
    )
    .remove(0)
    {
        Ok(_) => {
            return Ok(Stored {
                rows: offsets.len() as u64,
                skipped,
            });
        }
        Err(error) if !matches!(*error, StoreError::Aggregator(_)) => return Err(error.to_string()),
        Err(_) => {}
    }
    // An aggregation function trapped on some record's events: commit the
    // records one by one, each with the offsets up to the next.
    let mut pushes = Vec::with_capacity(offsets.len());
    for at in 0..offsets.len() {
        pushes.push(prepare(&row(&columns, at)).map_err(|(Failure::Deterministic(why) | Failure::Machine(why))| why)?);
    }
    let span = |i: usize| {
        let first = if i == 0 { from } else { offsets[i - 1] + 1 };
        let next = if i + 1 == offsets.len() { end } else { offsets[i] + 1 };
        (first, next)
    };
    let mut machine = None;
    let results = commit_batch(
        store,
        &mut pushes,
        |range| Some(position(span(range.start).0, span(range.end - 1).1, None)),
        |i, error: &StoreError| {
            if !matches!(error, StoreError::Aggregator(_)) {
                machine = Some(error.to_string());
                return AfterFailure::Stop;
            }
            let (first, next) = span(i);
            let why = format!("an aggregation function failed on its events: {error}");
            match store.write_views_at(&mut [], Some(&position(first, next, Some((offsets[i], why))))) {
                Ok(_) => AfterFailure::Continue,
                Err(e) => {
                    machine = Some(e.to_string());
                    AfterFailure::Stop
                }
            }
        },
    );
    if let Some(why) = machine {
        return Err(why);
    }
    let mut rows = 0;
    for (at, result) in results.iter().enumerate() {
        match result {
            Ok(_) => rows += 1,
            Err(error) => skipped.push((
                offsets[at],
                format!("an aggregation function failed on its events: {error}"),
            )),
        }
    }
    skipped.sort_by_key(|(offset, _)| *offset);
    Ok(Stored { rows, skipped })
}
