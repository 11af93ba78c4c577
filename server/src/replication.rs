//! Replicated serving (`skewless serve --log nats://HOST:PORT`): many
//! servers, each with its own embedded store, fed by one NATS JetStream
//! stream. A `/push` is published to the stream as one message; every
//! replica, the receiving one included, applies the stream in order through
//! the one push path ([`push::prepare`], then [`Store::write_views_at`]).
//!
//! Invariants, and where they are enforced:
//! - A message is applied once, across restarts and crashes: its stream
//!   sequence is written in the transaction that writes its rows, the store
//!   refuses a sequence at or before the one it holds, and the applier
//!   always resumes after the stored sequence ([`Replication::follow`]).
//! - Messages apply in stream order with no gap. A gap (the stream was
//!   trimmed past what this store holds, or recreated) stops the replica:
//!   it answers 503 `stale_replica` rather than serve stale values
//!   ([`Phase::Stale`]), and says how to re-bootstrap.
//! - A message that fails the same way on every machine (malformed, an
//!   unknown source, a transform that traps or reports an error) is
//!   recorded and skipped in the transaction of the next write, so every
//!   replica skips the same ones. One that ran out of time or hit a store
//!   fault (which depend on the machine) is retried, and skipped only after
//!   [`MAX_ATTEMPTS`], with the reason recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::StreamExt;
use skewless_runtime::push::{self, PushError};
use skewless_runtime::store::{LogPosition, ViewRecord};
use skewless_runtime::{Catalog, Store, StoreError, TransformErrorKind};
use tokio::sync::watch;

use crate::api::PushRequest;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Most messages applied in one store transaction: one fsync for many
/// pushes when the replica is behind, bounded so one failing message
/// (the batch is then retried one message at a time) undoes little.
const MAX_BATCH: usize = 256;

/// Times a message that failed for a machine-dependent reason (time limit,
/// store fault) is tried before it is recorded and skipped.
const MAX_ATTEMPTS: u32 = 3;

/// How often the stream's last sequence is read, for the lag.
const LAG_POLL: Duration = Duration::from_millis(200);

/// Wait before following the stream again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// How long a publish waits for JetStream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Outcomes of recent messages kept for the requests waiting on them.
const RECENT_OUTCOMES: usize = 100_000;

/// `skewless serve --log ...`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `nats://HOST:PORT` (`--log`).
    pub url: String,
    /// The JetStream stream (`--stream`); created if missing, on subject
    /// `<stream>.push`.
    pub stream: String,
    /// Answer a push once the log has stored it rather than once this
    /// replica applied it (`--ack-on-log`).
    pub ack_on_log: bool,
    /// `/health` is ready while the replica is at most this many messages
    /// behind the stream (`--max-lag`).
    pub max_lag: u64,
}

/// What became of one message.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Stored by this store commit.
    Applied(u64),
    /// Recorded and skipped, with why.
    Skipped(String),
}

/// Where the replica stands.
#[derive(Debug, Clone)]
enum Phase {
    /// Not following the stream (yet, or since a failure): why.
    Connecting(String),
    /// Following the stream.
    Following,
    /// The next message is gone from the stream: this store can no longer
    /// catch up, and serves nothing (the message says what to do).
    Stale(String),
}

struct Status {
    phase: Phase,
    /// The stream's last sequence when last read.
    stream_last: u64,
    /// Whether the lag has been under `max_lag` since start: a replica
    /// that was ready stays ready while the log is down (reads go on).
    synced: bool,
    outcomes: BTreeMap<u64, Outcome>,
    /// Failed attempts per sequence (machine-dependent failures).
    attempts: HashMap<u64, u32>,
}

/// The replication side of a server: the log client and where this
/// replica stands in the stream.
pub(crate) struct Replication {
    settings: LogSettings,
    subject: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// The last sequence applied (from the store at start).
    applied: watch::Sender<u64>,
    status: Mutex<Status>,
}

/// The connection to the log could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the replication log {url}: {error}; give it as nats://HOST:PORT of a nats-server started with -js")]
pub struct LogError {
    url: String,
    error: String,
}

/// Why the applier stopped following the stream.
pub(crate) enum Halt {
    /// Retry from the stored position after [`RETRY`].
    Retry(String),
    /// The store can no longer catch up from this stream.
    Stale(String),
}

