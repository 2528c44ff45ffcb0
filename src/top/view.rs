//! Drawing a [`Screen`] with ratatui: a header, progress, the stages, the edges, the daemon's
//! figures when there are any, and a status line.

use chrono::{DateTime, Local};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Padding, Paragraph, Row, Table};

use super::figures::{DaemonRow, EdgeRow, Figures, Progress, StageRow};

/// Whether the endpoint answered the latest scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Link {
    Live,
    /// It did not, for this reason; the figures are those of the last scrape that worked.
    Gone {
        reason: String,
    },
}

/// Everything one frame shows.
pub(crate) struct Screen<'a> {
    pub url: &'a str,
    pub version: Option<&'a str>,
    pub figures: &'a Figures,
    /// When the figures were scraped.
    pub seen: DateTime<Local>,
    pub link: &'a Link,
    /// Now, for the age of the daemon's last commit.
    pub now: DateTime<Local>,
}

/// Width of the count columns: [`count`] writes at most 7 characters (`-99,999`), and the widest
/// header is `FILTERED`.
const NUM: u16 = 8;

/// Width of the latency columns: [`seconds`] writes at most 7 (`999.9ms`).
const LATENCY: u16 = 7;

pub(crate) fn draw(frame: &mut Frame, s: &Screen) {
    let f = s.figures;
    let daemon_height = if f.daemon.is_some() { 5 } else { 0 };
    let [header, progress, stages, edges, daemon, _, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Length(table_height(f.stages.len())),
        Constraint::Length(table_height(f.edges.len())),
        Constraint::Length(daemon_height),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(s)), header);
    frame.render_widget(progress_block(&f.progress), progress);
    frame.render_widget(stages_table(&f.stages), stages);
    frame.render_widget(edges_table(&f.edges), edges);
    if let Some(d) = &f.daemon {
        frame.render_widget(daemon_block(d, s.now), daemon);
    }
    frame.render_widget(Paragraph::new(status_line(s)), status);
}

/// Rows, a header and two borders.
fn table_height(rows: usize) -> u16 {
    u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3)
}

fn framed(title: &'static str) -> Block<'static> {
    Block::bordered()
        .title(title)
        .padding(Padding::horizontal(1))
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn header_line(s: &Screen) -> Line<'static> {
    let mut spans = vec![
        Span::styled(" sweep top ", bold().fg(Color::Black).bg(Color::Cyan)),
        Span::raw(format!(" {}", s.url)),
    ];
    if let Some(v) = s.version {
        spans.push(Span::raw(format!("  sweep {v}")));
    }
    spans.push(Span::raw(format!(
        "  scraped {}",
        s.seen.format("%H:%M:%S")
    )));
    Line::from(spans)
}

fn progress_block(p: &Progress) -> Paragraph<'static> {
    let label = |t: &str| Span::styled(t.to_string(), bold());
    let jobs = Line::from(vec![
        label("jobs "),
        Span::raw(format!(
            "{}/{} done, {} running, {} pending, {} failed",
            count(p.jobs_done),
            count(p.jobs_total),
            count(p.jobs_running),
            count(p.jobs_pending),
            count(p.jobs_failed)
        )),
        label("   ETA "),
        Span::raw(if p.ended() {
            "done".to_string()
        } else {
            p.eta.map_or_else(|| "—".to_string(), hms)
        }),
    ]);
    let input = Line::from(vec![
        label("input "),
        Span::raw(format!(
            "{} read, {}",
            bytes(p.bytes_read),
            p.bytes_per_sec
                .map_or_else(|| "—/s".to_string(), |r| format!("{}/s", bytes(r)))
        )),
        label("   rejected rows "),
        Span::styled(
            count(p.rejected),
            if p.rejected > 0.0 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            },
        ),
    ]);
    Paragraph::new(vec![jobs, input]).block(framed(" Progress "))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

