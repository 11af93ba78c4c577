//! Arrow columns into store keys and rows: the write side of [`super::layout`],
//! shared by every writer (backfill now, push later).

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};

use super::layout::{RowWriter, push_int_key, push_str_key};
use crate::types::{FeatureType, FieldSpec};

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
    pub fn new(batch: &'a RecordBatch, schema: &[FieldSpec]) -> Result<Self, String> {
        let columns = schema
            .iter()
            .map(|f| {
                let array = batch
                    .column_by_name(&f.name)
                    .ok_or_else(|| format!("column `{}` is missing", f.name))?;
                Column::new(array, f.data_type).ok_or_else(|| format!("column `{}` is not {}", f.name, f.data_type))
            })
            .collect::<Result<_, String>>()?;
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

/// Encodes entity keys from a batch's join-key columns.
pub struct KeyEncoder<'a> {
    columns: Vec<Column<'a>>,
}

impl<'a> KeyEncoder<'a> {
    /// Resolves the join-key columns (int64 or utf8) in `batch`.
    pub fn new(batch: &'a RecordBatch, keys: &[FieldSpec]) -> Result<Self, String> {
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
                _ => unreachable!("join keys are int64 or utf8 (checked by the repo)"),
            }
        }
    }
}
