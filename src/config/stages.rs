//! Each stage section's settings, from spanned raw values to typed specs: readers, filters,
//! aggregators and sinks (whose kind, rows or tables, the graph check settles from its inputs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;

use super::choice::Choice;
use super::model;
use super::resolve::Ctx;
use super::spec::*;
use crate::aggregators::Grouping;
use crate::schema::FileKind;
use crate::sinks::format::{PartitionKey, RowFormat};
use crate::time::{self, HOUR_NS, Zone};

pub(super) fn reader(cx: &mut Ctx, r: &model::ReaderConfig) -> ReaderSpec {
    let paths = r.path.get_ref().list();
    if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
        cx.err(r.path.span(), "`path` must name a file, folder or glob");
    }
    let format = cx.choice(&r.format, "format", InputFormat::Auto);
    let compression = cx.choice(&r.compression, "compression", Compression::Auto);
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
    let on_error = cx.choice(&r.on_error, "on_error", OnError::Fail);
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
    let kind = cx.choice(&r.kind, "kind", FileKind::Orders);
    ReaderSpec {
        paths,
        format,
        compression,
        delimiter,
        columns,
        on_error,
        rejects: r.rejects.as_ref().map(|p| PathBuf::from(p.get_ref())),
        kind,
        need: ColumnNeed::Some(Vec::new()),
        pushdown: Vec::new(),
    }
}

/// A sweep analysis; its inputs are `[orders, trades]`, whose roles `resolve::roles` checks.
pub(super) fn sweeps(cx: &mut Ctx, s: &crate::sweeps::SweepsConfig) -> SweepsSpec {
    SweepsSpec {
        zone: cx.zone(&s.timezone),
        memory_budget: cx.count(&s.memory_budget_mib, "memory_budget_mib", 1..=1 << 20, 256) << 20,
        spill_dir: s.spill_dir.as_ref().map(|d| PathBuf::from(d.get_ref())),
        orders: 0,
        trades: 0,
        partitions: None,
    }
}

impl super::Section for model::FilterConfig {
    fn inputs(&self) -> Vec<Spanned<String>> {
        self.inputs.get_ref().clone()
    }

    fn resolve(&self, cx: &mut Ctx) -> StageKind {
        StageKind::Filter(filter(cx, self))
    }
}

impl super::Section for model::AggregatorConfig {
    fn inputs(&self) -> Vec<Spanned<String>> {
        self.inputs.get_ref().clone()
    }

    fn resolve(&self, cx: &mut Ctx) -> StageKind {
        StageKind::Aggregator(aggregator(cx, self))
    }
}

