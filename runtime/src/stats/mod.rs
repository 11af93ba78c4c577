//! Feature statistics: what a feature's values look like, kept per view
//! (as of its last commit) in the store, and computed the same way over a
//! training set, a stored time range or served values.
//!
//! Invariant: every part of [`FeatureStats`] merges by commutative and
//! associative operations (integer additions, minimum and maximum, exact
//! sums, bucket counts, HyperLogLog registers, counts by value), so the
//! statistics of a set of rows are the same bits whatever order the rows
//! came in and however they were split into batches and commits: a
//! backfill and the same rows pushed one by one in any order agree.

mod exact_sum;
mod sketch;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) mod hll;
use crate::format::value::{ColumnMismatch, Value, decode_columns};
use crate::types::{FeatureType, FieldSpec};
pub use exact_sum::ExactSum;
use hll::Hll;
pub use sketch::{QuantileSketch, RELATIVE_ERROR};

/// Distinct strings counted exactly before the most frequent values are
/// given up (the union of two sets exceeds it whenever either does, so
/// giving up does not depend on order).
pub const MAX_COUNTED_VALUES: usize = 1000;

/// The quantiles shown by `skewless stats` and the UI.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// Statistics of one feature's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// The feature's type.
    pub data_type: FeatureType,
    /// Values seen, nulls included.
    pub count: u64,
    /// Nulls.
    pub nulls: u64,
    /// NaNs and infinities: counted, and left out of the numeric summary.
    pub not_finite: u64,
    /// Numbers, booleans (as 0 and 1) and timestamps (as microseconds).
    pub numeric: Option<NumericStats>,
    /// The approximate number of distinct non-null values.
    #[serde(serialize_with = "hll_out", deserialize_with = "hll_in")]
    pub distinct: Hll,
    /// Strings: how often each value occurs, until there are too many.
    pub values: Option<ValueCounts>,
}

/// The numeric part of [`FeatureStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    /// Finite values.
    pub count: u64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// Their exact sum.
    pub sum: ExactSum,
    /// The exact sum of their squares (each square rounded once).
    pub sum_of_squares: ExactSum,
    /// Their distribution.
    pub sketch: QuantileSketch,
}

/// Counts by string value, exact while there are at most
/// [`MAX_COUNTED_VALUES`] distinct values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValueCounts {
    /// Count by value; empty once `overflowed`.
    pub counts: BTreeMap<String, u64>,
    /// More distinct values than are counted.
    pub overflowed: bool,
}

impl ValueCounts {
    fn add(&mut self, value: &str, n: u64) {
        if self.overflowed {
            return;
        }
        *self.counts.entry(value.to_string()).or_default() += n;
        if self.counts.len() > MAX_COUNTED_VALUES {
            self.counts.clear();
            self.overflowed = true;
        }
    }

    fn merge(&mut self, other: &ValueCounts) {
        if other.overflowed {
            self.counts.clear();
            self.overflowed = true;
        }
        for (value, &n) in &other.counts {
            self.add(value, n);
        }
    }

    /// The `n` most frequent values, most frequent first (ties by value).
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut top: Vec<(&str, u64)> = self.counts.iter().map(|(v, &c)| (v.as_str(), c)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(n);
        top
    }
}

impl NumericStats {
    /// The mean.
    pub fn mean(&self) -> f64 {
        self.sum.value() / self.count as f64
    }

    /// The sample standard deviation (n - 1 in the denominator, as pandas).
    pub fn stddev(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let sum = self.sum.value();
        let variance = (self.sum_of_squares.value() - sum * sum / n) / (n - 1.0);
        Some(variance.max(0.0).sqrt())
    }

    /// `bins` equal-width bins between min and max, filled from the
    /// sketch's buckets (each bucket's count in the bin of its value).
    pub fn histogram(&self, bins: usize) -> Vec<(f64, f64, u64)> {
        let width = (self.max - self.min) / bins as f64;
        self.counts_over(self.min, self.max, bins)
            .into_iter()
            .enumerate()
            .map(|(i, n)| (self.min + width * i as f64, self.min + width * (i + 1) as f64, n))
            .collect()
    }

