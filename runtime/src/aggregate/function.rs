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
//! - The list functions keep exact states: `last_n(k)` the k latest events,
//!   `last_distinct_n(k)` the k values seen latest (each with its latest
//!   event), `most_frequent_n(k)` every value's count. Merging the state of
//!   earlier events with a later one's gives the state of all of them (the
//!   proofs are at [`StateKind::merge`]), so tiles cut anywhere agree.

use std::cmp::Ordering;

use crate::format::value::Value;
use crate::types::FeatureType;

use crate::stats::hll::Hll;

/// The largest `k` of `last_n(k)`, `last_distinct_n(k)` and
/// `most_frequent_n(k)`: a tile keeps up to k values per state, and a
/// thousand is past any "last merchants" feature in use.
pub const MAX_N: u32 = 1_000;

/// A built-in aggregation function, as named in `skewless.toml`
/// (`count`, `last_n(5)`); serialized as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The inputs of the k latest events, latest first.
    LastN(u32),
    /// The k distinct inputs seen latest, latest first.
    LastDistinctN(u32),
    /// The k most frequent inputs, most frequent first (equal counts:
    /// smaller value first): a top-k of counts.
    MostFrequentN(u32),
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.k() {
            Some(k) => write!(f, "{}({k})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl serde::Serialize for Function {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Function {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Function::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Function {
    /// Every function (the ones with a `k` shown with k = 5), for messages
    /// and tests.
    pub const ALL: [Function; 15] = [
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
        Function::LastN(5),
        Function::LastDistinctN(5),
        Function::MostFrequentN(5),
    ];

    /// The name used in `skewless.toml`, without its `k`.
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
            Function::LastN(_) => "last_n",
            Function::LastDistinctN(_) => "last_distinct_n",
            Function::MostFrequentN(_) => "most_frequent_n",
        }
    }

    /// The `k` of a function that keeps k values.
    pub fn k(self) -> Option<u32> {
        match self {
            Function::LastN(k) | Function::LastDistinctN(k) | Function::MostFrequentN(k) => Some(k),
            Function::Count
            | Function::Sum
            | Function::Mean
            | Function::Min
            | Function::Max
            | Function::First
            | Function::Last
            | Function::VarPop
            | Function::VarSamp
            | Function::StddevPop
            | Function::StddevSamp
            | Function::ApproxCountDistinct => None,
        }
    }

    /// Parses a function as written in `skewless.toml` (`sum`,
    /// `last_n(5)`), or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Function, String> {
        let (name, k) = match text.split_once('(') {
            None => (text, None),
            Some((name, rest)) => {
                let k = rest.strip_suffix(')').map(str::trim).unwrap_or_default();
                let k = k
                    .parse::<u32>()
                    .ok()
                    .filter(|k| (1..=MAX_N).contains(k))
                    .ok_or_else(|| {
                        format!("`{text}`: k must be a whole number from 1 to {MAX_N}, as in `{name}(5)`")
                    })?;
                (name.trim(), Some(k))
            }
        };
        let known = || {
            let names: Vec<String> = Function::ALL
                .iter()
                .map(|f| f.to_string().replace("(5)", "(k)"))
                .collect();
            names.join(", ")
        };
        let function = Function::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("unknown function `{text}` (functions: {})", known()))?;
        Ok(match (function, k) {
            (Function::LastN(_), Some(k)) => Function::LastN(k),
            (Function::LastDistinctN(_), Some(k)) => Function::LastDistinctN(k),
            (Function::MostFrequentN(_), Some(k)) => Function::MostFrequentN(k),
            (f, None) if f.k().is_none() => f,
            (_, None) => return Err(format!("`{name}` needs its k, as in `{name}(5)`")),
            (f, Some(_)) => return Err(format!("`{}` takes no k: write `{}`", text, f.name())),
        })
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
            (Function::LastN(_) | Function::LastDistinctN(_) | Function::MostFrequentN(_), Some(t)) => match t.scalar()
            {
                Some(scalar) => Ok(List(scalar)),
                None => Err(format!(
                    "`{self}` takes inputs of a scalar type, not {t} (a list of lists is not a type)"
                )),
            },
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
            Function::LastN(k) => StateKind::Latest(k),
            Function::LastDistinctN(k) => StateKind::LatestDistinct(k),
            Function::MostFrequentN(_) => StateKind::Counts,
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
            (Function::LastN(_) | Function::LastDistinctN(_), State::Latest(values)) if !values.is_empty() => {
                Value::List(values.iter().rev().cloned().collect())
            }
            (Function::MostFrequentN(k), State::Counts(counts)) if !counts.is_empty() => {
                let mut ranked: Vec<&(Value, u64)> = counts.iter().collect();
                // Stable: equal counts keep the value order of `counts`.
                ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
                Value::List(ranked.into_iter().take(k as usize).map(|(v, _)| v.clone()).collect())
            }
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
    /// The k latest events (`last_n(k)`).
    Latest(u32),
    /// The k distinct values seen latest, each with its latest event
    /// (`last_distinct_n(k)`).
    LatestDistinct(u32),
    /// Every distinct value's count (`most_frequent_n`).
    Counts,
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
    /// [`StateKind::Latest`] or [`StateKind::LatestDistinct`]: the values
    /// of events in event order (oldest first), at most k; distinct values,
    /// each at its latest event, for the latter. No event time is kept:
    /// updates and merges come in event order (the fold's invariant).
    Latest(Vec<Value>),
    /// [`StateKind::Counts`]: (value, count) sorted by value
    /// ([`compare`]), each value once, counts above zero.
    Counts(Vec<(Value, u64)>),
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
            StateKind::Latest(_) | StateKind::LatestDistinct(_) => State::Latest(Vec::new()),
            StateKind::Counts => State::Counts(Vec::new()),
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
            State::Latest(values) => {
                if let StateKind::LatestDistinct(_) = self {
                    values.retain(|v| !compare(v, value).is_eq());
                }
                if let StateKind::Latest(k) | StateKind::LatestDistinct(k) = self
                    && values.len() == k as usize
                {
                    values.remove(0);
                }
                values.push(value.clone());
            }
            State::Counts(counts) => match counts.binary_search_by(|(v, _)| compare(v, value)) {
                Ok(at) => counts[at].1 += 1,
                Err(at) => counts.insert(at, (value.clone(), 1)),
            },
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
            (State::Latest(a), State::Latest(b)) => match self {
                // The k latest of A then B are the k latest of (A's k latest,
                // then B's k latest): each is among its own part's k latest.
                StateKind::Latest(k) => {
                    a.extend(b.iter().cloned());
                    keep_last(a, k);
                }
                // The distinct values of A then B, ordered by latest event: A's
                // values that B lacks, then B's. If B kept k values, they are
                // the answer. If it kept fewer, it kept all of its own, and each
                // of the k - |B| latest of A's remainder has fewer than k values
                // after it in A (the remainder's and at most |B| of B's), so it
                // is among A's kept k.
                StateKind::LatestDistinct(k) => {
                    a.retain(|v| !b.iter().any(|w| compare(v, w).is_eq()));
                    a.extend(b.iter().cloned());
                    keep_last(a, k);
                }
                other => unreachable!("a latest state of kind {other:?}"),
            },
            // Counts add, value by value: the order of events plays no part.
            (State::Counts(a), State::Counts(b)) => {
                if a.is_empty() {
                    a.clone_from(b);
                    return;
                }
                let mut merged = Vec::with_capacity(a.len() + b.len());
                let (mut left, mut right) = (std::mem::take(a).into_iter().peekable(), b.iter().peekable());
                loop {
                    let order = match (left.peek(), right.peek()) {
                        (Some((x, _)), Some((y, _))) => compare(x, y),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => break,
                    };
                    match order {
                        Ordering::Less => merged.extend(left.next()),
                        Ordering::Greater => merged.extend(right.next().cloned()),
                        Ordering::Equal => {
                            let (value, n) = left.next().expect("peeked");
                            merged.push((value, n + right.next().expect("peeked").1));
                        }
                    }
                }
                *a = merged;
            }
            (State::Bytes(_), State::Bytes(_)) => {}
            (_, State::Extreme(None) | State::Edge(None)) => {}
            (a, b) => unreachable!("merging states of different kinds: {a:?} and {b:?}"),
        }
    }
}

