//! Delta Lake tables as sources: which Parquet files make up a table at a
//! version, read from the table's transaction log (`_delta_log/`) as the
//! Delta protocol defines it. [`super`] reads those files through
//! its one Parquet path and adds the partition columns.
//!
//! A version's files are the newest checkpoint at or before it, then every
//! JSON commit after it, in order: an `add` puts a file in, a `remove`
//! takes it out. The last `protocol` and `metaData` actions say how to
//! read the table. Invariant, checked in [`Snapshot::load`]: a table is
//! read only when every feature it uses is one this reader honours, so a
//! table is never read wrong. Deletion vectors (rows hidden inside a
//! file), column mapping (columns renamed away from the files' names) and
//! type widening are refused, naming the feature; a table written without
//! them (the default of `deltalake`, Spark and Databricks before 2024) reads.
//!
//! Local tables only: a path, or a `file://` URI in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType as ArrowType, Field, TimeUnit};
use indexmap::IndexMap;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

use super::error::{SourceError, fail};
pub use crate::file_format::TableVersion;

impl std::fmt::Display for TableVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableVersion::Version(v) => write!(f, "version {v}"),
            TableVersion::AsOf(t) => write!(f, "as of {}", crate::time::format_timestamp(*t)),
        }
    }
}

/// A table at one version: its columns and the data files that hold it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The version read.
    pub version: u64,
    /// The table's columns (partition columns included), in its schema's order.
    pub columns: Vec<(String, ArrowType)>,
    /// The files, in the order the log added them.
    pub files: Vec<DataFile>,
}

/// One Parquet file of a table.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Where it is.
    pub path: PathBuf,
    /// The value of each partition column for every row of the file (the
    /// log's text; `None` is null), absent from the file itself.
    pub partition_values: BTreeMap<String, Option<String>>,
    /// Its rows, when the log's statistics say.
    pub rows: Option<u64>,
}

/// Reader features this reader honours. Any other in a table's protocol
/// refuses the table (`deletionVectors` and `columnMapping` are honoured
/// only while no file uses them; [`Snapshot::load`] checks).
const READER_FEATURES: [&str; 4] = [
    "timestampNtz",
    "vacuumProtocolCheck",
    "deletionVectors",
    "columnMapping",
];

impl Snapshot {
    /// The table at `table` as of `version` (the newest when `None`).
    pub fn load(table: &Path, version: Option<TableVersion>) -> Result<Snapshot, SourceError> {
        let log = Log::list(table)?;
        let target = match version {
            None => log.newest()?,
            Some(TableVersion::Version(v)) => {
                let newest = log.newest()?;
                if v > newest {
                    return Err(fail(
                        table,
                        format!("has no version {v}: its newest is {newest} (`version` in skewless.toml)"),
                    ));
                }
                v
            }
            Some(TableVersion::AsOf(time)) => log.version_at(time)?,
        };
        let state = log.replay(target)?;
        state.readable(table)?;
        let meta = state.meta.expect("checked by `readable`");
        let columns = schema_columns(table, &meta.schema_string)?;
        let files = state
            .files
            .into_values()
            .map(|add| add.data_file(table))
            .collect::<Result<_, _>>()?;
        Ok(Snapshot {
            version: target,
            columns,
            files,
        })
    }

    /// The files commits after version `after` added, up to this
    /// snapshot's version: an incremental load's input. Refused when one
    /// of those commits removed data (an update, a delete, a merge): the
    /// rows it rewrote would be read twice, and its deletes never, so only
    /// a full backfill is right then (the message says so). Compaction
    /// (`dataChange: false`) moves rows without changing them, and is
    /// skipped.
    pub fn added_since(&self, table: &Path, after: u64) -> Result<Vec<DataFile>, SourceError> {
        if after >= self.version {
            return Ok(Vec::new());
        }
        let log = Log::list(table)?;
        let mut added = IndexMap::new();
        for version in after + 1..=self.version {
            let path = log.commits.get(&version).ok_or_else(|| {
                fail(
                    table,
                    format!(
                        "the log no longer has commit {version} (cleaned up after a checkpoint), so the rows \
                         added since version {after} are unknown: run a full backfill"
                    ),
                )
            })?;
            for action in read_commit(path)? {
                if let Some(remove) = action.remove
                    && remove.data_change != Some(false)
                {
                    let operation = action_operation(path).unwrap_or_else(|| "a commit".into());
                    return Err(fail(
                        table,
                        format!(
                            "version {version} ({operation}) removed rows, which an incremental load cannot \
                             undo: run a full backfill (`skewless backfill`) instead"
                        ),
                    ));
                }
                if let Some(add) = action.add
                    && add.data_change != Some(false)
                {
                    added.insert(add.path.clone(), add);
                }
            }
        }
        added.into_values().map(|add| add.data_file(table)).collect()
    }
}

