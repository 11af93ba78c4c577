//! Passes a 384-dimensional embedding through unchanged: a view of vectors
//! computed elsewhere (the search benchmark's 100,000 x 384).

use skewless_sdk::{Batch, DataType, Error, Output, Schema, Transform};

pub struct Vector384;

impl Transform for Vector384 {
    fn schema() -> Schema {
        Schema::new("vector_384", "1.0.0")
            .input("embedding", DataType::Vector(384))
            .output("embedding", DataType::Vector(384))
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let column = input.column("embedding").ok_or("missing column")?.clone();
        Ok(Output::new(input.num_rows()).column("embedding", column))
    }
}

#[cfg(target_arch = "wasm32")]
skewless_sdk::export!(Vector384);
