//! The runner every golden file shares: cases separated by blank lines, each a command (its
//! `#` lines are comments), `----`, and the output the command must produce.
//! `UPDATE_GOLDEN=1` rewrites the expected output instead of comparing; review the diff before
//! committing it.

/// Runs every case of the golden file at `path` (relative to this crate) through `run`, which
/// gets the command's lines joined with spaces and returns its output.
pub fn check(path: &str, mut run: impl FnMut(&str) -> String) {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("golden file");
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    for case in text.split("\n\n").filter(|c| !c.trim().is_empty()) {
        let (input, expected) = case.split_once("----").unwrap_or((case, ""));
        let (input, expected) = (input.trim_end(), expected.trim_start_matches('\n'));
        let command = input.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(" ");
        let actual = run(&command);
        if actual.trim_end() != expected.trim_end() {
            failures.push(format!("{input}\nexpected:\n{expected}\nactual:\n{actual}"));
        }
        rewritten.push_str(input);
        rewritten.push_str("\n----\n");
        if !actual.trim().is_empty() {
            rewritten.push_str(actual.trim_end());
            rewritten.push('\n');
        }
        rewritten.push('\n');
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rewritten.trim_end().to_owned() + "\n").expect("rewrite golden file");
        return;
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
