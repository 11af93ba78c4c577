//! A loaded transform and the one function that runs it on a batch.
//!
//! [`Transform::run`] is the only way the product executes a transform:
//! backfill and push (through `materialize::Materializer`) and online reads,
//! which the server, `get`, `dataset` and `verify` all go through, call it,
//! so a value is computed by the same code and the same conversion
//! everywhere. [`Transform::run_within`] is the same call with a shorter
//! time limit (a server request's remaining budget).
//!
//! Every guest call gets a fresh instance of the pre-linked component
//! (`InstancePre`, from the engine's pool, its memory a copy-on-write image
//! of the component's initial state), and the instance is never called
//! again. So an output depends on the call's rows alone, never on the calls
//! before it: a guest that keeps a counter in a global sees 1 on every
//! call, and a trap leaves nothing behind. Instances are made ahead and
//! dropped on a background thread ([`crate::fresh`]), off the call's path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentExportIndex, Instance, InstancePre, TypedFunc};
use wasmtime::{Engine, Store, Trap};

use crate::codec::wit as columns;
use crate::determinism::Determinism;
use crate::digest::Digest;
use crate::error::{ConversionError, LoadError, TransformError, TransformErrorKind};
use crate::fresh::{FreshInstances, InstanceWorker, Made, Taken};
use crate::limits::{Limits, MAX_CONCURRENT_CALLS, MAX_ERROR_MESSAGE_BYTES, MAX_ROW_ERROR_TEXT_PER_CALL, ticks};
use crate::sandbox::HostState;
use crate::types::{FeatureType, FieldSpec, arrow_schema};
use crate::wit;
use crate::wit::Contract;

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

/// `run` with borrowed input: the typed signature [`Transform::run_call`]
/// uses for a component of contract 0.2.0...
type RunFunc<'a> = TypedFunc<(columns::BatchRef<'a, columns::ValuesRef<'a>>,), (Result<wit::Output, String>,)>;
/// ...and for one of contract 0.1.0.
type RunFuncV0_1<'a> =
    TypedFunc<(columns::BatchRef<'a, columns::ScalarValuesRef<'a>>,), (Result<wit::v0_1::Output, String>,)>;

/// A transform loaded for a view: its digest, description, limits and the
/// pre-linked component every call instantiates.
pub struct Transform {
    view: String,
    path: PathBuf,
    digest: Digest,
    description: Description,
    output_schema: SchemaRef,
    /// Instances of the pre-linked component, made ahead.
    fresh: Arc<FreshInstances<Instance>>,
    /// Where `run` is in the component's exports, looked up once.
    run_export: ComponentExportIndex,
    /// The contract version the component was built for.
    contract: Contract,
    limits: Limits,
    determinism: Determinism,
}

