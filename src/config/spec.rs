//! The checked pipeline: every stage's typed settings, as the resolver produces them from the
//! file and the build phase, the runtime and the daemon consume them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::choice::Choice;
use crate::aggregators::Grouping;
use crate::flow::{Kind, Start};
use crate::schema::FileKind;
use crate::sinks::format::{PartitionKey, RowFormat};
pub use crate::sweeps::SweepsSpec;
use crate::time::Zone;

/// A checked pipeline, ready for the runtime's build phase.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub runtime: RuntimeSpec,
    /// Stages in topological order: every stage comes after its inputs.
    pub stages: Vec<Stage>,
    pub monitor: MonitorSpec,
    /// The `[daemon]` section, when the file has one.
    pub daemon: Option<DaemonSpec>,
}

impl Pipeline {
    /// Some of this pipeline's stages, as the pipeline a part of a run executes (one file of the
    /// daemon, one shard of a sharded run): `keep` gives each stage's kind in the part (changed
    /// or not), or `None` to leave the stage out. Inputs are re-indexed and those left out
    /// dropped. The part writes no run report and has no daemon: whoever runs it accounts for
    /// it.
    pub(crate) fn part(
        &self,
        mut keep: impl FnMut(usize, &Stage) -> Option<StageKind>,
    ) -> Pipeline {
        let mut index = std::collections::HashMap::new();
        let mut stages = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            let Some(kind) = keep(i, s) else {
                continue;
            };
            index.insert(i, stages.len());
            stages.push(Stage {
                name: s.name.clone(),
                inputs: s
                    .inputs
                    .iter()
                    .filter_map(|j| index.get(j).copied())
                    .collect(),
                kind,
            });
        }
        let mut monitor = self.monitor.clone();
        monitor.report = None;
        Pipeline {
            name: self.name.clone(),
            runtime: self.runtime.clone(),
            stages,
            monitor,
            daemon: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSpec {
    /// `None` means one worker per core, decided at build time.
    pub workers: Option<usize>,
    pub block_bytes: usize,
    pub edge_capacity: usize,
}

pub(crate) const DEFAULT_BLOCK_BYTES: usize = 1 << 20;
pub(crate) const DEFAULT_EDGE_CAPACITY: usize = 8;

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    /// Indexes of the input stages in `Pipeline::stages`.
    pub inputs: Vec<usize>,
    pub kind: StageKind,
}

#[derive(Debug, Clone)]
pub enum StageKind {
    Reader(ReaderSpec),
    Filter(FilterSpec),
    Aggregator(AggregatorSpec),
    Sweeps(SweepsSpec),
    RowSink(RowSinkSpec),
    TableSink(TableSinkSpec),
    ReportSink(ReportSinkSpec),
}

/// What a stage emits, for checking that edges connect compatible stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Rows,
    Tables,
    Nothing,
}

impl StageKind {
    pub(crate) fn output(&self) -> Output {
        match self {
            StageKind::Reader(_) | StageKind::Filter(_) => Output::Rows,
            StageKind::Aggregator(_) | StageKind::Sweeps(_) => Output::Tables,
            StageKind::RowSink(_) | StageKind::TableSink(_) | StageKind::ReportSink(_) => {
                Output::Nothing
            }
        }
    }

