//! The monitor: live progress (an indicatif bar on a terminal, tracing log lines otherwise),
//! process resource sampling through sysinfo, and the run report `execution_metrics.json`.
//!
//! Each job's rows are reconciled: rows read = kept + filtered out + rejected, where "kept" and
//! "filtered out" follow the chain of filters from the job's reader. When a reader feeds more
//! than one filter path, each path is reported and reconciles on its own.

pub mod metrics;

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::config::ProgressMode;
use crate::runtime::stats::{Control, JobState, JobStats, RunStats};
use crate::sinks::SinkReport;

/// Process-level resource readings.
#[derive(Debug, Default, Clone, Copy)]
pub struct Resources {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
}

/// Samples this process through sysinfo.
pub struct Sampler {
    /// `None` where sysinfo cannot read this platform; then only the kernel peak is known.
    sys: Option<System>,
    pid: Option<Pid>,
    peak: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    pub fn new() -> Self {
        Sampler {
            sys: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
            peak: 0,
        }
    }

    pub fn sample(&mut self) -> Resources {
        let (Some(pid), Some(sys)) = (self.pid, self.sys.as_mut()) else {
            return Resources {
                peak_rss_bytes: kernel_peak_rss().unwrap_or(0),
                ..Resources::default()
            };
        };
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_disk_usage(),
        );
        let Some(p) = sys.process(pid) else {
            return Resources::default();
        };
        let rss = p.memory();
        // The kernel's high-water mark catches peaks between samples; sysinfo has no such figure.
        self.peak = self.peak.max(rss).max(kernel_peak_rss().unwrap_or(0));
        let disk = p.disk_usage();
        Resources {
            cpu_seconds: p.accumulated_cpu_time() as f64 / 1000.0,
            rss_bytes: rss,
            peak_rss_bytes: self.peak,
            disk_read_bytes: disk.total_read_bytes,
            disk_written_bytes: disk.total_written_bytes,
        }
    }
}

