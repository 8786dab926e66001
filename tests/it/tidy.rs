//! Tidy: the source tree keeps the shape ARCHITECTURE.md describes (in the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`). Reads `src/` as text, no server needed:
//!
//! - every file under `src/` begins with a `//!` line saying what lives there;
//! - the pure core (`src/plan/`) uses no I/O crate, no clock, and no `crate::` module outside
//!   `plan/` except the error types;
//! - every top-level module imports only the layers its `//!` allows ([`LAYERS`]);
//! - no file imports a file that imports it back, directly or through others.
//!
//! The checks are plain functions over (path, text) pairs, so the tests at the bottom show each
//! one failing on a small tree built for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What each top-level module of the crate may import (besides itself). `main.rs` is the binary:
/// it may use anything. A module missing here is a tidy failure: add it with its layer.
const LAYERS: &[(&str, &[&str])] = &[
    // Below everything.
    ("error", &[]),
    ("retry", &[]),
    ("failpoints", &[]),
    // The pure core.
    ("plan", &["error"]),
    // The shells.
    ("pg", &["plan", "error", "retry", "failpoints"]),
    ("archive", &["pg", "plan", "error", "retry", "failpoints"]),
    ("report", &["plan", "error"]),
    ("aws", &["pg", "plan", "report", "error", "retry"]),
    ("executor", &["archive", "pg", "plan", "report", "error", "retry", "failpoints"]),
    // Front doors.
    ("request", &["plan", "error"]),
    ("config", &["archive", "aws", "pg", "plan", "error", "retry"]),
    ("app", &["config", "executor", "archive", "aws", "pg", "plan", "report", "request", "error"]),
    ("cli", &["app", "config", "request", "archive", "plan", "error"]),
    ("lambda", &["app", "config", "request", "error"]),
];

/// Crates and std modules the pure core must not name: I/O, the network, the clock. (The driver's
/// `postgres_protocol::escape` is allowed: quoting is pure, and the proper escaping function.)
const IMPURE: &[&str] = &[
    "tokio",
    "tokio_postgres",
    "postgres_native_tls",
    "native_tls",
    "aws_",
    "lambda_runtime",
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::io",
    "std::time::Instant",
    "std::time::SystemTime",
    "Utc::now",
    "Local::now",
];

/// One source file: its path under `src/` ("plan/planner.rs"), its module path (["plan",
/// "planner"]) and its text.
struct Source {
    path: String,
    module: Vec<String>,
    text: String,
}

fn module_of(path: &str) -> Vec<String> {
    let stem = path.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn read_tree(root: &Path) -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src dir").map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let path = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push(Source { module: module_of(&path), path, text });
            }
        }
    }
    let mut out = vec![];
    walk(root, root, &mut out);
    out
}

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files.iter().map(|(p, t)| Source { path: p.to_string(), module: module_of(p), text: t.to_string() }).collect()
}

/// The code of a file without comments and string literals: doc links and messages are not
/// imports.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' (lifetimes have no closing quote two bytes on).
            i += 3;
            out.push_str("' '");
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a piece of code names after `prefix` (`crate::`, `super::`, `self::`), expanded
/// through `{a, b::c}` groups: each as its list of segments.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    paths_after_at(code, prefix).into_iter().map(|(_, p)| p).collect()
}

/// Inline modules (`mod tests { ... }`) of a file: the byte range of each body and its name, so
/// that `super::` inside one is read relative to it.
fn inline_mods(code: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = vec![];
    for (at, _) in code.match_indices("mod ") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[at + 4..];
        let name_len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let after = rest[name_len..].trim_start();
        if name_len == 0 || !after.starts_with('{') {
            continue; // `mod name;`: a file of its own
        }
        let open = code.len() - after.len();
        let mut depth = 0usize;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((open..open + i, rest[..name_len].to_string()));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Like [`paths_after`], with the byte offset where each path starts.
fn paths_after_at(code: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = vec![];
    let mut from = 0;
    while let Some(pos) = code[from..].find(prefix) {
        let start = from + pos;
        from = start + prefix.len();
        if code[..start].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
            continue; // part of a longer path or name
        }
        let mut rest = &code[from..];
        let mut collected = vec![];
        parse_tree(&mut rest, vec![], &mut collected);
        out.extend(collected.into_iter().map(|p| (start, p)));
    }
    out
}

/// Parses one use-tree (`a::b`, `a::{b, c::d}`, `a::*`) from the front of `s`.
fn parse_tree(s: &mut &str, base: Vec<String>, out: &mut Vec<Vec<String>>) {
    *s = s.trim_start();
    if let Some(r) = s.strip_prefix('{') {
        *s = r;
        loop {
            *s = s.trim_start();
            if let Some(r) = s.strip_prefix('}') {
                *s = r;
                return;
            }
            if s.is_empty() {
                return;
            }
            parse_tree(s, base.clone(), out);
            *s = s.trim_start();
            if let Some(r) = s.strip_prefix(',') {
                *s = r;
            }
        }
    }
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    let seg = &s[..end];
    *s = &s[end..];
    let mut path = base;
    if !seg.is_empty() {
        path.push(seg.to_string());
    }
    if let Some(r) = s.strip_prefix("::") {
        *s = r;
        parse_tree(s, path, out);
    } else {
        // A trailing `*` or `!` (macro) or the end of the path: what we have is the path.
        *s = s.trim_start_matches(['*', '!']);
        out.push(path);
    }
}

