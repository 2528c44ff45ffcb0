//! Counters shared by the stages of a run, read by the monitor: per job (one input file), per
//! stage and per edge. Stages update them once per batch, never per row.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::edge::Edge;
use super::metrics::StageMetrics;
use super::{Kind, StageError};
use crate::batch::JobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

/// Rows a filter let through and dropped, for one job.
#[derive(Debug, Default)]
pub struct FilterCounts {
    pub kept: AtomicU64,
    pub dropped: AtomicU64,
}

/// What reading one Parquet file decoded and skipped: row groups, the data pages of the columns
/// decoded (counted where the file has a page index), the rows the skipped parts hold (read by
/// the ledger's count and filtered out), and the bytes taken from the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParquetScan {
    pub bytes_read: u64,
    pub pages_read: u64,
    pub pages_skipped: u64,
    pub row_groups_read: u64,
    pub row_groups_skipped: u64,
    pub rows_skipped: u64,
}

impl ParquetScan {
    pub(crate) fn add(&mut self, o: &ParquetScan) {
        self.bytes_read += o.bytes_read;
        self.pages_read += o.pages_read;
        self.pages_skipped += o.pages_skipped;
        self.row_groups_read += o.row_groups_read;
        self.row_groups_skipped += o.row_groups_skipped;
        self.rows_skipped += o.rows_skipped;
    }
}

/// One input file.
#[derive(Debug)]
pub struct JobStats {
    pub id: JobId,
    /// Index of the reader stage that owns the job.
    pub reader: usize,
    pub path: PathBuf,
    /// Size on disk (0 for a stream).
    pub file_bytes: u64,
    /// The path is a named pipe or another stream, not a regular file: it is read once, to its
    /// end, with nothing known of its size in advance.
    pub stream: bool,
    /// Bytes after decompression.
    pub bytes_read: AtomicU64,
    pub rows_read: AtomicU64,
    pub rejected: AtomicU64,
    pub blocks_sent: AtomicU64,
    pub blocks_parsed: AtomicU64,
    /// Set when the reader has sent the job's last block.
    pub reading_done: AtomicBool,
    /// One entry per filter stage, by filter ordinal.
    pub filters: Vec<FilterCounts>,
    /// A Parquet file's scan, once read.
    pub scan: Mutex<Option<ParquetScan>>,
    pub state: Mutex<JobState>,
    pub started: Mutex<Option<Instant>>,
    pub finished: Mutex<Option<Instant>>,
    pub error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking stage thread must not take the counters down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl JobStats {
    pub(crate) fn state(&self) -> JobState {
        *lock(&self.state)
    }

    pub(crate) fn start(&self) {
        *lock(&self.state) = JobState::Running;
        *lock(&self.started) = Some(Instant::now());
    }

    /// Marks the job done once its reading has ended and its last block is parsed.
    pub(crate) fn maybe_finish(&self) {
        if self.reading_done.load(Ordering::Acquire)
            && self.blocks_parsed.load(Ordering::Acquire)
                == self.blocks_sent.load(Ordering::Acquire)
        {
            let mut st = lock(&self.state);
            if *st == JobState::Running {
                *st = JobState::Done;
                *lock(&self.finished) = Some(Instant::now());
            }
        }
    }

    pub(crate) fn fail(&self, error: String) {
        *lock(&self.state) = JobState::Failed;
        lock(&self.error).get_or_insert(error);
        lock(&self.finished).get_or_insert_with(Instant::now);
    }

    pub(crate) fn error(&self) -> Option<String> {
        lock(&self.error).clone()
    }

    pub(crate) fn set_scan(&self, scan: ParquetScan) {
        *lock(&self.scan) = Some(scan);
    }

    pub(crate) fn scan(&self) -> Option<ParquetScan> {
        *lock(&self.scan)
    }

    pub(crate) fn duration(&self) -> Duration {
        let start = *lock(&self.started);
        let end = lock(&self.finished).unwrap_or_else(Instant::now);
        start.map_or(Duration::ZERO, |s| end.saturating_duration_since(s))
    }
}

/// One stage: rows in and out, and how long its batches take.
#[derive(Debug)]
pub struct StageStats {
    pub name: String,
    pub kind: Kind,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub batches: AtomicU64,
    /// Handler time per batch, in microseconds.
    latency: Mutex<Histogram<u64>>,
    pub metrics: StageMetrics,
}

impl StageStats {
    pub(crate) fn new(name: &str, kind: Kind) -> Arc<Self> {
        Arc::new(StageStats {
            name: name.to_string(),
            kind,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            metrics: StageMetrics::new(name, kind),
        })
    }

