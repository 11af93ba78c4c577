//! Backfill rows/s end to end on driver_stats, 1,000 drivers x 720 hours
//! (720k rows): Parquet read, the Wasm transform, redb write and commit.
//! Beside it, in the same run, a bare redb insert of the same rows (one
//! entry per row, 20-byte values) in key order and in arrival order, the
//! floor a row-per-entry layout would start from. And the cost of the
//! feature statistics kept at every write: the same backfill with
//! `[monitoring] statistics` on and off, run after run.
//!
//! Run: cargo bench --bench backfill

use skewless_testkit as kit;

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use indicatif::ProgressBar;
use redb::{Database, TableDefinition};
use skewless_runtime::backfill::{BackfillOptions, backfill};
use skewless_runtime::{Catalog, Repo, Store, apply, samples};

const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn bare_redb(keys: &[[u8; 16]], order: &[usize]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("bare.redb")).unwrap();
    let value = [7u8; 20];
    let started = Instant::now();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ROWS).unwrap();
        for &i in order {
            table.insert(&keys[i][..], &value[..]).unwrap();
        }
    }
    txn.commit().unwrap();
    started.elapsed()
}

fn main() {
    let runs = 5;
    let runtime = kit::runtime();
    let data = samples::driver_stats(1_000, 720, kit::FIXED_END, 42);
    let rows = data.num_rows() as f64;

    let mut ours = Vec::new();
    let mut without_statistics = Vec::new();
    for _ in 0..runs {
        for statistics in [true, false] {
            let repo = kit::TempRepo::with_data("driver_stats", kit::FIXED_END);
            let catalog = Catalog::load(Repo::open(repo.path()).unwrap(), &runtime).unwrap();
            let mut store = Store::open(&catalog.repo.store_path).unwrap();
            store.keep_statistics(statistics);
            apply::apply(apply::plan(&catalog, &store, &Default::default()).unwrap(), &store).unwrap();
            let started = Instant::now();
            let summary = backfill(&catalog, &store, &BackfillOptions::default(), &ProgressBar::hidden()).unwrap();
            let times = if statistics { &mut ours } else { &mut without_statistics };
            times.push(started.elapsed());
            assert_eq!(summary[0].rows_written, 720_000);
        }
    }
    let pairs: Vec<f64> = ours
        .iter()
        .zip(&without_statistics)
        .map(|(on, off)| on.as_secs_f64() / off.as_secs_f64())
        .collect();

    // Bare redb: key = driver_id | event time, in arrival order (by hour) and in key order.
    let ids = data.column(0).as_primitive::<Int64Type>();
    let times = data.column(1).as_primitive::<TimestampMicrosecondType>();
    let keys: Vec<[u8; 16]> = (0..data.num_rows())
        .map(|r| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&ids.value(r).to_be_bytes());
            k[8..].copy_from_slice(&times.value(r).to_be_bytes());
            k
        })
        .collect();
    let arrival: Vec<usize> = (0..keys.len()).collect();
    let mut sorted = arrival.clone();
    sorted.sort_by_key(|i| keys[*i]);
    let key_order = median((0..runs).map(|_| bare_redb(&keys, &sorted)).collect());
    let arrival_order = median((0..runs).map(|_| bare_redb(&keys, &arrival)).collect());

    let ours = median(ours);
    let without_statistics = median(without_statistics);
    let mut pairs = pairs;
    pairs.sort_by(f64::total_cmp);
    println!("| workload (720,000 rows, median of {runs}) | time | rows/s |");
    println!("|---|---:|---:|");
    for (name, time) in [
        ("skewless backfill: Parquet -> Wasm transform -> redb, committed", ours),
        ("the same, feature statistics off", without_statistics),
        ("bare redb insert, one entry per row, key order, one txn", key_order),
        (
            "bare redb insert, one entry per row, arrival order, one txn",
            arrival_order,
        ),
    ] {
        println!(
            "| {name} | {:.3} s | {:.2}M |",
            time.as_secs_f64(),
            rows / time.as_secs_f64() / 1e6
        );
    }
    println!(
        "\nStatistics cost: backfill time with them / without, run by run: median {:.3}x [{:.3}-{:.3}]",
        pairs[pairs.len() / 2],
        pairs[0],
        pairs[pairs.len() - 1]
    );
}
