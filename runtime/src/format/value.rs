//! Stored rows <-> Arrow: the one conversion between the store's row
//! format ([`crate::format::layout`] says what the bytes are) and Arrow
//! columns, both ways. Writers (backfill, push) encode a batch's columns
//! into rows and entity keys with [`RowEncoder`] and [`KeyEncoder`];
//! readers (online reads, `dataset`, `verify`) decode rows with
//! [`decode_values`] and build Arrow columns from them with
//! [`ValueBuilder`].
//!
//! A new [`FeatureType`] touches this module in four places, each a
//! `match` on the type the compiler points at: [`Column`], [`Value`],
//! [`decode_fields`] and [`ValueBuilder`]. List elements and scalar
//! features share one encoding and one decoding per scalar type.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::Field;

use crate::format::layout::{CorruptRow, ItemWriter, ROW_HEADER, RowWriter, push_int_key, push_str_key, take};
use crate::types::{FeatureType, FieldSpec, Scalar, UTC};

/// A batch without a column the schema names, or with it of another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnMismatch {
    /// The column is not in the batch.
    #[error("column `{0}` is missing")]
    Missing(String),
    /// The column has another type.
    #[error("column `{column}` is not {expected}")]
    WrongType {
        /// The column.
        column: String,
        /// The type the schema says.
        expected: FeatureType,
    },
    /// A vector column of another dimension.
    #[error("column `{column}` has vectors of dimension {found}, but it is declared vector<{expected}>")]
    WrongDimension {
        /// The column.
        column: String,
        /// The declared dimension.
        expected: u32,
        /// The dimension the values have.
        found: i64,
    },
    /// A list element or vector component that the store cannot hold.
    #[error("column `{column}`, row {row}: {problem}")]
    BadElement {
        /// The column.
        column: String,
        /// The row, from 0.
        row: usize,
        /// What is wrong, and what to do.
        problem: &'static str,
    },
}

