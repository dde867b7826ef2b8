//! The kernel's layers only look down.
//!
//! `kernel/src/lib.rs` writes the layer order down as a table (layer number,
//! modules). This test reads that table, then every kernel source file, and
//! finds each path into the crate: `use crate::...` (grouped ones too:
//! `use crate::{a, b::{c, d}}`), `crate::x::y` and `$crate::x` in code,
//! `super::`/`self::` paths, and paths through a name a `use` or a `mod`
//! brought in (`use crate::mm; ... mm::fault::...`). A path into a module of a
//! higher layer than the file's own is a violation, reported with file:line
//! and both layers. A module the table does not place is an error too, so a
//! new subsystem gets its layer deliberately.
//!
//! Comments and string literals are blanked out first, so docs may name any
//! module. Macros exported at the crate root (`crate::println`) count as the
//! module that defines them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Imports that point up today, each in a file another piece of work is
/// rewriting: (file, module it reaches, why). An entry no longer needed fails
/// the test, so the list only shrinks.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// One row of the layer table: a module path (`mm`, `mm::fault`) and its layer.
#[derive(Debug)]
struct Table {
    layers: BTreeMap<Vec<String>, u32>,
}

impl Table {
    fn parse(lib_rs: &str) -> Result<Table, String> {
        let mut layers = BTreeMap::new();
        for line in lib_rs.lines() {
            let Some(doc) = line.trim_start().strip_prefix("//!") else { continue };
            let doc = doc.trim();
            if !doc.starts_with('|') {
                continue;
            }
            let cells: Vec<&str> = doc.split('|').collect();
            if cells.len() < 3 {
                continue;
            }
            let Ok(layer) = cells[1].trim().parse::<u32>() else { continue };
            let names: Vec<&str> = cells[2].split('`').skip(1).step_by(2).collect();
            if names.is_empty() {
                return Err(format!("layer {layer} of the table in kernel/src/lib.rs names no module: {doc}"));
            }
            for name in names {
                let path: Vec<String> = name.split("::").map(str::to_string).collect();
                if let Some(old) = layers.insert(path, layer) {
                    return Err(format!("`{name}` is in the layer table twice (layers {old} and {layer})"));
                }
            }
        }
        if layers.is_empty() {
            return Err("kernel/src/lib.rs has no layer table (rows `//! | <layer> | `module`, ... |`)".into());
        }
        Ok(Table { layers })
    }

    /// The entry that places module `path`: its longest prefix in the table.
    fn entry(&self, path: &[String]) -> Option<(&[String], u32)> {
        (1..=path.len()).rev().find_map(|n| self.layers.get_key_value(&path[..n]).map(|(k, v)| (k.as_slice(), *v)))
    }

    /// Whether the table places parts of top-level module `top` separately.
    fn is_split(&self, top: &str) -> bool {
        self.layers.keys().any(|k| k.len() > 1 && k[0] == top)
    }
}

/// A kernel source file: its path for reports, its module path, and its text.
struct Source {
    file: String,
    module: Vec<String>,
    text: String,
}

