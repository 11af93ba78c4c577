//! Replicated serving (`skewless serve --log nats://HOST:PORT`): many
//! servers, each with its own embedded store, fed by one log (a NATS
//! JetStream stream, behind the [`Log`] trait). A `/push` is published to
//! the log as one message; every replica, the receiving one included,
//! applies the log in order through the one push path ([`push::prepare`],
//! then [`commit_batch`], the batched commit pushes use on a single node).
//! The receiving replica keeps the push it prepared to check the request,
//! and applies that when it reaches the message: its transforms run once.
//!
//! Invariants, and where they are enforced:
//! - A message is applied once, across restarts and crashes: its stream
//!   sequence is written in the transaction that writes its rows, the store
//!   refuses a write that does not start right after the sequence it holds
//!   (`LogPosition::first`), and the applier always resumes after the
//!   stored sequence ([`Replication::follow`]).
//! - Messages apply in stream order with no gap. A gap (the stream was
//!   trimmed past what this store holds, or recreated) stops the replica:
//!   it answers 503 `stale_replica` rather than serve stale values
//!   ([`Phase::Stale`]), and says how to re-bootstrap.
//! - A message that fails the same way on every machine (malformed, an
//!   unknown source, a transform that traps or reports an error) is
//!   recorded and skipped in the transaction that covers it, so every
//!   replica skips the same ones. One that ran out of time or hit a store
//!   fault (which depend on the machine) is retried, and skipped only after
//!   [`MAX_ATTEMPTS`], with the reason recorded.

mod jetstream;
mod log;
#[cfg(test)]
mod memory;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use futures_util::StreamExt;
use skewless_runtime::push::{self, Prepared};
use skewless_runtime::store::{LogPosition, StreamPosition, ViewRecord};
use skewless_runtime::{Catalog, Store, StoreError};
use tokio::sync::watch;

use crate::api::PushRequest;
use crate::commit::{AfterFailure, Failure, commit_batch};
use crate::error::ApiError;
use crate::metrics::Metrics;
pub(crate) use log::{Bounds, Log, LogFault};
#[cfg(test)]
pub(crate) use memory::MemoryLog;

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

/// Outcomes of recent messages kept for the requests waiting on them.
const RECENT_OUTCOMES: usize = 100_000;

/// Most pushes, and rows in all, that this replica prepared and published
/// kept for the applier (which takes them within milliseconds; a replica
/// far behind prepares the rest again instead): bounds their memory.
const OWN_PUSHES: usize = 1_024;
const OWN_ROWS: usize = 100_000;

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

/// The replication side of a server: the log and where this replica
/// stands in it.
pub(crate) struct Replication {
    settings: LogSettings,
    log: Box<dyn Log>,
    /// The last sequence applied (from the store at start).
    applied: watch::Sender<u64>,
    status: Mutex<Status>,
    /// Pushes received here, prepared (checked, transformed, encoded) and
    /// published, by sequence: the applier commits these instead of
    /// preparing the message again. Only a non-duplicate publish is kept,
    /// so the message is exactly the body that was prepared.
    own: Mutex<HashMap<u64, Prepared>>,
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

impl Halt {
    pub(crate) fn why(&self) -> &str {
        match self {
            Halt::Retry(why) | Halt::Stale(why) => why,
        }
    }
}

impl Replication {
    /// Connects to the JetStream log at `settings.url` (in the background:
    /// a server starts while the log is down, and answers pushes 503 until
    /// it is up).
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
        let log = jetstream::JetStream::connect(&settings.url, &settings.stream)
            .await
            .map_err(fail)?;
        Ok(Replication::over(Box::new(log), settings, applied))
    }

    /// Replication over `log`, from message `applied + 1`.
    pub(crate) fn over(log: Box<dyn Log>, settings: LogSettings, applied: u64) -> Replication {
        Replication {
            log,
            applied: watch::Sender::new(applied),
            status: Mutex::new(Status {
                phase: Phase::Connecting("connecting to the log".into()),
                stream_last: 0,
                synced: false,
                outcomes: BTreeMap::new(),
                attempts: HashMap::new(),
            }),
            own: Mutex::new(HashMap::new()),
            settings,
        }
    }

