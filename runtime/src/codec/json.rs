//! JSON and command-line text <-> Arrow: the one conversion between the
//! values people type or send (`skewless get --entity driver_id=1001`, a
//! Feast request's `entities`, a push's `df`) and Arrow columns, and back
//! to JSON for answers. The server and the CLI both build requests with
//! [`array_from_json`] / [`array_from_strings`] and print answers with
//! [`value_json`].
//!
//! A new [`FeatureType`] touches this module in three places: one arm in
//! each function below.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};

use crate::format::value::{Value, ValueBuilder};
use crate::types::{FeatureType, Scalar};

/// A value that is not of its column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{column}` must be {expected}: {message}")]
pub struct WrongValue {
    /// The column.
    pub column: String,
    /// Its declared type.
    pub expected: FeatureType,
    /// What was wrong, with the value or its row.
    pub message: String,
}

/// Parses command-line values (`1001`, `card-7`, `2021-04-12T10:00:00Z`)
/// into an array of `data_type`.
pub fn array_from_strings(column: &str, values: &[String], data_type: FeatureType) -> Result<ArrayRef, WrongValue> {
    let wrong = |value: &str, message: String| WrongValue {
        column: column.to_string(),
        expected: data_type,
        message: format!("`{value}`: {message}"),
    };
    let mut builder = ValueBuilder::new(data_type, values.len());
    for text in values {
        let value = match data_type.scalar() {
            Some(scalar) => match scalar {
                Scalar::Bool => Value::Bool(text.parse().map_err(|e| wrong(text, format!("{e}")))?),
                Scalar::Int64 => Value::Int64(text.parse().map_err(|e| wrong(text, format!("{e}")))?),
                Scalar::Float32 => Value::Float32(text.parse().map_err(|e| wrong(text, format!("{e}")))?),
                Scalar::Float64 => Value::Float64(text.parse().map_err(|e| wrong(text, format!("{e}")))?),
                Scalar::Utf8 => Value::Utf8(text.clone()),
                Scalar::Timestamp => {
                    Value::Timestamp(crate::time::parse_timestamp(text).map_err(|e| wrong(text, e.to_string()))?)
                }
            },
            // Lists and vectors are typed as JSON arrays: `[0.1, 0.2]`.
            None => {
                let json: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| wrong(text, format!("{data_type} is written as a JSON array ({e})")))?;
                value_from_json(data_type, &json).map_err(|message| wrong(text, message))?
            }
        };
        builder.push(value);
    }
    Ok(builder.finish())
}

/// Builds an array of `data_type` from JSON values (a column of a request
/// or a push): numbers for numeric types (integers only for int64), `true` /
/// `false`, strings for utf8, RFC 3339 strings (`2021-04-12T10:59:42Z`,
/// `2021-04-12 10:59:42`, zone-less = UTC) for timestamps; `null` anywhere.
pub fn array_from_json(
    column: &str,
    values: &[serde_json::Value],
    data_type: FeatureType,
) -> Result<ArrayRef, WrongValue> {
    let wrong = |row: usize, message: String| WrongValue {
        column: column.to_string(),
        expected: data_type,
        message: format!("value {row}: {message}"),
    };
    let mut builder = ValueBuilder::new(data_type, values.len());
    for (row, json) in values.iter().enumerate() {
        builder.push(value_from_json(data_type, json).map_err(|message| wrong(row, message))?);
    }
    Ok(builder.finish())
}

