//! `skewless new`: a transform project that is also a feature repo, so that
//! `skewless build .`, `apply`, `backfill` and `get` work in it at once.
//! The transform is the README's trip speed, in the language asked for; the
//! data file's times are relative to today so that they are within the
//! view's 7-day TTL.

use std::path::{Path, PathBuf};

use super::Language;

/// Why a project could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The folder's name cannot name a view and a crate.
    #[error(
        "`{name}` cannot name a transform: use lowercase letters, digits and `_`, starting with a letter (e.g. trip_speed)"
    )]
    BadName {
        /// The name.
        name: String,
    },
    /// The folder exists and holds files.
    #[error("{} already exists and is not empty; choose a new folder", path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// Writing failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

const REPO: &str = include_str!("../../sdk/templates/repo/skewless.toml");
const GITIGNORE: &str = include_str!("../../sdk/templates/repo/gitignore");

/// The files of each language's project: (path, template).
fn templates(language: Language) -> &'static [(&'static str, &'static str)] {
    match language {
        Language::Rust => &[
            ("Cargo.toml", include_str!("../../sdk/templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("../../sdk/templates/rust/src/lib.rs")),
            (
                ".cargo/config.toml",
                include_str!("../../sdk/templates/rust/.cargo/config.toml"),
            ),
        ],
        Language::Python => &[("transform.py", include_str!("../../sdk/templates/python/transform.py"))],
        Language::JavaScript => &[
            ("transform.js", include_str!("../../sdk/templates/js/transform.js")),
            ("package.json", include_str!("../../sdk/templates/js/package.json")),
        ],
        Language::C => &[("transform.c", include_str!("../../sdk/templates/c/transform.c"))],
    }
}

/// The Rust SDK crate of the checkout this binary was built from.
fn rust_sdk_path() -> PathBuf {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.canonicalize().unwrap_or(sdk)
}

/// Writes a new `language` project into `dir` (created; must be new or
/// empty) and returns the files written. `now_micros` dates the sample data,
/// written with `format_time` (the runtime's `time::format_timestamp`: taken
/// as an argument so this crate does not depend on the runtime, and a
/// runtime edit does not rebuild it).
pub fn new_project(
    language: Language,
    dir: &Path,
    now_micros: i64,
    format_time: fn(i64) -> String,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ScaffoldError::BadName { name });
    }
    if dir.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty {
            path: dir.to_path_buf(),
        });
    }
    let component = match language {
        Language::Rust => format!("target/wasm32-wasip2/release/{name}.wasm"),
        _ => format!("target/{name}.wasm"),
    };
    let sdk_path = rust_sdk_path().display().to_string();
    let fill = |template: &str| {
        template
            .replace("{{name}}", &name)
            .replace("{{component}}", &component)
            .replace("{{sdk_path}}", &sdk_path)
    };
    let mut files: Vec<(String, String)> = templates(language)
        .iter()
        .map(|(path, template)| (path.to_string(), fill(template)))
        .collect();
    files.push(("skewless.toml".into(), fill(REPO)));
    files.push((".gitignore".into(), GITIGNORE.into()));
    files.push(("data/trips.csv".into(), sample_trips(now_micros, format_time)));

    let mut written = Vec::with_capacity(files.len());
    for (relative, contents) in files {
        let path = dir.join(relative);
        let io = |e: std::io::Error| ScaffoldError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(io)?;
        std::fs::write(&path, contents).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

/// Three trips: rider 7 six days and one day ago, rider 8 one day ago with a
/// zero duration (a row the transform refuses).
fn sample_trips(now_micros: i64, format_time: fn(i64) -> String) -> String {
    const HOUR: i64 = 3_600_000_000;
    let hour = now_micros - now_micros.rem_euclid(HOUR);
    let at = |hours_ago: i64| format_time(hour - hours_ago * HOUR);
    format!(
        "rider_id,event_timestamp,created,distance_km,duration_s\n\
         7,{},{},12.5,900\n\
         7,{},{},3.2,600\n\
         8,{},{},40.0,0\n",
        at(6 * 24),
        at(6 * 24 - 1),
        at(24),
        at(23),
        at(22),
        at(21)
    )
}
