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
    generate_days(s, rows, false);
}

/// One generated trading day per entry of `rows` (order rows), the first on 2024-09-02: its
/// order file `in/fNN.csv`, or with `trades` an orders and trades pair `in/oNN.csv`,
/// `in/tNN.csv`.
pub(crate) fn generate_days(s: &Scratch, rows: &[usize], trades: bool) {
    std::fs::create_dir_all(s.path("in")).unwrap();
    for (i, rows) in rows.iter().enumerate() {
        let day =
            chrono::NaiveDate::from_ymd_opt(2024, 9, 2).unwrap() + chrono::Days::new(i as u64);
        let (orders, trade_file) = if trades {
            (format!("in/o{i:02}.csv"), Some(format!("in/t{i:02}.csv")))
        } else {
            (format!("in/f{i:02}.csv"), None)
        };
        let mut args = vec!["generate".to_string(), "--orders".into(), orders];
        if let Some(t) = trade_file {
            args.extend(["--trades".to_string(), t]);
        }
        let (rows, seed, day) = (rows.to_string(), (i + 1).to_string(), day.to_string());
        for a in [
            "--rows",
            &rows,
            "--seed",
            &seed,
            "--days",
            "1",
            "--start-date",
            &day,
        ] {
            args.push(a.to_string());
        }
        s.sweep(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .assert_success();
    }
}

/// The standard job over `in/*.csv`, writing every table format, so the merge is compared on
/// CSV, Parquet and JSON alike.
fn pipeline() -> Pipeline {
    Pipeline::standard("in/*.csv")
        .set("sinks.tables", "formats = [\"csv\", \"parquet\", \"json\"]")
        .sink("extract", "out/extract")
        .set("sinks.extract", "format = \"csv.gz\"")
        .section(
            "sinks.report",
            &["inputs = [\"stats\"]", "path = \"out/report.html\""],
        )
}

/// Every file below `dir` (a partitioned extract is a folder), as paths relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// `--set` arguments that send every output of the test pipelines (tables, the extract, the
/// report page, the run report) into `dir`: the extract is `dir/extract`, a file or a folder
/// as its format and partitions make it.
pub(crate) fn outputs_in(dir: &str) -> Vec<String> {
    [
        format!("sinks.tables.path={dir}"),
        format!("sinks.extract.path={dir}/extract"),
        format!("sinks.report.path={dir}/report.html"),
        format!("monitor.report={dir}/execution_metrics.json"),
    ]
    .into_iter()
    .flat_map(|x| ["--set".to_string(), x])
    .collect()
}

/// `sweep ARGS` followed by [`outputs_in`]`(dir)`.
fn sweep_into(s: &Scratch, args: &[&str], dir: &str) -> Out {
    let sets = outputs_in(dir);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(sets.iter().map(String::as_str));
    s.sweep(&all)
}

/// `sweep ARGS` in the scratch folder, with `env` set and neither index variable inherited.
pub(crate) fn command(s: &Scratch, args: &[&str], env: &[(&str, String)]) -> Command {
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

pub(crate) fn finish(c: std::process::Child) -> Out {
    Out::of(c.wait_with_output().expect("wait"))
}

pub(crate) fn spawn(s: &Scratch, args: &[&str], env: &[(&str, String)]) -> std::process::Child {
    command(s, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sweep")
}

/// Writes the plan of `p.toml` (with `set`) over `shards` shards to `file`; returns its hash.
pub(crate) fn plan(s: &Scratch, shards: usize, file: &str, set: &[&str]) -> String {
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
pub(crate) fn shard(s: &Scratch, plan: &str, i: usize) -> Out {
    let i = i.to_string();
    s.sweep(&["run", "p.toml", "--plan", plan, "--shard-index", &i])
}

/// `sweep run` on one node, its tables and report in `single/`.
pub(crate) fn single_node(s: &Scratch) {
    sweep_into(s, &["run", "p.toml"], "single").assert_success();
}

pub(crate) fn merge(s: &Scratch, plan: &str) -> Out {
    sweep_into(s, &["merge", "p.toml", "--plan", plan], "merged")
}

/// Every table file and the extract of the one-node run equal the merge's, byte for byte, both
/// drew a report page, and the ledgers agree; returns the files compared.
fn assert_same_outputs(s: &Scratch) -> Vec<String> {
    assert_same_files(s, 8 * 2 + 1 + 1)
}

/// [`assert_same_outputs`] for a job that writes `files` files besides the run report and the
/// page (`single/` beside `merged/`). The page and the run report show timings, so they are
/// only checked to be there.
pub(crate) fn assert_same_files(s: &Scratch, files: usize) -> Vec<String> {
    let mut names: Vec<String> = files_below(&s.path("single"))
        .into_iter()
        .filter(|n| n != "execution_metrics.json" && n != "report.html")
        .collect();
    names.sort();
    assert_eq!(names.len(), files, "{names:?}");
    let mut merged = files_below(&s.path("merged"));
    merged.sort();
    assert_eq!(merged.len(), names.len() + 2, "{merged:?}");
    for dir in ["single", "merged"] {
        let page = s.read(&format!("{dir}/report.html"));
        assert!(page.contains("<svg"), "{dir}/report.html has no chart");
    }
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

pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Shards `0..n` of `plan.json` started at once, each told its index the way a scheduler does
/// (Kubernetes' variable for even ones, Slurm's for odd ones).
pub(crate) fn spawn_shards(s: &Scratch, n: usize) -> Vec<std::process::Child> {
    (0..n)
        .map(|i| {
            let var = if i % 2 == 0 {
                "JOB_COMPLETION_INDEX"
            } else {
                "SLURM_ARRAY_TASK_ID"
            };
            spawn(
                s,
                &["run", "p.toml", "--plan", "plan.json"],
                &[(var, i.to_string())],
            )
        })
        .collect()
}

/// `sweep plan p.toml --shards 4 --emit slurm`, one shard at a time, the merge writing to
/// `merged/`: the submission script.
pub(crate) fn slurm_script(s: &Scratch) -> String {
    let args = [
        "plan",
        "p.toml",
        "--shards",
        "4",
        "--shared",
        "shared",
        "--emit",
        "slurm",
        "--throttle",
        "1",
        "--binary",
        env!("CARGO_BIN_EXE_sweep"),
    ];
    let out = sweep_into(s, &args, "merged");
    out.assert_success();
    assert!(out.stdout.contains("--array=0-3%1"), "{}", out.stdout);
    out.stdout
}

/// Starts shard 0 of `plan.json` and kills it (SIGKILL) once its temporaries are in every one
/// of `dirs`. Tiny
/// blocks, one worker and one batch per edge make the attempt slow (the runtime settings are
/// not part of the plan); its temporaries are opened before it reads a row, so it dies mid-run.
pub(crate) fn kill_shard_0_mid_run(s: &Scratch, dirs: &[PathBuf]) {
    let mut child = spawn(
        s,
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
    let opened = |dir: &PathBuf| listing(dir).iter().any(|n| n.starts_with(".shard-0.tmp-"));
    while !dirs.iter().all(opened) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().unwrap();
}

/// Runs a Kubernetes container's command here, as its pod would (in its working folder, with
/// `JOB_COMPLETION_INDEX` set for an indexed Job's pod).
pub(crate) fn run_pod(
    c: &k8s_openapi::api::core::v1::Container,
    index: Option<usize>,
) -> std::process::Child {
    let cmd = c.command.clone().unwrap();
    let mut p = Command::new(&cmd[0]);
    p.args(&cmd[1..])
        .current_dir(c.working_dir.clone().unwrap())
        .env("SWEEP_LOG", "warn")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(i) = index {
        p.env("JOB_COMPLETION_INDEX", i.to_string());
    }
    p.spawn().expect("spawn a pod's command")
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
    for (i, c) in spawn_shards(&s, 4).into_iter().enumerate() {
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
    // The largest file goes to shard 0 alone.
    kill_shard_0_mid_run(
        &s,
        &[dir.clone(), s.path(&format!("shared/{hash}/extract.rows"))],
    );
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
    // Its rerun removes both partials' temporaries (the aggregate's and the extract's).
    shard(&s, "plan.json", 0)
        .assert_success()
        .assert_stderr_contains("removed 2 temporary file(s) of an earlier attempt");
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
    // Each partial is whole on its own, so the attempts may each commit some of them; none is
    // committed twice.
    for folder in ["stats", "extract.rows"] {
        let dir = s.path(&format!("shared/{hash}/{folder}"));
        assert_eq!(listing(&dir), ["shard-0"], "{folder}");
        let created = [&a, &b]
            .iter()
            .filter(|o| o.stderr.contains(&format!("{folder}/shard-0: committed")))
            .count();
        assert!(
            created <= 1,
            "both said they committed {folder}:\n{}\n{}",
            a.stderr,
            b.stderr
        );
    }
    merge(&s, "plan.json").assert_success();
    single_node(&s);
    assert_same_outputs(&s);
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
fn shards_need_an_index_a_matching_pipeline_and_no_rejects_file() {
    let s = Scratch::new();
    generate(&s, 2);
    // Planned without the extract.
    s.write("p.toml", Pipeline::standard("in/*.csv").toml());
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
    // A rows sink added after planning: the plan has no folder for its rows, so a shard and
    // the merge refuse it alike.
    s.write(
        "p.toml",
        Pipeline::standard("in/*.csv")
            .sink("extract", "out/orders.csv.gz")
            .toml(),
    );
    for args in [
        &["run", "p.toml", "--plan", "plan.json", "--shard-index", "0"][..],
        &["merge", "p.toml", "--plan", "plan.json"],
    ] {
        s.sweep(args)
            .case(args[0])
            .assert_code(2)
            .assert_stderr_contains(
                "the pipeline does not match the plan: its rows sinks are extract, the plan's \
                 none (make a new plan)",
            );
    }
    // So is a reader made to reject bad rows after planning (its digest changes).
    s.write(
        "p.toml",
        Pipeline::standard("in/*.csv")
            .rejects("out/rejects.csv")
            .toml(),
    );
    s.sweep(&["run", "p.toml", "--plan", "plan.json", "--shard-index", "0"])
        .assert_code(2)
        .assert_stderr_contains("the pipeline does not match the plan");
}

/// Shards sharing a node share the pipeline's metrics address: a shard that finds it taken runs
/// without its endpoint, where `sweep run` fails.
#[test]
fn a_shard_whose_metrics_address_is_taken_runs_without_it() {
    let s = Scratch::new();
    generate(&s, 2);
    s.write("p.toml", pipeline().toml());
    plan(&s, 1, "plan.json", &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let metrics = format!("monitor.prometheus={addr}");
    s.sweep(&[
        "run",
        "p.toml",
        "--plan",
        "plan.json",
        "--shard-index",
        "0",
        "--set",
        &metrics,
    ])
    .assert_success()
    .assert_stderr_contains("this shard runs without its metrics endpoint")
    .assert_stderr_contains("stats/shard-0: committed");
    s.sweep(&["run", "p.toml", "--set", &metrics])
        .assert_code(2)
        .assert_stderr_contains(&format!("cannot serve metrics on {addr}"));
}

/// A reader that rejects bad rows, sharded: the tables equal one node's, and the merge writes
/// the rejects file with every row one node rejected, ordered by file (as one node reads them)
/// then line, which one node's parse workers do not promise.
#[test]
fn rejected_rows_are_handed_over_and_written_by_file_and_line() {
    let s = Scratch::new();
    generate(&s, 4);
    // Every 97th row of two files gets a price that is not a number.
    for f in ["in/f01.csv", "in/f03.csv"] {
        let text = s.read(f);
        let bad: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i > 0 && i % 97 == 0 {
                    let mut cells: Vec<&str> = l.split(',').collect();
                    cells[4] = "x";
                    cells.join(",")
                } else {
                    l.to_string()
                }
            })
            .collect();
        s.write(f, bad.join("\n") + "\n");
    }
    let job = Pipeline::standard("in/*.csv").rejects("out/rejects.csv");
    s.write("p.toml", job.toml());
    // The tables, the run report and the rejects file into `dir`.
    let into = |verb: &[&str], dir: &str| {
        let mut args: Vec<String> = verb.iter().map(|a| a.to_string()).collect();
        for set in [
            format!("sinks.tables.path={dir}"),
            format!("monitor.report={dir}/execution_metrics.json"),
            format!("readers.orders.rejects={dir}/rejects.csv"),
        ] {
            args.extend(["--set".to_string(), set]);
        }
        s.sweep(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    into(&["run", "p.toml"], "single").assert_success();
    let hash = plan(&s, 2, "plan.json", &[]);
    for i in 0..2 {
        shard(&s, "plan.json", i).assert_success();
    }
    assert_eq!(
        listing(&s.path(&format!("shared/{hash}/orders.rejects"))),
        ["shard-0", "shard-1"]
    );
    into(&["merge", "p.toml", "--plan", "plan.json"], "merged")
        .assert_success()
        .assert_stderr_contains("orders -> merged/rejects.csv: 26 rejected row(s)");
    for t in ["by_security.csv", "summary.csv", "daily.csv"] {
        assert_eq!(
            s.read(&format!("single/{t}")),
            s.read(&format!("merged/{t}")),
            "{t}"
        );
    }
    let (one, merged) = (s.read("single/rejects.csv"), s.read("merged/rejects.csv"));
    let sorted = |t: &str| {
        let mut v: Vec<String> = t.lines().skip(1).map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&one), sorted(&merged));
    assert_eq!(merged.lines().next(), Some("file,line,column,reason,row"));
    // By file, then line.
    let keys: Vec<(String, u64)> = merged
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.splitn(3, ',');
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut in_order = keys.clone();
    in_order.sort();
    assert_eq!(keys, in_order);
    assert_eq!(keys.len(), 26);
    assert_eq!(keys[0], ("in/f01.csv".to_string(), 98));
}

/// `scontrol show job ID` as (array task id or none, JobState, Restarts), one per job or task.
pub(crate) fn slurm_jobs(id: &str) -> Vec<(Option<u32>, String, u32)> {
    let out = Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .expect("scontrol");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |job: &str, key: &str| -> Option<String> {
        job.split_whitespace()
            .find_map(|w| w.strip_prefix(key).map(str::to_string))
    };
    text.split("\n\n")
        .filter(|j| j.contains("JobId="))
        .map(|j| {
            (
                field(j, "ArrayTaskId=").and_then(|v| v.parse().ok()),
                field(j, "JobState=").unwrap_or_default(),
                field(j, "Restarts=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// Cancels the jobs it holds when dropped, so a failing test leaves nothing queued.
pub(crate) struct SlurmJobs(pub(crate) Vec<String>);

impl Drop for SlurmJobs {
    fn drop(&mut self) {
        let _ = Command::new("scancel").args(&self.0).status();
    }
}

/// Fails unless a Slurm node is ready (the cluster `.ci/test` starts with `.ci/slurm up`).
pub(crate) fn require_slurm() {
    let idle = Command::new("sinfo").args(["-h", "-o", "%t"]).output();
    let state = idle
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        ["idle", "mix", "alloc"].contains(&state.as_str()),
        "no Slurm node ready (sinfo: {state:?}, {idle:?}): start one with `bash .ci/slurm up` \
         as root (.ci/test does)"
    );
}

/// Runs the submission script `script` (from `sweep plan --emit slurm`) in the scratch folder;
/// the job ids it prints, held for cancelling.
pub(crate) fn submit(s: &Scratch, script: &str) -> SlurmJobs {
    s.write("submit.sh", script);
    let submitted = Command::new("bash")
        .arg("submit.sh")
        .current_dir(s.dir.path())
        .output()
        .expect("bash submit.sh");
    let ids = String::from_utf8_lossy(&submitted.stdout).into_owned();
    assert!(
        submitted.status.success(),
        "{ids}{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    SlurmJobs(ids.split_whitespace().map(str::to_string).collect())
}

/// `scontrol requeue` of the first task of job array `array` seen running; returns its id.
pub(crate) fn requeue_first_running(array: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", array, "-t", "R", "-o", "%i"])
            .output()
            .expect("squeue");
        let q = String::from_utf8_lossy(&q.stdout).into_owned();
        if let Some(task) = q.lines().next() {
            break task.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no task of {array} ever ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    let requeued = Command::new("scontrol")
        .args(["requeue", &running])
        .status()
        .expect("scontrol requeue");
    assert!(requeued.success(), "scontrol requeue {running}");
    running
}

/// Waits until none of `jobs` is queued or running.
pub(crate) fn wait_for_jobs(jobs: &SlurmJobs) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &jobs.0.join(",")])
            .output()
            .expect("squeue");
        if q.stdout.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the jobs did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every task of job array `array` completed, and `restarts` of them were rerun in all.
pub(crate) fn assert_completed(array: &str, tasks: u32, restarts: u32) {
    let jobs = slurm_jobs(array);
    let mut states: Vec<(u32, String)> = jobs
        .iter()
        .map(|(t, state, _)| (t.unwrap_or(u32::MAX), state.clone()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        (0..tasks)
            .map(|t| (t, "COMPLETED".to_string()))
            .collect::<Vec<_>>(),
        "job {array}"
    );
    let rerun: u32 = jobs.iter().map(|(_, _, r)| r).sum();
    assert_eq!(rerun, restarts, "reruns of job {array}: {jobs:?}");
}

/// A sharded run on a real (single-host) Slurm cluster, submitted by the script `sweep plan
/// --emit slurm` prints: four shards as a job array run one at a time, one of them requeued
/// while it runs (`scontrol requeue`), the merge on `afterok`, and tables identical to one node.
/// Needs the cluster `.ci/test` starts (`.ci/slurm up`).
#[test]
fn a_slurm_job_array_with_a_requeued_shard_merges_to_the_bytes_of_one_node() {
    require_slurm();
    let s = Scratch::new();
    // Big enough that a shard runs for a moment, so it can be caught running.
    generate_rows(
        &s,
        &[
            20_000, 24_000, 28_000, 32_000, 36_000, 40_000, 44_000, 48_000,
        ],
    );
    s.write("p.toml", pipeline().toml());
    single_node(&s);
    let script = slurm_script(&s);
    let jobs = submit(&s, &script);
    assert_eq!(jobs.0.len(), 2, "{:?}", jobs.0);
    let (array, merge) = (&jobs.0[0], &jobs.0[1]);
    let running = requeue_first_running(array);
    wait_for_jobs(&jobs);
    // One task rerun after `scontrol requeue`.
    assert_completed(array, 4, 1);
    let merged = slurm_jobs(merge);
    assert_eq!(merged.len(), 1);
    assert_eq!(
        merged[0].1, "COMPLETED",
        "the merge (after requeueing {running}): {merged:?}"
    );
    assert_same_outputs(&s);
}

/// `sweep plan --emit k8s`: the manifests decode as Kubernetes' own types (the plan's ConfigMap,
/// an Indexed Job of the shards with per-index retries and the throttle as its parallelism, and
/// the merge Job), and what their pods run does the work: one process per index with
/// `JOB_COMPLETION_INDEX` set, and the merge started first, waiting for their partials, give the
/// tables of one node.
#[test]
fn the_k8s_manifests_decode_and_their_pods_commands_merge_to_the_bytes_of_one_node() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::ConfigMap;
    let s = Scratch::new();
    generate(&s, 6);
    s.write("p.toml", pipeline().toml());
    single_node(&s);
    let root = s.dir.path().to_path_buf();
    let abs = |rel: &str| root.join(rel).display().to_string();
    let mut sets = vec![
        "--set".to_string(),
        format!("readers.orders.path={}", abs("in/*.csv")),
    ];
    sets.extend(outputs_in(&abs("merged")));
    let mut args = vec![
        "plan".to_string(),
        "p.toml".into(),
        "--shards".into(),
        "3".into(),
        "--shared".into(),
        abs("shared"),
        "--emit".into(),
        "k8s".into(),
        "--throttle".into(),
        "2".into(),
        "--image".into(),
        "registry.example/sweep:1".into(),
        "--claim".into(),
        "sweep-shared".into(),
        "--plan-mount".into(),
        abs("etc-sweep"),
        "--binary".into(),
        env!("CARGO_BIN_EXE_sweep").into(),
    ];
    args.extend(sets);
    let out = s.sweep(&args.iter().map(String::as_str).collect::<Vec<_>>());
    out.assert_success();
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        (&list["apiVersion"], &list["kind"]),
        (&"v1".into(), &"List".into())
    );
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    let config: ConfigMap = serde_json::from_value(items[0].clone()).expect("a ConfigMap");
    let shards: Job = serde_json::from_value(items[1].clone()).expect("a Job");
    let merge: Job = serde_json::from_value(items[2].clone()).expect("a Job");

    let plan_json = &config.data.as_ref().expect("data")["plan.json"];
    let plan: serde_json::Value = serde_json::from_str(plan_json).unwrap();
    assert_eq!(plan["shards"].as_array().map(Vec::len), Some(3));
    let spec = shards.spec.as_ref().expect("spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(2)));
    assert_eq!(
        (spec.backoff_limit_per_index, spec.max_failed_indexes),
        (Some(3), Some(0))
    );
    let pod = |job: &Job| job.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let shard_pod = pod(&shards);
    assert_eq!(shard_pod.restart_policy.as_deref(), Some("Never"));
    let volumes = shard_pod.volumes.clone().unwrap();
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("sweep-shared")
    );
    assert_eq!(
        volumes[1].config_map.as_ref().map(|c| c.name.as_str()),
        config.metadata.name.as_deref()
    );
    let container = |p: &k8s_openapi::api::core::v1::PodSpec| p.containers[0].clone();
    let (shard_c, merge_c) = (container(&shard_pod), container(&pod(&merge)));
    assert_eq!(shard_c.image.as_deref(), Some("registry.example/sweep:1"));
    assert_eq!(shard_c.working_dir.as_deref(), Some(abs("shared").as_str()));
    let mounts: Vec<String> = shard_c
        .volume_mounts
        .clone()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.clone())
        .collect();
    assert_eq!(mounts, [abs("shared"), abs("etc-sweep")]);
    let merge_cmd = merge_c.command.clone().unwrap();
    assert_eq!(merge_cmd[1], "merge");
    assert_eq!(merge_cmd[merge_cmd.len() - 2..], ["--wait", "86400"]);

    // What the pods run, here: the ConfigMap's plan where the pod mounts it, the shared folder
    // (the claim) at its path, and the merge started before the shards, as Kubernetes would.
    std::fs::create_dir_all(s.path("etc-sweep")).unwrap();
    std::fs::create_dir_all(s.path("shared")).unwrap();
    s.write("etc-sweep/plan.json", plan_json);
    let merging = run_pod(&merge_c, None);
    std::thread::sleep(Duration::from_millis(300));
    let pods: Vec<_> = (0..3).map(|i| run_pod(&shard_c, Some(i))).collect();
    for p in pods {
        finish(p).assert_success();
    }
    finish(merging).assert_success();
    assert_same_outputs(&s);
}

/// `--emit k8s` needs the image and the claim, and says which is missing.
#[test]
fn the_k8s_manifests_need_an_image_and_a_claim() {
    let s = Scratch::new();
    generate(&s, 1);
    s.write("p.toml", pipeline().toml());
    let base = [
        "plan", "p.toml", "--shards", "2", "--shared", "shared", "--emit", "k8s",
    ];
    s.sweep(&[&base[..], &["--claim", "c"]].concat())
        .assert_code(2)
        .assert_stderr_contains("--emit k8s needs --image");
    s.sweep(&[&base[..], &["--image", "i"]].concat())
        .assert_code(2)
        .assert_stderr_contains("--emit k8s needs --claim");
}
