//! `sweep convert` and the Parquet reader's pushdown: the layout written (sorted, row groups,
//! statistics, page index, date folders), every row accounted for, and filtered runs over the
//! converted files that read less and give the tables the CSV gives.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use crate::common::{Pipeline, Scratch};

/// Rows of a Parquet file as (security, timestamp, sequence), and its row groups' sizes.
fn layout(path: &Path) -> (Vec<(u32, i64, i64)>, Vec<i64>) {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let b =
        ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(path).unwrap(), options)
            .unwrap();
    let meta = b.metadata().clone();
    assert!(
        meta.page_index().is_some_and(|p| p.is_complete()),
        "{} has no page index",
        path.display()
    );
    let groups = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    let mut rows = Vec::new();
    for batch in b.build().unwrap() {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let (sec, ts, seq) = (col("security_code"), col("timestamp"), col("sequence"));
        let (sec, ts, seq) = (
            sec.as_primitive::<UInt32Type>(),
            ts.as_primitive::<Int64Type>(),
            seq.as_primitive::<Int64Type>(),
        );
        rows.extend((0..batch.num_rows()).map(|i| (sec.value(i), ts.value(i), seq.value(i))));
    }
    (rows, groups)
}

/// A scratch folder holding `orders.csv`: `rows` generated order events over `days` days.
fn generated(rows: u32, days: u32, seed: u32) -> Scratch {
    let s = Scratch::new();
    let (rows, days, seed) = (rows.to_string(), days.to_string(), seed.to_string());
    s.sweep(&[
        "generate",
        "--orders",
        "orders.csv",
        "--rows",
        &rows,
        "--days",
        &days,
        "--seed",
        &seed,
    ])
    .assert_success();
    s
}

/// The standard job over `input`, with `extra` lines in its filter, into `out`; returns the
/// report.
fn job(s: &Scratch, input: &str, out: &str, extra: &[&str]) -> serde_json::Value {
    let p = Pipeline::standard(input)
        .section("filters.cp", extra)
        .set("sinks.tables", &format!("path = \"{out}\""))
        .set(
            "monitor",
            &format!("report = \"{out}/execution_metrics.json\""),
        );
    s.write("p.toml", p.toml());
    s.sweep(&["run", "p.toml"]).assert_success();
    serde_json::from_str(&s.read(&format!("{out}/execution_metrics.json"))).unwrap()
}

fn tables_equal(s: &Scratch, a: &str, b: &str) {
    for t in crate::common::TABLES {
        assert_eq!(
            s.read(&format!("{a}/{t}.csv")),
            s.read(&format!("{b}/{t}.csv")),
            "{t}.csv differs between {a} and {b}"
        );
    }
}

/// The ledger balances and the Parquet scan is reported.
fn scan(report: &serde_json::Value, rows: u64) -> serde_json::Value {
    let t = &report["totals"];
    assert_eq!(t["rows_read"].as_u64(), Some(rows));
    assert_eq!(
        t["rows_kept"].as_u64().unwrap() + t["rows_filtered_out"].as_u64().unwrap(),
        rows
    );
    t["parquet"].clone()
}

