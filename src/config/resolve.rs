//! From the file's sections to a checked plan: every value parsed into its typed form and every
//! problem recorded with its span, then the stage graph checked as a whole (see `graph`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;

use super::model::{self, Workers};
use super::{ConfigError, Named, RawPipeline, graph};
use crate::aggregators::Grouping;
use crate::flow::{Kind, Start};
use crate::sinks::format::{PartitionKey, RowFormat};
use crate::time::{self, HOUR_NS, Zone};

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
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSpec {
    /// `None` means one worker per core, decided at build time.
    pub workers: Option<usize>,
    pub block_bytes: usize,
    pub edge_capacity: usize,
}

pub const DEFAULT_BLOCK_BYTES: usize = 1 << 20;
pub const DEFAULT_EDGE_CAPACITY: usize = 8;

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
    RowSink(RowSinkSpec),
    TableSink(TableSinkSpec),
}

/// What a stage emits, for checking that edges connect compatible stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Rows,
    Tables,
    Nothing,
}

impl StageKind {
    pub fn output(&self) -> Output {
        match self {
            StageKind::Reader(_) | StageKind::Filter(_) => Output::Rows,
            StageKind::Aggregator(_) => Output::Tables,
            StageKind::RowSink(_) | StageKind::TableSink(_) => Output::Nothing,
        }
    }

    /// What the stage is, for metrics and messages.
    pub fn kind(&self) -> Kind {
        match self {
            StageKind::Reader(_) => Kind::Reader,
            StageKind::Filter(_) => Kind::Filter,
            StageKind::Aggregator(_) => Kind::Aggregator,
            StageKind::RowSink(_) => Kind::RowSink,
            StageKind::TableSink(_) => Kind::TableSink,
        }
    }

