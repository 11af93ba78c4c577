//! `skewless verify`: online/offline parity, checked on the store as it is.
//!
//! For a sample of each materialized view's entities, every feature of the
//! view and of the on-demand views over it is read twice: through the online
//! path, one entity per read at the current time, exactly as the server
//! answers (`latest` table, [`AsOf::Latest`]); and through the offline path,
//! all sampled entities in one point-in-time join at the same instant, exactly
//! as `skewless dataset` builds training rows (history, [`AsOf::Rows`]). The
//! two must agree bit for bit (floats by their bits) and in status; every
//! difference is reported. It also reports views whose stored values were
//! produced by a transform other than the one the repo names now, and probes
//! every view's transform for batch invariance and state kept across calls
//! ([`crate::invariance`]), on rows of its file source where it has one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use indexmap::IndexMap;

use crate::catalog::Catalog;
use crate::digest::Digest;
use crate::format::layout::{KeyValue, decode_entity_key};
use crate::invariance::{self, Dependence, Probed};
use crate::online::{self, AsOf, OnlineError, OnlineRequest, OnlineResponse};
use crate::repo::{FeatureRef, ViewKind};
use crate::source::SourceError;
use crate::store::{Invariance, Store, StoreError, ViewRecord};
use crate::types::{FeatureType, UTC};

/// One value that differs between the two paths.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The view.
    pub view: String,
    /// The feature.
    pub feature: String,
    /// The entity, e.g. `driver_id=1001`.
    pub entity: String,
    /// What the server answers: value and status.
    pub online: String,
    /// What a training row holds: value and status.
    pub offline: String,
}

/// A view whose stored values came from another component than the repo's.
#[derive(Debug, Clone)]
pub struct Stale {
    /// The view.
    pub view: String,
    /// The digest the repo names now.
    pub current: Digest,
    /// Entities whose newest (served) value another digest produced, by that digest (short hex).
    pub latest: BTreeMap<String, usize>,
    /// Entities in all.
    pub entities: usize,
    /// History rows (training data) another digest produced, by that digest (short hex).
    pub history: BTreeMap<String, u64>,
    /// History rows in all.
    pub rows: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Materialized views whose stored values were compared.
    pub views: Vec<String>,
    /// (entity, feature) values compared.
    pub compared: usize,
    /// Values that differ.
    pub differences: Vec<Difference>,
    /// Views with stale materializations.
    pub stale: Vec<Stale>,
    /// Every view's transform, probed for batch invariance and state.
    pub probes: Vec<ViewProbe>,
    /// Values compared per view (a view's own and those of on-demand views over it).
    pub compared_by_view: BTreeMap<String, usize>,
    /// Aggregation views: stored tiles recomputed from their events.
    pub tiles: Vec<TileReport>,
    /// The seed the probes split batches with (print it to rerun the same probes).
    pub seed: u64,
    /// The store as a whole; `None` for the skew monitor's recheck.
    pub store: Option<StoreFingerprint>,
}

/// What replicas compare: the same values give the same digest.
#[derive(Debug, Clone)]
pub struct StoreFingerprint {
    /// [`Store::content_digest`].
    pub digest: Digest,
    /// The replication-log message the store has applied (0: none).
    pub log_sequence: u64,
    /// Log messages skipped as poison, by sequence.
    pub skipped: Vec<u64>,
}

/// The tiles of one aggregation view, recomputed and compared.
#[derive(Debug, Clone)]
pub struct TileReport {
    /// The view.
    pub view: String,
    /// Tiles compared.
    pub tiles: u64,
    /// Events read.
    pub events: u64,
    /// Tiles that differ from their definition.
    pub mismatches: Vec<String>,
}

/// The batch-invariance and state probe of one view ([`crate::invariance`]).
#[derive(Debug, Clone)]
pub struct ViewProbe {
    /// The view.
    pub view: String,
    /// What the probe found now.
    pub result: Result<Probed, Box<Dependence>>,
    /// Whether `apply` recorded the view as allowed to depend on its batch
    /// (`--allow-batch-dependent`): a difference is then reported, not failed.
    pub allowed: bool,
}