/// Parses one JSON value of `data_type` (`null` is [`Value::Null`]); the
/// error says what was found instead.
fn value_from_json(data_type: FeatureType, json: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    let got = |value: &J| match value {
        J::Bool(b) => format!("got {b}"),
        J::Number(n) => format!("got the number {n}"),
        J::String(s) => format!("got the string {s:?}"),
        J::Array(_) => "got a list".to_string(),
        J::Object(_) => "got an object".to_string(),
        J::Null => "got null".to_string(),
    };
    // JSON has one number type: `3.0` is the integer 3 (as JSON Schema says,
    // and as pandas writes integer columns with nulls), up to 2^53, where
    // doubles stop being exact; `3.5` is not an integer, nor is a number
    // outside int64, which the parser could only round.
    const EXACT: f64 = (1u64 << 53) as f64;
    let integer = |n: &serde_json::Number| {
        n.as_i64().or_else(|| {
            (n.as_f64())
                .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
                .map(|f| f as i64)
        })
    };
    Ok(match (data_type, json) {
        (_, J::Null) => Value::Null,
        (FeatureType::Bool, J::Bool(b)) => Value::Bool(*b),
        (FeatureType::Int64, J::Number(n)) => Value::Int64(integer(n).ok_or_else(|| got(json))?),
        (FeatureType::Float32, J::Number(n)) => Value::Float32(n.as_f64().ok_or_else(|| got(json))? as f32),
        (FeatureType::Float64, J::Number(n)) => Value::Float64(n.as_f64().ok_or_else(|| got(json))?),
        (FeatureType::Utf8, J::String(s)) => Value::Utf8(s.clone()),
        (FeatureType::Timestamp, J::String(s)) => {
            Value::Timestamp(crate::time::parse_timestamp(s).map_err(|e| e.to_string())?)
        }
        (FeatureType::List(item), J::Array(elements)) => Value::List(
            elements
                .iter()
                .enumerate()
                .map(|(i, element)| match value_from_json(item.feature_type(), element) {
                    Ok(Value::Null) => Err(format!("element {i} is null; lists hold no nulls")),
                    Ok(value) => Ok(value),
                    Err(message) => Err(format!("element {i}: {message}")),
                })
                .collect::<Result<_, _>>()?,
        ),
        (FeatureType::Vector(dimension), J::Array(components)) => {
            if components.len() != dimension as usize {
                return Err(format!(
                    "the vector has {} components, but the feature is vector<{dimension}>",
                    components.len()
                ));
            }
            Value::Vector(
                components
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match c {
                        J::Number(n) => n
                            .as_f64()
                            .map(|f| f as f32)
                            .filter(|f| f.is_finite())
                            .ok_or_else(|| format!("component {i}: {n} is outside float32's range")),
                        other => Err(format!("component {i}: {}", got(other))),
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        (
            FeatureType::Bool
            | FeatureType::Int64
            | FeatureType::Float32
            | FeatureType::Float64
            | FeatureType::Utf8
            | FeatureType::Timestamp
            | FeatureType::List(_)
            | FeatureType::Vector(_),
            J::Bool(_) | J::Number(_) | J::String(_) | J::Array(_) | J::Object(_),
        ) => return Err(got(json)),
    })
}

/// One value of an array as JSON: numbers as numbers (float32 widened
/// exactly to float64), NaN and infinities as null, timestamps as RFC 3339.
pub fn value_json(array: &dyn Array, row: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if array.is_null(row) {
        return J::Null;
    }
    match FeatureType::from_arrow(array.data_type()) {
        Some(FeatureType::Bool) => J::Bool(array.as_boolean().value(row)),
        Some(FeatureType::Int64) => J::from(array.as_primitive::<Int64Type>().value(row)),
        Some(FeatureType::Float32) => {
            serde_json::Number::from_f64(array.as_primitive::<Float32Type>().value(row) as f64)
                .map_or(J::Null, J::Number)
        }
        Some(FeatureType::Float64) => {
            serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(row)).map_or(J::Null, J::Number)
        }
        Some(FeatureType::Utf8) => J::String(array.as_string::<i32>().value(row).to_string()),
        Some(FeatureType::Timestamp) => match array.as_primitive_opt::<TimestampMicrosecondType>() {
            Some(ts) => J::String(crate::time::format_timestamp(ts.value(row))),
            None => J::Null,
        },
        // Feast's wire shape for lists and vectors: a JSON array.
        Some(FeatureType::List(_)) => {
            let elements = array.as_list::<i32>().value(row);
            J::Array((0..elements.len()).map(|i| value_json(&elements, i)).collect())
        }
        Some(FeatureType::Vector(_)) => {
            let components = array.as_fixed_size_list().value(row);
            J::Array((0..components.len()).map(|i| value_json(&components, i)).collect())
        }
        // Not a feature type: nothing a codec made.
        None => J::Null,
    }
}
