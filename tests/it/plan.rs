//! `sweep plan`: hardware, settings, the job matrix and an ETA, without reading data.

use crate::common::{Scratch, data};

#[test]
fn plan_lists_jobs_partitions_and_settings_without_reading_data() {
    let s = Scratch::new();
    s.write("in/a.csv", "not even csv: plan must not read it");
    s.write("in/b.csv.gz", vec![0u8; 1000]);
    s.write(
        "p.toml",
        r#"[runtime]
workers = 3
[readers.o]
path = "in"
[filters.f]
inputs = ["o"]
securities = [110621, 70616]
dates = { from = "2024-10-04", to = "2024-10-08" }
[aggregators.a]
inputs = ["f"]
[sinks.t]
inputs = ["a"]
path = "out"
"#,
    );
    let out = s.sweep(&["plan", "p.toml", "--json"]);
    out.assert_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["hardware"]["logical_cores"].as_u64().unwrap() >= 1);
    assert!(v["hardware"]["total_memory_bytes"].as_u64().unwrap() > 0);
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1]["format"], "csv, gzip");
    assert_eq!(v["total_input_bytes"], 35 + 1000);
    // 2 securities × the 3 weekdays of Fri 4 Oct .. Tue 8 Oct 2024.
    let parts: Vec<String> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p[0], p[1].as_str().unwrap()))
        .collect();
    assert_eq!(
        parts,
        [
            "110621/2024-10-04",
            "110621/2024-10-07",
            "110621/2024-10-08",
            "70616/2024-10-04",
            "70616/2024-10-07",
            "70616/2024-10-08"
        ]
    );
    let workers = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "runtime.workers")
        .unwrap();
    assert_eq!(workers["value"], "3");
    assert_eq!(workers["why"], "set in the pipeline");
    assert!(v["eta_secs"].as_f64().unwrap() > 0.0);
    // The text form says the same.
    s.sweep(&["plan", "p.toml"])
        .assert_stdout_contains("partitions (security × trading date): 6");
    // Missing inputs are problems: exit 2.
    s.sweep(&["plan", "p.toml", "--set", "readers.o.path=nope/*.csv"])
        .assert_code(2)
        .assert_stdout_contains("matched no files");
}

/// A sweep analysis's memory budget is part of the estimated peak: the plan of the shipped sweep
/// job with a 256 MiB and a 512 MiB budget differ by exactly 256 MiB.
#[test]
fn the_estimated_peak_includes_a_sweep_analysis_budget() {
    let s = Scratch::new();
    let pipeline = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/sweeps.toml");
    let orders = data("sweep_sample_orders.csv.gz");
    let trades = data("sweep_sample_trades.csv.gz");
    let peak = |budget: &str| {
        let out = s.sweep(&[
            "plan",
            pipeline.to_str().unwrap(),
            "--json",
            "--set",
            &format!("readers.orders.path={}", orders.display()),
            "--set",
            &format!("readers.trades.path={}", trades.display()),
            "--set",
            &format!("sweeps.fills.memory_budget_mib={budget}"),
        ]);
        out.assert_success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["estimated_peak_memory_bytes"].as_u64().unwrap()
    };
    let (a, b) = (peak("256"), peak("512"));
    assert!(a > 256 << 20, "{a}");
    assert_eq!(b - a, 256 << 20);
}
