//! Transforms that misbehave, built from source in tests/components: each
//! failure is a clear error naming the view, and the process (and the same
//! loaded transform) carries on serving good calls afterwards.

use skewless_testkit as kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use kit::*;
use skewless_runtime::{Determinism, Limits, LoadError, TransformErrorKind};

fn xs(values: &[i64]) -> RecordBatch {
    RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).unwrap()
}

fn doubled(transform: &skewless_runtime::Transform, values: &[i64]) -> Vec<i64> {
    first_column(transform, values)
}

fn first_column(transform: &skewless_runtime::Transform, values: &[i64]) -> Vec<i64> {
    let out = transform.run(&xs(values)).expect("a good batch runs");
    out.batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

#[test]
fn a_trap_fails_the_call_with_the_panic_message_and_the_next_call_works() {
    let runtime = runtime();
    let trap = test_component(&runtime, "trap", Limits::default());
    for _ in 0..3 {
        let error = trap.run(&xs(&[1, 13, 2])).unwrap_err();
        assert_eq!(error.view, "trap");
        let message = error.to_string();
        assert!(matches!(error.kind, TransformErrorKind::Trap { .. }), "{message}");
        assert!(
            message.contains("view `trap`") && message.contains("unlucky value 13 at row 1"),
            "{message}"
        );
        assert!(
            message.contains("wasm `unreachable` instruction executed") && !message.contains("backtrace"),
            "{message}"
        );
        assert_eq!(doubled(&trap, &[1, 2, 3]), vec![2, 4, 6]);
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_time_limit() {
    let runtime = runtime();
    let limits = Limits {
        timeout_ms: 100,
        ..Limits::default()
    };
    let spin = test_component(&runtime, "spin", limits);
    let started = Instant::now();
    let error = spin.run(&xs(&[1, -1])).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error.kind, TransformErrorKind::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("its time limit of 100 ms"), "{error}");
    assert!(
        error.to_string().contains("max_rows_per_call"),
        "names the other knob: {error}"
    );
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(5),
        "stopped after {elapsed:?}"
    );
    assert_eq!(doubled(&spin, &[4, 5]), vec![4, 5]);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let runtime = runtime();
    let limits = Limits {
        memory_mib: 64,
        ..Limits::default()
    };
    let bomb = test_component(&runtime, "bomb", limits);
    let error = bomb.run(&xs(&[-1])).unwrap_err();
    assert!(
        matches!(error.kind, TransformErrorKind::MemoryLimit { limit_mib: 64 }),
        "{error}"
    );
    assert!(error.to_string().contains("memory limit of 64 MiB"), "{error}");
    assert_eq!(doubled(&bomb, &[7]), vec![7]);
}

#[test]
fn malformed_output_from_a_guest_is_refused_not_trusted() {
    let runtime = runtime();
    let liar = test_component(&runtime, "liar", Limits::default());
    let short = liar.run(&xs(&[1, 2, 3])).unwrap_err();
    assert!(
        short.to_string().contains("column `y` has 2 rows, expected 3"),
        "{short}"
    );
    let wrong_type = liar.run(&xs(&[1])).unwrap_err();
    assert!(
        wrong_type.to_string().contains("column `y` is float64, expected int64"),
        "{wrong_type}"
    );
}

#[test]
fn every_call_starts_from_the_components_initial_state() {
    let runtime = runtime();
    // 4 rows per guest call, so one `run` of 10 rows is three calls.
    let limits = Limits {
        max_rows_per_call: 4,
        ..Limits::default()
    };
    let counter = Arc::new(test_component(&runtime, "counter", limits));
    let calls = |t: &skewless_runtime::Transform, rows: &[i64]| first_column(t, rows);
    for _ in 0..5 {
        assert_eq!(calls(&counter, &[7]), vec![1], "a call sees no earlier call");
    }
    assert_eq!(calls(&counter, &(0..10).collect::<Vec<_>>()), vec![1; 10]);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || (0..50).all(|_| first_column(&counter, &[1, 2]) == vec![1, 1]))
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap(), "concurrent calls share no state either");
    }
}

