//! A repo with its components loaded and checked: every view's transform,
//! and the features each view stores and serves.
//!
//! The checks here are the ones only `describe` can answer: declared
//! features must be outputs of the transform with the same types, and every
//! input of an on-demand transform must come, with its type, from exactly
//! one of the view's sources.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::aggregate::{AggregateFunction, AggregationSpec, Plan};
use crate::aggregator::Aggregator;
use crate::engine::Runtime;
use crate::format::layout::DEFAULT_BUCKET_MICROS;
use crate::repo::{Repo, RepoError, SourceKind, View, ViewKind};
use crate::store::{Invariance, ViewRecord};
use crate::transform::Transform;
use crate::types::{FeatureType, FieldSpec};

/// A view that differs from what `skewless apply` recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("view `{view}` {what} since the last `skewless apply`: run `skewless apply` first")]
pub struct NotApplied {
    /// The view.
    pub view: String,
    /// How it differs.
    pub what: &'static str,
}

/// A validated repo with loaded transforms.
pub struct Catalog {
    /// The repo as parsed.
    pub repo: Repo,
    transforms: IndexMap<String, Arc<Transform>>,
    /// Aggregation views, compiled.
    plans: IndexMap<String, Arc<Plan>>,
    features: IndexMap<String, Vec<FieldSpec>>,
    /// Join keys and request fields by name (every read types its columns with these).
    request_columns: IndexMap<String, FeatureType>,
}

impl Catalog {
    /// Loads every view's component and checks it against the repo.
    pub fn load(repo: Repo, runtime: &Runtime) -> Result<Catalog, RepoError> {
        Catalog::load_views(repo, runtime, |_| true)
    }