impl Transform {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        view: &str,
        path: &Path,
        digest: Digest,
        pre: InstancePre<HostState>,
        contract: Contract,
        worker: &Arc<InstanceWorker>,
        interface: String,
        limits: Limits,
        determinism: Determinism,
    ) -> Result<Transform, LoadError> {
        let describe_error = |message: String| LoadError::Describe {
            path: path.to_path_buf(),
            message,
        };
        let no_run = || LoadError::Instantiate {
            path: path.to_path_buf(),
            message: format!("no `run` export in {interface}"),
        };
        let component = pre.component();
        let engine = component.engine().clone();
        let exported = component.get_export_index(None, &interface).ok_or_else(no_run)?;
        let run_export = component.get_export_index(Some(&exported), "run").ok_or_else(no_run)?;
        let fresh = FreshInstances::new(
            worker,
            move || new_store(&engine, &limits, limits.timeout()),
            move |store| pre.instantiate(store),
        );
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
            fresh,
            run_export,
            contract,
            limits,
            determinism,
        };
        // One instance at load: `describe`, and a check that `run` has the
        // signature every call assumes (done once, here).
        let mut made = transform
            .fresh
            .take_one_off(limits.timeout())
            .map_err(|(e, _)| describe_error(format!("{e:#}")))?;
        let Made { store, instance } = &mut *made;
        let run = instance.get_func(&mut *store, run_export).ok_or_else(no_run)?;
        let signature = match contract {
            Contract::V0_2 => run.typed::<(columns::BatchRef<'static, columns::ValuesRef<'static>>,), (Result<wit::Output, String>,)>(&*store).map(drop),
            Contract::V0_1 => run
                .typed::<(columns::BatchRef<'static, columns::ScalarValuesRef<'static>>,), (Result<wit::v0_1::Output, String>,)>(&*store)
                .map(drop),
        };
        signature.map_err(|e| LoadError::Instantiate {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let raw = match contract {
            Contract::V0_2 => wit::Transformer::new(&mut *store, instance)
                .and_then(|bindings| bindings.skewless_transform_transform().call_describe(&mut *store))
                .map(|d| (d.name, d.version, d.inputs, d.outputs)),
            Contract::V0_1 => wit::v0_1::Transformer::new(&mut *store, instance)
                .and_then(|bindings| bindings.skewless_transform_transform().call_describe(&mut *store))
                .map(|d| {
                    let fields = |fields: Vec<_>| fields.into_iter().map(wit::v0_1::field).collect::<Vec<_>>();
                    (d.name, d.version, fields(d.inputs), fields(d.outputs))
                }),
        };
        let (name, version, inputs, outputs) = raw.map_err(|e| describe_error(format!("{e:#}")))?;
        drop(made);
        let description = Description {
            name,
            version,
            inputs: inputs.into_iter().map(field_spec).collect(),
            outputs: outputs.into_iter().map(field_spec).collect(),
        };
        check_unique(&description.inputs).map_err(|m| describe_error(format!("inputs: {m}")))?;
        check_unique(&description.outputs).map_err(|m| describe_error(format!("outputs: {m}")))?;
        if description.outputs.is_empty() {
            return Err(describe_error("the transform declares no outputs".into()));
        }
        transform.output_schema = arrow_schema(&description.outputs);
        transform.description = description;
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

    /// How the component was compiled ([`Determinism`]).
    pub fn determinism(&self) -> Determinism {
        self.determinism
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
        let batch = arrow_select::concat::concat_batches(&self.output_schema, &batches)
            .map_err(|e| self.error(TransformErrorKind::Output(ConversionError::Arrow(e.to_string()))))?;
        Ok(TransformOutput { batch, row_errors })
    }

    fn run_call(&self, input: &RecordBatch, timeout: Duration) -> Result<TransformOutput, TransformError> {
        let rows = input.num_rows();
        let mut taken = self.instantiate_within(timeout)?;
        let Made { store, instance } = &mut *taken;
        let run = instance.get_func(&mut *store, self.run_export).ok_or_else(|| {
            self.error(TransformErrorKind::Instantiate(
                "the component has no `run` function".into(),
            ))
        })?;
        let result = columns::with_wit_batch(input, &self.description.inputs, |batch| {
            // SAFETY: `Transform::new` type-checked `run` against the typed
            // function of its contract (every instance is of the same
            // component); the lifetime parameter does not change the
            // component-level type.
            match self.contract {
                Contract::V0_2 => {
                    let run: RunFunc<'_> = unsafe { TypedFunc::new_unchecked(run) };
                    Ok(run.call(&mut *store, (batch,)).map(|(result,)| result))
                }
                Contract::V0_1 => {
                    let run: RunFuncV0_1<'_> = unsafe { TypedFunc::new_unchecked(run) };
                    let batch = columns::scalar_only(batch)?;
                    Ok(run
                        .call(&mut *store, (batch,))
                        .map(|(result,)| result.map(wit::v0_1::output)))
                }
            }
        });
        let result = result
            .and_then(|r| r)
            .map_err(|e| self.error(TransformErrorKind::Input(e)))?;
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(message)) => return Err(self.error(TransformErrorKind::Failed(cap_message(message)))),
            Err(error) => return Err(self.error(classify_trap(error, store, &self.limits, timeout))),
        };
        // Never called again: the worker drops it, and the pool resets its slot.
        drop(taken);
        let row_errors = self.row_errors(output.row_errors, rows)?;
        let batch = columns::from_wit(output.batch, &self.description.outputs, &self.output_schema, rows)
            .map_err(|e| self.error(TransformErrorKind::Output(e)))?;
        let batch = if row_errors.is_empty() {
            batch
        } else {
            null_rows(batch, &row_errors)
        };
        Ok(TransformOutput { batch, row_errors })
    }

    /// The guest's row errors, checked and bounded: each names a row of the
    /// batch (else the whole call fails: the guest is broken), one per row
    /// (the first kept), each message at most [`MAX_ERROR_MESSAGE_BYTES`],
    /// and their text together at most [`MAX_ROW_ERROR_TEXT_PER_CALL`]: past
    /// it, rows keep their error with a short marker instead of the message.
    fn row_errors(&self, raw: Vec<wit::RowError>, rows: usize) -> Result<Vec<RowError>, TransformError> {
        if let Some(bad) = raw.iter().find(|e| e.row as usize >= rows) {
            return Err(
                self.error(TransformErrorKind::Output(ConversionError::RowErrorOutOfRange {
                    row: bad.row,
                    rows,
                })),
            );
        }
        let mut errors: Vec<RowError> = raw
            .into_iter()
            .map(|e| RowError {
                row: e.row as usize,
                message: e.message,
            })
            .collect();
        errors.sort_by_key(|e| e.row);
        errors.dedup_by_key(|e| e.row);
        let mut text = 0;
        for error in &mut errors {
            let message = cap_message(std::mem::take(&mut error.message));
            text += message.len();
            error.message = if text <= MAX_ROW_ERROR_TEXT_PER_CALL {
                message
            } else {
                ROW_ERROR_TEXT_SPENT.to_string()
            };
        }
        Ok(errors)
    }

    fn error(&self, kind: TransformErrorKind) -> TransformError {
        TransformError {
            view: self.view.clone(),
            kind,
        }
    }

    /// An instance no one has called, its deadline `timeout` from now.
    fn instantiate_within(&self, timeout: Duration) -> Result<Taken<Instance>, TransformError> {
        self.fresh.take(timeout).map_err(|(e, store)| {
            if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                return self.error(TransformErrorKind::TooManyCalls {
                    limit: MAX_CONCURRENT_CALLS,
                });
            }
            // Start functions run under the call's deadline too.
            if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                return self.error(TransformErrorKind::Timeout {
                    limit: timeout,
                    caller: timeout < self.limits.timeout(),
                });
            }
            drop(store);
            self.error(TransformErrorKind::Instantiate(format!("{e:#}")))
        })
    }
}

