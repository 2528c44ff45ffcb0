//! `sweep top`'s parts on captured `/metrics` texts (`tests/data/top/`): `run-1.prom` and
//! `run-2.prom` are two scrapes, about a second apart, of `sweep run pipelines/centrepoint.toml`
//! on the shipped sample throttled by `sinks.extract.pause_per_batch_ms = 50` (64 KiB blocks, edge
//! capacity 4); `daemon.prom` is `sweep daemon pipelines/centrepoint-daemon.toml` after ingesting
//! two files.

use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeZone};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::exposition::{self, Sample};
use super::figures::{self, Earlier, Figures, fill, rate};
use super::scrape::{Histogram, ScrapeError, Snapshot};
use super::view::{self, Link, Screen, bytes, count, fill_bar, hms, seconds};
use super::{App, Scraped, TopError, metrics_url, quits};
use crate::flow::metrics::name;

const RUN_1: &str = include_str!("../../tests/data/top/run-1.prom");
const RUN_2: &str = include_str!("../../tests/data/top/run-2.prom");
const DAEMON: &str = include_str!("../../tests/data/top/daemon.prom");

fn snap(text: &str) -> Snapshot {
    Snapshot::parse(text).expect("a captured scrape parses")
}

/// `a` and `b` agree to within rounding.
#[track_caller]
fn close(a: Option<f64>, b: f64) {
    let a = a.unwrap_or_else(|| panic!("no value where {b} was expected"));
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

/// The two captured scrapes' figures, as if read `secs` apart.
fn run_figures(secs: f64) -> Figures {
    let (before, now) = (snap(RUN_1), snap(RUN_2));
    let prev = Earlier {
        snap: &before,
        secs,
    };
    figures::figures(Some(prev), Some(prev), &now)
}

// --- the exposition format ---

#[test]
fn every_sample_line_of_a_captured_scrape_is_read() {
    let samples = exposition::parse(RUN_2).unwrap();
    let lines = RUN_2
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(samples.len(), lines);
    let cp = samples
        .iter()
        .find(|s| s.name == name::RECEIVED && s.label("component_id") == Some("centrepoint"));
    assert_eq!(
        cp,
        Some(&Sample {
            name: "sweep_component_received_records_total".into(),
            labels: vec![
                ("component_id".into(), "centrepoint".into()),
                ("component_kind".into(), "filter".into()),
            ],
            value: 21484.0,
        })
    );
}

#[test]
fn label_values_keep_commas_equals_braces_and_escapes() {
    let text = "m{a=\"x\\\\y\\\"z\\nw\",b=\"1,2=3}\" , } 4.5 1700000000000\n";
    let s = exposition::parse(text).unwrap();
    assert_eq!(
        s,
        vec![Sample {
            name: "m".into(),
            labels: vec![
                ("a".into(), "x\\y\"z\nw".into()),
                ("b".into(), "1,2=3}".into())
            ],
            value: 4.5,
        }]
    );
}

#[test]
fn values_blanks_and_comments_follow_the_format() {
    let text = "# HELP m help text\n# TYPE m gauge\n\n  m 1e-3\nm{} +Inf\nm\t-Inf\r\nm{le=\"+Inf\"} NaN\nm:sub_x 7 -5\n";
    let s = exposition::parse(text).unwrap();
    let values: Vec<f64> = s.iter().map(|s| s.value).collect();
    assert_eq!(values[..3], [0.001, f64::INFINITY, f64::NEG_INFINITY]);
    assert!(values[3].is_nan());
    assert_eq!(s[3].label("le"), Some("+Inf"));
    assert_eq!(s[4].name, "m:sub_x");
    assert_eq!(values[4], 7.0);
}

#[test]
fn a_malformed_line_is_an_error_naming_its_line() {
    for (text, line, reason) in [
        ("m 1\nm{a=x} 1\n", 2, "label `a`'s value is not quoted"),
        ("m 1 2 3\n", 1, "unexpected `3` after the value"),
        ("# c\nm\n", 2, "`m` has no value"),
        ("m{a=\"x} 1\n", 1, "a label value is not closed"),
        (
            "m{a=\"\\q\"} 1\n",
            1,
            "unknown escape `\\q` in a label value",
        ),
        ("m one\n", 1, "`one` is not a number"),
        ("1m 2\n", 1, "expected a name at `1m 2`"),
        (
            "m{a=\"1\" b=\"2\"} 1\n",
            1,
            "expected `,` or `}` at `b=\"2\"} 1`",
        ),
        ("m 1 soon\n", 1, "`soon` is not a timestamp"),
    ] {
        let e = exposition::parse(text).unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (line, reason), "{text:?}");
    }
}

