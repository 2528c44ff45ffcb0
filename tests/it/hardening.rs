//! Inputs that once gave a silent wrong answer and outputs that once destroyed data: line
//! endings, named pipes, Parquet column types, outputs among the inputs, truncated gzip, and the
//! CLI's help.

use std::io::Write as _;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_array::{UInt32Array, UInt64Array};

use crate::common::{HEADER, Pipeline, Row, Scratch, syd};

/// `n` Centre Point rows inside trading hours, each with its own id and quantity 100 + i.
fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let mut r = Row::new(syd("2024-09-02 10:30:00") + i as i64 * 1_000_000_000);
            r.id += i as u64;
            r.qty = 100 + i as u64;
            r
        })
        .collect()
}

/// What ends record `i` of a file (the header is record 0).
type Ending = fn(usize) -> &'static str;

/// The rows as CSV text with each record ended by `end(i)` (the header is record 0).
fn text(rows: &[Row], end: impl Fn(usize) -> &'static str) -> String {
    let mut s = format!("{HEADER}{}", end(0));
    for (i, r) in rows.iter().enumerate() {
        s.push_str(&r.line());
        s.push_str(end(i + 1));
    }
    s
}

fn totals(s: &Scratch) -> (u64, u64, u64) {
    let t = &s.report()["totals"];
    (
        t["rows_read"].as_u64().unwrap(),
        t["rows_kept"].as_u64().unwrap(),
        t["rows_rejected"].as_u64().unwrap(),
    )
}

#[test]
fn every_line_ending_reads_the_same_rows_and_lines() {
    let rows = rows(40);
    let expected = {
        let s = Scratch::new();
        s.write("in.csv", text(&rows, |_| "\n"));
        s.run(&Pipeline::standard("in.csv")).assert_success();
        s.read("out/summary.csv")
    };
    assert!(
        expected.lines().nth(1).unwrap().starts_with("40,4780,"),
        "{expected}"
    );
    let endings: [(&str, Ending); 4] = [
        ("crlf", |_| "\r\n"),
        ("cr", |_| "\r"),
        ("mixed", |i| ["\n", "\r\n", "\r"][i % 3]),
        ("cr, no final line end", |i| if i == 40 { "" } else { "\r" }),
    ];
    for (name, end) in endings {
        let s = Scratch::new();
        s.write("in.csv", text(&rows, end));
        s.run(&Pipeline::standard("in.csv"))
            .case(name)
            .assert_success();
        assert_eq!(totals(&s), (40, 40, 0), "{name}");
        assert_eq!(s.read("out/summary.csv"), expected, "{name}");
    }
    // A bad row is placed on its physical line whatever ends the lines: header line 1, rows 2..
    for (name, end) in [
        ("lf", (|_| "\n") as Ending),
        ("cr", |_| "\r"),
        ("mixed", |i| ["\n", "\r\n", "\r"][i % 3]),
    ] {
        let s = Scratch::new();
        let bad = rows[6].line().replace(",106,", ",1x6,");
        let body = text(&rows, end).replacen(&rows[6].line(), &bad, 1);
        s.write("in.csv", body);
        // The 7th row is line 8.
        s.run(&Pipeline::standard("in.csv"))
            .case(name)
            .assert_code(1)
            .assert_stderr_contains("in.csv:8:6: ");
    }
}

#[test]
fn a_named_pipe_fed_slowly_is_read_to_its_end() {
    let s = Scratch::new();
    let fifo = s.path("live.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let body = text(&rows(300), |_| "\n");
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // Opening blocks until the reader opens its end.
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo");
            for chunk in body.as_bytes().chunks(997) {
                w.write_all(chunk).expect("the reader must read to the end");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let out = s.run(&Pipeline::standard("live.csv"));
    writer.join().expect("writer saw no SIGPIPE or error");
    out.assert_success();
    assert_eq!(totals(&s), (300, 300, 0));
    assert_eq!(s.report()["totals"]["jobs"].as_u64(), Some(1));

    // Parquet needs a seekable file: a pipe named as Parquet is refused before anything runs.
    let pq = s.path("live.parquet");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&pq)
            .status()
            .unwrap()
            .success()
    );
    s.run(&Pipeline::standard("live.parquet"))
        .assert_code(2)
        .assert_stderr_contains("live.parquet: not a regular file");
}

