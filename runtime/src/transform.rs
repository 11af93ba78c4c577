//! A loaded transform and the one function that runs it on a batch.
//!
//! [`Transform::run`] is the only way the product executes a transform:
//! backfill and push (through `materialize::Materializer`) and online reads,
//! which the server, `get`, `dataset` and `verify` all go through, call it,
//! so a value is computed by the same code and the same conversion
//! everywhere. [`Transform::run_within`] is the same call with a shorter
//! time limit (a server request's remaining budget).
//!
//! Instances come from a pool of pre-linked instances (`InstancePre`):
//! checked out for one call, returned after a successful call, discarded
//! after a trap, a timeout or a memory-limit hit, so a failed call never
//! leaves a broken instance behind. Guests must not rely on state across
//! calls (the SDK keeps none).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use wasmtime::component::{Func, TypedFunc};
use wasmtime::{Engine, Store, Trap};

use crate::codec::wit as columns;
use crate::digest::Digest;
use crate::error::{LoadError, TransformError, TransformErrorKind};
use crate::limits::{Limits, ticks};
use crate::sandbox::HostState;
use crate::types::{FeatureType, FieldSpec, arrow_schema};
use crate::wit;

/// What a transform says about itself (its `describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Transform name.
    pub name: String,
    /// Transform version.
    pub version: String,
    /// Columns it reads.
    pub inputs: Vec<FieldSpec>,
    /// Columns it writes, in order.
    pub outputs: Vec<FieldSpec>,
}

/// A row the transform could not compute (its outputs are null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// Row index in the input batch.
    pub row: usize,
    /// The transform's message.
    pub message: String,
}

/// The result of [`Transform::run`].
#[derive(Debug, Clone)]
pub struct TransformOutput {
    /// The outputs, one row per input row, columns as `describe` declares.
    pub batch: RecordBatch,
    /// Rows that failed, in row order.
    pub row_errors: Vec<RowError>,
}

struct Instance {
    store: Store<HostState>,
    bindings: wit::Transformer,
    /// The `run` export, called with [`columns::BatchRef`] (borrowed buffers).
    run: Func,
}

/// `run` with borrowed input: the typed signature [`Transform::run_call`] uses.
type RunFunc<'a> = TypedFunc<(columns::BatchRef<'a>,), (Result<wit::Output, String>,)>;

/// A transform loaded for a view: its digest, description, limits and a
/// pool of instances.
pub struct Transform {
    view: String,
    path: PathBuf,
    digest: Digest,
    description: Description,
    output_schema: SchemaRef,
    engine: Engine,
    pre: wit::TransformerPre<HostState>,
    interface: String,
    limits: Limits,
    idle: Mutex<Vec<Instance>>,
}

/// Instances kept idle per transform; more are created under load and dropped after.
const MAX_IDLE_INSTANCES: usize = 16;

impl Transform {
    pub(crate) fn new(
        view: &str,
        path: &Path,
        digest: Digest,
        engine: Engine,
        pre: wit::TransformerPre<HostState>,
        interface: String,
        limits: Limits,
    ) -> Result<Transform, LoadError> {
        let describe_error = |message: String| LoadError::Describe {
            path: path.to_path_buf(),
            message,
        };
        let mut transform = Transform {
            view: view.to_string(),
            path: path.to_path_buf(),
            digest,
            description: Description {
                name: String::new(),
                version: String::new(),
                inputs: vec![],
                outputs: vec![],
            },
            output_schema: arrow_schema(&[]),
            engine,
            pre,
            interface,
            limits,
            idle: Mutex::new(Vec::new()),
        };
        let mut instance = transform
            .instantiate()
            .map_err(|e| describe_error(e.kind.to_string()))?;
        instance.store.set_epoch_deadline(limits.deadline_ticks());
        let raw = instance
            .bindings
            .skewless_transform_transform()
            .call_describe(&mut instance.store)
            .map_err(|e| describe_error(format!("{e:#}")))?;
        let description = Description {
            name: raw.name,
            version: raw.version,
            inputs: raw.inputs.into_iter().map(field_spec).collect(),
            outputs: raw.outputs.into_iter().map(field_spec).collect(),
        };
        check_unique(&description.inputs).map_err(|m| describe_error(format!("inputs: {m}")))?;
        check_unique(&description.outputs).map_err(|m| describe_error(format!("outputs: {m}")))?;
        if description.outputs.is_empty() {
            return Err(describe_error("the transform declares no outputs".into()));
        }
        transform.output_schema = arrow_schema(&description.outputs);
        transform.description = description;
        transform.idle.lock().expect("pool lock").push(instance);
        Ok(transform)
    }

