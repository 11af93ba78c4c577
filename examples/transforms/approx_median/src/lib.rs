//! `approx_median`: a user-defined aggregation function, the median of a
//! window's inputs from a bounded sketch.
//!
//! The sketch counts values in log-linear buckets: 64 buckets per power of
//! two, so a bucket is at most 1/64 (1.6%) wide relative to its values, and
//! the median is reported as the middle of its bucket. Magnitudes below
//! 2^-20 count as zero and above 2^40 as 2^40, so a state holds at most
//! 2 x 60 x 64 buckets whatever the number of events. Buckets come from the
//! bits of the float (no logarithm), and merging adds counts, so the state
//! of a set of events is the same however they are split: the laws
//! `skewless apply` checks hold exactly. The Python version
//! (`examples/transforms/python/approx_median`) gives the same bits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use skewless_sdk::Aggregate;

/// Mantissa bits kept per bucket: 2^6 = 64 buckets per power of two.
const SUB_BITS: u32 = 6;
/// Smallest magnitude kept apart from zero: 2^-20.
const MIN_EXPONENT: i32 = -20;
/// Largest magnitude told apart: 2^40 (larger ones share its bucket).
const MAX_EXPONENT: i32 = 40;

/// The median's sketch: counts per bucket, by sign.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Values counted as zero.
    zeros: u64,
    /// Positive values by bucket.
    positive: BTreeMap<u32, u64>,
    /// Negative values by the bucket of their magnitude.
    negative: BTreeMap<u32, u64>,
}

/// The bucket of a magnitude (`None`: counted as zero): the float's
/// exponent and top mantissa bits.
pub fn bucket(magnitude: f64) -> Option<u32> {
    let clamped = magnitude.min(f64::from_bits(((MAX_EXPONENT + 1023) as u64) << 52));
    let exponent = ((clamped.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    if exponent < MIN_EXPONENT {
        return None;
    }
    Some((clamped.to_bits() >> (52 - SUB_BITS)) as u32)
}

/// The middle of a bucket.
pub fn representative(bucket: u32) -> f64 {
    let low = f64::from_bits((bucket as u64) << (52 - SUB_BITS));
    let high = f64::from_bits((bucket as u64 + 1) << (52 - SUB_BITS));
    low + (high - low) / 2.0
}

/// The function.
pub struct ApproxMedian;

impl Aggregate for ApproxMedian {
    const NAME: &'static str = "approx_median";
    const VERSION: &'static str = "1.0.0";
    type Input = f64;
    type Output = f64;
    type State = Sketch;

    fn update(state: &mut Sketch, value: f64) {
        if value.is_nan() {
            return;
        }
        let side = if value < 0.0 {
            &mut state.negative
        } else {
            &mut state.positive
        };
        match bucket(value.abs()) {
            None => state.zeros += 1,
            Some(b) => *side.entry(b).or_default() += 1,
        }
    }

    fn merge(state: &mut Sketch, later: Sketch) {
        state.zeros += later.zeros;
        for (b, n) in later.positive {
            *state.positive.entry(b).or_default() += n;
        }
        for (b, n) in later.negative {
            *state.negative.entry(b).or_default() += n;
        }
    }

    /// The lower median: the value of rank (n - 1) / 2 in ascending order.
    fn finalize(state: Sketch) -> Option<f64> {
        let n = state.zeros + state.positive.values().sum::<u64>() + state.negative.values().sum::<u64>();
        if n == 0 {
            return None;
        }
        let mut rank = (n - 1) / 2;
        for (&b, &count) in state.negative.iter().rev() {
            if rank < count {
                return Some(-representative(b));
            }
            rank -= count;
        }
        if rank < state.zeros {
            return Some(0.0);
        }
        rank -= state.zeros;
        for (&b, &count) in &state.positive {
            if rank < count {
                return Some(representative(b));
            }
            rank -= count;
        }
        unreachable!("the rank is below the count")
    }
}

skewless_sdk::export_aggregator!(ApproxMedian);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_within_a_bucket_of_the_exact_one() {
        let values: Vec<f64> = (1..=999).map(|i| (i as f64 * 7.31) % 500.0 + 0.5).collect();
        let mut sketch = Sketch::default();
        for &v in &values {
            ApproxMedian::update(&mut sketch, v);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let exact = sorted[(sorted.len() - 1) / 2];
        let got = ApproxMedian::finalize(sketch).unwrap();
        assert!((got - exact).abs() <= exact / 64.0, "{got} vs {exact}");
    }
}
