//! The on-disk layout of aggregation views: raw events and tiles, in one
//! redb table, next to (not inside) the row layout of [`crate::format::layout`].
//!
//! ```text
//! key        := view_id u32 BE | entity key | level u8 | bucket u64 BE, sign bit flipped
//! level 0    := hour entry: the hour's tile and its raw events
//!   value    := tile length u32 LE | tile | event count u32 LE | events
//! level 1, 2 := tile of a day, of 30 days
//!   value    := tile
//! tile       := each slot's state, in the plan's slot order (state encodings below)
//! event      := event_time i64 LE | event id [12] | validity + values of the plan's
//!               inputs, as in a store row (crate::format::layout, without its header)
//! ```
//!
//! Invariants (enforced by [`crate::store::Store::write_views`], checked by
//! `skewless verify`):
//! 1. The events of an hour entry are exactly the view's events for that
//!    entity whose event time falls in the hour, sorted by (event time,
//!    event id), with no two sharing an id.
//! 2. A level-0 tile is the fold of its hour's events in that order; a
//!    level-`l` tile is the merge, in time order, of the level-`l-1` tiles
//!    inside it. So a tile is a function of the set of events alone, and
//!    arrival order or backfill chunking never reach it.
//! 3. A tile with no events is not stored (the empty state is the identity).

use crate::format::layout::{CorruptRow, RowWriter, take};
use crate::format::value::Value;
use crate::types::{FeatureType, FieldSpec};

use super::function::{State, StateKind};
use super::plan::Plan;
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

/// Appends an event.
pub fn write_event(out: &mut Vec<u8>, event: &Event, inputs: &[FieldSpec]) {
    out.extend_from_slice(&event.time.to_le_bytes());
    out.extend_from_slice(&event.id);
    let mut w = RowWriter::values_only(out, inputs.len());
    for value in &event.values {
        write_value(&mut w, value);
    }
}

fn write_value(w: &mut RowWriter<'_>, value: &Value) {
    match value {
        Value::Null => w.null(),
        Value::Bool(v) => w.bool(*v),
        Value::Int64(v) | Value::Timestamp(v) => w.i64(*v),
        Value::Float32(v) => w.f32(*v),
        Value::Float64(v) => w.f64(*v),
        Value::Utf8(v) => w.str(v),
    }
}

/// Writes an hour entry.
pub fn write_hour(out: &mut Vec<u8>, plan: &Plan, tile: &[State], events: &[Event]) {
    out.clear();
    out.extend_from_slice(&0u32.to_le_bytes());
    write_tile(out, plan, tile);
    let tile_len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&tile_len.to_le_bytes());
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in events {
        write_event(out, event, &plan.inputs);
    }
}

/// The tile bytes of an hour entry, without decoding its events.
pub fn hour_tile(entry: &[u8]) -> Result<&[u8], CorruptRow> {
    let mut rest = entry;
    let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    take(&mut rest, len)
}

/// The events of an hour entry, in order.
pub fn hour_events(entry: &[u8], inputs: &[FieldSpec]) -> Result<Vec<Event>, CorruptRow> {
    let mut rest = entry;
    let len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    take(&mut rest, len)?;
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    // The count is read from the file: a damaged one must not reserve gigabytes.
    let mut events = Vec::with_capacity(count.min(rest.len() / 20));
    for _ in 0..count {
        let time = i64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let id: EventId = take(&mut rest, 12)?.try_into().expect("12 bytes");
        let values = crate::format::value::decode_fields(&mut rest, inputs)?;
        events.push(Event { time, id, values });
    }
    if !rest.is_empty() {
        return Err(CorruptRow("trailing bytes after the last event of an hour"));
    }
    Ok(events)
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
        State::Bytes(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

fn write_one(out: &mut Vec<u8>, value: &Value) {
    let mut w = RowWriter::values_only(out, 1);
    write_value(&mut w, value);
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
        StateKind::User(_) => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
            State::Bytes(take(rest, len as usize)?.to_vec())
        }
    })
}
