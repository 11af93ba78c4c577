//! An aggregation view compiled for storage and reads: which input columns
//! each event keeps, which states a tile holds (functions of the same kind
//! over the same input share one), and which state and window each feature
//! reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregator::Aggregator;
use crate::digest::Digest;
use crate::format::value::Value;
use crate::types::{FeatureType, FieldSpec};

use super::function::{Function, State, StateKind};
use super::window::Window;

/// One aggregation of a view, as declared in `skewless.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationSpec {
    /// The feature's name.
    pub name: String,
    /// The function.
    pub function: AggregateFunction,
    /// The input column (none for `count` of events).
    pub input: Option<String>,
    /// The window.
    pub window: Window,
    /// Line in the config, for errors found later (input types).
    #[serde(skip)]
    pub line: usize,
}

/// An aggregation's function: a built-in, or a user-defined one in a
/// component (`function = "aggregators/median.wasm"`, relative to the repo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AggregateFunction {
    /// A built-in.
    Builtin(Function),
    /// The path of a component exporting `skewless:transform/aggregator`.
    Wasm(PathBuf),
}

impl std::fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AggregateFunction::Builtin(function) => function.fmt(f),
            AggregateFunction::Wasm(path) => {
                let name = path
                    .file_name()
                    .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
                f.write_str(&name)
            }
        }
    }
}

/// How a feature's value comes out of its state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finalize {
    /// A built-in's.
    Builtin(Function),
    /// The user function [`Plan::users`]`[i]`'s `finalize`.
    User(usize),
}

/// A state kept per tile.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// What the state is.
    pub kind: StateKind,
    /// Index into [`Plan::inputs`], `None` for a count of events.
    pub input: Option<usize>,
    /// The input's type.
    pub input_type: Option<FeatureType>,
}

/// A feature of the view: which state it finalizes over which window.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFeature {
    /// Name and output type.
    pub field: FieldSpec,
    /// How its value comes out of the state.
    pub finalize: Finalize,
    /// Index into [`Plan::slots`].
    pub slot: usize,
    /// The window.
    pub window: Window,
}

/// An aggregation view, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The columns each event keeps, in order.
    pub inputs: Vec<FieldSpec>,
    /// The states of a tile, in order.
    pub slots: Vec<Slot>,
    /// The features, in declared order.
    pub features: Vec<PlannedFeature>,
    /// Every distinct window, in first-declared order.
    pub windows: Vec<Window>,
    /// The source's `event_id_column`, typed (int64 or utf8): an event's id
    /// is its value, and an event with the same id replaces it.
    pub id_column: Option<FieldSpec>,
    /// The user-defined functions, one per distinct component.
    pub users: Vec<Arc<Aggregator>>,
}

impl Plan {
    /// Compiles `specs`, typing each input with `type_of` and finding each
    /// user-defined function (already loaded) with `user_of`. Errors name
    /// the aggregation (by index) and what is wrong.
    pub fn new(
        specs: &[AggregationSpec],
        type_of: impl Fn(&str) -> Option<FeatureType>,
        user_of: impl Fn(&Path) -> Arc<Aggregator>,
    ) -> Result<Plan, (usize, String)> {
        let mut plan = Plan {
            inputs: Vec::new(),
            slots: Vec::new(),
            features: Vec::new(),
            windows: Vec::new(),
            id_column: None,
            users: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let input_type = match &spec.input {
                None => None,
                Some(column) => Some(type_of(column).ok_or_else(|| {
                    (
                        i,
                        format!("input column `{column}` is not a column of the view's events"),
                    )
                })?),
            };
            let (output, kind, finalize) = match &spec.function {
                AggregateFunction::Builtin(function) => (
                    function.output_type(input_type).map_err(|e| (i, e))?,
                    function.state_kind(input_type),
                    Finalize::Builtin(*function),
                ),
                AggregateFunction::Wasm(path) => {
                    let user = user_of(path);
                    let described = user.description();
                    let wanted = described.input.data_type;
                    match input_type {
                        None => return Err((i, format!("`{}` needs an `input` column ({wanted})", spec.function))),
                        Some(t) if t != wanted => {
                            return Err((i, format!("`{}` takes {wanted} inputs, not {t}", spec.function)));
                        }
                        Some(_) => {}
                    }
                    let at = match plan.users.iter().position(|u| **u == *user) {
                        Some(at) => at,
                        None => {
                            plan.users.push(user.clone());
                            plan.users.len() - 1
                        }
                    };
                    (described.output.data_type, StateKind::User(at), Finalize::User(at))
                }
            };
            let input = spec.input.as_ref().zip(input_type).map(|(column, data_type)| {
                match plan.inputs.iter().position(|f| &f.name == column) {
                    Some(at) => at,
                    None => {
                        plan.inputs.push(FieldSpec {
                            name: column.clone(),
                            data_type,
                            nullable: true,
                        });
                        plan.inputs.len() - 1
                    }
                }
            });
            let slot = Slot {
                kind,
                input,
                input_type,
            };
            let slot = match plan.slots.iter().position(|s| *s == slot) {
                Some(at) => at,
                None => {
                    plan.slots.push(slot);
                    plan.slots.len() - 1
                }
            };
            if !plan.windows.contains(&spec.window) {
                plan.windows.push(spec.window);
            }
            plan.features.push(PlannedFeature {
                field: FieldSpec {
                    name: spec.name.clone(),
                    data_type: output,
                    nullable: true,
                },
                finalize,
                slot,
                window: spec.window,
            });
        }
        Ok(plan)
    }

    /// The value of feature `feature` for a finished built-in state (a
    /// user function's values come from [`crate::aggregate::fold`], in
    /// batches).
    pub fn finalize_builtin(&self, feature: usize, state: &State) -> Option<Value> {
        match self.features[feature].finalize {
            Finalize::Builtin(f) => Some(f.finalize(state)),
            Finalize::User(_) => None,
        }
    }

    /// The features, as stored-schema fields.
    pub fn fields(&self) -> Vec<FieldSpec> {
        self.features.iter().map(|f| f.field.clone()).collect()
    }

    /// A digest of everything the stored bytes depend on: the inputs, the
    /// states and (when there is one) the row transform. A new digest means
    /// stored events and tiles cannot be read with this plan.
    /// A user-defined function counts by its component's digest, not its
    /// path.
    pub fn digest(&self, specs: &[AggregationSpec], transform: Option<&Digest>) -> Digest {
        let aggregations: Vec<serde_json::Value> = specs
            .iter()
            .zip(&self.features)
            .map(|(spec, feature)| {
                let function = match feature.finalize {
                    Finalize::Builtin(f) => f.to_string(),
                    Finalize::User(at) => format!("wasm:{}", self.users[at].digest().hex()),
                };
                serde_json::json!({ "name": spec.name, "function": function, "input": spec.input, "window": spec.window })
            })
            .collect();
        let text = serde_json::json!({
            "layout": 1,
            "inputs": self.inputs,
            "id_column": self.id_column,
            "aggregations": aggregations,
            "transform": transform.map(Digest::hex),
        });
        Digest::of(text.to_string().as_bytes())
    }
}
