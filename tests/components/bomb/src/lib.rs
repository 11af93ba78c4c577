//! Allocates without bound when `x` holds a negative value.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct Bomb;

impl Transform for Bomb {
    fn schema() -> Schema {
        Schema::new("bomb", "1.0.0").input("x", DataType::Int64).output("y", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.int64("x")?;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        let mut y = Int64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let v = x.get(row).unwrap_or(0);
            while v < 0 {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
            y.push(v);
        }
        Ok(Output::new(input.num_rows()).column("y", y))
    }
}

skewless_sdk::export!(Bomb);
