//! Transforms in Python, JavaScript and C give the same bits as the Rust
//! ones: run directly on one 10,000-row batch of edge cases (nulls, NaN with
//! payloads, negative zero, infinities, subnormals, extreme integers, unicode
//! and empty strings, times before 1970), and through backfill, `dataset` and
//! the server. Every component is built from `examples/transforms/` during the
//! test run, with the function `skewless build` calls; `skewless new` then
//! `skewless build` then `apply`/`backfill` is checked in each language too.

use kit::tier::Tier;
use skewless_testkit as kit;

use std::sync::Arc;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::{
    ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use kit::*;
use skewless_runtime::{Limits, Transform, samples};

const ROWS: usize = 10_000;
const HOUR: i64 = 3_600_000_000;

fn timestamps(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

/// Float32 edge cases by row, else random bits (about 1 in 256 a NaN with a payload).
fn conv_rate(row: usize, random: &mut impl FnMut(u64) -> u64) -> Option<f32> {
    Some(match row % 16 {
        0 => return None,
        1 => f32::NAN,
        2 => -0.0,
        3 => f32::INFINITY,
        4 => f32::NEG_INFINITY,
        5 => f32::MIN_POSITIVE / 3.0,
        6 => f32::MAX,
        7 => f32::from_bits(0x7fc0_1234),
        _ => f32::from_bits(random(1 << 32) as u32),
    })
}

/// Int64 edge cases by row, else random (some past 2^53, where float64 rounds).
fn val_to_add(row: usize, random: &mut impl FnMut(u64) -> u64) -> Option<i64> {
    Some(match row % 13 {
        0 => return None,
        1 => 0,
        2 => -1,
        3 => i64::MAX,
        4 => i64::MIN,
        5 => (1 << 53) + 1,
        6 => -(1 << 53) - 3,
        _ => random(2_000_000_000_000) as i64 - 1_000_000_000_000,
    })
}

/// Float64 amounts: edge cases by row, else cents up to 2,000 or random bits.
fn amount(row: usize, random: &mut impl FnMut(u64) -> u64) -> Option<f64> {
    Some(match row % 20 {
        0 => return None,
        1 => f64::NAN,
        2 => -0.0,
        3 => -1.5,
        4 => f64::INFINITY,
        5 => 1e-320,
        6 => 4.999_999_999_999_999,
        7 => 5.0,
        8 => 500.0,
        9 => f64::from_bits(random(u64::MAX)),
        _ => random(200_000) as f64 / 100.0,
    })
}

const CATEGORIES: [&str; 22] = [
    "grocery",
    "GROCERY",
    " travel\t",
    "\r\nfuel\n",
    "Restaurant",
    "electronics",
    "jewelry",
    "gift_cards",
    "Online_Gambling",
    "",
    "   ",
    "crypto_atm?",
    "\u{a0}fuel",
    "électronique",
    "ＥＬＥＣＴＲＯＮＩＣＳ",
    "日本のスーパー",
    "🚗 fuel",
    "gift_cards\u{200b}",
    "GİFT_CARDS",
    "straße",
    "e\u{301}lectronics",
    "travel",
];

/// The 10,000 card transactions every language runs: the fraud source,
/// ending at `end`, one row every 37 s, with 1 row in 50 dated before 1970.
fn transactions(end: i64) -> RecordBatch {
    let mut random = split_mix(7);
    let rows = 0..ROWS;
    let event: Vec<i64> = rows
        .clone()
        .map(|r| match r % 50 {
            49 => -(r as i64) * 86_400_000_001,
            _ => end - (ROWS - r) as i64 * 37_000_000,
        })
        .collect();
    RecordBatch::try_from_iter([
        (
            "card_id",
            Arc::new(StringArray::from_iter_values(rows.clone().map(|r| {
                // Unicode keys too.
                if r % 7 == 0 {
                    format!("carte-é-{}", r % 40)
                } else {
                    format!("card-{:04}", r % 300)
                }
            }))) as ArrayRef,
        ),
        ("event_timestamp", timestamps(event.iter().copied().map(Some))),
        ("created", timestamps(event.iter().map(|t| Some(t + 1_000_000)))),
        (
            "amount",
            Arc::new(Float64Array::from_iter(rows.clone().map(|r| amount(r, &mut random)))) as ArrayRef,
        ),
        (
            "merchant_category",
            Arc::new(StringArray::from_iter(rows.clone().map(|r| match r % 41 {
                0 => None,
                _ => Some(CATEGORIES[random(CATEGORIES.len() as u64) as usize]),
            }))) as ArrayRef,
        ),
        // The fraud repo's windowed view counts distinct merchants.
        (
            "merchant",
            Arc::new(StringArray::from_iter_values(rows.map(|r| format!("m-{}", r % 97)))) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// The 10,000 driver rows behind the on-demand view: one row per driver,
/// with float32 edge cases (NaN payloads included) as conv_rate.
fn driver_rows(end: i64) -> RecordBatch {
    let mut random = split_mix(11);
    let rows = 0..ROWS;
    let event: Vec<i64> = rows.clone().map(|r| end - HOUR - r as i64 * 1_000_000).collect();
    RecordBatch::try_from_iter([
        (
            "driver_id",
            Arc::new(Int64Array::from_iter_values(rows.clone().map(|r| 1000 + r as i64))) as ArrayRef,
        ),
        ("event_timestamp", timestamps(event.iter().copied().map(Some))),
        ("created", timestamps(event.iter().copied().map(Some))),
        (
            "conv_rate",
            Arc::new(Float32Array::from_iter(rows.clone().map(|r| conv_rate(r, &mut random)))) as ArrayRef,
        ),
        (
            "acc_rate",
            Arc::new(Float32Array::from_iter_values(rows.clone().map(|_| 0.5))) as ArrayRef,
        ),
        (
            "avg_daily_trips",
            Arc::new(Int64Array::from_iter_values(rows.map(|r| r as i64 % 30))) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// The on-demand view's input batch: the drivers' conv_rate and request values.
fn conv_rate_batch() -> RecordBatch {
    let drivers = driver_rows(FIXED_END);
    let mut random = split_mix(13);
    RecordBatch::try_from_iter([
        ("conv_rate", drivers.column_by_name("conv_rate").unwrap().clone()),
        (
            "val_to_add",
            Arc::new(Int64Array::from_iter((0..ROWS).map(|r| val_to_add(r, &mut random)))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn load(path: &std::path::Path, name: &str) -> Transform {
    runtime()
        .load(name, path, Limits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the Rust example and each other language's on `input`: same bits,
/// same row errors (rows and messages).
fn assert_every_language_matches_rust(name: &str, input: &RecordBatch) {
    let rust = example(&runtime(), name).run(input).expect("the Rust transform runs");
    for language in OTHER_LANGUAGES {
        let transform = load(&language_example(language, name), name);
        let output = transform
            .run(input)
            .unwrap_or_else(|e| panic!("{language}/{name}: {e}"));
        println!(
            "{language}/{name}: {} rows, {} row errors",
            output.batch.num_rows(),
            output.row_errors.len()
        );
        assert_bit_identical(&rust.batch, &output.batch);
        let errors = |o: &skewless_runtime::TransformOutput| -> Vec<(usize, String)> {
            o.row_errors.iter().map(|e| (e.row, e.message.clone())).collect()
        };
        assert_eq!(errors(&rust), errors(&output), "{language}/{name}: row errors differ");
    }
}

#[test]
fn every_language_gives_the_rust_bits_on_10k_edge_case_rows() {
    if !Tier::Languages.enter() {
        return;
    }
    let transactions = transactions(FIXED_END);
    let input = transactions.project(&[1, 3, 4]).unwrap();
    assert_every_language_matches_rust("fraud_features", &input);
    assert_every_language_matches_rust("transformed_conv_rate", &conv_rate_batch());

    // The batch does hold what it claims to test.
    let rust = example(&runtime(), "fraud_features").run(&input).unwrap();
    let log = rust
        .batch
        .column_by_name("amount_log")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>();
    assert!((0..ROWS).any(|r| log.is_valid(r) && log.value(r).to_bits() == (-0.0f64).to_bits()));
    assert!(rust.row_errors.iter().any(|e| e.message.contains("électronique")));
    assert!(
        rust.row_errors
            .iter()
            .any(|e| e.message.starts_with("amount must be a number >= 0; unknown"))
    );
    let hours = rust
        .batch
        .column_by_name("hour_of_day")
        .unwrap()
        .as_primitive::<arrow_array::types::Int64Type>();
    assert!(
        (0..ROWS)
            .filter(|r| r % 50 == 49)
            .all(|r| hours.is_null(r) || (0..24).contains(&hours.value(r)))
    );
}

#[test]
fn the_embedding_example_gives_the_rust_bits_in_every_language() {
    if !Tier::Languages.enter() {
        return;
    }
    // The products example's titles, and titles at the edges: null, empty,
    // no words, non-ASCII letters (separators, not words), digits, case.
    let products = samples::products(2_000, FIXED_END, 3);
    let mut titles: Vec<Option<String>> = (products.column_by_name("title").unwrap().as_string::<i32>())
        .iter()
        .map(|t| t.map(str::to_string))
        .collect();
    for edge in [
        None,
        Some(""),
        Some("  --  "),
        Some("Café crème brûlée"),
        Some("ÉTÉ"),
        Some("RED wool Sweater 42"),
        Some("a"),
        Some("x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1 x1"),
    ] {
        titles.push(edge.map(str::to_string));
    }
    let input = RecordBatch::try_from_iter([("title", Arc::new(StringArray::from(titles)) as ArrayRef)]).unwrap();
    assert_every_language_matches_rust("text_embedding", &input);
    // The batch holds what it claims: vectors, a null one for no words, lists.
    let rust = example(&runtime(), "text_embedding").run(&input).unwrap();
    let embedding = rust.batch.column_by_name("embedding").unwrap();
    let rows = input.num_rows();
    assert!(embedding.is_valid(0) && embedding.is_null(rows - 6) && embedding.is_null(rows - 8));
    let words = rust.batch.column_by_name("words").unwrap().as_list::<i32>();
    // Non-ASCII letters separate words: "Café crème brûlée" is caf, cr, me, br, l, e.
    assert_eq!(words.value(rows - 5).len(), 6, "{:?}", words.value(rows - 5));
}

/// The example repo `example` with the Rust `rust_component` swapped for
/// `component`, and `data` written as its Parquet source at `data_file`.
fn repo_running(
    example: &str,
    rust_component: &str,
    component: &std::path::Path,
    data_file: &str,
    data: &RecordBatch,
) -> TempRepo {
    let repo = TempRepo::new(example);
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let rust = example_components().join(format!("{rust_component}.wasm"));
    std::fs::write(
        &config,
        text.replace(rust.to_str().unwrap(), component.to_str().unwrap()),
    )
    .unwrap();
    samples::write_parquet(&repo.path().join(data_file), data).unwrap();
    repo
}

/// A fraud repo whose view runs `component`, over the 10k transactions.
fn fraud_repo(component: &std::path::Path, end: i64) -> TempRepo {
    repo_running(
        "fraud",
        "fraud_features",
        component,
        "data/transactions.parquet",
        &transactions(end),
    )
}

/// A driver_stats repo whose on-demand view runs `component`, over the 10k drivers.
fn driver_repo(component: &std::path::Path, end: i64) -> TempRepo {
    repo_running(
        "driver_stats",
        "transformed_conv_rate",
        component,
        "data/driver_stats.parquet",
        &driver_rows(end),
    )
}

/// What a repo answers: the `dataset` over `spine` (Parquet) and the server's
/// body for `request`, after apply and backfill.
fn answers(repo: &TempRepo, spine: &RecordBatch, features: &str, request: &str) -> (RecordBatch, String) {
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    let spine_path = repo.path().join("spine.parquet");
    samples::write_parquet(&spine_path, spine).unwrap();
    let out = repo.path().join("train.parquet");
    repo.ok(&kit::dataset_args(&spine_path, features, &out));
    let server = repo.serve(&[]);
    let (status, body) = server.post_text("/get-online-features", request);
    assert_eq!(status, 200, "{body}");
    (read_parquet(&out), body)
}

#[test]
fn every_language_gives_the_rust_bits_through_backfill_dataset_and_the_server() {
    if !Tier::Languages.enter() {
        return;
    }
    let end = next_hour();
    let batch = transactions(end);
    // Spine: every transaction's own card and time (so each row's own features, before-1970 rows included).
    let spine = batch.project(&[0, 1]).unwrap();
    let cards = batch.column(0).as_string::<i32>();
    let mut distinct: Vec<&str> = cards.iter().flatten().collect();
    distinct.sort();
    distinct.dedup();
    let request = serde_json::json!({
        "features": ["transaction_features:amount_log", "transaction_features:amount_bucket",
            "transaction_features:merchant_category_norm", "transaction_features:is_high_risk_merchant",
            "transaction_features:hour_of_day", "transaction_features:day_of_week", "transaction_features:is_night"],
        "entities": {"card_id": distinct},
    })
    .to_string();
    let fraud = "transaction_features";
    let rust = answers(
        &fraud_repo(&example_components().join("fraud_features.wasm"), end),
        &spine,
        fraud,
        &request,
    );
    assert!(
        rust.1.contains("PRESENT") && rust.1.contains("NULL_VALUE"),
        "{}",
        &rust.1[..400]
    );

    let drivers = driver_rows(end);
    let mut random = split_mix(13);
    let driver_spine = RecordBatch::try_from_iter([
        ("driver_id", drivers.column(0).clone()),
        ("event_timestamp", timestamps((0..ROWS).map(|_| Some(end)))),
        (
            "val_to_add",
            Arc::new(Int64Array::from_iter((0..ROWS).map(|r| val_to_add(r, &mut random)))) as ArrayRef,
        ),
    ])
    .unwrap();
    let values: Vec<i64> = driver_spine
        .column(2)
        .as_primitive::<arrow_array::types::Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(7))
        .collect();
    let driver_request = serde_json::json!({
        "features": ["transformed_conv_rate:conv_rate_plus_val1", "transformed_conv_rate:conv_rate_plus_val2"],
        "entities": {"driver_id": (1000..1000 + ROWS as i64).collect::<Vec<_>>(), "val_to_add": values},
    })
    .to_string();
    let odfv = "transformed_conv_rate";
    let rust_odfv = answers(
        &driver_repo(&example_components().join("transformed_conv_rate.wasm"), end),
        &driver_spine,
        odfv,
        &driver_request,
    );

    for language in OTHER_LANGUAGES {
        let (train, served) = answers(
            &fraud_repo(&language_example(language, "fraud_features"), end),
            &spine,
            fraud,
            &request,
        );
        assert_bit_identical(&rust.0, &train);
        assert!(rust.1 == served, "{language}: fraud_features served other values");
        let (train, served) = answers(
            &driver_repo(&language_example(language, "transformed_conv_rate"), end),
            &driver_spine,
            odfv,
            &driver_request,
        );
        assert_bit_identical(&rust_odfv.0, &train);
        assert!(
            rust_odfv.1 == served,
            "{language}: transformed_conv_rate served other values"
        );
    }
}

/// `skewless build` on a project made by `skewless new`; a JS project reuses
/// the examples' ComponentizeJS install instead of a second download.
fn build_project(language: &str, project: &std::path::Path) {
    if language == "js" {
        language_example("js", "transformed_conv_rate");
        std::os::unix::fs::symlink(
            root().join("examples/transforms/js/node_modules"),
            project.join("node_modules"),
        )
        .unwrap();
    }
    let build = skewless(&["build", project.to_str().unwrap()]);
    assert!(
        build.status.success(),
        "{language}: {}",
        String::from_utf8_lossy(&build.stderr)
    );
}

#[test]
fn skewless_new_then_build_then_apply_and_backfill_works_in_every_language() {
    if !Tier::Languages.enter() {
        return;
    }
    for language in ["rust", "python", "js", "c"] {
        let parent = tempfile::tempdir().unwrap();
        let project = parent.path().join(format!("trips_{language}"));
        let new = skewless(&["new", "--lang", language, project.to_str().unwrap()]);
        assert!(new.status.success(), "{}", String::from_utf8_lossy(&new.stderr));
        build_project(language, &project);
        let repo = ["--repo", project.to_str().unwrap()];
        for step in [&["apply"][..], &["backfill"][..]] {
            let out = skewless(&[&repo[..], step].concat());
            assert!(
                out.status.success(),
                "{language} {step:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if step == ["backfill"] {
                let said = String::from_utf8_lossy(&out.stderr);
                assert!(said.contains("duration_s must be > 0, got 0"), "{language}: {said}");
            }
        }
        let name = format!("trips_{language}");
        let get = skewless(
            &[
                &repo[..],
                &[
                    "get",
                    "--json",
                    "--entity",
                    "rider_id=7,8",
                    "--features",
                    &format!("{name}:speed_kmh"),
                ],
            ]
            .concat(),
        );
        assert!(
            get.status.success(),
            "{language}: {}",
            String::from_utf8_lossy(&get.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
        // Rider 7's newest trip: 3.2 km in 600 s; rider 8's failed in the transform.
        assert_eq!(
            answer["results"][1]["values"],
            serde_json::json!([3.2f64 / (600.0 / 3600.0), null]),
            "{language}: {answer}"
        );
        assert_eq!(
            answer["results"][1]["statuses"],
            serde_json::json!(["PRESENT", "NULL_VALUE"]),
            "{language}"
        );
    }
}

#[test]
fn a_missing_toolchain_or_a_non_project_is_named_with_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let out = skewless(&["build", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not a transform project") && said.contains("skewless new"),
        "{said}"
    );

    // Where a language's toolchain cannot be found, the error says what to install.
    for (language, hint) in [
        ("python", "pip install componentize-py=="),
        ("js", "install Node.js"),
        ("c", "apt install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc"),
    ] {
        let project = empty.path().join(format!("lonely_{language}"));
        assert!(
            skewless(&["new", "--lang", language, project.to_str().unwrap()])
                .status
                .success()
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skewless"))
            .args(["build", project.to_str().unwrap()])
            .env("PATH", "/nonexistent")
            .env_remove("SKEWLESS_CLANG")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("was not found") && said.contains(hint),
            "{language}: {said}"
        );
    }
    let project = empty.path().join("lonely_python");

    // Scaffolding refuses a name that cannot name a view, and a folder with files in it.
    let bad = skewless(&["new", "--lang", "c", empty.path().join("Bad-Name").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot name a transform"));
    let again = skewless(&["new", "--lang", "js", project.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

#[test]
fn a_bug_in_a_python_js_or_c_transform_fails_the_batch_with_what_and_where() {
    if !Tier::Languages.enter() {
        return;
    }
    // Each language's trip speed, edited so that a long trip hits a bug.
    let bugs = [
        (
            "python",
            "transform.py",
            "    return {\"speed_kmh\"",
            "    if distance_km > 10:\n        {}[\"missing\"]\n    return {\"speed_kmh\"",
            "KeyError: 'missing' (at ",
        ),
        (
            "js",
            "transform.js",
            "    return { speed_kmh",
            "    if (distance_km > 10) null.boom();\n    return { speed_kmh",
            "TypeError",
        ),
        (
            "c",
            "transform.c",
            "    sk_set_f64(out, SPEED_KMH",
            "    if (sk_f64(in, DISTANCE_KM, row) > 10) { sk_fail(out, \"long trip at row %zu\", row); return; }\n    sk_set_f64(out, SPEED_KMH",
            "long trip at row 0",
        ),
    ];
    for (language, file, anchor, buggy, expected) in bugs {
        let parent = tempfile::tempdir().unwrap();
        let project = parent.path().join(format!("buggy_{language}"));
        assert!(
            skewless(&["new", "--lang", language, project.to_str().unwrap()])
                .status
                .success()
        );
        let source = project.join(file);
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(text.contains(anchor), "{language}: the template changed");
        std::fs::write(&source, text.replacen(anchor, buggy, 1)).unwrap();
        build_project(language, &project);
        let repo = ["--repo", project.to_str().unwrap()];
        assert!(skewless(&[&repo[..], &["apply"]].concat()).status.success());
        let out = skewless(&[&repo[..], &["backfill"]].concat());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{language}: the backfill should fail: {said}");
        assert!(
            said.contains(&format!("buggy_{language}")) && said.contains(expected),
            "{language}: {said}"
        );
    }
}

#[test]
fn a_python_aggregator_gives_the_rust_bits_and_keeps_the_fold_laws() {
    if !Tier::Languages.enter() {
        return;
    }
    use skewless_runtime::Determinism;
    use skewless_runtime::format::value::Value;
    let runtime = runtime();
    let load = |path: &std::path::Path| {
        runtime
            .load_aggregator("approx_median", path, Limits::default(), Determinism::Default)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let rust = load(&example_components().join("approx_median.wasm"));
    let python = load(&language_example("python", "approx_median"));
    assert_eq!(rust.description(), python.description());

    // Edge-case amounts (NaN, infinities, subnormals, negative zero...) in 97 groups.
    let mut random = split_mix(21);
    let values: Vec<Value> = (0..ROWS)
        .filter_map(|row| amount(row, &mut random))
        .map(Value::Float64)
        .collect();
    let groups: Vec<u32> = (0..values.len()).map(|_| random(97) as u32).collect();
    let inputs: Vec<&Value> = values.iter().collect();
    let finals = |aggregator: &skewless_runtime::Aggregator| -> Vec<Option<u64>> {
        let states = aggregator.update(&vec![Vec::new(); 97], &groups, &inputs).unwrap();
        let parts: Vec<Vec<u8>> = states.clone();
        // Each state merged into the next group's: a merge path too.
        let merged = aggregator
            .merge(&states, &(0..97).map(|g| (g + 1) % 97).collect::<Vec<u32>>(), &parts)
            .unwrap();
        [states, merged]
            .iter()
            .flat_map(|s| aggregator.finalize(s).unwrap())
            .map(|v| match v {
                Value::Float64(f) => Some(f.to_bits()),
                Value::Null => None,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let expected = finals(&rust);
    assert!(expected.iter().filter(|v| v.is_some()).count() >= 150);
    assert_eq!(finals(&python), expected);
    python.check_laws(&values[..2_000], &[1, 700, 1_999]).unwrap();
}

/// "Four commands take it from an empty folder to a served feature", in
/// Python as the README shows them (the languages tier: componentize-py).
#[test]
fn four_commands_take_a_python_transform_from_nothing_to_a_served_feature() {
    if !Tier::Languages.enter() {
        return;
    }
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let blocks = kit::docs::blocks_of_section(&readme, "## Transforms in Python, JavaScript and C");
    let block = blocks
        .iter()
        .find(|b| b.language == "sh" && b.text.contains("skewless new --lang python"))
        .expect("the four commands' shell block");
    let work = tempfile::tempdir().unwrap();
    let mut terminal = kit::docs::Terminal::open(work.path());
    for line in kit::docs::command_lines(block) {
        terminal.type_line(&line);
    }
    let shown = terminal.output.lock().unwrap().clone();
    assert!(shown.contains("speed_kmh"), "`get` printed no feature:\n{shown}");
}
