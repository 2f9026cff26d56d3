//! The shim's import direction, checked from its sources: every `crate::` path (and, in the
//! binary, every `lwm2m_server_shim::` path), test code included, is an edge from the module
//! that writes it to the module it names. No two modules and no two top-level folders may
//! import each other in a circle, and folders import only downwards in the layering the crate
//! docs describe: cli -> app / conformance -> api -> firmware -> server -> packages ->
//! coap / content.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level parts from the top down; a part may import only parts after it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["app"],
    &["conformance"],
    &["api"],
    &["firmware"],
    &["server"],
    &["packages"],
    &["coap", "content"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` -> `a::b`, `src/a/mod.rs` -> `a`; `main.rs` is the binary, named `cli` with
/// its `cli/` folder.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut segs: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    if segs == ["main"] {
        return "cli".into();
    }
    segs.join("::")
}

/// Code without comments (`//` to the end of the line, doc comments included).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("coap://...") is rare in paths; cut only when
            // no quote precedes it on the line.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses the path tree after `prefix::` at the start of `s`: `a::b`, `a::{b, c::d}`,
/// `a::b as c`; returns every path it names.
fn parse_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut segs = Vec::new();
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            segs.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::{") {
            i += 3;
            let mut out = Vec::new();
            loop {
                let ws = s[i..].len() - s[i..].trim_start().len();
                i += ws;
                if s[i..].starts_with('}') {
                    i += 1;
                    break;
                }
                let (sub, used) = parse_tree(&s[i..]);
                i += used;
                for p in sub {
                    out.push(segs.iter().cloned().chain(p).collect());
                }
                // Skip `as name`, `*` and the separator.
                while i < bytes.len() && bytes[i] != b',' && bytes[i] != b'}' {
                    i += 1;
                }
                if i < bytes.len() && bytes[i] == b',' {
                    i += 1;
                }
                if i >= bytes.len() {
                    break;
                }
            }
            return (out, i);
        }
        if s[i..].starts_with("::") && i > start {
            i += 2;
            continue;
        }
        return (vec![segs], i);
    }
}

/// Every path written after `prefix::` in `text`.
fn paths(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..].find(&needle) {
        let begin = at + i;
        at = begin + needle.len();
        let before = text[..begin].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let tail = &text[at..];
        let (found, _) = if let Some(rest) = tail.strip_prefix('{') {
            // `crate::{a, b}`: parse as the subtree of an empty path.
            let (p, n) = parse_tree(&format!("x::{{{rest}"));
            (
                p.into_iter()
                    .map(|v| v.into_iter().skip(1).collect())
                    .collect(),
                n,
            )
        } else {
            parse_tree(tail)
        };
        out.extend(found);
    }
    out
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// A cycle in `graph`, if any, as the list of nodes around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Module -> modules it imports, and top-level part -> parts it imports.
type Graphs = (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
);

fn graphs() -> Graphs {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut by_module = BTreeMap::<String, BTreeSet<String>>::new();
    let mut by_top = BTreeMap::<String, BTreeSet<String>>::new();
    for f in &files {
        let me = module_of(&src, f);
        if me == "lib" {
            continue;
        }
        let text = code(&std::fs::read_to_string(f).expect("read"));
        let binary = top(&me) == "cli";
        // In the binary `crate` is main.rs, whose modules are the cli folder's; it reaches
        // the library as `lwm2m_server_shim`.
        let mut refs: Vec<Vec<String>> = paths(&text, "crate")
            .into_iter()
            .filter(|p| !binary || p.first().is_some_and(|s| s == "cli"))
            .collect();
        refs.extend(paths(&text, "lwm2m_server_shim"));
        let entry = by_module.entry(me.clone()).or_default();
        let top_entry = by_top.entry(top(&me).to_string()).or_default();
        for r in refs {
            let Some(target) = resolve(&r, &modules) else {
                continue;
            };
            if target != me && target != "lib" {
                entry.insert(target.clone());
                if top(&target) != top(&me) {
                    top_entry.insert(top(&target).to_string());
                }
            }
        }
    }
    (by_module, by_top)
}

#[test]
fn the_path_parser_reads_nested_use_trees() {
    let text = "use crate::{a, b::{c, d as e}};\nlet x = crate::f::g::h(1);\nuse crate::i::*;";
    let got = paths(text, "crate");
    let want: Vec<Vec<String>> = [
        &["a"][..],
        &["b", "c"],
        &["b", "d"],
        &["f", "g", "h"],
        &["i"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
    let mut g = BTreeMap::<String, BTreeSet<String>>::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_module_imports_in_a_circle() {
    let (by_module, by_top) = graphs();
    assert!(by_module.contains_key("server::shim"), "{by_module:?}");
    assert_eq!(find_cycle(&by_top), None, "folders: {by_top:#?}");
    assert_eq!(find_cycle(&by_module), None, "modules: {by_module:#?}");
}

#[test]
fn folders_import_only_downwards() {
    let (_, by_top) = graphs();
    let rank = |part: &str| LAYERS.iter().position(|l| l.contains(&part));
    let mut wrong = Vec::new();
    for (from, targets) in &by_top {
        for to in targets {
            match (rank(from), rank(to)) {
                (Some(a), Some(b)) if a < b => {}
                _ => wrong.push(format!("{from} -> {to}")),
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:?}");
}

/// The shim takes from the client crate only what both must share (its codecs and its DTLS
/// wrapper, DESIGN.md's import arrows): in the shim's normal dependency tree, the subtree under
/// `lwm2m-client` holds no device simulation (device-port), no device command line (clap), no
/// HTTP client (ureq), no tokio runtime and no log subscriber. Read from `cargo tree`, so a
/// feature a dependency turns on is seen too.
#[test]
fn the_client_crate_brings_no_device_simulation_runtime_or_http_client() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "lwm2m-server-shim", "-e", "normal"])
        .args([
            "--prefix",
            "depth",
            "--no-dedupe",
            "--offline",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    // Lines are "<depth><name> v<version> ...": the client's subtree is every line after it
    // that is deeper than it.
    let parse = |l: &str| {
        let name_at = l.find(|c: char| !c.is_ascii_digit())?;
        let depth: usize = l[..name_at].parse().ok()?;
        let name = l[name_at..].split_whitespace().next()?.to_string();
        Some((depth, name))
    };
    let lines: Vec<(usize, String)> = tree.lines().filter_map(parse).collect();
    let mut below_client = BTreeSet::new();
    let mut found = false;
    for (i, (depth, name)) in lines.iter().enumerate() {
        if name != "lwm2m-client" {
            continue;
        }
        found = true;
        for (d, n) in &lines[i + 1..] {
            if d <= depth {
                break;
            }
            below_client.insert(n.as_str());
        }
    }
    assert!(found, "lwm2m-client is not in the shim's tree:\n{tree}");
    let forbidden = ["device-port", "clap", "ureq", "tokio", "tracing-subscriber"];
    let pulled: Vec<&str> = forbidden
        .into_iter()
        .filter(|f| below_client.contains(f))
        .collect();
    assert!(
        pulled.is_empty(),
        "the shim gets {pulled:?} through lwm2m-client"
    );
}
