//! Codecs: one module per boundary a feature value crosses, each the only
//! conversion across it, both ways.
//!
//! - [`wit`]: Arrow <-> the WIT batches a transform component takes and
//!   returns (what [`crate::Transform::run`] calls).
//! - [`crate::format::value`]: Arrow <-> the store's rows and entity keys (the byte layout
//!   itself is [`crate::format::layout`]).
//! - [`json`]: JSON and command-line text <-> Arrow (requests, pushes,
//!   answers).
//!
//! Timestamps of any Arrow unit become microseconds UTC in one place,
//! [`crate::time::micros_array`]. Adding a [`crate::FeatureType`] means one
//! variant in that enum, its WIT mapping (`wit/transform.wit` and
//! [`crate::FeatureType::from_wit`]), and one arm per codec here; the
//! round-trip test at the bottom of this file sends every type through
//! every codec and fails until each knows the new one.

pub mod json;

pub(crate) mod wit;

use crate::types::FeatureType;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};

/// A value as bytes, `None` for null: floats by their bits, so NaN payloads
/// and -0.0 count. What "bit-identical" means wherever values are compared.
///
/// Panics on an array of no feature type: every array compared here came
/// through a codec that checked its type.
pub(crate) fn value_bits(array: &dyn Array, row: usize) -> Option<Vec<u8>> {
    if array.is_null(row) {
        return None;
    }
    Some(match feature_type(array) {
        FeatureType::Bool => vec![u8::from(array.as_boolean().value(row))],
        FeatureType::Int64 => array.as_primitive::<Int64Type>().value(row).to_le_bytes().to_vec(),
        FeatureType::Float32 => array
            .as_primitive::<Float32Type>()
            .value(row)
            .to_bits()
            .to_le_bytes()
            .to_vec(),
        FeatureType::Float64 => array
            .as_primitive::<Float64Type>()
            .value(row)
            .to_bits()
            .to_le_bytes()
            .to_vec(),
        FeatureType::Utf8 => array.as_string::<i32>().value(row).as_bytes().to_vec(),
        FeatureType::Timestamp => array
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .to_le_bytes()
            .to_vec(),
        // Each element's bits after its length, so that two lists are
        // equal exactly when every element is.
        FeatureType::List(_) => {
            let elements = array.as_list::<i32>().value(row);
            let mut out = (elements.len() as u32).to_le_bytes().to_vec();
            for i in 0..elements.len() {
                let bits = value_bits(&elements, i).unwrap_or_default();
                out.extend_from_slice(&(bits.len() as u32).to_le_bytes());
                out.extend_from_slice(&bits);
            }
            out
        }
        FeatureType::Vector(_) => {
            let components = array.as_fixed_size_list().value(row);
            components
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .flat_map(|v| v.to_bits().to_le_bytes())
                .collect()
        }
    })
}

/// The feature type of an array a codec made or checked.
fn feature_type(array: &dyn Array) -> FeatureType {
    FeatureType::from_arrow(array.data_type())
        .unwrap_or_else(|| panic!("an array of {} reached a codec unchecked", array.data_type()))
}

