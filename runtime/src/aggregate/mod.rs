//! Windowed aggregations: counts, sums, means... over exact sliding
//! windows of events, the same bits offline and online
//! (`AGGREGATIONS.md` has the contract).
//!
//! - [`window`]: window semantics and the decomposition D(t) every path folds.
//! - [`function`]: the built-in functions and their states.
//! - [`plan`]: a view's aggregations compiled (inputs, shared states, features).
//! - [`layout`]: how events and tiles are stored.
//! - [`fold`]: the one fold, used by writers (tiles) and readers (values).
//!
//! Events reach the store through the same [`crate::materialize`] path as
//! the rows of materialized views (backfill and push), and are read through
//! [`crate::online::get_online_features`] like every other feature.

pub mod fold;
pub mod function;
mod hll;
pub mod layout;
pub mod plan;
pub mod window;

pub use function::Function;
pub use plan::{AggregationSpec, Plan};
pub use window::Window;

use layout::{Event, EventId};

/// A stable 64-bit hash (the same on every machine and release: it ends up
/// in stored ids and sketches). FNV-1a, then SplitMix64's finalizer to
/// spread the bits.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut fnv = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        fnv = (fnv ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = fnv.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

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
}

/// Events of one aggregation view waiting to be written, with their
/// entity keys.
#[derive(Debug)]
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
