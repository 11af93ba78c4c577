//! User-defined aggregation functions (`wit/aggregator.wit`): a typed state,
//! an update per event, a merge of a later state, and a value.
//!
//! The host keeps states in tiles and folds them in one fixed order; the SDK
//! does the vectorized calls (many groups per call), turns states into bytes
//! with `postcard` (a value always gives the same bytes) and back, and keeps
//! the empty byte string as the state of no events ([`Default`]). What the
//! author must make true, and `skewless apply` checks on sample data:
//! `merge` with a default state changes nothing, and folding events in one
//! go or in two parts then merging gives the same state.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Column, DataType, Error, Field, PrimitiveBuilder, Utf8Builder, Values};

/// A user-defined aggregation function; export it with
/// [`export_aggregator!`](crate::export_aggregator).
///
/// ```
/// use skewless_sdk::Aggregate;
///
/// /// The largest absolute value.
/// pub struct MaxAbs;
///
/// impl Aggregate for MaxAbs {
///     const NAME: &'static str = "max_abs";
///     const VERSION: &'static str = "1.0.0";
///     type Input = f64;
///     type Output = f64;
///     type State = Option<f64>;
///
///     fn update(state: &mut Option<f64>, value: f64) {
///         *state = Some(state.map_or(value.abs(), |s| s.max(value.abs())));
///     }
///     fn merge(state: &mut Option<f64>, later: Option<f64>) {
///         if let Some(v) = later { Self::update(state, v) }
///     }
///     fn finalize(state: Option<f64>) -> Option<f64> {
///         state
///     }
/// }
///
/// // The same calls the host makes, natively:
/// let values = skewless_sdk::Column::float64("input", vec![1.0, -3.0, 2.0], None);
/// let states = skewless_sdk::aggregate::update::<MaxAbs>(vec![vec![]], &[0, 0, 0], &values).unwrap();
/// let out = skewless_sdk::aggregate::finalize::<MaxAbs>(states).unwrap();
/// assert_eq!(out.values(), &skewless_sdk::Values::Float64(vec![3.0]));
/// ```
pub trait Aggregate {
    /// Name, for `describe`.
    const NAME: &'static str;
    /// Version, for `describe`.
    const VERSION: &'static str;
    /// The input's type: `i64`, `f32`, `f64` or `String`. Null inputs never
    /// reach `update`.
    type Input: AggregateValue;
    /// The feature's type.
    type Output: AggregateValue;
    /// What a tile keeps. `Default` is the state of no events. Keep it
    /// bounded (a sketch, not the events): the host refuses states over
    /// 64 KiB.
    type State: Default + Serialize + DeserializeOwned;

    /// Adds one event's input; events come in (event time, event id) order.
    fn update(state: &mut Self::State, value: Self::Input);

    /// Adds `later`, the state of events that all come after `state`'s.
    fn merge(state: &mut Self::State, later: Self::State);

    /// The feature value; `None` is null.
    fn finalize(state: Self::State) -> Option<Self::Output>;
}

/// A type an aggregation reads or returns.
pub trait AggregateValue: Sized {
    /// Its column type.
    const DATA_TYPE: DataType;
    /// The values of a column without nulls.
    fn read(column: &Column) -> Result<Vec<Self>, Error>;
    /// A column of `values` (`None` is null).
    fn column(name: &str, values: Vec<Option<Self>>) -> Column;
}

macro_rules! primitive_value {
    ($t:ty, $variant:ident, $data_type:ident) => {
        impl AggregateValue for $t {
            const DATA_TYPE: DataType = DataType::$data_type;
            fn read(column: &Column) -> Result<Vec<Self>, Error> {
                match column.values() {
                    Values::$variant(v) => Ok(v.clone()),
                    _ => Err(Error(format!("the input is not {}", DataType::$data_type.name()))),
                }
            }
            fn column(name: &str, values: Vec<Option<Self>>) -> Column {
                let mut builder = PrimitiveBuilder::<$t>::with_capacity(values.len());
                for value in values {
                    builder.push_option(value);
                }
                Column::named(name, builder)
            }
        }
    };
}

