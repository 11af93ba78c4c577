//! The one fold: the value of every feature of an aggregation view for an
//! entity at an instant, from the parts of D(t) ([`super::window`]), and
//! the tile definitions the writer uses. The server, `dataset`, `get --at`
//! and `verify` evaluate through [`evaluate`]; backfill and push build
//! tiles through [`fold_events`] and [`merge_tiles`], the same updates.

use std::collections::BTreeMap;

use crate::codec::row::Value;

use super::function::State;
use super::layout::Event;
use super::plan::Plan;
use super::window::{LADDER, Part, TOP, decompose};

/// The tile of `events` (in event order): each slot updated once per event.
pub fn fold_events(plan: &Plan, events: &[Event]) -> Vec<State> {
    let mut tile: Vec<State> = plan.slots.iter().map(|s| s.kind.empty()).collect();
    for event in events {
        update(plan, &mut tile, event, None);
    }
    tile
}

/// The tile of consecutive tiles (in time order): merged left to right.
pub fn merge_tiles<'a>(plan: &Plan, tiles: impl Iterator<Item = &'a [State]>) -> Vec<State> {
    let mut tile: Vec<State> = plan.slots.iter().map(|s| s.kind.empty()).collect();
    for t in tiles {
        merge(plan, &mut tile, t, None);
    }
    tile
}

/// Whether a tile holds no event (then it is not stored).
pub fn is_empty(plan: &Plan, tile: &[State]) -> bool {
    plan.slots
        .iter()
        .zip(tile)
        .all(|(slot, state)| *state == slot.kind.empty())
}

fn update(plan: &Plan, acc: &mut [State], event: &Event, only: Option<&[bool]>) {
    for (i, slot) in plan.slots.iter().enumerate() {
        if only.is_some_and(|o| !o[i]) {
            continue;
        }
        let input = slot.input.map(|at| &event.values[at]);
        slot.kind.update(&mut acc[i], (event.time, event.id), input);
    }
}

fn merge(plan: &Plan, acc: &mut [State], tile: &[State], only: Option<&[bool]>) {
    for (i, slot) in plan.slots.iter().enumerate() {
        if only.is_some_and(|o| !o[i]) {
            continue;
        }
        slot.kind.merge(&mut acc[i], &tile[i]);
    }
}

/// What is known of one entity for a read: the hour entries and tiles a
/// set of instants needs ([`needed`]), decoded.
#[derive(Debug, Default)]
pub struct EntityData {
    /// Hour events, by hour bucket.
    pub events: BTreeMap<i64, Vec<Event>>,
    /// Tiles by level and bucket.
    pub tiles: [BTreeMap<i64, Vec<State>>; LADDER.len()],
}

/// Bucket ranges (inclusive) to read, per level, for reads at `times`:
/// the ranges whose hour entries give raw events, and per level the
/// ranges of tiles. Overlapping ranges are merged.
#[derive(Debug, Default)]
pub struct Needed {
    /// Hour buckets whose raw events are folded.
    pub events: Vec<(i64, i64)>,
    /// Per level, tile bucket ranges.
    pub tiles: [Vec<(i64, i64)>; LADDER.len()],
}

/// The ranges the reads of `plan` at `times` touch.
pub fn needed(plan: &Plan, times: &[i64]) -> Needed {
    let mut out = Needed::default();
    for &t in times {
        for window in &plan.windows {
            for part in decompose(window.start(t), t) {
                match part {
                    Part::Events { hour, .. } => out.events.push((hour, hour)),
                    Part::Tile { level, bucket } => out.tiles[level as usize].push((bucket, bucket)),
                    Part::TopTilesBefore { before } => out.tiles[TOP as usize].push((i64::MIN, before - 1)),
                }
            }
        }
    }
    for ranges in std::iter::once(&mut out.events).chain(out.tiles.iter_mut()) {
        *ranges = coalesce(std::mem::take(ranges));
    }
    out
}

/// Sorts ranges and merges those that overlap or touch.
fn coalesce(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The value of every feature of `plan` at `t`, in feature order.
pub fn evaluate(plan: &Plan, data: &EntityData, t: i64) -> Vec<Value> {
    let mut values = vec![Value::Null; plan.features.len()];
    let mut acc: Vec<State> = plan.slots.iter().map(|s| s.kind.empty()).collect();
    let mut used = vec![false; plan.slots.len()];
    for window in &plan.windows {
        used.iter_mut().for_each(|u| *u = false);
        for f in plan.features.iter().filter(|f| f.window == *window) {
            used[f.slot] = true;
        }
        for (i, slot) in plan.slots.iter().enumerate() {
            if used[i] {
                acc[i] = slot.kind.empty();
            }
        }
        for part in decompose(window.start(t), t) {
            match part {
                Part::Events { hour, from, to } => {
                    for event in data.events.get(&hour).into_iter().flatten() {
                        if event.time >= from && event.time < to {
                            update(plan, &mut acc, event, Some(&used));
                        }
                    }
                }
                Part::Tile { level, bucket } => {
                    if let Some(tile) = data.tiles[level as usize].get(&bucket) {
                        merge(plan, &mut acc, tile, Some(&used));
                    }
                }
                Part::TopTilesBefore { before } => {
                    for tile in data.tiles[TOP as usize].range(..before).map(|(_, t)| t) {
                        merge(plan, &mut acc, tile, Some(&used));
                    }
                }
            }
        }
        for (i, f) in plan.features.iter().enumerate() {
            if f.window == *window {
                values[i] = f.function.finalize(&acc[f.slot]);
            }
        }
    }
    values
}
