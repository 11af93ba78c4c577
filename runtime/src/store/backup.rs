//! `skewless backup`: a consistent copy of a live store.
//!
//! redb has no backup API, and copying the file while commits land is
//! unsafe (a commit rewrites the header the copy may already hold). So the
//! copy is logical: every table is read under one read transaction (one
//! commit's state, whatever commits after it) and written into a new
//! database beside the destination, compacted, synced, and renamed into
//! place, so the destination is either absent or a whole copy.
//!
//! Also here: the store's logical content ([`Store::dump`],
//! [`Store::content_digest`]), what two stores are compared by. The copy
//! itself ([`write`]) knows redb, not the store's tables: [`Store::backup`]
//! names every one of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

use super::error::{Failure, StoreError};
use super::file::{
    AGGREGATES, COMMITS, COUNTERS, DIGEST_IDS, DIGESTS, EVENT_IDS, HISTORY, LATEST, META, REGISTRY, SKIPPED,
    SKIPPED_RECORDS, STATS, Store, TOPIC_OFFSETS, counter,
};
use super::replication::LOG_SEQUENCE;
use crate::digest::Digest;

/// One stored entry: table name, key, value.
pub type DumpEntry = (String, Vec<u8>, Vec<u8>);

impl Store {
    /// Every history, latest and aggregate entry, in key order: the store's
    /// logical content, for comparing two stores.
    pub fn dump(&self) -> Result<Vec<DumpEntry>, StoreError> {
        let mut out = Vec::new();
        self.for_each_logical_entry(|table, key, value| out.push((table.to_string(), key.to_vec(), value.to_vec())))?;
        Ok(out)
    }

    /// A digest of [`Self::dump`]: two stores with the same logical content
    /// (whatever wrote it, in whatever commits) have the same one. Streams:
    /// one entry in memory at a time, however large the store.
    pub fn content_digest(&self) -> Result<Digest, StoreError> {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        self.for_each_logical_entry(|table, key, value| {
            for part in [table.as_bytes(), key, value] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        })?;
        Ok(Digest(hasher.finalize().into()))
    }

    /// Calls `visit(table, key, value)` for every entry of the logical
    /// content, table by table in key order, under one read transaction.
    fn for_each_logical_entry(&self, mut visit: impl FnMut(&str, &[u8], &[u8])) -> Result<(), StoreError> {
        self.read(|txn| {
            for (name, def) in [("history", HISTORY), ("latest", LATEST), ("aggregates", AGGREGATES)] {
                for item in txn.open_table(def)?.iter()? {
                    let (k, v) = item?;
                    visit(name, k.value(), v.value());
                }
            }
            Ok(())
        })
    }

    /// Writes a copy of the store as of one commit to `out`, which must not
    /// exist; other readers and writers (a server, a backfill) carry on
    /// ([`write`] says how). Every table is named here.
    pub fn backup(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        let started = std::time::Instant::now();
        let snapshot = self.db.begin_read().map_err(|e| Failure::from(e).at(&self.path))?;
        let (commit, log_sequence) = (|| {
            let counters = snapshot.open_table(COUNTERS)?;
            Ok::<_, Failure>((counter(&counters, COMMITS)?, counter(&counters, LOG_SEQUENCE)?))
        })()
        .map_err(|e| e.at(&self.path))?;
        let tables: [&dyn CopyTable; 13] = [
            &META,
            &REGISTRY,
            &COUNTERS,
            &DIGESTS,
            &DIGEST_IDS,
            &HISTORY,
            &LATEST,
            &AGGREGATES,
            &EVENT_IDS,
            &STATS,
            &SKIPPED,
            &TOPIC_OFFSETS,
            &SKIPPED_RECORDS,
        ];
        let (entries, bytes) = write(&snapshot, &tables, out).map_err(|e| match e {
            CopyError::Source(e) => Failure::Redb(e).at(&self.path),
            CopyError::Copy(path, e) => Failure::Redb(e).at(&path),
            CopyError::UnknownTable(name) => Failure::Corrupt(format!(
                "table `{name}` is not one this build knows how to back up; use the build that wrote it"
            ))
            .at(&self.path),
            CopyError::Io(path, error) => StoreError::Io { path, error },
        })?;
        Ok(BackupSummary {
            path: out.to_path_buf(),
            commit,
            log_sequence,
            entries,
            bytes,
            elapsed: started.elapsed(),
        })
    }
}

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The copy.
    pub path: PathBuf,
    /// The store's commit counter at the copied state: the copy holds
    /// exactly commits `1..=commit`.
    pub commit: u64,
    /// The replication-log position the copy includes (0: none): a replica
    /// started from it replays the log after this message.
    pub log_sequence: u64,
    /// Entries copied, over all tables.
    pub entries: u64,
    /// Size of the copy, in bytes.
    pub bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// `as of commit N to PATH (E entries, X MB) in Ts; serve it with ...`.
