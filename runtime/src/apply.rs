//! `skewless apply`: compare the repo (with its components loaded) against
//! the store's registry, print what would change, and record it.
//!
//! A view keeps its storage id while its stored schema (features and join
//! keys) is unchanged; a changed schema gets a new id, so old rows are never
//! decoded with the wrong schema (they stay, unread, until removed).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::invariance::{self, Dependence};
use crate::repo::{FileSource, RepoError, SourceKind};
use crate::source::{self, SourceError};
use crate::store::{Invariance, Registry, Store, StoreError};
use crate::types::FeatureType;

/// What happens to one registry object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New.
    Add,
    /// Changed, with what changed.
    Update(Vec<String>),
    /// No longer in the repo.
    Remove,
    /// Same as recorded.
    Unchanged,
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// `entity`, `source`, `view` or `service`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What happens.
    pub change: Change,
    /// A short description for added objects.
    pub summary: String,
}

/// The difference between the repo and the registry, ready to apply.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One item per object, in kind then file order.
    pub items: Vec<PlanItem>,
    /// Things worth knowing that do not stop the apply.
    pub warnings: Vec<String>,
    registry: Registry,
}

impl Plan {
    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.items.iter().any(|i| i.change != Change::Unchanged)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut unchanged = 0;
        for item in &self.items {
            match &item.change {
                Change::Add => writeln!(f, "  + {} {} ({})", item.kind, item.name, item.summary)?,
                Change::Update(what) => writeln!(f, "  ~ {} {}: {}", item.kind, item.name, what.join("; "))?,
                Change::Remove => writeln!(f, "  - {} {}", item.kind, item.name)?,
                Change::Unchanged => unchanged += 1,
            }
        }
        if unchanged > 0 {
            writeln!(f, "  = {unchanged} unchanged")?;
        }
        Ok(())
    }
}

/// Errors that stop an apply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The repo and its sources disagree.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A view's transform gives a row a value that depends on its batch.
    #[error(
        "{0}.\nServing calls a transform with one row and backfill with thousands, so this view would serve \
         values it was not trained on. Compute each row from that row alone; or, if this is intended, \
         record it with `skewless apply --allow-batch-dependent {view}`",
        view = .0.view
    )]
    BatchDependent(Box<Dependence>),
    /// `--allow-batch-dependent` names a view the repo does not have.
    #[error("--allow-batch-dependent names view `{view}`, which the repo does not have (its views: {known})")]
    UnknownView {
        /// The name given.
        view: String,
        /// The repo's views.
        known: String,
    },
    /// A user-defined aggregation function breaks a law the fold relies on.
    #[error(
        "view `{view}`: aggregation `{feature}` ({function}) is refused: {error}.\nTiles are merged in one fixed \
         order whatever the arrival order, so its values would depend on how events fell into tiles. Make `merge` \
         exact (counts, integer sums, sketches whose merge adds counts): folding events at once or in parts must \
         give the same state"
    )]
    AggregatorLaws {
        /// The view.
        view: String,
        /// The feature.
        feature: String,
        /// The component.
        function: String,
        /// The law broken, with the sample row and both values.
        error: Box<crate::LawError>,
    },
    /// A view's probe rows could not be read from its file source.
    #[error("view `{view}`: cannot read rows to check the transform with: {error}")]
    Sample {
        /// The view.
        view: String,
        /// What failed.
        error: SourceError,
    },
}

/// Which views may be batch-dependent (`--allow-batch-dependent`).
#[derive(Debug, Clone, Default)]
pub enum AllowBatchDependent {
    /// None: every transform must pass the probe.
    #[default]
    None,
    /// These views.
    Views(Vec<String>),
    /// Every view.
    All,
}

impl AllowBatchDependent {
    fn allows(&self, view: &str) -> bool {
        match self {
            AllowBatchDependent::None => false,
            AllowBatchDependent::Views(views) => views.iter().any(|v| v == view),
            AllowBatchDependent::All => true,
        }
    }
}

