//! The one fold: the value of every feature of an aggregation view for an
//! entity at an instant, from the parts of D(t) ([`super::window`]), and
//! the tile definitions the writer uses. The server, `dataset`, `get --at`
//! and `verify` evaluate through [`evaluate_all`]; backfill and push build
//! tiles through [`fold_events`] and [`merge_tiles`], the same updates.
//!
//! Built-in states are folded here event by event. A user-defined
//! function's states ([`StateKind::User`]) are folded in the same order but
//! in batched guest calls ([`crate::Aggregator`]): the writer folds every
//! touched hour of an entity in one `update` ([`fold_hours`]) and every
//! parent tile of a level in one `merge` ([`merge_tile_groups`]); a read of
//! one entity's instants makes one `update` for the raw events at both ends
//! of every window, one `merge` along every window's parts and one
//! `finalize` ([`evaluate_all`]). Calls are chunked to stay well inside
//! guest memory. A part with no event (the empty state) is skipped, which
//! the function's laws, checked at `apply`, make exact.

use std::collections::BTreeMap;

use crate::error::TransformError;
use crate::format::value::Value;

use super::function::{State, StateKind};
use super::layout::Event;
use super::plan::{Finalize, Plan};
use super::window::{LADDER, Part, Window, decompose_into};

/// Rows or bytes sent to a user function in one writer call, at most
/// (about): an entity's hours, or its tiles of one level, are folded in
/// chunks so a call stays well inside the guest's memory limit.
const USER_CALL_ROWS: usize = 65_536;

/// The tile of `events` (in event order): each slot updated once per event.
pub fn fold_events(plan: &Plan, events: &[Event]) -> Result<Vec<State>, TransformError> {
    Ok(fold_hours(plan, &[events])?.swap_remove(0))
}

/// [`fold_events`] of several hours at once: user functions fold every
/// hour's events in one `update` call per chunk (group `h` is hour `h`).
pub fn fold_hours(plan: &Plan, hours: &[&[Event]]) -> Result<Vec<Vec<State>>, TransformError> {
    let mut tiles: Vec<Vec<State>> = hours
        .iter()
        .map(|events| {
            let mut tile: Vec<State> = plan.slots.iter().map(|s| s.kind.empty()).collect();
            for event in *events {
                update(plan, &mut tile, event, None);
            }
            tile
        })
        .collect();
    for (i, slot) in plan.slots.iter().enumerate() {
        let (StateKind::User(user), Some(at)) = (slot.kind, slot.input) else {
            continue;
        };
        let mut first = 0;
        while first < hours.len() {
            let (mut groups, mut inputs) = (Vec::new(), Vec::new());
            let mut end = first;
            while end < hours.len() && (end == first || inputs.len() < USER_CALL_ROWS) {
                for value in hours[end].iter().map(|e| &e.values[at]).filter(|v| !v.is_null()) {
                    groups.push((end - first) as u32);
                    inputs.push(value);
                }
                end += 1;
            }
            if !inputs.is_empty() {
                let states = plan.users[user].update(&vec![Vec::new(); end - first], &groups, &inputs)?;
                // Only the hours that had inputs: the others stay empty.
                store_fed(&mut tiles, first..end, i, &groups, states);
            }
            first = end;
        }
    }
    Ok(tiles)
}

/// The tile of consecutive tiles (in time order): merged left to right.
pub fn merge_tiles<'a>(plan: &Plan, tiles: impl Iterator<Item = &'a [State]>) -> Result<Vec<State>, TransformError> {
    Ok(merge_tile_groups(plan, &[tiles.collect()])?.swap_remove(0))
}

/// [`merge_tiles`] of several parents at once: user functions merge every
/// parent's children in one `merge` call per chunk (group `p` is parent
/// `p`; a parent with one non-empty child takes it as it is).
pub fn merge_tile_groups(plan: &Plan, parents: &[Vec<&[State]>]) -> Result<Vec<Vec<State>>, TransformError> {
    let mut tiles: Vec<Vec<State>> = parents
        .iter()
        .map(|children| {
            let mut tile: Vec<State> = plan.slots.iter().map(|s| s.kind.empty()).collect();
            for child in children {
                merge(plan, &mut tile, child, None);
            }
            tile
        })
        .collect();
    for (i, slot) in plan.slots.iter().enumerate() {
        let StateKind::User(user) = slot.kind else {
            continue;
        };
        let mut first = 0;
        while first < parents.len() {
            let (mut groups, mut parts, mut bytes) = (Vec::new(), Vec::new(), 0);
            let mut end = first;
            while end < parents.len() && (end == first || bytes < USER_CALL_ROWS * 64) {
                let children: Vec<&[u8]> = parents[end]
                    .iter()
                    .map(|t| user_state(&t[i]))
                    .filter(|b| !b.is_empty())
                    .collect();
                match children.as_slice() {
                    [] => {}
                    [one] => tiles[end][i] = State::Bytes(one.to_vec()),
                    many => {
                        for child in many {
                            groups.push((end - first) as u32);
                            parts.push(child.to_vec());
                            bytes += child.len();
                        }
                    }
                }
                end += 1;
            }
            if !parts.is_empty() {
                let states = plan.users[user].merge(&vec![Vec::new(); end - first], &groups, &parts)?;
                // Only the parents that got parts: the others took their one child above.
                store_fed(&mut tiles, first..end, i, &groups, states);
            }
            first = end;
        }
    }
    Ok(tiles)
}

