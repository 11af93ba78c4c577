//! The WIT side of the SDK, compiled for wasm32 only: generated bindings and
//! the moves between them and the SDK's own column types. Nothing here copies
//! a values buffer; `Vec`s change hands.

use crate::{Aggregate, Batch, Column, DataType, Field, ScalarType, Transform, Values};

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transformer",
        pub_export_macro: true,
        export_macro_name: "__export_transformer",
        default_bindings_module: "skewless_sdk::__private::bindings",
    });
}

/// The aggregator world, sharing the column types of the transformer's.
#[allow(missing_docs, clippy::all)]
pub mod aggregator_bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "aggregator-component",
        pub_export_macro: true,
        export_macro_name: "__export_aggregator_component",
        default_bindings_module: "skewless_sdk::__private::aggregator_bindings",
        with: {
            "skewless:transform/types@0.2.0": crate::__private::bindings::skewless::transform::types,
        },
    });
}

use aggregator_bindings::exports::skewless::transform::aggregator as wit_aggregator;
use bindings::exports::skewless::transform::transform as wit_transform;
use bindings::skewless::transform::types as wit;

pub use wit::Batch as WitBatch;
pub use wit::Description as WitDescription;
pub use wit::Output as WitOutput;
pub use wit_aggregator::AggregatorDescription as WitAggregatorDescription;
pub use wit_aggregator::Guest as AggregatorGuest;
pub use wit_transform::Guest;

pub use wit::Column as WitColumn;

fn scalar_type_to_wit(scalar: ScalarType) -> wit::ScalarType {
    match scalar {
        ScalarType::Boolean => wit::ScalarType::Boolean,
        ScalarType::Int64 => wit::ScalarType::Int64,
        ScalarType::Float32 => wit::ScalarType::Float32,
        ScalarType::Float64 => wit::ScalarType::Float64,
        ScalarType::Utf8 => wit::ScalarType::Utf8,
        ScalarType::Timestamp => wit::ScalarType::Timestamp,
    }
}

fn data_type_to_wit(data_type: DataType) -> wit::DataType {
    match data_type {
        DataType::List(item) => wit::DataType::List(scalar_type_to_wit(item)),
        DataType::Vector(dimension) => wit::DataType::Vector(dimension),
        DataType::Boolean
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::Timestamp => {
            wit::DataType::Scalar(scalar_type_to_wit(data_type.scalar().expect("the six scalar types")))
        }
    }
}

fn fields_to_wit(fields: Vec<Field>) -> Vec<wit::Field> {
    fields
        .into_iter()
        .map(|f| wit::Field {
            name: f.name,
            data_type: data_type_to_wit(f.data_type),
            nullable: f.nullable,
        })
        .collect()
}

/// `describe`, from the declared schema.
pub fn describe<T: Transform>() -> WitDescription {
    let schema = T::schema();
    WitDescription {
        name: schema.name,
        version: schema.version,
        inputs: fields_to_wit(schema.inputs),
        outputs: fields_to_wit(schema.outputs),
    }
}

/// `run`: move the WIT batch into SDK columns, run, move the outputs back.
pub fn run<T: Transform>(schema: &crate::Schema, input: WitBatch) -> Result<WitOutput, String> {
    let num_rows = input.num_rows as usize;
    let columns = input
        .columns
        .into_iter()
        .map(|c| {
            let declared = schema.inputs.iter().find(|f| f.name == c.name).map(|f| f.data_type);
            column_from_wit(c, num_rows, declared)
        })
        .collect();
    let batch = Batch::new(num_rows, columns);
    let output = crate::run_with_schema::<T>(schema, &batch).map_err(|e| e.0)?;
    let row_errors = output
        .row_errors()
        .iter()
        .map(|(row, message)| wit::RowError {
            row: *row,
            message: message.clone(),
        })
        .collect();
    let columns = output.columns.into_iter().map(column_to_wit).collect();
    Ok(WitOutput {
        batch: wit::Batch {
            num_rows: num_rows as u32,
            columns,
        },
        row_errors,
    })
}

