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
//! [`decode_fields`] and [`ValueBuilder`].

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};

use crate::format::layout::{CorruptRow, ROW_HEADER, RowWriter, push_int_key, push_str_key, take};
use crate::types::{FeatureType, FieldSpec, UTC};

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
}

/// Typed access to one Arrow column, resolved once per batch.
enum Column<'a> {
    Bool(&'a arrow_array::BooleanArray),
    Int64(&'a arrow_array::PrimitiveArray<Int64Type>),
    Float32(&'a arrow_array::PrimitiveArray<Float32Type>),
    Float64(&'a arrow_array::PrimitiveArray<Float64Type>),
    Timestamp(&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>),
    Utf8(&'a arrow_array::StringArray),
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
                Column::new(array, f.data_type).ok_or_else(|| ColumnMismatch::WrongType {
                    column: f.name.clone(),
                    expected: f.data_type,
                })
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
                Column::Bool(a) => out.bool(a.value(row)),
                Column::Int64(a) => out.i64(a.value(row)),
                Column::Timestamp(a) => out.i64(a.value(row)),
                Column::Float32(a) => out.f32(a.value(row)),
                Column::Float64(a) => out.f64(a.value(row)),
                Column::Utf8(a) => out.str(a.value(row)),
            }
        }
    }
}

/// Reads Arrow columns (typed as `schema` says) into values, row by row:
/// the events of an aggregation view ([`crate::aggregate`]).
pub fn decode_columns(columns: &[ArrayRef], schema: &[FieldSpec]) -> Result<Vec<Vec<Value>>, ColumnMismatch> {
    let typed: Vec<Column<'_>> = columns
        .iter()
        .zip(schema)
        .map(|(array, f)| {
            Column::new(array, f.data_type).ok_or_else(|| ColumnMismatch::WrongType {
                column: f.name.clone(),
                expected: f.data_type,
            })
        })
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
                    match column {
                        Column::Bool(a) => Value::Bool(a.value(row)),
                        Column::Int64(a) => Value::Int64(a.value(row)),
                        Column::Timestamp(a) => Value::Timestamp(a.value(row)),
                        Column::Float32(a) => Value::Float32(a.value(row)),
                        Column::Float64(a) => Value::Float64(a.value(row)),
                        Column::Utf8(a) => Value::Utf8(a.value(row).to_string()),
                    }
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
                Column::Bool(_) | Column::Float32(_) | Column::Float64(_) | Column::Timestamp(_) => {
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
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
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
        let eight =
            |rest: &mut &[u8]| -> Result<[u8; 8], CorruptRow> { Ok(take(rest, 8)?.try_into().expect("8 bytes")) };
        values.push(match field.data_type {
            FeatureType::Bool => Value::Bool(take(rest, 1)?[0] != 0),
            FeatureType::Int64 => Value::Int64(i64::from_le_bytes(eight(rest)?)),
            FeatureType::Timestamp => Value::Timestamp(i64::from_le_bytes(eight(rest)?)),
            FeatureType::Float64 => Value::Float64(f64::from_bits(u64::from_le_bytes(eight(rest)?))),
            FeatureType::Float32 => Value::Float32(f32::from_bits(u32::from_le_bytes(
                take(rest, 4)?.try_into().expect("4 bytes"),
            ))),
            FeatureType::Utf8 => {
                let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize;
                let text = std::str::from_utf8(take(rest, len)?).map_err(|_| CorruptRow("string is not UTF-8"))?;
                Value::Utf8(text.to_string())
            }
        });
    }
    Ok(())
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
        }
    }
}
