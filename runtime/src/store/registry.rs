//! The registry: what `skewless apply` recorded of the repo, as typed
//! records. Entities, sources and services are recorded as the repo
//! declares them ([`Entity`], [`Source`], [`Service`]); a view as a
//! [`ViewRecord`], which adds what only its component knows (features,
//! inputs, digest) and where its values live (storage id, bucket).
//!
//! Records are stored as JSON, one per object, under `KIND/NAME` keys of the
//! `registry` table; [`Registry`] is the whole of it, read and replaced in
//! one transaction. `ls` and `describe` print these types (`Display`), and
//! the server's catalog route serializes them.

use std::collections::BTreeMap;
use std::fmt;

use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};

use super::error::{Failure, StoreError};
use super::file::{COUNTERS, DIGEST_IDS, DIGESTS, REGISTRY, Store, counter};
use crate::digest::Digest;
use crate::repo::{Entity, Service, Source, SourceKind, View, ViewKind};
use crate::types::FieldSpec;

/// The whole registry, by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Entities.
    pub entities: BTreeMap<String, Entity>,
    /// Sources.
    pub sources: BTreeMap<String, Source>,
    /// Feature views.
    pub views: BTreeMap<String, ViewRecord>,
    /// Feature services.
    pub services: BTreeMap<String, Service>,
}

/// The kinds of record, with the key prefix each is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Entity,
    Source,
    View,
    Service,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Entity, Kind::Source, Kind::View, Kind::Service];

    /// `entity`, `source`, `view` or `service`: the key prefix and the word
    /// used in plans and messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Source => "source",
            Kind::View => "view",
            Kind::Service => "service",
        }
    }

    /// The registry key of the object `name` of this kind.
    pub(crate) fn key(self, name: &str) -> String {
        format!("{}/{name}", self.name())
    }
}

/// What the registry knows of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// View name.
    pub name: String,
    /// Storage id: part of every value key. A new id is taken when the stored
    /// schema changes, so old rows are never read with the wrong schema.
    pub id: u32,
    /// Whether values are stored (materialized) or computed at read time.
    pub materialized: bool,
    /// Join keys, in key order.
    pub join_keys: Vec<FieldSpec>,
    /// The features stored and served, in row order.
    pub features: Vec<FieldSpec>,
    /// The transform's declared inputs.
    pub inputs: Vec<FieldSpec>,
    /// Digest of the component the repo names now.
    pub digest: Digest,
    /// The component's own name and version.
    pub transform: String,
    /// TTL in seconds, if any.
    pub ttl_secs: Option<u64>,
    /// History bucket width (see [`crate::format::layout`]).
    pub bucket_micros: i64,
    /// The last commit that wrote values of this view, if any. Only
    /// [`super::Store::write_views`] changes it, in the commit it names.
    pub last_commit: Option<u64>,
    /// The whole view definition, as the repo declares it.
    pub definition: View,
    /// Whether `apply` found the transform batch-invariant.
    #[serde(default)]
    pub invariance: Invariance,
}

/// What `apply` found when it probed a view's transform for batch invariance
/// ([`crate::invariance`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariance {
    /// Not probed (recorded before probing existed).
    #[default]
    Unchecked,
    /// Probed, and every row's outputs were the same in every arrangement.
    Checked,
    /// Probed, found to depend on its batch, and allowed
    /// (`--allow-batch-dependent`): what was found.
    Allowed(Box<Dependence>),
}

impl fmt::Display for Invariance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invariance::Unchecked => f.write_str("not checked (run `skewless verify`)"),
            Invariance::Checked => f.write_str("checked at apply"),
            Invariance::Allowed(found) => write!(f, "NOT batch-invariant, allowed at apply: {found}"),
        }
    }
}

