//! The test kit, shared by every test tier and bench: builds the example
//! and test components from source (once per process), makes throwaway
//! feature repos with generated data, runs the `skewless` binary and server
//! as real processes, and compares batches bit for bit.
//!
//! - [`tier`]: which tier a test belongs to, and what it needs installed;
//! - [`docs`]: the README's code blocks, and a shell to type its lines into;
//! - [`golden`]: text users read, checked against files in `tests/golden/`;
//! - [`load`]: the one HTTP load generator of the serve, soak and overload
//!   benches and tests.
//!
//! It is a library, not a `#[path]` include, so it is compiled once and
//! finds the `skewless` binary and the target folder beside the test or
//! bench executable that links it, as cargo lays them out.

pub mod docs;
pub mod golden;
pub mod load;
pub mod services;
pub mod tier;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use skewless_runtime::{Limits, Runtime, Transform, samples};
use skewless_toolchain as toolchain;

/// The project root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the kit lives in tests/kit")
        .to_path_buf()
}

/// The profile folder of this build (`target/release`): the test or bench
/// executable lives in its `deps/`, and cargo builds the `skewless` binary
/// into it for integration tests and benches.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the executable's folder");
    match deps.file_name() {
        Some(name) if name == "deps" => deps.parent().expect("the profile folder").to_path_buf(),
        _ => deps.to_path_buf(),
    }
}

/// The `skewless` binary of this build (`SKEWLESS_BIN` overrides it).
pub fn skewless_bin() -> PathBuf {
    match std::env::var_os("SKEWLESS_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => profile_dir().join("skewless"),
    }
}

/// A folder for files that outlive one test, as cargo's `CARGO_TARGET_TMPDIR`
/// (`target/tmp`).
pub fn target_tmpdir() -> PathBuf {
    let dir = profile_dir().parent().expect("the target folder").join("tmp");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    dir
}

/// The compile cache every test and every `skewless` it runs share.
pub fn compile_cache() -> PathBuf {
    target_tmpdir().join("compile-cache")
}

fn build_once(cell: &'static OnceLock<PathBuf>, dir: &str) -> PathBuf {
    cell.get_or_init(|| {
        let components = toolchain::build_rust(&root().join(dir), true).expect("components build");
        assert!(!components.is_empty(), "no components built in {dir}");
        components[0].parent().unwrap().to_path_buf()
    })
    .clone()
}

/// The folder of the example components (examples/transforms), built now.
pub fn example_components() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    build_once(&CELL, "examples/transforms")
}

/// The folder of the test components (tests/components), built now.
pub fn test_components() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    build_once(&CELL, "tests/components")
}

/// A runtime whose compile cache is shared by the tests.
pub fn runtime() -> Runtime {
    Runtime::new(Some(compile_cache())).expect("runtime")
}

/// Loads an example component (`driver_hourly_stats`, `fraud_features`...).
pub fn example(runtime: &Runtime, name: &str) -> Transform {
    runtime
        .load(
            name,
            &example_components().join(format!("{name}.wasm")),
            Limits::default(),
        )
        .expect("example loads")
}

/// Loads a test component with `limits`.
pub fn test_component(runtime: &Runtime, name: &str, limits: Limits) -> Transform {
    runtime
        .load(name, &test_components().join(format!("{name}.wasm")), limits)
        .expect("test component loads")
}

/// A fixed instant for reproducible data: 2026-01-01T00:00:00Z.
pub const FIXED_END: i64 = 1_767_225_600_000_000;

/// A throwaway copy of an example repo (`driver_stats`, `fraud`, `rides`),
/// with its component paths pointing at the built examples.
pub struct TempRepo {
    pub dir: tempfile::TempDir,
    /// Environment variables for every `skewless` this repo runs.
    pub env: Vec<(String, String)>,
}

impl TempRepo {
    pub fn new(example: &str) -> TempRepo {
        let components = example_components();
        let text = std::fs::read_to_string(root().join("examples/repos").join(example).join("skewless.toml")).unwrap();
        let text = text.replace(
            "../../transforms/target/wasm32-wasip2/release",
            components.to_str().unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("skewless.toml"), text).unwrap();
        TempRepo { dir, env: Vec::new() }
    }

