//! The built-in aggregation functions: what each accepts and returns, and
//! its state with `update` (one event), `merge` (a later part of the
//! window) and `finalize`.
//!
//! Invariants, checked by the tests below and relied on by the fold:
//! - The empty state is an exact identity of `merge` on both sides, so a
//!   tile that was never written can be skipped.
//! - Values are folded in one fixed order (the decomposition in
//!   [`super::window`], events in (event time, event id) order), so float
//!   states (sums, Welford moments) come out with the same bits everywhere.
//! - Integer sums are exact (i128); HyperLogLog registers, min and max do
//!   not depend on order at all.

use std::cmp::Ordering;

use crate::format::value::Value;
use crate::types::FeatureType;

use crate::stats::hll::Hll;

/// A built-in aggregation function, as named in `skewless.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// Events (or non-null inputs, with an input).
    Count,
    /// Sum of the inputs.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Smallest input.
    Min,
    /// Largest input.
    Max,
    /// Input of the earliest event.
    First,
    /// Input of the latest event.
    Last,
    /// Population variance.
    VarPop,
    /// Sample variance.
    VarSamp,
    /// Population standard deviation.
    StddevPop,
    /// Sample standard deviation.
    StddevSamp,
    /// Distinct inputs, estimated by HyperLogLog.
    ApproxCountDistinct,
}

impl Function {
    /// Every function, for messages.
    pub const ALL: [Function; 12] = [
        Function::Count,
        Function::Sum,
        Function::Mean,
        Function::Min,
        Function::Max,
        Function::First,
        Function::Last,
        Function::VarPop,
        Function::VarSamp,
        Function::StddevPop,
        Function::StddevSamp,
        Function::ApproxCountDistinct,
    ];

    /// The name used in `skewless.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Count => "count",
            Function::Sum => "sum",
            Function::Mean => "mean",
            Function::Min => "min",
            Function::Max => "max",
            Function::First => "first",
            Function::Last => "last",
            Function::VarPop => "var_pop",
            Function::VarSamp => "var_samp",
            Function::StddevPop => "stddev_pop",
            Function::StddevSamp => "stddev_samp",
            Function::ApproxCountDistinct => "approx_count_distinct",
        }
    }

    /// Parses a function name.
    pub fn parse(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The feature type for an input of type `input` (`None`: no input),
    /// or why the input does not fit.
    pub fn output_type(self, input: Option<FeatureType>) -> Result<FeatureType, String> {
        use FeatureType::*;
        let numeric = |t: FeatureType| matches!(t, Int64 | Float32 | Float64);
        match (self, input) {
            (Function::Count, _) => Ok(Int64),
            (_, None) => Err(format!("`{}` needs an `input` column", self.name())),
            (Function::Sum, Some(Int64)) => Ok(Int64),
            (Function::Sum, Some(t)) if numeric(t) => Ok(Float64),
            (
                Function::Mean | Function::VarPop | Function::VarSamp | Function::StddevPop | Function::StddevSamp,
                Some(t),
            ) if numeric(t) => Ok(Float64),
            (Function::Min | Function::Max, Some(t)) if t != Bool => Ok(t),
            (Function::First | Function::Last, Some(t)) => Ok(t),
            (Function::ApproxCountDistinct, Some(_)) => Ok(Int64),
            (_, Some(t)) => Err(format!(
                "`{}` takes {} inputs, not {t}",
                self.name(),
                match self {
                    Function::Min | Function::Max => "int64, float32, float64, utf8 or timestamp",
                    _ => "int64, float32 or float64",
                }
            )),
        }
    }

    /// The state this function keeps; functions with the same kind and
    /// input share one state.
    pub fn state_kind(self, input: Option<FeatureType>) -> StateKind {
        match self {
            Function::Count => StateKind::Count,
            Function::Sum | Function::Mean if input == Some(FeatureType::Int64) => StateKind::IntSum,
            Function::Sum | Function::Mean => StateKind::FloatSum,
            Function::Min => StateKind::Min,
            Function::Max => StateKind::Max,
            Function::First => StateKind::First,
            Function::Last => StateKind::Last,
            Function::VarPop | Function::VarSamp | Function::StddevPop | Function::StddevSamp => StateKind::Moments,
            Function::ApproxCountDistinct => StateKind::Distinct,
        }
    }

    /// The feature value of a finished state.
    pub fn finalize(self, state: &State) -> Value {
        match (self, state) {
            (Function::Count, State::Count(n)) => Value::Int64(*n as i64),
            (Function::Sum, State::IntSum { sum, .. }) => i64::try_from(*sum).map_or(Value::Null, Value::Int64),
            (Function::Sum, State::FloatSum { n, sum }) => Value::Float64(if *n == 0 { 0.0 } else { *sum }),
            (Function::Mean, State::IntSum { n, sum }) if *n > 0 => Value::Float64(*sum as f64 / *n as f64),
            (Function::Mean, State::FloatSum { n, sum }) if *n > 0 => Value::Float64(*sum / *n as f64),
            (Function::Min | Function::Max, State::Extreme(Some(v))) => v.clone(),
            (Function::First | Function::Last, State::Edge(Some((_, _, v)))) => v.clone(),
            (
                f @ (Function::VarPop | Function::VarSamp | Function::StddevPop | Function::StddevSamp),
                State::Moments { n, m2, .. },
            ) => {
                let divisor = match f {
                    Function::VarPop | Function::StddevPop if *n >= 1 => *n as f64,
                    Function::VarSamp | Function::StddevSamp if *n >= 2 => (*n - 1) as f64,
                    _ => return Value::Null,
                };
                let var = (m2 / divisor).max(0.0);
                Value::Float64(if matches!(f, Function::StddevPop | Function::StddevSamp) {
                    var.sqrt()
                } else {
                    var
                })
            }
            (Function::ApproxCountDistinct, State::Distinct(h)) if !h.is_empty() => Value::Int64(h.estimate()),
            _ => Value::Null,
        }
    }
}