impl ViewProbe {
    /// Failed, and not allowed at apply.
    pub fn fails(&self) -> bool {
        self.result.is_err() && !self.allowed
    }
}

impl Report {
    /// No difference, nothing stale, and every probe passed (or was allowed).
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
            && self.stale.is_empty()
            && !self.probes.iter().any(ViewProbe::fails)
            && self.tiles.iter().all(|t| t.mismatches.is_empty())
    }

    /// No stored value of the repo's views to verify: `apply` and
    /// `backfill` have not run.
    pub fn is_empty(&self) -> bool {
        self.compared == 0 && self.stale.is_empty()
    }

    /// Views whose transform failed the probe and was not allowed to.
    pub fn failing_probes(&self) -> Vec<&str> {
        self.probes
            .iter()
            .filter(|p| p.fails())
            .map(|p| p.view.as_str())
            .collect()
    }

    /// Tiles that differ from their events, over every aggregation view.
    pub fn tile_mismatches(&self) -> usize {
        self.tiles.iter().map(|t| t.mismatches.len()).sum()
    }

    /// One line: what failed, or what was proven.
    pub fn summary(&self) -> String {
        let seed = self.seed;
        if self.is_clean() {
            format!(
                "{} values of {} views: online (server) and offline (dataset) paths agree bit for bit; nothing \
                 stale; {} transforms batch-invariant and stateless; {} aggregation tiles equal their events \
                 (seed {seed})",
                self.compared,
                self.views.len(),
                self.probes.iter().filter(|p| p.result.is_ok()).count(),
                self.tiles.iter().map(|t| t.tiles).sum::<u64>()
            )
        } else {
            format!(
                "{} differences in {} values compared, {} stale views, {} views failing the batch probe, {} tiles \
                 differing from their events (seed {seed})",
                self.differences.len(),
                self.compared,
                self.stale.len(),
                self.failing_probes().len(),
                self.tile_mismatches()
            )
        }
    }

    /// Values of `view` compared, and how many differed.
    pub fn compared_in(&self, view: &str) -> (usize, usize) {
        let differences = self.differences.iter().filter(|d| d.view == view).count();
        (self.compared_by_view.get(view).copied().unwrap_or(0), differences)
    }
}

/// Verification could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A read failed (a damaged row, a transform error).
    #[error(transparent)]
    Read(#[from] OnlineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A view's probe rows could not be read from its file source.
    #[error("view `{view}`: cannot read rows to probe the transform with: {error}")]
    Sample {
        /// The view.
        view: String,
        /// What failed.
        error: SourceError,
    },
}