fn filter(cx: &mut Ctx, f: &model::FilterConfig) -> FilterSpec {
    let mode = cx.choice(
        &f.order_type_match,
        "order_type_match",
        OrderTypeMatch::Exact,
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
        None => group_by = Grouping::all(),
        Some(list) => {
            for g in list.get_ref() {
                match cx.pick::<Grouping>(g, "grouping") {
                    None => {}
                    Some(k) if group_by.contains(&k) => cx.err(
                        g.span(),
                        format!("grouping \"{}\" is listed twice", g.get_ref()),
                    ),
                    Some(k) => group_by.push(k),
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
pub(super) fn sink(cx: &mut Ctx, s: &model::SinkConfig, rows: bool) -> StageKind {
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
            Some(f) => cx.pick(f, "rows format").unwrap_or(RowFormat::Csv),
            None => {
                let partitioned = s
                    .partition_by
                    .as_ref()
                    .is_some_and(|p| !p.get_ref().is_empty());
                match RowFormat::from_path(s.path.get_ref()) {
                    Ok(f) => f,
                    Err(_) if partitioned => RowFormat::Csv,
                    Err(_) => {
                        cx.err(
                            s.path.span(),
                            format!(
                                "cannot tell the rows format from the extension; use {}, or set `format`",
                                RowFormat::extensions()
                            ),
                        );
                        RowFormat::Csv
                    }
                }
            }
        };
        let mut partition_by = Vec::new();
        for p in Ctx::names(&s.partition_by) {
            match cx.pick::<PartitionKey>(&p, "partition key") {
                Some(k) if partition_by.contains(&k) => {
                    cx.err(p.span(), format!("\"{}\" is listed twice", p.get_ref()))
                }
                Some(k) => partition_by.push(k),
                None => {}
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
        let sort = s.sort.as_ref().is_some_and(|b| *b.get_ref());
        if !sort {
            for (key, span) in [
                (
                    "memory_budget_mib",
                    s.memory_budget_mib.as_ref().map(|v| v.span()),
                ),
                ("spill_dir", s.spill_dir.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    cx.err(span, format!("`{key}` applies only with `sort = true`"));
                }
            }
        }
        let sort = sort.then(|| SortSpec {
            memory_budget: cx.count(&s.memory_budget_mib, "memory_budget_mib", 1..=1 << 20, 64)
                << 20,
            spill_dir: s
                .spill_dir
                .as_ref()
                .map_or_else(std::env::temp_dir, |d| PathBuf::from(d.get_ref())),
        });
        let row_group_rows = s.row_group_rows.as_ref().map(|r| {
            if format != RowFormat::Parquet {
                cx.err(
                    r.span(),
                    format!("`row_group_rows` applies only to Parquet, not {format}"),
                );
            }
            cx.count(&s.row_group_rows, "row_group_rows", 1..=1 << 30, 100_000)
        });
        StageKind::RowSink(RowSinkSpec {
            sort,
            row_group_rows,
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
        if report_wanted(cx, s) {
            only(
                cx,
                s.formats.as_ref().map(|v| v.span()),
                "formats",
                "tables to write as files (this one writes the HTML report)",
            );
            rows_keys_absent(cx, s, kind);
            return StageKind::ReportSink(ReportSinkSpec { path });
        }
        rows_keys_absent(cx, s, kind);
        let mut formats = Vec::new();
        for f in Ctx::names(&s.formats) {
            let Some(t) = cx.pick::<TableFormat>(&f, "table format") else {
                continue;
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

/// Whether a sink of tables writes the HTML report: `format = "html"`, or a path ending in
/// `.html` (a tables sink's path is a folder, which no one names so). Any other `format` on
/// a sink of tables is an error: table files are chosen with `formats`.
fn report_wanted(cx: &mut Ctx, s: &model::SinkConfig) -> bool {
    match &s.format {
        Some(f) if f.get_ref() == "html" => true,
        Some(f) => {
            cx.err(
                f.span(),
                format!(
                    "`format` on a sink of tables can only be \"html\" (the report), not \"{}\"; \
                     table files are chosen with `formats`",
                    f.get_ref()
                ),
            );
            false
        }
        None => {
            let p = s.path.get_ref().to_ascii_lowercase();
            p.ends_with(".html") || p.ends_with(".htm")
        }
    }
}

/// The keys only a rows sink takes are errors on a sink of tables.
fn rows_keys_absent(cx: &mut Ctx, s: &model::SinkConfig, kind: &str) {
    let present = [
        ("partition_by", s.partition_by.as_ref().map(|v| v.span())),
        ("columns", s.columns.as_ref().map(|v| v.span())),
        (
            "compression_level",
            s.compression_level.as_ref().map(|v| v.span()),
        ),
        (
            "max_open_files",
            s.max_open_files.as_ref().map(|v| v.span()),
        ),
        ("timezone", s.timezone.as_ref().map(|v| v.span())),
        (
            "pause_per_batch_ms",
            s.pause_per_batch_ms.as_ref().map(|v| v.span()),
        ),
        ("sort", s.sort.as_ref().map(|v| v.span())),
        (
            "memory_budget_mib",
            s.memory_budget_mib.as_ref().map(|v| v.span()),
        ),
        ("spill_dir", s.spill_dir.as_ref().map(|v| v.span())),
        (
            "row_group_rows",
            s.row_group_rows.as_ref().map(|v| v.span()),
        ),
    ];
    for (key, span) in present {
        if let Some(span) = span {
            cx.err(
                span,
                format!("`{key}` applies only to a sink that receives {kind}"),
            );
        }
    }
}
