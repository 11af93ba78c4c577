//! Write Skewless feature transforms in Rust.
//!
//! A transform is one type implementing [`Transform`] plus one [`export!`]
//! line. The SDK hides the WebAssembly interface (`wit/transform.wit`): you get
//! typed, zero-copy views of the input columns and typed builders for the
//! outputs, and your declared schema becomes the component's `describe`.
//!
//! ```
//! use skewless_sdk::{Batch, DataType, Error, Float64Builder, Output, Schema, Transform};
//!
//! /// Feast's classic on-demand feature: `conv_rate + val_to_add`.
//! pub struct ConvRatePlusVal;
//!
//! impl Transform for ConvRatePlusVal {
//!     fn schema() -> Schema {
//!         Schema::new("transformed_conv_rate", "1.0.0")
//!             .input("conv_rate", DataType::Float32)
//!             .input("val_to_add", DataType::Int64)
//!             .output("conv_rate_plus_val1", DataType::Float64)
//!     }
//!
//!     fn run(input: &Batch) -> Result<Output, Error> {
//!         let conv_rate = input.float32("conv_rate")?;
//!         let val_to_add = input.int64("val_to_add")?;
//!         let mut plus = Float64Builder::with_capacity(input.num_rows());
//!         for row in 0..input.num_rows() {
//!             match (conv_rate.get(row), val_to_add.get(row)) {
//!                 (Some(c), Some(v)) => plus.push(c as f64 + v as f64),
//!                 _ => plus.push_null(),
//!             }
//!         }
//!         Ok(Output::new(input.num_rows()).column("conv_rate_plus_val1", plus))
//!     }
//! }
//!
//! // In the component crate (crate-type = ["cdylib"]), built for wasm32-wasip2:
//! skewless_sdk::export!(ConvRatePlusVal);
//!
//! // The same logic runs natively, e.g. in a unit test or a benchmark:
//! let batch = Batch::new(2, vec![
//!     skewless_sdk::Column::float32("conv_rate", vec![0.5, 0.25], None),
//!     skewless_sdk::Column::int64("val_to_add", vec![1, 2], None),
//! ]);
//! let out = skewless_sdk::run::<ConvRatePlusVal>(&batch).unwrap();
//! assert_eq!(out.columns()[0].values(), &skewless_sdk::Values::Float64(vec![1.5, 2.25]));
//! ```
//!
//! Guarantees the SDK gives the host, whatever the author writes: every
//! declared output is present with the declared type and exactly
//! `num_rows` rows, and a row reported with [`Output::row_error`] has all of
//! its outputs null. Inputs are checked against the declared schema before
//! `run` is called.
#![deny(missing_docs)]

pub mod aggregate;
mod bitmap;
mod column;
mod schema;

pub use aggregate::{Aggregate, AggregateValue};
pub use bitmap::{Bitmap, bitmap_and, bitmap_get};
pub use column::{
    Batch, BoolBuilder, BoolView, Column, Float32Builder, Float64Builder, Int64Builder, IntoColumn, ListView,
    PrimitiveBuilder, PrimitiveView, TimestampBuilder, Utf8Builder, Utf8View, Values, VectorBuilder, VectorView,
};
pub use schema::{DataType, Field, ScalarType, Schema};

use std::fmt;

/// A whole-batch error: the host fails the call with this message.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_string())
    }
}

/// The outputs of one call: columns plus the rows that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    num_rows: usize,
    columns: Vec<Column>,
    row_errors: Vec<(u32, String)>,
}

impl Output {
    /// Starts an output for `num_rows` rows (the input's row count).
    pub fn new(num_rows: usize) -> Self {
        Output {
            num_rows,
            columns: Vec::new(),
            row_errors: Vec::new(),
        }
    }

    /// Adds an output column, built with one of the builders or a [`Column`].
    pub fn column(mut self, name: &str, column: impl IntoColumn) -> Self {
        self.columns.push(Column::named(name, column));
        self
    }

