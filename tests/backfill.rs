//! `skewless backfill` end to end on real Parquet and a real redb file:
//! idempotent, crash-safe under SIGKILL, and clear about bad input without
//! losing what is stored.

use skewless_testkit as kit;

use std::process::{Command, Stdio};
use std::time::Duration;

use kit::*;
use skewless_runtime::Store;

fn dump(repo: &TempRepo) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    Store::open_existing(&repo.store()).unwrap().dump().unwrap()
}

#[test]
fn backfill_stores_every_row_and_twice_gives_the_same_store() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    let out = repo.run(&["backfill"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("driver_hourly_stats: 720000 rows"), "{stderr}");
    let first = dump(&repo);
    let (history, latest) = Store::open_existing(&repo.store()).unwrap().counts().unwrap();
    // 1,000 drivers x 30 days of hourly rows, one block per driver per day; one latest row per driver.
    assert_eq!((history, latest), (30_000, 1_000));
    repo.ok(&["backfill"]);
    assert!(first == dump(&repo), "a second backfill changed the store");
}

#[test]
fn start_and_end_select_a_time_range() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    let out = repo.run(&["backfill", "--start", "2025-12-31", "--end", "2025-12-31T12:00:00Z"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("12000 rows") && stderr.contains("708000 rows skipped"),
        "{stderr}"
    );
}

#[test]
fn a_backfill_killed_mid_run_then_rerun_equals_an_uninterrupted_one() {
    let reference = TempRepo::with_data("driver_stats", FIXED_END);
    reference.ok(&["apply"]);
    reference.ok(&["backfill"]);
    let expected = dump(&reference);

    let mut killed_mid_run = false;
    for delay_ms in [250u64, 120, 500, 60] {
        let repo = TempRepo::with_data("driver_stats", FIXED_END);
        repo.ok(&["apply"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_skewless"))
            .args([
                "--repo",
                repo.path().to_str().unwrap(),
                "backfill",
                "--rows-per-commit",
                "20000",
            ])
            .env(
                "SKEWLESS_CACHE_DIR",
                std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compile-cache"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What survived is consistent (opens and reads), and a rerun completes it.
        let partial = dump(&repo);
        if running && partial.len() < expected.len() {
            killed_mid_run = true;
        }
        repo.ok(&["backfill"]);
        assert!(
            dump(&repo) == expected,
            "rerun after SIGKILL at {delay_ms} ms differs from an uninterrupted backfill"
        );
        if killed_mid_run {
            break;
        }
    }
    assert!(
        killed_mid_run,
        "the backfill always finished before the kill; the test did not interrupt it"
    );
}

#[test]
fn a_corrupt_parquet_file_is_named_and_stored_values_survive() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let before = dump(&repo);
    let data = repo.path().join("data/driver_stats.parquet");
    let bytes = std::fs::read(&data).unwrap();

    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let stderr = repo.fails(&["backfill"]);
    assert!(
        stderr.contains("driver_stats.parquet") && stderr.contains("not a readable Parquet file"),
        "{stderr}"
    );

    std::fs::write(&data, b"driver_id,event_timestamp\n1,2\n").unwrap();
    let stderr = repo.fails(&["backfill"]);
    assert!(
        stderr.contains("error: view `driver_hourly_stats`") && stderr.contains("driver_stats.parquet"),
        "{stderr}"
    );

    let mut damaged = bytes.clone();
    let middle = damaged.len() / 3;
    damaged[middle..middle + 4096].fill(0xAB);
    std::fs::write(&data, &damaged).unwrap();
    let out = repo.run(&["backfill"]);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("driver_stats.parquet"), "{stderr}");
    }
    std::fs::write(&data, &bytes).unwrap();
    repo.ok(&["backfill"]);
    assert!(dump(&repo) == before, "stored values changed after failed backfills");
}

#[test]
fn a_source_with_the_wrong_column_type_is_refused_at_apply() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    let text = std::fs::read_to_string(repo.path().join("skewless.toml")).unwrap();
    // Point the view at a file whose conv_rate is float64, not the float32 the transform reads.
    let batch = skewless_runtime::samples::rides(10, 100, FIXED_END, 1);
    skewless_runtime::samples::write_parquet(&repo.path().join("data/other.parquet"), &batch).unwrap();
    std::fs::write(
        repo.path().join("skewless.toml"),
        text.replace("data/driver_stats.parquet", "data/other.parquet"),
    )
    .unwrap();
    let stderr = repo.fails(&["apply"]);
    assert!(
        stderr.contains("skewless.toml:") && stderr.contains("views.driver_hourly_stats"),
        "{stderr}"
    );
    assert!(stderr.contains("no column `driver_id`"), "{stderr}");
}