    /// The name people read: "reader", "rows sink"…
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// How this kind starts; each spec type implements [`Start`] in its stage's folder.
    pub fn starter(&self) -> &dyn Start {
        match self {
            StageKind::Reader(s) => s,
            StageKind::Filter(s) => s,
            StageKind::Aggregator(s) => s,
            StageKind::RowSink(s) => s,
            StageKind::TableSink(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Auto,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Auto,
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Reject,
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
    /// Filled in by the graph check from what downstream stages use.
    pub need: ColumnNeed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTypeMatch {
    Exact,
    AnyBit,
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
    pub fn columns(&self) -> Vec<&'static str> {
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
            group_by: Grouping::ALL.to_vec(),
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

#[derive(Debug, Clone)]
pub struct TableSinkSpec {
    pub path: PathBuf,
    pub formats: Vec<TableFormat>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Bar,
    Log,
    Off,
}

#[derive(Debug, Clone)]
pub struct MonitorSpec {
    pub report: Option<PathBuf>,
    pub progress: ProgressMode,
    pub log_interval: Duration,
    pub prometheus: Option<std::net::SocketAddr>,
    pub hold: Duration,
}

/// `"127.0.0.1:9898"`, `"[::1]:9898"`, `":9898"` or `"9898"` (the last two bind loopback).
/// When a followed file counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Settle,
    Marker,
    Rename,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    Auto,
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedFiles {
    Skip,
    Ingest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFiles {
    Quarantine,
    Skip,
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
}

pub fn parse_listen(s: &str) -> Option<std::net::SocketAddr> {
    let t = s.trim();
    if let Ok(a) = t.parse() {
        return Some(a);
    }
    let port: u16 = t.strip_prefix(':').unwrap_or(t).parse().ok()?;
    Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Collects errors while turning spanned raw values into typed ones.
struct Ctx<'e> {
    errors: &'e mut Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(span, msg));
    }

    fn zone(&mut self, z: &Option<Spanned<String>>) -> Zone {
        match z {
            None => Zone::default(),
            Some(s) => s.get_ref().parse().unwrap_or_else(|e: time::TimeError| {
                self.err(s.span(), e.to_string());
                Zone::default()
            }),
        }
    }

    fn choice<T: Copy>(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: T,
        options: &[(&str, T)],
    ) -> T {
        let Some(v) = v else { return default };
        match options.iter().find(|(n, _)| *n == v.get_ref()) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                self.err(
                    v.span(),
                    format!(
                        "`{key}` is \"{}\"; expected one of {}",
                        v.get_ref(),
                        names.join(", ")
                    ),
                );
                default
            }
        }
    }

    /// The value when it lies within `range`; a value outside it is an error. `None` when absent
    /// or out of range.
    fn within<T: Copy + PartialOrd + std::fmt::Display>(
        &mut self,
        v: &Option<Spanned<T>>,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Option<T> {
        let n = v.as_ref()?;
        let x = *n.get_ref();
        if range.contains(&x) {
            return Some(x);
        }
        self.err(
            n.span(),
            format!(
                "{key} must be between {} and {}, not {x}",
                range.start(),
                range.end()
            ),
        );
        None
    }

    /// A count within `range`, or `default` when absent (or out of range, which is an error).
    fn count(
        &mut self,
        v: &Option<Spanned<u64>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: usize,
    ) -> usize {
        self.within(v, key, range).map_or(default, |n| n as usize)
    }

    /// Seconds within `range`, or `default` when absent (or out of range, which is an error).
    fn secs(
        &mut self,
        v: &Option<Spanned<f64>>,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
        default: Duration,
    ) -> Duration {
        // A NaN is in no range, and infinities are outside every finite one.
        self.within(v, key, range)
            .map_or(default, Duration::from_secs_f64)
    }

    fn names(v: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<Spanned<String>> {
        v.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default()
    }
}

pub(super) fn resolve(raw: RawPipeline, errors: &mut Vec<ConfigError>) -> Pipeline {
    let mut cx = Ctx { errors };
    let name = raw
        .name
        .as_ref()
        .map_or_else(|| "pipeline".to_string(), |n| n.get_ref().clone());
    let runtime = runtime(&mut cx, &raw.runtime);
    let monitor = monitor(&mut cx, &raw.monitor);
    let daemon = raw.daemon.as_ref().map(|d| daemon(&mut cx, d));

    let mut nodes: Vec<graph::Node> = Vec::new();
    let mut broken: Vec<(String, Output)> = Vec::new();
    for Named { name, span, config } in &raw.readers {
        match config {
            Some(c) => nodes.push(graph::Node::new(
                name,
                span,
                Vec::new(),
                StageKind::Reader(reader(&mut cx, c)),
            )),
            None => broken.push((name.clone(), Output::Rows)),
        }
    }
    for Named { name, span, config } in &raw.filters {
        match config {
            Some(c) => {
                let kind = StageKind::Filter(filter(&mut cx, c));
                nodes.push(graph::Node::new(
                    name,
                    span,
                    c.inputs.get_ref().clone(),
                    kind,
                ));
            }
            None => broken.push((name.clone(), Output::Rows)),
        }
    }
    for Named { name, span, config } in &raw.aggregators {
        match config {
            Some(c) => {
                let kind = StageKind::Aggregator(aggregator(&mut cx, c));
                nodes.push(graph::Node::new(
                    name,
                    span,
                    c.inputs.get_ref().clone(),
                    kind,
                ));
            }
            None => broken.push((name.clone(), Output::Tables)),
        }
    }
    for Named { name, span, config } in &raw.sinks {
        match config {
            Some(c) => {
                // The kind (rows or tables) depends on the inputs; settled by the graph check.
                let mut node = graph::Node::new(
                    name,
                    span,
                    c.inputs.get_ref().clone(),
                    StageKind::RowSink(placeholder_sink()),
                );
                node.sink = Some(c.clone());
                nodes.push(node);
            }
            None => broken.push((name.clone(), Output::Nothing)),
        }
    }
    let stages = graph::check(nodes, &broken, cx.errors, |cfg, rows, errs| {
        let mut cx = Ctx { errors: errs };
        sink(&mut cx, cfg, rows)
    });
    let pipeline = Pipeline {
        name,
        runtime,
        stages,
        monitor,
        daemon,
    };
    let claims = super::outputs::claims(&pipeline, &output_spans(&raw));
    super::outputs::check_lexical(&pipeline, &claims, cx.errors);
    pipeline
}

/// Where the pipeline text names each output path, for messages about outputs.
fn output_spans(raw: &RawPipeline) -> super::outputs::OutputSpans {
    let mut spans = super::outputs::OutputSpans::default();
    for n in &raw.readers {
        if let Some(r) = n.config.as_ref().and_then(|c| c.rejects.as_ref()) {
            spans.stages.push((n.name.clone(), r.span()));
        }
    }
    for n in &raw.sinks {
        if let Some(c) = &n.config {
            spans.stages.push((n.name.clone(), c.path.span()));
        }
    }
    spans.report = raw.monitor.report.as_ref().map(|r| r.span());
    spans.state = raw.daemon.as_ref().map(|d| d.state.span());
    spans
}

fn daemon(cx: &mut Ctx, d: &model::DaemonConfig) -> DaemonSpec {
    let state = PathBuf::from(d.state.get_ref());
    if d.state.get_ref().trim().is_empty() {
        cx.err(
            d.state.span(),
            "`state` is empty; name the daemon's state folder",
        );
    }
    DaemonSpec {
        complete: cx.choice(
            &d.complete,
            "complete",
            Completion::Settle,
            &[
                ("settle", Completion::Settle),
                ("marker", Completion::Marker),
                ("rename", Completion::Rename),
            ],
        ),
        settle: cx.secs(
            &d.settle_secs,
            "settle_secs",
            0.0..=3600.0,
            Duration::from_secs(2),
        ),
        watch: cx.choice(
            &d.watch,
            "watch",
            WatchMode::Auto,
            &[("auto", WatchMode::Auto), ("poll", WatchMode::Poll)],
        ),
        poll: cx.secs(
            &d.poll_secs,
            "poll_secs",
            0.05..=3600.0,
            Duration::from_secs(1),
        ),
        outputs_interval: cx.secs(
            &d.outputs_interval_secs,
            "outputs_interval_secs",
            0.0..=86400.0,
            Duration::from_secs(1),
        ),
        changed_files: cx.choice(
            &d.changed_files,
            "changed_files",
            ChangedFiles::Skip,
            &[
                ("skip", ChangedFiles::Skip),
                ("ingest", ChangedFiles::Ingest),
            ],
        ),
        bad_files: cx.choice(
            &d.bad_files,
            "bad_files",
            BadFiles::Quarantine,
            &[
                ("quarantine", BadFiles::Quarantine),
                ("skip", BadFiles::Skip),
            ],
        ),
        quarantine: d
            .quarantine
            .as_ref()
            .map_or_else(|| state.join("quarantine"), |q| PathBuf::from(q.get_ref())),
        shutdown_timeout: cx.secs(
            &d.shutdown_timeout_secs,
            "shutdown_timeout_secs",
            0.0..=86400.0,
            Duration::from_secs(30),
        ),
        state,
    }
}

fn placeholder_sink() -> RowSinkSpec {
    RowSinkSpec {
        path: PathBuf::new(),
        format: RowFormat::Csv,
        partition_by: Vec::new(),
        columns: None,
        compression_level: None,
        max_open_files: 64,
        zone: Zone::default(),
        pause_per_batch: Duration::ZERO,
    }
}

fn runtime(cx: &mut Ctx, r: &model::RuntimeConfig) -> RuntimeSpec {
    let workers = r.workers.as_ref().and_then(|w| match w.get_ref() {
        Workers::Auto => None,
        Workers::Count(n) => {
            Some(cx.count(&Some(Spanned::new(w.span(), *n)), "workers", 1..=1024, 1))
        }
    });
    RuntimeSpec {
        workers,
        block_bytes: cx.count(
            &r.block_bytes,
            "block_bytes",
            4096..=(256 << 20),
            DEFAULT_BLOCK_BYTES,
        ),
        edge_capacity: cx.count(
            &r.edge_capacity,
            "edge_capacity",
            1..=1024,
            DEFAULT_EDGE_CAPACITY,
        ),
    }
}

fn monitor(cx: &mut Ctx, m: &model::MonitorConfig) -> MonitorSpec {
    let progress = cx.choice(
        &m.progress,
        "progress",
        ProgressMode::Auto,
        &[
            ("auto", ProgressMode::Auto),
            ("bar", ProgressMode::Bar),
            ("log", ProgressMode::Log),
            ("off", ProgressMode::Off),
        ],
    );
    let log_interval = cx.secs(
        &m.log_interval_secs,
        "log_interval_secs",
        0.1..=86400.0,
        Duration::from_secs(5),
    );
    let prometheus = m.prometheus.as_ref().and_then(|p| {
        let addr = parse_listen(p.get_ref());
        if addr.is_none() {
            cx.err(
                p.span(),
                format!(
                    "`prometheus` is \"{}\"; expected an address like \"127.0.0.1:9898\" or a port",
                    p.get_ref()
                ),
            );
        }
        addr
    });
    let hold = cx.secs(&m.hold_secs, "hold_secs", 0.0..=3600.0, Duration::ZERO);
    MonitorSpec {
        report: m.report.as_ref().map(|p| PathBuf::from(p.get_ref())),
        progress,
        log_interval,
        prometheus,
        hold,
    }
}

fn reader(cx: &mut Ctx, r: &model::ReaderConfig) -> ReaderSpec {
    let paths = r.path.get_ref().list();
    if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
        cx.err(r.path.span(), "`path` must name a file, folder or glob");
    }
    let format = cx.choice(
        &r.format,
        "format",
        InputFormat::Auto,
        &[
            ("auto", InputFormat::Auto),
            ("csv", InputFormat::Csv),
            ("parquet", InputFormat::Parquet),
        ],
    );
    let compression = cx.choice(
        &r.compression,
        "compression",
        Compression::Auto,
        &[
            ("auto", Compression::Auto),
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("zstd", Compression::Zstd),
        ],
    );
    let delimiter = match &r.delimiter {
        None => b',',
        Some(d) => match d.get_ref().as_bytes() {
            [b] if b.is_ascii() && *b != b'"' && *b != b'\n' && *b != b'\r' => *b,
            _ => {
                cx.err(
                    d.span(),
                    "`delimiter` must be one ASCII character other than a quote or line end",
                );
                b','
            }
        },
    };
    let on_error = cx.choice(
        &r.on_error,
        "on_error",
        OnError::Fail,
        &[("fail", OnError::Fail), ("reject", OnError::Reject)],
    );
    if on_error == OnError::Reject && r.rejects.is_none() {
        let span = r.on_error.as_ref().map_or(r.path.span(), |s| s.span());
        cx.err(span, "`on_error = \"reject\"` needs `rejects = \"PATH\"`, the file rejected rows are written to");
    }
    let mut columns = BTreeMap::new();
    for (canon, raw) in &r.columns {
        if raw.get_ref().trim().is_empty() {
            cx.err(
                raw.span(),
                format!("column `{canon}` is mapped to an empty name"),
            );
        }
        columns.insert(canon.clone(), raw.get_ref().trim().to_string());
    }
    ReaderSpec {
        paths,
        format,
        compression,
        delimiter,
        columns,
        on_error,
        rejects: r.rejects.as_ref().map(|p| PathBuf::from(p.get_ref())),
        need: ColumnNeed::Some(Vec::new()),
    }
}

fn filter(cx: &mut Ctx, f: &model::FilterConfig) -> FilterSpec {
    let mode = cx.choice(
        &f.order_type_match,
        "order_type_match",
        OrderTypeMatch::Exact,
        &[
            ("exact", OrderTypeMatch::Exact),
            ("any_bit", OrderTypeMatch::AnyBit),
        ],
    );
    let order_types = f.exchange_order_types.as_ref().map(|t| {
        if t.get_ref().is_empty() {
            cx.err(
                t.span(),
                "`exchange_order_types` is empty, so nothing would be kept",
            );
        }
        (mode, t.get_ref().clone())
    });
    if f.exchange_order_types.is_none() && f.order_type_match.is_some() {
        let s = f.order_type_match.as_ref().map_or(0..0, |s| s.span());
        cx.err(s, "`order_type_match` needs `exchange_order_types`");
    }
    let date_zone = cx.zone(&f.timezone);
    let dates = f.dates.as_ref().map(|d| {
        let day = |cx: &mut Ctx, v: &Option<Spanned<String>>| {
            v.as_ref().and_then(|v| {
                time::parse_day(v.get_ref())
                    .map_err(|e| cx.err(v.span(), e.to_string()))
                    .ok()
            })
        };
        let from = day(cx, &d.get_ref().from);
        let to = day(cx, &d.get_ref().to);
        if let (Some(a), Some(b)) = (from, to)
            && a > b
        {
            cx.err(d.span(), "`dates`: `from` is after `to`");
        }
        if d.get_ref().from.is_none() && d.get_ref().to.is_none() {
            cx.err(d.span(), "`dates` needs `from`, `to` or both");
        }
        (from, to)
    });
    let hours = f.trading_hours.as_ref().map(|h| {
        let th = h.get_ref();
        let tod = |cx: &mut Ctx, v: &Spanned<String>| {
            time::parse_time_of_day(v.get_ref())
                .map_err(|e| cx.err(v.span(), e.to_string()))
                .ok()
        };
        let (start, end) = (tod(cx, &th.start), tod(cx, &th.end));
        let parsed = start.is_some() && end.is_some();
        let (start, mut end) = (start.unwrap_or(0), end.unwrap_or(time::DAY_NS));
        let zone = if th.legacy_seed {
            if let Some(z) = &th.timezone
                && !matches!(z.get_ref().parse::<Zone>(), Ok(Zone::Fixed(_)))
            {
                cx.err(z.span(), "`legacy_seed` reproduces the seed's fixed offset; give a fixed offset like \"+10:00\" or leave `timezone` out");
            }
            match &th.timezone {
                Some(z) => z.get_ref().parse().unwrap_or(Zone::Fixed(10 * 3600)),
                None => Zone::Fixed(10 * 3600),
            }
        } else {
            match &th.timezone {
                Some(_) => cx.zone(&th.timezone),
                None => date_zone,
            }
        };
        if th.legacy_seed {
            if start % HOUR_NS != 0 || end % HOUR_NS != 0 {
                cx.err(h.span(), "`legacy_seed` compares whole hours; `start` and `end` must be on the hour");
            }
            // The seed kept `hour <= end`, i.e. up to the end of the end hour.
            end += HOUR_NS;
        }
        if parsed && start >= end {
            cx.err(h.span(), "`trading_hours`: `start` must be before `end`");
        }
        HoursSpec { start, end, zone }
    });
    FilterSpec {
        order_types,
        securities: f.securities.as_ref().map(|s| s.get_ref().clone()),
        participants: f.participants.as_ref().map(|s| s.get_ref().clone()),
        dates,
        date_zone,
        hours,
    }
}

fn aggregator(cx: &mut Ctx, a: &model::AggregatorConfig) -> AggregatorSpec {
    let mut group_by = Vec::new();
    match &a.group_by {
        None => group_by.extend(Grouping::ALL),
        Some(list) => {
            for g in list.get_ref() {
                match g.get_ref().parse::<Grouping>() {
                    Err(_) => {
                        let names: Vec<&str> = Grouping::ALL.iter().map(|g| g.name()).collect();
                        cx.err(
                            g.span(),
                            format!(
                                "unknown grouping \"{}\"; expected one of {}",
                                g.get_ref(),
                                names.join(", ")
                            ),
                        );
                    }
                    Ok(k) if group_by.contains(&k) => cx.err(
                        g.span(),
                        format!("grouping \"{}\" is listed twice", g.get_ref()),
                    ),
                    Ok(k) => group_by.push(k),
                }
            }
        }
    }
    let mut quantiles = Vec::new();
    for q in a
        .quantiles
        .as_ref()
        .map(|q| q.get_ref().as_slice())
        .unwrap_or_default()
    {
        let v = *q.get_ref();
        if v > 0.0 && v <= 1.0 {
            quantiles.push(v);
        } else {
            cx.err(q.span(), format!("quantile {v} is outside (0, 1]"));
        }
    }
    AggregatorSpec {
        group_by,
        zone: cx.zone(&a.timezone),
        quantiles,
    }
}

/// Builds a sink's spec once the graph has told whether it receives rows or tables.
fn sink(cx: &mut Ctx, s: &model::SinkConfig, rows: bool) -> StageKind {
    let path = PathBuf::from(s.path.get_ref());
    if s.path.get_ref().trim().is_empty() {
        cx.err(s.path.span(), "`path` is empty");
    }
    let only = |cx: &mut Ctx, present: Option<std::ops::Range<usize>>, key: &str, kind: &str| {
        if let Some(span) = present {
            cx.err(
                span,
                format!("`{key}` applies only to a sink that receives {kind}"),
            );
        }
    };
    if rows {
        only(
            cx,
            s.formats.as_ref().map(|v| v.span()),
            "formats",
            "tables from an aggregator",
        );
        let format = match &s.format {
            Some(f) => RowFormat::from_path(format!("x.{}", f.get_ref())).unwrap_or_else(|_| {
                cx.err(
                    f.span(),
                    format!(
                        "unknown rows format \"{}\"; expected csv, csv.gz, csv.zst or parquet",
                        f.get_ref()
                    ),
                );
                RowFormat::Csv
            }),
            None => {
                let partitioned = s
                    .partition_by
                    .as_ref()
                    .is_some_and(|p| !p.get_ref().is_empty());
                match RowFormat::from_path(s.path.get_ref()) {
                    Ok(f) => f,
                    Err(_) if partitioned => RowFormat::Csv,
                    Err(_) => {
                        cx.err(s.path.span(), "cannot tell the rows format from the extension; use .csv, .csv.gz, .csv.zst or .parquet, or set `format`");
                        RowFormat::Csv
                    }
                }
            }
        };
        let mut partition_by = Vec::new();
        for p in Ctx::names(&s.partition_by) {
            match p.get_ref().parse::<PartitionKey>() {
                Ok(k) if partition_by.contains(&k) => {
                    cx.err(p.span(), format!("\"{}\" is listed twice", p.get_ref()))
                }
                Ok(k) => partition_by.push(k),
                Err(_) => cx.err(
                    p.span(),
                    format!(
                        "cannot partition by \"{}\"; use \"security_code\" and/or \"date\"",
                        p.get_ref()
                    ),
                ),
            }
        }
        let max_open_files = cx.count(&s.max_open_files, "max_open_files", 1..=4096, 64);
        // The format's own range, the one the writer checks: `csv.gz` takes 0 to 9.
        let compression_level = match format.level_range() {
            Some(range) => cx.within(&s.compression_level, "compression_level", range),
            None => {
                if let Some(l) = &s.compression_level {
                    cx.err(
                        l.span(),
                        format!(
                            "compression_level does not apply to {format}, which is not compressed"
                        ),
                    );
                }
                None
            }
        };
        StageKind::RowSink(RowSinkSpec {
            path,
            format,
            partition_by,
            columns: s
                .columns
                .as_ref()
                .map(|c| c.get_ref().iter().map(|c| c.get_ref().clone()).collect()),
            compression_level,
            max_open_files,
            zone: cx.zone(&s.timezone),
            pause_per_batch: Duration::from_millis(
                s.pause_per_batch_ms.as_ref().map_or(0, |p| *p.get_ref()),
            ),
        })
    } else {
        let kind = "rows from a reader or filter";
        only(cx, s.format.as_ref().map(|v| v.span()), "format", kind);
        only(
            cx,
            s.partition_by.as_ref().map(|v| v.span()),
            "partition_by",
            kind,
        );
        only(cx, s.columns.as_ref().map(|v| v.span()), "columns", kind);
        only(
            cx,
            s.compression_level.as_ref().map(|v| v.span()),
            "compression_level",
            kind,
        );
        only(
            cx,
            s.max_open_files.as_ref().map(|v| v.span()),
            "max_open_files",
            kind,
        );
        only(cx, s.timezone.as_ref().map(|v| v.span()), "timezone", kind);
        only(
            cx,
            s.pause_per_batch_ms.as_ref().map(|v| v.span()),
            "pause_per_batch_ms",
            kind,
        );
        let mut formats = Vec::new();
        for f in Ctx::names(&s.formats) {
            let t = match f.get_ref().as_str() {
                "csv" => TableFormat::Csv,
                "parquet" => TableFormat::Parquet,
                "json" => TableFormat::Json,
                other => {
                    cx.err(
                        f.span(),
                        format!("unknown table format \"{other}\"; expected csv, parquet or json"),
                    );
                    continue;
                }
            };
            if !formats.contains(&t) {
                formats.push(t);
            }
        }
        if formats.is_empty() && s.formats.is_none() {
            formats.push(TableFormat::Csv);
        }
        if formats.is_empty() {
            cx.err(
                s.formats.as_ref().map_or(0..0, |f| f.span()),
                "`formats` is empty",
            );
        }
        StageKind::TableSink(TableSinkSpec { path, formats })
    }
}
