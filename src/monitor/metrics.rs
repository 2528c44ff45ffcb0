//! Prometheus metrics through the `metrics` facade.
//!
//! Stages hold their handles (created once, so a batch costs a few atomic adds, never a registry
//! lookup) and record per batch; the monitor publishes gauges (edges, jobs, process) on a 1 s
//! tick. Names follow Prometheus conventions: a `sweep_` prefix, base units, `_total` counters,
//! and labels that never name a file, security or participant, so series stay few.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::Resources;
use crate::flow::stats::{JobState, RunStats};

pub const BATCH_DURATION: &str = "sweep_component_batch_duration_seconds";

/// Bucket bounds for batch durations, 100 µs to 10 s: batches take milliseconds.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub const INGEST_LAG: &str = "sweep_daemon_ingest_lag_seconds";

/// Bucket bounds for the daemon's ingest lag, 50 ms to an hour.
const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Starts the `/metrics` HTTP listener and installs the recorder. Without the explicit buckets
/// the exporter would render the histogram as a summary.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(BATCH_DURATION.to_string()), BUCKETS)
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(Matcher::Full(INGEST_LAG.to_string()), LAG_BUCKETS)
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    gauge!("sweep_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "sweep_component_received_records_total",
        "Rows received by a stage."
    );
    describe_counter!(
        "sweep_component_sent_records_total",
        "Rows a stage passed on."
    );
    describe_counter!(
        "sweep_component_discarded_records_total",
        "Rows dropped by a stage: filtered out, or rejected as malformed."
    );
    describe_counter!(
        "sweep_component_errors_total",
        "Errors that failed a job or an output."
    );
    describe_histogram!(
        BATCH_DURATION,
        Unit::Seconds,
        "Time a stage spent on one batch."
    );
    describe_gauge!(
        "sweep_edge_in_flight",
        "Batches queued or being handled on a bounded edge."
    );
    describe_gauge!(
        "sweep_edge_capacity",
        "Most batches a bounded edge holds before its sender waits."
    );
    describe_counter!(
        "sweep_input_bytes_total",
        Unit::Bytes,
        "Bytes read by a reader, after decompression."
    );
    describe_gauge!("sweep_jobs", "Input files by state.");
    describe_gauge!(
        "sweep_process_cpu_seconds_total",
        Unit::Seconds,
        "CPU time used by the process."
    );
    describe_gauge!(
        "sweep_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the process."
    );
    describe_counter!(
        "sweep_process_disk_read_bytes_total",
        Unit::Bytes,
        "Bytes the process read from disk."
    );
    describe_counter!(
        "sweep_process_disk_written_bytes_total",
        Unit::Bytes,
        "Bytes the process wrote to disk."
    );
    describe_gauge!("sweep_build_info", "Always 1; the version is a label.");
    describe_counter!(
        "sweep_daemon_files_total",
        "Files the daemon found complete, by what became of them: discovered, ingested, failed, \
         changed (new content under an ingested name), duplicate (content already ingested)."
    );
    describe_histogram!(
        INGEST_LAG,
        Unit::Seconds,
        "From a file being complete to its rows being in committed state."
    );
    describe_gauge!(
        "sweep_daemon_last_commit_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the daemon's last state commit."
    );
    describe_gauge!(
        "sweep_daemon_state_bytes",
        Unit::Bytes,
        "Size of the committed state file."
    );
    describe_gauge!(
        "sweep_daemon_state_version",
        "Commits of the daemon's state so far."
    );
    describe_gauge!(
        "sweep_daemon_pending_files",
        "Complete files waiting to be ingested."
    );
    describe_counter!(
        "sweep_daemon_reloads_total",
        "SIGHUP reloads, by result: applied or rejected (the old pipeline kept running)."
    );
}

/// Publishes the sampled gauges: edges, jobs, input bytes and the process's resources.
pub fn publish(stats: &RunStats, res: &Resources) {
    for e in stats.edges() {
        let l = [("from", e.from.clone()), ("to", e.to.clone())];
        gauge!("sweep_edge_in_flight", &l).set(e.depth() as f64);
        gauge!("sweep_edge_capacity", &l).set(e.capacity as f64);
    }
    let jobs = stats.jobs();
    for (state, name) in [
        (JobState::Pending, "pending"),
        (JobState::Running, "running"),
        (JobState::Done, "done"),
        (JobState::Failed, "failed"),
    ] {
        gauge!("sweep_jobs", "state" => name)
            .set(jobs.iter().filter(|j| j.state() == state).count() as f64);
    }
    for (i, s) in stats.stages.iter().enumerate() {
        let bytes: u64 = jobs
            .iter()
            .filter(|j| j.reader == i)
            .map(|j| j.bytes_read.load(Ordering::Relaxed))
            .sum();
        if bytes > 0 {
            s.metrics.input_bytes(bytes);
        }
    }
    gauge!("sweep_process_cpu_seconds_total").set(res.cpu_seconds);
    gauge!("sweep_process_resident_memory_bytes").set(res.rss_bytes as f64);
    counter!("sweep_process_disk_read_bytes_total").absolute(res.disk_read_bytes);
    counter!("sweep_process_disk_written_bytes_total").absolute(res.disk_written_bytes);
}

/// The daemon's own series.
pub mod daemon {
    use metrics::{counter, gauge, histogram};

    /// Every labelled series at 0 from the start, so that the first file to fail (or reload to be
    /// refused) is an increase Prometheus can see, not a series born at 1.
    pub fn init() {
        for outcome in ["discovered", "ingested", "failed", "changed", "duplicate"] {
            counter!("sweep_daemon_files_total", "outcome" => outcome).increment(0);
        }
        for result in ["applied", "rejected"] {
            counter!("sweep_daemon_reloads_total", "result" => result).increment(0);
        }
        pending(0);
    }

    /// Between files the daemon has no job: the per-run job gauges go back to 0, so a failed
    /// file is reported once, by `sweep_daemon_files_total`, not as a batch job failing forever.
    pub fn between_files() {
        for state in ["pending", "running", "done", "failed"] {
            gauge!("sweep_jobs", "state" => state).set(0.0);
        }
    }

    pub fn file(outcome: &'static str) {
        counter!("sweep_daemon_files_total", "outcome" => outcome).increment(1);
    }

    pub fn committed(unix_secs: f64, state_bytes: u64, version: u64) {
        gauge!("sweep_daemon_last_commit_timestamp_seconds").set(unix_secs);
        gauge!("sweep_daemon_state_bytes").set(state_bytes as f64);
        gauge!("sweep_daemon_state_version").set(version as f64);
    }

    pub fn lag(seconds: f64) {
        histogram!(super::INGEST_LAG).record(seconds);
    }

    pub fn pending(n: usize) {
        gauge!("sweep_daemon_pending_files").set(n as f64);
    }

    pub fn reload(result: &'static str) {
        counter!("sweep_daemon_reloads_total", "result" => result).increment(1);
    }
}
