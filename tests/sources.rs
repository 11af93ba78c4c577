//! Sources from the user's stack, against the real thing: Delta Lake tables
//! written by PyPI's `deltalake` (the `sources` tier).
//!
//! The yardstick is the same rows from a Parquet file: a store loaded from
//! the table must have the content digest (`skewless verify`) of a store
//! loaded from the file.

use std::path::Path;
use std::process::Command;

use arrow_array::RecordBatch;
use skewless_runtime::samples;
use skewless_testkit::services::{Postgres, free_port};
use skewless_testkit::tier::Tier;
use skewless_testkit::{TempRepo, driver_repo_reading, next_hour};

/// Runs `script` with python3 (deltalake, pyarrow), returning its stdout.
fn python(script: &str) -> String {
    let out = Command::new("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Appends the rows of `parquet` to the Delta table at `table` (made by
/// the first call), as a new version; extra `write_deltalake` arguments
/// in `args`.
fn append(table: &Path, parquet: &Path, args: &str) {
    python(&format!(
        "import pyarrow.parquet as pq\nfrom deltalake import write_deltalake\n\
         write_deltalake({table:?}, pq.read_table({parquet:?}), mode='append'{args})",
        table = table.display().to_string(),
        parquet = parquet.display().to_string(),
    ));
}

/// `skewless verify`'s content digest of `repo`'s store.
fn digest(repo: &TempRepo) -> String {
    let out = repo.ok(&["verify", "--samples", "20"]);
    out.lines()
        .find(|l| l.contains("content digest"))
        .unwrap_or_else(|| panic!("no digest line:\n{out}"))
        .split("content digest")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Rows written, from `backfill`'s "VIEW: N rows in ..." line.
fn rows_written(stderr: &str) -> u64 {
    stderr
        .split("driver_hourly_stats: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rows line:\n{stderr}"))
}

fn backfill(repo: &TempRepo, args: &[&str]) -> String {
    let out = repo.run(&[&["backfill"], args].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// A repo over the Parquet file `data`, applied and backfilled: the yardstick.
fn parquet_store(batch: &RecordBatch) -> TempRepo {
    let repo = driver_repo_reading("type = \"file\"\npath = \"data/rows.parquet\"\n");
    samples::write_parquet(&repo.path().join("data/rows.parquet"), batch).unwrap();
    repo.ok(&["apply"]);
    backfill(&repo, &[]);
    repo
}

#[test]
fn a_delta_table_loads_as_its_parquet_does_travels_in_time_and_loads_new_versions_only() {
    if !Tier::Sources.enter() {
        return;
    }
    let all = samples::driver_stats(40, 48, next_hour(), 11);
    let half = all.num_rows() / 2;
    let (first, second) = (all.slice(0, half), all.slice(half, all.num_rows() - half));
    let files = tempfile::tempdir().unwrap();
    let part = |name: &str, batch: &RecordBatch| {
        let path = files.path().join(name);
        samples::write_parquet(&path, batch).unwrap();
        path
    };
    let (first_file, second_file) = (part("first.parquet", &first), part("second.parquet", &second));

    // Version 0: the first half; version 1 appends the second.
    let repo = driver_repo_reading("type = \"delta\"\npath = \"data/stats\"\n");
    let table = repo.path().join("data/stats");
    append(&table, &first_file, "");
    repo.ok(&["apply"]);
    let stderr = backfill(&repo, &[]);
    assert_eq!(rows_written(&stderr), half as u64, "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = skewless_runtime::time::format_timestamp(skewless_runtime::time::now_micros());
    std::thread::sleep(std::time::Duration::from_millis(20));
    append(&table, &second_file, "");

    // An incremental load reads version 1's file only, and the store then
    // holds what the whole Parquet file gives.
    let stderr = backfill(&repo, &["--incremental"]);
    assert_eq!(rows_written(&stderr), (all.num_rows() - half) as u64, "{stderr}");
    assert!(stderr.contains("(table version 1)"), "{stderr}");
    let whole = parquet_store(&all);
    assert_eq!(digest(&repo), digest(&whole), "Delta and Parquet stores differ");
    let stderr = backfill(&repo, &["--incremental"]);
    assert_eq!(rows_written(&stderr), 0, "nothing new: {stderr}");

    // A full backfill of the table gives the same store from scratch.
    let fresh = driver_repo_reading(&format!("type = \"delta\"\npath = {:?}\n", table.display().to_string()));
    fresh.ok(&["apply"]);
    assert_eq!(rows_written(&backfill(&fresh, &[])), all.num_rows() as u64);
    assert_eq!(digest(&fresh), digest(&whole));

    // Time travel: version 0, and the version as of a time between the
    // two commits, are the first half.
    let first_half = parquet_store(&first);
    for pin in ["version = 0".to_string(), format!("timestamp = {between:?}")] {
        let pinned = driver_repo_reading(&format!(
            "type = \"delta\"\npath = {:?}\n{pin}\n",
            table.display().to_string()
        ));
        pinned.ok(&["apply"]);
        assert_eq!(rows_written(&backfill(&pinned, &[])), half as u64, "{pin}");
        assert_eq!(digest(&pinned), digest(&first_half), "{pin}");
        assert!(
            pinned.ok(&["describe", "driver_stats_source"]).contains("version"),
            "{pin}"
        );
    }

    // A delete rewrites files: an incremental load cannot undo it and
    // says what to run; nothing stored changes.
    let before = digest(&repo);
    python(&format!(
        "from deltalake import DeltaTable\nDeltaTable({:?}).delete('driver_id = 1001')",
        table.display().to_string()
    ));
    let refused = repo.fails(&["backfill", "--incremental"]);
    assert!(
        refused.contains("version 2 (DELETE) removed rows") && refused.contains("full backfill"),
        "{refused}"
    );
    assert_eq!(digest(&repo), before, "a refused load changed the store");
}

#[test]
fn a_partitioned_delta_table_read_from_its_checkpoint_gives_each_row_its_partition_value() {
    if !Tier::Sources.enter() {
        return;
    }
    let all = samples::driver_stats(12, 24, next_hour(), 5);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("all.parquet");
    samples::write_parquet(&file, &all).unwrap();
    let half = all.num_rows() / 2;
    let (first, second) = (files.path().join("first.parquet"), files.path().join("second.parquet"));
    samples::write_parquet(&first, &all.slice(0, half)).unwrap();
    samples::write_parquet(&second, &all.slice(half, all.num_rows() - half)).unwrap();
    let repo = driver_repo_reading("type = \"delta\"\npath = \"data/stats\"\n");
    let table = repo.path().join("data/stats");
    // driver_id is in the folder names, not in the files. The table is read
    // from its checkpoint alone: the commits it covers are cleaned up.
    append(&table, &first, ", partition_by=['driver_id']");
    append(&table, &second, ", partition_by=['driver_id']");
    python(&format!(
        "from deltalake import DeltaTable\nDeltaTable({:?}).create_checkpoint()",
        table.display().to_string()
    ));
    for version in [0, 1] {
        std::fs::remove_file(table.join(format!("_delta_log/{version:020}.json"))).unwrap();
    }
    let listed: Vec<_> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        listed.iter().any(|n| n.to_string_lossy().starts_with("driver_id=")),
        "{listed:?}"
    );
    repo.ok(&["apply"]);
    assert_eq!(rows_written(&backfill(&repo, &[])), all.num_rows() as u64);
    assert_eq!(digest(&repo), digest(&parquet_store(&all)));
}

#[test]
fn delta_sources_that_cannot_be_read_are_refused_at_apply_naming_the_table() {
    if !Tier::Sources.enter() {
        return;
    }
    let all = samples::driver_stats(4, 4, next_hour(), 3);
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("all.parquet");
    samples::write_parquet(&file, &all).unwrap();
    let table = files.path().join("stats");
    append(&table, &file, "");
    let path = format!("{:?}", table.display().to_string());
    // A table without a column the view's transform reads.
    let thin = files.path().join("thin");
    python(&format!(
        "import pyarrow.parquet as pq\nfrom deltalake import write_deltalake\n\
         write_deltalake({:?}, pq.read_table({:?}).drop_columns(['conv_rate']))",
        thin.display().to_string(),
        file.display().to_string()
    ));
    for (source, expected) in [
        (
            format!("type = \"delta\"\npath = {path}\nversion = 9\n"),
            "has no version 9: its newest is 0",
        ),
        (
            format!("type = \"delta\"\npath = {path}\ntimestamp = \"2001-01-01\"\n"),
            "has no version as of 2001-01-01",
        ),
        (
            format!("type = \"delta\"\npath = {:?}\n", thin.display().to_string()),
            "has no column `conv_rate` (float32)",
        ),
        (
            format!("type = \"delta\"\npath = {:?}\n", files.path().display().to_string()),
            "is not a Delta table",
        ),
        (
            format!("type = \"delta\"\npath = {path}\nversion = 0\ntimestamp = \"2001-01-01\"\n"),
            "give `version` or `timestamp`, not both",
        ),
        (
            "type = \"file\"\npath = \"data/stats\"\n".to_string(),
            "a Delta table is `type = \"delta\"`",
        ),
    ] {
        let repo = driver_repo_reading(&source);
        let error = repo.fails(&["apply"]);
        assert!(error.contains(expected), "{source}\n{error}");
        if !expected.contains("not both") && !expected.contains("type =") {
            assert!(
                error.contains(&table.parent().unwrap().display().to_string()),
                "{error}"
            );
        }
    }
}

/// The driver_stats example over `table` of `postgres`, its URL in
/// `DRIVERS_DB` for every command.
fn postgres_repo(postgres: &Postgres, settings: &str) -> TempRepo {
    let mut repo = driver_repo_reading(&format!(
        "type = \"postgres\"\nconnection_env = \"DRIVERS_DB\"\n{settings}"
    ));
    repo.env.push(("DRIVERS_DB".into(), postgres.url()));
    repo
}

#[test]
fn a_postgres_table_loads_as_its_parquet_does_then_by_watermark() {
    if !Tier::Sources.enter() {
        return;
    }
    let postgres = Postgres::start();
    let all = samples::driver_stats(40, 48, next_hour(), 17);
    let half = all.num_rows() / 2;
    postgres.load("driver_stats", &all.slice(0, half));
    let repo = postgres_repo(&postgres, "table = \"driver_stats\"\nwatermark_column = \"loaded\"\n");
    repo.ok(&["apply"]);
    let stderr = backfill(&repo, &[]);
    assert_eq!(rows_written(&stderr), half as u64, "{stderr}");
    assert!(
        repo.ok(&["describe", "driver_stats_source"]).contains("$DRIVERS_DB"),
        "describe names the variable, never the URL"
    );

    // New rows: an incremental load reads those past the watermark only.
    postgres.load("driver_stats", &all.slice(half, all.num_rows() - half));
    let stderr = backfill(&repo, &["--incremental"]);
    assert_eq!(rows_written(&stderr), (all.num_rows() - half) as u64, "{stderr}");
    assert!(
        stderr.contains(&format!("(up to watermark {})", all.num_rows())),
        "{stderr}"
    );
    assert_eq!(rows_written(&backfill(&repo, &["--incremental"])), 0);
    assert_eq!(
        digest(&repo),
        digest(&parquet_store(&all)),
        "PostgreSQL and Parquet stores differ"
    );

    // A query reads as well as a table.
    let query = postgres_repo(
        &postgres,
        "query = \"SELECT driver_id, event_timestamp, created, conv_rate, acc_rate, avg_daily_trips FROM driver_stats\"\n",
    );
    query.ok(&["apply"]);
    assert_eq!(rows_written(&backfill(&query, &[])), all.num_rows() as u64);
    assert_eq!(digest(&query), digest(&repo));
}

#[test]
fn postgres_sources_that_cannot_be_read_are_refused_at_apply_naming_what_is_wrong() {
    if !Tier::Sources.enter() {
        return;
    }
    let postgres = Postgres::start();
    postgres.load("driver_stats", &samples::driver_stats(4, 4, next_hour(), 3));
    postgres.sql("CREATE TABLE thin AS SELECT driver_id, event_timestamp, created FROM driver_stats");
    for (settings, expected) in [
        (
            "table = \"nope\"\n",
            "cannot read table nope: relation \"nope\" does not exist",
        ),
        ("table = \"thin\"\n", "has no column `conv_rate` (float32)"),
        ("query = \"SELECT oops\"\n", "column \"oops\" does not exist"),
        (
            "table = \"a\"\nquery = \"SELECT 1\"\n",
            "give `table` or `query`, not both",
        ),
    ] {
        let repo = postgres_repo(&postgres, settings);
        let error = repo.fails(&["apply"]);
        assert!(error.contains(expected), "{settings}\n{error}");
    }

    // The variable unset, then pointing where nothing listens.
    let mut unset = postgres_repo(&postgres, "table = \"driver_stats\"\n");
    unset.env.clear();
    let error = unset.fails(&["apply"]);
    assert!(
        error.contains("environment variable DRIVERS_DB, which is not set"),
        "{error}"
    );
    let mut nowhere = postgres_repo(&postgres, "table = \"driver_stats\"\n");
    let closed = free_port();
    nowhere.env = vec![(
        "DRIVERS_DB".into(),
        format!("postgres://skewless@127.0.0.1:{closed}/postgres"),
    )];
    let error = nowhere.fails(&["apply"]);
    assert!(
        error.contains(&format!("cannot connect to 127.0.0.1:{closed} (from $DRIVERS_DB)"))
            && error.contains("driver_stats_source"),
        "{error}"
    );

    // A backfill that cannot reach the database stores nothing and loses
    // nothing already stored.
    let mut repo = postgres_repo(&postgres, "table = \"driver_stats\"\n");
    repo.ok(&["apply"]);
    backfill(&repo, &[]);
    let before = digest(&repo);
    let reachable = std::mem::replace(&mut repo.env, nowhere.env.clone());
    let error = repo.fails(&["backfill"]);
    assert!(
        error.contains(&format!("cannot connect to 127.0.0.1:{closed}")),
        "{error}"
    );
    repo.env = reachable;
    assert_eq!(digest(&repo), before);
}
