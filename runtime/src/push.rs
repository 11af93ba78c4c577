//! Streaming ingest (`POST /push`, Feast's push API): rows posted as JSON
//! columns to a push source go through every materialized view fed by that
//! source exactly as backfill rows do (the same [`crate::materialize`] path: same
//! columns, same transform call, same encoding). [`prepare`] does that work;
//! the caller commits the rows durably with [`Store::write_views`] (the
//! server commits every push waiting in one transaction) before answering.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_array::{Array, ArrayRef, RecordBatch};
use indexmap::IndexMap;

use crate::aggregate::IdMode;
use crate::catalog::Catalog;
use crate::codec;
use crate::codec::json::WrongValue;
use crate::error::TransformError;
use crate::materialize::{MaterializeError, Materializer};
use crate::repo::SourceKind;
use crate::store::StoreError;
use crate::store::{Pending, Store, ViewRecord, WriteTo};
use crate::transform::RowError;
use crate::types::arrow_schema;

/// What a push stored.
#[derive(Debug, Clone)]
pub struct PushSummary {
    /// Rows received (each is stored once per view).
    pub rows: usize,
    /// The views written.
    pub views: Vec<String>,
    /// The store commit holding them.
    pub commit: u64,
    /// Rows the transforms reported as failed (stored with null features), by view.
    pub row_errors: Vec<(String, RowError)>,
}

/// A push that was refused or failed. Nothing of it is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No source of that name.
    #[error("unknown push source `{name}` (push sources: {known})")]
    UnknownSource {
        /// The name asked for.
        name: String,
        /// The push sources there are.
        known: String,
    },
    /// The source exists but is not a push source.
    #[error("source `{0}` is not a push source: only sources with `type = \"push\"` take pushed rows")]
    NotPush(String),
    /// No materialized view reads the push source.
    #[error("no materialized view reads push source `{0}`: set a view's `source` to it")]
    NoViews(String),
    /// A column a view needs is missing from `df`.
    #[error("`df` lacks column `{column}` ({data_type}), needed by feature view `{view}`")]
    MissingColumn {
        /// The view.
        view: String,
        /// The column.
        column: String,
        /// Its type.
        data_type: crate::types::FeatureType,
    },
    /// A row without an event time, a join key or (when the source has one) an event id.
    #[error("row {row}: `{column}` is null; every pushed row needs its join keys, event time and event id")]
    NullKey {
        /// The row (0-based).
        row: usize,
        /// The column.
        column: String,
    },
    /// A value of the wrong type.
    #[error(transparent)]
    WrongType(#[from] WrongValue),
    /// Columns of different lengths.
    #[error(
        "`{column}` has {actual} values but `{first}` has {expected}: every column of `df` needs one value per row"
    )]
    Length {
        /// A column of the most rows.
        first: String,
        /// The column that differs.
        column: String,
        /// The most rows.
        expected: usize,
        /// This column's rows.
        actual: usize,
    },
    /// The view was never applied.
    #[error("feature view `{0}` is not in the store's registry: run `skewless apply`")]
    NotApplied(String),
    /// The view's columns disagree with its transform or its source.
    #[error(transparent)]
    View(MaterializeError),
    /// A view's transform failed the rows (the push stores nothing).
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MaterializeError> for PushError {
    fn from(error: MaterializeError) -> Self {
        match error {
            MaterializeError::Transform(e) => PushError::Transform(e),
            other => PushError::View(other),
        }
    }
}

/// Rows of one push, run through their views' transforms and encoded,
/// waiting to be committed through [`Store::write_views`]. Cloned by the
/// server's group commit, to retry a push alone when its batch fails.
#[derive(Clone)]
pub struct Prepared {
    /// Rows received.
    pub rows: usize,
    /// Encoded rows per view.
    pub views: Vec<(ViewRecord, Pending)>,
    /// The side of the store they go to.
    pub to: WriteTo,
    /// Rows the transforms reported as failed, by view.
    pub row_errors: Vec<(String, RowError)>,
}

impl Prepared {
    /// What was stored, once commit number `commit` holds it.
    pub fn summary(&self, commit: u64) -> PushSummary {
        PushSummary {
            rows: self.rows,
            views: self.views.iter().map(|(r, _)| r.name.clone()).collect(),
            commit,
            row_errors: self.row_errors.clone(),
        }
    }
}

/// A column of `df` that a push reads.
#[derive(Debug, Clone)]
pub struct PushColumn {
    /// Its name and type.
    pub field: crate::types::FieldSpec,
    /// Whether it may be left out (a created column).
    pub optional: bool,
    /// Whether its values may be null (not a join key, event time or event id).
    pub nullable: bool,
}

