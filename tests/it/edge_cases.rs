//! Ugly inputs and failing outputs: each asserts the exact outcome.

use crate::common::{HEADER, Pipeline, Row, Scratch, TABLES, body, csv, syd, totals};

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
    s.run(&Pipeline::standard("o.csv")).assert_success();
    assert_empty_tables(&s);
    assert_eq!(s.report()["totals"]["rows_read"], 0);
}

#[test]
fn header_only_file_gives_header_only_tables_and_extract() {
    let s = Scratch::new();
    s.write("o.csv", format!("{HEADER}\n"));
    let p = Pipeline::standard("o.csv").sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
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
    s.run(&Pipeline::standard("o.csv"))
        .assert_code(1)
        .assert_stderr_contains(
            "o.csv:1: missing required column `quantity` (looked for a header named `quantity`",
        );
    assert!(!s.exists("out/summary.csv"));
    assert_eq!(s.report()["status"], "failed");
    // Also when a rows sink keeps whole rows, so the reader reads every column it finds: what
    // the filter and aggregator use is still checked there, and the error still names the file.
    let p = Pipeline::standard("o.csv").sink("rows", "out/kept.csv");
    s.run(&p)
        .assert_code(1)
        .assert_stderr_contains("o.csv:1: missing required column `quantity`");
    assert!(!s.exists("out/kept.csv"));
}

#[test]
fn non_numeric_quantity_fails_the_job_with_file_line_column() {
    let s = Scratch::new();
    let r = Row::new(syd("2024-09-03 11:00:00"));
    s.write(
        "o.csv",
        format!("{}{},{},1,2,64,12x,5\n", csv(&[r, r]), r.id, r.ts),
    );
    s.run(&Pipeline::standard("o.csv"))
        .assert_code(1)
        .assert_stderr_contains("o.csv:4:6: column `quantity`: \"12x\" is not a whole number");
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
    let p = Pipeline::standard("o.csv").rejects("out/rejects.csv");
    s.run(&p).assert_success();
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
    let p = Pipeline::standard("nope.csv")
        .set("readers.orders", r#"path = ["nope.csv", "none/*.csv.gz"]"#);
    s.run(&p)
        .assert_code(2)
        .assert_stderr_contains("nope.csv: No such file or directory")
        .assert_stderr_contains("glob `none/*.csv.gz` matched no files");
}

#[test]
fn an_output_folder_that_cannot_be_written_is_named() {
    let s = Scratch::new();
    s.write("o.csv", csv(&[]));
    s.write("blocker", "a file, not a folder");
    let p = Pipeline::standard("o.csv").set("sinks.tables", r#"path = "blocker/out""#);
    s.run(&p).assert_code(2).assert_stderr_contains("blocker");
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
    let p = Pipeline::standard("o.csv").sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
    assert!(body(&s.read("out/summary.csv"))[0].starts_with("2,400,200,"));
    let kept = s.read("out/kept.csv");
    assert!(kept.contains("\"a, \"\"quoted\"\"\r\nnote\""), "{kept}");
}

#[test]
fn single_row_and_a_timestamp_far_outside_any_trading_day() {
    let s = Scratch::new();
    let r = Row::new(syd("2024-09-03 11:00:00"));
    // Valid i64 nanoseconds far from any trading day: read, judged by local time, no panic.
    // 0 is 1970-01-01 10:00 Sydney (kept); i64::MIN is 1677-09-21 10:17 Sydney mean time (kept);
    // i64::MAX is 2262-04-12 10:47 in chrono-tz's Sydney, whose rules keep summer time that far
    // out (kept); 2100-01-01T05:00Z is 16:00 AEDT (dropped).
    let far = [
        Row { id: 1, ts: 0, ..r },
        Row {
            id: 2,
            ts: i64::MAX,
            ..r
        },
        Row {
            id: 3,
            ts: i64::MIN,
            ..r
        },
        Row {
            id: 4,
            ts: 4_102_462_800_000_000_000,
            ..r
        },
    ];
    s.write("one.csv", csv(&[r]));
    s.write("far.csv", csv(&far));
    s.run(&Pipeline::standard("one.csv")).assert_success();
    assert_eq!(
        body(&s.read("out/summary.csv"))[0]
            .split(',')
            .take(5)
            .collect::<Vec<_>>(),
        ["1", "100", "100", "", "3340"]
    );
    s.run(&Pipeline::standard("far.csv")).assert_success();
    assert_eq!(
        totals(&s.report(), ["rows_read", "rows_kept", "rows_filtered_out"]),
        [Some(4), Some(3), Some(1)]
    );
}

#[test]
fn duplicated_and_unknown_header_names() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    // Unknown columns are carried along (as text in an extract) and otherwise ignored.
    s.write(
        "extra.csv",
        format!("{HEADER},venue,comment\n1,{t},110621,5,2048,100,3340,CXA,hello\n"),
    );
    let p = Pipeline::standard("extra.csv").sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
    assert_eq!(
        s.read("out/kept.csv"),
        format!("{HEADER},venue,comment\n1,{t},110621,5,2048,100,3340,CXA,hello\n")
    );
    // A needed column that appears twice is ambiguous: the job fails and says where.
    s.write(
        "dup.csv",
        format!("{HEADER},quantity\n1,{t},110621,5,2048,100,3340,7\n"),
    );
    s.run(&Pipeline::standard("dup.csv"))
        .assert_code(1)
        .assert_stderr_contains(
            "dup.csv:1: column `quantity` appears more than once in the header (columns 6, 8)",
        );
}

#[test]
fn short_long_negative_overflowing_and_non_utf8_rows_are_each_rejected() {
    let s = Scratch::new();
    let t = syd("2024-09-03 11:00:00");
    let good = format!("1,{t},110621,5,2048,100,3340,ok");
    let lines = [
        good.clone(),
        format!("2,{t},110621,5,2048,100"), // line 3: too few fields
        format!("3,{t},110621,5,2048,100,3340,ok,extra"), // line 4: too many
        format!("4,{t},110621,5,2048,-100,3340,ok"), // line 5: negative quantity
        format!("18446744073709551616,{t},110621,5,2048,1,3340,ok"), // line 6: order id overflows u64
        format!("6,{t},110621,5,2048,100,9223372036854775808,ok"),   // line 7: price overflows i64
        good.clone(),
    ];
    let mut bytes = format!("{HEADER},timevaliditydecoded\n{}\n", lines.join("\n")).into_bytes();
    bytes.extend_from_slice(format!("8,{t},110621,5,2048,100,3340,").as_bytes());
    bytes.extend_from_slice(b"\xff\xfe\n"); // line 9: not UTF-8 in a text column
    s.write("o.csv", bytes);
    let p = Pipeline::standard("o.csv")
        .rejects("out/rejects.csv")
        .sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
    let rejects = s.read("out/rejects.csv");
    let got: Vec<(String, String)> = body(&rejects)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ',').collect();
            (f[1].to_string(), f[2].to_string())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        got,
        [
            ("3", ""),
            ("4", ""),
            ("5", "6:quantity"),
            ("6", "1:order_id"),
            ("7", "7:price"),
            ("9", "8:timevaliditydecoded")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        totals(&s.report(), ["rows_read", "rows_kept", "rows_rejected"]),
        [Some(8), Some(2), Some(6)]
    );
}

