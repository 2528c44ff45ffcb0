//! What the view shows, derived from snapshots: rates from counter deltas between two scrapes,
//! latency percentiles from histogram buckets, edge fill, progress and an ETA.

use std::collections::BTreeMap;
use std::time::Duration;

use super::scrape::{Histogram, Snapshot};
use crate::monitor::metrics::daemon::{FILE_OUTCOMES, RELOAD_RESULTS};

/// The percentiles shown for batch latency.
pub(crate) const PERCENTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Per-second increase of a counter read twice, `secs` apart. A counter that went down was reset
/// (a new process on the same address) and counts from zero, as Prometheus's `rate()` does.
pub(crate) fn rate(before: f64, now: f64, secs: f64) -> Option<f64> {
    if secs.is_nan() || secs <= 0.0 {
        return None;
    }
    let increase = if now >= before { now - before } else { now };
    Some(increase / secs)
}

/// The share of an edge's capacity in use: 1.0 is full, its sender waiting (back-pressure).
pub(crate) fn fill(in_flight: f64, capacity: f64) -> Option<f64> {
    (capacity > 0.0).then(|| in_flight / capacity)
}

impl Histogram {
    /// The `q`-quantile (0 to 1) of the observations, estimated as Prometheus's
    /// `histogram_quantile` does: linear within the bucket the rank falls in, from 0 for the first
    /// bucket; a rank in the `+Inf` bucket gives the largest finite bound. `None` without
    /// observations.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                // Only rank 0 can land in a bucket that holds nothing more than the one under it.
                let width = count - below;
                if width <= 0.0 {
                    return Some(le);
                }
                return Some(lower + (le - lower) * (rank - below) / width);
            }
            lower = le;
            below = count;
        }
        Some(lower)
    }
}

/// Time left for `remaining` jobs at the pace jobs finished over the last `secs`: `finished_then`
/// then, `finished_now` now. `None` until one has finished in that time.
pub(crate) fn eta(
    finished_then: f64,
    finished_now: f64,
    secs: f64,
    remaining: f64,
) -> Option<Duration> {
    let per_sec = rate(finished_then, finished_now, secs).filter(|r| *r > 0.0)?;
    Duration::try_from_secs_f64(remaining.max(0.0) / per_sec).ok()
}

/// One stage's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StageRow {
    pub id: String,
    pub kind: String,
    /// Rows per second since the previous scrape; `None` on the first.
    pub received_per_sec: Option<f64>,
    pub sent_per_sec: Option<f64>,
    pub received: f64,
    pub sent: f64,
    pub filtered: f64,
    pub rejected: f64,
    pub errors: f64,
    /// Batch latency at [`PERCENTILES`], in seconds, over the run so far.
    pub latency: [Option<f64>; 3],
}

/// One edge's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EdgeRow {
    pub from: String,
    pub to: String,
    pub in_flight: f64,
    pub capacity: f64,
    pub fill: Option<f64>,
}

/// How far the run is.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Progress {
    pub jobs_total: f64,
    pub jobs_done: f64,
    pub jobs_running: f64,
    pub jobs_pending: f64,
    pub jobs_failed: f64,
    /// Every reader's bytes, after decompression.
    pub bytes_read: f64,
    pub bytes_per_sec: Option<f64>,
    /// Rows readers rejected as malformed.
    pub rejected: f64,
    pub eta: Option<Duration>,
}

impl Progress {
    /// Every job is done or failed: a batch run that ended but still serves its metrics
    /// (`hold_secs`).
    pub(crate) fn ended(&self) -> bool {
        self.jobs_total > 0.0 && self.jobs_pending + self.jobs_running == 0.0
    }
}

/// The daemon's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DaemonRow {
    pub pending: f64,
    /// `sweep_daemon_files_total` by outcome, in the order a file meets them.
    pub files: Vec<(String, f64)>,
    pub lag_p50: Option<f64>,
    pub lag_p99: Option<f64>,
    /// Unix seconds.
    pub last_commit: Option<f64>,
    pub state_version: Option<f64>,
    pub state_bytes: Option<f64>,
    /// `sweep_daemon_reloads_total` by result.
    pub reloads: Vec<(String, f64)>,
}

