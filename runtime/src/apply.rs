//! `skewless apply`: compare the repo (with its components loaded) against
//! the store's registry, print what would change, and record it.
//!
//! A view keeps its storage id while its stored schema (features and join
//! keys) is unchanged; a changed schema gets a new id, so old rows are never
//! decoded with the wrong schema (they stay, unread, until removed).

use std::collections::BTreeMap;
use std::fmt;

use crate::catalog::Catalog;
use crate::repo::{FileSource, RepoError, SourceKind};
use crate::source;
use crate::store::{Store, StoreError, ViewRecord};
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
    records: BTreeMap<String, serde_json::Value>,
    views: Vec<ViewRecord>,
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
}

/// Computes what `apply` would change.
pub fn plan(catalog: &Catalog, store: &Store) -> Result<Plan, ApplyError> {
    let repo = &catalog.repo;
    let mut warnings = Vec::new();
    check_sources(catalog, &mut warnings)?;

    let mut records = BTreeMap::new();
    let mut items = Vec::new();
    let diff = |kind: &'static str,
                old: &BTreeMap<String, serde_json::Value>,
                new: Vec<(String, serde_json::Value, String)>,
                records: &mut BTreeMap<String, serde_json::Value>,
                items: &mut Vec<PlanItem>| {
        for (name, value, summary) in &new {
            let change = match old.get(name) {
                None => Change::Add,
                Some(previous) if previous == value => Change::Unchanged,
                Some(previous) => Change::Update(changed_keys(previous, value)),
            };
            items.push(PlanItem {
                kind,
                name: name.clone(),
                change,
                summary: summary.clone(),
            });
            records.insert(format!("{kind}/{name}"), value.clone());
        }
        for name in old.keys().filter(|n| !new.iter().any(|(m, _, _)| m == *n)) {
            items.push(PlanItem {
                kind,
                name: name.clone(),
                change: Change::Remove,
                summary: String::new(),
            });
        }
    };
    diff(
        "entity",
        &store.records("entity/")?,
        repo.entities
            .values()
            .map(|e| {
                let keys: Vec<_> = e
                    .join_keys
                    .iter()
                    .map(|k| format!("{} {}", k.name, k.data_type))
                    .collect();
                (e.name.clone(), to_json(e), format!("join keys: {}", keys.join(", ")))
            })
            .collect(),
        &mut records,
        &mut items,
    );
    diff(
        "source",
        &store.records("source/")?,
        repo.sources
            .values()
            .map(|s| {
                let summary = match &s.kind {
                    SourceKind::File(file) => format!("file {}", file.path.display()),
                    SourceKind::Request { schema } => format!("request, {} fields", schema.len()),
                    SourceKind::Push { batch_source } => format!("push, batch source {batch_source}"),
                };
                (s.name.clone(), to_json(s), summary)
            })
            .collect(),
        &mut records,
        &mut items,
    );

    let old_views = store.views()?;
    let mut views = Vec::new();
    for view in repo.views.values() {
        let mut record = catalog.view_record(view).expect("apply loads every view");
        let summary = format!(
            "{}, {} features, transform {} {}",
            if view.is_materialized() {
                "materialized"
            } else {
                "on-demand"
            },
            record.features.len(),
            record.transform,
            &record.digest[..12]
        );
        let change = match old_views.get(&view.name) {
            None => Change::Add,
            Some(old) => {
                let mut what = Vec::new();
                if old.features == record.features && old.join_keys == record.join_keys {
                    record.id = old.id;
                    record.last_commit = old.last_commit;
                } else {
                    what.push("stored schema changed: values start afresh at the next backfill".to_string());
                }
                if old.digest != record.digest {
                    what.push(format!(
                        "transform {} -> {} (stored values keep their digest until the next backfill)",
                        &old.digest[..12],
                        &record.digest[..12]
                    ));
                }
                if old.definition != record.definition && what.is_empty() {
                    what.extend(changed_keys(&old.definition, &record.definition));
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
        views.push(record);
    }
    for name in old_views.keys().filter(|n| !repo.views.contains_key(*n)) {
        items.push(PlanItem {
            kind: "view",
            name: name.clone(),
            change: Change::Remove,
            summary: String::new(),
        });
    }

    diff(
        "service",
        &store.records("service/")?,
        repo.services
            .values()
            .map(|s| (s.name.clone(), to_json(s), format!("{} feature refs", s.features.len())))
            .collect(),
        &mut records,
        &mut items,
    );
    Ok(Plan {
        items,
        warnings,
        records,
        views,
    })
}

/// Records the plan in the registry (one transaction).
pub fn apply(plan: Plan, store: &Store) -> Result<Vec<ViewRecord>, StoreError> {
    store.replace_registry(plan.records, plan.views)
}

/// Checks each materialized view's file source, when present, has the
/// columns the view needs with usable types. A missing file is a warning
/// (data may arrive later), a wrong one an error.
fn check_sources(catalog: &Catalog, warnings: &mut Vec<String>) -> Result<(), RepoError> {
    let repo = &catalog.repo;
    for view in repo.views.values() {
        let Some(file) = repo.file_source(view) else { continue };
        let FileSource {
            path,
            format,
            timestamp_column,
            created_column,
        } = file;
        if !path.exists() {
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
        let columns = source::columns(path, *format).map_err(|e| invalid(e.to_string()))?;
        let transform = catalog.transform(&view.name).expect("apply loads every view");
        let mut needed: Vec<(String, FeatureType)> = repo
            .join_keys(view)
            .into_iter()
            .map(|k| (k.name, k.data_type))
            .collect();
        needed.push((timestamp_column.clone(), FeatureType::Timestamp));
        if let Some(created) = created_column {
            needed.push((created.clone(), FeatureType::Timestamp));
        }
        needed.extend(
            transform
                .description()
                .inputs
                .iter()
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
                Some((_, arrow_schema::DataType::Utf8)) if matches!(format, crate::repo::FileFormat::Csv) => {}
                Some((_, found)) if FeatureType::from_arrow(found) != Some(ty) => {
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

/// Top-level keys whose values differ, for update lines.
fn changed_keys(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
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

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("registry objects serialize")
}
