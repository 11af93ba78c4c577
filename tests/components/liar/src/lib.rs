//! Written against the WIT directly (no SDK) to break the contract the SDK
//! keeps: it declares one int64 output `y` but returns a column one row short
//! when `x` has more than one row, and a float column when it has one.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "transformer" });

use exports::skewless::transform::transform::Guest;
use skewless::transform::types::{Batch, Column, DataType, Description, Field, Output, Values};

struct Liar;

impl Guest for Liar {
    fn describe() -> Description {
        Description {
            name: "liar".into(),
            version: "1.0.0".into(),
            inputs: vec![Field { name: "x".into(), data_type: DataType::Int64, nullable: true }],
            outputs: vec![Field { name: "y".into(), data_type: DataType::Int64, nullable: true }],
        }
    }

    fn run(input: Batch) -> Result<Output, String> {
        let rows = input.num_rows as usize;
        let values = if rows == 1 { Values::Float64(vec![1.0]) } else { Values::Int64(vec![0; rows.saturating_sub(1)]) };
        let column = Column { name: "y".into(), values, validity: None };
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns: vec![column] }, row_errors: vec![] })
    }
}

export!(Liar);