impl Replication {
    /// Connects to the log at `settings.url` (in the background: a server
    /// starts while the log is down, and answers pushes 503 until it is up).
    pub(crate) async fn connect(settings: LogSettings, applied: u64) -> Result<Replication, LogError> {
        let fail = |error: String| LogError {
            url: settings.url.clone(),
            error,
        };
        // JetStream refuses other names only once connected, which would
        // leave the server retrying in the background: say it now.
        let name = &settings.stream;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(fail(format!(
                "`{name}` is not a usable --stream name: use letters, digits, `_` and `-`"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .name("skewless serve")
            .connect(settings.url.as_str())
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(PUBLISH_TIMEOUT);
        Ok(Replication {
            subject: format!("{}.push", settings.stream),
            client,
            jetstream,
            applied: watch::Sender::new(applied),
            status: Mutex::new(Status {
                phase: Phase::Connecting("connecting to the log".into()),
                stream_last: 0,
                synced: false,
                outcomes: BTreeMap::new(),
                attempts: HashMap::new(),
            }),
            settings,
        })
    }

    pub(crate) fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// The last sequence this replica applied.
    pub(crate) fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Publishes one push (`body`, as received) with de-duplication id
    /// `id`: JetStream stores a repeated id once (within its duplicate
    /// window, 2 minutes by default) and answers with the first sequence.
    /// Returns (sequence, duplicate) once JetStream has stored it.
    pub(crate) async fn publish(&self, id: &str, body: Bytes) -> Result<(u64, bool), ApiError> {
        let unavailable = |why: String| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "log_unavailable",
            message: format!(
                "the replication log {} did not store the push ({why}); nothing is known to be stored: \
                 retry with the same body or Idempotency-Key, which is stored once",
                self.settings.url
            ),
        };
        // A message published while disconnected would be buffered and
        // maybe sent later: refuse at once instead.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable("not connected".into()));
        }
        // The log takes messages up to its max_payload (1 MB by default),
        // which may be less than this server's body limit.
        let max_payload = self.client.server_info().max_payload;
        if body.len() > max_payload {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!(
                    "the push is {} bytes and the replication log {} takes messages up to {max_payload} bytes \
                     (nats-server's max_payload): split it into smaller pushes, or raise max_payload",
                    body.len(),
                    self.settings.url
                ),
            });
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        let ack = self
            .jetstream
            .publish_with_headers(self.subject.clone(), headers, body)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok((ack.sequence, ack.duplicate))
    }

