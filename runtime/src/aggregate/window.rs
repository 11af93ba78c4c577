//! Windows and the one decomposition D(t) of a window into raw events and
//! tiles: what every path (backfill, push, server, `dataset`, `get --at`,
//! `verify`) folds, in the same order, so values agree bit for bit.
//!
//! A window of length W at time t holds the events with
//! `t - W <= event_time < t` (AGGREGATIONS.md). D(t) depends on t and W
//! only, never on what is stored:
//! 1. the raw events of the partial hour at the left edge,
//! 2. whole aligned tiles from left to right, the largest of the ladder
//!    (1 hour, 1 day, 30 days, aligned to the Unix epoch) that fit,
//! 3. the raw events of the partial hour at the right edge.
//!
//! A lifetime window starts with every 30-day tile before the first
//! aligned tile of step 2 (tiles with no events are the identity of the
//! fold, so the ones never written need not be read).

/// Microseconds in an hour: the finest tile, and the bucket raw events are stored by.
pub const HOUR: i64 = 3_600_000_000;
/// Tile sizes from finest to coarsest. Level `i` has size `LADDER[i]`;
/// each size is a multiple of the one before, so aligned tiles nest.
pub const LADDER: [i64; 3] = [HOUR, 24 * HOUR, 30 * 24 * HOUR];
/// The coarsest level, the one a lifetime window reads from the beginning.
pub const TOP: u8 = (LADDER.len() - 1) as u8;
const _: () = assert!(LADDER[1] % LADDER[0] == 0 && LADDER[2] % LADDER[1] == 0);

/// A window length: a duration, or no left edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The events of the last this-many microseconds.
    Micros(i64),
    /// Every event before t.
    Lifetime,
}

impl Window {
    /// Parses `"1h"`, `"30d"`, `"90m"` or `"lifetime"`.
    pub fn parse(text: &str) -> Result<Window, String> {
        if text == "lifetime" {
            return Ok(Window::Lifetime);
        }
        let duration = humantime::parse_duration(text).map_err(|e| {
            format!("`{text}` is not a window: use a duration like \"10m\", \"1h\", \"7d\", or \"lifetime\" ({e})")
        })?;
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        if micros <= 0 {
            return Err(format!("`{text}` is not a window: it must be longer than 0"));
        }
        Ok(Window::Micros(micros))
    }

    /// The window's left edge at `t` (inclusive); `None` for a lifetime window.
    pub fn start(self, t: i64) -> Option<i64> {
        match self {
            Window::Micros(w) => Some(t.saturating_sub(w)),
            Window::Lifetime => None,
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::Lifetime => f.write_str("lifetime"),
            Window::Micros(m) => {
                // The largest unit that divides it: "30d", "90m", "1500us".
                let units = [
                    (86_400_000_000, "d"),
                    (3_600_000_000, "h"),
                    (60_000_000, "m"),
                    (1_000_000, "s"),
                ];
                match units.iter().find(|(size, _)| m % size == 0) {
                    Some((size, unit)) => write!(f, "{}{unit}", m / size),
                    None => write!(f, "{m}us"),
                }
            }
        }
    }
}

/// One part of D(t), in fold order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The raw events with `from <= event_time < to`, all in hour `hour`.
    Events {
        /// The hour bucket holding them.
        hour: i64,
        /// Inclusive.
        from: i64,
        /// Exclusive.
        to: i64,
    },
    /// The aligned tiles of one level with buckets `first..=last`, left to
    /// right (a bucket is `tile start / LADDER[level]`). A lifetime window
    /// starts with the top level's tiles from `i64::MIN`: every one stored
    /// before its first aligned tile. Tiles never written are the identity
    /// of the fold, so a read folds the stored ones in the run, in order.
    Tiles {
        /// Index into [`LADDER`].
        level: u8,
        /// The first bucket, inclusive.
        first: i64,
        /// The last bucket, inclusive.
        last: i64,
    },
}

/// The decomposition D(t) of the window `[start, t)` (`start = None`:
/// lifetime), in fold order. Pure: the same inputs always give the same parts.
pub fn decompose(start: Option<i64>, t: i64) -> Vec<Part> {
    let mut parts = Vec::new();
    decompose_into(start, t, &mut parts);
    parts
}

/// [`decompose`] into `parts` (cleared first): reads evaluate many
/// windows, and reuse one buffer.
pub fn decompose_into(start: Option<i64>, t: i64, parts: &mut Vec<Part>) {
    parts.clear();
    let hour_of = |time: i64| time.div_euclid(HOUR);
    let (interior_from, left_aligned) = match start {
        Some(from) if from >= t => return,
        Some(from) => {
            let aligned = ceil_to(from, HOUR);
            if aligned >= t {
                // The whole window lies inside one hour.
                parts.push(Part::Events {
                    hour: hour_of(from),
                    from,
                    to: t,
                });
                return;
            }
            if aligned > from {
                parts.push(Part::Events {
                    hour: hour_of(from),
                    from,
                    to: aligned,
                });
            }
            (aligned, true)
        }
        None => (floor_to(t, LADDER[TOP as usize]), false),
    };
    let interior_to = floor_to(t, HOUR);
    if !left_aligned {
        parts.push(Part::Tiles {
            level: TOP,
            first: i64::MIN,
            last: interior_from.div_euclid(LADDER[TOP as usize]) - 1,
        });
    }
    interior_tiles(interior_from, interior_to, parts);
    if interior_to < t {
        parts.push(Part::Events {
            hour: hour_of(interior_to),
            from: interior_to.max(start.unwrap_or(i64::MIN)),
            to: t,
        });
    }
}

