//! The store: one redb file holding the registry and every feature value.
//!
//! Tables:
//! - `meta` (`&str -> u64`): `format_version`, written when the file is
//!   created ([`FORMAT_VERSION`]); a store of another version is refused.
//! - `registry` (`&str -> &str`): JSON records keyed `entity/NAME`,
//!   `source/NAME`, `view/NAME` ([`ViewRecord`]), `service/NAME`
//!   ([`registry`] has the types).
//! - `counters` (`&str -> u64`): `next_view_id`, `next_digest_id`, `commits`.
//! - `digests` (`u32 -> &[u8]`) and `digest_ids` (`&[u8] -> u32`): the
//!   sha256 of every transform that produced a stored row, and its id.
//! - `history` and `latest` (`&[u8] -> &[u8]`): feature values, laid out as
//!   [`layout`] describes.
//! - `aggregates` (`&[u8] -> &[u8]`): the events and tiles of aggregation
//!   views ([`crate::aggregate::layout`]), and `event_ids` (`&[u8] -> i64`):
//!   where each event of a source with an `event_id_column` is (made on the
//!   first write that needs it).
//!
//! Every write is one redb transaction: a crash (even `kill -9`) leaves the
//! store at the last commit, never half-written. Readers never block the
//! writer and see only committed data. Several processes may hold the store
//! open at once (a server and a backfill): writes take turns, reads follow.

mod backup;

pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

pub use backup::BackupSummary;
use registry::Kind;
pub use registry::{Invariance, Registry, ViewRecord};

use crate::aggregate::PendingEvents;
use crate::digest::Digest;
use crate::format::layout::{self, CorruptRow, RowWriter};
use crate::format::value::{Value, decode_values};
use crate::stats::Statistics;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REGISTRY: TableDefinition<&str, &str> = TableDefinition::new("registry");

pub use crate::format::FORMAT_VERSION;
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const DIGESTS: TableDefinition<u32, &[u8]> = TableDefinition::new("digests");
const DIGEST_IDS: TableDefinition<&[u8], u32> = TableDefinition::new("digest_ids");
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
/// Events and tiles of aggregation views ([`crate::aggregate::layout`]).
const AGGREGATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("aggregates");

/// Where each keyed event is (`layout::id_key` -> its event time), for
/// sources with an `event_id_column`: a correction that moves an event to
/// another time removes it from its old hour in the same commit.
const EVENT_IDS: TableDefinition<&[u8], i64> = TableDefinition::new("event_ids");

/// Each materialized view's feature statistics as of its last commit
/// (view id -> [`Statistics::to_json`]), updated in the transaction that
/// writes its rows, from the rows that transaction added or changed.
const STATS: TableDefinition<u32, &str> = TableDefinition::new("stats");
/// Replicated serving: messages of the replication log that were recorded
/// and skipped (stream sequence → why), identically on every replica.
const SKIPPED: TableDefinition<u64, &str> = TableDefinition::new("skipped_messages");
/// Key in `counters`: the stream sequence of the last replication-log
/// message applied. Written in the transaction that applies it, so a
/// message is applied exactly once, across restarts and crashes.
const LOG_SEQUENCE: &str = "log_sequence";

/// The store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed (I/O, a damaged file, the file locked by another process).
    #[error("store {}: {error}", path.display())]
    Storage {
        /// Store file.
        path: PathBuf,
        /// redb's error.
        error: Box<redb::Error>,
    },
    /// The store file does not exist yet.
    #[error("no store at {}: run `skewless apply` and `skewless backfill` first", path.display())]
    Missing {
        /// Store file.
        path: PathBuf,
    },
    /// A record or row does not decode: the file is damaged.
    #[error("store {}: {message}", path.display())]
    Corrupt {
        /// Store file.
        path: PathBuf,
        /// What does not decode.
        message: String,
    },
    /// The file was written in another layout than this build's.
    #[error(
        "store {} has format version {found}, but this build of skewless reads version {FORMAT_VERSION} only: {}",
        path.display(),
        if *found > FORMAT_VERSION {
            "upgrade skewless to a build that knows it".to_string()
        } else {
            "move it away and rebuild it with `skewless apply` and `skewless backfill` (from the same sources), \
             or keep using the build that wrote it"
                .to_string()
        }
    )]
    Version {
        /// Store file.
        path: PathBuf,
        /// The version the file records.
        found: u64,
    },
    /// A user-defined aggregation function failed while tiles were being
    /// built; nothing of the write was committed.
    #[error("{0}")]
    Aggregator(Box<crate::TransformError>),
    /// Too little space is left where the store is: the write was refused
    /// before it began, so the store is untouched and stays readable.
    #[error(
        "store {}: only {} MB free on its file system, below the {} MB kept free so that a write never \
         fails half-way; free some space (or lower SKEWLESS_MIN_FREE_BYTES) and retry",
        path.display(), free / 1_000_000, reserve / 1_000_000
    )]
    StorageFull {
        /// Store file.
        path: PathBuf,
        /// Bytes available to us.
        free: u64,
        /// Bytes kept free ([`MIN_FREE_BYTES`]).
        reserve: u64,
    },
    /// A replication-log message at or before the one last applied was
    /// written again: the applier lost its place (a bug, not bad input).
    #[error(
        "store {}: replication-log message {sequence} is at or before {applied}, the last one applied; \
         nothing was written",
        path.display()
    )]
    AlreadyApplied {
        /// Store file.
        path: PathBuf,
        /// The message's stream sequence.
        sequence: u64,
        /// The last one applied.
        applied: u64,
    },
    /// The folder for the store could not be created.
    #[error("cannot create {}: {error}", path.display())]
    Io {
        /// Folder.
        path: PathBuf,
        /// I/O error.
        error: std::io::Error,
    },
}

/// Space kept free on the store's file system: a write transaction does
/// not begin below it (`SKEWLESS_MIN_FREE_BYTES` overrides it). redb fails
/// every later operation, reads included, once a write has hit a full disk
/// (until the file is reopened), so the check must come first, and the
/// reserve must exceed what one transaction writes: a push, kilobytes; a
/// backfill commit of the default 1M rows, about 50 MB for driver_stats and
/// about 140 MB for an aggregation view's events (`--rows-per-commit` lowers it).
pub const MIN_FREE_BYTES: u64 = 256 << 20;

/// A user function's failure, as a store error.
fn aggregator(error: crate::TransformError) -> StoreError {
    StoreError::Aggregator(Box::new(error))
}

/// A stored row, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Event time, microseconds UTC.
    pub event_time: i64,
    /// Created time, microseconds UTC.
    pub created: i64,
    /// Id of the producing transform's digest.
    pub digest_id: u32,
    /// Values in the view's feature order.
    pub values: Vec<Value>,
}

