//! The one path from source rows of a materialized view to rows ready for
//! the store, shared by backfill (rows from files) and push (rows from the
//! server): which columns to read, which rows can be stored, and running the
//! view's transform ([`crate::Transform::run`]) and encoding its output
//! ([`crate::codec::row`]).

use std::time::Duration;

use arrow_array::{Array, BooleanArray, RecordBatch};

use crate::catalog::Catalog;
use crate::codec::row::{ColumnMismatch, KeyEncoder, RowEncoder};
use crate::error::TransformError;
use crate::repo::{FileSource, View};
use crate::store::{PendingRows, ViewRecord};
use crate::transform::{RowError, Transform};
use crate::types::{FeatureType, FieldSpec};

/// Rows of a view that cannot be made ready for the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaterializeError {
    /// The view's columns disagree with its transform or its source.
    #[error("view `{view}`: {message}")]
    View {
        /// The view.
        view: String,
        /// What is wrong.
        message: String,
    },
    /// A batch lacks a column the view stores, or has it of another type.
    #[error("view `{view}`: {of}: {error}")]
    Columns {
        /// The view.
        view: String,
        /// Whose columns: `source rows` or `transform output`.
        of: &'static str,
        /// Which column, and how.
        #[source]
        error: ColumnMismatch,
    },
    /// The transform failed the batch.
    #[error(transparent)]
    Transform(#[from] TransformError),
}

/// The one path from source rows of a materialized view to rows ready for
/// the store, shared by backfill (rows from files) and push (rows from the
/// server): which columns to read, which rows can be stored, and running
/// the view's transform ([`crate::Transform::run`]) and encoding its output.
pub(crate) struct Materializer<'a> {
    view: &'a View,
    record: &'a ViewRecord,
    transform: &'a Transform,
    /// The file source behind the view (a push source's batch source).
    pub source: &'a FileSource,
    digest_id: u32,
    /// Columns a source batch must hold: join keys, times, transform inputs.
    pub needed: Vec<FieldSpec>,
}

impl<'a> Materializer<'a> {
    pub fn new(
        catalog: &'a Catalog,
        view: &'a View,
        record: &'a ViewRecord,
        digest_id: u32,
    ) -> Result<Self, MaterializeError> {
        let transform = catalog.transform(&view.name).ok_or_else(|| MaterializeError::View {
            view: view.name.clone(),
            message: "its transform is not loaded".into(),
        })?;
        let source = catalog
            .repo
            .file_source(view)
            .expect("materialized views have a file source (checked by the repo)");
        let mut needed: Vec<FieldSpec> = record.join_keys.clone();
        let mut need = |field: FieldSpec| -> Result<(), MaterializeError> {
            match needed.iter().find(|f| f.name == field.name) {
                Some(f) if f.data_type != field.data_type => Err(MaterializeError::View {
                    view: view.name.clone(),
                    message: format!(
                        "column `{}` is needed as {} and as {}",
                        field.name, f.data_type, field.data_type
                    ),
                }),
                Some(_) => Ok(()),
                None => {
                    needed.push(field);
                    Ok(())
                }
            }
        };
        let time_field = |name: &str| FieldSpec {
            name: name.to_string(),
            data_type: FeatureType::Timestamp,
            nullable: true,
        };
        need(time_field(&source.timestamp_column))?;
        if let Some(created) = &source.created_column {
            need(time_field(created))?;
        }
        for input in &transform.description().inputs {
            need(input.clone())?;
        }
        Ok(Materializer {
            view,
            record,
            transform,
            source,
            digest_id,
            needed,
        })
    }

    /// Which rows of `batch` can be stored: those with an event time in
    /// `[start, end)` and every join key.
    pub fn keep(
        &self,
        batch: &RecordBatch,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<BooleanArray, MaterializeError> {
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let keys = self.keys(batch)?;
        Ok((0..batch.num_rows())
            .map(|row| {
                Some(
                    event_time.is_valid(row)
                        && !keys.is_null(row)
                        && start.is_none_or(|s| event_time.value(row) >= s)
                        && end.is_none_or(|e| event_time.value(row) < e),
                )
            })
            .collect())
    }

    fn keys<'b>(&self, batch: &'b RecordBatch) -> Result<KeyEncoder<'b>, MaterializeError> {
        KeyEncoder::new(batch, &self.record.join_keys).map_err(|error| MaterializeError::Columns {
            view: self.view.name.clone(),
            of: "source rows",
            error,
        })
    }

    /// Runs the transform over `batch` (every row kept by [`Self::keep`])
    /// and adds one encoded row per input row to `pending`. Returns the
    /// transform's row errors (those rows are stored with null features).
    /// `timeout` caps the view's own per-call limit (the server's request budget).
    pub fn add(
        &self,
        batch: &RecordBatch,
        pending: &mut PendingRows,
        timeout: Option<Duration>,
    ) -> Result<Vec<RowError>, MaterializeError> {
        let output = match timeout {
            Some(timeout) => self.transform.run_within(batch, timeout)?,
            None => self.transform.run(batch)?,
        };
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let created = self.source.created_column.as_ref().map(|c| micros_column(batch, c));
        let keys = self.keys(batch)?;
        let features =
            RowEncoder::new(&output.batch, &self.record.features).map_err(|error| MaterializeError::Columns {
                view: self.view.name.clone(),
                of: "transform output",
                error,
            })?;
        let width = self.record.features.len();
        for row in 0..batch.num_rows() {
            let created = created
                .as_ref()
                .map_or(0, |c| if c.is_valid(row) { c.value(row) } else { 0 });
            pending.add(
                self.record.bucket_micros,
                event_time.value(row),
                created,
                self.digest_id,
                width,
                |out| keys.write(row, out),
                |out| features.write(row, out),
            );
        }
        Ok(output.row_errors)
    }
}

/// A timestamp column of `batch` in microseconds (the source was opened
/// with this column as a timestamp, so it exists and is one).
fn micros_column(batch: &RecordBatch, name: &str) -> arrow_array::TimestampMicrosecondArray {
    let array = batch.column_by_name(name).expect("opened with this column");
    crate::time::micros_array(array.as_ref()).expect("checked to be a timestamp when opened")
}