    /// Records that `row` could not be computed; its outputs become null.
    pub fn row_error(&mut self, row: usize, message: impl Into<String>) {
        self.row_errors.push((row as u32, message.into()));
    }

    /// The output columns, in the order they were added.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The rows reported as failed, with their messages.
    pub fn row_errors(&self) -> &[(u32, String)] {
        &self.row_errors
    }

    /// Row count this output was started for.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }
}

/// A feature transform: a declared schema and a batch function.
pub trait Transform {
    /// Name, version, inputs and outputs. This is what `describe` returns,
    /// and what the SDK checks inputs and outputs against.
    fn schema() -> Schema;

    /// Computes every output for every row of `input`.
    fn run(input: &Batch) -> Result<Output, Error>;
}

/// Runs `T` on `input` exactly as the component export does: checks the
/// inputs against the schema, calls [`Transform::run`], then checks and
/// normalizes the outputs (declared order, nulls on failed rows).
pub fn run<T: Transform>(input: &Batch) -> Result<Output, Error> {
    run_with_schema::<T>(&T::schema(), input)
}

/// [`run`] with the schema already built (the component builds it once).
pub fn run_with_schema<T: Transform>(schema: &Schema, input: &Batch) -> Result<Output, Error> {
    schema.check_inputs(input)?;
    let output = T::run(input)?;
    schema.finish_outputs(input.num_rows(), output)
}

/// Exports a [`Transform`] as the component's `skewless:transform/transform`
/// interface. Use it once, in the crate built as the component.
#[macro_export]
macro_rules! export {
    ($transform:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __SkewlessGuest;
            impl $crate::__private::Guest for __SkewlessGuest {
                fn describe() -> $crate::__private::WitDescription {
                    $crate::__private::describe::<$transform>()
                }
                fn run(
                    input: $crate::__private::WitBatch,
                ) -> ::core::result::Result<$crate::__private::WitOutput, ::std::string::String> {
                    static SCHEMA: ::std::sync::OnceLock<$crate::Schema> = ::std::sync::OnceLock::new();
                    $crate::__private::run::<$transform>(SCHEMA.get_or_init(<$transform as $crate::Transform>::schema), input)
                }
            }
            $crate::__private::bindings::__export_transformer!(__SkewlessGuest with_types_in $crate::__private::bindings);
        };
    };
}

/// Exports an [`Aggregate`] as the component's
/// `skewless:transform/aggregator` interface (a user-defined aggregation
/// function, `function = "path/to/it.wasm"` in an aggregation view). Use it
/// once, in the crate built as the component.
#[macro_export]
macro_rules! export_aggregator {
    ($aggregate:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __SkewlessAggregator;
            impl $crate::__private::AggregatorGuest for __SkewlessAggregator {
                fn describe() -> $crate::__private::WitAggregatorDescription {
                    $crate::__private::describe_aggregator::<$aggregate>()
                }
                fn update(
                    states: ::std::vec::Vec<::std::vec::Vec<u8>>,
                    groups: ::std::vec::Vec<u32>,
                    input: $crate::__private::WitBatch,
                ) -> ::core::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, ::std::string::String> {
                    $crate::__private::update::<$aggregate>(states, groups, input)
                }
                fn merge(
                    states: ::std::vec::Vec<::std::vec::Vec<u8>>,
                    groups: ::std::vec::Vec<u32>,
                    parts: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::core::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, ::std::string::String> {
                    $crate::__private::merge::<$aggregate>(states, groups, parts)
                }
                fn finalize(
                    states: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::core::result::Result<$crate::__private::WitColumn, ::std::string::String> {
                    $crate::__private::finalize::<$aggregate>(states)
                }
            }
            $crate::__private::aggregator_bindings::__export_aggregator_component!(
                __SkewlessAggregator with_types_in $crate::__private::aggregator_bindings
            );
        };
    };
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private;