/// A WIT column as an SDK column (the buffers move, nothing is copied).
/// `schema` gives a vector's dimension, which its buffer does not carry.
fn column_from_wit(c: wit::Column, num_rows: usize, data_type: Option<DataType>) -> Column {
    let values = match c.values {
        wit::Values::Scalar(wit::ScalarValues::Boolean(bits)) => {
            return Column {
                name: c.name,
                values: Values::Boolean(bits),
                validity: c.validity,
                len: num_rows,
            };
        }
        wit::Values::Scalar(values) => scalar_from_wit(values),
        wit::Values::List(list) => Values::List {
            offsets: list.offsets,
            elements: Box::new(scalar_from_wit(list.elements)),
        },
        wit::Values::Vector(components) => Values::Vector {
            dimension: match data_type {
                Some(DataType::Vector(dimension)) => dimension,
                // Undeclared: one row's worth, so the schema check names it.
                _ => (components.len() / num_rows.max(1)) as u32,
            },
            components,
        },
    };
    let mut column = Column::from_owned(c.name, values, c.validity);
    column.len = num_rows;
    column
}

fn scalar_from_wit(values: wit::ScalarValues) -> Values {
    match values {
        wit::ScalarValues::Boolean(bits) => Values::Boolean(bits),
        wit::ScalarValues::Int64(v) => Values::Int64(v),
        wit::ScalarValues::Float32(v) => Values::Float32(v),
        wit::ScalarValues::Float64(v) => Values::Float64(v),
        wit::ScalarValues::Utf8(s) => Values::Utf8 {
            offsets: s.offsets,
            bytes: s.bytes,
        },
        wit::ScalarValues::Timestamp(v) => Values::Timestamp(v),
    }
}

/// An SDK column as a WIT column.
fn column_to_wit(c: Column) -> wit::Column {
    let (name, values, validity) = c.into_parts();
    wit::Column {
        name,
        values: values_to_wit(values),
        validity,
    }
}

fn values_to_wit(values: Values) -> wit::Values {
    match values {
        Values::List { offsets, elements } => wit::Values::List(wit::ListValues {
            offsets,
            elements: match values_to_wit(*elements) {
                wit::Values::Scalar(elements) => elements,
                wit::Values::List(_) | wit::Values::Vector(_) => {
                    unreachable!("a list's elements are scalar values (checked when the column is made)")
                }
            },
        }),
        Values::Vector { components, .. } => wit::Values::Vector(components),
        Values::Boolean(bits) => wit::Values::Scalar(wit::ScalarValues::Boolean(bits)),
        Values::Int64(v) => wit::Values::Scalar(wit::ScalarValues::Int64(v)),
        Values::Float32(v) => wit::Values::Scalar(wit::ScalarValues::Float32(v)),
        Values::Float64(v) => wit::Values::Scalar(wit::ScalarValues::Float64(v)),
        Values::Utf8 { offsets, bytes } => {
            wit::Values::Scalar(wit::ScalarValues::Utf8(wit::Utf8Values { offsets, bytes }))
        }
        Values::Timestamp(v) => wit::Values::Scalar(wit::ScalarValues::Timestamp(v)),
    }
}

/// The aggregator's `describe`.
pub fn describe_aggregator<A: Aggregate>() -> WitAggregatorDescription {
    let (input, output) = crate::aggregate::fields::<A>();
    let mut fields = fields_to_wit(vec![input, output]);
    let output = fields.pop().expect("two fields");
    let input = fields.pop().expect("two fields");
    WitAggregatorDescription {
        name: A::NAME.to_string(),
        version: A::VERSION.to_string(),
        input,
        output,
    }
}

/// The aggregator's `update`.
pub fn update<A: Aggregate>(states: Vec<Vec<u8>>, groups: Vec<u32>, input: WitBatch) -> Result<Vec<Vec<u8>>, String> {
    let rows = input.num_rows as usize;
    let column = input
        .columns
        .into_iter()
        .next()
        .ok_or_else(|| "update: the input batch has no column".to_string())?;
    let (input, _) = crate::aggregate::fields::<A>();
    crate::aggregate::update::<A>(states, &groups, &column_from_wit(column, rows, Some(input.data_type)))
        .map_err(|e| e.0)
}

/// The aggregator's `merge`.
pub fn merge<A: Aggregate>(
    states: Vec<Vec<u8>>,
    groups: Vec<u32>,
    parts: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, String> {
    crate::aggregate::merge::<A>(states, &groups, parts).map_err(|e| e.0)
}

/// The aggregator's `finalize`.
pub fn finalize<A: Aggregate>(states: Vec<Vec<u8>>) -> Result<WitColumn, String> {
    crate::aggregate::finalize::<A>(states)
        .map(column_to_wit)
        .map_err(|e| e.0)
}
