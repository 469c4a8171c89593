//! The layout rules of docs/ARCHITECTURE.md, checked on the sources:
//! - a module of the library imports only the layers below it;
//! - no two files of one module import each other in a cycle;
//! - no source file of any crate is over 500 lines, no function over 60.
//!
//! Imports are read from the code (comments and strings left out): every
//! `crate::<module>` path counts, in a `use` or inline.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 60;

/// What each top-level module of the library may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("report", &[]),
    ("event", &["error"]),
    ("backend", &["error", "event"]),
    ("journal", &["error", "report", "backend"]),
    ("shell", &["error", "report", "journal"]),
    (
        "service",
        &["error", "report", "event", "backend", "journal", "shell"],
    ),
    (
        "client",
        &["error", "report", "event", "backend", "journal", "shell"],
    ),
    ("controller", &["error", "event", "service", "client"]),
    (
        "inspect",
        &["error", "event", "backend", "journal", "service", "client"],
    ),
];

/// The source directories of every crate of the workspace.
const SOURCE_DIRS: &[&str] = &[
    "src",
    "capi/src",
    "bindings/python/src",
    "testkit/src",
    "tools/gen-header/src",
    "cli/src",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file with comments, string and char literals blanked
/// out (lines kept), so that braces and paths are those of the code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep_newlines = |s: &[u8], out: &mut Vec<u8>| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = find(rest, b"*/").map_or(rest.len(), |e| e + 2);
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if let Some(len) = raw_string_len(rest) {
            keep_newlines(&rest[..len], &mut out);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if let Some(len) = char_literal_len(rest) {
            keep_newlines(&rest[..len], &mut out);
            i += len;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `r"..."`, `r#"..."#`, `br"..."`: its length.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    find(&s[body..], &close).map(|e| body + e + close.len())
}

/// `'x'`, `'\n'`, `'\''`: its length (a lifetime is not a literal).
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s[0] != b'\'' {
        return None;
    }
    if s.get(1) == Some(&b'\\') {
        return s[2..].iter().position(|&c| c == b'\'').map(|e| e + 3);
    }
    let ch = std::str::from_utf8(&s[1..s.len().min(6)])
        .ok()
        .or_else(|| {
            (2..6)
                .rev()
                .find_map(|n| std::str::from_utf8(&s[1..s.len().min(n)]).ok())
        })?;
    let c = ch.chars().next()?;
    let after = 1 + c.len_utf8();
    (s.get(after) == Some(&b'\'')).then_some(after + 1)
}

/// Every `crate::a::b::c` path in the code, as its segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `softnet_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let segments = segments_of(item.trim());
                if !segments.is_empty() {
                    out.push(segments);
                }
            }
        } else {
            out.push(segments_of(rest));
        }
    }
    out
}

fn segments_of(s: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = s;
    loop {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            break;
        }
        rest = &rest[word.len()..];
        segments.push(word);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    segments
}