impl ViewRecord {
    /// Whether `other` records this view as applied alike: the same
    /// everything but the last commit that wrote it (what a store version
    /// swapped in must share with the store it replaces).
    pub fn applied_alike(&self, other: &ViewRecord) -> bool {
        let mut other = other.clone();
        other.last_commit = self.last_commit;
        *self == other
    }

    /// `materialized` or `on-demand`.
    pub fn kind_name(&self) -> &'static str {
        match &self.definition.kind {
            ViewKind::Aggregation { .. } => "aggregation",
            _ if self.materialized => "materialized",
            _ => "on-demand",
        }
    }
}

fn fields(f: &mut fmt::Formatter<'_>, heading: &str, fields: &[FieldSpec]) -> fmt::Result {
    writeln!(f, "  {heading}:")?;
    for field in fields {
        writeln!(f, "    {:<26} {}", field.name, field.data_type)?;
    }
    Ok(())
}

fn key_list(keys: &[FieldSpec]) -> String {
    keys.iter()
        .map(|k| format!("{} {}", k.name, k.data_type))
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_line(f: &mut fmt::Formatter<'_>, key: &str, text: &str) -> fmt::Result {
    if text.is_empty() {
        return Ok(());
    }
    writeln!(
        f,
        "  {key}:{:width$}{text}",
        "",
        width = 12usize.saturating_sub(key.len())
    )
}

/// `describe VIEW`.
impl fmt::Display for ViewRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let definition = &self.definition;
        writeln!(f, "feature view {}", self.name)?;
        writeln!(f, "  kind:        {}", self.kind_name())?;
        writeln!(f, "  transform:   {} ({})", self.transform, self.digest)?;
        writeln!(f, "  join keys:   {}", key_list(&self.join_keys))?;
        match &definition.kind {
            ViewKind::Materialized { source, .. } => writeln!(f, "  source:      {source}")?,
            ViewKind::Aggregation {
                source, aggregations, ..
            } => {
                writeln!(f, "  source:      {source}")?;
                for a in aggregations {
                    let input = a.input.as_deref().unwrap_or("*");
                    writeln!(
                        f,
                        "  aggregation: {} = {}({input}) over {}",
                        a.name, a.function, a.window
                    )?;
                }
            }
            ViewKind::OnDemand { sources } => writeln!(f, "  sources:     {}", sources.join(", "))?,
        }
        writeln!(
            f,
            "  ttl:         {}",
            self.ttl_secs.map_or("none".to_string(), seconds)
        )?;
        text_line(f, "owner", &definition.owner)?;
        text_line(f, "description", &definition.description)?;
        if !definition.tags.is_empty() {
            let tags: Vec<_> = definition.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(f, "  tags:        {}", tags.join(", "))?;
        }
        writeln!(
            f,
            "  last commit: {}",
            self.last_commit
                .map_or("never backfilled".to_string(), |c| format!("#{c}"))
        )?;
        writeln!(f, "  determinism: {}", definition.determinism)?;
        writeln!(f, "  batch invariance: {}", self.invariance)?;
        fields(f, "inputs", &self.inputs)?;
        fields(f, "features", &self.features)
    }
}

/// `describe ENTITY`.
impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "entity {}", self.name)?;
        writeln!(f, "  join keys:   {}", key_list(&self.join_keys))?;
        text_line(f, "description", &self.description)
    }
}

/// `describe SOURCE`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source {}", self.name)?;
        match &self.kind {
            SourceKind::File(file) => {
                writeln!(f, "  type:        file ({})", file.format.name())?;
                writeln!(f, "  path:        {}", file.path.display())?;
                if let crate::FileFormat::Delta(Some(version)) = file.format {
                    writeln!(f, "  version:     {version}")?;
                }
                if let Some(table) = &file.postgres {
                    writeln!(f, "  reads:       {}", table.relation)?;
                    writeln!(f, "  connection:  ${}", table.connection_env)?;
                    if let Some(watermark) = &table.watermark_column {
                        writeln!(f, "  watermark:   {watermark}")?;
                    }
                }
                writeln!(f, "  event time:  {}", file.timestamp_column)?;
                if let Some(created) = &file.created_column {
                    writeln!(f, "  created:     {created}")?;
                }
            }
            SourceKind::Request { schema } => {
                writeln!(f, "  type:        request")?;
                fields(f, "schema", schema)?;
            }
            SourceKind::Push { batch_source, topic } => {
                match topic {
                    None => writeln!(f, "  type:        push")?,
                    Some(topic) => writeln!(f, "  type:        kafka, {topic}")?,
                }
                writeln!(f, "  batch source: {batch_source}")?;
            }
        }
        text_line(f, "description", &self.description)
    }
}

