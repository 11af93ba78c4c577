//! `import skewless`: the runtime library behind a Python module, so a
//! notebook, a Spark executor or a Ray actor runs a transform through the
//! same host code and the same function ([`skewless_runtime::Transform::run`])
//! as the CLI and the server. No second runtime: the wheel links
//! `skewless-runtime`.
//!
//! - Data crosses with the Arrow PyCapsule interface (pyo3-arrow): pyarrow,
//!   polars and pandas (through pyarrow) in, without a copy; pyarrow out.
//! - The GIL is released while a component runs.
//! - Loaded components are cached per process and digest. Spark and Ray
//!   fork their workers, and a forked child has no epoch-ticker thread
//!   (its time limits would never fire): a `Transform` used in another
//!   process than the one that loaded it loads again there.

mod repo;
mod transform;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_arrow::input::AnyRecordBatch;

pyo3::create_exception!(
    _skewless,
    Error,
    PyRuntimeError,
    "A Skewless operation failed; the message is the CLI's."
);
pyo3::create_exception!(_skewless, TransformError, Error, "A transform call failed.");
pyo3::create_exception!(_skewless, LoadError, Error, "A component could not be loaded.");

/// An error and its causes, as the CLI prints them (`error: a: b: c`).
fn message(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors quote their cause in their own message already.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The batches of `data`, with the other Arrow spellings of our types made
/// ours: polars and pandas hand over strings as `string_view` or
/// `large_string`, which become `utf8` (a copy of those columns only;
/// every other column is taken as it is, without a copy).
fn canonical_batches(data: AnyRecordBatch) -> PyResult<Vec<RecordBatch>> {
    let reader = data.into_reader()?;
    let schema = reader.schema();
    let spelled = |t: &DataType| matches!(t, DataType::Utf8View | DataType::LargeUtf8);
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::new_err(format!("cannot read the input: {e}")))?;
    if !schema.fields().iter().any(|f| spelled(f.data_type())) {
        return Ok(batches);
    }
    let canonical = std::sync::Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if spelled(t) => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ));
    batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    t if spelled(t) => arrow_cast::cast(c, &DataType::Utf8),
                    _ => Ok(c.clone()),
                })
                .collect::<Result<Vec<ArrayRef>, _>>()
                .and_then(|columns| RecordBatch::try_new(canonical.clone(), columns));
            columns.map_err(|e| Error::new_err(format!("cannot read the input: {e}")))
        })
        .collect()
}

#[pymodule]
fn _skewless(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<transform::Transform>()?;
    m.add_class::<repo::Repo>()?;
    m.add("Error", m.py().get_type::<Error>())?;
    m.add("TransformError", m.py().get_type::<TransformError>())?;
    m.add("LoadError", m.py().get_type::<LoadError>())?;
    Ok(())
}
