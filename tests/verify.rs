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
    for example in ["driver_stats", "fraud", "rides"] {
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
