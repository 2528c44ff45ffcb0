//! The build phase and the run: turns a checked [`Pipeline`] into actors connected by bounded
//! edges, runs them to completion and reports.
//!
//! Building happens before any data moves: inputs are discovered (every missing file or empty
//! glob reported at once), output locations are checked for writability, and rejects files
//! are opened. Then the actors start, consumers before producers, each stage holding only the
//! addresses of its consumers. Shutdown needs no signal: when a reader runs out of input it
//! drops its outlets, each pool drains its queue and stops, dropping its own outlets in turn,
//! and so on down to the sinks, which report when they stop. The run waits for those reports.

pub mod edge;
pub mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use actix::prelude::*;
use tokio::sync::watch;

use crate::aggregators::actor::{AggWorker, TableSet, collect};
use crate::aggregators::{AggSpec, AggState};
use crate::batch::Batch;
use crate::config::{Pipeline, StageKind};
use crate::filters::{FilterWorker, Predicate};
use crate::monitor::{self, Monitor, Sampler, StopMonitor, Topology};
use crate::readers::actor::{
    OrderGates, ParseWorker, RawBlock, ReaderActor, ReaderShared, Rejects,
};
use crate::readers::discover::discover;
use crate::readers::source::BlockPool;
use crate::sinks::SinkReport;
use crate::sinks::atomic::write_atomic;
use crate::sinks::extract::ExtractSpec;
use crate::sinks::rows::RowSinkWorker;
use crate::sinks::tables::TableSinkWorker;
use edge::{Edge, Envelope, Outlet};
use stats::{Control, RunStats, StageStats};

/// What every actor of a stage shares.
#[derive(Clone, Debug)]
pub struct StageCtx {
    pub index: usize,
    pub name: Arc<str>,
    pub stats: Arc<StageStats>,
    pub run: Arc<RunStats>,
    pub control: Arc<Control>,
}

impl StageCtx {
    /// Fails the run because of this stage: counts the error by type and stops the readers.
    pub fn fail(&self, error_type: &'static str, msg: String) {
        self.stats.metrics.error(error_type);
        self.control.fail(msg);
    }
}

/// Problems found while building, before any data is read. They are usage or environment
/// errors (exit code 2), each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("inputs:\n  {}", .0.join("\n  "))]
    Inputs(Vec<String>),
    #[error("outputs:\n  {}", .0.join("\n  "))]
    Outputs(Vec<String>),
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub ok: bool,
    pub errors: Vec<String>,
    pub sinks: Vec<SinkReport>,
    /// The `execution_metrics.json` document.
    pub report: serde_json::Value,
}

/// Worker threads for CPU stages: the configured count or one per core.
pub fn workers(p: &Pipeline) -> usize {
    p.runtime
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Checks that `path`'s folder exists or can be created, and takes a file.
fn check_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    tempfile::Builder::new()
        .prefix(".sweep-check.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("{}: cannot write there: {e}", dir.display()))
}

/// Every maximal path of filters downstream of each reader, as filter ordinals.
fn filter_paths(p: &Pipeline, ordinal: &HashMap<usize, usize>) -> Vec<Vec<Vec<usize>>> {
    let consumers = |i: usize| -> Vec<usize> {
        (0..p.stages.len())
            .filter(|&j| p.stages[j].inputs.contains(&i) && ordinal.contains_key(&j))
            .collect()
    };
    fn walk(
        at: usize,
        path: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
        consumers: &dyn Fn(usize) -> Vec<usize>,
        ordinal: &HashMap<usize, usize>,
    ) {
        let next = consumers(at);
        if next.is_empty() {
            if !path.is_empty() {
                out.push(path.clone());
            }
            return;
        }
        for n in next {
            path.push(ordinal[&n]);
            walk(n, path, out, consumers, ordinal);
            path.pop();
        }
    }
    (0..p.stages.len())
        .map(|i| {
            let mut out = Vec::new();
            if matches!(p.stages[i].kind, StageKind::Reader(_)) {
                walk(i, &mut Vec::new(), &mut out, &consumers, ordinal);
            }
            out
        })
        .collect()
}

/// Which readers feed each stage, directly or through other stages.
fn upstream_readers(p: &Pipeline, stage: usize) -> Vec<usize> {
    let mut seen = vec![false; p.stages.len()];
    let mut stack = vec![stage];
    let mut readers = Vec::new();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if matches!(p.stages[i].kind, StageKind::Reader(_)) {
            readers.push(i);
        }
        stack.extend(p.stages[i].inputs.iter().copied());
    }
    readers.sort_unstable();
    readers
}

