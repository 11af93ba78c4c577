//! Written against the WIT directly (no SDK) to send the host too much error
//! text, or a row error for a row that does not exist. The first value of `x`
//! picks the misbehaviour:
//! - 1: a row error for row `num_rows` (one past the end);
//! - 2: one row error whose message is 1 MiB;
//! - 3: a row error with a 64 KiB message for every row;
//! - 4: fails the whole batch with a 1 MiB message;
//! - anything else: `y = x`, with a short row error for every negative `x`.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "transformer" });

use exports::skewless::transform::transform::Guest;
use skewless::transform::types::{Batch, Column, DataType, Description, Field, Output, RowError, Values};

struct Chatty;

impl Guest for Chatty {
    fn describe() -> Description {
        Description {
            name: "chatty".into(),
            version: "1.0.0".into(),
            inputs: vec![Field { name: "x".into(), data_type: DataType::Int64, nullable: true }],
            outputs: vec![Field { name: "y".into(), data_type: DataType::Int64, nullable: true }],
        }
    }

    fn run(input: Batch) -> Result<Output, String> {
        let x = match input.columns.iter().find(|c| c.name == "x").map(|c| &c.values) {
            Some(Values::Int64(x)) => x.clone(),
            _ => return Err("no int64 column `x`".into()),
        };
        let row_errors = match x.first() {
            Some(1) => vec![RowError { row: input.num_rows, message: "past the end".into() }],
            Some(2) => vec![RowError { row: 0, message: "e".repeat(1 << 20) }],
            Some(3) => (0..input.num_rows).map(|row| RowError { row, message: "m".repeat(64 << 10) }).collect(),
            Some(4) => return Err("b".repeat(1 << 20)),
            _ => (0..input.num_rows).filter(|&r| x[r as usize] < 0).map(|row| RowError { row, message: format!("x = {} is negative", x[row as usize]) }).collect(),
        };
        let column = Column { name: "y".into(), values: Values::Int64(x), validity: None };
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns: vec![column] }, row_errors })
    }
}

export!(Chatty);
