//! Panics when `x` holds 13: a trap in the middle of a batch.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct Trap;

impl Transform for Trap {
    fn schema() -> Schema {
        Schema::new("trap", "1.0.0").input("x", DataType::Int64).output("y", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.int64("x")?;
        let mut y = Int64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let v = x.get(row).unwrap_or(0);
            if v == 13 {
                panic!("unlucky value 13 at row {row}");
            }
            y.push(v * 2);
        }
        Ok(Output::new(input.num_rows()).column("y", y))
    }
}

skewless_sdk::export!(Trap);
