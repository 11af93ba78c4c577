//! Arrow <-> WIT batches: the only conversion, used both ways by every
//! caller (backfill, push, online reads, the dataset builder) through
//! [`crate::Transform::run`].
//!
//! Each column crosses with one copy of its values buffer and one of its
//! validity bitmap; nothing is converted value by value, except timestamps
//! that arrive in a unit other than microseconds. On the way back every
//! buffer the guest returns is checked (type, length, offsets, UTF-8) before
//! it becomes an Arrow array: a guest is never trusted to be well formed.
//! Float outputs leave with their NaNs canonicalized, in the same pass
//! ([`crate::determinism`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType as ArrowType, SchemaRef, TimeUnit};
use wasmtime::component::{ComponentType, Lower};

use crate::error::ConversionError;
use crate::types::{FeatureType, FieldSpec, UTC};
use crate::wit;

/// A batch as the guest's `run` takes it, borrowing Arrow's buffers: lowering
/// copies each buffer once, straight into guest memory. Mirrors `batch` in
/// `wit/transform.wit` field for field (wasmtime checks the types when the
/// transform is loaded).
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct BatchRef<'a> {
    #[component(name = "num-rows")]
    num_rows: u32,
    columns: Vec<ColumnRef<'a>>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ColumnRef<'a> {
    name: &'a str,
    values: ValuesRef<'a>,
    validity: Option<&'a [u8]>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct Utf8Ref<'a> {
    offsets: &'a [i32],
    bytes: &'a [u8],
}

#[derive(ComponentType, Lower)]
#[component(variant)]
pub(crate) enum ValuesRef<'a> {
    #[component(name = "boolean")]
    Boolean(&'a [u8]),
    #[component(name = "int64")]
    Int64(&'a [i64]),
    #[component(name = "float32")]
    Float32(&'a [f32]),
    #[component(name = "float64")]
    Float64(&'a [f64]),
    #[component(name = "utf8")]
    Utf8(Utf8Ref<'a>),
    #[component(name = "timestamp")]
    Timestamp(&'a [i64]),
}

/// What cannot be borrowed from Arrow as is: bitmaps that do not start on a
/// byte boundary (sliced arrays), rebased string offsets, and timestamps in
/// another unit.
#[derive(Default)]
struct Owned {
    values: Option<Vec<u8>>,
    offsets: Option<Vec<i32>>,
    micros: Option<TimestampMicrosecondArray>,
    validity: Option<Vec<u8>>,
}

/// The bytes of `bits` (a bit range of an Arrow buffer) as a bitmap starting
/// at bit 0: borrowed when the range starts on a byte boundary.
fn bitmap_bytes<'a>(bits: &'a arrow_buffer::BooleanBuffer, owned: &mut Option<Vec<u8>>) -> Option<&'a [u8]> {
    if bits.offset().is_multiple_of(8) {
        let start = bits.offset() / 8;
        return Some(&bits.values()[start..start + bits.len().div_ceil(8)]);
    }
    *owned = Some(bits.sliced().as_slice().to_vec());
    None
}

/// Calls `call` with the columns `fields` names (in that order) of `batch`
/// as a WIT batch. A missing column or one of another type is an error
/// naming it.
pub(crate) fn with_wit_batch<R>(
    batch: &RecordBatch,
    fields: &[FieldSpec],
    call: impl FnOnce(BatchRef<'_>) -> R,
) -> Result<R, ConversionError> {
    let mut arrays = Vec::with_capacity(fields.len());
    for field in fields {
        let array = batch
            .column_by_name(&field.name)
            .ok_or_else(|| ConversionError::MissingColumn {
                column: field.name.clone(),
            })?;
        if FeatureType::from_arrow(array.data_type()) != Some(field.data_type) {
            return Err(ConversionError::WrongType {
                column: field.name.clone(),
                expected: field.data_type,
                actual: array.data_type().to_string(),
            });
        }
        arrays.push(array.as_ref());
    }
    // First what must be owned, then references into Arrow or into `owned`.
    let mut owned: Vec<Owned> = arrays.iter().map(|_| Owned::default()).collect();
    let mut borrowed_validity = Vec::with_capacity(arrays.len());
    let mut borrowed_bits = Vec::with_capacity(arrays.len());
    for ((array, owned), field) in arrays.iter().zip(owned.iter_mut()).zip(fields) {
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        borrowed_validity.push(nulls.and_then(|n| bitmap_bytes(n.inner(), &mut owned.validity)));
        let mut bits = None;
        match field.data_type {
            FeatureType::Bool => bits = bitmap_bytes(array.as_boolean().values(), &mut owned.values),
            FeatureType::Utf8 => {
                let offsets = array.as_string::<i32>().value_offsets();
                if offsets[0] != 0 {
                    owned.offsets = Some(offsets.iter().map(|o| o - offsets[0]).collect());
                }
            }
            FeatureType::Timestamp => {
                if !matches!(array.data_type(), ArrowType::Timestamp(TimeUnit::Microsecond, _)) {
                    owned.micros = crate::time::micros_array(*array);
                }
            }
            FeatureType::Int64 | FeatureType::Float32 | FeatureType::Float64 => {}
        }
        borrowed_bits.push(bits);
    }
    let columns = fields
        .iter()
        .zip(&arrays)
        .zip(&owned)
        .zip(borrowed_validity.into_iter().zip(borrowed_bits))
        .map(|(((field, array), owned), (validity, bits))| {
            let values = match field.data_type {
                FeatureType::Bool => ValuesRef::Boolean(bits.or(owned.values.as_deref()).unwrap_or_default()),
                FeatureType::Int64 => ValuesRef::Int64(array.as_primitive::<Int64Type>().values()),
                FeatureType::Float32 => ValuesRef::Float32(array.as_primitive::<Float32Type>().values()),
                FeatureType::Float64 => ValuesRef::Float64(array.as_primitive::<Float64Type>().values()),
                FeatureType::Utf8 => {
                    let strings = array.as_string::<i32>();
                    let offsets = strings.value_offsets();
                    let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
                    ValuesRef::Utf8(Utf8Ref {
                        offsets: owned.offsets.as_deref().unwrap_or(offsets),
                        bytes: &strings.values()[first..last],
                    })
                }
                FeatureType::Timestamp => ValuesRef::Timestamp(match &owned.micros {
                    Some(micros) => micros.values(),
                    None => array.as_primitive::<TimestampMicrosecondType>().values(),
                }),
            };
            ColumnRef {
                name: &field.name,
                values,
                validity: validity.or(owned.validity.as_deref()),
            }
        })
        .collect();
    Ok(call(BatchRef {
        num_rows: batch.num_rows() as u32,
        columns,
    }))
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
        (wit::Values::Float32(mut v), FeatureType::Float32) => {
            check_len(v.len())?;
            crate::determinism::canonicalize_f32(&mut v);
            Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls))
        }
        (wit::Values::Float64(mut v), FeatureType::Float64) => {
            check_len(v.len())?;
            crate::determinism::canonicalize_f64(&mut v);
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

/// The owned WIT batch a guest would receive for `batch`: what lowering
/// into guest memory and lifting back out gives, without a guest: the codec
/// round-trip test lifts it with [`from_wit`]; an aggregator call (whose
/// typed bindings take an owned batch) sends it.
pub(crate) fn owned(batch: BatchRef<'_>) -> wit::Batch {
    wit::Batch {
        num_rows: batch.num_rows,
        columns: batch
            .columns
            .into_iter()
            .map(|c| wit::Column {
                name: c.name.to_string(),
                values: match c.values {
                    ValuesRef::Boolean(v) => wit::Values::Boolean(v.to_vec()),
                    ValuesRef::Int64(v) => wit::Values::Int64(v.to_vec()),
                    ValuesRef::Float32(v) => wit::Values::Float32(v.to_vec()),
                    ValuesRef::Float64(v) => wit::Values::Float64(v.to_vec()),
                    ValuesRef::Utf8(s) => wit::Values::Utf8(wit::skewless::transform::types::Utf8Values {
                        offsets: s.offsets.to_vec(),
                        bytes: s.bytes.to_vec(),
                    }),
                    ValuesRef::Timestamp(v) => wit::Values::Timestamp(v.to_vec()),
                },
                validity: c.validity.map(<[u8]>::to_vec),
            })
            .collect(),
    }
}
