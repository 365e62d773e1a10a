//! Mechanical checks of the source tree (STYLE.md, habit 10):
//! - `core/` and the remoting codec (`net/src/codec`) stay pure: no clock, no global RNG, no
//!   tokio, no sockets, no `std::fs`;
//! - library code has no `dbg!` and no stray `println!` (binaries print, libraries return);
//! - no function in library code or in the `petrel` binary grows past 80 lines;
//! - every `tokio::select!` in library code is `biased;` (determinism under simulation).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use std::fs;
use std::path::{Path, PathBuf};

const FUNCTION_LINES_MAX: usize = 80;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `path` is a binary's source: binaries print (the `petrel` command line in
/// `bin/src/main.rs` and `bin/src/cli/`, the simulator's runner in `sim/src/bin/`).
fn is_binary_source(path: &Path) -> bool {
    let path = path.to_string_lossy();
    path.ends_with("bin/src/main.rs")
        || path.contains("bin/src/cli/")
        || path.contains("sim/src/bin/")
}

/// Every crate's `src/`.
fn all_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for krate in ["core", "net", "storage", "client", "sim", "bin"] {
        rust_files(&root().join(krate).join("src"), &mut files);
    }
    files
}

/// Library sources: every crate's `src/` without the binaries.
fn library_sources() -> Vec<PathBuf> {
    let mut files = all_sources();
    files.retain(|f| !is_binary_source(f));
    files
}

/// The code of a file without its `#[cfg(test)]` items and without line comments.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut entered = false;
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if code.trim_start().starts_with("#[cfg(test)]") {
            skipping = true;
            entered = false;
            depth = 0;
            continue;
        }
        if skipping {
            let stripped = strip_literals(code);
            depth += stripped.matches('{').count() as i64 - stripped.matches('}').count() as i64;
            entered |= stripped.contains('{');
            if entered && depth <= 0 || !entered && stripped.trim_end().ends_with(';') {
                skipping = false;
            }
            continue;
        }
        lines.push((i + 1, code.to_owned()));
    }
    lines
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

#[test]
fn core_and_codec_are_pure() {
    let forbidden = [
        "std::fs",
        "tokio",
        "Instant::now",
        "SystemTime",
        "thread_rng",
        "TcpStream",
        "TcpListener",
        "UdpSocket",
        "std::net",
        "std::thread",
    ];
    let mut files = Vec::new();
    rust_files(&root().join("core").join("src"), &mut files);
    assert!(!files.is_empty(), "core/src has no sources");
    let codec = files.len();
    rust_files(&root().join("net").join("src").join("codec"), &mut files);
    assert!(files.len() > codec, "net/src/codec has no sources");
    let mut hits = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in code_lines(&text) {
            for word in forbidden {
                if line.contains(word) {
                    hits.push(format!("{}:{n}: uses `{word}`", relative(&file)));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "core/ and the codec must not do I/O or read clocks:\n{}",
        hits.join("\n")
    );
}

#[test]
fn no_debug_output_in_libraries() {
    let mut hits = Vec::new();
    for file in library_sources() {
        let text = fs::read_to_string(&file).expect("readable source");
        for (n, line) in code_lines(&text) {
            for word in ["dbg!(", "println!(", "print!(", "eprintln!("] {
                if line.contains(word) {
                    hits.push(format!("{}:{n}: `{word}`", relative(&file)));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "library code logs through tracing and returns text:\n{}",
        hits.join("\n")
    );
}

/// Every `tokio::select!` that the simulator can reach (library code) is `biased;`: tokio
/// picks an unbiased select's first branch from a generator seeded outside the simulation,
/// and two runs of one seed then differ (the controller scenario's seed 11 did).
#[test]
fn selects_are_biased_in_libraries() {
    let mut hits = Vec::new();
    for file in library_sources() {
        let text = fs::read_to_string(&file).expect("readable source");
        let lines = code_lines(&text);
        for (at, (n, line)) in lines.iter().enumerate() {
            if !line.contains("select!") {
                continue;
            }
            let next = lines.get(at + 1).map(|(_, l)| l.trim()).unwrap_or_default();
            if next != "biased;" {
                hits.push(format!("{}:{n}", relative(&file)));
            }
        }
    }
    assert!(hits.is_empty(), "`tokio::select!` without `biased;` first:\n{}", hits.join("\n"));
}

/// Removes string and char literals so braces inside them are not counted.
fn strip_literals(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '\'') if chars.clone().nth(1) == Some('\'') => {
                chars.next();
                chars.next();
            }
            (false, _) => out.push(c),
        }
    }
    out
}

fn long_functions(path: &Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut open: Option<(usize, String, i64)> = None;
    let mut depth: i64 = 0;
    for (n, line) in code_lines(text) {
        let code = strip_literals(&line);
        let trimmed = code.trim_start();
        let starts_fn = open.is_none()
            && (trimmed.starts_with("fn ")
                || trimmed.contains(" fn ")
                || trimmed.starts_with("pub fn "))
            && !trimmed.ends_with(';');
        if starts_fn {
            let name = trimmed
                .split("fn ")
                .nth(1)
                .unwrap_or("")
                .split(['(', '<'])
                .next()
                .unwrap_or("")
                .to_owned();
            open = Some((n, name, depth));
        }
        depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
        if let Some((start, name, base)) = &open {
            if depth <= *base
                && (code.contains('}') || code.trim_end().ends_with(';'))
                && n > *start
            {
                let length = n - start + 1;
                if length > FUNCTION_LINES_MAX {
                    found.push(format!("{}:{start}: fn {name} is {length} lines", relative(path)));
                }
                open = None;
            }
        }
    }
    found
}

#[test]
fn functions_stay_short() {
    let mut hits = Vec::new();
    for file in all_sources() {
        let text = fs::read_to_string(&file).expect("readable source");
        hits.extend(long_functions(&file, &text));
    }
    assert!(
        hits.is_empty(),
        "functions longer than {FUNCTION_LINES_MAX} lines; split them:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_length_check_measures() {
    let body = "    let x = 1;\n".repeat(FUNCTION_LINES_MAX + 5);
    let text = format!("fn big() {{\n{body}}}\n\nfn small() {{\n    let s = \"}}{{\";\n}}\n");
    let found = long_functions(Path::new("x.rs"), &text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("fn big"), "{found:?}");
}