/// The top-level module of a library file (`lib` for `src/lib.rs`).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = root().join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = top_module(&src, file);
        if module == "lib" {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` has no layer in ALLOWED (add it, and to docs/ARCHITECTURE.md)",
                file.display()
            ));
            continue;
        };
        let code = code_only(&fs::read_to_string(file).unwrap());
        for path in crate_paths(&code) {
            let target = &path[0];
            if *target == module || may.contains(&target.as_str()) {
                continue;
            }
            violations.push(format!(
                "{}: `{module}` imports `crate::{}`, which its layer may not use",
                file.strip_prefix(root()).unwrap().display(),
                path.join("::")
            ));
        }
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

/// The file a module path names, if it is a file of its own (not a
/// directory's `mod.rs`, which only declares and re-exports).
fn file_of(src: &Path, segments: &[String]) -> Option<PathBuf> {
    for n in (1..=segments.len()).rev() {
        let mut path = src.to_path_buf();
        for s in &segments[..n] {
            path.push(s);
        }
        let file = path.with_extension("rs");
        if file.is_file() {
            return Some(file);
        }
        if path.join("mod.rs").is_file() {
            return None;
        }
    }
    None
}

/// The module path of a file: `src/journal/log.rs` is `journal::log`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segments: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    segments
}

fn file_edges(src: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in files {
        let code = code_only(&fs::read_to_string(file).unwrap());
        let here = module_path(src, file);
        let mut targets = Vec::new();
        for path in crate_paths(&code) {
            targets.push(path);
        }
        for line in code.lines() {
            for (prefix, up) in [("super::", 1usize), ("self::", 0)] {
                if let Some(at) = line.find(prefix) {
                    let segments = segments_of(&line[at + prefix.len()..]);
                    let base = &here[..here.len().saturating_sub(up)];
                    let mut path = base.to_vec();
                    path.extend(segments);
                    targets.push(path);
                }
            }
        }
        for path in targets {
            if let Some(target) = file_of(src, &path) {
                if &target != file {
                    edges.entry(file.clone()).or_default().insert(target);
                }
            }
        }
    }
    edges
}

/// Every import cycle between the files under `src`, as "a -> b -> a".
fn cycles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let edges = file_edges(src, &files);
    let mut cycles = Vec::new();
    for start in edges.keys() {
        // Depth-first from each file; a path back to it is a cycle.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(&at).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail
                        .iter()
                        .chain([next])
                        .map(|p| p.strip_prefix(src).unwrap().display().to_string())
                        .collect();
                    cycles.push(names.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    cycles
}

/// The crates whose files must not import each other in a cycle: the
/// product (the test support's simulator spreads one state machine over
/// several files on purpose).
const ACYCLIC_DIRS: &[&str] = &[
    "src",
    "capi/src",
    "bindings/python/src",
    "tools/gen-header/src",
    "cli/src",
];

#[test]
fn no_two_files_import_each_other_in_a_cycle() {
    let mut found = Vec::new();
    for dir in ACYCLIC_DIRS {
        found.extend(
            cycles(&root().join(dir))
                .into_iter()
                .map(|c| format!("{dir}: {c}")),
        );
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn a_cycle_between_two_files_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    fs::create_dir(&journal).unwrap();
    fs::write(journal.join("mod.rs"), "mod a;\nmod b;\n").unwrap();
    fs::write(journal.join("a.rs"), "use crate::journal::b::B;\n").unwrap();
    fs::write(journal.join("b.rs"), "use super::a::A;\n").unwrap();
    let found = cycles(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("a.rs") && found[0].contains("b.rs"));
}

/// Functions whose body spans more than `max` lines: (name, first line,
/// lines).
fn long_functions(code: &str, max: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        // The body opens at the first `{` before any `;` (a declaration).
        let mut depth = 0i64;
        let mut opened = false;
        'scan: for (j, l) in lines.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    ';' if !opened => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            let len = j - i + 1;
                            if len > max {
                                out.push((name.clone(), i + 1, len));
                            }
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The name of the function a line starts, if it does.
fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "pub" | "const" | "async" | "unsafe" | "extern" | "\"C\"" => continue,
            w if w.starts_with("pub(") => continue,
            "fn" => {
                let name = words.next()?;
                let end = name.find(['(', '<']).unwrap_or(name.len());
                return Some(name[..end].to_string());
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn no_source_file_over_500_lines_and_no_function_over_60() {
    let mut problems = Vec::new();
    for dir in SOURCE_DIRS {
        let mut files = Vec::new();
        rust_files(&root().join(dir), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            let shown = file.strip_prefix(root()).unwrap().display().to_string();
            let lines = text.lines().count();
            if lines > MAX_FILE_LINES {
                problems.push(format!("{shown}: {lines} lines (at most {MAX_FILE_LINES})"));
            }
            for (name, at, len) in long_functions(&code_only(&text), MAX_FN_LINES) {
                problems.push(format!(
                    "{shown}:{at}: fn {name} is {len} lines (at most {MAX_FN_LINES})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checks_see_what_they_must() {
    // The scanner itself: paths in comments and strings do not count,
    // groups and inline paths do, and a long function is found.
    let code = code_only(
        "use crate::{a::x, b};\n// crate::c\nlet s = \"crate::d\";\nlet c = '{';\ncrate::e::f();\n",
    );
    let paths: Vec<String> = crate_paths(&code).iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a::x", "b", "e::f"]);
    let body = format!("fn long() {{\n{}}}\n", "    x();\n".repeat(70));
    assert_eq!(long_functions(&body, 60), [("long".to_string(), 1, 72)]);
    assert!(long_functions("fn decl(&self);\nfn short() {}\n", 60).is_empty());
}

/// The `crate-type` of a manifest's `[lib]` table (`["lib"]` when unset).
fn lib_crate_types(manifest: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join(manifest)).unwrap();
    let lib = text
        .split("\n[")
        .find(|t| t.starts_with("lib]"))
        .unwrap_or("");
    let Some(line) = lib
        .lines()
        .find(|l| l.trim_start().starts_with("crate-type"))
    else {
        return vec!["lib".to_string()];
    };
    let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
    list.split(',')
        .map(|t| t.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn the_rust_library_builds_no_c_library_and_the_capi_crate_does() {
    // A Rust program that depends on softnet-persistence builds its rlib
    // only; the .so and .a come from the C ABI crate.
    assert_eq!(lib_crate_types("Cargo.toml"), ["lib"]);
    assert_eq!(lib_crate_types("capi/Cargo.toml"), ["cdylib", "staticlib"]);
}