/// Computes what `apply` would change. Every view whose transform is new or
/// changed is probed for batch invariance ([`crate::invariance`]) and
/// refused if it fails, unless `allow` names it; then the difference found
/// is recorded with the view.
pub fn plan(catalog: &Catalog, store: &Store, allow: &AllowBatchDependent) -> Result<Plan, ApplyError> {
    let repo = &catalog.repo;
    if let AllowBatchDependent::Views(views) = allow
        && let Some(unknown) = views.iter().find(|v| !repo.views.contains_key(*v))
    {
        return Err(ApplyError::UnknownView {
            view: unknown.clone(),
            known: repo.views.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    }
    let mut warnings = Vec::new();
    check_sources(catalog, &mut warnings)?;

    let old = store.registry()?;
    let mut registry = Registry::default();
    let mut items = Vec::new();

    for entity in repo.entities.values() {
        let summary = format!(
            "join keys: {}",
            entity
                .join_keys
                .iter()
                .map(|k| format!("{} {}", k.name, k.data_type))
                .collect::<Vec<_>>()
                .join(", ")
        );
        items.push(item(
            "entity",
            &entity.name,
            old.entities.get(&entity.name),
            entity,
            summary,
        ));
        registry.entities.insert(entity.name.clone(), entity.clone());
    }
    removed("entity", &old.entities, &registry.entities, &mut items);

    for source in repo.sources.values() {
        let summary = match &source.kind {
            SourceKind::File(file) => format!("{} {}", file.format.name(), file.path.display()),
            SourceKind::Request { schema } => format!("request, {} fields", schema.len()),
            SourceKind::Push {
                batch_source,
                topic: None,
            } => format!("push, batch source {batch_source}"),
            SourceKind::Push {
                batch_source,
                topic: Some(topic),
            } => format!("kafka {topic}, batch source {batch_source}"),
        };
        items.push(item(
            "source",
            &source.name,
            old.sources.get(&source.name),
            source,
            summary,
        ));
        registry.sources.insert(source.name.clone(), source.clone());
    }
    removed("source", &old.sources, &registry.sources, &mut items);

    for view in repo.views.values() {
        let mut record = catalog.view_record(view).expect("apply loads every view");
        let summary = format!(
            "{}, {} features, {}{} {}",
            record.kind_name(),
            record.features.len(),
            if view.is_aggregation() { "" } else { "transform " },
            record.transform,
            record.digest.short()
        );
        record.invariance = check_batch_invariance(catalog, view, old.views.get(&view.name), allow)?;
        check_aggregators(catalog, view)?;
        let change = match old.views.get(&view.name) {
            None => Change::Add,
            Some(previous) => {
                let mut what = Vec::new();
                // An aggregation view's stored events and tiles follow its
                // digest (inputs, aggregations, row transform).
                let same_layout = !view.is_aggregation() || previous.digest == record.digest;
                if same_layout && previous.features == record.features && previous.join_keys == record.join_keys {
                    record.id = previous.id;
                    record.last_commit = previous.last_commit;
                } else {
                    what.push("stored schema changed: values start afresh at the next backfill".to_string());
                }
                if previous.digest != record.digest && view.is_aggregation() {
                    what.push(format!(
                        "windows {} -> {} (events and tiles are stored afresh at the next backfill)",
                        previous.digest.short(),
                        record.digest.short()
                    ));
                } else if previous.digest != record.digest {
                    what.push(format!(
                        "transform {} -> {} (stored values keep their digest until the next backfill)",
                        previous.digest.short(),
                        record.digest.short()
                    ));
                }
                if what.is_empty() {
                    what.extend(changed_keys(
                        &to_json(&previous.definition),
                        &to_json(&record.definition),
                    ));
                }
                if what.is_empty() {
                    Change::Unchanged
                } else {
                    Change::Update(what)
                }
            }
        };
        items.push(PlanItem {
            kind: "view",
            name: view.name.clone(),
            change,
            summary,
        });
        registry.views.insert(view.name.clone(), record);
    }
    removed("view", &old.views, &registry.views, &mut items);

    for service in repo.services.values() {
        let summary = format!("{} feature refs", service.features.len());
        items.push(item(
            "service",
            &service.name,
            old.services.get(&service.name),
            service,
            summary,
        ));
        registry.services.insert(service.name.clone(), service.clone());
    }
    removed("service", &old.services, &registry.services, &mut items);

    Ok(Plan {
        items,
        warnings,
        registry,
    })
}

/// Probes `view`'s transform unless the registry already holds the same
/// component, checked or allowed.
fn check_batch_invariance(
    catalog: &Catalog,
    view: &crate::repo::View,
    previous: Option<&crate::store::ViewRecord>,
    allow: &AllowBatchDependent,
) -> Result<Invariance, ApplyError> {
    let Some(transform) = catalog.transform(&view.name) else {
        // An aggregation view without a row transform: the built-in
        // functions are order-free by construction (crate::aggregate).
        return Ok(Invariance::Checked);
    };
    if let Some(previous) = previous.filter(|p| p.digest == transform.digest()) {
        match &previous.invariance {
            Invariance::Checked => return Ok(Invariance::Checked),
            // Allowed once for this component, it stays allowed.
            allowed @ Invariance::Allowed(_) => return Ok(allowed.clone()),
            Invariance::Unchecked => {}
        }
    }
    let seed = u64::from_str_radix(&transform.digest().hex()[..16], 16).expect("hex digits");
    let (rows, origin) =
        invariance::sample(&catalog.repo, view, transform, seed).map_err(|error| ApplyError::Sample {
            view: view.name.clone(),
            error,
        })?;
    match invariance::probe(transform, &rows, origin, seed) {
        Ok(_) => Ok(Invariance::Checked),
        Err(dependence) if allow.allows(&view.name) => Ok(Invariance::Allowed(dependence)),
        Err(dependence) => Err(ApplyError::BatchDependent(dependence)),
    }
}

/// Checks every user-defined aggregation function of `view` on sample
/// inputs ([`crate::Aggregator::check_laws`]): the input column's values
/// from the view's file source when it has that column, then generated
/// edge and random values of the input's type.
fn check_aggregators(catalog: &Catalog, view: &crate::repo::View) -> Result<(), ApplyError> {
    use crate::format::value::Value;
    let (Some(plan), crate::repo::ViewKind::Aggregation { aggregations, .. }) = (catalog.plan(&view.name), &view.kind)
    else {
        return Ok(());
    };
    for (spec, feature) in aggregations.iter().zip(&plan.features) {
        let crate::aggregate::plan::Finalize::User(user) = feature.finalize else {
            continue;
        };
        let aggregator = &plan.users[user];
        let input = &plan.inputs[plan.slots[feature.slot].input.expect("user functions take an input")];
        let mut values = Vec::new();
        if let Some(file) = catalog.repo.file_source(view).filter(|f| f.present())
            && let Ok((mut opened, _)) = crate::source::open_source(file, std::slice::from_ref(input), None)
            && let Some(Ok(batch)) = opened.batches.next()
            && let Some(column) = batch.column_by_name(&input.name)
            && let Ok(mut rows) = crate::format::value::decode_columns(
                &[column.slice(0, column.len().min(invariance::PROBE_ROWS))],
                std::slice::from_ref(input),
            )
        {
            values.extend(rows.iter_mut().map(|row| row.swap_remove(0)));
        }
        let from_file = values.clone();
        let seed = u64::from_str_radix(&aggregator.digest().hex()[..16], 16).expect("hex digits");
        let generated = invariance::generated(std::slice::from_ref(input), invariance::PROBE_ROWS, seed);
        let mut rows = crate::format::value::decode_columns(generated.columns(), std::slice::from_ref(input))
            .expect("generated with the input's type");
        values.extend(rows.iter_mut().map(|row| row.swap_remove(0)));
        // NaN, infinities and extremes make many states NaN however events
        // are split, which hides a broken merge: check without them too,
        // and the file's values on their own.
        let moderate: Vec<Value> = values
            .iter()
            .filter(|v| match v {
                Value::Float64(f) => f.abs() <= 1e9,
                Value::Float32(f) => f.abs() <= 1e9,
                Value::Int64(i) => i.unsigned_abs() <= 1 << 40,
                _ => true,
            })
            .cloned()
            .collect();
        for sample in [&from_file, &moderate, &values] {
            let n = sample.iter().filter(|v| !v.is_null()).count();
            if n < 2 {
                continue;
            }
            let splits = [1, n / 3, n / 2, 2 * n / 3, n.saturating_sub(1)];
            aggregator
                .check_laws(sample, &splits)
                .map_err(|error| ApplyError::AggregatorLaws {
                    view: view.name.clone(),
                    feature: spec.name.clone(),
                    function: spec.function.to_string(),
                    error: Box::new(error),
                })?;
        }
    }
    Ok(())
}

/// The plan line of one entity, source or service: records are compared in
/// their stored (JSON) form, so what the registry does not keep (the line
/// in the config) never counts as a change.
fn item<T: Serialize>(kind: &'static str, name: &str, old: Option<&T>, new: &T, summary: String) -> PlanItem {
    let change = match old.map(to_json) {
        None => Change::Add,
        Some(previous) => {
            let what = changed_keys(&previous, &to_json(new));
            if what.is_empty() {
                Change::Unchanged
            } else {
                Change::Update(what)
            }
        }
    };
    PlanItem {
        kind,
        name: name.to_string(),
        change,
        summary,
    }
}

/// Plan lines for recorded objects the repo no longer has.
fn removed<T>(kind: &'static str, old: &BTreeMap<String, T>, new: &BTreeMap<String, T>, items: &mut Vec<PlanItem>) {
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        items.push(PlanItem {
            kind,
            name: name.clone(),
            change: Change::Remove,
            summary: String::new(),
        });
    }
}

/// Records the plan in the registry (one transaction).
pub fn apply(plan: Plan, store: &Store) -> Result<Registry, StoreError> {
    store.replace_registry(plan.registry)
}

/// Checks each materialized view's file source, when present, has the
/// columns the view needs with usable types. A missing file is a warning
/// (data may arrive later), a wrong one an error. A Kafka source read by a
/// view must be reachable, with its topic and partitions.
fn check_sources(catalog: &Catalog, warnings: &mut Vec<String>) -> Result<(), RepoError> {
    let repo = &catalog.repo;
    let mut checked = std::collections::BTreeSet::new();
    for view in repo.views.values() {
        let Some((name, source)) = view.source().and_then(|name| repo.sources.get_key_value(name)) else {
            continue;
        };
        if let SourceKind::Push { topic: Some(topic), .. } = &source.kind
            && checked.insert(name)
        {
            source::kafka::check(name, topic).map_err(|e| RepoError::Invalid {
                path: repo.config_path.clone(),
                line: view.line,
                key: format!("sources.{name}"),
                message: e.to_string(),
            })?;
        }
    }
    for view in repo.views.values() {
        let Some(file) = repo.file_source(view) else { continue };
        let FileSource {
            path,
            format,
            timestamp_column,
            created_column,
            ..
        } = file;
        if !file.present() {
            warnings.push(format!(
                "view `{}`: source file {} does not exist yet",
                view.name,
                path.display()
            ));
            continue;
        }
        let invalid = |message: String| RepoError::Invalid {
            path: repo.config_path.clone(),
            line: view.line,
            key: format!("views.{}", view.name),
            message,
        };
        let columns = source::source_columns(file).map_err(|e| invalid(e.to_string()))?;
        let transform = catalog.transform(&view.name);
        let mut needed: Vec<(String, FeatureType)> = repo
            .join_keys(view)
            .into_iter()
            .map(|k| (k.name, k.data_type))
            .collect();
        needed.push((timestamp_column.clone(), FeatureType::Timestamp));
        if let Some(created) = created_column {
            needed.push((created.clone(), FeatureType::Timestamp));
        }
        let description = transform.map(|t| t.description());
        needed.extend(
            description
                .iter()
                .flat_map(|d| &d.inputs)
                .map(|f| (f.name.clone(), f.data_type)),
        );
        needed.extend(
            catalog
                .plan(&view.name)
                .and_then(|p| p.id_column.as_ref())
                .map(|f| (f.name.clone(), f.data_type)),
        );
        // Event columns of an aggregation view that its transform does not produce.
        let produced = |name: &str| description.is_some_and(|d| d.outputs.iter().any(|o| o.name == name));
        needed.extend(
            catalog
                .plan(&view.name)
                .iter()
                .flat_map(|p| &p.inputs)
                .filter(|f| !produced(&f.name))
                .map(|f| (f.name.clone(), f.data_type)),
        );
        for (name, ty) in needed {
            match columns.iter().find(|(n, _)| *n == name) {
                None => {
                    return Err(invalid(format!(
                        "source {} has no column `{name}` ({ty}), which the view needs",
                        path.display()
                    )));
                }
                // CSV columns are text until read with their declared types.
                Some((_, arrow_schema::DataType::Utf8)) if matches!(format, crate::file_format::FileFormat::Csv) => {}
                Some((_, found)) if !crate::source::accepts(found, ty) => {
                    return Err(invalid(format!(
                        "source {} column `{name}` is {found}, but the view needs {ty}",
                        path.display()
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Top-level keys whose values differ, for update lines; empty when equal.
fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    if old == new {
        return Vec::new();
    }
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let mut keys: Vec<String> = n
                .keys()
                .chain(o.keys())
                .filter(|k| o.get(*k) != n.get(*k))
                .cloned()
                .collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().map(|k| format!("{k} changed")).collect()
        }
        _ => vec!["changed".to_string()],
    }
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("registry objects serialize")
}
