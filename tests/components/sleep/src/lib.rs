//! Writes to stderr, then sleeps an hour when `x` holds a negative value.

use skewless_sdk::{Batch, DataType, Error, Int64Builder, Output, Schema, Transform};

pub struct Sleep;

impl Transform for Sleep {
    fn schema() -> Schema {
        Schema::new("sleep", "1.0.0").input("x", DataType::Int64).output("y", DataType::Int64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.int64("x")?;
        let mut y = Int64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let v = x.get(row).unwrap_or(0);
            eprintln!("row {row}: {v}");
            if v < 0 {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
            y.push(v);
        }
        Ok(Output::new(input.num_rows()).column("y", y))
    }
}

skewless_sdk::export!(Sleep);
