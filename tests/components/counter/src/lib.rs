//! Written against the WIT directly (no SDK): counts its calls in a global
//! and answers the count for every row (`calls`). A host that reuses an
//! instance across calls answers 2, 3, ...; ours must answer 1 every time.
//! It also works `x` rounds of arithmetic per row where `0 <= x < 10^8`, so
//! that a test can make its calls last long enough for concurrent requests
//! to share them (the probe's extreme values cost nothing).

wit_bindgen::generate!({ path: "../../../wit/0.1.0", world: "transformer" });

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
        if let Some(Values::Int64(x)) = input.columns.iter().find(|c| c.name == "x").map(|c| &c.values) {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64;
            for _ in 0..x.iter().filter(|&&x| (0..100_000_000).contains(&x)).sum::<i64>() {
                state = std::hint::black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        let column = Column { name: "calls".into(), values: Values::Int64(vec![calls; input.num_rows as usize]), validity: None };
        Ok(Output { batch: Batch { num_rows: input.num_rows, columns: vec![column] }, row_errors: vec![] })
    }
}

export!(Counter);
