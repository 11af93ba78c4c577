//! Feature values of materialized views: the `history` blocks and the
//! `latest` rows ([`crate::format::layout`] has their grammar and
//! invariants), written by [`merge`] and read by [`StoreReader`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use redb::{ReadOnlyTable, ReadableTable, ReadableTableMetadata, Table};
use serde::{Deserialize, Serialize};

use super::error::{Failure, StoreError};
use super::file::{HISTORY, LATEST, Store};
use super::registry::ViewRecord;
use crate::format::layout::{self, CorruptRow, RowWriter};
use crate::format::value::{Value, decode_values, decode_values_into};
use crate::stats::Statistics;
use crate::types::FieldSpec;

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

    /// The entity key of each row waiting, in order.
    pub fn entity_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| &self.arena[e.key.0..e.key.1])
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

type Bytes<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// Writes with at least this many rows count their statistics on a second
/// thread while this one merges blocks into the B-tree (a backfill chunk);
/// smaller ones (a push) count them inline, sparing a thread's start. The
/// bits are the same either way: statistics merge in any order.
const STATISTICS_THREAD_ROWS: usize = 16_384;
/// New rows handed to the statistics thread at a time.
const STATISTICS_CHUNK: usize = 4_096;

/// Adds stored rows (their values and event times) to `stats`.
fn observe(stats: &mut Statistics, rows: &[&[u8]], schema: &[FieldSpec]) -> Result<(), CorruptRow> {
    let mut values = Vec::with_capacity(schema.len());
    for row in rows {
        decode_values_into(row, schema, &mut values)?;
        stats.add_row(&values);
        stats.saw_event_time(Some(layout::row_header(row)?.event_time));
    }
    Ok(())
}

/// The order of items by entity key, then by `then`, arrival breaking
/// ties (so the later of two equal items stays later, and wins): the
/// indices of `keys` (one per item) in that order. Linear, not a
/// comparison sort of the whole (which was half a backfill's time): each
/// key gets its rank among the distinct keys, a counting sort by rank
/// keeps arrival order, and each entity's run is sorted only if it is not
/// already (sources usually come in time order).
pub(super) fn entity_order<K: Ord>(keys: &[&[u8]], then: impl Fn(usize) -> K) -> Vec<usize> {
    let mut ordinal: std::collections::HashMap<&[u8], u32> = std::collections::HashMap::new();
    let ordinals: Vec<u32> = keys
        .iter()
        .map(|key| {
            let next = ordinal.len() as u32;
            *ordinal.entry(key).or_insert(next)
        })
        .collect();
    let mut distinct: Vec<(&[u8], u32)> = ordinal.into_iter().collect();
    distinct.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut rank = vec![0u32; distinct.len()];
    for (r, (_, o)) in distinct.iter().enumerate() {
        rank[*o as usize] = r as u32;
    }
    // Where each rank's run starts, then each item placed in arrival order.
    let mut start = vec![0usize; distinct.len() + 1];
    for &o in &ordinals {
        start[rank[o as usize] as usize + 1] += 1;
    }
    for r in 0..distinct.len() {
        start[r + 1] += start[r];
    }
    let runs = start.clone();
    let mut order = vec![0usize; keys.len()];
    for (item, &o) in ordinals.iter().enumerate() {
        let at = &mut start[rank[o as usize] as usize];
        order[*at] = item;
        *at += 1;
    }
    for run in runs.windows(2) {
        let run = &mut order[run[0]..run[1]];
        if !run.is_sorted_by_key(|&i| then(i)) {
            // Stable: arrival order breaks ties.
            run.sort_by_key(|&i| then(i));
        }
    }
    order
}

