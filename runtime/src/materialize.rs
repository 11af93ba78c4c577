//! The one path from source rows of a stored view to what the store
//! keeps, shared by backfill (rows from files) and push (rows from the
//! server): which columns to read, which rows can be stored, running the
//! view's transform ([`crate::Transform::run`]) and encoding its output:
//! feature rows ([`crate::format::value`]) for a materialized view, events
//! ([`crate::aggregate`]) for an aggregation view.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, BooleanArray, RecordBatch};

use crate::aggregate::{IdMode, PendingEvents, Plan};

use crate::catalog::Catalog;
use crate::error::TransformError;
use crate::format::layout::RowWriter;
use crate::format::value::{ColumnMismatch, KeyEncoder, RowEncoder, Value};
use crate::repo::{FileSource, View};
use crate::store::{Pending, PendingRows, ViewRecord};
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

/// How an aggregation view's rows become events: which ids they get.
struct EventIds {
    mode: IdMode,
    /// Backfill: identical rows seen so far in this run, by (entity, time,
    /// row hash), so the n-th copy gets occurrence n on every rerun.
    seen: RefCell<rustc_hash::FxHashMap<(u64, i64, u64), u32>>,
}

/// The one path from source rows of a stored view to what the store
/// keeps, shared by backfill (rows from files) and push (rows from the
/// server): which columns to read, which rows can be stored, running the
/// view's transform ([`crate::Transform::run`]) and encoding its output.
pub(crate) struct Materializer<'a> {
    view: &'a View,
    record: &'a ViewRecord,
    transform: Option<&'a Transform>,
    /// An aggregation view's plan: rows become events.
    plan: Option<Arc<Plan>>,
    ids: EventIds,
    /// The file source behind the view (a push source's batch source).
    pub source: &'a FileSource,
    digest_id: u32,
    /// Columns a source batch must hold: join keys, times, transform inputs.
    pub needed: Vec<FieldSpec>,
}

impl<'a> Materializer<'a> {
    /// `mode` says how event ids are completed (aggregation views only):
    /// [`IdMode::Replace`] for backfill, [`IdMode::Append`] for push.
    pub fn new(
        catalog: &'a Catalog,
        view: &'a View,
        record: &'a ViewRecord,
        digest_id: u32,
        mode: IdMode,
    ) -> Result<Self, MaterializeError> {
        let plan = catalog.plan(&view.name).cloned();
        let transform = catalog.transform(&view.name).map(Arc::as_ref);
        if transform.is_none() && plan.is_none() {
            return Err(MaterializeError::View {
                view: view.name.clone(),
                message: "its transform is not loaded".into(),
            });
        }
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
        if let Some(created) = &source.created_column
            && plan.is_none()
        {
            need(time_field(created))?;
        }
        let outputs = transform
            .map(|t| t.description().outputs.as_slice())
            .unwrap_or_default();
        for input in transform.map(|t| t.description().inputs.as_slice()).unwrap_or_default() {
            need(input.clone())?;
        }
        // Event columns the transform does not produce come from the source.
        for input in plan.iter().flat_map(|p| p.inputs.iter().chain(&p.id_column)) {
            if !outputs.iter().any(|o| o.name == input.name) {
                need(input.clone())?;
            }
        }
        Ok(Materializer {
            view,
            record,
            transform,
            plan,
            ids: EventIds {
                mode,
                seen: RefCell::default(),
            },
            source,
            digest_id,
            needed,
        })
    }

    /// An empty batch of what this view stores.
    pub fn pending(&self) -> Pending {
        match &self.plan {
            Some(plan) => Pending::Events(PendingEvents::new(plan.clone())),
            None => Pending::Rows(PendingRows::default()),
        }
    }

    /// The event id column of an aggregation view's source, if it has one.
    pub fn id_column(&self) -> Option<&str> {
        self.plan.as_ref()?.id_column.as_ref().map(|f| f.name.as_str())
    }

    /// The columns every stored row needs a value in: its join keys, its
    /// event time and, when the source has one, its event id.
    pub fn not_null_columns(&self) -> impl Iterator<Item = &str> {
        (self.record.join_keys.iter().map(|k| k.name.as_str()))
            .chain([self.source.timestamp_column.as_str()])
            .chain(self.id_column())
    }

