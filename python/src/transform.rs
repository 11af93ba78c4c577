//! `skewless.Transform`: one component, run through
//! [`skewless_runtime::Transform::run`], the function the CLI's backfill and
//! the server call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PySchema, PyTable};
use skewless_runtime::{Digest, Limits, Runtime};

use crate::{LoadError, TransformError, canonical_batches};

/// This process's runtime: made once per process id, so a forked child
/// makes its own (with its own epoch ticker).
fn runtime() -> PyResult<Arc<Runtime>> {
    static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if let Some((owner, runtime)) = slot.as_ref()
        && *owner == pid
    {
        return Ok(runtime.clone());
    }
    let cache = std::env::var_os("SKEWLESS_CACHE_DIR").map(PathBuf::from);
    let runtime = Arc::new(Runtime::new(cache).map_err(|e| LoadError::new_err(e.to_string()))?);
    *slot = Some((pid, runtime.clone()));
    Ok(runtime)
}

/// Loaded components by (process id, digest).
type Loaded = HashMap<(u32, Digest), Arc<skewless_runtime::Transform>>;

/// The component at `path`, loaded once per process and digest.
fn load(path: &Path) -> PyResult<Arc<skewless_runtime::Transform>> {
    static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);
    let bytes = std::fs::read(path).map_err(|e| LoadError::new_err(format!("{}: {e}", path.display())))?;
    let key = (std::process::id(), Digest::of(&bytes));
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    let loaded = loaded.get_or_insert_with(HashMap::new);
    if let Some(transform) = loaded.get(&key) {
        return Ok(transform.clone());
    }
    let label = path
        .file_stem()
        .map_or_else(|| "transform".into(), |s| s.to_string_lossy().into_owned());
    let transform = runtime()?
        .load_bytes(&label, path, &bytes, Limits::default(), Default::default())
        .map_err(|e| LoadError::new_err(e.to_string()))?;
    let transform = Arc::new(transform);
    loaded.insert(key, transform.clone());
    Ok(transform)
}

/// A transform component, loaded once per process.
#[pyclass(frozen, module = "skewless._skewless")]
pub struct Transform {
    path: PathBuf,
    loaded: Mutex<(u32, Arc<skewless_runtime::Transform>)>,
}

impl Transform {
    /// The component, loaded in this process (again after a fork).
    fn current(&self) -> PyResult<Arc<skewless_runtime::Transform>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 != std::process::id() {
            *loaded = (std::process::id(), load(&self.path)?);
        }
        Ok(loaded.1.clone())
    }
}

#[pymethods]
impl Transform {
    /// Loads the component at `path` (compiled once per process, or taken
    /// from `SKEWLESS_CACHE_DIR`), checks its contract and calls `describe`.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Transform> {
        let transform = load(&path)?;
        Ok(Transform {
            path,
            loaded: Mutex::new((std::process::id(), transform)),
        })
    }

    /// The sha256 of the component's bytes, `sha256:<hex>`.
    #[getter]
    fn digest(&self) -> PyResult<String> {
        Ok(self.current()?.digest().to_string())
    }

    /// Name, version, inputs and outputs, as the component describes itself.
    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let transform = self.current()?;
        let description = transform.description();
        let fields = |fields: &[skewless_runtime::FieldSpec]| -> PyResult<Vec<Bound<'py, PyDict>>> {
            fields
                .iter()
                .map(|f| {
                    let d = PyDict::new(py);
                    d.set_item("name", &f.name)?;
                    d.set_item("type", f.data_type.to_string())?;
                    d.set_item("nullable", f.nullable)?;
                    Ok(d)
                })
                .collect()
        };
        let out = PyDict::new(py);
        out.set_item("name", &description.name)?;
        out.set_item("version", &description.version)?;
        out.set_item("inputs", fields(&description.inputs)?)?;
        out.set_item("outputs", fields(&description.outputs)?)?;
        Ok(out)
    }

    /// The outputs' schema, as a `pyarrow.Schema`.
    #[getter]
    fn output_schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PySchema::new(self.current()?.output_schema().clone()).into_pyarrow(py)
    }

    /// Runs the transform over `data` (anything with the Arrow PyCapsule
    /// interface: a pyarrow RecordBatch or Table, a polars DataFrame, a
    /// pandas DataFrame through `pyarrow.table(df)`), which must hold every
    /// declared input column. Returns a `pyarrow.Table` of the outputs, one
    /// row per input row; rows the transform failed are null. With
    /// `errors=True`, returns `(outputs, errors)`, `errors` a table of
    /// `row` and `message`.
    #[pyo3(signature = (data, *, errors = false))]
    fn run<'py>(&self, py: Python<'py>, data: AnyRecordBatch, errors: bool) -> PyResult<Bound<'py, PyAny>> {
        let transform = self.current()?;
        let batches = canonical_batches(data)?;
        let (outputs, row_errors) = py
            .detach(|| -> Result<_, String> {
                let mut outputs = Vec::with_capacity(batches.len());
                let mut row_errors = Vec::new();
                let mut offset = 0;
                for batch in &batches {
                    let out = transform.run(batch).map_err(|e| e.to_string())?;
                    row_errors.extend(out.row_errors.into_iter().map(|e| (e.row + offset, e.message)));
                    offset += batch.num_rows();
                    outputs.push(out.batch);
                }
                Ok((outputs, row_errors))
            })
            .map_err(TransformError::new_err)?;
        let table = PyTable::try_new(outputs, transform.output_schema().clone())?.into_pyarrow(py)?;
        if !errors {
            return Ok(table);
        }
        let (rows, messages): (Vec<u64>, Vec<String>) = row_errors.into_iter().map(|(r, m)| (r as u64, m)).unzip();
        let errors = RecordBatch::try_from_iter([
            (
                "row",
                Arc::new(arrow_array::UInt64Array::from(rows)) as arrow_array::ArrayRef,
            ),
            (
                "message",
                Arc::new(arrow_array::StringArray::from(messages)) as arrow_array::ArrayRef,
            ),
        ])
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        let errors = PyTable::try_new(vec![errors.clone()], errors.schema())?.into_pyarrow(py)?;
        Ok((table, errors).into_pyobject(py)?.into_any())
    }

    fn __repr__(&self) -> PyResult<String> {
        let transform = self.current()?;
        let d = transform.description();
        Ok(format!(
            "<skewless.Transform {} {} {}>",
            d.name,
            d.version,
            transform.digest()
        ))
    }
}