    /// Counts in `bins` equal-width bins over `low..=high` (values outside
    /// count in the first or last bin), from the sketch's buckets: so two
    /// distributions can be drawn on the same bins.
    pub fn counts_over(&self, low: f64, high: f64, bins: usize) -> Vec<u64> {
        let width = (high - low) / bins as f64;
        let mut counts = vec![0u64; bins];
        for (value, n) in self.sketch.buckets() {
            let value = value.clamp(self.min, self.max);
            let at = if width > 0.0 {
                (((value - low) / width).floor().max(0.0) as usize).min(bins - 1)
            } else {
                0
            };
            counts[at] += n;
        }
        counts
    }
}

impl FeatureStats {
    /// No values yet.
    pub fn new(data_type: FeatureType) -> Self {
        FeatureStats {
            data_type,
            count: 0,
            nulls: 0,
            not_finite: 0,
            numeric: None,
            distinct: Hll::default(),
            values: (data_type == FeatureType::Utf8).then(ValueCounts::default),
        }
    }

    /// Adds one value.
    pub fn add(&mut self, value: &Value) {
        self.count += 1;
        let number = match value {
            Value::Null => {
                self.nulls += 1;
                return;
            }
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Int64(v) | Value::Timestamp(v) => *v as f64,
            Value::Float32(v) => f64::from(*v),
            Value::Float64(v) => *v,
            // Lists and vectors count toward nulls and distinct values;
            // they have no single number to summarize.
            Value::List(_) | Value::Vector(_) => {
                self.distinct.add(value);
                return;
            }
            Value::Utf8(s) => {
                self.distinct.add(value);
                if let Some(values) = &mut self.values {
                    values.add(s, 1);
                }
                return;
            }
        };
        self.distinct.add(value);
        if !number.is_finite() {
            self.not_finite += 1;
            return;
        }
        let numeric = self.numeric.get_or_insert_with(|| NumericStats {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: ExactSum::default(),
            sum_of_squares: ExactSum::default(),
            sketch: QuantileSketch::default(),
        });
        numeric.count += 1;
        // -0.0 and 0.0 compare equal: keep min and max order-free by bits too.
        let number = if number == 0.0 { 0.0 } else { number };
        numeric.min = numeric.min.min(number);
        numeric.max = numeric.max.max(number);
        numeric.sum.add(number);
        let square = number * number;
        if square.is_finite() {
            numeric.sum_of_squares.add(square);
        }
        numeric.sketch.add(number);
    }

    /// Adds every value `other` has seen.
    pub fn merge(&mut self, other: &FeatureStats) {
        self.count += other.count;
        self.nulls += other.nulls;
        self.not_finite += other.not_finite;
        self.distinct.merge(&other.distinct);
        if let (Some(mine), Some(theirs)) = (&mut self.values, &other.values) {
            mine.merge(theirs);
        }
        match (&mut self.numeric, &other.numeric) {
            (Some(mine), Some(theirs)) => {
                mine.count += theirs.count;
                mine.min = mine.min.min(theirs.min);
                mine.max = mine.max.max(theirs.max);
                mine.sum.merge(&theirs.sum);
                mine.sum_of_squares.merge(&theirs.sum_of_squares);
                mine.sketch.merge(&theirs.sketch);
            }
            (None, Some(theirs)) => self.numeric = Some(theirs.clone()),
            _ => {}
        }
    }

    /// The share of values that are null.
    pub fn null_rate(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.nulls as f64 / self.count as f64
        }
    }

    /// The approximate number of distinct non-null values.
    pub fn distinct_estimate(&self) -> i64 {
        self.distinct.estimate()
    }

    /// Carries the exact sums, so equal statistics serialize equally.
    fn canonical(&mut self) {
        if let Some(numeric) = &mut self.numeric {
            numeric.sum.carry();
            numeric.sum_of_squares.carry();
        }
    }
}

