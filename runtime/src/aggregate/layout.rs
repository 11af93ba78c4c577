//! The on-disk layout of aggregation views (format version 2): raw events
//! and tiles in one redb table, next to (not inside) the row layout of
//! [`crate::format::layout`].
//!
//! ```text
//! key        := view_id u32 BE | entity key | level u8 | bucket u64 BE, sign bit flipped
//! level 0    := day entry (bucket: the day): the day's events, by hour
//!   value    := section*, one per hour with events, in hour order
//!   section  := hour in the day u8 | event count u32 LE | tile flag u8
//!               | [tile length u32 LE | tile] if the flag is 1
//!               | events length u32 LE | events
//! level 1    := day tile, stored only for a day of at least TILE_MIN_EVENTS events
//! level 2    := 30-day tile
//! tile       := each slot's state, in the plan's slot order (state encodings below)
//! event      := event_time - hour start u32 LE | event id [12] | validity + values
//!               of the plan's inputs, as in a store row (without its header)
//! ```
//!
//! Why this shape (version 1 had one entry per entity-hour and one per
//! entity-day): most entities have a few events a day, so one entry per
//! entity-day with no tile for its sparse hours and days is about a third
//! of the entries and bytes, and a read of an hour's events or tile is
//! still one entry. A tile left out is folded from at most
//! `TILE_MIN_EVENTS - 1` events when it is needed, which bounds a read.
//!
//! Invariants (enforced by [`crate::store::Store::write_views`], checked by
//! `skewless verify`):
//! 1. The events of an hour section are exactly the view's events for that
//!    entity whose event time falls in the hour, sorted by (event time,
//!    event id), with no two sharing an id; an hour without events has no
//!    section, and a day without events no entry.
//! 2. An hour's tile is the fold of its events in that order; a day's tile
//!    is the merge, in time order, of its hours' tiles; a 30-day tile the
//!    merge of its days' tiles. So a tile is a function of the set of
//!    events alone, and arrival order or backfill chunking never reach it.
//! 3. An hour's tile is stored (flag 1) exactly when the hour holds at
//!    least [`tile_min_events`] events ([`TILE_MIN_EVENTS`], or 1 for a
//!    view with a user-defined function). A day's or 30 days' tile is stored
//!    only when it is not the empty state (as in version 1: a tile that is
//!    the empty state is never merged, so a float sum keeps its -0.0), a
//!    day's exactly when the day also holds at least that many events. An hour's tile always counts, stored or folded.

use crate::format::layout::{CorruptRow, RowWriter, take};
use crate::format::value::Value;
use crate::types::{FeatureType, FieldSpec};

use super::function::{MAX_N, State, StateKind};
use super::plan::Plan;
use super::window::{HOUR, LADDER};
use crate::stats::hll::Hll;

/// An event id: 12 bytes, compared bytewise after the event time.
pub type EventId = [u8; 12];

/// One event, decoded: its place in the order and its input values.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event time, microseconds UTC.
    pub time: i64,
    /// Id: breaks ties on time, and replaces an event with the same id.
    pub id: EventId,
    /// Values of the plan's inputs, in order.
    pub values: Vec<Value>,
}

/// The key of a keyed event's id in the id -> event time index:
/// `view_id | entity key | id`.
pub fn id_key(view_id: u32, entity: &[u8], id: &EventId) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entity.len() + id.len());
    out.extend_from_slice(&view_id.to_be_bytes());
    out.extend_from_slice(entity);
    out.extend_from_slice(id);
    out
}

/// `view_id | entity key | level | bucket`.
pub fn key(view_id: u32, entity: &[u8], level: u8, bucket: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entity.len() + 9);
    out.extend_from_slice(&view_id.to_be_bytes());
    out.extend_from_slice(entity);
    out.push(level);
    out.extend_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
    out
}

/// The bucket at the end of a key written by [`key`].
pub fn bucket_of_key(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some((u64::from_be_bytes(tail) ^ (1 << 63)) as i64)
}

/// An hour or a day with at least this many events keeps its tile
/// (invariant 3); a sparser one is folded from its events when read.
pub const TILE_MIN_EVENTS: u32 = 8;

/// The events from which an hour or a day of `plan` keeps its tile:
/// [`TILE_MIN_EVENTS`], or 1 for a plan with a user-defined function,
/// whose every fold is a guest call (so its tiles are all kept).
pub fn tile_min_events(plan: &Plan) -> u32 {
    if plan.users.is_empty() { TILE_MIN_EVENTS } else { 1 }
}

/// Hours in a day entry.
pub const HOURS_PER_DAY: i64 = LADDER[1] / LADDER[0];

