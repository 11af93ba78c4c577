//! `skewless backup`: a consistent copy of a live store.
//!
//! redb has no backup API, and copying the file while commits land is
//! unsafe (a commit rewrites the header the copy may already hold). So the
//! copy is logical: every table is read under one read transaction (one
//! commit's state, whatever commits after it) and written into a new
//! database beside the destination, compacted, synced, and renamed into
//! place, so the destination is either absent or a whole copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

use super::{
    AGGREGATES, COUNTERS, DIGEST_IDS, DIGESTS, EVENT_IDS, HISTORY, LATEST, META, REGISTRY, Store, StoreError, storage,
};

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The copy.
    pub path: PathBuf,
    /// The store's commit counter at the copied state: the copy holds
    /// exactly commits `1..=commit`.
    pub commit: u64,
    /// Entries copied, over all tables.
    pub entries: u64,
    /// Size of the copy, in bytes.
    pub bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// Entries per write transaction of the copy: bounds its memory.
const ENTRIES_PER_COMMIT: u64 = 100_000;

impl Store {
    /// Writes a copy of the store as of one commit to `out`, which must not
    /// exist. Other readers and writers (a server, a backfill) carry on.
    pub fn backup(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        let started = Instant::now();
        if out.exists() {
            return Err(StoreError::Io {
                path: out.to_path_buf(),
                error: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the backup file exists; choose another name or remove it",
                ),
            });
        }
        let io = |path: &Path, error: std::io::Error| StoreError::Io {
            path: path.to_path_buf(),
            error,
        };
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let partial = out.with_extension("redb.partial");
        let _ = std::fs::remove_file(&partial);
        let snapshot = self.db.begin_read().map_err(|e| self.fail(e))?;
        let copy = Database::create(&partial).map_err(|e| storage(&partial, e))?;
        let result = copy_tables(&snapshot, &copy).map_err(|e| match e {
            CopyError::Source(e) => self.fail(e),
            CopyError::Copy(e) => storage(&partial, e),
            CopyError::UnknownTable(name) => self.corrupt(format!(
                "table `{name}` is not one this build knows how to back up; use the build that wrote it"
            )),
        });
        let entries = match result {
            Ok(entries) => entries,
            Err(e) => {
                drop(copy);
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let commit = snapshot
            .open_table(COUNTERS)
            .map_err(|e| self.fail(e))?
            .get("commits")
            .map_err(|e| self.fail(e))?
            .map_or(0, |v| v.value());
        drop(snapshot);
        let mut copy = copy;
        copy.compact().map_err(|e| storage(&partial, e))?;
        drop(copy);
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, out).map_err(|e| io(out, e))?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(parent, e))?;
        }
        let bytes = std::fs::metadata(out).map_err(|e| io(out, e))?.len();
        Ok(BackupSummary {
            path: out.to_path_buf(),
            commit,
            entries,
            bytes,
            elapsed: started.elapsed(),
        })
    }
}

enum CopyError {
    Source(redb::Error),
    Copy(redb::Error),
    UnknownTable(String),
}

/// Copies every table of the store; a table it does not name is an error,
/// so a table added to the store without being added here fails loudly
/// rather than being left out of backups.
fn copy_tables(snapshot: &ReadTransaction, copy: &Database) -> Result<u64, CopyError> {
    let copied = [
        copy_table(snapshot, copy, META)?,
        copy_table(snapshot, copy, REGISTRY)?,
        copy_table(snapshot, copy, COUNTERS)?,
        copy_table(snapshot, copy, DIGESTS)?,
        copy_table(snapshot, copy, DIGEST_IDS)?,
        copy_table(snapshot, copy, HISTORY)?,
        copy_table(snapshot, copy, LATEST)?,
        copy_table(snapshot, copy, AGGREGATES)?,
        copy_table(snapshot, copy, EVENT_IDS)?,
    ];
    for table in snapshot.list_tables().map_err(|e| CopyError::Source(e.into()))? {
        if !copied.iter().any(|(name, _)| *name == table.name()) {
            return Err(CopyError::UnknownTable(table.name().to_string()));
        }
    }
    Ok(copied.iter().map(|(_, entries)| entries).sum())
}

/// Copies one table (if the store has it) in commits of [`ENTRIES_PER_COMMIT`].
fn copy_table<K: Key + 'static, V: Value + 'static>(
    snapshot: &ReadTransaction,
    copy: &Database,
    definition: TableDefinition<'static, K, V>,
) -> Result<(String, u64), CopyError> {
    let name = definition.name().to_string();
    let source = match snapshot.open_table(definition) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((name, 0)),
        Err(e) => return Err(CopyError::Source(e.into())),
    };
    let begin = || copy.begin_write().map_err(|e| CopyError::Copy(e.into()));
    let commit = |txn: WriteTransaction| txn.commit().map_err(|e| CopyError::Copy(e.into()));
    let mut txn = begin()?;
    // Created even when empty: the copy has the same tables as the store.
    txn.open_table(definition).map_err(|e| CopyError::Copy(e.into()))?;
    let mut copied = 0;
    for item in source.iter().map_err(|e| CopyError::Source(e.into()))? {
        let (key, value) = item.map_err(|e| CopyError::Source(e.into()))?;
        {
            let mut table = txn.open_table(definition).map_err(|e| CopyError::Copy(e.into()))?;
            table
                .insert(key.value(), value.value())
                .map_err(|e| CopyError::Copy(e.into()))?;
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