/// Writes a user function's answer for the tiles `range` (group `g` is
/// tile `range.start + g`) into their slot `slot`, for the groups that were
/// fed in the call; the others keep what they hold.
fn store_fed(
    tiles: &mut [Vec<State>],
    range: std::ops::Range<usize>,
    slot: usize,
    groups: &[u32],
    states: Vec<Vec<u8>>,
) {
    let mut fed = vec![false; range.len()];
    groups.iter().for_each(|&g| fed[g as usize] = true);
    for (g, state) in states.into_iter().enumerate() {
        if fed[g] {
            tiles[range.start + g][slot] = State::Bytes(state);
        }
    }
}

fn user_state(state: &State) -> &[u8] {
    match state {
        State::Bytes(bytes) => bytes,
        other => unreachable!("a user slot holds bytes, not {other:?}"),
    }
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
    // A bucket right after the last range pushed extends it: the parts of
    // one window come in time order, so a 30-day window's tiles push one
    // range per level, not one per tile (and there are fewer to sort).
    fn push(ranges: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
        match ranges.last_mut() {
            Some(last) if last.0 <= lo && lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => ranges.push((lo, hi)),
        }
    }
    let mut out = Needed::default();
    let mut parts = Vec::new();
    for &t in times {
        for window in &plan.windows {
            decompose_into(window.start(t), t, &mut parts);
            for &part in &parts {
                match part {
                    Part::Events { hour, .. } => push(&mut out.events, hour, hour),
                    Part::Tiles { level, first, last } => push(&mut out.tiles[level as usize], first, last),
                }
            }
        }
    }
    for ranges in std::iter::once(&mut out.events).chain(out.tiles.iter_mut()) {
        *ranges = coalesce(std::mem::take(ranges), 1);
    }
    out
}

/// Sorts inclusive ranges and merges those that overlap or lie less than
/// `gap` apart (`gap = 1`: those that touch).
pub fn coalesce(mut ranges: Vec<(i64, i64)>, gap: i64) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(gap) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The value of every feature of `plan` (in feature order) at each of
/// `times` (one entity's reads): built-ins instant by instant, user
/// functions in a few guest calls for all instants together
/// ([`evaluate_user`]). A value depends on its instant alone, never on the
/// other instants of the call.
pub fn evaluate_all(plan: &Plan, data: &EntityData, times: &[i64]) -> Result<Vec<Vec<Value>>, TransformError> {
    let mut parts = Vec::new();
    let mut rows: Vec<Vec<Value>> = times
        .iter()
        .map(|&t| evaluate_builtins(plan, data, t, &mut parts))
        .collect();
    for (slot, spec) in plan.slots.iter().enumerate() {
        if let (StateKind::User(user), Some(input)) = (spec.kind, spec.input) {
            evaluate_user(plan, data, times, slot, user, input, &mut rows)?;
        }
    }
    Ok(rows)
}

/// The built-in features at `t` (user ones left null).
fn evaluate_builtins(plan: &Plan, data: &EntityData, t: i64, parts: &mut Vec<Part>) -> Vec<Value> {
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
        decompose_into(window.start(t), t, parts);
        for &part in parts.iter() {
            match part {
                Part::Events { hour, from, to } => {
                    for event in data.events.get(&hour).into_iter().flatten() {
                        if event.time >= from && event.time < to {
                            update(plan, &mut acc, event, Some(&used));
                        }
                    }
                }
                Part::Tiles { level, first, last } => {
                    for tile in data.tiles[level as usize].range(first..=last).map(|(_, t)| t) {
                        merge(plan, &mut acc, tile, Some(&used));
                    }
                }
            }
        }
        for (i, f) in plan.features.iter().enumerate() {
            if f.window == *window
                && let Some(value) = plan.finalize_builtin(i, &acc[f.slot])
            {
                values[i] = value;
            }
        }
    }
    values
}

