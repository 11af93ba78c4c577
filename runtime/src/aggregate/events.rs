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

/// Events of one aggregation view waiting to be written, with their
/// entity keys.
#[derive(Debug, Clone)]
pub struct PendingEvents {
    /// The view's plan (how tiles are encoded).
    pub plan: std::sync::Arc<Plan>,
    /// (entity key, event, id mode).
    pub events: Vec<(Vec<u8>, Event, IdMode)>,
}

impl PendingEvents {
    /// No events yet.
    pub fn new(plan: std::sync::Arc<Plan>) -> Self {
        PendingEvents {
            plan,
            events: Vec::new(),
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
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