// --- the snapshot of sweep's series ---

#[test]
fn a_captured_run_gives_its_stages_in_flow_order_with_their_counters() {
    let s = snap(RUN_2);
    let stages: Vec<(&str, &str)> = s
        .stages
        .iter()
        .map(|s| (s.id.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        stages,
        [
            ("orders", "reader"),
            ("centrepoint", "filter"),
            ("stats", "aggregator"),
            ("extract", "rows_sink"),
            ("tables", "tables_sink"),
        ]
    );
    let (orders, cp) = (&s.stages[0], &s.stages[1]);
    assert_eq!((orders.received, orders.sent), (23955.0, 23955.0));
    assert_eq!(orders.input_bytes, Some(3535339.0));
    assert_eq!((orders.rejected, orders.errors), (0.0, 0.0));
    assert_eq!(
        (cp.received, cp.sent, cp.filtered),
        (21484.0, 6959.0, 14525.0)
    );
    assert_eq!(cp.input_bytes, None);
    assert_eq!(cp.latency.count, 52.0);
    assert_eq!(cp.latency.buckets.len(), 17);
    assert_eq!(cp.latency.buckets[0], (0.0001, 29.0));
    assert_eq!(cp.latency.buckets[16], (f64::INFINITY, 52.0));
    let edges: Vec<(&str, &str, f64, f64)> = s
        .edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.in_flight, e.capacity))
        .collect();
    assert_eq!(
        edges,
        [
            ("orders", "orders.parse", 4.0, 4.0),
            ("orders", "centrepoint", 4.0, 4.0),
            ("centrepoint", "stats", 0.0, 4.0),
            ("centrepoint", "extract", 4.0, 4.0),
            ("stats", "tables", 0.0, 4.0),
        ]
    );
    assert_eq!(
        (s.jobs.pending, s.jobs.running, s.jobs.done, s.jobs.failed),
        (0.0, 1.0, 0.0, 0.0)
    );
    assert_eq!(s.version.as_deref(), Some("0.1.0"));
    assert_eq!((s.cpu_seconds, s.rss_bytes), (Some(0.12), Some(26247168.0)));
    assert_eq!(s.daemon, None);
}

#[test]
fn a_captured_daemon_gives_its_queue_commits_and_lag() {
    let d = snap(DAEMON).daemon.expect("daemon series");
    assert_eq!(d.files.get("ingested"), Some(&2.0));
    assert_eq!(d.files.get("discovered"), Some(&2.0));
    assert_eq!(d.files.get("failed"), Some(&0.0));
    assert_eq!(d.pending, 0.0);
    assert_eq!(d.last_commit, Some(1796027289.229));
    assert_eq!(
        (d.state_version, d.state_bytes),
        (Some(2.0), Some(137655.0))
    );
    assert_eq!((d.lag.count, d.lag.sum), (2.0, 0.374146749));
    assert_eq!(d.reloads.get("rejected"), Some(&0.0));
}

#[test]
fn a_stage_name_with_commas_and_equals_signs_stays_whole() {
    let s = snap(
        "sweep_component_received_records_total{component_id=\"a,b=c\",component_kind=\"reader\"} 5\n",
    );
    assert_eq!(s.stages.len(), 1);
    assert_eq!(
        (s.stages[0].id.as_str(), s.stages[0].received),
        ("a,b=c", 5.0)
    );
}

#[test]
fn metrics_without_sweep_series_are_not_sweeps() {
    assert!(matches!(
        Snapshot::parse("# TYPE up gauge\nup 1\n"),
        Err(ScrapeError::NotSweep)
    ));
    let e = Snapshot::parse("sweep_jobs{state=\"done\" 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed metrics: line 1: expected `,` or `}` at `1`"
    );
}

// --- derived figures ---

