//! Tiles above the hours: rebuilding them after a write, and checking the
//! stored ones against their definition (`verify`). Both follow the ladder
//! of [`super::window::LADDER`]: a tile is the merge of the tiles of the
//! level below inside it, an hour's tile is the fold of its events
//! (invariant 2 of [`super::layout`]). The store reads and writes the
//! entries; what a tile must be is decided here, beside [`super::fold`].

use std::collections::BTreeMap;

use super::fold;
use super::function::State;
use super::layout as agg;
use super::plan::Plan;
use super::window::LADDER;
use crate::error::TransformError;
use crate::format::layout::{CorruptRow, decode_entity_key};

/// One tile: a state per slot of the plan.
pub type Tile = Vec<State>;

/// A parent's children: every bucket inside it that exists, and the tiles
/// of those not rebuilt in this write, decoded.
type Children = (Vec<i64>, BTreeMap<i64, Tile>);

/// Why tiles could not be rebuilt or checked.
#[derive(Debug)]
pub enum TileError {
    /// Stored bytes that do not decode.
    Corrupt(String),
    /// A user-defined function failed.
    Function(TransformError),
}

impl From<TransformError> for TileError {
    fn from(error: TransformError) -> TileError {
        TileError::Function(error)
    }
}

/// Rebuilds every tile above the hours `touched`, whose new tiles are in
/// `rebuilt`, level by level: each parent's tile is the merge of its
/// children, those rebuilt here taken as they are, the others from
/// `stored(level, first, last, skip)` (the buckets of that level between
/// `first` and `last` that exist, each with its decoded tile unless `skip`
/// says it was rebuilt). `put(level, bucket, tile)` writes a parent, or
/// removes it when it holds no event (`None`). All parents of a level fold
/// in one call, so a user function's guest is entered once per level.
pub fn rebuild_above<E: From<TransformError>>(
    plan: &Plan,
    mut touched: Vec<i64>,
    mut rebuilt: BTreeMap<i64, Tile>,
    mut stored: impl FnMut(u8, i64, i64, &dyn Fn(i64) -> bool) -> Result<Vec<(i64, Option<Tile>)>, E>,
    mut put: impl FnMut(u8, i64, Option<&[State]>) -> Result<(), E>,
) -> Result<(), E> {
    for level in 1..LADDER.len() {
        let ratio = LADDER[level] / LADDER[level - 1];
        let mut parents: Vec<i64> = touched.iter().map(|b| b.div_euclid(ratio)).collect();
        parents.dedup();
        let mut children_of: Vec<Children> = Vec::with_capacity(parents.len());
        for &parent in &parents {
            let skip = |bucket: i64| rebuilt.contains_key(&bucket);
            let found = stored((level - 1) as u8, parent * ratio, parent * ratio + ratio - 1, &skip)?;
            let children = found.iter().map(|(bucket, _)| *bucket).collect();
            let decoded = found.into_iter().filter_map(|(b, tile)| tile.map(|t| (b, t))).collect();
            children_of.push((children, decoded));
        }
        let groups: Vec<Vec<&[State]>> = children_of
            .iter()
            .map(|(children, decoded)| {
                children
                    .iter()
                    .map(|b| {
                        rebuilt
                            .get(b)
                            .or_else(|| decoded.get(b))
                            .expect("read above")
                            .as_slice()
                    })
                    .collect()
            })
            .collect();
        let tiles = fold::merge_tile_groups(plan, &groups)?;
        let mut rebuilt_here = BTreeMap::new();
        for (&parent, tile) in parents.iter().zip(tiles) {
            put(
                level as u8,
                parent,
                (!fold::is_empty(plan, &tile)).then_some(tile.as_slice()),
            )?;
            rebuilt_here.insert(parent, tile);
        }
        rebuilt = rebuilt_here;
        touched = parents;
    }
    Ok(())
}

/// What [`TileCheck`] found.
#[derive(Debug, Clone, Default)]
pub struct AggregateCheck {
    /// Entity keys with events, in key order.
    pub entities: Vec<Vec<u8>>,
    /// Tiles recomputed and compared.
    pub tiles: u64,
    /// Events read.
    pub events: u64,
    /// Tiles that differ from their definition.
    pub mismatches: Vec<String>,
}