    pub(crate) fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// The last sequence this replica applied.
    pub(crate) fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A store swapped in holds the log up to `sequence`: the applier goes
    /// on from there (a batch read for the old store is refused by the new
    /// one, and the log is followed again from here).
    pub(crate) fn swapped_in(&self, sequence: u64) {
        self.applied.send_if_modified(|applied| {
            let ahead = sequence > *applied;
            *applied = (*applied).max(sequence);
            ahead
        });
    }

    /// Publishes one push (`body`, as received) with de-duplication id
    /// `id`: JetStream stores a repeated id once (within its duplicate
    /// window, 2 minutes by default) and answers with the first sequence.
    /// Returns (sequence, duplicate) once JetStream has stored it.
    pub(crate) async fn publish(&self, id: &str, body: Bytes) -> Result<(u64, bool), ApiError> {
        let size = body.len();
        self.log.publish(id, body).await.map_err(|fault| match fault {
            LogFault::Unavailable(why) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "log_unavailable",
                message: format!(
                    "the replication log ({}) did not store the push ({why}); nothing is known to be stored: \
                     retry with the same body or Idempotency-Key, which is stored once",
                    self.log.describe()
                ),
            },
            LogFault::TooLarge { max } => ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!(
                    "the push is {size} bytes and the replication log ({}) takes messages up to {max} bytes \
                     (nats-server's max_payload): split it into smaller pushes, or raise max_payload",
                    self.log.describe()
                ),
            },
        })
    }

    /// Keeps `push`, prepared here from the body published as message
    /// `sequence` (not a duplicate), for the applier to commit.
    pub(crate) fn keep_own(&self, sequence: u64, push: Prepared) {
        let mut own = self.own.lock().expect("own pushes lock");
        let rows: usize = own.values().map(|kept| kept.rows).sum();
        if sequence > self.applied() && own.len() < OWN_PUSHES && rows + push.rows <= OWN_ROWS {
            own.insert(sequence, push);
        }
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
        F: Fn(&[(u64, Bytes)]) -> Applied + Send + Sync + 'static,
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
                if let Ok(bounds) = replication.log.bounds().await {
                    replication.observe(bounds.last, &metrics);
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

    /// Sets the replication gauges as of now (a scrape): the applied
    /// sequence as it is, the lag against the stream's last sequence as
    /// last polled. The poller's own figures may be [`LAG_POLL`] old, and a
    /// scrape right after a message was applied must not report it missing.
    pub(crate) fn refresh_metrics(&self, metrics: &Metrics) {
        let applied = self.applied();
        let stream_last = self.status.lock().expect("status lock").stream_last;
        metrics.replication(applied, stream_last.saturating_sub(applied));
    }

    fn set_phase(&self, phase: Phase) {
        self.status.lock().expect("status lock").phase = phase;
    }

    /// Follows the log from the message after the last applied, until
    /// something stops it.
    async fn follow<F>(&self, apply: Arc<F>) -> Halt
    where
        F: Fn(&[(u64, Bytes)]) -> Applied + Send + Sync + 'static,
    {
        let next = self.applied() + 1;
        let Bounds { first, last } = match self.log.bounds().await {
            Ok(bounds) => bounds,
            Err(why) => return Halt::Retry(why),
        };
        if last + 1 < next || (last >= next && first > next) {
            return Halt::Stale(self.stale(next, first, last));
        }
        let mut batches = match self.log.read_from(next, MAX_BATCH).await {
            Ok(batches) => batches,
            Err(why) => return Halt::Retry(why),
        };
        self.set_phase(Phase::Following);
        while let Some(batch) = batches.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(why) => return Halt::Retry(why),
            };
            // The log delivers in order; a jump means the messages between
            // were removed from it.
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
            let applied = match tokio::task::spawn_blocking(move || applying(&batch)).await {
                Ok(applied) => applied,
                Err(e) => return Halt::Retry(format!("the apply task failed: {e}")),
            };
            self.record(applied.outcomes);
            if let Some(halt) = applied.halt {
                return halt;
            }
        }
        Halt::Retry("the log's reader ended".into())
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
        self.own
            .lock()
            .expect("own pushes lock")
            .retain(|sequence, _| *sequence > last);
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

    /// Applies the log to `store` (a version about to be swapped in, which
    /// nothing else writes) with `apply` until it holds message `target`:
    /// the number of messages applied, or why it cannot.
    pub(crate) async fn catch_up(
        &self,
        store: &Arc<Store>,
        target: u64,
        apply: impl Fn(&Store, &[(u64, Bytes)]) -> Applied + Clone + Send + 'static,
    ) -> Result<u64, String> {
        let position = |store: &Store| store.log_sequence().map_err(|e| e.to_string());
        let start = position(store)?;
        let mut at = start;
        while at < target {
            let mut batches = self.log.read_from(at + 1, MAX_BATCH).await?;
            while at < target {
                let Some(batch) = batches.next().await else { break };
                let mut batch = batch?;
                batch.retain(|(sequence, _)| *sequence <= target);
                match batch.first() {
                    Some((first, _)) if *first == at + 1 => {}
                    _ => {
                        return Err(format!(
                            "the version holds the log up to message {at}, and {} no longer holds message {}: \
                             it cannot catch up; build it again from this store",
                            self.log.describe(),
                            at + 1
                        ));
                    }
                }
                let (applying, version) = (apply.clone(), store.clone());
                let applied = tokio::task::spawn_blocking(move || applying(&version, &batch))
                    .await
                    .map_err(|e| format!("the apply task failed: {e}"))?;
                if let Some(halt) = applied.halt {
                    return Err(halt.why().to_string());
                }
                at = position(store)?;
            }
        }
        Ok(at - start)
    }

    fn stale(&self, next: u64, first: u64, last: u64) -> String {
        format!(
            "this replica's store has applied the replication log up to message {applied}, but {log} now holds \
             messages {first}..={last}: message {next} is gone (trimmed by the stream's limits, or the stream was \
             recreated), so this store cannot catch up and serves nothing. Re-bootstrap it: run \
             `skewless backup --out FILE` in a healthy replica's repo, copy FILE to this repo's .skewless/store.redb, \
             and start `skewless serve --log` again",
            applied = next - 1,
            log = self.log.describe(),
        )
    }
}

