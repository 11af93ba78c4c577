//! A user-defined aggregation function: a component that exports
//! `skewless:transform/aggregator` (`wit/aggregator.wit`), loaded by
//! [`crate::Runtime::load_aggregator`] with the same engine, sandbox, limits
//! and compile cache as a transform.
//!
//! The fold ([`crate::aggregate::fold`]) calls it in three vectorized steps,
//! each on a fresh instance (so a value cannot depend on the calls before
//! it): [`Aggregator::update`] folds events into states, [`Aggregator::merge`]
//! folds later states into states, and [`Aggregator::finalize`] turns states
//! into feature values. The empty byte string is the state of no events.
//! [`Aggregator::check_laws`] is what `apply` runs on sample inputs before
//! it accepts the function.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use wasmtime::Store;

use crate::codec::wit as columns;
use crate::digest::Digest;
use crate::error::{LoadError, TransformError, TransformErrorKind};
use crate::format::value::{Value, ValueBuilder};
use crate::fresh::{FreshInstances, InstanceWorker, Made};
use crate::limits::{Limits, MAX_AGGREGATOR_STATE_BYTES};
use crate::sandbox::HostState;
use crate::transform::{cap_message, classify_trap, new_store};
use crate::types::{FeatureType, FieldSpec};

use crate::wit;

/// What an aggregator says about itself (its `describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatorDescription {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The type of the one input column (named by the view's `input`).
    pub input: FieldSpec,
    /// The feature's type.
    pub output: FieldSpec,
}

/// A loaded user-defined aggregation function.
pub struct Aggregator {
    /// The view and feature it computes, for messages.
    label: String,
    path: PathBuf,
    digest: Digest,
    description: AggregatorDescription,
    /// Instances of the pre-linked component, made ahead ([`crate::fresh`]).
    fresh: Arc<FreshInstances<Bindings>>,
    limits: Limits,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("path", &self.path)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// Two loads of the same bytes compute the same function.
impl PartialEq for Aggregator {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

/// A pre-linked aggregator of either contract version the host runs.
pub(crate) enum AggregatorPre {
    /// Built for 0.2.0.
    V0_2(wit::AggregatorComponentPre<HostState>),
    /// Built for 0.1.0: its batches and columns are converted at the call.
    V0_1(wit::v0_1::AggregatorComponentPre<HostState>),
}

/// An instance's bindings, of the component's contract version.
pub(crate) enum Bindings {
    V0_2(wit::AggregatorComponent),
    V0_1(wit::v0_1::AggregatorComponent),
}

impl Aggregator {
    pub(crate) fn new(
        label: &str,
        path: &Path,
        digest: Digest,
        pre: AggregatorPre,
        worker: &Arc<InstanceWorker>,
        limits: Limits,
    ) -> Result<Aggregator, LoadError> {
        let describe_error = |message: String| LoadError::Describe {
            path: path.to_path_buf(),
            message,
        };
        let engine = match &pre {
            AggregatorPre::V0_2(pre) => pre.instance_pre().component().engine().clone(),
            AggregatorPre::V0_1(pre) => pre.instance_pre().component().engine().clone(),
        };
        let fresh = FreshInstances::new(
            worker,
            move || new_store(&engine, &limits, limits.timeout()),
            move |store| match &pre {
                AggregatorPre::V0_2(pre) => pre.instantiate(store).map(Bindings::V0_2),
                AggregatorPre::V0_1(pre) => pre.instantiate(store).map(Bindings::V0_1),
            },
        );
        let mut made = fresh
            .take_one_off(limits.timeout())
            .map_err(|(e, _)| describe_error(format!("{e:#}")))?;
        let Made { store, instance } = &mut *made;
        let raw = match instance {
            Bindings::V0_2(bindings) => bindings
                .skewless_transform_aggregator()
                .call_describe(store)
                .map(|d| (d.name, d.version, d.input, d.output)),
            Bindings::V0_1(bindings) => bindings
                .skewless_transform_aggregator()
                .call_describe(store)
                .map(|d| (d.name, d.version, wit::v0_1::field(d.input), wit::v0_1::field(d.output))),
        };
        let (name, version, input, output) = raw.map_err(|e| describe_error(format!("{e:#}")))?;
        drop(made);
        let field = crate::transform::field_spec;
        let description = AggregatorDescription {
            name,
            version,
            input: field(input),
            output: field(output),
        };
        if description.input.data_type == FeatureType::Bool {
            return Err(describe_error("an aggregator input cannot be boolean".into()));
        }
        Ok(Aggregator {
            label: label.to_string(),
            path: path.to_path_buf(),
            digest,
            description,
            fresh,
            limits,
        })
    }

