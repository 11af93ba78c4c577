//! `{{name}}`: average speed of a trip, in km/h.
//!
//! Build with `skewless build .`; the component lands in
//! `target/wasm32-wasip2/release/{{name}}.wasm`, which `skewless.toml` names.

use skewless_sdk::{Batch, DataType, Error, Float64Builder, Output, Schema, Transform};

pub struct TripSpeed;

impl Transform for TripSpeed {
    fn schema() -> Schema {
        Schema::new("{{name}}", "1.0.0")
            .input("distance_km", DataType::Float64)
            .input("duration_s", DataType::Int64)
            .output("speed_kmh", DataType::Float64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let distance = input.float64("distance_km")?;
        let duration = input.int64("duration_s")?;
        let mut out = Output::new(input.num_rows());
        let mut speed = Float64Builder::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            match (distance.get(row), duration.get(row)) {
                (Some(d), Some(s)) if s > 0 => speed.push(d / (s as f64 / 3600.0)),
                (Some(_), Some(s)) => {
                    out.row_error(row, format!("duration_s must be > 0, got {s}")); // this row becomes null
                    speed.push_null();
                }
                _ => speed.push_null(),
            }
        }
        Ok(out.column("speed_kmh", speed))
    }
}

skewless_sdk::export!(TripSpeed);
