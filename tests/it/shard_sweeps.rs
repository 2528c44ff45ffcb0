//! The sweep fill analysis sharded: map shards over the files, reduce shards over order-id
//! partitions (`sweep run --plan --stage reduce`), and the merge, against `sweep run` on one
//! node: the same four tables to the byte (CSV and Parquet) and the same ledger, through kills,
//! racing attempts, merges that must refuse a missing or foreign partial, Slurm (with a
//! requeue in each array) and the Kubernetes manifests' commands.

use std::time::Duration;

use crate::common::Scratch;
use crate::shard::{
    assert_completed, assert_same_files, finish, generate_days, kill_shard_0_mid_run, listing,
    merge, outputs_in, plan, requeue_first_running, require_slurm, run_pod, shard, single_node,
    slurm_jobs, slurm_script, spawn, spawn_shards, submit, wait_for_jobs,
};

/// One generated orders and trades pair per entry of `rows` (order rows), a trading day each,
/// as `in/oNN.csv` and `in/tNN.csv`.
fn generate_pairs(s: &Scratch, rows: &[usize]) {
    generate_days(s, rows, true);
}

/// The sweep analysis over `in/`, writing its tables in CSV and Parquet, an extract of the
/// order events as Parquet in a folder per date, and a report page. A 1 MiB budget makes the plan cut the ids into many
/// partitions and makes each map shard spill.
const JOB: &str = r#"name = "sweeps"
[runtime]
workers = 2
[readers.orders]
path = "in/o*.csv"
[readers.trades]
path = "in/t*.csv"
[sweeps.fills]
orders = "orders"
trades = "trades"
memory_budget_mib = 1
[sinks.tables]
inputs = ["fills"]
path = "out"
formats = ["csv", "parquet"]
[sinks.extract]
inputs = ["orders"]
path = "out/extract"
format = "parquet"
partition_by = ["date"]
[sinks.report]
inputs = ["fills"]
path = "out/report.html"
[monitor]
progress = "off"
report = "out/execution_metrics.json"
"#;

/// Four tables in two formats, and the extract's part file of each of `days` dates.
fn files(days: usize) -> usize {
    8 + days
}

/// `sweep run p.toml --plan PLAN --shard-index I --stage reduce`.
fn reduce_args<'a>(plan: &'a str, i: &'a str) -> [&'a str; 8] {
    [
        "run",
        "p.toml",
        "--plan",
        plan,
        "--shard-index",
        i,
        "--stage",
        "reduce",
    ]
}

fn reduce(s: &Scratch, plan: &str, i: usize) -> crate::common::Out {
    let i = i.to_string();
    s.sweep(&reduce_args(plan, &i))
}

fn folder(s: &Scratch, hash: &str, name: &str) -> std::path::PathBuf {
    s.path(&format!("shared/{hash}/{name}"))
}