    /// A throwaway repo with the given `skewless.toml` text.
    pub fn from_config(text: &str) -> TempRepo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("skewless.toml"), text).unwrap();
        TempRepo { dir, env: Vec::new() }
    }

    /// Adds the hostile test components as on-demand views `trapping` (traps
    /// on 13) and `spinning` (loops on negatives) over a request source `x`.
    pub fn add_hostile_views(&self) {
        let config = self.path().join("skewless.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        for (view, component) in [("trapping", "trap"), ("spinning", "spin")] {
            text.push_str(&format!(
                "\n[views.{view}]\nkind = \"on_demand\"\nsources = [\"hostile_input\"]\ntransform = \"{}\"\n",
                test_components().join(format!("{component}.wasm")).display()
            ));
        }
        text.push_str("\n[sources.hostile_input]\ntype = \"request\"\nschema = { x = \"int64\" }\n");
        std::fs::write(&config, text).unwrap();
    }

    /// As [`TempRepo::new`], with the example's sample data ending at `end`.
    pub fn with_data(example: &str, end: i64) -> TempRepo {
        let repo = TempRepo::new(example);
        samples::generate(example, repo.path(), end).unwrap();
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Another replica's repo: this one's config and data, its store a copy
    /// of `snapshot` (a `skewless backup` of this one's).
    pub fn replica(&self, snapshot: &Path) -> TempRepo {
        let text = std::fs::read_to_string(self.path().join("skewless.toml"))
            .unwrap()
            .replace("path = \"data/", &format!("path = \"{}/data/", self.path().display()));
        let replica = TempRepo::from_config(&text);
        std::fs::create_dir_all(replica.path().join(".skewless")).unwrap();
        std::fs::copy(snapshot, replica.store()).unwrap();
        replica
    }

    pub fn store(&self) -> PathBuf {
        self.path().join(".skewless/store.redb")
    }

    /// Runs `skewless --repo <this repo> ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = skewless_command(&[&["--repo", self.path().to_str().unwrap()], args].concat());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.output().expect("skewless runs")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skewless {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure, returning what it printed: stdout (a
    /// report, where the command prints one), then stderr (the error).
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "skewless {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Runs the `skewless` binary built for these tests.
pub fn skewless(args: &[&str]) -> Output {
    skewless_command(args).output().expect("skewless runs")
}

/// The `skewless` binary built for these tests, with the shared compile cache.
fn skewless_command(args: &[&str]) -> Command {
    let mut command = Command::new(skewless_bin());
    command.args(args).env("SKEWLESS_CACHE_DIR", compile_cache());
    command
}

/// One value as its type and bits (floats as hex bits and as a number),
/// `null` for nulls: equal strings mean bit-identical values, and a failed
/// comparison prints both sides.
pub fn value_bits(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) {
        return "null".to_string();
    }
    match array.data_type() {
        DataType::Boolean => format!("{}", array.as_boolean().value(row)),
        DataType::Int64 => format!("{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            format!("{v:?} (bits {:#010x})", v.to_bits())
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            format!("{v:?} (bits {:#018x})", v.to_bits())
        }
        DataType::Utf8 => format!("{:?}", array.as_string::<i32>().value(row)),
        DataType::Timestamp(..) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            format!("{} ({micros} us)", skewless_runtime::time::format_timestamp(micros))
        }
        DataType::List(_) => {
            let elements = array.as_list::<i32>().value(row);
            let bits: Vec<String> = (0..elements.len()).map(|i| value_bits(&elements, i)).collect();
            format!("[{}]", bits.join(", "))
        }
        DataType::FixedSizeList(..) => {
            let components = array.as_fixed_size_list().value(row);
            let bits: Vec<String> = (0..components.len()).map(|i| value_bits(&components, i)).collect();
            format!("vector [{}]", bits.join(", "))
        }
        other => panic!("unexpected type {other}"),
    }
}

/// Asserts two batches hold the same columns with the same nulls and
/// bit-identical values (floats compared by their bits, so NaN payloads and
/// negative zero count). A difference prints both values, and how many
/// values differ in all.
pub fn assert_bit_identical(left: &RecordBatch, right: &RecordBatch) {
    assert_eq!(left.schema(), right.schema(), "schemas differ");
    assert_eq!(left.num_rows(), right.num_rows(), "row counts differ");
    let mut differences = Vec::new();
    for (index, field) in left.schema().fields().iter().enumerate() {
        let (a, b) = (left.column(index), right.column(index));
        for row in 0..left.num_rows() {
            let (l, r) = (value_bits(a, row), value_bits(b, row));
            if l != r {
                differences.push(format!("column `{}` row {row}: left {l}, right {r}", field.name()));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} values differ; the first:\n  {}",
        differences.len(),
        differences.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// `skewless serve` running on a free loopback port for one test; killed
/// when dropped unless [`ServerProcess::stop`] stopped it first.
pub struct ServerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    agent: ureq::Agent,
}

impl TempRepo {
    /// Starts `skewless serve --addr 127.0.0.1:0 ARGS` on this repo and waits
    /// until it listens.
    pub fn serve(&self, args: &[&str]) -> ServerProcess {
        self.serve_on("127.0.0.1:0", args)
    }

    /// Starts `skewless serve --addr ADDR ARGS` and waits until it listens.
    pub fn serve_on(&self, addr: &str, args: &[&str]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = Command::new(skewless_bin())
            .args(["--repo", self.path().to_str().unwrap(), "serve", "--addr", addr])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .env("SKEWLESS_CACHE_DIR", compile_cache())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("skewless serve starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                // The line goes into the log before the address is announced, so a
                // test that reads the log once the server is up finds that line.
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some((_, rest)) = line.split_once(" on http") {
                    // `s://HOST:PORT` or `://HOST:PORT`.
                    let url = format!("http{}", rest.split_whitespace().next().unwrap_or_default());
                    let _ = tx.send(url);
                }
            }
        });
        let base = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start:\n{}", log.lock().unwrap());
            }
        };
        // A fresh connection per request: a server may close a kept-alive
        // connection after refusing a request whose body it did not read,
        // and a reused one then fails at random ("Peer disconnected", seen
        // once in CI). The load generator (`load`) keeps connections alive.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        ServerProcess {
            child,
            base,
            log,
            agent,
        }
    }
}

