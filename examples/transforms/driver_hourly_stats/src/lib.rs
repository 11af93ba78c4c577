//! `driver_hourly_stats`: Feast's demo view, materialized as is. The
//! transform passes the three source columns through unchanged, so that the
//! stored values carry the digest of the code that produced them.

use skewless_sdk::{Batch, DataType, Error, Output, Schema, Transform};

/// Passes `conv_rate`, `acc_rate` and `avg_daily_trips` through.
pub struct DriverHourlyStats;

const FEATURES: [(&str, DataType); 3] = [
    ("conv_rate", DataType::Float32),
    ("acc_rate", DataType::Float32),
    ("avg_daily_trips", DataType::Int64),
];

impl Transform for DriverHourlyStats {
    fn schema() -> Schema {
        FEATURES
            .iter()
            .fold(Schema::new("driver_hourly_stats", "1.0.0"), |s, (name, ty)| {
                s.input(name, *ty).output(name, *ty)
            })
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let mut output = Output::new(input.num_rows());
        for (name, _) in FEATURES {
            let column = input
                .column(name)
                .ok_or_else(|| Error::from(format!("missing input `{name}`")))?;
            output = output.column(name, column.clone());
        }
        Ok(output)
    }
}

skewless_sdk::export!(DriverHourlyStats);