    /// The view this transform was loaded for (used in every error).
    pub fn view(&self) -> &str {
        &self.view
    }

    /// Where the component was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of the component bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// What `describe` returned.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The Arrow schema of [`TransformOutput::batch`].
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs the transform over `input`, which must hold every declared input
    /// column (by name, any order; other columns are ignored). Batches larger
    /// than `max_rows_per_call` are split into several guest calls and the
    /// outputs concatenated, so the result does not depend on the split.
    pub fn run(&self, input: &RecordBatch) -> Result<TransformOutput, TransformError> {
        self.run_within(input, self.limits.timeout())
    }

    /// [`Transform::run`] with each guest call stopped after `timeout` or the
    /// view's own limit, whichever is shorter: the server passes what is left
    /// of a request's time budget.
    pub fn run_within(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError> {
        let timeout = timeout.min(self.limits.timeout());
        let rows = input.num_rows();
        let step = self.limits.max_rows_per_call.max(1);
        if rows <= step {
            return self.run_call(input, timeout);
        }
        let mut batches = Vec::with_capacity(rows.div_ceil(step));
        let mut row_errors = Vec::new();
        for offset in (0..rows).step_by(step) {
            let part = self.run_call(&input.slice(offset, step.min(rows - offset)), timeout)?;
            row_errors.extend(part.row_errors.into_iter().map(|e| RowError {
                row: e.row + offset,
                ..e
            }));
            batches.push(part.batch);
        }
        let batch = arrow_select::concat::concat_batches(&self.output_schema, &batches).map_err(|e| {
            self.error(TransformErrorKind::Output(crate::error::ConversionError::Arrow(
                e.to_string(),
            )))
        })?;
        Ok(TransformOutput { batch, row_errors })
    }

    fn run_call(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError> {
        let rows = input.num_rows();
        let mut instance = self.checkout()?;
        instance.store.set_epoch_deadline(ticks(timeout));
        instance.store.data_mut().limiter.hit = false;
        let result = columns::with_wit_batch(input, &self.description.inputs, |batch| {
            // SAFETY: `instantiate` type-checked `run` against `RunFunc`; the
            // lifetime parameter does not change the component-level type.
            let run: RunFunc<'_> = unsafe { TypedFunc::new_unchecked(instance.run) };
            run.call(&mut instance.store, (batch,)).map(|(result,)| result)
        });
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                self.checkin(instance);
                return Err(self.error(TransformErrorKind::Input(e)));
            }
        };
        let output = match result {
            Ok(Ok(output)) => {
                self.checkin(instance);
                output
            }
            Ok(Err(message)) => {
                self.checkin(instance);
                return Err(self.error(TransformErrorKind::Failed(message)));
            }
            // The instance is dropped here: after a trap its state is undefined.
            Err(error) => return Err(self.error(classify_trap(error, &instance, &self.limits, timeout))),
        };
        let mut row_errors = Vec::with_capacity(output.row_errors.len());
        for e in output.row_errors {
            if e.row as usize >= rows {
                return Err(
                    self.error(TransformErrorKind::Output(crate::error::ConversionError::RowCount {
                        column: None,
                        expected: rows,
                        actual: e.row as usize + 1,
                    })),
                );
            }
            row_errors.push(RowError {
                row: e.row as usize,
                message: e.message,
            });
        }
        row_errors.sort_by_key(|e| e.row);
        let batch = columns::from_wit(output.batch, &self.description.outputs, &self.output_schema, rows)
            .map_err(|e| self.error(TransformErrorKind::Output(e)))?;
        let batch = if row_errors.is_empty() {
            batch
        } else {
            null_rows(batch, &row_errors)
        };
        Ok(TransformOutput { batch, row_errors })
    }

