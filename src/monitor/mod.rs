//! The monitor: live progress (an indicatif bar on a terminal, tracing log lines otherwise),
//! process resource sampling through sysinfo (`metrics` serves them to Prometheus), and the run
//! report `execution_metrics.json` (`report`).

pub(crate) mod metrics;
pub(crate) mod report;

pub(crate) use report::{RunReport, RunStatus, Settings, report, settle_sink};

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::config::ProgressMode;
use crate::flow::stats::{Control, JobState, RunStats};

/// Process-level resource readings.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Resources {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
}

/// Samples this process through sysinfo.
pub(crate) struct Sampler {
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
    pub(crate) fn new() -> Self {
        Sampler {
            sys: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
            peak: 0,
        }
    }

    pub(crate) fn sample(&mut self) -> Resources {
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
pub(crate) struct Topology {
    pub pipeline: String,
    /// Per stage: name, kind label, worker threads.
    pub stages: Vec<(String, &'static str, usize)>,
    /// Per reader stage index: each maximal path of filter ordinals downstream of it.
    pub filter_paths: Vec<Vec<Vec<usize>>>,
    /// The `[runtime]` settings the run used, with `workers` decided.
    pub settings: report::Settings,
}

/// Live progress while the run goes.
pub(crate) struct Monitor {
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
    pub(crate) fn new(
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
pub(crate) struct StopMonitor;

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
