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

pub mod events;
pub mod fold;
pub mod function;
pub mod layout;
pub mod plan;
pub mod tiles;
pub mod window;

pub use events::{IdMode, PendingEvent, PendingEvents, event_id};
pub use function::Function;
pub use plan::{AggregateFunction, AggregationSpec, Plan};
pub use window::Window;
