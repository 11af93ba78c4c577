//! The WIT side of the SDK, compiled for wasm32 only: generated bindings and
//! the moves between them and the SDK's own column types. Nothing here copies
//! a values buffer; `Vec`s change hands.

use crate::{Batch, Column, DataType, Field, Transform, Values};

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

use bindings::exports::skewless::transform::transform as wit_transform;
use bindings::skewless::transform::types as wit;

pub use wit::Batch as WitBatch;
pub use wit::Description as WitDescription;
pub use wit::Output as WitOutput;
pub use wit_transform::Guest;

fn data_type_to_wit(data_type: DataType) -> wit::DataType {
    match data_type {
        DataType::Boolean => wit::DataType::Boolean,
        DataType::Int64 => wit::DataType::Int64,
        DataType::Float32 => wit::DataType::Float32,
        DataType::Float64 => wit::DataType::Float64,
        DataType::Utf8 => wit::DataType::Utf8,
        DataType::Timestamp => wit::DataType::Timestamp,
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
            let values = match c.values {
                wit::Values::Boolean(bits) => {
                    return Column {
                        name: c.name,
                        values: Values::Boolean(bits),
                        validity: c.validity,
                        len: num_rows,
                    };
                }
                wit::Values::Int64(v) => Values::Int64(v),
                wit::Values::Float32(v) => Values::Float32(v),
                wit::Values::Float64(v) => Values::Float64(v),
                wit::Values::Utf8(s) => Values::Utf8 {
                    offsets: s.offsets,
                    bytes: s.bytes,
                },
                wit::Values::Timestamp(v) => Values::Timestamp(v),
            };
            Column::from_owned(c.name, values, c.validity)
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
    let columns = output
        .columns
        .into_iter()
        .map(|c| {
            let (name, values, validity) = c.into_parts();
            let values = match values {
                Values::Boolean(bits) => wit::Values::Boolean(bits),
                Values::Int64(v) => wit::Values::Int64(v),
                Values::Float32(v) => wit::Values::Float32(v),
                Values::Float64(v) => wit::Values::Float64(v),
                Values::Utf8 { offsets, bytes } => wit::Values::Utf8(wit::Utf8Values { offsets, bytes }),
                Values::Timestamp(v) => wit::Values::Timestamp(v),
            };
            wit::Column { name, values, validity }
        })
        .collect();
    Ok(WitOutput {
        batch: wit::Batch {
            num_rows: num_rows as u32,
            columns,
        },
        row_errors,
    })
}
