//! The run: turns a checked [`Pipeline`] into actors connected by bounded edges, runs them to
//! completion and reports. This module is wiring only; it names no concrete stage.
//!
//! The build phase (`build`) happens before any data moves. Then each stage is started through
//! its kind's [`Start`](crate::flow::Start), consumers before producers, each holding only the
//! addresses of its consumers. Shutdown needs no signal: when a reader runs out of input it
//! drops its outlets, each pool drains its queue and stops, dropping its own outlets in turn,
//! and so on down to the sinks, which report when they stop. The run waits for those reports,
//! then for what stages asked it to finish with (collectors, rejects).

mod build;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use actix::prelude::*;

use crate::config::{Output, Pipeline};
use crate::flow::edge::Outlet;
use crate::flow::stats::{Control, RunStats, StageStats};
use crate::flow::{Capture, Inbox, Outlets, SinkReport, StageCtx, StageError, Wiring};
use crate::monitor::{self, Monitor, RunReport, RunStatus, Sampler, StopMonitor, Topology};
use crate::sinks::atomic::write_atomic;

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
    /// Every failure, typed: which stage, what kind, and why.
    pub errors: Vec<Arc<StageError>>,
    pub sinks: Vec<SinkReport>,
    /// The `execution_metrics.json` document.
    pub report: RunReport,
    /// The run was told to stop from outside (Ctrl-C, SIGTERM, the daemon's deadline). Unless
    /// it had already finished (`ok`), nothing it would have written was written.
    pub interrupted: bool,
}

impl RunOutcome {
    /// Why a failed run failed, for a caller that runs a part of a run (a daemon's file, a
    /// shard): the run's own errors, or when it has none, the sinks that wrote nothing and why.
    pub(crate) fn failure_reasons(&self) -> Vec<String> {
        let reasons: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
        if !reasons.is_empty() {
            return reasons;
        }
        self.sinks
            .iter()
            .filter_map(|s| s.result.as_ref().err().map(|e| format!("{}: {e}", s.sink)))
            .collect()
    }
}