    /// Which rows of `batch` can be stored: those with an event time in
    /// `[start, end)`, every join key and, when the source has one, an event id.
    pub fn keep(
        &self,
        batch: &RecordBatch,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<BooleanArray, MaterializeError> {
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let keys = self.keys(batch)?;
        let id = self
            .id_column()
            .map(|c| batch.column_by_name(c).expect("needed columns are in the batch"));
        Ok((0..batch.num_rows())
            .map(|row| {
                Some(
                    event_time.is_valid(row)
                        && !keys.is_null(row)
                        && id.is_none_or(|id| id.is_valid(row))
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
        pending: &mut Pending,
        timeout: Option<Duration>,
    ) -> Result<Vec<RowError>, MaterializeError> {
        let output = match (self.transform, timeout) {
            (Some(t), Some(timeout)) => Some(t.run_within(batch, timeout)?),
            (Some(t), None) => Some(t.run(batch)?),
            (None, _) => None,
        };
        let pending = match pending {
            Pending::Rows(rows) => rows,
            Pending::Events(events) => {
                let (output, row_errors) = match output {
                    Some(o) => (Some(o.batch), o.row_errors),
                    None => (None, Vec::new()),
                };
                self.add_events(batch, output.as_ref(), events)?;
                return Ok(row_errors);
            }
        };
        let output = output.expect("materialized views have a transform");
        self.add_output(batch, &output.batch, pending)?;
        Ok(output.row_errors)
    }

    /// Adds one encoded row per row of `batch` to `pending`, its features
    /// taken from `output` (the transform's output for those rows, or, for
    /// an import, the imported rows themselves).
    pub fn add_output(
        &self,
        batch: &RecordBatch,
        output: &RecordBatch,
        pending: &mut PendingRows,
    ) -> Result<(), MaterializeError> {
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let created = self.source.created_column.as_ref().map(|c| micros_column(batch, c));
        let keys = self.keys(batch)?;
        let features = RowEncoder::new(output, &self.record.features).map_err(|error| MaterializeError::Columns {
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
        Ok(())
    }

    /// The columns a row of this view is stored from once its transform has
    /// run: join keys, event time, created time, and the features.
    pub fn stored_columns(&self) -> Vec<FieldSpec> {
        let time_field = |name: &str| FieldSpec {
            name: name.to_string(),
            data_type: FeatureType::Timestamp,
            nullable: true,
        };
        let mut columns = self.record.join_keys.clone();
        columns.push(time_field(&self.source.timestamp_column));
        columns.extend(self.source.created_column.as_deref().map(time_field));
        columns.extend(self.record.features.iter().cloned());
        columns
    }

    /// Whether this is an aggregation view (its rows become events).
    pub fn is_aggregation(&self) -> bool {
        self.plan.is_some()
    }
}

impl Materializer<'_> {
    /// Adds one event per row of `batch`: its entity key, event time, id,
    /// and the plan's inputs, each from the transform's `output` when it
    /// has the column, else from the source row.
    fn add_events(
        &self,
        batch: &RecordBatch,
        output: Option<&RecordBatch>,
        pending: &mut PendingEvents,
    ) -> Result<(), MaterializeError> {
        let plan = self.plan.as_ref().expect("an aggregation view");
        let event_time = micros_column(batch, &self.source.timestamp_column);
        let keys = self.keys(batch)?;
        let mut columns = Vec::with_capacity(plan.inputs.len());
        for input in &plan.inputs {
            let array = output
                .and_then(|o| o.column_by_name(&input.name))
                .or_else(|| batch.column_by_name(&input.name))
                .expect("needed columns are in the batch");
            columns.push(array.clone());
        }
        let values = RowEncoder::from_columns(&columns, &plan.inputs).map_err(|error| MaterializeError::Columns {
            view: self.view.name.clone(),
            of: "event columns",
            error,
        })?;
        let ids = plan.id_column.as_ref().map(|f| {
            let array = batch.column_by_name(&f.name).expect("needed columns are in the batch");
            crate::format::value::decode_columns(std::slice::from_ref(array), std::slice::from_ref(f))
        });
        let ids = match ids {
            Some(Ok(values)) => Some(values),
            Some(Err(error)) => {
                return Err(MaterializeError::Columns {
                    view: self.view.name.clone(),
                    of: "source rows",
                    error,
                });
            }
            None => None,
        };
        let mut seen = self.ids.seen.borrow_mut();
        pending.reserve(batch.num_rows());
        let mut bytes = Vec::new();
        for row in 0..batch.num_rows() {
            let time = event_time.value(row);
            // With an id column the id is its value, and final: the same id replaces.
            let keyed = match ids.as_ref().map(|ids| &ids[row][0]) {
                None => None,
                Some(Value::Int64(v)) => Some(crate::format::hash::stable_hash(&v.to_le_bytes())),
                Some(Value::Utf8(v)) => Some(crate::format::hash::stable_hash(v.as_bytes())),
                Some(
                    Value::Bool(_)
                    | Value::Float32(_)
                    | Value::Float64(_)
                    | Value::Timestamp(_)
                    | Value::List(_)
                    | Value::Vector(_),
                ) => {
                    unreachable!("event id columns are int64 or utf8 (checked by the repo)")
                }
                Some(Value::Null) => {
                    return Err(MaterializeError::View {
                        view: self.view.name.clone(),
                        message: format!(
                            "row {row}: event id column `{}` is null",
                            plan.id_column.as_ref().expect("set").name
                        ),
                    });
                }
            };
            let mode = if keyed.is_some() { IdMode::Keyed } else { self.ids.mode };
            let event = *pending.push(
                time,
                mode,
                |out| keys.write(row, out),
                |out| values.write(row, &mut RowWriter::values_only(out, values.width())),
            );
            let id = match keyed {
                Some(id) => crate::aggregate::event_id(id, 0),
                None => {
                    // The row's canonical bytes: entity, time, and the event
                    // (time, a zero id, the inputs).
                    let entity = pending.entity(&event);
                    bytes.clear();
                    bytes.extend_from_slice(entity);
                    bytes.extend_from_slice(&time.to_le_bytes());
                    bytes.extend_from_slice(&time.to_le_bytes());
                    bytes.extend_from_slice(&[0; 12]);
                    bytes.extend_from_slice(pending.values(&event));
                    let hash = crate::format::hash::stable_hash(&bytes);
                    let occurrence = match mode {
                        IdMode::Append | IdMode::Keyed | IdMode::Remove => 0,
                        IdMode::Replace => {
                            let n = seen
                                .entry((crate::format::hash::stable_hash(entity), time, hash))
                                .or_insert(0);
                            *n += 1;
                            *n - 1
                        }
                    };
                    crate::aggregate::event_id(hash, occurrence)
                }
            };
            pending.events.last_mut().expect("just pushed").id = id;
        }
        Ok(())
    }
}

/// A timestamp column of `batch` in microseconds (the source was opened
/// with this column as a timestamp, so it exists and is one).
fn micros_column(batch: &RecordBatch, name: &str) -> arrow_array::TimestampMicrosecondArray {
    let array = batch.column_by_name(name).expect("opened with this column");
    crate::time::micros_array(array.as_ref()).expect("checked to be a timestamp when opened")
}