primitive_value!(i64, Int64, Int64);
primitive_value!(f32, Float32, Float32);
primitive_value!(f64, Float64, Float64);

impl AggregateValue for String {
    const DATA_TYPE: DataType = DataType::Utf8;
    fn read(column: &Column) -> Result<Vec<Self>, Error> {
        match column.values() {
            Values::Utf8 { offsets, bytes } => offsets
                .windows(2)
                .map(|w| {
                    std::str::from_utf8(&bytes[w[0] as usize..w[1] as usize])
                        .map(str::to_string)
                        .map_err(|e| Error(e.to_string()))
                })
                .collect(),
            _ => Err(Error("the input is not utf8".into())),
        }
    }
    fn column(name: &str, values: Vec<Option<Self>>) -> Column {
        let mut builder = Utf8Builder::with_capacity(values.len(), 0);
        for value in &values {
            builder.push_option(value.as_deref());
        }
        Column::named(name, builder)
    }
}

/// The name `describe` gives the input (the host names it after the view's `input`).
pub const INPUT: &str = "input";
/// The name `describe` gives the output column.
pub const OUTPUT: &str = "value";

/// `describe`: name, version, and the two fields.
pub fn fields<A: Aggregate>() -> (Field, Field) {
    let field = |name: &str, data_type| Field {
        name: name.to_string(),
        data_type,
        nullable: true,
    };
    (field(INPUT, A::Input::DATA_TYPE), field(OUTPUT, A::Output::DATA_TYPE))
}

fn decode<A: Aggregate>(bytes: &[u8]) -> Result<A::State, Error> {
    if bytes.is_empty() {
        return Ok(A::State::default());
    }
    postcard::from_bytes(bytes).map_err(|e| Error(format!("{}: a state does not decode: {e}", A::NAME)))
}

fn encode<A: Aggregate>(state: &A::State) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(state).map_err(|e| Error(format!("{}: a state does not encode: {e}", A::NAME)))
}

/// Folds a run of items into group states: each group is decoded on first
/// use and encoded at the end; a group with no item keeps its bytes.
fn fold_groups<A: Aggregate, T>(
    states: Vec<Vec<u8>>,
    groups: &[u32],
    items: Vec<T>,
    mut step: impl FnMut(&mut A::State, T),
) -> Result<Vec<Vec<u8>>, Error> {
    if groups.len() != items.len() {
        return Err(Error(format!("{} groups for {} items", groups.len(), items.len())));
    }
    let mut decoded: Vec<Option<A::State>> = (0..states.len()).map(|_| None).collect();
    for (&group, item) in groups.iter().zip(items) {
        let g = group as usize;
        let Some(slot) = decoded.get_mut(g) else {
            return Err(Error(format!("group {g} of {}", states.len())));
        };
        if slot.is_none() {
            *slot = Some(decode::<A>(&states[g])?);
        }
        step(slot.as_mut().expect("set above"), item);
    }
    states
        .into_iter()
        .zip(decoded)
        .map(|(bytes, state)| match state {
            Some(state) => encode::<A>(&state),
            None => Ok(bytes),
        })
        .collect()
}

/// The `update` export: row `i` of `input` into `states[groups[i]]`.
pub fn update<A: Aggregate>(states: Vec<Vec<u8>>, groups: &[u32], input: &Column) -> Result<Vec<Vec<u8>>, Error> {
    let values = A::Input::read(input)?;
    fold_groups::<A, A::Input>(states, groups, values, A::update)
}

/// The `merge` export: `parts[i]` into `states[groups[i]]`.
pub fn merge<A: Aggregate>(states: Vec<Vec<u8>>, groups: &[u32], parts: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, Error> {
    let parts = parts.iter().map(|p| decode::<A>(p)).collect::<Result<Vec<_>, _>>()?;
    fold_groups::<A, A::State>(states, groups, parts, A::merge)
}

/// The `finalize` export: one value per state.
pub fn finalize<A: Aggregate>(states: Vec<Vec<u8>>) -> Result<Column, Error> {
    let values = states
        .iter()
        .map(|s| decode::<A>(s).map(A::finalize))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(A::Output::column(OUTPUT, values))
}
