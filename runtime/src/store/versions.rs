//! Store versions: a new store built beside the live one, then swapped in
//! whole while a server reads the old one (`skewless backfill
//! --new-version NAME`, then `skewless swap NAME` or `POST /admin/swap`).
//!
//! Layout, beside the live store file (`.skewless/store.redb`):
//! - `versions/NAME.building.redb`: a version being built, never swapped in;
//! - `versions/NAME.redb`: a built version, ready;
//! - `versions/retired-STAMP-COMMIT.redb`: a store a swap replaced, kept
//!   (the newest [`RETIRED_KEPT`]) so a swap can be undone by swapping it
//!   back in; older ones are removed by the swap that retires another.
//!
//! A version starts as a [`Store::backup`] of the live store, so it holds
//! everything the live store held at that commit (the base, recorded in
//! it), and the replication-log position it includes.

use std::path::{Path, PathBuf};

use super::backup::BackupSummary;
use super::error::StoreError;
use super::file::{COUNTERS, Store};

/// Retired stores kept after a swap.
pub const RETIRED_KEPT: usize = 1;

/// Key in `counters`: the live store's commit a version was copied from.
const VERSION_BASE: &str = "version_base_commit";

const BUILDING: &str = ".building.redb";
const RETIRED: &str = "retired-";

/// Where the versions of the live store at `live` are.
pub fn versions_dir(live: &Path) -> PathBuf {
    live.parent().unwrap_or(Path::new(".")).join("versions")
}

/// The file of built version `name` of the live store at `live`, which
/// must exist.
pub fn version_path(live: &Path, name: &str) -> Result<PathBuf, StoreError> {
    check_name(name)?;
    let path = versions_dir(live).join(format!("{name}.redb"));
    // `NAME.building` is a version being built: not one to swap in.
    if path.exists() && !name.ends_with(".building") {
        return Ok(path);
    }
    Err(StoreError::NoVersion {
        name: name.to_string(),
        dir: versions_dir(live),
        available: list(live)?,
    })
}

/// The names of the built versions (retired ones included), sorted.
pub fn list(live: &Path) -> Result<Vec<String>, StoreError> {
    let dir = versions_dir(live);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(StoreError::Io { path: dir, error }),
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| !name.ends_with(BUILDING))
        .filter_map(|name| name.strip_suffix(".redb").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let usable = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with(".building")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if usable {
        Ok(())
    } else {
        Err(StoreError::VersionName(name.to_string()))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A version being built: a copy of the live store, open for writing.
pub struct Building {
    /// The copy, open.
    pub store: Store,
    /// What the copy holds of the live store.
    pub base: BackupSummary,
    name: String,
    live: PathBuf,
}

impl Building {
    /// Closes the store and makes the version ready to swap in, under its
    /// name (replacing a built version of that name).
    pub fn finish(self) -> Result<PathBuf, StoreError> {
        let Building { store, name, live, .. } = self;
        let building = store.path().to_path_buf();
        drop(store);
        let ready = versions_dir(&live).join(format!("{name}.redb"));
        std::fs::rename(&building, &ready).map_err(io(&ready))?;
        Ok(ready)
    }
}

impl Store {
    /// Starts version `name` of this (live) store: a consistent copy of it
    /// at `versions/NAME.building.redb`, with the commit it was copied at
    /// recorded as its base. Rows written into it stay out of the live
    /// store until the version is swapped in.
    pub fn begin_version(&self, name: &str) -> Result<Building, StoreError> {
        check_name(name)?;
        if name.ends_with(".building") {
            return Err(StoreError::VersionName(name.to_string()));
        }
        let dir = versions_dir(&self.path);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let building = dir.join(format!("{name}{BUILDING}"));
        // Left over from a build that stopped half-way: never swapped in.
        match std::fs::remove_file(&building) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&building)(e)),
            _ => {}
        }
        let base = self.backup(&building)?;
        let mut store = Store::open_existing(&building)?;
        store.keep_statistics(self.statistics);
        store.write_txn(|txn| {
            txn.open_table(COUNTERS)?.insert(VERSION_BASE, base.commit)?;
            Ok(())
        })?;
        Ok(Building {
            store,
            base,
            name: name.to_string(),
            live: self.path.clone(),
        })
    }

    /// The live store's commit this version was copied from; `None` for a
    /// store that is not a version.
    pub fn version_base(&self) -> Result<Option<u64>, StoreError> {
        self.read(|txn| Ok(txn.open_table(COUNTERS)?.get(VERSION_BASE)?.map(|g| g.value())))
    }
}

/// What a swap did to the files.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// Where the replaced live store is kept.
    pub retired: PathBuf,
    /// Older retired stores removed.
    pub removed: Vec<PathBuf>,
}

/// Makes the version at `version` the live store at `live`.
///
/// Invariant: the live path names a whole store at every instant. The
/// replaced store is first given a second name (a hard link, atomic), then
/// the version is renamed over the live path (atomic); a crash between the
/// two leaves the old store live, with a retired name as well. Processes
/// that opened the old store keep reading it until they reopen.
pub fn promote(live: &Path, version: &Path, live_commit: u64) -> Result<Promotion, StoreError> {
    let dir = versions_dir(live);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let retired = dir.join(format!("{RETIRED}{stamp:020}-{live_commit}.redb"));
    std::fs::hard_link(live, &retired).map_err(io(&retired))?;
    std::fs::rename(version, live).map_err(io(live))?;
    // Newest first: names sort by the time they were retired.
    let mut old: Vec<PathBuf> = list(live)?
        .into_iter()
        .filter(|name| name.starts_with(RETIRED))
        .map(|name| dir.join(format!("{name}.redb")))
        .collect();
    old.sort();
    old.reverse();
    let mut removed = Vec::new();
    for path in old
        .into_iter()
        .filter(|p| *p != retired)
        .skip(RETIRED_KEPT.saturating_sub(1))
    {
        std::fs::remove_file(&path).map_err(io(&path))?;
        removed.push(path);
    }
    Ok(Promotion { retired, removed })
}

/// Undoes [`promote`] when the swapped-in store cannot be opened: the
/// retired store becomes live again.
pub fn demote(live: &Path, promotion: &Promotion) -> Result<(), StoreError> {
    std::fs::rename(&promotion.retired, live).map_err(io(live))
}
