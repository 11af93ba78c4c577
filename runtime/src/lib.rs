//! The Skewless host runtime.
//!
//! One library behind every command: it loads transform components
//! ([`Runtime`], [`Transform`]), converts Arrow batches to and from the WIT
//! contract (one conversion, both ways), reads the feature repo ([`Repo`]),
//! stores time-versioned values in redb ([`Store`]), and runs the jobs that
//! use all of these: backfill, online reads and apply.
//!
//! The product's promise lives in one function: [`Transform::run`]. The
//! backfiller and the online path call it (the server and the dataset
//! builder will too), so the value a model trains on and the value it is
//! served come from the same bytes through the same code.

pub mod apply;
pub mod backfill;
mod catalog;
mod columns;
pub mod dataset;
mod engine;
mod error;
pub mod online;
pub mod push;
pub mod repo;
pub mod samples;
pub mod source;
pub mod store;
pub mod time;
pub mod toolchain;
mod transform;
mod types;
pub mod verify;
mod wit;

pub use catalog::Catalog;
pub use columns::normalize_timestamps;
pub use engine::{Digest, EPOCH_TICK, Runtime};
pub use error::{ConversionError, LoadError, TransformError, TransformErrorKind};
pub use repo::{Repo, RepoError};
pub use store::{Store, StoreError, WriteTo};
pub use transform::{Description, Limits, RowError, Transform, TransformOutput};
pub use types::{FeatureType, FieldSpec, arrow_schema};

/// Where compiled components are cached for a repo unless
/// `SKEWLESS_CACHE_DIR` says otherwise.
pub fn cache_dir(repo_root: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("SKEWLESS_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => repo_root.join(".skewless").join("cache"),
    }
}
