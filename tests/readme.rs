//! The README's five-minute tutorial, run as a new user would: its files
//! written from the README's own code blocks (each names its path in its
//! first line), and every `skewless` and `curl` line of the tutorial run in
//! order from the folder beside the checkout. Users copy these lines, so a
//! line that no longer works fails here. The server runs on a free port
//! instead of 6566, and the push step applies the change the tutorial
//! describes in words (a push source in front of the view).

use skewless_testkit as kit;

use std::path::Path;
use std::process::Command;

use kit::docs::{Terminal, blocks_of_section, command_lines, named_file, run_line};

#[test]
fn the_five_minute_tutorial_works_as_written() {
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let blocks = blocks_of_section(&readme, "## Five-minute tutorial");
    let work = tempfile::tempdir().unwrap();
    // The tutorial works "in a folder beside this checkout", named skewless.
    std::os::unix::fs::symlink(kit::root(), work.path().join("skewless")).unwrap();
    let mut files = 0;
    for block in &blocks {
        if let Some((path, text)) = named_file(block) {
            let path = work.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
            files += 1;
        }
    }
    assert!(files >= 5, "the tutorial's files: found {files}");

    let mut server: Option<std::process::Child> = None;
    let mut base = String::new();
    let mut ran = Vec::new();
    for block in blocks.iter().filter(|b| b.language == "sh") {
        for line in command_lines(block) {
            if line.starts_with("curl ") {
                if line.contains("/push") {
                    // "give the view a push source ... and post them as Feast does".
                    stop(server.take());
                    let config = work.path().join("trips/skewless.toml");
                    let text = std::fs::read_to_string(&config)
                        .unwrap()
                        .replace("source = \"trips\"\n", "source = \"trips_push\"\n")
                        + "\n[sources.trips_push]\ntype = \"push\"\nbatch_source = \"trips\"\n";
                    std::fs::write(&config, text).unwrap();
                    run_line(work.path(), "skewless --repo trips apply");
                }
                if server.is_none() {
                    let (child, url) = serve(work.path());
                    server = Some(child);
                    base = url;
                }
                let line = line
                    .replace("http://localhost:6566", &base)
                    .replace("localhost:6566", &base)
                    .replace("http://127.0.0.1:6566", &base);
                let answer = run_line(work.path(), &line);
                assert!(!answer.contains("\"error\""), "`{line}` answered {answer}");
            } else if line.starts_with("skewless ") {
                let printed = run_line(work.path(), &line);
                ran.push((line, printed));
            }
        }
    }
    stop(server);
    let commands: Vec<&str> = ran.iter().map(|(l, _)| l.as_str()).collect();
    for expected in ["build", "apply", "backfill", "get", "ls", "dataset", "verify"] {
        assert!(
            commands.iter().any(|c| c.split_whitespace().any(|w| w == expected)),
            "the tutorial no longer runs `{expected}`: {commands:?}"
        );
    }
    // Its claims: the training rows get 50 and 19.2 km/h (as printed, to
    // one decimal), rider 8 a null.
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let train = kit::read_parquet(&work.path().join("trips/train.parquet"));
    let speeds = train
        .column_by_name("speed_kmh")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>()
        .clone();
    let shown: Vec<String> = (0..speeds.len())
        .map(|row| match speeds.is_null(row) {
            true => "null".to_string(),
            false => format!("{:.1}", speeds.value(row)),
        })
        .collect();
    assert_eq!(shown, ["50.0", "19.2", "null"]);
}