/// A part of a window for a user function: raw events (by group of the
/// `update` call) or a stored state.
enum UserPart<'a> {
    Events(u32),
    State(&'a [u8]),
}

/// Bytes of stored states sent in one `merge` call, at most (about): a
/// large read is evaluated in chunks of instants, so a call's lists stay
/// well inside the guest's memory limit.
const USER_CALL_BYTES: usize = 4 << 20;

/// The features of user slot `slot` at each of `times`, in three guest
/// calls per chunk of instants: one `update` (group `g` is the `g`-th run
/// of raw events, at either end of a window), one `merge` along each
/// (instant, window)'s parts in order (a sequence of one part takes it as
/// it is), one `finalize`.
fn evaluate_user(
    plan: &Plan,
    data: &EntityData,
    times: &[i64],
    slot: usize,
    user: usize,
    input: usize,
    rows: &mut [Vec<Value>],
) -> Result<(), TransformError> {
    let aggregator = &plan.users[user];
    let mut decomposed = Vec::new();
    let windows: Vec<Window> = plan
        .windows
        .iter()
        .copied()
        .filter(|w| plan.features.iter().any(|f| f.slot == slot && f.window == *w))
        .collect();
    let mut first = 0;
    while first < times.len() {
        let mut groups: Vec<u32> = Vec::new();
        let mut inputs: Vec<&Value> = Vec::new();
        let mut runs = 0u32;
        let mut bytes = 0;
        // One sequence per (instant, window), instant-major.
        let mut sequences: Vec<Vec<UserPart<'_>>> = Vec::new();
        let mut end = first;
        while end < times.len() && (end == first || bytes < USER_CALL_BYTES) {
            let t = times[end];
            for window in &windows {
                let mut parts = Vec::new();
                decompose_into(window.start(t), t, &mut decomposed);
                for &part in &decomposed {
                    match part {
                        Part::Events { hour, from, to } => {
                            let before = inputs.len();
                            for event in data.events.get(&hour).into_iter().flatten() {
                                let value = &event.values[input];
                                if event.time >= from && event.time < to && !value.is_null() {
                                    inputs.push(value);
                                    groups.push(runs);
                                }
                            }
                            if inputs.len() > before {
                                parts.push(UserPart::Events(runs));
                                runs += 1;
                            }
                        }
                        Part::Tiles { level, first, last } => {
                            for tile in data.tiles[level as usize].range(first..=last).map(|(_, t)| t) {
                                parts.push(UserPart::State(user_state(&tile[slot])));
                            }
                        }
                    }
                }
                parts.retain(|p| !matches!(p, UserPart::State(s) if s.is_empty()));
                bytes += parts
                    .iter()
                    .map(|p| match p {
                        UserPart::State(s) => s.len(),
                        UserPart::Events(_) => 64,
                    })
                    .sum::<usize>();
                sequences.push(parts);
            }
            end += 1;
        }
        let run_states = if inputs.is_empty() {
            Vec::new()
        } else {
            aggregator.update(&vec![Vec::new(); runs as usize], &groups, &inputs)?
        };
        let part_bytes = |part: &UserPart<'_>| -> Vec<u8> {
            match part {
                UserPart::Events(run) => run_states[*run as usize].clone(),
                UserPart::State(state) => state.to_vec(),
            }
        };
        let mut states: Vec<Vec<u8>> = vec![Vec::new(); sequences.len()];
        let (mut merge_groups, mut merge_parts) = (Vec::new(), Vec::new());
        for (at, parts) in sequences.iter().enumerate() {
            match parts.as_slice() {
                [] => {}
                [one] => states[at] = part_bytes(one),
                many => {
                    for part in many {
                        merge_groups.push(at as u32);
                        merge_parts.push(part_bytes(part));
                    }
                }
            }
        }
        if !merge_parts.is_empty() {
            states = aggregator.merge(&states, &merge_groups, &merge_parts)?;
        }
        let finals = aggregator.finalize(&states)?;
        for (offset, row) in rows[first..end].iter_mut().enumerate() {
            for (i, feature) in plan.features.iter().enumerate() {
                if feature.slot == slot && feature.finalize == Finalize::User(user) {
                    let w = windows
                        .iter()
                        .position(|w| *w == feature.window)
                        .expect("collected above");
                    row[i] = finals[offset * windows.len() + w].clone();
                }
            }
        }
        first = end;
    }
    Ok(())
}
