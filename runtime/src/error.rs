//! Typed errors. Each names what went wrong and where (file, line, key,
//! view, column, row), and where there is something to do, says what.

use std::path::PathBuf;
use std::time::Duration;

use crate::types::FeatureType;

/// A column could not cross between Arrow and the WIT contract.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConversionError {
    /// The batch lacks a column the transform reads.
    #[error("column `{column}` is missing")]
    MissingColumn {
        /// Column name.
        column: String,
    },
    /// A column has a type other than the declared one.
    #[error("column `{column}` is {actual}, expected {expected}")]
    WrongType {
        /// Column name.
        column: String,
        /// Declared type.
        expected: FeatureType,
        /// Type found.
        actual: String,
    },
    /// Columns are not the declared ones, in the declared order.
    #[error("columns are [{actual}], expected [{expected}]")]
    Columns {
        /// Declared column names.
        expected: String,
        /// Column names found.
        actual: String,
    },
    /// The guest reported an error for a row the batch does not have.
    #[error("a row error names row {row}, but the batch has {rows} rows (numbered from 0)")]
    RowErrorOutOfRange {
        /// The row it named.
        row: u32,
        /// Rows in the batch.
        rows: usize,
    },
    /// A batch or column has the wrong number of rows.
    #[error("{} has {actual} rows, expected {expected}", column.as_ref().map(|c| format!("column `{c}`")).unwrap_or("the batch".into()))]
    RowCount {
        /// Column, or `None` for the whole batch.
        column: Option<String>,
        /// Rows expected.
        expected: usize,
        /// Rows found.
        actual: usize,
    },
    /// A buffer is malformed (bitmap too short, bad offsets, invalid UTF-8).
    #[error("column `{column}`: {message}")]
    InvalidBuffer {
        /// Column name.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Arrow refused the assembled batch.
    #[error("{0}")]
    Arrow(String),
}

/// A component could not be loaded for a view.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read component {path}: {error}. Build it first (see `skewless build --help`)")]
    Read {
        /// Component path.
        path: PathBuf,
        /// I/O error.
        error: std::io::Error,
    },
    /// The file is not a valid WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {message}")]
    Invalid {
        /// Component path.
        path: PathBuf,
        /// Compiler message.
        message: String,
    },
    /// The component does not export the Skewless interface.
    #[error(
        "{path} does not export {interface}; it exports [{found}]. Build transforms against wit/ with the Skewless SDK"
    )]
    NotATransform {
        /// Component path.
        path: PathBuf,
        /// The interface needed.
        interface: String,
        /// What it exports.
        found: String,
    },
    /// The component was built for another version of the contract.
    #[error(
        "{path} was built for {found}, but this Skewless needs {interface}@{needed}: rebuild it against this release's wit/"
    )]
    WrongVersion {
        /// Component path.
        path: PathBuf,
        /// Interface name.
        interface: String,
        /// Version found.
        found: String,
        /// Version needed.
        needed: String,
    },
    /// Linking or instantiating failed (e.g. an import the host does not provide).
    #[error("cannot instantiate {path}: {message}")]
    Instantiate {
        /// Component path.
        path: PathBuf,
        /// Wasmtime's message.
        message: String,
    },
    /// `describe` failed or returned an unusable schema.
    #[error("{path}: describe: {message}")]
    Describe {
        /// Component path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The engine could not be set up.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

/// A transform call failed. The process and every other view are
/// unaffected; every call has its own instance, so nothing of it remains.
#[derive(Debug, thiserror::Error)]
#[error("view `{view}`: {kind}")]
pub struct TransformError {
    /// The view (or label) the transform runs for.
    pub view: String,
    /// What happened.
    pub kind: TransformErrorKind,
}

/// What made a transform call fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformErrorKind {
    /// The input batch does not fit the transform's declared inputs.
    #[error("input does not match the transform's declared inputs: {0}")]
    Input(ConversionError),
    /// The guest returned outputs that do not fit its declared outputs.
    #[error("transform returned malformed output: {0}")]
    Output(ConversionError),
    /// The guest failed the whole batch.
    #[error("transform failed the batch: {0}")]
    Failed(String),
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    #[error("transform trapped: {message}{}", stderr_suffix(stderr))]
    Trap {
        /// The trap.
        message: String,
        /// What the guest wrote to stderr (e.g. a panic message).
        stderr: String,
    },
    /// The call ran past its time limit.
    #[error(
        "transform ran past {} of {} ms and was stopped ({})",
        if *caller { "the time left for the request" } else { "its time limit" },
        limit.as_millis(),
        if *caller { "raise the caller's limit, e.g. `skewless serve --request-timeout`, if this is expected" }
        else {
            "raise `limits.timeout_ms` of the view if this is expected, or lower its \
             `limits.max_rows_per_call`: the limit is per call, and big batches are split into calls"
        }
    )]
    Timeout {
        /// The limit.
        limit: Duration,
        /// Whether the caller's limit (a request's remaining time) was the
        /// shorter one, rather than the view's own.
        caller: bool,
    },
    /// The guest tried to grow its memory past the limit.
    #[error(
        "transform tried to use more than its memory limit of {limit_mib} MiB and was stopped (raise `limits.memory_mib` of the view if this is expected)"
    )]
    MemoryLimit {
        /// The limit in MiB.
        limit_mib: u64,
    },
    /// Wasmtime could not create an instance.
    #[error("cannot instantiate the transform: {0}")]
    Instantiate(String),
    /// An aggregator returned states that break the contract (too few or
    /// too many, or one past the state size limit).
    #[error("aggregator returned unusable states: {0}")]
    States(String),
    /// Every instance slot was in use (each call has its own instance).
    #[error("more than {limit} transform calls were running at once in this process; retry shortly")]
    TooManyCalls {
        /// The slots (`MAX_CONCURRENT_CALLS`).
        limit: u32,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {trimmed}")
    }
}