/// The modules (by module path) each file depends on, and the file that defines each module.
struct Graph {
    files: Vec<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph(tree: &[Source]) -> Graph {
    let by_module: BTreeMap<Vec<String>, &Source> = tree.iter().map(|s| (s.module.clone(), s)).collect();
    // The longest prefix of a path that is a module of the crate.
    let resolve = |path: &[String]| -> Option<&Source> {
        (1..=path.len()).rev().find_map(|n| by_module.get(&path[..n]).copied())
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for src in tree {
        let code = code_only(&src.text);
        let mut targets: Vec<Vec<String>> = paths_after(&code, "crate::");
        // The module a position is in: the file's, then any inline modules around it.
        let mods = inline_mods(&code);
        let module_at = |at: usize| -> Vec<String> {
            let mut m = src.module.clone();
            m.extend(mods.iter().filter(|(r, _)| r.contains(&at)).map(|(_, name)| name.clone()));
            m
        };
        for (at, p) in paths_after_at(&code, "super::") {
            let mut m = module_at(at);
            m.pop();
            targets.push(m.into_iter().chain(p).collect());
        }
        for (at, p) in paths_after_at(&code, "self::") {
            targets.push(module_at(at).into_iter().chain(p).collect());
        }
        // `use child::Item` in a module file names its own child module.
        for line in code.lines() {
            let line = line.trim_start().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
            if let Some(rest) = line.strip_prefix("use ") {
                let mut rest = rest;
                let mut collected = vec![];
                parse_tree(&mut rest, vec![], &mut collected);
                for p in collected {
                    let child: Vec<String> = src.module.iter().cloned().chain(p.iter().take(1).cloned()).collect();
                    if p.len() > 1 && by_module.contains_key(&child) && child.len() > src.module.len() {
                        targets.push(src.module.iter().cloned().chain(p).collect());
                    }
                }
            }
        }
        let deps = edges.entry(src.path.clone()).or_default();
        for t in targets {
            if let Some(dep) = resolve(&t) {
                if dep.path != src.path && !dep.module.is_empty() {
                    deps.insert(dep.path.clone());
                }
            }
        }
    }
    Graph { files: tree.iter().map(|s| s.path.clone()).collect(), edges }
}

fn check_docs(tree: &[Source]) -> Vec<String> {
    tree.iter()
        .filter(|s| !s.text.starts_with("//!"))
        .map(|s| format!("src/{}: the first line is not a `//!` doc saying what lives here", s.path))
        .collect()
}

fn check_pure_core(tree: &[Source]) -> Vec<String> {
    let mut problems = vec![];
    for src in tree.iter().filter(|s| s.module.first().map(String::as_str) == Some("plan")) {
        let code = code_only(&src.text);
        for word in IMPURE {
            let hit = code.match_indices(word).any(|(i, _)| {
                !code[..i].chars().next_back().is_some_and(|c| is_ident(c) || (c == ':' && !word.contains("::")))
            });
            if hit {
                problems.push(format!("src/{}: the pure core names `{word}` (I/O, network or clock)", src.path));
            }
        }
        for path in paths_after(&code, "crate::") {
            let top = path.first().map(String::as_str).unwrap_or("");
            if top != "plan" && top != "error" {
                problems.push(format!(
                    "src/{}: the pure core imports `crate::{}` (only `crate::plan` and `crate::error` are allowed)",
                    src.path,
                    path.join("::")
                ));
            }
        }
    }
    problems
}

fn check_layers(tree: &[Source], g: &Graph) -> Vec<String> {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let top_of = |path: &str| module_of(path).first().cloned().unwrap_or_default();
    let mut problems = vec![];
    for src in tree {
        let top = match src.module.first() {
            Some(t) => t.clone(),
            None => continue, // lib.rs and main.rs wire everything
        };
        let Some(allowed) = layers.get(top.as_str()) else {
            problems.push(format!("src/{}: module `{top}` has no layer in tidy's LAYERS", src.path));
            continue;
        };
        for dep in &g.edges[&src.path] {
            let dep_top = top_of(dep);
            if dep_top != top && !allowed.contains(&dep_top.as_str()) {
                problems.push(format!("src/{} imports src/{dep}: `{top}` may import only {allowed:?}", src.path));
            }
        }
    }
    problems
}

/// Every import cycle between files, as the list of files around it.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components: a component of two or more files is a cycle.
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(st: &mut State<'a>, v: &'a str) {
        let i = st.index.len();
        st.index.insert(v, i);
        st.low.insert(v, i);
        st.stack.push(v);
        st.on_stack.insert(v);
        for w in st.g.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !st.index.contains_key(w) {
                visit(st, w);
                let lw = st.low[w];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if st.on_stack.contains(w) {
                let iw = st.index[w];
                let lv = st.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if st.low[v] == st.index[v] {
            let mut component = vec![];
            while let Some(w) = st.stack.pop() {
                st.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                st.out.push(component);
            }
        }
    }
    let mut st = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on_stack: BTreeSet::new(),
        out: vec![],
    };
    for f in &g.files {
        if !st.index.contains_key(f.as_str()) {
            visit(&mut st, f);
        }
    }
    st.out
}

fn check_cycles(g: &Graph) -> Vec<String> {
    cycles(g).into_iter().map(|c| format!("import cycle between files: {}", c.join(" <-> "))).collect()
}

fn check(tree: &[Source]) -> Vec<String> {
    let g = graph(tree);
    let mut problems = check_docs(tree);
    problems.extend(check_pure_core(tree));
    problems.extend(check_layers(tree, &g));
    problems.extend(check_cycles(&g));
    problems
}

#[test]
fn the_source_tree_keeps_its_architecture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = read_tree(&root);
    assert!(tree.len() > 20, "read {} files under {}", tree.len(), root.display());
    let g = graph(&tree);
    // The graph is really there: the executor reaches the planner, the retention steps the DDL.
    assert!(g.edges["executor.rs"].contains("plan/planner.rs"), "{:?}", g.edges["executor.rs"]);
    assert!(g.edges["archive/retention/archive.rs"].contains("pg/ddl.rs"));
    let problems = check(&tree);
    assert!(problems.is_empty(), "tidy found:\n{}", problems.join("\n"));
}

#[test]
fn tidy_finds_a_missing_module_doc() {
    let tree = sources(&[("lib.rs", "//! root\npub mod error;"), ("error.rs", "pub struct E;")]);
    assert_eq!(check_docs(&tree), vec!["src/error.rs: the first line is not a `//!` doc saying what lives here"]);
}

#[test]
fn tidy_finds_io_and_foreign_imports_in_the_pure_core() {
    let tree = sources(&[
        ("plan/mod.rs", "//! core\npub mod period;"),
        (
            "plan/period.rs",
            "//! periods\nuse tokio::time::sleep;\nuse crate::pg::catalog::Column;\nfn f() { let _ = chrono::Utc::now(); }",
        ),
        ("pg/catalog.rs", "//! catalog\npub struct Column;"),
    ]);
    let problems = check_pure_core(&tree);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("`tokio`"), "{problems:#?}");
    assert!(problems[1].contains("`Utc::now`"), "{problems:#?}");
    assert!(problems[2].contains("crate::pg::catalog::Column"), "{problems:#?}");
    // Comments and strings are not imports.
    let quiet = sources(&[("plan/ident.rs", "//! [`crate::pg`] runs this\nconst S: &str = \"tokio::spawn\";")]);
    assert_eq!(check_pure_core(&quiet), Vec::<String>::new());
}

