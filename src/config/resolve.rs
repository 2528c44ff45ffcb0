//! From the file's sections to a checked plan: every value parsed into its typed form and every
//! problem recorded with its span, then the stage graph checked as a whole (see `graph`). The
//! settings shared by the whole pipeline are resolved here; each stage section's in `stages`.

use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;

use super::choice::Choice;
use super::model::{self, Workers};
use super::spec::*;
use super::stages::{reader, sink, sweeps};
use super::{ConfigError, Named, RawPipeline, graph};
use crate::sinks::format::RowFormat;
use crate::time::{self, Zone};

/// Collects errors while turning spanned raw values into typed ones.
pub(crate) struct Ctx<'e> {
    pub(crate) errors: &'e mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(crate) fn err(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) {
        self.errors.push(ConfigError::at(span, msg));
    }

    pub(crate) fn zone(&mut self, z: &Option<Spanned<String>>) -> Zone {
        match z {
            None => Zone::default(),
            Some(s) => s.get_ref().parse().unwrap_or_else(|e: time::TimeError| {
                self.err(s.span(), e.to_string());
                Zone::default()
            }),
        }
    }

    /// The value `v` names, or `default` when absent. A name that is none of `T`'s is an error
    /// listing them.
    pub(crate) fn choice<T: Choice>(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        T::from_name(v.get_ref()).unwrap_or_else(|| {
            self.err(
                v.span(),
                format!(
                    "`{key}` is \"{}\"; expected one of {}",
                    v.get_ref(),
                    T::expected()
                ),
            );
            default
        })
    }

    /// One element of a list of choices, e.g. a grouping of `group_by`; `what` names the kind
    /// in the message. `None` (and an error) when it names none.
    pub(crate) fn pick<T: Choice>(&mut self, v: &Spanned<String>, what: &str) -> Option<T> {
        let picked = T::from_name(v.get_ref());
        if picked.is_none() {
            self.err(
                v.span(),
                format!(
                    "unknown {what} \"{}\"; expected one of {}",
                    v.get_ref(),
                    T::expected()
                ),
            );
        }
        picked
    }

    /// The value when it lies within `range`; a value outside it is an error. `None` when absent
    /// or out of range.
    pub(crate) fn within<T: Copy + PartialOrd + std::fmt::Display>(
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
    pub(crate) fn count(
        &mut self,
        v: &Option<Spanned<u64>>,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
        default: usize,
    ) -> usize {
        self.within(v, key, range).map_or(default, |n| n as usize)
    }

    /// Seconds within `range`, or `default` when absent (or out of range, which is an error).
    pub(crate) fn secs(
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

    pub(crate) fn names(v: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<Spanned<String>> {
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
    for s in &raw.sections {
        match &s.config {
            Some(c) => nodes.push(graph::Node::new(
                &s.name,
                &s.span,
                c.inputs(),
                c.resolve(&mut cx),
            )),
            None => broken.push((s.name.clone(), s.emits)),
        }
    }
    for Named { name, span, config } in &raw.sweeps {
        match config {
            Some(c) => nodes.push(graph::Node::new(
                name,
                span,
                vec![c.orders.clone(), c.trades.clone()],
                StageKind::Sweeps(sweeps(&mut cx, c)),
            )),
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
    let stages = roles(stages, &raw, cx.errors);
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
        complete: cx.choice(&d.complete, "complete", Completion::Settle),
        settle: cx.secs(
            &d.settle_secs,
            "settle_secs",
            0.0..=3600.0,
            Duration::from_secs(2),
        ),
        watch: cx.choice(&d.watch, "watch", WatchMode::Auto),
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
        changed_files: cx.choice(&d.changed_files, "changed_files", ChangedFiles::Skip),
        bad_files: cx.choice(&d.bad_files, "bad_files", BadFiles::Quarantine),
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
        nats: d.nats.as_ref().map(|n| crate::daemon::nats::resolve(cx, n)),
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
        sort: None,
        row_group_rows: None,
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
    let progress = cx.choice(&m.progress, "progress", ProgressMode::Auto);
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

/// Settles what each input of a sweep analysis is: its `orders` input must carry order events
/// (a reader of order files, or a filter over one) and its `trades` input must be a reader of
/// trades, which thereby reads trades. A reader told `kind = "orders"` cannot be the trades
/// input, nor one told `kind = "trades"` feed the orders input.
fn roles(mut stages: Vec<Stage>, raw: &RawPipeline, errors: &mut Vec<ConfigError>) -> Vec<Stage> {
    let index = |name: &str| stages.iter().position(|s| s.name == name);
    let reader_kind_span = |name: &str| {
        raw.readers
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.config.as_ref())
            .and_then(|c| c.kind.as_ref())
            .map(|k| k.span())
    };
    let mut trades_readers = Vec::new();
    let mut settled = Vec::new();
    for Named { name, config, .. } in &raw.sweeps {
        let (Some(c), Some(at)) = (config, index(name)) else {
            continue;
        };
        let (Some(o), Some(t)) = (index(c.orders.get_ref()), index(c.trades.get_ref())) else {
            // An unknown input is already reported by the graph check.
            continue;
        };
        match &stages[t].kind {
            StageKind::Reader(r)
                if r.kind == crate::schema::FileKind::Orders
                    && reader_kind_span(&stages[t].name).is_some() =>
            {
                errors.push(ConfigError::at(
                    c.trades.span(),
                    format!(
                        "`trades` names reader `{}`, which says `kind = \"orders\"`",
                        stages[t].name
                    ),
                ));
            }
            StageKind::Reader(_) => trades_readers.push(t),
            other => errors.push(ConfigError::at(
                c.trades.span(),
                format!(
                    "`trades` must name a reader of trade files, not the {} `{}`",
                    other.label(),
                    stages[t].name
                ),
            )),
        }
        // The orders input and everything above it must carry order events.
        let mut stack = vec![o];
        while let Some(i) = stack.pop() {
            match &stages[i].kind {
                StageKind::Reader(r) if r.kind == crate::schema::FileKind::Trades => {
                    errors.push(ConfigError::at(
                        c.orders.span(),
                        format!(
                            "`orders` reads from reader `{}`, which reads trades",
                            stages[i].name
                        ),
                    ))
                }
                StageKind::Reader(_) => {}
                StageKind::Filter(_) => stack.extend(stages[i].inputs.iter().copied()),
                other => errors.push(ConfigError::at(
                    c.orders.span(),
                    format!(
                        "`orders` must name a reader of order files or a filter over one, not the {} `{}`",
                        other.label(),
                        stages[i].name
                    ),
                )),
            }
        }
        if o == t {
            errors.push(ConfigError::at(
                c.trades.span(),
                "`orders` and `trades` name the same stage; they are two different files",
            ));
        }
        settled.push((at, o, t));
    }
    for t in trades_readers {
        if let StageKind::Reader(r) = &mut stages[t].kind {
            r.kind = crate::schema::FileKind::Trades;
        }
    }
    for (at, o, t) in settled {
        if let StageKind::Sweeps(s) = &mut stages[at].kind {
            s.orders = o;
            s.trades = t;
        }
    }
    stages
}
