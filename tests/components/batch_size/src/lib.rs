//! Written against the WIT directly (no SDK): answers, for every row, the
//! number of rows in its batch (`batch_rows`), and `x` minus the batch's mean
//! of `x` (`centered`). A value that depends on the other rows of the batch:
//! one answer online (1-row calls), another in backfill. `apply` must refuse it.

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "transformer" });

use exports::skewless::transform::transform::Guest;
use skewless::transform::types::{Batch, Column, DataType, Description, Field, Output, Values};

struct BatchSize;

impl Guest for BatchSize {
    fn describe() -> Description {
        Description {
            name: "batch_size".into(),
            version: "1.0.0".into(),
            inputs: vec![Field { name: "x".into(), data_type: DataType::Int64, nullable: true }],
            outputs: vec![
                Field { name: "batch_rows".into(), data_type: DataType::Int64, nullable: true },
                Field { name: "centered".into(), data_type: DataType::Float64, nullable: true },
            ],
        }
    }

    fn run(input: Batch) -> Result<Output, String> {
        let rows = input.num_rows as usize;
        let x = match input.columns.iter().find(|c| c.name == "x").map(|c| &c.values) {
            Some(Values::Int64(x)) => x.clone(),
            _ => return Err("no int64 column `x`".into()),
        };
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / rows.max(1) as f64;
        let columns = vec![
            Column { name: "batch_rows".into(), values: Values::Int64(vec![rows as i64; rows]), validity: None },
            Column { name: "centered".into(), values: Values::Float64(x.iter().map(|&v| v as f64 - mean).collect()), validity: None },
        ];
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns }, row_errors: vec![] })
    }
}

export!(BatchSize);
