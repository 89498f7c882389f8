//! `cargo xtask cycles`: finds import cycles between the source files of a crate.
//!
//! Each file is a node (`a/b.rs` and `a/b/mod.rs` are module `a::b`); an edge `x → y` is any
//! `crate::…` (or `$crate::…`) path in `x`, outside its `#[cfg(test)]` tail, that names an item
//! of `y`, and any `super::…` path naming a sibling. A module containing its child is not an
//! edge (declaring `mod child;` or re-exporting from it is containment, not a dependency), so
//! a cycle here is a real knot: two files that each need the other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Reports the import cycles of the crate whose `src/` is `src`. Errors when there is one.
pub(crate) fn run(src: &Path) -> Result<(), String> {
    let files = modules(src)?;
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let deps = graph.entry(module.clone()).or_default();
        for target in references(&text, module) {
            if let Some(found) = resolve(&files, &target)
                && &found != module
                && !found.is_empty()
            {
                deps.insert(found);
            }
        }
    }
    let cycles = strongly_connected(&graph);
    for cycle in &cycles {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        println!(
            "import cycle of {} files: {}",
            cycle.len(),
            names.join(", ")
        );
        for module in cycle {
            let inside: Vec<String> = graph[module]
                .iter()
                .filter(|d| cycle.contains(d))
                .map(|d| d.join("::"))
                .collect();
            println!("  {} -> {}", module.join("::"), inside.join(", "));
        }
    }
    println!("{} files, {} import cycles", files.len(), cycles.len());
    if cycles.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} import cycles in {}",
            cycles.len(),
            src.display()
        ))
    }
}

fn modules(src: &Path) -> Result<BTreeMap<Module, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let Ok(rel) = path.strip_prefix(src) else {
                continue;
            };
            let mut parts: Module = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    Ok(out)
}

/// The longest module of `files` that `path` starts with.
fn resolve(files: &BTreeMap<Module, PathBuf>, path: &[String]) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| files.contains_key(m))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths `text` names through `crate::` and `super::`, as module paths from the crate root;
/// a `{a, b::c}` group after a prefix yields one path per member (first segment of each).
fn references(text: &str, module: &Module) -> Vec<Module> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    // `super` of `a/b.rs` (module a::b) and of `a/b/mod.rs` (module a::b) is `a`.
    let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + prefix.len()..];
            rest = after;
            if before.is_some_and(|c| is_ident(c) || c == ':') && before != Some('$') {
                continue;
            }
            let mut segments = base.clone();
            let mut tail = after;
            loop {
                let ident: String = tail.chars().take_while(|&c| is_ident(c)).collect();
                if ident.is_empty() {
                    break;
                }
                segments.push(ident.clone());
                tail = &tail[ident.len()..];
                if let Some(next) = tail.strip_prefix("::") {
                    tail = next;
                } else {
                    break;
                }
            }
            if let Some(group) = tail.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for member in group[..end].split(',') {
                    let first: String =
                        member.trim().chars().take_while(|&c| is_ident(c)).collect();
                    if !first.is_empty() && first != "self" {
                        let mut full = segments.clone();
                        full.push(first);
                        out.push(full);
                    }
                }
            }
            out.push(segments);
        }
    }
    out
}

/// Tarjan's strongly connected components with more than one member.
fn strongly_connected(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'g> {
        graph: &'g BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g Module) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let Some((w, _)) = graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[w].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.index[w].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}
