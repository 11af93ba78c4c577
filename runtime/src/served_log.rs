//! Served-value logs: a sample of the answers `skewless serve` gave,
//! written as Parquet files any tool can read, and read back by
//! `skewless drift`.
//!
//! One row per (answered entity row, feature), in [`schema`]'s columns:
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `request_id` | uint64 | the answer's number since the server started |
//! | `now` | timestamp(µs, UTC) | the instant the read counted TTLs from |
//! | `row` | uint32 | the entity row within the request |
//! | `entity` | string | join keys and request fields, `driver_id=1001` |
//! | `view`, `feature` | string | the feature served |
//! | `status` | string | `PRESENT`, `NULL_VALUE`, `NOT_FOUND`, `OUTSIDE_MAX_AGE` |
//! | `value` | string | the value as JSON text (null when there is none) |
//! | `value_number` | float64 | numbers, booleans as 0/1, timestamps in µs |
//! | `event_timestamp` | timestamp(µs, UTC) | the value's event time |
//! | `digest` | string | the digest of the view's transform component |
//!
//! Files are `served-<first now>-<sequence>.parquet` in the log folder, each
//! written whole (a `.partial` file renamed when closed), so a reader never
//! sees half a file. A file is closed every [`ROWS_PER_FILE`] rows, every
//! [`FLUSH_EVERY`], and when the server stops; then the oldest files are
//! removed until the folder holds at most the configured bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::format::value::{Value, decode_columns};
use crate::online::{OnlineRequest, OnlineResponse};
use crate::types::{FeatureType, FieldSpec, UTC};

/// Rows per log file, at most.
pub const ROWS_PER_FILE: usize = 100_000;
/// The longest a sampled answer waits in memory before its file is written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(30);

/// A log file that cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[error("served-value log {}: {message}", path.display())]
pub struct LogError {
    /// The file or folder.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

/// The columns of a log file (see the module documentation).
pub fn schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::UInt64, false),
        Field::new("now", time(), false),
        Field::new("row", DataType::UInt32, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("feature", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("value_number", DataType::Float64, true),
        Field::new("event_timestamp", time(), true),
        Field::new("digest", DataType::Utf8, true),
    ]))
}

/// A number for a value, as the statistics read it.
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::Int64(v) | Value::Timestamp(v) => Some(*v as f64),
        Value::Float32(v) => Some(f64::from(*v)),
        Value::Float64(v) => Some(*v),
        Value::Null | Value::Utf8(_) | Value::List(_) | Value::Vector(_) => None,
    }
}

/// Appends sampled answers and writes them out in rotated, bounded files.
pub struct LogWriter {
    folder: PathBuf,
    max_bytes: u64,
    rows: Rows,
    first_at: Option<Instant>,
    first_now: i64,
    files: u64,
}

#[derive(Default)]
struct Rows {
    len: usize,
    request_id: UInt64Builder,
    now: TimestampMicrosecondBuilder,
    row: UInt32Builder,
    entity: StringBuilder,
    view: StringBuilder,
    feature: StringBuilder,
    status: StringBuilder,
    value: StringBuilder,
    value_number: Float64Builder,
    event_timestamp: TimestampMicrosecondBuilder,
    digest: StringBuilder,
}

impl LogWriter {
    /// Logs into `folder` (created if needed), keeping at most `max_bytes` of files.
    pub fn open(folder: &Path, max_bytes: u64) -> Result<LogWriter, LogError> {
        std::fs::create_dir_all(folder).map_err(|e| LogError {
            path: folder.to_path_buf(),
            message: format!("cannot create the folder: {e}"),
        })?;
        Ok(LogWriter {
            folder: folder.to_path_buf(),
            max_bytes,
            rows: Rows::default(),
            first_at: None,
            first_now: 0,
            files: 0,
        })
    }

