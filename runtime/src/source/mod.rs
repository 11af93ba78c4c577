//! Reading sources (Parquet and CSV files, Delta Lake tables, PostgreSQL)
//! as Arrow batches of the columns a job needs, with errors that name the
//! file and the column or line. [`delta`] says which Parquet files make up
//! a table; they are read here like any other. [`kafka`] is the client of
//! Kafka topics, which `skewless serve` consumes through the push path.

pub mod delta;
mod error;
pub mod kafka;
pub mod postgres;
mod read;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType as ArrowType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub use error::SourceError;
use error::fail;
use read::received;
pub use read::{Batches, OpenedFile, READ_BATCH_ROWS};
pub(crate) use read::{accepts, check_columns};

use crate::file_format::{FileFormat, TableVersion};
use crate::repo::FileSource;
use crate::types::{FeatureType, FieldSpec};

/// Opens `path` and checks that every `needed` column is present with a
/// type that maps onto its declared type.
pub fn open(path: &Path, format: FileFormat, needed: &[FieldSpec]) -> Result<OpenedFile, SourceError> {
    open_with(path, format, needed, false)
}

/// As [`open`], keeping every column of the file (the `needed` ones checked
/// and, in CSV, typed; the others as they are): a training spine's columns
/// all go to the output.
pub fn open_all(path: &Path, format: FileFormat, needed: &[FieldSpec]) -> Result<OpenedFile, SourceError> {
    open_with(path, format, needed, true)
}

fn open_with(path: &Path, format: FileFormat, needed: &[FieldSpec], keep_all: bool) -> Result<OpenedFile, SourceError> {
    let opened = match format {
        FileFormat::Parquet => open_parquet(path, open_file(path)?, needed, keep_all),
        FileFormat::Csv => open_csv(path, open_file(path)?, needed, keep_all),
        // Each of its files is read (and conformed) as a Parquet file.
        FileFormat::Delta(version) => return Ok(open_table(path, version, None, needed)?.0),
        FileFormat::Postgres => return Err(needs_settings(path)),
    }?;
    let owned = path.to_path_buf();
    let needed = needed.to_vec();
    let conformed = opened
        .batches
        .map(move |batch| batch.and_then(|batch| conform(&owned, batch, &needed)));
    Ok(OpenedFile {
        total_rows: opened.total_rows,
        batches: read_ahead(path, Box::new(conformed)),
    })
}

/// A PostgreSQL source is read with its settings ([`open_source`]), never
/// by a label alone.
fn needs_settings(label: &Path) -> SourceError {
    fail(
        label,
        "a PostgreSQL source is read through its source settings, not a path",
    )
}

/// Where a load of a source ended, for the next incremental load to go on
/// from: known once its batches are read.
pub enum Loaded {
    /// A file: incremental loads go by event time.
    Rows,
    /// A Delta table's version read.
    TableVersion(u64),
    /// The greatest watermark read from a PostgreSQL source.
    Watermark(postgres::Watermark),
}

impl Loaded {
    /// The mark to store (a version, or a watermark's bits), once the
    /// batches are read.
    pub fn mark(&self) -> Option<u64> {
        match self {
            Loaded::Rows => None,
            Loaded::TableVersion(version) => Some(*version),
            Loaded::Watermark(greatest) => greatest.lock().expect("watermark lock").map(|w| w as u64),
        }
    }
}

/// Opens a source's rows: a file, a Delta table, or a PostgreSQL relation.
/// `since`, for an incremental load, is where the last one ended (a Delta
/// version, a watermark's bits).
pub fn open_source(
    file: &FileSource,
    needed: &[FieldSpec],
    since: Option<u64>,
) -> Result<(OpenedFile, Loaded), SourceError> {
    match (&file.format, &file.postgres) {
        (FileFormat::Delta(version), _) => {
            let (opened, read) = open_table(&file.path, *version, since, needed)?;
            Ok((opened, Loaded::TableVersion(read)))
        }
        (FileFormat::Postgres, Some(table)) => {
            let (opened, greatest) = postgres::open(&file.path, table, since.map(|s| s as i64), needed)?;
            Ok((opened, Loaded::Watermark(greatest)))
        }
        (FileFormat::Postgres, None) => Err(needs_settings(&file.path)),
        (FileFormat::Parquet | FileFormat::Csv, _) => Ok((open(&file.path, file.format, needed)?, Loaded::Rows)),
    }
}

/// A source's columns and their Arrow types ([`columns`] for any source).
pub fn source_columns(file: &FileSource) -> Result<Vec<(String, ArrowType)>, SourceError> {
    match &file.postgres {
        Some(table) => postgres::columns(&file.path, table),
        None => columns(&file.path, file.format),
    }
}

fn open_file(path: &Path) -> Result<File, SourceError> {
    File::open(path).map_err(|e| fail(path, format!("cannot open: {e}")))
}