/// Checks up to `samples` entities per materialized view of `catalog`, and
/// probes every view's transform; `seed` picks the probes' split points.
pub fn verify(catalog: &Catalog, store: &Store, samples: usize, seed: u64) -> Result<Report, VerifyError> {
    let repo = &catalog.repo;
    let records = store.views()?;
    let digests = store.digests()?;
    let mut report = Report {
        seed,
        ..Report::default()
    };
    for view in repo.views.values() {
        let Some(transform) = catalog.transform(&view.name) else {
            continue;
        };
        let (rows, origin) = invariance::sample(repo, view, transform, seed).map_err(|error| VerifyError::Sample {
            view: view.name.clone(),
            error,
        })?;
        // Allowed for the component recorded, not for another one swapped in since.
        let allowed = records
            .get(&view.name)
            .is_some_and(|r| r.digest == transform.digest() && matches!(r.invariance, Invariance::Allowed(_)));
        report.probes.push(ViewProbe {
            view: view.name.clone(),
            result: invariance::probe(transform, &rows, origin, seed),
            allowed,
        });
    }
    for view in repo.views.values().filter(|v| v.is_materialized()) {
        let Some(record) = records.get(&view.name) else {
            continue;
        };
        report.views.push(view.name.clone());
        let entities: Vec<Vec<u8>> = match catalog.plan(&view.name) {
            Some(plan) => {
                let check = store.check_aggregates(record, plan)?;
                report.tiles.push(TileReport {
                    view: view.name.clone(),
                    tiles: check.tiles,
                    events: check.events,
                    mismatches: check.mismatches,
                });
                check.entities
            }
            None => stale_check(catalog, store, view, record, &digests, &mut report)?,
        };
        // An even spread over the entities, deterministic.
        let step = entities.len().div_ceil(samples.max(1)).max(1);
        let sample: Vec<Vec<KeyValue>> = entities
            .iter()
            .step_by(step)
            .filter_map(|key| decode_entity_key(key))
            .collect();
        if sample.is_empty() {
            continue;
        }
        // The view's features and those of every on-demand view reading it.
        let mut refs = vec![FeatureRef {
            view: view.name.clone(),
            feature: None,
        }];
        refs.extend(
            repo.views
                .values()
                .filter(|v| matches!(&v.kind, ViewKind::OnDemand { sources } if sources.contains(&view.name)))
                .map(|v| FeatureRef {
                    view: v.name.clone(),
                    feature: None,
                }),
        );
        let refs: Vec<String> = refs.iter().map(|r| r.view.clone()).collect();
        let features = online::resolve_features(catalog, &refs, None)?;
        let entities = entity_columns(catalog, record, &features, &sample);
        let now = crate::time::now_micros();
        let reader = store.reader()?;

        // Online: one read per entity, as the server answers.
        let mut online_answers = Vec::with_capacity(sample.len());
        for row in 0..sample.len() {
            let one: IndexMap<String, ArrayRef> = entities.iter().map(|(k, v)| (k.clone(), v.slice(row, 1))).collect();
            online_answers.push(online::get_online_features(
                catalog,
                &records,
                &reader,
                &OnlineRequest {
                    features: features.clone(),
                    entities: one,
                    full_feature_names: true,
                    as_of: AsOf::Latest,
                    deadline: None,
                },
            )?);
        }
        // Offline: one point-in-time join, as `skewless dataset` does, at
        // `now`, or for an aggregation view at the instant each online read
        // reported (its features' event timestamp).
        let instants = online_answers
            .iter()
            .map(|answer| {
                let instant = answer
                    .columns
                    .iter()
                    .find(|c| c.view.as_deref() == Some(view.name.as_str()))
                    .and_then(|c| c.event_timestamps[0]);
                if view.is_aggregation() {
                    instant.unwrap_or(now)
                } else {
                    now
                }
            })
            .collect();
        let offline = online::get_online_features(
            catalog,
            &records,
            &reader,
            &OnlineRequest {
                features: features.clone(),
                entities: entities.clone(),
                full_feature_names: true,
                as_of: AsOf::Rows(instants),
                deadline: None,
            },
        )?;
        for (row, (key, online_answer)) in sample.iter().zip(&online_answers).enumerate() {
            let entity = || key.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
            compare((online_answer, 0), (&offline, row), &entity, &mut report);
        }
    }
    report.store = Some(StoreFingerprint {
        digest: store.content_digest()?,
        log_sequence: store.log_sequence()?,
        skipped: store
            .skipped_messages()?
            .into_iter()
            .map(|(sequence, _)| sequence)
            .collect(),
    });
    Ok(report)
}

/// The skew monitor's check of one served answer: reads `request` again
/// through the offline path (the training-data join, [`AsOf::Rows`]) on
/// the same store snapshot, each view at the instant the online read
/// counted from (its `now`, or for an aggregation view the event time it
/// served), and compares value bits and statuses. Returns the report of
/// values compared and the differences, which must be none.
pub fn recheck(
    catalog: &Catalog,
    records: &BTreeMap<String, ViewRecord>,
    reader: &crate::store::StoreReader,
    request: &OnlineRequest,
    online: &OnlineResponse,
) -> Result<Report, OnlineError> {
    let mut report = Report::default();
    let rows = request.entities.values().next().map_or(0, |c| c.len());
    let mut views: Vec<&str> = request.features.iter().map(|f| f.view.as_str()).collect();
    views.dedup();
    for view in views {
        let features: Vec<FeatureRef> = request.features.iter().filter(|f| f.view == view).cloned().collect();
        let aggregation = catalog.repo.views.get(view).is_some_and(|v| v.is_aggregation());
        let served = online.columns.iter().find(|c| c.view.as_deref() == Some(view));
        let instants = (0..rows)
            .map(|row| match served {
                Some(column) if aggregation => column.event_timestamps[row].unwrap_or(online.now),
                _ => online.now,
            })
            .collect();
        let offline = online::get_online_features(
            catalog,
            records,
            reader,
            &OnlineRequest {
                features,
                entities: request.entities.clone(),
                full_feature_names: request.full_feature_names,
                as_of: AsOf::Rows(instants),
                deadline: None,
            },
        )?;
        // The served columns of this view, in the same order as the re-read's.
        let mut served_view = online.clone();
        served_view.columns.retain(|c| c.view.as_deref() == Some(view));
        for row in 0..rows {
            compare(
                (&served_view, row),
                (&offline, row),
                &|| request.entity_text(row),
                &mut report,
            );
        }
    }
    Ok(report)
}

