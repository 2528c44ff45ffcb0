//! What stages share, and nothing of any one stage: the context a stage's actors run in, the
//! bounded edges between stages, the run's counters and metric handles, the typed error a stage
//! fails with, and the [`Start`] contract through which the runtime wires a pipeline without
//! naming a concrete stage.
//!
//! Every stage folder (`readers`, `filters`, `aggregators`, `sinks`) imports this module and
//! nothing of the runtime; the runtime imports no stage folder. A stage kind implements
//! [`Start`] for its spec type, and `config::StageKind::starter` is the one place that maps a
//! kind to its implementation.

pub(crate) mod edge;
pub(crate) mod fold;
pub(crate) mod metrics;
pub(crate) mod stats;

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use actix::{Arbiter, Recipient};
use tokio::sync::{mpsc, watch};

use crate::batch::{Batch, TableSet};
use crate::monitor::RunReport;
use edge::{Edge, Envelope, Outlet};
use stats::{Control, JobStats, RunStats, StageStats};

/// What a stage is, as metrics and reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Reader,
    Filter,
    Aggregator,
    SweepAnalysis,
    RowSink,
    TableSink,
    ReportSink,
}

impl Kind {
    /// Every kind, in the order rows flow through them: `sweep top` lists stages so. A new kind
    /// goes here too.
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Reader,
        Kind::Filter,
        Kind::Aggregator,
        Kind::SweepAnalysis,
        Kind::RowSink,
        Kind::TableSink,
    ];

    /// The `component_kind` metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Reader => "reader",
            Kind::Filter => "filter",
            Kind::Aggregator => "aggregator",
            Kind::SweepAnalysis => "sweep_analysis",
            Kind::RowSink => "rows_sink",
            Kind::TableSink => "tables_sink",
            Kind::ReportSink => "report_sink",
        }
    }

    /// The name people read in messages and reports.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Reader => "reader",
            Kind::Filter => "filter",
            Kind::Aggregator => "aggregator",
            Kind::SweepAnalysis => "sweep analysis",
            Kind::RowSink => "rows sink",
            Kind::TableSink => "tables sink",
            Kind::ReportSink => "report sink",
        }
    }

    /// Worker threads a stage of this kind runs on, given the run's worker count: sinks write in
    /// order on one thread.
    pub(crate) fn workers(self, workers: usize) -> usize {
        match self {
            Kind::RowSink | Kind::TableSink | Kind::ReportSink => 1,
            Kind::Reader | Kind::Filter | Kind::Aggregator | Kind::SweepAnalysis => workers,
        }
    }

    /// The ways a stage of this kind can fail, each a series born at 0.
    pub(crate) fn error_kinds(self) -> &'static [ErrorKind] {
        match self {
            Kind::Reader => &[
                ErrorKind::BadRow,
                ErrorKind::Parse,
                ErrorKind::Schema,
                ErrorKind::Io,
            ],
            Kind::RowSink | Kind::TableSink | Kind::ReportSink => &[ErrorKind::Output],
            Kind::Filter | Kind::Aggregator => &[ErrorKind::Schema],
            Kind::SweepAnalysis => &[ErrorKind::Schema, ErrorKind::BadRow],
        }
    }
}

/// Why a stage failed, as the `error_type` metric label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed row under `on_error = "fail"`.
    BadRow,
    /// A block that could not be parsed at all.
    Parse,
    /// A missing or mistyped column.
    Schema,
    /// Reading an input failed (a corrupt or truncated file).
    Io,
    /// Writing an output failed.
    Output,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRow => "bad_row",
            ErrorKind::Parse => "parse",
            ErrorKind::Schema => "schema",
            ErrorKind::Io => "io",
            ErrorKind::Output => "output",
        }
    }
}

/// A stage's failure as it crosses the actor boundary: which stage, what kind, and the error
/// itself. It reads as the error's own message, which already names the file and position.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct StageError {
    pub stage: Arc<str>,
    pub kind: ErrorKind,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What every actor of a stage shares.