/// The table's log: its commits and complete checkpoints by version.
struct Log {
    table: PathBuf,
    commits: BTreeMap<u64, PathBuf>,
    /// Each checkpoint's files (one, or every part of a multi-part one).
    checkpoints: BTreeMap<u64, Vec<PathBuf>>,
}

impl Log {
    fn list(table: &Path) -> Result<Log, SourceError> {
        let dir = table.join("_delta_log");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            fail(
                table,
                format!("is not a Delta table: cannot read {} ({e})", dir.display()),
            )
        })?;
        let mut commits = BTreeMap::new();
        let mut parts: BTreeMap<(u64, u32), Vec<(u32, PathBuf)>> = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| fail(table, format!("cannot list its log: {e}")))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((digits, rest)) = name.split_once('.') else {
                continue;
            };
            let Ok(version) = digits.parse::<u64>() else { continue };
            if digits.len() != 20 {
                continue;
            }
            match rest.split('.').collect::<Vec<_>>().as_slice() {
                ["json"] => {
                    commits.insert(version, entry.path());
                }
                ["checkpoint", "parquet"] => parts.entry((version, 1)).or_default().push((1, entry.path())),
                ["checkpoint", part, of, "parquet"] => {
                    if let (Ok(part), Ok(of)) = (part.parse(), of.parse()) {
                        parts.entry((version, of)).or_default().push((part, entry.path()));
                    }
                }
                // Checksums, compacted logs, v2 checkpoints (a reader feature, refused).
                _ => {}
            }
        }
        let mut checkpoints = BTreeMap::new();
        for ((version, of), mut files) in parts {
            files.sort();
            if files.len() == of as usize {
                checkpoints.insert(version, files.into_iter().map(|(_, p)| p).collect());
            }
        }
        if commits.is_empty() && checkpoints.is_empty() {
            return Err(fail(
                table,
                format!("is not a Delta table: {} holds no commit", dir.display()),
            ));
        }
        Ok(Log {
            table: table.to_path_buf(),
            commits,
            checkpoints,
        })
    }

    fn newest(&self) -> Result<u64, SourceError> {
        let newest = self.commits.keys().chain(self.checkpoints.keys()).max();
        Ok(*newest.expect("a log holds a commit or a checkpoint"))
    }

    /// The newest version committed at or before `time`.
    fn version_at(&self, time: i64) -> Result<u64, SourceError> {
        let mut found = None;
        for (version, path) in &self.commits {
            if commit_time(path)? > time {
                break;
            }
            found = Some(*version);
        }
        found.ok_or_else(|| {
            let first = self.commits.iter().next().map(|(v, p)| (v, commit_time(p)));
            let since = match first {
                Some((v, Ok(t))) => format!(
                    "its oldest version in the log, {v}, is of {}",
                    crate::time::format_timestamp(t)
                ),
                _ => "its log has no commit to date".to_string(),
            };
            fail(
                &self.table,
                format!(
                    "has no version as of {}: {since} (`timestamp` in skewless.toml)",
                    crate::time::format_timestamp(time)
                ),
            )
        })
    }

    /// The table's state at `version`: the newest checkpoint at or
    /// before it, then the commits after it.
    fn replay(&self, version: u64) -> Result<State, SourceError> {
        let mut state = State::default();
        let checkpoint = self.checkpoints.range(..=version).next_back();
        let first = match checkpoint {
            Some((at, files)) => {
                for file in files {
                    for action in read_checkpoint(&self.table, file)? {
                        state.apply(action);
                    }
                }
                at + 1
            }
            None => 0,
        };
        for v in first..=version {
            let path = self.commits.get(&v).ok_or_else(|| {
                fail(
                    &self.table,
                    format!(
                        "cannot be read at version {version}: its log lacks commit {v} and no checkpoint covers it \
                         (cleaned up: read a newer version)"
                    ),
                )
            })?;
            for action in read_commit(path)? {
                state.apply(action);
            }
        }
        Ok(state)
    }
}

