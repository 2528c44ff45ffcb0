//! A sharded run (`sweep plan --shards`, `sweep run --plan`, `sweep merge`) against `sweep run`
//! on one node: the same tables to the byte and the same ledger, through kills, retries, races,
//! and merges that must refuse a missing shard or a partial from another plan.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Out, Pipeline, Scratch, totals};

/// `n` generated order files of different sizes, one trading day each, as `in/fNN.csv`.
fn generate(s: &Scratch, n: usize) {
    generate_rows(s, &(0..n).map(|i| 500 + 400 * i).collect::<Vec<_>>());
}

/// One generated order file per entry of `rows`, with that many rows.
fn generate_rows(s: &Scratch, rows: &[usize]) {
    std::fs::create_dir_all(s.path("in")).unwrap();
    for (i, rows) in rows.iter().enumerate() {
        let day =
            chrono::NaiveDate::from_ymd_opt(2024, 9, 2).unwrap() + chrono::Days::new(i as u64);
        s.sweep(&[
            "generate",
            "--orders",
            &format!("in/f{i:02}.csv"),
            "--rows",
            &rows.to_string(),
            "--seed",
            &(i + 1).to_string(),
            "--days",
            "1",
            "--start-date",
            &day.to_string(),
        ])
        .assert_success();
    }
}

/// The standard job over `in/*.csv`, writing every table format, so the merge is compared on
/// CSV, Parquet and JSON alike.
fn pipeline() -> Pipeline {
    Pipeline::standard("in/*.csv").set("sinks.tables", "formats = [\"csv\", \"parquet\", \"json\"]")
}

/// `sweep ARGS` in the scratch folder, with `env` set and neither index variable inherited.
fn command(s: &Scratch, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sweep"));
    c.args(args)
        .current_dir(s.dir.path())
        .env("SWEEP_LOG", "warn")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn finish(c: std::process::Child) -> Out {
    Out::of(c.wait_with_output().expect("wait"))
}

fn spawn(s: &Scratch, args: &[&str], env: &[(&str, String)]) -> std::process::Child {
    command(s, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sweep")
}

/// Writes the plan of `p.toml` (with `set`) over `shards` shards to `file`; returns its hash.
fn plan(s: &Scratch, shards: usize, file: &str, set: &[&str]) -> String {
    let n = shards.to_string();
    let mut args = vec![
        "plan", "p.toml", "--shards", &n, "--shared", "shared", "--json",
    ];
    for x in set {
        args.extend(["--set", x]);
    }
    let out = s.sweep(&args);
    out.assert_success();
    s.write(file, &out.stdout);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["plan_hash"].as_str().unwrap().to_string()
}

/// Runs shard `i` of `plan` to completion.
fn shard(s: &Scratch, plan: &str, i: usize) -> Out {
    let i = i.to_string();
    s.sweep(&["run", "p.toml", "--plan", plan, "--shard-index", &i])
}

/// `sweep run` on one node, its tables and report in `single/`.
fn single_node(s: &Scratch) {
    s.sweep(&[
        "run",
        "p.toml",
        "--set",
        "sinks.tables.path=single",
        "--set",
        "monitor.report=single/execution_metrics.json",
    ])
    .assert_success();
}

fn merge(s: &Scratch, plan: &str) -> Out {
    s.sweep(&[
        "merge",
        "p.toml",
        "--plan",
        plan,
        "--set",
        "sinks.tables.path=merged",
        "--set",
        "monitor.report=merged/execution_metrics.json",
    ])
}

/// Every table file of the one-node run equals the merge's, byte for byte, and the ledgers
/// agree; returns the files compared.
fn assert_same_outputs(s: &Scratch) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.path("single"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "execution_metrics.json")
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        8 * 2 + 1,
        "8 CSV, 8 Parquet, summary.json: {names:?}"
    );
    for n in &names {
        let (a, b) = (
            s.path(&format!("single/{n}")),
            s.path(&format!("merged/{n}")),
        );
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap_or_default(),
            "{n} differs between one node and the merge"
        );
    }
    let report = |dir: &str| -> serde_json::Value {
        serde_json::from_str(&s.read(&format!("{dir}/execution_metrics.json"))).unwrap()
    };
    let keys = [
        "jobs",
        "jobs_done",
        "rows_read",
        "rows_kept",
        "rows_filtered_out",
        "rows_rejected",
        "file_bytes",
        "bytes_read",
    ];
    let (one, merged) = (report("single"), report("merged"));
    assert_eq!(totals(&one, keys), totals(&merged, keys));
    assert!(totals(&one, keys)[2].unwrap() > 0);
    names
}

