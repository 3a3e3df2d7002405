//! The edge's dependency rules, checked on its source: no `use crate::` cycles between the files
//! of `edge/src`, and no subsystem importing one of a higher layer (the layers are listed in
//! [`LAYERS`] and explained in `edge/src/lib.rs`). A cycle means two files can only be
//! understood (and changed) together; a lower layer reaching up means the layering in the docs
//! is no longer true. Both fail here, with the files involved.
//!
//! The check reads paths, not types: `crate::…`, `super::…`, `self::…` and a `mod.rs`'s `use`
//! of its own children, resolved to the file that defines the longest matching module path.
//! A `#[cfg(test)] mod tests` block and everything after it is left out (test modules sit at
//! the end of their file and may borrow helpers from anywhere).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Subsystems from the bottom up; a subsystem may import its own layer and the ones below.
/// The roles and the process share the top layer (the context they all take is there); between
/// their files only the no-cycle rule applies.
const LAYERS: &[&[&str]] = &[
    &["rtmp", "sync", "workers", "allocator"],
    &["media"],
    &["mpegts"],
    &["fanout"],
    &["streams"],
    &["observe"],
    &["transport"],
    &["connection"],
    &["app", "publish", "play", "relay", "srt"],
];

type Module = Vec<String>;

fn layer_of(module: &Module) -> usize {
    let Some(top) = module.first() else { return LAYERS.len() };
    LAYERS.iter().position(|l| l.contains(&top.as_str())).unwrap_or(LAYERS.len())
}

fn collect(dir: &Path, base: &Path, out: &mut BTreeMap<Module, String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("read src dir").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, base, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(base).unwrap();
        if rel == Path::new("main.rs") {
            continue; // the binary is its own crate
        }
        let mut module: Module = rel.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        out.insert(module, std::fs::read_to_string(&path).unwrap());
    }
}

/// The source without comments and without the trailing test module.
fn code_of(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines[i + 1..].iter().find(|l| !l.trim().is_empty()).is_some_and(|l| {
                let l = l.trim_start();
                l.starts_with("mod ") || l.starts_with("pub(crate) mod ") || l.starts_with("pub mod ")
            })
        {
            end = i;
            break;
        }
    }
    lines[..end]
        .iter()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a use tree (or a plain path) at the start of `s`, appending every full path to `out`.
fn parse_tree(s: &[u8], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                i = parse_tree(s, i, &path, out);
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                match s.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                if s.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        if start == i {
            out.push(path);
            return i;
        }
        let ident = String::from_utf8_lossy(&s[start..i]).into_owned();
        if ident != "self" {
            path.push(ident);
        }
        if s[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        out.push(path);
        return i;
    }
}

/// The module paths `module`'s code refers to, made absolute.
fn references(module: &Module, is_dir_module: bool, code: &str, children: &BTreeSet<String>) -> Vec<Module> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        let rest = &bytes[i..];
        let (base, skip): (Option<Module>, usize) = if !boundary {
            (None, 0)
        } else if rest.starts_with(b"crate::") {
            (Some(Vec::new()), 7)
        } else if rest.starts_with(b"super::") {
            // A `mod.rs`'s module is its directory, so `super` is one level up for both kinds.
            let mut m = module.clone();
            m.pop();
            let mut j = i + 7;
            while bytes[j..].starts_with(b"super::") {
                m.pop();
                j += 7;
            }
            (Some(m), j - i)
        } else if rest.starts_with(b"self::") {
            (Some(module.clone()), 6)
        } else {
            (None, 0)
        };
        if let Some(base) = base {
            let mut paths = Vec::new();
            i = parse_tree(bytes, i + skip, &base, &mut paths);
            found.extend(paths);
            continue;
        }
        // `use child::…` in a `mod.rs` (2018 paths): relative to the module itself.
        let use_len =
            [&b"use "[..], b"pub use ", b"pub(crate) use "].iter().find(|p| rest.starts_with(p)).map(|p| p.len());
        if let (true, true, Some(n)) = (boundary, is_dir_module, use_len) {
            let j = i + n;
            let ident: String = bytes[j..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .map(|b| *b as char)
                .collect();
            if children.contains(&ident) {
                let mut paths = Vec::new();
                i = parse_tree(bytes, j, module, &mut paths);
                found.extend(paths);
                continue;
            }
        }
        i += 1;
    }
    found
}

struct Graph {
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

fn graph_of(files: &BTreeMap<Module, String>) -> Graph {
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, source) in files {
        let is_dir_module = files.keys().any(|m| m.len() == module.len() + 1 && m.starts_with(module));
        let children: BTreeSet<String> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        let targets = edges.entry(module.clone()).or_default();
        for path in references(module, is_dir_module, &code_of(source), &children) {
            // The file defining the longest prefix of the path.
            let target = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| files.contains_key(p));
            if let Some(target) = target.filter(|t| t != module) {
                targets.insert(target);
            }
        }
    }
    Graph { edges }
}

fn name(m: &Module) -> String {
    if m.is_empty() { "lib".into() } else { m.join("::") }
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<Module>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn edge_src() -> BTreeMap<Module, String> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    collect(&base, &base, &mut files);
    files
}

#[test]
fn no_use_crate_cycles_between_edge_files() {
    let g = graph_of(&edge_src());
    let found = cycles(&g);
    let text: Vec<String> = found
        .iter()
        .map(|scc| {
            let members: BTreeSet<&Module> = scc.iter().collect();
            let inner: Vec<String> = scc
                .iter()
                .flat_map(|m| {
                    g.edges[m]
                        .iter()
                        .filter(|t| members.contains(t))
                        .map(move |t| format!("{} -> {}", name(m), name(t)))
                })
                .collect();
            format!("cycle among {{{}}}: {}", scc.iter().map(name).collect::<Vec<_>>().join(", "), inner.join("; "))
        })
        .collect();
    assert!(found.is_empty(), "use crate:: cycles in edge/src:\n{}", text.join("\n"));
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let g = graph_of(&edge_src());
    let mut wrong = Vec::new();
    for (from, targets) in &g.edges {
        for to in targets {
            if !from.is_empty() && layer_of(to) > layer_of(from) {
                wrong.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports from a lower layer into a higher one (see LAYERS):\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_cycles_through_use_trees_super_and_child_reexports() {
    let files: BTreeMap<Module, String> = [
        (vec![], "mod a; mod b;".to_string()),
        (vec!["a".to_string()], "pub use inner::X;\nmod inner;".to_string()),
        (vec!["a".to_string(), "inner".to_string()], "use crate::{b::{self, Y}};".to_string()),
        (vec!["b".to_string()], "fn f() { crate::a::X::new(); }".to_string()),
        (vec!["c".to_string()], "use super::b::Y;\n#[cfg(test)]\nmod tests { use crate::c; }".to_string()),
    ]
    .into_iter()
    .collect();
    let g = graph_of(&files);
    let found = cycles(&g);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].len(), 3);
    assert!(g.edges[&vec!["c".to_string()]].contains(&vec!["b".to_string()]));
}
