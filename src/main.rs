//! The `sweep` command line: a thin layer over the library. Exit codes: 0 success, 1 a job
//! failed, 2 a usage or configuration error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sweep::config::{self, Pipeline};
use sweep::runtime;

#[derive(Parser)]
#[command(
    name = "sweep",
    version,
    about = "Dataflow pipelines for ASX Centre Point order analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The pipeline a subcommand works on, and the overrides applied to it: declared once, so every
/// subcommand that takes a pipeline documents them alike.
#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline file (TOML), e.g. `pipelines/centrepoint.toml`.
    pipeline: PathBuf,
    /// Override a pipeline value by its key path, e.g. `--set readers.orders.path=data/*.csv.gz`
    /// or `--set runtime.workers=1`; repeatable. Values are read as TOML when they parse.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline once over its inputs (batch mode).
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Serve Prometheus metrics on this address (same as `--set monitor.prometheus=ADDR`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Run one shard of this plan (from `sweep plan --shards N --json`): read only its files
        /// and commit its partials to the plan's shared folder instead of writing outputs.
        #[arg(long, value_name = "PLAN.json")]
        plan: Option<PathBuf>,
        /// The shard to run; default `$SLURM_ARRAY_TASK_ID`, else `$JOB_COMPLETION_INDEX`.
        #[arg(long, value_name = "I", requires = "plan")]
        shard_index: Option<usize>,
        /// The plan's stage this shard runs: `map` reads its files; `reduce` reduces its
        /// order-id partitions of each sweep analysis once every map shard has committed.
        #[arg(long, value_enum, default_value = "map", requires = "plan")]
        stage: ShardStage,
        /// With `--stage reduce`: first wait up to SECS for every map shard to commit, looking
        /// every 2 s (a Kubernetes reduce Job starts with the map's).
        #[arg(long, value_name = "SECS", requires = "plan")]
        wait: Option<u64>,
    },
    /// Merge the shards of a plan: check the shared folder holds exactly every shard's partial,
    /// merge them and write the pipeline's tables and run report, as `sweep run` would.
    Merge {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The plan the shards ran (from `sweep plan --shards N --json`).
        #[arg(long, value_name = "PLAN.json")]
        plan: PathBuf,
        /// First wait up to SECS for every shard to commit, looking every 2 s: for engines with
        /// no dependency between jobs (a Kubernetes merge Job starts with the shards).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Follow the readers' paths and fold each new complete file into committed state, keeping
    /// the outputs fresh, until SIGTERM or SIGINT. SIGHUP reloads the pipeline file.
    Daemon {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Generate realistic synthetic order events (and the trades that match them).
    Generate(sweep::generate::GenerateArgs),
    /// Convert order or trade files into Parquet laid out for querying: sorted by security and
    /// time, row groups of a fixed size, statistics and page index, optionally one folder per date.
    Convert(sweep::convert::ConvertArgs),
    /// Show what a run would do: hardware, derived settings, jobs and an ETA. Reads no data.
    Plan {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Plan a sharded run: the input files balanced by bytes over N shards, and the plan
        /// hash that names the run (with `--shared`).
        #[arg(long, value_name = "N", requires = "shared", value_parser = clap::value_parser!(u32).range(1..))]
        shards: Option<u32>,
        /// The folder every shard and the merge can reach (NFS, Lustre, a mounted bucket); the
        /// partials go under `DIR/<plan-hash>/`.
        #[arg(long, value_name = "DIR", requires = "shards")]
        shared: Option<String>,
        /// Print the sharded run as a cluster job instead: `slurm` is a bash script that writes
        /// the plan to `DIR/<plan-hash>.plan.json` and submits the shards as a job array, then
        /// the merge with `--dependency=afterok` (logs in `DIR/<plan-hash>.logs/`).
        #[arg(long, value_enum, requires = "shards", conflicts_with = "json")]
        emit: Option<Engine>,
        /// The `sweep` binary on the cluster's nodes (default: this one).
        #[arg(long, value_name = "PATH", requires = "emit")]
        binary: Option<PathBuf>,
        /// Shards running at once (the array's `%K`, the Job's `parallelism`; default: all).
        #[arg(long, value_name = "K", requires = "emit", value_parser = clap::value_parser!(u32).range(1..))]
        throttle: Option<u32>,
        /// k8s: the container image holding `sweep` (required with `--emit k8s`).
        #[arg(long, value_name = "IMAGE", requires = "emit")]
        image: Option<String>,
        /// k8s: the PersistentVolumeClaim that holds the shared folder; every pod mounts it at
        /// the shared folder's path (required with `--emit k8s`).
        #[arg(long, value_name = "NAME", requires = "emit")]
        claim: Option<String>,
        /// k8s: where the pods mount the plan's ConfigMap (default `/etc/sweep`).
        #[arg(long, value_name = "DIR", requires = "emit")]
        plan_mount: Option<PathBuf>,
    },
    /// Measurements that support the benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check a pipeline file and report every problem in it, without reading any data.
    Validate {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Watch a running `sweep run --metrics ADDR` or `sweep daemon` live in the terminal:
    /// rows/s per stage, batch latency, edge fill, progress and the daemon's queue, refreshed
    /// every second. q, Esc or Ctrl-C quits.
    Top {
        /// Its metrics endpoint: HOST:PORT, a port (on loopback), or an http:// URL.
        #[arg(default_value = sweep::top::DEFAULT_ADDR)]
        addr: String,
    },
    /// Render a finished output folder (the standard job's and the sweep analysis's tables, as
    /// CSV or Parquet, and its execution_metrics.json) as one self-contained HTML page: how a
    /// daemon's outputs, or any run's, are reported.
    Report {
        /// The output folder, e.g. `out/sweeps`.
        dir: PathBuf,
        /// Where to write the page. Default `DIR/report.html`.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The run report to show. Default `DIR/execution_metrics.json`, when there is one.
        #[arg(short, long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
}

/// `sweep run --plan --stage`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ShardStage {
    Map,
    Reduce,
}

/// The cluster engines `sweep plan --emit` writes jobs for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Engine {
    /// A bash script of `sbatch` calls: the shards' job array, then the merge on `afterok`.
    Slurm,
    /// A Kubernetes `List` (JSON): the plan's ConfigMap, the shards' Indexed Job, the merge Job.
    K8s,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Decode-only time of a file through the reader's decompressor (the floor for a .gz job):
    /// prints `file= compressed_bytes= bytes= seconds= mb_per_s=`.
    Decode { file: PathBuf },
}

fn bench_decode(file: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let compressed = std::fs::metadata(file)
        .with_context(|| file.display().to_string())?
        .len();
    let t0 = std::time::Instant::now();
    let bytes = rt.block_on(sweep::readers::source::decode_only(file))?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "file={} compressed_bytes={compressed} bytes={bytes} seconds={secs:.3} mb_per_s={:.0}",
        file.display(),
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit code for a usage or configuration error.
const USAGE: u8 = 2;

fn load(path: &Path, set: &[String]) -> Result<Pipeline, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("sweep: {}: {e}", path.display());
        ExitCode::from(USAGE)
    })?;
    config::load(&path.display().to_string(), &text, set).map_err(|errs| {
        eprint!("{errs}");
        ExitCode::from(USAGE)
    })
}