/// The addresses a stage receives on, while consumers are being started.
enum Inbox {
    Rows(Recipient<Envelope<Batch>>),
    Tables(Recipient<Envelope<Arc<TableSet>>>),
}

/// Where the daemon steers a run; a batch run uses the defaults.
#[derive(Default)]
pub struct RunOptions {
    /// The input files of each reader stage (by stage index), instead of discovering the
    /// readers' paths.
    pub files: Option<Vec<Vec<PathBuf>>>,
    /// Aggregators hand their merged state here, with their stage index, instead of finishing
    /// tables: the daemon folds it into its committed state.
    pub capture: Option<tokio::sync::mpsc::UnboundedSender<(usize, AggState)>>,
    /// Stops the run from outside (the daemon's shutdown deadline).
    pub control: Option<Arc<Control>>,
    /// Receives the run's live counters as soon as they exist (the daemon's watchdog reads
    /// progress from them).
    pub stats_slot: Option<Arc<Mutex<Option<Arc<RunStats>>>>>,
    /// The metrics recorder is already installed (the daemon installs it once); stages still
    /// publish to it.
    pub metrics_installed: bool,
}

/// Runs a pipeline to completion.
pub fn run(p: &Pipeline) -> Result<RunOutcome, BuildError> {
    run_with(p, RunOptions::default())
}

