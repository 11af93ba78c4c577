//! The shape of the code, checked: no dependency cycle between the files
//! of a crate, nor between its folders. Each file of `runtime/src`,
//! `server/src` and `toolchain/src` is a module; a reference to
//! `crate::a::b` (or `super::x`, or a child module by name) is an edge to
//! the longest module path it names. Unit tests (`#[cfg(test)] mod tests`)
//! are left out: they may use anything. A cycle fails the test with the
//! files (or folders) on it.
//!
//! Folders are the crate's top-level modules: `store::rows` and
//! `store::registry` are both `store`. Files may form no cycle, and
//! neither may folders: `store::rows -> format::value` and
//! `format::layout -> store::registry` is no file cycle, but it is the
//! folder cycle `store <-> format`, which makes the two one module in all
//! but name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`store::layout`, `` for the crate root) -> file text.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            let mut text = std::fs::read_to_string(&path).unwrap();
            if let Some(at) = text.find("#[cfg(test)]\nmod tests") {
                text.truncate(at);
            }
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// Every `prefix` + path (`crate::store::layout::Value` -> `store::layout::Value`).
fn paths_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let tail = &rest[at + prefix.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if before_ok {
            out.push(tail[..end].trim_end_matches(':'));
        }
        rest = tail;
    }
    out
}

fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}::{b}")
        }
    };
    modules
        .iter()
        .map(|(module, text)| {
            let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
            let mut refs: Vec<String> = paths_after(text, "crate::").into_iter().map(str::to_string).collect();
            refs.extend(paths_after(text, "super::").into_iter().map(|p| join(parent, p)));
            for line in text.lines() {
                let line = line
                    .trim_start()
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                if let Some(child) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
                    let prefix = format!("{child}::");
                    refs.extend(
                        paths_after(text, &prefix)
                            .into_iter()
                            .map(|p| join(&join(module, child), p)),
                    );
                }
            }
            let targets = refs
                .iter()
                .filter_map(|r| {
                    let parts: Vec<&str> = r.split("::").filter(|p| !p.is_empty()).collect();
                    (1..=parts.len())
                        .rev()
                        .map(|k| parts[..k].join("::"))
                        .find(|m| modules.contains_key(m))
                })
                .filter(|m| m != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in &s.graph[v] {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// The graph between folders: each module's edges, its path cut to the
/// first segment (`store::rows` -> `store`), edges inside a folder dropped.
fn folder_edges(files: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let folder = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in files {
        let from = folder(module);
        let entry = out.entry(from.clone()).or_default();
        entry.extend(targets.iter().map(|t| folder(t)).filter(|t| *t != from));
    }
    for targets in out.clone().into_values() {
        for t in targets {
            out.entry(t).or_default();
        }
    }
    out
}

/// Each cycle as `a -> [b]; b -> [a]`, one per line.
fn show(graph: &BTreeMap<String, BTreeSet<String>>, found: &[Vec<String>]) -> String {
    found
        .iter()
        .map(|c| {
            c.iter()
                .map(|m| {
                    format!(
                        "{m} -> {:?}",
                        graph[m].iter().filter(|t| c.contains(t)).collect::<Vec<_>>()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What is wrong with the crate at `src`: its file cycles, then its folder
/// cycles, empty when there are none.
fn problems(src: &Path) -> Vec<String> {
    let modules = modules(src);
    assert!(modules.len() > 3, "{}: no modules found", src.display());
    let files = edges(&modules);
    let folders = folder_edges(&files);
    let mut out = Vec::new();
    let file_cycles = cycles(&files);
    if !file_cycles.is_empty() {
        out.push(format!(
            "dependency cycles between files:\n{}",
            show(&files, &file_cycles)
        ));
    }
    let folder_cycles = cycles(&folders);
    if !folder_cycles.is_empty() {
        out.push(format!(
            "dependency cycles between folders:\n{}",
            show(&folders, &folder_cycles)
        ));
    }
    out
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["runtime/src", "server/src", "toolchain/src"] {
        let found = problems(&root.join(krate));
        assert!(found.is_empty(), "{krate} has {}", found.join("\n"));
    }
}

/// The fixture has folders `alpha` and `beta` whose files reach each other
/// with no file cycle (`alpha::reads -> beta::rows -> alpha::grammar`):
/// only the folder check catches it.
#[test]
fn the_folder_check_finds_a_cycle_files_do_not_show() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/architecture/folder_cycle");
    let found = problems(&fixture);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("dependency cycles between folders:")
            && found[0].contains("alpha")
            && found[0].contains("beta"),
        "{}",
        found[0]
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let modules: BTreeMap<String, String> = [
        ("engine", "use crate::transform::Transform;"),
        ("transform", "use crate::engine::Digest;"),
        ("store", "mod layout;\nuse layout::Value;"),
        ("store::layout", "use super::Store;"),
        ("leaf", "// crate::engine in a comment is not an edge"),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_string(), t.to_string()))
    .collect();
    let mut found = cycles(&edges(&modules));
    found.iter_mut().for_each(|c| c.sort());
    found.sort();
    assert_eq!(found, vec![vec!["engine", "transform"], vec!["store", "store::layout"]]);
}

/// Each package's enabled features, from `cargo tree` (package -> feature sets).
fn feature_sets(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "-f", "{p} [{f}]"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((package, features)) = line.trim_end_matches(" (*)").rsplit_once(" [") else {
            continue;
        };
        sets.entry(package.to_string())
            .or_default()
            .insert(features.trim_end_matches(']').to_string());
    }
    sets
}

/// `cargo run --release` (the README's main job) builds every crate with
/// the features `cargo test --release --workspace` (its test command) built
/// it with, so one build serves both: `workspace-hack/Cargo.toml` lists the
/// features only the workspace build would turn on.
#[test]
fn the_binary_builds_with_the_workspace_features() {
    let workspace = feature_sets(&["--workspace", "-e", "normal,build,dev"]);
    let binary = feature_sets(&["-p", "skewless", "-e", "normal,build"]);
    let differ: Vec<String> = binary
        .iter()
        .filter(|(package, features)| workspace.get(*package) != Some(features))
        .map(|(package, features)| format!("{package}: {features:?}, in the workspace {:?}", workspace.get(package)))
        .collect();
    assert!(
        differ.is_empty(),
        "add these features to workspace-hack/Cargo.toml:\n{}",
        differ.join("\n")
    );
}
