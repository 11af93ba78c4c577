//! Events on their way to the store: how their ids are completed, and the
//! batch of them a writer commits.

use super::layout::{Event, EventId};
use super::plan::Plan;

/// How an event's id is completed when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMode {
    /// The id is final: an event with the same id is replaced (backfill,
    /// where the occurrence number counts identical rows of the file, so a
    /// rerun gives the same events).
    Replace,
    /// Pushed: the occurrence number is the count of identical events
    /// already stored, so every pushed row is a new event.
    Append,
    /// The id is the value of the source's `event_id_column`: a stored
    /// event with the same id is replaced wherever its time was (the store
    /// keeps an id -> time index for these), so a retry counts once and a
    /// correction may move an event to another time.
    Keyed,
    /// Not an event: removes the stored event with this exact (time, id),
    /// the old place of a [`IdMode::Keyed`] event that moved.
    Remove,
}

/// Events of one aggregation view waiting to be written. They stay
/// encoded until the write decodes them, on its merge threads: an entity
/// key and the values of the plan's inputs (validity + values, as stored)
/// per event, back to back in one arena.
#[derive(Debug, Clone)]
pub struct PendingEvents {
    /// The view's plan (how tiles are encoded).
    pub plan: std::sync::Arc<Plan>,
    /// The events, in arrival order.
    pub events: Vec<PendingEvent>,
    /// Every event's entity key, then its values.
    arena: Vec<u8>,
}

/// One event waiting: its place in the order, and where its entity key
/// and values are in [`PendingEvents`]'s arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEvent {
    /// Event time, microseconds UTC.
    pub time: i64,
    /// Id (completed as `mode` says when written).
    pub id: EventId,
    /// How the id is completed.
    pub mode: IdMode,
    at: usize,
    entity_len: u32,
    values_len: u32,
}

impl PendingEvents {
    /// No events yet.
    pub fn new(plan: std::sync::Arc<Plan>) -> Self {
        PendingEvents {
            plan,
            events: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// Adds an event: `entity` writes its entity key and `values` its
    /// values (validity + values of the plan's inputs) at the end of the
    /// vector they get. Returns the event, for its id to be completed.
    pub fn push(
        &mut self,
        time: i64,
        mode: IdMode,
        entity: impl FnOnce(&mut Vec<u8>),
        values: impl FnOnce(&mut Vec<u8>),
    ) -> &mut PendingEvent {
        let at = self.arena.len();
        entity(&mut self.arena);
        let entity_len = (self.arena.len() - at) as u32;
        values(&mut self.arena);
        let values_len = (self.arena.len() - at) as u32 - entity_len;
        self.events.push(PendingEvent {
            time,
            id: [0; 12],
            mode,
            at,
            entity_len,
            values_len,
        });
        self.events.last_mut().expect("just pushed")
    }

    /// An event's entity key.
    pub fn entity(&self, event: &PendingEvent) -> &[u8] {
        &self.arena[event.at..event.at + event.entity_len as usize]
    }

    /// An event's encoded values.
    pub fn values(&self, event: &PendingEvent) -> &[u8] {
        let from = event.at + event.entity_len as usize;
        &self.arena[from..from + event.values_len as usize]
    }

    /// The event itself, its values decoded (none for a `Remove`).
    pub fn decode(&self, event: &PendingEvent) -> Result<Event, crate::format::layout::CorruptRow> {
        let values = match event.mode {
            IdMode::Remove => Vec::new(),
            IdMode::Replace | IdMode::Append | IdMode::Keyed => {
                crate::format::value::decode_fields(&mut self.values(event), &self.plan.inputs)?
            }
        };
        Ok(Event {
            time: event.time,
            id: event.id,
            values,
        })
    }

    /// Reserves room for `events` more events.
    pub fn reserve(&mut self, events: usize) {
        self.events.reserve(events);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Drops every event.
    pub fn clear(&mut self) {
        self.events.clear();
        self.arena.clear();
    }
}

/// An event id: the row's hash, then its occurrence number (big-endian,
/// so ids sort by hash, then occurrence).
pub fn event_id(hash: u64, occurrence: u32) -> EventId {
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&hash.to_be_bytes());
    id[8..].copy_from_slice(&occurrence.to_be_bytes());
    id
}
