//! Several daemons sharing the work through NATS JetStream (`[daemon.nats]`), exactly once.
//!
//! Data stays on shared storage; only small file notices travel on the bus (a claim check).
//! Every daemon runs the same loop:
//!
//! - **watch**: the readers' paths are scanned as by the single daemon (`watch::Tracker`), and
//!   a notice is announced for each complete file, with its fingerprint as message id and as a
//!   created-once claim in the bucket (`bus`);
//! - **work**: a notice is pulled from the one durable consumer all daemons share, the file is
//!   folded by the batch runtime and committed as one partial per aggregator under
//!   `STATE/partials/<stage>/<fingerprint>`, create-if-absent, and only then acknowledged
//!   (`worker`);
//! - **outputs**: whichever daemon holds the lease merges every committed partial into the
//!   tables (`shard::partial` and `shard::write_merged`, the sharded run's own code). The merge
//!   is pure, so a stale second refresh by a daemon whose lease ran out writes what the last
//!   one did, or something older that the next refresh replaces.
//!
//! `STATE` is the shared folder here (every daemon names the same one); the single daemon's
//! registry and lock are not used.

mod bus;
mod config;
mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub use bus::{Announced, Bus, BusError, Notice};
pub use config::NatsSpec;
pub(crate) use config::{NatsConfig, resolve};
pub use worker::{partial_path, partials_dir};

use super::DaemonError;
use super::digest::digest;
use super::signals::{Event, Shared, notify, signals, watchdog};
use super::watch::{Ready, Tracker};
use crate::aggregators::AggState;
use crate::config::{DaemonSpec, Pipeline, StageKind};
use crate::monitor::metrics::{self, bus as mb, daemon as m};
use crate::shard::partial;

/// How long a pull waits for a notice before the loop turns (watching, outputs, stop).
const PULL_WAIT: Duration = Duration::from_millis(500);
/// How often the consumer's backlog is read for the pending gauge.
const PENDING_EVERY: Duration = Duration::from_secs(2);

/// This daemon's name on the bus and in the lease: host and process id.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// Why daemons sharing a bus cannot run `p`, one reason per stage (empty when they can). A file's
/// result must be one aggregate partial the outputs merge; rows outputs would need the batch
/// hand-over a sharded run's merge replays in plan order, and the bus has no plan, only files in
/// the order they arrive.
fn refusals(p: &Pipeline) -> Vec<String> {
    use crate::config::StageKind;
    let mut reasons = Vec::new();
    for s in &p.stages {
        match &s.kind {
            StageKind::RowSink(_) => reasons.push(format!(
                "rows sink `{}`: its extract is one file in input order, and the bus has no \
                 input order, only files as they arrive; write extracts with `sweep run` or a \
                 sharded run",
                s.name
            )),
            StageKind::Reader(r) if r.rejects.is_some() => reasons.push(format!(
                "reader `{}` writes a rejects file, one file for every input, which per-file \
                 partials do not merge into; use on_error = \"fail\"",
                s.name
            )),
            StageKind::Sweeps(_) => reasons.push(format!(
                "sweep analysis `{}`: an order's events and trades may be in different files, so \
                 a file's result is not a partial of it; run it with `sweep run` or a sharded run",
                s.name
            )),
            _ => {}
        }
    }
    if !p
        .stages
        .iter()
        .any(|s| matches!(s.kind, StageKind::Aggregator(_)))
    {
        reasons.push("it has no aggregator, so the daemons would have nothing to merge".into());
    }
    reasons
}

/// Runs a daemon of a bus until SIGTERM or SIGINT.
pub(super) fn run(p: Pipeline, spec: DaemonSpec, nats: NatsSpec) -> Result<(), DaemonError> {
    let refusals = refusals(&p);
    if !refusals.is_empty() {
        return Err(DaemonError::BusRefused(refusals));
    }
    let digest = digest(&p);
    // The same rule as one daemon's state: partials are only extended by the pipeline that
    // made them, or the merge would mix two pipelines' results.
    if let Some(why) = foreign_partial(&p, &spec.state, &digest) {
        return Err(DaemonError::Mismatch {
            dir: spec.state.clone(),
            why,
        });
    }
    let metrics_on = p.monitor.prometheus.is_some();
    if let Some(addr) = p.monitor.prometheus {
        metrics::install(addr).map_err(DaemonError::Metrics)?;
        m::init();
        mb::init();
    }
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    signals(shared.clone(), tx, spec.shutdown_timeout)?;
    let started = Instant::now();
    watchdog(shared.clone(), started);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let mut d = BusDaemon {
        digest,
        p: Arc::new(p),
        spec,
        nats,
        me: identity(),
        shared,
        events: rx,
        started,
        metrics_on,
        tracker: Tracker::default(),
        unannounced: Vec::new(),
        last_scan: None,
        last_pending: None,
        outputs: OutputsState::default(),
    };
    rt.block_on(d.run())
}

