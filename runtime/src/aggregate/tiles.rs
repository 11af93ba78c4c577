//! Tiles: deriving the ones a day entry leaves out, rebuilding those above
//! the days after a write, and checking the stored ones against their
//! definition (`verify`). All follow the ladder of
//! [`super::window::LADDER`]: a tile is the merge of the tiles of the level
//! below inside it, an hour's tile is the fold of its events (invariants 2
//! and 3 of [`super::layout`]). The store reads and writes the entries;
//! what a tile must be is decided here, beside [`super::fold`].

use std::collections::BTreeMap;

use super::fold;
use super::function::State;
use super::layout::{self as agg, HourSection, tile_min_events};
use super::plan::Plan;
use super::window::LADDER;
use crate::error::TransformError;
use crate::format::layout::{CorruptRow, decode_entity_key};

/// One tile: a state per slot of the plan.
pub type Tile = Vec<State>;

/// A parent's children: every bucket inside it that exists, and the tiles
/// of those not rebuilt in this write, decoded.
type Children = (Vec<i64>, BTreeMap<i64, Tile>);

/// The tile of each hour section: the stored one decoded, the others
/// folded from their events (all in one call, for user functions).
pub fn section_tiles(plan: &Plan, sections: &[HourSection<'_>]) -> Result<Vec<Tile>, TileError> {
    let corrupt = |e: CorruptRow| TileError::Corrupt(e.to_string());
    let mut tiles: Vec<Option<Tile>> = Vec::with_capacity(sections.len());
    let mut unfolded: Vec<(usize, Vec<agg::Event>)> = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        match section.tile {
            Some(bytes) => tiles.push(Some(agg::read_tile(bytes, plan).map_err(corrupt)?)),
            None => {
                tiles.push(None);
                unfolded.push((i, section.decode(&plan.inputs).map_err(corrupt)?));
            }
        }
    }
    let slices: Vec<&[agg::Event]> = unfolded.iter().map(|(_, events)| events.as_slice()).collect();
    for ((i, _), tile) in unfolded.iter().zip(fold::fold_hours(plan, &slices)?) {
        tiles[*i] = Some(tile);
    }
    Ok(tiles.into_iter().map(|t| t.expect("decoded or folded")).collect())
}