    /// Waits until message `sequence` is applied here, at most `timeout`:
    /// its outcome, `Some(None)` when applied but no longer remembered (a
    /// duplicate of an old push), `None` on timeout.
    pub(crate) async fn wait_applied(&self, sequence: u64, timeout: Duration) -> Option<Option<Outcome>> {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|a| *a >= sequence))
            .await
            .ok()?
            .ok()?;
        Some(
            self.status
                .lock()
                .expect("status lock")
                .outcomes
                .get(&sequence)
                .cloned(),
        )
    }

    /// 503 `stale_replica` when this replica can no longer catch up.
    pub(crate) fn refuse_if_stale(&self) -> Result<(), ApiError> {
        match &self.status.lock().expect("status lock").phase {
            Phase::Stale(why) => Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "stale_replica",
                message: why.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// For `/health`: (applied, stream's last sequence, lag), or why the
    /// replica is not ready (503 `stale_replica` or `catching_up`).
    pub(crate) fn readiness(&self) -> Result<(u64, u64, u64), ApiError> {
        self.refuse_if_stale()?;
        let status = self.status.lock().expect("status lock");
        let applied = self.applied();
        let lag = status.stream_last.saturating_sub(applied);
        if !status.synced {
            let why = match &status.phase {
                Phase::Connecting(why) => format!("not following the log yet: {why}"),
                _ => format!(
                    "{lag} messages behind the log (ready at --max-lag {})",
                    self.settings.max_lag
                ),
            };
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "catching_up",
                message: format!("replaying the log from message {}: {why}", applied + 1),
            });
        }
        Ok((applied, status.stream_last, lag))
    }

    /// Follows the stream for as long as the server lives: applies each
    /// batch of messages with `apply` (on the blocking pool), and reads the
    /// stream's last sequence every [`LAG_POLL`] for the lag.
    pub(crate) fn start<F>(self: &Arc<Self>, metrics: Arc<Metrics>, apply: F)
    where
        F: Fn(&[(u64, Bytes)]) -> Result<Vec<(u64, Outcome)>, Halt> + Send + Sync + 'static,
    {
        let apply = Arc::new(apply);
        let follower = self.clone();
        tokio::spawn(async move {
            loop {
                match follower.follow(apply.clone()).await {
                    Halt::Stale(why) => {
                        tracing::error!("{why}");
                        follower.set_phase(Phase::Stale(why));
                        return;
                    }
                    Halt::Retry(why) => {
                        tracing::warn!(
                            "replication: {why}; following the log again from message {}",
                            follower.applied() + 1
                        );
                        follower.set_phase(Phase::Connecting(why));
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        });
        let poller = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(replication) = poller.upgrade() {
                if let Ok(info) = replication.jetstream.get_stream(&replication.settings.stream).await
                    && let Ok(info) = info.get_info().await
                {
                    replication.observe(info.state.last_sequence, &metrics);
                }
                drop(replication);
                tokio::time::sleep(LAG_POLL).await;
            }
        });
    }

    /// Records the stream's last sequence; the replica is ready once the
    /// lag is within `--max-lag` while following.
    fn observe(&self, stream_last: u64, metrics: &Metrics) {
        let applied = self.applied();
        let mut status = self.status.lock().expect("status lock");
        status.stream_last = status.stream_last.max(stream_last);
        let lag = status.stream_last.saturating_sub(applied);
        if matches!(status.phase, Phase::Following) && lag <= self.settings.max_lag {
            status.synced = true;
        }
        metrics.replication(applied, lag);
    }

    fn set_phase(&self, phase: Phase) {
        self.status.lock().expect("status lock").phase = phase;
    }

    /// Follows the stream from the message after the last applied, until
    /// something stops it.
    async fn follow<F>(&self, apply: Arc<F>) -> Halt
    where
        F: Fn(&[(u64, Bytes)]) -> Result<Vec<(u64, Outcome)>, Halt> + Send + Sync + 'static,
    {
        let retry = |what: &str, e: &dyn std::fmt::Display| Halt::Retry(format!("{what}: {e}"));
        let mut stream = match self
            .jetstream
            .get_or_create_stream(stream::Config {
                name: self.settings.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
        {
            Ok(stream) => stream,
            Err(e) => return retry("cannot open the stream", &e),
        };
        let state = match stream.info().await {
            Ok(info) => info.state.clone(),
            Err(e) => return retry("cannot read the stream", &e),
        };
        let next = self.applied() + 1;
        if state.last_sequence + 1 < next || (state.last_sequence >= next && state.first_sequence > next) {
            return Halt::Stale(self.stale(next, state.first_sequence, state.last_sequence));
        }
        let consumer = match stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                ..Default::default()
            })
            .await
        {
            Ok(consumer) => consumer,
            Err(e) => return retry("cannot consume the stream", &e),
        };
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages.ready_chunks(MAX_BATCH),
            Err(e) => return retry("cannot consume the stream", &e),
        };
        self.set_phase(Phase::Following);
        while let Some(chunk) = messages.next().await {
            let mut batch = Vec::with_capacity(chunk.len());
            for message in chunk {
                let message = match message {
                    Ok(message) => message,
                    Err(e) => return retry("lost the stream", &e),
                };
                let sequence = match message.info() {
                    Ok(info) => info.stream_sequence,
                    Err(e) => return retry("a message without its stream sequence", &e),
                };
                batch.push((sequence, message.message.payload.clone()));
            }
            // The ordered consumer delivers in order; a jump means the
            // messages between were removed from the stream.
            let expected = self.applied() + 1;
            if let Some(&(first, _)) = batch.first()
                && first != expected
            {
                if first < expected {
                    continue;
                }
                return Halt::Stale(self.stale(expected, first, first));
            }
            let applying = apply.clone();
            let outcomes = match tokio::task::spawn_blocking(move || applying(&batch)).await {
                Ok(Ok(outcomes)) => outcomes,
                Ok(Err(halt)) => return halt,
                Err(e) => return retry("the apply task failed", &e),
            };
            self.record(outcomes);
        }
        Halt::Retry("the stream's consumer ended".into())
    }

    /// Remembers what became of each message, then lets waiting requests see it.
    fn record(&self, outcomes: Vec<(u64, Outcome)>) {
        let Some(&(last, _)) = outcomes.last() else { return };
        {
            let mut status = self.status.lock().expect("status lock");
            for (sequence, outcome) in outcomes {
                status.attempts.remove(&sequence);
                status.outcomes.insert(sequence, outcome);
            }
            while status.outcomes.len() > RECENT_OUTCOMES {
                status.outcomes.pop_first();
            }
            status.stream_last = status.stream_last.max(last);
        }
        self.applied.send_replace(last);
    }

    /// Counts a machine-dependent failure of `sequence`: true once it has
    /// had [`MAX_ATTEMPTS`].
    pub(crate) fn give_up(&self, sequence: u64) -> bool {
        let mut status = self.status.lock().expect("status lock");
        let attempts = status.attempts.entry(sequence).or_insert(0);
        *attempts += 1;
        *attempts >= MAX_ATTEMPTS
    }

    fn stale(&self, next: u64, first: u64, last: u64) -> String {
        format!(
            "this replica's store has applied the replication log up to message {applied}, but stream `{stream}` \
             on {url} now holds messages {first}..={last}: message {next} is gone (trimmed by the stream's limits, \
             or the stream was recreated), so this store cannot catch up and serves nothing. Re-bootstrap it: run \
             `skewless backup --out FILE` in a healthy replica's repo, copy FILE to this repo's .skewless/store.redb, \
             and start `skewless serve --log` again",
            applied = next - 1,
            stream = self.settings.stream,
            url = self.settings.url,
        )
    }
}

