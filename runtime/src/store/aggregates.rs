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
use crate::aggregate::layout::{self as agg, Event, EventId, HOURS_PER_DAY, HourSection, TILE_MIN_EVENTS};
pub use crate::aggregate::tiles::AggregateCheck;
use crate::aggregate::tiles::{self, Tile, TileCheck, TileError, day_count};
use crate::aggregate::window::{HOUR, LADDER};
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
    let mut sorted = std::mem::take(&mut pending.events).into_iter().peekable();
    let mut run = Vec::new();
    while let Some(first) = sorted.next() {
        run.clear();
        run.push(first);
        while let Some(next) = sorted.next_if(|(entity, _, _)| *entity == run[0].0) {
            run.push(next);
        }
        let entity = std::mem::take(&mut run[0].0);
        merge_entity(view, &plan, &entity, &mut run, table)?;
    }
    Ok(())
}

/// One hour of a day entry being rewritten: its events merged with new
/// ones, or its stored section kept as it is.
enum HourAfter<'a> {
    Merged(i64, Vec<Event>),
    Kept(HourSection<'a>),
}

/// Merges one entity's events (in (time, id) order; their entity keys
/// may have been taken) into its day entries, then rebuilds the tiles
/// above them.
fn merge_entity(
    view: &ViewRecord,
    plan: &Plan,
    entity: &[u8],
    events: &mut [(Vec<u8>, Event, IdMode)],
    table: &mut Table<'_, &'static [u8], &'static [u8]>,
) -> Result<(), Failure> {
    let corrupt = Failure::corrupt_in(&view.name);
    // An entity with no entry yet (most of a first backfill) has no day to read back.
    let known = {
        let low = agg::key(view.id, entity, 0, i64::MIN);
        let high = agg::key(view.id, entity, u8::MAX, i64::MAX);
        table.range(low.as_slice()..=high.as_slice())?.next().is_some()
    };
    // The old entries of the touched days, copied out: the table is written below.
    let mut days: Vec<(i64, &mut [(Vec<u8>, Event, IdMode)])> = Vec::new();
    let mut olds: Vec<Option<Vec<u8>>> = Vec::new();
    let mut rest = events;
    while let Some((first, _)) = rest.split_first() {
        let day = first.1.time.div_euclid(LADDER[1]);
        let len = rest.iter().take_while(|(_, e, _)| e.time.div_euclid(LADDER[1]) == day).count();
        let (these, after) = rest.split_at_mut(len);
        let old = match known {
            true => table.get(agg::key(view.id, entity, 0, day).as_slice())?.map(|g| g.value().to_vec()),
            false => None,
        };
        days.push((day, these));
        olds.push(old);
        rest = after;
    }
    // Each touched day's hours after the merge.
    let mut after: Vec<(i64, Vec<HourAfter<'_>>, bool)> = Vec::with_capacity(days.len());
    for ((day, new), old) in days.iter_mut().zip(&olds) {
        let sections = match old {
            Some(bytes) => agg::read_day(bytes, *day).map_err(&corrupt)?,
            None => Vec::new(),
        };
        let had_tile = old.is_some() && day_count(&sections) >= TILE_MIN_EVENTS as u64;
        let mut hours = Vec::with_capacity(sections.len() + 1);
        let mut kept = sections.into_iter().peekable();
        let mut at = 0;
        while at < new.len() {
            let hour = new[at].1.time.div_euclid(HOUR);
            let end = at + new[at..].iter().take_while(|(_, e, _)| e.time.div_euclid(HOUR) == hour).count();
            while let Some(section) = kept.next_if(|s| s.hour < hour) {
                hours.push(HourAfter::Kept(section));
            }
            let mut merged = match kept.next_if(|s| s.hour == hour) {
                Some(section) => section.decode(&plan.inputs).map_err(&corrupt)?,
                None => Vec::with_capacity(end - at),
            };
            merge_hour(&mut merged, &mut new[at..end]);
            hours.push(HourAfter::Merged(hour, merged));
            at = end;
        }
        hours.extend(kept.map(HourAfter::Kept));
        after.push((*day, hours, had_tile));
    }
    // Every hour's tile: the merged ones folded (one guest call for user
    // functions), the kept ones as stored or folded.
    let merged: Vec<&[Event]> = after
        .iter()
        .flat_map(|(_, hours, _)| hours.iter())
        .filter_map(|h| match h {
            HourAfter::Merged(_, events) => Some(events.as_slice()),
            HourAfter::Kept(_) => None,
        })
        .collect();
    let mut merged_tiles = fold::fold_hours(plan, &merged)?.into_iter();
    let kept: Vec<HourSection<'_>> = after
        .iter()
        .flat_map(|(_, hours, _)| hours.iter())
        .filter_map(|h| match h {
            HourAfter::Kept(section) => Some(*section),
            HourAfter::Merged(..) => None,
        })
        .collect();
    let mut kept_tiles = tiles::section_tiles(plan, &kept).map_err(|e| tile_failure(view, e))?.into_iter();
    let hour_tiles: Vec<Vec<Tile>> = after
        .iter()
        .map(|(_, hours, _)| {
            hours
                .iter()
                .map(|h| match h {
                    HourAfter::Merged(..) => merged_tiles.next().expect("one per merged hour"),
                    HourAfter::Kept(_) => kept_tiles.next().expect("one per kept hour"),
                })
                .collect()
        })
        .collect();
    let groups: Vec<Vec<&[State]>> = hour_tiles
        .iter()
        .map(|tiles| tiles.iter().map(Vec::as_slice).collect())
        .collect();
    let day_tiles = fold::merge_tile_groups(plan, &groups)?;
    // Write each day entry and, for a dense day, its tile.
    let mut entry = Vec::new();
    let mut encoded = Vec::new();
    let mut tile_bytes = Vec::new();
    let mut touched = Vec::with_capacity(after.len());
    let mut rebuilt = BTreeMap::new();
    for (((day, hours, had_tile), tiles), day_tile) in after.iter().zip(&hour_tiles).zip(day_tiles) {
        entry.clear();
        let mut count = 0u64;
        for (hour, tile) in hours.iter().zip(tiles) {
            match hour {
                HourAfter::Kept(section) => {
                    count += section.count as u64;
                    agg::write_section(&mut entry, *day, section.hour, section.count, section.tile, section.events);
                }
                HourAfter::Merged(_, events) if events.is_empty() => {}
                HourAfter::Merged(hour, events) => {
                    count += events.len() as u64;
                    encoded.clear();
                    agg::write_events(&mut encoded, *hour, events, &plan.inputs);
                    let dense = events.len() as u32 >= TILE_MIN_EVENTS;
                    tile_bytes.clear();
                    if dense {
                        agg::write_tile(&mut tile_bytes, plan, tile);
                    }
                    let tile = dense.then_some(tile_bytes.as_slice());
                    agg::write_section(&mut entry, *day, *hour, events.len() as u32, tile, &encoded);
                }
            }
        }
        let key = agg::key(view.id, entity, 0, *day);
        if entry.is_empty() {
            // Its last event moved away.
            table.remove(key.as_slice())?;
        } else {
            table.insert(key.as_slice(), entry.as_slice())?;
        }
        let day_key = agg::key(view.id, entity, 1, *day);
        if tiles::stores_day_tile(plan, count, &day_tile) {
            tile_bytes.clear();
            agg::write_tile(&mut tile_bytes, plan, &day_tile);
            table.insert(day_key.as_slice(), tile_bytes.as_slice())?;
        } else if *had_tile {
            table.remove(day_key.as_slice())?;
        }
        touched.push(*day);
        if count > 0 && !fold::is_empty(plan, &day_tile) {
            rebuilt.insert(*day, day_tile);
        }
    }
    // `stored` and `put` both need the table: one cell, borrowed in turn.
    let table = std::cell::RefCell::new(&mut *table);
    tiles::rebuild_above(
        plan,
        1,
        touched,
        rebuilt,
        |level, first, last, skip| {
            if !known {
                // Every tile under these buckets was written by this call.
                return Ok((first..=last).filter(|&b| skip(b)).map(|b| (b, None)).collect());
            }
            let table = table.borrow();
            stored_tiles(view, plan, &**table, entity, level, (first, last), skip)
        },
        |level, bucket, tile| {
            let key = agg::key(view.id, entity, level, bucket);
            let mut table = table.borrow_mut();
            match tile {
                None => drop(table.remove(key.as_slice())?),
                Some(tile) => {
                    tile_bytes.clear();
                    agg::write_tile(&mut tile_bytes, plan, tile);
                    table.insert(key.as_slice(), tile_bytes.as_slice())?;
                }
            }
            Ok(())
        },
    )
}

/// Merges `new` (one hour's events of one entity, in (time, id) order)
/// into `merged` (the hour's stored events): an equal (time, id) is
/// replaced, a pushed copy of an identical event numbered after the
/// copies already there, a `Remove` takes its event out.
fn merge_hour(merged: &mut Vec<Event>, new: &mut [(Vec<u8>, Event, IdMode)]) {
    for (_, event, mode) in new {
        let mut event = std::mem::replace(
            event,
            Event {
                time: event.time,
                id: event.id,
                values: Vec::new(),
            },
        );
        if *mode == IdMode::Remove {
            let at = merged.partition_point(|e| (e.time, e.id) < (event.time, event.id));
            if merged.get(at).is_some_and(|e| (e.time, e.id) == (event.time, event.id)) {
                merged.remove(at);
            }
            continue;
        }
        if *mode == IdMode::Append {
            // The next occurrence of an identical event.
            let copies = merged
                .iter()
                .filter(|e| e.time == event.time && e.id[..8] == event.id[..8])
                .count() as u32;
            event.id = crate::aggregate::event_id(u64::from_be_bytes(event.id[..8].try_into().expect("8 bytes")), copies);
        }
        let at = merged.partition_point(|e| (e.time, e.id) < (event.time, event.id));
        if merged.get(at).is_some_and(|e| (e.time, e.id) == (event.time, event.id)) {
            merged[at] = event;
        } else if at == merged.len() {
            merged.push(event);
        } else {
            merged.insert(at, event);
        }
    }
}

/// The tiles of `entity` at `level` between buckets `first` and `last`
/// (inclusive) that exist, in bucket order, each decoded unless `skip`
/// says the caller has it. Day tiles (level 1) that a sparse day leaves
/// out are derived from its day entry, and left out if they are the
/// empty state (invariant 3 of [`crate::aggregate::layout`]).
fn stored_tiles(
    view: &ViewRecord,
    plan: &Plan,
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    entity: &[u8],
    level: u8,
    (first, last): (i64, i64),
    skip: &dyn Fn(i64) -> bool,
) -> Result<Vec<(i64, Option<Tile>)>, Failure> {
    let corrupt = Failure::corrupt_in(&view.name);
    let scan = |level: u8, f: &mut EntryVisitor<'_>| -> Result<(), Failure> {
        let low = agg::key(view.id, entity, level, first);
        let high = agg::key(view.id, entity, level, last);
        for item in table.range(low.as_slice()..=high.as_slice())? {
            let (key, value) = item?;
            let bucket = agg::bucket_of_key(key.value()).ok_or_else(|| corrupt(CorruptRow("short key")))?;
            f(bucket, value.value())?;
        }
        Ok(())
    };
    let mut found: BTreeMap<i64, Option<Tile>> = BTreeMap::new();
    scan(level, &mut |bucket, bytes| {
        let tile = match skip(bucket) {
            true => None,
            false => Some(agg::read_tile(bytes, plan).map_err(&corrupt)?),
        };
        found.insert(bucket, tile);
        Ok(())
    })?;
    if level == 1 {
        let mut sparse: Vec<(i64, Vec<u8>)> = Vec::new();
        scan(0, &mut |day, bytes| {
            if !found.contains_key(&day) {
                sparse.push((day, bytes.to_vec()));
            }
            Ok(())
        })?;
        let (mut derive, mut days) = (Vec::new(), Vec::new());
        for (day, bytes) in &sparse {
            if skip(*day) {
                found.insert(*day, None);
            } else {
                derive.push(*day);
                days.push(agg::read_day(bytes, *day).map_err(&corrupt)?);
            }
        }
        let tiles = tiles::day_tiles(plan, &days).map_err(|e| tile_failure(view, e))?;
        for (day, tile) in derive.into_iter().zip(tiles) {
            if !fold::is_empty(plan, &tile) {
                found.insert(day, Some(tile));
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// A tile error as a failure of `view`.
fn tile_failure(view: &ViewRecord, error: TileError) -> Failure {
    match error {
        TileError::Corrupt(message) => Failure::Corrupt(format!("view `{}`: {message}", view.name)),
        TileError::Function(error) => error.into(),
    }
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
            let in_view = |e| tile_failure(view, e);
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
            // Hours, for their events or their tiles: the day entries holding them.
            let wanted = |ranges: &[(i64, i64)], hour: i64| {
                let at = ranges.partition_point(|&(_, hi)| hi < hour);
                ranges.get(at).is_some_and(|&(lo, _)| lo <= hour)
            };
            let days_of = |ranges: &[(i64, i64)]| -> Vec<(i64, i64)> {
                let mut days: Vec<(i64, i64)> = Vec::new();
                for &(lo, hi) in ranges {
                    let (lo, hi) = (lo.div_euclid(HOURS_PER_DAY), hi.div_euclid(HOURS_PER_DAY));
                    match days.last_mut() {
                        Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                        _ => days.push((lo, hi)),
                    }
                }
                days
            };
            let mut hour_ranges = needed.events.clone();
            hour_ranges.extend_from_slice(&needed.tiles[0]);
            hour_ranges.sort_unstable();
            let mut entries: Vec<(i64, Vec<u8>)> = Vec::new();
            for range in days_of(&hour_ranges) {
                scan(0, range, &mut |day, bytes| {
                    entries.push((day, bytes.to_vec()));
                    Ok(())
                })?;
            }
            let mut unfolded: Vec<HourSection<'_>> = Vec::new();
            for (day, bytes) in &entries {
                for section in agg::read_day(bytes, *day).map_err(&corrupt)? {
                    if wanted(&needed.events, section.hour) {
                        data.events
                            .insert(section.hour, section.decode(&plan.inputs).map_err(&corrupt)?);
                    }
                    if wanted(&needed.tiles[0], section.hour) {
                        unfolded.push(section);
                    }
                }
            }
            let tiles = tiles::section_tiles(plan, &unfolded).map_err(|e| tile_failure(view, e))?;
            data.tiles[0].extend(unfolded.iter().map(|s| s.hour).zip(tiles));
            // Days: their stored tiles, or derived from their entries.
            for &range in &needed.tiles[1] {
                let found = stored_tiles(view, plan, &self.aggregates, entity_key, 1, range, &|_| false)?;
                data.tiles[1].extend(found.into_iter().map(|(day, tile)| (day, tile.expect("not skipped"))));
            }
            for (level, ranges) in needed.tiles.iter().enumerate().skip(2) {
                for &range in ranges {
                    let tiles = &mut data.tiles[level];
                    scan(level as u8, range, &mut |bucket, bytes| {
                        tiles.insert(bucket, agg::read_tile(bytes, plan).map_err(&corrupt)?);
                        Ok(())
                    })?;
                }
            }
            Ok(data)
        })
    }
}
