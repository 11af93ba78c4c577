//! The stored format: every byte a store file holds, and nothing else.
//!
//! - [`layout`]: the key and row grammar of feature values (entity keys,
//!   history and latest keys, rows, blocks) and its encoders and decoders.
//! - [`value`]: [`value::Value`], one decoded feature value, and the one
//!   conversion between stored rows and Arrow columns, both ways.
//! - [`hash`]: the one hash whose values are stored (event ids, sketches).
//!
//! This module is a leaf: the store, the codecs, aggregation and statistics
//! import it, and it imports none of them (`tests/architecture.rs` fails on
//! a cycle between folders). A change an older build would misread bumps
//! [`FORMAT_VERSION`].

pub mod hash;
pub mod layout;
pub mod value;

/// The version of the store's layout (its tables, the key and row grammar
/// of [`layout`], the aggregate entries of `aggregate::layout`, the
/// registry's records) that this build reads and writes. Bump it with any
/// change an older build would misread.
///
/// - 1: aggregation views in one entry per entity-hour and per entity-day.
/// - 2: one entry per entity-day holding its hours' events, tiles only
///   for dense hours and days (`aggregate::layout`). A version-1 file is
///   refused with the commands that rebuild it; there is no migration.
pub const FORMAT_VERSION: u64 = 2;