    /// The stems of the tables a stage hands to tables sinks (`summary` last for an aggregator),
    /// or `None` for a stage that emits rows or nothing.
    pub fn tables(&self) -> Option<Vec<&'static str>> {
        match self {
            StageKind::Aggregator(a) => Some(
                a.group_by
                    .iter()
                    .map(|g| g.table_name())
                    .chain(std::iter::once("summary"))
                    .collect(),
            ),
            StageKind::Sweeps(_) => Some(crate::sweeps::TABLES.to_vec()),
            StageKind::Reader(_)
            | StageKind::Filter(_)
            | StageKind::RowSink(_)
            | StageKind::TableSink(_)
            | StageKind::ReportSink(_) => None,
        }
    }

    /// The folder a sink writes into (for the planner's free-disk figure).
    pub fn output_dir(&self) -> Option<&std::path::Path> {
        match self {
            StageKind::RowSink(r) => Some(&r.path),
            StageKind::TableSink(t) => Some(&t.path),
            StageKind::ReportSink(r) => r.path.parent(),
            StageKind::Reader(_)
            | StageKind::Filter(_)
            | StageKind::Aggregator(_)
            | StageKind::Sweeps(_) => None,
        }
    }

    /// Why `sweep daemon` cannot run this kind, or `None` when it can. The daemon refuses a
    /// pipeline with such a stage at load, so the daemon's own code handles only the kinds
    /// that return `None` here; a new kind is refused until it is given its part in the
    /// daemon's state and shape.
    pub fn daemon_refusal(&self) -> Option<&'static str> {
        match self {
            StageKind::Reader(_)
            | StageKind::Filter(_)
            | StageKind::Aggregator(_)
            | StageKind::RowSink(_)
            | StageKind::TableSink(_) => None,
            StageKind::Sweeps(_) => Some(
                "its per-order state is not kept between files, so an order whose events or \
                 trades arrive in different files would be analysed in pieces. Run it with \
                 `sweep run` over the day's files",
            ),
            StageKind::ReportSink(_) => Some(
                "it renders one finished run's tables and run report, and the daemon never \
                 finishes a run. Render the daemon's output folder with `sweep report FOLDER`",
            ),
        }
    }

    /// Why `sweep run --plan` (one shard of a sharded run) cannot run this kind, or `None` when
    /// it can. A shard hands over mergeable state instead of outputs: aggregators their state,
    /// a sweep analysis its rows by order-id partition (`shard::sweeps`), a rows sink its
    /// batches (`shard::extracts`); tables and report sinks write in the merge. Every kind takes
    /// part today; a new kind must say here how, or be refused until it is given a partial
    /// format and a merge.
    pub fn shard_refusal(&self) -> Option<&'static str> {
        match self {
            StageKind::Reader(_)
            | StageKind::Filter(_)
            | StageKind::Aggregator(_)
            | StageKind::Sweeps(_)
            | StageKind::RowSink(_)
            | StageKind::TableSink(_)
            | StageKind::ReportSink(_) => None,
        }
    }

    /// What the stage is, for metrics and messages.
    pub(crate) fn kind(&self) -> Kind {
        match self {
            StageKind::Reader(_) => Kind::Reader,
            StageKind::Filter(_) => Kind::Filter,
            StageKind::Aggregator(_) => Kind::Aggregator,
            StageKind::Sweeps(_) => Kind::SweepAnalysis,
            StageKind::RowSink(_) => Kind::RowSink,
            StageKind::TableSink(_) => Kind::TableSink,
            StageKind::ReportSink(_) => Kind::ReportSink,
        }
    }

    /// The name people read: "reader", "rows sink"…
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// How this kind starts; each spec type implements [`Start`] in its stage's folder.
    pub(crate) fn starter(&self) -> &dyn Start {
        match self {
            StageKind::Reader(s) => s,
            StageKind::Filter(s) => s,
            StageKind::Aggregator(s) => s,
            StageKind::Sweeps(s) => s,
            StageKind::RowSink(s) => s,
            StageKind::TableSink(s) => s,
            StageKind::ReportSink(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Auto,
    Csv,
    Parquet,
}

impl Choice for InputFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("auto", InputFormat::Auto),
        ("csv", InputFormat::Csv),
        ("parquet", InputFormat::Parquet),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Auto,
    None,
    Gzip,
    Zstd,
}

impl Choice for Compression {
    const ALL: &'static [(&'static str, Self)] = &[
        ("auto", Compression::Auto),
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Reject,
}

impl Choice for FileKind {
    const ALL: &'static [(&'static str, Self)] =
        &[("orders", FileKind::Orders), ("trades", FileKind::Trades)];
}

impl Choice for OnError {
    const ALL: &'static [(&'static str, Self)] =
        &[("fail", OnError::Fail), ("reject", OnError::Reject)];
}

/// The columns a reader must materialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnNeed {
    /// Every column in the file's header (a rows sink writes whole rows), which must include
    /// `required`: the columns filters and aggregators downstream use, in catalogue order.
    All { required: Vec<String> },
    /// Only these canonical columns, in catalogue order.
    Some(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ReaderSpec {
    pub paths: Vec<String>,
    pub format: InputFormat,
    pub compression: Compression,
    pub delimiter: u8,
    /// Canonical name → header name in the file.
    pub columns: BTreeMap<String, String>,
    pub on_error: OnError,
    pub rejects: Option<PathBuf>,
    /// Order events or trades: the catalogue its columns come from. Set by `kind`, or by the
    /// role the reader plays (the `trades` input of a sweep analysis reads trades).
    pub kind: FileKind,
    /// Filled in by the graph check from what downstream stages use.
    pub need: ColumnNeed,
    /// The filters every row of this reader goes through first, by stage index, when each of
    /// its consumers is a filter: a Parquet file's row groups and pages that none of them can
    /// match are skipped (`readers::prune`). Empty when any consumer takes every row. Filled in
    /// by the graph check.
    pub pushdown: Vec<(usize, FilterSpec)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTypeMatch {
    Exact,
    AnyBit,
}

impl Choice for OrderTypeMatch {
    const ALL: &'static [(&'static str, Self)] = &[
        ("exact", OrderTypeMatch::Exact),
        ("any_bit", OrderTypeMatch::AnyBit),
    ];
}

#[derive(Debug, Clone)]
pub struct HoursSpec {
    /// Nanoseconds after local midnight; rows with `start <= t < end` are kept.
    pub start: i64,
    pub end: i64,
    pub zone: Zone,
}

#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub order_types: Option<(OrderTypeMatch, Vec<u32>)>,
    pub securities: Option<Vec<u32>>,
    pub participants: Option<Vec<u32>>,
    /// Inclusive local day numbers (days since 1970-01-01); either end may be open.
    pub dates: Option<(Option<i32>, Option<i32>)>,
    pub date_zone: Zone,
    pub hours: Option<HoursSpec>,
}

