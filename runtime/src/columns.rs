//! Arrow <-> WIT batch conversion: the only one, used both ways by every
//! caller (backfill, server, dataset builder) through [`crate::Transform::run`].
//!
//! Each column crosses with one copy of its values buffer and one of its
//! validity bitmap; nothing is converted value by value, except timestamps
//! that arrive in a unit other than microseconds. On the way back every
//! buffer the guest returns is checked (type, length, offsets, UTF-8) before
//! it becomes an Arrow array: a guest is never trusted to be well formed.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType as ArrowType, SchemaRef, TimeUnit};

use crate::error::ConversionError;
use crate::types::{FeatureType, FieldSpec, UTC};
use crate::wit;

/// Converts the columns `fields` names (in that order) of `batch` into a WIT
/// batch. A missing column or one of another type is an error naming it.
pub(crate) fn to_wit(batch: &RecordBatch, fields: &[FieldSpec]) -> Result<wit::Batch, ConversionError> {
    let columns = fields
        .iter()
        .map(|field| {
            let array = batch
                .column_by_name(&field.name)
                .ok_or_else(|| ConversionError::MissingColumn {
                    column: field.name.clone(),
                })?;
            column_to_wit(&field.name, array.as_ref(), field.data_type)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(wit::Batch {
        num_rows: batch.num_rows() as u32,
        columns,
    })
}

/// One Arrow array as a WIT column of type `expected`.
pub(crate) fn column_to_wit(
    name: &str,
    array: &dyn Array,
    expected: FeatureType,
) -> Result<wit::Column, ConversionError> {
    let actual = FeatureType::from_arrow(array.data_type());
    if actual != Some(expected) {
        return Err(ConversionError::WrongType {
            column: name.to_string(),
            expected,
            actual: array.data_type().to_string(),
        });
    }
    let values = match array.data_type() {
        ArrowType::Boolean => wit::Values::Boolean(array.as_boolean().values().sliced().as_slice().to_vec()),
        ArrowType::Int64 => wit::Values::Int64(array.as_primitive::<Int64Type>().values().to_vec()),
        ArrowType::Float32 => wit::Values::Float32(array.as_primitive::<Float32Type>().values().to_vec()),
        ArrowType::Float64 => wit::Values::Float64(array.as_primitive::<Float64Type>().values().to_vec()),
        ArrowType::Utf8 => {
            let strings = array.as_string::<i32>();
            let offsets = strings.value_offsets();
            let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
            let bytes = strings.values()[first as usize..last as usize].to_vec();
            let offsets = if first == 0 {
                offsets.to_vec()
            } else {
                offsets.iter().map(|o| o - first).collect()
            };
            wit::Values::Utf8(wit::Utf8Values { offsets, bytes })
        }
        ArrowType::Timestamp(unit, _) => wit::Values::Timestamp(timestamp_micros(array, *unit)),
        other => unreachable!("FeatureType::from_arrow accepted {other}"),
    };
    let validity = array
        .logical_nulls()
        .filter(|nulls| nulls.null_count() > 0)
        .map(|nulls| nulls.inner().sliced().as_slice().to_vec());
    Ok(wit::Column {
        name: name.to_string(),
        values,
        validity,
    })
}

/// Timestamps of any unit as microseconds (sub-microsecond parts floor).
fn timestamp_micros(array: &dyn Array, unit: TimeUnit) -> Vec<i64> {
    match unit {
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values().to_vec(),
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .values()
            .iter()
            .map(|s| s.saturating_mul(1_000_000))
            .collect(),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .iter()
            .map(|s| s.saturating_mul(1_000))
            .collect(),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|n| n.div_euclid(1_000))
            .collect(),
    }
}

/// Any Arrow array of a type that maps onto [`FeatureType::Timestamp`], as
/// a microsecond UTC array (the runtime's one timestamp representation).
pub fn normalize_timestamps(array: &dyn Array) -> Option<TimestampMicrosecondArray> {
    let ArrowType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    FeatureType::from_arrow(array.data_type())?;
    let values = timestamp_micros(array, *unit);
    Some(TimestampMicrosecondArray::new(ScalarBuffer::from(values), array.logical_nulls()).with_timezone(UTC))
}

/// Converts a WIT batch returned by a guest into an Arrow batch of `schema`
/// (built from `fields`), checking every column against its declaration.
pub(crate) fn from_wit(
    batch: wit::Batch,
    fields: &[FieldSpec],
    schema: &SchemaRef,
    expected_rows: usize,
) -> Result<RecordBatch, ConversionError> {
    if batch.num_rows as usize != expected_rows {
        return Err(ConversionError::RowCount {
            column: None,
            expected: expected_rows,
            actual: batch.num_rows as usize,
        });
    }
    if batch.columns.len() != fields.len() {
        let names: Vec<_> = batch.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(ConversionError::Columns {
            expected: fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", "),
            actual: names.join(", "),
        });
    }
    let arrays = batch
        .columns
        .into_iter()
        .zip(fields)
        .map(|(column, field)| column_from_wit(column, field, expected_rows))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| ConversionError::Arrow(e.to_string()))
}