/// `VmHWM` from /proc/self/status, where the platform has it.
fn kernel_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The run's shape, as the report needs it.
#[derive(Debug, Clone)]
pub struct Topology {
    pub pipeline: String,
    /// Per stage: name, kind label, worker threads.
    pub stages: Vec<(String, &'static str, usize)>,
    /// Per reader stage index: each maximal path of filter ordinals downstream of it.
    pub filter_paths: Vec<Vec<Vec<usize>>>,
}

/// Live progress while the run goes.
pub struct Monitor {
    stats: Arc<RunStats>,
    control: Arc<Control>,
    sampler: Arc<Mutex<Sampler>>,
    interval: Duration,
    bar: Option<ProgressBar>,
    log: bool,
    last_rows: u64,
    last_tick: Instant,
    /// Publish Prometheus gauges every second.
    metrics: bool,
}

impl Monitor {
    pub fn new(
        stats: Arc<RunStats>,
        control: Arc<Control>,
        sampler: Arc<Mutex<Sampler>>,
        mode: ProgressMode,
        log_interval: Duration,
        metrics: bool,
    ) -> Self {
        let tty = std::io::stderr().is_terminal();
        let (bar, log) = match mode {
            ProgressMode::Off => (false, false),
            ProgressMode::Bar => (true, false),
            ProgressMode::Log => (false, true),
            ProgressMode::Auto => (tty, !tty),
        };
        let bar = bar.then(|| {
            let total: u64 = stats.jobs().iter().map(|j| j.file_bytes).sum();
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        let interval = if bar.is_some() {
            Duration::from_millis(200)
        } else {
            log_interval
        };
        Monitor {
            stats,
            control,
            sampler,
            interval,
            bar,
            log,
            last_rows: 0,
            last_tick: Instant::now(),
            metrics,
        }
    }

    fn tick(&mut self) {
        let jobs = self.stats.jobs();
        let rows: u64 = jobs
            .iter()
            .map(|j| j.rows_read.load(Ordering::Relaxed))
            .sum();
        let rejected: u64 = jobs
            .iter()
            .map(|j| j.rejected.load(Ordering::Relaxed))
            .sum();
        let done = jobs.iter().filter(|j| j.state() == JobState::Done).count();
        if let Some(bar) = &self.bar {
            // Position in on-disk bytes: finished jobs count whole, plain files by bytes read.
            let pos: u64 = jobs
                .iter()
                .map(|j| match j.state() {
                    JobState::Done | JobState::Failed => j.file_bytes,
                    _ => j.bytes_read.load(Ordering::Relaxed).min(j.file_bytes),
                })
                .sum();
            bar.set_position(pos);
            bar.set_message(format!("{rows} rows, jobs {done}/{}", jobs.len()));
        }
        if self.log {
            let res = self
                .sampler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sample();
            let since = self.last_tick.elapsed().as_secs_f64().max(1e-3);
            let rate = (rows - self.last_rows.min(rows)) as f64 / since;
            tracing::info!(
                rows_read = rows,
                rows_per_sec = rate.round(),
                rejected,
                jobs_done = done,
                jobs = jobs.len(),
                rss_mib = res.rss_bytes >> 20,
                "progress"
            );
        }
        self.last_rows = rows;
        self.last_tick = Instant::now();
        if self.control.aborted()
            && let Some(bar) = &self.bar
        {
            bar.abandon_with_message("failed");
        }
    }
}

/// Ends live progress at the end of a run.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopMonitor;

impl Handler<StopMonitor> for Monitor {
    type Result = ();
    fn handle(&mut self, _: StopMonitor, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for Monitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |m, _| m.tick());
        if self.metrics {
            ctx.run_interval(Duration::from_secs(1), |m, _| {
                let res = m.sampler.lock().unwrap_or_else(|e| e.into_inner()).sample();
                metrics::publish(&m.stats, &res);
            });
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.tick();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn per_sec(n: f64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        (n / d.as_secs_f64()).round()
    }
}

/// One job's counts, with kept / filtered-out along each filter path.
fn job_json(job: &JobStats, topo: &Topology, filter_names: &[String]) -> (Value, u64, u64) {
    let read = job.rows_read.load(Ordering::Relaxed);
    let rejected = job.rejected.load(Ordering::Relaxed);
    let parsed = read - rejected.min(read);
    let paths = topo
        .filter_paths
        .get(job.reader)
        .cloned()
        .unwrap_or_default();
    let path_counts: Vec<(u64, u64, Vec<String>)> = if paths.is_empty() {
        vec![(parsed, 0, Vec::new())]
    } else {
        paths
            .iter()
            .map(|p| {
                let dropped: u64 = p
                    .iter()
                    .map(|&f| job.filters[f].dropped.load(Ordering::Relaxed))
                    .sum();
                let kept = p
                    .last()
                    .map_or(parsed, |&f| job.filters[f].kept.load(Ordering::Relaxed));
                (
                    kept,
                    dropped,
                    p.iter().map(|&f| filter_names[f].clone()).collect(),
                )
            })
            .collect()
    };
    let (kept, filtered, _) = path_counts[0].clone();
    let d = job.duration();
    let mut v = json!({
        "job": job.id,
        "reader": topo.stages.get(job.reader).map(|s| s.0.clone()),
        "file": job.path.display().to_string(),
        "status": job.state(),
        "error": job.error(),
        "file_bytes": job.file_bytes,
        "bytes_read": job.bytes_read.load(Ordering::Relaxed),
        "rows_read": read,
        "rows_kept": kept,
        "rows_filtered_out": filtered,
        "rows_rejected": rejected,
        "duration_sec": secs(d),
        "rows_per_sec": per_sec(read as f64, d),
        "mb_per_sec": per_sec(job.bytes_read.load(Ordering::Relaxed) as f64 / 1e6, d),
    });
    if path_counts.len() > 1 {
        v["paths"] = path_counts
            .iter()
            .map(|(k, f, names)| json!({"filters": names, "rows_kept": k, "rows_filtered_out": f}))
            .collect();
    }
    (v, kept, filtered)
}

/// The run report.
pub fn report(
    stats: &RunStats,
    control: &Control,
    topo: &Topology,
    sinks: &[SinkReport],
    res: Resources,
    started_at: SystemTime,
) -> Value {
    let jobs = stats.jobs();
    let mut total = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let job_values: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let (v, kept, filtered) = job_json(j, topo, &stats.filter_names);
            total.0 += j.rows_read.load(Ordering::Relaxed);
            total.1 += kept;
            total.2 += filtered;
            total.3 += j.rejected.load(Ordering::Relaxed);
            total.4 += j.bytes_read.load(Ordering::Relaxed);
            total.5 += j.file_bytes;
            v
        })
        .collect();
    let elapsed = stats.started.elapsed();
    let errors = control.errors();
    let failed_sinks = sinks.iter().any(|s| s.result.is_err());
    let ok = errors.is_empty() && !failed_sinks;
    let count = |s: JobState| jobs.iter().filter(|j| j.state() == s).count();
    json!({
        "pipeline": topo.pipeline,
        "status": if ok { "ok" } else { "failed" },
        "errors": errors,
        "started_at": chrono::DateTime::<chrono::Utc>::from(started_at).to_rfc3339(),
        "duration_sec": secs(elapsed),
        "totals": {
            "jobs": jobs.len(),
            "jobs_done": count(JobState::Done),
            "jobs_failed": count(JobState::Failed),
            "jobs_not_started": count(JobState::Pending),
            "rows_read": total.0,
            "rows_kept": total.1,
            "rows_filtered_out": total.2,
            "rows_rejected": total.3,
            "bytes_read": total.4,
            "file_bytes": total.5,
            "rows_per_sec": per_sec(total.0 as f64, elapsed),
            "mb_per_sec": per_sec(total.4 as f64 / 1e6, elapsed),
        },
        "jobs": job_values,
        "process": {
            "cpu_seconds": (res.cpu_seconds * 1000.0).round() / 1000.0,
            "peak_rss_bytes": res.peak_rss_bytes,
            "peak_rss_mib": ((res.peak_rss_bytes as f64 / 1048576.0) * 10.0).round() / 10.0,
            "disk_read_bytes": res.disk_read_bytes,
            "disk_written_bytes": res.disk_written_bytes,
        },
        "stages": stats.stages.iter().enumerate().map(|(i, s)| {
            let (p50, p99, max) = s.latency();
            json!({
                "name": s.name,
                "kind": s.kind,
                "workers": topo.stages.get(i).map_or(1, |t| t.2),
                "rows_in": s.rows_in.load(Ordering::Relaxed),
                "rows_out": s.rows_out.load(Ordering::Relaxed),
                "batches": s.batches.load(Ordering::Relaxed),
                "batch_latency_sec": {"p50": p50, "p99": p99, "max": max},
            })
        }).collect::<Vec<_>>(),
        "edges": stats.edges().iter().map(|e| json!({
            "from": e.from,
            "to": e.to,
            "capacity": e.capacity,
            "max_depth": e.max_depth(),
            "messages": e.sent.load(Ordering::Relaxed),
        })).collect::<Vec<_>>(),
        "sinks": sinks.iter().map(|s| json!({
            "name": s.sink,
            "path": s.path.display().to_string(),
            "status": if s.result.is_ok() { "written" } else { "not written" },
            "detail": match &s.result { Ok(d) | Err(d) => d },
        })).collect::<Vec<_>>(),
    })
}