impl ServerProcess {
    /// POSTs `body` (sent as is, with no content type, as Feast's curl lines do)
    /// and returns the status and the body parsed as JSON.
    pub fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.post_text(path, body);
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
        (status, json)
    }

    /// As [`ServerProcess::post`], with the body as the server wrote it.
    pub fn post_text(&self, path: &str, body: &str) -> (u16, String) {
        self.post_as(None, path, body)
    }

    /// POSTs `body` with `Authorization: Bearer TOKEN` if a token is given:
    /// the status and the body as text.
    pub fn post_as(&self, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
        let mut request = self.agent.post(&format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\nserver log:\n{}", self.log()));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        (status, text)
    }

    /// GETs `path`: the status and the body as text.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_as(None, path)
    }

    /// GETs `path` with `Authorization: Bearer TOKEN` if a token is given.
    pub fn get_as(&self, token: Option<&str>, path: &str) -> (u16, String) {
        let mut request = self.agent.get(&format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits: the exit status and the log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        (status, self.log())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of the current hour: data ending there is fresh for a 1-day TTL.
pub fn next_hour() -> i64 {
    skewless_runtime::time::now_micros() / 3_600_000_000 * 3_600_000_000 + 3_600_000_000
}

/// The driver_stats example with its rows read from `source`: the `type`
/// and `path` lines (and any other settings) of its
/// `[sources.driver_stats_source]` table, in place of the Parquet file's.
pub fn driver_repo_reading(source: &str) -> TempRepo {
    let repo = TempRepo::new("driver_stats");
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let file = "type = \"file\"\npath = \"data/driver_stats.parquet\"\n";
    assert!(text.contains(file), "the example's source moved");
    std::fs::write(&config, text.replace(file, source)).unwrap();
    repo
}

/// Cards of [`kafka_repo`]'s transactions.
pub const CARDS: usize = 20;

/// A repo with an aggregation view (a count and an amount sum over 30
/// days, by card) over the Kafka topic `topic` at `broker`.
pub fn kafka_repo(broker: &str, topic: &str) -> TempRepo {
    TempRepo::from_config(&format!(
        r#"project = "payments"

[entities.card]
join_keys = {{ card_id = "utf8" }}

[sources.transactions]
type = "file"
path = "data/transactions.parquet"

[sources.transactions_stream]
type = "kafka"
batch_source = "transactions"
brokers = ["{broker}"]
topic = "{topic}"

[views.card_activity]
kind = "aggregation"
entities = ["card"]
source = "transactions_stream"
inputs = {{ amount = "int64", event_timestamp = "timestamp" }}
aggregations = [
  {{ name = "txn_count", function = "count", window = "30d" }},
  {{ name = "amount_sum", function = "sum", input = "amount", window = "30d" }},
]
"#
    ))
}

/// Record `i`: card `i % CARDS`, amount `i`, a few minutes ago.
pub fn transaction(i: usize) -> String {
    let at = skewless_runtime::time::now_micros() - 300_000_000 + i as i64;
    format!(
        r#"{{"card_id": "card-{:02}", "amount": {i}, "event_timestamp": "{}"}}"#,
        i % CARDS,
        skewless_runtime::time::format_timestamp(at)
    )
}

/// The view's count and amount sum over every card, as served.
pub fn kafka_totals(server: &ServerProcess) -> (i64, i64) {
    let cards: Vec<String> = (0..CARDS).map(|c| format!("\"card-{c:02}\"")).collect();
    let (status, answer) = server.post(
        "/get-online-features",
        &format!(
            r#"{{"features": ["card_activity:txn_count", "card_activity:amount_sum"], "entities": {{"card_id": [{}]}}}}"#,
            cards.join(",")
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let sum = |column: usize| {
        (answer["results"][column]["values"].as_array().unwrap().iter())
            .map(|v| v.as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    (sum(1), sum(2))
}

/// Data ending at the current hour, so the 1-day TTL does not expire it.
pub fn fresh_driver_repo() -> TempRepo {
    let end = next_hour();
    let repo = TempRepo::with_data("driver_stats", end);
    repo.ok(&["apply"]);
    repo.ok(&["backfill"]);
    repo
}

/// The newest generated source row of `driver` (by event time, then created),
/// found by a brute-force scan: conv_rate, acc_rate, avg_daily_trips.
pub fn newest_row(driver: i64, end: i64) -> (f32, f32, i64) {
    newest_row_at(driver, end, i64::MAX).unwrap()
}

/// As [`newest_row`], among rows with event time `<= at`.
pub fn newest_row_at(driver: i64, end: i64, at: i64) -> Option<(f32, f32, i64)> {
    let batch = samples::driver_stats(1_000, 720, end, 42);
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let created = batch.column(2).as_primitive::<TimestampMicrosecondType>();
    let best = (0..batch.num_rows())
        .filter(|r| ids.value(*r) == driver && times.value(*r) <= at)
        .max_by_key(|r| (times.value(*r), created.value(*r)))?;
    Some((
        batch.column(3).as_primitive::<Float32Type>().value(best),
        batch.column(4).as_primitive::<Float32Type>().value(best),
        batch.column(5).as_primitive::<Int64Type>().value(best),
    ))
}

/// Another build of an example component (the same code plus one custom
/// section, so another digest), written into `repo`, which is pointed at it.
pub fn swap_in_another_build(repo: &TempRepo, component: &str) {
    let original = example_components().join(format!("{component}.wasm"));
    let mut bytes = std::fs::read(&original).unwrap();
    bytes.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    let rebuilt = repo.path().join(format!("{component}_rebuilt.wasm"));
    std::fs::write(&rebuilt, bytes).unwrap();
    let config = repo.path().join("skewless.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(original.to_str().unwrap(), rebuilt.to_str().unwrap());
    std::fs::write(&config, text).unwrap();
}

/// The arguments of `skewless dataset` of `features` for the spine at
/// `spine`, written to `out`.
pub fn dataset_args<'a>(spine: &'a Path, features: &'a str, out: &'a Path) -> [&'a str; 7] {
    [
        "dataset",
        "--spine",
        spine.to_str().unwrap(),
        "--features",
        features,
        "--out",
        out.to_str().unwrap(),
    ]
}

/// Every batch of a Parquet file, as one.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The example transforms written in other languages than Rust
/// (`examples/transforms/<language>/<name>`), each to match the Rust one bit for bit.
pub const OTHER_LANGUAGES: [&str; 3] = ["python", "js", "c"];

/// An example transform in another language, built now (once per test
/// binary) with `skewless build`'s own function: its component.
pub fn language_example(language: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let key = format!("{language}/{name}");
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(k, _)| *k == key) {
        return path.clone();
    }
    let components = toolchain::build(&root().join("examples/transforms").join(&key), true)
        .unwrap_or_else(|e| panic!("building {key}: {e}"));
    built.push((key, components[0].clone()));
    components[0].clone()
}

/// A deterministic generator of numbers below `bound` (SplitMix64).
pub fn split_mix(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |bound| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

/// Flips one bit of a driver's served conv_rate in a driver_stats store
/// file, behind the store's back (row layout: event_time 8, created 8,
/// digest id 4, validity 1, then conv_rate as f32 LE; see
/// runtime/src/format/layout.rs): the damage `verify` and the skew monitor
/// must find.
pub fn flip_served_conv_rate(repo: &TempRepo, driver: i64) {
    use redb::ReadableTable;
    let latest: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("latest");
    let db = redb::Database::open(repo.store()).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(latest).unwrap();
        let mut key = 1u32.to_be_bytes().to_vec();
        key.push(0x01);
        key.extend_from_slice(&((driver as u64) ^ (1 << 63)).to_be_bytes());
        let mut row = table
            .get(key.as_slice())
            .unwrap()
            .expect("the driver is stored")
            .value()
            .to_vec();
        row[21] ^= 0x01;
        table.insert(key.as_slice(), row.as_slice()).unwrap();
    }
    txn.commit().unwrap();
}