/// One WIT column as an Arrow array, checked against `field`.
pub(crate) fn column_from_wit(
    column: wit::Column,
    field: &FieldSpec,
    rows: usize,
) -> Result<ArrayRef, ConversionError> {
    if column.name != field.name {
        return Err(ConversionError::Columns {
            expected: field.name.clone(),
            actual: column.name,
        });
    }
    let name = &field.name;
    let nulls = match column.validity {
        None => None,
        Some(bits) => {
            check_bitmap(name, "validity", &bits, rows)?;
            Some(NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows))).filter(|n| n.null_count() > 0)
        }
    };
    let wrong_type = |actual: FeatureType| ConversionError::WrongType {
        column: name.clone(),
        expected: field.data_type,
        actual: actual.name().to_string(),
    };
    let check_len = |len: usize| {
        if len == rows {
            Ok(())
        } else {
            Err(ConversionError::RowCount {
                column: Some(name.clone()),
                expected: rows,
                actual: len,
            })
        }
    };
    let array: ArrayRef = match (column.values, field.data_type) {
        (wit::Values::Boolean(bits), FeatureType::Bool) => {
            check_bitmap(name, "values", &bits, rows)?;
            Arc::new(BooleanArray::new(
                BooleanBuffer::new(Buffer::from_vec(bits), 0, rows),
                nulls,
            ))
        }
        (wit::Values::Int64(v), FeatureType::Int64) => {
            check_len(v.len())?;
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls))
        }
        (wit::Values::Float32(v), FeatureType::Float32) => {
            check_len(v.len())?;
            Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls))
        }
        (wit::Values::Float64(v), FeatureType::Float64) => {
            check_len(v.len())?;
            Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls))
        }
        (wit::Values::Timestamp(v), FeatureType::Timestamp) => {
            check_len(v.len())?;
            Arc::new(TimestampMicrosecondArray::new(ScalarBuffer::from(v), nulls).with_timezone(UTC))
        }
        (wit::Values::Utf8(s), FeatureType::Utf8) => {
            check_len(s.offsets.len().saturating_sub(1))?;
            check_offsets(name, &s.offsets, s.bytes.len())?;
            let offsets = OffsetBuffer::new(ScalarBuffer::from(s.offsets));
            Arc::new(
                StringArray::try_new(offsets, Buffer::from_vec(s.bytes), nulls).map_err(|e| {
                    ConversionError::InvalidBuffer {
                        column: name.clone(),
                        message: e.to_string(),
                    }
                })?,
            )
        }
        (values, _) => return Err(wrong_type(values_type(&values))),
    };
    Ok(array)
}

fn values_type(values: &wit::Values) -> FeatureType {
    match values {
        wit::Values::Boolean(_) => FeatureType::Bool,
        wit::Values::Int64(_) => FeatureType::Int64,
        wit::Values::Float32(_) => FeatureType::Float32,
        wit::Values::Float64(_) => FeatureType::Float64,
        wit::Values::Utf8(_) => FeatureType::Utf8,
        wit::Values::Timestamp(_) => FeatureType::Timestamp,
    }
}

fn check_bitmap(column: &str, what: &str, bits: &[u8], rows: usize) -> Result<(), ConversionError> {
    if bits.len() < rows.div_ceil(8) {
        return Err(ConversionError::InvalidBuffer {
            column: column.to_string(),
            message: format!(
                "{what} bitmap has {} bytes, {} rows need {}",
                bits.len(),
                rows,
                rows.div_ceil(8)
            ),
        });
    }
    Ok(())
}

/// Offsets must be `rows + 1` entries, start at 0, never decrease and end
/// within the byte buffer ([`OffsetBuffer::new`] would panic otherwise).
fn check_offsets(column: &str, offsets: &[i32], bytes: usize) -> Result<(), ConversionError> {
    let bad = |message: String| ConversionError::InvalidBuffer {
        column: column.to_string(),
        message,
    };
    match offsets.first() {
        None => return Err(bad("utf8 offsets are empty (need rows + 1 entries)".into())),
        Some(&first) if first < 0 => return Err(bad(format!("utf8 offsets start at {first}"))),
        Some(_) => {}
    }
    if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
        return Err(bad(format!("utf8 offsets decrease at row {i}")));
    }
    let last = offsets[offsets.len() - 1] as usize;
    if last > bytes {
        return Err(bad(format!("utf8 offsets end at {last}, past the {bytes}-byte buffer")));
    }
    Ok(())
}
