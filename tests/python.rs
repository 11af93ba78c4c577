//! The Python package (`python/`, `import skewless`): the wheel built with
//! maturin into this build's target folder, installed into a fresh virtual
//! environment (which sees what `.ci/run` installs: pyarrow, polars, pandas,
//! pyspark, ray, pytest), and `python/tests` run against the example
//! components, with what the Rust runtime's `Transform::run` gives for the
//! same inputs as the expected bits, and this build's `skewless` binary
//! (CLI and server) as the reference for `Repo`, `Client`, Spark and Ray.

use kit::tier::Tier;
use skewless_testkit as kit;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use kit::{FIXED_END, split_mix};
use skewless_runtime::samples;

/// Input batches of each example transform (extra columns are ignored).
fn inputs() -> Vec<(&'static str, RecordBatch)> {
    let drivers = samples::driver_stats(100, 24, FIXED_END, 1);
    let mut random = split_mix(13);
    let conv_rate = RecordBatch::try_from_iter([
        ("conv_rate", drivers.column_by_name("conv_rate").unwrap().clone()),
        (
            "val_to_add",
            Arc::new(Int64Array::from_iter_values(
                (0..drivers.num_rows()).map(|_| random(2_000) as i64 - 1_000),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    vec![
        ("transformed_conv_rate", conv_rate),
        ("driver_hourly_stats", drivers),
        ("fraud_features", samples::transactions(50, 2_000, FIXED_END, 5)),
        ("ride_eta", samples::rides(100, 2_000, FIXED_END, 3)),
        // Lists and vectors out.
        ("text_embedding", samples::products(2_000, FIXED_END, 3)),
    ]
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!("{what}: {e}; `.ci/run` installs what it needs: pip install maturin==1.16.0 pyarrow pytest polars \"pandas<3\" pyspark ray[data]")
    });
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_python_package_gives_the_rust_runtimes_bits() {
    if !Tier::Python.enter() {
        return;
    }
    let components = kit::example_components();
    let runtime = kit::runtime();
    let work = tempfile::tempdir().unwrap();
    let expected = work.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    for (name, input) in inputs() {
        let output = kit::example(&runtime, name).run(&input).unwrap().batch;
        samples::write_parquet(&expected.join(format!("{name}.input.parquet")), &input).unwrap();
        samples::write_parquet(&expected.join(format!("{name}.output.parquet")), &output).unwrap();
    }

    // The driver_stats example with its sample data, not applied: the
    // Python tests copy it, and run the CLI and the server on the copies.
    let repo = kit::TempRepo::with_data("driver_stats", kit::next_hour());
    // And the products example (embeddings and search), not applied either.
    let products = kit::TempRepo::with_data("products", kit::next_hour());

    // The wheel, built in this build's target folder (shared with cargo).
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let wheels = work.path().join("wheels");
    run(
        Command::new("maturin")
            .args(["build", "--release", "--quiet", "-o"])
            .arg(&wheels)
            .current_dir(kit::root().join("python"))
            .env("CARGO_TARGET_DIR", tmp.parent().unwrap()),
        "maturin build",
    );
    let wheel = std::fs::read_dir(&wheels).unwrap().next().unwrap().unwrap().path();
    let venv = work.path().join("venv");
    run(
        Command::new("python3")
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv),
        "python3 -m venv",
    );
    let python = venv.join("bin/python");
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
            ])
            .arg(&wheel),
        "pip install the wheel",
    );
    let report = run(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(kit::root().join("python/tests"))
            .env("SKEWLESS_COMPONENTS", &components)
            .env("SKEWLESS_EXPECTED", &expected)
            .env("SKEWLESS_BIN", env!("CARGO_BIN_EXE_skewless"))
            .env("SKEWLESS_REPO", repo.path())
            .env("SKEWLESS_PRODUCTS_REPO", products.path())
            .env("SKEWLESS_CACHE_DIR", tmp.join("compile-cache"))
            .current_dir(work.path()),
        "pytest python/tests",
    );
    // Every test ran: none skipped, none missing.
    assert!(report.contains("20 passed") && !report.contains("skipped"), "{report}");
}