#[test]
fn rates_are_counter_deltas_between_two_captured_scrapes() {
    let f = run_figures(2.0);
    let rates: Vec<(&str, Option<f64>, Option<f64>)> = f
        .stages
        .iter()
        .map(|s| (s.id.as_str(), s.received_per_sec, s.sent_per_sec))
        .collect();
    // run-2 minus run-1, over 2 s.
    assert_eq!(
        rates,
        [
            ("orders", Some(3908.0), Some(3908.0)),
            ("centrepoint", Some(3907.5), Some(1234.5)),
            ("stats", Some(1234.5), Some(0.0)),
            ("extract", Some(1241.0), Some(1241.0)),
            ("tables", Some(0.0), Some(0.0)),
        ]
    );
    assert_eq!(f.progress.bytes_read, 3535339.0);
    assert_eq!(f.progress.bytes_per_sec, Some(621923.0));
}

#[test]
fn the_first_scrape_has_no_rates() {
    let f = figures::figures(None, None, &snap(RUN_2));
    assert!(f.stages.iter().all(|s| s.received_per_sec.is_none()));
    assert_eq!(f.progress.bytes_per_sec, None);
    assert_eq!(f.progress.eta, None);
}

#[test]
fn a_counter_that_went_down_was_reset_and_counts_from_zero() {
    assert_eq!(rate(100.0, 130.0, 2.0), Some(15.0));
    assert_eq!(rate(100.0, 30.0, 2.0), Some(15.0));
    assert_eq!(rate(1.0, 2.0, 0.0), None);
    assert_eq!(rate(1.0, 2.0, f64::NAN), None);
}

#[test]
fn percentiles_interpolate_within_the_captured_buckets() {
    let f = run_figures(1.0);
    let lat = |id: &str| {
        f.stages
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.latency)
            .unwrap()
    };
    // extract: all 46 batches between 50 and 100 ms.
    let [p50, p90, p99] = lat("extract");
    close(p50, 0.05 + 0.05 * 23.0 / 46.0);
    close(p90, 0.05 + 0.05 * 41.4 / 46.0);
    close(p99, 0.05 + 0.05 * 45.54 / 46.0);
    close(p50, 0.075);
    // centrepoint: 29 of 52 batches under 100 µs, the rest under 250 µs.
    let [p50, p90, p99] = lat("centrepoint");
    close(p50, 0.0001 * 26.0 / 29.0);
    close(p90, 0.0001 + 0.00015 * (46.8 - 29.0) / 23.0);
    close(p99, 0.0001 + 0.00015 * (51.48 - 29.0) / 23.0);
    // stats: 10 under 100 µs, 23 under 250 µs, all 52 under 500 µs.
    let [p50, _, p99] = lat("stats");
    close(p50, 0.00025 + 0.00025 * 3.0 / 29.0);
    close(p99, 0.00025 + 0.00025 * 28.48 / 29.0);
    // tables: no batch yet.
    assert_eq!(lat("tables"), [None, None, None]);
}

#[test]
fn the_daemons_lag_percentiles_come_from_its_buckets() {
    let f = figures::figures(None, None, &snap(DAEMON));
    let d = f.daemon.expect("daemon figures");
    // Both files' lags fell between 100 and 250 ms.
    close(d.lag_p50, 0.1 + 0.15 * 1.0 / 2.0);
    close(d.lag_p99, 0.1 + 0.15 * 1.98 / 2.0);
    let labelled = |v: &[(String, f64)]| -> Vec<(String, f64)> { v.to_vec() };
    assert_eq!(
        labelled(&d.files),
        [
            ("discovered".to_string(), 2.0),
            ("ingested".to_string(), 2.0),
            ("failed".to_string(), 0.0),
            ("changed".to_string(), 0.0),
            ("duplicate".to_string(), 0.0),
        ]
    );
    assert_eq!(
        d.reloads,
        [("applied".to_string(), 0.0), ("rejected".to_string(), 0.0)]
    );
    // A daemon's jobs are the file in flight: no ETA from them.
    assert_eq!(f.progress.eta, None);
}

