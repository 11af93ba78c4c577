//! Carries a count across the rows of one call: row i of a call answers
//! i + 1 (`seen`). Each call starts from 0 (a fresh instance), so only the
//! rows of the same call change a row's answer: one value online (1-row
//! calls), another in backfill. `apply` must refuse it.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct RunningCount;

impl Transform for RunningCount {
    fn schema() -> Schema {
        Schema::new("running_count", "1.0.0").input("x", DataType::Int64).output("seen", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let mut seen = 0;
        let mut out = Int64Builder::with_capacity(input.num_rows());
        for _ in 0..input.num_rows() {
            seen += 1;
            out.push(seen);
        }
        Ok(Output::new(input.num_rows()).column("seen", out))
    }
}

skewless_sdk::export!(RunningCount);