/// What a stored view's source rows became, waiting to be written.
#[derive(Clone)]
pub enum Pending {
    /// Feature rows of a materialized view.
    Rows(PendingRows),
    /// Events of an aggregation view.
    Events(PendingEvents),
}

impl Pending {
    /// Rows or events waiting.
    pub fn len(&self) -> usize {
        match self {
            Pending::Rows(r) => r.len(),
            Pending::Events(e) => e.len(),
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        match self {
            Pending::Rows(r) => r.clear(),
            Pending::Events(e) => e.events.clear(),
        }
    }
}

/// Rows waiting to be written: entity keys and encoded rows in one arena,
/// so a chunk of a million rows costs two allocations, not two million.
#[derive(Default, Clone)]
pub struct PendingRows {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    key: (usize, usize),
    row: (usize, usize),
    bucket: i64,
    event_time: i64,
    created: i64,
}

impl PendingRows {
    /// Adds a row: `key` writes the entity key, `values` the features.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        bucket_micros: i64,
        event_time: i64,
        created: i64,
        digest_id: u32,
        features: usize,
        key: impl FnOnce(&mut Vec<u8>),
        values: impl FnOnce(&mut RowWriter<'_>),
    ) {
        let key_start = self.arena.len();
        key(&mut self.arena);
        let row_start = self.arena.len();
        let mut writer = RowWriter::start(&mut self.arena, event_time, created, digest_id, features);
        values(&mut writer);
        self.entries.push(Entry {
            key: (key_start, row_start),
            row: (row_start, self.arena.len()),
            bucket: layout::bucket_of(event_time, bucket_micros),
            event_time,
            created,
        });
    }

    /// Rows waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }
}

/// Which side of the store a write goes to: Feast's `to` of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteTo {
    /// The `latest` table only: served online, invisible to training data.
    Online,
    /// The `history` table only: training data, not served online.
    Offline,
    /// Both, as backfill does.
    OnlineAndOffline,
}

impl WriteTo {
    fn online(self) -> bool {
        matches!(self, WriteTo::Online | WriteTo::OnlineAndOffline)
    }

    fn offline(self) -> bool {
        matches!(self, WriteTo::Offline | WriteTo::OnlineAndOffline)
    }
}

/// One stored entry: table name, key, value.
pub type DumpEntry = (String, Vec<u8>, Vec<u8>);

/// Where a write stands in a replication log ([`Store::write_views_at`]).
#[derive(Debug, Clone, Default)]
pub struct LogPosition {
    /// The stream sequence of the last message the write applies.
    pub sequence: u64,
    /// Messages up to `sequence` that are recorded and skipped: (stream
    /// sequence, why). A poison message fails the same way everywhere, so
    /// every replica skips the same ones.
    pub skipped: Vec<(u64, String)>,
}

