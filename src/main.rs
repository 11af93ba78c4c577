//! `skewless`: the command line. Parses arguments (`args.rs`), makes one
//! library call per command, and prints what it returns: reports through
//! their `Display`, cargo-style status lines, and errors once. No product
//! logic lives here.

mod args;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use args::{Cli, Command, TokenCommand};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use skewless_runtime::apply::AllowBatchDependent;
use skewless_runtime::online::{RawColumn, ReadSpec};
use skewless_runtime::{Repo, Views, Workspace, backfill, samples, time};
use skewless_server::{GetOnlineFeaturesResponse, Scope, ServeConfig};
use skewless_toolchain as toolchain;

/// The server allocates a few hundred small buffers per request (JSON,
/// Arrow arrays, guest lowering); mimalloc's per-thread free lists make that
/// markedly cheaper than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // Warnings (a replication message skipped, a compile cache unusable)
    // are shown unless SKEWLESS_LOG says otherwise, as cargo shows its own.
    let mut filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
        .with_env_var("SKEWLESS_LOG")
        .from_env_lossy();
    if std::env::var_os("SKEWLESS_LOG").is_none() {
        // rskafka warns at every failed attempt to reach a broker; the Kafka
        // source's own error names the source and the address once.
        filter = filter.add_directive("rskafka=error".parse().expect("a valid directive"));
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(Exit::Success) => {}
        Ok(Exit::Drifted) => std::process::exit(2),
        Err(error) => {
            eprintln!("{} {error:#}", paint("error:", "1;31"));
            std::process::exit(1);
        }
    }
}

/// How a command that ran ends: `drift` exits 2 past a threshold, so a
/// scheduler can act on it.
enum Exit {
    Success,
    Drifted,
}

