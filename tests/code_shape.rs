//! The shape SPEC §9 asks of the library: no module under `src/` imports one that imports it
//! back, directly or around a longer loop. A parent module that uses an item of its own
//! child counts as importing it, so a child that reaches back through `super` closes a loop.
//!
//! The check reads the source: `use` trees and `a::b::c` paths, with comments, string
//! literals and `#[cfg(test)]` blocks removed, resolved to the deepest module file they name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Module = Vec<String>;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = read_modules(&src);
    assert!(modules.len() > 10, "found only {} modules", modules.len());
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, code) in &modules {
        graph.insert(module.clone(), imports(module, code, &known));
    }
    // `cargo nextest run code_shape --no-capture` shows the graph.
    for (module, imported) in &graph {
        let imported: Vec<String> = imported.iter().map(name).collect();
        eprintln!("{} -> {}", name(module), imported.join(", "));
    }
    let loops = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" <-> "))
        .collect::<Vec<_>>();
    assert!(
        loops.is_empty(),
        "modules that import each other (directly or in a loop):\n  {}",
        loops.join("\n  ")
    );
}

#[test]
fn the_checker_finds_a_loop_through_super() {
    let known: BTreeSet<Module> = [vec![], m("a"), m("a::b")].into_iter().collect();
    let parent = "mod b;\npub use b::Thing;\n// crate::x in a comment\n";
    let child = "use super::Shared;\nfn f() { let s = \"crate::a::b\"; }\n";
    let mut graph = BTreeMap::new();
    graph.insert(m("a"), imports(&m("a"), &strip(parent), &known));
    graph.insert(m("a::b"), imports(&m("a::b"), &strip(child), &known));
    graph.insert(vec![], BTreeSet::new());
    assert_eq!(graph[&m("a")], [m("a::b")].into_iter().collect());
    assert_eq!(graph[&m("a::b")], [m("a")].into_iter().collect());
    let loops: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    assert_eq!(loops.len(), 1);
    // Paths through a `use crate::x::{self}` alias and nested use trees resolve too.
    let code = strip("use crate::{a::{self}, c as see};\nfn g() { a::b::run(); see::x(); }\n");
    let known: BTreeSet<Module> = [vec![], m("a"), m("a::b"), m("c"), m("d")]
        .into_iter()
        .collect();
    let found = imports(&m("d"), &code, &known);
    assert_eq!(found, [m("a"), m("a::b"), m("c")].into_iter().collect());
}

fn m(path: &str) -> Module {
    path.split("::").map(str::to_owned).collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".to_owned()
    } else {
        module.join("::")
    }
}