/// The table as the actions so far make it.
#[derive(Default)]
struct State {
    protocol: Option<Protocol>,
    meta: Option<MetaData>,
    /// The files in, by their path in the log.
    files: IndexMap<String, Add>,
}

impl State {
    fn apply(&mut self, action: Action) {
        if let Some(protocol) = action.protocol {
            self.protocol = Some(protocol);
        }
        if let Some(meta) = action.meta_data {
            self.meta = Some(meta);
        }
        if let Some(add) = action.add {
            self.files.insert(add.path.clone(), add);
        }
        if let Some(remove) = action.remove {
            self.files.shift_remove(&remove.path);
        }
    }

    /// Whether this reader reads the table right (the module's invariant).
    fn readable(&self, table: &Path) -> Result<(), SourceError> {
        let (Some(protocol), Some(meta)) = (&self.protocol, &self.meta) else {
            return Err(fail(
                table,
                "is not a Delta table: its log has no protocol or metaData action",
            ));
        };
        if protocol.min_reader_version > 3 {
            return Err(fail(
                table,
                format!(
                    "needs a Delta reader of version {} (this one reads versions 1 to 3)",
                    protocol.min_reader_version
                ),
            ));
        }
        for feature in protocol.reader_features.iter().flatten() {
            if !READER_FEATURES.contains(&feature.as_str()) {
                return Err(fail(
                    table,
                    format!(
                        "uses the Delta reader feature `{feature}`, which skewless does not read (it reads {})",
                        READER_FEATURES.join(", ")
                    ),
                ));
            }
        }
        let mode = meta.configuration.get("delta.columnMapping.mode").cloned().flatten();
        if let Some(mode) = mode.filter(|m| m != "none") {
            return Err(fail(
                table,
                format!(
                    "uses column mapping (`delta.columnMapping.mode = {mode}`), which skewless does not read: \
                     write the table without it"
                ),
            ));
        }
        if let Some(add) = self.files.values().find(|a| a.deletion_vector.is_some()) {
            return Err(fail(
                table,
                format!(
                    "file {} has a deletion vector (rows deleted in place), which skewless does not read: \
                     purge them (`REORG TABLE ... APPLY (PURGE)`) or write the table without deletion vectors",
                    add.path
                ),
            ));
        }
        Ok(())
    }
}

/// One line of a commit, or one row of a checkpoint: at most one of its
/// fields is set. Other actions (`txn`, `cdc`, `domainMetadata`) do not
/// change which rows the table holds.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Action {
    add: Option<Add>,
    remove: Option<Remove>,
    meta_data: Option<MetaData>,
    protocol: Option<Protocol>,
    commit_info: Option<CommitInfo>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Add {
    path: String,
    #[serde(default)]
    partition_values: BTreeMap<String, Option<String>>,
    data_change: Option<bool>,
    stats: Option<String>,
    deletion_vector: Option<serde_json::Value>,
}

