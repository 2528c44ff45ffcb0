//! The pipeline parser and validator, `sweep::config::load`: any text must give `Ok` or `Err`,
//! never a panic, and an `Err` must render (`to_string`, `lines`) without panicking.
//!
//! Input layout: UTF-8 text. Parts after a NUL are `--set` overrides for the text before the
//! first NUL. Every `key = value` line of the text is also tried as an override (prefixed with
//! the `[table]` it is under): on the text itself, and on an empty pipeline (so overrides build
//! whole tables from nothing).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sweep::config;

fn load(text: &str, overrides: &[String]) {
    match config::load("fuzz.toml", text, overrides) {
        Ok(_) => {}
        Err(errs) => {
            assert!(!errs.errors.is_empty(), "Err with no errors");
            let lines = errs.lines();
            assert_eq!(lines.len(), errs.errors.len());
            for l in &lines {
                assert!(l.starts_with("fuzz.toml"), "{l}");
            }
            let shown = errs.to_string();
            assert!(shown.starts_with("fuzz.toml has "), "{shown}");
            for e in &errs.errors {
                if let Some(s) = &e.span {
                    assert!(s.start <= s.end, "backwards span {s:?}");
                    let _ = config::line_col(text, s.start);
                    let _ = config::line_col(text, s.end);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = input.split('\0');
    let text = parts.next().unwrap_or_default();
    let explicit: Vec<String> = parts.map(String::from).collect();
    load(text, &[]);
    if !explicit.is_empty() {
        load(text, &explicit);
    }
    // `key = value` lines under a `[table]` header become `table.key = value`, as a user would
    // write them with `--set`.
    let mut table = "";
    let mut from_lines = Vec::new();
    for l in text.lines().take(64) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = name.trim_matches(['[', ']']);
        } else if t.contains('=') {
            from_lines.push(if table.is_empty() {
                t.to_string()
            } else {
                format!("{table}.{t}")
            });
        }
    }
    if !from_lines.is_empty() {
        load(text, &from_lines);
        load("", &from_lines);
    }
});