/// Runs a pipeline to completion, steered by `opts`.
pub fn run_with(p: &Pipeline, opts: RunOptions) -> Result<RunOutcome, BuildError> {
    let started_at = SystemTime::now();
    let metrics_on = p.monitor.prometheus.is_some() || opts.metrics_installed;
    let workers = workers(p);
    let cap = p.runtime.edge_capacity;

    // Build phase: inputs and outputs, before any actor starts.
    let mut input_errors = Vec::new();
    // Every path the pipeline writes, through links: discovery passes over them, and none may
    // land on an input or on another output.
    let outputs = crate::config::outputs::Resolved::new(&crate::config::outputs::claims(
        p,
        &Default::default(),
    ));
    let skip = |f: &Path| outputs.writes(f);
    let mut files: Vec<Vec<PathBuf>> = vec![Vec::new(); p.stages.len()];
    for (i, s) in p.stages.iter().enumerate() {
        if let StageKind::Reader(r) = &s.kind {
            if let Some(given) = &opts.files {
                files[i] = given.get(i).cloned().unwrap_or_default();
                continue;
            }
            match discover(&r.paths, &skip) {
                Ok(f) => files[i] = f,
                Err(errs) => {
                    input_errors.extend(errs.iter().map(|e| format!("reader `{}`: {e}", s.name)))
                }
            }
        }
    }
    // (size, is a stream) of every input. A named pipe must not be opened here: opening and
    // closing it would end its writer (SIGPIPE) before the reader gets to it.
    let mut sizes: HashMap<PathBuf, (u64, bool)> = HashMap::new();
    for (i, fs) in files.iter().enumerate() {
        let StageKind::Reader(r) = &p.stages[i].kind else {
            continue;
        };
        for f in fs {
            let meta = std::fs::metadata(f).and_then(|m| {
                if m.is_file() {
                    // Readable now, or say so before anything runs.
                    std::fs::File::open(f).map(|_| m)
                } else {
                    Ok(m)
                }
            });
            match meta {
                Ok(m) if m.is_file() => {
                    sizes.insert(f.clone(), (m.len(), false));
                }
                Ok(_) if crate::readers::actor::is_parquet(r, f) => input_errors.push(format!(
                    "{}: not a regular file (a pipe or device); Parquet needs a seekable file, \
                     so copy it to a file first",
                    f.display()
                )),
                Ok(_) => {
                    sizes.insert(f.clone(), (0, true));
                }
                Err(e) => input_errors.push(format!("{}: {e}", f.display())),
            }
        }
    }
    if !input_errors.is_empty() {
        return Err(BuildError::Inputs(input_errors));
    }
    let mut output_errors = outputs.conflicts(files.iter().flatten().map(PathBuf::as_path));
    let mut outputs: Vec<PathBuf> = Vec::new();
    for s in &p.stages {
        match &s.kind {
            StageKind::RowSink(r) => outputs.push(r.path.clone()),
            StageKind::TableSink(t) => outputs.push(t.path.join("summary.csv")),
            StageKind::Reader(r) => outputs.extend(r.rejects.clone()),
            _ => {}
        }
    }
    outputs.extend(p.monitor.report.clone());
    for o in &outputs {
        if let Err(e) = check_writable(o) {
            output_errors.push(e);
        }
    }
    let mut rejects: HashMap<usize, Rejects> = HashMap::new();
    for (i, s) in p.stages.iter().enumerate() {
        if let StageKind::Reader(r) = &s.kind
            && let Some(path) = &r.rejects
            && r.on_error == crate::config::OnError::Reject
        {
            match Rejects::create(path) {
                Ok(rj) => {
                    rejects.insert(i, rj);
                }
                Err(e) => output_errors.push(e.to_string()),
            }
        }
    }
    if !output_errors.is_empty() {
        return Err(BuildError::Outputs(output_errors));
    }

    // The recorder must be in place before stages create their metric handles.
    if let Some(addr) = p.monitor.prometheus.filter(|_| !opts.metrics_installed) {
        monitor::metrics::install(addr).map_err(|e| BuildError::Outputs(vec![e]))?;
    }
    let mut ordinal: HashMap<usize, usize> = HashMap::new();
    let mut filter_names = Vec::new();
    for (i, s) in p.stages.iter().enumerate() {
        if matches!(s.kind, StageKind::Filter(_)) {
            ordinal.insert(i, filter_names.len());
            filter_names.push(s.name.clone());
        }
    }
    let stage_stats: Vec<Arc<StageStats>> = p
        .stages
        .iter()
        .map(|s| StageStats::new(&s.name, s.kind.label()))
        .collect();
    let stats = Arc::new(RunStats {
        started: Instant::now(),
        jobs: RwLock::new(Vec::new()),
        stages: stage_stats.clone(),
        edges: RwLock::new(Vec::new()),
        filter_names,
    });
    let mut jobs_by_reader: Vec<Vec<Arc<stats::JobStats>>> = vec![Vec::new(); p.stages.len()];
    for (i, fs) in files.iter().enumerate() {
        for f in fs {
            let (bytes, stream) = sizes.get(f).copied().unwrap_or((0, false));
            jobs_by_reader[i].push(stats.add_job(i, f.clone(), bytes, stream));
        }
    }
    if let Some(slot) = &opts.stats_slot {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats.clone());
    }
    let control = opts.control.clone().unwrap_or_default();
    let topo = Topology {
        pipeline: p.name.clone(),
        stages: p
            .stages
            .iter()
            .map(|s| {
                let n = match s.kind {
                    StageKind::RowSink(_) | StageKind::TableSink(_) => 1,
                    _ => workers,
                };
                (s.name.clone(), s.kind.label(), n)
            })
            .collect(),
        filter_paths: filter_paths(p, &ordinal),
    };
    let sampler = Arc::new(Mutex::new(Sampler::new()));
    let n_sinks = p
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::RowSink(_) | StageKind::TableSink(_)))
        .count();
    let ctx_of = |i: usize| StageCtx {
        index: i,
        name: p.stages[i].name.as_str().into(),
        stats: stage_stats[i].clone(),
        run: stats.clone(),
        control: control.clone(),
    };
    // Reorder window for ordered (rows) sinks: enough for every batch that can be in flight.
    let window = (cap * (p.stages.len() + 1) + 2 * workers).max(8) as u64;

    let system = actix::System::new();
    let sinks = system.block_on(async {
        let (report_tx, mut report_rx) = tokio::sync::mpsc::unbounded_channel::<SinkReport>();
        let monitor = Monitor::new(
            stats.clone(),
            control.clone(),
            sampler.clone(),
            p.monitor.progress,
            p.monitor.log_interval,
            metrics_on,
        )
        .start();
        let mut inboxes: HashMap<usize, Inbox> = HashMap::new();
        let mut gate_rx: HashMap<usize, Vec<watch::Receiver<u64>>> = HashMap::new();
        let mut arbiters = Vec::new();
        let mut reader_done = Vec::new();
        let mut collectors = Vec::new();

        for i in (0..p.stages.len()).rev() {
            let stage = &p.stages[i];
            let ctx = ctx_of(i);
            let consumers: Vec<usize> = (0..p.stages.len())
                .filter(|&j| p.stages[j].inputs.contains(&i))
                .collect();
            let mut rows_out: Outlet<Batch> = Outlet::new();
            let mut tables_out: Outlet<Arc<TableSet>> = Outlet::new();
            for &j in &consumers {
                let e = Edge::new(&stage.name, &p.stages[j].name, cap);
                stats
                    .edges
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(e.clone());
                match inboxes.get(&j) {
                    Some(Inbox::Rows(r)) => rows_out.connect(e, r.clone()),
                    Some(Inbox::Tables(r)) => tables_out.connect(e, r.clone()),
                    None => {}
                }
            }
            match &stage.kind {
                StageKind::RowSink(spec) => {
                    let readers = upstream_readers(p, i);
                    let mut gates: Vec<Option<watch::Sender<u64>>> = vec![None; p.stages.len()];
                    for r in readers {
                        let (tx, rx) = watch::channel(0u64);
                        gates[r] = Some(tx);
                        gate_rx.entry(r).or_default().push(rx);
                    }
                    let ex = ExtractSpec {
                        path: spec.path.clone(),
                        format: spec.format,
                        partition_by: spec.partition_by.clone(),
                        zone: spec.zone,
                        compression_level: spec.compression_level,
                        max_open_files: spec.max_open_files,
                    };
                    let (columns, pause, report) = (
                        spec.columns.clone(),
                        spec.pause_per_batch,
                        report_tx.clone(),
                    );
                    let addr = SyncArbiter::start(1, move || {
                        RowSinkWorker::new(
                            ex.clone(),
                            columns.clone(),
                            pause,
                            gates.clone(),
                            ctx.clone(),
                            report.clone(),
                        )
                    });
                    inboxes.insert(i, Inbox::Rows(addr.recipient()));
                }
                StageKind::TableSink(spec) => {
                    let (dir, formats, pipeline, report) = (
                        spec.path.clone(),
                        spec.formats.clone(),
                        p.name.clone(),
                        report_tx.clone(),
                    );
                    let addr = SyncArbiter::start(1, move || TableSinkWorker {
                        dir: dir.clone(),
                        formats: formats.clone(),
                        pipeline: pipeline.clone(),
                        ctx: ctx.clone(),
                        report: report.clone(),
                        written: Vec::new(),
                        error: None,
                        outcome: None,
                    });
                    inboxes.insert(i, Inbox::Tables(addr.recipient()));
                }
                StageKind::Aggregator(spec) => {
                    let spec = Arc::new(AggSpec {
                        groupings: spec.group_by.clone(),
                        zone: spec.zone,
                        quantiles: spec.quantiles.clone(),
                    });
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let (s2, c2) = (spec.clone(), ctx.clone());
                    let addr = SyncArbiter::start(workers, move || {
                        AggWorker::new(s2.clone(), c2.clone(), tx.clone())
                    });
                    collectors.push(actix::spawn(collect(
                        spec,
                        ctx,
                        rx,
                        tables_out,
                        opts.capture.clone(),
                    )));
                    inboxes.insert(i, Inbox::Rows(addr.recipient()));
                }
                StageKind::Filter(spec) => {
                    let predicate = Predicate::new(spec);
                    let ord = ordinal.get(&i).copied().unwrap_or(0);
                    let addr = SyncArbiter::start(workers, move || FilterWorker {
                        predicate: predicate.clone(),
                        ordinal: ord,
                        ctx: ctx.clone(),
                        out: rows_out.clone(),
                    });
                    inboxes.insert(i, Inbox::Rows(addr.recipient()));
                }
                StageKind::Reader(spec) => {
                    let shared = Arc::new(ReaderShared {
                        spec: spec.clone(),
                        rejects: rejects.remove(&i),
                        ctx: ctx.clone(),
                        block_bytes: p.runtime.block_bytes,
                        // Blocks in flight: one edge's worth plus one per parse worker.
                        pool: Arc::new(BlockPool::new(cap + workers + 1)),
                    });
                    let (sh, out) = (shared.clone(), rows_out.clone());
                    let parse_addr = SyncArbiter::start(workers, move || ParseWorker {
                        shared: sh.clone(),
                        out: out.clone(),
                    });
                    let parse_edge = Edge::new(&stage.name, &format!("{}.parse", stage.name), cap);
                    stats
                        .edges
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(parse_edge.clone());
                    let mut parse: Outlet<RawBlock> = Outlet::new();
                    parse.connect(parse_edge, parse_addr.recipient());
                    let gates = OrderGates {
                        gates: gate_rx.remove(&i).unwrap_or_default(),
                        window,
                    };
                    let jobs = std::mem::take(&mut jobs_by_reader[i]);
                    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                    reader_done.push((shared.clone(), done_rx));
                    let arbiter = Arbiter::new();
                    ReaderActor::start_in_arbiter(&arbiter.handle(), move |_| {
                        ReaderActor::new(shared, jobs, parse, rows_out, gates, done_tx)
                    });
                    arbiters.push(arbiter);
                }
            }
        }
        // Every edge and job exists now: publish the gauges at once, so that a run shorter than
        // the monitor's 1 s tick still serves them (born at their start values).
        if metrics_on {
            let res = sampler.lock().unwrap_or_else(|e| e.into_inner()).sample();
            monitor::metrics::publish(&stats, &res);
        }
        // Only producers may hold consumer addresses now, or the pools would never stop.
        drop(inboxes);
        drop(report_tx);

        let mut reports = Vec::new();
        while reports.len() < n_sinks {
            match report_rx.recv().await {
                Some(r) => reports.push(r),
                None => break,
            }
        }
        // A captured aggregate has no sink to report it: the run is over only when every
        // collector has handed its state over.
        for c in collectors {
            let _ = c.await;
        }
        for (shared, done) in reader_done {
            let _ = done.await;
            if let Some(rj) = &shared.rejects
                && let Err(e) = rj.commit()
            {
                control.fail(e.to_string());
            }
        }
        monitor.do_send(StopMonitor);
        for a in arbiters {
            a.stop();
        }
        System::current().stop();
        reports
    });
    let res = sampler.lock().unwrap_or_else(|e| e.into_inner()).sample();
    let report = monitor::report(&stats, &control, &topo, &sinks, res, started_at);
    if metrics_on {
        monitor::metrics::publish(&stats, &res);
        std::thread::sleep(p.monitor.hold);
    }
    let errors = report["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let ok = report["status"] == "ok";
    if let Some(path) = &p.monitor.report {
        let mut bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = write_atomic(path, &bytes) {
            tracing::error!("{e}");
        }
    }
    Ok(RunOutcome {
        ok,
        errors,
        sinks,
        report,
    })
}