/// Statistics of every feature of a set of rows, by feature name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Statistics {
    /// The store's commit these statistics are as of, if they are a view's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<u64>,
    /// Rows seen.
    pub rows: u64,
    /// The newest event time seen (microseconds UTC): a view's freshness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_event_time: Option<i64>,
    /// By feature name, in the view's order.
    pub features: indexmap::IndexMap<String, FeatureStats>,
}

impl Statistics {
    /// Empty statistics for these features.
    pub fn new(features: &[FieldSpec]) -> Self {
        Statistics {
            commit: None,
            rows: 0,
            newest_event_time: None,
            features: features
                .iter()
                .map(|f| (f.name.clone(), FeatureStats::new(f.data_type)))
                .collect(),
        }
    }

    /// Counts `time` (if any) towards the newest event time.
    pub fn saw_event_time(&mut self, time: Option<i64>) {
        self.newest_event_time = self.newest_event_time.max(time);
    }

    /// Adds one row, its values in the order of the features.
    pub fn add_row(&mut self, values: &[Value]) {
        self.rows += 1;
        for (stats, value) in self.features.values_mut().zip(values) {
            stats.add(value);
        }
    }

    /// Empty statistics for every column of `schema` of a feature type
    /// (others, such as lists, are left out).
    pub fn for_schema(schema: &arrow_schema::Schema) -> Self {
        let fields: Vec<FieldSpec> = schema
            .fields()
            .iter()
            .filter_map(|f| {
                FeatureType::from_arrow(f.data_type()).map(|data_type| FieldSpec {
                    name: f.name().clone(),
                    data_type,
                    nullable: true,
                })
            })
            .collect();
        Statistics::new(&fields)
    }