#[derive(Clone, Debug)]
pub(crate) struct StageCtx {
    pub index: usize,
    pub name: Arc<str>,
    pub stats: Arc<StageStats>,
    pub run: Arc<RunStats>,
    pub control: Arc<Control>,
}

impl StageCtx {
    /// Fails the run because of this stage: counts the error by kind and stops the readers.
    pub(crate) fn fail(
        &self,
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) {
        self.stats.metrics.error(kind);
        self.control.fail(StageError {
            stage: self.name.clone(),
            kind,
            source: source.into(),
        });
    }

    /// Opens a message for a handler: its item and the edge credit it holds, with the time the
    /// handling started; `None` once the run has failed, so no more work is done.
    pub(crate) fn open<T>(&self, msg: Envelope<T>) -> Option<edge::Opened<T>> {
        let started = std::time::Instant::now();
        if self.control.aborted() {
            return None;
        }
        Some(edge::Opened {
            item: msg.item,
            credit: msg.credit,
            started,
        })
    }
}

/// What a sink did, sent when it stops.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub sink: String,
    pub path: PathBuf,
    /// What was written, or why nothing was.
    pub result: Result<String, String>,
}

/// Sends a sink's report when the sink goes away, however it goes: a worker that dies still
/// reports, so the run never waits for a report that cannot come.
#[derive(Debug)]
pub(crate) struct ReportGuard {
    sink: String,
    path: PathBuf,
    to: mpsc::UnboundedSender<SinkReport>,
    outcome: Option<Result<String, String>>,
}

impl ReportGuard {
    pub(crate) fn new(
        ctx: &StageCtx,
        path: PathBuf,
        to: mpsc::UnboundedSender<SinkReport>,
    ) -> Self {
        ReportGuard {
            sink: ctx.name.to_string(),
            path,
            to,
            outcome: None,
        }
    }

    /// Sets what the report will say.
    pub(crate) fn set(&mut self, outcome: Result<String, String>) {
        self.outcome = Some(outcome);
    }
}

impl Drop for ReportGuard {
    fn drop(&mut self) {
        let result = self
            .outcome
            .take()
            .unwrap_or_else(|| Err("the sink's worker stopped unexpectedly".to_string()));
        // The runtime stops listening only once every sink has reported.
        let _ = self.to.send(SinkReport {
            sink: self.sink.clone(),
            path: self.path.clone(),
            result,
        });
    }
}

/// Where a started stage receives its input, or nothing for a stage with no inputs.
pub(crate) enum Inbox {
    Rows(Recipient<Envelope<Batch>>),
    Tables(Recipient<Envelope<Arc<TableSet>>>),
    None,
}

/// A stage's outputs, connected to every consumer: rows for row consumers, tables for table
/// consumers (a stage uses the one its kind emits).
pub(crate) struct Outlets {
    pub rows: Outlet<Batch>,
    pub tables: Outlet<Arc<TableSet>>,
}

/// What a stage hands over in place of finishing (the daemon's capture of aggregate state):
/// its stage index and its state, which the receiver knows the type of.
pub(crate) type Capture = mpsc::UnboundedSender<(usize, Box<dyn Any + Send>)>;

/// Something the run waits for after the sinks have reported: a collector handing its tables
/// on, a reader committing its rejects.
pub(crate) type Finisher = Pin<Box<dyn Future<Output = ()>>>;

/// What a sink does once the run report is known, after every sink has reported: the report
/// sink renders its page, which shows the run's ledger and settings. It is given the report
/// and returns what it wrote or why it wrote nothing, which replaces the sink's entry in the
/// report; an `Err` fails the run.
pub(crate) type AfterRun = Box<dyn FnOnce(&RunReport) -> Result<String, String>>;