/// The rows of the Delta table at `table` as of `version` (the newest
/// when `None`), or only those the commits after version `after` added
/// (an incremental load: refused when one of them removed rows, see
/// [`delta::Snapshot::added_since`]), with the version read. Every file is
/// read as a Parquet file of the `needed` columns it holds; a partition
/// column gets the file's value in every row, and a column the table
/// gained after the file was written is null in its rows.
pub fn open_table(
    table: &Path,
    version: Option<TableVersion>,
    after: Option<u64>,
    needed: &[FieldSpec],
) -> Result<(OpenedFile, u64), SourceError> {
    let snapshot = delta::Snapshot::load(table, version)?;
    check_columns(table, &delta_schema(&snapshot), needed)?;
    let files = match after {
        Some(after) => snapshot.added_since(table, after)?,
        None => snapshot.files,
    };
    let total_rows = files.iter().map(|f| f.rows).sum::<Option<u64>>();
    let needed = needed.to_vec();
    let batches = files
        .into_iter()
        .flat_map(move |file| match open_data_file(&file, &needed) {
            Ok(batches) => batches,
            Err(error) => Box::new(std::iter::once(Err(error))),
        });
    let opened = OpenedFile {
        total_rows,
        batches: Box::new(batches),
    };
    Ok((opened, snapshot.version))
}

fn delta_schema(snapshot: &delta::Snapshot) -> Schema {
    let fields: Vec<Field> = (snapshot.columns.iter())
        .map(|(name, data_type)| Field::new(name, data_type.clone(), true))
        .collect();
    Schema::new(fields)
}

/// One file of a Delta table: [`open`]'s batches of the `needed` columns it
/// holds, with the others added (its partition value, or null).
fn open_data_file(file: &delta::DataFile, needed: &[FieldSpec]) -> Result<Batches, SourceError> {
    let in_file = columns(&file.path, FileFormat::Parquet)?;
    let (read, added): (Vec<FieldSpec>, Vec<FieldSpec>) =
        (needed.iter().cloned()).partition(|field| in_file.iter().any(|(name, _)| *name == field.name));
    let opened = open(&file.path, FileFormat::Parquet, &read)?;
    if added.is_empty() {
        return Ok(opened.batches);
    }
    let path = file.path.clone();
    let cells: Vec<(FieldSpec, serde_json::Value)> = added
        .into_iter()
        .map(|field| {
            let text = file.partition_values.get(&field.name).cloned().flatten();
            let cell = match (text, field.data_type) {
                (None, _) => serde_json::Value::Null,
                (Some(text), FeatureType::Utf8 | FeatureType::Timestamp) => serde_json::Value::String(text),
                (Some(text), _) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            };
            (field, cell)
        })
        .collect();
    Ok(Box::new(opened.batches.map(move |batch| {
        let batch = batch?;
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns = batch.columns().to_vec();
        for (field, cell) in &cells {
            let rows = vec![cell.clone(); batch.num_rows()];
            let column = crate::codec::json::array_from_json(&field.name, &rows, field.data_type)
                .map_err(|e| fail(&path, format!("partition value: {e}")))?;
            fields.push(Field::new(&field.name, field.data_type.arrow(), true));
            columns.push(column);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| fail(&path, e.to_string()))
    })))
}

/// `batch` with its list and vector columns in the runtime's own Arrow
/// types ([`FeatureType::arrow`]): lists whatever their element field's
/// name or nullability, a list of floats as a vector (every row must have
/// the dimension), and JSON text as a list or vector. Other columns pass
/// as they are (timestamps are converted where they are read).
fn conform(path: &Path, batch: RecordBatch, needed: &[FieldSpec]) -> Result<RecordBatch, SourceError> {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for field in needed {
        if field.data_type.scalar().is_some() {
            continue;
        }
        let Some((index, _)) = schema.column_with_name(&field.name) else {
            continue;
        };
        let target = field.data_type.arrow();
        if *columns[index].data_type() == target {
            continue;
        }
        let column = &columns[index];
        let converted = if *column.data_type() == ArrowType::Utf8 {
            let cells: Vec<serde_json::Value> = arrow_array::cast::AsArray::as_string::<i32>(column)
                .iter()
                .enumerate()
                .map(|(row, cell)| match cell.map(str::trim) {
                    None | Some("") => Ok(serde_json::Value::Null),
                    Some(text) => serde_json::from_str(text).map_err(|e| {
                        fail(
                            path,
                            format!("column `{}`, row {row}: not a JSON array ({e}): {text:.60}", field.name),
                        )
                    }),
                })
                .collect::<Result<_, _>>()?;
            crate::codec::json::array_from_json(&field.name, &cells, field.data_type)
                .map_err(|e| fail(path, e.to_string()))?
        } else {
            // Not `safe`: a list of another length is an error, never a null.
            let strict = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow_cast::cast_with_options(column, &target, &strict).map_err(|e| {
                fail(
                    path,
                    format!("column `{}` cannot be read as {}: {e}", field.name, field.data_type),
                )
            })?
        };
        columns[index] = converted;
        fields[index] = Field::new(&field.name, target, true);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| fail(path, e.to_string()))
}

/// Batches decoded ahead of their reader.
const READ_AHEAD: usize = 2;

