//! Each materialized view's feature statistics, in the `stats` table: kept
//! by every write from the rows it added to the history ([`add`]), or
//! recomputed from the history ([`Store::rebuild_statistics`]); both give
//! the same bits.

use redb::{ReadableTable, Table};

use super::error::{Failure, StoreError};
use super::file::{COMMITS, COUNTERS, KeptStatistics as Kept, STATS, Store, counter, optional};
use super::registry::ViewRecord;
use crate::stats::Statistics;

/// Adds what a commit added to `view` to its kept statistics.
pub(super) fn add(
    stats: &mut Table<'_, u32, &'static str>,
    view: &ViewRecord,
    mut added: Statistics,
    commit: u64,
    kept: &Kept,
) -> Result<(), Failure> {
    if added.rows == 0 && added.newest_event_time.is_none() {
        return Ok(());
    }
    let mut kept = kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(stored) = stats.get(view.id)? {
        match kept.get(&view.id) {
            Some((text, parsed)) if text == stored.value() => added.merge(parsed),
            _ => added.merge(&parse(stored.value(), view)?),
        }
    }
    added.commit = Some(commit);
    let text = added.to_json();
    stats.insert(view.id, text.as_str())?;
    kept.insert(view.id, (text, added));
    Ok(())
}

fn parse(text: &str, view: &ViewRecord) -> Result<Statistics, Failure> {
    Statistics::from_json(text).map_err(|e| Failure::Corrupt(format!("statistics of view `{}`: {e}", view.name)))
}

impl Store {
    /// A materialized view's feature statistics as of its last commit
    /// (`None` before its first rows, and for aggregation views).
    pub fn statistics(&self, view: &ViewRecord) -> Result<Option<Statistics>, StoreError> {
        self.read(|txn| {
            let Some(table) = optional(txn, STATS)? else {
                return Ok(None);
            };
            let Some(text) = table.get(view.id)? else {
                return Ok(None);
            };
            parse(text.value(), view).map(Some)
        })
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
            let kept = self.write_txn(|txn| {
                if counter(&txn.open_table(COUNTERS)?, COMMITS)? != commit {
                    return Ok(false);
                }
                let mut stats = txn.open_table(STATS)?;
                let kept = stats.get(view.id)?.map(|g| g.value().to_string());
                if let Some(kept) = kept.and_then(|text| Statistics::from_json(&text).ok()) {
                    rebuilt.newest_event_time = rebuilt.newest_event_time.max(kept.newest_event_time);
                }
                rebuilt.commit = Some(commit);
                stats.insert(view.id, rebuilt.to_json().as_str())?;
                Ok(true)
            })?;
            if kept {
                return Ok(rebuilt);
            }
        }
    }
}
