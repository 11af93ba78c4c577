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

/// A fenced code block: its language and its text.
struct Block {
    language: String,
    text: String,
}

/// The fenced blocks of `markdown` between the heading `from` and the next
/// heading of the same level.
fn blocks_of_section(markdown: &str, from: &str) -> Vec<Block> {
    let start = markdown.find(from).unwrap_or_else(|| panic!("README has no `{from}`"));
    let section = &markdown[start + from.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if let Some(language) = line.strip_prefix("```") {
            let text: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            blocks.push(Block {
                language: language.trim().to_string(),
                text: text.join("\n") + "\n",
            });
        }
    }
    blocks
}

/// The path a block names in its first line (`# trips/skewless.toml`,
/// `// trip_speed/src/lib.rs`), and its text as the file holds it.
fn named_file(block: &Block) -> Option<(String, String)> {
    let first = block.text.lines().next()?;
    let named = first.strip_prefix("# ").or_else(|| first.strip_prefix("// "))?;
    let path = named.split_whitespace().next()?;
    if !path.contains('/') || !path.contains('.') {
        return None;
    }
    // "(without this comment line)": a CSV file has no comments.
    let text = if named.contains("without this comment line") {
        block.text.split_once('\n').map_or("", |(_, rest)| rest).to_string()
    } else {
        block.text.clone()
    };
    Some((path.to_string(), text))
}

/// Runs one command line of the README in `dir`, with `skewless` this
/// build's binary; its stdout, after asserting success.
fn run_line(dir: &Path, line: &str) -> String {
    let bin = kit::skewless_bin();
    let bin_dir = bin.parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
        .env("SKEWLESS_CACHE_DIR", kit::compile_cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README line `{line}` failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The toolchain `rust-toolchain.toml` pins: the tutorial's folder is
/// beside the checkout, outside the pin, and this machine's default
/// toolchain may lack the wasm32-wasip2 target.
fn pinned_toolchain() -> String {
    let text = std::fs::read_to_string(kit::root().join("rust-toolchain.toml")).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("channel")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// The commands of a shell block, as a shell reads them: a line ending in
/// `\` goes on, and so does a line inside an open single quote (the shell
/// drops trailing `# comments` itself).
fn command_lines(block: &Block) -> Vec<String> {
    let joined = block.text.replace("\\\n", " ");
    let mut commands: Vec<String> = Vec::new();
    let mut open = false;
    for line in joined.lines() {
        if open {
            let command = commands.last_mut().expect("an open quote follows a command");
            command.push('\n');
            command.push_str(line);
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            commands.push(line.trim().to_string());
        } else {
            continue;
        }
        open ^= line.matches('\'').count() % 2 == 1;
    }
    commands
}

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

/// One shell, as a user's terminal: lines are typed one at a time, each
/// waited for (and its exit status checked) before the next; a line that
/// starts a server (`... &`) is waited for until the server listens.
struct Terminal {
    shell: std::process::Child,
    stdin: std::process::ChildStdin,
    output: std::sync::Arc<std::sync::Mutex<String>>,
    typed: usize,
}

impl Terminal {
    fn open(dir: &Path) -> Terminal {
        use std::io::Read;
        let mut shell = Command::new("bash")
            .arg("--norc")
            .current_dir(dir)
            .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
            .env("SKEWLESS_CACHE_DIR", kit::compile_cache())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = shell.stdin.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for mut pipe in [
            Box::new(shell.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(shell.stderr.take().unwrap()),
        ] {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            });
        }
        let mut terminal = Terminal {
            shell,
            stdin,
            output,
            typed: 0,
        };
        terminal.type_line("shopt -s expand_aliases");
        terminal
    }

    /// Types `line`; waits until it is done (or, for `... &`, until
    /// `until_printed` shows up) and asserts it succeeded.
    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        self.typed += 1;
        let marker = format!("__line_{}_exit_", self.typed);
        let background = line.trim_end().ends_with('&');
        writeln!(self.stdin, "{line}").unwrap();
        if !background {
            writeln!(self.stdin, "echo {marker}$?").unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let printed = self.output.lock().unwrap().clone();
            if background && printed.contains(" on http://") && printed.matches(" on http://").count() >= 1 {
                return;
            }
            if let Some(at) = printed.find(&marker) {
                let status: String = printed[at + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                assert_eq!(
                    status, "0",
                    "README line `{line}` failed; the terminal shows:\n{printed}"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "README line `{line}` did not finish; the terminal shows:\n{printed}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "kill %1 2>/dev/null; exit");
        let _ = self.shell.wait();
    }
}

/// The windowed-features path ("from the repo root"), typed line by line
/// into one shell in a folder laid out as the checkout: `target/release`
/// holds this build's binary, `examples/transforms` is the checkout's, and
/// `examples/repos/fraud` a copy. Two substitutions, both of what a user's
/// machine provides: `cargo run --release --` is this build's binary (the
/// program it would run), run in the checkout itself, and port 6566 a free
/// one.
#[test]
fn the_windowed_features_path_works_as_written() {
    let readme = std::fs::read_to_string(kit::root().join("README.md")).unwrap();
    let blocks = blocks_of_section(&readme, "## Windowed features");
    let block = blocks
        .iter()
        .find(|b| b.language == "sh" && b.text.contains("sample-data fraud --events"))
        .expect("the windowed path's shell block");
    kit::example_components();
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    std::fs::create_dir_all(root.join("target/release")).unwrap();
    std::os::unix::fs::symlink(kit::skewless_bin(), root.join("target/release/skewless")).unwrap();
    std::fs::create_dir_all(root.join("examples/repos/fraud")).unwrap();
    std::os::unix::fs::symlink(
        kit::root().join("examples/transforms"),
        root.join("examples/transforms"),
    )
    .unwrap();
    std::fs::copy(
        kit::root().join("examples/repos/fraud/skewless.toml"),
        root.join("examples/repos/fraud/skewless.toml"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

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