/// Applies `messages` (consecutive, in stream order) to `store` through
/// the one push path, in one transaction that also records the position
/// and the messages skipped; a failed transaction is retried one message
/// at a time. `log` counts retries of machine-dependent failures.
pub(crate) fn apply(
    catalog: &Catalog,
    store: &Store,
    records: &BTreeMap<String, ViewRecord>,
    log: &Replication,
    messages: &[(u64, Bytes)],
) -> Result<Vec<(u64, Outcome)>, Halt> {
    let Some(&(last, _)) = messages.last() else {
        return Ok(Vec::new());
    };
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for (sequence, body) in messages {
        match prepare(catalog, store, records, body) {
            Ok(push) => prepared.push((*sequence, push)),
            Err(Failure::Deterministic(why)) => skipped.push((*sequence, why)),
            Err(Failure::Machine(why)) if log.give_up(*sequence) => {
                skipped.push((*sequence, format!("{why} ({MAX_ATTEMPTS} attempts)")))
            }
            Err(Failure::Machine(why)) => return Err(Halt::Retry(format!("message {sequence}: {why}"))),
        }
    }
    let position = LogPosition {
        sequence: last,
        skipped: skipped.clone(),
    };
    let copies = (prepared.len() > 1).then(|| prepared.clone());
    let mut writes: Vec<_> = prepared
        .iter_mut()
        .flat_map(|(_, push)| {
            let to = push.to;
            push.views.iter_mut().map(move |(record, rows)| (&*record, rows, to))
        })
        .collect();
    match store.write_views_at(&mut writes, Some(&position)) {
        Ok(commit) => {
            let mut outcomes: Vec<_> = prepared.iter().map(|(s, _)| (*s, Outcome::Applied(commit))).collect();
            outcomes.extend(skipped.into_iter().map(|(s, why)| (s, Outcome::Skipped(why))));
            outcomes.sort_by_key(|(s, _)| *s);
            Ok(outcomes)
        }
        Err(StoreError::AlreadyApplied { applied, .. }) => Err(Halt::Retry(format!(
            "the store already holds message {applied}; following again from there"
        ))),
        Err(e) if copies.is_some() => {
            tracing::debug!(
                "a batch of {} log messages failed ({e}); applying them one at a time",
                messages.len()
            );
            let mut outcomes = Vec::new();
            for message in messages {
                outcomes.extend(apply(catalog, store, records, log, std::slice::from_ref(message))?);
            }
            Ok(outcomes)
        }
        // One message whose commit fails: a user-defined aggregation that
        // traps on its events fails everywhere; anything else is this
        // machine's, retried before it is given up.
        Err(e) => {
            if !matches!(e, StoreError::Aggregator(_)) && !log.give_up(last) {
                return Err(Halt::Retry(e.to_string()));
            }
            let why = e.to_string();
            let position = LogPosition {
                sequence: last,
                skipped: vec![(last, why.clone())],
            };
            store
                .write_views_at(&mut [], Some(&position))
                .map_err(|e| Halt::Retry(e.to_string()))?;
            Ok(vec![(last, Outcome::Skipped(why))])
        }
    }
}

enum Failure {
    /// Fails the same way on every replica: record and skip.
    Deterministic(String),
    /// Depends on this machine: retry.
    Machine(String),
}

fn prepare(
    catalog: &Catalog,
    store: &Store,
    records: &BTreeMap<String, ViewRecord>,
    body: &[u8],
) -> Result<push::Prepared, Failure> {
    let request: PushRequest =
        serde_json::from_slice(body).map_err(|e| Failure::Deterministic(format!("not a push request: {e}")))?;
    push::prepare(
        catalog,
        store,
        records,
        &request.push_source_name,
        &request.df,
        request.to,
        None,
    )
    .map_err(|e| match &e {
        PushError::Store(_) => Failure::Machine(e.to_string()),
        PushError::Transform(t) if matches!(t.kind, TransformErrorKind::Timeout { .. }) => {
            Failure::Machine(e.to_string())
        }
        _ => Failure::Deterministic(e.to_string()),
    })
}
