//! Written against the WIT directly (no SDK): counts its calls in a global
//! and answers the count for every row (`calls`). A host that reuses an
//! instance across calls answers 2, 3, ...; ours must answer 1 every time.

wit_bindgen::generate!({ path: "../../../wit", world: "transformer" });

use std::sync::atomic::{AtomicI64, Ordering};

use exports::skewless::transform::transform::Guest;
use skewless::transform::types::{Batch, Column, DataType, Description, Field, Output, Values};

static CALLS: AtomicI64 = AtomicI64::new(0);

struct Counter;

impl Guest for Counter {
    fn describe() -> Description {
        Description {
            name: "counter".into(),
            version: "1.0.0".into(),
            inputs: vec![Field { name: "x".into(), data_type: DataType::Int64, nullable: true }],
            outputs: vec![Field { name: "calls".into(), data_type: DataType::Int64, nullable: true }],
        }
    }

    fn run(input: Batch) -> Result<Output, String> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let column = Column { name: "calls".into(), values: Values::Int64(vec![calls; input.num_rows as usize]), validity: None };
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns: vec![column] }, row_errors: vec![] })
    }
}

export!(Counter);
