//! Group commit for pushes. A durable redb commit waits for the disk
//! (an fsync, about a millisecond here), and redb takes one write
//! transaction at a time, so pushes committed one by one queue behind each
//! other's fsyncs. Instead, requests prepare their rows in parallel (checks,
//! transform calls, encoding) and hand them to one committer thread, which
//! writes everything waiting in one transaction and answers each request
//! once it is durable. One push alone still costs one commit; sixteen at
//! once cost one commit, not sixteen.
//!
//! [`commit_batch`] is the one batched durable write: the committer thread
//! uses it for pushes to a single node, the replication applier for the
//! log's messages and the Kafka consumer for records (with their position).

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use skewless_runtime::TransformErrorKind;
use skewless_runtime::push::{Prepared, PushError};
use skewless_runtime::store::StreamPosition;
use skewless_runtime::{Store, StoreError};
use tokio::sync::oneshot;

use crate::live::LiveStore;

/// Most pushes in one transaction: bounds the work a failed commit undoes.
const MAX_BATCH: usize = 256;

/// The outcome of one push's commit: the commit number, and how long the
/// transaction took.
pub type CommitResult = Result<(u64, Duration), Arc<StoreError>>;

struct Job {
    push: Prepared,
    reply: oneshot::Sender<(Prepared, CommitResult)>,
}

/// The committer thread and the queue to it.
pub struct Committer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread over the live store.
    pub fn start(live: Arc<LiveStore>) -> Committer {
        let (queue, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("skewless-commit".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    live.write(|store| commit(store, batch));
                }
            })
            .expect("the committer thread starts");
        Committer {
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    /// Queues `push` and waits (asynchronously) until it is durable.
    pub async fn commit(&self, push: Prepared) -> (Prepared, CommitResult) {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().expect("open until dropped");
        if queue.send(Job { push, reply }).is_err() {
            unreachable!("the committer thread lives as long as the queue");
        }
        answer.await.expect("the committer answers every job")
    }
}

impl Drop for Committer {
    /// Lets the thread finish what is queued, then waits for it, so the
    /// store is closed when the server is.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every job waiting, in one transaction; each request gets its push back
/// with its own result.
fn commit(store: &Store, batch: Vec<Job>) {
    let started = Instant::now();
    let (mut pushes, replies): (Vec<Prepared>, Vec<_>) = batch.into_iter().map(|job| (job.push, job.reply)).unzip();
    let results = commit_batch(store, &mut pushes, |_| None, |_, _| AfterFailure::Continue);
    let elapsed = started.elapsed();
    for ((push, reply), result) in pushes.into_iter().zip(replies).zip(results) {
        // A request that gave up (client gone) no longer listens: nothing to do.
        let _ = reply.send((push, result.map(|commit| (commit, elapsed))));
    }
}

/// Why a push from a stream (a log message, Kafka records) could not be
/// prepared, as the appliers must treat it.
pub(crate) enum Failure {
    /// Fails the same way on every machine and every try (malformed, a
    /// wrong type, a transform that traps): record and skip.
    Deterministic(String),
    /// Depends on this machine (a store fault, a transform out of time):
    /// retry.
    Machine(String),
}

impl From<PushError> for Failure {
    fn from(error: PushError) -> Self {
        match &error {
            PushError::Store(_) => Failure::Machine(error.to_string()),
            PushError::Transform(t) if matches!(t.kind, TransformErrorKind::Timeout { .. }) => {
                Failure::Machine(error.to_string())
            }
            _ => Failure::Deterministic(error.to_string()),
        }
    }
}

/// What [`commit_batch`] does after a push failed when committed alone.
pub(crate) enum AfterFailure {
    /// Go on with the next push.
    Continue,
    /// Commit nothing more: the remaining pushes get no result.
    Stop,
}

/// Commits `pushes` in one durable transaction, with `position(range)`
/// recorded in it when they come from a stream (the replication log's or
/// a Kafka partition's position after `pushes[range]`).
///
/// Poison isolation: a transaction that fails with more than one push is
/// retried one push at a time, in order, from copies (a write consumes what
/// it writes), so one push whose commit fails (a user-defined aggregation
/// that traps on its events) fails alone. `failed(i, error)` is called for
/// each push that fails alone, and says whether to go on. Returns each
/// push's commit number, in order; shorter than `pushes` when stopped.
pub(crate) fn commit_batch(
    store: &Store,
    pushes: &mut [Prepared],
    position: impl Fn(Range<usize>) -> Option<StreamPosition>,
    mut failed: impl FnMut(usize, &StoreError) -> AfterFailure,
) -> Vec<Result<u64, Arc<StoreError>>> {
    let copies: Option<Vec<Prepared>> = (pushes.len() > 1).then(|| pushes.to_vec());
    let all = write(store, pushes, position(0..pushes.len()).as_ref());
    let Some(copies) = copies.filter(|_| all.is_err()) else {
        if let (Err(error), 1) = (&all, pushes.len()) {
            failed(0, error);
        }
        return vec![all.map_err(Arc::new); pushes.len()];
    };
    tracing::debug!(
        "a batch of {} pushes failed to commit ({}); committing them one at a time",
        pushes.len(),
        all.unwrap_err()
    );
    let mut results = Vec::with_capacity(pushes.len());
    for (i, (push, copy)) in pushes.iter_mut().zip(copies).enumerate() {
        *push = copy;
        let result = write(store, std::slice::from_mut(push), position(i..i + 1).as_ref());
        let stop = match &result {
            Err(error) => matches!(failed(i, error), AfterFailure::Stop),
            Ok(_) => false,
        };
        results.push(result.map_err(Arc::new));
        if stop {
            break;
        }
    }
    results
}

/// `pushes` in one transaction, at `position`.
fn write(store: &Store, pushes: &mut [Prepared], position: Option<&StreamPosition>) -> Result<u64, StoreError> {
    let mut writes: Vec<_> = pushes
        .iter_mut()
        .flat_map(|push| {
            let to = push.to;
            push.views.iter_mut().map(move |(record, rows)| (&*record, rows, to))
        })
        .collect();
    store.write_views_at(&mut writes, position)
}