/// Worker threads for CPU stages: the configured count or one per core.
pub fn workers(p: &Pipeline) -> usize {
    p.runtime
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Where the daemon steers a run; a batch run uses the defaults.
#[derive(Default)]
pub(crate) struct RunOptions {
    /// The input files of each reader stage (by stage index), instead of discovering the
    /// readers' paths.
    pub files: Option<Vec<Vec<PathBuf>>>,
    /// Stages with mergeable state hand it here, with their stage index, instead of finishing
    /// tables: the daemon folds it into its committed state.
    pub capture: Option<Capture>,
    /// A shard of a sharded run: rows sinks hand their rows over through `capture` instead of
    /// writing their extracts.
    pub shard: bool,
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

/// Runs a pipeline as the command line does: SIGINT or SIGTERM stops it like a failure (readers
/// stop, nothing that looks complete is written, temporaries and spill files are removed) and
/// the outcome says it was interrupted; a second signal ends the process at once.
pub fn run_interruptible(p: &Pipeline) -> Result<RunOutcome, BuildError> {
    run_interruptible_with(p, RunOptions::default())
}

/// [`run_interruptible`], steered by `opts` (a shard of a sharded run: its files, its captured
/// state); the signals take over `opts.control`.
pub(crate) fn run_interruptible_with(
    p: &Pipeline,
    opts: RunOptions,
) -> Result<RunOutcome, BuildError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let control: Arc<Control> = Arc::default();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| BuildError::Runtime(format!("cannot handle signals: {e}")))?;
    let handle = signals.handle();
    let stop = control.clone();
    let watcher = std::thread::spawn(move || {
        for (n, _) in signals.forever().enumerate() {
            if n == 0 {
                tracing::warn!(
                    "interrupted: stopping, writing nothing and removing temporary files \
                     (again to quit at once)"
                );
                stop.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    let outcome = run_with(
        p,
        RunOptions {
            control: Some(control),
            ..opts
        },
    );
    handle.close();
    let _ = watcher.join();
    outcome
}

/// Runs a pipeline to completion, steered by `opts`.
pub(crate) fn run_with(p: &Pipeline, opts: RunOptions) -> Result<RunOutcome, BuildError> {
    let started_at = SystemTime::now();
    let metrics_on = p.monitor.prometheus.is_some() || opts.metrics_installed;
    let workers = workers(p);
    let inputs = build::inputs(p, &opts)?;
    // The recorder must be in place before stages create their metric handles.
    if let Some(addr) = p.monitor.prometheus.filter(|_| !opts.metrics_installed) {
        match monitor::metrics::install(addr) {
            Ok(()) => {}
            // Shards of one plan often share a node (a Slurm array packs its tasks), each with
            // the pipeline's one address: the first serves it, the others run without metrics
            // rather than fail.
            Err(e) if opts.shard && std::net::TcpListener::bind(addr).is_err() => {
                tracing::warn!("{e}: this shard runs without its metrics endpoint");
            }
            Err(e) => return Err(BuildError::Outputs(vec![e])),
        }
    }
    let (ordinal, filter_names) = build::filter_ordinals(p);
    let stats = Arc::new(RunStats {
        started: Instant::now(),
        jobs: RwLock::new(Vec::new()),
        stages: p
            .stages
            .iter()
            .map(|s| StageStats::new(&s.name, s.kind.kind()))
            .collect(),
        edges: RwLock::new(Vec::new()),
        filter_names,
    });
    let mut jobs = vec![Vec::new(); p.stages.len()];
    for f in inputs {
        jobs[f.reader].push(stats.add_job(f.reader, f.path, f.bytes, f.stream));
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
                (
                    s.name.clone(),
                    s.kind.label(),
                    s.kind.kind().workers(workers),
                )
            })
            .collect(),
        filter_paths: build::filter_paths(p, &ordinal),
        settings: monitor::Settings {
            block_bytes: p.runtime.block_bytes,
            edge_capacity: p.runtime.edge_capacity,
            workers,
        },
    };
    let sampler = Arc::new(Mutex::new(Sampler::new()));
    let n_sinks = p
        .stages
        .iter()
        .filter(|s| s.kind.output() == Output::Nothing)
        .count();
    let ctx_of = |i: usize| StageCtx {
        index: i,
        name: p.stages[i].name.as_str().into(),
        stats: stats.stages[i].clone(),
        run: stats.clone(),
        control: control.clone(),
    };
    let cap = p.runtime.edge_capacity;

    let system = actix::System::new();
    let (mut sinks, after_run) = system.block_on(async {
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
        let mut w = Wiring::new(
            workers,
            cap,
            p.runtime.block_bytes,
            // Reorder window for ordered sinks: enough for every batch that can be in flight.
            (cap * (p.stages.len() + 1) + 2 * workers).max(8) as u64,
            p.name.clone(),
            report_tx,
            opts.capture.clone(),
            stats.clone(),
        );
        w.jobs = jobs;
        w.shard = opts.shard;
        w.filter_ordinal = ordinal;
        w.upstream_readers = build::upstream_readers(p);
        let mut inboxes: HashMap<usize, Inbox> = HashMap::new();
        for i in (0..p.stages.len()).rev() {
            let mut out = Outlets {
                rows: Outlet::new(),
                tables: Outlet::new(),
            };
            for j in build::consumers(p, i) {
                let e = w.edge(&p.stages[i].name, &p.stages[j].name);
                match inboxes.get(&j) {
                    Some(Inbox::Rows(r)) => out.rows.connect(e, r.clone()),
                    Some(Inbox::Tables(r)) => out.tables.connect(e, r.clone()),
                    Some(Inbox::None) | None => {}
                }
            }
            let inbox = p.stages[i].kind.starter().start(&mut w, ctx_of(i), out);
            inboxes.insert(i, inbox);
        }
        // Every edge and job exists now: publish the gauges at once, so that a run shorter than
        // the monitor's 1 s tick still serves them (born at their start values).
        if metrics_on {
            let res = sampler.lock().unwrap_or_else(|e| e.into_inner()).sample();
            monitor::metrics::publish(&stats, &res);
        }
        // Only producers may hold consumer addresses now, or the pools would never stop; and
        // only sinks may hold the report sender, or the wait below would never end.
        drop(inboxes);
        let (finishers, arbiters, after_run) = w.into_parts();
        let mut reports = Vec::new();
        while reports.len() < n_sinks {
            match report_rx.recv().await {
                Some(r) => reports.push(r),
                None => break,
            }
        }
        for f in finishers {
            f.await;
        }
        monitor.do_send(StopMonitor);
        for a in arbiters {
            a.stop();
        }
        System::current().stop();
        (reports, after_run)
    });
    let res = sampler.lock().unwrap_or_else(|e| e.into_inner()).sample();
    let mut report = monitor::report(&stats, &control, &topo, &sinks, res, started_at);
    for (sink, f) in after_run {
        let result = f(&report);
        monitor::settle_sink(&mut report, &sink, &result);
        if let Some(s) = sinks.iter_mut().find(|s| s.sink == sink) {
            s.result = result;
        }
    }
    if metrics_on {
        monitor::metrics::publish(&stats, &res);
        std::thread::sleep(p.monitor.hold);
    }
    if let Some(path) = &p.monitor.report {
        let mut bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = write_atomic(path, &bytes) {
            tracing::error!("{e}");
        }
    }
    Ok(RunOutcome {
        ok: report.status == RunStatus::Ok,
        errors: control.errors(),
        sinks,
        report,
        interrupted: control.cancelled(),
    })
}