    /// The component's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest of the component's bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// What `describe` returned.
    pub fn description(&self) -> &AggregatorDescription {
        &self.description
    }

    /// Folds `inputs[i]` (not null) into `states[groups[i]]`, in order.
    pub fn update(
        &self,
        states: &[Vec<u8>],
        groups: &[u32],
        inputs: &[&Value],
    ) -> Result<Vec<Vec<u8>>, TransformError> {
        let field = &self.description.input;
        let mut builder = ValueBuilder::new(field.data_type, inputs.len());
        for value in inputs {
            builder.push((*value).clone());
        }
        let batch = RecordBatch::try_new(
            crate::types::arrow_schema(std::slice::from_ref(field)),
            vec![builder.finish()],
        )
        .map_err(|e| self.error(TransformErrorKind::Failed(format!("cannot build the input batch: {e}"))))?;
        let batch = columns::with_wit_batch(&batch, std::slice::from_ref(field), columns::owned)
            .map_err(|e| self.error(TransformErrorKind::Input(e)))?;
        let out = self.call(|bindings, store| match bindings {
            Bindings::V0_2(b) => b
                .skewless_transform_aggregator()
                .call_update(store, states, groups, &batch),
            Bindings::V0_1(b) => match wit::v0_1::batch(batch) {
                Ok(batch) => b
                    .skewless_transform_aggregator()
                    .call_update(store, states, groups, &batch),
                Err(message) => Ok(Err(message)),
            },
        })?;
        self.check_states(out, states.len())
    }

    /// Folds `parts[i]` into `states[groups[i]]`, in order.
    pub fn merge(&self, states: &[Vec<u8>], groups: &[u32], parts: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, TransformError> {
        let out = self.call(|bindings, store| match bindings {
            Bindings::V0_2(b) => b
                .skewless_transform_aggregator()
                .call_merge(store, states, groups, parts),
            Bindings::V0_1(b) => b
                .skewless_transform_aggregator()
                .call_merge(store, states, groups, parts),
        })?;
        self.check_states(out, states.len())
    }

    /// The feature value of each state.
    pub fn finalize(&self, states: &[Vec<u8>]) -> Result<Vec<Value>, TransformError> {
        let column = self.call(|bindings, store| match bindings {
            Bindings::V0_2(b) => b.skewless_transform_aggregator().call_finalize(store, states),
            Bindings::V0_1(b) => b
                .skewless_transform_aggregator()
                .call_finalize(store, states)
                .map(|r| r.map(wit::v0_1::column)),
        })?;
        let output = &self.description.output;
        let array = columns::column_from_wit(column, output, states.len())
            .map_err(|e| self.error(TransformErrorKind::Output(e)))?;
        let rows = crate::format::value::decode_columns(&[array], std::slice::from_ref(output))
            .map_err(|e| self.error(TransformErrorKind::States(e.to_string())))?;
        Ok(rows.into_iter().map(|mut row| row.swap_remove(0)).collect())
    }

    /// One guest call on a fresh instance, under the view's time and memory limits.
    fn call<R>(
        &self,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, TransformError> {
        let timeout = self.limits.timeout();
        let mut taken = match self.fresh.take(timeout) {
            Ok(taken) => taken,
            Err((e, store)) => return Err(self.error(classify_trap(e, &store, &self.limits, timeout))),
        };
        let Made { store, instance } = &mut *taken;
        match f(instance, store) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(message)) => Err(self.error(TransformErrorKind::Failed(cap_message(message)))),
            Err(e) => Err(self.error(classify_trap(e, store, &self.limits, timeout))),
        }
    }