/// Which state a function keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// A count.
    Count,
    /// An exact integer sum, with a count.
    IntSum,
    /// A float sum in fold order, with a count.
    FloatSum,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The earliest (event time, event id) and its value.
    First,
    /// The latest (event time, event id) and its value.
    Last,
    /// Count, mean and sum of squared deviations (Welford; Chan et al. to merge).
    Moments,
    /// A HyperLogLog sketch.
    Distinct,
    /// The opaque state of a user-defined function ([`crate::Aggregator`]),
    /// by index into [`super::Plan::users`]. Folded in batches by
    /// [`super::fold`], not event by event here.
    User(usize),
}

/// An event's place in the deterministic order: (event time, event id).
pub type EventOrder = (i64, [u8; 12]);

/// The partial aggregate of some events.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// [`StateKind::Count`].
    Count(u64),
    /// [`StateKind::IntSum`].
    IntSum {
        /// Values added.
        n: u64,
        /// Their exact sum.
        sum: i128,
    },
    /// [`StateKind::FloatSum`].
    FloatSum {
        /// Values added.
        n: u64,
        /// Their sum, added in fold order.
        sum: f64,
    },
    /// [`StateKind::Min`] or [`StateKind::Max`]; `None` when empty.
    Extreme(Option<Value>),
    /// [`StateKind::First`] or [`StateKind::Last`]; `None` when empty.
    Edge(Option<(i64, [u8; 12], Value)>),
    /// [`StateKind::Moments`].
    Moments {
        /// Values added.
        n: u64,
        /// Their mean.
        mean: f64,
        /// Sum of squared deviations from the mean.
        m2: f64,
    },
    /// [`StateKind::Distinct`].
    Distinct(Hll),
    /// [`StateKind::User`]: bytes only the function reads; empty when no
    /// event is in it.
    Bytes(Vec<u8>),
}

impl StateKind {
    /// The state of no events: the identity of `merge`.
    pub fn empty(self) -> State {
        match self {
            StateKind::Count => State::Count(0),
            StateKind::IntSum => State::IntSum { n: 0, sum: 0 },
            StateKind::FloatSum => State::FloatSum { n: 0, sum: 0.0 },
            StateKind::Min | StateKind::Max => State::Extreme(None),
            StateKind::First | StateKind::Last => State::Edge(None),
            StateKind::Moments => State::Moments {
                n: 0,
                mean: 0.0,
                m2: 0.0,
            },
            StateKind::Distinct => State::Distinct(Hll::default()),
            StateKind::User(_) => State::Bytes(Vec::new()),
        }
    }