impl FilterSpec {
    pub(crate) fn columns(&self) -> Vec<&'static str> {
        use crate::schema::col;
        let mut c = Vec::new();
        if self.order_types.is_some() {
            c.push(col::ORDER_TYPE);
        }
        if self.securities.is_some() {
            c.push(col::SECURITY);
        }
        if self.participants.is_some() {
            c.push(col::PARTICIPANT);
        }
        if self.dates.is_some() || self.hours.is_some() {
            c.push(col::TIMESTAMP);
        }
        c
    }
}

/// What to aggregate: the tables wanted (summary is always produced), the zone that local dates
/// and hours are taken in, and the quantity quantiles to add as columns.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatorSpec {
    pub group_by: Vec<Grouping>,
    pub zone: Zone,
    /// Quantiles in (0, 1]; each adds a `quantity_p<percent>` column.
    pub quantiles: Vec<f64>,
}

impl AggregatorSpec {
    /// The standard job: every table, Australia/Sydney, no quantiles.
    pub fn standard() -> Self {
        AggregatorSpec {
            group_by: Grouping::all(),
            zone: Zone::default(),
            quantiles: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Parquet,
    Json,
}

impl Choice for TableFormat {
    const ALL: &'static [(&'static str, Self)] = &[
        ("csv", TableFormat::Csv),
        ("parquet", TableFormat::Parquet),
        ("json", TableFormat::Json),
    ];
}

#[derive(Debug, Clone)]
pub struct TableSinkSpec {
    pub path: PathBuf,
    pub formats: Vec<TableFormat>,
}

/// A sink of tables that renders them, with the run report, as one self-contained HTML page.
#[derive(Debug, Clone)]
pub struct ReportSinkSpec {
    /// The page's file.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RowSinkSpec {
    pub path: PathBuf,
    pub format: RowFormat,
    pub partition_by: Vec<PartitionKey>,
    pub columns: Option<Vec<String>>,
    pub compression_level: Option<i32>,
    pub max_open_files: usize,
    pub zone: Zone,
    pub pause_per_batch: Duration,
    /// Sort the rows (by date partition, security, timestamp, sequence) in bounded memory.
    pub sort: Option<SortSpec>,
    /// Parquet: rows per row group, or row groups cut by their size in memory.
    pub row_group_rows: Option<usize>,
}

/// The rows sink's external sort.
#[derive(Debug, Clone)]
pub struct SortSpec {
    /// Bytes of rows held before a sorted run is spilled.
    pub memory_budget: usize,
    /// Where the runs are spilled (in a hidden folder removed at the end).
    pub spill_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Bar,
    Log,
    Off,
}

impl Choice for ProgressMode {
    const ALL: &'static [(&'static str, Self)] = &[
        ("auto", ProgressMode::Auto),
        ("bar", ProgressMode::Bar),
        ("log", ProgressMode::Log),
        ("off", ProgressMode::Off),
    ];
}

#[derive(Debug, Clone)]
pub struct MonitorSpec {
    pub report: Option<PathBuf>,
    pub progress: ProgressMode,
    pub log_interval: Duration,
    pub prometheus: Option<std::net::SocketAddr>,
    pub hold: Duration,
}

/// When a followed file counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Settle,
    Marker,
    Rename,
}

impl Choice for Completion {
    const ALL: &'static [(&'static str, Self)] = &[
        ("settle", Completion::Settle),
        ("marker", Completion::Marker),
        ("rename", Completion::Rename),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    Auto,
    Poll,
}

impl Choice for WatchMode {
    const ALL: &'static [(&'static str, Self)] =
        &[("auto", WatchMode::Auto), ("poll", WatchMode::Poll)];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedFiles {
    Skip,
    Ingest,
}

impl Choice for ChangedFiles {
    const ALL: &'static [(&'static str, Self)] = &[
        ("skip", ChangedFiles::Skip),
        ("ingest", ChangedFiles::Ingest),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFiles {
    Quarantine,
    Skip,
}

impl Choice for BadFiles {
    const ALL: &'static [(&'static str, Self)] = &[
        ("quarantine", BadFiles::Quarantine),
        ("skip", BadFiles::Skip),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSpec {
    pub state: PathBuf,
    pub complete: Completion,
    pub settle: Duration,
    pub watch: WatchMode,
    pub poll: Duration,
    pub outputs_interval: Duration,
    pub changed_files: ChangedFiles,
    pub bad_files: BadFiles,
    pub quarantine: PathBuf,
    pub shutdown_timeout: Duration,
    /// `[daemon.nats]`, when the daemon shares its work through a bus.
    pub nats: Option<crate::daemon::nats::NatsSpec>,
}

/// `"127.0.0.1:9898"`, `"[::1]:9898"`, `":9898"` or `"9898"` (the last two bind loopback).
pub(crate) fn parse_listen(s: &str) -> Option<std::net::SocketAddr> {
    let t = s.trim();
    if let Ok(a) = t.parse() {
        return Some(a);
    }
    let port: u16 = t.strip_prefix(':').unwrap_or(t).parse().ok()?;
    Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}
