//! The feature value types, shared by the feature repo, the store, the WIT
//! contract and Arrow. One enum, one mapping to each of the others.
//!
//! Six scalar types, lists of any scalar ([`FeatureType::List`], Arrow
//! `List`) and fixed-size float32 vectors ([`FeatureType::Vector`], Arrow
//! `FixedSizeList`): embeddings, whose dimension is part of the type. In
//! `skewless.toml` they are written `list<utf8>` and `vector<384>`.
//!
//! Invariants every writer enforces ([`crate::format::value::RowEncoder`]):
//! list elements and vector components are never null, and vector
//! components are finite, so that a distance between two stored vectors is
//! always a number.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, Field, TimeUnit};

use serde::{Deserialize, Serialize};

use crate::wit;

/// The largest vector dimension a view may declare: 64k float32 are 256 KiB
/// per value, far past any embedding model in use.
pub const MAX_DIMENSION: u32 = 65_536;

/// A type a list holds: one of the six scalar feature types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// Booleans.
    Bool,
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

impl Scalar {
    pub(crate) fn from_wit(scalar: wit::ScalarType) -> Scalar {
        match scalar {
            wit::ScalarType::Boolean => Scalar::Bool,
            wit::ScalarType::Int64 => Scalar::Int64,
            wit::ScalarType::Float32 => Scalar::Float32,
            wit::ScalarType::Float64 => Scalar::Float64,
            wit::ScalarType::Utf8 => Scalar::Utf8,
            wit::ScalarType::Timestamp => Scalar::Timestamp,
        }
    }

    /// All scalar types.
    pub const ALL: [Scalar; 6] = [
        Scalar::Bool,
        Scalar::Int64,
        Scalar::Float32,
        Scalar::Float64,
        Scalar::Utf8,
        Scalar::Timestamp,
    ];

    /// The feature type of one value.
    pub fn feature_type(self) -> FeatureType {
        match self {
            Scalar::Bool => FeatureType::Bool,
            Scalar::Int64 => FeatureType::Int64,
            Scalar::Float32 => FeatureType::Float32,
            Scalar::Float64 => FeatureType::Float64,
            Scalar::Utf8 => FeatureType::Utf8,
            Scalar::Timestamp => FeatureType::Timestamp,
        }
    }
}

/// A feature or column type, as written in `skewless.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureType {
    /// Booleans.
    Bool,
    /// Signed 64-bit integers.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// UTF-8 strings (`utf8`, or `string`).
    Utf8,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    /// A list of any length of one scalar type (`list<int64>`); its
    /// elements are never null.
    List(Scalar),
    /// Exactly `n` finite float32 (`vector<n>`): an embedding.
    Vector(u32),
}

/// The timezone every timestamp the runtime produces carries.
pub const UTC: &str = "UTC";

impl FeatureType {
    /// Every scalar type, a list of each, and a vector: what the codecs'
    /// round-trip tests send through every path.
    pub const ALL: [FeatureType; 13] = [
        FeatureType::Bool,
        FeatureType::Int64,
        FeatureType::Float32,
        FeatureType::Float64,
        FeatureType::Utf8,
        FeatureType::Timestamp,
        FeatureType::List(Scalar::Bool),
        FeatureType::List(Scalar::Int64),
        FeatureType::List(Scalar::Float32),
        FeatureType::List(Scalar::Float64),
        FeatureType::List(Scalar::Utf8),
        FeatureType::List(Scalar::Timestamp),
        FeatureType::Vector(3),
    ];

    /// The scalar type, for the six types that are one.
    pub fn scalar(self) -> Option<Scalar> {
        Some(match self {
            FeatureType::Bool => Scalar::Bool,
            FeatureType::Int64 => Scalar::Int64,
            FeatureType::Float32 => Scalar::Float32,
            FeatureType::Float64 => Scalar::Float64,
            FeatureType::Utf8 => Scalar::Utf8,
            FeatureType::Timestamp => Scalar::Timestamp,
            FeatureType::List(_) | FeatureType::Vector(_) => return None,
        })
    }

    /// A vector's dimension; `None` for every other type.
    pub fn dimension(self) -> Option<u32> {
        match self {
            FeatureType::Vector(dimension) => Some(dimension),
            FeatureType::Bool
            | FeatureType::Int64
            | FeatureType::Float32
            | FeatureType::Float64
            | FeatureType::Utf8
            | FeatureType::Timestamp
            | FeatureType::List(_) => None,
        }
    }