    /// Adds one event's input (`None`: the function has no input, as
    /// `count`). Null inputs are skipped. User states are left alone: the
    /// fold updates them a tile at a time, in one guest call.
    pub fn update(self, state: &mut State, order: EventOrder, input: Option<&Value>) {
        let value = match input {
            None => {
                if let State::Count(n) = state {
                    *n += 1;
                }
                return;
            }
            Some(Value::Null) => return,
            Some(v) => v,
        };
        match state {
            State::Count(n) => *n += 1,
            State::IntSum { n, sum } => {
                *n += 1;
                *sum += as_i64(value) as i128;
            }
            State::FloatSum { n, sum } => {
                *n += 1;
                *sum += as_f64(value);
            }
            // One event is a state of its own: merging it is the update.
            State::Extreme(_) => self.merge(state, &State::Extreme(Some(value.clone()))),
            State::Edge(_) => self.merge(state, &State::Edge(Some((order.0, order.1, value.clone())))),
            State::Moments { n, mean, m2 } => {
                let x = as_f64(value);
                *n += 1;
                let delta = x - *mean;
                *mean += delta / *n as f64;
                *m2 += delta * (x - *mean);
            }
            State::Distinct(h) => h.add(value),
            State::Bytes(_) => {}
        }
    }

    /// Merges `later` (the state of events that all follow `state`'s in the
    /// fold) into `state`. The empty state changes nothing, on either side.
    /// User states are left alone (merged in batches by the fold).
    pub fn merge(self, state: &mut State, later: &State) {
        match (state, later) {
            (State::Count(a), State::Count(b)) => *a += b,
            (State::IntSum { n, sum }, State::IntSum { n: bn, sum: bs }) => {
                *n += bn;
                *sum += bs;
            }
            (State::FloatSum { n, sum }, State::FloatSum { n: bn, sum: bs }) => {
                if *bn > 0 {
                    *sum = if *n == 0 { *bs } else { *sum + bs };
                    *n += bn;
                }
            }
            (State::Extreme(a), State::Extreme(Some(b))) => {
                let better = match a {
                    None => true,
                    Some(c) => {
                        let order = compare(b, c);
                        if self == StateKind::Min {
                            order.is_lt()
                        } else {
                            order.is_gt()
                        }
                    }
                };
                if better {
                    *a = Some(b.clone());
                }
            }
            (State::Edge(a), State::Edge(Some((t, id, v)))) => {
                let better = match a {
                    None => true,
                    Some((at, aid, _)) => {
                        let order = (*t, *id).cmp(&(*at, *aid));
                        if self == StateKind::First {
                            order.is_lt()
                        } else {
                            order.is_gt()
                        }
                    }
                };
                if better {
                    *a = Some((*t, *id, v.clone()));
                }
            }
            (
                State::Moments { n, mean, m2 },
                State::Moments {
                    n: bn,
                    mean: bm,
                    m2: bm2,
                },
            ) => {
                if *bn == 0 {
                    return;
                }
                if *n == 0 {
                    (*n, *mean, *m2) = (*bn, *bm, *bm2);
                    return;
                }
                let total = *n + bn;
                let delta = bm - *mean;
                let (na, nb, nt) = (*n as f64, *bn as f64, total as f64);
                *mean += delta * nb / nt;
                *m2 += bm2 + delta * delta * na * nb / nt;
                *n = total;
            }
            (State::Distinct(a), State::Distinct(b)) => a.merge(b),
            (State::Bytes(_), State::Bytes(_)) => {}
            (_, State::Extreme(None) | State::Edge(None)) => {}
            (a, b) => unreachable!("merging states of different kinds: {a:?} and {b:?}"),
        }
    }
}

fn as_i64(value: &Value) -> i64 {
    match value {
        Value::Int64(v) | Value::Timestamp(v) => *v,
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Float32(_)
        | Value::Float64(_)
        | Value::Utf8(_)
        | Value::List(_)
        | Value::Vector(_)) => {
            unreachable!("an int64 state got {other:?} (types are checked at apply)")
        }
    }
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Int64(v) => *v as f64,
        Value::Float32(v) => *v as f64,
        Value::Float64(v) => *v,
        other @ (Value::Null
        | Value::Bool(_)
        | Value::Utf8(_)
        | Value::Timestamp(_)
        | Value::List(_)
        | Value::Vector(_)) => {
            unreachable!("a numeric state got {other:?} (types are checked at apply)")
        }
    }
}

