//! What can go wrong with the store, and the one place redb's errors
//! become ours.
//!
//! Code inside a transaction returns [`Failure`], which every redb error
//! and every undecodable byte converts into with `?`; the transaction
//! helpers (`Store::read`, `Store::write_txn`) and the reader turn it into a
//! [`StoreError`] that names the file, in [`Failure::at`] and nowhere else.

use std::path::{Path, PathBuf};

use crate::format::FORMAT_VERSION;
use crate::format::layout::CorruptRow;

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
        /// Bytes kept free ([`super::MIN_FREE_BYTES`]).
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
    /// A replication-log write does not start right after the last
    /// message applied: the messages between would be lost.
    #[error(
        "store {}: a write of replication-log messages from {first} on, but the store holds messages up to \
         {applied}; nothing was written (the applier follows the log again from {applied})",
        path.display()
    )]
    LogGap {
        /// Store file.
        path: PathBuf,
        /// The write's first message.
        first: u64,
        /// The last message applied.
        applied: u64,
    },
    /// A write of Kafka records does not start at the offset the store
    /// holds for the partition: another consumer moved it, or this one
    /// lost its place. Nothing is written; the consumer reads on from the
    /// stored offset.
    #[error(
        "store {}: kafka source `{source_name}` partition {partition}: a write of records from offset {from}, but \
         the store's next offset is {}; nothing was written (the consumer reads on from the stored offset; \
         is another `skewless serve` consuming the same source into this store?)",
        path.display(),
        stored.map_or("none".to_string(), |s| s.to_string())
    )]
    TopicMoved {
        /// Store file.
        path: PathBuf,
        /// The push source.
        source_name: String,
        /// The partition.
        partition: i32,
        /// The write's first offset.
        from: u64,
        /// The store's next offset.
        stored: Option<u64>,
    },
    /// No built store version has this name.
    #[error(
        "no store version `{name}` in {}: {}",
        dir.display(),
        if available.is_empty() {
            "none is built; build one with `skewless backfill --new-version NAME`".to_string()
        } else {
            format!("the versions there are {}", available.join(", "))
        }
    )]
    NoVersion {
        /// The name asked for.
        name: String,
        /// Where versions are.
        dir: PathBuf,
        /// The names of the versions there.
        available: Vec<String>,
    },
    /// A store version name that could not be a file name.
    #[error(
        "`{0}` is not a usable store version name: use letters, digits, `_`, `-` and `.`, not starting with `.` \
         nor ending with `.building`"
    )]
    VersionName(String),
    /// The folder for the store could not be created.
    #[error("cannot create {}: {error}", path.display())]
    Io {
        /// Folder.
        path: PathBuf,
        /// I/O error.
        error: std::io::Error,
    },
}

impl StoreError {
    /// Whether redb refuses the store until it is reopened, after an I/O
    /// error (a disk that filled up mid-write): a server reopens it with
    /// `POST /admin/swap` and no version, once the cause is fixed.
    pub fn needs_reopen(&self) -> bool {
        matches!(self, StoreError::Storage { error, .. } if matches!(**error, redb::Error::PreviousIo))
    }
}

/// A failure inside a transaction, before the store's path is added.
#[derive(Debug)]
pub(crate) enum Failure {
    /// redb failed.
    Redb(redb::Error),
    /// Bytes that do not decode: what, and where (view, entity).
    Corrupt(String),
    /// Already a store error (a user function's failure, a refused write).
    Store(StoreError),
}

impl Failure {
    /// The store error for the store at `path`.
    pub(crate) fn at(self, path: &Path) -> StoreError {
        match self {
            Failure::Redb(error) => StoreError::Storage {
                path: path.to_path_buf(),
                error: Box::new(error),
            },
            Failure::Corrupt(message) => StoreError::Corrupt {
                path: path.to_path_buf(),
                message,
            },
            Failure::Store(error) => error,
        }
    }

    /// Undecodable bytes of `view`.
    pub(crate) fn corrupt_in(view: &str) -> impl Fn(CorruptRow) -> Failure + '_ {
        move |e| Failure::Corrupt(format!("view `{view}`: {e}"))
    }
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Failure {
                Failure::Redb(error.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<CorruptRow> for Failure {
    fn from(error: CorruptRow) -> Failure {
        Failure::Corrupt(error.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Store(error)
    }
}

/// A user function's failure while tiles were built.
impl From<crate::TransformError> for Failure {
    fn from(error: crate::TransformError) -> Failure {
        Failure::Store(StoreError::Aggregator(Box::new(error)))
    }
}
