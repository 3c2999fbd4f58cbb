//! The shape of the code, checked from its source: which way dependencies
//! run between the files of `src/`, what the domain and the store may not
//! see, and how long a file may grow.
//!
//! Every path a file names (its `use` lines and the paths in its code) is
//! resolved to the file that defines the item, through re-exports, so a
//! module's `mod.rs` that only re-exports its parts does not tie them
//! together. Method calls and `impl` blocks are not imports: a part may add
//! methods to a type of its parent's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The layers of the crate, lowest first: a file may import only from its
/// own component or from a component of a lower layer. `src/lib.rs` (which
/// only declares modules) and `src/main.rs` (the binary) stand outside.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "error",
            "clock",
            "ids",
            "signals",
            "wire",
            "telemetry",
            "tls",
            "test_hooks",
        ],
    ),
    ("wire types", &["pb"]),
    (
        "vocabulary and programs",
        &["sandbox vocabulary", "agent client", "agent", "client"],
    ),
    ("state", &["store"]),
    ("backends", &["provider", "keys"]),
    ("domain", &["sandbox"]),
    ("gRPC surface", &["api"]),
    ("settings", &["config"]),
    ("wiring", &["server"]),
];

/// The domain's plain data and rules, below the store and the providers
/// that use them; the rest of `src/sandbox/` is the domain above them.
const SANDBOX_VOCABULARY: &[&str] = &[
    "model.rs",
    "state.rs",
    "rules.rs",
    "selector.rs",
    "quota.rs",
    "network.rs",
    "requests.rs",
    "template.rs",
];

/// The component of a file under `src/`.
fn component(file: &Path) -> String {
    let parts: Vec<String> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [top, name] if top == "sandbox" && SANDBOX_VOCABULARY.contains(&name.as_str()) => {
            "sandbox vocabulary".into()
        }
        [top, ..] if top == "agent_client" => "agent client".into(),
        [top, _, ..] => top.clone(),
        [name] => name.trim_end_matches(".rs").to_owned(),
        [] => String::new(),
    }
}

fn layer_of(component: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, members)| members.contains(&component))
}

/// One file of the crate: its module path and its text without comments,
/// literals and test modules.
struct Module {
    file: PathBuf,
    text: String,
    /// Items it defines.
    defines: BTreeSet<String>,
    /// Names it brings into scope with `use` (top-level), and their paths.
    uses: BTreeMap<String, Vec<String>>,
}

struct Crate {
    modules: BTreeMap<Vec<String>, Module>,
}