/// A Parquet orders file whose `quantity` column is `qty`; the others are stored as the
/// catalogue types.
fn parquet_with_quantity(s: &Scratch, name: &str, qty: ArrayRef) {
    let rows = rows(qty.len());
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "order_id",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.id))),
        ),
        (
            "timestamp",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts))),
        ),
        (
            "security_code",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.sec))),
        ),
        (
            "participantid",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.part))),
        ),
        (
            "exchangeordertype",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.typ))),
        ),
        ("quantity", qty),
        (
            "price",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.price))),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(s.path(name)).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_columns_must_hold_the_catalogue_type_or_a_lossless_integer() {
    // Stored as float or text: refused whole, naming the file, the column and both types.
    let wrong: [(&str, ArrayRef, &str); 2] = [
        (
            "float",
            Arc::new(Float64Array::from(vec![462.5, 100.0])),
            "Float64",
        ),
        (
            "text",
            Arc::new(StringArray::from(vec!["462", "100"])),
            "Utf8",
        ),
    ];
    for (name, qty, found) in wrong {
        let s = Scratch::new();
        parquet_with_quantity(&s, "in.parquet", qty);
        s.run(&Pipeline::standard("in.parquet"))
            .case(name)
            .assert_code(1)
            .assert_stderr_contains(&format!(
                "in.parquet: column `quantity` is stored as {found}, but the catalogue reads it \
                 as unsigned 64-bit integer"
            ));
        assert!(
            !s.exists("out/summary.csv"),
            "{name}: nothing looks complete"
        );
    }
    // A narrower integer widens exactly: the rows are those of the CSV.
    let s = Scratch::new();
    parquet_with_quantity(
        &s,
        "in.parquet",
        Arc::new(Int32Array::from(vec![462, 100, 7])),
    );
    s.run(&Pipeline::standard("in.parquet")).assert_success();
    assert_eq!(totals(&s), (3, 3, 0));
    assert!(
        s.read("out/summary.csv").contains(",569,"),
        "Σ quantity 569"
    );
    // A signed integer with a value the unsigned column cannot hold: that row is a bad row,
    // counted under `on_error = "reject"` with its row number and column.
    let s = Scratch::new();
    parquet_with_quantity(
        &s,
        "in.parquet",
        Arc::new(Int64Array::from(vec![462, -5, 7])),
    );
    s.run(&Pipeline::standard("in.parquet").rejects("out/rejects.csv"))
        .assert_success();
    assert_eq!(totals(&s), (3, 2, 1));
    let rejects = s.read("out/rejects.csv");
    assert!(
        rejects.contains("in.parquet,2,6:quantity,value does not fit unsigned 64-bit integer"),
        "{rejects}"
    );
}

