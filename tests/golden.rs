//! Golden output: the text users read from `ls`, `describe`, `apply` (the
//! plan), `verify`, `stats`, `drift` and the main error messages, each held
//! against a file in `tests/snapshots/` (insta). A change of wording fails
//! with a readable diff; after review, write the new text with
//!
//!   INSTA_UPDATE=always cargo test --release --test golden
//!
//! (or `cargo insta review`). The repos use fixed data (`FIXED_END`), and
//! what varies between machines and runs (paths, timings, digests of
//! components built elsewhere) is replaced by placeholders first.

use skewless_testkit as kit;

use kit::golden::transcript;
use kit::{FIXED_END, TempRepo};

/// Asserts `text` equals the snapshot `name`, with component and content
/// digests as `<hex>`: components built on another machine, from another
/// folder, have other digests.
macro_rules! golden {
    ($name:expr, $text:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"sha256:[0-9a-f]{8,64}", "sha256:<hex>");
        settings.add_filter(r"(content digest\s+)[0-9a-f]{16,64}", "$1<hex>");
        settings.add_filter(r"(\d+\.\d+\.\d+ )[0-9a-f]{8,64}\b", "$1<hex>");
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!($name, $text));
    }};
}

/// driver_stats with its sample data ending at `FIXED_END`, applied and backfilled.
fn backfilled() -> TempRepo {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

#[test]
fn the_plan_of_a_first_apply_and_of_a_second() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    golden!("apply_dry_run", transcript(&repo, &["apply", "--dry-run"]));
    repo.ok(&["apply"]);
    golden!("apply_unchanged", transcript(&repo, &["apply"]));
}

#[test]
fn the_registry_as_ls_and_describe_print_it() {
    let repo = backfilled();
    golden!("ls", transcript(&repo, &["ls"]));
    for name in [
        "driver",
        "driver_stats_source",
        "driver_hourly_stats",
        "driver_activity",
    ] {
        golden!(format!("describe_{name}"), transcript(&repo, &["describe", name]));
    }
}

#[test]
fn the_verify_report() {
    // Data ending now: values within their TTL are compared, not only statuses.
    let repo = kit::fresh_driver_repo();
    golden!(
        "verify",
        transcript(&repo, &["verify", "--samples", "50", "--seed", "7"])
    );
    kit::flip_served_conv_rate(&repo, 1001);
    golden!(
        "verify_corrupted",
        transcript(&repo, &["verify", "--samples", "100000", "--seed", "7"])
    );
}

#[test]
fn the_statistics_of_a_view_and_of_one_feature() {
    let repo = backfilled();
    golden!("stats_view", transcript(&repo, &["stats", "driver_hourly_stats"]));
    golden!(
        "stats_feature",
        transcript(&repo, &["stats", "driver_hourly_stats:conv_rate"])
    );
    golden!(
        "stats_range",
        transcript(
            &repo,
            &[
                "stats",
                "driver_hourly_stats:avg_daily_trips",
                "--from",
                "2025-12-20",
                "--to",
                "2025-12-25"
            ]
        )
    );
}

#[test]
fn the_drift_report_of_stored_values_against_a_training_set() {
    let repo = backfilled();
    // A training set from the first half of the data, compared with the last days stored.
    let spine = repo.path().join("spine.csv");
    let mut text = String::from("driver_id,event_timestamp\n");
    for driver in 1001..1201 {
        text.push_str(&format!("{driver},2025-12-10T00:00:00Z\n"));
    }
    std::fs::write(&spine, text).unwrap();
    let training = repo.path().join("training.parquet");
    repo.ok(&kit::dataset_args(&spine, "driver_hourly_stats", &training));
    golden!(
        "drift_stored",
        transcript(
            &repo,
            &[
                "drift",
                "--baseline",
                training.to_str().unwrap(),
                "--from",
                "2025-12-28"
            ]
        )
    );
}

#[test]
fn the_main_error_messages() {
    let repo = backfilled();
    let cases: [(&str, &[&str]); 8] = [
        ("error_describe_unknown", &["describe", "nope"]),
        (
            "error_get_unknown_view",
            &["get", "--entity", "driver_id=1001", "--features", "nope:x"],
        ),
        (
            "error_get_bad_entity",
            &["get", "--entity", "driver_id=abc", "--features", "driver_hourly_stats"],
        ),
        ("error_stats_unknown_view", &["stats", "nope"]),
        ("error_stats_on_demand", &["stats", "transformed_conv_rate"]),
        ("error_stats_unknown_feature", &["stats", "driver_hourly_stats:nope"]),
        (
            "error_dataset_nothing_to_join",
            &["dataset", "--spine", "s.csv", "--out", "o.parquet"],
        ),
        ("error_backfill_unknown_view", &["backfill", "--view", "nope"]),
    ];
    for (name, args) in cases {
        golden!(name, transcript(&repo, args));
    }

    // A config with a typo, and a repo that is not one.
    let broken = TempRepo::from_config("project = \"p\"\n\n[entities.rider]\njoin_key = { rider_id = \"int64\" }\n");
    golden!("error_config_typo", transcript(&broken, &["apply"]));
    let empty = TempRepo::from_config("");
    std::fs::remove_file(empty.path().join("skewless.toml")).unwrap();
    golden!("error_no_repo", transcript(&empty, &["ls"]));
    let fresh = TempRepo::with_data("driver_stats", FIXED_END);
    golden!("error_not_applied", transcript(&fresh, &["verify"]));
}