/// A conversion spilling sorted runs (a 1 MiB budget) writes every row, sorted by security,
/// timestamp and sequence, in row groups of the size asked for, with a page index; the same rows
/// in the same bytes as a conversion that never spills. Runs over it filtered to one security,
/// or one date, read fewer row groups and give the CSV's tables, byte for byte.
#[test]
fn a_converted_file_is_sorted_and_filtered_runs_skip_what_they_cannot_keep() {
    let s = generated(40000, 3, 3);
    let out = s.sweep(&[
        "convert",
        "orders.csv",
        "--out",
        "conv",
        "--row-group-rows",
        "2000",
        "--memory-mib",
        "1",
        "--report",
        "conv.json",
    ]);
    out.assert_success()
        .assert_stderr_contains("40000 rows read = 40000 kept + 0 filtered out + 0 rejected");
    let (rows, groups) = layout(&s.path("conv/part-00000.parquet"));
    assert_eq!(rows.len(), 40000);
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    assert_eq!(groups.len(), 20);
    assert!(groups.iter().all(|&g| g == 2000), "{groups:?}");
    // Without spilling: the same file.
    s.sweep(&[
        "convert",
        "orders.csv",
        "--out",
        "conv-mem",
        "--row-group-rows",
        "2000",
    ])
    .assert_success();
    assert_eq!(
        std::fs::read(s.path("conv/part-00000.parquet")).unwrap(),
        std::fs::read(s.path("conv-mem/part-00000.parquet")).unwrap()
    );

    // The whole job: the same tables from the CSV and the converted file.
    job(&s, "orders.csv", "csv-all", &[]);
    let all = job(&s, "conv/part-00000.parquet", "pq-all", &[]);
    tables_equal(&s, "csv-all", "pq-all");
    let all = scan(&all, 40000);
    assert_eq!(
        all["row_groups_read"].as_u64().unwrap() + all["row_groups_skipped"].as_u64().unwrap(),
        20
    );

    // One security (the first row's): fewer row groups, the same tables.
    let sec = rows[0].0;
    let one = format!("securities = [{sec}]");
    job(&s, "orders.csv", "csv-one", &[&one]);
    let report = job(&s, "conv/part-00000.parquet", "pq-one", &[&one]);
    tables_equal(&s, "csv-one", "pq-one");
    let p = scan(&report, 40000);
    let in_sec = rows.iter().filter(|r| r.0 == sec).count() as u64;
    let read = p["row_groups_read"].as_u64().unwrap();
    assert!(read <= in_sec.div_ceil(2000) + 1, "{p}");
    assert!(p["row_groups_skipped"].as_u64().unwrap() >= 20 - read);
    assert!(p["rows_skipped"].as_u64().unwrap() >= 40000 - (read * 2000));
    assert!(p["pages_skipped"].as_u64().unwrap() > 0, "{p}");
    // The skipped rows are the filter's: filtered out, per job and per stage.
    let job0 = &report["jobs"][0];
    assert_eq!(job0["parquet"], p);
    let stage = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["name"] == "cp")
        .unwrap();
    assert_eq!(stage["rows_in"].as_u64(), Some(40000));

    // By date: a folder per Sydney date, every row once; a run filtered to one date skips the
    // other dates' files whole and gives the CSV's tables.
    s.sweep(&[
        "convert",
        "orders.csv",
        "--out",
        "bydate",
        "--by-date",
        "--row-group-rows",
        "2000",
    ])
    .assert_success();
    let mut dates: Vec<String> = std::fs::read_dir(s.path("bydate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dates.sort();
    assert_eq!(dates.len(), 3, "{dates:?}");
    let mut total = 0;
    for d in &dates {
        assert!(d.starts_with("date=2024-"), "{d}");
        let (rows, _) = layout(&s.path(&format!("bydate/{d}/part-00000.parquet")));
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "{d} not sorted");
        total += rows.len();
    }
    assert_eq!(total, 40000);
    let day = &dates[1]["date=".len()..];
    let on = format!("dates = {{ from = \"{day}\", to = \"{day}\" }}");
    job(&s, "orders.csv", "csv-day", &[&on]);
    let report = job(&s, "bydate", "pq-day", &[&on]);
    tables_equal(&s, "csv-day", "pq-day");
    let p = scan(&report, 40000);
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    for j in jobs {
        let mine = j["file"].as_str().unwrap().contains(day);
        let skipped = j["parquet"]["row_groups_read"].as_u64() == Some(0);
        assert_eq!(skipped, !mine, "{j}");
    }
    assert!(p["rows_skipped"].as_u64().unwrap() > 0);
}

/// `sweep plan` estimates, from the footers, the row groups a filtered run reads and skips.
#[test]
fn plan_estimates_the_row_groups_a_filter_skips() {
    let s = generated(20000, 2, 4);
    s.sweep(&[
        "convert",
        "orders.csv",
        "--out",
        "conv",
        "--row-group-rows",
        "1000",
    ])
    .assert_success();
    let (rows, _) = layout(&s.path("conv/part-00000.parquet"));
    let p = Pipeline::standard("conv/part-00000.parquet")
        .section("filters.cp", &[&format!("securities = [{}]", rows[0].0)]);
    s.write("p.toml", p.toml());
    let out = s.sweep(&["plan", "p.toml", "--json"]);
    out.assert_success();
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let est = &plan["jobs"][0]["parquet"];
    let (read, skipped) = (
        est["row_groups_read"].as_u64().unwrap(),
        est["row_groups_skipped"].as_u64().unwrap(),
    );
    assert_eq!(read + skipped, 20);
    assert!(skipped > 0 && read > 0, "{est}");
    // The run skips what the plan said it would.
    s.sweep(&["run", "p.toml"]).assert_success();
    let report = s.report();
    assert_eq!(
        report["totals"]["parquet"]["row_groups_read"].as_u64(),
        Some(read)
    );
    assert_eq!(
        report["totals"]["parquet"]["rows_skipped"],
        est["rows_skipped"]
    );
    let text = s.sweep(&["plan", "p.toml"]);
    text.assert_stdout_contains(&format!("row groups {read} read, {skipped} skipped"));
}