#[test]
fn guest_error_text_is_bounded_and_a_bad_row_index_is_named() {
    let runtime = runtime();
    let chatty = test_component(&runtime, "chatty", Limits::default());
    let max = skewless_runtime::MAX_ERROR_MESSAGE_BYTES;

    let past_the_end = chatty.run(&xs(&[1, 5, 6, 7])).unwrap_err().to_string();
    assert!(
        past_the_end.contains("a row error names row 4, but the batch has 4 rows (numbered from 0)"),
        "{past_the_end}"
    );

    let long = chatty.run(&xs(&[2, 5])).unwrap();
    assert_eq!(long.row_errors.len(), 1);
    let message = &long.row_errors[0].message;
    assert!(message.len() <= max, "{} bytes", message.len());
    assert!(
        message.starts_with("eeee") && message.ends_with("more bytes truncated]"),
        "{message:.80}"
    );
    assert!(long.batch.column(0).is_null(0) && long.batch.column(0).is_valid(1));

    let rows: Vec<i64> = std::iter::once(3).chain(0..299).collect();
    let many = chatty.run(&xs(&rows)).unwrap();
    assert_eq!(many.row_errors.len(), 300, "every failed row keeps its error");
    assert_eq!(many.batch.column(0).null_count(), 300);
    let text: usize = many.row_errors.iter().map(|e| e.message.len()).sum();
    let capped = many.row_errors.iter().filter(|e| e.message.starts_with("mmmm")).count();
    assert!((10..=16).contains(&capped), "{capped} messages kept whole");
    assert!(
        text < skewless_runtime::MAX_ROW_ERROR_TEXT_PER_CALL + 300 * 100,
        "{text} bytes of error text"
    );

    let failed = chatty.run(&xs(&[4])).unwrap_err();
    let TransformErrorKind::Failed(message) = &failed.kind else {
        panic!("{failed}")
    };
    assert!(
        message.len() <= max && message.ends_with("more bytes truncated]"),
        "{} bytes",
        message.len()
    );

    let fine = chatty.run(&xs(&[5, -2, 9])).unwrap();
    assert_eq!(fine.row_errors.len(), 1);
    assert_eq!(
        (fine.row_errors[0].row, fine.row_errors[0].message.as_str()),
        (1, "x = -2 is negative")
    );
}

#[test]
fn an_input_of_the_wrong_schema_is_refused_before_the_guest_runs() {
    let runtime = runtime();
    let trap = test_component(&runtime, "trap", Limits::default());
    let floats = RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)]).unwrap();
    let error = trap.run(&floats).unwrap_err();
    assert!(matches!(error.kind, TransformErrorKind::Input(_)), "{error}");
    assert!(
        error.to_string().contains("column `x` is Float64, expected int64"),
        "{error}"
    );
    let missing = RecordBatch::try_from_iter([("z", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]).unwrap();
    assert!(
        trap.run(&missing)
            .unwrap_err()
            .to_string()
            .contains("column `x` is missing")
    );
}