/// What the runtime provides while it starts stages, consumers before producers.
pub(crate) struct Wiring {
    /// Worker threads per CPU stage.
    pub workers: usize,
    /// Messages each edge holds.
    pub edge_capacity: usize,
    /// Bytes per input block.
    pub block_bytes: usize,
    /// How far a reader may run ahead of the ordered sinks downstream of it, in batches.
    pub reorder_window: u64,
    /// The pipeline's name.
    pub pipeline: String,
    /// Where sinks report.
    pub reports: mpsc::UnboundedSender<SinkReport>,
    /// With the daemon: aggregators hand over their state here instead of finishing tables.
    pub capture: Option<Capture>,
    /// A shard of a sharded run: rows sinks hand their rows over through `capture` too, for
    /// the merge to write the extract.
    pub shard: bool,
    /// The input files of each reader stage, by stage index, taken by the reader's start.
    pub jobs: Vec<Vec<Arc<JobStats>>>,
    /// Each stage's position among the pipeline's filters, for per-job filter counts.
    pub filter_ordinal: HashMap<usize, usize>,
    /// The reader stages upstream of each stage, by stage index.
    pub upstream_readers: Vec<Vec<usize>>,
    gates: HashMap<usize, Vec<watch::Receiver<u64>>>,
    finishers: Vec<Finisher>,
    after_run: Vec<(String, AfterRun)>,
    arbiters: Vec<Arbiter>,
    run: Arc<RunStats>,
}

impl Wiring {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        workers: usize,
        edge_capacity: usize,
        block_bytes: usize,
        reorder_window: u64,
        pipeline: String,
        reports: mpsc::UnboundedSender<SinkReport>,
        capture: Option<Capture>,
        run: Arc<RunStats>,
    ) -> Self {
        Wiring {
            workers,
            edge_capacity,
            block_bytes,
            reorder_window,
            pipeline,
            reports,
            capture,
            shard: false,
            jobs: Vec::new(),
            filter_ordinal: HashMap::new(),
            upstream_readers: Vec::new(),
            gates: HashMap::new(),
            finishers: Vec::new(),
            after_run: Vec::new(),
            arbiters: Vec::new(),
            run,
        }
    }

    /// A new bounded edge, counted with the run's edges.
    pub(crate) fn edge(&self, from: &str, to: &str) -> Arc<Edge> {
        let e = Edge::new(from, to, self.edge_capacity);
        self.run
            .edges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(e.clone());
        e
    }

    /// An ordered sink's gate on `reader`: the sink publishes the next sequence number it needs,
    /// and the reader stays within `reorder_window` of it.
    pub(crate) fn gate_on(&mut self, reader: usize) -> watch::Sender<u64> {
        let (tx, rx) = watch::channel(0u64);
        self.gates.entry(reader).or_default().push(rx);
        tx
    }

    /// The gates the ordered sinks downstream of `reader` set up (they start first).
    pub(crate) fn gates_of(&mut self, reader: usize) -> Vec<watch::Receiver<u64>> {
        self.gates.remove(&reader).unwrap_or_default()
    }

    /// Waited for, in order, once the sinks have reported.
    pub(crate) fn finish_with(&mut self, f: impl Future<Output = ()> + 'static) {
        self.finishers.push(Box::pin(f));
    }

    /// Run by sink `sink` once the run report is known (see [`AfterRun`]).
    pub(crate) fn after_run(&mut self, sink: &str, f: AfterRun) {
        self.after_run.push((sink.to_string(), f));
    }

    /// An arbiter of its own for a stage's actor, stopped at the end of the run.
    pub(crate) fn arbiter(&mut self) -> actix::ArbiterHandle {
        let a = Arbiter::new();
        let h = a.handle();
        self.arbiters.push(a);
        h
    }

    /// What the run waits for, stops, and does once its report is known, at its end.
    pub(crate) fn into_parts(self) -> (Vec<Finisher>, Vec<Arbiter>, Vec<(String, AfterRun)>) {
        (self.finishers, self.arbiters, self.after_run)
    }
}

/// How a stage kind starts: its actors, connected to `out`, sharing `ctx`. Returns where its
/// inputs go. Implemented by each kind's spec type in its own folder.
pub(crate) trait Start {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox;
}