/// The columns of `df` a push to `source` reads, as [`prepare`] reads
/// them (each view's [`Materializer`] says what it needs): what
/// `/openapi.json` declares of `df`.
pub fn columns(catalog: &Catalog, records: &BTreeMap<String, ViewRecord>, source: &str) -> Vec<PushColumn> {
    let mut out: Vec<PushColumn> = Vec::new();
    for view in catalog.repo.views.values().filter(|v| v.source() == Some(source)) {
        let Some(record) = records.get(&view.name) else {
            continue;
        };
        let Ok(materializer) = Materializer::new(catalog, view, record, 0, IdMode::Append) else {
            continue;
        };
        for field in &materializer.needed {
            if !out.iter().any(|c| c.field.name == field.name) {
                out.push(PushColumn {
                    field: field.clone(),
                    optional: Some(&field.name) == materializer.source.created_column.as_ref(),
                    nullable: !materializer.not_null_columns().any(|name| name == field.name),
                });
            }
        }
    }
    out
}

/// Runs `df` (columns of JSON values, one per source column; others are
/// ignored) through every materialized view reading `source`: checks,
/// transform calls (each capped by `timeout`), encoding. The rows are
/// committed by [`Store::write_views`], together with other pushes (the
/// server's group commit), on the side(s) `to` names.
pub fn prepare(
    catalog: &Catalog,
    store: &Store,
    records: &BTreeMap<String, ViewRecord>,
    source: &str,
    df: &IndexMap<String, Vec<serde_json::Value>>,
    to: WriteTo,
    timeout: Option<Duration>,
) -> Result<Prepared, PushError> {
    let repo = &catalog.repo;
    match repo.sources.get(source).map(|s| &s.kind) {
        Some(SourceKind::Push { .. }) => {}
        Some(_) => return Err(PushError::NotPush(source.to_string())),
        None => {
            let known: Vec<&str> = repo
                .sources
                .iter()
                .filter(|(_, s)| matches!(s.kind, SourceKind::Push { .. }))
                .map(|(name, _)| name.as_str())
                .collect();
            return Err(PushError::UnknownSource {
                name: source.to_string(),
                known: known.join(", "),
            });
        }
    }
    let views: Vec<_> = repo.views.values().filter(|v| v.source() == Some(source)).collect();
    if views.is_empty() {
        return Err(PushError::NoViews(source.to_string()));
    }
    let rows = df.values().map(Vec::len).max().unwrap_or(0);
    if let Some((name, column)) = df.iter().find(|(_, c)| c.len() != rows) {
        let (first, _) = df
            .iter()
            .find(|(_, c)| c.len() == rows)
            .expect("some column has the most rows");
        return Err(PushError::Length {
            first: first.clone(),
            column: name.clone(),
            expected: rows,
            actual: column.len(),
        });
    }

    let mut pending = Vec::new();
    let mut row_errors = Vec::new();
    for view in &views {
        let record = records
            .get(&view.name)
            .ok_or_else(|| PushError::NotApplied(view.name.clone()))?;
        let digest_id = store.digest_id(&record.digest)?;
        let materializer = Materializer::new(catalog, view, record, digest_id, IdMode::Append)?;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(materializer.needed.len());
        for field in &materializer.needed {
            let array = match df.get(&field.name) {
                Some(values) => codec::json::array_from_json(&field.name, values, field.data_type)?,
                // No created time: the row sorts before any with one, as in Feast.
                None if Some(&field.name) == materializer.source.created_column.as_ref() => {
                    arrow_array::new_null_array(&field.data_type.arrow(), rows)
                }
                None => {
                    return Err(PushError::MissingColumn {
                        view: view.name.clone(),
                        column: field.name.clone(),
                        data_type: field.data_type,
                    });
                }
            };
            arrays.push(array);
        }
        let batch = RecordBatch::try_new_with_options(
            arrow_schema(&materializer.needed),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("arrays built to the schema");
        let keep = materializer.keep(&batch, None, None)?;
        if let Some(row) = (0..rows).find(|row| !keep.value(*row)) {
            let column = materializer
                .not_null_columns()
                .find(|name| batch.column_by_name(name).is_some_and(|c| c.is_null(row)))
                .unwrap_or_default()
                .to_string();
            return Err(PushError::NullKey { row, column });
        }
        let mut rows_out = materializer.pending();
        let errors = materializer.add(&batch, &mut rows_out, timeout)?;
        row_errors.extend(errors.into_iter().map(|e| (view.name.clone(), e)));
        pending.push((record.clone(), rows_out));
    }
    Ok(Prepared {
        rows,
        views: pending,
        to,
        row_errors,
    })
}
