//! What every reader of a source hands back (batches of the needed
//! columns, lazily read) and the one check of a source's columns against
//! what a view needs.

use arrow_array::RecordBatch;
use arrow_schema::{DataType as ArrowType, Schema};
use std::path::Path;
use std::sync::mpsc::Receiver;

use super::error::{SourceError, fail};
use crate::types::{FeatureType, FieldSpec};

/// Rows per batch read from a file.
pub const READ_BATCH_ROWS: usize = 65_536;

/// Batches of a file source, lazily read.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send>;

/// An opened file source: its total row count (if the format records one)
/// and its batches, holding exactly the `needed` columns.
pub struct OpenedFile {
    /// Rows in the file, when known up front (Parquet).
    pub total_rows: Option<u64>,
    /// The batches.
    pub batches: Batches,
}

/// Whether a column of type `found` can feed a column of `needed`: its own
/// type, or for a vector a list of floats (what pandas and pyarrow write
/// for an embedding), or for a list or vector a text column of JSON arrays
/// (CSV). [`conform`] makes the conversion.
pub(crate) fn accepts(found: &ArrowType, needed: FeatureType) -> bool {
    if FeatureType::from_arrow(found) == Some(needed) {
        return true;
    }
    match needed {
        FeatureType::Vector(_) => match found {
            ArrowType::List(item) | ArrowType::LargeList(item) | ArrowType::FixedSizeList(item, _) => {
                matches!(item.data_type(), ArrowType::Float32 | ArrowType::Float64)
            }
            ArrowType::Utf8 => true,
            _ => false,
        },
        FeatureType::List(_) => *found == ArrowType::Utf8,
        FeatureType::Bool
        | FeatureType::Int64
        | FeatureType::Float32
        | FeatureType::Float64
        | FeatureType::Utf8
        | FeatureType::Timestamp => false,
    }
}

pub(crate) fn check_columns(path: &Path, schema: &Schema, needed: &[FieldSpec]) -> Result<Vec<usize>, SourceError> {
    needed
        .iter()
        .map(|field| {
            let (index, found) = schema.column_with_name(&field.name).ok_or_else(|| {
                let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                fail(
                    path,
                    format!(
                        "column `{}` is missing (the file has: {})",
                        field.name,
                        names.join(", ")
                    ),
                )
            })?;
            if !accepts(found.data_type(), field.data_type) {
                return Err(fail(
                    path,
                    format!(
                        "column `{}` is {}, but {} is needed",
                        field.name,
                        found.data_type(),
                        field.data_type
                    ),
                ));
            }
            Ok(index)
        })
        .collect()
}

/// The batches a reader thread sends over `receive`: `Some(batch)` for
/// each, then `None` at the end. A thread that ends without saying so
/// failed, and the batches end with an error naming `label`.
pub(crate) fn received(label: &Path, receive: Receiver<Option<Result<RecordBatch, SourceError>>>) -> Batches {
    let label = label.to_path_buf();
    let mut ended = false;
    Box::new(std::iter::from_fn(move || {
        if ended {
            return None;
        }
        match receive.recv() {
            Ok(Some(batch)) => Some(batch),
            Ok(None) => {
                ended = true;
                None
            }
            Err(_) => {
                ended = true;
                Some(Err(fail(
                    &label,
                    "reading stopped unexpectedly (the reader thread failed)",
                )))
            }
        }
    }))
}
