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
use crate::flow::metrics::name;
use crate::flow::stats::{JobState, RunStats};

/// Bucket bounds for batch durations, 100 µs to 10 s: batches take milliseconds.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bucket bounds for the daemon's ingest lag, 50 ms to an hour.
const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Starts the `/metrics` HTTP listener and installs the recorder. Without the explicit buckets
/// the exporter would render the histogram as a summary.
pub(crate) fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(name::BATCH_DURATION.to_string()), BUCKETS)
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            Matcher::Full(name::DAEMON_INGEST_LAG.to_string()),
            LAG_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    gauge!(name::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(name::RECEIVED, "Rows received by a stage.");
    describe_counter!(name::SENT, "Rows a stage passed on.");
    describe_counter!(
        name::DISCARDED,
        "Rows dropped by a stage: filtered out, or rejected as malformed."
    );
    describe_counter!(name::ERRORS, "Errors that failed a job or an output.");
    describe_histogram!(
        name::BATCH_DURATION,
        Unit::Seconds,
        "Time a stage spent on one batch."
    );
    describe_gauge!(
        name::EDGE_IN_FLIGHT,
        "Batches queued or being handled on a bounded edge."
    );
    describe_gauge!(
        name::EDGE_CAPACITY,
        "Most batches a bounded edge holds before its sender waits."
    );
    describe_counter!(
        name::INPUT_BYTES,
        Unit::Bytes,
        "Bytes read by a reader, after decompression."
    );
    describe_gauge!(name::JOBS, "Input files by state.");
    describe_gauge!(
        name::PROCESS_CPU,
        Unit::Seconds,
        "CPU time used by the process."
    );
    describe_gauge!(
        name::PROCESS_RSS,
        Unit::Bytes,
        "Resident memory of the process."
    );
    describe_counter!(
        name::PROCESS_DISK_READ,
        Unit::Bytes,
        "Bytes the process read from disk."
    );
    describe_counter!(
        name::PROCESS_DISK_WRITTEN,
        Unit::Bytes,
        "Bytes the process wrote to disk."
    );
    describe_gauge!(name::BUILD_INFO, "Always 1; the version is a label.");
    describe_counter!(
        name::DAEMON_FILES,
        "Files the daemon found complete, by what became of them: discovered, ingested, failed, \
         changed (new content under an ingested name), duplicate (content already ingested)."
    );
    describe_histogram!(
        name::DAEMON_INGEST_LAG,
        Unit::Seconds,
        "From a file being complete to its rows being in committed state."
    );
    describe_gauge!(
        name::DAEMON_LAST_COMMIT,
        Unit::Seconds,
        "Unix time of the daemon's last state commit."
    );
    describe_gauge!(
        name::DAEMON_STATE_BYTES,
        Unit::Bytes,
        "Size of the committed state file."
    );
    describe_gauge!(
        name::DAEMON_STATE_VERSION,
        "Commits of the daemon's state so far."
    );
    describe_gauge!(
        name::DAEMON_PENDING,
        "Complete files waiting to be ingested."
    );
    describe_counter!(
        name::DAEMON_RELOADS,
        "SIGHUP reloads, by result: applied or rejected (the old pipeline kept running)."
    );
    describe_counter!(
        name::BUS_NOTICES,
        "File notices on the bus, by what happened: published, deduped (the server dropped a \
         repeated id, or the fingerprint was claimed before), redelivered (a delivery after the \
         first), terminated (given up after max_deliver, or unreadable)."
    );
    describe_gauge!(
        name::BUS_PENDING,
        "Notices the shared consumer has not had acknowledged: waiting or in flight."
    );
    describe_counter!(
        name::SPILLED_BYTES,
        Unit::Bytes,
        "Bytes a stage wrote to its spill files (compressed), past its memory budget."
    );
    describe_gauge!(
        name::SPILL_PARTITIONS,
        "Partitions a stage splits its rows into, each reduced on its own."
    );
}

