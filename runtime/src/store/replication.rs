//! Where a replica stands in the replication log: the last message applied
//! (in `counters`) and the messages skipped (`skipped_messages`), written
//! in the transaction that applies them, so each message is applied
//! exactly once across restarts and crashes.

use std::path::Path;

use redb::{ReadableTable, Table, WriteTransaction};

use super::error::{Failure, StoreError};
use super::file::{COUNTERS, SKIPPED, Store, counter, optional};

/// Key in `counters`: the stream sequence of the last replication-log
/// message applied.
pub(super) const LOG_SEQUENCE: &str = "log_sequence";

/// Where a write stands in a replication log ([`Store::write_views_at`]).
#[derive(Debug, Clone, Default)]
pub struct LogPosition {
    /// The stream sequence of the first message the write applies: the
    /// one after the last applied, or the write is refused.
    pub first: u64,
    /// The stream sequence of the last message the write applies.
    pub sequence: u64,
    /// Messages up to `sequence` that are recorded and skipped: (stream
    /// sequence, why). A poison message fails the same way everywhere, so
    /// every replica skips the same ones.
    pub skipped: Vec<(u64, String)>,
}

/// Records `at` in the write that applies it; refused (and so nothing of
/// the write kept) unless it starts right after the last position
/// recorded: messages apply once each, in order, with no gap.
pub(super) fn record(
    txn: &WriteTransaction,
    counters: &mut Table<'_, &'static str, u64>,
    at: &LogPosition,
    path: &Path,
) -> Result<(), Failure> {
    let applied = counter(counters, LOG_SEQUENCE)?;
    if at.first <= applied {
        return Err(StoreError::AlreadyApplied {
            path: path.to_path_buf(),
            sequence: at.first,
            applied,
        }
        .into());
    }
    if at.first != applied + 1 || at.sequence < at.first {
        return Err(StoreError::LogGap {
            path: path.to_path_buf(),
            first: at.first,
            applied,
        }
        .into());
    }
    counters.insert(LOG_SEQUENCE, at.sequence)?;
    let mut skipped = txn.open_table(SKIPPED)?;
    for (sequence, why) in &at.skipped {
        skipped.insert(*sequence, why.as_str())?;
    }
    Ok(())
}

impl Store {
    /// The stream sequence of the last replication-log message applied
    /// (0: none), as of the latest commit: what a replica replays after.
    pub fn log_sequence(&self) -> Result<u64, StoreError> {
        self.read(|txn| counter(&txn.open_table(COUNTERS)?, LOG_SEQUENCE))
    }

    /// Replication-log messages skipped (stream sequence, why), in order.
    pub fn skipped_messages(&self) -> Result<Vec<(u64, String)>, StoreError> {
        self.read(|txn| {
            let Some(table) = optional(txn, SKIPPED)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in table.iter()? {
                let (sequence, why) = item?;
                out.push((sequence.value(), why.value().to_string()));
            }
            Ok(out)
        })
    }
}
