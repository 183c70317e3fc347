//! The shape of the library, checked from its source: the import graph of
//! `pkg/` (every `crate::`, `super::`, `self::` and child-module path in code,
//! resolved to the file that declares the module it reaches) has no circle
//! between files and no import from a lower layer to a higher one; no file
//! has more than 600 lines before its tests.
//!
//! `cargo test --test integration architecture -- --nocapture` prints the
//! graph's summary: files, imports, floors (the longest chain of imports
//! below a file) and the imports of each runner folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `pkg/`, lowest first: shared plumbing, the registry client
/// that every subsystem may use, the subsystems (which never import each
/// other), `lvh test` and `lvh kernels bisect` on the runner, and the crate root and fuzz harness.
const LAYERS: &[&[&str]] = &[
    &[
        "arch", "bytesize", "cancel", "date", "error", "exec", "fsutil", "jsonpos", "progress",
        "sched", "stale", "version",
    ],
    &["oci", "triage"],
    &["images", "kernels", "runner"],
    &["bisect", "matrix"],
    &["", "fuzz"],
];

/// Lines a module may have before its tests.
const MAX_LINES: usize = 600;

/// One source file and its code.
struct Module {
    file: PathBuf,
    /// The code before `#[cfg(test)]`, without comments.
    code: String,
    /// Lines before its tests.
    lines: usize,
    children: BTreeSet<String>,
}

fn pkg_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg")
}

