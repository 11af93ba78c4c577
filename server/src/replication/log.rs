//! The replication log as the applier sees it: an ordered, de-duplicating
//! sequence of messages numbered from 1. NATS JetStream is the log in
//! production (`jetstream.rs`); an in-memory log (`memory.rs`) stands in
//! for it in the applier's unit tests.

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

/// Consecutive messages as (sequence, body), in order.
pub(crate) type Batch = Vec<(u64, Bytes)>;

/// Batches of messages from a start sequence on; an error ends the read.
pub(crate) type Batches = BoxStream<'static, Result<Batch, String>>;

/// The messages a log holds: `first..=last` (`last` is `first - 1` when
/// it holds none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub first: u64,
    pub last: u64,
}

/// Why a message was not stored.
#[derive(Debug)]
pub(crate) enum LogFault {
    /// The log did not confirm it: nothing is known to be stored.
    Unavailable(String),
    /// The log takes messages up to `max` bytes.
    TooLarge { max: usize },
}

/// What replicated serving needs of a log. Sequences are assigned by the
/// log, start at 1, and only grow; a repeated de-duplication id is stored
/// once and answered with the first message's sequence.
pub(crate) trait Log: Send + Sync {
    /// Where the log is, for messages: "stream `x` on nats://...".
    fn describe(&self) -> String;

    /// Stores `body` with de-duplication id `id`: its sequence, and
    /// whether it was a duplicate of an earlier message.
    fn publish<'a>(&'a self, id: &'a str, body: Bytes) -> BoxFuture<'a, Result<(u64, bool), LogFault>>;

    /// The messages the log holds now.
    fn bounds(&self) -> BoxFuture<'_, Result<Bounds, String>>;

    /// The messages from `start` on, as they arrive, in batches of at most
    /// `max_batch` that were ready together. A batch whose first sequence is
    /// past `start` means the messages between are gone.
    fn read_from(&self, start: u64, max_batch: usize) -> BoxFuture<'_, Result<Batches, String>>;
}