fn stages_table(rows: &[StageRow]) -> Table<'static> {
    let header = Row::new(
        ["STAGE", "KIND"]
            .into_iter()
            .map(|h| Cell::from(h.to_string()))
            .chain(
                [
                    "IN/S", "OUT/S", "IN", "OUT", "FILTERED", "REJECTED", "ERRORS", "P50", "P90",
                    "P99",
                ]
                .into_iter()
                .map(|h| right(h.to_string())),
            ),
    )
    .style(bold());
    let body = rows.iter().map(|r| {
        let mut cells = vec![
            Cell::from(r.id.clone()),
            Cell::from(r.kind.clone()),
            right(r.received_per_sec.map_or_else(|| "—".to_string(), count)),
            right(r.sent_per_sec.map_or_else(|| "—".to_string(), count)),
            right(count(r.received)),
            right(count(r.sent)),
            right(count(r.filtered)),
            right(count(r.rejected)),
        ];
        let errors = right(count(r.errors));
        cells.push(if r.errors > 0.0 {
            errors.style(Style::new().fg(Color::Red))
        } else {
            errors
        });
        cells.extend(
            r.latency
                .iter()
                .map(|l| right(l.map_or_else(|| "—".to_string(), seconds))),
        );
        Row::new(cells)
    });
    let name_width = rows
        .iter()
        .map(|r| r.id.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 24);
    let mut widths = vec![
        Constraint::Length(u16::try_from(name_width).unwrap_or(24)),
        Constraint::Length(14),
    ];
    widths.extend([Constraint::Length(NUM); 6]);
    widths.push(Constraint::Length("ERRORS".len() as u16));
    widths.extend([Constraint::Length(LATENCY); 3]);
    Table::new(body, widths)
        .header(header)
        .block(framed(" Stages (rows; batch latency since start) "))
}

/// Cells of the fill bar.
const BAR: usize = 20;

fn edges_table(rows: &[EdgeRow]) -> Table<'static> {
    let header = Row::new([
        Cell::from("EDGE"),
        right("IN FLIGHT".to_string()),
        right("CAPACITY".to_string()),
        Cell::from("FILL"),
    ])
    .style(bold());
    let body = rows.iter().map(|e| {
        let fill = e.fill.map_or_else(|| "—".to_string(), fill_bar);
        let full = e.fill.is_some_and(|f| f >= 1.0);
        Row::new([
            Cell::from(format!("{} → {}", e.from, e.to)),
            right(count(e.in_flight)),
            right(count(e.capacity)),
            Cell::from(fill).style(if full {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new().fg(Color::Green)
            }),
        ])
    });
    let edge_width = rows
        .iter()
        .map(|e| e.from.chars().count() + e.to.chars().count() + 3)
        .max()
        .unwrap_or(0)
        .clamp(4, 48);
    Table::new(
        body,
        [
            Constraint::Length(u16::try_from(edge_width).unwrap_or(48)),
            Constraint::Length("IN FLIGHT".len() as u16),
            Constraint::Length(NUM),
            Constraint::Length(BAR as u16 + 6),
        ],
    )
    .header(header)
    .block(framed(" Edges (a full edge holds back its sender) "))
}

/// `████░░░░  40%`, the bar capped at full.
pub(crate) fn fill_bar(fill: f64) -> String {
    let cells = ((fill.clamp(0.0, 1.0) * BAR as f64).round() as usize).min(BAR);
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(cells),
        "░".repeat(BAR - cells),
        fill * 100.0
    )
}