fn run(cli: Cli) -> Result<Exit> {
    let dir = cli.repo.as_path();
    match cli.command {
        Command::Apply {
            dry_run,
            allow_batch_dependent,
        } => cmd_apply(dir, dry_run, &args::allow_batch_dependent(allow_batch_dependent))?,
        // clap refuses the other flags with --incremental.
        Command::Backfill {
            views,
            incremental: true,
            ..
        } => cmd_backfill_incremental(dir, &views)?,
        Command::Backfill {
            views,
            start,
            end,
            rows_per_commit,
            new_version,
            incremental: false,
        } => cmd_backfill(
            dir,
            &args::backfill_options(views, start.as_deref(), end.as_deref(), rows_per_commit)?,
            new_version.as_deref(),
        )?,
        Command::Import(import) => {
            let options = import.options();
            let workspace = Workspace::open(dir, Views::Materialized(std::slice::from_ref(&options.view)))?;
            let progress = rows_progress("Importing");
            let summary = workspace.import(&options, &progress)?;
            progress.finish_and_clear();
            status("Imported", &format!("{summary} from {}", options.from.display()));
        }
        Command::Get(get) => cmd_get(dir, &get)?,
        Command::Search(search) => cmd_search(dir, &search)?,
        Command::Dataset(dataset) => {
            let options = dataset.options()?;
            let workspace = Workspace::open(dir, Views::All)?;
            let progress = rows_progress("Joining");
            progress.set_message(options.spine.display().to_string());
            let summary = workspace.dataset(&options, &progress)?;
            progress.finish_and_clear();
            status("Wrote", &format!("{summary} to {}", options.out.display()));
            summary.stale_warnings().iter().for_each(|w| warn(w));
        }
        Command::Verify { samples, seed } => {
            let seed = seed.unwrap_or_else(|| time::now_micros() as u64);
            let report = Workspace::open(dir, Views::All)?.verify(samples, seed)?;
            if report.is_empty() {
                bail!(
                    "nothing to verify: no stored values of this repo's views; run `skewless apply` and \
                     `skewless backfill` first"
                );
            }
            print!("{report}");
            if !report.is_clean() {
                bail!("{}", report.summary());
            }
            status("Verified", &report.summary());
        }
        Command::Stats(stats) if stats.rebuild => {
            let rebuilt = Workspace::open(dir, Views::None)?.rebuild_statistics(stats.target.as_deref())?;
            for (view, kept) in rebuilt {
                let commit = kept.commit.unwrap_or_default();
                let rows = kept.rows;
                status(
                    "Rebuilt",
                    &format!("statistics of view `{view}`: {rows} stored rows, as of commit {commit}"),
                );
            }
        }
        Command::Stats(stats) => {
            let report = Workspace::open(dir, Views::None)?.stats(&stats.query()?)?;
            if stats.json {
                println!("{}", serde_json::to_string_pretty(&report.summaries)?);
            } else {
                status("Statistics", &report.heading());
                print!("{report}");
            }
        }
        Command::Drift(drift) => {
            let report = Workspace::open(dir, Views::None)?.drift(&drift.query()?)?;
            if drift.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                status("Compared", &format!("{} with {}", report.compared, report.baseline));
                print!("{report}");
            }
            if report.drifted() {
                eprintln!("{} a feature crossed its drift threshold", paint("drift:", "1;33"));
                return Ok(Exit::Drifted);
            }
        }
        Command::Backup { out } => {
            let workspace = Workspace::open(dir, Views::None)?;
            let backup = workspace.backup(&out)?;
            status(
                "Backed up",
                &format!("{} {backup}", workspace.repo().store_path.display()),
            );
        }
        Command::Serve(serve) => cmd_serve(dir, &serve.config(), None)?,
        Command::Swap { version, server, token } => cmd_swap(version.as_deref(), &server, token.as_deref())?,
        Command::Token(TokenCommand::Add { name, scopes, file }) => {
            let scopes = scopes
                .iter()
                .map(|s| Scope::parse(s.trim()).with_context(|| format!("unknown scope `{s}`: read, push or admin")))
                .collect::<Result<Vec<_>>>()?;
            let path = skewless_server::tokens_file(dir, file)?;
            let token = skewless_server::auth::add_token(&path, &name, scopes)?;
            status(
                "Added",
                &format!("token `{name}` to {} (`skewless serve` enforces it)", path.display()),
            );
            eprintln!("The token (shown once; send it as `Authorization: Bearer TOKEN`):");
            println!("{token}");
        }
        Command::Ls => print!("{}", Workspace::registry_of(dir)?),
        Command::Describe { name } => match Workspace::registry_of(dir)?.describe(&name) {
            Some(text) => print!("{text}"),
            None => {
                bail!("nothing named `{name}` in the registry (run `skewless ls`; `skewless apply` records the repo)")
            }
        },
        Command::SampleData {
            example,
            events,
            cards,
            days,
        } => {
            let example = match example {
                Some(example) => example,
                None => example_of(dir)?,
            };
            let events = events.map(|events| samples::CardEvents { events, cards, days });
            for path in samples::sample_data(&example, dir, events, time::now_micros()).map_err(anyhow::Error::msg)? {
                status("Generated", &path.display().to_string());
            }
        }
        Command::Build { path } => {
            let started = Instant::now();
            for component in toolchain::build(&path, false)? {
                let secs = started.elapsed().as_secs_f64();
                status("Built", &format!("{} in {secs:.1}s", component.display()));
            }
        }
        Command::New { lang, name } => {
            toolchain::new_project(lang, &name, time::now_micros(), time::format_timestamp)?;
            let shown = name.display();
            status(
                "Created",
                &format!("{} transform and feature repo `{shown}`", lang.name()),
            );
            eprintln!(
                "\nNext:\n  cd {shown}\n  skewless build .\n  skewless apply\n  skewless backfill\n  skewless get \
                 --entity rider_id=7,8 --features {}:speed_kmh",
                name.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            );
        }
        Command::Demo { examples } => cmd_demo(examples)?,
    }
    Ok(Exit::Success)
}

/// The example whose sample data the repo in `dir` takes: its project's name.
fn example_of(dir: &Path) -> Result<String> {
    let project = Repo::open(dir)
        .context("name the example: `skewless sample-data driver_stats` (or fraud, rides)")?
        .project;
    if !samples::EXAMPLES.contains(&project.as_str()) {
        bail!(
            "project `{project}` is not an example repo; name the example: `skewless sample-data {}`",
            samples::EXAMPLES.join("|")
        );
    }
    Ok(project)
}

/// Prints a cargo-style status line to stderr: a right-aligned green verb.
fn status(verb: &str, message: &str) {
    eprintln!("{} {message}", paint(&format!("{verb:>12}"), "1;32"));
}

