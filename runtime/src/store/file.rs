//! The store file: its tables, its format version, opening it, and the
//! two transaction helpers ([`Store::read`], [`Store::write_txn`]) every
//! other file of the store goes through, so redb's errors are mapped in
//! one place ([`Failure::at`]).

use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};

use super::error::{Failure, StoreError};
use crate::format::FORMAT_VERSION;

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const REGISTRY: TableDefinition<&str, &str> = TableDefinition::new("registry");
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(super) const DIGESTS: TableDefinition<u32, &[u8]> = TableDefinition::new("digests");
pub(super) const DIGEST_IDS: TableDefinition<&[u8], u32> = TableDefinition::new("digest_ids");
pub(super) const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
pub(super) const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
/// Events and tiles of aggregation views ([`crate::aggregate::layout`]).
pub(super) const AGGREGATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("aggregates");
/// Where each keyed event is (`aggregate::layout::id_key` -> its event
/// time), for sources with an `event_id_column`: a correction that moves an
/// event to another time removes it from its old hour in the same commit.
pub(super) const EVENT_IDS: TableDefinition<&[u8], i64> = TableDefinition::new("event_ids");
/// Each materialized view's feature statistics as of its last commit
/// (view id -> [`crate::stats::Statistics::to_json`]), updated in the transaction that
/// writes its rows, from the rows that transaction added or changed.
pub(super) const STATS: TableDefinition<u32, &str> = TableDefinition::new("stats");
/// Replicated serving: messages of the replication log that were recorded
/// and skipped (stream sequence → why), identically on every replica.
pub(super) const SKIPPED: TableDefinition<u64, &str> = TableDefinition::new("skipped_messages");
/// Kafka sources: the next offset to read per (source, partition),
/// written with the rows of the records before it ([`super::topics`]).
pub(super) const TOPIC_OFFSETS: TableDefinition<(&str, i32), u64> = TableDefinition::new("topic_offsets");
/// Kafka sources: records recorded and skipped ((source, partition,
/// offset) → why).
pub(super) const SKIPPED_RECORDS: TableDefinition<(&str, i32, u64), &str> = TableDefinition::new("skipped_records");
/// Key in `counters`: the number of the last commit that wrote values.
pub(super) const COMMITS: &str = "commits";

/// The tables every store has from its creation (the others are made by
/// the first write that needs them).
pub(super) const CREATED_TABLES: [&str; 7] = [
    "registry",
    "counters",
    "digests",
    "digest_ids",
    "history",
    "latest",
    "aggregates",
];

/// Space kept free on the store's file system: a write transaction does
/// not begin below it (`SKEWLESS_MIN_FREE_BYTES` overrides it). redb fails
/// every later operation, reads included, once a write has hit a full disk
/// (until the file is reopened), so the check must come first, and the
/// reserve must exceed what one transaction writes: a push, kilobytes; a
/// backfill commit of the default 1M rows, about 50 MB for driver_stats and
/// about 140 MB for an aggregation view's events (`--rows-per-commit` lowers it).
pub const MIN_FREE_BYTES: u64 = 256 << 20;

/// The statistics a store last wrote for each view (by id), parsed, with
/// the text written. Every commit merges into a view's statistics; parsing
/// their text again (sketches of tens of kilobytes) cost a push more than
/// the rest of its commit, so a commit whose stored text is the one kept
/// here starts from the parsed copy (`statistics::add`). Invariant: a kept entry is used only
/// when the stored text equals its text byte for byte, so a write by
/// another process, or a transaction that did not commit, falls back to
/// parsing.
pub(super) type KeptStatistics = std::sync::Mutex<std::collections::HashMap<u32, (String, crate::stats::Statistics)>>;

/// The vector indexes of one store ([`super::indexes`] keeps them), by
/// view name and feature position.
pub(super) type Indexes = std::sync::Mutex<std::collections::HashMap<(String, usize), Kept>>;

/// One kept vector index and what it reflects ([`super::indexes`] has the
/// invariant).
pub(super) struct Kept {
    /// The view's storage id when built: another id (a re-apply) rebuilds.
    pub(super) view_id: u32,
    /// The view's last commit reflected.
    pub(super) seen: u64,
    pub(super) index: std::sync::Arc<std::sync::RwLock<crate::search::VectorIndex>>,
}

/// The embedded store.
pub struct Store {
    pub(super) db: Database,
    pub(super) path: PathBuf,
    /// Whether writes keep the views' statistics (`[monitoring] statistics`).
    pub(super) statistics: bool,
    /// The statistics this store last wrote, by view id, with their stored
    /// text ([`KeptStatistics`]).
    pub(super) kept_statistics: KeptStatistics,
    /// The vector indexes kept current for searches ([`super::indexes`]).
    pub(super) indexes: Indexes,
}

