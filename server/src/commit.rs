//! Group commit for pushes. A durable redb commit waits for the disk
//! (an fsync, about a millisecond here), and redb takes one write
//! transaction at a time, so pushes committed one by one queue behind each
//! other's fsyncs. Instead, requests prepare their rows in parallel (checks,
//! transform calls, encoding) and hand them to one committer thread, which
//! writes everything waiting in one transaction and answers each request
//! once it is durable. One push alone still costs one commit; sixteen at
//! once cost one commit, not sixteen.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use skewless_runtime::push::Prepared;
use skewless_runtime::{Store, StoreError};
use tokio::sync::oneshot;

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
    /// Starts the committer thread over `store`.
    pub fn start(store: Arc<Store>) -> Committer {
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
                    commit(&store, batch);
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

fn commit(store: &Store, mut batch: Vec<Job>) {
    // A push whose commit fails (a user-defined aggregation function that
    // traps on its events) must not fail the pushes committed with it: a
    // failed batch is retried one push at a time, from copies (a write
    // consumes what it writes).
    let copies: Option<Vec<Prepared>> = (batch.len() > 1).then(|| batch.iter().map(|job| job.push.clone()).collect());
    let started = Instant::now();
    let result = write(store, &mut batch);
    if result.is_err()
        && let Some(copies) = copies
    {
        for (mut job, copy) in batch.into_iter().zip(copies) {
            job.push = copy;
            commit(store, vec![job]);
        }
        return;
    }
    let result = result.map(|commit| (commit, started.elapsed())).map_err(Arc::new);
    for job in batch {
        // A request that gave up (client gone) no longer listens: nothing to do.
        let _ = job.reply.send((job.push, result.clone()));
    }
}

/// Every push of `batch` in one transaction.
fn write(store: &Store, batch: &mut [Job]) -> Result<u64, StoreError> {
    let mut writes: Vec<_> = batch
        .iter_mut()
        .flat_map(|job| {
            let to = job.push.to;
            job.push
                .views
                .iter_mut()
                .map(move |(record, rows)| (&*record, rows, to))
        })
        .collect();
    store.write_views(&mut writes)
}