/// Every module file under `src` (the binary's `main.rs` aside), as its module path and its
/// code without comments, literals and test-only blocks.
fn read_modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            match module.last().map(String::as_str) {
                Some("main") if module.len() == 1 => continue,
                Some("lib") if module.len() == 1 => module.clear(),
                Some("mod") => {
                    module.pop();
                }
                _ => {}
            }
            out.insert(module, strip(&fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

/// The code with comments and string and char literals blanked, and every `#[cfg(test)]`
/// item (a `mod tests { … }` or a single `use`) cut out.
fn strip(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
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
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&chars, i) {
            // r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), which stays.
            let literal_end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = literal_end {
                out.push_str("' '");
                i = end + 1;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    cut_test_items(&out)
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Removes each `#[cfg(test)]` and the item after it (up to its matching `}` or its `;`).
fn cut_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let end = match (after.find('{'), after.find(';')) {
            (Some(brace), semi) if semi.is_none_or(|s| brace < s) => {
                let mut depth = 0;
                let mut end = after.len();
                for (k, ch) in after[brace..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = brace + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(semi)) => semi + 1,
            _ => after.len(),
        };
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The modules `module` imports, among `known`.
fn imports(module: &Module, code: &str, known: &BTreeSet<Module>) -> BTreeSet<Module> {
    let children: BTreeSet<String> = known
        .iter()
        .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
        .map(|k| k.last().unwrap().clone())
        .collect();
    let mut aliases: BTreeMap<String, Module> = BTreeMap::new();
    let mut found = BTreeSet::new();
    let mut body = String::new();
    // `use` trees first: they define the names the rest of the code uses.
    let mut rest = code;
    while let Some(at) = find_keyword(rest, "use") {
        body.push_str(&rest[..at]);
        let statement = &rest[at + 3..];
        let end = statement.find(';').unwrap_or(statement.len());
        for (path, leaf) in expand_use(&statement[..end]) {
            let resolved = resolve(module, &path, &children, &aliases, known);
            if let Some(target) = resolved {
                // `use a::b` where b is itself a module: later `b::x` paths go through it.
                let full = path_if_module(module, &path, &children, &aliases, known);
                if let Some(full) = full {
                    aliases.insert(leaf, full);
                }
                found.insert(target);
            }
        }
        rest = &statement[(end + 1).min(statement.len())..];
    }
    body.push_str(rest);
    for path in inline_paths(&body) {
        if let Some(target) = resolve(module, &path, &children, &aliases, known) {
            found.insert(target);
        }
    }
    found.remove(module);
    found
}

fn find_keyword(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(word) {
        let at = from + pos;
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let after = bytes.get(at + word.len()).copied().unwrap_or(b' ');
        if before_ok && after.is_ascii_whitespace() {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// `a::{b, c::{self, d as e}}` → `[a,b]`, `[a,c]`, `[a,c,d]`, each with the name it
/// brings into scope (`b`, `c`, `e`).
fn expand_use(tree: &str) -> Vec<(Vec<String>, String)> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = segments(&tree[..open]);
            let mut base = prefix.to_vec();
            base.extend(head);
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        walk(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            walk(&base, &inner[start..], out);
        } else {
            let (tree, alias) = match tree.split_once(" as ") {
                Some((tree, alias)) => (tree, Some(alias.trim().to_owned())),
                None => (tree, None),
            };
            let mut path = prefix.to_vec();
            let segs = segments(tree);
            if segs.is_empty() || segs.last().is_some_and(|s| s == "*") {
                if !path.is_empty() {
                    out.push((path, String::new()));
                }
                return;
            }
            if segs.as_slice() != ["self"] {
                path.extend(segs);
            }
            let name = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
            out.push((path, name));
        }
    }
    let mut out = Vec::new();
    walk(&[], tree.trim_start_matches("::"), &mut out);
    out
}

fn segments(text: &str) -> Vec<String> {
    text.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every `a::b…` path outside `use` statements.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !ident(chars[i]) || (i > 0 && (ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let mut path = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && ident(chars[j]) {
                j += 1;
            }
            path.push(chars[start..j].iter().collect::<String>());
            if chars.get(j) == Some(&':')
                && chars.get(j + 1) == Some(&':')
                && chars.get(j + 2).copied().is_some_and(ident)
            {
                j += 2;
            } else {
                break;
            }
        }
        if path.len() > 1 {
            out.push(path);
        }
        i = j.max(i + 1);
    }
    out
}

/// Where a path starts: the crate root, a relative module, a child, or an imported module.
fn start_of(
    module: &Module,
    first: &str,
    children: &BTreeSet<String>,
    aliases: &BTreeMap<String, Module>,
) -> Option<Module> {
    match first {
        "crate" => Some(Vec::new()),
        "self" => Some(module.clone()),
        "super" => {
            let mut parent = module.clone();
            parent.pop();
            Some(parent)
        }
        name if children.contains(name) => {
            let mut child = module.clone();
            child.push(name.to_owned());
            Some(child)
        }
        name => aliases.get(name).cloned(),
    }
}

/// The deepest known module the path runs through; `None` for paths outside the crate.
fn resolve(
    module: &Module,
    path: &[String],
    children: &BTreeSet<String>,
    aliases: &BTreeMap<String, Module>,
    known: &BTreeSet<Module>,
) -> Option<Module> {
    let mut at = start_of(module, path.first()?, children, aliases)?;
    for seg in &path[1..] {
        if seg == "super" {
            at.pop();
            continue;
        }
        let mut deeper = at.clone();
        deeper.push(seg.clone());
        if known.contains(&deeper) {
            at = deeper;
        } else {
            break;
        }
    }
    Some(at)
}

/// The module the whole path names, if it names a module (not an item in one).
fn path_if_module(
    module: &Module,
    path: &[String],
    children: &BTreeSet<String>,
    aliases: &BTreeMap<String, Module>,
    known: &BTreeSet<Module>,
) -> Option<Module> {
    let mut at = start_of(module, path.first()?, children, aliases)?;
    for seg in &path[1..] {
        if seg == "super" {
            at.pop();
        } else {
            at.push(seg.clone());
        }
    }
    known.contains(&at).then_some(at)
}

/// Tarjan's strongly connected components.
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
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
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
            s.out.push(component);
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
