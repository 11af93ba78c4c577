//! Python transforms: componentize-py over `transform.py`, with the SDK
//! module `skewless_sdk.py` on the Python path. componentize-py runs the
//! module's top level at build time and snapshots the interpreter
//! (pre-initialization), so a call does not import anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BuildError, CONTRACT_0_2, WORLD, component_path, run_tool, stage_sdk};

/// The SDK module every Python transform imports.
const SDK: &str = include_str!("../../sdk/python/skewless_sdk.py");

/// The componentize-py release the SDK is tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The entry file of a user-defined aggregation function in Python.
pub(super) const AGGREGATOR_ENTRY: &str = "aggregator.py";

pub(super) fn build(dir: &Path, quiet: bool) -> Result<PathBuf, BuildError> {
    componentize(dir, WORLD, "transform", quiet)
}

/// An aggregator (`aggregator.py`, world `aggregator-component`).
pub(super) fn build_aggregator(dir: &Path, quiet: bool) -> Result<PathBuf, BuildError> {
    componentize(dir, "aggregator-component", "aggregator", quiet)
}

/// componentize-py over the app module `module` for `world`.
fn componentize(dir: &Path, world: &str, module: &str, quiet: bool) -> Result<PathBuf, BuildError> {
    let stage = stage_sdk(dir, CONTRACT_0_2, &[("skewless_sdk.py", SDK.as_bytes())])?;
    let out = component_path(dir);
    let mut command = Command::new("componentize-py");
    command
        .current_dir(dir)
        .arg("-d")
        .arg(stage.join("wit"))
        .args(["-w", world]);
    if quiet {
        command.arg("--quiet");
    }
    command
        .args(["componentize", module, "-p"])
        .arg(dir)
        .arg("-p")
        .arg(&stage)
        .arg("-o")
        .arg(&out);
    run_tool(
        &mut command,
        "componentize-py",
        &format!("install it with `pip install {COMPONENTIZE_PY}` (Python 3.10 or newer)"),
        dir,
    )?;
    Ok(out)
}