/// The code of a file before its first top-level `#[cfg(test)]`, with `//`
/// comments removed, and that code's line count.
fn code_of(text: &str) -> (String, usize) {
    let mut code = String::new();
    let mut lines = 0;
    for l in text.lines() {
        if l.starts_with("#[cfg(test)]") {
            break;
        }
        lines += 1;
        let l = match l.find("//") {
            // A `//` inside a string (a URL) is rare in pkg/; a comment is common.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        };
        code.push_str(l);
        code.push('\n');
    }
    (code, lines)
}

/// The children a module declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`)
/// that are files.
fn declared_children(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in code.lines() {
        let l = l.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(rest) = l.strip_prefix("mod ") {
            if let Some(name) = rest.strip_suffix(';') {
                out.insert(name.trim().to_string());
            }
        }
    }
    out
}

/// Every module file under `pkg/`, by module path.
fn modules() -> BTreeMap<Vec<String>, Module> {
    fn load(file: &Path, path: Vec<String>, dir: &Path, out: &mut BTreeMap<Vec<String>, Module>) {
        let text = std::fs::read_to_string(file).unwrap();
        let (code, lines) = code_of(&text);
        let children = declared_children(&code);
        for c in &children {
            let flat = dir.join(format!("{c}.rs"));
            let nested = dir.join(c).join("mod.rs");
            let (f, d) = if flat.is_file() {
                (flat, dir.join(c))
            } else if nested.is_file() {
                (nested, dir.join(c))
            } else {
                continue; // a #[path] module or an inline one
            };
            let mut p = path.clone();
            p.push(c.clone());
            load(&f, p, &d, out);
        }
        out.insert(
            path,
            Module {
                file: file.to_path_buf(),
                code,
                lines,
                children,
            },
        );
    }
    let mut out = BTreeMap::new();
    let pkg = pkg_dir();
    load(&pkg.join("lib.rs"), vec![], &pkg, &mut out);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = vec![];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// The paths a module's code names: `use` trees expanded, and `crate::`,
/// `super::` paths anywhere in the code.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = vec![];
    // `use` statements (possibly over several lines), then the rest of the code.
    let mut other = String::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        other.push_str(&rest[..i]);
        let after = &rest[i + 4..];
        let end = after.find(';');
        match end {
            Some(end) if !before.is_some_and(is_ident) && !after[..end].contains(['"', '(']) => {
                out.extend(expand(&after[..end]));
                rest = &after[end..];
            }
            _ => {
                other.push_str("use ");
                rest = after;
            }
        }
    }
    other.push_str(rest);
    let code = other.as_str();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if code[..at].chars().last().is_some_and(is_ident) {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(is_ident(c) || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// The module a path reaches from module `from`, as far as modules go.
fn resolve(
    mods: &BTreeMap<Vec<String>, Module>,
    from: &[String],
    path: &str,
) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut cur: Vec<String>;
    let mut i = 0;
    match segs.first()? {
        &"crate" => {
            cur = vec![];
            i = 1;
        }
        &"super" | &"self" => {
            cur = from.to_vec();
            while i < segs.len() && (segs[i] == "super" || segs[i] == "self") {
                if segs[i] == "super" {
                    cur.pop()?;
                }
                i += 1;
            }
        }
        first if mods[from].children.contains(*first) => cur = from.to_vec(),
        _ => return None,
    }
    while i < segs.len() {
        let mut next = cur.clone();
        next.push(segs[i].to_string());
        if !mods.contains_key(&next) {
            break;
        }
        cur = next;
        i += 1;
    }
    Some(cur)
}

fn name(p: &[String]) -> String {
    if p.is_empty() {
        "lib".into()
    } else {
        p.join("::")
    }
}

fn layer(p: &[String]) -> usize {
    let top = p.first().map(String::as_str).unwrap_or("");
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("pkg/{top} is in no layer of tests/integration/architecture.rs"))
}

type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

/// File-to-file imports. A module's own declarations of its children
/// (`mod x;`) are not imports; its `use`s of them are.
fn graph(mods: &BTreeMap<Vec<String>, Module>) -> Graph {
    let mut g = Graph::new();
    for (p, m) in mods {
        let e = g.entry(p.clone()).or_default();
        for path in paths_in(&m.code) {
            if let Some(to) = resolve(mods, p, &path) {
                if &to != p {
                    e.insert(to);
                }
            }
        }
    }
    g
}

/// The circles of the graph (strongly connected components with more than one file).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred files.
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in &t.g[v] {
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[w].min(t.low[v]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.index[w].min(t.low[v]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut c = vec![];
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                c.push(name(w));
                if w == v {
                    break;
                }
            }
            if c.len() > 1 {
                c.sort();
                t.out.push(c);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        out: vec![],
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Each file's floor: 0 for a file that imports nothing of pkg/, else one
/// above the highest file it imports (the graph must have no circle).
fn floors(g: &Graph) -> BTreeMap<Vec<String>, usize> {
    fn floor(g: &Graph, v: &Vec<String>, memo: &mut BTreeMap<Vec<String>, usize>) -> usize {
        if let Some(f) = memo.get(v) {
            return *f;
        }
        memo.insert(v.clone(), 0);
        let f = g[v]
            .iter()
            .map(|w| floor(g, w, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(v.clone(), f);
        f
    }
    let mut memo = BTreeMap::new();
    for v in g.keys() {
        floor(g, v, &mut memo);
    }
    memo
}

/// Imports from a lower layer to a higher one, or between subsystems of the same layer.
fn upward(g: &Graph) -> Vec<String> {
    let mut out = vec![];
    for (from, tos) in g {
        for to in tos {
            let (lf, lt) = (layer(from), layer(to));
            let sideways = lf == lt && lf == 2 && from.first() != to.first();
            if lt > lf || sideways {
                out.push(format!("{} -> {}", name(from), name(to)));
            }
        }
    }
    out
}

#[test]
fn the_import_graph_has_no_circle_and_no_upward_import() {
    let mods = modules();
    let g = graph(&mods);
    let c = circles(&g);
    let up = upward(&g);
    let edges: usize = g.values().map(BTreeSet::len).sum();
    println!("pkg/: {} files, {edges} imports", g.len());
    println!("circles: {}", c.len());
    for circle in &c {
        println!("  {}", circle.join(" <-> "));
    }
    println!("upward or sideways imports: {}", up.len());
    for u in &up {
        println!("  {u}");
    }
    if c.is_empty() {
        let f = floors(&g);
        let runner: Vec<_> = f
            .iter()
            .filter(|(p, _)| p.first().is_some_and(|t| t == "runner"))
            .collect();
        let most = runner.iter().map(|(_, f)| **f).max().unwrap_or(0);
        let runner_edges: usize = g
            .iter()
            .filter(|(p, _)| p.first().is_some_and(|t| t == "runner"))
            .map(|(_, t)| t.len())
            .sum();
        println!(
            "runner: {} files, {runner_edges} imports, {} floors",
            runner.len(),
            most + 1
        );
        let mut by_floor: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (p, fl) in &f {
            by_floor.entry(*fl).or_default().push(name(p));
        }
        for (fl, names) in by_floor {
            println!("  floor {fl}: {}", names.join(", "));
        }
    }
    assert!(c.is_empty(), "import circles: {c:?}");
    assert!(up.is_empty(), "upward imports: {up:?}");
}

#[test]
fn no_module_is_longer_than_600_lines_before_its_tests() {
    let long: Vec<String> = modules()
        .values()
        .filter(|m| m.lines > MAX_LINES)
        .map(|m| format!("{} ({} lines)", m.file.display(), m.lines))
        .collect();
    let most = modules().values().map(|m| m.lines).max().unwrap_or(0);
    println!("longest module: {most} lines before its tests");
    assert!(long.is_empty(), "modules over {MAX_LINES} lines: {long:?}");
}

#[test]
fn the_graph_tool_reads_use_trees_and_paths() {
    assert_eq!(
        expand("super::{a, b::{c, d}, e}"),
        ["super::a", "super::b::c", "super::b::d", "super::e"]
    );
    let p = paths_in("use crate::x::{y, z};\nfn f() { crate::w::v(); super::q::r(); }\n");
    assert_eq!(
        p,
        ["crate::x::y", "crate::x::z", "crate::w::v", "super::q::r"]
    );
    let (code, lines) = code_of("a // c\nb\n#[cfg(test)]\nmod tests;\n");
    assert_eq!((code.as_str(), lines), ("a \nb\n", 2));
}
