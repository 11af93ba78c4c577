//! The Skewless host runtime.
//!
//! One library behind every command: it loads transform components
//! ([`Runtime`], [`Transform`]), converts Arrow batches to and from the WIT
//! contract (one conversion, both ways), reads the feature repo ([`Repo`]),
//! stores time-versioned values in redb ([`Store`]), and runs the jobs that
//! use all of these: apply, backfill and push, online reads (latest or as
//! of any time), training datasets and verification. Building transforms
//! into components is the `skewless-toolchain` crate's job, which only the
//! CLI links.
//!
//! The product's promise lives in two functions. [`Transform::run`] is the
//! only way a transform runs, and [`online::get_online_features`] is the
//! only way features are read: the server answers with it, `dataset` joins
//! training rows with it (one instant per spine row), `verify` compares the
//! two uses. So the value a model trains on and the value it is served come
//! from the same bytes through the same code.

#![deny(missing_docs)]

pub mod aggregate;
mod aggregator;
pub mod apply;
pub mod backfill;
mod catalog;
pub mod codec;
pub mod dataset;
mod determinism;
mod digest;
pub mod drift;
mod engine;
mod error;
mod file_format;
pub mod format;
mod fresh;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod invariance;
pub mod joined;
mod limits;
mod materialize;
pub mod online;
pub mod push;
pub mod repo;
pub mod samples;
mod sandbox;
pub mod search;
pub mod served_log;
mod source;
pub mod stats;
pub mod stats_report;
pub mod store;
pub mod time;
mod transform;
mod types;
pub mod verify;
mod wit;
mod workspace;

pub use aggregator::{Aggregator, AggregatorDescription, LawError};
pub use catalog::{Catalog, NotApplied};
pub use determinism::Determinism;
pub use digest::Digest;
pub use engine::Runtime;
pub use error::{ConversionError, LoadError, TransformError, TransformErrorKind};
pub use file_format::{FileFormat, KafkaTopic};
pub use limits::{
    EPOCH_TICK, Limits, MAX_AGGREGATOR_STATE_BYTES, MAX_CONCURRENT_CALLS, MAX_ERROR_MESSAGE_BYTES,
    MAX_ROW_ERROR_TEXT_PER_CALL, PoolSettings,
};
pub use materialize::MaterializeError;
pub use repo::{Repo, RepoError};
pub use source::{SourceError, kafka};
pub use store::{Store, StoreError, WriteTo};
pub use transform::{Description, RowError, Transform, TransformOutput};
pub use types::{FeatureType, FieldSpec, arrow_schema};
pub use workspace::{FindError, NewVersion, OpenError, SearchQuery, SearchSpec, Views, Workspace, cache_dir};
