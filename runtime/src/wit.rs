//! Host bindings generated from `wit/transform.wit`, the same files the
//! guest SDK reads. The rest of the runtime names WIT types through here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transformer",
});

pub(crate) use skewless::transform::types::{Batch, Column, DataType, Field, Output, Values};

/// The interface every transform exports, without its version.
pub(crate) const INTERFACE: &str = "skewless:transform/transform";
/// The WIT package version this host implements (see `wit/transform.wit`).
pub(crate) const VERSION: &str = "0.1.0";