/// Stops the tutorial's server, if it runs.
fn stop(server: Option<std::process::Child>) {
    if let Some(mut server) = server {
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// `skewless --repo trips serve` on a free port: the process and its URL.
fn serve(dir: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(kit::skewless_bin())
        .args(["--repo", "trips", "serve", "--addr", "127.0.0.1:0"])
        .current_dir(dir)
        .env("SKEWLESS_CACHE_DIR", kit::compile_cache())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some((_, rest)) = line.split_once(" on http://") {
            let addr = rest.split_whitespace().next().unwrap();
            return (child, format!("http://{addr}"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the tutorial's server did not start");
}

/// The windowed-features path ("from the repo root"), typed line by line
/// into one shell in a folder laid out as the checkout: `target/release`
/// holds this build's binary, `examples/transforms` is the checkout's, and
/// `examples/repos/fraud` a copy. Two substitutions, both of what a user's
/// machine provides: `cargo run --release --` is this build's binary (the
/// program it would run), run in the checkout itself, and port 6566 a free
/// one.
/// A folder laid out as the checkout is where a README path runs from:
/// this build's binary at `target/release/skewless`, the example
/// transforms (built), and a fresh copy of the example repo `example`.
fn checkout_with(example: &str) -> tempfile::TempDir {
    kit::example_components();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(kit::skewless_bin(), root.join("target/release/skewless")).unwrap();
    std::fs::create_dir_all(root.join("examples/repos").join(example)).unwrap();
    std::os::unix::fs::symlink(
        kit::root().join("examples/transforms"),
        root.join("examples/transforms"),
    )
    .unwrap();
    let config = Path::new("examples/repos").join(example).join("skewless.toml");
    std::fs::copy(kit::root().join(&config), root.join(&config)).unwrap();
    work
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_windowed_features_path_works_as_written() {
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let blocks = blocks_of_section(&readme, "## Windowed features");
    let block = blocks
        .iter()
        .find(|b| b.language == "sh" && b.text.contains("sample-data fraud --events"))
        .expect("the windowed path's shell block");
    let work = checkout_with("fraud");
    let root = work.path();
    let port = free_port();

    let mut terminal = Terminal::open(root);
    let mut typed = Vec::new();
    for line in command_lines(block) {
        if let Some(build) = line.strip_prefix("cargo run --release -- ") {
            // The program `cargo run` would run, in the checkout, whose
            // examples/transforms the folder above links to.
            run_line(&kit::root(), &format!("skewless {build}"));
            typed.push(line);
            continue;
        }
        let line = line
            .replace("6566", &port.to_string())
            .replace("skewless serve &", &format!("skewless serve --addr 127.0.0.1:{port} &"));
        terminal.type_line(&line);
        typed.push(line);
    }
    let shown = terminal.output.lock().unwrap().clone();
    assert!(
        !shown.contains("{\"error\""),
        "an HTTP call of the path was refused:\n{shown}"
    );
    assert!(
        shown.contains("\"txn_count_10m\""),
        "the online read answered no windows:\n{shown}"
    );
    drop(terminal);
    assert!(
        typed.iter().any(|l| l.contains("backfill --view card_activity")),
        "{typed:?}"
    );
    let train = std::fs::read_to_string(root.join("train.csv")).unwrap();
    assert!(train.starts_with("card_id,event_timestamp,txn_count_10m"), "{train}");
    assert_eq!(train.lines().count(), 2, "{train}");
}

#[test]
fn the_search_path_works_as_written() {
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let blocks = blocks_of_section(&readme, "## Embeddings and search");
    let block = blocks
        .iter()
        .find(|b| b.language == "sh" && b.text.contains("skewless search"))
        .expect("the search path's shell block");
    let work = checkout_with("products");
    let root = work.path();
    let port = free_port();
    let mut terminal = Terminal::open(root);
    for line in command_lines(block) {
        if let Some(build) = line.strip_prefix("cargo run --release -- ") {
            run_line(&kit::root(), &format!("skewless {build}"));
            continue;
        }
        let line = line
            .replace("6566", &port.to_string())
            .replace("skewless serve &", &format!("skewless serve --addr 127.0.0.1:{port} &"));
        terminal.type_line(&line);
    }
    let shown = terminal.output.lock().unwrap().clone();
    assert!(
        !shown.contains("{\"error\""),
        "an HTTP call of the path was refused:\n{shown}"
    );
    assert!(
        shown.contains("| distance"),
        "the CLI search printed no table:\n{shown}"
    );
    assert!(
        shown.contains("\"distance\""),
        "the HTTP search answered no distances:\n{shown}"
    );
}

/// The production and monitoring lines, typed in a backfilled driver_stats
/// repo as a user would in theirs: the tokens, then a plain `skewless
/// serve` that enforces them (run in the background, on a free port), and
/// every `skewless stats` line.
#[test]
fn the_token_and_stats_lines_work_as_written() {
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let tokens = blocks_of_section(&readme, "## Running it in production");
    let stats = blocks_of_section(&readme, "## Watching it in production");
    let pick = |blocks: &[kit::docs::Block], needle: &str| {
        let block = (blocks.iter())
            .find(|b| b.language == "sh" && b.text.contains(needle))
            .unwrap_or_else(|| panic!("no shell block with `{needle}`"));
        command_lines(block)
    };
    let repo = kit::fresh_driver_repo();
    let mut terminal = Terminal::open(repo.path());
    let mut served = false;
    for line in pick(&tokens, "skewless token add")
        .into_iter()
        .chain(pick(&stats, "skewless stats"))
    {
        let line = match line.split_once('#') {
            Some((command, _)) if command.trim() == "skewless serve" => {
                served = true;
                "skewless serve --addr 127.0.0.1:0 &".to_string()
            }
            _ => line,
        };
        terminal.type_line(&line);
    }
    let shown = terminal.output.lock().unwrap().clone();
    assert!(served, "the token block no longer starts the server");
    assert!(
        shown.contains("bearer auth"),
        "the server did not enforce the tokens:\n{shown}"
    );
    assert!(
        shown.contains("Rebuilt statistics of view `driver_hourly_stats`"),
        "{shown}"
    );
    assert!(shown.contains("quantiles (within 1%)"), "{shown}");
}