    fn error(&self, kind: TransformErrorKind) -> TransformError {
        TransformError {
            view: self.view.clone(),
            kind,
        }
    }

    fn checkout(&self) -> Result<Instance, TransformError> {
        if let Some(instance) = self.idle.lock().expect("pool lock").pop() {
            return Ok(instance);
        }
        self.instantiate()
    }

    fn checkin(&self, instance: Instance) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }

    fn instantiate(&self) -> Result<Instance, TransformError> {
        let mut store = Store::new(&self.engine, HostState::new(&self.limits));
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let fail = |e: wasmtime::Error| self.error(TransformErrorKind::Instantiate(format!("{e:#}")));
        let instance = self.pre.instance_pre().instantiate(&mut store).map_err(fail)?;
        let bindings = wit::Transformer::new(&mut store, &instance).map_err(fail)?;
        let missing = || fail(wasmtime::format_err!("no `run` export in {}", self.interface));
        let interface = instance
            .get_export_index(&mut store, None, &self.interface)
            .ok_or_else(missing)?;
        let run_index = instance
            .get_export_index(&mut store, Some(&interface), "run")
            .ok_or_else(missing)?;
        let run = instance.get_func(&mut store, run_index).ok_or_else(missing)?;
        run.typed::<(columns::BatchRef<'static>,), (Result<wit::Output, String>,)>(&store)
            .map_err(fail)?;
        Ok(Instance { store, bindings, run })
    }
}

/// Names what stopped a guest: our time limit, our memory limit, or a trap.
fn classify_trap(
    error: wasmtime::Error,
    instance: &Instance,
    limits: &Limits,
    timeout: Duration,
) -> TransformErrorKind {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return TransformErrorKind::Timeout {
            limit: timeout,
            caller: timeout < limits.timeout(),
        };
    }
    if instance.store.data().limiter.hit {
        return TransformErrorKind::MemoryLimit {
            limit_mib: limits.memory_mib,
        };
    }
    let stderr = String::from_utf8_lossy(&instance.store.data().stderr.contents())
        .lines()
        // Guests cannot see the environment, so Rust's hint to set RUST_BACKTRACE only misleads.
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join("\n");
    // The wasm backtrace is for debugging (SKEWLESS_LOG=debug); users get the cause.
    tracing::debug!("transform trapped: {error:?}");
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    TransformErrorKind::Trap { message, stderr }
}

/// A guest must null the outputs of failed rows (the SDK does); the host
/// enforces it so a hand-written guest cannot leak a half-computed value.
fn null_rows(batch: RecordBatch, errors: &[RowError]) -> RecordBatch {
    let rows = batch.num_rows();
    let mut keep = arrow_buffer::BooleanBufferBuilder::new(rows);
    keep.append_n(rows, true);
    for e in errors {
        keep.set_bit(e.row, false);
    }
    let keep = arrow_buffer::NullBuffer::new(keep.finish());
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let nulls = arrow_buffer::NullBuffer::union(data.nulls(), Some(&keep));
            let data = data
                .into_builder()
                .nulls(nulls)
                .build()
                .expect("same layout, fewer valid rows");
            arrow_array::make_array(data)
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("same schema and lengths")
}

fn field_spec(field: wit::Field) -> FieldSpec {
    FieldSpec {
        name: field.name,
        data_type: FeatureType::from_wit(field.data_type),
        nullable: field.nullable,
    }
}

fn check_unique(fields: &[FieldSpec]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for field in fields {
        if field.name.is_empty() {
            return Err("a field has an empty name".into());
        }
        if !seen.insert(&field.name) {
            return Err(format!("field `{}` is declared twice", field.name));
        }
    }
    Ok(())
}
