//! Every metric's name, defined once, and the handles a stage records through.
//!
//! Stages hold their handles (created once, so a batch costs a few atomic adds, never a registry
//! lookup). Names follow Prometheus conventions: a `sweep_` prefix, base units, `_total`
//! counters, and labels that never name a file, security or participant, so series stay few.
//! `monitor::metrics` describes them, serves them and publishes the sampled gauges.

use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

use super::stats::ParquetScan;
use super::{ErrorKind, Kind};

/// The names of sweep's series. The dashboards and alert rules in `grafana/` query these.
pub(crate) mod name {
    pub(crate) const RECEIVED: &str = "sweep_component_received_records_total";
    pub(crate) const SENT: &str = "sweep_component_sent_records_total";
    pub(crate) const DISCARDED: &str = "sweep_component_discarded_records_total";
    pub(crate) const ERRORS: &str = "sweep_component_errors_total";
    pub(crate) const BATCH_DURATION: &str = "sweep_component_batch_duration_seconds";
    pub(crate) const INPUT_BYTES: &str = "sweep_input_bytes_total";
    pub(crate) const EDGE_IN_FLIGHT: &str = "sweep_edge_in_flight";
    pub(crate) const EDGE_CAPACITY: &str = "sweep_edge_capacity";
    pub(crate) const JOBS: &str = "sweep_jobs";
    pub(crate) const PROCESS_CPU: &str = "sweep_process_cpu_seconds_total";
    pub(crate) const PROCESS_RSS: &str = "sweep_process_resident_memory_bytes";
    pub(crate) const PROCESS_DISK_READ: &str = "sweep_process_disk_read_bytes_total";
    pub(crate) const PROCESS_DISK_WRITTEN: &str = "sweep_process_disk_written_bytes_total";
    pub(crate) const BUILD_INFO: &str = "sweep_build_info";
    pub(crate) const DAEMON_FILES: &str = "sweep_daemon_files_total";
    pub(crate) const DAEMON_INGEST_LAG: &str = "sweep_daemon_ingest_lag_seconds";
    pub(crate) const DAEMON_LAST_COMMIT: &str = "sweep_daemon_last_commit_timestamp_seconds";
    pub(crate) const DAEMON_STATE_BYTES: &str = "sweep_daemon_state_bytes";
    pub(crate) const DAEMON_STATE_VERSION: &str = "sweep_daemon_state_version";
    pub(crate) const DAEMON_PENDING: &str = "sweep_daemon_pending_files";
    pub(crate) const DAEMON_RELOADS: &str = "sweep_daemon_reloads_total";
    pub(crate) const BUS_NOTICES: &str = "sweep_bus_notices_total";
    pub(crate) const BUS_PENDING: &str = "sweep_bus_consumer_pending";
    pub(crate) const SPILLED_BYTES: &str = "sweep_spilled_bytes_total";
    pub(crate) const SPILL_PARTITIONS: &str = "sweep_spill_partitions";
    pub(crate) const PARQUET_ROW_GROUPS: &str = "sweep_parquet_row_groups_total";
    pub(crate) const PARQUET_PAGES: &str = "sweep_parquet_pages_total";
    pub(crate) const PARQUET_BYTES: &str = "sweep_parquet_bytes_read_total";
}

/// One stage's metric handles.
#[derive(Debug, Clone)]
pub struct StageMetrics {
    id: String,
    kind: Kind,
    received: Counter,
    sent: Counter,
    /// Only the stages that can discard or read get these series.
    filtered: Option<Counter>,
    rejected: Option<Counter>,
    input_bytes: Option<Counter>,
    duration: Histogram,
}

impl StageMetrics {
    pub(crate) fn new(id: &str, kind: Kind) -> Self {
        let l = || {
            [
                ("component_id", id.to_string()),
                ("component_kind", kind.as_str().to_string()),
            ]
        };
        let reason = |r: &'static str| {
            let mut v = l().to_vec();
            v.push(("reason", r.to_string()));
            counter!(name::DISCARDED, &v)
        };
        // Errors are rare: their series exist from the start, at zero, so dashboards and alerts
        // see a rate of 0 rather than no data.
        for t in kind.error_kinds() {
            let mut v = l().to_vec();
            v.push(("error_type", t.as_str().to_string()));
            counter!(name::ERRORS, &v).increment(0);
        }
        StageMetrics {
            id: id.to_string(),
            kind,
            received: counter!(name::RECEIVED, &l()),
            sent: counter!(name::SENT, &l()),
            filtered: (kind == Kind::Filter).then(|| reason("filtered")),
            rejected: (kind == Kind::Reader).then(|| reason("rejected")),
            input_bytes: (kind == Kind::Reader).then(|| counter!(name::INPUT_BYTES, &l())),
            duration: histogram!(name::BATCH_DURATION, &l()),
        }
    }

    pub(crate) fn batch(&self, rows_in: u64, rows_out: u64, took: Duration) {
        self.received.increment(rows_in);
        self.sent.increment(rows_out);
        self.duration.record(took.as_secs_f64());
    }

    pub(crate) fn filtered(&self, n: u64) {
        if let Some(c) = &self.filtered {
            c.increment(n);
        }
    }

    pub(crate) fn rejected(&self, n: u64) {
        if let Some(c) = &self.rejected {
            c.increment(n);
        }
    }

    pub(crate) fn input_bytes(&self, n: u64) {
        if let Some(c) = &self.input_bytes {
            c.absolute(n);
        }
    }

    /// A reader's scan of one Parquet file: row groups and pages `read` and `skipped`, and the
    /// bytes taken from the file.
    pub(crate) fn parquet_scan(&self, scan: &ParquetScan) {
        let l = |state: &'static str| {
            [
                ("component_id", self.id.clone()),
                ("component_kind", self.kind.as_str().to_string()),
                ("state", state.to_string()),
            ]
        };
        counter!(name::PARQUET_ROW_GROUPS, &l("read")).increment(scan.row_groups_read);
        counter!(name::PARQUET_ROW_GROUPS, &l("skipped")).increment(scan.row_groups_skipped);
        counter!(name::PARQUET_PAGES, &l("read")).increment(scan.pages_read);
        counter!(name::PARQUET_PAGES, &l("skipped")).increment(scan.pages_skipped);
        counter!(
            name::PARQUET_BYTES,
            "component_id" => self.id.clone(),
            "component_kind" => self.kind.as_str()
        )
        .increment(scan.bytes_read);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        counter!(
            name::ERRORS,
            "component_id" => self.id.clone(),
            "component_kind" => self.kind.as_str(),
            "error_type" => kind.as_str()
        )
        .increment(1);
    }
}