    /// Adds the rows of `batch`, reading each feature's column by name.
    pub fn add_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<(), ColumnMismatch> {
        let fields: Vec<FieldSpec> = self
            .features
            .iter()
            .map(|(name, stats)| FieldSpec {
                name: name.clone(),
                data_type: stats.data_type,
                nullable: true,
            })
            .collect();
        let columns = fields
            .iter()
            .map(|f| {
                batch
                    .column_by_name(&f.name)
                    .cloned()
                    .ok_or_else(|| ColumnMismatch::Missing(f.name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in decode_columns(&columns, &fields)? {
            self.add_row(&row);
        }
        Ok(())
    }

    /// Adds everything `other` has seen; features it has and these
    /// statistics lack are added as they are.
    pub fn merge(&mut self, other: &Statistics) {
        self.rows += other.rows;
        self.saw_event_time(other.newest_event_time);
        for (name, theirs) in &other.features {
            match self.features.get_mut(name) {
                Some(mine) if mine.data_type == theirs.data_type => mine.merge(theirs),
                Some(mine) => *mine = theirs.clone(),
                None => {
                    self.features.insert(name.clone(), theirs.clone());
                }
            }
        }
    }

    /// As JSON, in the canonical form (equal statistics, equal text).
    pub fn to_json(&self) -> String {
        let mut canonical = self.clone();
        canonical.features.values_mut().for_each(FeatureStats::canonical);
        serde_json::to_string(&canonical).expect("statistics serialize")
    }

    /// From [`Statistics::to_json`]'s text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What `skewless stats`, the UI and `drift` show of one feature: the
/// figures read out of [`FeatureStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The feature.
    pub name: String,
    /// Its type.
    pub data_type: FeatureType,
    /// Values, nulls included.
    pub count: u64,
    /// Nulls.
    pub nulls: u64,
    /// NaNs and infinities.
    pub not_finite: u64,
    /// The approximate number of distinct non-null values.
    pub distinct: i64,
    /// Numbers: smallest.
    pub min: Option<f64>,
    /// Numbers: largest.
    pub max: Option<f64>,
    /// Numbers: mean.
    pub mean: Option<f64>,
    /// Numbers: sample standard deviation.
    pub stddev: Option<f64>,
    /// Numbers: `(q, value)` for each of [`QUANTILES`], within [`RELATIVE_ERROR`].
    pub quantiles: Vec<(f64, f64)>,
    /// Numbers: `(low, high, count)`, 20 equal-width bins.
    pub histogram: Vec<(f64, f64, u64)>,
    /// Strings: the 10 most frequent values and their counts (empty when
    /// there are more than [`MAX_COUNTED_VALUES`] distinct values).
    pub top: Vec<(String, u64)>,
}

/// Bins in a [`Summary`]'s histogram.
pub const HISTOGRAM_BINS: usize = 20;

impl FeatureStats {
    /// The figures shown of this feature.
    pub fn summary(&self, name: &str) -> Summary {
        let numeric = self.numeric.as_ref().filter(|n| n.count > 0);
        Summary {
            name: name.to_string(),
            data_type: self.data_type,
            count: self.count,
            nulls: self.nulls,
            not_finite: self.not_finite,
            distinct: self.distinct_estimate(),
            min: numeric.map(|n| n.min),
            max: numeric.map(|n| n.max),
            mean: numeric.map(NumericStats::mean),
            stddev: numeric.and_then(NumericStats::stddev),
            quantiles: numeric
                .map(|n| {
                    QUANTILES
                        .iter()
                        .filter_map(|&q| Some((q, n.sketch.quantile(q)?)))
                        .collect()
                })
                .unwrap_or_default(),
            histogram: numeric.map(|n| n.histogram(HISTOGRAM_BINS)).unwrap_or_default(),
            top: self
                .values
                .as_ref()
                .map(|v| v.top(10).into_iter().map(|(v, n)| (v.to_string(), n)).collect())
                .unwrap_or_default(),
        }
    }
}

impl Statistics {
    /// Every feature's [`Summary`], in order.
    pub fn summaries(&self) -> Vec<Summary> {
        self.features.iter().map(|(name, s)| s.summary(name)).collect()
    }
}

fn hll_out<S: Serializer>(hll: &Hll, s: S) -> Result<S::Ok, S::Error> {
    let mut bytes = Vec::new();
    hll.encode(&mut bytes);
    s.serialize_str(&hex::encode(bytes))
}

fn hll_in<'de, D: Deserializer<'de>>(d: D) -> Result<Hll, D::Error> {
    use serde::de::Error;
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    let bytes = hex::decode(text.as_bytes()).map_err(|_| D::Error::custom("a HyperLogLog sketch is not hex"))?;
    Hll::decode(&mut bytes.as_slice()).ok_or_else(|| D::Error::custom("a HyperLogLog sketch does not decode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, data_type: FeatureType) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            data_type,
            nullable: true,
        }
    }

    #[test]
    fn the_same_rows_in_any_split_give_the_same_bytes() {
        let fields = [field("x", FeatureType::Float64), field("s", FeatureType::Utf8)];
        let rows: Vec<Vec<Value>> = (0..500)
            .map(|i| {
                let x = if i % 17 == 0 {
                    Value::Null
                } else {
                    Value::Float64((i as f64).sin() * 1e3)
                };
                vec![x, Value::Utf8(format!("v{}", i % 7))]
            })
            .collect();
        let mut whole = Statistics::new(&fields);
        rows.iter().for_each(|r| whole.add_row(r));
        let mut parts: Vec<Statistics> = (0..3).map(|_| Statistics::new(&fields)).collect();
        for (i, row) in rows.iter().enumerate().rev() {
            parts[i * 7 % 3].add_row(row);
        }
        let mut merged = Statistics::new(&fields);
        for part in parts.iter().rev() {
            merged.merge(part);
        }
        assert_eq!(merged.to_json(), whole.to_json());
        let x = &whole.features["x"];
        assert_eq!(x.nulls, 30);
        let n = x.numeric.as_ref().unwrap();
        let values: Vec<f64> = (0..500)
            .filter(|i| i % 17 != 0)
            .map(|i| (i as f64).sin() * 1e3)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((n.mean() - mean).abs() < 1e-9, "{} {mean}", n.mean());
        assert_eq!(whole.features["s"].values.as_ref().unwrap().top(1), vec![("v0", 72)]);
        let back = Statistics::from_json(&whole.to_json()).unwrap();
        assert_eq!(back.to_json(), whole.to_json());
    }
}
