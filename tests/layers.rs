//! The import rule, enforced: layers import downward only, and no file of `src/` imports,
//! through any chain of files, itself.
//!
//! ```text
//! model  <-  gitsync  <-  intent        app, cli: on top of everything
//! model  <-  render
//! model  <-  xds
//! ```
//!
//! An import is any path in a file that starts with `crate::`, `super::`, `self::` or the
//! name of a child module the file declares (`mod child;`), in a `use` or in code; it points
//! at the deepest file the path reaches (`crate::model::names::is_dns1123_label` is
//! `src/model/names.rs`). Comments, string literals and `#[cfg(test)]` items are not read:
//! a unit test may use whatever it needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path: `["xds", "translate", "mesh"]`; `[]` is the crate root.
type Module = Vec<String>;

/// Import-cycle edges tolerated for now: none. An entry that is not part of a cycle fails
/// the test, so a list used during a migration cannot outlive the fix.
const PENDING: &[(&str, &str)] = &[];

/// Top-level modules a layer must not import. `model` imports nothing of the crate at all.
/// `admin` and `webhook` are the app's own endpoints; `metrics` is shared (streams count).
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "gitsync",
        &[
            "intent", "render", "xds", "app", "cli", "review", "admin", "webhook",
        ],
    ),
    (
        "intent",
        &["xds", "render", "app", "cli", "review", "admin", "webhook"],
    ),
    (
        "render",
        &[
            "intent", "xds", "app", "cli", "gitsync", "review", "admin", "webhook",
        ],
    ),
    (
        "xds",
        &[
            "intent", "render", "app", "cli", "review", "admin", "webhook",
        ],
    ),
];

// === reading the sources ===