impl std::fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "as of commit {}", self.commit)?;
        if self.log_sequence > 0 {
            write!(
                f,
                " and replication-log message {} (a replica started from it replays the log after it)",
                self.log_sequence
            )?;
        }
        write!(
            f,
            " to {} ({} entries, {:.1} MB) in {:.2}s; serve it with `SKEWLESS_STORE={} skewless serve` \
             (or `store = ...` in skewless.toml)",
            self.path.display(),
            self.entries,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.path.display()
        )
    }
}

/// Why a copy failed; the store maps it to its own error.
#[derive(Debug)]
enum CopyError {
    /// Reading the store failed.
    Source(redb::Error),
    /// Writing the copy (at the path) failed.
    Copy(PathBuf, redb::Error),
    /// The store holds a table the caller did not name.
    UnknownTable(String),
    /// A file operation failed.
    Io(PathBuf, std::io::Error),
}

/// A table to copy: any redb table definition.
trait CopyTable {
    /// Copies the table (if the snapshot has it): its name and entry count.
    fn copy(&self, snapshot: &ReadTransaction, copy: &Database, path: &Path) -> Result<(String, u64), CopyError>;
}

/// Entries per write transaction of the copy: bounds its memory.
const ENTRIES_PER_COMMIT: u64 = 100_000;

/// Writes `tables` as `snapshot` holds them to `out`, which must not exist:
/// the entries copied and the size of the file. A table of the snapshot
/// that `tables` does not name fails the copy, so a table added to the
/// store without being added to its backup fails loudly, not silently.
fn write(snapshot: &ReadTransaction, tables: &[&dyn CopyTable], out: &Path) -> Result<(u64, u64), CopyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| CopyError::Io(path, error)
    };
    if out.exists() {
        let exists = std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the backup file exists; choose another name or remove it",
        );
        return Err(CopyError::Io(out.to_path_buf(), exists));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let partial = out.with_extension("redb.partial");
    let _ = std::fs::remove_file(&partial);
    let result = copy_all(snapshot, tables, &partial);
    let entries = match result {
        Ok(entries) => entries,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(&partial))?;
    std::fs::rename(&partial, out).map_err(io(out))?;
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(io(parent))?;
    let bytes = std::fs::metadata(out).map_err(io(out))?.len();
    Ok((entries, bytes))
}

/// Copies every table into a new database at `partial`, then compacts it.
fn copy_all(snapshot: &ReadTransaction, tables: &[&dyn CopyTable], partial: &Path) -> Result<u64, CopyError> {
    let copy_error = |e: redb::Error| CopyError::Copy(partial.to_path_buf(), e);
    let mut copy = Database::create(partial).map_err(|e| copy_error(e.into()))?;
    let mut copied = Vec::new();
    for table in tables {
        copied.push(table.copy(snapshot, &copy, partial)?);
    }
    for table in snapshot.list_tables().map_err(|e| CopyError::Source(e.into()))? {
        if !copied.iter().any(|(name, _)| name == table.name()) {
            return Err(CopyError::UnknownTable(table.name().to_string()));
        }
    }
    copy.compact().map_err(|e| copy_error(e.into()))?;
    Ok(copied.iter().map(|(_, entries)| entries).sum())
}

impl<K: Key + 'static, V: Value + 'static> CopyTable for TableDefinition<'static, K, V> {
    /// In commits of [`ENTRIES_PER_COMMIT`].
    fn copy(&self, snapshot: &ReadTransaction, copy: &Database, path: &Path) -> Result<(String, u64), CopyError> {
        let definition = *self;
        let name = definition.name().to_string();
        let copy_error = |e: redb::Error| CopyError::Copy(path.to_path_buf(), e);
        let source = match snapshot.open_table(definition) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((name, 0)),
            Err(e) => return Err(CopyError::Source(e.into())),
        };
        let begin = || copy.begin_write().map_err(|e| copy_error(e.into()));
        let commit = |txn: WriteTransaction| txn.commit().map_err(|e| copy_error(e.into()));
        let mut txn = begin()?;
        // Created even when empty: the copy has the same tables as the store.
        txn.open_table(definition).map_err(|e| copy_error(e.into()))?;
        let mut copied = 0;
        for item in source.iter().map_err(|e| CopyError::Source(e.into()))? {
            let (key, value) = item.map_err(|e| CopyError::Source(e.into()))?;
            {
                let mut table = txn.open_table(definition).map_err(|e| copy_error(e.into()))?;
                table
                    .insert(key.value(), value.value())
                    .map_err(|e| copy_error(e.into()))?;
            }
            copied += 1;
            if copied % ENTRIES_PER_COMMIT == 0 {
                commit(txn)?;
                txn = begin()?;
            }
        }
        commit(txn)?;
        Ok((name, copied))
    }
}
