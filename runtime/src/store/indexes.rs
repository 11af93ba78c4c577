//! The vector indexes a store keeps current ([`crate::search`]): built on
//! the first search of a feature, then updated by every commit of this
//! process that writes the view, and rebuilt once when another process
//! (a `skewless backfill` beside a server) wrote it.
//!
//! Invariant, enforced here: a kept index reflects the view's rows as of
//! commit `seen`, the view's last commit when it was built or last updated.
//! [`Store::vector_index`] compares `seen` with the view's last commit in
//! the store and rebuilds when they differ; this process's commits update
//! the index and `seen` together, under the same lock as a build, so a
//! build never misses a commit and a commit never updates a half-built
//! index. An index that cannot be updated is dropped (the next search
//! builds it again), never left behind.

use std::sync::{Arc, RwLock};

use super::error::StoreError;
use super::file::{COUNTERS, HISTORY, Kept, LATEST, Store, counter};
use super::registry::{ViewRecord, last_commit_key};
use super::rows::PendingRows;
use crate::format::layout;
use crate::format::value::Value;
use crate::format::value::decode_values;
use crate::search::{BadQuery, Hit, Metric, VectorHistory, VectorIndex, vector_feature};
use crate::store::error::Failure;

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The view has no such vector feature (the message says what it has).
    #[error("{0}")]
    NoVector(String),
    /// The query, metric or `k` is refused.
    #[error(transparent)]
    BadQuery(#[from] BadQuery),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The current index of `view`'s vector feature (`feature`, or its only
    /// one), and the feature's position in the view's features.
    pub fn vector_index(
        &self,
        view: &ViewRecord,
        feature: Option<&str>,
    ) -> Result<(usize, Arc<RwLock<VectorIndex>>), SearchError> {
        let (position, dimension) =
            vector_feature(&view.name, &view.features, feature).map_err(SearchError::NoVector)?;
        let mut indexes = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last_commit_of(view)?;
        let key = (view.name.clone(), position);
        if let Some(kept) = indexes.get(&key)
            && kept.view_id == view.id
            && kept.seen == last
        {
            return Ok((position, kept.index.clone()));
        }
        // Built under the lock, from one snapshot taken after reading
        // `last`: a commit after it waits for the lock, then updates.
        let mut index = VectorIndex::new(position, dimension);
        self.read(|txn| {
            let table = txn.open_table(LATEST)?;
            let start = layout::latest_key(view.id, &[]);
            for item in table.range(start.as_slice()..)? {
                let (key, row) = item?;
                let Some(entity) = key.value().strip_prefix(start.as_slice()) else {
                    break;
                };
                let corrupt = Failure::corrupt_in(&view.name);
                let time = layout::row_header(row.value()).map_err(&corrupt)?.event_time;
                let values = decode_values(row.value(), &view.features).map_err(&corrupt)?;
                index.upsert(entity, Some((time, &values)));
            }
            Ok(())
        })?;
        let index = Arc::new(RwLock::new(index));
        // One index per view and feature: a re-applied view's old one goes.
        indexes.insert(
            key,
            Kept {
                view_id: view.id,
                seen: last,
                index: index.clone(),
            },
        );
        Ok((position, index))
    }

    /// The `k` entities of `view` whose vector feature (`feature`, or its
    /// only one) is nearest to `query` under `metric`, among the rows a read
    /// at `now` would serve (the view's TTL counted back from it): the one
    /// search every front end runs ([`crate::search`] says how).
    pub fn nearest(
        &self,
        view: &ViewRecord,
        feature: Option<&str>,
        query: &[f32],
        k: usize,
        metric: Metric,
        now: i64,
    ) -> Result<Vec<Hit>, SearchError> {
        let (_, index) = self.vector_index(view, feature)?;
        let index = index.read().unwrap_or_else(|e| e.into_inner());
        Ok(index.search(query, k, metric, ttl_micros(view).map(|ttl| now - ttl))?)
    }

    /// Every stored version of `view`'s vector feature (`feature`, or its
    /// only one), from its history, to search as of any time.
    pub fn vector_history(&self, view: &ViewRecord, feature: Option<&str>) -> Result<VectorHistory, SearchError> {
        let (position, dimension) =
            vector_feature(&view.name, &view.features, feature).map_err(SearchError::NoVector)?;
        let versions = self.read(|txn| {
            let corrupt = Failure::corrupt_in(&view.name);
            let start = layout::latest_key(view.id, &[]);
            let mut versions = Vec::new();
            for item in txn.open_table(HISTORY)?.range(start.as_slice()..)? {
                let (key, block) = item?;
                if !key.value().starts_with(&start) {
                    break;
                }
                let (_, entity, _) =
                    layout::split_history_key(key.value()).ok_or(corrupt(layout::CorruptRow("history key")))?;
                for row in layout::block_rows(block.value(), &view.features).map_err(&corrupt)? {
                    let header = layout::row_header(row).map_err(&corrupt)?;
                    let vector = match decode_values(row, &view.features)
                        .map_err(&corrupt)?
                        .swap_remove(position)
                    {
                        Value::Vector(vector) => Some(vector),
                        _ => None,
                    };
                    versions.push((header.event_time, header.created, entity.to_vec(), vector));
                }
            }
            Ok(versions)
        })?;
        Ok(VectorHistory::new(dimension, ttl_micros(view), versions))
    }

    fn last_commit_of(&self, view: &ViewRecord) -> Result<u64, StoreError> {
        self.read(|txn| counter(&txn.open_table(COUNTERS)?, &last_commit_key(&view.name)))
    }

    /// The entity keys each write of rows touches (`views[i]` writes
    /// `rows[i]`, if rows), for the views that have an index: taken before
    /// the commit, which consumes the rows.
    pub(super) fn indexed_keys<'r>(
        &self,
        views: impl Iterator<Item = (&'r ViewRecord, Option<&'r PendingRows>)>,
    ) -> Vec<(usize, Vec<Vec<u8>>)> {
        let indexes = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        if indexes.is_empty() {
            return Vec::new();
        }
        views
            .enumerate()
            .filter(|(_, (view, _))| indexes.keys().any(|(name, _)| *name == view.name))
            .filter_map(|(i, (_, rows))| Some((i, rows?.entity_keys().map(<[u8]>::to_vec).collect())))
            .collect()
    }

    /// After commit `commit`: each touched entity's latest row, read back,
    /// into the indexes of its view.
    pub(super) fn refresh_indexes(&self, views: &[&ViewRecord], touched: Vec<(usize, Vec<Vec<u8>>)>, commit: u64) {
        if touched.is_empty() {
            return;
        }
        let mut indexes = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        for (i, keys) in touched {
            let view = views[i];
            let refreshed = self.read(|txn| {
                let table = txn.open_table(LATEST)?;
                let mut rows = Vec::with_capacity(keys.len());
                for key in &keys {
                    let stored = table.get(layout::latest_key(view.id, key).as_slice())?;
                    let row = match stored {
                        Some(row) => {
                            let corrupt = Failure::corrupt_in(&view.name);
                            let time = layout::row_header(row.value()).map_err(&corrupt)?.event_time;
                            Some((time, decode_values(row.value(), &view.features).map_err(&corrupt)?))
                        }
                        None => None,
                    };
                    rows.push(row);
                }
                Ok(rows)
            });
            indexes.retain(|(name, _), kept| {
                if *name != view.name {
                    return true;
                }
                let Ok(rows) = &refreshed else {
                    return false;
                };
                if kept.view_id != view.id {
                    return false;
                }
                let mut index = kept.index.write().unwrap_or_else(|e| e.into_inner());
                for (key, row) in keys.iter().zip(rows) {
                    index.upsert(key, row.as_ref().map(|(time, values)| (*time, values.as_slice())));
                }
                kept.seen = commit;
                true
            });
        }
    }
}

/// A view's TTL in microseconds, as reads count it.
fn ttl_micros(view: &ViewRecord) -> Option<i64> {
    view.ttl_secs.map(|secs| secs as i64 * 1_000_000)
}