#[test]
fn a_component_built_for_another_contract_version_is_refused() {
    let runtime = runtime();
    let path = test_components().join("future_contract.wasm");
    let error = match runtime.load("future", &path, Limits::default()) {
        Err(e) => e,
        Ok(_) => panic!("a 0.3.0 component must be refused"),
    };
    assert!(matches!(error, LoadError::WrongVersion { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("skewless:transform/transform@0.3.0")
            && message.contains("needs skewless:transform/transform@0.2.0 (or 0.1.0)"),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_path() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.wasm");
    std::fs::write(&path, b"\0asm but not really").unwrap();
    let message = runtime.load("v", &path, Limits::default()).err().unwrap().to_string();
    assert!(
        message.contains("garbage.wasm") && message.contains("not a valid WebAssembly component"),
        "{message}"
    );
    let missing = runtime
        .load("v", &dir.path().join("nope.wasm"), Limits::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        missing.contains("nope.wasm") && missing.contains("skewless build"),
        "{missing}"
    );
}

#[test]
fn hostile_calls_on_many_threads_leave_good_calls_unaffected() {
    let runtime = runtime();
    let trap = Arc::new(test_component(&runtime, "trap", Limits::default()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let trap = trap.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    if (i + t) % 3 == 0 {
                        assert!(trap.run(&xs(&[13])).is_err());
                    } else {
                        assert_eq!(doubled(&trap, &[100 + i, t]), vec![200 + 2 * i, 2 * t]);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn guests_see_a_deny_all_deterministic_sandbox_with_canonical_nans() {
    let runtime = runtime();
    let probe = test_component(&runtime, "probe", Limits::default());
    let again = test_component(&kit::runtime(), "probe", Limits::default());
    let input =
        RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.5, -2.0, 0.0])) as ArrayRef)]).unwrap();
    let (a, b) = (probe.run(&input).unwrap().batch, again.run(&input).unwrap().batch);
    assert_bit_identical(&a, &b);
    let ints = |name: &str| {
        a.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    };
    assert_eq!(ints("clock_micros"), vec![0; 3], "the clock is stopped at the epoch");
    assert_eq!(ints("env_vars"), vec![0; 3], "no environment");
    let files = a
        .column_by_name("can_read_files")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::BooleanArray>()
        .unwrap();
    assert_eq!(files.true_count(), 0, "no file system");
    // 0/0 leaves the guest as the canonical quiet NaN, whatever the CPU made
    // of it (x86 makes a negative one): canonicalized at the boundary.
    assert_eq!(float_bits(&a, "zero_over_zero"), vec![CANONICAL_NAN; 3]);
}

const CANONICAL_NAN: u64 = 0x7FF8_0000_0000_0000;

fn float_bits(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let column = batch.column_by_name(name).unwrap();
    let floats = column.as_any().downcast_ref::<Float64Array>().unwrap();
    floats.values().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn strict_determinism_canonicalizes_inside_the_guest_and_is_cached_apart() {
    let runtime = runtime();
    let path = test_components().join("probe.wasm");
    let default = runtime
        .load_with("probe", &path, Limits::default(), Determinism::Default)
        .unwrap();
    let strict = runtime
        .load_with("probe", &path, Limits::default(), Determinism::Strict)
        .unwrap();
    assert_eq!(
        (default.determinism(), strict.determinism()),
        (Determinism::Default, Determinism::Strict)
    );
    let input = RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(vec![1.5, 0.0])) as ArrayRef)]).unwrap();
    let (a, b) = (default.run(&input).unwrap().batch, strict.run(&input).unwrap().batch);
    let nan_bits = |batch: &RecordBatch| {
        let column = batch.column_by_name("nan_bits").unwrap();
        let ints = column.as_any().downcast_ref::<Int64Array>().unwrap();
        ints.values().iter().map(|&v| v as u64).collect::<Vec<_>>()
    };
    // Both builds hand out the canonical NaN.
    assert_eq!(float_bits(&a, "zero_over_zero"), vec![CANONICAL_NAN; 2]);
    assert_eq!(float_bits(&b, "zero_over_zero"), vec![CANONICAL_NAN; 2]);
    // Under strict, the guest itself only ever sees the canonical NaN...
    assert_eq!(nan_bits(&b), vec![CANONICAL_NAN; 2]);
    // ...under the default it sees the CPU's (x86's has the sign bit set): the
    // one thing a guest can still observe, as the README says.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(nan_bits(&a), vec![0xFFF8_0000_0000_0000; 2]);

    // Two compile-cache entries, with different code in them.
    let entry = |d: Determinism| {
        runtime
            .cache_entry(&default.digest(), d)
            .unwrap()
            .expect("the tests cache")
    };
    let (plain, strict_entry) = (entry(Determinism::Default), entry(Determinism::Strict));
    assert_ne!(plain, strict_entry);
    assert!(
        strict_entry.to_string_lossy().contains("-strict-"),
        "{}",
        strict_entry.display()
    );
    assert_ne!(std::fs::read(&plain).unwrap(), std::fs::read(&strict_entry).unwrap());
}

#[test]
fn a_guest_that_waits_is_stopped_at_once_and_stderr_needs_no_runtime() {
    let runtime = runtime();
    let sleep = Arc::new(test_component(&runtime, "sleep", Limits::default()));
    let check = |result: Result<_, skewless_runtime::TransformError>, elapsed: Duration| {
        let error = result.map(|_| ()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error.kind, TransformErrorKind::Trap { .. }), "{message}");
        assert!(
            message.contains("the transform waited") && message.contains("row 1: -1"),
            "{message}"
        );
        // Not the 5 s time limit, and certainly not the hour asked for.
        assert!(elapsed < Duration::from_secs(1), "stopped after {elapsed:?}");
    };

    // On a tokio async worker, as in the server: writing to stderr and the
    // wait itself must not try to block on a runtime (that would panic).
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let on_worker = sleep.clone();
    let (good, failed, elapsed) = tokio.block_on(async move {
        tokio::spawn(async move {
            let good = doubled(&on_worker, &[1, 2]);
            let started = Instant::now();
            let failed = on_worker.run(&xs(&[3, -1]));
            (good, failed, started.elapsed())
        })
        .await
        .expect("no panic on the async worker")
    });
    assert_eq!(good, vec![1, 2]);
    check(failed, elapsed);

    // Off any runtime, as in backfill.
    let started = Instant::now();
    check(sleep.run(&xs(&[0, -1])), started.elapsed());
    assert_eq!(doubled(&sleep, &[7]), vec![7]);
}

#[test]
fn the_batch_probe_of_a_guest_that_loops_on_some_rows_takes_a_bounded_time() {
    use skewless_runtime::invariance::{self, SampleOrigin};
    let runtime = runtime();
    let spin = test_component(&runtime, "spin", Limits::default());
    let rows = invariance::generated(&spin.description().inputs, invariance::PROBE_ROWS, 5);
    let started = Instant::now();
    let probed = invariance::probe(&spin, &rows, SampleOrigin::Generated, 5).expect("no row depends on its batch");
    // Not 5 s (the view's limit) per looping row: 100 ms each, three at most.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(probed.rows > 0 && probed.failing_alone > 0, "{probed}");
}
