//! The library's module layout has no import circles: among its top-level modules (the error
//! types sit below everything that returns them), and among the files of each folder
//! (`channel/`, `pool/`, ...; each file holds one concept, and `mod.rs`, the facade that
//! declares them, is left out). A circle makes a change in one file ripple through the others;
//! this keeps one from creeping back in.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("iproto/src")
}

/// The source without comments (doc comments name other modules in links, which is no import).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The first path segments after every `prefix` (`crate::`, `super::`), including each name of
/// a `prefix{a, b::{c, d}}` group (its top-level items: `a`, `b`).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            out.insert(ident(rest));
            continue;
        };
        // Split the group at its top-level commas, up to its closing brace.
        let (mut depth, mut item) = (0usize, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.insert(ident(group[item..i].trim()));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.insert(ident(group[item..i].trim()));
                    item = i + 1;
                }
                _ => {}
            }
        }
    }
    out.remove("");
    out
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Which top-level module each name re-exported at the crate root comes from (`pub use
/// channel::{Channel, ..}` in lib.rs), so that `crate::Channel` counts as a use of `channel`.
fn root_exports() -> BTreeMap<String, String> {
    let lib = code(&src().join("lib.rs"));
    let mut out = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else { continue };
        let module = ident(rest);
        for name in names_after(rest, &format!("{module}::")) {
            out.insert(name, module.clone());
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").path()) {
        if entry.is_dir() {
            files.extend(rust_files(&entry));
        } else if entry.extension().is_some_and(|e| e == "rs") {
            files.push(entry);
        }
    }
    files
}

/// A module that reaches itself, with the path around the circle.
fn circle(graph: &Graph) -> Option<Vec<String>> {
    fn walk(graph: &Graph, node: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = walk(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|start| walk(graph, start, &mut Vec::new(), &mut done))
}

fn top_level_graph() -> Graph {
    let src = src();
    let exports = root_exports();
    let mut graph = Graph::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = rel.iter().next().and_then(|m| m.to_str()).expect("name").trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let uses = graph.entry(module.clone()).or_default();
        for name in names_after(&code(&file), "crate::") {
            let target = exports.get(&name).cloned().unwrap_or(name);
            if target != module {
                uses.insert(target);
            }
        }
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| modules.contains(m));
    }
    graph
}

/// The imports among the files of the folder `folder` (by `super::` or the full path).
fn folder_graph(folder: &str) -> Graph {
    let dir = src().join(folder);
    let files: BTreeSet<String> = rust_files(&dir)
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_string))
        .filter(|m| m != "mod")
        .collect();
    files
        .iter()
        .map(|m| {
            let text = code(&dir.join(format!("{m}.rs")));
            let mut uses = names_after(&text, "super::");
            uses.extend(names_after(&text, &format!("crate::{folder}::")));
            uses.retain(|u| u != m && files.contains(u));
            (m.clone(), uses)
        })
        .collect()
}

#[test]
fn top_level_modules_import_each_other_without_a_circle() {
    let graph = top_level_graph();
    assert!(graph.len() >= 10, "expected the library's modules, found {:?}", graph.keys());
    assert!(graph["pool"].contains("channel"), "the scan sees imports: {graph:?}");
    assert!(graph["channel"].contains("error"), "the scan sees root re-exports (crate::Error): {graph:?}");
    assert_eq!(circle(&graph), None, "import circle among the library's modules");
}

#[test]
fn the_files_of_each_folder_import_each_other_without_a_circle() {
    let channel = folder_graph("channel");
    assert!(channel.contains_key("writer") && channel.contains_key("shared"), "{channel:?}");
    assert!(channel["reader"].contains("writer"), "the scan sees imports: {channel:?}");
    let mut folders = 0;
    for dir in fs::read_dir(src()).expect("read_dir").map(|e| e.expect("entry").path()) {
        if dir.is_dir() {
            let folder = dir.file_name().and_then(|n| n.to_str()).expect("name").to_string();
            let graph = folder_graph(&folder);
            assert_eq!(circle(&graph), None, "import circle among {folder}/'s files");
            folders += 1;
        }
    }
    assert!(folders >= 5, "channel, cluster, encoding, pool, rpc: found {folders}");
}

/// A graph of one edge per node.
fn edges(pairs: &[(&str, &str)]) -> Graph {
    pairs.iter().map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()]))).collect()
}

#[test]
fn a_circle_is_found() {
    let found = circle(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")])).expect("a -> b -> c -> a");
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
    assert_eq!(circle(&edges(&[("a", "b"), ("b", "c")])), None);
}

#[test]
fn a_use_group_names_each_of_its_modules() {
    let code = "use crate::{\n    channel::{CallOptions, Channel},\n    mux::ServeMux,\n};\nuse super::x;";
    let names: Vec<String> = names_after(code, "crate::").into_iter().collect();
    assert_eq!(names, ["channel", "mux"]);
    assert_eq!(names_after(code, "super::").into_iter().collect::<Vec<_>>(), ["x"]);
}
