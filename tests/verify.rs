//! `skewless verify`: zero differences on every example repo; a corrupted
//! stored value and a swapped component are reported.

use skewless_testkit as kit;

use kit::*;

/// Data up to the current hour: none of it in the future, where the server
/// (newest value) and a training row at "now" (no value from after now)
/// rightly differ.
fn backfilled(example: &str) -> TempRepo {
    let repo = TempRepo::with_data(example, next_hour() - 3_600_000_000);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

#[test]
fn every_example_repo_verifies_with_no_difference() {
    for example in skewless_runtime::samples::EXAMPLES {
        let repo = backfilled(example);
        let out = repo.run(&["verify", "--samples", "300"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{example}: {stderr}");
        assert!(stderr.contains("agree bit for bit"), "{example}: {stderr}");
    }
}

#[test]
fn verify_says_when_there_is_nothing_to_verify() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    assert!(repo.fails(&["verify"]).contains("run `skewless apply`"));
    repo.ok(&["apply"]);
    assert!(repo.fails(&["verify"]).contains("nothing to verify"));
}

#[test]
fn a_corrupted_stored_value_is_reported() {
    let repo = backfilled("driver_stats");
    flip_served_conv_rate(&repo, 1001);
    let stderr = repo.fails(&["verify", "--samples", "100000"]);
    assert!(
        stderr.contains("difference: `driver_hourly_stats:conv_rate` for 1001"),
        "{stderr}"
    );
    // The on-demand view computed from it differs too; nothing else does.
    assert!(
        stderr.contains("`transformed_conv_rate:conv_rate_plus_val1` for 1001"),
        "{stderr}"
    );
    assert!(stderr.contains("error: 3 differences"), "{stderr}");
}

#[test]
fn a_view_whose_component_was_swapped_for_another_build_is_reported_stale() {
    let repo = backfilled("driver_stats");
    // Another build of the same transform: the same code, one more custom section.
    swap_in_another_build(&repo, "driver_hourly_stats");

    let stderr = repo.fails(&["verify", "--samples", "50"]);
    assert!(
        stderr.contains("stale: view `driver_hourly_stats`: of 1000 entities' served values, 1000 by")
            && stderr.contains("of 720000 stored rows (training data), 720000 by"),
        "{stderr}"
    );
    assert!(stderr.contains("backfill --view driver_hourly_stats"), "{stderr}");
    // Rematerializing with the new build fixes it.
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo.ok(&["verify", "--samples", "50"]);
}

/// Rewrites the `aggregates` entry of the first key `pick` accepts
/// (`level` is the byte before the key's 8-byte bucket) with `change`.
fn tamper_aggregate(repo: &TempRepo, pick: impl Fn(u8) -> bool, change: impl Fn(&mut Vec<u8>)) {
    use redb::{ReadableDatabase, ReadableTable};
    let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("aggregates");
    let db = redb::Database::open(repo.store()).unwrap();
    let (key, mut value) = {
        let txn = db.begin_read().unwrap();
        let entries = txn.open_table(table).unwrap();
        let found = entries
            .iter()
            .unwrap()
            .map(|item| item.unwrap())
            .find(|(key, _)| pick(key.value()[key.value().len() - 9]))
            .expect("an entry of that level");
        (found.0.value().to_vec(), found.1.value().to_vec())
    };
    change(&mut value);
    let txn = db.begin_write().unwrap();
    txn.open_table(table)
        .unwrap()
        .insert(key.as_slice(), value.as_slice())
        .unwrap();
    txn.commit().unwrap();
}

/// The fraud example with its windowed view backfilled from a few
/// hundred events (so some hours and days keep tiles and others not).
fn windowed() -> TempRepo {
    let repo = TempRepo::new("fraud");
    skewless_runtime::samples::write_parquet(
        &repo.path().join("data/transactions.parquet"),
        &skewless_runtime::samples::card_transactions(20, 2_000, 30, next_hour() - 3_600_000_000, 5),
    )
    .unwrap();
    repo.ok(&["apply"]);
    repo.ok(&["backfill", "--view", "card_activity"]);
    repo
}

#[test]
fn a_tampered_aggregation_tile_or_day_entry_is_reported_with_its_view() {
    // A 30-day tile (level 2) that is not the merge of its days: its first
    // slot is a count, so the entry still decodes.
    let repo = windowed();
    repo.ok(&["verify", "--samples", "50"]);
    tamper_aggregate(&repo, |level| level == 2, |tile| tile[0] ^= 1);
    let said = repo.fails(&["verify", "--samples", "50"]);
    assert!(
        said.contains("card_activity") && said.contains("level 2 tile") && said.contains("differs from the merge"),
        "{said}"
    );

    // A day entry cut short: every read of that card says which view's
    // stored data does not decode, rather than answering from it.
    let repo = windowed();
    tamper_aggregate(&repo, |level| level == 0, |entry| entry.truncate(entry.len() - 3));
    let said = repo.fails(&["verify", "--samples", "50"]);
    assert!(said.contains("view `card_activity`"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}
