//! Fresh instances made ahead of need, and dropped off the caller's path.
//!
//! Every guest call runs on an instance nobody has called, and no instance
//! is ever called twice ([`crate::determinism`]). This module changes only
//! *when* that costs: making an instance (a pool slot, the start functions)
//! and dropping one (the pool resets the slot's memory) were a third of a
//! 1-row call. One background thread per engine, the [`InstanceWorker`],
//! now does both: after a call takes an instance it refills the view's
//! [`FreshInstances`] up to [`INSTANCES_AHEAD`], and the taken instance
//! comes back to it to be dropped.
//!
//! Invariants, enforced here:
//! - An instance in `ready` has never been called: [`FreshInstances::take`]
//!   removes it, and a [`Taken`] cannot be put back, only dropped.
//! - At most [`INSTANCES_AHEAD`] per view and [`AHEAD_BUDGET`] per engine
//!   wait made ahead, so they hold a bounded share of the pool's slots.
//! - A caller never waits for the worker: with nothing ready it makes its
//!   own instance, as every call used to; with too many drops queued it
//!   drops its own, so used slots go back to the pool in bounded time.
//! - Under a capped address space, and in a forked child (where the thread
//!   is gone), the worker is [`InstanceWorker::inline`]: nothing is made
//!   ahead or queued, since each instance held reserves address space the
//!   cap may not have (a Spark worker under `spark.executor.pyspark.memory`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use wasmtime::Store;

use crate::limits::{MAX_CONCURRENT_CALLS, ticks};
use crate::sandbox::HostState;

/// Instances made ahead per loaded view: enough for a request and the one
/// right after it; more would hold pool slots for views that sit idle.
pub(crate) const INSTANCES_AHEAD: usize = 2;

/// Instances made ahead per engine, at most: a quarter of the pool, so
/// made-ahead instances of many views never starve the calls themselves.
pub(crate) const AHEAD_BUDGET: usize = MAX_CONCURRENT_CALLS as usize / 4;

/// Used instances queued for the worker to drop, at most; past it a
/// caller drops its own (the slot must go back to the pool).
const MAX_QUEUED_DROPS: usize = 32;

/// A store and the instance made in it.
pub(crate) struct Made<I> {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: I,
}

/// Work for the [`InstanceWorker`].
enum Job {
    /// Make instances ahead for a view, if it is still loaded.
    Refill(Weak<dyn Refill>),
    /// Drop a used instance (its store resets the pool slot).
    Drop(Box<dyn Send>),
}

trait Refill: Send + Sync {
    fn refill(&self);
}

/// The background thread of one engine, and what it holds.
pub(crate) struct InstanceWorker {
    /// `None` for an inline worker: callers make and drop their own.
    jobs: Option<Mutex<Sender<Job>>>,
    /// The process that started the thread; a forked child has no thread.
    pid: u32,
    /// Instances made ahead and not yet taken, over every view.
    held: AtomicUsize,
    /// Drops sent and not yet done.
    queued_drops: AtomicUsize,
}

impl InstanceWorker {
    /// Starts the thread. It ends when the last holder of the worker is gone.
    pub(crate) fn start() -> std::io::Result<Arc<InstanceWorker>> {
        let (sender, receiver) = channel::<Job>();
        let worker = Arc::new(InstanceWorker {
            jobs: Some(Mutex::new(sender)),
            pid: std::process::id(),
            held: AtomicUsize::new(0),
            queued_drops: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&worker);
        std::thread::Builder::new()
            .name("skewless-instances".into())
            .spawn(move || {
                for job in receiver {
                    match job {
                        Job::Drop(used) => {
                            drop(used);
                            if let Some(worker) = weak.upgrade() {
                                worker.queued_drops.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        Job::Refill(view) => {
                            if let Some(view) = view.upgrade() {
                                view.refill();
                            }
                        }
                    }
                }
            })?;
        Ok(worker)
    }

    /// A worker without a thread: every call makes and drops its own
    /// instance, and nothing is held between calls.
    pub(crate) fn inline() -> Arc<InstanceWorker> {
        Arc::new(InstanceWorker {
            jobs: None,
            pid: std::process::id(),
            held: AtomicUsize::new(0),
            queued_drops: AtomicUsize::new(0),
        })
    }

    /// Queues `job`, or gives it back when there is no thread to run it:
    /// an inline worker, or a forked child of the process that had one.
    fn send(&self, job: Job) -> Result<(), Job> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        if std::process::id() != self.pid {
            return Err(job);
        }
        jobs.lock().expect("a send does not panic").send(job).map_err(|e| e.0)
    }

    /// Hands a used instance to the thread to drop, or drops it here if
    /// the thread is behind (or gone).
    fn retire(&self, used: Box<dyn Send>) {
        if self.queued_drops.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_DROPS {
            self.queued_drops.fetch_sub(1, Ordering::Relaxed);
            drop(used);
            return;
        }
        if let Err(job) = self.send(Job::Drop(used)) {
            self.queued_drops.fetch_sub(1, Ordering::Relaxed);
            drop(job);
        }
    }

    /// Counts one more instance made ahead, if the engine's budget allows.
    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < AHEAD_BUDGET).then_some(held + 1)
            })
            .is_ok()
    }

    fn release(&self, count: usize) {
        self.held.fetch_sub(count, Ordering::AcqRel);
    }
}