/// Applies `messages` (consecutive, in log order) to `store` through the
/// one push path: each is prepared (or taken from the pushes this replica
/// prepared itself), then all are committed by [`commit_batch`] with the
/// log position and the messages skipped on the way.
pub(crate) fn apply(
    catalog: &Catalog,
    store: &Store,
    records: &BTreeMap<String, ViewRecord>,
    log: &Replication,
    messages: &[(u64, Bytes)],
) -> Applied {
    let Some(&(last, _)) = messages.last() else {
        return Applied {
            outcomes: Vec::new(),
            halt: None,
        };
    };
    let mut sequences = Vec::new();
    let mut pushes = Vec::new();
    let mut skipped = Vec::new();
    for (sequence, body) in messages {
        let own = log.own.lock().expect("own pushes lock").remove(sequence);
        match own.map_or_else(|| prepare(catalog, store, records, body), Ok) {
            Ok(push) => {
                sequences.push(*sequence);
                pushes.push(push);
            }
            Err(Failure::Deterministic(why)) => skipped.push((*sequence, why)),
            Err(Failure::Machine(why)) if log.give_up(*sequence) => {
                skipped.push((*sequence, format!("{why} ({MAX_ATTEMPTS} attempts)")))
            }
            Err(Failure::Machine(why)) => return Halt::Retry(format!("message {sequence}: {why}")).into(),
        }
    }
    let mut outcomes: Vec<(u64, Outcome)> = skipped
        .iter()
        .map(|(s, why)| (*s, Outcome::Skipped(why.clone())))
        .collect();
    if pushes.is_empty() {
        let position = LogPosition {
            first: messages[0].0,
            sequence: last,
            skipped,
        };
        return match store.write_views_at(&mut [], Some(&StreamPosition::Log(position))) {
            Ok(_) => Applied { outcomes, halt: None },
            Err(e) => Halt::Retry(e.to_string()).into(),
        };
    }
    // The messages a commit of pushes[range] covers: from its first push's
    // message (the batch's first message for the first push) up to the
    // next push's message (or the batch's last), with those skipped.
    let position = |range: std::ops::Range<usize>| {
        let first = if range.start == 0 {
            messages[0].0
        } else {
            sequences[range.start]
        };
        let sequence = sequences.get(range.end).map_or(last, |next| next - 1);
        let skipped = skipped
            .iter()
            .filter(|(s, _)| (first..=sequence).contains(s))
            .cloned()
            .collect();
        Some(LogPosition {
            first,
            sequence,
            skipped,
        })
    };
    let mut halt = None;
    // A message whose commit fails alone: a user-defined aggregation that
    // traps on its events fails everywhere, so it is recorded and skipped;
    // anything else is this machine's, retried before it is given up.
    let failed = |i: usize, error: &StoreError| {
        let sequence = sequences[i];
        if matches!(error, StoreError::AlreadyApplied { .. } | StoreError::LogGap { .. }) {
            halt = Some(Halt::Retry(format!("{error}; following again from there")));
            return AfterFailure::Stop;
        }
        if !matches!(error, StoreError::Aggregator(_)) && !log.give_up(sequence) {
            halt = Some(Halt::Retry(error.to_string()));
            return AfterFailure::Stop;
        }
        let Some(mut at) = position(i..i + 1) else {
            unreachable!("a replicated commit has a position")
        };
        at.skipped.push((sequence, error.to_string()));
        at.skipped.sort_by_key(|(s, _)| *s);
        match store.write_views_at(&mut [], Some(&StreamPosition::Log(at))) {
            Ok(_) => AfterFailure::Continue,
            Err(e) => {
                halt = Some(Halt::Retry(e.to_string()));
                AfterFailure::Stop
            }
        }
    };
    let results = commit_batch(
        store,
        &mut pushes,
        |range| position(range).map(StreamPosition::Log),
        failed,
    );
    // After a stop at push k, the store holds the messages before it (the
    // position of push k - 1 reaches them), or none of the batch when k is
    // 0: only their outcomes are known.
    let cutoff = match (&halt, results.len() - 1) {
        (None, _) => u64::MAX,
        (Some(_), 0) => messages[0].0,
        (Some(_), stopped) => sequences[stopped],
    };
    outcomes.extend(sequences.iter().zip(results).map(|(sequence, result)| match result {
        Ok(commit) => (*sequence, Outcome::Applied(commit)),
        Err(error) => (*sequence, Outcome::Skipped(error.to_string())),
    }));
    outcomes.retain(|(sequence, _)| *sequence < cutoff);
    outcomes.sort_by_key(|(s, _)| *s);
    Applied { outcomes, halt }
}

/// What [`apply`] did: the outcome of each message the store now holds, in
/// order, and why it stopped early, if it did.
pub(crate) struct Applied {
    pub outcomes: Vec<(u64, Outcome)>,
    pub halt: Option<Halt>,
}

impl From<Halt> for Applied {
    fn from(halt: Halt) -> Applied {
        Applied {
            outcomes: Vec::new(),
            halt: Some(halt),
        }
    }
}

/// A log message as a prepared push, or why it cannot be one.
pub(crate) fn prepare(
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
    .map_err(Failure::from)
}
