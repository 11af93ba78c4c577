//! Rust transforms: `cargo build --release --target wasm32-wasip2`, after
//! making sure the target is installed (rustup does not add a missing target
//! by itself on every machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::BuildError;

/// The target every Rust transform is built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Whether the wasm target's standard library is installed for the rustc
/// that `cargo` in `dir` would use.
fn target_installed(dir: &Path) -> bool {
    Command::new("rustc")
        .current_dir(dir)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).exists())
        .unwrap_or(false)
}

/// Installs the wasm target with rustup when it is missing.
pub fn ensure_target(dir: &Path) -> Result<(), BuildError> {
    // Two builds in one process (e.g. test threads) must not race two `rustup target add`s.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if target_installed(dir) {
        return Ok(());
    }
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|_| BuildError::MissingTool {
            tool: "rustup".into(),
            hint: format!(
                "install Rust with rustup (https://rustup.rs), or add the {WASM_TARGET} target to your toolchain"
            ),
        })?;
    if !status.success() || !target_installed(dir) {
        return Err(BuildError::Target);
    }
    Ok(())
}

/// Builds the crate or workspace at `dir` for [`WASM_TARGET`] in release
/// mode and returns the components it produced (`target/wasm32-wasip2/release/*.wasm`).
/// `quiet` passes `--quiet` to cargo.
pub fn build_rust(dir: &Path, quiet: bool) -> Result<Vec<PathBuf>, BuildError> {
    let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        return Err(BuildError::NotATransform {
            path: dir.to_path_buf(),
        });
    }
    ensure_target(dir)?;
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(&manifest);
    if quiet {
        command.arg("--quiet");
    }
    // A parent `cargo run`/`cargo test` exports its target dir; the guest build must use its own.
    command.env_remove("CARGO_TARGET_DIR").env_remove("CARGO_BUILD_TARGET");
    let status = command.status().map_err(|_| BuildError::MissingTool {
        tool: "cargo".into(),
        hint: "install Rust with rustup (https://rustup.rs)".into(),
    })?;
    if !status.success() {
        return Err(BuildError::Failed {
            tool: "cargo build".into(),
            path: dir.to_path_buf(),
        });
    }
    let out = target_dir(dir).join(WASM_TARGET).join("release");
    let mut components: Vec<PathBuf> = std::fs::read_dir(&out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    components.sort();
    Ok(components)
}

/// The target folder cargo uses for the crate at `dir`.
fn target_dir(dir: &Path) -> PathBuf {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v.get("target_directory").and_then(|t| t.as_str()).map(PathBuf::from))
        .unwrap_or_else(|| dir.join("target"))
}
