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
use crate::aggregate::layout::{self as agg, Event, EventId, HOURS_PER_DAY, HourSection, tile_min_events};
pub use crate::aggregate::tiles::AggregateCheck;
use crate::aggregate::tiles::{self, Tile, TileCheck, TileError};
use crate::aggregate::window::{HOUR, LADDER};
use crate::aggregate::{IdMode, PendingEvent, PendingEvents, Plan};
use crate::format::layout::CorruptRow;

/// Merges events into their entities' day entries (replacing equal ids,
/// or numbering appended copies), then rebuilds every tile above them:
/// the hour's from its events, each day's from its hours, each 30 days'
/// from its days (invariants in [`crate::aggregate::layout`]). What each
/// entity needs of the table is read first; the merge itself runs on two
/// threads for a large write; the changes are inserted in key order.
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
    if pending.events.iter().any(|e| e.mode == IdMode::Keyed) {
        let keep: Vec<bool> = {
            let mut last: HashMap<(&[u8], EventId), usize> = HashMap::new();
            for (i, event) in pending.events.iter().enumerate() {
                if event.mode == IdMode::Keyed {
                    last.insert((pending.entity(event), event.id), i);
                }
            }
            pending
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| e.mode != IdMode::Keyed || last[&(pending.entity(e), e.id)] == i)
                .collect()
        };
        let mut at = 0;
        pending.events.retain(|_| {
            at += 1;
            keep[at - 1]
        });
        let mut moved = Vec::new();
        for event in &pending.events {
            if event.mode != IdMode::Keyed {
                continue;
            }
            let entity = pending.entity(event);
            let key = agg::id_key(view.id, entity, &event.id);
            let old = event_ids.insert(key.as_slice(), event.time)?.map(|g| g.value());
            if let Some(old) = old.filter(|&old| old != event.time) {
                moved.push((entity.to_vec(), old, event.id));
            }
        }
        for (entity, old, id) in moved {
            // Not an event: its old place, removed with the rest.
            pending
                .push(old, IdMode::Remove, |out| out.extend_from_slice(&entity), |_| {})
                .id = id;
        }
    }
    // By (entity, time, id); among equal ids the later event stays later,
    // and wins (arrival breaks ties).
    let sorted: Vec<PendingEvent> = {
        let keys: Vec<&[u8]> = pending.events.iter().map(|e| pending.entity(e)).collect();
        let order = entity_order(&keys, |i| (pending.events[i].time, pending.events[i].id));
        order.iter().map(|&i| pending.events[i]).collect()
    };
    let pending = &*pending;
    // Each entity's run of events, with what it needs of the store, read
    // here: the merge below reads nothing, so it runs on two threads.
    let mut runs: Vec<EntityRun<'_>> = Vec::new();
    let mut rest = sorted.as_slice();
    while let Some((first, _)) = rest.split_first() {
        let entity = pending.entity(first);
        let len = rest.iter().take_while(|e| pending.entity(e) == entity).count();
        let (events, after) = rest.split_at(len);
        let stored = read_entity(view, &*table, entity, events)?;
        runs.push(EntityRun { entity, events, stored });
        rest = after;
    }
    let total: usize = runs.iter().map(|r| r.events.len()).sum();
    let writes: Vec<Vec<Write>> = if total < PARALLEL_EVENTS {
        runs.iter()
            .map(|run| merge_entity(view, &plan, pending, run))
            .collect::<Result<_, _>>()?
    } else {
        // Two halves of about as many events each, the second on a scoped thread.
        let mut half = 0;
        let mut seen = 0;
        while half < runs.len() && seen < total / 2 {
            seen += runs[half].events.len();
            half += 1;
        }
        let (first, second) = runs.split_at(half);
        let plan = &*plan;
        std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                second
                    .iter()
                    .map(|run| merge_entity(view, plan, pending, run))
                    .collect::<Result<Vec<_>, Failure>>()
            });
            let mut writes = first
                .iter()
                .map(|run| merge_entity(view, plan, pending, run))
                .collect::<Result<Vec<_>, _>>()?;
            writes.extend(other.join().expect("the merge thread does not panic")?);
            Ok::<_, Failure>(writes)
        })?
    };
    // In key order: entities in order, and an entity's days, day tiles and 30-day tiles.
    for write in writes.into_iter().flatten() {
        match write {
            Write::Put(key, value) => drop(table.insert(key.as_slice(), value.as_slice())?),
            Write::Remove(key) => drop(table.remove(key.as_slice())?),
        }
    }
    Ok(())
}

/// Events in one write from which the merge of entities runs on two threads.
const PARALLEL_EVENTS: usize = 16_384;

