//! Reading the endpoint: one blocking GET of its exposition text, and the [`Snapshot`] of sweep's
//! series in it. Series are matched by the names in `flow::metrics::name`, the ones the exporter
//! writes; series of any other name are ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use super::exposition::{self, Sample};
use crate::flow::Kind;
use crate::flow::metrics::name;

/// Longest a scrape may take: the view keeps its one-second beat, and a hung endpoint reads as
/// gone rather than as a frozen screen.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Largest body read: sweep's /metrics is tens of KiB; anything near this is not sweep.
const BODY_LIMIT: u64 = 16 << 20;

/// Why a scrape gave no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No HTTP answer: refused, reset, timed out, unknown host.
    #[error("{0}")]
    Connect(String),
    /// An HTTP answer other than 200.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body is not the text exposition format.
    #[error("malformed metrics: {0}")]
    Parse(#[from] exposition::ParseError),
    /// Metrics, but none of sweep's.
    #[error("no sweep metrics there (not a `sweep run --metrics` or `sweep daemon` endpoint?)")]
    NotSweep,
}

/// A blocking HTTP client for one metrics URL.
pub(crate) struct Client {
    agent: ureq::Agent,
    url: String,
}

impl Client {
    pub(crate) fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            // A proxy from the environment would route a loopback address away from the machine.
            .proxy(None)
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            agent,
            url: url.to_string(),
        }
    }

    /// The endpoint's current snapshot.
    pub(crate) fn scrape(&self) -> Result<Snapshot, ScrapeError> {
        Snapshot::parse(&self.get()?)
    }

    fn get(&self) -> Result<String, ScrapeError> {
        let mut resp = self.agent.get(&self.url).call().map_err(connect_error)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ScrapeError::Status(status));
        }
        resp.body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .map_err(connect_error)
    }
}

/// A short reason, as a person would say it, for the message line.
fn connect_error(e: ureq::Error) -> ScrapeError {
    use std::io::ErrorKind;
    let reason = match &e {
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => "connection refused".to_string(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                "connection reset".to_string()
            }
            ErrorKind::UnexpectedEof => "connection closed".to_string(),
            ErrorKind::TimedOut => "timed out".to_string(),
            _ => io.to_string(),
        },
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        _ => e.to_string(),
    };
    ScrapeError::Connect(reason)
}

/// Cumulative histogram buckets as the exporter writes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// `(le, observations <= le)`, by `le`; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

/// One stage's series.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stage {
    /// The `component_id` label: the stage's name in the pipeline.
    pub id: String,
    /// The `component_kind` label (`reader`, `rows_sink`…).
    pub kind: String,
    pub received: f64,
    pub sent: f64,
    pub filtered: f64,
    pub rejected: f64,
    /// Every `error_type` together.
    pub errors: f64,
    /// Readers only.
    pub input_bytes: Option<f64>,
    pub latency: Histogram,
}

/// A bounded edge's gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Edge {
    pub from: String,
    pub to: String,
    pub in_flight: f64,
    pub capacity: f64,
}

/// Input files by state (`sweep_jobs`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Jobs {
    pub pending: f64,
    pub running: f64,
    pub done: f64,
    pub failed: f64,
}

impl Jobs {
    pub(crate) fn total(&self) -> f64 {
        self.pending + self.running + self.done + self.failed
    }

    /// Done or failed: no more work to come from them.
    pub(crate) fn finished(&self) -> f64 {
        self.done + self.failed
    }
}

/// The daemon's own series; present only when the endpoint is a daemon's.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Daemon {
    /// `sweep_daemon_files_total` by outcome.
    pub files: BTreeMap<String, f64>,
    pub pending: f64,
    /// Unix seconds; absent until the first commit.
    pub last_commit: Option<f64>,
    pub state_version: Option<f64>,
    pub state_bytes: Option<f64>,
    pub lag: Histogram,
    /// `sweep_daemon_reloads_total` by result.
    pub reloads: BTreeMap<String, f64>,
}

/// Sweep's series at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// From `sweep_build_info`.
    pub version: Option<String>,
    /// In the order rows flow (readers first), then by name.
    pub stages: Vec<Stage>,
    /// In the order of the stages they leave, then of those they reach.
    pub edges: Vec<Edge>,
    pub jobs: Jobs,
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub daemon: Option<Daemon>,
}