type NewStore = Box<dyn Fn() -> Store<HostState> + Send + Sync>;
type Instantiate<I> = Box<dyn Fn(&mut Store<HostState>) -> wasmtime::Result<I> + Send + Sync>;

/// One view's (or one aggregation function's) instances made ahead.
pub(crate) struct FreshInstances<I: Send + 'static> {
    worker: Arc<InstanceWorker>,
    /// Made ahead, never called.
    ready: Mutex<Vec<Made<I>>>,
    /// A refill is queued and not started: one is enough.
    refill_queued: AtomicBool,
    /// A store under the view's own limits (its deadline is reset when taken).
    new_store: NewStore,
    instantiate: Instantiate<I>,
    this: Weak<FreshInstances<I>>,
}

impl<I: Send + 'static> FreshInstances<I> {
    pub(crate) fn new(
        worker: &Arc<InstanceWorker>,
        new_store: impl Fn() -> Store<HostState> + Send + Sync + 'static,
        instantiate: impl Fn(&mut Store<HostState>) -> wasmtime::Result<I> + Send + Sync + 'static,
    ) -> Arc<FreshInstances<I>> {
        Arc::new_cyclic(|this| FreshInstances {
            worker: worker.clone(),
            ready: Mutex::new(Vec::new()),
            refill_queued: AtomicBool::new(false),
            new_store: Box::new(new_store),
            instantiate: Box::new(instantiate),
            this: this.clone(),
        })
    }

    /// An instance no one has called, its deadline `timeout` from now: one
    /// made ahead, or else one made here. Asks the worker to make more.
    /// On failure, the error and the store it happened in (to name a trap).
    pub(crate) fn take(&self, timeout: Duration) -> Result<Taken<I>, (wasmtime::Error, Store<HostState>)> {
        let ahead = self.ready.lock().expect("no panic while held").pop();
        if ahead.is_some() {
            self.worker.release(1);
        }
        self.ask_refill();
        let Some(mut made) = ahead else {
            return self.take_one_off(timeout);
        };
        made.store.set_epoch_deadline(ticks(timeout));
        Ok(Taken {
            made: Some(made),
            worker: self.worker.clone(),
        })
    }

    /// An instance made here for the caller, without asking for more: a
    /// load's `describe` should not make instances for a view never called.
    pub(crate) fn take_one_off(&self, timeout: Duration) -> Result<Taken<I>, (wasmtime::Error, Store<HostState>)> {
        let mut store = (self.new_store)();
        store.set_epoch_deadline(ticks(timeout));
        match (self.instantiate)(&mut store) {
            Ok(instance) => Ok(Taken {
                made: Some(Made { store, instance }),
                worker: self.worker.clone(),
            }),
            Err(e) => Err((e, store)),
        }
    }

    fn ask_refill(&self) {
        if self.refill_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let this: Weak<dyn Refill> = self.this.clone();
        if self.worker.send(Job::Refill(this)).is_err() {
            self.refill_queued.store(false, Ordering::Release);
        }
    }

    /// Instances waiting, made ahead.
    #[cfg(test)]
    fn ready_count(&self) -> usize {
        self.ready.lock().expect("no panic while held").len()
    }
}

impl<I: Send + 'static> Refill for FreshInstances<I> {
    fn refill(&self) {
        self.refill_queued.store(false, Ordering::Release);
        while self.ready.lock().expect("no panic while held").len() < INSTANCES_AHEAD {
            if !self.worker.reserve() {
                return;
            }
            let mut store = (self.new_store)();
            match (self.instantiate)(&mut store) {
                Ok(instance) => self
                    .ready
                    .lock()
                    .expect("no panic while held")
                    .push(Made { store, instance }),
                // The caller makes its own and sees the error there.
                Err(_) => {
                    self.worker.release(1);
                    return;
                }
            }
        }
    }
}

impl<I: Send + 'static> Drop for FreshInstances<I> {
    fn drop(&mut self) {
        let ready = self.ready.get_mut().map(|r| r.len()).unwrap_or(0);
        self.worker.release(ready);
    }
}

/// An instance taken for one call. Dropping it hands it to the worker.
pub(crate) struct Taken<I: Send + 'static> {
    made: Option<Made<I>>,
    worker: Arc<InstanceWorker>,
}

impl<I: Send + 'static> std::ops::Deref for Taken<I> {
    type Target = Made<I>;
    fn deref(&self) -> &Made<I> {
        self.made.as_ref().expect("present until dropped")
    }
}

