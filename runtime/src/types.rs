//! The feature value types, shared by the feature repo, the store, the WIT
//! contract and Arrow. One enum, one mapping to each of the others.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::wit;

/// A feature or column type, as written in `skewless.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    /// Booleans.
    Bool,
    /// Signed 64-bit integers.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// UTF-8 strings.
    #[serde(alias = "string")]
    Utf8,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
}

/// The timezone every timestamp the runtime produces carries.
pub const UTC: &str = "UTC";

impl FeatureType {
    /// All types, for error messages and tests.
    pub const ALL: [FeatureType; 6] = [
        FeatureType::Bool,
        FeatureType::Int64,
        FeatureType::Float32,
        FeatureType::Float64,
        FeatureType::Utf8,
        FeatureType::Timestamp,
    ];

    /// The name used in `skewless.toml` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            FeatureType::Bool => "bool",
            FeatureType::Int64 => "int64",
            FeatureType::Float32 => "float32",
            FeatureType::Float64 => "float64",
            FeatureType::Utf8 => "utf8",
            FeatureType::Timestamp => "timestamp",
        }
    }

    /// The Arrow type the runtime uses for this type.
    pub fn arrow(self) -> ArrowType {
        match self {
            FeatureType::Bool => ArrowType::Boolean,
            FeatureType::Int64 => ArrowType::Int64,
            FeatureType::Float32 => ArrowType::Float32,
            FeatureType::Float64 => ArrowType::Float64,
            FeatureType::Utf8 => ArrowType::Utf8,
            FeatureType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
        }
    }

    /// The type an Arrow column maps onto, if any. Timestamps of any unit
    /// map onto `Timestamp` (they are converted to microseconds on the way in);
    /// timestamps without a timezone are taken as UTC.
    pub fn from_arrow(data_type: &ArrowType) -> Option<FeatureType> {
        Some(match data_type {
            ArrowType::Boolean => FeatureType::Bool,
            ArrowType::Int64 => FeatureType::Int64,
            ArrowType::Float32 => FeatureType::Float32,
            ArrowType::Float64 => FeatureType::Float64,
            ArrowType::Utf8 => FeatureType::Utf8,
            ArrowType::Timestamp(_, tz) if tz.as_deref().is_none_or(is_utc) => FeatureType::Timestamp,
            _ => return None,
        })
    }

    pub(crate) fn from_wit(data_type: wit::DataType) -> FeatureType {
        match data_type {
            wit::DataType::Boolean => FeatureType::Bool,
            wit::DataType::Int64 => FeatureType::Int64,
            wit::DataType::Float32 => FeatureType::Float32,
            wit::DataType::Float64 => FeatureType::Float64,
            wit::DataType::Utf8 => FeatureType::Utf8,
            wit::DataType::Timestamp => FeatureType::Timestamp,
        }
    }
}

/// Whether a timezone string names UTC.
pub(crate) fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
}

impl fmt::Display for FeatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named, typed column of a transform's or a view's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Column name.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub data_type: FeatureType,
    /// Whether nulls may appear.
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl FieldSpec {
    /// The Arrow field for this column.
    pub fn arrow(&self) -> arrow_schema::Field {
        arrow_schema::Field::new(&self.name, self.data_type.arrow(), true)
    }
}

/// An Arrow schema from field specs (every field nullable: a failed row is null).
pub fn arrow_schema(fields: &[FieldSpec]) -> arrow_schema::SchemaRef {
    Arc::new(arrow_schema::Schema::new(
        fields.iter().map(FieldSpec::arrow).collect::<Vec<_>>(),
    ))
}