/// The tile of each day (its hour sections): the merge of its hours'
/// tiles ([`section_tiles`]), for the days whose tile is not stored.
pub fn day_tiles(plan: &Plan, days: &[Vec<HourSection<'_>>]) -> Result<Vec<Tile>, TileError> {
    let flat: Vec<HourSection<'_>> = days.iter().flatten().copied().collect();
    let hours = section_tiles(plan, &flat)?;
    let mut at = 0;
    let groups: Vec<Vec<&[State]>> = days
        .iter()
        .map(|day| {
            let group = hours[at..at + day.len()].iter().map(Vec::as_slice).collect();
            at += day.len();
            group
        })
        .collect();
    Ok(fold::merge_tile_groups(plan, &groups)?)
}

/// Whether a day of `count` events whose tile is `tile` keeps it in a
/// day tile entry (invariant 3): a dense day, and a tile that is not the
/// empty state (the empty state is never stored or merged, at any level).
pub fn stores_day_tile(plan: &Plan, count: u64, tile: &[State]) -> bool {
    count >= tile_min_events(plan) as u64 && !fold::is_empty(plan, tile)
}

/// Events in the sections of a day entry.
pub fn day_count(sections: &[HourSection<'_>]) -> u64 {
    sections.iter().map(|s| s.count as u64).sum()
}

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

/// Rebuilds every tile above the buckets `touched` of level `from`, whose
/// new tiles are in `rebuilt`, level by level: each parent's tile is the merge of its
/// children, those rebuilt here taken as they are, the others from
/// `stored(level, first, last, skip)` (the buckets of that level between
/// `first` and `last` that exist, each with its decoded tile unless `skip`
/// says it was rebuilt). `put(level, bucket, tile)` writes a parent, or
/// removes it when it holds no event (`None`). All parents of a level fold
/// in one call, so a user function's guest is entered once per level.
pub fn rebuild_above<E: From<TransformError>>(
    plan: &Plan,
    from: usize,
    mut touched: Vec<i64>,
    mut rebuilt: BTreeMap<i64, Tile>,
    mut stored: impl FnMut(u8, i64, i64, &dyn Fn(i64) -> bool) -> Result<Vec<(i64, Option<Tile>)>, E>,
    mut put: impl FnMut(u8, i64, Option<&[State]>) -> Result<(), E>,
) -> Result<(), E> {
    for level in from + 1..LADDER.len() {
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
/// from its events, a day's from its hours, 30 days' from their days),
/// compares the bytes with the stored ones, and checks that a tile is
/// stored exactly when invariant 3 says. Fed the view's entries in key
/// order ([`TileCheck::entry`]), one entity at a time.
pub struct TileCheck<'p> {
    plan: &'p Plan,
    entity: Option<Vec<u8>>,
    /// The current entity's stored tiles of the days and above, by level and bucket.
    stored: Vec<BTreeMap<i64, Vec<u8>>>,
    /// The current entity's day tiles that are not empty, as recomputed,
    /// with the day's event count.
    days: BTreeMap<i64, (Tile, u64)>,
    found: AggregateCheck,
}

impl<'p> TileCheck<'p> {
    /// A check of a view aggregated by `plan`.
    pub fn new(plan: &'p Plan) -> TileCheck<'p> {
        TileCheck {
            plan,
            entity: None,
            stored: vec![BTreeMap::new(); LADDER.len()],
            days: BTreeMap::new(),
            found: AggregateCheck::default(),
        }
    }

    /// One stored entry: `entity`'s day entry (level 0) or tile at `bucket`.
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
        let sections = agg::read_day(bytes, bucket).map_err(corrupt)?;
        let hours: Vec<Vec<agg::Event>> = sections
            .iter()
            .map(|s| s.decode(&self.plan.inputs))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        let slices: Vec<&[agg::Event]> = hours.iter().map(Vec::as_slice).collect();
        let tiles = fold::fold_hours(self.plan, &slices)?;
        let mut expected = Vec::new();
        for ((section, events), tile) in sections.iter().zip(&hours).zip(&tiles) {
            let in_order = events.windows(2).all(|w| (w[0].time, w[0].id) < (w[1].time, w[1].id));
            if !in_order {
                self.found.mismatches.push(format!(
                    "entity {}: hour {}'s events are not in (time, id) order",
                    describe_entity(entity),
                    section.hour
                ));
            }
            expected.clear();
            agg::write_tile(&mut expected, self.plan, tile);
            self.found.tiles += 1;
            self.found.events += events.len() as u64;
            let should_store = section.count >= tile_min_events(self.plan);
            match section.tile {
                Some(stored) if should_store && stored != expected.as_slice() => self.found.mismatches.push(format!(
                    "entity {}: hour {}'s tile differs from the fold of its {} events",
                    describe_entity(entity),
                    section.hour,
                    events.len()
                )),
                Some(_) if !should_store => self.found.mismatches.push(format!(
                    "entity {}: hour {} keeps a tile for {} events (fewer than {})",
                    describe_entity(entity),
                    section.hour,
                    section.count,
                    tile_min_events(self.plan)
                )),
                None if should_store => self.found.mismatches.push(format!(
                    "entity {}: hour {}'s tile is missing ({} events)",
                    describe_entity(entity),
                    section.hour,
                    section.count
                )),
                Some(_) | None => {}
            }
        }
        let groups = vec![tiles.iter().map(Vec::as_slice).collect::<Vec<_>>()];
        let day = fold::merge_tile_groups(self.plan, &groups)?.swap_remove(0);
        if !fold::is_empty(self.plan, &day) {
            self.days.insert(bucket, (day, day_count(&sections)));
        }
        Ok(())
    }

    /// What was found, once every entry was fed.
    pub fn finish(mut self) -> Result<AggregateCheck, TileError> {
        self.finish_entity()?;
        Ok(self.found)
    }

    /// Checks the current entity's tiles of its days and above.
    fn finish_entity(&mut self) -> Result<(), TileError> {
        let Some(entity) = self.entity.take() else {
            return Ok(());
        };
        let days = std::mem::take(&mut self.days);
        let mut bytes = Vec::new();
        for (day, (tile, count)) in &days {
            if !stores_day_tile(self.plan, *count, tile) {
                continue;
            }
            self.found.tiles += 1;
            bytes.clear();
            agg::write_tile(&mut bytes, self.plan, tile);
            if self.stored[1].get(day) != Some(&bytes) {
                self.found.mismatches.push(format!(
                    "entity {}: day {day}'s tile differs from the merge of its hours (or is missing)",
                    describe_entity(&entity)
                ));
            }
        }
        for (day, _) in self.stored[1].iter().filter(|(d, _)| {
            days.get(d)
                .is_none_or(|(tile, count)| !stores_day_tile(self.plan, *count, tile))
        }) {
            self.found.mismatches.push(format!(
                "entity {}: day {day} has a tile but too few events, or none that counts",
                describe_entity(&entity)
            ));
        }
        self.stored[1].clear();
        let mut below: BTreeMap<i64, Tile> = days.into_iter().map(|(day, (tile, _))| (day, tile)).collect();
        for level in 2..LADDER.len() {
            let ratio = LADDER[level] / LADDER[level - 1];
            let mut grouped: BTreeMap<i64, Vec<Tile>> = BTreeMap::new();
            for (bucket, tile) in below {
                grouped.entry(bucket.div_euclid(ratio)).or_default().push(tile);
            }
            let mut expected: BTreeMap<i64, Tile> = BTreeMap::new();
            for (bucket, children) in grouped {
                let tile = fold::merge_tiles(self.plan, children.iter().map(Vec::as_slice))?;
                if !fold::is_empty(self.plan, &tile) {
                    expected.insert(bucket, tile);
                }
            }
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
