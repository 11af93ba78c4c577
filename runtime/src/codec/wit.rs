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
//! ([`crate::determinism`]); vector components must be finite.
//!
//! Lowering speaks both contract versions ([`crate::wit::Contract`]): a
//! 0.2.0 batch is `BatchRef<ValuesRef>`, a 0.1.0 one `BatchRef<ScalarValuesRef>`
//! (0.1.0's `values` is 0.2.0's `scalar-values`), made from the same refs by
//! [`scalar_only`]. Lifting speaks 0.2.0; [`crate::wit::v0_1`] converts a
//! 0.1.0 output first.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType as ArrowType, Field, SchemaRef, TimeUnit};
use wasmtime::component::{ComponentType, Lower};

use crate::error::ConversionError;
use crate::types::{FeatureType, FieldSpec, Scalar, UTC};
use crate::wit;

/// A batch as the guest's `run` takes it, borrowing Arrow's buffers: lowering
/// copies each buffer once, straight into guest memory. Mirrors `batch` in
/// `wit/transform.wit` field for field (wasmtime checks the types when the
/// transform is loaded); `V` is the values variant of the contract version.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct BatchRef<'a, V> {
    #[component(name = "num-rows")]
    num_rows: u32,
    columns: Vec<ColumnRef<'a, V>>,
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ColumnRef<'a, V> {
    name: &'a str,
    values: V,
    validity: Option<&'a [u8]>,
}

#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub(crate) struct Utf8Ref<'a> {
    offsets: &'a [i32],
    bytes: &'a [u8],
}

/// `scalar-values` in 0.2.0, and `values` in 0.1.0.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(variant)]
pub(crate) enum ScalarValuesRef<'a> {
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

#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct ListRef<'a> {
    offsets: &'a [i32],
    elements: ScalarValuesRef<'a>,
}