fn warn(message: &str) {
    eprintln!("{} {message}", paint("warning:", "1;33"));
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
    plan.warnings.iter().for_each(|w| warn(w));
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

fn cmd_backfill_incremental(dir: &Path, views: &[String]) -> Result<()> {
    let workspace = Workspace::open(dir, Views::Materialized(views))?;
    let window = backfill::MaterializeWindow::Incremental {
        end: skewless_runtime::time::now_micros(),
    };
    for loaded in workspace.materialize(views, window)? {
        let summary = &loaded.summary;
        let from = match (summary.table_version, summary.watermark, loaded.start) {
            (Some(version), _, _) => format!(" (table version {version})"),
            (None, Some(watermark), _) => format!(" (up to watermark {watermark})"),
            (None, None, Some(start)) => format!(" (from {})", skewless_runtime::time::format_timestamp(start)),
            (None, None, None) => String::new(),
        };
        status("Backfilled", &format!("{summary}{from}"));
        if let Some(warning) = summary.row_error_warning() {
            warn(&warning);
        }
    }
    Ok(())
}

fn cmd_backfill(dir: &Path, options: &backfill::BackfillOptions, new_version: Option<&str>) -> Result<()> {
    let workspace = Workspace::open(dir, Views::Materialized(&options.views))?;
    let progress = rows_progress("Backfilling");
    let (summaries, version) = match new_version {
        None => (workspace.backfill(options, &progress)?, None),
        Some(name) => {
            let mut version = workspace.backfill_new_version(name, options, &progress)?;
            (std::mem::take(&mut version.views), Some(version))
        }
    };
    progress.finish_and_clear();
    for summary in summaries {
        status("Backfilled", &summary.to_string());
        if let Some(warning) = summary.row_error_warning() {
            warn(&warning);
        }
    }
    if let Some(version) = version {
        let log = match version.log_sequence {
            0 => String::new(),
            n => format!(", replication-log message {n}"),
        };
        status(
            "Built",
            &format!(
                "store version `{name}` at {path} (a copy of the live store at commit {base}{log}, plus this \
                 backfill); serve it with `skewless swap {name}` (the server replays what it missed)",
                name = version.name,
                path = version.path.display(),
                base = version.base_commit,
            ),
        );
    }
    Ok(())
}

/// `skewless swap`: asks the server at `server` to swap its store.
fn cmd_swap(version: Option<&str>, server: &str, token: Option<&str>) -> Result<()> {
    let Some(base) = server.strip_prefix("http://") else {
        bail!(
            "`{server}` is not a plain-HTTP server address (http://HOST:PORT): `skewless swap` does not speak TLS; \
             for a TLS server run: curl -X POST https://HOST:PORT/admin/swap -H 'authorization: Bearer TOKEN' \
             -d '{{\"version\": \"NAME\"}}'"
        );
    };
    let url = format!("http://{}/admin/swap", base.trim_end_matches('/'));
    let body = serde_json::json!({ "version": version }).to_string();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .new_agent();
    let mut request = agent.post(&url).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request
        .send(body.as_str())
        .with_context(|| format!("no server answered at {url}: start `skewless serve`, or pass --server URL"))?;
    let status_code = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status_code != 200 {
        let message = answer["error"]["message"].as_str().unwrap_or(&text);
        bail!("the server at {server} refused the swap ({status_code}): {message}");
    }
    let what = match version {
        Some(name) => format!("store version `{name}`"),
        None => "its live store, reopened,".to_string(),
    };
    let retired = match answer["retired"].as_str() {
        Some(retired) => format!("; the store it replaced is kept as version `{retired}` (swap it back to undo)"),
        None => String::new(),
    };
    status(
        "Swapped",
        &format!(
            "{server} serves {what} at commit {} (log message {}, {} replayed) after {:.0} ms, {:.0} ms of it with \
             pushes held{retired}",
            answer["commit"],
            answer["log_sequence"],
            answer["replayed"],
            answer["elapsed_ms"].as_f64().unwrap_or(0.0),
            answer["locked_ms"].as_f64().unwrap_or(0.0)
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

fn cmd_get(dir: &Path, get: &args::GetArgs) -> Result<()> {
    let (features, service) = (&get.features, get.service.as_deref());
    let workspace = Workspace::open(dir, Views::Read { features, service })?;
    let entities = args::pairs(&get.entities, "--entity")?;
    let requests = args::pairs(&get.requests, "--request")?;
    let response = workspace.read(ReadSpec {
        features,
        service,
        columns: (entities.iter().chain(&requests))
            .map(|(name, values)| (name.as_str(), RawColumn::Text(values)))
            .collect(),
        full_feature_names: get.full_feature_names,
        as_of: get.as_of()?,
        deadline: None,
    })?;
    if get.json {
        let body = GetOnlineFeaturesResponse::from_online(&response, true);
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!("{}", response.table()?);
    for note in response.notes() {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// `skewless search`: the store's search ([`skewless_runtime::Store::nearest`]),
/// then a read of the hits' features, as `POST /search` does.
fn cmd_search(dir: &Path, search: &args::SearchArgs) -> Result<()> {
    use skewless_runtime::search::Metric;
    use skewless_runtime::{SearchQuery, SearchSpec};
    // By default every feature but vectors, which would fill the screen.
    let registry = Workspace::registry_of(dir)?;
    let record = registry
        .views
        .get(&search.view)
        .with_context(|| format!("unknown view `{}`: run `skewless apply` first", search.view))?;
    let features: Vec<String> = if search.features.is_empty() {
        (record.features.iter())
            .filter(|f| search.json || f.data_type.dimension().is_none())
            .map(|f| format!("{}:{}", search.view, f.name))
            .collect()
    } else {
        search.features.iter().map(|f| format!("{}:{f}", search.view)).collect()
    };
    let workspace = Workspace::open(
        dir,
        Views::Read {
            features: &features,
            service: None,
        },
    )?;
    let metric = Metric::parse(&search.metric).map_err(anyhow::Error::msg)?;
    let like = args::pairs(&search.like, "--like")?;
    let query = match &search.query {
        Some(text) => SearchQuery::Vector(
            serde_json::from_str(text).with_context(|| format!("--query {text}: expected a JSON array of numbers"))?,
        ),
        None => SearchQuery::Like(
            like.iter()
                .map(|(name, values)| (name.as_str(), RawColumn::Text(values)))
                .collect(),
        ),
    };
    let response = workspace.search(SearchSpec {
        view: &search.view,
        vector: search.vector.as_deref(),
        query,
        k: search.k,
        metric,
        features: &features,
    })?;
    if search.json {
        let body = GetOnlineFeaturesResponse::from_online(&response, false);
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!("{}", response.table()?);
    Ok(())
}

/// Serves the repo until Ctrl-C or SIGTERM; `example` is a request body to
/// print as a ready-to-paste curl line once listening.
fn cmd_serve(dir: &Path, config: &ServeConfig, example: Option<&str>) -> Result<()> {
    skewless_server::serve_repo(dir, config, |listening| {
        status("Serving", &listening.to_string());
        if let Some(body) = example {
            eprintln!(
                "\nTry:\n  curl -s -X POST {}/get-online-features -d '{body}'\n",
                listening.url
            );
        }
    })?;
    status(
        "Stopped",
        "in-flight requests answered, served-value logs written, store closed",
    );
    Ok(())
}

/// Builds the example transforms, generates driver_stats' data, applies,
/// backfills, reads, and serves: the README's first command.
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
    cmd_backfill(&repo_dir, &backfill::BackfillOptions::default(), None)?;
    status(
        "Reading",
        "drivers 1001-1003 online, with the on-demand view (val_to_add=1000)",
    );
    let features = [
        "driver_hourly_stats:conv_rate",
        "driver_hourly_stats:acc_rate",
        "driver_hourly_stats:avg_daily_trips",
        "transformed_conv_rate",
    ];
    let read = args::GetArgs {
        entities: vec!["driver_id=1001,1002,1003".into()],
        features: features.map(String::from).to_vec(),
        service: None,
        requests: vec!["val_to_add=1000".into()],
        full_feature_names: false,
        json: false,
        at: None,
    };
    cmd_get(&repo_dir, &read)?;
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
    cmd_serve(&repo_dir, &ServeConfig::default(), Some(example))
}
