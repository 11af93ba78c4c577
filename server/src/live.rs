//! The live store of a server, replaceable whole while requests run
//! ([`crate::Server::swap_store`]).
//!
//! Invariants, enforced here:
//! - a request takes the current store once ([`LiveStore::current`]) and
//!   reads it throughout, so it never mixes two versions;
//! - every commit (group commit, the replication applier) runs under the
//!   writer lock ([`LiveStore::write`]) on the store current at that
//!   moment, and a swap replaces the store under the same lock: no commit
//!   lands in a store that is being replaced.

use std::sync::{Arc, RwLock};

use skewless_runtime::Store;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The store a server serves, and the lock its writers share.
pub(crate) struct LiveStore {
    current: RwLock<Arc<Store>>,
    writing: Arc<Mutex<()>>,
    swapping: Mutex<()>,
}

impl LiveStore {
    pub(crate) fn new(store: Store) -> LiveStore {
        LiveStore {
            current: RwLock::new(Arc::new(store)),
            writing: Arc::new(Mutex::new(())),
            swapping: Mutex::new(()),
        }
    }

    /// The store now; a swap does not disturb a request that holds it.
    pub(crate) fn current(&self) -> Arc<Store> {
        self.current.read().expect("live store lock").clone()
    }

    /// Runs `commit` on the current store under the writer lock. Call from
    /// a thread that may block (the committer, tokio's blocking pool).
    pub(crate) fn write<T>(&self, commit: impl FnOnce(&Store) -> T) -> T {
        let _writing = self.writing.blocking_lock();
        commit(&self.current())
    }

    /// Waits until no other swap runs.
    pub(crate) async fn lock_swaps(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.swapping.lock().await
    }

    /// Waits for the writer lock, for a swap.
    pub(crate) async fn lock_writers(&self) -> OwnedMutexGuard<()> {
        self.writing.clone().lock_owned().await
    }

    /// Makes `store` current; the caller holds the writer lock. Returns the
    /// store it replaces, which requests still holding it go on reading.
    pub(crate) fn replace(&self, _writing: &OwnedMutexGuard<()>, store: Store) -> Arc<Store> {
        std::mem::replace(&mut *self.current.write().expect("live store lock"), Arc::new(store))
    }
}