/// `values` in 0.2.0.
#[derive(ComponentType, Lower)]
#[component(variant)]
pub(crate) enum ValuesRef<'a> {
    #[component(name = "scalar")]
    Scalar(ScalarValuesRef<'a>),
    #[component(name = "list")]
    List(ListRef<'a>),
    #[component(name = "vector")]
    Vector(&'a [f32]),
}

/// A 0.2.0 batch as a 0.1.0 component takes it: only scalar columns can be
/// lowered (a 0.1.0 component declares no other input type).
pub(crate) fn scalar_only<'a>(
    batch: BatchRef<'a, ValuesRef<'a>>,
) -> Result<BatchRef<'a, ScalarValuesRef<'a>>, ConversionError> {
    let columns = batch
        .columns
        .into_iter()
        .map(|c| match c.values {
            ValuesRef::Scalar(values) => Ok(ColumnRef {
                name: c.name,
                values,
                validity: c.validity,
            }),
            ValuesRef::List(_) | ValuesRef::Vector(_) => Err(ConversionError::InvalidBuffer {
                column: c.name.to_string(),
                message: "a list or vector column cannot go to a component built for contract 0.1.0: rebuild it".into(),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok(BatchRef {
        num_rows: batch.num_rows,
        columns,
    })
}

/// What cannot be borrowed from one scalar array as is: bitmaps that do not
/// start on a byte boundary (sliced arrays), rebased string offsets, and
/// timestamps in another unit.
#[derive(Default)]
struct OwnedScalar {
    bits: Option<Vec<u8>>,
    offsets: Option<Vec<i32>>,
    micros: Option<TimestampMicrosecondArray>,
}

impl OwnedScalar {
    /// Makes what `array` (of `scalar`'s type) needs owned.
    fn prepare(array: &dyn Array, scalar: Scalar) -> OwnedScalar {
        let mut owned = OwnedScalar::default();
        match scalar {
            Scalar::Bool => {
                let bits = array.as_boolean().values();
                if !bits.offset().is_multiple_of(8) {
                    owned.bits = Some(bits.sliced().as_slice().to_vec());
                }
            }
            Scalar::Utf8 => {
                let offsets = array.as_string::<i32>().value_offsets();
                if offsets[0] != 0 {
                    owned.offsets = Some(offsets.iter().map(|o| o - offsets[0]).collect());
                }
            }
            Scalar::Timestamp => {
                if !matches!(array.data_type(), ArrowType::Timestamp(TimeUnit::Microsecond, _)) {
                    owned.micros = crate::time::micros_array(array);
                }
            }
            Scalar::Int64 | Scalar::Float32 | Scalar::Float64 => {}
        }
        owned
    }

    /// `array`'s values, borrowed from Arrow or from `self`.
    fn values<'a>(&'a self, array: &'a dyn Array, scalar: Scalar) -> ScalarValuesRef<'a> {
        match scalar {
            Scalar::Bool => ScalarValuesRef::Boolean(match &self.bits {
                Some(bits) => bits,
                None => {
                    let bits = array.as_boolean().values();
                    let start = bits.offset() / 8;
                    &bits.values()[start..start + bits.len().div_ceil(8)]
                }
            }),
            Scalar::Int64 => ScalarValuesRef::Int64(array.as_primitive::<Int64Type>().values()),
            Scalar::Float32 => ScalarValuesRef::Float32(array.as_primitive::<Float32Type>().values()),
            Scalar::Float64 => ScalarValuesRef::Float64(array.as_primitive::<Float64Type>().values()),
            Scalar::Utf8 => {
                let strings = array.as_string::<i32>();
                let offsets = strings.value_offsets();
                let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
                ScalarValuesRef::Utf8(Utf8Ref {
                    offsets: self.offsets.as_deref().unwrap_or(offsets),
                    bytes: &strings.values()[first..last],
                })
            }
            Scalar::Timestamp => ScalarValuesRef::Timestamp(match &self.micros {
                Some(micros) => micros.values(),
                None => array.as_primitive::<TimestampMicrosecondType>().values(),
            }),
        }
    }
}

/// What one column needs owned: its validity bitmap when not byte-aligned,
/// its own values' needs, and for a list its rebased offsets and elements.
#[derive(Default)]
struct Owned {
    validity: Option<Vec<u8>>,
    scalar: OwnedScalar,
    list_offsets: Option<Vec<i32>>,
    /// A list's elements that its rows use, and what they need owned.
    elements: Option<(ArrayRef, OwnedScalar)>,
}

/// The bytes of a validity bitmap as a bitmap starting at bit 0: borrowed
/// when it starts on a byte boundary.
fn validity_bytes<'a>(nulls: &'a NullBuffer, owned: &'a Option<Vec<u8>>) -> &'a [u8] {
    match owned {
        Some(bits) => bits,
        None => {
            let bits = nulls.inner();
            let start = bits.offset() / 8;
            &bits.values()[start..start + bits.len().div_ceil(8)]
        }
    }
}

/// The components of the rows of a vector array (sliced or not).
fn vector_components(vectors: &FixedSizeListArray) -> &[f32] {
    let dimension = vectors.value_length() as usize;
    let range: Range<usize> = vectors.offset() * dimension..(vectors.offset() + vectors.len()) * dimension;
    &vectors.values().as_primitive::<Float32Type>().values()[range]
}

/// Calls `call` with the columns `fields` names (in that order) of `batch`
/// as a WIT batch. A missing column or one of another type is an error
/// naming it.
pub(crate) fn with_wit_batch<R>(
    batch: &RecordBatch,
    fields: &[FieldSpec],
    call: impl FnOnce(BatchRef<'_, ValuesRef<'_>>) -> R,
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
    let owned: Vec<Owned> = arrays
        .iter()
        .zip(fields)
        .map(|(array, field)| {
            let mut owned = Owned::default();
            if let Some(nulls) = array.nulls().filter(|n| n.null_count() > 0)
                && !nulls.offset().is_multiple_of(8)
            {
                owned.validity = Some(nulls.inner().sliced().as_slice().to_vec());
            }
            match field.data_type.scalar() {
                Some(scalar) => owned.scalar = OwnedScalar::prepare(*array, scalar),
                None => match field.data_type {
                    FeatureType::List(item) => {
                        let list = array.as_list::<i32>();
                        let offsets = list.value_offsets();
                        let (first, last) = (offsets[0], offsets[offsets.len() - 1]);
                        if first != 0 {
                            owned.list_offsets = Some(offsets.iter().map(|o| o - first).collect());
                        }
                        let elements = list.values().slice(first as usize, (last - first) as usize);
                        let needs = OwnedScalar::prepare(&elements, item);
                        owned.elements = Some((elements, needs));
                    }
                    FeatureType::Vector(_) => {}
                    FeatureType::Bool
                    | FeatureType::Int64
                    | FeatureType::Float32
                    | FeatureType::Float64
                    | FeatureType::Utf8
                    | FeatureType::Timestamp => unreachable!("scalars are prepared above"),
                },
            }
            owned
        })
        .collect();
    let columns = fields
        .iter()
        .zip(&arrays)
        .zip(&owned)
        .map(|((field, array), owned)| {
            let values = match field.data_type.scalar() {
                Some(scalar) => ValuesRef::Scalar(owned.scalar.values(*array, scalar)),
                None => match field.data_type {
                    FeatureType::List(item) => {
                        let (elements, needs) = owned.elements.as_ref().expect("prepared for every list");
                        ValuesRef::List(ListRef {
                            offsets: owned
                                .list_offsets
                                .as_deref()
                                .unwrap_or(array.as_list::<i32>().value_offsets()),
                            elements: needs.values(elements.as_ref(), item),
                        })
                    }
                    FeatureType::Vector(_) => ValuesRef::Vector(vector_components(array.as_fixed_size_list())),
                    FeatureType::Bool
                    | FeatureType::Int64
                    | FeatureType::Float32
                    | FeatureType::Float64
                    | FeatureType::Utf8
                    | FeatureType::Timestamp => unreachable!("scalars are lowered above"),
                },
            };
            ColumnRef {
                name: &field.name,
                values,
                validity: array
                    .nulls()
                    .filter(|n| n.null_count() > 0)
                    .map(|n| validity_bytes(n, &owned.validity)),
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
    let wrong_type = |actual: String| ConversionError::WrongType {
        column: name.clone(),
        expected: field.data_type,
        actual,
    };
    let invalid = |message: String| ConversionError::InvalidBuffer {
        column: name.clone(),
        message,
    };
    let array: ArrayRef = match (column.values, field.data_type) {
        (wit::Values::Scalar(values), data_type) => match data_type.scalar() {
            Some(scalar) => scalar_array(name, values, scalar, rows, nulls)?,
            None => return Err(wrong_type(format!("a scalar column ({})", scalar_name(&values)))),
        },
        (wit::Values::List(list), FeatureType::List(item)) => {
            if list.offsets.len() != rows + 1 {
                return Err(ConversionError::RowCount {
                    column: Some(name.clone()),
                    expected: rows,
                    actual: list.offsets.len().saturating_sub(1),
                });
            }
            let count = *list.offsets.last().expect("rows + 1 offsets") as usize;
            check_offsets(name, "list", &list.offsets, count)?;
            if list.offsets[0] != 0 {
                return Err(invalid(format!("list offsets start at {}, not 0", list.offsets[0])));
            }
            let elements = scalar_array(name, list.elements, item, count, None)?;
            Arc::new(
                ListArray::try_new(
                    Arc::new(Field::new_list_field(item.feature_type().arrow(), true)),
                    OffsetBuffer::new(ScalarBuffer::from(list.offsets)),
                    elements,
                    nulls,
                )
                .map_err(|e| invalid(e.to_string()))?,
            )
        }
        (wit::Values::Vector(components), FeatureType::Vector(dimension)) => {
            let dimension = dimension as usize;
            if components.len() != rows * dimension {
                return Err(invalid(format!(
                    "{} vector components for {rows} rows of vector<{dimension}>, which need {}",
                    components.len(),
                    rows * dimension
                )));
            }
            let present = |row: &usize| nulls.as_ref().is_none_or(|n| n.is_valid(*row));
            if let Some(row) = (0..rows).filter(present).find(|row| {
                components[row * dimension..(row + 1) * dimension]
                    .iter()
                    .any(|v| !v.is_finite())
            }) {
                return Err(invalid(format!(
                    "row {row}'s vector has a NaN or infinite component; vectors must be finite"
                )));
            }
            Arc::new(
                FixedSizeListArray::try_new(
                    Arc::new(Field::new_list_field(ArrowType::Float32, true)),
                    dimension as i32,
                    Arc::new(Float32Array::from(components)),
                    nulls,
                )
                .map_err(|e| invalid(e.to_string()))?,
            )
        }
        (wit::Values::List(_), FeatureType::Vector(_)) => return Err(wrong_type("a list column".into())),
        (wit::Values::Vector(_), FeatureType::List(_)) => return Err(wrong_type("a vector column".into())),
        (
            wit::Values::List(_) | wit::Values::Vector(_),
            FeatureType::Bool
            | FeatureType::Int64
            | FeatureType::Float32
            | FeatureType::Float64
            | FeatureType::Utf8
            | FeatureType::Timestamp,
        ) => return Err(wrong_type("a list or vector column".into())),
    };
    Ok(array)
}

/// One scalar buffer as an Arrow array of `rows` values (a column, or a
/// list's elements), checked.
fn scalar_array(
    name: &str,
    values: wit::ScalarValues,
    scalar: Scalar,
    rows: usize,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, ConversionError> {
    use wit::ScalarValues as V;
    let check_len = |len: usize| {
        if len == rows {
            Ok(())
        } else {
            Err(ConversionError::RowCount {
                column: Some(name.to_string()),
                expected: rows,
                actual: len,
            })
        }
    };
    Ok(match (values, scalar) {
        (V::Boolean(bits), Scalar::Bool) => {
            check_bitmap(name, "values", &bits, rows)?;
            Arc::new(BooleanArray::new(
                BooleanBuffer::new(Buffer::from_vec(bits), 0, rows),
                nulls,
            ))
        }
        (V::Int64(v), Scalar::Int64) => {
            check_len(v.len())?;
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls))
        }
        (V::Float32(mut v), Scalar::Float32) => {
            check_len(v.len())?;
            crate::determinism::canonicalize_f32(&mut v);
            Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls))
        }
        (V::Float64(mut v), Scalar::Float64) => {
            check_len(v.len())?;
            crate::determinism::canonicalize_f64(&mut v);
            Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls))
        }
        (V::Timestamp(v), Scalar::Timestamp) => {
            check_len(v.len())?;
            Arc::new(TimestampMicrosecondArray::new(ScalarBuffer::from(v), nulls).with_timezone(UTC))
        }
        (V::Utf8(s), Scalar::Utf8) => {
            check_len(s.offsets.len().saturating_sub(1))?;
            check_offsets(name, "utf8", &s.offsets, s.bytes.len())?;
            let offsets = OffsetBuffer::new(ScalarBuffer::from(s.offsets));
            Arc::new(
                StringArray::try_new(offsets, Buffer::from_vec(s.bytes), nulls).map_err(|e| {
                    ConversionError::InvalidBuffer {
                        column: name.to_string(),
                        message: e.to_string(),
                    }
                })?,
            )
        }
        (values, scalar) => {
            return Err(ConversionError::WrongType {
                column: name.to_string(),
                expected: scalar.feature_type(),
                actual: scalar_name(&values).to_string(),
            });
        }
    })
}

fn scalar_name(values: &wit::ScalarValues) -> &'static str {
    match values {
        wit::ScalarValues::Boolean(_) => "bool",
        wit::ScalarValues::Int64(_) => "int64",
        wit::ScalarValues::Float32(_) => "float32",
        wit::ScalarValues::Float64(_) => "float64",
        wit::ScalarValues::Utf8(_) => "utf8",
        wit::ScalarValues::Timestamp(_) => "timestamp",
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
fn check_offsets(column: &str, what: &str, offsets: &[i32], bytes: usize) -> Result<(), ConversionError> {
    let bad = |message: String| ConversionError::InvalidBuffer {
        column: column.to_string(),
        message,
    };
    match offsets.first() {
        None => return Err(bad(format!("{what} offsets are empty (need rows + 1 entries)"))),
        Some(&first) if first < 0 => return Err(bad(format!("{what} offsets start at {first}"))),
        Some(_) => {}
    }
    if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
        return Err(bad(format!("{what} offsets decrease at row {i}")));
    }
    let last = offsets[offsets.len() - 1] as usize;
    if last > bytes {
        return Err(bad(format!("{what} offsets end at {last}, past the {bytes} values")));
    }
    Ok(())
}

/// The owned WIT batch a guest would receive for `batch`: what lowering
/// into guest memory and lifting back out gives, without a guest: the codec
/// round-trip test lifts it with [`from_wit`]; an aggregator call (whose
/// typed bindings take an owned batch) sends it.
pub(crate) fn owned(batch: BatchRef<'_, ValuesRef<'_>>) -> wit::Batch {
    let scalar = |values: ScalarValuesRef<'_>| match values {
        ScalarValuesRef::Boolean(v) => wit::ScalarValues::Boolean(v.to_vec()),
        ScalarValuesRef::Int64(v) => wit::ScalarValues::Int64(v.to_vec()),
        ScalarValuesRef::Float32(v) => wit::ScalarValues::Float32(v.to_vec()),
        ScalarValuesRef::Float64(v) => wit::ScalarValues::Float64(v.to_vec()),
        ScalarValuesRef::Utf8(s) => wit::ScalarValues::Utf8(wit::Utf8Values {
            offsets: s.offsets.to_vec(),
            bytes: s.bytes.to_vec(),
        }),
        ScalarValuesRef::Timestamp(v) => wit::ScalarValues::Timestamp(v.to_vec()),
    };
    wit::Batch {
        num_rows: batch.num_rows,
        columns: batch
            .columns
            .into_iter()
            .map(|c| wit::Column {
                name: c.name.to_string(),
                values: match c.values {
                    ValuesRef::Scalar(values) => wit::Values::Scalar(scalar(values)),
                    ValuesRef::List(list) => wit::Values::List(wit::ListValues {
                        offsets: list.offsets.to_vec(),
                        elements: scalar(list.elements),
                    }),
                    ValuesRef::Vector(v) => wit::Values::Vector(v.to_vec()),
                },
                validity: c.validity.map(<[u8]>::to_vec),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Scalar;

    fn field(data_type: FeatureType) -> FieldSpec {
        FieldSpec {
            name: "x".into(),
            data_type,
            nullable: true,
        }
    }

    fn lift(values: wit::Values, data_type: FeatureType, rows: usize) -> Result<ArrayRef, String> {
        let column = wit::Column {
            name: "x".into(),
            values,
            validity: None,
        };
        column_from_wit(column, &field(data_type), rows).map_err(|e| e.to_string())
    }

    #[test]
    fn a_guest_vector_of_the_wrong_length_or_not_finite_is_refused_naming_the_row() {
        let refused = lift(wit::Values::Vector(vec![1.0; 5]), FeatureType::Vector(3), 2).unwrap_err();
        assert!(
            refused.contains("5 vector components for 2 rows of vector<3>"),
            "{refused}"
        );
        let refused = lift(
            wit::Values::Vector(vec![1.0, 2.0, 3.0, 0.0, f32::NAN, 0.0]),
            FeatureType::Vector(3),
            2,
        )
        .unwrap_err();
        assert!(
            refused.contains("row 1's vector") && refused.contains("finite"),
            "{refused}"
        );
        // A NaN under a null row is nobody's value.
        let column = wit::Column {
            name: "x".into(),
            values: wit::Values::Vector(vec![1.0, 2.0, 3.0, f32::NAN, 0.0, 0.0]),
            validity: Some(vec![0b01]),
        };
        assert!(column_from_wit(column, &field(FeatureType::Vector(3)), 2).is_ok());
        let refused = lift(wit::Values::Vector(vec![1.0; 6]), FeatureType::List(Scalar::Float32), 2).unwrap_err();
        assert!(refused.contains("a vector column"), "{refused}");
    }

    #[test]
    fn guest_list_offsets_are_checked_before_arrow_sees_them() {
        let list = |offsets: Vec<i32>, elements: Vec<i64>| {
            wit::Values::List(wit::ListValues {
                offsets,
                elements: wit::ScalarValues::Int64(elements),
            })
        };
        let int_list = FeatureType::List(Scalar::Int64);
        assert!(lift(list(vec![0, 2, 3], vec![1, 2, 3]), int_list, 2).is_ok());
        for (offsets, elements, problem) in [
            (vec![0, 2], vec![1, 2], "rows"),
            (vec![0, 3, 2], vec![1, 2, 3], "decrease"),
            (vec![1, 2, 3], vec![1, 2, 3], "start at 1"),
            (vec![0, 1, 3], vec![1, 2], "2 rows"),
        ] {
            let refused = lift(list(offsets.clone(), elements), int_list, 2).unwrap_err();
            assert!(refused.contains(problem), "{offsets:?}: {refused}");
        }
        let refused = lift(
            wit::Values::List(wit::ListValues {
                offsets: vec![0, 1],
                elements: wit::ScalarValues::Utf8(wit::Utf8Values {
                    offsets: vec![0, 1],
                    bytes: vec![b'a'],
                }),
            }),
            int_list,
            1,
        )
        .unwrap_err();
        assert!(refused.contains("int64") && refused.contains("utf8"), "{refused}");
    }
}
