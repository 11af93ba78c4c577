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
//!   [`crate::format::layout`] describes.
//! - `aggregates` (`&[u8] -> &[u8]`): the events and tiles of aggregation
//!   views ([`crate::aggregate::layout`]), and `event_ids` (`&[u8] -> i64`):
//!   where each event of a source with an `event_id_column` is (made on the
//!   first write that needs it).
//! - `stats` (`u32 -> &str`): each view's statistics, and
//!   `skipped_messages` (`u64 -> &str`): replication-log messages skipped.
//! - `topic_offsets` (`(&str, i32) -> u64`) and `skipped_records`
//!   (`(&str, i32, u64) -> &str`): where each Kafka source stands in each
//!   partition, and the records it skipped ([`topics`]).
//!
//! One file per thing stored: [`rows`] (feature values: writes and reads),
//! [`registry`] (records and digests), [`aggregates`] (events and tiles),
//! [`statistics`], [`replication`] (the log position), [`topics`] (Kafka offsets), [`backup`] (copies
//! and content digests). [`error`] maps redb's errors, once.
//!
//! Every write is one redb transaction: a crash (even `kill -9`) leaves the
//! store at the last commit, never half-written. Readers never block the
//! writer and see only committed data. Several processes may hold the store
//! open at once (a server and a backfill): writes take turns, reads follow.

pub mod aggregates;
mod backup;
mod error;
mod file;
mod indexes;
pub mod registry;
pub mod replication;
pub mod rows;
pub mod statistics;
pub mod topics;
pub mod versions;

pub use aggregates::AggregateCheck;
pub use backup::{BackupSummary, DumpEntry};
pub use error::StoreError;
use file::{AGGREGATES, COUNTERS, EVENT_IDS, HISTORY, LATEST, STATS, counter};
pub use file::{MIN_FREE_BYTES, Store};
pub use indexes::SearchError;
pub use registry::{Invariance, Registry, ViewRecord};
pub use replication::LogPosition;
pub use rows::{PendingRows, StoreReader, StoredRow, WriteTo};
pub use topics::TopicPosition;

use crate::aggregate::PendingEvents;
pub use crate::format::FORMAT_VERSION;
use crate::stats::Statistics;
use file::COMMITS;

/// Where a write stands in the stream its rows come from.
#[derive(Debug, Clone)]
pub enum StreamPosition {
    /// The replication log (replicated serving).
    Log(LogPosition),
    /// A Kafka partition (a `type = "kafka"` source).
    Topic(TopicPosition),
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
            Pending::Events(e) => e.clear(),
        }
    }
}

impl Store {
    /// Writes `pending` rows of `view` in one transaction, merging them into
    /// the history blocks and/or the latest values, as `to` says (invariants
    /// in [`crate::format::layout`]). Returns the commit number. On error
    /// nothing is written.
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

    /// [`Store::write_views`] for rows read from a stream: the rows of
    /// replication-log messages or Kafka records, with the position after
    /// them and what was skipped on the way recorded in the same
    /// transaction. Refused (nothing written) unless the write starts where
    /// the stored position is: each message or record is applied once.
    pub fn write_views_at(
        &self,
        views: &mut [(&ViewRecord, &mut Pending, WriteTo)],
        at: Option<&StreamPosition>,
    ) -> Result<u64, StoreError> {
        let touched = self.indexed_keys(views.iter().map(|(view, pending, _)| {
            let rows = match &**pending {
                Pending::Rows(rows) => Some(rows),
                Pending::Events(_) => None,
            };
            (*view, rows)
        }));
        let commit = self.write_txn(|txn| {
            let mut counters = txn.open_table(COUNTERS)?;
            let commit = counter(&counters, COMMITS)? + 1;
            counters.insert(COMMITS, commit)?;
            match at {
                Some(StreamPosition::Log(at)) => replication::record(txn, &mut counters, at, &self.path)?,
                Some(StreamPosition::Topic(at)) => topics::record(txn, at, &self.path)?,
                None => {}
            }
            let mut history = txn.open_table(HISTORY)?;
            let mut latest = txn.open_table(LATEST)?;
            let mut aggregates = txn.open_table(AGGREGATES)?;
            let mut event_ids = txn.open_table(EVENT_IDS)?;
            let mut stats = txn.open_table(STATS)?;
            for (view, pending, to) in views.iter_mut() {
                let mut added = Statistics::new(&view.features);
                match pending {
                    Pending::Rows(rows) => {
                        let added = self.statistics.then_some(&mut added);
                        rows::merge(view, rows, *to, &mut history, &mut latest, added)?
                    }
                    Pending::Events(events) => {
                        // Events are not feature values: only their times count (freshness).
                        added.saw_event_time(events.events.iter().map(|e| e.time).max());
                        aggregates::merge(view, events, &mut aggregates, &mut event_ids)?
                    }
                }
                if self.statistics {
                    statistics::add(&mut stats, view, added, commit, &self.kept_statistics)?;
                }
                registry::record_commit(&mut counters, view, commit)?;
            }
            Ok(commit)
        })?;
        let written: Vec<&ViewRecord> = views.iter().map(|(view, _, _)| *view).collect();
        self.refresh_indexes(&written, touched, commit);
        for (_, pending, _) in views.iter_mut() {
            pending.clear();
        }
        Ok(commit)
    }

    /// A consistent read view of the store (a redb read transaction).
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        self.read(|txn| {
            Ok(StoreReader {
                history: txn.open_table(HISTORY)?,
                latest: txn.open_table(LATEST)?,
                aggregates: txn.open_table(AGGREGATES)?,
                path: self.path.clone(),
            })
        })
    }
}
