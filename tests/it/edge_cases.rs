//! Ugly inputs and failing outputs: each asserts the exact outcome.

use crate::common::{HEADER, Row, Scratch, TABLES, body, csv, standard, syd};

const EMPTY_SUMMARY: &str = "0,0,,,,,,,0,0,,";

fn assert_empty_tables(s: &Scratch) {
    for t in &TABLES[..7] {
        let text = s.read(&format!("out/{t}.csv"));
        assert_eq!(text.lines().count(), 1, "{t}: {text}");
    }
    assert_eq!(body(&s.read("out/summary.csv")), [EMPTY_SUMMARY]);
}

#[test]
fn empty_file_gives_header_only_tables() {
    let s = Scratch::new();
    s.write("o.csv", "");
    let out = s.run(&standard("o.csv", "", ""));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_empty_tables(&s);
    assert_eq!(s.report()["totals"]["rows_read"], 0);
}

#[test]
fn header_only_file_gives_header_only_tables_and_extract() {
    let s = Scratch::new();
    s.write("o.csv", format!("{HEADER}\n"));
    let out = s.run(&standard(
        "o.csv",
        "",
        "[sinks.rows]\ninputs = [\"cp\"]\npath = \"out/kept.csv\"",
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_empty_tables(&s);
    assert_eq!(s.read("out/kept.csv"), format!("{HEADER}\n"));
}

#[test]
fn missing_required_column_is_named_and_nothing_is_written() {
    let s = Scratch::new();
    s.write(
        "o.csv",
        "order_id,timestamp,security_code,participantid,exchangeordertype,price\n1,2,3,4,5,6\n",
    );
    let out = s.run(&standard("o.csv", "", ""));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "o.csv:1: missing required column `quantity` (looked for a header named `quantity`"
        ),
        "{}",
        out.stderr
    );
    assert!(!s.exists("out/summary.csv"));
    assert_eq!(s.report()["status"], "failed");
}

#[test]
fn non_numeric_quantity_fails_the_job_with_file_line_column() {
    let s = Scratch::new();
    let r = Row::new(syd("2024-09-03 11:00:00"));
    s.write(
        "o.csv",
        format!("{}{},{},1,2,64,12x,5\n", csv(&[r, r]), r.id, r.ts),
    );
    let out = s.run(&standard("o.csv", "", ""));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("o.csv:4:6: column `quantity`: \"12x\" is not a whole number"),
        "{}",
        out.stderr
    );
    // No table that looks complete, and no temp file left behind.
    let left: Vec<String> = std::fs::read_dir(s.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["execution_metrics.json"]);
}

#[test]
fn non_numeric_quantity_is_rejected_and_counted_under_reject() {
    let s = Scratch::new();
    let r = Row::new(syd("2024-09-03 11:00:00"));
    s.write(
        "o.csv",
        format!("{}{},{},1,2,64,12x,5\n", csv(&[r, r]), r.id, r.ts),
    );
    let out = s.run(&standard(
        "o.csv",
        "on_error = \"reject\"\nrejects = \"out/rejects.csv\"",
        "",
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.report()["totals"]["rows_rejected"], 1);
    assert_eq!(
        body(&s.read("out/summary.csv"))[0].split(',').next(),
        Some("2")
    );
    assert!(s.read("out/rejects.csv").contains("o.csv,4,6:quantity,"));
}

#[test]
fn missing_inputs_are_all_named_with_exit_2() {
    let s = Scratch::new();
    let p = standard("nope.csv", "", "").replace(
        "path = \"nope.csv\"",
        "path = [\"nope.csv\", \"none/*.csv.gz\"]",
    );
    let out = s.run(&p);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("nope.csv: No such file or directory"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("glob `none/*.csv.gz` matched no files"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_output_folder_that_cannot_be_written_is_named() {
    let s = Scratch::new();
    s.write("o.csv", csv(&[]));
    s.write("blocker", "a file, not a folder");
    let p = standard("o.csv", "", "").replace("path = \"out\"", "path = \"blocker/out\"");
    let out = s.run(&p);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("blocker"), "{}", out.stderr);
}

#[test]
fn crlf_bom_quotes_and_no_final_newline() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let text = format!(
        "\u{feff}order_id,timestamp,security_code,participantid,exchangeordertype,quantity,price,note\r\n\
         1,{t},110621,5,2048,100,3340,\"a, \"\"quoted\"\"\r\nnote\"\r\n\
         2,{t},110621,6,64,300,3350,plain"
    );
    s.write("o.csv", text);
    let out = s.run(&standard(
        "o.csv",
        "",
        "[sinks.rows]\ninputs = [\"cp\"]\npath = \"out/kept.csv\"",
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(body(&s.read("out/summary.csv"))[0].starts_with("2,400,200,"));
    let kept = s.read("out/kept.csv");
    assert!(kept.contains("\"a, \"\"quoted\"\"\r\nnote\""), "{kept}");
}
