//! The run report, `execution_metrics.json`, as typed values: what the CLI prints, the daemon
//! records and the file holds all come from one [`RunReport`].
//!
//! Fields are declared in alphabetical order, the order the file has always had (it was a
//! `serde_json::Value`, whose maps sort their keys), so existing consumers read it unchanged.
//!
//! Each job's rows are reconciled: rows read = kept + filtered out + rejected, where "kept" and
//! "filtered out" follow the chain of filters from the job's reader. When a reader feeds more
//! than one filter path, each path is reported and reconciles on its own.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Resources, Topology};
use crate::flow::SinkReport;
use crate::flow::stats::{Control, JobState, JobStats, ParquetScan, RunStats};

/// Whether a run succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub duration_sec: f64,
    pub edges: Vec<EdgeReport>,
    /// Every failure, first first, as the messages say them.
    pub errors: Vec<String>,
    pub jobs: Vec<JobReport>,
    pub pipeline: String,
    pub process: ProcessReport,
    /// The `[runtime]` settings the run used.
    pub settings: Settings,
    pub sinks: Vec<SinkSummary>,
    pub stages: Vec<StageReport>,
    pub started_at: String,
    pub status: RunStatus,
    pub totals: Totals,
}

/// The `[runtime]` settings a run used, `workers` as decided (one per core for `"auto"`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    pub block_bytes: usize,
    pub edge_capacity: usize,
    pub workers: usize,
}

/// Sums over every job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub bytes_read: u64,
    pub file_bytes: u64,
    pub jobs: usize,
    pub jobs_done: usize,
    pub jobs_failed: usize,
    pub jobs_not_started: usize,
    pub mb_per_sec: f64,
    /// The Parquet files' scans summed, when any was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetScan>,
    pub rows_filtered_out: u64,
    pub rows_kept: u64,
    pub rows_per_sec: f64,
    pub rows_read: u64,
    pub rows_rejected: u64,
}

impl Totals {
    /// Adds the jobs' row and byte counts: the ledger's sums, the same for a run and a merge.
    pub(crate) fn add_jobs(&mut self, jobs: &[JobReport]) {
        for j in jobs {
            self.rows_read += j.rows_read;
            self.rows_kept += j.rows_kept;
            self.rows_filtered_out += j.rows_filtered_out;
            self.rows_rejected += j.rows_rejected;
            self.bytes_read += j.bytes_read;
            self.file_bytes += j.file_bytes;
            if let Some(p) = &j.parquet {
                self.parquet.get_or_insert_default().add(p);
            }
        }
    }
}

/// One input file.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub bytes_read: u64,
    pub duration_sec: f64,
    pub error: Option<String>,
    pub file: String,
    pub file_bytes: u64,
    pub job: u32,
    pub mb_per_sec: f64,
    /// A Parquet file's row groups and pages read and skipped, and bytes read from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetScan>,
    /// Each filter path, when the reader feeds more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<PathCounts>>,
    pub reader: Option<String>,
    pub rows_filtered_out: u64,
    pub rows_kept: u64,
    pub rows_per_sec: f64,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub status: JobState,
}