/// Decodes `batches` on a thread of their own, [`READ_AHEAD`] ahead of
/// the caller, so decoding a file overlaps with what is done with it. The
/// thread stops when the caller drops the batches.
fn read_ahead(path: &Path, batches: Batches) -> Batches {
    let (send, receive) = std::sync::mpsc::sync_channel(READ_AHEAD);
    let spawned = std::thread::Builder::new().name("skewless-read".into()).spawn(move || {
        for batch in batches {
            if send.send(Some(batch)).is_err() {
                return;
            }
        }
        let _ = send.send(None);
    });
    if let Err(e) = spawned {
        let error = fail(path, format!("cannot start a thread to read it: {e}"));
        return Box::new(std::iter::once(Err(error)));
    }
    received(path, receive)
}

/// Batches already in memory (a DataFrame from Python), checked as a file
/// would be: every `needed` column present with a type that maps onto its
/// declared type; `label` names them in errors. Every column is kept.
pub fn from_batches(
    label: &Path,
    schema: &Schema,
    batches: Vec<RecordBatch>,
    needed: &[FieldSpec],
) -> Result<OpenedFile, SourceError> {
    check_columns(label, schema, needed)?;
    let total_rows = batches.iter().map(|b| b.num_rows() as u64).sum();
    let (label, needed) = (label.to_path_buf(), needed.to_vec());
    Ok(OpenedFile {
        total_rows: Some(total_rows),
        batches: Box::new(batches.into_iter().map(move |b| conform(&label, b, &needed))),
    })
}

/// The columns of a file and their Arrow types.
pub fn columns(path: &Path, format: FileFormat) -> Result<Vec<(String, ArrowType)>, SourceError> {
    let schema = match format {
        FileFormat::Parquet => ParquetRecordBatchReaderBuilder::try_new(open_file(path)?)
            .map_err(|e| fail(path, format!("not a readable Parquet file: {e}")))?
            .schema()
            .clone(),
        FileFormat::Csv => Arc::new(csv_header(path, open_file(path)?)?),
        FileFormat::Delta(version) => return Ok(delta::Snapshot::load(path, version)?.columns),
        FileFormat::Postgres => return Err(needs_settings(path)),
    };
    Ok(schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect())
}

fn open_parquet(path: &Path, file: File, needed: &[FieldSpec], keep_all: bool) -> Result<OpenedFile, SourceError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(path, format!("not a readable Parquet file: {e}")))?;
    let mut indices = check_columns(path, builder.schema(), needed)?;
    if keep_all {
        indices = (0..builder.parquet_schema().root_schema().get_fields().len()).collect();
    }
    indices.sort_unstable();
    indices.dedup();
    let total_rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| fail(path, format!("cannot read: {e}")))?;
    let owned = path.to_path_buf();
    let batches = reader.map(move |batch| batch.map_err(|e| fail(&owned, format!("corrupt data: {e}"))));
    Ok(OpenedFile {
        total_rows: Some(total_rows),
        batches: Box::new(batches),
    })
}

/// The header of a CSV file as a schema of Utf8 columns.
fn csv_header(path: &Path, file: File) -> Result<Schema, SourceError> {
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line)
        .map_err(|e| fail(path, format!("cannot read the header: {e}")))?;
    let names: Vec<_> = line
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    if names.iter().all(String::is_empty) {
        return Err(fail(path, "line 1: the header row is empty"));
    }
    Ok(Schema::new(
        names
            .into_iter()
            .map(|n| Field::new(n, ArrowType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

fn open_csv(path: &Path, mut file: File, needed: &[FieldSpec], keep_all: bool) -> Result<OpenedFile, SourceError> {
    // The clone shares the file offset: rewind after reading the header.
    let header = csv_header(path, file.try_clone().map_err(|e| fail(path, e.to_string()))?)?;
    std::io::Seek::rewind(&mut file).map_err(|e| fail(path, e.to_string()))?;
    // Needed columns get their declared types; the rest stay text and are projected away.
    // Timestamps are read without a zone: RFC 3339 offsets are applied, naive times are UTC
    // (a named zone would need Arrow's time-zone database).
    let fields: Vec<Field> = header
        .fields()
        .iter()
        .map(|f| match needed.iter().find(|n| n.name == *f.name()) {
            Some(n) if n.data_type == FeatureType::Timestamp => Field::new(
                f.name(),
                ArrowType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
                true,
            ),
            // Lists and vectors are JSON arrays in a cell: read as text, then [`conform`]ed.
            Some(n) if n.data_type.scalar().is_none() => f.as_ref().clone(),
            Some(n) => Field::new(f.name(), n.data_type.arrow(), true),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut indices = check_columns(path, &schema, needed)?;
    if keep_all {
        indices = (0..schema.fields().len()).collect();
    }
    indices.sort_unstable();
    indices.dedup();
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(true)
        .with_batch_size(READ_BATCH_ROWS)
        .with_projection(indices)
        .build(file)
        .map_err(|e| fail(path, format!("cannot read: {e}")))?;
    let owned = path.to_path_buf();
    let batches = reader.map(move |batch| batch.map_err(|e| fail(&owned, format!("malformed CSV: {e}"))));
    Ok(OpenedFile {
        total_rows: None,
        batches: Box::new(batches),
    })
}