/// One entity's events (in (time, id) order) and what their merge needs
/// of the store.
struct EntityRun<'a> {
    entity: &'a [u8],
    events: &'a [PendingEvent],
    stored: EntityStored,
}

/// What merging an entity's events needs of the store: its day entries
/// and day tiles in every 30-day bucket the events touch (the touched
/// days, and the other days of their 30-day tiles).
#[derive(Default)]
struct EntityStored {
    /// Day entries (level 0), by day.
    days: BTreeMap<i64, Vec<u8>>,
    /// Day tiles (level 1), by day.
    day_tiles: BTreeMap<i64, Vec<u8>>,
}

/// A change to the `aggregates` table.
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Reads what [`merge_entity`] needs of `entity` ([`EntityStored`]).
fn read_entity(
    view: &ViewRecord,
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    entity: &[u8],
    events: &[PendingEvent],
) -> Result<EntityStored, Failure> {
    let mut stored = EntityStored::default();
    // An entity with no entry yet (most of a first backfill) has nothing to read.
    let low = agg::key(view.id, entity, 0, i64::MIN);
    let high = agg::key(view.id, entity, u8::MAX, i64::MAX);
    if table.range(low.as_slice()..=high.as_slice())?.next().is_none() {
        return Ok(stored);
    }
    let ratio = LADDER[2] / LADDER[1];
    let mut parents: Vec<i64> = events.iter().map(|e| e.time.div_euclid(LADDER[2])).collect();
    parents.dedup();
    for parent in parents {
        let (first, last) = (parent * ratio, parent * ratio + ratio - 1);
        for (level, into) in [(0, &mut stored.days), (1, &mut stored.day_tiles)] {
            let low = agg::key(view.id, entity, level, first);
            let high = agg::key(view.id, entity, level, last);
            for item in table.range(low.as_slice()..=high.as_slice())? {
                let (key, value) = item?;
                let bucket = agg::bucket_of_key(key.value())
                    .ok_or_else(|| Failure::corrupt_in(&view.name)(CorruptRow("short key")))?;
                into.insert(bucket, value.value().to_vec());
            }
        }
    }
    Ok(stored)
}

/// One hour of a day entry being rewritten: its events merged with new
/// ones, or its stored section kept as it is.
enum HourAfter<'a> {
    Merged(i64, Vec<Event>),
    Kept(HourSection<'a>),
}

