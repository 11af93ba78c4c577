//! Events and tiles of aggregation views in the `aggregates` table, and
//! where keyed events are in `event_ids` ([`crate::aggregate::layout`] has
//! the grammar and invariants). What a tile must hold is decided in
//! [`crate::aggregate::tiles`]; this file reads and writes the entries.

use std::collections::{BTreeMap, HashMap};

use redb::{ReadableTable, Table};

use super::error::{Failure, StoreError};
use super::file::{AGGREGATES, Store};
use super::registry::ViewRecord;
use super::rows::{StoreReader, entity_order};
use crate::aggregate::fold::{self, EntityData};
use crate::aggregate::function::State;
use crate::aggregate::layout::{self as agg, Event, EventId};
pub use crate::aggregate::tiles::AggregateCheck;
use crate::aggregate::tiles::{self, TileCheck, TileError};
use crate::aggregate::window::HOUR;
use crate::aggregate::{IdMode, PendingEvents, Plan};
use crate::format::layout::CorruptRow;

/// Merges events into their hour entries (replacing equal ids, or
/// numbering appended copies), then rebuilds every tile above them:
/// the hour's from its events, each day's from its hours, each 30 days'
/// from its days (invariants in [`crate::aggregate::layout`]).
pub(super) fn merge(
    view: &ViewRecord,
    pending: &mut PendingEvents,
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
    event_ids: &mut Table<'_, &'static [u8], i64>,
) -> Result<(), Failure> {
    let plan = pending.plan.clone();
    let corrupt = Failure::corrupt_in(&view.name);
    // Keyed events: the last of an (entity, id) in this batch wins, and
    // one stored at another time is removed from there (a `Remove` at its
    // old place, folded with the rest).
    if pending.events.iter().any(|(_, _, mode)| *mode == IdMode::Keyed) {
        let mut last: HashMap<(&[u8], EventId), usize> = HashMap::new();
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
            let old = event_ids.insert(key.as_slice(), event.time)?.map(|g| g.value());
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
    // By (entity, time, id); among equal ids the later event stays later,
    // and wins (arrival breaks ties).
    let order = {
        let keys: Vec<&[u8]> = pending.events.iter().map(|(entity, _, _)| entity.as_slice()).collect();
        entity_order(&keys, |i| (pending.events[i].1.time, pending.events[i].1.id))
    };
    let mut arrived: Vec<Option<_>> = std::mem::take(&mut pending.events).into_iter().map(Some).collect();
    pending.events = order
        .iter()
        .map(|&i| arrived[i].take().expect("each index once"))
        .collect();
    let mut entry = Vec::new();
    let mut events = std::mem::take(&mut pending.events).into_iter().peekable();
    while let Some((entity, first, first_mode)) = events.next() {
        let mut touched: Vec<i64> = Vec::new();
        // Tiles rebuilt in this call, by bucket: their parents merge them
        // from here rather than decoding what was just written.
        let mut rebuilt: BTreeMap<i64, Vec<State>> = BTreeMap::new();
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
            let mut merged: Vec<Event> = match table.get(key.as_slice())? {
                Some(old) => agg::hour_events(old.value(), &plan.inputs).map_err(&corrupt)?,
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
        let tiles = fold::fold_hours(&plan, &slices)?;
        for (((key, merged), tile), &hour) in hours.drain(..).zip(tiles).zip(&touched) {
            if merged.is_empty() {
                // Its last event moved away.
                table.remove(key.as_slice())?;
                continue;
            }
            agg::write_hour(&mut entry, &plan, &tile, &merged);
            table.insert(key.as_slice(), entry.as_slice())?;
            rebuilt.insert(hour, tile);
        }
        let entity = entity.as_slice();
        // `stored` and `put` both need the table: one cell, borrowed in turn.
        let table = std::cell::RefCell::new(&mut *table);
        tiles::rebuild_above(
            &plan,
            touched,
            rebuilt,
            |level, first, last, skip| {
                let low = agg::key(view.id, entity, level, first);
                let high = agg::key(view.id, entity, level, last);
                let table = table.borrow();
                let mut found = Vec::new();
                for item in table.range(low.as_slice()..=high.as_slice())? {
                    let (key, value) = item?;
                    let bucket = agg::bucket_of_key(key.value()).ok_or_else(|| corrupt(CorruptRow("short key")))?;
                    if skip(bucket) {
                        found.push((bucket, None));
                        continue;
                    }
                    let bytes = if level == 0 {
                        agg::hour_tile(value.value()).map_err(&corrupt)?
                    } else {
                        value.value()
                    };
                    found.push((bucket, Some(agg::read_tile(bytes, &plan).map_err(&corrupt)?)));
                }
                Ok::<_, Failure>(found)
            },
            |level, bucket, tile| {
                let key = agg::key(view.id, entity, level, bucket);
                let mut table = table.borrow_mut();
                match tile {
                    None => drop(table.remove(key.as_slice())?),
                    Some(tile) => {
                        entry.clear();
                        agg::write_tile(&mut entry, &plan, tile);
                        table.insert(key.as_slice(), entry.as_slice())?;
                    }
                }
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// An aggregate key's (entity, level, bucket): `view_id | entity | level u8 | bucket u64`.
fn split_key(key: &[u8]) -> Option<(&[u8], usize, i64)> {
    let at = key.len().checked_sub(9).filter(|&at| at >= 4)?;
    Some((&key[4..at], key[at] as usize, agg::bucket_of_key(key)?))
}

impl Store {
    /// Recomputes every tile of an aggregation view from what it is defined
    /// by and compares the bytes with the stored ones ([`TileCheck`]). Also
    /// returns the view's entities, for sampling.
    pub fn check_aggregates(&self, view: &ViewRecord, plan: &Plan) -> Result<AggregateCheck, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(AGGREGATES)?;
            let prefix = view.id.to_be_bytes();
            let mut check = TileCheck::new(plan);
            let in_view = |e: TileError| match e {
                TileError::Corrupt(message) => Failure::Corrupt(format!("view `{}`: {message}", view.name)),
                TileError::Function(error) => error.into(),
            };
            for item in table.range(&prefix[..]..)? {
                let (key, value) = item?;
                let key = key.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                let (entity, level, bucket) = split_key(key)
                    .ok_or_else(|| Failure::Corrupt(format!("view `{}`: an aggregate key is too short", view.name)))?;
                check.entry(entity, level, bucket, value.value()).map_err(in_view)?;
            }
            check.finish().map_err(in_view)
        })
    }
}

/// Called with each (bucket, value) an aggregate range scan finds.
type EntryVisitor<'a> = dyn FnMut(i64, &[u8]) -> Result<(), Failure> + 'a;

impl StoreReader {
    /// What reads of an aggregation view at `times` need of one entity:
    /// the hour entries and tiles of D(t) for every window, read by one
    /// range scan per run of consecutive buckets.
    pub fn aggregate_data(
        &self,
        view: &ViewRecord,
        plan: &Plan,
        entity_key: &[u8],
        times: &[i64],
    ) -> Result<EntityData, StoreError> {
        self.mapped(|| {
            let corrupt = Failure::corrupt_in(&view.name);
            let needed = fold::needed(plan, times);
            let mut data = EntityData::default();
            let scan = |level: u8, (lo, hi): (i64, i64), f: &mut EntryVisitor<'_>| {
                let low = agg::key(view.id, entity_key, level, lo);
                let high = agg::key(view.id, entity_key, level, hi);
                for item in self.aggregates.range(low.as_slice()..=high.as_slice())? {
                    let (key, value) = item?;
                    let bucket = agg::bucket_of_key(key.value()).ok_or_else(|| corrupt(CorruptRow("short key")))?;
                    f(bucket, value.value())?;
                }
                Ok::<(), Failure>(())
            };
            for &range in &needed.events {
                scan(0, range, &mut |bucket, bytes| {
                    data.events
                        .insert(bucket, agg::hour_events(bytes, &plan.inputs).map_err(&corrupt)?);
                    Ok(())
                })?;
            }
            for (level, ranges) in needed.tiles.iter().enumerate() {
                for &range in ranges {
                    let tiles = &mut data.tiles[level];
                    scan(level as u8, range, &mut |bucket, bytes| {
                        let bytes = if level == 0 {
                            agg::hour_tile(bytes).map_err(&corrupt)?
                        } else {
                            bytes
                        };
                        tiles.insert(bucket, agg::read_tile(bytes, plan).map_err(&corrupt)?);
                        Ok(())
                    })?;
                }
            }
            Ok(data)
        })
    }
}
