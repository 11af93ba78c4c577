//! Reports what the sandbox lets a guest see: the clock, the environment,
//! the file system, randomness, and the bits of a NaN it computes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use skewless_sdk::{Batch, BoolBuilder, DataType, Error, Float64Builder, Int64Builder, Output, Schema, Transform};

pub struct Probe;

impl Transform for Probe {
    fn schema() -> Schema {
        Schema::new("probe", "1.0.0")
            .input("x", DataType::Float64)
            .output("clock_micros", DataType::Int64)
            .output("env_vars", DataType::Int64)
            .output("can_read_files", DataType::Boolean)
            .output("random_hash", DataType::Int64)
            .output("nan_bits", DataType::Int64)
            .output("zero_over_zero", DataType::Float64)
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let x = input.float64("x")?;
        let rows = input.num_rows();
        let (mut clock, mut env, mut files) = (Int64Builder::with_capacity(rows), Int64Builder::with_capacity(rows), BoolBuilder::with_capacity(rows));
        let (mut random, mut nan_bits, mut nan) = (Int64Builder::with_capacity(rows), Int64Builder::with_capacity(rows), Float64Builder::with_capacity(rows));
        for row in 0..rows {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(-1);
            clock.push(now);
            env.push(std::env::vars().count() as i64);
            files.push(std::fs::read_dir("/").is_ok() || std::fs::File::open("/etc/passwd").is_ok());
            random.push(RandomState::new().hash_one(row) as i64);
            let v = x.get(row).unwrap_or(0.0);
            let quotient = std::hint::black_box(v - v) / std::hint::black_box(v - v);
            nan_bits.push(quotient.to_bits() as i64);
            nan.push(quotient);
        }
        Ok(Output::new(rows)
            .column("clock_micros", clock)
            .column("env_vars", env)
            .column("can_read_files", files)
            .column("random_hash", random)
            .column("nan_bits", nan_bits)
            .column("zero_over_zero", nan))
    }
}

skewless_sdk::export!(Probe);