/// Drops the oldest entries past the k latest.
fn keep_last<T>(events: &mut Vec<T>, k: u32) {
    let k = k as usize;
    if events.len() > k {
        events.drain(..events.len() - k);
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
            StateKind::Latest(2),
            StateKind::LatestDistinct(2),
            StateKind::Counts,
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

    /// Values with repeats, in event order.
    fn merchants(n: usize, seed: u64) -> Vec<Value> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                Value::Utf8(format!("m{}", (x >> 33) % 7))
            })
            .collect()
    }

    #[test]
    fn list_states_merged_from_any_cut_equal_one_fold() {
        for kind in [StateKind::Latest(3), StateKind::LatestDistinct(3), StateKind::Counts] {
            for seed in 0..20 {
                let values = merchants(1 + seed as usize * 3, seed);
                let whole = fold(kind, &values);
                // Cut into three parts anywhere; event order carries on
                // across the parts (times continue from where the last ended).
                for a in 0..=values.len() {
                    for b in a..=values.len() {
                        let mut parts = kind.empty();
                        for range in [0..a, a..b, b..values.len()] {
                            let mut part = kind.empty();
                            for i in range {
                                kind.update(&mut part, (i as i64, ID), Some(&values[i]));
                            }
                            kind.merge(&mut parts, &part);
                        }
                        assert_eq!(parts, whole, "{kind:?} cut at {a} and {b} of {values:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn list_functions_give_what_they_say() {
        let values = merchants(40, 7);
        let as_text = |v: Value| match v {
            Value::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Utf8(s) => s,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let texts: Vec<String> = as_text(Value::List(values.clone()));
        // The 4 latest, latest first.
        let last = Function::LastN(4).finalize(&fold(StateKind::Latest(4), &values));
        assert_eq!(as_text(last), texts.iter().rev().take(4).cloned().collect::<Vec<_>>());
        // The 3 distinct values seen latest, latest first.
        let mut distinct: Vec<String> = Vec::new();
        for t in texts.iter().rev() {
            if !distinct.contains(t) {
                distinct.push(t.clone());
            }
        }
        let recent = Function::LastDistinctN(3).finalize(&fold(StateKind::LatestDistinct(3), &values));
        assert_eq!(as_text(recent), distinct[..3]);
        // The 2 most frequent, ties by value.
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in &texts {
            match counts.iter_mut().find(|(v, _)| v == t) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.clone(), 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = Function::MostFrequentN(2).finalize(&fold(StateKind::Counts, &values));
        assert_eq!(
            as_text(top),
            counts[..2].iter().map(|(v, _)| v.clone()).collect::<Vec<_>>()
        );
        // No events: null, as for every function but count and sum.
        assert_eq!(Function::LastN(4).finalize(&StateKind::Latest(4).empty()), Value::Null);
    }

    #[test]
    fn functions_with_a_k_parse_and_say_what_is_wrong() {
        assert_eq!(Function::parse("last_n(5)"), Ok(Function::LastN(5)));
        assert_eq!(Function::parse("last_distinct_n( 3 )"), Ok(Function::LastDistinctN(3)));
        assert_eq!(
            Function::parse("most_frequent_n(1000)"),
            Ok(Function::MostFrequentN(1000))
        );
        assert_eq!(Function::parse("count"), Ok(Function::Count));
        for (text, says) in [
            ("last_n", "needs its k, as in `last_n(5)`"),
            ("last_n(0)", "k must be a whole number from 1 to 1000"),
            ("last_n(1001)", "from 1 to 1000"),
            ("last_n(x)", "from 1 to 1000"),
            ("count(3)", "takes no k"),
            ("median", "unknown function `median` (functions: count, sum"),
        ] {
            let error = Function::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(Function::parse("median").unwrap_err().contains("last_n(k)"));
        for f in Function::ALL {
            assert_eq!(Function::parse(&f.to_string()), Ok(f));
        }
        assert_eq!(
            Function::LastN(5).output_type(Some(FeatureType::Float64)),
            Ok(FeatureType::List(crate::types::Scalar::Float64))
        );
        assert!(
            Function::LastN(5)
                .output_type(Some(FeatureType::Vector(3)))
                .unwrap_err()
                .contains("scalar type")
        );
    }
}
