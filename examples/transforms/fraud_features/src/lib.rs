//! `fraud_features`: card-transaction features with strings and timestamps.
//!
//! From `amount`, `merchant_category` and the transaction's
//! `event_timestamp`: a log amount, an amount bucket, a normalized merchant
//! category and whether it is high risk, the hour of day and day of week
//! (UTC, Monday = 0) and a night flag. Malformed rows (negative or NaN
//! amount, empty or unknown category) become per-row errors, one message per
//! row; the batch goes on. The Python, JavaScript and C versions in
//! `examples/transforms/{python,js,c}` give the same bits and the same errors,
//! which is why matching uses ASCII rules only (trim of space, tab, CR, LF;
//! ASCII case folding): every language agrees on those.

use skewless_sdk::{
    Batch, BoolBuilder, DataType, Error, Float64Builder, Int64Builder, Output, Schema, Transform, Utf8Builder,
};

/// Card-transaction features.
pub struct FraudFeatures;

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// Merchant categories we know, and whether each is high risk.
const CATEGORIES: [(&str, bool); 8] = [
    ("grocery", false),
    ("fuel", false),
    ("restaurant", false),
    ("travel", false),
    ("electronics", true),
    ("jewelry", true),
    ("gift_cards", true),
    ("online_gambling", true),
];

fn amount_bucket(amount: f64) -> &'static str {
    match amount {
        a if a < 5.0 => "micro",
        a if a < 50.0 => "small",
        a if a < 500.0 => "medium",
        _ => "large",
    }
}

impl Transform for FraudFeatures {
    fn schema() -> Schema {
        Schema::new("fraud_features", "1.0.0")
            .input("amount", DataType::Float64)
            .input("merchant_category", DataType::Utf8)
            .input("event_timestamp", DataType::Timestamp)
            .output("amount_log", DataType::Float64)
            .output("amount_bucket", DataType::Utf8)
            .output("merchant_category_norm", DataType::Utf8)
            .output("is_high_risk_merchant", DataType::Boolean)
            .output("hour_of_day", DataType::Int64)
            .output("day_of_week", DataType::Int64)
            .output("is_night", DataType::Boolean)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let rows = input.num_rows();
        let amount = input.float64("amount")?;
        let category = input.utf8("merchant_category")?;
        let time = input.timestamp("event_timestamp")?;

        let mut amount_log = Float64Builder::with_capacity(rows);
        let mut bucket = Utf8Builder::with_capacity(rows, rows * 6);
        let mut category_norm = Utf8Builder::with_capacity(rows, rows * 10);
        let mut high_risk = BoolBuilder::with_capacity(rows);
        let mut hour = Int64Builder::with_capacity(rows);
        let mut weekday = Int64Builder::with_capacity(rows);
        let mut night = BoolBuilder::with_capacity(rows);
        let mut errors = Vec::new();

        for row in 0..rows {
            let mut problems = Vec::new();
            let amount_out = match amount.get(row) {
                Some(a) if a.is_nan() || a < 0.0 => {
                    problems.push("amount must be a number >= 0".to_string());
                    None
                }
                a => a.map(|a| (a.ln_1p(), amount_bucket(a))),
            };
            let category_out = category.get(row).and_then(|raw| {
                let trimmed = raw.trim_matches([' ', '\t', '\n', '\r']);
                let known = CATEGORIES.iter().find(|(name, _)| name.eq_ignore_ascii_case(trimmed));
                if known.is_none() {
                    problems.push(format!("unknown merchant category \"{raw}\""));
                }
                known
            });
            if !problems.is_empty() {
                // The SDK nulls every output of a failed row.
                errors.push((row, problems.join("; ")));
            }
            match amount_out {
                Some((log, name)) => {
                    amount_log.push(log);
                    bucket.push(name);
                }
                None => {
                    amount_log.push_null();
                    bucket.push_null();
                }
            }
            match category_out {
                Some((name, risky)) => {
                    category_norm.push(name);
                    high_risk.push(*risky);
                }
                None => {
                    category_norm.push_null();
                    high_risk.push_null();
                }
            }
            match time.get(row) {
                Some(t) => {
                    let h = t.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR;
                    hour.push(h);
                    // 1970-01-01 was a Thursday (3 with Monday = 0).
                    weekday.push((t.div_euclid(MICROS_PER_DAY) + 3).rem_euclid(7));
                    night.push(!(6..22).contains(&h));
                }
                None => {
                    hour.push_null();
                    weekday.push_null();
                    night.push_null();
                }
            }
        }

        let mut output = Output::new(rows)
            .column("amount_log", amount_log)
            .column("amount_bucket", bucket)
            .column("merchant_category_norm", category_norm)
            .column("is_high_risk_merchant", high_risk)
            .column("hour_of_day", hour)
            .column("day_of_week", weekday)
            .column("is_night", night);
        for (row, message) in errors {
            output.row_error(row, message);
        }
        Ok(output)
    }
}

skewless_sdk::export!(FraudFeatures);