    /// Records rows a filter dropped without seeing them: the reader skipped them, in Parquet
    /// row groups or pages that the filter's statistics rule out.
    pub(crate) fn skipped(&self, rows: u64) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        self.metrics.batch(rows, 0, Duration::ZERO);
        self.metrics.filtered(rows);
    }

    /// Records one batch: rows in and out and the time it took.
    pub(crate) fn batch(&self, rows_in: u64, rows_out: u64, took: Duration) {
        self.rows_in.fetch_add(rows_in, Ordering::Relaxed);
        self.rows_out.fetch_add(rows_out, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics.batch(rows_in, rows_out, took);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = lock(&self.latency).record(us);
    }

    /// p50, p99 and max batch latency in seconds.
    pub(crate) fn latency(&self) -> (f64, f64, f64) {
        let h = lock(&self.latency);
        if h.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let s = |v: u64| v as f64 / 1e6;
        (
            s(h.value_at_quantile(0.5)),
            s(h.value_at_quantile(0.99)),
            s(h.max()),
        )
    }
}

/// A latency histogram with 3 significant figures that grows as needed.
fn new_histogram() -> Histogram<u64> {
    match Histogram::new(3) {
        Ok(h) => h,
        // Only a sigfig above 5 is refused; 3 is a constant.
        Err(e) => unreachable!("hdrhistogram refused 3 significant figures: {e}"),
    }
}

/// Everything a run counts.
#[derive(Debug)]
pub struct RunStats {
    pub started: Instant,
    pub jobs: RwLock<Vec<Arc<JobStats>>>,
    pub stages: Vec<Arc<StageStats>>,
    pub edges: RwLock<Vec<Arc<Edge>>>,
    /// Names of the filter stages, in filter-ordinal order.
    pub filter_names: Vec<String>,
}

impl RunStats {
    pub(crate) fn job(&self, id: JobId) -> Option<Arc<JobStats>> {
        self.jobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id as usize)
            .cloned()
    }

    pub(crate) fn jobs(&self) -> Vec<Arc<JobStats>> {
        self.jobs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn add_job(
        &self,
        reader: usize,
        path: PathBuf,
        file_bytes: u64,
        stream: bool,
    ) -> Arc<JobStats> {
        let mut jobs = self.jobs.write().unwrap_or_else(|e| e.into_inner());
        let job = Arc::new(JobStats {
            id: jobs.len() as JobId,
            reader,
            path,
            file_bytes,
            stream,
            bytes_read: AtomicU64::new(0),
            rows_read: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            blocks_sent: AtomicU64::new(0),
            blocks_parsed: AtomicU64::new(0),
            reading_done: AtomicBool::new(false),
            filters: self
                .filter_names
                .iter()
                .map(|_| FilterCounts::default())
                .collect(),
            scan: Mutex::new(None),
            state: Mutex::new(JobState::Pending),
            started: Mutex::new(None),
            finished: Mutex::new(None),
            error: Mutex::new(None),
        });
        jobs.push(job.clone());
        job
    }

    pub(crate) fn edges(&self) -> Vec<Arc<Edge>> {
        self.edges.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Run-wide control: the first failure stops readers from taking more input.
#[derive(Debug, Default)]
pub struct Control {
    abort: AtomicBool,
    cancelled: AtomicBool,
    errors: Mutex<Vec<Arc<StageError>>>,
}

impl Control {
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    pub(crate) fn fail(&self, error: StageError) {
        tracing::error!("{error}");
        lock(&self.errors).push(Arc::new(error));
        self.abort.store(true, Ordering::Release);
    }

    /// Stops the run without its having failed: the daemon abandoning the file in flight at its
    /// shutdown deadline. Stages stop as on a failure, and nothing is recorded as an error.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.abort.store(true, Ordering::Release);
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// The failures so far, first first.
    pub(crate) fn errors(&self) -> Vec<Arc<StageError>> {
        lock(&self.errors).clone()
    }
}