impl Store {
    /// Opens the store at `path`, creating the file (and its folder) if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                error: source,
            })?;
        }
        // MultiWriter: `skewless serve` keeps the store open while `skewless
        // backfill` (another process) writes to it; redb takes one write
        // transaction at a time across processes, and readers follow commits.
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .create(path)
            .map_err(|e| Failure::from(e).at(path))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            statistics: true,
            kept_statistics: Default::default(),
            indexes: Default::default(),
        };
        store.check_version()?;
        // Only a new file needs its tables made: opening an existing store
        // writes nothing, so it opens on a full disk too.
        let tables = store.read(table_names)?;
        if CREATED_TABLES.iter().all(|t| tables.iter().any(|n| n == t)) {
            return Ok(store);
        }
        store.write_txn(|txn| {
            txn.open_table(REGISTRY)?;
            txn.open_table(COUNTERS)?;
            txn.open_table(DIGESTS)?;
            txn.open_table(DIGEST_IDS)?;
            txn.open_table(HISTORY)?;
            txn.open_table(LATEST)?;
            txn.open_table(AGGREGATES)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Checks the file's format version. A file without one gets
    /// [`FORMAT_VERSION`] recorded if it is new (it has no table yet); an
    /// older file without one was written before versions were recorded,
    /// in version 1's layout.
    fn check_version(&self) -> Result<(), StoreError> {
        let (recorded, tables) = self.read(|txn| {
            let recorded = match optional(txn, META)? {
                Some(meta) => meta.get("format_version")?.map(|g| g.value()),
                None => None,
            };
            Ok((recorded, table_names(txn)?))
        })?;
        let found = match recorded {
            Some(version) => version,
            None if tables.iter().any(|t| CREATED_TABLES.contains(&t.as_str())) => 1,
            None => {
                self.write_txn(|txn| {
                    txn.open_table(META)?.insert("format_version", FORMAT_VERSION)?;
                    Ok(())
                })?;
                FORMAT_VERSION
            }
        };
        if found != FORMAT_VERSION {
            return Err(StoreError::Version {
                path: self.path.clone(),
                found,
            });
        }
        Ok(())
    }

    /// Opens an existing store; a missing file is an error that says what to run.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Store::open(path)
    }

    /// Whether writes update each view's statistics (they do unless told
    /// otherwise: `[monitoring] statistics = false`). Turned off, the stored
    /// statistics stop at the last write that kept them.
    pub fn keep_statistics(&mut self, keep: bool) {
        self.statistics = keep;
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one read transaction: one commit's state, whatever
    /// commits meanwhile.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, Failure>) -> Result<T, StoreError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| e.at(&self.path))
    }

    /// Runs `f` in one write transaction and commits it if `f` succeeds;
    /// otherwise nothing of it is written.
    pub(crate) fn write_txn<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let txn = self.begin_write()?;
        let run = || {
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(|e: Failure| e.at(&self.path))
    }

    /// Begins a write transaction if the store's file system has more than
    /// [`MIN_FREE_BYTES`] free (see there for why).
    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let folder = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let stat = rustix::fs::statvfs(folder).map_err(|e| StoreError::Io {
            path: folder.to_path_buf(),
            error: e.into(),
        })?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let reserve = std::env::var("SKEWLESS_MIN_FREE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MIN_FREE_BYTES);
        if free < reserve {
            return Err(StoreError::StorageFull {
                path: self.path.clone(),
                free,
                reserve,
            });
        }
        self.db.begin_write().map_err(|e| Failure::from(e).at(&self.path))
    }

    /// The number of the last commit that wrote feature values (0: none yet).
    pub fn last_commit(&self) -> Result<u64, StoreError> {
        self.read(|txn| counter(&txn.open_table(COUNTERS)?, COMMITS))
    }
}

/// The value of counter `name` (0 before it is first set).
pub(super) fn counter(counters: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, Failure> {
    Ok(counters.get(name)?.map_or(0, |g| g.value()))
}

/// A table made by the first write that needs it: `None` until then.
pub(super) fn optional<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, Failure> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The names of the file's tables.
pub(super) fn table_names(txn: &ReadTransaction) -> Result<Vec<String>, Failure> {
    Ok(txn.list_tables()?.map(|t| t.name().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_version(path: &Path, version: Option<u64>) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        match version {
            Some(v) => {
                txn.open_table(META).unwrap().insert("format_version", v).unwrap();
            }
            None => {
                txn.delete_table(META).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_format_version_is_recorded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        drop(Store::open(&path).unwrap());

        set_version(&path, Some(FORMAT_VERSION + 1));
        let newer = Store::open(&path).err().expect("a newer store is refused").to_string();
        assert!(
            newer.contains(&format!("format version {}", FORMAT_VERSION + 1)) && newer.contains("upgrade skewless"),
            "{newer}"
        );

        set_version(&path, Some(0));
        let older = Store::open(&path).err().expect("an older store is refused").to_string();
        assert!(
            older.contains("format version 0") && older.contains("skewless backfill"),
            "{older}"
        );

        // Written before versions were recorded: version 1's layout, refused.
        set_version(&path, None);
        let unversioned = Store::open(&path)
            .err()
            .expect("a store without a version is version 1")
            .to_string();
        assert!(
            unversioned.contains("format version 1") && unversioned.contains("skewless apply"),
            "{unversioned}"
        );
    }

    #[test]
    fn a_new_store_gets_its_tables_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).unwrap();
        let tables = store.read(table_names).unwrap();
        for table in CREATED_TABLES.iter().chain(["meta"].iter()) {
            assert!(tables.iter().any(|t| t == table), "{table} missing from {tables:?}");
        }
        let recorded = store.read(|txn| Ok(txn.open_table(META)?.get("format_version")?.map(|g| g.value())));
        assert_eq!(recorded.unwrap(), Some(FORMAT_VERSION));
    }

    #[test]
    fn a_new_store_has_an_empty_registry_and_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        assert_eq!(store.registry().unwrap(), super::super::Registry::default());
        assert_eq!(store.last_commit().unwrap(), 0);
    }
}