impl Add {
    fn data_file(self, table: &Path) -> Result<DataFile, SourceError> {
        let decoded = percent_encoding::percent_decode_str(&self.path)
            .decode_utf8()
            .map_err(|e| fail(table, format!("file path `{}` in its log is not UTF-8: {e}", self.path)))?;
        let path = if let Some(local) = decoded.strip_prefix("file://") {
            PathBuf::from(local)
        } else if decoded.contains("://") {
            return Err(fail(
                table,
                format!("file `{decoded}` is not on this machine: skewless reads local Delta tables"),
            ));
        } else {
            table.join(decoded.as_ref())
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Stats {
            num_records: Option<u64>,
        }
        let rows = (self.stats.as_deref())
            .and_then(|s| serde_json::from_str::<Stats>(s).ok())
            .and_then(|s| s.num_records);
        Ok(DataFile {
            path,
            partition_values: self.partition_values,
            rows,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Remove {
    path: String,
    data_change: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaData {
    schema_string: String,
    #[serde(default)]
    configuration: BTreeMap<String, Option<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Protocol {
    min_reader_version: u32,
    reader_features: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommitInfo {
    in_commit_timestamp: Option<i64>,
    operation: Option<String>,
}

fn read_commit(path: &Path) -> Result<Vec<Action>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    parse_lines(path, &text)
}

fn parse_lines(path: &Path, text: &str) -> Result<Vec<Action>, SourceError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| fail(path, format!("line {}: not a Delta log action: {e}", i + 1)))
        })
        .collect()
}

/// The operation a commit records (`DELETE`, `MERGE`...), for messages.
fn action_operation(path: &Path) -> Option<String> {
    let first = read_commit(path).ok()?.into_iter().find_map(|a| a.commit_info)?;
    first.operation
}

/// When a commit was made, in microseconds (the module's [`TableVersion::AsOf`]).
fn commit_time(path: &Path) -> Result<i64, SourceError> {
    let in_commit = read_commit(path)?
        .into_iter()
        .find_map(|a| a.commit_info?.in_commit_timestamp);
    if let Some(millis) = in_commit {
        return Ok(millis * 1_000);
    }
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| fail(path, format!("cannot read its modification time: {e}")))?;
    Ok(crate::time::micros(modified))
}

/// A checkpoint's actions: its rows, as JSON, through the commits' parser.
fn read_checkpoint(table: &Path, path: &Path) -> Result<Vec<Action>, SourceError> {
    let file = std::fs::File::open(path).map_err(|e| fail(path, format!("cannot open: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| fail(path, format!("not a readable checkpoint: {e}")))?;
    let roots: Vec<usize> = (builder.parquet_schema().root_schema().get_fields().iter())
        .enumerate()
        .filter(|(_, f)| ["add", "remove", "metaData", "protocol"].contains(&f.name()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = (builder.with_projection(mask).build()).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    let mut text = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut text);
    for batch in reader {
        let batch = batch.map_err(|e| fail(path, format!("corrupt checkpoint: {e}")))?;
        writer
            .write(&batch)
            .map_err(|e| fail(path, format!("cannot read its actions: {e}")))?;
    }
    writer.finish().map_err(|e| fail(path, e.to_string()))?;
    let text = String::from_utf8(text).map_err(|e| fail(table, e.to_string()))?;
    parse_lines(path, &text)
}

/// The table's columns as Arrow types, from its schema string. A type
/// that maps onto no feature type (a struct, a map) keeps a stand-in
/// that no needed column accepts.
fn schema_columns(table: &Path, schema: &str) -> Result<Vec<(String, ArrowType)>, SourceError> {
    #[derive(Deserialize)]
    struct Struct {
        fields: Vec<StructField>,
    }
    #[derive(Deserialize)]
    struct StructField {
        name: String,
        #[serde(rename = "type")]
        data_type: serde_json::Value,
    }
    let parsed: Struct = serde_json::from_str(schema)
        .map_err(|e| fail(table, format!("its schema in the log is not a Delta schema: {e}")))?;
    Ok(parsed
        .fields
        .into_iter()
        .map(|f| {
            let data_type = arrow_type(&f.data_type);
            (f.name, data_type)
        })
        .collect())
}

fn arrow_type(delta: &serde_json::Value) -> ArrowType {
    use serde_json::Value as J;
    match delta {
        J::String(name) => match name.as_str() {
            "string" => ArrowType::Utf8,
            "long" => ArrowType::Int64,
            "integer" => ArrowType::Int32,
            "short" => ArrowType::Int16,
            "byte" => ArrowType::Int8,
            "float" => ArrowType::Float32,
            "double" => ArrowType::Float64,
            "boolean" => ArrowType::Boolean,
            "binary" => ArrowType::Binary,
            "date" => ArrowType::Date32,
            "timestamp" => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "timestamp_ntz" => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            decimal if decimal.starts_with("decimal(") => {
                let digits: Vec<u8> = (decimal.trim_start_matches("decimal(").trim_end_matches(')').split(','))
                    .filter_map(|d| d.trim().parse().ok())
                    .collect();
                match digits.as_slice() {
                    [precision, scale] => ArrowType::Decimal128(*precision, *scale as i8),
                    _ => ArrowType::Null,
                }
            }
            _ => ArrowType::Null,
        },
        J::Object(nested) if nested.get("type") == Some(&J::String("array".into())) => {
            let element = nested.get("elementType").map_or(ArrowType::Null, arrow_type);
            ArrowType::List(Arc::new(Field::new("element", element, true)))
        }
        J::Object(nested) if nested.get("type") == Some(&J::String("struct".into())) => {
            ArrowType::Struct(Default::default())
        }
        _ => ArrowType::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(dir: &Path, version: u64, lines: &[&str]) {
        let log = dir.join("_delta_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join(format!("{version:020}.json")), lines.join("\n")).unwrap();
    }

    const PROTOCOL: &str = r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#;
    const META: &str = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}},{\"name\":\"day\",\"type\":\"string\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":["day"],"configuration":{}}}"#;

    #[test]
    fn adds_and_removes_replay_in_order_and_paths_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        commit(
            dir.path(),
            0,
            &[
                PROTOCOL,
                META,
                r#"{"add":{"path":"day=a/one%20file.parquet","partitionValues":{"day":"a"},"dataChange":true,"stats":"{\"numRecords\":3}"}}"#,
            ],
        );
        commit(
            dir.path(),
            1,
            &[r#"{"add":{"path":"day=b/two.parquet","partitionValues":{"day":null},"dataChange":true}}"#],
        );
        commit(
            dir.path(),
            2,
            &[r#"{"remove":{"path":"day=a/one%20file.parquet","dataChange":true}}"#],
        );
        let at = |v| Snapshot::load(dir.path(), Some(TableVersion::Version(v))).unwrap();
        let names = |s: &Snapshot| s.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
        assert_eq!(names(&at(0)), [dir.path().join("day=a/one file.parquet")]);
        assert_eq!(at(0).files[0].rows, Some(3));
        assert_eq!(at(1).files.len(), 2);
        assert_eq!(at(1).files[1].partition_values["day"], None);
        assert_eq!(names(&at(2)), [dir.path().join("day=b/two.parquet")]);
        let newest = Snapshot::load(dir.path(), None).unwrap();
        assert_eq!(newest.version, 2);
        assert_eq!(newest.columns[0], ("id".to_string(), ArrowType::Int64));

        let added = at(1).added_since(dir.path(), 0).unwrap();
        assert_eq!(added.len(), 1);
        let removed = at(2).added_since(dir.path(), 0).unwrap_err().to_string();
        assert!(
            removed.contains("version 2") && removed.contains("full backfill"),
            "{removed}"
        );
        let missing = Snapshot::load(dir.path(), Some(TableVersion::Version(7)))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("no version 7") && missing.contains("newest is 2"),
            "{missing}"
        );
    }

    #[test]
    fn features_read_wrong_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        commit(
            dir.path(),
            0,
            &[
                r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}"#,
                META,
                r#"{"add":{"path":"a.parquet","partitionValues":{},"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"x","offset":1,"sizeInBytes":1,"cardinality":1}}}"#,
            ],
        );
        let error = Snapshot::load(dir.path(), None).unwrap_err().to_string();
        assert!(error.contains("a.parquet has a deletion vector"), "{error}");

        commit(
            dir.path(),
            1,
            &[
                r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["variantType"],"writerFeatures":[]}}"#,
            ],
        );
        let error = Snapshot::load(dir.path(), None).unwrap_err().to_string();
        assert!(error.contains("reader feature `variantType`"), "{error}");

        let none = tempfile::tempdir().unwrap();
        let error = Snapshot::load(none.path(), None).unwrap_err().to_string();
        assert!(error.contains("is not a Delta table"), "{error}");
    }
}