impl<I: Send + 'static> std::ops::DerefMut for Taken<I> {
    fn deref_mut(&mut self) -> &mut Made<I> {
        self.made.as_mut().expect("present until dropped")
    }
}

impl<I: Send + 'static> Drop for Taken<I> {
    fn drop(&mut self) {
        if let Some(made) = self.made.take() {
            self.worker.retire(Box::new(made));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// Instances numbered in the order they were made, on one engine.
    fn numbered(worker: &Arc<InstanceWorker>) -> (Arc<FreshInstances<u64>>, Arc<AtomicU64>) {
        let engine = wasmtime::Engine::default();
        let made = Arc::new(AtomicU64::new(0));
        let counter = made.clone();
        let fresh = FreshInstances::new(
            worker,
            move || Store::new(&engine, HostState::new(&Limits::default())),
            move |_| Ok(counter.fetch_add(1, Ordering::SeqCst)),
        );
        (fresh, made)
    }

    fn take(fresh: &FreshInstances<u64>) -> Taken<u64> {
        match fresh.take(Duration::from_secs(1)) {
            Ok(taken) => taken,
            Err((e, _)) => panic!("{e:#}"),
        }
    }

    fn wait_until(what: &str, ok: impl Fn() -> bool) {
        let started = Instant::now();
        while !ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn no_instance_is_taken_twice_and_the_view_is_refilled_after_a_take() {
        let worker = InstanceWorker::start().unwrap();
        let (fresh, made) = numbered(&worker);
        // Nothing is made ahead until the first call.
        assert_eq!(fresh.ready_count(), 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let taken = take(&fresh);
            assert!(seen.insert(taken.instance), "instance {} taken twice", taken.instance);
        }
        wait_until("the view holds its instances made ahead", || {
            fresh.ready_count() == INSTANCES_AHEAD
        });
        assert_eq!(made.load(Ordering::SeqCst), seen.len() as u64 + INSTANCES_AHEAD as u64);
        // Taken from those made ahead, never the same one again.
        for _ in 0..INSTANCES_AHEAD {
            let taken = take(&fresh);
            assert!(seen.insert(taken.instance), "instance {} taken twice", taken.instance);
        }
    }

    #[test]
    fn instances_made_ahead_stay_within_the_engine_budget_and_are_released_with_their_view() {
        let worker = InstanceWorker::start().unwrap();
        let views: Vec<_> = (0..AHEAD_BUDGET).map(|_| numbered(&worker).0).collect();
        for view in &views {
            drop(take(view));
        }
        let held = || views.iter().map(|v| v.ready_count()).sum::<usize>();
        wait_until("the budget is spent", || held() == AHEAD_BUDGET);
        wait_until("every refill ran", || {
            views.iter().all(|v| !v.refill_queued.load(Ordering::Acquire))
                && worker.queued_drops.load(Ordering::Acquire) == 0
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(held(), AHEAD_BUDGET, "made ahead over every view, at most");
        assert_eq!(worker.held.load(Ordering::Acquire), AHEAD_BUDGET);
        drop(views);
        assert_eq!(
            worker.held.load(Ordering::Acquire),
            0,
            "a dropped view gives its budget back"
        );
    }

    #[test]
    fn an_inline_worker_holds_no_instance_between_calls() {
        let worker = InstanceWorker::inline();
        let (fresh, made) = numbered(&worker);
        for expected in 0..5 {
            let taken = take(&fresh);
            assert_eq!(taken.instance, expected, "each call makes its own");
        }
        assert_eq!(made.load(Ordering::SeqCst), 5, "nothing made ahead");
        assert_eq!(fresh.ready_count(), 0);
        assert_eq!(worker.queued_drops.load(Ordering::Acquire), 0, "dropped inline");
        assert!(!fresh.refill_queued.load(Ordering::Acquire));
    }

    #[test]
    fn a_failing_instantiation_is_the_callers_error_and_nothing_is_held() {
        let worker = InstanceWorker::start().unwrap();
        let engine = wasmtime::Engine::default();
        let fresh: Arc<FreshInstances<u64>> = FreshInstances::new(
            &worker,
            move || Store::new(&engine, HostState::new(&Limits::default())),
            |_| Err(wasmtime::format_err!("start function trapped")),
        );
        for _ in 0..3 {
            let Err((error, _store)) = fresh.take(Duration::from_secs(1)) else {
                panic!("an instance from a failing instantiation");
            };
            assert!(error.to_string().contains("start function trapped"), "{error}");
        }
        wait_until("the refill gave up", || {
            !fresh.refill_queued.load(Ordering::Acquire) && worker.held.load(Ordering::Acquire) == 0
        });
        assert_eq!(fresh.ready_count(), 0);
        assert_eq!(worker.held.load(Ordering::Acquire), 0);
    }
}
