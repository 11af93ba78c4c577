//! Malformed feature repos: every error names the file, the line and the key.

use skewless_testkit as kit;

use kit::*;

/// Writes `text` as a repo's skewless.toml and returns `apply`'s error output.
fn apply_error(text: &str) -> String {
    let repo = TempRepo::new("driver_stats");
    let components = example_components();
    let text = text.replace("COMPONENTS", components.to_str().unwrap());
    std::fs::write(repo.path().join("skewless.toml"), text).unwrap();
    repo.fails(&["apply"])
}

const GOOD: &str = r#"project = "p"

[entities.driver]
join_keys = { driver_id = "int64" }

[sources.stats]
type = "file"
path = "data/driver_stats.parquet"

[sources.vals]
type = "request"
schema = { val_to_add = "int64" }

[views.hourly]
entities = ["driver"]
source = "stats"
transform = "COMPONENTS/driver_hourly_stats.wasm"
ttl = "1d"

[views.plus]
kind = "on_demand"
sources = ["hourly", "vals"]
transform = "COMPONENTS/transformed_conv_rate.wasm"
"#;

fn assert_located(stderr: &str, line: usize, words: &[&str]) {
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(&format!("skewless.toml:{line}:")),
        "expected line {line}: {stderr}"
    );
    for word in words {
        assert!(stderr.contains(word), "expected `{word}` in: {stderr}");
    }
}

#[test]
fn the_good_repo_applies() {
    let repo = TempRepo::with_data("driver_stats", FIXED_END);
    std::fs::write(
        repo.path().join("skewless.toml"),
        GOOD.replace("COMPONENTS", example_components().to_str().unwrap()),
    )
    .unwrap();
    let out = repo.run(&["apply"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("+ view hourly") && stdout.contains("+ view plus"),
        "{stdout}"
    );
}

#[test]
fn a_toml_syntax_error_gives_its_line() {
    let stderr = apply_error(&GOOD.replace(r#"ttl = "1d""#, r#"ttl = "1d"#));
    assert_located(&stderr, 18, &[]);
}

#[test]
fn a_misspelt_key_is_named() {
    let stderr = apply_error(&GOOD.replace("ttl =", "tll ="));
    assert_located(&stderr, 18, &["unknown field `tll`"]);
}

#[test]
fn an_unknown_entity_is_named_with_the_known_ones() {
    let stderr = apply_error(&GOOD.replace(r#"entities = ["driver"]"#, r#"entities = ["rider"]"#));
    assert_located(
        &stderr,
        15,
        &["views.hourly.entities", "unknown entity `rider`", "known: driver"],
    );
}

#[test]
fn an_unknown_source_is_named() {
    let stderr = apply_error(&GOOD.replace(r#"source = "stats""#, r#"source = "stat""#));
    assert_located(&stderr, 16, &["views.hourly.source", "unknown source `stat`"]);
}

#[test]
fn a_bad_ttl_is_named() {
    let stderr = apply_error(&GOOD.replace(r#"ttl = "1d""#, r#"ttl = "one fortnight""#));
    assert_located(&stderr, 18, &["views.hourly.ttl", "not a duration"]);
}

#[test]
fn an_unknown_type_is_named() {
    let stderr = apply_error(&GOOD.replace(r#"val_to_add = "int64""#, r#"val_to_add = "float128""#));
    assert_located(&stderr, 12, &["float128"]);
}

#[test]
fn an_unknown_source_type_is_named() {
    let stderr = apply_error(&GOOD.replace(r#"type = "request""#, r#"type = "kinesis""#));
    assert_located(&stderr, 11, &["sources.vals.type", "unknown source type `kinesis`"]);
}

#[test]
fn a_declared_feature_type_that_differs_from_describe_is_refused() {
    let text = GOOD.replace(r#"ttl = "1d""#, "ttl = \"1d\"\nfeatures = { conv_rate = \"float64\" }");
    let stderr = apply_error(&text);
    assert_located(
        &stderr,
        14,
        &[
            "views.hourly.features",
            "`conv_rate` is declared float64 but the transform outputs float32",
        ],
    );
}

#[test]
fn an_on_demand_input_nobody_provides_is_refused() {
    let stderr = apply_error(&GOOD.replace(r#"sources = ["hourly", "vals"]"#, r#"sources = ["hourly"]"#));
    assert_located(
        &stderr,
        20,
        &[
            "views.plus.sources",
            "transform input `val_to_add` (int64) is not a feature or request field",
        ],
    );
}

#[test]
fn a_missing_component_says_how_to_build_it() {
    let stderr = apply_error(&GOOD.replace("driver_hourly_stats.wasm", "nothing.wasm"));
    assert_located(
        &stderr,
        14,
        &["views.hourly.transform", "nothing.wasm", "skewless build"],
    );
}

#[test]
fn a_missing_config_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let out = skewless(&["--repo", dir.path().to_str().unwrap(), "apply"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("skewless.toml") && stderr.contains("--repo"),
        "{stderr}"
    );
}
