//! C transforms: clang for wasm32 with wasi-libc over the project's `.c`
//! files, the SDK (`skewless.h`, `skewless.c`) and the bindings wit-bindgen
//! generated from the WIT (`sdk/c/bindings`, regenerated with
//! `wit-bindgen c wit --world transformer --out-dir sdk/c/bindings --no-object-file`, against contract 0.2.0,
//! wit-bindgen-cli 0.46). wasi-libc's formatting code links its stdio, which
//! imports WASI preview 1; the module becomes a component here, with
//! wit-component and wasmtime's preview-1 adapter, as `wasm-tools component
//! embed` + `component new --adapt` would. The host answers those imports as
//! it does for every transform: no files, stderr captured for messages.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BuildError, CONTRACT_0_2, WORLD, component_path, find_tool, io_error, run_tool, stage_sdk};

const SDK: [(&str, &str); 4] = [
    ("skewless.h", include_str!("../../sdk/c/skewless.h")),
    ("skewless.c", include_str!("../../sdk/c/skewless.c")),
    ("transformer.h", include_str!("../../sdk/c/bindings/transformer.h")),
    ("transformer.c", include_str!("../../sdk/c/bindings/transformer.c")),
];

/// What to install when no clang can target wasm32.
const INSTALL_HINT: &str = "install clang with a wasm32 target and wasi-libc: on Debian or Ubuntu \
    `apt install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc`; elsewhere wasi-sdk \
    (https://github.com/WebAssembly/wasi-sdk), with SKEWLESS_CLANG set to its bin/clang";

pub(super) fn build(dir: &Path, _quiet: bool) -> Result<PathBuf, BuildError> {
    let files: Vec<(&str, &[u8])> = SDK.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
    let stage = stage_sdk(dir, CONTRACT_0_2, &files)?;
    let clang = std::env::var("SKEWLESS_CLANG")
        .ok()
        .or_else(|| find_tool(&["clang-19", "clang-20", "clang-21", "clang-18", "clang"]))
        .ok_or_else(|| BuildError::MissingTool {
            tool: "clang".into(),
            hint: INSTALL_HINT.into(),
        })?;

    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    let out = component_path(dir);
    let core = out.with_extension("core.wasm");
    let mut command = Command::new(&clang);
    command
        .current_dir(dir)
        // wasm32-wasi: the name every clang since 8 and Debian's wasi-libc know.
        .args(["--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-Wall"])
        .arg("-I")
        .arg(&stage)
        .args(&sources)
        .arg(stage.join("skewless.c"))
        .arg(stage.join("transformer.c"))
        .arg("-o")
        .arg(&core);
    run_tool(&mut command, &clang, INSTALL_HINT, dir)?;

    let module = std::fs::read(&core).map_err(|e| io_error(&core, e))?;
    let component = componentize(module).map_err(|e| BuildError::Io {
        path: core.clone(),
        message: format!("could not make a component of the module clang built: {e:#}"),
    })?;
    std::fs::write(&out, component).map_err(|e| io_error(&out, e))?;
    Ok(out)
}

/// Embeds the WIT world in `module` and wraps it as a component.
fn componentize(mut module: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("transform.wit", CONTRACT_0_2.transform)?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()?;
    Ok(component)
}
