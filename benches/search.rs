//! Exact vector search, side by side in one run:
//! - in-process: top-10 by inner product over 100,000 vectors of 384 float32
//!   (seeded, unit length), single queries, against faiss-cpu's exact
//!   `IndexFlatIP` on the same vectors and queries with the same thread
//!   count (1), with recall of our answers against faiss's;
//! - over HTTP: the same queries posted to `skewless serve`'s `/search`
//!   one at a time, p50 and p99, against the in-process figures;
//! - what building the index costs (the first search after the server opens
//!   the store).
//!
//! The vectors go through the product: Parquet, `skewless backfill` (the
//! `vector_384` test component passes them through), the store, the index.
//!
//! Run: cargo bench --bench search
//! (BENCH_VECTORS=100000, BENCH_DIMENSION is fixed at 384 by the component,
//! BENCH_QUERIES=200; faiss comes from `pip install faiss-cpu numpy`)

use skewless_testkit as kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{FixedSizeListArray, Float32Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field};
use kit::*;
use skewless_runtime::search::Metric;
use skewless_runtime::store::Store;

const DIMENSION: usize = 384;
const K: usize = 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `n` seeded unit vectors of `DIMENSION`, row after row.
fn vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut out = Vec::with_capacity(n * DIMENSION);
    for _ in 0..n {
        let v: Vec<f32> = (0..DIMENSION).map(|_| next()).collect();
        let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// faiss-cpu in a Python child on the same vectors and queries, asked for
/// one query at a time between ours, so that both meet the same machine.
struct Faiss {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Faiss {
    fn start(base: &std::path::Path, queries: &std::path::Path, n: usize, q: usize) -> Option<Faiss> {
        use std::io::BufRead;
        let script = format!(
            r#"
import sys, json, time, numpy as np, faiss
faiss.omp_set_num_threads(1)
xb = np.fromfile({base:?}, dtype=np.float32).reshape({n}, {DIMENSION})
xq = np.fromfile({queries:?}, dtype=np.float32).reshape({q}, {DIMENSION})
index = faiss.IndexFlatIP({DIMENSION})
index.add(xb)
index.search(xq[:5], {K})
print("ready", flush=True)
for line in sys.stdin:
    i = int(line)
    t = time.perf_counter()
    _, I = index.search(xq[i:i+1], {K})
    elapsed = time.perf_counter() - t
    print(json.dumps({{"seconds": elapsed, "ids": [int(x) + 1 for x in I[0]]}}), flush=True)
"#
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let input = child.stdin.take()?;
        let mut output = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        output.read_line(&mut line).ok()?;
        if line.trim() != "ready" {
            eprintln!("faiss not measured: install it with `pip install faiss-cpu numpy`");
            return None;
        }
        Some(Faiss { child, input, output })
    }

    /// faiss's time for query `i`, and its top-K ids.
    fn query(&mut self, i: usize) -> (Duration, Vec<i64>) {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{i}").unwrap();
        let mut line = String::new();
        self.output.read_line(&mut line).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        let ids = answer["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        (Duration::from_secs_f64(answer["seconds"].as_f64().unwrap()), ids)
    }
}

impl Drop for Faiss {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let n = env("BENCH_VECTORS", 100_000);
    let q = env("BENCH_QUERIES", 200);
    println!("exact top-{K} search over {n} x {DIMENSION} float32, {q} single queries, 1 thread");
    let base = vectors(n, 1);
    let queries = vectors(q, 2);

    // Through the product: Parquet, backfill, store.
    let repo = TempRepo::from_config(&format!(
        r#"project = "search_bench"
[entities.item]
join_keys = {{ item_id = "int64" }}
[sources.item_vectors]
type = "file"
path = "data/items.parquet"
[views.items]
entities = ["item"]
source = "item_vectors"
transform = "{}"
"#,
        test_components().join("vector_384.wasm").display()
    ));
    let now = skewless_runtime::time::now_micros();
    let batch = RecordBatch::try_from_iter([
        ("item_id", Arc::new(Int64Array::from_iter_values(1..=n as i64)) as _),
        (
            "event_timestamp",
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")) as _,
        ),
        (
            "embedding",
            Arc::new(FixedSizeListArray::new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                DIMENSION as i32,
                Arc::new(Float32Array::from(base.clone())),
                None,
            )) as _,
        ),
    ])
    .unwrap();
    std::fs::create_dir_all(repo.path().join("data")).unwrap();
    skewless_runtime::samples::write_parquet(&repo.path().join("data/items.parquet"), &batch).unwrap();
    repo.ok(&["apply"]);
    let started = Instant::now();
    repo.ok(&["backfill"]);
    println!("backfill of {n} vectors: {:.2} s", started.elapsed().as_secs_f64());

    // faiss, on the same vectors and queries.
    let raw = tempfile::tempdir().unwrap();
    let (base_file, query_file) = (raw.path().join("base.f32"), raw.path().join("queries.f32"));
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(&base_file, bytes(&base)).unwrap();
    std::fs::write(&query_file, bytes(&queries)).unwrap();
    let mut faiss = Faiss::start(&base_file, &query_file, n, q);

    // In-process (the index the server uses, from the store file), query
    // by query in turn with faiss.
    let store = Store::open_existing(&repo.store()).unwrap();
    let record = store.views().unwrap().remove("items").unwrap();
    let started = Instant::now();
    store
        .nearest(
            &record,
            None,
            &queries[..DIMENSION],
            K,
            Metric::InnerProduct,
            skewless_runtime::time::now_micros(),
        )
        .unwrap();
    let build = started.elapsed();
    let (mut ours, mut theirs, mut ratios) = (Vec::with_capacity(q), Vec::with_capacity(q), Vec::with_capacity(q));
    let mut found = 0;
    for (i, query) in queries.chunks_exact(DIMENSION).enumerate() {
        let started = Instant::now();
        let hits = store
            .nearest(
                &record,
                None,
                query,
                K,
                Metric::InnerProduct,
                skewless_runtime::time::now_micros(),
            )
            .unwrap();
        let elapsed = started.elapsed();
        ours.push(elapsed);
        let ids: Vec<i64> = hits
            .iter()
            .map(|h| match h.entity[0] {
                skewless_runtime::format::layout::KeyValue::Int64(id) => id,
                skewless_runtime::format::layout::KeyValue::Utf8(_) => unreachable!(),
            })
            .collect();
        if let Some(faiss) = &mut faiss {
            let (time, faiss_ids) = faiss.query(i);
            theirs.push(time);
            ratios.push(elapsed.as_secs_f64() / time.as_secs_f64());
            found += ids.iter().filter(|id| faiss_ids.contains(id)).count();
        }
    }
    ours.sort();
    theirs.sort();
    ratios.sort_by(f64::total_cmp);
    drop(store);
    drop(faiss);
    println!("index build (first search): {:.0} ms", ms(build));

    // Over HTTP, one request at a time.
    let server = repo.serve(&[]);
    let body = |query: &[f32]| {
        serde_json::json!({"features": ["items:embedding"], "query": query, "top_k": K, "distance_metric": "inner_product"})
            .to_string()
    };
    let (status, _) = server.post("/search", &body(&queries[..DIMENSION]));
    assert_eq!(status, 200);
    let mut http = Vec::with_capacity(q);
    for query in queries.chunks_exact(DIMENSION) {
        let body = body(query);
        let started = Instant::now();
        let (status, _) = server.post_text("/search", &body);
        http.push(started.elapsed());
        assert_eq!(status, 200);
    }
    http.sort();

    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    println!("skewless in-process: median {:.2} ms, p99 {:.2} ms", ms(p50), ms(p99));
    if !theirs.is_empty() {
        println!(
            "faiss IndexFlatIP:   median {:.2} ms, p99 {:.2} ms; skewless / faiss, median of per-query ratios: {:.2}x (of medians: {:.2}x); recall@{K} of skewless against faiss: {:.4}",
            ms(percentile(&theirs, 0.5)),
            ms(percentile(&theirs, 0.99)),
            ratios[ratios.len() / 2],
            p50.as_secs_f64() / percentile(&theirs, 0.5).as_secs_f64(),
            found as f64 / (K * q) as f64
        );
    }
    let (http_p50, http_p99) = (percentile(&http, 0.5), percentile(&http, 0.99));
    println!(
        "over HTTP (/search):  median {:.2} ms, p99 {:.2} ms; HTTP p99 / in-process p99: {:.2}x (/ in-process median: {:.2}x)",
        ms(http_p50),
        ms(http_p99),
        http_p99.as_secs_f64() / p99.as_secs_f64(),
        http_p99.as_secs_f64() / p50.as_secs_f64()
    );
}