/// Which stored values of a materialized view another component computed;
/// returns the view's entities (from its latest values), for sampling.
fn stale_check(
    catalog: &Catalog,
    store: &Store,
    view: &crate::repo::View,
    record: &ViewRecord,
    digests: &BTreeMap<u32, crate::Digest>,
    report: &mut Report,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let entities = store.latest_entities(record)?;
    let current = catalog.transform(&view.name).expect("loaded").digest();
    let name = |id: &u32| digests.get(id).map_or_else(|| format!("#{id}"), |d| d.short());
    let is_current = |id: &u32| digests.get(id) == Some(&current);
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for (_, id) in entities.iter().filter(|(_, id)| !is_current(id)) {
        *latest.entry(name(id)).or_default() += 1;
    }
    let history_counts = store.history_digests(record)?;
    let history: BTreeMap<String, u64> = history_counts
        .iter()
        .filter(|(id, _)| !is_current(id))
        .map(|(id, n)| (name(id), *n))
        .collect();
    if !latest.is_empty() || !history.is_empty() {
        report.stale.push(Stale {
            view: view.name.clone(),
            current,
            latest,
            entities: entities.len(),
            history,
            rows: history_counts.values().sum(),
        });
    }

    Ok(entities.into_iter().map(|(key, _)| key).collect())
}

/// The join keys of the sample, and a deterministic value per row for each
/// request field the on-demand views need.
fn entity_columns(
    catalog: &Catalog,
    record: &ViewRecord,
    features: &[FeatureRef],
    sample: &[Vec<KeyValue>],
) -> IndexMap<String, ArrayRef> {
    let mut columns = IndexMap::new();
    for (index, key) in record.join_keys.iter().enumerate() {
        let array: ArrayRef = match key.data_type {
            FeatureType::Utf8 => Arc::new(StringArray::from_iter_values(sample.iter().map(|k| match &k[index] {
                KeyValue::Utf8(s) => s.clone(),
                KeyValue::Int64(i) => i.to_string(),
            }))),
            FeatureType::Int64 => Arc::new(Int64Array::from_iter_values(sample.iter().map(|k| match &k[index] {
                KeyValue::Int64(i) => *i,
                KeyValue::Utf8(_) => 0,
            }))),
            FeatureType::Bool
            | FeatureType::Float32
            | FeatureType::Float64
            | FeatureType::Timestamp
            | FeatureType::List(_)
            | FeatureType::Vector(_) => {
                unreachable!("join keys are int64 or utf8 (checked by the repo)")
            }
        };
        columns.insert(key.name.clone(), array);
    }
    let request = catalog.repo.request_columns();
    let views: BTreeSet<&str> = features.iter().map(|f| f.view.as_str()).collect();
    for view in views {
        let Some(transform) = catalog.transform(view) else {
            continue;
        };
        for input in &transform.description().inputs {
            // Join keys are there already; stored features come from the view.
            let stored = record.features.iter().any(|f| f.name == input.name);
            if columns.contains_key(&input.name) || stored || !request.contains_key(&input.name) {
                continue;
            }
            columns.insert(input.name.clone(), request_values(input.data_type, sample.len()));
        }
    }
    columns
}

