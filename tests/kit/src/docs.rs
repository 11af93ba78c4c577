//! The README and the examples' docstrings as tests: their fenced code
//! blocks read by section, the files they name written out, and their
//! command lines run as a user types them, one at a time in one shell.
//! Users copy these lines, so a line that no longer works fails a test.

use std::path::Path;
use std::process::Command;

/// A fenced code block: its language and its text.
pub struct Block {
    /// `sh`, `toml`, `rust`...
    pub language: String,
    /// The block's text.
    pub text: String,
}

/// The fenced blocks of `markdown` between the heading `from` and the next
/// heading of the same level.
pub fn blocks_of_section(markdown: &str, from: &str) -> Vec<Block> {
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
pub fn named_file(block: &Block) -> Option<(String, String)> {
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
pub fn run_line(dir: &Path, line: &str) -> String {
    let bin = crate::skewless_bin();
    let bin_dir = bin.parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh")
        .args(["-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
        .env("SKEWLESS_CACHE_DIR", crate::compile_cache())
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
pub fn pinned_toolchain() -> String {
    let text = std::fs::read_to_string(crate::root().join("rust-toolchain.toml")).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("channel")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// The commands of a shell block, as a shell reads them: a line ending in
/// `\` goes on, and so does a line inside an open single quote (the shell
/// drops trailing `# comments` itself).
pub fn command_lines(block: &Block) -> Vec<String> {
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

/// One shell, as a user's terminal: lines are typed one at a time, each
/// waited for (and its exit status checked) before the next; a line that
/// starts a server (`... &`) is waited for until the server listens.
pub struct Terminal {
    shell: std::process::Child,
    stdin: std::process::ChildStdin,
    /// Everything the shell printed, stdout and stderr.
    pub output: std::sync::Arc<std::sync::Mutex<String>>,
    typed: usize,
}

impl Terminal {
    /// A bash in `dir`, with this build's `skewless` on its PATH.
    pub fn open(dir: &Path) -> Terminal {
        use std::io::Read;
        let bin_dir = crate::skewless_bin().parent().unwrap().to_path_buf();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut shell = Command::new("bash")
            .arg("--norc")
            .current_dir(dir)
            .env("PATH", path)
            .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
            .env("SKEWLESS_CACHE_DIR", crate::compile_cache())
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
    pub fn type_line(&mut self, line: &str) {
        use std::io::Write;
        self.typed += 1;
        let marker = format!("__line_{}_exit_", self.typed);
        // `skewless serve &   # then, ...`: the command before a trailing
        // comment says whether it runs in the background.
        let command = line.split(" #").next().unwrap_or(line);
        let background = command.trim_end().ends_with('&');
        // A server started in the background is waited for until it says
        // where it listens, as a user reads that before typing on.
        let servers_before = self.output.lock().unwrap().matches(" on http://").count();
        writeln!(self.stdin, "{line}").unwrap();
        if !background {
            writeln!(self.stdin, "echo {marker}$?").unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let printed = self.output.lock().unwrap().clone();
            if background && printed.matches(" on http://").count() > servers_before {
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