#[test]
fn every_example_repo_applies_and_backfills() {
    for (example, view, rows) in [
        ("fraud", "transaction_features", "200000 rows"),
        ("rides", "ride_geometry", "200000 rows"),
    ] {
        let repo = TempRepo::with_data(example, FIXED_END);
        repo.ok(&["apply"]);
        let out = repo.run(&["backfill"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("{view}: {rows}")), "{stderr}");
        if example == "fraud" {
            assert!(
                stderr.contains("rows failed in the transform") && stderr.contains("transactions.parquet: data row"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_csv_source_gives_the_same_store_as_parquet_and_bad_lines_are_named() {
    let parquet = TempRepo::with_data("driver_stats", FIXED_END);
    parquet.ok(&["apply"]);
    parquet.ok(&["backfill"]);

    let csv = TempRepo::new("driver_stats");
    let batch = skewless_runtime::samples::driver_stats(1_000, 720, FIXED_END, 42);
    // Written as naive UTC times ("2025-12-01T00:00:00"), as many CSV exports are.
    let naive = |i: usize| -> arrow_array::ArrayRef {
        let ts = batch
            .column(i)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            .unwrap();
        std::sync::Arc::new(ts.clone().with_timezone_opt(None::<String>))
    };
    let mut columns = batch.columns().to_vec();
    columns[1] = naive(1);
    columns[2] = naive(2);
    let batch =
        arrow_array::RecordBatch::try_from_iter(batch.schema().fields().iter().map(|f| f.name().clone()).zip(columns))
            .unwrap();
    std::fs::create_dir_all(csv.path().join("data")).unwrap();
    let file = std::fs::File::create(csv.path().join("data/driver_stats.csv")).unwrap();
    let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(file);
    writer.write(&batch).unwrap();
    drop(writer);
    let text = std::fs::read_to_string(csv.path().join("skewless.toml")).unwrap();
    std::fs::write(
        csv.path().join("skewless.toml"),
        text.replace("driver_stats.parquet", "driver_stats.csv"),
    )
    .unwrap();
    csv.ok(&["apply"]);
    csv.ok(&["backfill"]);
    assert!(
        dump(&csv) == dump(&parquet),
        "CSV and Parquet sources of the same rows stored different values"
    );

    // A malformed value: the error names the file and the line.
    let path = csv.path().join("data/driver_stats.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let rest = lines[5].split_once(',').unwrap().1.to_string();
    lines[5] = format!("ten-oh-one,{rest}");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let stderr = csv.fails(&["backfill"]);
    assert!(
        stderr.contains("driver_stats.csv") && stderr.contains("ten-oh-one") && stderr.contains("line"),
        "{stderr}"
    );
}

#[test]
fn a_transform_that_traps_mid_backfill_is_named_and_stored_values_survive() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};

    let repo = TempRepo::from_config(&format!(
        "project = \"t\"\n[entities.e]\njoin_keys = {{ id = \"int64\" }}\n[sources.s]\ntype = \"file\"\npath = \"data/s.parquet\"\n\
         [views.doubled]\nentities = [\"e\"]\nsource = \"s\"\ntransform = \"{}\"\n",
        test_components().join("trap.wasm").display()
    ));
    let write = |xs: Vec<i64>| {
        let n = xs.len() as i64;
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef),
            (
                "event_timestamp",
                Arc::new(TimestampMicrosecondArray::from_iter_values(0..n).with_timezone("UTC")) as ArrayRef,
            ),
            ("x", Arc::new(Int64Array::from(xs)) as ArrayRef),
        ])
        .unwrap();
        skewless_runtime::samples::write_parquet(&repo.path().join("data/s.parquet"), &batch).unwrap();
    };
    write((0..1_000).map(|i| i % 12).collect());
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let before = dump(&repo);
    assert!(!before.is_empty());

    write((0..1_000).map(|i| if i == 700 { 13 } else { i % 12 + 100 }).collect());
    let stderr = repo.fails(&["backfill"]);
    assert!(
        stderr.contains("view `doubled`: transform trapped") && stderr.contains("unlucky value 13 at row 700"),
        "{stderr}"
    );
    assert!(before == dump(&repo), "a failed backfill changed stored values");
}