/// `describe SERVICE`.
impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "feature service {}", self.name)?;
        text_line(f, "description", &self.description)?;
        writeln!(f, "  features:")?;
        for feature in &self.features {
            writeln!(f, "    {feature}")?;
        }
        Ok(())
    }
}

/// `ls`: every object, one line each, views with their features.
impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ENTITIES")?;
        for (name, entity) in &self.entities {
            writeln!(f, "  {name:<28} join keys: {}", key_list(&entity.join_keys))?;
        }
        writeln!(f, "FEATURE VIEWS")?;
        for (name, v) in &self.views {
            let owner = Some(v.definition.owner.as_str()).filter(|o| !o.is_empty());
            writeln!(
                f,
                "  {name:<28} {:<13} {} features  sha256:{}  owner: {}",
                v.kind_name(),
                v.features.len(),
                v.digest.short(),
                owner.unwrap_or("-")
            )?;
            for feature in &v.features {
                writeln!(f, "    {:<26} {}", feature.name, feature.data_type)?;
            }
        }
        writeln!(f, "FEATURE SERVICES")?;
        for (name, service) in &self.services {
            writeln!(f, "  {name:<28} {} feature refs", service.features.len())?;
        }
        Ok(())
    }
}

impl Registry {
    /// The record named `name`, of any kind, printed as `describe` prints it.
    pub fn describe(&self, name: &str) -> Option<String> {
        if let Some(view) = self.views.get(name) {
            return Some(view.to_string());
        }
        self.entities
            .get(name)
            .map(ToString::to_string)
            .or_else(|| self.sources.get(name).map(ToString::to_string))
            .or_else(|| self.services.get(name).map(ToString::to_string))
    }
}

/// Seconds as the repo writes durations: `7d`, `12h`, `90s`.
fn seconds(secs: u64) -> String {
    match secs {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

/// A row whose outcome depends on the rest of its batch, or on earlier calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependence {
    /// The view.
    pub view: String,
    /// The row of the probe sample, counted from 0.
    pub row: usize,
    /// The row's input values, `name=value` pairs.
    pub input: String,
    /// The output column, or `row error`, or `the batch` when a whole call failed.
    pub output: String,
    /// What the row gave in one batch with the others.
    pub together: String,
    /// What it gave the other way.
    pub apart: String,
    /// The other way.
    pub how: Arrangement,
}

/// How the probe's rows were run, besides as one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrangement {
    /// One call per row (what online reads do).
    OneRowAtATime,
    /// In batches cut at these rows.
    Split(Vec<usize>),
    /// As the same batch again: a difference here is state kept across calls.
    Again,
}

impl fmt::Display for Arrangement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arrangement::OneRowAtATime => f.write_str("one row at a time"),
            Arrangement::Split(at) => write!(f, "in a batch split at rows {at:?}"),
            Arrangement::Again => f.write_str("in the same batch run again"),
        }
    }
}

impl fmt::Display for Dependence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "view `{}`: for probe row {} ({}), {} is {} in one batch of all rows but {} {}",
            self.view, self.row, self.input, self.output, self.together, self.apart, self.how
        )
    }
}