impl Crate {
    fn read(src: &Path) -> Self {
        let mut modules = BTreeMap::new();
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap().to_path_buf();
            let mut path: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|p| p == "mod") {
                path.pop();
            }
            if path == ["main"] {
                continue;
            }
            if path == ["lib"] {
                path.clear();
            }
            let text = without_tests(&strip(&std::fs::read_to_string(&file).unwrap()));
            let defines = definitions(&text);
            let uses = top_level_uses(&text);
            modules.insert(
                path,
                Module {
                    file: relative,
                    text,
                    defines,
                    uses,
                },
            );
        }
        Self { modules }
    }

    /// `path` as written in module `module`, made absolute; `None` for a
    /// path outside the crate.
    fn absolute(&self, module: &[String], path: &[String], depth: usize) -> Option<Vec<String>> {
        let first = path.first()?;
        if depth > 16 {
            return None;
        }
        match first.as_str() {
            "crate" => return Some(path[1..].to_vec()),
            "self" => return Some([module, &path[1..]].concat()),
            "super" => {
                let mut base = module.to_vec();
                let mut rest = path;
                while rest.first().is_some_and(|p| p == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                return Some([base.as_slice(), rest].concat());
            }
            "Self" => return None,
            _ => {}
        }
        let here = &self.modules[module];
        let child = [module, std::slice::from_ref(first)].concat();
        if self.modules.contains_key(&child) {
            return Some([module, path].concat());
        }
        if let Some(imported) = here.uses.get(first) {
            if imported.len() == 1 && imported[0] == *first {
                return None;
            }
            let target = self.absolute(module, imported, depth + 1)?;
            return Some([target.as_slice(), &path[1..]].concat());
        }
        if here.defines.contains(first) {
            return Some([module, path].concat());
        }
        None
    }

    /// The module whose file defines the item at the absolute `path`,
    /// through re-exports.
    fn defining(&self, path: &[String], depth: usize) -> Option<&Vec<String>> {
        if depth > 16 {
            return None;
        }
        let (module, rest) = (0..=path.len()).rev().find_map(|k| {
            self.modules
                .get_key_value(&path[..k])
                .map(|(m, _)| (m, &path[k..]))
        })?;
        let Some(name) = rest.first() else {
            return Some(module);
        };
        let found = &self.modules[module];
        if found.defines.contains(name) {
            return Some(module);
        }
        if let Some(imported) = found.uses.get(name) {
            let target = self.absolute(module, imported, 0)?;
            return self.defining(&[target.as_slice(), &rest[1..]].concat(), depth + 1);
        }
        Some(module)
    }

    /// Every file each file imports from, with a path that shows it.
    fn imports(&self) -> BTreeMap<PathBuf, BTreeMap<PathBuf, String>> {
        let mut edges: BTreeMap<PathBuf, BTreeMap<PathBuf, String>> = BTreeMap::new();
        for (module, found) in &self.modules {
            let mut paths: Vec<Vec<String>> = found.uses.values().cloned().collect();
            paths.extend(inline_paths(&found.text));
            for path in paths {
                let Some(absolute) = self.absolute(module, &path, 0) else {
                    continue;
                };
                let Some(target) = self.defining(&absolute, 0) else {
                    continue;
                };
                if target != module {
                    edges
                        .entry(found.file.clone())
                        .or_default()
                        .entry(self.modules[target].file.clone())
                        .or_insert_with(|| path.join("::"));
                }
            }
        }
        edges
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The text with comments gone and string and character literals emptied.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if chars[i] == 'r'
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
            && rest.get(1).is_some_and(|c| *c == '"' || *c == '#')
        {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) == Some(&'"') {
                i += 2 + hashes;
                let end: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                while i < chars.len() && !chars[i..].starts_with(&end) {
                    i += 1;
                }
                i += end.len();
                out.push_str("\"\"");
            } else {
                out.push(chars[i]);
                i += 1;
            }
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if chars[i] == '\'' && is_char_literal(rest) {
            let close = rest[1..].iter().position(|c| *c == '\'').unwrap() + 2;
            i += close;
            out.push_str("' '");
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Whether `rest` starts a character literal (not a lifetime).
fn is_char_literal(rest: &[char]) -> bool {
    match rest.get(1) {
        Some('\\') => true,
        Some(_) => rest.get(2) == Some(&'\''),
        None => false,
    }
}

/// The text without its `#[cfg(test)]` modules, whose `super` is the file
/// itself.
fn without_tests(text: &str) -> String {
    let mut out = text.to_owned();
    while let Some(at) = out.find("#[cfg(test)]\nmod ") {
        let open = at + out[at..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (offset, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

fn ident_at(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

/// The names of the items a file defines at its top level.
fn definitions(text: &str) -> BTreeSet<String> {
    let item = regex::Regex::new(
        r"(?m)^(?:pub(?:\([^)]*\))?\s+)?(?:async\s+|unsafe\s+|const\s+(?:fn\s))?(?:fn|struct|enum|trait|type|const|static|mod|union)\s+([A-Za-z_]\w*)",
    )
    .unwrap();
    let macros = regex::Regex::new(r"(?m)^macro_rules!\s+(\w+)").unwrap();
    item.captures_iter(text)
        .chain(macros.captures_iter(text))
        .map(|c| c[1].to_owned())
        .collect()
}

fn use_statement() -> regex::Regex {
    regex::Regex::new(r"(?m)^([ \t]*)(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);").unwrap()
}

/// The names a file's top-level `use` lines bring into scope.
fn top_level_uses(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut uses = BTreeMap::new();
    for statement in use_statement().captures_iter(text) {
        if !statement[1].is_empty() {
            continue;
        }
        use_tree(&[], statement[2].trim(), &mut uses);
    }
    uses
}

/// Adds the names of the use tree `tree` under `prefix` to `uses`.
fn use_tree(prefix: &[String], tree: &str, uses: &mut BTreeMap<String, Vec<String>>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut start = 0;
        for (at, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    use_tree(prefix, &inner[start..at], uses);
                    start = at + 1;
                }
                _ => {}
            }
        }
        use_tree(prefix, &inner[start..], uses);
        return;
    }
    if tree.is_empty() || tree == "*" {
        return;
    }
    if let Some((head, rest)) = tree.split_once("::") {
        let head = head.trim();
        use_tree(&[prefix, &[head.to_owned()]].concat(), rest, uses);
        return;
    }
    let (name, alias) = match tree.split_once(" as ") {
        Some((name, alias)) => (name.trim(), alias.trim()),
        None => (tree, tree),
    };
    if name == "self" {
        if let Some(last) = prefix.last() {
            uses.insert(last.clone(), prefix.to_vec());
        }
    } else if alias != "_" {
        uses.insert(alias.to_owned(), [prefix, &[name.to_owned()]].concat());
    }
}

/// Paths of two or more segments in a file's code (outside `use` lines).
fn inline_paths(text: &str) -> Vec<Vec<String>> {
    let code = use_statement().replace_all(text, "");
    let path = regex::Regex::new(r"([A-Za-z_]\w*(?:::[A-Za-z_]\w*)+)").unwrap();
    path.find_iter(&code)
        .filter(|m| {
            let before = code[..m.start()].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                && !code[m.end()..].trim_start().starts_with("::")
        })
        .map(|m| m.as_str().split("::").map(str::to_owned).collect())
        .filter(|segments: &Vec<String>| segments.iter().all(|s| ident_at(s)))
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A loop among `edges`, as the files around it, if there is one.
fn find_loop(edges: &BTreeMap<PathBuf, BTreeMap<PathBuf, String>>) -> Option<Vec<PathBuf>> {
    fn visit(
        file: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeMap<PathBuf, String>>,
        state: &mut HashMap<PathBuf, bool>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        state.insert(file.clone(), true);
        stack.push(file.clone());
        for next in edges.get(file).into_iter().flat_map(|e| e.keys()) {
            match state.get(next) {
                Some(true) => {
                    let from = stack.iter().position(|f| f == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(false) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, state, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(file.clone(), false);
        None
    }
    let mut state = HashMap::new();
    for file in edges.keys() {
        if !state.contains_key(file)
            && let Some(cycle) = visit(file, edges, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_file_imports_from_a_file_that_imports_it_however_far_round() {
    let edges = Crate::read(&src()).imports();
    assert!(
        edges.values().map(BTreeMap::len).sum::<usize>() > 100,
        "the checker sees the crate's imports"
    );
    if let Some(cycle) = find_loop(&edges) {
        let shown: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                format!(
                    "{} imports {} ({})",
                    pair[0].display(),
                    pair[1].display(),
                    edges[&pair[0]][&pair[1]]
                )
            })
            .collect();
        panic!("an import loop:\n  {}", shown.join("\n  "));
    }
}

#[test]
fn dependencies_run_down_the_layers() {
    let edges = Crate::read(&src()).imports();
    let mut wrong = Vec::new();
    for (from, targets) in &edges {
        let source = component(from);
        if from == Path::new("lib.rs") {
            continue;
        }
        let Some(source_layer) = layer_of(&source) else {
            wrong.push(format!("{} is in no layer ({source})", from.display()));
            continue;
        };
        for (to, via) in targets {
            let target = component(to);
            let allowed = target == source
                || layer_of(&target).is_some_and(|target_layer| target_layer < source_layer);
            if !allowed {
                wrong.push(format!(
                    "{} ({source}, {}) imports {} ({target}) through {via}",
                    from.display(),
                    LAYERS[source_layer].0,
                    to.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_domain_and_the_store_see_no_tonic_or_prost_type() {
    let mut seen = Vec::new();
    for dir in ["sandbox", "store"] {
        for file in rust_files(&src().join(dir)) {
            let text = strip(&std::fs::read_to_string(&file).unwrap());
            for word in ["tonic", "prost", "crate::pb", "pb::"] {
                if text.contains(word) {
                    seen.push(format!("{} names {word}", file.display()));
                }
            }
        }
    }
    assert!(seen.is_empty(), "{}", seen.join("\n"));
}

/// A source file past this many lines must say in its module doc why it is
/// one idea ("one file"); a test file may not pass its own limit.
const SOURCE_LINES: usize = 520;
const TEST_LINES: usize = 600;

#[test]
fn files_hold_one_idea_each() {
    let mut long = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        let lines = text.lines().count();
        if lines > SOURCE_LINES && !doc.contains("one file") {
            long.push(format!(
                "{} has {lines} lines and its module doc does not say why it is one file",
                file.display()
            ));
        }
    }
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for file in rust_files(&tests) {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        if lines > TEST_LINES {
            long.push(format!("{} has {lines} lines", file.display()));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn the_checker_finds_a_loop_it_is_shown() {
    // A crate of three files where the last imports the first.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "pub struct B(crate::c::C);\n").unwrap();
    std::fs::write(
        dir.path().join("c.rs"),
        "pub struct C;\nfn f() -> super::a::A { super::a::A }\n",
    )
    .unwrap();
    let edges = Crate::read(dir.path()).imports();
    let cycle = find_loop(&edges).expect("the loop a -> b -> c -> a");
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    // And a hub that re-exports its parts ties nothing together.
    std::fs::write(
        dir.path().join("c.rs"),
        "pub struct C;\nfn f() -> crate::D { todo!() }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lib.rs"),
        "mod a;\nmod b;\nmod c;\nmod d;\npub use a::A;\npub use d::D;\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("d.rs"), "pub struct D;\n").unwrap();
    assert_eq!(find_loop(&Crate::read(dir.path()).imports()), None);
}
