//! JavaScript transforms: ComponentizeJS (through its API: its CLI in jco
//! 1.35 cannot read a WIT folder) over `transform.js`, with the SDK module
//! `skewless_sdk.js` beside it. ComponentizeJS embeds SpiderMonkey and
//! pre-initializes it with wizer, so the module is already evaluated when a
//! call comes. Its outbound-HTTP and fetch-event features are turned off: a
//! transform has no network, and the host provides no `wasi:http`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BuildError, CONTRACT_0_2, WORLD, component_path, find_tool, io_error, run_tool, stage_sdk};

/// The SDK module every JavaScript transform imports as `./skewless_sdk.js`.
const SDK: &str = include_str!("../../sdk/js/skewless_sdk.js");

/// The ComponentizeJS release the SDK is tested with, and preview2-shim, which
/// it imports but lists only as a dev dependency (a clean install lacks it).
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0 @bytecodealliance/preview2-shim@0.25.0";

/// Componentizes `argv[2]` against the WIT folder `argv[3]`, world `argv[4]`, into `argv[5]`.
/// Lives in the project's `target/`, so Node finds ComponentizeJS in the
/// project's `node_modules` (or a parent's).
const BUILD_SCRIPT: &str = r#"import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
const [source, wit, world, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: world,
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
"#;

pub(super) fn build(dir: &Path, quiet: bool) -> Result<PathBuf, BuildError> {
    let install = format!("npm install --save-dev {COMPONENTIZE_JS}");
    if find_tool(&["node"]).is_none() {
        return Err(BuildError::MissingTool {
            tool: "node".into(),
            hint: format!(
                "install Node.js 18 or newer (with npm), then run `{install}` in {}",
                dir.display()
            ),
        });
    }
    if !componentize_js_installed(dir) {
        // The nearest package.json (as Node looks for one) names it: install what it names.
        let Some(package_root) = dir.ancestors().find(|d| d.join("package.json").is_file()) else {
            return Err(BuildError::MissingTool {
                tool: "@bytecodealliance/componentize-js".into(),
                hint: format!("run `{install}` in {}", dir.display()),
            });
        };
        let mut npm = Command::new("npm");
        npm.current_dir(package_root)
            .args(["install", "--no-audit", "--no-fund"]);
        if quiet {
            npm.arg("--silent");
        }
        run_tool(
            &mut npm,
            "npm install",
            &format!("install Node.js with npm, then run `{install}`"),
            package_root,
        )?;
        if !componentize_js_installed(dir) {
            return Err(BuildError::MissingTool {
                tool: "@bytecodealliance/componentize-js".into(),
                hint: format!(
                    "{} does not name it; run `{install}` there",
                    package_root.join("package.json").display()
                ),
            });
        }
    }

    // The transform's own modules and the SDK, side by side, so `./skewless_sdk.js` resolves.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let is_module = path.extension().is_some_and(|x| x == "js" || x == "mjs");
        if is_module && path.is_file() {
            let contents = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
            files.push((
                path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                contents,
            ));
        }
    }
    files.push(("skewless_sdk.js".into(), SDK.as_bytes().to_vec()));
    files.push(("build.mjs".into(), BUILD_SCRIPT.as_bytes().to_vec()));
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
    let stage = stage_sdk(dir, CONTRACT_0_2, &borrowed)?;

    let out = component_path(dir);
    let mut node = Command::new("node");
    node.current_dir(dir)
        .arg(stage.join("build.mjs"))
        .arg(stage.join("transform.js"))
        .arg(stage.join("wit"))
        .arg(WORLD)
        .arg(&out);
    if quiet {
        node.stdout(std::process::Stdio::null());
    }
    run_tool(&mut node, "node (ComponentizeJS)", "install Node.js 18 or newer", dir)?;
    Ok(out)
}

/// Whether Node would find ComponentizeJS and its shim from `dir` (in its
/// `node_modules` or a parent's).
fn componentize_js_installed(dir: &Path) -> bool {
    ["componentize-js", "preview2-shim"].iter().all(|package| {
        let manifest = Path::new("node_modules/@bytecodealliance")
            .join(package)
            .join("package.json");
        dir.ancestors().any(|d| d.join(&manifest).is_file())
    })
}
