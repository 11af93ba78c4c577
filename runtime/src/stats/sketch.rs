//! A quantile sketch with a relative error bound and an order-free merge
//! (DDSketch's idea: Masson, Rim, Lee, VLDB 2019). A value lands in a
//! bucket by its magnitude on a logarithmic scale; a bucket holds a count.
//! Merging adds counts, so the sketch of a set of values is the same
//! whatever order they came in and however they were split.
//!
//! The scale is computed from the double's exponent and mantissa with
//! exact arithmetic (no `ln`, whose last bit may differ between C
//! libraries), so a value lands in the same bucket on every machine.
//!
//! Error: a quantile is answered with a value within [`RELATIVE_ERROR`] of
//! the true value of that rank (for values of magnitude at least
//! `f64::MIN_POSITIVE`; smaller ones count as zero).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Buckets per unit of the approximate base-2 logarithm. A bucket spans a
/// ratio of at most e^(1/50) between its bounds, so its midpoint (see
/// [`bucket_value`]) is within (e^0.02 - 1)/(e^0.02 + 1) < 1% of any
/// value in it.
const BUCKETS_PER_OCTAVE: f64 = 50.0;

/// The promised bound on a quantile's relative error.
pub const RELATIVE_ERROR: f64 = 0.01;

/// Counts of values by bucket; merged by adding counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantileSketch {
    positive: Buckets,
    negative: Buckets,
    zeros: u64,
}

/// Counts by bucket index, held densely from the lowest index seen (a
/// value's bucket is an index into a vector, not a search of a map);
/// stored as `{index: count}` of the non-zero buckets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "BTreeMap<i32, u64>", into = "BTreeMap<i32, u64>")]
struct Buckets {
    first: i32,
    counts: Vec<u64>,
}

impl Buckets {
    fn add(&mut self, bucket: i32, n: u64) {
        if self.counts.is_empty() {
            self.first = bucket;
        } else if bucket < self.first {
            let grow = (self.first - bucket) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = bucket;
        }
        let at = (bucket - self.first) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Non-zero buckets, in increasing order.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| (self.first + i as i32, n))
    }
}

impl PartialEq for Buckets {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Buckets {}

impl From<BTreeMap<i32, u64>> for Buckets {
    fn from(map: BTreeMap<i32, u64>) -> Self {
        let mut buckets = Buckets::default();
        for (b, n) in map {
            buckets.add(b, n);
        }
        buckets
    }
}

impl From<Buckets> for BTreeMap<i32, u64> {
    fn from(buckets: Buckets) -> Self {
        buckets.iter().collect()
    }
}

impl QuantileSketch {
    /// Adds a finite value.
    pub fn add(&mut self, x: f64) {
        if x.abs() < f64::MIN_POSITIVE {
            self.zeros += 1;
        } else if x > 0.0 {
            self.positive.add(bucket_of(x), 1);
        } else {
            self.negative.add(bucket_of(-x), 1);
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &QuantileSketch) {
        for (b, n) in other.positive.iter() {
            self.positive.add(b, n);
        }
        for (b, n) in other.negative.iter() {
            self.negative.add(b, n);
        }
        self.zeros += other.zeros;
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.zeros + self.positive.counts.iter().sum::<u64>() + self.negative.counts.iter().sum::<u64>()
    }

    /// Each bucket's representative value and count, in increasing order.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let negative = self.negative.iter().rev().map(|(b, n)| (-bucket_value(b), n));
        let zeros = (self.zeros > 0).then_some((0.0, self.zeros));
        let positive = self.positive.iter().map(|(b, n)| (bucket_value(b), n));
        negative.chain(zeros).chain(positive)
    }

    /// The value of rank `floor(q * (count - 1))` (0-based, increasing), to
    /// within [`RELATIVE_ERROR`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (count - 1) as f64).floor() as u64;
        let mut seen = 0;
        for (value, n) in self.buckets() {
            seen += n;
            if seen > rank {
                return Some(value);
            }
        }
        unreachable!("rank < count")
    }
}

/// The approximate base-2 logarithm `e + (s - 1)` of `x = s * 2^e`
/// (`1 <= s < 2`): monotonic, exact arithmetic.
fn log2_approx(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let s = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    exponent as f64 + (s - 1.0)
}

/// The inverse of [`log2_approx`].
fn exp2_approx(l: f64) -> f64 {
    let exponent = l.floor();
    let s = 1.0 + (l - exponent);
    s * f64::from_bits(((exponent as i64 + 1023) as u64) << 52)
}

fn bucket_of(magnitude: f64) -> i32 {
    (log2_approx(magnitude) * BUCKETS_PER_OCTAVE).floor() as i32
}

/// The point of bucket `b` closest, relatively, to both its bounds.
fn bucket_value(b: i32) -> f64 {
    let low = exp2_approx(b as f64 / BUCKETS_PER_OCTAVE);
    let high = exp2_approx((b + 1) as f64 / BUCKETS_PER_OCTAVE);
    // The harmonic mean, written so that large bounds do not overflow.
    2.0 / (1.0 / low + 1.0 / high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_the_stated_error_and_merge_in_any_order() {
        let values: Vec<f64> = (1..=10_000)
            .map(|i| ((i * 7919) % 10_007) as f64 * 0.37 - 900.0)
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let mut whole = QuantileSketch::default();
        values.iter().for_each(|&v| whole.add(v));
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
            let got = whole.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= RELATIVE_ERROR * exact.abs() + 1e-12,
                "q {q}: {got} against {exact}"
            );
        }
        let (mut a, mut b) = (QuantileSketch::default(), QuantileSketch::default());
        let evens: Vec<f64> = values.iter().step_by(2).copied().collect();
        evens.iter().rev().for_each(|&v| a.add(v));
        values.iter().skip(1).step_by(2).rev().for_each(|&v| b.add(v));
        b.merge(&a);
        assert_eq!(b.count(), whole.count());
        assert_eq!(b, whole);
    }

    #[test]
    fn every_value_is_within_the_error_of_its_bucket() {
        for x in [1e-300, 0.001, 1.0, 1.5, 1.999_999, 2.0, 3.7, 1e9, 1.7e308] {
            let v = bucket_value(bucket_of(x));
            assert!((v - x).abs() <= RELATIVE_ERROR * x, "{x} -> {v}");
        }
    }
}