impl Store {
    /// The whole registry, read in one transaction.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(REGISTRY)?;
            let mut registry = Registry::default();
            for kind in Kind::ALL {
                let prefix = kind.key("");
                for item in table.range(prefix.as_str()..)? {
                    let (key, value) = item?;
                    let Some(name) = key.value().strip_prefix(prefix.as_str()).map(str::to_string) else {
                        break;
                    };
                    let json = value.value();
                    let bad = |e: serde_json::Error| Failure::Corrupt(format!("registry record {}: {e}", key.value()));
                    match kind {
                        Kind::Entity => registry
                            .entities
                            .insert(name, serde_json::from_str(json).map_err(bad)?)
                            .map(drop),
                        Kind::Source => registry
                            .sources
                            .insert(name, serde_json::from_str(json).map_err(bad)?)
                            .map(drop),
                        Kind::View => registry
                            .views
                            .insert(name, serde_json::from_str(json).map_err(bad)?)
                            .map(drop),
                        Kind::Service => registry
                            .services
                            .insert(name, serde_json::from_str(json).map_err(bad)?)
                            .map(drop),
                    };
                }
            }
            let counters = txn.open_table(COUNTERS)?;
            for (name, view) in registry.views.iter_mut() {
                if let Some(commit) = counters.get(last_commit_key(name).as_str())? {
                    view.last_commit = Some(commit.value());
                }
            }
            Ok(registry)
        })
    }

    /// Every view record, by name.
    pub fn views(&self) -> Result<BTreeMap<String, ViewRecord>, StoreError> {
        Ok(self.registry()?.views)
    }

    /// Replaces the registry with `registry` in one transaction, assigning
    /// storage ids to views whose id is 0. Returns the registry as stored.
    pub fn replace_registry(&self, mut registry: Registry) -> Result<Registry, StoreError> {
        self.write_txn(|txn| {
            let mut table = txn.open_table(REGISTRY)?;
            let mut counters = txn.open_table(COUNTERS)?;
            table.retain(|_, _| false)?;
            for view in registry.views.values_mut() {
                if view.id == 0 {
                    let next = counter(&counters, "next_view_id")?.max(1);
                    counters.insert("next_view_id", next + 1)?;
                    view.id = u32::try_from(next).map_err(|_| Failure::Corrupt("view ids exhausted".into()))?;
                }
            }
            // Each view's last commit is what `registry` says it is (`apply`
            // drops it when the stored schema changed); a removed view's goes.
            let stale: Vec<String> = counters
                .range("last_commit/".."last_commit0")?
                .map(|item| item.map(|(key, _)| key.value().to_string()))
                .collect::<Result<_, _>>()?;
            for key in stale {
                counters.remove(key.as_str())?;
            }
            for (name, view) in &registry.views {
                if let Some(commit) = view.last_commit {
                    counters.insert(last_commit_key(name).as_str(), commit)?;
                }
            }
            let mut records: Vec<(String, String)> = Vec::new();
            records.extend(
                registry
                    .entities
                    .iter()
                    .map(|(n, r)| (Kind::Entity.key(n), record_json(r))),
            );
            records.extend(
                registry
                    .sources
                    .iter()
                    .map(|(n, r)| (Kind::Source.key(n), record_json(r))),
            );
            records.extend(registry.views.iter().map(|(n, r)| (Kind::View.key(n), record_json(r))));
            records.extend(
                registry
                    .services
                    .iter()
                    .map(|(n, r)| (Kind::Service.key(n), record_json(r))),
            );
            for (key, value) in &records {
                table.insert(key.as_str(), value.as_str())?;
            }
            Ok(())
        })?;
        Ok(registry)
    }

    /// The id of `digest`, registering it if new.
    pub fn digest_id(&self, digest: &Digest) -> Result<u32, StoreError> {
        // Usually known already: a read, not a (durable, fsynced) write.
        let known = self.read(|txn| Ok(txn.open_table(DIGEST_IDS)?.get(&digest.0[..])?.map(|g| g.value())))?;
        if let Some(id) = known {
            return Ok(id);
        }
        self.write_txn(|txn| {
            let mut ids = txn.open_table(DIGEST_IDS)?;
            if let Some(id) = ids.get(&digest.0[..])?.map(|g| g.value()) {
                return Ok(id);
            }
            let mut counters = txn.open_table(COUNTERS)?;
            let next = counter(&counters, "next_digest_id")?.max(1);
            counters.insert("next_digest_id", next + 1)?;
            let id = u32::try_from(next).map_err(|_| Failure::Corrupt("digest ids exhausted".into()))?;
            ids.insert(&digest.0[..], id)?;
            txn.open_table(DIGESTS)?.insert(id, &digest.0[..])?;
            Ok(id)
        })
    }

    /// Every registered digest by id.
    pub fn digests(&self) -> Result<BTreeMap<u32, Digest>, StoreError> {
        self.read(|txn| {
            let mut out = BTreeMap::new();
            for item in txn.open_table(DIGESTS)?.iter()? {
                let (id, bytes) = item?;
                let digest: [u8; 32] = bytes
                    .value()
                    .try_into()
                    .map_err(|_| Failure::Corrupt("a digest is not 32 bytes".into()))?;
                out.insert(id.value(), Digest(digest));
            }
            Ok(out)
        })
    }
}