/// A store for one guest call under `limits`, its deadline `timeout` from now.
pub(crate) fn new_store(engine: &Engine, limits: &Limits, timeout: Duration) -> Store<HostState> {
    let mut store = Store::new(engine, HostState::new(limits));
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(ticks(timeout));
    store
}

/// Names what stopped a guest: our time limit, our memory limit, or a trap.
pub(crate) fn classify_trap(
    error: wasmtime::Error,
    store: &Store<HostState>,
    limits: &Limits,
    timeout: Duration,
) -> TransformErrorKind {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return TransformErrorKind::Timeout {
            limit: timeout,
            caller: timeout < limits.timeout(),
        };
    }
    if store.data().limiter.hit {
        return TransformErrorKind::MemoryLimit {
            limit_mib: limits.memory_mib,
        };
    }
    let stderr = store
        .data()
        .stderr()
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

/// What replaces a row's message once a call's error text is spent.
const ROW_ERROR_TEXT_SPENT: &str = "(message dropped: the call's row errors passed their size limit)";

/// `message`, cut to at most [`MAX_ERROR_MESSAGE_BYTES`] on a character
/// boundary, with a marker saying how much was cut.
pub(crate) fn cap_message(mut message: String) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message;
    }
    let marker_room = 64;
    let mut cut = MAX_ERROR_MESSAGE_BYTES - marker_room;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = message.len() - cut;
    message.truncate(cut);
    message.push_str(&format!("... [{dropped} more bytes truncated]"));
    message
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

pub(crate) fn field_spec(field: wit::Field) -> FieldSpec {
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