/// The order min and max use: numeric for numbers and times (floats by
/// IEEE total order, so NaN has a place), bytewise for strings.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int64(a), Value::Int64(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        (Value::Float32(a), Value::Float32(b)) => a.total_cmp(b),
        (Value::Float64(a), Value::Float64(b)) => a.total_cmp(b),
        (Value::Utf8(a), Value::Utf8(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (
            a @ (Value::Null
            | Value::Bool(_)
            | Value::Int64(_)
            | Value::Float32(_)
            | Value::Float64(_)
            | Value::Utf8(_)
            | Value::Timestamp(_)
            | Value::List(_)
            | Value::Vector(_)),
            b,
        ) => unreachable!("comparing {a:?} with {b:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 12] = [0; 12];

    fn fold(kind: StateKind, values: &[Value]) -> State {
        let mut s = kind.empty();
        for (i, v) in values.iter().enumerate() {
            kind.update(&mut s, (i as i64, ID), Some(v));
        }
        s
    }

    #[test]
    fn the_empty_state_is_an_identity_on_both_sides() {
        let values: Vec<Value> = [1.5, -0.0, 3.25].map(Value::Float64).into();
        for kind in [
            StateKind::Count,
            StateKind::FloatSum,
            StateKind::Min,
            StateKind::Max,
            StateKind::First,
            StateKind::Last,
            StateKind::Moments,
            StateKind::Distinct,
        ] {
            let s = fold(kind, &values);
            let mut left = kind.empty();
            kind.merge(&mut left, &s);
            assert_eq!(format!("{left:?}"), format!("{s:?}"), "{kind:?}");
            let mut right = s.clone();
            kind.merge(&mut right, &kind.empty());
            assert_eq!(format!("{right:?}"), format!("{s:?}"), "{kind:?}");
        }
    }

    #[test]
    fn empty_windows_give_zero_counts_and_sums_and_null_otherwise() {
        assert_eq!(Function::Count.finalize(&StateKind::Count.empty()), Value::Int64(0));
        assert_eq!(Function::Sum.finalize(&StateKind::IntSum.empty()), Value::Int64(0));
        assert_eq!(
            Function::Sum.finalize(&StateKind::FloatSum.empty()),
            Value::Float64(0.0)
        );
        for f in [
            Function::Mean,
            Function::StddevSamp,
            Function::Min,
            Function::First,
            Function::ApproxCountDistinct,
        ] {
            let kind = f.state_kind(Some(FeatureType::Float64));
            assert_eq!(f.finalize(&kind.empty()), Value::Null, "{f:?}");
        }
    }

    #[test]
    fn moments_merge_close_to_a_single_pass() {
        let values: Vec<Value> = (0..100).map(|i| Value::Float64((i * 37 % 101) as f64 / 7.0)).collect();
        let whole = fold(StateKind::Moments, &values);
        let mut split = fold(StateKind::Moments, &values[..40]);
        StateKind::Moments.merge(&mut split, &fold(StateKind::Moments, &values[40..]));
        let (Value::Float64(a), Value::Float64(b)) = (
            Function::StddevSamp.finalize(&whole),
            Function::StddevSamp.finalize(&split),
        ) else {
            panic!()
        };
        assert!((a - b).abs() <= 1e-12 * a.abs(), "{a} {b}");
    }

    #[test]
    fn nulls_are_skipped_and_types_checked() {
        let s = fold(StateKind::IntSum, &[Value::Int64(2), Value::Null, Value::Int64(3)]);
        assert_eq!(s, State::IntSum { n: 2, sum: 5 });
        assert_eq!(Function::Mean.finalize(&s), Value::Float64(2.5));
        assert!(
            Function::Sum
                .output_type(Some(FeatureType::Utf8))
                .unwrap_err()
                .contains("not utf8")
        );
        assert!(
            Function::Mean
                .output_type(None)
                .unwrap_err()
                .contains("needs an `input`")
        );
        assert_eq!(
            Function::Min.output_type(Some(FeatureType::Utf8)),
            Ok(FeatureType::Utf8)
        );
    }
}