fn write_values(out: &mut Vec<u8>, values: &[Value], inputs: &[FieldSpec]) {
    let mut w = RowWriter::values_only(out, inputs.len());
    for value in values {
        crate::format::value::write_value(&mut w, value);
    }
}

/// Appends the stored form of `events`, all in `hour`, in order.
pub fn write_events(out: &mut Vec<u8>, hour: i64, events: &[Event], inputs: &[FieldSpec]) {
    for event in events {
        let offset = event.time - hour * HOUR;
        debug_assert!((0..HOUR).contains(&offset), "an event outside its hour");
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        out.extend_from_slice(&event.id);
        write_values(out, &event.values, inputs);
    }
}

/// One hour of a day entry, its bytes borrowed from the entry.
#[derive(Debug, Clone, Copy)]
pub struct HourSection<'a> {
    /// The hour bucket (hours since the epoch).
    pub hour: i64,
    /// Events in the hour.
    pub count: u32,
    /// The hour's tile, when stored (invariant 3).
    pub tile: Option<&'a [u8]>,
    /// The events, in their stored form ([`write_events`]).
    pub events: &'a [u8],
}

impl HourSection<'_> {
    /// The section's events, decoded, in order.
    pub fn decode(&self, inputs: &[FieldSpec]) -> Result<Vec<Event>, CorruptRow> {
        let mut rest = self.events;
        // The count is read from the file: a damaged one must not reserve gigabytes.
        let mut events = Vec::with_capacity((self.count as usize).min(rest.len() / 16));
        for _ in 0..self.count {
            let offset = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
            let id: EventId = take(&mut rest, 12)?.try_into().expect("12 bytes");
            let values = crate::format::value::decode_fields(&mut rest, inputs)?;
            events.push(Event {
                time: self.hour * HOUR + offset as i64,
                id,
                values,
            });
        }
        if !rest.is_empty() {
            return Err(CorruptRow("trailing bytes after the last event of an hour"));
        }
        Ok(events)
    }
}