/// The embedded store.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Whether writes keep the views' statistics (`[monitoring] statistics`).
    statistics: bool,
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
            .map_err(|e| storage(path, e))?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            statistics: true,
        };
        store.check_version()?;
        // Only a new (or older) file needs its tables made: opening an
        // existing store writes nothing, so it opens on a full disk too.
        let has_tables = {
            use redb::TableHandle;
            let txn = store.db.begin_read().map_err(|e| store.fail(e))?;
            let names: Vec<String> = txn
                .list_tables()
                .map_err(|e| store.fail(e))?
                .map(|t| t.name().to_string())
                .collect();
            [
                REGISTRY.name(),
                COUNTERS.name(),
                DIGESTS.name(),
                DIGEST_IDS.name(),
                HISTORY.name(),
                LATEST.name(),
                AGGREGATES.name(),
            ]
            .iter()
            .all(|t| names.iter().any(|n| n == t))
        };
        if has_tables {
            return Ok(store);
        }
        let txn = store.begin_write()?;
        {
            txn.open_table(REGISTRY).map_err(|e| store.fail(e))?;
            txn.open_table(COUNTERS).map_err(|e| store.fail(e))?;
            txn.open_table(DIGESTS).map_err(|e| store.fail(e))?;
            txn.open_table(DIGEST_IDS).map_err(|e| store.fail(e))?;
            txn.open_table(HISTORY).map_err(|e| store.fail(e))?;
            txn.open_table(LATEST).map_err(|e| store.fail(e))?;
            txn.open_table(AGGREGATES).map_err(|e| store.fail(e))?;
        }
        txn.commit().map_err(|e| store.fail(e))?;
        Ok(store)
    }

    /// Checks the file's format version. A file without one gets
    /// [`FORMAT_VERSION`] recorded: either it was just created, or it was
    /// written before versions were recorded, in exactly version 1's layout.
    fn check_version(&self) -> Result<(), StoreError> {
        let found = {
            let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
            let version = match txn.open_table(META) {
                Ok(meta) => meta.get("format_version").map_err(|e| self.fail(e))?.map(|g| g.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.fail(e)),
            };
            match version {
                Some(version) => version,
                None => {
                    drop(txn);
                    let txn = self.begin_write()?;
                    txn.open_table(META)
                        .map_err(|e| self.fail(e))?
                        .insert("format_version", FORMAT_VERSION)
                        .map_err(|e| self.fail(e))?;
                    txn.commit().map_err(|e| self.fail(e))?;
                    FORMAT_VERSION
                }
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

    /// Begins a write transaction if the store's file system has more than
    /// [`MIN_FREE_BYTES`] free (see there for why).
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
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
        self.db.begin_write().map_err(|e| self.fail(e))
    }

    fn fail(&self, error: impl Into<redb::Error>) -> StoreError {
        storage(&self.path, error)
    }

    fn corrupt(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// The whole registry, read in one transaction.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(REGISTRY).map_err(|e| self.fail(e))?;
        let mut registry = Registry::default();
        for kind in Kind::ALL {
            let prefix = kind.key("");
            for item in table.range(prefix.as_str()..).map_err(|e| self.fail(e))? {
                let (key, value) = item.map_err(|e| self.fail(e))?;
                let Some(name) = key.value().strip_prefix(prefix.as_str()).map(str::to_string) else {
                    break;
                };
                let json = value.value();
                let bad = |e: serde_json::Error| self.corrupt(format!("registry record {}: {e}", key.value()));
                match kind {
                    Kind::Entity => registry
                        .entities
                        .insert(name, serde_json::from_str(json).map_err(bad)?)
                        .map(drop),
                    Kind::Source => registry
                        .sources
                        .insert(name, serde_json::from_str(json).map_err(bad)?)
                        .map(drop),
                    Kind::View => registry
                        .views
                        .insert(name, serde_json::from_str(json).map_err(bad)?)
                        .map(drop),
                    Kind::Service => registry
                        .services
                        .insert(name, serde_json::from_str(json).map_err(bad)?)
                        .map(drop),
                };
            }
        }
        Ok(registry)
    }

    /// Every view record, by name.
    pub fn views(&self) -> Result<BTreeMap<String, ViewRecord>, StoreError> {
        Ok(self.registry()?.views)
    }

    /// Replaces the registry with `registry` in one transaction, assigning
    /// storage ids to views whose id is 0. Returns the registry as stored.
    pub fn replace_registry(&self, mut registry: Registry) -> Result<Registry, StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(REGISTRY).map_err(|e| self.fail(e))?;
            let mut counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
            table.retain(|_, _| false).map_err(|e| self.fail(e))?;
            for view in registry.views.values_mut() {
                if view.id == 0 {
                    let next = counters
                        .get("next_view_id")
                        .map_err(|e| self.fail(e))?
                        .map(|g| g.value())
                        .unwrap_or(1);
                    counters.insert("next_view_id", next + 1).map_err(|e| self.fail(e))?;
                    view.id = u32::try_from(next).map_err(|_| self.corrupt("view ids exhausted"))?;
                }
            }
            let mut records: Vec<(String, String)> = Vec::new();
            records.extend(
                registry
                    .entities
                    .iter()
                    .map(|(n, r)| (Kind::Entity.key(n), record_json(r))),
            );
            records.extend(
                registry
                    .sources
                    .iter()
                    .map(|(n, r)| (Kind::Source.key(n), record_json(r))),
            );
            records.extend(registry.views.iter().map(|(n, r)| (Kind::View.key(n), record_json(r))));
            records.extend(
                registry
                    .services
                    .iter()
                    .map(|(n, r)| (Kind::Service.key(n), record_json(r))),
            );
            for (key, value) in &records {
                table.insert(key.as_str(), value.as_str()).map_err(|e| self.fail(e))?;
            }
        }
        txn.commit().map_err(|e| self.fail(e))?;
        Ok(registry)
    }

    /// The id of `digest`, registering it if new.
    pub fn digest_id(&self, digest: &Digest) -> Result<u32, StoreError> {
        // Usually known already: a read, not a (durable, fsynced) write.
        {
            let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
            let ids = txn.open_table(DIGEST_IDS).map_err(|e| self.fail(e))?;
            if let Some(id) = ids.get(&digest.0[..]).map_err(|e| self.fail(e))? {
                return Ok(id.value());
            }
        }
        let txn = self.begin_write()?;
        let id = {
            let mut ids = txn.open_table(DIGEST_IDS).map_err(|e| self.fail(e))?;
            let existing = ids.get(&digest.0[..]).map_err(|e| self.fail(e))?.map(|g| g.value());
            match existing {
                Some(id) => id,
                None => {
                    let mut counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
                    let next = counters
                        .get("next_digest_id")
                        .map_err(|e| self.fail(e))?
                        .map(|g| g.value())
                        .unwrap_or(1);
                    counters.insert("next_digest_id", next + 1).map_err(|e| self.fail(e))?;
                    let id = u32::try_from(next).map_err(|_| self.corrupt("digest ids exhausted"))?;
                    ids.insert(&digest.0[..], id).map_err(|e| self.fail(e))?;
                    txn.open_table(DIGESTS)
                        .map_err(|e| self.fail(e))?
                        .insert(id, &digest.0[..])
                        .map_err(|e| self.fail(e))?;
                    id
                }
            }
        };
        txn.commit().map_err(|e| self.fail(e))?;
        Ok(id)
    }

    /// The number of the last commit that wrote feature values (0: none yet).
    pub fn last_commit(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
        Ok(counters
            .get("commits")
            .map_err(|e| self.fail(e))?
            .map_or(0, |g| g.value()))
    }

    /// The stream sequence of the last replication-log message applied
    /// (0: none), as of the latest commit: what a replica replays after.
    pub fn log_sequence(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
        Ok(counters
            .get(LOG_SEQUENCE)
            .map_err(|e| self.fail(e))?
            .map_or(0, |g| g.value()))
    }

    /// Replication-log messages skipped (stream sequence, why), in order.
    pub fn skipped_messages(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match txn.open_table(SKIPPED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| self.fail(e))? {
            let (sequence, why) = item.map_err(|e| self.fail(e))?;
            out.push((sequence.value(), why.value().to_string()));
        }
        Ok(out)
    }

    /// Every entity of `view` in the latest table, with the digest id of the
    /// row stored for it: what `verify` samples and checks for staleness.
    pub fn latest_entities(&self, view: &ViewRecord) -> Result<Vec<(Vec<u8>, u32)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(LATEST).map_err(|e| self.fail(e))?;
        let start = layout::latest_key(view.id, &[]);
        let mut out = Vec::new();
        for item in table.range(start.as_slice()..).map_err(|e| self.fail(e))? {
            let (key, row) = item.map_err(|e| self.fail(e))?;
            let Some(entity) = key.value().strip_prefix(start.as_slice()) else {
                break;
            };
            let header = layout::row_header(row.value()).map_err(|e| self.corrupt(e))?;
            out.push((entity.to_vec(), header.digest_id));
        }
        Ok(out)
    }

    /// Recomputes every tile of an aggregation view from what it is defined
    /// by (an hour's from its events, a day's from its hours, 30 days' from
    /// their days) and compares the bytes with the stored ones
    /// (invariant 2 of [`crate::aggregate::layout`]). Also returns the
    /// view's entities, for sampling.
    pub fn check_aggregates(
        &self,
        view: &ViewRecord,
        plan: &crate::aggregate::Plan,
    ) -> Result<AggregateCheck, StoreError> {
        use crate::aggregate::layout as agg;
        use crate::aggregate::window::LADDER;
        use crate::aggregate::{fold, function::State};
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(AGGREGATES).map_err(|e| self.fail(e))?;
        let prefix = view.id.to_be_bytes();
        let mut check = AggregateCheck::default();
        // Per entity: tiles by level and bucket, as recomputed and as stored.
        let mut entity: Option<Vec<u8>> = None;
        let mut stored: Vec<BTreeMap<i64, Vec<u8>>> = vec![BTreeMap::new(); LADDER.len()];
        let mut hours: BTreeMap<i64, Vec<State>> = BTreeMap::new();
        let corrupt = |e: CorruptRow| self.corrupt(format!("view `{}`: {e}", view.name));
        let finish = |entity: &[u8],
                      stored: &mut Vec<BTreeMap<i64, Vec<u8>>>,
                      hours: &mut BTreeMap<i64, Vec<State>>,
                      check: &mut AggregateCheck|
         -> Result<(), StoreError> {
            let mut below = std::mem::take(hours);
            for level in 1..LADDER.len() {
                let ratio = LADDER[level] / LADDER[level - 1];
                let mut grouped: BTreeMap<i64, Vec<Vec<State>>> = BTreeMap::new();
                for (bucket, tile) in below {
                    grouped.entry(bucket.div_euclid(ratio)).or_default().push(tile);
                }
                let mut expected: BTreeMap<i64, Vec<State>> = BTreeMap::new();
                for (bucket, children) in grouped {
                    let tile = fold::merge_tiles(plan, children.iter().map(Vec::as_slice)).map_err(aggregator)?;
                    if !fold::is_empty(plan, &tile) {
                        expected.insert(bucket, tile);
                    }
                }
                let mut bytes = Vec::new();
                for (bucket, tile) in &expected {
                    check.tiles += 1;
                    bytes.clear();
                    agg::write_tile(&mut bytes, plan, tile);
                    if stored[level].get(bucket) != Some(&bytes) {
                        check.mismatches.push(format!(
                            "entity {}: level {level} tile {bucket} differs from the merge of the tiles inside it",
                            describe_entity(entity)
                        ));
                    }
                }
                for bucket in stored[level].keys().filter(|b| !expected.contains_key(b)) {
                    check.mismatches.push(format!(
                        "entity {}: level {level} tile {bucket} is stored but no event is inside it",
                        describe_entity(entity)
                    ));
                }
                stored[level].clear();
                below = expected;
            }
            Ok(())
        };
        let range = table.range(&prefix[..]..).map_err(|e| self.fail(e))?;
        for item in range {
            let (key, value) = item.map_err(|e| self.fail(e))?;
            let key = key.value();
            if !key.starts_with(&prefix) {
                break;
            }
            let (this, level, bucket) = match (key.len().checked_sub(9), agg::bucket_of_key(key)) {
                (Some(at), Some(bucket)) if at >= 4 => (&key[4..at], key[at] as usize, bucket),
                _ => return Err(self.corrupt(format!("view `{}`: an aggregate key is too short", view.name))),
            };
            if entity.as_deref() != Some(this) {
                if let Some(done) = &entity {
                    finish(done, &mut stored, &mut hours, &mut check)?;
                }
                entity = Some(this.to_vec());
                check.entities.push(this.to_vec());
            }
            if level >= LADDER.len() {
                return Err(self.corrupt(format!("view `{}`: tile level {level} does not exist", view.name)));
            }
            if level == 0 {
                let events = agg::hour_events(value.value(), &plan.inputs).map_err(corrupt)?;
                let tile = fold::fold_events(plan, &events).map_err(aggregator)?;
                let mut bytes = Vec::new();
                agg::write_tile(&mut bytes, plan, &tile);
                check.tiles += 1;
                check.events += events.len() as u64;
                if agg::hour_tile(value.value()).map_err(corrupt)? != bytes.as_slice() {
                    check.mismatches.push(format!(
                        "entity {}: hour {bucket}'s tile differs from the fold of its {} events",
                        describe_entity(this),
                        events.len()
                    ));
                }
                hours.insert(bucket, tile);
            } else {
                stored[level].insert(bucket, value.value().to_vec());
            }
        }
        if let Some(done) = &entity {
            finish(done, &mut stored, &mut hours, &mut check)?;
        }
        Ok(check)
    }

    /// How many history rows of `view` each digest id produced.
    pub fn history_digests(&self, view: &ViewRecord) -> Result<BTreeMap<u32, u64>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
        let start = layout::latest_key(view.id, &[]);
        let mut out = BTreeMap::new();
        for item in table.range(start.as_slice()..).map_err(|e| self.fail(e))? {
            let (key, block) = item.map_err(|e| self.fail(e))?;
            if !key.value().starts_with(&start) {
                break;
            }
            for row in layout::block_rows(block.value(), &view.features).map_err(|e| self.corrupt(e))? {
                let header = layout::row_header(row).map_err(|e| self.corrupt(e))?;
                *out.entry(header.digest_id).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// A materialized view's feature statistics as of its last commit
    /// (`None` before its first rows, and for aggregation views).
    pub fn statistics(&self, view: &ViewRecord) -> Result<Option<Statistics>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match txn.open_table(STATS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        let Some(text) = table.get(view.id).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        Statistics::from_json(text.value())
            .map(Some)
            .map_err(|e| self.corrupt(format!("statistics of view `{}`: {e}", view.name)))
    }

    /// The feature statistics of the stored rows of a view with event times
    /// in `from..to` (microseconds), read from its history.
    pub fn statistics_between(&self, view: &ViewRecord, from: i64, to: i64) -> Result<Statistics, StoreError> {
        let mut stats = Statistics::new(&view.features);
        self.for_each_row_between(view, from, to, |time, values| {
            stats.add_row(&values);
            stats.saw_event_time(Some(time));
        })?;
        Ok(stats)
    }

    /// Recomputes a view's statistics from its stored history and keeps
    /// them, as of the latest commit: for a store written before statistics
    /// were kept, with them off, or after a crash. The history holds each
    /// row once, as the kept statistics count it, so the two agree bit for
    /// bit. Online-only pushes are not in the history: the freshness they
    /// moved is kept. A commit that lands meanwhile makes it start over.
    pub fn rebuild_statistics(&self, view: &ViewRecord) -> Result<Statistics, StoreError> {
        loop {
            let commit = self.last_commit()?;
            let mut rebuilt = self.statistics_between(view, i64::MIN, i64::MAX)?;
            let txn = self.begin_write()?;
            {
                let counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
                let now = counters
                    .get("commits")
                    .map_err(|e| self.fail(e))?
                    .map_or(0, |g| g.value());
                if now != commit {
                    continue;
                }
                let mut stats = txn.open_table(STATS).map_err(|e| self.fail(e))?;
                let kept = stats
                    .get(view.id)
                    .map_err(|e| self.fail(e))?
                    .map(|g| g.value().to_string());
                if let Some(kept) = kept.and_then(|text| Statistics::from_json(&text).ok()) {
                    rebuilt.newest_event_time = rebuilt.newest_event_time.max(kept.newest_event_time);
                }
                rebuilt.commit = Some(commit);
                stats
                    .insert(view.id, rebuilt.to_json().as_str())
                    .map_err(|e| self.fail(e))?;
            }
            txn.commit().map_err(|e| self.fail(e))?;
            return Ok(rebuilt);
        }
    }

    /// Calls `f` with the event time and values of every stored row of a
    /// view with event time in `from..to` (microseconds), from its history,
    /// in one read transaction.
    pub fn for_each_row_between(
        &self,
        view: &ViewRecord,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, Vec<Value>),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
        let start = layout::latest_key(view.id, &[]);
        for item in table.range(start.as_slice()..).map_err(|e| self.fail(e))? {
            let (key, block) = item.map_err(|e| self.fail(e))?;
            if !key.value().starts_with(&start) {
                break;
            }
            for row in layout::block_rows(block.value(), &view.features).map_err(|e| self.corrupt(e))? {
                let header = layout::row_header(row).map_err(|e| self.corrupt(e))?;
                if (from..to).contains(&header.event_time) {
                    f(
                        header.event_time,
                        decode_values(row, &view.features).map_err(|e| self.corrupt(e))?,
                    );
                }
            }
        }
        Ok(())
    }

    /// Every registered digest by id.
    pub fn digests(&self) -> Result<BTreeMap<u32, Digest>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(DIGESTS).map_err(|e| self.fail(e))?;
        let mut out = BTreeMap::new();
        for item in table.iter().map_err(|e| self.fail(e))? {
            let (id, bytes) = item.map_err(|e| self.fail(e))?;
            let digest: [u8; 32] = bytes
                .value()
                .try_into()
                .map_err(|_| self.corrupt("a digest is not 32 bytes"))?;
            out.insert(id.value(), Digest(digest));
        }
        Ok(out)
    }

    /// Writes `pending` rows of `view` in one transaction, merging them into
    /// the history blocks and/or the latest values, as `to` says (invariants
    /// in [`layout`]). Returns the commit number. On error nothing is written.
    pub fn write(&self, view: &ViewRecord, pending: &mut Pending, to: WriteTo) -> Result<u64, StoreError> {
        self.write_views(&mut [(view, pending, to)])
    }

    /// [`Store::write`] for several batches of rows (of one view or several)
    /// in one transaction: all of them are stored, or none. Batches are
    /// merged in order, so a later one wins a tie on (event time, created).
    /// Events of aggregation views are merged into their hour entries and
    /// tiles ([`crate::aggregate::layout`]) in the same transaction.
    pub fn write_views(&self, views: &mut [(&ViewRecord, &mut Pending, WriteTo)]) -> Result<u64, StoreError> {
        self.write_views_at(views, None)
    }

    /// [`Store::write_views`] for replicated serving: the rows of
    /// replication-log messages up to `at.sequence`, with the position and
    /// the messages skipped on the way recorded in the same transaction.
    /// Refused (nothing written) unless `at.sequence` comes after the last
    /// position recorded: a message is applied once.
    pub fn write_views_at(
        &self,
        views: &mut [(&ViewRecord, &mut Pending, WriteTo)],
        at: Option<&LogPosition>,
    ) -> Result<u64, StoreError> {
        let txn = self.begin_write()?;
        let commit = {
            let mut history = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
            let mut latest = txn.open_table(LATEST).map_err(|e| self.fail(e))?;
            let mut aggregates = txn.open_table(AGGREGATES).map_err(|e| self.fail(e))?;
            let mut event_ids = txn.open_table(EVENT_IDS).map_err(|e| self.fail(e))?;
            let mut counters = txn.open_table(COUNTERS).map_err(|e| self.fail(e))?;
            let mut registry = txn.open_table(REGISTRY).map_err(|e| self.fail(e))?;
            let mut stats = txn.open_table(STATS).map_err(|e| self.fail(e))?;
            let commit = counters
                .get("commits")
                .map_err(|e| self.fail(e))?
                .map(|g| g.value())
                .unwrap_or(0)
                + 1;
            counters.insert("commits", commit).map_err(|e| self.fail(e))?;
            if let Some(at) = at {
                let applied = counters
                    .get(LOG_SEQUENCE)
                    .map_err(|e| self.fail(e))?
                    .map_or(0, |g| g.value());
                if at.sequence <= applied {
                    return Err(StoreError::AlreadyApplied {
                        path: self.path.clone(),
                        sequence: at.sequence,
                        applied,
                    });
                }
                counters.insert(LOG_SEQUENCE, at.sequence).map_err(|e| self.fail(e))?;
                let mut skipped = txn.open_table(SKIPPED).map_err(|e| self.fail(e))?;
                for (sequence, why) in &at.skipped {
                    skipped.insert(*sequence, why.as_str()).map_err(|e| self.fail(e))?;
                }
            }
            for (view, pending, to) in views.iter_mut() {
                let mut added = Statistics::new(&view.features);
                match pending {
                    Pending::Rows(rows) => {
                        let added = self.statistics.then_some(&mut added);
                        self.merge_rows(view, rows, *to, &mut history, &mut latest, added)?
                    }
                    Pending::Events(events) => {
                        // Events are not feature values: only their times count (freshness).
                        added.saw_event_time(events.events.iter().map(|(_, e, _)| e.time).max());
                        self.merge_events(view, events, &mut aggregates, &mut event_ids)?
                    }
                }
                if self.statistics && (added.rows > 0 || added.newest_event_time.is_some()) {
                    let stored = stats
                        .get(view.id)
                        .map_err(|e| self.fail(e))?
                        .map(|g| g.value().to_string());
                    if let Some(stored) = stored {
                        let stored = Statistics::from_json(&stored)
                            .map_err(|e| self.corrupt(format!("statistics of view `{}`: {e}", view.name)))?;
                        added.merge(&stored);
                    }
                    added.commit = Some(commit);
                    stats
                        .insert(view.id, added.to_json().as_str())
                        .map_err(|e| self.fail(e))?;
                }
                // Only `last_commit` changes, in the registry's own copy: the
                // writer's may be older (a server started before an `apply`).
                let key = Kind::View.key(&view.name);
                let stored = registry
                    .get(key.as_str())
                    .map_err(|e| self.fail(e))?
                    .map(|g| g.value().to_string());
                let Some(stored) = stored else {
                    continue;
                };
                let mut record: ViewRecord =
                    serde_json::from_str(&stored).map_err(|e| self.corrupt(format!("registry record {key}: {e}")))?;
                record.last_commit = Some(commit);
                registry
                    .insert(key.as_str(), record_json(&record).as_str())
                    .map_err(|e| self.fail(e))?;
            }
            commit
        };
        txn.commit().map_err(|e| self.fail(e))?;
        for (_, pending, _) in views.iter_mut() {
            pending.clear();
        }
        Ok(commit)
    }

    fn merge_rows(
        &self,
        view: &ViewRecord,
        pending: &mut PendingRows,
        to: WriteTo,
        history: &mut redb::Table<&'static [u8], &'static [u8]>,
        latest: &mut redb::Table<&'static [u8], &'static [u8]>,
        mut added: Option<&mut Statistics>,
    ) -> Result<(), StoreError> {
        let PendingRows { arena, entries } = pending;
        // The statistics describe the history (what training data reads):
        // rows it did not hold before, byte for byte.
        let observe = |added: &mut Statistics, row: &[u8]| -> Result<(), StoreError> {
            let values = decode_values(row, &view.features).map_err(|e| self.corrupt(e))?;
            added.add_row(&values);
            added.saw_event_time(Some(layout::row_header(row).map_err(|e| self.corrupt(e))?.event_time));
            Ok(())
        };
        let key_of = |e: &Entry| &arena[e.key.0..e.key.1];
        // Stable: among equal (key, bucket, event_time, created) the later row stays later, and wins.
        entries.sort_by(|a, b| {
            key_of(a)
                .cmp(key_of(b))
                .then(a.bucket.cmp(&b.bucket))
                .then((a.event_time, a.created).cmp(&(b.event_time, b.created)))
        });
        let schema = &view.features;
        {
            let mut block = Vec::new();
            let mut rows: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            while start < entries.len() {
                let entity = key_of(&entries[start]);
                let mut end = start;
                while end < entries.len() && key_of(&entries[end]) == entity {
                    end += 1;
                }
                // One entity: a block per bucket, then its latest value.
                let mut group = if to.offline() { start } else { end };
                while group < end {
                    let bucket = entries[group].bucket;
                    let mut group_end = group;
                    rows.clear();
                    while group_end < end && entries[group_end].bucket == bucket {
                        let e = &entries[group_end];
                        rows.push(&arena[e.row.0..e.row.1]);
                        group_end += 1;
                    }
                    let key = layout::history_key(view.id, entity, bucket);
                    let existing = history.get(key.as_slice()).map_err(|e| self.fail(e))?;
                    let mut new_rows = Vec::new();
                    let keep = added.is_some();
                    layout::merge_block(existing.as_ref().map(|g| g.value()), &rows, schema, &mut block, |row| {
                        if keep {
                            new_rows.push(row)
                        }
                    })
                    .map_err(|e| self.corrupt(e))?;
                    if let Some(added) = added.as_deref_mut() {
                        for row in new_rows {
                            observe(added, row)?;
                        }
                    }
                    drop(existing);
                    history
                        .insert(key.as_slice(), block.as_slice())
                        .map_err(|e| self.fail(e))?;
                    group = group_end;
                }
                if to.online() {
                    let newest = &entries[end - 1];
                    let newest_row = &arena[newest.row.0..newest.row.1];
                    let key = layout::latest_key(view.id, entity);
                    let (replace, same) = match latest.get(key.as_slice()).map_err(|e| self.fail(e))? {
                        None => (true, false),
                        Some(old) => {
                            let same = old.value() == newest_row;
                            let old = layout::row_header(old.value()).map_err(|e| self.corrupt(e))?;
                            (
                                (newest.event_time, newest.created) >= (old.event_time, old.created),
                                same,
                            )
                        }
                    };
                    if replace
                        && !same
                        && !to.offline()
                        && let Some(added) = added.as_deref_mut()
                    {
                        // An online-only write: not in the history the statistics
                        // describe, but the view is fresher.
                        added.saw_event_time(Some(newest.event_time));
                    }
                    if replace {
                        latest.insert(key.as_slice(), newest_row).map_err(|e| self.fail(e))?;
                    }
                }
                start = end;
            }
        }
        Ok(())
    }

    /// Merges events into their hour entries (replacing equal ids, or
    /// numbering appended copies), then rebuilds every tile above them:
    /// the hour's from its events, each day's from its hours, each 30 days'
    /// from its days (invariants in [`crate::aggregate::layout`]).
    fn merge_events(
        &self,
        view: &ViewRecord,
        pending: &mut PendingEvents,
        table: &mut redb::Table<&'static [u8], &'static [u8]>,
        event_ids: &mut redb::Table<&'static [u8], i64>,
    ) -> Result<(), StoreError> {
        use crate::aggregate::layout::{self as agg, Event};
        use crate::aggregate::window::{HOUR, LADDER};
        use crate::aggregate::{IdMode, fold};
        let plan = pending.plan.clone();
        let corrupt = |e: CorruptRow| self.corrupt(format!("view `{}`: {e}", view.name));
        // Keyed events: the last of an (entity, id) in this batch wins, and
        // one stored at another time is removed from there (a `Remove` at its
        // old place, folded with the rest).
        if pending.events.iter().any(|(_, _, mode)| *mode == IdMode::Keyed) {
            let mut last: std::collections::HashMap<(&[u8], agg::EventId), usize> = std::collections::HashMap::new();
            for (i, (entity, event, mode)) in pending.events.iter().enumerate() {
                if *mode == IdMode::Keyed {
                    last.insert((entity.as_slice(), event.id), i);
                }
            }
            let keep: Vec<bool> = pending
                .events
                .iter()
                .enumerate()
                .map(|(i, (entity, event, mode))| *mode != IdMode::Keyed || last[&(entity.as_slice(), event.id)] == i)
                .collect();
            let mut at = 0;
            pending.events.retain(|_| {
                at += 1;
                keep[at - 1]
            });
            let mut moved = Vec::new();
            for (entity, event, mode) in &pending.events {
                if *mode != IdMode::Keyed {
                    continue;
                }
                let key = agg::id_key(view.id, entity, &event.id);
                let old = event_ids
                    .insert(key.as_slice(), event.time)
                    .map_err(|e| self.fail(e))?
                    .map(|g| g.value());
                if let Some(old) = old.filter(|&old| old != event.time) {
                    let at_old_place = Event {
                        time: old,
                        id: event.id,
                        values: Vec::new(),
                    };
                    moved.push((entity.clone(), at_old_place, IdMode::Remove));
                }
            }
            pending.events.extend(moved);
        }
        // Stable: among equal ids the later event stays later, and wins.
        pending
            .events
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.time.cmp(&b.1.time)).then(a.1.id.cmp(&b.1.id)));
        let mut entry = Vec::new();
        let mut events = std::mem::take(&mut pending.events).into_iter().peekable();
        while let Some((entity, first, first_mode)) = events.next() {
            let mut touched: Vec<i64> = Vec::new();
            // Tiles rebuilt in this call, by bucket: their parents merge them
            // from here rather than decoding what was just written.
            let mut rebuilt: BTreeMap<i64, Vec<crate::aggregate::function::State>> = BTreeMap::new();
            // Each touched hour's key and merged events, until their tiles are folded.
            let mut hours: Vec<(Vec<u8>, Vec<Event>)> = Vec::new();
            let mut next = Some((first, first_mode));
            while let Some((event, mode)) = next.take() {
                // One hour of this entity: the new events, merged into the stored ones.
                let hour = event.time.div_euclid(HOUR);
                let mut group = vec![(event, mode)];
                while let Some((e, _, _)) = events.peek() {
                    if *e != entity {
                        break;
                    }
                    let (_, event, mode) = events.next().expect("peeked");
                    if event.time.div_euclid(HOUR) == hour {
                        group.push((event, mode));
                    } else {
                        next = Some((event, mode));
                        break;
                    }
                }
                let key = agg::key(view.id, &entity, 0, hour);
                let mut merged: Vec<Event> = match table.get(key.as_slice()).map_err(|e| self.fail(e))? {
                    Some(old) => agg::hour_events(old.value(), &plan.inputs).map_err(corrupt)?,
                    None => Vec::with_capacity(group.len()),
                };
                for (mut event, mode) in group {
                    if mode == IdMode::Remove {
                        let at = merged.partition_point(|e| (e.time, e.id) < (event.time, event.id));
                        if merged.get(at).is_some_and(|e| (e.time, e.id) == (event.time, event.id)) {
                            merged.remove(at);
                        }
                        continue;
                    }
                    if mode == IdMode::Append {
                        // The next occurrence of an identical event.
                        let copies = merged
                            .iter()
                            .filter(|e| e.time == event.time && e.id[..8] == event.id[..8])
                            .count() as u32;
                        event.id = crate::aggregate::event_id(
                            u64::from_be_bytes(event.id[..8].try_into().expect("8 bytes")),
                            copies,
                        );
                    }
                    let at = merged.partition_point(|e| (e.time, e.id) < (event.time, event.id));
                    if merged.get(at).is_some_and(|e| (e.time, e.id) == (event.time, event.id)) {
                        merged[at] = event;
                    } else {
                        merged.insert(at, event);
                    }
                }
                touched.push(hour);
                hours.push((key, merged));
            }
            // Every touched hour's tile at once (one guest call for user functions).
            let slices: Vec<&[Event]> = hours.iter().map(|(_, events)| events.as_slice()).collect();
            let tiles = fold::fold_hours(&plan, &slices).map_err(aggregator)?;
            for (((key, merged), tile), &hour) in hours.drain(..).zip(tiles).zip(&touched) {
                if merged.is_empty() {
                    // Its last event moved away.
                    table.remove(key.as_slice()).map_err(|e| self.fail(e))?;
                    continue;
                }
                agg::write_hour(&mut entry, &plan, &tile, &merged);
                table
                    .insert(key.as_slice(), entry.as_slice())
                    .map_err(|e| self.fail(e))?;
                rebuilt.insert(hour, tile);
            }
            let entity = entity.as_slice();
            // Rebuild the tiles above, level by level.
            for level in 1..LADDER.len() {
                let ratio = LADDER[level] / LADDER[level - 1];
                let mut parents: Vec<i64> = touched.iter().map(|b| b.div_euclid(ratio)).collect();
                parents.dedup();
                // Each parent's children, stored ones decoded; then every
                // parent's tile at once (one guest call for user functions).
                let mut children_of: Vec<(Vec<i64>, BTreeMap<i64, Vec<_>>)> = Vec::with_capacity(parents.len());
                for &parent in &parents {
                    let low = agg::key(view.id, entity, (level - 1) as u8, parent * ratio);
                    let high = agg::key(view.id, entity, (level - 1) as u8, parent * ratio + ratio - 1);
                    let mut stored = BTreeMap::new();
                    let mut children: Vec<i64> = Vec::new();
                    for item in table
                        .range(low.as_slice()..=high.as_slice())
                        .map_err(|e| self.fail(e))?
                    {
                        let (key, value) = item.map_err(|e| self.fail(e))?;
                        let bucket = agg::bucket_of_key(key.value()).ok_or_else(|| corrupt(CorruptRow("short key")))?;
                        children.push(bucket);
                        if rebuilt.contains_key(&bucket) {
                            continue;
                        }
                        let bytes = if level == 1 {
                            agg::hour_tile(value.value()).map_err(corrupt)?
                        } else {
                            value.value()
                        };
                        stored.insert(bucket, agg::read_tile(bytes, &plan).map_err(corrupt)?);
                    }
                    children_of.push((children, stored));
                }
                let groups: Vec<Vec<&[crate::aggregate::function::State]>> = children_of
                    .iter()
                    .map(|(children, stored)| {
                        children
                            .iter()
                            .map(|b| rebuilt.get(b).or_else(|| stored.get(b)).expect("read above").as_slice())
                            .collect()
                    })
                    .collect();
                let tiles = fold::merge_tile_groups(&plan, &groups).map_err(aggregator)?;
                let mut rebuilt_here = BTreeMap::new();
                for (&parent, tile) in parents.iter().zip(tiles) {
                    let key = agg::key(view.id, entity, level as u8, parent);
                    if fold::is_empty(&plan, &tile) {
                        table.remove(key.as_slice()).map_err(|e| self.fail(e))?;
                    } else {
                        entry.clear();
                        agg::write_tile(&mut entry, &plan, &tile);
                        table
                            .insert(key.as_slice(), entry.as_slice())
                            .map_err(|e| self.fail(e))?;
                    }
                    rebuilt_here.insert(parent, tile);
                }
                rebuilt = rebuilt_here;
                touched = parents;
            }
        }
        Ok(())
    }

    /// A consistent read view of the store (a redb read transaction).
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let history = txn.open_table(HISTORY).map_err(|e| self.fail(e))?;
        let latest = txn.open_table(LATEST).map_err(|e| self.fail(e))?;
        let aggregates = txn.open_table(AGGREGATES).map_err(|e| self.fail(e))?;
        Ok(StoreReader {
            history,
            latest,
            aggregates,
            path: self.path.clone(),
        })
    }

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
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        for (name, def) in [("history", HISTORY), ("latest", LATEST), ("aggregates", AGGREGATES)] {
            let table = txn.open_table(def).map_err(|e| self.fail(e))?;
            for item in table.iter().map_err(|e| self.fail(e))? {
                let (k, v) = item.map_err(|e| self.fail(e))?;
                visit(name, k.value(), v.value());
            }
        }
        Ok(())
    }

    /// Writes a copy of the store as of one commit to `out`, which must not
    /// exist; other readers and writers (a server, a backfill) carry on
    /// ([`backup`] says how). Every table is named here.
    pub fn backup(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        let started = std::time::Instant::now();
        let snapshot = self.db.begin_read().map_err(|e| self.fail(e))?;
        let counters = snapshot.open_table(COUNTERS).map_err(|e| self.fail(e))?;
        let counter = |name: &str| -> Result<u64, StoreError> {
            Ok(counters.get(name).map_err(|e| self.fail(e))?.map_or(0, |v| v.value()))
        };
        let (commit, log_sequence) = (counter("commits")?, counter(LOG_SEQUENCE)?);
        drop(counters);
        let tables: [&dyn backup::CopyTable; 11] = [
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
        ];
        let (entries, bytes) = backup::write(&snapshot, &tables, out).map_err(|e| match e {
            backup::CopyError::Source(e) => self.fail(e),
            backup::CopyError::Copy(path, e) => storage(&path, e),
            backup::CopyError::UnknownTable(name) => self.corrupt(format!(
                "table `{name}` is not one this build knows how to back up; use the build that wrote it"
            )),
            backup::CopyError::Io(path, error) => StoreError::Io { path, error },
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

    /// Number of history blocks and latest values.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let history = txn
            .open_table(HISTORY)
            .map_err(|e| self.fail(e))?
            .len()
            .map_err(|e| self.fail(e))?;
        let latest = txn
            .open_table(LATEST)
            .map_err(|e| self.fail(e))?
            .len()
            .map_err(|e| self.fail(e))?;
        Ok((history, latest))
    }
}

/// Called with each (bucket, value) an aggregate range scan finds.
type EntryVisitor<'a> = dyn FnMut(i64, &[u8]) -> Result<(), StoreError> + 'a;

/// What [`Store::check_aggregates`] found.
#[derive(Debug, Clone, Default)]
pub struct AggregateCheck {
    /// Entity keys with events, in key order.
    pub entities: Vec<Vec<u8>>,
    /// Tiles recomputed and compared.
    pub tiles: u64,
    /// Events read.
    pub events: u64,
    /// Tiles that differ from their definition.
    pub mismatches: Vec<String>,
}

fn describe_entity(key: &[u8]) -> String {
    match layout::decode_entity_key(key) {
        Some(values) => values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
        None => format!("{key:02x?}"),
    }
}

/// Reads feature values from one consistent snapshot.
pub struct StoreReader {
    history: ReadOnlyTable<&'static [u8], &'static [u8]>,
    latest: ReadOnlyTable<&'static [u8], &'static [u8]>,
    aggregates: ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: PathBuf,
}

impl StoreReader {
    fn decode(&self, row: &[u8], view: &ViewRecord) -> Result<StoredRow, StoreError> {
        let corrupt = |e: CorruptRow| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("view `{}`: {e}", view.name),
        };
        let header = layout::row_header(row).map_err(corrupt)?;
        let values = decode_values(row, &view.features).map_err(corrupt)?;
        Ok(StoredRow {
            event_time: header.event_time,
            created: header.created,
            digest_id: header.digest_id,
            values,
        })
    }

    /// The newest row of an entity: one B-tree lookup.
    pub fn latest(&self, view: &ViewRecord, entity_key: &[u8]) -> Result<Option<StoredRow>, StoreError> {
        let key = layout::latest_key(view.id, entity_key);
        match self.latest.get(key.as_slice()).map_err(|e| storage(&self.path, e))? {
            Some(row) => Ok(Some(self.decode(row.value(), view)?)),
            None => Ok(None),
        }
    }

    /// The row with the greatest (event_time, created) whose event time is
    /// `<= at`: one reverse range seek, plus one more if `at`'s own bucket
    /// holds only later rows.
    pub fn as_of(&self, view: &ViewRecord, entity_key: &[u8], at: i64) -> Result<Option<StoredRow>, StoreError> {
        let low = layout::history_key(view.id, entity_key, i64::MIN);
        let high = layout::history_key(view.id, entity_key, layout::bucket_of(at, view.bucket_micros));
        let range = self
            .history
            .range(low.as_slice()..=high.as_slice())
            .map_err(|e| storage(&self.path, e))?;
        for item in range.rev() {
            let (_, block) = item.map_err(|e| storage(&self.path, e))?;
            let newest = layout::newest_row_at(block.value(), &view.features, at).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("view `{}`: {e}", view.name),
            })?;
            if let Some(row) = newest {
                return Ok(Some(self.decode(row, view)?));
            }
        }
        Ok(None)
    }
}