/// Kept and filtered-out rows along one chain of filters. A shard's ledger carries them too
/// (`shard::partial::LedgerEntry`), hence `Deserialize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PathCounts {
    pub filters: Vec<String>,
    pub rows_filtered_out: u64,
    pub rows_kept: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    pub cpu_seconds: f64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    pub peak_rss_bytes: u64,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub batch_latency_sec: Latency,
    pub batches: u64,
    /// The kind's label: "reader", "rows sink"…
    pub kind: &'static str,
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub max: f64,
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EdgeReport {
    pub capacity: usize,
    pub from: String,
    pub max_depth: usize,
    pub messages: u64,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkSummary {
    pub detail: String,
    pub name: String,
    pub path: String,
    /// "written" or "not written".
    pub status: &'static str,
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
fn job_report(job: &JobStats, topo: &Topology, filter_names: &[String]) -> JobReport {
    let read = job.rows_read.load(Ordering::Relaxed);
    let rejected = job.rejected.load(Ordering::Relaxed);
    let parsed = read - rejected.min(read);
    let paths = topo
        .filter_paths
        .get(job.reader)
        .cloned()
        .unwrap_or_default();
    let counts: Vec<PathCounts> = if paths.is_empty() {
        vec![PathCounts {
            filters: Vec::new(),
            rows_filtered_out: 0,
            rows_kept: parsed,
        }]
    } else {
        paths
            .iter()
            .map(|p| PathCounts {
                filters: p.iter().map(|&f| filter_names[f].clone()).collect(),
                rows_filtered_out: p
                    .iter()
                    .map(|&f| job.filters[f].dropped.load(Ordering::Relaxed))
                    .sum(),
                rows_kept: p
                    .last()
                    .map_or(parsed, |&f| job.filters[f].kept.load(Ordering::Relaxed)),
            })
            .collect()
    };
    let (kept, filtered) = (counts[0].rows_kept, counts[0].rows_filtered_out);
    let d = job.duration();
    let bytes_read = job.bytes_read.load(Ordering::Relaxed);
    JobReport {
        bytes_read,
        duration_sec: secs(d),
        error: job.error(),
        file: job.path.display().to_string(),
        file_bytes: job.file_bytes,
        job: job.id,
        mb_per_sec: per_sec(bytes_read as f64 / 1e6, d),
        parquet: job.scan(),
        paths: (counts.len() > 1).then_some(counts),
        reader: topo.stages.get(job.reader).map(|s| s.0.clone()),
        rows_filtered_out: filtered,
        rows_kept: kept,
        rows_per_sec: per_sec(read as f64, d),
        rows_read: read,
        rows_rejected: rejected,
        status: job.state(),
    }
}

/// Records what a sink did after the report was first made (see `flow::AfterRun`): its entry
/// says so, and a failure fails the run (a run that had failed already, and so was not
/// written, gains no error).
pub(crate) fn settle_sink(report: &mut RunReport, sink: &str, result: &Result<String, String>) {
    if let Some(s) = report.sinks.iter_mut().find(|s| s.name == sink) {
        (s.detail, s.status) = match result {
            Ok(d) => (d.clone(), "written"),
            Err(e) => (e.clone(), "not written"),
        };
    }
    if let Err(e) = result
        && report.status == RunStatus::Ok
    {
        report.errors.push(format!("sink `{sink}`: {e}"));
        report.status = RunStatus::Failed;
    }
}

/// The run report.
pub(crate) fn report(
    stats: &RunStats,
    control: &Control,
    topo: &Topology,
    sinks: &[SinkReport],
    res: Resources,
    started_at: SystemTime,
) -> RunReport {
    let jobs = stats.jobs();
    let job_reports: Vec<JobReport> = jobs
        .iter()
        .map(|j| job_report(j, topo, &stats.filter_names))
        .collect();
    let elapsed = stats.started.elapsed();
    let errors: Vec<String> = control.errors().iter().map(|e| e.to_string()).collect();
    let failed_sinks = sinks.iter().any(|s| s.result.is_err());
    let count = |s: JobState| jobs.iter().filter(|j| j.state() == s).count();
    let mut totals = Totals {
        jobs: jobs.len(),
        jobs_done: count(JobState::Done),
        jobs_failed: count(JobState::Failed),
        jobs_not_started: count(JobState::Pending),
        ..Totals::default()
    };
    totals.add_jobs(&job_reports);
    totals.rows_per_sec = per_sec(totals.rows_read as f64, elapsed);
    totals.mb_per_sec = per_sec(totals.bytes_read as f64 / 1e6, elapsed);
    RunReport {
        duration_sec: secs(elapsed),
        edges: stats
            .edges()
            .iter()
            .map(|e| EdgeReport {
                capacity: e.capacity,
                from: e.from.clone(),
                max_depth: e.max_depth(),
                messages: e.sent.load(Ordering::Relaxed),
                to: e.to.clone(),
            })
            .collect(),
        status: if errors.is_empty() && !failed_sinks {
            RunStatus::Ok
        } else {
            RunStatus::Failed
        },
        errors,
        jobs: job_reports,
        pipeline: topo.pipeline.clone(),
        process: ProcessReport {
            cpu_seconds: (res.cpu_seconds * 1000.0).round() / 1000.0,
            disk_read_bytes: res.disk_read_bytes,
            disk_written_bytes: res.disk_written_bytes,
            peak_rss_bytes: res.peak_rss_bytes,
            peak_rss_mib: ((res.peak_rss_bytes as f64 / 1048576.0) * 10.0).round() / 10.0,
        },
        settings: topo.settings.clone(),
        sinks: sinks
            .iter()
            .map(|s| SinkSummary {
                detail: match &s.result {
                    Ok(d) | Err(d) => d.clone(),
                },
                name: s.sink.clone(),
                path: s.path.display().to_string(),
                status: if s.result.is_ok() {
                    "written"
                } else {
                    "not written"
                },
            })
            .collect(),
        stages: stats
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (p50, p99, max) = s.latency();
                StageReport {
                    batch_latency_sec: Latency { max, p50, p99 },
                    batches: s.batches.load(Ordering::Relaxed),
                    kind: s.kind.label(),
                    name: s.name.clone(),
                    rows_in: s.rows_in.load(Ordering::Relaxed),
                    rows_out: s.rows_out.load(Ordering::Relaxed),
                    workers: topo.stages.get(i).map_or(1, |t| t.2),
                }
            })
            .collect(),
        started_at: chrono::DateTime::<chrono::Utc>::from(started_at).to_rfc3339(),
        totals,
    }
}