/// `src` with comments replaced by a space and string and char literals by `""` and `' '`,
/// so that neither can look like a path or a brace.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let at = |j: usize| c.get(j).copied().unwrap_or('\0');
        match c[i] {
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && at(i + 1) == '*' {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i + 1) == '/' {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            // Raw strings: r"…", r#"…"#, br#"…"# (the `r` starts a token).
            'r' if (i == 0
                || !ident(c[i - 1])
                || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
                && {
                    let mut j = i + 1;
                    while at(j) == '#' {
                        j += 1;
                    }
                    at(j) == '"'
                } =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), left as is.
                if at(i + 1) == '\\' {
                    let mut j = i + 2;
                    while j < c.len() && c[j] != '\'' {
                        j += 1;
                    }
                    out.push_str("' '");
                    i = j + 1;
                } else if at(i + 2) == '\'' {
                    out.push_str("' '");
                    i += 3;
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// Removes every item under `#[cfg(test)]` (up to its `;` or its balanced `{…}`).
fn drop_test_items(src: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let item = &rest[at + ATTR.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (k, ch) in item.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// The `mod name;` declarations of a file: its child modules in their own files.
fn child_modules(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(k) = find_word(rest, "mod") {
        rest = &rest[k + 3..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| is_ident(*c))
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if !name.is_empty() && after.starts_with(';') {
            out.insert(name);
        }
    }
    out
}

/// `use a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(prefix: &str, body: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut items = Vec::new();
    let mut cur = String::new();
    for ch in body.chars() {
        match ch {
            '{' => {
                depth += 1;
                cur.push(ch);
            }
            '}' => {
                depth -= 1;
                cur.push(ch);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    items.push(cur);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.find("::{") {
            Some(k) if item.ends_with('}') => {
                expand_use(
                    &format!("{prefix}{}::", &item[..k]),
                    &item[k + 3..item.len() - 1],
                    out,
                );
            }
            _ if item.starts_with('{') && item.ends_with('}') => {
                expand_use(prefix, &item[1..item.len() - 1], out);
            }
            // A leaf: `a::b`, `a::b as c`, `self`.
            _ => {
                let leaf = item.split_whitespace().next().unwrap_or("");
                out.push(format!("{prefix}{leaf}"));
            }
        }
    }
}

/// Every path of the file: the `use` trees expanded, and `a::b…` chains in the rest.
fn paths(src: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut code = String::new();
    let mut rest = src;
    // `use` statements (any visibility) are cut out and expanded; the rest is code.
    while let Some(k) = find_word(rest, "use") {
        code.push_str(&rest[..k]);
        let after = &rest[k + 3..];
        let end = after.find(';').unwrap_or(after.len());
        let mut used = Vec::new();
        expand_use("", &after[..end], &mut used);
        out.extend(used.iter().map(|p| split_path(p)));
        rest = &after[(end + 1).min(after.len())..];
    }
    code.push_str(rest);
    let c: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let starts = is_ident(c[i])
            && !c[i].is_ascii_digit()
            && (i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segs = Vec::new();
        loop {
            let s = i;
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            segs.push(c[s..i].iter().collect::<String>());
            if c.get(i) == Some(&':')
                && c.get(i + 1) == Some(&':')
                && c.get(i + 2).is_some_and(|ch| is_ident(*ch))
            {
                i += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            out.push(segs);
        }
    }
    out
}

fn split_path(p: &str) -> Vec<String> {
    p.split("::").map(|s| s.trim().to_owned()).collect()
}

/// Where the keyword `word` next starts in `s` as a whole word.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = s[from..].find(word) {
        let at = from + k;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The files of `root` by module path.
fn files(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).expect("under root").with_extension("");
                let module: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let module = if module == ["lib"] || module == ["main"] {
                    Vec::new()
                } else {
                    module
                };
                out.insert(module, p);
            }
        }
    }
    out
}

/// File → the files it imports, as paths relative to `root`'s parent (`src/x.rs`).
fn imports(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = files(root);
    let name = |p: &Path| {
        p.strip_prefix(root.parent().unwrap_or(Path::new("")))
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    let mut edges = BTreeMap::new();
    for (module, path) in &files {
        let src = drop_test_items(&strip(&std::fs::read_to_string(path).expect("read")));
        let children = child_modules(&src);
        let mut to = BTreeSet::new();
        for segs in paths(&src) {
            let (mut base, rest): (Module, &[String]) = match segs[0].as_str() {
                "crate" => (Vec::new(), &segs[1..]),
                "super" | "self" => {
                    let mut base = module.clone();
                    let mut k = 0;
                    while k < segs.len() && (segs[k] == "super" || segs[k] == "self") {
                        if segs[k] == "super" {
                            base.pop();
                        }
                        k += 1;
                    }
                    (base, &segs[k..])
                }
                c if children.contains(c) => (module.clone(), &segs[..]),
                _ => continue,
            };
            let mut best = base.clone();
            for s in rest {
                base.push(s.clone());
                if files.contains_key(&base) {
                    best = base.clone();
                } else {
                    break;
                }
            }
            if &best != module
                && let Some(target) = files.get(&best)
            {
                to.insert(name(target));
            }
        }
        edges.insert(name(path), to);
    }
    edges
}

// === the rules ===

/// Strongly connected components with more than one file (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The top-level module of `src/a/b.rs` (`a`), `lib` for the crate root.
fn layer(file: &str) -> &str {
    let rel = file.split_once('/').map_or(file, |(_, r)| r);
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Every broken rule, as lines `a.rs -> b.rs: why`.
fn violations(edges: &BTreeMap<String, BTreeSet<String>>, pending: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (a, tos) in edges {
        for b in tos {
            let (la, lb) = (layer(a), layer(b));
            if la == "model" && lb != "model" {
                out.push(format!("{a} -> {b}: model imports nothing of the crate"));
            }
            if let Some((_, bad)) = FORBIDDEN.iter().find(|(l, _)| *l == la)
                && bad.contains(&lb)
            {
                out.push(format!("{a} -> {b}: {la} must not import {lb}"));
            }
        }
    }
    let mut in_cycles = BTreeSet::new();
    for comp in cycles(edges) {
        for a in &comp {
            for b in edges[a].intersection(&comp) {
                in_cycles.insert((a.clone(), b.clone()));
                if !pending.contains(&(a.as_str(), b.as_str())) {
                    out.push(format!(
                        "{a} -> {b}: part of an import cycle of {}",
                        comp.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    for (a, b) in pending {
        if !in_cycles.contains(&(a.to_string(), b.to_string())) {
            out.push(format!(
                "{a} -> {b}: listed in PENDING but no longer part of a cycle: remove it from PENDING"
            ));
        }
    }
    out
}

#[test]
fn layers_import_downward_and_no_file_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = imports(&root);
    // The reader must see the crate at all (a reader that found nothing would pass).
    let count: usize = edges.values().map(BTreeSet::len).sum();
    assert!(
        edges.len() > 30 && count > 100,
        "{} files, {count} imports",
        edges.len()
    );
    let v = violations(&edges, PENDING);
    assert!(
        v.is_empty(),
        "{} import(s) break the layer rule (see tests/layers.rs):\n  {}",
        v.len(),
        v.join("\n  ")
    );
}

/// The reader on a small tree with every construct it must get right.
#[test]
fn the_reader_finds_exactly_the_imports() {
    let dir = std::env::temp_dir().join(format!("tidegate-layers-{}", std::process::id()));
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&dir);
    for d in ["model", "intent", "render", "xds"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let write = |p: &str, s: &str| std::fs::write(src.join(p), s).unwrap();
    write(
        "lib.rs",
        "pub mod model;\npub mod intent;\npub mod render;\npub mod xds;\n",
    );
    write("model.rs", "pub mod meta;\npub use meta::Meta;\n");
    // A child importing its parent: a cycle.
    write("model/meta.rs", "use super::Meta;\npub struct Meta;\n");
    write(
        "intent.rs",
        "//! use crate::xds::Bad; in a comment\npub mod decode;\nuse crate::{model::meta::{self, Meta as M}, render};\n\
         const S: &str = \"crate::xds::Bad\";\nconst R: &str = r#\"crate::render::\"Bad\"#;\n\
         fn f<'a>(x: &'a str) -> char { let _ = decode::parse::<u8>(x); '{' }\n\
         #[cfg(test)]\nmod tests {\n    use crate::xds::Fine;\n    fn g() { let _ = '}'; }\n}\n",
    );
    write("intent/decode.rs", "pub fn parse() {}\n");
    write("render.rs", "fn f() { crate::model::meta::Meta; }\n");
    write("xds.rs", "pub mod wire;\n");
    write(
        "xds/wire.rs",
        "pub(crate) fn w() { super::super::intent::decode::parse(); }\n",
    );
    let edges = imports(&src);
    std::fs::remove_dir_all(&dir).unwrap();
    let e = |a: &str, b: &[&str]| {
        (
            a.to_owned(),
            b.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        )
    };
    let want: BTreeMap<_, _> = [
        e("src/lib.rs", &[]),
        e("src/model.rs", &["src/model/meta.rs"]),
        e("src/model/meta.rs", &["src/model.rs"]),
        e(
            "src/intent.rs",
            &["src/intent/decode.rs", "src/model/meta.rs", "src/render.rs"],
        ),
        e("src/intent/decode.rs", &[]),
        e("src/render.rs", &["src/model/meta.rs"]),
        e("src/xds.rs", &[]),
        e("src/xds/wire.rs", &["src/intent/decode.rs"]),
    ]
    .into();
    assert_eq!(edges, want);
    let v = violations(
        &edges,
        &[
            ("src/model/meta.rs", "src/model.rs"),
            ("src/xds.rs", "src/model.rs"),
        ],
    );
    assert_eq!(
        v,
        [
            "src/intent.rs -> src/render.rs: intent must not import render",
            "src/xds/wire.rs -> src/intent/decode.rs: xds must not import intent",
            "src/model.rs -> src/model/meta.rs: part of an import cycle of src/model.rs, src/model/meta.rs",
            "src/xds.rs -> src/model.rs: listed in PENDING but no longer part of a cycle: remove it from PENDING",
        ]
    );
}