#[test]
fn an_input_that_cannot_be_opened_is_named() {
    let s = Scratch::new();
    // Tests run as root here, where permission bits do not stop reads; a dangling link cannot
    // be opened by anyone.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(s.path("gone.csv"), s.path("link.csv")).unwrap();
        s.run(&Pipeline::standard("link.csv"))
            .assert_code(2)
            .assert_stderr_contains("link.csv: No such file or directory");
    }
}

#[test]
fn every_generated_dirty_row_is_caught_at_its_recorded_line() {
    let s = Scratch::new();
    let made = s.sweep(&[
        "generate",
        "--orders",
        "dirty.csv",
        "--rows",
        "20000",
        "--seed",
        "7",
        "--dirty",
        "0.002",
    ]);
    made.assert_success();
    let log = s.read("dirty.csv.dirty.csv");
    let recorded: std::collections::BTreeSet<u64> = body(&log)
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(recorded.len() >= 20, "{} dirty rows", recorded.len());
    let p = Pipeline::standard("dirty.csv")
        .rejects("out/rejects.csv")
        .sink("rows", "out/kept.csv");
    s.run(&p).assert_success();
    let caught: std::collections::BTreeSet<u64> = body(&s.read("out/rejects.csv"))
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(caught, recorded);
    let t = &s.report()["totals"];
    assert_eq!(t["rows_rejected"].as_u64(), Some(recorded.len() as u64));
    assert_eq!(t["rows_read"].as_u64(), Some(20000));
    // Under the default policy a dirty row fails the job and names its line. Blocks are parsed
    // in parallel, so it is the first one a worker meets, not necessarily the first in the file.
    let out = s.run(&Pipeline::standard("dirty.csv"));
    out.assert_code(1);
    let named = recorded.iter().any(|l| {
        out.stderr.contains(&format!("dirty.csv:{l}:"))
            || out.stderr.contains(&format!("dirty.csv:{l}: "))
    });
    assert!(named, "{}", out.stderr);
}