/// An import pointing up the order.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    from_layer: u32,
    to: String,
    to_entry: String,
    to_layer: u32,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` (layer {}) uses `crate::{}`, which is `{}` (layer {}): imports must point down the order",
            self.file, self.line, self.from, self.from_layer, self.to, self.to_entry, self.to_layer
        )
    }
}

/// What a check found: violations, and errors (unplaced modules, unknown paths).
#[derive(Debug, Default)]
struct Findings {
    violations: Vec<Violation>,
    errors: Vec<String>,
}

fn join(path: &[String]) -> String {
    path.join("::")
}

/// Blanks comments, strings and char literals, keeping every newline (so line
/// numbers stay) and every other byte's position.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                // Raw string r"..." / r#"..."#.
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let start = i + 2 + hashes;
                let end = b[start..].windows(close.len()).position(|w| w == close).map_or(b.len(), |p| start + p + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'\'' => {
                // A char literal ('a', '\n', '\u{..}'), or a lifetime ('a) left alone.
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p + 1)
                } else {
                    let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(i + 2 + ch_len)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII replaced whole chars)")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other,
}

fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let (mut toks, mut line, mut i) = (Vec::new(), 1, 0);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || (c == b'$' && text[i + 1..].starts_with("crate")) {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            toks.push((Tok::Ident(if word == "$crate" { "crate".into() } else { word.into() }), line));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            toks.push((Tok::PathSep, line));
            i += 2;
        } else {
            let t = match c {
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                b';' => Tok::Semi,
                b'*' => Tok::Star,
                _ => Tok::Other,
            };
            toks.push((t, line));
            i += if c.is_ascii() { 1 } else { text[i..].chars().next().map_or(1, char::len_utf8) };
        }
    }
    toks
}

/// A path named in a file: its segments as written, and the line of its last one.
struct Named {
    segments: Vec<String>,
    line: usize,
}

/// Expands a `use` tree starting at `toks[*i]` under `prefix`; pushes each leaf
/// path and the name it binds.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<(Named, Option<String>)>) {
    let mut path = prefix;
    let mut line = toks.get(*i).map_or(0, |t| t.1);
    loop {
        match toks.get(*i) {
            Some((Tok::PathSep, _)) => *i += 1,
            Some((Tok::Ident(name), l)) => {
                line = *l;
                *i += 1;
                if name == "as" {
                    if let Some((Tok::Ident(alias), _)) = toks.get(*i) {
                        *i += 1;
                        out.push((Named { segments: path.clone(), line }, (alias != "_").then(|| alias.clone())));
                    }
                    return;
                }
                if name == "self" && !path.is_empty() {
                    let bind = path.last().cloned();
                    out.push((Named { segments: path.clone(), line }, bind));
                    // `self` inside a group: the group's own path; nothing may follow.
                    return;
                }
                path.push(name.clone());
                if !matches!(toks.get(*i), Some((Tok::PathSep, _))) {
                    let bind = path.last().cloned();
                    out.push((Named { segments: path, line }, bind));
                    return;
                }
            }
            Some((Tok::Star, l)) => {
                *i += 1;
                out.push((Named { segments: path, line: *l }, None));
                return;
            }
            Some((Tok::Open, _)) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some((Tok::Close, _)) => {
                            *i += 1;
                            return;
                        }
                        Some((Tok::Comma, _)) => *i += 1,
                        None => return,
                        _ => use_tree(toks, i, path.clone(), out),
                    }
                }
            }
            _ => {
                if !path.is_empty() {
                    out.push((Named { segments: path, line }, None));
                }
                return;
            }
        }
    }
}

/// Every path into a module or item a file names: the `use` leaves, and the
/// paths in code whose first segment is `crate`, `super`, `self`, or a name a
/// `use` or `mod` of this file bound. Returns them relative to the crate root
/// (or `None` for paths outside the crate).
fn named_paths(src: &Source, macros: &BTreeMap<String, Vec<String>>) -> Vec<(Vec<String>, usize)> {
    let stripped = strip(&src.text);
    let toks = tokenize(&stripped);
    let mut uses = Vec::new();
    let mut children = BTreeSet::new();
    let mut in_use = vec![false; toks.len()];
    let mut i = 0;
    while i < toks.len() {
        let prev_is_sep = i > 0 && toks[i - 1].0 == Tok::PathSep;
        match &toks[i].0 {
            Tok::Ident(w) if w == "use" && !prev_is_sep => {
                let start = i;
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut uses);
                while i < toks.len() && toks[i].0 != Tok::Semi {
                    i += 1;
                }
                for flag in &mut in_use[start..i.min(toks.len())] {
                    *flag = true;
                }
            }
            Tok::Ident(w) if w == "mod" && !prev_is_sep => {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                    children.insert(name.clone());
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    // The module `super`/`self` mean in this file.
    let resolve_root = |first: &str, aliases: &BTreeMap<String, Vec<String>>| -> Option<Vec<String>> {
        match first {
            "crate" => Some(Vec::new()),
            "self" => Some(src.module.clone()),
            "super" => Some(src.module[..src.module.len().saturating_sub(1)].to_vec()),
            _ if children.contains(first) => Some([src.module.clone(), vec![first.to_string()]].concat()),
            _ => aliases.get(first).cloned(),
        }
    };
    let resolve = |segments: &[String], aliases: &BTreeMap<String, Vec<String>>| -> Option<Vec<String>> {
        let mut base = resolve_root(&segments[0], aliases)?;
        let mut rest = &segments[1..];
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    };
    // Aliases: names `use` bound to crate paths (resolved in order of appearance,
    // so `use crate::mm; use mm::fault;` works).
    let mut aliases = BTreeMap::new();
    let mut found = Vec::new();
    for (named, bind) in &uses {
        if named.segments.is_empty() {
            continue;
        }
        if let Some(full) = resolve(&named.segments, &aliases) {
            if let Some(bind) = bind {
                aliases.insert(bind.clone(), full.clone());
            }
            found.push((full, named.line));
        }
    }
    // Paths in code.
    let mut i = 0;
    while i < toks.len() {
        let starts_path = !in_use[i]
            && matches!(toks[i].0, Tok::Ident(_))
            && !(i > 0 && toks[i - 1].0 == Tok::PathSep)
            && matches!(toks.get(i + 1), Some((Tok::PathSep, _)));
        if !starts_path {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut line = toks[i].1;
        let mut j = i;
        while let Some((Tok::Ident(s), l)) = toks.get(j) {
            segments.push(s.clone());
            line = *l;
            if matches!(toks.get(j + 1), Some((Tok::PathSep, _))) {
                j += 2;
            } else {
                j += 1;
                break;
            }
        }
        if let Some(full) = resolve(&segments, &aliases) {
            found.push((full, line));
        }
        i = j.max(i + 1);
    }
    // Crate-root macros count as their defining module.
    for (path, _) in &mut found {
        if path.len() == 1 {
            if let Some(module) = macros.get(&path[0]) {
                *path = module.clone();
            }
        }
    }
    found
}

/// `#[macro_export] macro_rules! name` anywhere in the crate: name -> module.
fn exported_macros(sources: &[Source]) -> BTreeMap<String, Vec<String>> {
    let mut macros = BTreeMap::new();
    for src in sources {
        let stripped = strip(&src.text);
        let mut exported = false;
        for line in stripped.lines() {
            let line = line.trim();
            if line.starts_with("#[macro_export") {
                exported = true;
            } else if let Some(rest) = line.strip_prefix("macro_rules!") {
                let name: String = rest.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if exported {
                    macros.insert(name, src.module.clone());
                }
                exported = false;
            } else if !line.is_empty() && !line.starts_with("#[") {
                exported = false;
            }
        }
    }
    macros
}

