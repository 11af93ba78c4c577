//! The live store of a server, replaceable whole while requests run
//! ([`crate::Server::swap_store`]).
//!
//! Invariants, enforced here:
//! - a request takes the current store once ([`LiveStore::current`]) and
//!   reads it throughout, so it never mixes two versions;
//! - every commit (group commit, the replication applier) runs under the
//!   writer lock ([`LiveStore::write`]) on the store current at that
//!   moment, and a swap replaces the store under the same lock: no commit
//!   lands in a store that is being replaced;
//! - a read snapshot keeps its store open ([`LiveStore::reader`]): redb
//!   closes a database when its handle is dropped, and a read transaction
//!   of a closed one fails (`DatabaseClosed`). A snapshot taken just
//!   before a swap, still read after it, reads the replaced store.

use std::sync::{Arc, RwLock};

use skewless_runtime::Store;
use skewless_runtime::store::{StoreError, StoreReader};
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

    /// A read snapshot of the store now, which keeps that store open for as
    /// long as it lives (the module's invariant).
    pub(crate) fn reader(&self) -> Result<LiveReader, StoreError> {
        let store = self.current();
        let reader = store.reader()?;
        Ok(LiveReader { reader, _store: store })
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

/// A read snapshot and the store it reads, held open by it.
pub struct LiveReader {
    reader: StoreReader,
    // Dropped after `reader` (fields drop in order): the store outlives its
    // last read.
    _store: Arc<Store>,
}

impl std::ops::Deref for LiveReader {
    type Target = StoreReader;

    fn deref(&self) -> &StoreReader {
        &self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skewless_runtime::Workspace;

    /// A store with one applied view (an aggregation view: no component).
    fn applied_store(dir: &std::path::Path) -> (Store, skewless_runtime::store::ViewRecord) {
        std::fs::write(
            dir.join("skewless.toml"),
            "project = \"p\"\n[entities.card]\njoin_keys = { card_id = \"utf8\" }\n\
             [sources.events]\ntype = \"file\"\npath = \"events.parquet\"\n\
             [views.activity]\nkind = \"aggregation\"\nentities = [\"card\"]\nsource = \"events\"\n\
             inputs = { event_timestamp = \"timestamp\" }\n\
             aggregations = [{ name = \"n\", function = \"count\", window = \"1h\" }]\n",
        )
        .unwrap();
        let workspace = Workspace::create(dir).unwrap();
        workspace.apply(workspace.plan(&Default::default()).unwrap()).unwrap();
        drop(workspace);
        let store = Store::open_existing(&dir.join(".skewless/store.redb")).unwrap();
        let record = store.views().unwrap().remove("activity").unwrap();
        // Rows over many pages, so a read goes to the file, not to a page
        // an open table holds.
        let mut rows = skewless_runtime::store::PendingRows::default();
        for card in 0..20_000 {
            let key = |out: &mut Vec<u8>| out.extend_from_slice(format!("card{card:05}").as_bytes());
            rows.add(3_600_000_000, 1, 1, 0, 1, key, |row| row.null());
        }
        let mut pending = skewless_runtime::store::Pending::Rows(rows);
        let to = skewless_runtime::store::WriteTo::Online;
        store.write(&record, &mut pending, to).unwrap();
        (store, record)
    }

    #[test]
    fn a_snapshot_taken_before_a_swap_reads_on_after_the_replaced_store_is_dropped() {
        let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (old, record) = applied_store(old_dir.path());
        let live = LiveStore::new(old);
        let snapshot = live.reader().unwrap();
        let (new, _) = applied_store(new_dir.path());
        let writing = live.writing.clone().try_lock_owned().unwrap();
        // The server drops the replaced store at once; requests hold their own.
        drop(live.replace(&writing, new));
        // Without the snapshot's hold on its store, redb has closed the
        // file and this read fails with `DatabaseClosed`.
        for card in (0..20_000).step_by(997) {
            let key = format!("card{card:05}");
            let row = snapshot.latest(&record, key.as_bytes()).unwrap();
            assert_eq!(row.map(|r| r.event_time), Some(1), "{key}");
        }
    }
}