/// Merges one entity's events into its day entries and rebuilds the
/// tiles above them: the table changes, in key order. Reads nothing but
/// `run.stored`.
fn merge_entity(
    view: &ViewRecord,
    plan: &Plan,
    pending: &PendingEvents,
    run: &EntityRun<'_>,
) -> Result<Vec<Write>, Failure> {
    let corrupt = Failure::corrupt_in(&view.name);
    let entity = run.entity;
    let stored = &run.stored;
    let mut days: Vec<(i64, &[PendingEvent])> = Vec::new();
    let mut rest = run.events;
    while let Some((first, _)) = rest.split_first() {
        let day = first.time.div_euclid(LADDER[1]);
        let len = rest.iter().take_while(|e| e.time.div_euclid(LADDER[1]) == day).count();
        let (these, after) = rest.split_at(len);
        days.push((day, these));
        rest = after;
    }
    // Each touched day's hours after the merge.
    let mut after: Vec<(i64, Vec<HourAfter<'_>>)> = Vec::with_capacity(days.len());
    for &(day, new) in &days {
        let sections = match stored.days.get(&day) {
            Some(bytes) => agg::read_day(bytes, day).map_err(&corrupt)?,
            None => Vec::new(),
        };
        let mut hours = Vec::with_capacity(sections.len() + 1);
        let mut kept = sections.into_iter().peekable();
        let mut at = 0;
        while at < new.len() {
            let hour = new[at].time.div_euclid(HOUR);
            let end = at + new[at..].iter().take_while(|e| e.time.div_euclid(HOUR) == hour).count();
            while let Some(section) = kept.next_if(|s| s.hour < hour) {
                hours.push(HourAfter::Kept(section));
            }
            let mut merged = match kept.next_if(|s| s.hour == hour) {
                Some(section) => section.decode(&plan.inputs).map_err(&corrupt)?,
                None => Vec::with_capacity(end - at),
            };
            for event in &new[at..end] {
                merge_event(&mut merged, pending.decode(event).map_err(&corrupt)?, event.mode);
            }
            hours.push(HourAfter::Merged(hour, merged));
            at = end;
        }
        hours.extend(kept.map(HourAfter::Kept));
        after.push((day, hours));
    }
    // Every hour's tile: the merged ones folded (one guest call for user
    // functions), the kept ones as stored or folded.
    let merged: Vec<&[Event]> = after
        .iter()
        .flat_map(|(_, hours)| hours.iter())
        .filter_map(|h| match h {
            HourAfter::Merged(_, events) => Some(events.as_slice()),
            HourAfter::Kept(_) => None,
        })
        .collect();
    let mut merged_tiles = fold::fold_hours(plan, &merged)?.into_iter();
    let kept: Vec<HourSection<'_>> = after
        .iter()
        .flat_map(|(_, hours)| hours.iter())
        .filter_map(|h| match h {
            HourAfter::Kept(section) => Some(*section),
            HourAfter::Merged(..) => None,
        })
        .collect();
    let mut kept_tiles = tiles::section_tiles(plan, &kept)
        .map_err(|e| tile_failure(view, e))?
        .into_iter();
    let hour_tiles: Vec<Vec<Tile>> = after
        .iter()
        .map(|(_, hours)| {
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
    // Each day entry, then each day tile (keys in order: level 0 before 1).
    let mut entries = Vec::with_capacity(after.len());
    let mut tile_writes = Vec::new();
    let mut encoded = Vec::new();
    let mut touched = Vec::with_capacity(after.len());
    let mut rebuilt = BTreeMap::new();
    for (((day, hours), tiles), day_tile) in after.iter().zip(&hour_tiles).zip(day_tiles) {
        let mut entry = Vec::new();
        let mut count = 0u64;
        for (hour, tile) in hours.iter().zip(tiles) {
            match hour {
                HourAfter::Kept(section) => {
                    count += section.count as u64;
                    agg::write_section(
                        &mut entry,
                        *day,
                        section.hour,
                        section.count,
                        section.tile,
                        section.events,
                    );
                }
                HourAfter::Merged(_, events) if events.is_empty() => {}
                HourAfter::Merged(hour, events) => {
                    count += events.len() as u64;
                    encoded.clear();
                    agg::write_events(&mut encoded, *hour, events, &plan.inputs);
                    let tile = (events.len() as u32 >= tile_min_events(plan)).then(|| {
                        let mut bytes = Vec::new();
                        agg::write_tile(&mut bytes, plan, tile);
                        bytes
                    });
                    agg::write_section(&mut entry, *day, *hour, events.len() as u32, tile.as_deref(), &encoded);
                }
            }
        }
        let key = agg::key(view.id, entity, 0, *day);
        entries.push(match entry.is_empty() {
            // Its last event moved away.
            true => Write::Remove(key),
            false => Write::Put(key, entry),
        });
        let day_key = agg::key(view.id, entity, 1, *day);
        if tiles::stores_day_tile(plan, count, &day_tile) {
            let mut bytes = Vec::new();
            agg::write_tile(&mut bytes, plan, &day_tile);
            tile_writes.push(Write::Put(day_key, bytes));
        } else if stored.day_tiles.contains_key(day) {
            tile_writes.push(Write::Remove(day_key));
        }
        touched.push(*day);
        if count > 0 && !fold::is_empty(plan, &day_tile) {
            rebuilt.insert(*day, day_tile);
        }
    }
    entries.append(&mut tile_writes);
    let touched_days = touched.clone();
    tiles::rebuild_above(
        plan,
        1,
        touched,
        rebuilt,
        |level, first, last, skip| {
            assert_eq!(level, 1, "the tiles above the days are built from the days");
            // A touched day is what this merge made of it (in `rebuilt`, or gone).
            let untouched = |day: i64| touched_days.binary_search(&day).is_err();
            let mut found = day_tiles_between(plan, &stored.days, &stored.day_tiles, (first, last), &untouched)
                .map_err(|e| tile_failure(view, e))?;
            found.extend(
                touched_days
                    .iter()
                    .filter(|&&d| (first..=last).contains(&d) && skip(d))
                    .map(|&d| (d, None)),
            );
            found.sort_unstable_by_key(|(day, _)| *day);
            Ok::<_, Failure>(found)
        },
        |level, bucket, tile| {
            let key = agg::key(view.id, entity, level, bucket);
            entries.push(match tile {
                None => Write::Remove(key),
                Some(tile) => {
                    let mut bytes = Vec::new();
                    agg::write_tile(&mut bytes, plan, tile);
                    Write::Put(key, bytes)
                }
            });
            Ok(())
        },
    )?;
    Ok(entries)
}

/// Merges `event` (the next of one hour's new events of one entity, in
/// (time, id) order) into `merged` (the hour's events): an equal (time,
/// id) is replaced, a pushed copy of an identical event numbered after the
/// copies already there, a `Remove` takes its event out.
fn merge_event(merged: &mut Vec<Event>, mut event: Event, mode: IdMode) {
    if mode == IdMode::Remove {
        let at = merged.partition_point(|e| (e.time, e.id) < (event.time, event.id));
        if merged.get(at).is_some_and(|e| (e.time, e.id) == (event.time, event.id)) {
            merged.remove(at);
        }
        return;
    }
    if mode == IdMode::Append {
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

/// The tiles of the days between `first` and `last` (inclusive) that
/// have one, in day order, from an entity's day entries and day tiles:
/// a stored day tile decoded, a sparse day's derived from its entry and
/// left out if it is the empty state (invariant 3 of
/// [`crate::aggregate::layout`]). Only the days `include` says.
fn day_tiles_between(
    plan: &Plan,
    days: &BTreeMap<i64, Vec<u8>>,
    day_tiles: &BTreeMap<i64, Vec<u8>>,
    (first, last): (i64, i64),
    include: &dyn Fn(i64) -> bool,
) -> Result<Vec<(i64, Option<Tile>)>, TileError> {
    let corrupt = |e: CorruptRow| TileError::Corrupt(e.to_string());
    let mut found: Vec<(i64, Option<Tile>)> = Vec::new();
    for (&day, bytes) in day_tiles.range(first..=last).filter(|(d, _)| include(**d)) {
        found.push((day, Some(agg::read_tile(bytes, plan).map_err(corrupt)?)));
    }
    let (mut derive, mut sections) = (Vec::new(), Vec::new());
    for (&day, bytes) in days.range(first..=last) {
        if include(day) && !day_tiles.contains_key(&day) {
            derive.push(day);
            sections.push(agg::read_day(bytes, day).map_err(corrupt)?);
        }
    }
    for (day, tile) in derive.into_iter().zip(tiles::day_tiles(plan, &sections)?) {
        if !fold::is_empty(plan, &tile) {
            found.push((day, Some(tile)));
        }
    }
    found.sort_unstable_by_key(|(day, _)| *day);
    Ok(found)
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

/// Day ranges closer than this are read in one scan.
const SCAN_GAP_DAYS: i64 = 8;

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
            // A bucket in sorted, disjoint inclusive ranges.
            let wanted = |ranges: &[(i64, i64)], bucket: i64| {
                let at = ranges.partition_point(|&(_, hi)| hi < bucket);
                ranges.get(at).is_some_and(|&(lo, _)| lo <= bucket)
            };
            // Hours, for their events or their tiles, are in day entries.
            let mut hour_ranges = needed.events.clone();
            hour_ranges.extend_from_slice(&needed.tiles[0]);
            let hour_days = fold::coalesce(
                hour_ranges
                    .iter()
                    .map(|&(lo, hi)| (lo.div_euclid(HOURS_PER_DAY), hi.div_euclid(HOURS_PER_DAY)))
                    .collect(),
                1,
            );
            // Every day entry needed, for its hours or to derive its day's
            // tile, in a few sequential scans: ranges a few days apart are
            // read as one (a seek costs more than the entries between).
            let day_ranges = &needed.tiles[1];
            let scans = fold::coalesce(hour_days.iter().chain(day_ranges).copied().collect(), SCAN_GAP_DAYS);
            let mut entries: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
            for &range in &scans {
                scan(0, range, &mut |day, bytes| {
                    if wanted(&hour_days, day) || wanted(day_ranges, day) {
                        entries.insert(day, bytes.to_vec());
                    }
                    Ok(())
                })?;
            }
            let mut unfolded: Vec<HourSection<'_>> = Vec::new();
            for (&day, bytes) in entries.range(..).filter(|(d, _)| wanted(&hour_days, **d)) {
                for section in agg::read_day(bytes, day).map_err(&corrupt)? {
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
            let mut day_tiles = BTreeMap::new();
            for &range in &fold::coalesce(day_ranges.clone(), SCAN_GAP_DAYS) {
                scan(1, range, &mut |day, bytes| {
                    if wanted(day_ranges, day) {
                        day_tiles.insert(day, bytes.to_vec());
                    }
                    Ok(())
                })?;
            }
            for &range in day_ranges {
                let found = day_tiles_between(plan, &entries, &day_tiles, range, &|_| true)
                    .map_err(|e| tile_failure(view, e))?;
                data.tiles[1].extend(found.into_iter().map(|(day, tile)| (day, tile.expect("decoded"))));
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
