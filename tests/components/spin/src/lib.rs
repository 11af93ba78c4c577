//! Loops forever when `x` holds a negative value.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct Spin;

impl Transform for Spin {
    fn schema() -> Schema {
        Schema::new("spin", "1.0.0").input("x", DataType::Int64).output("y", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.int64("x")?;
        let mut y = Int64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let mut v = x.get(row).unwrap_or(0);
            while v < 0 {
                v = std::hint::black_box(v);
            }
            y.push(v);
        }
        Ok(Output::new(input.num_rows()).column("y", y))
    }
}

skewless_sdk::export!(Spin);