impl Snapshot {
    /// Sweep's series in an exposition text.
    pub(crate) fn parse(text: &str) -> Result<Snapshot, ScrapeError> {
        let samples = exposition::parse(text)?;
        if !samples.iter().any(|s| s.name.starts_with("sweep_")) {
            return Err(ScrapeError::NotSweep);
        }
        let mut snap = Snapshot::default();
        let mut stages: BTreeMap<String, Stage> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String), Edge> = BTreeMap::new();
        for s in &samples {
            snap.take(s, &mut stages, &mut edges);
        }
        for st in stages.values_mut() {
            st.latency.sort();
        }
        if let Some(d) = snap.daemon.as_mut() {
            d.lag.sort();
        }
        snap.stages = stages.into_values().collect();
        snap.stages
            .sort_by(|a, b| (kind_rank(&a.kind), &a.id).cmp(&(kind_rank(&b.kind), &b.id)));
        snap.edges = edges.into_values().collect();
        // In the order rows flow too: by the stage each edge leaves, then the one it reaches.
        // A reader's edge to its own parse pool (`orders.parse`, not a stage) comes first.
        let at = |id: &str| snap.stages.iter().position(|s| s.id == id);
        let key = |e: &Edge| (at(&e.from), at(&e.to));
        snap.edges.sort_by_key(key);
        Ok(snap)
    }

    fn take(
        &mut self,
        s: &Sample,
        stages: &mut BTreeMap<String, Stage>,
        edges: &mut BTreeMap<(String, String), Edge>,
    ) {
        let v = s.value;
        let n = s.name.as_str();
        if let Some(id) = s.label("component_id") {
            let stage = stages.entry(id.to_string()).or_insert_with(|| Stage {
                id: id.to_string(),
                kind: s.label("component_kind").unwrap_or_default().to_string(),
                ..Stage::default()
            });
            match n {
                name::RECEIVED => stage.received = v,
                name::SENT => stage.sent = v,
                name::DISCARDED => match s.label("reason") {
                    Some("filtered") => stage.filtered += v,
                    Some("rejected") => stage.rejected += v,
                    _ => {}
                },
                name::ERRORS => stage.errors += v,
                name::INPUT_BYTES => stage.input_bytes = Some(v),
                _ => histogram_part(&mut stage.latency, name::BATCH_DURATION, s),
            }
            return;
        }
        match n {
            name::EDGE_IN_FLIGHT | name::EDGE_CAPACITY => {
                let (Some(from), Some(to)) = (s.label("from"), s.label("to")) else {
                    return;
                };
                let e = edges
                    .entry((from.to_string(), to.to_string()))
                    .or_insert_with(|| Edge {
                        from: from.to_string(),
                        to: to.to_string(),
                        ..Edge::default()
                    });
                if n == name::EDGE_IN_FLIGHT {
                    e.in_flight = v;
                } else {
                    e.capacity = v;
                }
            }
            name::JOBS => match s.label("state") {
                Some("pending") => self.jobs.pending = v,
                Some("running") => self.jobs.running = v,
                Some("done") => self.jobs.done = v,
                Some("failed") => self.jobs.failed = v,
                _ => {}
            },
            name::PROCESS_CPU => self.cpu_seconds = Some(v),
            name::PROCESS_RSS => self.rss_bytes = Some(v),
            name::BUILD_INFO => self.version = s.label("version").map(str::to_string),
            _ if n.starts_with("sweep_daemon_") => self.take_daemon(s),
            _ => {}
        }
    }

    fn take_daemon(&mut self, s: &Sample) {
        let d = self.daemon.get_or_insert_with(Daemon::default);
        let v = s.value;
        match s.name.as_str() {
            name::DAEMON_FILES => {
                if let Some(o) = s.label("outcome") {
                    d.files.insert(o.to_string(), v);
                }
            }
            name::DAEMON_PENDING => d.pending = v,
            name::DAEMON_LAST_COMMIT => d.last_commit = Some(v),
            name::DAEMON_STATE_VERSION => d.state_version = Some(v),
            name::DAEMON_STATE_BYTES => d.state_bytes = Some(v),
            name::DAEMON_RELOADS => {
                if let Some(r) = s.label("result") {
                    d.reloads.insert(r.to_string(), v);
                }
            }
            _ => histogram_part(&mut d.lag, name::DAEMON_INGEST_LAG, s),
        }
    }
}

/// Takes `s` into `h` if it is one of histogram `base`'s series (`_bucket`, `_sum`, `_count`).
fn histogram_part(h: &mut Histogram, base: &str, s: &Sample) {
    match s.name.strip_prefix(base) {
        Some("_bucket") => {
            if let Some(le) = s.label("le").and_then(exposition::parse_value) {
                h.buckets.push((le, s.value));
            }
        }
        Some("_sum") => h.sum = s.value,
        Some("_count") => h.count = s.value,
        _ => {}
    }
}

impl Histogram {
    fn sort(&mut self) {
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
}

/// Where a stage of this `component_kind` sits in the flow of rows; unknown kinds last.
fn kind_rank(kind: &str) -> usize {
    Kind::ALL
        .iter()
        .position(|k| k.as_str() == kind)
        .unwrap_or(Kind::ALL.len())
}