/// Merges `pending` rows of `view` into its history blocks and/or latest
/// rows, as `to` says, adding the rows new to the history (and the
/// freshness of online-only ones) to `added`.
pub(super) fn merge(
    view: &ViewRecord,
    pending: &mut PendingRows,
    to: WriteTo,
    history: &mut Bytes<'_>,
    latest: &mut Bytes<'_>,
    added: Option<&mut Statistics>,
) -> Result<(), Failure> {
    let PendingRows { arena, entries } = pending;
    let keys: Vec<&[u8]> = entries.iter().map(|e| &arena[e.key.0..e.key.1]).collect();
    let order = entity_order(&keys, |i| {
        (entries[i].bucket, entries[i].event_time, entries[i].created)
    });
    *entries = order.iter().map(|&i| entries[i]).collect();
    let (arena, entries) = (&*arena, &*entries);
    let Some(added) = added else {
        return merge_sorted(view, arena, entries, to, history, latest, None);
    };
    if entries.len() < STATISTICS_THREAD_ROWS {
        return merge_sorted(view, arena, entries, to, history, latest, Some((added, None)));
    }
    let schema = &view.features;
    // The merge queues the rows new to the history; a second thread counts
    // them meanwhile, and this one helps with what is left once it is done.
    let (chunks, queued) = std::sync::mpsc::channel::<Vec<&[u8]>>();
    let queued = std::sync::Mutex::new(queued);
    let count = || -> Result<Statistics, CorruptRow> {
        let mut stats = Statistics::new(schema);
        loop {
            let chunk = queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
            match chunk {
                Ok(chunk) => observe(&mut stats, &chunk, schema)?,
                Err(std::sync::mpsc::RecvError) => return Ok(stats),
            }
        }
    };
    std::thread::scope(|scope| {
        let counting = scope.spawn(count);
        let merged = merge_sorted(view, arena, entries, to, history, latest, Some((added, Some(chunks))));
        let helped = count();
        let counted = counting.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        merged?;
        for counted in [counted, helped] {
            added.merge(&counted.map_err(Failure::corrupt_in(&view.name))?);
        }
        Ok(())
    })
}

/// Where the rows new to the history go: the statistics, counted here, or
/// chunks sent to the thread that counts them.
type Observer<'s, 'a> = (&'s mut Statistics, Option<std::sync::mpsc::Sender<Vec<&'a [u8]>>>);

/// [`merge`] of entries sorted by (entity key, bucket, event time, created).
fn merge_sorted<'a>(
    view: &ViewRecord,
    arena: &'a [u8],
    entries: &[Entry],
    to: WriteTo,
    history: &mut Bytes<'_>,
    latest: &mut Bytes<'_>,
    mut added: Option<Observer<'_, 'a>>,
) -> Result<(), Failure> {
    let corrupt = Failure::corrupt_in(&view.name);
    let key_of = |e: &Entry| &arena[e.key.0..e.key.1];
    let schema = &view.features;
    let mut block = Vec::new();
    let mut rows: Vec<&[u8]> = Vec::new();
    // The statistics describe the history (what training data reads):
    // rows it did not hold before, byte for byte.
    let mut new_rows: Vec<&'a [u8]> = Vec::new();
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
            let existing = history.get(key.as_slice())?;
            let keep = added.is_some();
            layout::merge_block(existing.as_ref().map(|g| g.value()), &rows, schema, &mut block, |row| {
                if keep {
                    new_rows.push(row)
                }
            })
            .map_err(&corrupt)?;
            drop(existing);
            history.insert(key.as_slice(), block.as_slice())?;
            if let Some((stats, chunks)) = &mut added
                && (new_rows.len() >= STATISTICS_CHUNK || chunks.is_none())
            {
                match chunks {
                    // A send fails only if the counting stopped, on a corrupt row it reports.
                    Some(chunks) => drop(chunks.send(std::mem::take(&mut new_rows))),
                    None => observe(stats, &std::mem::take(&mut new_rows), schema).map_err(&corrupt)?,
                }
            }
            group = group_end;
        }
        if to.online() {
            let newest = &entries[end - 1];
            let newest_row = &arena[newest.row.0..newest.row.1];
            let key = layout::latest_key(view.id, entity);
            let (replace, same) = match latest.get(key.as_slice())? {
                None => (true, false),
                Some(old) => {
                    let same = old.value() == newest_row;
                    let old = layout::row_header(old.value()).map_err(&corrupt)?;
                    (
                        (newest.event_time, newest.created) >= (old.event_time, old.created),
                        same,
                    )
                }
            };
            if replace
                && !same
                && !to.offline()
                && let Some((stats, _)) = &mut added
            {
                // An online-only write: not in the history the statistics
                // describe, but the view is fresher.
                stats.saw_event_time(Some(newest.event_time));
            }
            if replace {
                latest.insert(key.as_slice(), newest_row)?;
            }
        }
        start = end;
    }
    if let Some((_, Some(chunks))) = added
        && !new_rows.is_empty()
    {
        drop(chunks.send(new_rows));
    }
    Ok(())
}

