//! `amount_vs_usual`: an on-demand view over windowed features. How a
//! transaction's amount (a request field) compares with the card's last
//! seven days (the `card_activity` aggregation view):
//!
//! `amount_to_mean_7d = amount / amount_mean_7d` and
//! `amount_zscore_7d = (amount - amount_mean_7d) / amount_stddev_7d`, in
//! float64. A value is null where an input is null (no history yet).

use skewless_sdk::{Batch, DataType, Error, Float64Builder, Output, Schema, Transform, bitmap_and};

/// Compares a request's amount with the card's 7-day mean and spread.
pub struct AmountVsUsual;

impl Transform for AmountVsUsual {
    fn schema() -> Schema {
        Schema::new("amount_vs_usual", "1.0.0")
            .input("amount", DataType::Float64)
            .input("amount_mean_7d", DataType::Float64)
            .input("amount_stddev_7d", DataType::Float64)
            .output("amount_to_mean_7d", DataType::Float64)
            .output("amount_zscore_7d", DataType::Float64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let amount = input.float64("amount")?;
        let mean = input.float64("amount_mean_7d")?;
        let stddev = input.float64("amount_stddev_7d")?;
        let ratio: Vec<f64> = amount.values().iter().zip(mean.values()).map(|(a, m)| a / m).collect();
        let zscore: Vec<f64> = amount
            .values()
            .iter()
            .zip(mean.values())
            .zip(stddev.values())
            .map(|((a, m), s)| (a - m) / s)
            .collect();
        let both = bitmap_and(amount.validity(), mean.validity());
        let all = bitmap_and(both.as_deref(), stddev.validity());
        Ok(Output::new(input.num_rows())
            .column("amount_to_mean_7d", Float64Builder::from_values(ratio, both))
            .column("amount_zscore_7d", Float64Builder::from_values(zscore, all)))
    }
}

skewless_sdk::export!(AmountVsUsual);