/// Typed access to one Arrow column, resolved once per batch.
enum Column<'a> {
    Bool(&'a arrow_array::BooleanArray),
    Int64(&'a arrow_array::PrimitiveArray<Int64Type>),
    Float32(&'a arrow_array::PrimitiveArray<Float32Type>),
    Float64(&'a arrow_array::PrimitiveArray<Float64Type>),
    Timestamp(&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>),
    Utf8(&'a arrow_array::StringArray),
    /// A list column and its elements, typed.
    List(&'a ListArray, Box<Column<'a>>),
    /// A vector column, its dimension and its components.
    Vector(&'a FixedSizeListArray, usize, &'a Float32Array),
}

impl<'a> Column<'a> {
    /// `array` must already have `data_type`'s Arrow type (microsecond timestamps).
    fn new(array: &'a ArrayRef, data_type: FeatureType) -> Option<Self> {
        Some(match data_type {
            FeatureType::Bool => Column::Bool(array.as_boolean_opt()?),
            FeatureType::Int64 => Column::Int64(array.as_primitive_opt()?),
            FeatureType::Float32 => Column::Float32(array.as_primitive_opt()?),
            FeatureType::Float64 => Column::Float64(array.as_primitive_opt()?),
            FeatureType::Timestamp => Column::Timestamp(array.as_primitive_opt()?),
            FeatureType::Utf8 => Column::Utf8(array.as_string_opt()?),
            FeatureType::List(item) => {
                let list = array.as_list_opt::<i32>()?;
                Column::List(list, Box::new(Column::new(list.values(), item.feature_type())?))
            }
            FeatureType::Vector(dimension) => {
                let vectors = array.as_fixed_size_list_opt()?;
                if vectors.value_length() != dimension as i32 {
                    return None;
                }
                Column::Vector(vectors, dimension as usize, vectors.values().as_primitive_opt()?)
            }
        })
    }

    fn array(&self) -> &dyn Array {
        match self {
            Column::Bool(a) => *a,
            Column::Int64(a) => *a,
            Column::Float32(a) => *a,
            Column::Float64(a) => *a,
            Column::Timestamp(a) => *a,
            Column::Utf8(a) => *a,
            Column::List(a, _) => *a,
            Column::Vector(a, _, _) => *a,
        }
    }

    /// Refuses what the store does not hold (see [`crate::types`]): a null
    /// list element or vector component, and a vector component that is
    /// not finite (a distance to it would be NaN). Scalars hold anything.
    fn check(&self, column: &str) -> Result<(), ColumnMismatch> {
        let bad = |row: usize, problem: &'static str| ColumnMismatch::BadElement {
            column: column.to_string(),
            row,
            problem,
        };
        match self {
            Column::Bool(_)
            | Column::Int64(_)
            | Column::Float32(_)
            | Column::Float64(_)
            | Column::Timestamp(_)
            | Column::Utf8(_) => Ok(()),
            Column::List(list, items) => {
                for row in (0..list.len()).filter(|r| list.is_valid(*r)) {
                    let range = list.value_offsets()[row] as usize..list.value_offsets()[row + 1] as usize;
                    if range.clone().any(|i| items.array().is_null(i)) {
                        return Err(bad(
                            row,
                            "a list element is null; lists hold no nulls (drop them, or use a sentinel value)",
                        ));
                    }
                }
                Ok(())
            }
            Column::Vector(vectors, dimension, components) => {
                for row in (0..vectors.len()).filter(|r| vectors.is_valid(*r)) {
                    let start = (vectors.offset() + row) * dimension;
                    let range = start..start + dimension;
                    if range.clone().any(|i| components.is_null(i)) {
                        return Err(bad(
                            row,
                            "a vector component is null; a vector is null as a whole or has every component",
                        ));
                    }
                    if components.values()[range].iter().any(|v| !v.is_finite()) {
                        return Err(bad(
                            row,
                            "a vector component is NaN or infinite; vectors must be finite so that distances are numbers",
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes one present value of a scalar column (a feature, or a list
    /// element) in its encoding.
    #[inline]
    fn write_item(&self, row: usize, out: &mut ItemWriter<'_>) {
        match self {
            Column::Bool(a) => out.bool(a.value(row)),
            Column::Int64(a) => out.i64(a.value(row)),
            Column::Timestamp(a) => out.i64(a.value(row)),
            Column::Float32(a) => out.f32(a.value(row)),
            Column::Float64(a) => out.f64(a.value(row)),
            Column::Utf8(a) => out.str(a.value(row)),
            Column::List(..) | Column::Vector(..) => unreachable!("list elements are scalars (checked by the type)"),
        }
    }

    /// Row `row` of a present value, decoded.
    fn value(&self, row: usize) -> Value {
        match self {
            Column::Bool(a) => Value::Bool(a.value(row)),
            Column::Int64(a) => Value::Int64(a.value(row)),
            Column::Timestamp(a) => Value::Timestamp(a.value(row)),
            Column::Float32(a) => Value::Float32(a.value(row)),
            Column::Float64(a) => Value::Float64(a.value(row)),
            Column::Utf8(a) => Value::Utf8(a.value(row).to_string()),
            Column::List(list, items) => {
                let offsets = list.value_offsets();
                Value::List(
                    (offsets[row] as usize..offsets[row + 1] as usize)
                        .map(|i| items.value(i))
                        .collect(),
                )
            }
            Column::Vector(vectors, dimension, components) => {
                let start = (vectors.offset() + row) * dimension;
                Value::Vector(components.values()[start..start + dimension].to_vec())
            }
        }
    }
}

/// Encodes the features of a batch, row by row, in a view's stored order.
pub struct RowEncoder<'a> {
    columns: Vec<Column<'a>>,
}

impl<'a> RowEncoder<'a> {
    /// Resolves `schema`'s columns in `batch`; `None` names the first missing
    /// or mistyped column.
    pub fn new(batch: &'a RecordBatch, schema: &[FieldSpec]) -> Result<Self, ColumnMismatch> {
        // Callers check the batch against the schema first (a transform's
        // output is checked on the way out of the guest), so a miss here is
        // a bug in the caller; the message names the column all the same.
        let arrays = schema
            .iter()
            .map(|f| {
                batch
                    .column_by_name(&f.name)
                    .ok_or_else(|| ColumnMismatch::Missing(f.name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::typed(arrays.into_iter().zip(schema))
    }

    /// As [`RowEncoder::new`], from columns already picked: `columns[i]` is
    /// `schema[i]`'s.
    pub fn from_columns(columns: &'a [ArrayRef], schema: &[FieldSpec]) -> Result<Self, ColumnMismatch> {
        Self::typed(columns.iter().zip(schema))
    }

    fn typed<'f>(columns: impl Iterator<Item = (&'a ArrayRef, &'f FieldSpec)>) -> Result<Self, ColumnMismatch> {
        let columns = columns
            .map(|(array, f)| {
                let column = typed_column(array, f)?;
                column.check(&f.name)?;
                Ok(column)
            })
            .collect::<Result<_, _>>()?;
        Ok(RowEncoder { columns })
    }

    /// Number of features per row.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Writes row `row`'s features.
    #[inline]
    pub fn write(&self, row: usize, out: &mut RowWriter<'_>) {
        for column in &self.columns {
            if column.array().is_null(row) {
                out.null();
                continue;
            }
            match column {
                Column::Bool(_)
                | Column::Int64(_)
                | Column::Timestamp(_)
                | Column::Float32(_)
                | Column::Float64(_)
                | Column::Utf8(_) => column.write_item(row, &mut out.scalar()),
                Column::List(list, items) => {
                    let offsets = list.value_offsets();
                    let range = offsets[row] as usize..offsets[row + 1] as usize;
                    let mut elements = out.list(range.len());
                    for i in range {
                        items.write_item(i, &mut elements);
                    }
                }
                Column::Vector(vectors, dimension, components) => {
                    let start = (vectors.offset() + row) * dimension;
                    out.vector(&components.values()[start..start + dimension]);
                }
            }
        }
    }
}

/// `array` typed as `field` says, or an error naming the column and, for a
/// vector, both dimensions.
fn typed_column<'a>(array: &'a ArrayRef, field: &FieldSpec) -> Result<Column<'a>, ColumnMismatch> {
    Column::new(array, field.data_type).ok_or_else(|| match (field.data_type, array.as_fixed_size_list_opt()) {
        (FeatureType::Vector(expected), Some(found)) => ColumnMismatch::WrongDimension {
            column: field.name.clone(),
            expected,
            found: found.value_length() as i64,
        },
        _ => ColumnMismatch::WrongType {
            column: field.name.clone(),
            expected: field.data_type,
        },
    })
}

/// Reads Arrow columns (typed as `schema` says) into values, row by row:
/// the events of an aggregation view ([`crate::aggregate`]).
pub fn decode_columns(columns: &[ArrayRef], schema: &[FieldSpec]) -> Result<Vec<Vec<Value>>, ColumnMismatch> {
    let typed: Vec<Column<'_>> = columns
        .iter()
        .zip(schema)
        .map(|(array, f)| typed_column(array, f))
        .collect::<Result<_, _>>()?;
    let rows = columns.first().map_or(0, |c| c.len());
    Ok((0..rows)
        .map(|row| {
            typed
                .iter()
                .map(|column| {
                    if column.array().is_null(row) {
                        return Value::Null;
                    }
                    column.value(row)
                })
                .collect()
        })
        .collect())
}

/// Encodes entity keys from a batch's join-key columns.
pub struct KeyEncoder<'a> {
    columns: Vec<Column<'a>>,
}

impl<'a> KeyEncoder<'a> {
    /// Resolves the join-key columns (int64 or utf8) in `batch`.
    pub fn new(batch: &'a RecordBatch, keys: &[FieldSpec]) -> Result<Self, ColumnMismatch> {
        let encoder = RowEncoder::new(batch, keys)?;
        Ok(KeyEncoder {
            columns: encoder.columns,
        })
    }

    /// Whether any join key of `row` is null (such a row has no entity).
    #[inline]
    pub fn is_null(&self, row: usize) -> bool {
        self.columns.iter().any(|c| c.array().is_null(row))
    }

    /// Appends row `row`'s entity key.
    #[inline]
    pub fn write(&self, row: usize, out: &mut Vec<u8>) {
        for column in &self.columns {
            match column {
                Column::Int64(a) => push_int_key(out, a.value(row)),
                Column::Utf8(a) => push_str_key(out, a.value(row)),
                Column::Bool(_)
                | Column::Float32(_)
                | Column::Float64(_)
                | Column::Timestamp(_)
                | Column::List(..)
                | Column::Vector(..) => {
                    unreachable!("join keys are int64 or utf8 (checked by the repo)")
                }
            }
        }
    }
}

/// One feature value, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An int64.
    Int64(i64),
    /// A float32 (compare by bits for bit-identity).
    Float32(f32),
    /// A float64 (compare by bits for bit-identity).
    Float64(f64),
    /// A string.
    Utf8(String),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// A list of scalar values, none of them null.
    List(Vec<Value>),
    /// A vector's components (finite, compare by bits).
    Vector(Vec<f32>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Writes one decoded value: the inverse of [`decode_values`] for one
/// feature, used where values were decoded rather than read from Arrow
/// (aggregation events and states).
pub fn write_value(w: &mut RowWriter<'_>, value: &Value) {
    match value {
        Value::Null => w.null(),
        Value::Bool(_)
        | Value::Int64(_)
        | Value::Timestamp(_)
        | Value::Float32(_)
        | Value::Float64(_)
        | Value::Utf8(_) => write_scalar(&mut w.scalar(), value),
        Value::List(elements) => {
            let mut out = w.list(elements.len());
            for element in elements {
                write_scalar(&mut out, element);
            }
        }
        Value::Vector(components) => w.vector(components),
    }
}

fn write_scalar(out: &mut ItemWriter<'_>, value: &Value) {
    match value {
        Value::Bool(v) => out.bool(*v),
        Value::Int64(v) | Value::Timestamp(v) => out.i64(*v),
        Value::Float32(v) => out.f32(*v),
        Value::Float64(v) => out.f64(*v),
        Value::Utf8(v) => out.str(v),
        Value::Null | Value::List(_) | Value::Vector(_) => {
            unreachable!("list elements are scalars, never null (checked by the writers)")
        }
    }
}

/// Decodes a row's values in schema order.
pub fn decode_values(row: &[u8], schema: &[FieldSpec]) -> Result<Vec<Value>, CorruptRow> {
    let mut values = Vec::with_capacity(schema.len());
    decode_values_into(row, schema, &mut values)?;
    Ok(values)
}

/// [`decode_values`] into `values` (cleared first): a loop over many rows
/// reuses one vector.
pub fn decode_values_into(row: &[u8], schema: &[FieldSpec], values: &mut Vec<Value>) -> Result<(), CorruptRow> {
    let mut rest = row;
    take(&mut rest, ROW_HEADER)?;
    values.clear();
    decode_fields_into(&mut rest, schema, values)?;
    if !rest.is_empty() {
        return Err(CorruptRow("trailing bytes after the last feature"));
    }
    Ok(())
}

/// Decodes a validity bitmap and the values after it (a row without its
/// header), advancing `rest` past them.
pub fn decode_fields(rest: &mut &[u8], schema: &[FieldSpec]) -> Result<Vec<Value>, CorruptRow> {
    let mut values = Vec::with_capacity(schema.len());
    decode_fields_into(rest, schema, &mut values)?;
    Ok(values)
}

/// [`decode_fields`], appending to `values`.
fn decode_fields_into(rest: &mut &[u8], schema: &[FieldSpec], values: &mut Vec<Value>) -> Result<(), CorruptRow> {
    let validity = take(rest, schema.len().div_ceil(8))?;
    for (i, field) in schema.iter().enumerate() {
        if validity[i / 8] & (1 << (i % 8)) == 0 {
            values.push(Value::Null);
            continue;
        }
        values.push(match field.data_type.scalar() {
            Some(scalar) => decode_scalar(rest, scalar)?,
            None => match field.data_type {
                FeatureType::List(item) => {
                    let count = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize;
                    // Every element takes at least one byte: a count past the
                    // bytes left is corruption, not an allocation to attempt.
                    if count > rest.len() {
                        return Err(CorruptRow("list length past the end of the row"));
                    }
                    Value::List(
                        (0..count)
                            .map(|_| decode_scalar(rest, item))
                            .collect::<Result<_, _>>()?,
                    )
                }
                FeatureType::Vector(dimension) => Value::Vector(
                    take(rest, dimension as usize * 4)?
                        .chunks_exact(4)
                        .map(|c| f32::from_bits(u32::from_le_bytes(c.try_into().expect("4 bytes"))))
                        .collect(),
                ),
                FeatureType::Bool
                | FeatureType::Int64
                | FeatureType::Float32
                | FeatureType::Float64
                | FeatureType::Utf8
                | FeatureType::Timestamp => unreachable!("scalars are decoded above"),
            },
        });
    }
    Ok(())
}

/// Decodes one scalar (a feature, or a list element), advancing `rest`.
fn decode_scalar(rest: &mut &[u8], scalar: Scalar) -> Result<Value, CorruptRow> {
    let eight = |rest: &mut &[u8]| -> Result<[u8; 8], CorruptRow> { Ok(take(rest, 8)?.try_into().expect("8 bytes")) };
    Ok(match scalar {
        Scalar::Bool => Value::Bool(take(rest, 1)?[0] != 0),
        Scalar::Int64 => Value::Int64(i64::from_le_bytes(eight(rest)?)),
        Scalar::Timestamp => Value::Timestamp(i64::from_le_bytes(eight(rest)?)),
        Scalar::Float64 => Value::Float64(f64::from_bits(u64::from_le_bytes(eight(rest)?))),
        Scalar::Float32 => Value::Float32(f32::from_bits(u32::from_le_bytes(
            take(rest, 4)?.try_into().expect("4 bytes"),
        ))),
        Scalar::Utf8 => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize;
            let text = std::str::from_utf8(take(rest, len)?).map_err(|_| CorruptRow("string is not UTF-8"))?;
            Value::Utf8(text.to_string())
        }
    })
}

/// Builds an Arrow array of one [`FeatureType`] from decoded store values
/// (or from values parsed by [`crate::codec::json`]).
pub enum ValueBuilder {
    /// Booleans.
    Bool(BooleanBuilder),
    /// Int64s.
    Int64(Int64Builder),
    /// Float32s.
    Float32(Float32Builder),
    /// Float64s.
    Float64(Float64Builder),
    /// Strings.
    Utf8(StringBuilder),
    /// Timestamps, microseconds UTC.
    Timestamp(TimestampMicrosecondBuilder),
    /// Lists: offsets, the elements' builder, and which lists are present.
    List {
        /// The element type.
        item: Scalar,
        /// `offsets[i]..offsets[i + 1]` are list `i`'s elements.
        offsets: Vec<i32>,
        /// Every list's elements, in order.
        items: Box<ValueBuilder>,
        /// Which lists are present.
        validity: NullBufferBuilder,
    },
    /// Vectors: components row after row (zeros under a null row).
    Vector {
        /// The dimension.
        dimension: u32,
        /// `dimension` components per row.
        components: Vec<f32>,
        /// Which vectors are present.
        validity: NullBufferBuilder,
    },
}

impl ValueBuilder {
    /// A builder for `rows` values of `data_type`.
    pub fn new(data_type: FeatureType, rows: usize) -> Self {
        match data_type {
            FeatureType::Bool => ValueBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            FeatureType::Int64 => ValueBuilder::Int64(Int64Builder::with_capacity(rows)),
            FeatureType::Float32 => ValueBuilder::Float32(Float32Builder::with_capacity(rows)),
            FeatureType::Float64 => ValueBuilder::Float64(Float64Builder::with_capacity(rows)),
            FeatureType::Utf8 => ValueBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 8)),
            FeatureType::Timestamp => {
                ValueBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(UTC))
            }
            FeatureType::List(item) => ValueBuilder::List {
                item,
                offsets: {
                    let mut offsets = Vec::with_capacity(rows + 1);
                    offsets.push(0);
                    offsets
                },
                items: Box::new(ValueBuilder::new(item.feature_type(), rows)),
                validity: NullBufferBuilder::new(rows),
            },
            FeatureType::Vector(dimension) => ValueBuilder::Vector {
                dimension,
                components: Vec::with_capacity(rows * dimension as usize),
                validity: NullBufferBuilder::new(rows),
            },
        }
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        match self {
            ValueBuilder::Bool(b) => b.append_null(),
            ValueBuilder::Int64(b) => b.append_null(),
            ValueBuilder::Float32(b) => b.append_null(),
            ValueBuilder::Float64(b) => b.append_null(),
            ValueBuilder::Utf8(b) => b.append_null(),
            ValueBuilder::Timestamp(b) => b.append_null(),
            ValueBuilder::List { offsets, validity, .. } => {
                offsets.push(*offsets.last().expect("offsets start with 0"));
                validity.append_null();
            }
            ValueBuilder::Vector {
                dimension,
                components,
                validity,
            } => {
                components.resize(components.len() + *dimension as usize, 0.0);
                validity.append_null();
            }
        }
    }

    /// Appends `value`, which has this builder's type (it was decoded with
    /// the same schema); [`Value::Null`] appends a null.
    pub fn push(&mut self, value: Value) {
        match (self, value) {
            (ValueBuilder::Bool(b), Value::Bool(v)) => b.append_value(v),
            (ValueBuilder::Int64(b), Value::Int64(v)) => b.append_value(v),
            (ValueBuilder::Float32(b), Value::Float32(v)) => b.append_value(v),
            (ValueBuilder::Float64(b), Value::Float64(v)) => b.append_value(v),
            (ValueBuilder::Utf8(b), Value::Utf8(v)) => b.append_value(v),
            (ValueBuilder::Timestamp(b), Value::Timestamp(v)) => b.append_value(v),
            (
                ValueBuilder::List {
                    offsets,
                    items,
                    validity,
                    ..
                },
                Value::List(values),
            ) => {
                let end = offsets.last().expect("offsets start with 0") + values.len() as i32;
                for value in values {
                    items.push(value);
                }
                offsets.push(end);
                validity.append_non_null();
            }
            (
                ValueBuilder::Vector {
                    dimension,
                    components,
                    validity,
                },
                Value::Vector(values),
            ) if values.len() == *dimension as usize => {
                components.extend_from_slice(&values);
                validity.append_non_null();
            }
            (builder, value) => {
                debug_assert_eq!(value, Value::Null, "a value of another type than its column");
                builder.push_null()
            }
        }
    }

    /// The array built.
    pub fn finish(self) -> ArrayRef {
        match self {
            ValueBuilder::Bool(mut b) => Arc::new(b.finish()),
            ValueBuilder::Int64(mut b) => Arc::new(b.finish()),
            ValueBuilder::Float32(mut b) => Arc::new(b.finish()),
            ValueBuilder::Float64(mut b) => Arc::new(b.finish()),
            ValueBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ValueBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ValueBuilder::List {
                item,
                offsets,
                items,
                mut validity,
            } => Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(item.feature_type().arrow(), true)),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                items.finish(),
                validity.finish(),
            )),
            ValueBuilder::Vector {
                dimension,
                components,
                mut validity,
            } => Arc::new(FixedSizeListArray::new(
                Arc::new(Field::new_list_field(arrow_schema::DataType::Float32, true)),
                dimension as i32,
                Arc::new(Float32Array::from(components)),
                validity.finish(),
            )),
        }
    }
}