/// What the outputs were last written from, to rewrite them only when that changes.
#[derive(Default)]
struct OutputsState {
    listing: Vec<Vec<String>>,
    written_at: Option<Instant>,
}

struct BusDaemon {
    p: Arc<Pipeline>,
    spec: DaemonSpec,
    nats: NatsSpec,
    digest: String,
    me: String,
    shared: Arc<Shared>,
    /// Stop and reload requests from the signal thread. The loop turns at least every
    /// [`PULL_WAIT`] and rescans every `poll_secs`, so no filesystem events are followed.
    events: mpsc::Receiver<Event>,
    started: Instant,
    metrics_on: bool,
    tracker: Tracker,
    /// Complete files whose notice the bus has not taken yet (an outage): tried again.
    unannounced: Vec<Ready>,
    last_scan: Option<Instant>,
    last_pending: Option<Instant>,
    outputs: OutputsState,
}

impl BusDaemon {
    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    fn beat(&self) {
        self.shared
            .beat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// Connects, retrying every second until the bus answers or a stop is asked for.
    async fn connect(&self) -> Option<Bus> {
        let mut said = false;
        loop {
            self.beat();
            if self.stopping() {
                return None;
            }
            match Bus::connect(&self.nats, &self.me).await {
                Ok(b) => return Some(b),
                Err(e) if !said => {
                    tracing::warn!("{e}; retrying every second");
                    said = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn run(&mut self) -> Result<(), DaemonError> {
        let Some(bus) = self.connect().await else {
            return Ok(());
        };
        tracing::info!(
            "daemon `{}` started as {} on stream {} (consumer {}, bucket {}), partials in {}",
            self.p.name,
            self.me,
            self.nats.stream,
            self.nats.consumer,
            self.nats.bucket,
            self.spec.state.display()
        );
        notify(&[NotifyState::Ready, NotifyState::Status("working")]);
        while !self.stopping() {
            self.beat();
            if self.events.try_iter().any(|e| matches!(e, Event::Reload)) {
                tracing::warn!(
                    "reload: daemons sharing a bus do not reload; restart them one at a time \
                     (a restart loses nothing: the notice in flight goes to another daemon)"
                );
            }
            self.watch(&bus).await;
            match bus.next(PULL_WAIT).await {
                Ok(Some(msg)) => {
                    let cx = worker::Ctx {
                        p: &self.p,
                        shared: &self.spec.state,
                        digest: &self.digest,
                        ack_wait: self.nats.ack_wait,
                        max_deliver: self.nats.max_deliver,
                        metrics_on: self.metrics_on,
                        current: &self.shared.current,
                        stats: &self.shared.stats,
                    };
                    worker::handle(&cx, &bus, msg).await;
                }
                Ok(None) => {}
                Err(e) => {
                    // An outage: nothing is taken, so nothing is lost; the client reconnects.
                    tracing::warn!("{e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            self.pending(&bus).await;
            self.refresh(&bus, false).await;
        }
        notify(&[NotifyState::Stopping]);
        // The last look: a daemon that holds the lease leaves the outputs current.
        self.refresh(&bus, true).await;
        if let Err(e) = bus.release_lease(&self.me).await {
            tracing::warn!("{e}");
        }
        tracing::info!("daemon stopped");
        Ok(())
    }

    /// Scans the readers' paths every `poll_secs` and announces each new complete file.
    async fn watch(&mut self, bus: &Bus) {
        if self.last_scan.is_some_and(|t| t.elapsed() < self.spec.poll) {
            return;
        }
        self.last_scan = Some(Instant::now());
        let mut settling = None;
        let ready = self.tracker.scan(&self.p, &self.spec, &mut settling);
        self.unannounced.extend(ready);
        let mut left = Vec::new();
        for r in std::mem::take(&mut self.unannounced) {
            let n = Notice {
                reader: self.p.stages[r.reader].name.clone(),
                path: r.path.display().to_string(),
                fingerprint: r.fingerprint.key(),
            };
            match bus.announce(&n).await {
                Ok(how) => {
                    let outcome = match how {
                        Announced::Published => "published",
                        Announced::Deduped | Announced::Refused => "deduped",
                    };
                    tracing::info!("{}: notice {} ({how:?})", n.path, n.fingerprint);
                    if self.metrics_on {
                        mb::notice(outcome);
                        m::file("discovered");
                    }
                }
                Err(e) => {
                    tracing::warn!("{}: {e}; announced again at the next scan", n.path);
                    left.push(r);
                }
            }
        }
        self.unannounced = left;
    }

    async fn pending(&mut self, bus: &Bus) {
        if !self.metrics_on
            || self
                .last_pending
                .is_some_and(|t| t.elapsed() < PENDING_EVERY)
        {
            return;
        }
        self.last_pending = Some(Instant::now());
        match bus.pending().await {
            Ok(n) => mb::pending(n),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Rewrites the outputs from the committed partials when they changed (or a lease's time
    /// has passed since the last rewrite, so a stale writer's tables do not stay), at most every
    /// `outputs_interval_secs`, and only while this daemon holds the lease.
    async fn refresh(&mut self, bus: &Bus, last: bool) {
        let o = &self.outputs;
        if !last
            && o.written_at
                .is_some_and(|t| t.elapsed() < self.spec.outputs_interval)
        {
            return;
        }
        let stages = worker::aggregators(&self.p);
        let listing: Vec<Vec<String>> = stages
            .iter()
            .map(|s| committed(&partials_dir(&self.spec.state, s)))
            .collect();
        let stale = o.written_at.is_none_or(|t| t.elapsed() >= self.nats.lease);
        if listing == o.listing && !stale {
            return;
        }
        match bus.hold_lease(&self.me, self.nats.lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        }
        let (p, dir, digest) = (self.p.clone(), self.spec.state.clone(), self.digest.clone());
        let merged = tokio::task::spawn_blocking(move || write_outputs(&p, &dir, &digest))
            .await
            .unwrap_or_else(|e| Err(format!("the outputs task died: {e}")));
        match merged {
            Ok(files) => {
                tracing::debug!("outputs rewritten from {files} partial(s)");
                self.outputs = OutputsState {
                    listing,
                    written_at: Some(Instant::now()),
                };
            }
            Err(e) => tracing::error!("outputs: {e}; retried at the next interval"),
        }
    }
}

/// Why the shared folder's partials are another pipeline's (the first partial of each stage is
/// read), or `None` when they are this one's or there are none.
fn foreign_partial(p: &Pipeline, shared: &Path, digest: &str) -> Option<String> {
    worker::aggregators(p).iter().find_map(|s| {
        let dir = partials_dir(shared, s);
        let first = committed(&dir).into_iter().next()?;
        let path = dir.join(first);
        match partial::read(&path) {
            Ok((h, _)) if h.pipeline_digest == digest => None,
            Ok((h, _)) => Some(format!(
                "{} has pipeline digest {}, this pipeline's is {digest}",
                path.display(),
                h.pipeline_digest
            )),
            Err(e) => Some(e.to_string()),
        }
    })
}

/// The committed partials' names in `dir`, sorted (temporaries are hidden names).
fn committed(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Merges every committed partial of this pipeline into the tables; how many files they cover.
/// A partial of another pipeline (its digest differs) or one that cannot be read is an error:
/// the tables would silently miss its rows otherwise.
pub fn write_outputs(p: &Pipeline, shared: &Path, digest: &str) -> Result<usize, String> {
    let mut merged: BTreeMap<&str, AggState> = BTreeMap::new();
    let mut files = 0;
    for s in &p.stages {
        let StageKind::Aggregator(spec) = &s.kind else {
            continue;
        };
        let spec = Arc::new(spec.clone());
        let mut state = AggState::new(spec.clone());
        let dir = partials_dir(shared, &s.name);
        let names = committed(&dir);
        files = files.max(names.len());
        for name in names {
            let path: PathBuf = dir.join(&name);
            let (h, snap) = partial::read(&path).map_err(|e| e.to_string())?;
            if h.pipeline_digest != digest || h.plan_hash != name || h.stage != s.name {
                return Err(format!(
                    "{}: not a partial of this pipeline's stage `{}` (digest {}, file {}, stage {})",
                    path.display(),
                    s.name,
                    h.pipeline_digest,
                    h.plan_hash,
                    h.stage
                ));
            }
            let part = AggState::restore(spec.clone(), &snap)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            state.merge(part);
        }
        merged.insert(s.name.as_str(), state);
    }
    crate::shard::write_merged(p, &merged)?;
    Ok(files)
}