fn request_values(data_type: FeatureType, rows: usize) -> ArrayRef {
    let rows = 0..rows as i64;
    match data_type {
        FeatureType::Bool => Arc::new(BooleanArray::from_iter(rows.map(|r| Some(r % 2 == 0)))),
        FeatureType::Int64 => Arc::new(Int64Array::from_iter_values(rows.map(|r| r * 7 - 3))),
        FeatureType::Float32 => Arc::new(Float32Array::from_iter_values(rows.map(|r| r as f32 * 0.37 - 1.0))),
        FeatureType::Float64 => Arc::new(Float64Array::from_iter_values(rows.map(|r| r as f64 * 0.37 - 1.0))),
        FeatureType::Utf8 => Arc::new(StringArray::from_iter_values(rows.map(|r| format!("verify-{r}")))),
        FeatureType::Timestamp => Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.map(|r| 1_700_000_000_000_000 + r * 1_000_000))
                .with_timezone(UTC),
        ),
        // A list of the row's scalars: row r has r % 4 elements.
        FeatureType::List(item) => {
            let elements = request_values(item.feature_type(), rows.end as usize * 3);
            let offsets: Vec<i32> = std::iter::once(0)
                .chain(rows.scan(0, |end, r| {
                    *end += (r % 4) as i32;
                    Some(*end)
                }))
                .collect();
            let used = *offsets.last().expect("starts with 0") as usize;
            Arc::new(arrow_array::ListArray::new(
                Arc::new(arrow_schema::Field::new_list_field(item.feature_type().arrow(), true)),
                arrow_buffer::OffsetBuffer::new(offsets.into()),
                elements.slice(0, used),
                None,
            ))
        }
        FeatureType::Vector(dimension) => {
            let components: Vec<f32> = rows
                .flat_map(|r| (0..dimension as i64).map(move |i| ((r * 31 + i) % 97) as f32 / 97.0 - 0.5))
                .collect();
            Arc::new(arrow_array::FixedSizeListArray::new(
                Arc::new(arrow_schema::Field::new_list_field(
                    arrow_schema::DataType::Float32,
                    true,
                )),
                dimension as i32,
                Arc::new(Float32Array::from(components)),
                None,
            ))
        }
    }
}

/// Compares row `row` of `offline` with the one-row `online` answer.
/// Compares row `at` of an online answer with row `row` of the offline
/// answer to the same features, value bits and status, column by column.
fn compare(
    (online, at): (&OnlineResponse, usize),
    (offline, row): (&OnlineResponse, usize),
    entity: &dyn Fn() -> String,
    report: &mut Report,
) {
    let online_columns = online.columns.iter().filter(|c| c.view.is_some());
    let offline_columns = offline.columns.iter().filter(|c| c.view.is_some());
    for (a, b) in online_columns.zip(offline_columns) {
        let Some(view) = &a.view else {
            continue;
        };
        report.compared += 1;
        *report.compared_by_view.entry(view.clone()).or_default() += 1;
        let (va, vb) = (
            crate::codec::value_bits(a.values.as_ref(), at),
            crate::codec::value_bits(b.values.as_ref(), row),
        );
        if va != vb || a.statuses[at] != b.statuses[row] {
            let show = |array: &dyn Array, r: usize, status: online::Status| {
                let status = serde_json::to_value(status).expect("statuses serialize");
                format!(
                    "{} ({})",
                    crate::codec::value_text(array, r),
                    status.as_str().unwrap_or_default()
                )
            };
            report.differences.push(Difference {
                view: view.clone(),
                feature: a.name.split_once("__").map_or(a.name.as_str(), |(_, f)| f).to_string(),
                entity: entity(),
                online: show(a.values.as_ref(), at, a.statuses[at]),
                offline: show(b.values.as_ref(), row, b.statuses[row]),
            });
        }
    }
}

/// Differences shown at most; the rest are counted.
const SHOWN_DIFFERENCES: usize = 20;