/// Appends one hour section; `hour` is the hour bucket, in `day`.
pub fn write_section(out: &mut Vec<u8>, day: i64, hour: i64, count: u32, tile: Option<&[u8]>, events: &[u8]) {
    debug_assert_eq!(hour.div_euclid(HOURS_PER_DAY), day, "an hour outside its day");
    out.push((hour - day * HOURS_PER_DAY) as u8);
    out.extend_from_slice(&count.to_le_bytes());
    match tile {
        Some(tile) => {
            out.push(1);
            out.extend_from_slice(&(tile.len() as u32).to_le_bytes());
            out.extend_from_slice(tile);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    out.extend_from_slice(events);
}

/// The hour sections of the day entry of `day`, in hour order, without
/// decoding their events.
pub fn read_day(entry: &[u8], day: i64) -> Result<Vec<HourSection<'_>>, CorruptRow> {
    let mut rest = entry;
    let mut sections: Vec<HourSection<'_>> = Vec::new();
    let u32_at = |rest: &mut &[u8]| -> Result<u32, CorruptRow> {
        Ok(u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")))
    };
    while !rest.is_empty() {
        let in_day = take(&mut rest, 1)?[0] as i64;
        if in_day >= HOURS_PER_DAY || sections.last().is_some_and(|s| s.hour >= day * HOURS_PER_DAY + in_day) {
            return Err(CorruptRow("hour sections out of order"));
        }
        let count = u32_at(&mut rest)?;
        let tile = match take(&mut rest, 1)?[0] {
            0 => None,
            1 => {
                let len = u32_at(&mut rest)? as usize;
                Some(take(&mut rest, len)?)
            }
            _ => return Err(CorruptRow("a tile flag is neither 0 nor 1")),
        };
        let len = u32_at(&mut rest)? as usize;
        sections.push(HourSection {
            hour: day * HOURS_PER_DAY + in_day,
            count,
            tile,
            events: take(&mut rest, len)?,
        });
    }
    if sections.is_empty() {
        return Err(CorruptRow("a day entry without events"));
    }
    Ok(sections)
}

/// Appends a tile: each slot's state in order.
pub fn write_tile(out: &mut Vec<u8>, plan: &Plan, tile: &[State]) {
    for state in tile {
        write_state(out, state);
    }
    debug_assert_eq!(plan.slots.len(), tile.len());
}

/// Reads a tile written by [`write_tile`].
pub fn read_tile(bytes: &[u8], plan: &Plan) -> Result<Vec<State>, CorruptRow> {
    let mut rest = bytes;
    let tile = plan
        .slots
        .iter()
        .map(|slot| read_state(&mut rest, slot.kind, slot.input_type))
        .collect::<Result<Vec<_>, _>>()?;
    if !rest.is_empty() {
        return Err(CorruptRow("trailing bytes after a tile"));
    }
    Ok(tile)
}

/// A state's bytes, by kind (integers LE, a value as in a store row):
/// count `n u64`; int sum `n u64 | sum i128`; float sum `n u64 | sum f64`;
/// moments `n u64 | mean f64 | m2 f64`; min/max `present u8 | value`;
/// first/last `present u8 | time i64 | id [12] | value`; sketch: the HLL's;
/// latest `len u32 | value*`, oldest first; counts
/// `len u32 | (value | n u64)*`, by value; user `len u32 | bytes`.
fn write_state(out: &mut Vec<u8>, state: &State) {
    match state {
        State::Count(n) => out.extend_from_slice(&n.to_le_bytes()),
        State::IntSum { n, sum } => {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&sum.to_le_bytes());
        }
        State::FloatSum { n, sum } => {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&sum.to_bits().to_le_bytes());
        }
        State::Moments { n, mean, m2 } => {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&mean.to_bits().to_le_bytes());
            out.extend_from_slice(&m2.to_bits().to_le_bytes());
        }
        State::Extreme(value) => {
            out.push(value.is_some() as u8);
            if let Some(v) = value {
                write_one(out, v);
            }
        }
        State::Edge(edge) => {
            out.push(edge.is_some() as u8);
            if let Some((time, id, v)) = edge {
                out.extend_from_slice(&time.to_le_bytes());
                out.extend_from_slice(id);
                write_one(out, v);
            }
        }
        State::Distinct(h) => h.encode(out),
        State::Latest(values) => {
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for v in values {
                write_one(out, v);
            }
        }
        State::Counts(counts) => {
            out.extend_from_slice(&(counts.len() as u32).to_le_bytes());
            for (v, n) in counts {
                write_one(out, v);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        State::Bytes(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn write_one(out: &mut Vec<u8>, value: &Value) {
    let mut w = RowWriter::values_only(out, 1);
    crate::format::value::write_value(&mut w, value);
}

fn read_state(rest: &mut &[u8], kind: StateKind, input: Option<FeatureType>) -> Result<State, CorruptRow> {
    let u64_at = |rest: &mut &[u8]| -> Result<u64, CorruptRow> {
        Ok(u64::from_le_bytes(take(rest, 8)?.try_into().expect("8 bytes")))
    };
    let one = |rest: &mut &[u8]| -> Result<Value, CorruptRow> {
        let field = FieldSpec {
            name: String::new(),
            data_type: input.ok_or(CorruptRow("a value state without an input"))?,
            nullable: true,
        };
        Ok(crate::format::value::decode_fields(rest, std::slice::from_ref(&field))?.remove(0))
    };
    Ok(match kind {
        StateKind::Count => State::Count(u64_at(rest)?),
        StateKind::IntSum => State::IntSum {
            n: u64_at(rest)?,
            sum: i128::from_le_bytes(take(rest, 16)?.try_into().expect("16 bytes")),
        },
        StateKind::FloatSum => State::FloatSum {
            n: u64_at(rest)?,
            sum: f64::from_bits(u64_at(rest)?),
        },
        StateKind::Moments => State::Moments {
            n: u64_at(rest)?,
            mean: f64::from_bits(u64_at(rest)?),
            m2: f64::from_bits(u64_at(rest)?),
        },
        StateKind::Min | StateKind::Max => {
            let present = take(rest, 1)?[0] != 0;
            State::Extreme(if present { Some(one(rest)?) } else { None })
        }
        StateKind::First | StateKind::Last => {
            let present = take(rest, 1)?[0] != 0;
            State::Edge(if present {
                let time = i64::from_le_bytes(take(rest, 8)?.try_into().expect("8 bytes"));
                let id: EventId = take(rest, 12)?.try_into().expect("12 bytes");
                Some((time, id, one(rest)?))
            } else {
                None
            })
        }
        StateKind::Distinct => State::Distinct(Hll::decode(rest).ok_or(CorruptRow("truncated sketch"))?),
        StateKind::Latest(_) | StateKind::LatestDistinct(_) => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
            let mut values = Vec::with_capacity(len.min(MAX_N) as usize);
            for _ in 0..len {
                values.push(one(rest)?);
            }
            State::Latest(values)
        }
        StateKind::Counts => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
            let mut counts = Vec::with_capacity((len as usize).min(rest.len()));
            for _ in 0..len {
                let value = one(rest)?;
                counts.push((value, u64_at(rest)?));
            }
            State::Counts(counts)
        }
        StateKind::User(_) => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
            State::Bytes(take(rest, len as usize)?.to_vec())
        }
    })
}