/// A value for a message: as JSON ([`json::value_json`]), except floats that
/// JSON cannot hold or that only their bits tell apart (NaN, infinities,
/// -0.0), which are shown with their bits.
pub(crate) fn value_text(array: &dyn Array, row: usize) -> String {
    let bits = |value: f64, bits: String| {
        if value.is_finite() && !(value == 0.0 && value.is_sign_negative()) {
            None
        } else {
            Some(format!("{value} (bits {bits})"))
        }
    };
    if array.is_null(row) {
        return json::value_json(array, row).to_string();
    }
    let special = match feature_type(array) {
        FeatureType::Float32 => {
            let value = array.as_primitive::<Float32Type>().value(row);
            bits(value as f64, format!("{:#010x}", value.to_bits()))
        }
        FeatureType::Float64 => {
            let value = array.as_primitive::<Float64Type>().value(row);
            bits(value, format!("{:#018x}", value.to_bits()))
        }
        // Vector components are finite (the writers refuse others), and a
        // list's float elements show as JSON numbers: a message about a
        // list is about the list, not one element's bits.
        FeatureType::Bool
        | FeatureType::Int64
        | FeatureType::Utf8
        | FeatureType::Timestamp
        | FeatureType::List(_)
        | FeatureType::Vector(_) => None,
    };
    special.unwrap_or_else(|| json::value_json(array, row).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::{
        Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };

    use super::{json, wit};
    use crate::format::layout::RowWriter;
    use crate::format::value as row;
    use crate::types::{FeatureType, FieldSpec, UTC, arrow_schema};

    /// Edge values of each type, nulls among them: what every codec must
    /// carry bit for bit. A new type fails to compile here first.
    fn samples(data_type: FeatureType) -> ArrayRef {
        match data_type {
            FeatureType::Bool => Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            FeatureType::Int64 => Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(-1),
                None,
                Some(0),
                Some(i64::MAX),
            ])),
            FeatureType::Float32 => Arc::new(Float32Array::from(vec![
                Some(-0.0),
                Some(f32::MIN_POSITIVE / 2.0),
                None,
                Some(f32::MAX),
                Some(1.1),
            ])),
            FeatureType::Float64 => Arc::new(Float64Array::from(vec![
                Some(-0.0),
                Some(5e-324),
                None,
                Some(f64::MIN),
                Some(0.1 + 0.2),
            ])),
            FeatureType::Utf8 => Arc::new(StringArray::from(vec![
                Some(""),
                Some("héllo ü 🚕"),
                None,
                Some("a,b\"c"),
            ])),
            FeatureType::Timestamp => Arc::new(
                TimestampMicrosecondArray::from(vec![Some(-1), Some(0), None, Some(1_764_000_000_123_456)])
                    .with_timezone(UTC),
            ),
            // Each scalar's edge values as lists: all of them, none (an
            // empty list), a null list, one, and the rest; sliced, so the
            // codecs see offsets that do not start at 0.
            FeatureType::List(item) => {
                let elements = samples(item.feature_type());
                let present: Vec<usize> = (0..elements.len()).filter(|i| elements.is_valid(*i)).collect();
                let elements = arrow_select::take::take(
                    &elements,
                    &arrow_array::UInt32Array::from(present.iter().map(|i| *i as u32).collect::<Vec<_>>()),
                    None,
                )
                .unwrap();
                let n = elements.len() as i32;
                let elements = arrow_select::concat::concat(&[elements.as_ref(), elements.as_ref()]).unwrap();
                let offsets = vec![0, 1, 1 + n, 1 + n, 1 + n, 2 + n, 2 * n];
                let list = arrow_array::ListArray::new(
                    Arc::new(arrow_schema::Field::new_list_field(item.feature_type().arrow(), true)),
                    arrow_buffer::OffsetBuffer::new(offsets.into()),
                    elements,
                    Some(arrow_buffer::NullBuffer::from(vec![
                        true, true, true, false, true, true,
                    ])),
                );
                Arc::new(list.slice(1, 5))
            }
            // Signed zeros, the extremes, a subnormal, and a null vector;
            // sliced.
            FeatureType::Vector(dimension) => {
                assert_eq!(dimension, 3);
                let components = vec![
                    9.0,
                    9.0,
                    9.0,
                    -0.0,
                    0.0,
                    f32::MIN_POSITIVE / 2.0,
                    f32::MAX,
                    f32::MIN,
                    1.1,
                    0.0,
                    0.0,
                    0.0,
                    0.5,
                    -0.25,
                    3.0,
                ];
                let vectors = arrow_array::FixedSizeListArray::new(
                    Arc::new(arrow_schema::Field::new_list_field(
                        arrow_schema::DataType::Float32,
                        true,
                    )),
                    3,
                    Arc::new(Float32Array::from(components)),
                    Some(arrow_buffer::NullBuffer::from(vec![true, true, true, false, true])),
                );
                Arc::new(vectors.slice(1, 4))
            }
        }
    }

    /// Values that JSON (numbers, no NaN) cannot carry, to check they are
    /// refused or nulled as documented rather than altered.
    fn not_json(data_type: FeatureType) -> Option<ArrayRef> {
        match data_type {
            FeatureType::Float32 => Some(Arc::new(Float32Array::from(vec![f32::NAN, f32::INFINITY]))),
            FeatureType::Float64 => Some(Arc::new(Float64Array::from(vec![f64::NAN, f64::NEG_INFINITY]))),
            _ => None,
        }
    }

    /// Each value's type and bits, nulls as `null`: equal strings mean
    /// bit-identical arrays, and a failure prints both sides in full.
    fn bits(array: &dyn Array) -> Vec<String> {
        (0..array.len())
            .map(|r| {
                if array.is_null(r) {
                    return "null".to_string();
                }
                match FeatureType::from_arrow(array.data_type()).expect("a feature type") {
                    FeatureType::Bool => format!("bool {}", array.as_boolean().value(r)),
                    FeatureType::Int64 => format!("int64 {}", array.as_primitive::<Int64Type>().value(r)),
                    FeatureType::Float32 => {
                        format!(
                            "float32 {:#010x}",
                            array.as_primitive::<Float32Type>().value(r).to_bits()
                        )
                    }
                    FeatureType::Float64 => {
                        format!(
                            "float64 {:#018x}",
                            array.as_primitive::<Float64Type>().value(r).to_bits()
                        )
                    }
                    FeatureType::Utf8 => format!("utf8 {:?}", array.as_string::<i32>().value(r)),
                    FeatureType::Timestamp => {
                        format!(
                            "timestamp {}",
                            array.as_primitive::<TimestampMicrosecondType>().value(r)
                        )
                    }
                    FeatureType::List(_) => format!("list {:?}", bits(&array.as_list::<i32>().value(r))),
                    FeatureType::Vector(_) => format!("vector {:?}", bits(&array.as_fixed_size_list().value(r))),
                }
            })
            .collect()
    }

    #[test]
    fn every_type_crosses_every_codec_bit_for_bit() {
        for data_type in FeatureType::ALL {
            let original = samples(data_type);
            let expected = bits(&original);
            let field = FieldSpec {
                name: "x".into(),
                data_type,
                nullable: true,
            };
            let fields = [field];
            let batch = RecordBatch::try_new(arrow_schema(&fields), vec![original.clone()]).unwrap();

            // Arrow -> WIT -> Arrow.
            let lowered = wit::with_wit_batch(&batch, &fields, wit::owned).unwrap();
            let lifted = wit::from_wit(lowered, &fields, &arrow_schema(&fields), batch.num_rows()).unwrap();
            assert_eq!(bits(lifted.column(0)), expected, "{data_type} through WIT");
            assert_eq!(
                lifted.column(0).data_type(),
                &data_type.arrow(),
                "{data_type} through WIT"
            );

            // Arrow -> stored row -> Arrow.
            let encoder = row::RowEncoder::new(&batch, &fields).unwrap();
            let mut builder = row::ValueBuilder::new(data_type, batch.num_rows());
            for r in 0..batch.num_rows() {
                let mut bytes = Vec::new();
                let mut writer = RowWriter::start(&mut bytes, 0, 0, 1, encoder.width());
                encoder.write(r, &mut writer);
                let mut values = row::decode_values(&bytes, &fields).unwrap();
                builder.push(values.remove(0));
            }
            let stored = builder.finish();
            assert_eq!(bits(&stored), expected, "{data_type} through a stored row");
            assert_eq!(
                stored.data_type(),
                &data_type.arrow(),
                "{data_type} through a stored row"
            );

            // Arrow -> JSON -> Arrow.
            let as_json: Vec<serde_json::Value> = (0..original.len()).map(|r| json::value_json(&original, r)).collect();
            let text = serde_json::to_string(&as_json).unwrap();
            let parsed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
            let from_json = json::array_from_json("x", &parsed, data_type).unwrap();
            assert_eq!(bits(&from_json), expected, "{data_type} through JSON {text}");

            // CLI text -> Arrow, from what a user would type for each value.
            let typed: Vec<String> = as_json
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect();
            let from_text = json::array_from_strings("x", &typed, data_type).unwrap();
            let present: Vec<String> = expected.iter().filter(|b| *b != "null").cloned().collect();
            assert_eq!(
                bits(&from_text),
                present,
                "{data_type} from command-line text {typed:?}"
            );

            // What JSON cannot carry is answered as null, never altered.
            if let Some(special) = not_json(data_type) {
                for r in 0..special.len() {
                    assert_eq!(
                        json::value_json(&special, r),
                        serde_json::Value::Null,
                        "{data_type} row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn timestamps_of_every_unit_become_microseconds_in_one_place() {
        use arrow_array::{TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray};
        let cases: Vec<(ArrayRef, Vec<Option<i64>>)> = vec![
            (
                Arc::new(TimestampSecondArray::from(vec![Some(-1), None, Some(i64::MAX)])),
                vec![Some(-1_000_000), None, Some(i64::MAX)],
            ),
            (
                Arc::new(TimestampMillisecondArray::from(vec![Some(1), Some(-1)])),
                vec![Some(1_000), Some(-1_000)],
            ),
            (
                Arc::new(TimestampNanosecondArray::from(vec![Some(999), Some(-1), Some(1_000)])),
                vec![Some(0), Some(-1), Some(1)],
            ),
        ];
        for (array, expected) in cases {
            let micros = crate::time::micros_array(&array).unwrap();
            assert_eq!(micros.iter().collect::<Vec<_>>(), expected, "{}", array.data_type());
            assert_eq!(micros.data_type(), &FeatureType::Timestamp.arrow());
        }
        assert!(crate::time::micros_array(&Int64Array::from(vec![1])).is_none());
    }
}
