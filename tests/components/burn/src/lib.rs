//! Works `x` rounds of arithmetic per row: a request that costs a known
//! amount of CPU, for the overload and joined-call tests. Panics when `x`
//! is 13: a failing request among slow ones.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct Burn;

impl Transform for Burn {
    fn schema() -> Schema {
        Schema::new("burn", "1.0.0").input("x", DataType::Int64).output("y", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.int64("x")?;
        let mut y = Int64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let rounds = x.get(row).unwrap_or(0).max(0);
            if rounds == 13 {
                panic!("unlucky value 13 at row {row}");
            }
            let mut state = 0x9E37_79B9_7F4A_7C15_u64;
            for _ in 0..rounds {
                state = std::hint::black_box(state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
            y.push((state >> 1) as i64);
        }
        Ok(Output::new(input.num_rows()).column("y", y))
    }
}

skewless_sdk::export!(Burn);