#[test]
fn map_and_reduce_shards_merge_to_the_bytes_of_one_node() {
    let s = Scratch::new();
    generate_pairs(&s, &[6_000, 9_000, 12_000]);
    s.write("p.toml", JOB);
    single_node(&s);
    let hash = plan(&s, 3, "plan.json", &[]);
    let v: serde_json::Value = serde_json::from_str(&s.read("plan.json")).unwrap();
    let sweeps = &v["sweeps"][0];
    assert_eq!(sweeps["name"], "fills");
    let parts = sweeps["partitions"].as_u64().unwrap() as usize;
    assert!(parts > 3, "a 1 MiB budget cuts many partitions: {parts}");
    // The reduce shards' ranges cover every partition once, in order.
    let ranges: Vec<(usize, usize)> = sweeps["reduce"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from"].as_u64().unwrap() as usize,
                r["to"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(ranges.len(), 3);
    assert_eq!((ranges[0].0, ranges[2].1), (0, parts));
    assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{ranges:?}");

    // The map shards at once, told their index the way each scheduler does.
    for (i, c) in spawn_shards(&s, 3).into_iter().enumerate() {
        finish(c)
            .case(format!("map shard {i}"))
            .assert_success()
            .assert_stderr_contains(&format!("fills.orders/shard-{i}: committed"))
            .assert_stderr_contains(&format!("fills.trades/shard-{i}: committed"));
    }
    // Before the reduce, the merge names every reduce shard missing and writes nothing.
    merge(&s, "plan.json")
        .assert_code(1)
        .assert_stderr_contains(&format!("{hash}/fills.reduce/shard-0: missing"))
        .assert_stderr_contains(&format!("{hash}/fills.reduce/shard-2: missing"));
    assert!(!s.exists("merged"));
    let mut sweep_rows = 0;
    for i in 0..3 {
        let out = reduce(&s, "plan.json", i);
        out.assert_success()
            .assert_stderr_contains(&format!("fills.reduce/shard-{i}: committed"));
        let said = out
            .stderr
            .split("sweep rows")
            .next()
            .and_then(|t| t.split_whitespace().last())
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the reduce says its rows");
        sweep_rows += said;
    }
    merge(&s, "plan.json").assert_success();
    assert_same_files(&s, files(3));
    // Every sweep row came from exactly one reduce shard.
    let lines = s.read("single/sweeps.csv").lines().count() as u64;
    assert_eq!(sweep_rows, lines - 1);
    // A retry of a committed reduce shard does nothing and succeeds.
    reduce(&s, "plan.json", 1)
        .assert_success()
        .assert_stderr_contains("already committed");
}

#[test]
fn a_killed_map_shard_racing_reduce_attempts_and_foreign_partials() {
    let s = Scratch::new();
    generate_pairs(&s, &[30_000, 2_000]);
    s.write("p.toml", JOB);
    single_node(&s);
    let hash = plan(&s, 2, "plan.json", &[]);
    let orders = folder(&s, &hash, "fills.orders");
    let trades = folder(&s, &hash, "fills.trades");
    // Shard 0 holds the largest orders file.
    let extract = folder(&s, &hash, "extract.rows");
    kill_shard_0_mid_run(&s, &[orders.clone(), trades.clone(), extract]);
    let left = listing(&orders);
    assert!(
        left.len() == 1 && left[0].starts_with(".shard-0.tmp-"),
        "only the temporary: {left:?}"
    );
    // A reduce shard refuses to start on an incomplete map, naming what is missing.
    reduce(&s, "plan.json", 0)
        .assert_code(1)
        .assert_stderr_contains("fills.orders/shard-0: missing");
    // Its rerun removes the temporaries of all three partials (order events, trades, extract).
    shard(&s, "plan.json", 0)
        .assert_success()
        .assert_stderr_contains("removed 3 temporary file(s) of an earlier attempt");
    shard(&s, "plan.json", 1).assert_success();

    // Two attempts of one reduce shard at once: one partial, both succeed.
    let args = reduce_args("plan.json", "0");
    let (a, b) = (spawn(&s, &args, &[]), spawn(&s, &args, &[]));
    let (a, b) = (finish(a), finish(b));
    a.assert_success();
    b.assert_success();
    let created = [&a, &b]
        .iter()
        .filter(|o| o.stderr.contains("fills.reduce/shard-0: committed"))
        .count();
    assert!(created <= 1, "both committed:\n{}\n{}", a.stderr, b.stderr);
    let reduced = folder(&s, &hash, "fills.reduce");
    assert_eq!(listing(&reduced), ["shard-0"]);

    // A map partial of another plan copied in as this plan's: the merge names it, and the
    // missing reduce shard, and writes nothing.
    let other = plan(&s, 2, "other.json", &["readers.orders.path=in/o01.csv"]);
    assert_ne!(other, hash);
    shard(&s, "other.json", 1).assert_success();
    let mine = orders.join("shard-1");
    let kept = std::fs::read(&mine).unwrap();
    std::fs::copy(folder(&s, &other, "fills.orders").join("shard-1"), &mine).unwrap();
    merge(&s, "plan.json")
        .assert_code(1)
        .assert_stderr_contains(&format!(
            "fills.orders/shard-1: from another plan (its plan hash is {other}"
        ))
        .assert_stderr_contains("fills.reduce/shard-1: missing");
    assert!(!s.exists("merged"));
    std::fs::write(&mine, kept).unwrap();
    reduce(&s, "plan.json", 1).assert_success();
    merge(&s, "plan.json").assert_success();
    assert_same_files(&s, files(2));
}

/// The sweep job over one generated pair on a real (single-host) Slurm cluster, from the
/// script `sweep plan --emit slurm` prints: four map shards (two with a file each, two with
/// none), four reduce shards once the map has succeeded, one task of each array requeued while
/// it runs, and the merge on `afterok`; the tables are those of one node.
#[test]
fn a_slurm_map_array_and_reduce_array_with_requeues_merge_to_the_bytes_of_one_node() {
    require_slurm();
    let s = Scratch::new();
    generate_pairs(&s, &[60_000]);
    s.write("p.toml", JOB);
    single_node(&s);
    let script = slurm_script(&s);
    assert!(script.contains("--stage reduce"), "{script}");
    let jobs = submit(&s, &script);
    assert_eq!(jobs.0.len(), 3, "array, reduce, merge: {:?}", jobs.0);
    let (map, reduce, merge) = (&jobs.0[0], &jobs.0[1], &jobs.0[2]);
    requeue_first_running(map);
    requeue_first_running(reduce);
    wait_for_jobs(&jobs);
    assert_completed(map, 4, 1);
    assert_completed(reduce, 4, 1);
    let merged = slurm_jobs(merge);
    assert_eq!(merged.len(), 1);
    assert_eq!(merged[0].1, "COMPLETED", "the merge: {merged:?}");
    assert_same_files(&s, files(1));
}

/// `sweep plan --emit k8s` of the sweep job: the manifests decode as Kubernetes' own types, with
/// a second Indexed Job for the reduce whose pods wait for the map's partials; the merge and
/// reduce pods' commands started first, then the map's, give the tables of one node.
#[test]
fn the_k8s_reduce_job_waits_for_the_map_and_the_pods_merge_to_the_bytes_of_one_node() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Container;
    let s = Scratch::new();
    generate_pairs(&s, &[4_000, 5_000]);
    s.write("p.toml", JOB);
    single_node(&s);
    let root = s.dir.path().to_path_buf();
    let abs = |rel: &str| root.join(rel).display().to_string();
    let mut args: Vec<String> = [
        "plan",
        "p.toml",
        "--shards",
        "2",
        "--emit",
        "k8s",
        "--image",
        "registry.example/sweep:1",
        "--claim",
        "sweep-shared",
        "--binary",
        env!("CARGO_BIN_EXE_sweep"),
    ]
    .map(String::from)
    .to_vec();
    for (k, v) in [
        ("--shared", abs("shared")),
        ("--plan-mount", abs("etc-sweep")),
        ("--set", format!("readers.orders.path={}", abs("in/o*.csv"))),
        ("--set", format!("readers.trades.path={}", abs("in/t*.csv"))),
    ] {
        args.extend([k.to_string(), v]);
    }
    args.extend(outputs_in(&abs("merged")));
    let out = s.sweep(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_success();
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "plan, map, reduce, merge");
    let job = |i: usize| -> Job { serde_json::from_value(items[i].clone()).expect("a Job") };
    let (map, reduce, merge) = (job(1), job(2), job(3));
    let spec = reduce.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(2));
    let container = |j: &Job| -> Container {
        j.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .clone()
    };
    let (map_c, reduce_c, merge_c) = (container(&map), container(&reduce), container(&merge));
    let cmd = reduce_c.command.clone().unwrap();
    assert_eq!(
        cmd[cmd.len() - 4..],
        ["--stage", "reduce", "--wait", "86400"]
    );

    let plan_json = items[0]["data"]["plan.json"].as_str().unwrap();
    std::fs::create_dir_all(s.path("etc-sweep")).unwrap();
    std::fs::create_dir_all(s.path("shared")).unwrap();
    s.write("etc-sweep/plan.json", plan_json);
    // As Kubernetes would: every Job's pods at once, the merge's and the reduce's first.
    let merging = run_pod(&merge_c, None);
    let reducing: Vec<_> = (0..2).map(|i| run_pod(&reduce_c, Some(i))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mapping: Vec<_> = (0..2).map(|i| run_pod(&map_c, Some(i))).collect();
    for p in mapping.into_iter().chain(reducing) {
        finish(p).assert_success();
    }
    finish(merging).assert_success();
    assert_same_files(&s, files(2));
}