fn daemon_block(d: &DaemonRow, now: DateTime<Local>) -> Paragraph<'static> {
    let label = |t: &str| Span::styled(t.to_string(), bold());
    let commit = match d.last_commit.and_then(local_time) {
        Some(t) => {
            let ago = (now - t).num_seconds().max(0);
            format!("{} ({ago} s ago)", t.format("%H:%M:%S"))
        }
        None => "none yet".to_string(),
    };
    let lag = match (d.lag_p50, d.lag_p99) {
        (Some(p50), Some(p99)) => format!("p50 {}, p99 {}", seconds(p50), seconds(p99)),
        _ => "—".to_string(),
    };
    let first = Line::from(vec![
        label("pending files "),
        Span::raw(count(d.pending)),
        label("   files "),
        Span::raw(labelled(&d.files)),
    ]);
    let second = Line::from(vec![
        label("ingest lag "),
        Span::raw(lag),
        label("   last commit "),
        Span::raw(commit),
    ]);
    let third = Line::from(vec![
        label("state "),
        Span::raw(format!(
            "v{}, {}",
            d.state_version.map_or_else(|| "—".to_string(), count),
            d.state_bytes.map_or_else(|| "—".to_string(), bytes)
        )),
        label("   reloads "),
        Span::raw(labelled(&d.reloads)),
    ]);
    Paragraph::new(vec![first, second, third]).block(framed(" Daemon "))
}

/// `2 ingested, 0 failed`.
fn labelled(counts: &[(String, f64)]) -> String {
    counts
        .iter()
        .map(|(label, n)| format!("{} {label}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_line(s: &Screen) -> Line<'static> {
    let keys = " — q, Esc or Ctrl-C quits";
    match s.link {
        Link::Gone { reason } => Line::from(Span::styled(
            format!(
                " endpoint went away: {reason}; last seen {} — press q to quit",
                s.seen.format("%H:%M:%S")
            ),
            bold().fg(Color::White).bg(Color::Red),
        )),
        Link::Live if s.figures.progress.ended() && s.figures.daemon.is_none() => Line::from(vec![
            Span::styled(" run ended ", bold().fg(Color::Black).bg(Color::Green)),
            Span::raw(format!(
                " every job finished; the metrics are still served{keys}"
            )),
        ]),
        Link::Live => Line::from(vec![
            Span::styled(" live ", bold().fg(Color::Black).bg(Color::Green)),
            Span::raw(format!(" refreshed every second{keys}")),
        ]),
    }
}

/// A count or rate for a narrow column: exact with thousands separators below 100,000, then
/// three significant digits with k, M, G or T.
pub(crate) fn count(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    let v = v.round();
    if v.abs() < 100_000.0 {
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    compact(v, 1000.0, &["k", "M", "G", "T"], "")
}

/// Decimal bytes: `512 B`, `3.54 MB`.
pub(crate) fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    if v.abs() < 1000.0 {
        return format!("{v:.0} B");
    }
    compact(v, 1000.0, &["kB", "MB", "GB", "TB"], " ")
}

/// `v` scaled down by `step` until below it, with three significant digits and the unit reached.
fn compact(v: f64, step: f64, units: &[&str], sep: &str) -> String {
    let mut x = v / step;
    let mut unit = units.first().copied().unwrap_or_default();
    for u in units.iter().skip(1) {
        if x.abs() < step {
            break;
        }
        x /= step;
        unit = u;
    }
    let text = if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    };
    format!("{text}{sep}{unit}")
}

/// A latency: `85µs`, `12.5ms`, `1.25s`.
pub(crate) fn seconds(v: f64) -> String {
    if !v.is_finite() {
        "—".to_string()
    } else if v < 1e-3 {
        format!("{:.0}µs", v * 1e6)
    } else if v < 1.0 {
        format!("{:.1}ms", v * 1e3)
    } else {
        format!("{v:.2}s")
    }
}

/// An ETA: `42s`, `3m05s`, `2h07m`.
pub(crate) fn hms(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    }
}

/// Unix seconds as local time, to the millisecond the daemon writes them in (an f64 holds no
/// more of today's dates exactly).
fn local_time(unix: f64) -> Option<DateTime<Local>> {
    if !unix.is_finite() {
        return None;
    }
    DateTime::from_timestamp_millis((unix * 1e3).round() as i64).map(|t| t.with_timezone(&Local))
}