#[test]
fn outputs_in_the_folder_being_read_are_never_read_back() {
    let s = Scratch::new();
    s.write("data/day.csv", text(&rows(300), |_| "\n"));
    // The standard job over the folder `data/` with its tables and an extract written into it.
    let p = Pipeline::standard("data")
        .set("sinks.tables", r#"path = "data""#)
        .sink("extract", "data/extract.csv");
    s.write("p.toml", p.toml());
    for run in 0..2 {
        s.sweep(&["run", "p.toml"])
            .case(format!("run {run}"))
            .assert_success();
        assert_eq!(
            totals(&s),
            (300, 300, 0),
            "run {run} reads only data/day.csv"
        );
        assert_eq!(s.report()["totals"]["jobs"].as_u64(), Some(1), "run {run}");
    }
    assert_eq!(s.read("data/extract.csv").lines().count(), 301);
}

#[test]
fn an_output_on_an_input_or_on_another_output_is_refused_before_anything_is_written() {
    let s = Scratch::new();
    let input = text(&rows(30), |_| "\n");
    s.write("in.csv", &input);
    // The standard job with an extract at `path`, spelt out: the errors name its line 21.
    let extract = |path: &str| {
        format!(
            r#"name = "t"
[runtime]
workers = 2
[readers.orders]
path = "in.csv"
[filters.cp]
inputs = ["orders"]
exchange_order_types = [64, 256, 2048, 4096, 4098]
trading_hours = {{ start = "10:00", end = "16:00" }}
[aggregators.stats]
inputs = ["cp"]
[sinks.tables]
inputs = ["stats"]
path = "out"
[monitor]
report = "out/execution_metrics.json"
progress = "off"

[sinks.extract]
inputs = ["cp"]
path = "{path}"
"#
        )
    };
    // The extract over its own input: validate names the key; run refuses and writes nothing.
    s.write("p.toml", extract("in.csv"));
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains(
            "p.toml:21:8: sinks.extract writes in.csv, which is the input `readers.orders.path` = \"in.csv\"",
        );
    s.sweep(&["run", "p.toml"]).assert_code(2);
    assert_eq!(s.read("in.csv"), input, "the input is untouched");
    assert!(!s.exists("out"), "nothing written");

    // The extract at the tables' summary.csv: two outputs at one path.
    s.write("p.toml", extract("out/summary.csv"));
    s.sweep(&["validate", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains(
            "p.toml:21:8: sinks.extract writes out/summary.csv, which sinks.tables (summary.csv of `stats`) also writes",
        );
    assert!(!s.exists("out"), "nothing written");

    // Through a symlink to the input's folder: only the run, which resolves links, can tell.
    s.write("data/in.csv", &input);
    std::os::unix::fs::symlink(s.path("data"), s.path("link")).unwrap();
    let p = Pipeline::standard("data/in.csv").sink("extract", "link/in.csv");
    s.write("p.toml", p.toml());
    s.sweep(&["validate", "p.toml"]).assert_success();
    s.sweep(&["run", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains(
            "which is the input file data/in.csv; an output must never overwrite an input",
        );
    assert_eq!(s.read("data/in.csv"), input);
    // And a rejects file through the link onto the extract.
    let p = Pipeline::standard("in.csv")
        .rejects("link/x.csv")
        .sink("extract", "data/x.csv");
    s.write("p.toml", p.toml());
    s.sweep(&["run", "p.toml"])
        .assert_code(2)
        .assert_stderr_contains("sinks.extract writes data/x.csv")
        .assert_stderr_contains("which readers.orders.rejects also writes");
}

#[test]
fn a_truncated_gzip_names_the_line_reached() {
    let s = Scratch::new();
    // About 8 MB of rows: several 1 MiB blocks before the cut.
    let body = text(&rows(120_000), |_| "\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let mut bytes = gz.finish().unwrap();
    bytes.truncate(bytes.len() - 2000);
    s.write("in.csv.gz", &bytes);
    let out = s.run(&Pipeline::standard("in.csv.gz"));
    out.assert_code(1);
    let at = out
        .stderr
        .split("read failed at or after line ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("a line number: {}", out.stderr));
    assert!(at > 100_000, "line {at} is near the cut: {}", out.stderr);
    out.assert_stderr_contains("compressed byte");
}

#[test]
fn help_describes_each_command() {
    let s = Scratch::new();
    let out = s.sweep(&["--help"]);
    out.assert_success();
    let line = |cmd: &str| {
        out.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(cmd))
            .unwrap_or_else(|| panic!("{cmd} in:\n{}", out.stdout))
            .to_string()
    };
    assert!(
        line("daemon").contains("Follow the readers' paths"),
        "{}",
        out.stdout
    );
    assert!(line("generate").contains("Generate realistic synthetic order events"));
    let out = s.sweep(&["generate", "--help"]);
    assert!(!out.stdout.contains("Arguments of"), "{}", out.stdout);
    for cmd in ["run", "daemon", "plan", "validate"] {
        s.sweep(&[cmd, "--help"])
            .case(cmd)
            .assert_stdout_contains("The pipeline file (TOML)")
            .assert_stdout_contains("Override a pipeline value");
    }
}