/// Publishes the sampled gauges: edges, jobs, input bytes and the process's resources.
pub(crate) fn publish(stats: &RunStats, res: &Resources) {
    for e in stats.edges() {
        let l = [("from", e.from.clone()), ("to", e.to.clone())];
        gauge!(name::EDGE_IN_FLIGHT, &l).set(e.depth() as f64);
        gauge!(name::EDGE_CAPACITY, &l).set(e.capacity as f64);
    }
    let jobs = stats.jobs();
    for (state, label) in [
        (JobState::Pending, "pending"),
        (JobState::Running, "running"),
        (JobState::Done, "done"),
        (JobState::Failed, "failed"),
    ] {
        gauge!(name::JOBS, "state" => label)
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
    gauge!(name::PROCESS_CPU).set(res.cpu_seconds);
    gauge!(name::PROCESS_RSS).set(res.rss_bytes as f64);
    counter!(name::PROCESS_DISK_READ).absolute(res.disk_read_bytes);
    counter!(name::PROCESS_DISK_WRITTEN).absolute(res.disk_written_bytes);
}

/// The daemon's own series.
pub(crate) mod daemon {
    use metrics::{counter, gauge, histogram};

    use crate::flow::metrics::name;

    /// The `outcome` labels of `sweep_daemon_files_total`, in the order a file meets them.
    pub(crate) const FILE_OUTCOMES: [&str; 5] =
        ["discovered", "ingested", "failed", "changed", "duplicate"];

    /// The `result` labels of `sweep_daemon_reloads_total`.
    pub(crate) const RELOAD_RESULTS: [&str; 2] = ["applied", "rejected"];

    /// Every labelled series at 0 from the start, so that the first file to fail (or reload to be
    /// refused) is an increase Prometheus can see, not a series born at 1.
    pub(crate) fn init() {
        for outcome in FILE_OUTCOMES {
            counter!(name::DAEMON_FILES, "outcome" => outcome).increment(0);
        }
        for result in RELOAD_RESULTS {
            counter!(name::DAEMON_RELOADS, "result" => result).increment(0);
        }
        pending(0);
    }

    /// Between files the daemon has no job: the per-run job gauges go back to 0, so a failed
    /// file is reported once, by `sweep_daemon_files_total`, not as a batch job failing forever.
    pub(crate) fn between_files() {
        for state in ["pending", "running", "done", "failed"] {
            gauge!(name::JOBS, "state" => state).set(0.0);
        }
    }

    pub(crate) fn file(outcome: &'static str) {
        counter!(name::DAEMON_FILES, "outcome" => outcome).increment(1);
    }

    pub(crate) fn committed(unix_secs: f64, state_bytes: u64, version: u64) {
        gauge!(name::DAEMON_LAST_COMMIT).set(unix_secs);
        gauge!(name::DAEMON_STATE_BYTES).set(state_bytes as f64);
        gauge!(name::DAEMON_STATE_VERSION).set(version as f64);
    }

    pub(crate) fn lag(seconds: f64) {
        histogram!(name::DAEMON_INGEST_LAG).record(seconds);
    }

    pub(crate) fn pending(n: usize) {
        gauge!(name::DAEMON_PENDING).set(n as f64);
    }

    pub(crate) fn reload(result: &'static str) {
        counter!(name::DAEMON_RELOADS, "result" => result).increment(1);
    }
}

/// The series of daemons sharing a bus (`[daemon.nats]`).
pub(crate) mod bus {
    use metrics::{counter, gauge};

    use crate::flow::metrics::name;

    /// The `outcome` labels of `sweep_bus_notices_total`.
    pub(crate) const NOTICE_OUTCOMES: [&str; 4] =
        ["published", "deduped", "redelivered", "terminated"];

    /// Every series at 0 from the start, so the first redelivery is an increase.
    pub(crate) fn init() {
        for outcome in NOTICE_OUTCOMES {
            counter!(name::BUS_NOTICES, "outcome" => outcome).increment(0);
        }
        pending(0);
    }

    pub(crate) fn notice(outcome: &'static str) {
        counter!(name::BUS_NOTICES, "outcome" => outcome).increment(1);
    }

    pub(crate) fn pending(n: u64) {
        gauge!(name::BUS_PENDING).set(n as f64);
    }
}