fn stage_dir(s: &Scratch, hash: &str) -> PathBuf {
    s.path(&format!("shared/{hash}/stats"))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn four_shards_merge_to_the_bytes_of_one_node() {
    let s = Scratch::new();
    generate(&s, 8);
    s.write("p.toml", pipeline().toml());
    single_node(&s);
    let hash = plan(&s, 4, "plan.json", &[]);
    // The same inputs, the same plan, byte for byte.
    let again = s.sweep(&[
        "plan", "p.toml", "--shards", "4", "--shared", "shared", "--json",
    ]);
    assert_eq!(again.stdout, s.read("plan.json"));
    let v: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["units"].as_array().unwrap().len(), 8);
    assert_eq!(v["shards"].as_array().unwrap().len(), 4);
    // Four separate processes at once, told their index the way each scheduler does.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let var = if i % 2 == 0 {
                "JOB_COMPLETION_INDEX"
            } else {
                "SLURM_ARRAY_TASK_ID"
            };
            spawn(
                &s,
                &["run", "p.toml", "--plan", "plan.json"],
                &[(var, i.to_string())],
            )
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        finish(c)
            .case(format!("shard {i}"))
            .assert_success()
            .assert_stderr_contains(&format!("shard-{i}: committed"));
    }
    assert_eq!(
        listing(&stage_dir(&s, &hash)),
        ["shard-0", "shard-1", "shard-2", "shard-3"]
    );
    merge(&s, "plan.json").assert_success();
    assert_same_outputs(&s);
    // A retry of a committed shard does nothing and succeeds.
    shard(&s, "plan.json", 1)
        .assert_success()
        .assert_stderr_contains("already committed; nothing to do");
}

#[test]
fn a_killed_shard_leaves_only_its_temporary_and_its_rerun_completes_the_merge() {
    let s = Scratch::new();
    generate_rows(&s, &[30_000, 600, 900]);
    s.write("p.toml", pipeline().toml());
    single_node(&s);
    let hash = plan(&s, 2, "plan.json", &[]);
    let dir = stage_dir(&s, &hash);
    // The largest file goes to shard 0 alone. Tiny blocks, one worker and one batch per edge
    // make that attempt slow (the runtime settings are not part of the plan); its temporary is
    // opened before it reads a row, so it is killed mid-run.
    let mut child = spawn(
        &s,
        &[
            "run",
            "p.toml",
            "--plan",
            "plan.json",
            "--shard-index",
            "0",
            "--set",
            "runtime.block_bytes=4096",
            "--set",
            "runtime.workers=1",
            "--set",
            "runtime.edge_capacity=1",
        ],
        &[],
    );
    let t0 = Instant::now();
    while !listing(&dir).iter().any(|n| n.starts_with(".shard-0.tmp-")) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let left = listing(&dir);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".shard-0.tmp-"),
        "only the temporary: {left:?}"
    );
    // The merge refuses the run as it is, naming the missing shards.
    merge(&s, "plan.json")
        .assert_code(1)
        .assert_stderr_contains("shard-0: missing");
    shard(&s, "plan.json", 0)
        .assert_success()
        .assert_stderr_contains("removed 1 temporary file(s) of an earlier attempt");
    shard(&s, "plan.json", 1).assert_success();
    assert_eq!(listing(&dir), ["shard-0", "shard-1"]);
    merge(&s, "plan.json").assert_success();
    assert_same_outputs(&s);
}