    /// Appends one answer: a row per entity row and feature.
    pub fn append(&mut self, request_id: u64, request: &OnlineRequest, response: &OnlineResponse) {
        let rows = request.entities.values().next().map_or(0, |c| c.len());
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
            self.first_now = response.now;
        }
        let entities: Vec<String> = (0..rows).map(|row| request.entity_text(row)).collect();
        for column in &response.columns {
            let Some(view) = &column.view else { continue };
            let feature = column
                .name
                .strip_prefix(view.as_str())
                .and_then(|rest| rest.strip_prefix("__"))
                .unwrap_or(&column.name);
            let digest = response.digests.get(view).map(|d| d.to_string());
            let values = FeatureType::from_arrow(column.values.data_type()).and_then(|data_type| {
                let spec = FieldSpec {
                    name: column.name.clone(),
                    data_type,
                    nullable: true,
                };
                decode_columns(std::slice::from_ref(&column.values), &[spec]).ok()
            });
            let numbers: Vec<Option<f64>> = match &values {
                Some(rows) => rows.iter().map(|row| number(&row[0])).collect(),
                None => vec![None; entities.len()],
            };
            for (row, entity) in entities.iter().enumerate() {
                let r = &mut self.rows;
                r.len += 1;
                r.request_id.append_value(request_id);
                r.now.append_value(response.now);
                r.row.append_value(row as u32);
                r.entity.append_value(entity);
                r.view.append_value(view);
                r.feature.append_value(feature);
                r.status.append_value(column.statuses[row].name());
                let json = crate::codec::json::value_json(column.values.as_ref(), row);
                r.value.append_option((!json.is_null()).then(|| json.to_string()));
                r.value_number.append_option(numbers[row]);
                r.event_timestamp.append_option(column.event_timestamps[row]);
                r.digest.append_option(digest.as_deref());
            }
        }
    }

    /// Whether the rows held should be written now.
    pub fn due(&self) -> bool {
        self.rows.len >= ROWS_PER_FILE || self.first_at.is_some_and(|t| t.elapsed() >= FLUSH_EVERY)
    }

    /// Rows held in memory.
    pub fn pending(&self) -> usize {
        self.rows.len
    }

    /// Writes the rows held to a new file, then removes the oldest files
    /// beyond the size bound. Returns the file written, if any.
    pub fn flush(&mut self) -> Result<Option<PathBuf>, LogError> {
        if self.rows.len == 0 {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        self.first_at = None;
        let time = |mut b: TimestampMicrosecondBuilder| -> ArrayRef { Arc::new(b.finish().with_timezone(UTC)) };
        let Rows {
            mut request_id,
            now,
            mut row,
            mut entity,
            mut view,
            mut feature,
            mut status,
            mut value,
            mut value_number,
            event_timestamp,
            mut digest,
            ..
        } = rows;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(request_id.finish()),
            time(now),
            Arc::new(row.finish()),
            Arc::new(entity.finish()),
            Arc::new(view.finish()),
            Arc::new(feature.finish()),
            Arc::new(status.finish()),
            Arc::new(value.finish()),
            Arc::new(value_number.finish()),
            time(event_timestamp),
            Arc::new(digest.finish()),
        ];
        let batch = RecordBatch::try_new(schema(), columns).expect("columns match the schema");
        self.files += 1;
        let name = format!(
            "served-{}-{:06}.parquet",
            crate::time::format_timestamp(self.first_now).replace([':', '-'], ""),
            self.files
        );
        let path = self.folder.join(name);
        let partial = path.with_extension("parquet.partial");
        let fail = |message: String| LogError {
            path: partial.clone(),
            message,
        };
        let file = File::create(&partial).map_err(|e| fail(format!("cannot create: {e}")))?;
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties))
            .map_err(|e| fail(e.to_string()))?;
        writer.write(&batch).map_err(|e| fail(e.to_string()))?;
        writer.close().map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&partial, &path).map_err(|e| fail(format!("cannot rename: {e}")))?;
        self.trim()?;
        Ok(Some(path))
    }

    /// Removes the oldest files until the folder holds at most `max_bytes`.
    fn trim(&self) -> Result<(), LogError> {
        let mut files = log_files(&self.folder)?;
        let mut total: u64 = files.iter().map(|(_, size)| size).sum();
        files.reverse(); // oldest last
        while total > self.max_bytes && files.len() > 1 {
            let (oldest, size) = files.pop().expect("more than one");
            let _ = std::fs::remove_file(&oldest);
            total -= size;
        }
        Ok(())
    }
}

/// The finished log files in `folder`, newest first, with their sizes.
/// The names sort by the first `now` they hold, then by sequence.
pub fn log_files(folder: &Path) -> Result<Vec<(PathBuf, u64)>, LogError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(LogError {
                path: folder.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let mut files: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
        .collect();
    files.sort();
    files.reverse();
    Ok(files)
}

/// Served values read back from the logs, by `(view, feature)`.
pub type ServedValues = BTreeMap<(String, String), Vec<Value>>;

/// Reads the log files in `folder`, newest first, with rows whose `now` is
/// at or after `since`, until `max_rows` rows are read (whole files): each
/// feature's served values, a null for a row not `PRESENT`.
pub fn read_served(folder: &Path, since: Option<i64>, max_rows: Option<usize>) -> Result<ServedValues, LogError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, TimestampMicrosecondType};
    let mut out = ServedValues::new();
    let mut read = 0;
    for (path, _) in log_files(folder)? {
        if max_rows.is_some_and(|max| read >= max) {
            break;
        }
        let fail = |message: String| LogError {
            path: path.clone(),
            message,
        };
        let file = File::open(&path).map_err(|e| fail(e.to_string()))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| fail(format!("not a served-value log: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(e.to_string()))?;
            read += batch.num_rows();
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| fail(format!("no column `{name}`: not a served-value log")))
            };
            let (now, view, feature, status, value, number) = (
                column("now")?,
                column("view")?,
                column("feature")?,
                column("status")?,
                column("value")?,
                column("value_number")?,
            );
            let now = now.as_primitive::<TimestampMicrosecondType>();
            let (view, feature, status, value) = (
                view.as_string::<i32>(),
                feature.as_string::<i32>(),
                status.as_string::<i32>(),
                value.as_string::<i32>(),
            );
            let number = number.as_primitive::<Float64Type>();
            for row in 0..batch.num_rows() {
                if since.is_some_and(|since| now.value(row) < since) {
                    continue;
                }
                let served = if status.value(row) != "PRESENT" || value.is_null(row) {
                    Value::Null
                } else if number.is_valid(row) {
                    Value::Float64(number.value(row))
                } else {
                    match serde_json::from_str::<serde_json::Value>(value.value(row)) {
                        Ok(serde_json::Value::String(s)) => Value::Utf8(s),
                        _ => Value::Utf8(value.value(row).to_string()),
                    }
                };
                out.entry((view.value(row).to_string(), feature.value(row).to_string()))
                    .or_default()
                    .push(served);
            }
        }
    }
    Ok(out)
}