/// Checks `sources` against the table in `lib_rs`. Paths through lib.rs's
/// re-exports of other crates (`pub use bootloader_api;`) are not layered.
fn check(lib_rs: &str, sources: &[Source]) -> Findings {
    let mut findings = Findings::default();
    let table = match Table::parse(lib_rs) {
        Ok(t) => t,
        Err(e) => {
            findings.errors.push(e);
            return findings;
        }
    };
    let lib_toks = tokenize(&strip(lib_rs));
    let mut top_modules = BTreeSet::new();
    let mut reexports = BTreeSet::new();
    for w in lib_toks.windows(3) {
        if let (Tok::Ident(k), Tok::Ident(name), Tok::Semi) = (&w[0].0, &w[1].0, &w[2].0) {
            if k == "mod" {
                top_modules.insert(name.clone());
            } else if k == "use" {
                reexports.insert(name.clone());
            }
        }
    }
    for top in &top_modules {
        if !table.layers.keys().any(|k| &k[0] == top) {
            findings.errors.push(format!(
                "module `{top}` (kernel/src/{top}) is not in the layer table in kernel/src/lib.rs: give it a layer deliberately"
            ));
        }
    }
    // The table may place a module before it exists (a writer still to come),
    // so names without a module are not errors.
    let macros = exported_macros(sources);
    for src in sources {
        let Some(top) = src.module.first() else { continue };
        let Some((own_entry, own_layer)) = table.entry(&src.module) else {
            continue; // reported above as an unplaced top-level module
        };
        if own_entry.len() == 1 && src.module.len() > 1 && table.is_split(top) {
            findings.errors.push(format!(
                "{}: module `{}` is not in the layer table, and `{top}` is split across layers there: place it",
                src.file,
                join(&src.module)
            ));
            continue;
        }
        for (path, line) in named_paths(src, &macros) {
            let Some(first) = path.first() else { continue };
            if !top_modules.contains(first) {
                if !reexports.contains(first) && !macros.contains_key(first) {
                    findings.errors.push(format!(
                        "{}:{line}: `crate::{}` is no module of the crate, no exported macro and no re-export",
                        src.file,
                        join(&path)
                    ));
                }
                continue;
            }
            let Some((to_entry, to_layer)) = table.entry(&path) else { continue };
            let duplicate = findings.violations.last().is_some_and(|v: &Violation| {
                v.file == src.file && v.line == line && v.to_entry == join(to_entry)
            });
            if to_layer > own_layer && !duplicate {
                findings.violations.push(Violation {
                    file: src.file.clone(),
                    line,
                    from: join(own_entry),
                    from_layer: own_layer,
                    to: join(&path),
                    to_entry: join(to_entry),
                    to_layer,
                });
            }
        }
    }
    findings
}