#[test]
fn tidy_finds_a_cycle_through_a_group_import_and_a_layer_breach() {
    let tree = sources(&[
        ("executor.rs", "//! runs\nuse crate::archive::{retention::{self, detach}, Archiver};"),
        ("archive/mod.rs", "//! archive\npub mod retention;\npub struct Archiver;"),
        ("archive/retention/mod.rs", "//! steps\nmod detach;\npub use detach::detach;"),
        ("archive/retention/detach.rs", "//! detach\nuse crate::executor::run;"),
    ]);
    let g = graph(&tree);
    assert_eq!(
        g.edges["archive/retention/mod.rs"],
        BTreeSet::from(["archive/retention/detach.rs".to_string()]),
        "a `use child::` names the child file"
    );
    assert_eq!(
        check_cycles(&g),
        vec!["import cycle between files: archive/retention/detach.rs <-> archive/retention/mod.rs <-> executor.rs"]
    );
    assert_eq!(
        check_layers(&tree, &g),
        vec![
            "src/archive/retention/detach.rs imports src/executor.rs: `archive` may import only [\"pg\", \"plan\", \"error\", \"retry\", \"failpoints\"]"
        ]
    );
}

#[test]
fn tidy_reads_super_in_an_inline_test_module_as_the_file_itself() {
    let tree = sources(&[
        ("archive/mod.rs", "//! archive\npub mod settings;\nuse settings::Settings;"),
        ("archive/settings.rs", "//! settings\npub struct Settings;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}"),
    ]);
    let g = graph(&tree);
    assert_eq!(g.edges["archive/mod.rs"], BTreeSet::from(["archive/settings.rs".to_string()]));
    assert!(g.edges["archive/settings.rs"].is_empty(), "{:?}", g.edges["archive/settings.rs"]);
    assert!(check_cycles(&g).is_empty());
    // The same `super::` outside the inline module names the parent: now there is a cycle.
    let tree = sources(&[
        ("archive/mod.rs", "//! archive\npub mod settings;\nuse settings::Settings;"),
        ("archive/settings.rs", "//! settings\nuse super::Archiver;"),
    ]);
    assert_eq!(check_cycles(&graph(&tree)), vec!["import cycle between files: archive/mod.rs <-> archive/settings.rs"]);
}