    /// Loads the components of the views `wanted` selects (and of the views
    /// those read), and checks them against the repo.
    pub fn load_views(repo: Repo, runtime: &Runtime, wanted: impl Fn(&View) -> bool) -> Result<Catalog, RepoError> {
        let mut transforms = IndexMap::new();
        let mut plans = IndexMap::new();
        let mut features: IndexMap<String, Vec<FieldSpec>> = IndexMap::new();
        let needed: Vec<&View> = repo
            .views
            .values()
            .filter(|v| {
                wanted(v)
                    || repo.views.values().any(|other| {
                        wanted(other)
                            && matches!(&other.kind, ViewKind::OnDemand { sources } if sources.contains(&v.name))
                    })
            })
            .collect();
        for view in needed {
            let invalid = |key: &str, message: String| RepoError::Invalid {
                path: repo.config_path.clone(),
                line: view.line,
                key: format!("views.{}.{key}", view.name),
                message,
            };
            let transform = match &view.transform {
                None => None,
                Some(path) => Some(
                    runtime
                        .load_with(&view.name, path, view.limits, view.determinism)
                        .map_err(|error| RepoError::Component {
                            path: repo.config_path.clone(),
                            line: view.line,
                            key: format!("views.{}.transform", view.name),
                            error: Box::new(error),
                        })?,
                ),
            };
            if let ViewKind::Aggregation { aggregations, .. } = &view.kind {
                let plan = plan_aggregations(&repo, runtime, view, aggregations, transform.as_ref())?;
                features.insert(view.name.clone(), plan.fields());
                plans.insert(view.name.clone(), Arc::new(plan));
                if let Some(transform) = transform {
                    transforms.insert(view.name.clone(), Arc::new(transform));
                }
                continue;
            }
            let transform = transform.expect("materialized and on-demand views have a transform (checked by the repo)");
            let transform_path = view.transform.as_deref().expect("checked just above");
            let outputs = &transform.description().outputs;
            let stored = match &view.features {
                None => outputs.clone(),
                Some(declared) => {
                    for field in declared {
                        match outputs.iter().find(|o| o.name == field.name) {
                            None => {
                                return Err(invalid(
                                    "features",
                                    format!(
                                        "`{}` is not an output of {} (its outputs: {})",
                                        field.name,
                                        display_path(transform_path),
                                        field_list(outputs)
                                    ),
                                ));
                            }
                            Some(o) if o.data_type != field.data_type => {
                                return Err(invalid(
                                    "features",
                                    format!(
                                        "`{}` is declared {} but the transform outputs {}",
                                        field.name, field.data_type, o.data_type
                                    ),
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                    declared.clone()
                }
            };
            if let ViewKind::OnDemand { sources } = &view.kind {
                for input in &transform.description().inputs {
                    let mut found = Vec::new();
                    for source in sources {
                        let fields: Vec<FieldSpec> = match repo.sources.get(source).map(|s| &s.kind) {
                            Some(SourceKind::Request { schema }) => schema.clone(),
                            _ => features.get(source).cloned().unwrap_or_default(),
                        };
                        let keys = repo.views.get(source).map(|v| repo.join_keys(v)).unwrap_or_default();
                        if let Some(f) = fields.iter().chain(keys.iter()).find(|f| f.name == input.name) {
                            found.push((source.clone(), f.data_type));
                        }
                    }
                    match found.as_slice() {
                        [] => {
                            return Err(invalid(
                                "sources",
                                format!(
                                    "transform input `{}` ({}) is not a feature or request field of [{}]",
                                    input.name,
                                    input.data_type,
                                    sources.join(", ")
                                ),
                            ));
                        }
                        [(source, ty)] if *ty != input.data_type => {
                            return Err(invalid(
                                "sources",
                                format!(
                                    "transform input `{}` is {} but `{source}` provides {ty}",
                                    input.name, input.data_type
                                ),
                            ));
                        }
                        [_] => {}
                        many => {
                            let names: Vec<_> = many.iter().map(|(s, _)| s.as_str()).collect();
                            return Err(invalid(
                                "sources",
                                format!(
                                    "transform input `{}` is provided by several sources: {}",
                                    input.name,
                                    names.join(", ")
                                ),
                            ));
                        }
                    }
                }
            }
            features.insert(view.name.clone(), stored);
            transforms.insert(view.name.clone(), Arc::new(transform));
        }
        Ok(Catalog {
            request_columns: repo.request_columns(),
            repo,
            transforms,
            plans,
            features,
        })
    }

    /// The compiled aggregations of an aggregation view.
    pub fn plan(&self, view: &str) -> Option<&Arc<Plan>> {
        self.plans.get(view)
    }

    /// The type of every join key and request field, by name.
    pub fn request_columns(&self) -> &IndexMap<String, FeatureType> {
        &self.request_columns
    }

    /// The loaded transform of a view.
    pub fn transform(&self, view: &str) -> Option<&Arc<Transform>> {
        self.transforms.get(view)
    }

    /// The features a view stores and serves, in order.
    pub fn features(&self, view: &str) -> Option<&[FieldSpec]> {
        self.features.get(view).map(Vec::as_slice)
    }

    /// The registry record of `view`, provided the registry's (`stored`)
    /// matches the view as loaded now: what every writer and the server
    /// check before they touch the view's values.
    pub fn applied_record(&self, view: &View, stored: Option<&ViewRecord>) -> Result<ViewRecord, NotApplied> {
        let not_applied = |what: &'static str| NotApplied {
            view: view.name.clone(),
            what,
        };
        let fresh = self.view_record(view).ok_or(not_applied("is not loaded"))?;
        let stored = stored.ok_or(not_applied("is new"))?;
        if stored.digest != fresh.digest {
            return Err(not_applied("has another transform"));
        }
        if stored.features != fresh.features || stored.join_keys != fresh.join_keys {
            return Err(not_applied("has another schema"));
        }
        Ok(stored.clone())
    }

    /// A registry record for a loaded view (storage id 0: not yet assigned).
    pub fn view_record(&self, view: &View) -> Option<ViewRecord> {
        if let (Some(plan), ViewKind::Aggregation { aggregations, .. }) = (self.plans.get(&view.name), &view.kind) {
            let transform = self.transforms.get(&view.name);
            return Some(ViewRecord {
                name: view.name.clone(),
                id: 0,
                materialized: true,
                join_keys: self.repo.join_keys(view),
                features: self.features[&view.name].clone(),
                inputs: plan.inputs.clone(),
                digest: plan.digest(aggregations, transform.map(|t| t.digest()).as_ref()),
                transform: {
                    let mut what = "windows".to_string();
                    for user in &plan.users {
                        let d = user.description();
                        what.push_str(&format!(" with {} {}", d.name, d.version));
                    }
                    if let Some(t) = transform {
                        what.push_str(&format!(" after {} {}", t.description().name, t.description().version));
                    }
                    what
                },
                ttl_secs: None,
                bucket_micros: crate::aggregate::window::HOUR,
                last_commit: None,
                definition: view.clone(),
                invariance: Invariance::Unchecked,
            });
        }
        let transform = self.transforms.get(&view.name)?;
        Some(ViewRecord {
            name: view.name.clone(),
            id: 0,
            materialized: view.is_materialized(),
            join_keys: self.repo.join_keys(view),
            features: self.features[&view.name].clone(),
            inputs: transform.description().inputs.clone(),
            digest: transform.digest(),
            transform: format!("{} {}", transform.description().name, transform.description().version),
            ttl_secs: view.ttl.map(|d| d.as_secs()),
            bucket_micros: DEFAULT_BUCKET_MICROS,
            last_commit: None,
            definition: view.clone(),
            invariance: Invariance::Unchecked,
        })
    }
}

/// Compiles an aggregation view: each input column is typed by the row
/// transform's outputs, else the view's declared `inputs`, else the
/// Parquet schema of its file source.
fn plan_aggregations(
    repo: &Repo,
    runtime: &Runtime,
    view: &View,
    aggregations: &[AggregationSpec],
    transform: Option<&Transform>,
) -> Result<Plan, RepoError> {
    let ViewKind::Aggregation { inputs: declared, .. } = &view.kind else {
        unreachable!("an aggregation view")
    };
    let file = repo.file_source(view);
    let file_columns: Vec<(String, FeatureType)> = match file {
        // Not a database: every command builds the catalog, and none should
        // need it reachable (declare a PostgreSQL view's `inputs`).
        Some(f) if f.format.typed() && f.postgres.is_none() && f.present() => crate::source::columns(&f.path, f.format)
            .map(|cols| {
                cols.into_iter()
                    .filter_map(|(n, t)| FeatureType::from_arrow(&t).map(|t| (n, t)))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let type_of = |column: &str| -> Option<FeatureType> {
        let outputs = transform
            .map(|t| t.description().outputs.as_slice())
            .unwrap_or_default();
        outputs
            .iter()
            .chain(declared)
            .find(|f| f.name == column)
            .map(|f| f.data_type)
            .or_else(|| file_columns.iter().find(|(n, _)| n == column).map(|(_, t)| *t))
    };
    // User-defined functions, each loaded once, with the view's limits.
    let mut users: Vec<(PathBuf, Arc<Aggregator>)> = Vec::new();
    for spec in aggregations {
        let AggregateFunction::Wasm(path) = &spec.function else {
            continue;
        };
        if users.iter().any(|(p, _)| p == path) {
            continue;
        }
        let label = format!("{}.{}", view.name, spec.name);
        let loaded = runtime
            .load_aggregator(&label, path, view.limits, view.determinism)
            .map_err(|error| RepoError::Component {
                path: repo.config_path.clone(),
                line: spec.line,
                key: format!("views.{}.aggregations.{}", view.name, spec.name),
                error: Box::new(error),
            })?;
        users.push((path.clone(), Arc::new(loaded)));
    }
    let user_of = |path: &Path| {
        users
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, u)| u.clone())
            .expect("loaded above")
    };
    let mut plan = Plan::new(aggregations, type_of, user_of).map_err(|(i, message)| {
        let spec = &aggregations[i];
        let message = if type_of(spec.input.as_deref().unwrap_or_default()).is_none() {
            format!(
                "{message}: it is neither an output of the view's transform nor a column of its source file; \
                 if the source is CSV or does not exist yet, declare it: inputs = {{ {} = \"float64\" }}",
                spec.input.as_deref().unwrap_or_default()
            )
        } else {
            message
        };
        RepoError::Invalid {
            path: repo.config_path.clone(),
            line: spec.line,
            key: format!("views.{}.aggregations.{}", view.name, spec.name),
            message,
        }
    })?;
    if let Some(column) = file.and_then(|f| f.event_id_column.as_ref()) {
        match type_of(column) {
            Some(data_type @ (FeatureType::Int64 | FeatureType::Utf8)) => {
                plan.id_column = Some(FieldSpec {
                    name: column.clone(),
                    data_type,
                    nullable: false,
                });
            }
            other => {
                return Err(RepoError::Invalid {
                    path: repo.config_path.clone(),
                    line: view.line,
                    key: format!("views.{}.source", view.name),
                    message: format!(
                        "the source's event_id_column `{column}` is {}: it must be an int64 or utf8 column \
                         (for CSV or a file that does not exist yet, declare it: inputs = {{ {column} = \"utf8\" }})",
                        other.map_or("not a known column".to_string(), |t| t.to_string())
                    ),
                });
            }
        }
    }
    Ok(plan)
}

fn display_path(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn field_list(fields: &[FieldSpec]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}", f.name, f.data_type))
        .collect::<Vec<_>>()
        .join(", ")
}