/// Recomputes every tile of a view from what it is defined by (an hour's
/// from its events, a day's from its hours, 30 days' from their days) and
/// compares the bytes with the stored ones. Fed the view's entries in key
/// order ([`TileCheck::entry`]), one entity at a time.
pub struct TileCheck<'p> {
    plan: &'p Plan,
    entity: Option<Vec<u8>>,
    /// The current entity's stored tiles above the hours, by level and bucket.
    stored: Vec<BTreeMap<i64, Vec<u8>>>,
    /// The current entity's hour tiles, as recomputed.
    hours: BTreeMap<i64, Vec<State>>,
    found: AggregateCheck,
}

impl<'p> TileCheck<'p> {
    /// A check of a view aggregated by `plan`.
    pub fn new(plan: &'p Plan) -> TileCheck<'p> {
        TileCheck {
            plan,
            entity: None,
            stored: vec![BTreeMap::new(); LADDER.len()],
            hours: BTreeMap::new(),
            found: AggregateCheck::default(),
        }
    }

    /// One stored entry: `entity`'s tile (or hour, at level 0) at `bucket`.
    pub fn entry(&mut self, entity: &[u8], level: usize, bucket: i64, bytes: &[u8]) -> Result<(), TileError> {
        let corrupt = |e: CorruptRow| TileError::Corrupt(e.to_string());
        if self.entity.as_deref() != Some(entity) {
            self.finish_entity()?;
            self.entity = Some(entity.to_vec());
            self.found.entities.push(entity.to_vec());
        }
        if level >= LADDER.len() {
            return Err(TileError::Corrupt(format!("tile level {level} does not exist")));
        }
        if level > 0 {
            self.stored[level].insert(bucket, bytes.to_vec());
            return Ok(());
        }
        let events = agg::hour_events(bytes, &self.plan.inputs).map_err(corrupt)?;
        let tile = fold::fold_events(self.plan, &events)?;
        let mut expected = Vec::new();
        agg::write_tile(&mut expected, self.plan, &tile);
        self.found.tiles += 1;
        self.found.events += events.len() as u64;
        if agg::hour_tile(bytes).map_err(corrupt)? != expected.as_slice() {
            self.found.mismatches.push(format!(
                "entity {}: hour {bucket}'s tile differs from the fold of its {} events",
                describe_entity(entity),
                events.len()
            ));
        }
        self.hours.insert(bucket, tile);
        Ok(())
    }

    /// What was found, once every entry was fed.
    pub fn finish(mut self) -> Result<AggregateCheck, TileError> {
        self.finish_entity()?;
        Ok(self.found)
    }

    /// Checks the current entity's tiles above its hours.
    fn finish_entity(&mut self) -> Result<(), TileError> {
        let Some(entity) = self.entity.take() else {
            return Ok(());
        };
        let mut below = std::mem::take(&mut self.hours);
        for level in 1..LADDER.len() {
            let ratio = LADDER[level] / LADDER[level - 1];
            let mut grouped: BTreeMap<i64, Vec<Vec<State>>> = BTreeMap::new();
            for (bucket, tile) in below {
                grouped.entry(bucket.div_euclid(ratio)).or_default().push(tile);
            }
            let mut expected: BTreeMap<i64, Vec<State>> = BTreeMap::new();
            for (bucket, children) in grouped {
                let tile = fold::merge_tiles(self.plan, children.iter().map(Vec::as_slice))?;
                if !fold::is_empty(self.plan, &tile) {
                    expected.insert(bucket, tile);
                }
            }
            let mut bytes = Vec::new();
            for (bucket, tile) in &expected {
                self.found.tiles += 1;
                bytes.clear();
                agg::write_tile(&mut bytes, self.plan, tile);
                if self.stored[level].get(bucket) != Some(&bytes) {
                    self.found.mismatches.push(format!(
                        "entity {}: level {level} tile {bucket} differs from the merge of the tiles inside it",
                        describe_entity(&entity)
                    ));
                }
            }
            for bucket in self.stored[level].keys().filter(|b| !expected.contains_key(b)) {
                self.found.mismatches.push(format!(
                    "entity {}: level {level} tile {bucket} is stored but no event is inside it",
                    describe_entity(&entity)
                ));
            }
            self.stored[level].clear();
            below = expected;
        }
        Ok(())
    }
}

/// An entity key as its values (`42` or `a,7`), or its bytes if they do not decode.
fn describe_entity(key: &[u8]) -> String {
    match decode_entity_key(key) {
        Some(values) => values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
        None => format!("{key:02x?}"),
    }
}
