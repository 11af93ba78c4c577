//! The example transforms written in Rust, Python, JavaScript and C, through
//! the same host (`Transform::run`), side by side in one run:
//! - ns per row with 65,536 rows per call, and us per 1-row call (the online
//!   shape), measured in rounds that call every language in turn, so the
//!   machine's noise falls on all alike; medians, and the ratio to Rust;
//! - 1-row calls spaced apart, as requests arrive at a server: the
//!   latency a call sees when an instance was made ahead (median and p99),
//!   and the process's CPU time per call, the background thread's making
//!   and dropping of instances included;
//! - cold load (compile with Cranelift into an empty compile cache), warm load
//!   (a new runtime over the same cache: what every later process pays), and
//!   warm load plus the first 1-row call (instantiation included).
//!
//! Components are built from `examples/transforms/` first (as the tests do).
//! Run: cargo bench --bench languages (BENCH_MS=3000 per measurement;
//! BENCH_FILTER=fraud_features for one transform)

use skewless_testkit as kit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use skewless_runtime::{Limits, Runtime, Transform, samples};

const LANGUAGES: [&str; 4] = ["rust", "python", "js", "c"];

fn component(language: &str, name: &str) -> PathBuf {
    match language {
        "rust" => kit::example_components().join(format!("{name}.wasm")),
        other => kit::language_example(other, name),
    }
}

/// JavaScript takes about 5 s for 65,536 fraud rows: past the default 5 s call limit.
fn limits() -> Limits {
    Limits {
        timeout_ms: 120_000,
        ..Limits::default()
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Calls every transform on `batch` in turn, round after round, until
/// `budget` is spent; the median time per call of each.
fn per_call(transforms: &[Transform], batch: &RecordBatch, budget: Duration) -> Vec<Duration> {
    let mut times = vec![Vec::new(); transforms.len()];
    let started = Instant::now();
    while started.elapsed() < budget || times[0].len() < 5 {
        for (transform, times) in transforms.iter().zip(&mut times) {
            let at = Instant::now();
            std::hint::black_box(transform.run(batch).expect("the transform runs"));
            times.push(at.elapsed());
        }
    }
    times.into_iter().map(median).collect()
}

/// The process's CPU time so far (user and system, every thread; in clock
/// ticks of 10 ms, so callers measure many calls) and its minor page
/// faults (a fresh instance's copy-on-write pages), from `/proc/self/stat`.
fn process_cpu() -> (Duration, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which may hold spaces) in parens.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (Duration::from_millis(ticks * 10), fields[7].parse().unwrap())
}

/// 1-row calls of one transform with `gap` between them (time for the
/// background thread to make the next instance): median and p99 latency,
/// and CPU and minor page faults per call over the whole process.
fn spaced_calls(transform: &Transform, one_row: &RecordBatch, calls: usize, gap: Duration) -> ([Duration; 3], u64) {
    let mut times = Vec::with_capacity(calls);
    let (cpu_before, faults_before) = process_cpu();
    for _ in 0..calls {
        let at = Instant::now();
        std::hint::black_box(transform.run(one_row).expect("the transform runs"));
        times.push(at.elapsed());
        std::thread::sleep(gap);
    }
    // Let the background thread finish the last drop and refill.
    std::thread::sleep(Duration::from_millis(50));
    let (cpu, faults) = process_cpu();
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    (
        [median(times), p99, (cpu - cpu_before) / calls as u32],
        (faults - faults_before) / calls as u64,
    )
}

struct Load {
    cold: Duration,
    warm: Duration,
    first_answer: Duration,
}

fn load_times(path: &std::path::Path, name: &str, one_row: &RecordBatch) -> Load {
    let cache = tempfile::tempdir().unwrap();
    let at = Instant::now();
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    runtime.load(name, path, limits()).expect("loads");
    let cold = at.elapsed();
    drop(runtime);
    let (mut warm, mut first_answer) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let at = Instant::now();
        let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
        let transform = runtime.load(name, path, limits()).expect("loads");
        warm.push(at.elapsed());
        transform.run(one_row).expect("runs");
        first_answer.push(at.elapsed());
    }
    Load {
        cold,
        warm: median(warm),
        first_answer: median(first_answer),
    }
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000),
    );
    let only = std::env::var("BENCH_FILTER").unwrap_or_default();
    const ROWS: usize = 65_536;

    let drivers = samples::driver_stats(1_000, 720, kit::FIXED_END, 42);
    let conv = RecordBatch::try_from_iter([
        ("conv_rate", drivers.column_by_name("conv_rate").unwrap().slice(0, ROWS)),
        (
            "val_to_add",
            Arc::new(Int64Array::from_iter_values((0..ROWS as i64).map(|i| i % 1000))) as ArrayRef,
        ),
    ])
    .unwrap();
    let fraud = samples::transactions(500, ROWS, kit::FIXED_END, 7);
    let fraud = fraud.project(&[1, 3, 4]).unwrap();

    println!(
        "| transform | language | ns/row (65,536 rows) | x Rust | us per 1-row call | x Rust | spaced 1-row call: median, p99 | CPU per spaced call | page faults per spaced call | component | cold load | warm load | warm load + first call |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, batch) in [("transformed_conv_rate", &conv), ("fraud_features", &fraud)] {
        if !name.contains(&only) {
            continue;
        }
        let paths: Vec<PathBuf> = LANGUAGES.iter().map(|l| component(l, name)).collect();
        let one_row = batch.slice(0, 1);
        let loads: Vec<Load> = paths.iter().map(|p| load_times(p, name, &one_row)).collect();
        let runtime = kit::runtime();
        let transforms: Vec<Transform> = paths
            .iter()
            .map(|p| runtime.load(name, p, limits()).expect("loads"))
            .collect();
        let big = per_call(&transforms, batch, budget);
        let small = per_call(&transforms, &one_row, budget);
        let spaced: Vec<([Duration; 3], u64)> = transforms
            .iter()
            .map(|t| {
                // Enough calls for the CPU clock's 10 ms ticks to average out.
                let calls = if small[0] < Duration::from_micros(200) {
                    3_000
                } else {
                    400
                };
                spaced_calls(t, &one_row, calls, Duration::from_micros(500))
            })
            .collect();
        for (i, language) in LANGUAGES.iter().enumerate() {
            let ns_per_row = big[i].as_nanos() as f64 / ROWS as f64;
            let size = std::fs::metadata(&paths[i]).unwrap().len() as f64 / 1e6;
            println!(
                "| {name} | {language} | {ns_per_row:.1} | {:.1} | {:.1} | {:.1} | {:.1}, {:.1} us | {:.1} us | {} | {size:.1} MB | {:.0} ms | {:.1} ms | {:.1} ms |",
                big[i].as_secs_f64() / big[0].as_secs_f64(),
                small[i].as_secs_f64() * 1e6,
                small[i].as_secs_f64() / small[0].as_secs_f64(),
                spaced[i].0[0].as_secs_f64() * 1e6,
                spaced[i].0[1].as_secs_f64() * 1e6,
                spaced[i].0[2].as_secs_f64() * 1e6,
                spaced[i].1,
                loads[i].cold.as_secs_f64() * 1e3,
                loads[i].warm.as_secs_f64() * 1e3,
                loads[i].first_answer.as_secs_f64() * 1e3,
            );
        }
    }
}