/// Everything the view shows, derived from the latest snapshot and the one before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Figures {
    pub stages: Vec<StageRow>,
    pub edges: Vec<EdgeRow>,
    pub progress: Progress,
    pub daemon: Option<DaemonRow>,
}

/// A snapshot read some seconds before the latest one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Earlier<'a> {
    pub snap: &'a Snapshot,
    /// Seconds between it and the latest.
    pub secs: f64,
}

/// The figures of `now`, with rates against `prev` (the previous scrape) and the ETA's pace
/// against `base` (an earlier scrape of the same run, the first one seen).
pub(crate) fn figures(prev: Option<Earlier>, base: Option<Earlier>, now: &Snapshot) -> Figures {
    let stages = now
        .stages
        .iter()
        .map(|s| {
            let before = prev.and_then(|p| {
                p.snap
                    .stages
                    .iter()
                    .find(|b| b.id == s.id)
                    .map(|b| (b, p.secs))
            });
            StageRow {
                id: s.id.clone(),
                kind: s.kind.clone(),
                received_per_sec: before.and_then(|(b, t)| rate(b.received, s.received, t)),
                sent_per_sec: before.and_then(|(b, t)| rate(b.sent, s.sent, t)),
                received: s.received,
                sent: s.sent,
                filtered: s.filtered,
                rejected: s.rejected,
                errors: s.errors,
                latency: PERCENTILES.map(|q| s.latency.quantile(q)),
            }
        })
        .collect();
    let edges = now
        .edges
        .iter()
        .map(|e| EdgeRow {
            from: e.from.clone(),
            to: e.to.clone(),
            in_flight: e.in_flight,
            capacity: e.capacity,
            fill: fill(e.in_flight, e.capacity),
        })
        .collect();
    let bytes = |s: &Snapshot| -> f64 { s.stages.iter().filter_map(|st| st.input_bytes).sum() };
    let jobs = now.jobs;
    let progress = Progress {
        jobs_total: jobs.total(),
        jobs_done: jobs.done,
        jobs_running: jobs.running,
        jobs_pending: jobs.pending,
        jobs_failed: jobs.failed,
        bytes_read: bytes(now),
        bytes_per_sec: prev.and_then(|p| rate(bytes(p.snap), bytes(now), p.secs)),
        rejected: now.stages.iter().map(|s| s.rejected).sum(),
        // A daemon's jobs are the file in flight, so a pace over them says nothing of its queue.
        eta: base.filter(|_| now.daemon.is_none()).and_then(|b| {
            eta(
                b.snap.jobs.finished(),
                jobs.finished(),
                b.secs,
                jobs.pending + jobs.running,
            )
        }),
    };
    let daemon = now.daemon.as_ref().map(|d| DaemonRow {
        pending: d.pending,
        files: in_order(&d.files, &FILE_OUTCOMES),
        lag_p50: d.lag.quantile(0.5),
        lag_p99: d.lag.quantile(0.99),
        last_commit: d.last_commit,
        state_version: d.state_version,
        state_bytes: d.state_bytes,
        reloads: in_order(&d.reloads, &RELOAD_RESULTS),
    });
    Figures {
        stages,
        edges,
        progress,
        daemon,
    }
}

/// The labels of `by` in the order of `known`, then any others by name.
fn in_order(by: &BTreeMap<String, f64>, known: &[&str]) -> Vec<(String, f64)> {
    let rank = |k: &str| known.iter().position(|x| *x == k).unwrap_or(known.len());
    let mut out: Vec<(String, f64)> = by.iter().map(|(k, v)| (k.clone(), *v)).collect();
    out.sort_by_key(|(k, _)| rank(k));
    out
}