/// Reads every `.rs` file under `dir` (the crate root's modules), except the
/// crate roots themselves.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read kernel/src").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let mut module: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let last = module.pop().unwrap();
        if module.is_empty() && (last == "lib.rs" || last == "main.rs") {
            continue;
        }
        if last != "mod.rs" {
            module.push(last.trim_end_matches(".rs").to_string());
        }
        out.push(Source {
            file: format!("kernel/src/{}", rel.display()),
            module,
            text: std::fs::read_to_string(&path).unwrap(),
        });
    }
}

#[test]
fn kernel_imports_point_down_the_layer_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
    let lib_rs = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let mut sources = Vec::new();
    read_sources(&root, &root, &mut sources);
    assert!(sources.len() > 50, "found only {} kernel source files under {}", sources.len(), root.display());
    let findings = check(&lib_rs, &sources);
    let mut used = vec![false; ALLOWED.len()];
    let mut report: Vec<String> = findings.errors.clone();
    for v in &findings.violations {
        match ALLOWED.iter().position(|(file, to, _)| *file == v.file && *to == v.to_entry) {
            Some(k) => used[k] = true,
            None => report.push(v.to_string()),
        }
    }
    for (k, (file, to, why)) in ALLOWED.iter().enumerate() {
        if !used[k] {
            report.push(format!("allow-list entry ({file}, {to}: {why}) matches nothing any more: remove it"));
        }
    }
    assert!(report.is_empty(), "{} layering problem(s):\n{}", report.len(), report.join("\n"));
}

#[cfg(test)]
mod synthetic {
    use super::*;

    const LIB: &str = "//! | Layer | Modules | May use |\n\
        //! |---|---|---|\n\
        //! | 0 | `arch` | nothing |\n\
        //! | 1 | `mm`, `mm::frame`, `console` | arch |\n\
        //! | 2 | `sched`, `mm::fault` | below |\n\
        //! | 3 | `ksm` | below |\n\
        pub mod arch;\npub mod console;\npub mod mm;\npub mod sched;\npub mod ksm;\npub use bootloader_api;\n";

