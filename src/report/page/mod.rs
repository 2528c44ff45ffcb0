//! The page: a maud template around the charts. Every chart is a `figure` with
//! `data-chart="ID"`, its SVG, and a table of the numbers it draws (`data-table="ID"`); every
//! number cell carries its exact value in `data-value` beside the text people read, so a test
//! (or a script of the reader's) can take the numbers back out.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::style::RGBColor;

use super::charts::{self, Bars, Series, palette};
use super::model::{
    self, Accounting, COST_BINS, FirstFill, KeyRow, PerSweep, RunInfo, SCENARIOS, SIZE_BUCKETS,
    Stacked, Standard, Sweeps, Top, Venues,
};
use super::{Report, ReportError, Section};

mod sweeps;
use sweeps::sweeps_section;

const CSS: &str = r#"
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 0 auto; max-width: 1320px;
  padding: 1rem 1.5rem 3rem; color: #1d1d1d; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin: .5rem 0 .2rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 2px solid #0072b2; }
h3 { font-size: 1.05rem; margin: 0 0 .3rem; }
p { margin: .3rem 0; }
.origin, .note { color: #555; font-size: .9rem; }
nav a { margin-right: 1rem; color: #0072b2; }
figure.chart { margin: 1.2rem 0; padding: .8rem; border: 1px solid #ddd; border-radius: 6px; }
.pair { display: grid; grid-template-columns: minmax(0, 4fr) minmax(0, 3fr); gap: 1rem; align-items: start; }
.wide .pair { grid-template-columns: minmax(0, 1fr); }
.plot svg { width: 100%; height: auto; display: block; }
.numbers { max-height: 440px; overflow: auto; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { padding: .15rem .5rem; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f3f6f9; position: sticky; top: 0; }
td.key, th.key { text-align: left; }
tr.rest td { font-style: italic; color: #555; }
.facts td:first-child { text-align: left; color: #444; }
.empty { padding: .8rem 1rem; background: #fff8e1; border-left: 4px solid #e69f00; }
.failed { color: #d55e00; font-weight: bold; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
"#;

/// An integer with thousands separators.
pub(crate) fn int(v: impl Into<i128>) -> String {
    let v: i128 = v.into();
    group(&v.unsigned_abs().to_string(), v < 0)
}

/// A sum that may pass `i128::MAX` (it never does in practice), with separators.
pub(crate) fn big(v: u128) -> String {
    group(&v.to_string(), false)
}

fn group(digits: &str, negative: bool) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if negative {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A float with `d` decimals, or a dash for nothing.
fn float(v: Option<f64>, d: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.d$}"))
}

/// A byte count in decimal units, as throughput is given in MB/s.
fn bytes(v: u64) -> String {
    let v = v as f64;
    if v >= 1e9 {
        format!("{:.2} GB", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1} MB", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kB", v / 1e3)
    } else {
        format!("{v} B")
    }
}

/// A duration in nanoseconds in its unit: `500 ns`, `2 µs`, `50 ms`, `20 s`; whole seconds
/// from 1 s up, with separators.
pub(crate) fn ns(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e9 {
        (v / 1e9, "s")
    } else if a >= 1e6 {
        (v / 1e6, "ms")
    } else if a >= 1e3 {
        (v / 1e3, "µs")
    } else {
        (v, "ns")
    };
    let text = if unit == "s" && x.fract() == 0.0 {
        int(x as i128)
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    };
    format!("{text} {unit}")
}

/// A percentage of `part` in `whole`, one decimal.
fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "–".to_string()
    }
}

/// A number cell: the exact value for machines, the grouped text for people.
fn num(col: &str, raw: impl ToString, text: impl AsRef<str>) -> Markup {
    html! { td data-col=(col) data-value=(raw.to_string()) { (text.as_ref()) } }
}

fn count_cell(col: &str, v: u64) -> Markup {
    num(col, v, int(v))
}

fn big_cell(col: &str, v: u128) -> Markup {
    num(col, v, big(v))
}

fn key_cell(col: &str, key: &str) -> Markup {
    html! { td.key data-col=(col) data-value=(key) { (key) } }
}

/// A chart with its numbers beside it, or, when `wide`, below it.
fn figure(id: &str, title: &str, note: Markup, svg: String, table: Markup, wide: bool) -> Markup {
    html! {
        figure.chart.wide[wide] data-chart=(id) {
            figcaption {
                h3 { (title) }
                (note)
            }
            div.pair {
                div.plot { (PreEscaped(svg)) }
                div.numbers { (table) }
            }
        }
    }
}

/// What stands where a chart would be when there is nothing to draw.
fn empty(id: &str, text: &str) -> Markup {
    html! { p.empty data-empty=(id) { (text) } }
}

fn missing(table: &str) -> Markup {
    empty(
        table,
        &format!("The table `{table}` is not in this output, so it is not shown."),
    )
}

pub(crate) fn page(r: &Report) -> Result<String, ReportError> {
    let mut body = Vec::new();
    if let Some(run) = &r.run {
        body.push(run_section(run)?);
    }
    for (i, s) in r.sections.iter().enumerate() {
        body.push(match s {
            Section::Standard(s) => standard_section(i, s)?,
            Section::Sweeps(s) => sweeps_section(i, s)?,
        });
    }
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "sweep report: " (r.title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "sweep report: " (r.title) }
                    p.origin { "From " (r.origin) "." }
                    nav {
                        @if r.run.is_some() { a href="#run" { "The run" } }
                        @for (i, s) in r.sections.iter().enumerate() {
                            @match s {
                                Section::Standard(s) => a href=(format!("#section-{i}")) { "Orders: " (s.stage) },
                                Section::Sweeps(s) => a href=(format!("#section-{i}")) { "Sweeps: " (s.stage) },
                            }
                        }
                    }
                }
                @if r.run.is_none() {
                    (empty("run", "No run report (execution_metrics.json) was found, so the run's ledger, timings and settings are not shown."))
                }
                @for part in &body { (part) }
            }
        }
    };
    Ok(markup.into_string())
}

fn run_section(run: &RunInfo) -> Result<Markup, ReportError> {
    let t = &run.totals;
    let ledger = ledger(run)?;
    Ok(html! {
        section #run data-section="run" {
            h2 { "The run" }
            @if run.status != "ok" {
                p.failed { "The run's status is " (run.status) "." }
            }
            table.facts data-table="run" {
                tbody {
                    tr { td { "pipeline" } td.key data-col="pipeline" data-value=(run.pipeline) { (run.pipeline) } }
                    tr { td { "status" } td.key data-col="status" data-value=(run.status) { (run.status) } }
                    tr { td { "started" } td.key data-col="started_at" data-value=(run.started_at) { (run.started_at) } }
                    tr { td { "wall time" } (num("duration_sec", run.duration_sec, format!("{:.3} s", run.duration_sec))) }
                    tr { td { "input files" } (count_cell("jobs", t.jobs)) }
                    tr { td { "input bytes (as stored)" } (num("file_bytes", t.file_bytes, bytes(t.file_bytes))) }
                    tr { td { "input bytes (decompressed)" } (num("bytes_read", t.bytes_read, bytes(t.bytes_read))) }
                    tr { td { "rows read" } (count_cell("rows_read", t.rows_read)) }
                    tr { td { "throughput" } (num("mb_per_sec", t.mb_per_sec, format!("{:.0} MB/s", t.mb_per_sec))) }
                    tr { td { "rows per second" } (num("rows_per_sec", t.rows_per_sec, int(t.rows_per_sec as i128))) }
                    tr { td { "peak memory (resident)" } (num("peak_rss_mib", run.process.peak_rss_mib, format!("{:.1} MiB", run.process.peak_rss_mib))) }
                    tr { td { "CPU time" } (num("cpu_seconds", run.process.cpu_seconds, format!("{:.2} s", run.process.cpu_seconds))) }
                    @if let Some(s) = &run.settings {
                        tr { td { "workers per CPU stage" } (count_cell("workers", s.workers)) }
                        tr { td { "block size" } (num("block_bytes", s.block_bytes, format!("{} bytes", int(s.block_bytes)))) }
                        tr { td { "batches in flight per edge" } (count_cell("edge_capacity", s.edge_capacity)) }
                    }
                }
            }
            @if !run.errors.is_empty() {
                h3 { "Errors" }
                ul { @for e in &run.errors { li.failed { (e) } } }
            }
            (ledger)
            @if !run.stages.is_empty() {
                h3 { "Stages" }
                div.numbers {
                    table data-table="stages" {
                        thead { tr { th.key { "stage" } th.key { "kind" } th { "workers" } th { "rows in" } th { "rows out" } } }
                        tbody {
                            @for s in &run.stages {
                                tr data-key=(s.name) {
                                    (key_cell("name", &s.name)) (key_cell("kind", &s.kind))
                                    (count_cell("workers", s.workers)) (count_cell("rows_in", s.rows_in)) (count_cell("rows_out", s.rows_out))
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Files in the ledger's chart; the table lists every file.
const LEDGER_BARS: usize = 20;

fn ledger(run: &RunInfo) -> Result<Markup, ReportError> {
    if run.jobs.is_empty() {
        return Ok(empty("ledger", "The run read no input file."));
    }
    let mut shown: Vec<&model::RunJob> = run.jobs.iter().collect();
    shown.sort_by_key(|j| std::cmp::Reverse(j.rows_read));
    shown.truncate(LEDGER_BARS);
    let categories: Vec<String> = shown
        .iter()
        .map(|j| {
            let name = std::path::Path::new(&j.file)
                .file_name()
                .map_or_else(|| j.file.clone(), |n| n.to_string_lossy().into_owned());
            shorten(&name, 34)
        })
        .collect();
    let series = |name: &str, color, f: fn(&model::RunJob) -> u64| Series {
        name: name.to_string(),
        color,
        values: shown.iter().map(|j| f(j) as f64).collect(),
    };
    let svg = charts::bars(&Bars {
        categories: &categories,
        series: vec![
            series("kept", palette::GREEN, |j| j.rows_kept),
            series("filtered out", palette::GREY, |j| j.rows_filtered_out),
            series("rejected", palette::VERMILION, |j| j.rows_rejected),
        ],
        category_desc: "input file",
        value_desc: "rows",
        horizontal: true,
        percent: false,
        size: (1200, 110 + 40 * categories.len() as u32),
    })?;
    let note = html! {
        p.note {
            "Every row read is kept, filtered out or rejected as malformed: read = kept + filtered out + rejected, for each file."
            @if run.jobs.len() > LEDGER_BARS { " The chart shows the " (LEDGER_BARS) " files with the most rows; the table lists all " (run.jobs.len()) "." }
        }
    };
    let table = html! {
        table data-table="ledger" {
            thead { tr { th.key { "file" } th.key { "reader" } th { "read" } th { "kept" } th { "filtered out" } th { "rejected" } th { "balanced" } } }
            tbody {
                @for j in &run.jobs {
                    @let balanced = j.rows_read == j.rows_kept + j.rows_filtered_out + j.rows_rejected;
                    tr data-key=(j.file) {
                        (key_cell("file", &j.file))
                        (key_cell("reader", j.reader.as_deref().unwrap_or("")))
                        (count_cell("rows_read", j.rows_read)) (count_cell("rows_kept", j.rows_kept))
                        (count_cell("rows_filtered_out", j.rows_filtered_out)) (count_cell("rows_rejected", j.rows_rejected))
                        td data-col="balanced" data-value=(balanced) { @if balanced { "yes" } @else { span.failed { "no" } } }
                    }
                }
            }
        }
    };
    Ok(figure(
        "ledger",
        "The ledger: rows read per input file",
        note,
        svg,
        table,
        true,
    ))
}

/// The height of a chart of `n` horizontal bars: a band each, and room for the axes.
fn bars_height(n: usize) -> u32 {
    (90 + 24 * n as u32).max(220)
}

/// Text cut to `n` characters with an ellipsis, for chart labels (tables keep it whole).
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n - 1).collect();
        format!("{head}…")
    }
}

fn standard_section(i: usize, s: &Standard) -> Result<Markup, ReportError> {
    let mut parts = Vec::new();
    if s.is_empty() {
        parts.push(empty(
            "orders",
            "No orders were kept in this input, so there is nothing to chart.",
        ));
    } else {
        parts.push(match &s.hours {
            Some(rows) => keyed(
                "by_hour",
                "Orders by local hour of day",
                html! { p.note { "Hours in the aggregator's timezone (Australia/Sydney unless configured), daylight saving applied; an hour runs from HH:00 to HH:59." } },
                rows,
                ("hour", "local hour of day"),
                false,
            )?,
            None => missing("by_hour"),
        });
        parts.push(match &s.daily {
            Some(rows) => keyed(
                "daily",
                "Orders per day",
                html! { p.note { "The daily series: orders per local trading date." } },
                rows,
                ("date", "local date"),
                false,
            )?,
            None => missing("daily"),
        });
        parts.push(match &s.participants {
            Some(top) => top_chart(
                "by_participant",
                "Top participants by orders",
                top,
                ("participantid", "participant"),
            )?,
            None => missing("by_participant"),
        });
        parts.push(match &s.sizes {
            Some(rows) => keyed(
                "by_size",
                "Orders by size bucket",
                html! { p.note { "Buckets of order quantity (shares): <=1K holds 0 to 1,000; each other bucket holds its upper edge." } },
                rows,
                ("size_bucket", "order size (shares)"),
                false,
            )?,
            None => missing("by_size"),
        });
        parts.push(match &s.securities {
            Some(top) => top_chart(
                "by_security",
                "Top securities by orders",
                top,
                ("security_code", "security"),
            )?,
            None => missing("by_security"),
        });
    }
    Ok(html! {
        section id=(format!("section-{i}")) data-section="standard" data-stage=(s.stage) {
            h2 { "Orders: " (s.stage) }
            @match &s.summary {
                Some(sum) => {
                    table.facts data-table="summary" {
                        tbody {
                            tr { td { "orders kept" } (count_cell("orders", sum.orders)) }
                            tr { td { "quantity (shares)" } (big_cell("quantity_sum", sum.quantity)) }
                            tr { td { "VWAP (price units)" } (num("vwap", sum.vwap.map_or(String::new(), |v| v.to_string()), float(sum.vwap, 2))) }
                            tr { td { "participants" } (count_cell("participants", sum.participants)) }
                            tr { td { "securities" } (count_cell("securities", sum.securities)) }
                            tr { td { "first order (UTC)" } td.key data-col="first_ts" { (timestamp(sum.first_ts)) } }
                            tr { td { "last order (UTC)" } td.key data-col="last_ts" { (timestamp(sum.last_ts)) } }
                        }
                    }
                }
                None => (missing("summary")),
            }
            @for p in &parts { (p) }
        }
    })
}

/// Nanoseconds since the epoch as a UTC time, or a dash.
fn timestamp(ts: Option<i64>) -> String {
    ts.map_or_else(
        || "–".to_string(),
        |t| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(t)
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()
        },
    )
}

/// A table keyed by one column, charted as bars of orders.
fn keyed(
    id: &str,
    title: &str,
    note: Markup,
    rows: &[KeyRow],
    (key, key_desc): (&str, &str),
    horizontal: bool,
) -> Result<Markup, ReportError> {
    if rows.is_empty() {
        return Ok(empty(id, "No orders."));
    }
    let categories: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let svg = charts::bars(&Bars {
        categories: &categories,
        series: vec![Series {
            name: "orders".into(),
            color: palette::BLUE,
            values: rows.iter().map(|r| r.orders as f64).collect(),
        }],
        category_desc: key_desc,
        value_desc: "orders",
        horizontal,
        percent: false,
        size: (
            760,
            if horizontal {
                bars_height(rows.len())
            } else {
                380
            },
        ),
    })?;
    let total: u64 = rows.iter().map(|r| r.orders).sum();
    let table = html! {
        table data-table=(id) {
            thead { tr { th.key { (key_desc) } th { "orders" } th { "share" } th { "quantity (shares)" } } }
            tbody {
                @for r in rows {
                    tr data-key=(r.key) {
                        (key_cell(key, &r.key)) (count_cell("orders", r.orders))
                        td { (share(r.orders as f64, total as f64)) }
                        (big_cell("quantity_sum", r.quantity))
                    }
                }
            }
        }
    };
    Ok(figure(id, title, note, svg, table, false))
}

fn top_chart(
    id: &str,
    title: &str,
    top: &Top,
    (key, key_desc): (&str, &str),
) -> Result<Markup, ReportError> {
    let note = html! {
        p.note {
            @if top.keys as usize > top.rows.len() {
                "The " (top.rows.len()) " of " (int(top.keys)) " with the most orders (ties in key order); the others are summed in the table's last line."
            } @else {
                "All " (int(top.keys)) ", most orders first."
            }
        }
    };
    if top.rows.is_empty() {
        return Ok(empty(id, "No orders."));
    }
    let categories: Vec<String> = top.rows.iter().map(|r| r.key.clone()).collect();
    let svg = charts::bars(&Bars {
        categories: &categories,
        series: vec![Series {
            name: "orders".into(),
            color: palette::BLUE,
            values: top.rows.iter().map(|r| r.orders as f64).collect(),
        }],
        category_desc: key_desc,
        value_desc: "orders",
        horizontal: true,
        percent: false,
        size: (760, bars_height(top.rows.len())),
    })?;
    let total = top.rows.iter().map(|r| r.orders).sum::<u64>() + top.rest_orders;
    let rest = top.keys - top.rows.len() as u64;
    let table = html! {
        table data-table=(id) {
            thead { tr { th.key { (key_desc) } th { "orders" } th { "share" } th { "quantity (shares)" } } }
            tbody {
                @for r in &top.rows {
                    tr data-key=(r.key) {
                        (key_cell(key, &r.key)) (count_cell("orders", r.orders))
                        td { (share(r.orders as f64, total as f64)) }
                        (big_cell("quantity_sum", r.quantity))
                    }
                }
                @if rest > 0 {
                    tr.rest data-key="rest" {
                        td.key data-col=(key) data-value="rest" { "the other " (int(rest)) }
                        (count_cell("orders", top.rest_orders))
                        td { (share(top.rest_orders as f64, total as f64)) }
                        (big_cell("quantity_sum", top.rest_quantity))
                    }
                }
            }
        }
    };
    Ok(figure(id, title, note, svg, table, false))
}
