//! An aggregation view compiled for storage and reads: which input columns
//! each event keeps, which states a tile holds (functions of the same kind
//! over the same input share one), and which state and window each feature
//! reads.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::types::{FeatureType, FieldSpec};

use super::function::{Function, StateKind};
use super::window::Window;

/// One aggregation of a view, as declared in `skewless.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationSpec {
    /// The feature's name.
    pub name: String,
    /// The built-in function.
    pub function: Function,
    /// The input column (none for `count` of events).
    pub input: Option<String>,
    /// The window.
    pub window: Window,
    /// Line in the config, for errors found later (input types).
    #[serde(skip)]
    pub line: usize,
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
    /// The function.
    pub function: Function,
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
}

impl Plan {
    /// Compiles `specs`, typing each input with `type_of`. Errors name
    /// the aggregation (by index) and what is wrong.
    pub fn new(
        specs: &[AggregationSpec],
        type_of: impl Fn(&str) -> Option<FeatureType>,
    ) -> Result<Plan, (usize, String)> {
        let mut plan = Plan {
            inputs: Vec::new(),
            slots: Vec::new(),
            features: Vec::new(),
            windows: Vec::new(),
            id_column: None,
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
            let output = spec.function.output_type(input_type).map_err(|e| (i, e))?;
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
                kind: spec.function.state_kind(input_type),
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
                function: spec.function,
                slot,
                window: spec.window,
            });
        }
        Ok(plan)
    }

    /// The features, as stored-schema fields.
    pub fn fields(&self) -> Vec<FieldSpec> {
        self.features.iter().map(|f| f.field.clone()).collect()
    }

    /// A digest of everything the stored bytes depend on: the inputs, the
    /// states and (when there is one) the row transform. A new digest means
    /// stored events and tiles cannot be read with this plan.
    pub fn digest(&self, specs: &[AggregationSpec], transform: Option<&Digest>) -> Digest {
        let text = serde_json::json!({
            "layout": 1,
            "inputs": self.inputs,
            "id_column": self.id_column,
            "aggregations": specs,
            "transform": transform.map(Digest::hex),
        });
        Digest::of(text.to_string().as_bytes())
    }
}