fn run(path: &Path, set: &[String]) -> anyhow::Result<ExitCode> {
    match load(path, set) {
        Ok(p) => run_loaded(&p),
        Err(code) => Ok(code),
    }
}

fn convert(args: &sweep::convert::ConvertArgs) -> anyhow::Result<ExitCode> {
    let text = match sweep::convert::pipeline(args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sweep: convert: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    match config::load("sweep convert", &text, &args.set) {
        Ok(p) => run_loaded(&p),
        Err(errs) => {
            eprint!("{errs}");
            Ok(ExitCode::from(USAGE))
        }
    }
}

fn run_loaded(pipeline: &Pipeline) -> anyhow::Result<ExitCode> {
    let outcome = match runtime::run_interruptible(pipeline) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sweep: cannot start `{}`: {e}", pipeline.name);
            return Ok(ExitCode::from(USAGE));
        }
    };
    let (r, t) = (&outcome.report, &outcome.report.totals);
    eprintln!(
        "sweep: {} {}: {} job(s), {} rows read = {} kept + {} filtered out + {} rejected, in {:.3} s",
        pipeline.name,
        r.status.as_str(),
        t.jobs,
        t.rows_read,
        t.rows_kept,
        t.rows_filtered_out,
        t.rows_rejected,
        r.duration_sec,
    );
    for s in &outcome.sinks {
        match &s.result {
            Ok(d) => eprintln!("  {} -> {}: {d}", s.sink, s.path.display()),
            Err(d) => eprintln!("  {} -> {}: {d}", s.sink, s.path.display()),
        }
    }
    for e in &outcome.errors {
        eprintln!("error: {e}");
    }
    if outcome.interrupted && !outcome.ok {
        eprintln!("sweep: interrupted: the outputs not written above were left out whole");
        return Ok(ExitCode::from(130));
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints a sharded command's error and gives its exit code.
fn shard_failed(e: &sweep::shard::ShardError) -> ExitCode {
    let text = e.to_string();
    eprint!("sweep: {text}");
    if !text.ends_with('\n') {
        eprintln!();
    }
    ExitCode::from(e.exit_code())
}

/// `sweep plan --shards N`: the shard plan, as JSON or text.
fn plan_shards(path: &Path, set: &[String], shards: u32, shared: &str, json: bool) -> ExitCode {
    let p = match load(path, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match sweep::shard::make_plan(&p, shards as usize, shared) {
        Ok(plan) if json => {
            println!("{}", plan.to_json());
            ExitCode::SUCCESS
        }
        Ok(plan) => {
            print!("{plan}");
            ExitCode::SUCCESS
        }
        Err(e) => shard_failed(&e),
    }
}

/// The options of `sweep plan --emit` besides the plan's.
struct Emit {
    binary: Option<PathBuf>,
    throttle: Option<u32>,
    image: Option<String>,
    claim: Option<String>,
    plan_mount: Option<PathBuf>,
}

/// `sweep plan --shards N --emit ENGINE`: the cluster job. Paths the nodes use are made absolute
/// against this folder.
fn emit(
    engine: Engine,
    path: &Path,
    set: &[String],
    shards: u32,
    shared: &str,
    o: Emit,
) -> ExitCode {
    use sweep::shard::ShardError;
    let p = match load(path, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let shared = absolute(Path::new(shared)).display().to_string();
    let result = sweep::shard::make_plan(&p, shards as usize, &shared).and_then(|plan| {
        let mut launch = sweep::shard::Launch {
            binary: match &o.binary {
                Some(b) => absolute(b),
                None => std::env::current_exe()
                    .map_err(|e| ShardError::Emit(format!("this binary: {e}")))?,
            },
            pipeline: absolute(path),
            set: set.to_vec(),
            workdir: std::env::current_dir()
                .map_err(|e| ShardError::Emit(format!("this folder: {e}")))?,
            throttle: o.throttle.map_or(shards as usize, |t| t as usize),
        };
        match engine {
            Engine::Slurm => sweep::shard::slurm(&plan, &launch),
            Engine::K8s => {
                let need = |v: &Option<String>, flag: &str| {
                    v.clone()
                        .ok_or_else(|| ShardError::Emit(format!("--emit k8s needs {flag}")))
                };
                // In a pod, `sweep` is the image's, found on its PATH, and jobs start in the
                // shared folder (mounted at the same path everywhere), not in this folder.
                launch.binary = o.binary.clone().unwrap_or_else(|| PathBuf::from("sweep"));
                launch.workdir = PathBuf::from(&shared);
                let pods = sweep::shard::Pods {
                    image: need(&o.image, "--image")?,
                    claim: need(&o.claim, "--claim")?,
                    plan_mount: o
                        .plan_mount
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("/etc/sweep")),
                    retries: 3,
                    merge_wait_secs: 24 * 3600,
                };
                sweep::shard::k8s(&plan, &launch, &pods)
            }
        }
    });
    match result {
        Ok(script) => {
            print!("{script}");
            ExitCode::SUCCESS
        }
        Err(e) => shard_failed(&e),
    }
}

/// `sweep run --plan`: one shard, of the map or the reduce.
fn run_shard(
    path: &Path,
    set: &[String],
    plan: &Path,
    index: Option<usize>,
    stage: ShardStage,
    wait: Option<u64>,
) -> ExitCode {
    let p = match load(path, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let result = sweep::shard::load_plan(plan).and_then(|plan| {
        let index = match index {
            Some(i) => i,
            None => sweep::shard::shard_index_from_env()?,
        };
        match stage {
            ShardStage::Map => sweep::shard::run_shard(&p, &plan, index),
            ShardStage::Reduce => {
                if let Some(secs) = wait {
                    sweep::shard::wait_for_shards(
                        &plan,
                        sweep::shard::Stage::Map,
                        std::time::Duration::from_secs(secs),
                        std::time::Duration::from_secs(2),
                    )?;
                }
                sweep::shard::run_reduce(&p, &plan, index)
            }
        }
        .map(|o| (plan, o))
    });
    match result {
        Err(e) => shard_failed(&e),
        Ok((plan, o)) => {
            if o.already_committed {
                eprintln!(
                    "sweep: shard {} of plan {} is already committed; nothing to do",
                    o.index, plan.plan_hash
                );
            } else if o.stage == sweep::shard::Stage::Reduce {
                eprintln!(
                    "sweep: reduce shard {} of plan {}: {} sweep rows",
                    o.index, plan.plan_hash, o.rows_read
                );
            } else {
                eprintln!(
                    "sweep: shard {} of plan {}: {} rows read",
                    o.index, plan.plan_hash, o.rows_read
                );
                if o.temps_removed > 0 {
                    eprintln!(
                        "  removed {} temporary file(s) of an earlier attempt",
                        o.temps_removed
                    );
                }
            }
            for (path, how) in &o.partials {
                let how = match how {
                    sweep::shard::Committed::Created => "committed",
                    sweep::shard::Committed::AlreadyThere if o.already_committed => {
                        "already committed"
                    }
                    sweep::shard::Committed::AlreadyThere => {
                        "already committed by another attempt; kept"
                    }
                };
                eprintln!("  {}: {how}", path.display());
            }
            ExitCode::SUCCESS
        }
    }
}

/// `sweep merge`: every shard's partials into the pipeline's outputs.
fn merge(path: &Path, set: &[String], plan: &Path, wait: Option<u64>) -> ExitCode {
    let p = match load(path, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let merged = sweep::shard::load_plan(plan).and_then(|plan| {
        if let Some(secs) = wait {
            sweep::shard::wait_for_shards(
                &plan,
                sweep::shard::Stage::Reduce,
                std::time::Duration::from_secs(secs),
                std::time::Duration::from_secs(2),
            )?;
        }
        sweep::shard::merge(&p, &plan)
    });
    match merged {
        Err(e) => shard_failed(&e),
        Ok(o) => {
            let t = &o.report.totals;
            eprintln!(
                "sweep: {} merged: {} job(s), {} rows read = {} kept + {} filtered out + {} rejected",
                p.name, t.jobs, t.rows_read, t.rows_kept, t.rows_filtered_out, t.rows_rejected
            );
            for (sink, dir, what) in &o.written {
                eprintln!("  {sink} -> {}: {what}", dir.display());
            }
            for l in &o.leftovers {
                eprintln!(
                    "  note: {} is a temporary of an attempt that did not commit; not merged, safe to delete",
                    l.display()
                );
            }
            ExitCode::SUCCESS
        }
    }
}

fn report(dir: &Path, output: Option<PathBuf>, metrics: Option<&Path>) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("sweep: report: {}: not a folder", dir.display());
        return ExitCode::from(USAGE);
    }
    let output = output.unwrap_or_else(|| dir.join("report.html"));
    let page = sweep::report::Report::from_dir(dir, metrics).and_then(|r| r.render());
    match page.and_then(|html| sweep::report::write(&output, &html).map(|()| html.len())) {
        Ok(n) => {
            eprintln!(
                "sweep: report: {} ({} kB)",
                output.display(),
                n.div_ceil(1000)
            );
            ExitCode::SUCCESS
        }
        Err(e @ sweep::report::ReportError::NothingToReport(_)) => {
            eprintln!("sweep: report: {e}");
            ExitCode::from(USAGE)
        }
        Err(e) => {
            eprintln!("sweep: report: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SWEEP_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Run {
            pipeline: PipelineArgs { pipeline, mut set },
            metrics,
            plan,
            shard_index,
            stage,
            wait,
        } => {
            set.extend(metrics.map(|m| format!("monitor.prometheus={m}")));
            match plan {
                Some(plan) => Ok(run_shard(&pipeline, &set, &plan, shard_index, stage, wait)),
                None => run(&pipeline, &set).context("run failed"),
            }
        }
        Command::Merge {
            pipeline: PipelineArgs { pipeline, set },
            plan,
            wait,
        } => Ok(merge(&pipeline, &set, &plan, wait)),
        Command::Daemon {
            pipeline: PipelineArgs { pipeline, set },
        } => match sweep::daemon::run(&pipeline, &set) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                let text = e.to_string();
                eprint!("sweep: daemon: {text}");
                if !text.ends_with('\n') {
                    eprintln!();
                }
                Ok(ExitCode::from(e.exit_code()))
            }
        },
        Command::Generate(args) => match sweep::generate::run(&args) {
            Ok(report) => {
                eprintln!("sweep: {report}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("sweep: generate: {e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Convert(args) => convert(&args).context("convert failed"),
        Command::Bench(BenchCommand::Decode { file }) => bench_decode(&file),
        Command::Report {
            dir,
            output,
            metrics,
        } => Ok(report(&dir, output, metrics.as_deref())),
        Command::Plan {
            pipeline: PipelineArgs { pipeline, set },
            shards: Some(shards),
            shared: Some(shared),
            emit: Some(engine),
            binary,
            throttle,
            image,
            claim,
            plan_mount,
            ..
        } => Ok(emit(
            engine,
            &pipeline,
            &set,
            shards,
            &shared,
            Emit {
                binary,
                throttle,
                image,
                claim,
                plan_mount,
            },
        )),
        Command::Plan {
            pipeline: PipelineArgs { pipeline, set },
            json,
            shards: Some(shards),
            shared: Some(shared),
            ..
        } => Ok(plan_shards(&pipeline, &set, shards, &shared, json)),
        Command::Plan {
            pipeline: PipelineArgs { pipeline, set },
            json,
            ..
        } => Ok(match load(&pipeline, &set) {
            Err(code) => code,
            Ok(p) => {
                let plan = sweep::plan::plan(&p);
                if json {
                    println!("{}", sweep::plan::write_json(&plan));
                } else {
                    print!("{plan}");
                }
                if plan.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(USAGE)
                }
            }
        }),
        Command::Top { addr } => Ok(match sweep::top::run(&addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sweep: top: {e}");
                ExitCode::from(e.exit_code())
            }
        }),
        Command::Validate {
            pipeline: PipelineArgs { pipeline, set },
        } => Ok(match load(&pipeline, &set) {
            Err(code) => code,
            Ok(p) => {
                let names: Vec<String> = p
                    .stages
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.kind.label()))
                    .collect();
                println!("{}: valid: {}", pipeline.display(), names.join(", "));
                ExitCode::SUCCESS
            }
        }),
    }
}