/// The report as `skewless verify` prints it, and as the Python package's
/// `Repo.verify()` returns it (`report["text"]`): per view, each check with
/// its verdict, then what differs, what is stale, and the store's digest.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
        let online_offline = |f: &mut std::fmt::Formatter<'_>, view: &str| {
            let (compared, differing) = self.compared_in(view);
            writeln!(
                f,
                "  {:<18} {:<6} {differing} of {compared} sampled values differ between the server's path and the \
                 dataset's",
                "online = offline",
                verdict(differing == 0)
            )
        };
        for probe in &self.probes {
            let view = &probe.view;
            writeln!(f, "view {view}")?;
            if self.compared_in(view).0 > 0 {
                online_offline(f, view)?;
            }
            if self.views.contains(view) {
                match self.stale.iter().find(|s| &s.view == view) {
                    None => writeln!(
                        f,
                        "  {:<18} {:<6} every stored value was computed by the repo's component",
                        "staleness", "ok"
                    )?,
                    Some(s) => writeln!(
                        f,
                        "  {:<18} {:<6} values computed by another component than {}",
                        "staleness",
                        "FAILED",
                        s.current.short()
                    )?,
                }
            }
            match &probe.result {
                Ok(probed) => {
                    writeln!(f, "  {:<18} {:<6} {probed}", "batch invariance", "ok")?;
                    writeln!(
                        f,
                        "  {:<18} {:<6} every call started afresh: the same rows gave the same values in every call",
                        "state", "ok"
                    )?;
                }
                Err(found) => {
                    let shown = if probe.allowed { "allowed" } else { "FAILED" };
                    let check = match found.how {
                        invariance::Arrangement::Again => "state",
                        invariance::Arrangement::OneRowAtATime | invariance::Arrangement::Split(_) => {
                            "batch invariance"
                        }
                    };
                    writeln!(f, "  {check:<18} {shown:<6} {found}")?;
                }
            }
        }
        for tiles in &self.tiles {
            let view = &tiles.view;
            if !self.probes.iter().any(|p| &p.view == view) {
                writeln!(f, "view {view}")?;
                online_offline(f, view)?;
            }
            writeln!(
                f,
                "  {:<18} {:<6} {} of {} tiles differ from their recomputation from {} raw events",
                "tiles",
                verdict(tiles.mismatches.is_empty()),
                tiles.mismatches.len(),
                tiles.tiles,
                tiles.events
            )?;
            for mismatch in tiles.mismatches.iter().take(5) {
                writeln!(f, "    tile: {mismatch}")?;
            }
        }
        for d in self.differences.iter().take(SHOWN_DIFFERENCES) {
            writeln!(
                f,
                "difference: `{}:{}` for {}: online {} but offline {}",
                d.view, d.feature, d.entity, d.online, d.offline
            )?;
        }
        if self.differences.len() > SHOWN_DIFFERENCES {
            writeln!(
                f,
                "... and {} more differences",
                self.differences.len() - SHOWN_DIFFERENCES
            )?;
        }
        for s in &self.stale {
            let by = |counts: Vec<String>| counts.join(", ");
            let mut parts = Vec::new();
            if !s.latest.is_empty() {
                let counts = s.latest.iter().map(|(d, n)| format!("{n} by {d}")).collect();
                parts.push(format!("of {} entities' served values, {}", s.entities, by(counts)));
            }
            if !s.history.is_empty() {
                let counts = s.history.iter().map(|(d, n)| format!("{n} by {d}")).collect();
                parts.push(format!("of {} stored rows (training data), {}", s.rows, by(counts)));
            }
            writeln!(
                f,
                "stale: view `{}`: {} (the repo's component is {}); run `skewless backfill --view {}` to \
                 rematerialize",
                s.view,
                parts.join("; "),
                s.current.short(),
                s.view
            )?;
        }
        if let Some(store) = &self.store {
            // Replicas compare this line: the same values give the same digest.
            let skipped: String = store.skipped.iter().map(|s| format!(" #{s}")).collect();
            writeln!(
                f,
                "store\n  {:<18} {} (log message {}, {} skipped{skipped})",
                "content digest",
                store.digest.hex(),
                store.log_sequence,
                store.skipped.len()
            )?;
        }
        let failing = self.failing_probes();
        if !failing.is_empty() {
            writeln!(
                f,
                "batch-dependent: {} depend on their batch or on earlier calls: a served value would differ from \
                 the trained one (`skewless apply --allow-batch-dependent VIEW` records a known case)",
                failing.join(", ")
            )?;
        }
        Ok(())
    }
}