/// The tiles covering `[from, to)` (both hour-aligned), left to right,
/// each the largest of the ladder that is aligned where it starts and
/// fits. Computed in phases rather than by trying each level at each
/// step: finer tiles up to each coarser boundary, the coarsest tiles that
/// fit, then finer ones again down to `to`. The same parts as the greedy
/// choice (tested against it).
fn interior_tiles(from: i64, to: i64, parts: &mut Vec<Part>) {
    let mut at = from;
    // The tiles of `level` from `at`, while they end by `until` and fit before `to`.
    let run = |level: usize, at: &mut i64, until: i64, parts: &mut Vec<Part>| {
        let size = LADDER[level];
        let count = (until.min(to) - *at).div_euclid(size);
        if count > 0 {
            let first = at.div_euclid(size);
            parts.push(Part::Tiles {
                level: level as u8,
                first,
                last: first + count - 1,
            });
            *at += count * size;
        }
    };
    // Up: finer tiles to the next coarser boundary, as long as they fit.
    for level in 0..TOP as usize {
        let boundary = ceil_to(at, LADDER[level + 1]);
        run(level, &mut at, boundary, parts);
        if at < boundary {
            break;
        }
    }
    // Across, then down.
    for level in (0..=TOP as usize).rev() {
        run(level, &mut at, to, parts);
    }
    debug_assert_eq!(at, to.max(from), "both ends are hour-aligned");
}

fn floor_to(t: i64, size: i64) -> i64 {
    t.div_euclid(size) * size
}

fn ceil_to(t: i64, size: i64) -> i64 {
    let floor = floor_to(t, size);
    if floor == t { t } else { floor + size }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts cover exactly `[start, t)`, in order, without overlap.
    fn covered(parts: &[Part]) -> Vec<(i64, i64)> {
        parts
            .iter()
            .map(|p| match *p {
                Part::Events { from, to, hour } => {
                    assert!(from.div_euclid(HOUR) == hour && (to - 1).div_euclid(HOUR) == hour);
                    (from, to)
                }
                Part::Tiles { level, first, last } => {
                    let size = LADDER[level as usize];
                    let from = if first == i64::MIN { i64::MIN } else { first * size };
                    (from, (last + 1) * size)
                }
            })
            .collect()
    }

    fn check(start: Option<i64>, t: i64) {
        let parts = decompose(start, t);
        let spans = covered(&parts);
        let mut at = start.unwrap_or(i64::MIN);
        for (from, to) in spans {
            assert_eq!(from, at, "{parts:?}");
            assert!(to > from);
            at = to;
        }
        if start.is_none_or(|s| s < t) {
            assert_eq!(at, t, "{parts:?}");
        }
        let events = parts.iter().filter(|p| matches!(p, Part::Events { .. })).count();
        assert!(events <= 2, "at most two partial hours: {parts:?}");
        assert!(
            parts.len() <= 2 + 2 * TOP as usize + 1 + 1,
            "bounded: {} parts",
            parts.len()
        );
    }

    #[test]
    fn windows_decompose_into_exact_covers() {
        let day = 24 * HOUR;
        let odd = 1_700_000_123_456_789;
        for t in [odd, floor_to(odd, HOUR), floor_to(odd, day), -odd, 0, 1, -1] {
            for w in [1, 600_000_000, HOUR, HOUR + 1, day, 7 * day, 30 * day, 400 * day] {
                check(Some(t - w), t);
            }
            check(None, t);
        }
    }

    /// The interior tiles by the definition: at each step the largest
    /// level aligned there that fits.
    fn greedy_interior(from: i64, to: i64) -> Vec<(u8, i64)> {
        let mut parts = Vec::new();
        let mut at = from;
        while at < to {
            let level = (0..LADDER.len())
                .rev()
                .find(|&l| at.rem_euclid(LADDER[l]) == 0 && at + LADDER[l] <= to)
                .unwrap();
            parts.push((level as u8, at.div_euclid(LADDER[level])));
            at += LADDER[level];
        }
        parts
    }

    #[test]
    fn interior_tiles_are_the_greedy_choice() {
        let mut state = 0x5eed_u64;
        let mut next = |bound: i64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as i64).rem_euclid(bound)
        };
        for _ in 0..20_000 {
            let from = (next(40_000) - 20_000) * HOUR;
            let to = from + next(2 * 24 * 400) * HOUR;
            let mut parts = Vec::new();
            interior_tiles(from, to, &mut parts);
            let tiles: Vec<(u8, i64)> = parts
                .iter()
                .flat_map(|p| match *p {
                    Part::Tiles { level, first, last } => (first..=last).map(move |b| (level, b)),
                    Part::Events { .. } => unreachable!("the interior has tiles only"),
                })
                .collect();
            assert_eq!(tiles, greedy_interior(from, to), "[{from}, {to})");
            assert!(
                parts.len() <= 2 * TOP as usize + 1,
                "one run per level and direction: {parts:?}"
            );
        }
    }

    #[test]
    fn an_empty_window_has_no_parts() {
        assert!(decompose(Some(5), 5).is_empty());
    }

    #[test]
    fn windows_parse() {
        assert_eq!(Window::parse("1h"), Ok(Window::Micros(HOUR)));
        assert_eq!(Window::parse("lifetime"), Ok(Window::Lifetime));
        for text in ["10m", "1h", "30d", "90s", "lifetime"] {
            assert_eq!(Window::parse(text).unwrap().to_string(), text);
        }
        assert!(Window::parse("an hour").unwrap_err().contains("not a window"));
        assert!(Window::parse("0s").unwrap_err().contains("longer than 0"));
    }
}
