//! The shape of the code, checked: no dependency cycle between the files
//! of a crate. Each file of `runtime/src`, `server/src` and
//! `toolchain/src` is a module; a reference to `crate::a::b` (or
//! `super::x`, or a child module by name) is an edge to the longest module
//! path it names. Unit tests (`#[cfg(test)] mod tests`) are left out: they
//! may use anything. A cycle fails the test with the files on it.

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

#[test]
fn no_file_depends_on_itself_through_others() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["runtime/src", "server/src", "toolchain/src"] {
        let modules = modules(&root.join(krate));
        assert!(modules.len() > 3, "{krate}: no modules found");
        let graph = edges(&modules);
        let found = cycles(&graph);
        let shown: Vec<String> = found
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
            .collect();
        assert!(
            found.is_empty(),
            "{krate} has dependency cycles between files:\n{}",
            shown.join("\n")
        );
    }
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