#[test]
fn quantiles_at_the_edges_of_a_histogram() {
    let h = |buckets: &[(f64, f64)]| Histogram {
        buckets: buckets.to_vec(),
        ..Histogram::default()
    };
    // A rank in the +Inf bucket gives the largest finite bound.
    let over = h(&[(0.1, 1.0), (1.0, 2.0), (f64::INFINITY, 10.0)]);
    assert_eq!(over.quantile(0.5), Some(1.0));
    assert_eq!(over.quantile(0.1), Some(0.1));
    assert_eq!(over.quantile(0.05), Some(0.05));
    // No observations, no buckets, or no such quantile.
    assert_eq!(h(&[(0.1, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5), None);
    assert_eq!(h(&[]).quantile(0.5), None);
    assert_eq!(over.quantile(1.5), None);
    // Rank 0 in a bucket holding nothing gives its bound, not 0/0.
    assert_eq!(
        h(&[(0.1, 0.0), (0.2, 5.0), (f64::INFINITY, 5.0)]).quantile(0.0),
        Some(0.1)
    );
    // A bucket read below the one under it (a scrape racing an observation) still gives a bound.
    assert_eq!(
        h(&[(0.1, 5.0), (0.2, 4.0), (f64::INFINITY, 6.0)]).quantile(0.9),
        Some(0.2)
    );
}

#[test]
fn edge_fill_is_in_flight_over_capacity() {
    let f = run_figures(1.0);
    let fills: Vec<(String, Option<f64>)> = f
        .edges
        .iter()
        .map(|e| (format!("{}>{}", e.from, e.to), e.fill))
        .collect();
    assert_eq!(
        fills,
        [
            ("orders>orders.parse".to_string(), Some(1.0)),
            ("orders>centrepoint".to_string(), Some(1.0)),
            ("centrepoint>stats".to_string(), Some(0.0)),
            ("centrepoint>extract".to_string(), Some(1.0)),
            ("stats>tables".to_string(), Some(0.0)),
        ]
    );
    assert_eq!(fill(3.0, 8.0), Some(0.375));
    assert_eq!(fill(1.0, 0.0), None);
}

#[test]
fn the_eta_is_the_remaining_jobs_at_the_pace_jobs_finished() {
    // 2 jobs finished in 10 s; 4 to go.
    assert_eq!(
        figures::eta(1.0, 3.0, 10.0, 4.0),
        Some(Duration::from_secs(20))
    );
    assert_eq!(figures::eta(3.0, 3.0, 10.0, 4.0), None);
    let with_jobs = |pending: &str, running: &str, done: &str| {
        snap(&format!(
            "sweep_jobs{{state=\"pending\"}} {pending}\nsweep_jobs{{state=\"running\"}} {running}\n\
             sweep_jobs{{state=\"done\"}} {done}\nsweep_jobs{{state=\"failed\"}} 0\n"
        ))
    };
    let (then, now) = (with_jobs("9", "1", "0"), with_jobs("5", "2", "3"));
    let base = Earlier {
        snap: &then,
        secs: 6.0,
    };
    let p = figures::figures(None, Some(base), &now).progress;
    assert_eq!(p.eta, Some(Duration::from_secs(14)));
    assert_eq!((p.jobs_done, p.jobs_total), (3.0, 10.0));
    assert!(!p.ended());
    let done = with_jobs("0", "0", "10");
    assert!(figures::figures(None, None, &done).progress.ended());
}

// --- the view ---

#[test]
fn numbers_are_formatted_for_narrow_columns() {
    assert_eq!(count(0.0), "0");
    assert_eq!(count(7816.4), "7,816");
    assert_eq!(count(23955.0), "23,955");
    assert_eq!(count(99999.0), "99,999");
    assert_eq!(count(123456.0), "123k");
    assert_eq!(count(1_250_000.0), "1.25M");
    assert_eq!(count(12_345_678.0), "12.3M");
    assert_eq!(count(6.5e9), "6.50G");
    assert_eq!(count(f64::NAN), "—");
    assert_eq!(bytes(512.0), "512 B");
    assert_eq!(bytes(3535339.0), "3.54 MB");
    assert_eq!(bytes(621923.0), "622 kB");
    assert_eq!(seconds(0.075), "75.0ms");
    assert_eq!(seconds(0.0001 * 26.0 / 29.0), "90µs");
    assert_eq!(seconds(1.5), "1.50s");
    assert_eq!(hms(Duration::from_secs(20)), "20s");
    assert_eq!(hms(Duration::from_secs(185)), "3m05s");
    assert_eq!(hms(Duration::from_secs(7620)), "2h07m");
    assert_eq!(fill_bar(0.5), "██████████░░░░░░░░░░  50%");
    assert_eq!(fill_bar(1.25), "████████████████████ 125%");
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Local> {
    Local
        .with_ymd_and_hms(2026, 11, 24, h, m, s)
        .earliest()
        .expect("a local time")
}

/// The screen drawn at 120 × 30, as lines of text.
fn render(f: &Figures, link: &Link, now: DateTime<Local>) -> Vec<String> {
    let mut term = Terminal::new(TestBackend::new(120, 30)).unwrap();
    let screen = Screen {
        url: "http://127.0.0.1:9898/metrics",
        version: Some("0.1.0"),
        figures: f,
        seen: at(12, 3, 4),
        link,
        now,
    };
    term.draw(|frame| view::draw(frame, &screen)).unwrap();
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

#[track_caller]
fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line holds {needle:?}:\n{}", lines.join("\n")))
}

#[test]
fn the_screen_shows_rates_latency_fill_and_progress() {
    let f = run_figures(2.0);
    let lines = render(&f, &Link::Live, at(12, 3, 5));
    let words = |l: &str| -> Vec<String> {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(
        words(line_with(&lines, " orders ")),
        [
            "orders", "reader", "3,908", "3,908", "23,955", "23,955", "0", "0", "0", "1.8ms",
            "2.4ms", "2.5ms"
        ]
    );
    assert_eq!(
        words(line_with(&lines, " extract ")),
        [
            "extract",
            "rows_sink",
            "1,241",
            "1,241",
            "6,225",
            "6,225",
            "0",
            "0",
            "0",
            "75.0ms",
            "95.0ms",
            "99.5ms"
        ]
    );
    assert_eq!(
        words(line_with(&lines, "centrepoint → extract")),
        [
            "centrepoint",
            "→",
            "extract",
            "4",
            "4",
            "████████████████████",
            "100%"
        ]
    );
    assert_eq!(
        words(line_with(&lines, "centrepoint → stats")),
        [
            "centrepoint",
            "→",
            "stats",
            "0",
            "4",
            "░░░░░░░░░░░░░░░░░░░░",
            "0%"
        ]
    );
    assert!(line_with(&lines, "jobs ").contains("0/1 done, 1 running, 0 pending, 0 failed"));
    assert!(line_with(&lines, "input ").contains("3.54 MB read, 622 kB/s"));
    assert!(line_with(&lines, " sweep top ").contains("sweep 0.1.0  scraped 12:03:04"));
    assert!(line_with(&lines, " live ").contains("q, Esc or Ctrl-C quits"));
}

#[test]
fn an_endpoint_that_went_away_is_said_so_with_when_it_was_last_seen() {
    let f = run_figures(1.0);
    let gone = Link::Gone {
        reason: "connection refused".into(),
    };
    let lines = render(&f, &gone, at(12, 3, 9));
    assert_eq!(
        lines.last().map(|l| l.trim_end()),
        Some(" endpoint went away: connection refused; last seen 12:03:04 — press q to quit")
    );
    // The last figures stay on screen.
    line_with(&lines, "23,955");
}

#[test]
fn the_daemon_block_shows_pending_files_lag_and_the_last_commit() {
    let f = figures::figures(None, None, &snap(DAEMON));
    let commit = DateTime::from_timestamp_millis(1796027289229)
        .unwrap()
        .with_timezone(&Local);
    let lines = render(&f, &Link::Live, commit + chrono::Duration::seconds(3));
    assert!(line_with(&lines, "pending files").contains(
        "pending files 0   files 2 discovered, 2 ingested, 0 failed, 0 changed, 0 duplicate"
    ));
    let second = line_with(&lines, "ingest lag");
    assert!(
        second.contains("ingest lag p50 175.0ms, p99 248.5ms"),
        "{second}"
    );
    assert!(
        second.contains(&format!(
            "last commit {} (3 s ago)",
            commit.format("%H:%M:%S")
        )),
        "{second}"
    );
    let third = line_with(&lines, "state ");
    assert!(
        third.contains("state v2, 138 kB   reloads 0 applied, 0 rejected"),
        "{third}"
    );
}

// --- the loop's state and its inputs ---

fn scraped(at: Instant, result: Result<Snapshot, ScrapeError>) -> Scraped {
    Scraped {
        at,
        wall: Local::now(),
        result,
    }
}

#[test]
fn the_app_keeps_the_last_figures_while_gone_and_starts_afresh_after() {
    let t0 = Instant::now();
    let mut app = App::new("u".into(), snap(RUN_1), t0, Local::now());
    assert_eq!(app.figures.stages[0].received_per_sec, None);
    app.update(scraped(t0 + Duration::from_secs(2), Ok(snap(RUN_2))));
    assert_eq!(app.link, Link::Live);
    assert_eq!(app.figures.stages[0].received_per_sec, Some(3908.0));
    app.update(scraped(
        t0 + Duration::from_secs(3),
        Err(ScrapeError::Connect("connection refused".into())),
    ));
    assert_eq!(
        app.link,
        Link::Gone {
            reason: "connection refused".into()
        }
    );
    assert_eq!(app.figures.stages[0].received_per_sec, Some(3908.0));
    // Back (a restarted process): no rate against readings from before the outage.
    app.update(scraped(t0 + Duration::from_secs(9), Ok(snap(RUN_1))));
    assert_eq!(app.link, Link::Live);
    assert_eq!(app.figures.stages[0].received_per_sec, None);
    assert_eq!(app.figures.stages[0].received, 16139.0);
}

#[test]
fn a_daemons_jobs_going_back_to_zero_keep_its_rates() {
    let at_file = |done: u32, received: u32| {
        snap(&format!(
            "sweep_jobs{{state=\"done\"}} {done}\n\
             sweep_component_received_records_total{{component_id=\"orders\",component_kind=\"reader\"}} {received}\n\
             sweep_daemon_pending_files 0\n"
        ))
    };
    let t0 = Instant::now();
    let mut app = App::new("u".into(), at_file(1, 100), t0, Local::now());
    app.update(scraped(t0 + Duration::from_secs(2), Ok(at_file(0, 300))));
    assert_eq!(app.figures.stages[0].received_per_sec, Some(100.0));
    assert_eq!(app.base.snap.jobs.done, 0.0);
}

#[test]
fn addresses_become_metrics_urls() {
    for (addr, url) in [
        ("9898", "http://127.0.0.1:9898/metrics"),
        (":9184", "http://127.0.0.1:9184/metrics"),
        ("127.0.0.1:9898", "http://127.0.0.1:9898/metrics"),
        ("[::1]:9898", "http://[::1]:9898/metrics"),
        ("localhost:9898", "http://localhost:9898/metrics"),
        ("http://127.0.0.1:9184", "http://127.0.0.1:9184/metrics"),
        ("http://box:9184/metrics", "http://box:9184/metrics"),
    ] {
        assert_eq!(metrics_url(addr).unwrap(), url, "{addr}");
    }
    for addr in [
        "",
        "box",
        "box:99999",
        "a b:1",
        "http://",
        "http:///m",
        "ftp://x:1",
    ] {
        assert!(
            matches!(metrics_url(addr), Err(TopError::Address(_))),
            "{addr}"
        );
    }
    assert!(matches!(
        metrics_url("https://box:9898"),
        Err(TopError::Https(_))
    ));
}

#[test]
fn q_esc_and_ctrl_c_quit() {
    let key = |code, modifiers| KeyEvent::new(code, modifiers);
    assert!(quits(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
    assert!(quits(&key(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(quits(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!quits(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
    assert!(!quits(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
    let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert!(!quits(&release));
}

#[test]
fn exit_codes_follow_mains_conventions() {
    let unreachable = TopError::Unreachable {
        url: "http://127.0.0.1:1/metrics".into(),
        reason: ScrapeError::Connect("connection refused".into()),
    };
    assert_eq!(unreachable.exit_code(), 1);
    assert_eq!(
        unreachable.to_string(),
        "cannot read http://127.0.0.1:1/metrics: connection refused"
    );
    assert_eq!(TopError::Address("x".into()).exit_code(), 2);
    assert_eq!(TopError::NotATerminal.exit_code(), 2);
}
