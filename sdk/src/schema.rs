//! Declared schemas, and the checks that make the SDK's guarantees hold.

use crate::bitmap::{all_valid, bitmap_set};
use crate::{Batch, Error, Output, Values};

/// The type of one scalar value: a list's elements (mirrors `scalar-type`
/// in the WIT contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    /// Booleans.
    Boolean,
    /// Signed 64-bit integers.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// UTF-8 strings.
    Utf8,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
}

impl ScalarType {
    /// The column type of one such value.
    pub fn data_type(self) -> DataType {
        match self {
            ScalarType::Boolean => DataType::Boolean,
            ScalarType::Int64 => DataType::Int64,
            ScalarType::Float32 => DataType::Float32,
            ScalarType::Float64 => DataType::Float64,
            ScalarType::Utf8 => DataType::Utf8,
            ScalarType::Timestamp => DataType::Timestamp,
        }
    }
}

/// Logical type of a column (mirrors `data-type` in the WIT contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// Booleans.
    Boolean,
    /// Signed 64-bit integers.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// UTF-8 strings.
    Utf8,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// A list of any length of one scalar type per row (`list<utf8>`);
    /// elements are never null.
    List(ScalarType),
    /// Exactly this many finite float32 per row (`vector<384>`): an
    /// embedding.
    Vector(u32),
}

impl DataType {
    /// The type's name as the feature repo spells it.
    pub fn name(self) -> String {
        match self {
            DataType::Boolean => "bool".into(),
            DataType::Int64 => "int64".into(),
            DataType::Float32 => "float32".into(),
            DataType::Float64 => "float64".into(),
            DataType::Utf8 => "utf8".into(),
            DataType::Timestamp => "timestamp".into(),
            DataType::List(item) => format!("list<{}>", item.data_type().name()),
            DataType::Vector(dimension) => format!("vector<{dimension}>"),
        }
    }

    /// The scalar type, for the six types that are one.
    pub fn scalar(self) -> Option<ScalarType> {
        Some(match self {
            DataType::Boolean => ScalarType::Boolean,
            DataType::Int64 => ScalarType::Int64,
            DataType::Float32 => ScalarType::Float32,
            DataType::Float64 => ScalarType::Float64,
            DataType::Utf8 => ScalarType::Utf8,
            DataType::Timestamp => ScalarType::Timestamp,
            DataType::List(_) | DataType::Vector(_) => return None,
        })
    }
}

/// A named, typed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

/// What a transform declares about itself; becomes the component's `describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Transform name.
    pub name: String,
    /// Transform version (free-form, e.g. semver).
    pub version: String,
    /// Input columns the transform reads.
    pub inputs: Vec<Field>,
    /// Output columns the transform writes, in this order.
    pub outputs: Vec<Field>,
}

impl Schema {
    /// Starts a schema with a name and version.
    pub fn new(name: &str, version: &str) -> Self {
        Schema {
            name: name.to_string(),
            version: version.to_string(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Declares a nullable input column.
    pub fn input(mut self, name: &str, data_type: DataType) -> Self {
        self.inputs.push(Field {
            name: name.to_string(),
            data_type,
            nullable: true,
        });
        self
    }

    /// Declares a nullable output column.
    pub fn output(mut self, name: &str, data_type: DataType) -> Self {
        self.outputs.push(Field {
            name: name.to_string(),
            data_type,
            nullable: true,
        });
        self
    }

    /// Declares an output column that is never null (failed rows excepted).
    pub fn output_not_null(mut self, name: &str, data_type: DataType) -> Self {
        self.outputs.push(Field {
            name: name.to_string(),
            data_type,
            nullable: false,
        });
        self
    }

    /// Every declared input must be present with its declared type.
    pub(crate) fn check_inputs(&self, input: &Batch) -> Result<(), Error> {
        for field in &self.inputs {
            let column = input.column(&field.name).ok_or_else(|| {
                Error(format!(
                    "input column `{}` ({}) is missing from the batch",
                    field.name,
                    field.data_type.name()
                ))
            })?;
            if column.data_type() != field.data_type {
                return Err(Error(format!(
                    "input column `{}` is {}, but the transform declares {}",
                    field.name,
                    column.data_type().name(),
                    field.data_type.name()
                )));
            }
            if column.len() != input.num_rows() {
                return Err(Error(format!(
                    "input column `{}` has {} rows, the batch has {}",
                    field.name,
                    column.len(),
                    input.num_rows()
                )));
            }
        }
        Ok(())
    }

    /// Puts outputs in declared order, checks types and lengths, and nulls
    /// every output of a failed row.
    pub(crate) fn finish_outputs(&self, num_rows: usize, mut output: Output) -> Result<Output, Error> {
        let mut ordered = Vec::with_capacity(self.outputs.len());
        for field in &self.outputs {
            let position = output
                .columns
                .iter()
                .position(|c| c.name() == field.name)
                .ok_or_else(|| {
                    Error(format!(
                        "transform bug: declared output `{}` was not produced",
                        field.name
                    ))
                })?;
            let mut column = output.columns.swap_remove(position);
            if column.data_type() != field.data_type {
                return Err(Error(format!(
                    "transform bug: output `{}` is {}, but the schema declares {}",
                    field.name,
                    column.data_type().name(),
                    field.data_type.name()
                )));
            }
            if column.len() != num_rows {
                return Err(Error(format!(
                    "transform bug: output `{}` has {} rows, the input has {}",
                    field.name,
                    column.len(),
                    num_rows
                )));
            }
            if !output.row_errors.is_empty() {
                let validity = column.validity.get_or_insert_with(|| all_valid(num_rows));
                for (row, _) in &output.row_errors {
                    if (*row as usize) < num_rows {
                        bitmap_set(validity, *row as usize, false);
                    }
                }
            }
            if let Values::Boolean(bits) = &mut column.values {
                crate::bitmap::clear_tail(bits, num_rows);
            }
            ordered.push(column);
        }
        if let Some(extra) = output.columns.first() {
            return Err(Error(format!(
                "transform bug: output `{}` is not declared in the schema",
                extra.name()
            )));
        }
        if let Some((row, _)) = output.row_errors.iter().find(|(row, _)| *row as usize >= num_rows) {
            return Err(Error(format!(
                "transform bug: row error for row {row}, the input has {num_rows} rows"
            )));
        }
        output.columns = ordered;
        output.num_rows = num_rows;
        Ok(output)
    }
}
