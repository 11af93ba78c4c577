//! Building transforms into components, in every language we support, and
//! scaffolding new transform projects (`skewless build`, `skewless new`).
//!
//! A transform project is a folder; its language is told by its entry file:
//! `Cargo.toml` (Rust), `transform.py` (Python, componentize-py),
//! `transform.js` (JavaScript, ComponentizeJS) or `transform.c` (C, clang).
//! The SDK of each language and the WIT contract ship inside this binary and
//! are written next to the build's inputs under `target/skewless-sdk/`, so a
//! project never carries a copy that could drift from the host it runs on.
//! Every build ends with the component at a path the project's feature repo
//! names: `target/wasm32-wasip2/release/<crate>.wasm` for Rust,
//! `target/<folder>.wasm` for the others.

mod c;
mod js;
mod python;
mod rust;
mod scaffold;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

pub use rust::{WASM_TARGET, build_rust, ensure_target};
pub use scaffold::{ScaffoldError, new_project};

/// A version of the WIT contract, as a guest builds against it: the
/// transform package and the aggregator interface in it.
#[derive(Debug, Clone, Copy)]
pub struct Contract {
    /// `transform.wit`.
    pub transform: &'static str,
    /// `aggregator.wit`.
    pub aggregator: &'static str,
}

/// 0.2.0 (`wit/`), with lists and vectors: what every SDK builds against
/// (Rust through the `skewless-sdk` crate). The host still runs components
/// built for 0.1.0 (`wit/0.1.0/`), unchanged.
pub const CONTRACT_0_2: Contract = Contract {
    transform: include_str!("../../wit/transform.wit"),
    aggregator: include_str!("../../wit/aggregator.wit"),
};

/// The world every transform implements.
pub const WORLD: &str = "transformer";

/// A language a transform can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, with the `skewless-sdk` crate.
    Rust,
    /// Python, with `skewless_sdk.py` and componentize-py.
    Python,
    /// JavaScript, with `skewless_sdk.js` and ComponentizeJS.
    JavaScript,
    /// C, with `skewless.h` and clang for wasm32.
    C,
}

impl Language {
    /// Every language, in the order `skewless new --help` lists them.
    pub const ALL: [Language; 4] = [Language::Rust, Language::Python, Language::JavaScript, Language::C];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "js",
            Language::C => "c",
        }
    }

    /// The file that marks a project in this language.
    pub fn entry_file(self) -> &'static str {
        match self {
            Language::Rust => "Cargo.toml",
            Language::Python => "transform.py",
            Language::JavaScript => "transform.js",
            Language::C => "transform.c",
        }
    }

    /// The language of the project at `dir`, told by its entry file.
    pub fn detect(dir: &Path) -> Option<Language> {
        Language::ALL.into_iter().find(|l| dir.join(l.entry_file()).is_file())
    }
}

impl std::str::FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Language::Rust),
            "python" | "py" => Ok(Language::Python),
            "js" | "javascript" => Ok(Language::JavaScript),
            "c" => Ok(Language::C),
            other => Err(format!("unknown language `{other}`; one of: rust, python, js, c")),
        }
    }
}

/// A build that could not run or failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No entry file of any language in the folder.
    #[error(
        "{}: not a transform project; `skewless build` takes a folder holding Cargo.toml (Rust), transform.py or aggregator.py (Python), transform.js (JavaScript) or transform.c (C); `skewless new --lang LANG NAME` makes one",
        path.display()
    )]
    NotATransform {
        /// The folder.
        path: PathBuf,
    },
    /// A tool is missing.
    #[error("`{tool}` was not found: {hint}")]
    MissingTool {
        /// The tool.
        tool: String,
        /// What to install.
        hint: String,
    },
    /// The target could not be installed.
    #[error("the {WASM_TARGET} target is not installed and `rustup target add {WASM_TARGET}` failed; run it by hand")]
    Target,
    /// The language's compiler failed (its own output, above, says why).
    #[error("`{tool}` failed for {} (see its messages above)", path.display())]
    Failed {
        /// The command that failed.
        tool: String,
        /// The project.
        path: PathBuf,
    },
    /// Reading or writing the build's files failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Builds the transform project (or Rust workspace) at `dir` and returns the
/// components it produced. `quiet` keeps the compilers' progress off the terminal.
pub fn build(dir: &Path, quiet: bool) -> Result<Vec<PathBuf>, BuildError> {
    let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if dir.join(python::AGGREGATOR_ENTRY).is_file() {
        return python::build_aggregator(dir, quiet).map(|c| vec![c]);
    }
    match Language::detect(dir) {
        Some(Language::Rust) => build_rust(dir, quiet),
        Some(Language::Python) => python::build(dir, quiet).map(|c| vec![c]),
        Some(Language::JavaScript) => js::build(dir, quiet).map(|c| vec![c]),
        Some(Language::C) => c::build(dir, quiet).map(|c| vec![c]),
        None => Err(BuildError::NotATransform { path: dir.clone() }),
    }
}

/// The component a non-Rust project builds: `target/<folder name>.wasm`.
fn component_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().replace('-', "_"));
    dir.join("target")
        .join(format!("{}.wasm", name.as_deref().unwrap_or("transform")))
}

/// Writes `files` (name, contents) into `<dir>/target/skewless-sdk/` and returns that folder.
fn stage_sdk(dir: &Path, contract: Contract, files: &[(&str, &[u8])]) -> Result<PathBuf, BuildError> {
    let stage = dir.join("target").join("skewless-sdk");
    std::fs::create_dir_all(stage.join("wit")).map_err(|e| io_error(&stage, e))?;
    let wit: [(&str, &[u8]); 2] = [
        ("wit/transform.wit", contract.transform.as_bytes()),
        ("wit/aggregator.wit", contract.aggregator.as_bytes()),
    ];
    for (name, contents) in files.iter().chain(&wit) {
        let path = stage.join(name);
        // Unchanged files keep their modification time, so make-like tools do not rebuild.
        if std::fs::read(&path).ok().as_deref() != Some(*contents) {
            std::fs::write(&path, contents).map_err(|e| io_error(&path, e))?;
        }
    }
    Ok(stage)
}

fn io_error(path: &Path, e: std::io::Error) -> BuildError {
    BuildError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Runs a build tool; `hint` says what to install when it is missing.
fn run_tool(command: &mut Command, tool: &str, hint: &str, dir: &Path) -> Result<(), BuildError> {
    let status: ExitStatus = command.status().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BuildError::MissingTool {
            tool: tool.into(),
            hint: hint.into(),
        },
        _ => io_error(dir, e),
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            tool: tool.into(),
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// The first of `candidates` that runs (`--version` succeeds).
fn find_tool(candidates: &[&str]) -> Option<String> {
    candidates.iter().find_map(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .map(|_| tool.to_string())
    })
}