    /// One state per group, none past [`MAX_AGGREGATOR_STATE_BYTES`].
    fn check_states(&self, states: Vec<Vec<u8>>, groups: usize) -> Result<Vec<Vec<u8>>, TransformError> {
        if states.len() != groups {
            return Err(self.error(TransformErrorKind::States(format!(
                "{} states for {groups} groups",
                states.len()
            ))));
        }
        if let Some(big) = states.iter().find(|s| s.len() > MAX_AGGREGATOR_STATE_BYTES) {
            return Err(self.error(TransformErrorKind::States(format!(
                "a state of {} bytes, past the limit of {MAX_AGGREGATOR_STATE_BYTES} bytes: keep a bounded sketch, \
                 not the events",
                big.len()
            ))));
        }
        Ok(states)
    }

    fn error(&self, kind: TransformErrorKind) -> TransformError {
        TransformError {
            view: self.label.clone(),
            kind,
        }
    }

    /// Checks the laws the fold relies on over `inputs` (non-null sample
    /// values in event order): merging with the empty state changes nothing
    /// on either side, a group's state does not depend on the other groups
    /// of a call, and for each split point `k` in `splits`, updating
    /// `inputs[..k]` and `inputs[k..]` separately and merging gives the same
    /// bytes as updating all of them at once. The first law broken is
    /// returned with both values.
    pub fn check_laws(&self, inputs: &[Value], splits: &[usize]) -> Result<(), LawError> {
        let refs: Vec<&Value> = inputs.iter().filter(|v| !v.is_null()).collect();
        let whole = self.fold(&refs)?;
        let empty: Vec<u8> = Vec::new();
        let merged = self.merge(&[empty.clone(), whole.clone()], &[0, 1], &[whole.clone(), empty])?;
        for (side, state) in ["empty.merge(state)", "state.merge(empty)"].iter().zip(&merged) {
            if *state != whole {
                return Err(self.broken(format!("{side} differs from state"), None, &whole, state)?);
            }
        }
        // Groups are independent: rows given to two groups in one call (odd
        // and even rows) give each the state they give on their own.
        let groups: Vec<u32> = (0..refs.len() as u32).map(|i| i % 2).collect();
        let together = self.update(&[Vec::new(), Vec::new()], &groups, &refs)?;
        for (g, state) in together.iter().enumerate() {
            let alone: Vec<&Value> = refs.iter().skip(g).step_by(2).copied().collect();
            let alone = self.fold(&alone)?;
            if *state != alone {
                return Err(self.broken(
                    format!("group {g}'s state depends on the other group of the same call"),
                    None,
                    &alone,
                    state,
                )?);
            }
        }
        for &k in splits.iter().filter(|&&k| k > 0 && k < refs.len()) {
            let left = self.fold(&refs[..k])?;
            let right = self.fold(&refs[k..])?;
            let split = self.merge(&[left], &[0], &[right])?.remove(0);
            if split != whole {
                return Err(self.broken(
                    "updating in two parts and merging differs from updating at once".into(),
                    Some(k),
                    &whole,
                    &split,
                )?);
            }
        }
        Ok(())
    }

    /// The state of `inputs`, from the empty state.
    fn fold(&self, inputs: &[&Value]) -> Result<Vec<u8>, TransformError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.update(&[Vec::new()], &vec![0; inputs.len()], inputs)?.remove(0))
    }

    fn broken(&self, law: String, row: Option<usize>, expected: &[u8], got: &[u8]) -> Result<LawError, TransformError> {
        let values = self.finalize(&[expected.to_vec(), got.to_vec()])?;
        Ok(LawError::Broken {
            law,
            row,
            expected: describe_state(expected, &values[0]),
            got: describe_state(got, &values[1]),
        })
    }
}

/// A state for a message: its finalized value and its size.
fn describe_state(state: &[u8], value: &Value) -> String {
    format!("{value:?} (state of {} bytes)", state.len())
}

/// Why an aggregator was refused by [`Aggregator::check_laws`].
#[derive(Debug, thiserror::Error)]
pub enum LawError {
    /// A call failed.
    #[error(transparent)]
    Call(#[from] TransformError),
    /// A law does not hold.
    #[error(
        "{law}{}: expected {expected}, got {got}",
        row.map(|r| format!(" (split before sample row {r})")).unwrap_or_default()
    )]
    Broken {
        /// The law.
        law: String,
        /// The split point, for the split law.
        row: Option<usize>,
        /// The value (and state size) it should have been.
        expected: String,
        /// The value it was.
        got: String,
    },
}
