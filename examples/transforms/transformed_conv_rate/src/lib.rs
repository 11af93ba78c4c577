//! `transformed_conv_rate`: Feast's classic on-demand feature view.
//!
//! `conv_rate_plus_val1 = conv_rate + val_to_add` and
//! `conv_rate_plus_val2 = conv_rate + val_to_add * 2`, in float64. A row is
//! null where either input is null.

use skewless_sdk::{Batch, DataType, Error, Float64Builder, Output, Schema, Transform, bitmap_and};

/// Adds the request-time `val_to_add` to the stored `conv_rate`.
pub struct TransformedConvRate;

impl Transform for TransformedConvRate {
    fn schema() -> Schema {
        Schema::new("transformed_conv_rate", "1.0.0")
            .input("conv_rate", DataType::Float32)
            .input("val_to_add", DataType::Int64)
            .output("conv_rate_plus_val1", DataType::Float64)
            .output("conv_rate_plus_val2", DataType::Float64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let conv_rate = input.float32("conv_rate")?;
        let val_to_add = input.int64("val_to_add")?;
        let rows = conv_rate.values().iter().zip(val_to_add.values());
        let plus1: Vec<f64> = rows.clone().map(|(c, v)| *c as f64 + *v as f64).collect();
        let plus2: Vec<f64> = rows.map(|(c, v)| *c as f64 + (*v as f64) * 2.0).collect();
        let validity = bitmap_and(conv_rate.validity(), val_to_add.validity());
        Ok(Output::new(input.num_rows())
            .column(
                "conv_rate_plus_val1",
                Float64Builder::from_values(plus1, validity.clone()),
            )
            .column("conv_rate_plus_val2", Float64Builder::from_values(plus2, validity)))
    }
}

skewless_sdk::export!(TransformedConvRate);