    /// The Arrow type the runtime uses for this type. List elements are
    /// typed nullable, as pyarrow and pandas write them; the writers refuse
    /// an actual null element.
    pub fn arrow(self) -> ArrowType {
        match self {
            FeatureType::Bool => ArrowType::Boolean,
            FeatureType::Int64 => ArrowType::Int64,
            FeatureType::Float32 => ArrowType::Float32,
            FeatureType::Float64 => ArrowType::Float64,
            FeatureType::Utf8 => ArrowType::Utf8,
            FeatureType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
            FeatureType::List(item) => {
                ArrowType::List(Arc::new(Field::new_list_field(item.feature_type().arrow(), true)))
            }
            FeatureType::Vector(dimension) => ArrowType::FixedSizeList(
                Arc::new(Field::new_list_field(ArrowType::Float32, true)),
                dimension as i32,
            ),
        }
    }

    /// The type an Arrow column maps onto, if any. Timestamps of any unit
    /// map onto `Timestamp` (they are converted to microseconds on the way in);
    /// timestamps without a timezone are taken as UTC. Lists of any element
    /// field name or nullability map onto `List`; [`FeatureType::conforms`]
    /// says whether a column needs a cast to the runtime's own type.
    pub fn from_arrow(data_type: &ArrowType) -> Option<FeatureType> {
        Some(match data_type {
            ArrowType::Boolean => FeatureType::Bool,
            ArrowType::Int64 => FeatureType::Int64,
            ArrowType::Float32 => FeatureType::Float32,
            ArrowType::Float64 => FeatureType::Float64,
            ArrowType::Utf8 => FeatureType::Utf8,
            ArrowType::Timestamp(_, tz) if tz.as_deref().is_none_or(is_utc) => FeatureType::Timestamp,
            ArrowType::List(item) => FeatureType::List(FeatureType::from_arrow(item.data_type())?.scalar()?),
            ArrowType::FixedSizeList(item, n) if *item.data_type() == ArrowType::Float32 && *n > 0 => {
                FeatureType::Vector(*n as u32)
            }
            _ => return None,
        })
    }

    pub(crate) fn from_wit(data_type: wit::DataType) -> FeatureType {
        match data_type {
            wit::DataType::Scalar(scalar) => Scalar::from_wit(scalar).feature_type(),
            wit::DataType::List(item) => FeatureType::List(Scalar::from_wit(item)),
            wit::DataType::Vector(dimension) => FeatureType::Vector(dimension),
        }
    }

    /// Parses a type as written in `skewless.toml`: a scalar name,
    /// `list<SCALAR>` or `vector<DIMENSION>`.
    pub fn parse(text: &str) -> Result<FeatureType, String> {
        let scalar = |name: &str| -> Option<FeatureType> {
            Some(match name {
                "bool" => FeatureType::Bool,
                "int64" => FeatureType::Int64,
                "float32" => FeatureType::Float32,
                "float64" => FeatureType::Float64,
                "utf8" | "string" => FeatureType::Utf8,
                "timestamp" => FeatureType::Timestamp,
                _ => return None,
            })
        };
        let text = text.trim();
        let inside = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|t| t.strip_suffix('>'))
                .map(str::trim)
        };
        if let Some(item) = inside("list<") {
            return scalar(item)
                .and_then(FeatureType::scalar)
                .map(FeatureType::List)
                .ok_or_else(|| {
                    format!("`{text}`: a list holds one of bool, int64, float32, float64, utf8 or timestamp")
                });
        }
        if let Some(dimension) = inside("vector<") {
            return match dimension.parse::<u32>() {
                Ok(n) if (1..=MAX_DIMENSION).contains(&n) => Ok(FeatureType::Vector(n)),
                _ => Err(format!(
                    "`{text}`: a vector's dimension is a whole number from 1 to {MAX_DIMENSION}, as in `vector<384>`"
                )),
            };
        }
        scalar(text).ok_or_else(|| {
            format!(
                "unknown type `{text}`: expected bool, int64, float32, float64, utf8, timestamp, list<TYPE> or vector<DIMENSION>"
            )
        })
    }
}

/// Whether a timezone string names UTC.
pub(crate) fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "+00:00" | "Z" | "Etc/UTC")
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.feature_type().fmt(f)
    }
}

impl fmt::Display for FeatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureType::Bool => f.write_str("bool"),
            FeatureType::Int64 => f.write_str("int64"),
            FeatureType::Float32 => f.write_str("float32"),
            FeatureType::Float64 => f.write_str("float64"),
            FeatureType::Utf8 => f.write_str("utf8"),
            FeatureType::Timestamp => f.write_str("timestamp"),
            FeatureType::List(item) => write!(f, "list<{item}>"),
            FeatureType::Vector(dimension) => write!(f, "vector<{dimension}>"),
        }
    }
}

impl serde::Serialize for FeatureType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for FeatureType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        FeatureType::parse(&text).map_err(serde::de::Error::custom)
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