    fn src(file: &str, text: &str) -> Source {
        let rel = file.strip_prefix("kernel/src/").unwrap();
        let mut module: Vec<String> = rel.split('/').map(str::to_string).collect();
        let last = module.pop().unwrap();
        if last != "mod.rs" {
            module.push(last.trim_end_matches(".rs").to_string());
        }
        Source { file: file.into(), module, text: text.into() }
    }

    fn lines(f: &Findings) -> Vec<(String, usize, String)> {
        f.violations.iter().map(|v| (v.file.clone(), v.line, v.to_entry.clone())).collect()
    }

    #[test]
    fn finds_each_kind_of_upward_path() {
        let sources = vec![
            src("kernel/src/console/mod.rs", "#[macro_export]\nmacro_rules! println { () => { $crate::console::print() } }\npub fn print() {}\n"),
            src(
                "kernel/src/mm/frame.rs",
                "use crate::arch::cpu;\n\
                 use crate::{arch, sched::{self, yield_now}};\n\
                 // use crate::ksm; (a comment)\n\
                 fn f() { let s = \"crate::ksm::x\"; crate::ksm::merge(); sched::wake(); }\n\
                 use crate::mm;\n\
                 fn g() { mm::fault::handle(); crate::println!(); }\n",
            ),
            src("kernel/src/mm/fault.rs", "use super::frame;\nuse crate::sched::current;\nfn h() { super::super::ksm::run(); }\n"),
            src("kernel/src/arch/mod.rs", "pub mod cpu;\nfn i() { cpu::x(); crate::bootloader_api::y(); }\n"),
            src("kernel/src/ksm/mod.rs", "use crate::{arch, mm::{self, fault}, sched};\n"),
        ];
        let f = check(LIB, &sources);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let mut got = lines(&f);
        got.sort();
        let want = vec![
            ("kernel/src/mm/fault.rs".to_string(), 3, "ksm".to_string()),
            ("kernel/src/mm/frame.rs".to_string(), 2, "sched".to_string()),
            ("kernel/src/mm/frame.rs".to_string(), 4, "ksm".to_string()),
            ("kernel/src/mm/frame.rs".to_string(), 4, "sched".to_string()),
            ("kernel/src/mm/frame.rs".to_string(), 6, "mm::fault".to_string()),
        ];
        assert_eq!(got, want, "{:#?}", f.violations);
        let text = f.violations.iter().find(|v| v.to_entry == "mm::fault").unwrap().to_string();
        assert!(text.contains("kernel/src/mm/frame.rs:6") && text.contains("layer 1") && text.contains("layer 2"), "{text}");
    }

    #[test]
    fn an_unplaced_module_is_an_error() {
        let lib = format!("{LIB}pub mod khugepaged;\n");
        let f = check(&lib, &[src("kernel/src/khugepaged/mod.rs", "use crate::mm;\n")]);
        assert!(f.errors.iter().any(|e| e.contains("`khugepaged`") && e.contains("not in the layer table")), "{:?}", f.errors);
        let f = check(LIB, &[src("kernel/src/mm/collapse.rs", "use crate::arch;\n")]);
        assert!(f.errors.iter().any(|e| e.contains("mm::collapse") && e.contains("split")), "{:?}", f.errors);
        let f = check(LIB, &[src("kernel/src/sched/x.rs", "fn f() { crate::nosuch::g(); }\n")]);
        assert!(f.errors.iter().any(|e| e.contains("crate::nosuch::g")), "{:?}", f.errors);
        assert!(!check("no table here", &[]).errors.is_empty());
    }

    #[test]
    fn strips_comments_strings_and_chars_but_not_lifetimes() {
        let s = strip("a /* q\ny */ 'b' \"c\\\"d\" r#\"e\"# fn f<'a>(x: &'a u8) // z\n");
        assert!(!s.contains('q'), "{s}");
        assert!(!s.contains('y') && !s.contains('c') && !s.contains('e') && !s.contains('z'), "{s}");
        assert!(s.contains("<'a>") && s.contains("&'a u8"), "{s}");
        assert_eq!(s.lines().count(), 2);
    }
}