impl StoreReader {
    /// What reads of an aggregation view at `times` need of one entity:
    /// the hour entries and tiles of D(t) for every window, read by one
    /// range scan per run of consecutive buckets.
    pub fn aggregate_data(
        &self,
        view: &ViewRecord,
        plan: &crate::aggregate::Plan,
        entity_key: &[u8],
        times: &[i64],
    ) -> Result<crate::aggregate::fold::EntityData, StoreError> {
        use crate::aggregate::fold;
        use crate::aggregate::layout as agg;
        let corrupt = |e: CorruptRow| StoreError::Corrupt {
            path: self.path.clone(),
            message: format!("view `{}`: {e}", view.name),
        };
        let needed = fold::needed(plan, times);
        let mut data = fold::EntityData::default();
        let scan = |level: u8, (lo, hi): (i64, i64), f: &mut EntryVisitor<'_>| {
            let low = agg::key(view.id, entity_key, level, lo);
            let high = agg::key(view.id, entity_key, level, hi);
            for item in self
                .aggregates
                .range(low.as_slice()..=high.as_slice())
                .map_err(|e| storage(&self.path, e))?
            {
                let (key, value) = item.map_err(|e| storage(&self.path, e))?;
                let bucket = agg::bucket_of_key(key.value()).ok_or(corrupt(CorruptRow("short key")))?;
                f(bucket, value.value())?;
            }
            Ok::<(), StoreError>(())
        };
        for &range in &needed.events {
            scan(0, range, &mut |bucket, bytes| {
                data.events
                    .insert(bucket, agg::hour_events(bytes, &plan.inputs).map_err(corrupt)?);
                Ok(())
            })?;
        }
        for (level, ranges) in needed.tiles.iter().enumerate() {
            for &range in ranges {
                let tiles = &mut data.tiles[level];
                scan(level as u8, range, &mut |bucket, bytes| {
                    let bytes = if level == 0 {
                        agg::hour_tile(bytes).map_err(corrupt)?
                    } else {
                        bytes
                    };
                    tiles.insert(bucket, agg::read_tile(bytes, plan).map_err(corrupt)?);
                    Ok(())
                })?;
            }
        }
        Ok(data)
    }
}

fn storage(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    StoreError::Storage {
        path: path.to_path_buf(),
        error: Box::new(error.into()),
    }
}

/// A registry record as its stored JSON.
fn record_json<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("registry records serialize")
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
            newer.contains("format version 2") && newer.contains("upgrade skewless"),
            "{newer}"
        );

        set_version(&path, Some(0));
        let older = Store::open(&path).err().expect("an older store is refused").to_string();
        assert!(
            older.contains("format version 0") && older.contains("skewless backfill"),
            "{older}"
        );

        // Written before versions were recorded: version 1's layout, stamped on open.
        set_version(&path, None);
        drop(Store::open(&path).unwrap());
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let recorded = txn
            .open_table(META)
            .unwrap()
            .get("format_version")
            .unwrap()
            .map(|g| g.value());
        assert_eq!(recorded, Some(FORMAT_VERSION));
    }

    #[test]
    fn a_new_store_has_an_empty_registry_and_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.redb")).unwrap();
        assert_eq!(store.registry().unwrap(), Registry::default());
        assert_eq!(store.last_commit().unwrap(), 0);
    }
}
