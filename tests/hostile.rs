//! Transforms that misbehave, built from source in tests/components: each
//! failure is a clear error naming the view, and the process (and the same
//! loaded transform) carries on serving good calls afterwards.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use common::*;
use skewless_runtime::{Limits, LoadError, TransformErrorKind};

fn xs(values: &[i64]) -> RecordBatch {
    RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).unwrap()
}

fn doubled(transform: &skewless_runtime::Transform, values: &[i64]) -> Vec<i64> {
    let out = transform.run(&xs(values)).expect("a good batch runs after a failure");
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
        Ok(_) => panic!("a 0.2.0 component must be refused"),
    };
    assert!(matches!(error, LoadError::WrongVersion { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("skewless:transform/transform@0.2.0")
            && message.contains("needs skewless:transform/transform@0.1.0"),
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
    let again = test_component(&common::runtime(), "probe", Limits::default());
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
    // NaN canonicalization: 0/0 is the canonical quiet NaN, not x86's negative default NaN.
    assert_eq!(ints("nan_bits"), vec![0x7FF8_0000_0000_0000; 3]);
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
