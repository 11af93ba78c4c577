//! `skewless`: the command line. Parses arguments, calls the runtime
//! library, prints results and errors once. No product logic lives here.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow_array::TimestampMicrosecondArray;
use clap::{Parser, Subcommand};
use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use skewless_runtime::apply::AllowBatchDependent;
use skewless_runtime::online::{self, RawColumn, ReadSpec, Status};
use skewless_runtime::{Views, Workspace, backfill, dataset, invariance, samples, time};
use skewless_server::{Auth, AuthConfig, GetOnlineFeaturesResponse, Scope, Server, ServerLimits};
use skewless_toolchain as toolchain;

mod monitor;

/// The server allocates a few hundred small buffers per request (JSON,
/// Arrow arrays, guest lowering); mimalloc's per-thread free lists make that
/// markedly cheaper than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "skewless",
    version,
    about = "Feature transforms compiled once to WebAssembly, run the same in training and serving"
)]
struct Cli {
    /// The feature repo: the folder holding skewless.toml.
    #[arg(long, global = true, default_value = ".")]
    repo: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the repo (config, components, sources) and record it in the store's registry.
    Apply {
        /// Show the plan without recording it.
        #[arg(long)]
        dry_run: bool,
        /// Record these views (comma-separated; all views if none is named) even though their
        /// transform's output for a row depends on the other rows of its batch.
        #[arg(long, value_name = "VIEW", num_args = 0.., value_delimiter = ',')]
        allow_batch_dependent: Option<Vec<String>>,
    },
    /// Run materialized views over their file sources and store every value.
    Backfill {
        /// Only this view (repeatable).
        #[arg(long = "view")]
        views: Vec<String>,
        /// Only rows with event time at or after this (e.g. 2021-04-12 or 2021-04-12T10:00:00Z).
        #[arg(long)]
        start: Option<String>,
        /// Only rows with event time before this.
        #[arg(long)]
        end: Option<String>,
        /// Rows per transaction: the most a crash can lose (the rest is kept; rerun to complete).
        #[arg(long, default_value_t = backfill::DEFAULT_ROWS_PER_COMMIT)]
        rows_per_commit: usize,
    },
    /// Store a view's values computed elsewhere (by skewless.spark / skewless.ray) as backfill would.
    Import {
        /// The materialized view the values belong to.
        #[arg(long)]
        view: String,
        /// A Parquet file, or a folder of them (partition folders included).
        #[arg(long = "from")]
        from: PathBuf,
        /// Rows per transaction: the most a crash can lose (rerun to complete).
        #[arg(long, default_value_t = backfill::DEFAULT_ROWS_PER_COMMIT)]
        rows_per_commit: usize,
    },
    /// Read features for entities from the store, computing on-demand views.
    Get {
        /// Entity keys, e.g. driver_id=1001 or driver_id=1001,1002 (repeatable).
        #[arg(long = "entity", required = true)]
        entities: Vec<String>,
        /// Features as view:feature or view, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// A feature service.
        #[arg(long)]
        service: Option<String>,
        /// Request fields for on-demand views, e.g. val_to_add=10 (repeatable).
        #[arg(long = "request")]
        requests: Vec<String>,
        /// Name columns view__feature.
        #[arg(long)]
        full_feature_names: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Read as of this time (e.g. 2026-11-20T10:00:00Z): the values a model would have been
        /// served then, from the history, TTL counted back from it.
        #[arg(long)]
        at: Option<String>,
    },
    /// Point-in-time correct training data: features as of each labelled event of a spine.
    Dataset {
        /// The spine: Parquet or CSV, one row per labelled event (entity keys, an event time).
        #[arg(long)]
        spine: PathBuf,
        /// Features as view:feature or view, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// A feature service.
        #[arg(long)]
        service: Option<String>,
        /// The output: .parquet or .csv.
        #[arg(long)]
        out: PathBuf,
        /// The spine's event-time column.
        #[arg(long, default_value = "event_timestamp")]
        timestamp_column: String,
        /// Name feature columns view__feature.
        #[arg(long)]
        full_feature_names: bool,
        /// Join values of one view produced by different transform digests.
        #[arg(long)]
        allow_mixed_digests: bool,
    },
    /// Prove online/offline parity: read sampled entities through the server's path and the
    /// dataset's path and compare bit for bit; report stale materializations; probe every
    /// transform for batch invariance and state. Exits non-zero on any difference.
    Verify {
        /// Entities sampled per materialized view.
        #[arg(long, default_value_t = 1_000)]
        samples: usize,
        /// Seed for where the probes split batches (default: a new one each run, printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Show the statistics of a materialized view's features (count, nulls, min, max, mean,
    /// stddev, quantiles, histogram, distinct values, most frequent strings).
    Stats {
        /// VIEW or VIEW:FEATURE (one feature in detail).
        target: String,
        /// Only stored rows with event time at or after this (read from the store's history).
        #[arg(long)]
        from: Option<String>,
        /// Only stored rows with event time before this.
        #[arg(long)]
        to: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare served values (the server's logs) or stored values with a training set, per
    /// feature: PSI, Kolmogorov-Smirnov, null rate. Exits 2 when a threshold of
    /// `[monitoring.drift]` is crossed, so a scheduler can act on it.
    Drift {
        /// The training set (Parquet, as `skewless dataset` writes it).
        #[arg(long, value_name = "TRAINING.parquet")]
        baseline: PathBuf,
        /// Only values served at or after this time.
        #[arg(long)]
        since: Option<String>,
        /// Compare stored values with event time at or after this instead of served ones.
        #[arg(long)]
        from: Option<String>,
        /// Compare stored values with event time before this instead of served ones.
        #[arg(long)]
        to: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the store (one commit's state) while servers and backfills
    /// carry on: to keep, or to seed another server replica.
    Backup {
        /// The copy to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Serve features over HTTP: Feast's API, on-demand views, push; until Ctrl-C or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6566")]
        addr: String,
        #[command(flatten)]
        limits: ServeLimits,
        #[command(flatten)]
        security: Box<ServeSecurity>,
        #[command(flatten)]
        monitoring: ServeMonitoring,
        #[command(flatten)]
        replication: ServeReplication,
    },
    /// Manage the server's bearer tokens (the tokens file holds their hashes only).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List entities, views, features and services recorded in the registry.
    Ls,
    /// Show one entity, source, view or service.
    Describe {
        /// Its name.
        name: String,
    },
    /// Build a transform project into a WebAssembly component. The language is
    /// told by the entry file: Cargo.toml (Rust; a workspace builds every
    /// crate), transform.py (Python), transform.js (JavaScript), transform.c (C).
    Build {
        /// The project folder.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Make a new transform project, which is also a feature repo: then
    /// `skewless build NAME` and `skewless --repo NAME apply`, `backfill`, `get`.
    New {
        /// The language: rust, python, js or c.
        #[arg(long, default_value = "rust")]
        lang: toolchain::Language,
        /// The folder to create; its name names the transform and its view.
        name: PathBuf,
    },
    /// Write an example repo's sample data (driver_stats, fraud, rides) into `<repo>/data/`,
    /// ending now. For fraud, `--events` writes that many bursty card transactions instead.
    SampleData {
        /// driver_stats, fraud or rides.
        example: String,
        /// fraud: card transactions to write (e.g. 1000000).
        #[arg(long)]
        events: Option<usize>,
        /// fraud with --events: cards.
        #[arg(long, default_value_t = 10_000)]
        cards: usize,
        /// fraud with --events: days of history.
        #[arg(long, default_value_t = 60)]
        days: i64,
    },
    /// Run the driver_stats example end to end: build, generate data, apply, backfill, read.
    Demo {
        /// The examples folder (holding transforms/ and repos/).
        #[arg(long)]
        examples: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token, record its hash in the tokens file, and print it (once: keep it).
    Add {
        /// A name for who holds it, e.g. `trainer` or `ingest`.
        name: String,
        /// What it grants: read, push, admin (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// The tokens file (default: `[server.auth] tokens` in skewless.toml, else tokens.toml).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Who may call the server, and over what.
#[derive(clap::Args, Default)]
struct ServeSecurity {
    /// Tokens file of hashes and scopes (default: `[server.auth] tokens` in skewless.toml).
    #[arg(long, env = "SKEWLESS_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// JWKS file of an identity provider's public keys: accept its RS256/ES256 JWTs.
    #[arg(long, env = "SKEWLESS_JWKS", value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The JWT claim holding scopes (default `scope`).
    #[arg(long, env = "SKEWLESS_JWT_SCOPES_CLAIM", value_name = "CLAIM")]
    jwt_scopes_claim: Option<String>,
    /// Accept only JWTs from this issuer (`iss`).
    #[arg(long, env = "SKEWLESS_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Accept only JWTs for this audience (`aud`).
    #[arg(long, env = "SKEWLESS_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Serve an address other than loopback with no authentication configured.
    #[arg(long)]
    insecure_no_auth: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
}

/// What the server samples of its answers (over `[monitoring]`).
#[derive(clap::Args, Default)]
struct ServeMonitoring {
    /// Share of answers logged to Parquet in `[monitoring] log_folder` (0: none; default 0.1).
    #[arg(long, value_name = "SHARE")]
    log_sample_rate: Option<f64>,
    /// Share of answers the skew monitor reads again through the offline path (0: none; default 0.01).
    #[arg(long, value_name = "SHARE")]
    skew_sample_rate: Option<f64>,
}

/// Replicated serving: many servers fed by one NATS JetStream stream.
#[derive(clap::Args, Default)]
struct ServeReplication {
    /// Publish pushes to this NATS JetStream log (nats://HOST:PORT) and apply
    /// the log, in order, to this server's store; start every replica with it.
    #[arg(long, value_name = "URL")]
    log: Option<String>,
    /// The JetStream stream (created if missing, on subject STREAM.push).
    #[arg(long, default_value = "skewless", requires = "log")]
    stream: String,
    /// Answer a push once the log stored it, not once this replica applied it.
    #[arg(long, requires = "log")]
    ack_on_log: bool,
    /// /health is ready while at most this many log messages are not applied yet.
    #[arg(long, default_value_t = 100, requires = "log")]
    max_lag: u64,
}

/// What one request may ask of the server.
#[derive(clap::Args)]
struct ServeLimits {
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = ServerLimits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most entity rows per read, or rows per push.
    #[arg(long, default_value_t = ServerLimits::default().max_rows)]
    max_rows: usize,
    /// Time limit per request, transform calls included (e.g. 500ms, 2s).
    #[arg(long, default_value_t = ServerLimits::default().request_timeout.into())]
    request_timeout: humantime::Duration,
    /// Requests worked on at once; more are answered 503 `overloaded` with Retry-After.
    #[arg(long, default_value_t = ServerLimits::default().max_in_flight,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_in_flight: usize,
}

impl From<ServeLimits> for ServerLimits {
    fn from(l: ServeLimits) -> Self {
        ServerLimits {
            max_body_bytes: l.max_body_bytes,
            max_rows: l.max_rows,
            request_timeout: l.request_timeout.into(),
            max_in_flight: l.max_in_flight,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SKEWLESS_LOG"))
        .with_writer(std::io::stderr)
        .init();
    if let Err(error) = run(cli) {
        eprintln!("{} {error:#}", paint("error:", "1;31"));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Apply {
            dry_run,
            allow_batch_dependent,
        } => {
            let allow = match allow_batch_dependent {
                None => AllowBatchDependent::None,
                Some(views) if views.is_empty() => AllowBatchDependent::All,
                Some(views) => AllowBatchDependent::Views(views),
            };
            cmd_apply(&cli.repo, dry_run, &allow)
        }
        Command::Backfill {
            views,
            start,
            end,
            rows_per_commit,
        } => {
            let options = backfill::BackfillOptions {
                views,
                start: start
                    .as_deref()
                    .map(time::parse_timestamp)
                    .transpose()
                    .map_err(anyhow::Error::msg)
                    .context("--start")?,
                end: end
                    .as_deref()
                    .map(time::parse_timestamp)
                    .transpose()
                    .map_err(anyhow::Error::msg)
                    .context("--end")?,
                rows_per_commit: rows_per_commit.max(1),
            };
            cmd_backfill(&cli.repo, &options)
        }
        Command::Import {
            view,
            from,
            rows_per_commit,
        } => cmd_import(
            &cli.repo,
            &backfill::ImportOptions {
                view,
                from,
                rows_per_commit: rows_per_commit.max(1),
            },
        ),
        Command::Get {
            entities,
            features,
            service,
            requests,
            full_feature_names,
            json,
            at,
        } => {
            let as_of = match at {
                None => online::AsOf::Latest,
                Some(text) => online::AsOf::At(
                    time::parse_timestamp(&text)
                        .map_err(anyhow::Error::msg)
                        .context("--at")?,
                ),
            };
            cmd_get(
                &cli.repo,
                &Read {
                    entities,
                    features,
                    service,
                    requests,
                    full_feature_names,
                    json,
                    as_of,
                },
            )
        }
        Command::Dataset {
            spine,
            features,
            service,
            out,
            timestamp_column,
            full_feature_names,
            allow_mixed_digests,
        } => {
            if features.is_empty() && service.is_none() {
                bail!("say which features to join: --features view:feature,... or --service NAME");
            }
            cmd_dataset(
                &cli.repo,
                &dataset::DatasetOptions {
                    spine,
                    out,
                    join: dataset::JoinOptions {
                        features,
                        service,
                        timestamp_column,
                        full_feature_names,
                        allow_mixed_digests,
                    },
                },
            )
        }
        Command::Verify { samples, seed } => cmd_verify(&cli.repo, samples, seed),
        Command::Stats { target, from, to, json } => {
            monitor::cmd_stats(&cli.repo, &target, from.as_deref(), to.as_deref(), json)
        }
        Command::Drift {
            baseline,
            since,
            from,
            to,
            json,
        } => {
            let drifted = monitor::cmd_drift(
                &cli.repo,
                &baseline,
                since.as_deref(),
                (from.as_deref(), to.as_deref()),
                json,
            )?;
            if drifted {
                eprintln!("{} a feature crossed its drift threshold", paint("drift:", "1;33"));
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Backup { out } => cmd_backup(&cli.repo, &out),
        Command::Serve {
            addr,
            limits,
            security,
            monitoring,
            replication,
        } => cmd_serve(
            &cli.repo,
            &addr,
            limits.into(),
            &security,
            &monitoring,
            &replication,
            None,
        ),
        Command::Token(TokenCommand::Add { name, scopes, file }) => cmd_token_add(&cli.repo, &name, &scopes, file),
        Command::Ls => cmd_ls(&cli.repo),
        Command::SampleData {
            example,
            events,
            cards,
            days,
        } => cmd_sample_data(&cli.repo, &example, events, cards, days),
        Command::Describe { name } => cmd_describe(&cli.repo, &name),
        Command::Build { path } => {
            let started = Instant::now();
            let components = toolchain::build(&path, false)?;
            for component in components {
                status(
                    "Built",
                    &format!("{} in {:.1}s", component.display(), started.elapsed().as_secs_f64()),
                );
            }
            Ok(())
        }
        Command::New { lang, name } => cmd_new(lang, &name),
        Command::Demo { examples } => cmd_demo(examples),
    }
}

fn cmd_new(language: toolchain::Language, dir: &Path) -> Result<()> {
    toolchain::new_project(language, dir, time::now_micros(), time::format_timestamp)?;
    let shown = dir.display();
    status(
        "Created",
        &format!("{} transform and feature repo `{shown}`", language.name()),
    );
    eprintln!(
        "\nNext:\n  cd {shown}\n  skewless build .\n  skewless apply\n  skewless backfill\n  skewless get --entity rider_id=7,8 --features {}:speed_kmh",
        dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    );
    Ok(())
}

/// Prints a cargo-style status line to stderr: a right-aligned green verb.
fn status(verb: &str, message: &str) {
    eprintln!("{} {message}", paint(&format!("{verb:>12}"), "1;32"));
}

fn paint(text: &str, style: &str) -> String {
    if std::io::stderr().is_terminal() {
        format!("\x1b[{style}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn cmd_apply(dir: &Path, dry_run: bool, allow: &AllowBatchDependent) -> Result<()> {
    let workspace = Workspace::create(dir)?;
    let plan = workspace.plan(allow)?;
    for warning in &plan.warnings {
        eprintln!("{} {warning}", paint("warning:", "1;33"));
    }
    let project = &workspace.repo().project;
    if !plan.has_changes() {
        status("Unchanged", &format!("{project} is up to date"));
        return Ok(());
    }
    print!("{plan}");
    if dry_run {
        status("Planned", "nothing recorded (--dry-run)");
        return Ok(());
    }
    workspace.apply(plan)?;
    status(
        "Applied",
        &format!("{project} to {}", workspace.store().path().display()),
    );
    Ok(())
}

fn cmd_backfill(dir: &Path, options: &backfill::BackfillOptions) -> Result<()> {
    let workspace = Workspace::open(dir, Views::Materialized(&options.views))?;
    let progress = rows_progress("Backfilling");
    let summaries = workspace.backfill(options, &progress)?;
    progress.finish_and_clear();
    for s in summaries {
        let secs = s.elapsed.as_secs_f64();
        status(
            "Backfilled",
            &format!(
                "{}: {} rows in {:.2}s ({:.0} rows/s), {} commits{}",
                s.view,
                s.rows_written,
                secs,
                s.rows_written as f64 / secs.max(1e-9),
                s.commits.len(),
                if s.rows_skipped > 0 {
                    format!(
                        ", {} rows skipped (no key or time, or outside --start/--end)",
                        s.rows_skipped
                    )
                } else {
                    String::new()
                }
            ),
        );
        if s.row_errors > 0 {
            eprintln!(
                "{} view `{}`: {} rows failed in the transform and were stored with null features; first:",
                paint("warning:", "1;33"),
                s.view,
                s.row_errors
            );
            for e in &s.first_errors {
                eprintln!("    {e}");
            }
        }
    }
    Ok(())
}

fn cmd_import(dir: &Path, options: &backfill::ImportOptions) -> Result<()> {
    let workspace = Workspace::open(dir, Views::Materialized(std::slice::from_ref(&options.view)))?;
    let progress = rows_progress("Importing");
    let s = workspace.import(options, &progress)?;
    progress.finish_and_clear();
    let secs = s.elapsed.as_secs_f64();
    status(
        "Imported",
        &format!(
            "{}: {} rows from {} in {:.2}s ({:.0} rows/s), {} commits{}",
            s.view,
            s.rows_written,
            options.from.display(),
            secs,
            s.rows_written as f64 / secs.max(1e-9),
            s.commits.len(),
            if s.rows_skipped > 0 {
                format!(", {} rows skipped (no key or time)", s.rows_skipped)
            } else {
                String::new()
            }
        ),
    );
    Ok(())
}

/// A progress bar over rows, cargo-style: rows, rows/s, ETA.
fn rows_progress(prefix: &'static str) -> ProgressBar {
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix:>12.cyan.bold} {msg} [{bar:30}] {human_pos}/{human_len} rows, {rate}, ETA {eta}",
        )
        .expect("valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} rows/s", state.per_sec());
            },
        )
        .progress_chars("=> "),
    );
    progress.set_prefix(prefix);
    progress
}

fn cmd_dataset(dir: &Path, options: &dataset::DatasetOptions) -> Result<()> {
    let workspace = Workspace::open(dir, Views::All)?;
    let progress = rows_progress("Joining");
    progress.set_message(options.spine.display().to_string());
    let summary = workspace.dataset(options, &progress)?;
    progress.finish_and_clear();
    let secs = summary.elapsed.as_secs_f64();
    status(
        "Wrote",
        &format!(
            "{} rows to {} in {:.2}s ({:.0} rows/s)",
            summary.rows,
            options.out.display(),
            secs,
            summary.rows as f64 / secs.max(1e-9)
        ),
    );
    for (view, lineage) in &summary.lineage.views {
        let stale = !lineage.produced_by.is_empty() && lineage.produced_by.iter().any(|d| *d != lineage.digest);
        if stale {
            eprintln!(
                "{} view `{view}`: stored values were produced by another build of its component than the repo names now; `skewless backfill --view {view}` rematerializes them",
                paint("warning:", "1;33")
            );
        }
    }
    Ok(())
}

fn cmd_backup(dir: &Path, out: &Path) -> Result<()> {
    let repo = skewless_runtime::Repo::open(dir)?;
    let store = skewless_runtime::Store::open_existing(&repo.store_path)?;
    let backup = store.backup(out)?;
    status(
        "Backed up",
        &format!(
            "{} as of commit {}{} to {} ({} entries, {:.1} MB) in {:.2}s; serve it with `store = \"{}\"` in a \
             copy of skewless.toml",
            repo.store_path.display(),
            backup.commit,
            match backup.log_sequence {
                0 => String::new(),
                n => format!(" and replication-log message {n} (a replica started from it replays the log after it)"),
            },
            backup.path.display(),
            backup.entries,
            backup.bytes as f64 / 1e6,
            backup.elapsed.as_secs_f64(),
            backup.path.display()
        ),
    );
    Ok(())
}

fn cmd_verify(dir: &Path, samples: usize, seed: Option<u64>) -> Result<()> {
    let seed = seed.unwrap_or_else(|| time::now_micros() as u64);
    let report = Workspace::open(dir, Views::All)?.verify(samples, seed)?;
    if report.compared == 0 && report.stale.is_empty() {
        bail!(
            "nothing to verify: no stored values of this repo's views; run `skewless apply` and `skewless backfill` first"
        );
    }
    let (ok, failed, allowed) = (paint("ok", "1;32"), paint("FAILED", "1;31"), paint("allowed", "1;33"));
    for probe in &report.probes {
        let view = &probe.view;
        println!("view {view}");
        let (compared, differing) = report.compared_in(view);
        if compared > 0 {
            let verdict = if differing == 0 { &ok } else { &failed };
            println!(
                "  {:<18} {verdict:<6} {differing} of {compared} sampled values differ between the server's path and the dataset's",
                "online = offline"
            );
        }
        if report.views.contains(view) {
            let stale = report.stale.iter().find(|s| &s.view == view);
            let (verdict, text) = match stale {
                None => (
                    &ok,
                    "every stored value was computed by the repo's component".to_string(),
                ),
                Some(s) => (
                    &failed,
                    format!("values computed by another component than {}", s.current.short()),
                ),
            };
            println!("  {:<18} {verdict:<6} {text}", "staleness");
        }
        match &probe.result {
            Ok(probed) => {
                println!("  {:<18} {ok:<6} {probed}", "batch invariance");
                println!(
                    "  {:<18} {ok:<6} every call started afresh: the same rows gave the same values in every call",
                    "state"
                );
            }
            Err(found) => {
                let verdict = if probe.allowed { &allowed } else { &failed };
                let check = if found.how == invariance::Arrangement::Again {
                    "state"
                } else {
                    "batch invariance"
                };
                println!("  {check:<18} {verdict:<6} {found}");
            }
        }
    }
    for tiles in &report.tiles {
        let view = &tiles.view;
        if !report.probes.iter().any(|p| &p.view == view) {
            println!("view {view}");
            let (compared, differing) = report.compared_in(view);
            let verdict = if differing == 0 { &ok } else { &failed };
            println!(
                "  {:<18} {verdict:<6} {differing} of {compared} sampled values differ between the server's path and the dataset's",
                "online = offline"
            );
        }
        let verdict = if tiles.mismatches.is_empty() { &ok } else { &failed };
        println!(
            "  {:<18} {verdict:<6} {} of {} tiles differ from their recomputation from {} raw events",
            "tiles",
            tiles.mismatches.len(),
            tiles.tiles,
            tiles.events
        );
        for mismatch in tiles.mismatches.iter().take(5) {
            eprintln!("{} view `{view}`: {mismatch}", paint("tile:", "1;31"));
        }
    }
    const SHOWN: usize = 20;
    for d in report.differences.iter().take(SHOWN) {
        eprintln!(
            "{} `{}:{}` for {}: online {} but offline {}",
            paint("difference:", "1;31"),
            d.view,
            d.feature,
            d.entity,
            d.online,
            d.offline
        );
    }
    if report.differences.len() > SHOWN {
        eprintln!("... and {} more differences", report.differences.len() - SHOWN);
    }
    for s in &report.stale {
        let by = |counts: Vec<(String, String)>| {
            counts
                .into_iter()
                .map(|(d, n)| format!("{n} by {d}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !s.latest.is_empty() {
            let counts = s.latest.iter().map(|(d, n)| (d.clone(), n.to_string())).collect();
            parts.push(format!("of {} entities' served values, {}", s.entities, by(counts)));
        }
        if !s.history.is_empty() {
            let counts = s.history.iter().map(|(d, n)| (d.clone(), n.to_string())).collect();
            parts.push(format!("of {} stored rows (training data), {}", s.rows, by(counts)));
        }
        eprintln!(
            "{} view `{}`: {} (the repo's component is {}); run `skewless --repo {} backfill --view {}` to rematerialize",
            paint("stale:", "1;33"),
            s.view,
            parts.join("; "),
            s.current.short(),
            dir.display(),
            s.view
        );
    }
    // Replicas compare this line: the same values give the same digest.
    let store = skewless_runtime::Store::open_existing(&skewless_runtime::Repo::open(dir)?.store_path)?;
    let skipped = store.skipped_messages()?;
    println!(
        "store\n  {:<18} {} (log message {}, {} skipped{})",
        "content digest",
        store.content_digest()?.hex(),
        store.log_sequence()?,
        skipped.len(),
        skipped
            .iter()
            .map(|(sequence, _)| format!(" #{sequence}"))
            .collect::<String>()
    );
    let failing: Vec<&str> = report
        .probes
        .iter()
        .filter(|p| p.fails())
        .map(|p| p.view.as_str())
        .collect();
    if !failing.is_empty() {
        eprintln!(
            "{} {} depend on their batch or on earlier calls: a served value would differ from the trained one \
             (`skewless apply --allow-batch-dependent VIEW` records a known case)",
            paint("batch-dependent:", "1;31"),
            failing.join(", ")
        );
    }
    if !report.is_clean() {
        let tiles: usize = report.tiles.iter().map(|t| t.mismatches.len()).sum();
        bail!(
            "{} differences in {} values compared, {} stale views, {} views failing the batch probe, \
             {tiles} tiles differing from their events (seed {seed})",
            report.differences.len(),
            report.compared,
            report.stale.len(),
            failing.len()
        );
    }
    status(
        "Verified",
        &format!(
            "{} values of {} views: online (server) and offline (dataset) paths agree bit for bit; nothing stale; \
             {} transforms batch-invariant and stateless; {} aggregation tiles equal their events (seed {seed})",
            report.compared,
            report.views.len(),
            report.probes.iter().filter(|p| p.result.is_ok()).count(),
            report.tiles.iter().map(|t| t.tiles).sum::<u64>()
        ),
    );
    Ok(())
}

/// Parses `key=v1,v2` arguments into ordered columns of text values.
fn parse_pairs(args: &[String], flag: &str) -> Result<IndexMap<String, Vec<String>>> {
    let mut out: IndexMap<String, Vec<String>> = IndexMap::new();
    for arg in args {
        let Some((key, values)) = arg.split_once('=') else {
            bail!("{flag} {arg}: expected NAME=VALUE[,VALUE...]");
        };
        out.entry(key.trim().to_string())
            .or_default()
            .extend(values.split(',').map(|v| v.trim().to_string()));
    }
    Ok(out)
}

/// What `skewless get` reads.
struct Read {
    entities: Vec<String>,
    features: Vec<String>,
    service: Option<String>,
    requests: Vec<String>,
    full_feature_names: bool,
    json: bool,
    as_of: online::AsOf,
}

fn cmd_get(dir: &Path, read: &Read) -> Result<()> {
    let Read {
        entities,
        features,
        service,
        requests,
        full_feature_names,
        json,
        as_of,
    } = read;
    let (service, json) = (service.as_deref(), *json);
    let workspace = Workspace::open(dir, Views::Read { features, service })?;
    let entities = parse_pairs(entities, "--entity")?;
    let requests = parse_pairs(requests, "--request")?;
    let response = workspace.read(ReadSpec {
        features,
        service,
        columns: entities
            .iter()
            .chain(&requests)
            .map(|(name, values)| (name.as_str(), RawColumn::Text(values)))
            .collect(),
        full_feature_names: *full_feature_names,
        as_of: as_of.clone(),
        deadline: None,
    })?;

    if json {
        let body = GetOnlineFeaturesResponse::from_online(&response, true);
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    // Arrow prints a named zone only with its time-zone database; every timestamp here is UTC.
    let columns: Vec<arrow_array::ArrayRef> = response
        .columns
        .iter()
        .map(
            |c| match c.values.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                Some(ts) => std::sync::Arc::new(ts.clone().with_timezone_opt(None::<String>)),
                None => c.values.clone(),
            },
        )
        .collect();
    let fields: Vec<_> = response
        .columns
        .iter()
        .zip(&columns)
        .map(|(c, a)| arrow_schema::Field::new(&c.name, a.data_type().clone(), true))
        .collect();
    let batch = arrow_array::RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), columns)?;
    println!("{}", arrow_cast::pretty::pretty_format_batches(&[batch])?);
    for column in &response.columns {
        for (row, s) in column.statuses.iter().enumerate() {
            if matches!(s, Status::NotFound | Status::OutsideMaxAge) {
                eprintln!(
                    "note: row {row}: `{}` is {}",
                    column.name,
                    serde_json::to_value(s)?.as_str().unwrap_or_default()
                );
            }
        }
    }
    for (view, e) in &response.row_errors {
        eprintln!(
            "{} view `{view}`: row {}: {}",
            paint("warning:", "1;33"),
            e.row,
            e.message
        );
    }
    Ok(())
}

/// Serves the repo until Ctrl-C or SIGTERM; `example` is a request body to
/// print as a ready-to-paste curl line once listening.
fn cmd_serve(
    dir: &Path,
    addr: &str,
    limits: ServerLimits,
    security: &ServeSecurity,
    sampling: &ServeMonitoring,
    replication: &ServeReplication,
    example: Option<&str>,
) -> Result<()> {
    let started = Instant::now();
    let workspace = Workspace::open(dir, Views::All)?;
    let auth = load_auth(&workspace.catalog().repo.server.auth, security)?;
    let loopback_only = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("--addr {addr} is not HOST:PORT"))?
        .all(|a| a.ip().is_loopback());
    if !auth.enabled() && !loopback_only && !security.insecure_no_auth {
        bail!(
            "refusing to serve {addr} without authentication: anyone who can reach it could read every \
             feature and push values into any of them.\n  Make a token: `skewless token add NAME --scopes read` \
             and set `[server.auth] tokens = \"tokens.toml\"` in skewless.toml (or --tokens / --jwks),\n  or \
             serve 127.0.0.1, or pass --insecure-no-auth if something in front of the server authenticates"
        );
    }
    let auth_summary = if auth.enabled() { "bearer auth" } else { "no auth" };
    let mut settings = skewless_server::monitor::MonitorSettings::from(&workspace.catalog().repo.monitoring);
    for (flag, rate, setting) in [
        (
            "--log-sample-rate",
            sampling.log_sample_rate,
            &mut settings.log_sample_rate,
        ),
        (
            "--skew-sample-rate",
            sampling.skew_sample_rate,
            &mut settings.skew_sample_rate,
        ),
    ] {
        if let Some(rate) = rate {
            if !(0.0..=1.0).contains(&rate) {
                bail!("{flag} {rate}: a share between 0 and 1 (e.g. 0.1 for one answer in ten)");
            }
            *setting = rate;
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let (state, replicated) = match &replication.log {
            None => (
                Server::with_monitoring(workspace, limits, auth, &settings)?,
                String::new(),
            ),
            Some(url) => {
                let applied = workspace.store().log_sequence()?;
                let log = skewless_server::LogSettings {
                    url: url.clone(),
                    stream: replication.stream.clone(),
                    ack_on_log: replication.ack_on_log,
                    max_lag: replication.max_lag,
                };
                let state = Server::replicated(workspace, limits, auth, &settings, log).await?;
                (
                    state,
                    format!(
                        ", replica of {url} stream `{}` from message {}",
                        replication.stream,
                        applied + 1
                    ),
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another server running? choose one with --addr)"))?;
        let local = listener.local_addr()?;
        let scheme = if security.tls_cert.is_some() { "https" } else { "http" };
        let repo = &state.catalog().repo;
        status(
            "Serving",
            &format!(
                "{} on {scheme}://{local} ({} views, {auth_summary}{replicated}) after {:.0} ms; Ctrl-C to stop",
                repo.project,
                repo.views.len(),
                started.elapsed().as_secs_f64() * 1e3
            ),
        );
        if let Some(body) = example {
            eprintln!("\nTry:\n  curl -s -X POST {scheme}://{local}/get-online-features -d '{body}'\n");
        }
        let shutdown = skewless_server::shutdown_signal();
        match (&security.tls_cert, &security.tls_key) {
            (Some(cert), Some(key)) => skewless_server::serve_tls(listener, state.clone(), cert, key, shutdown).await?,
            _ => skewless_server::serve(listener, state.clone(), shutdown).await?,
        }
        state.finish_monitoring();
        status(
            "Stopped",
            "in-flight requests answered, served-value logs written, store closed",
        );
        Ok(())
    })
}

/// The server's credentials: flags and environment over `[server.auth]`.
fn load_auth(settings: &skewless_runtime::repo::AuthSettings, flags: &ServeSecurity) -> Result<Auth> {
    let config = AuthConfig {
        tokens: flags.tokens.clone().or_else(|| settings.tokens.clone()),
        jwks: flags.jwks.clone().or_else(|| settings.jwks.clone()),
        scopes_claim: (flags.jwt_scopes_claim.clone())
            .or_else(|| settings.scopes_claim.clone())
            .unwrap_or_else(|| "scope".into()),
        issuer: flags.jwt_issuer.clone().or_else(|| settings.issuer.clone()),
        audience: flags.jwt_audience.clone().or_else(|| settings.audience.clone()),
    };
    Ok(Auth::load(&config)?)
}

fn cmd_token_add(dir: &Path, name: &str, scopes: &[String], file: Option<PathBuf>) -> Result<()> {
    let scopes = scopes
        .iter()
        .map(|s| Scope::parse(s.trim()).with_context(|| format!("unknown scope `{s}`: read, push or admin")))
        .collect::<Result<Vec<_>>>()?;
    // Outside a repo, tokens.toml here; in one, the file it names.
    let configured = match dir.join("skewless.toml").exists() {
        true => skewless_runtime::Repo::open(dir)?.server.auth.tokens,
        false => None,
    };
    let path = file.or(configured.clone()).unwrap_or_else(|| dir.join("tokens.toml"));
    let token = skewless_server::auth::add_token(&path, name, scopes)?;
    status("Added", &format!("token `{name}` to {}", path.display()));
    if configured.is_none() {
        eprintln!(
            "note: skewless.toml names no tokens file; add\n\n  [server.auth]\n  tokens = \"{}\"\n\nor pass `skewless serve --tokens {}`",
            path.strip_prefix(dir).unwrap_or(&path).display(),
            path.display()
        );
    }
    eprintln!("The token (shown once; send it as `Authorization: Bearer TOKEN`):");
    println!("{token}");
    Ok(())
}

fn cmd_sample_data(dir: &Path, example: &str, events: Option<usize>, cards: usize, days: i64) -> Result<()> {
    let end = time::now_micros();
    let paths = match (example, events) {
        ("fraud", Some(events)) => {
            if cards == 0 || days <= 0 {
                bail!("--cards and --days must be greater than 0");
            }
            let batch = samples::card_transactions(cards, events, days, end, 7);
            let path = dir.join("data/transactions.parquet");
            samples::write_parquet(&path, &batch).with_context(|| format!("cannot write {}", path.display()))?;
            vec![path]
        }
        (_, Some(_)) => bail!("--events is for the fraud example"),
        (example, None) => samples::generate(example, dir, end).map_err(anyhow::Error::msg)?,
    };
    for path in paths {
        status("Generated", &path.display().to_string());
    }
    Ok(())
}

fn cmd_ls(dir: &Path) -> Result<()> {
    print!("{}", Workspace::registry_of(dir)?);
    Ok(())
}

fn cmd_describe(dir: &Path, name: &str) -> Result<()> {
    match Workspace::registry_of(dir)?.describe(name) {
        Some(text) => {
            print!("{text}");
            Ok(())
        }
        None => bail!("nothing named `{name}` in the registry (run `skewless ls`; `skewless apply` records the repo)"),
    }
}

fn cmd_demo(examples: Option<PathBuf>) -> Result<()> {
    let examples = examples.unwrap_or_else(|| {
        let here = PathBuf::from("examples");
        if here.join("repos").exists() {
            here
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
        }
    });
    let repo_dir = examples.join("repos").join("driver_stats");
    let started = Instant::now();

    status("Building", "example transforms for wasm32-wasip2");
    for component in toolchain::build_rust(&examples.join("transforms"), false)? {
        status("Built", &component.display().to_string());
    }
    let end = time::now_micros() / 3_600_000_000 * 3_600_000_000 + 3_600_000_000;
    for path in samples::generate("driver_stats", &repo_dir, end).map_err(anyhow::Error::msg)? {
        status("Generated", &format!("{} (1,000 drivers x 720 hours)", path.display()));
    }
    cmd_apply(&repo_dir, false, &AllowBatchDependent::None)?;
    cmd_backfill(&repo_dir, &backfill::BackfillOptions::default())?;
    status(
        "Reading",
        "drivers 1001-1003 online, with the on-demand view (val_to_add=1000)",
    );
    cmd_get(
        &repo_dir,
        &Read {
            entities: vec!["driver_id=1001,1002,1003".into()],
            features: vec![
                "driver_hourly_stats:conv_rate".into(),
                "driver_hourly_stats:acc_rate".into(),
                "driver_hourly_stats:avg_daily_trips".into(),
                "transformed_conv_rate".into(),
            ],
            service: None,
            requests: vec!["val_to_add=1000".into()],
            full_feature_names: false,
            json: false,
            as_of: online::AsOf::Latest,
        },
    )?;
    status(
        "Finished",
        &format!(
            "demo data in {:.1}s; store: {}",
            started.elapsed().as_secs_f64(),
            repo_dir.join(".skewless/store.redb").display()
        ),
    );
    // The same read over HTTP, Feast's way.
    let example = r#"{"feature_service": "driver_activity", "entities": {"driver_id": [1001, 1002], "val_to_add": [1000, 1001]}}"#;
    cmd_serve(
        &repo_dir,
        "127.0.0.1:6566",
        ServerLimits::default(),
        &ServeSecurity::default(),
        &ServeMonitoring::default(),
        &ServeReplication::default(),
        Some(example),
    )
}