/// Calls `f` with every stored history row of `view` (its header's event
/// time and digest id, and its bytes), in key order.
fn each_history_row(
    history: &impl ReadableTable<&'static [u8], &'static [u8]>,
    view: &ViewRecord,
    mut f: impl FnMut(layout::RowHeader, &[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let corrupt = Failure::corrupt_in(&view.name);
    let start = layout::latest_key(view.id, &[]);
    for item in history.range(start.as_slice()..)? {
        let (key, block) = item?;
        if !key.value().starts_with(&start) {
            break;
        }
        for row in layout::block_rows(block.value(), &view.features).map_err(&corrupt)? {
            f(layout::row_header(row).map_err(&corrupt)?, row)?;
        }
    }
    Ok(())
}

impl Store {
    /// Every entity of `view` in the latest table, with the digest id of the
    /// row stored for it: what `verify` samples and checks for staleness.
    pub fn latest_entities(&self, view: &ViewRecord) -> Result<Vec<(Vec<u8>, u32)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(LATEST)?;
            let start = layout::latest_key(view.id, &[]);
            let mut out = Vec::new();
            for item in table.range(start.as_slice()..)? {
                let (key, row) = item?;
                let Some(entity) = key.value().strip_prefix(start.as_slice()) else {
                    break;
                };
                let header = layout::row_header(row.value()).map_err(Failure::corrupt_in(&view.name))?;
                out.push((entity.to_vec(), header.digest_id));
            }
            Ok(out)
        })
    }

    /// How many history rows of `view` each digest id produced.
    pub fn history_digests(&self, view: &ViewRecord) -> Result<BTreeMap<u32, u64>, StoreError> {
        self.read(|txn| {
            let mut out = BTreeMap::new();
            each_history_row(&txn.open_table(HISTORY)?, view, |header, _| {
                *out.entry(header.digest_id).or_default() += 1;
                Ok(())
            })?;
            Ok(out)
        })
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
        self.read(|txn| {
            each_history_row(&txn.open_table(HISTORY)?, view, |header, row| {
                if (from..to).contains(&header.event_time) {
                    let values = decode_values(row, &view.features).map_err(Failure::corrupt_in(&view.name))?;
                    f(header.event_time, values);
                }
                Ok(())
            })
        })
    }

    /// Number of history blocks and latest values.
    pub fn counts(&self) -> Result<(u64, u64), StoreError> {
        self.read(|txn| Ok((txn.open_table(HISTORY)?.len()?, txn.open_table(LATEST)?.len()?)))
    }
}

/// Reads feature values from one consistent snapshot.
pub struct StoreReader {
    pub(super) history: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) latest: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) aggregates: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) path: PathBuf,
}

impl StoreReader {
    /// Runs `f`, naming the store in its error: the reader's one mapping.
    pub(super) fn mapped<T>(&self, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, StoreError> {
        f().map_err(|e| e.at(&self.path))
    }

    fn decode(row: &[u8], view: &ViewRecord) -> Result<StoredRow, Failure> {
        let corrupt = Failure::corrupt_in(&view.name);
        let header = layout::row_header(row).map_err(&corrupt)?;
        let values = decode_values(row, &view.features).map_err(&corrupt)?;
        Ok(StoredRow {
            event_time: header.event_time,
            created: header.created,
            digest_id: header.digest_id,
            values,
        })
    }

    /// The newest row of an entity: one B-tree lookup.
    pub fn latest(&self, view: &ViewRecord, entity_key: &[u8]) -> Result<Option<StoredRow>, StoreError> {
        self.mapped(|| {
            let key = layout::latest_key(view.id, entity_key);
            match self.latest.get(key.as_slice())? {
                Some(row) => Ok(Some(Self::decode(row.value(), view)?)),
                None => Ok(None),
            }
        })
    }

    /// The row with the greatest (event_time, created) whose event time is
    /// `<= at`: one reverse range seek, plus one more if `at`'s own bucket
    /// holds only later rows.
    pub fn as_of(&self, view: &ViewRecord, entity_key: &[u8], at: i64) -> Result<Option<StoredRow>, StoreError> {
        self.mapped(|| {
            let low = layout::history_key(view.id, entity_key, i64::MIN);
            let high = layout::history_key(view.id, entity_key, layout::bucket_of(at, view.bucket_micros));
            for item in self.history.range(low.as_slice()..=high.as_slice())?.rev() {
                let (_, block) = item?;
                let newest = layout::newest_row_at(block.value(), &view.features, at)
                    .map_err(Failure::corrupt_in(&view.name))?;
                if let Some(row) = newest {
                    return Ok(Some(Self::decode(row, view)?));
                }
            }
            Ok(None)
        })
    }
}