/// The counter holding a view's last commit: kept beside its record,
/// not in it, so a commit writes 8 bytes rather than the record's JSON.
pub(super) fn last_commit_key(view: &str) -> String {
    format!("last_commit/{view}")
}

/// Records that `commit` wrote `view` (read back into its record's
/// `last_commit` by [`Store::registry`]).
pub(super) fn record_commit(
    counters: &mut Table<'_, &'static str, u64>,
    view: &ViewRecord,
    commit: u64,
) -> Result<(), Failure> {
    counters.insert(last_commit_key(&view.name).as_str(), commit)?;
    Ok(())
}

/// A registry record as its stored JSON.
fn record_json<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).expect("registry records serialize")
}

/// The counter holding where a view's last `materialize-incremental` ended
/// (microseconds UTC, as the bits of an i64): where the next one starts.
fn materialized_key(view: &str) -> String {
    format!("materialized_until/{view}")
}

/// The counter holding where a view's last load of a Delta table or a
/// PostgreSQL relation ended: a table version, or a watermark's bits.
fn load_mark_key(view: &str) -> String {
    format!("load_mark/{view}")
}

impl Store {
    /// Where `view`'s last incremental materialize ended; `None` before the
    /// first.
    pub fn materialized_until(&self, view: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.mark(&materialized_key(view))?.map(|v| v as i64))
    }

    /// Records that `view` is materialized up to `end` (exclusive), after
    /// its rows were committed.
    pub fn set_materialized_until(&self, view: &str, end: i64) -> Result<(), StoreError> {
        self.set_mark(&materialized_key(view), end as u64)
    }

    /// Where `view`'s last full or incremental load of its Delta table or
    /// PostgreSQL relation ended (the table version, or the greatest
    /// watermark's bits); `None` before the first. The next incremental
    /// load reads what came after it.
    pub fn load_mark(&self, view: &str) -> Result<Option<u64>, StoreError> {
        self.mark(&load_mark_key(view))
    }

    /// Records where `view`'s load ended, after its rows were committed.
    pub fn set_load_mark(&self, view: &str, mark: u64) -> Result<(), StoreError> {
        self.set_mark(&load_mark_key(view), mark)
    }

    fn mark(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.read(|txn| Ok(txn.open_table(COUNTERS)?.get(key)?.map(|v| v.value())))
    }

    fn set_mark(&self, key: &str, value: u64) -> Result<(), StoreError> {
        self.write_txn(|txn| {
            txn.open_table(COUNTERS)?.insert(key, value)?;
            Ok(())
        })
    }
}