#[test]
fn two_attempts_of_one_shard_commit_one_partial_and_both_succeed() {
    let s = Scratch::new();
    generate(&s, 2);
    s.write("p.toml", pipeline().toml());
    let hash = plan(&s, 1, "plan.json", &[]);
    let args = ["run", "p.toml", "--plan", "plan.json", "--shard-index", "0"];
    let (a, b) = (spawn(&s, &args, &[]), spawn(&s, &args, &[]));
    let (a, b) = (finish(a), finish(b));
    a.assert_success();
    b.assert_success();
    assert_eq!(listing(&stage_dir(&s, &hash)), ["shard-0"]);
    let created = [&a, &b]
        .iter()
        .filter(|o| o.stderr.contains("shard-0: committed"))
        .count();
    assert!(
        created <= 1,
        "both said they committed:\n{}\n{}",
        a.stderr,
        b.stderr
    );
}

#[test]
fn a_merge_refuses_a_missing_shard_and_a_partial_of_another_plan() {
    let s = Scratch::new();
    generate(&s, 6);
    s.write("p.toml", pipeline().toml());
    let hash = plan(&s, 3, "plan.json", &[]);
    for i in 0..2 {
        shard(&s, "plan.json", i).assert_success();
    }
    let missing = merge(&s, "plan.json");
    missing
        .assert_code(1)
        .assert_stderr_contains(&format!("cannot merge plan {hash}"))
        .assert_stderr_contains(&format!("shared/{hash}/stats/shard-2: missing"));
    assert!(!s.exists("merged"), "a refused merge writes nothing");
    // A plan over other inputs, cut the same way: its shard 2 copied in as this plan's.
    let other = plan(&s, 3, "other.json", &["readers.orders.path=in/f0[0-2].csv"]);
    assert_ne!(other, hash);
    shard(&s, "other.json", 2).assert_success();
    std::fs::copy(
        stage_dir(&s, &other).join("shard-2"),
        stage_dir(&s, &hash).join("shard-2"),
    )
    .unwrap();
    // An extra file, too: all of it is listed at once.
    std::fs::write(stage_dir(&s, &hash).join("shard-7"), b"").unwrap();
    let foreign = merge(&s, "plan.json");
    foreign
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "shared/{hash}/stats/shard-2: from another plan (its plan hash is {other}"
        ))
        .assert_stderr_contains("shard-7: extra");
    assert!(!s.exists("merged"));
    eprintln!("{}{}", missing.stderr, foreign.stderr);
}

#[test]
fn shards_need_an_index_a_matching_pipeline_and_no_rows_sink() {
    let s = Scratch::new();
    generate(&s, 2);
    s.write("p.toml", pipeline().toml());
    plan(&s, 2, "plan.json", &[]);
    s.sweep(&["run", "p.toml", "--plan", "plan.json"])
        .assert_code(2)
        .assert_stderr_contains("no shard index");
    s.sweep(&["run", "p.toml", "--plan", "plan.json", "--shard-index", "2"])
        .assert_code(2)
        .assert_stderr_contains("out of range");
    // Another filter: the pipeline's meaning changed, so its digest no longer matches.
    s.sweep(&[
        "run",
        "p.toml",
        "--plan",
        "plan.json",
        "--shard-index",
        "0",
        "--set",
        "filters.cp.exchange_order_types=[64]",
    ])
    .assert_code(2)
    .assert_stderr_contains("the pipeline does not match the plan");
    // A rows sink is refused by the plan, a shard and the merge alike.
    s.write(
        "p.toml",
        pipeline().sink("extract", "out/orders.csv.gz").toml(),
    );
    for args in [
        &["plan", "p.toml", "--shards", "2", "--shared", "shared"][..],
        &["run", "p.toml", "--plan", "plan.json", "--shard-index", "0"],
        &["merge", "p.toml", "--plan", "plan.json"],
    ] {
        s.sweep(args)
            .case(args[0])
            .assert_code(2)
            .assert_stderr_contains("rows sink `extract`");
    }
}
