//! `sweep daemon`: continuous ingest with an exactly-once effect on the outputs.
//!
//! The daemon follows the readers' paths (`watch`), runs each complete file through the batch
//! runtime on its own (`ingest`), merges the file's aggregate state into the committed state and
//! commits the registry of files and the aggregates together (`state`). Outputs are only ever
//! derived from committed state: tables are rewritten from it, and a file's extract and rejects
//! parts are written under staging names and published after the commit that records them.
//!
//! Why exactly once: a file's rows reach the state only in the commit that also records its
//! fingerprint in the registry, and a commit is one atomic rename. A crash before it loses the
//! file's work but not its record of being new, so it is ingested again from the start; a crash
//! after it leaves the file recorded, so it is never ingested twice. Parts follow the same rule:
//! staged parts not named by the committed registry are deleted at start, and named ones not yet
//! published are published then.
//!
//! Around that loop: `digest` decides which pipeline may extend a state folder, `triage` sorts
//! complete files against the registry, `recover` finishes at start what a crash left half-done,
//! `status` is the summary written beside the state, and `signals` carries stop and reload
//! requests in and systemd notifications out.

pub(crate) mod digest;
pub mod ingest;
pub mod nats;
mod recover;
mod signals;
pub mod state;
mod status;
mod triage;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Instant, SystemTime};

use sd_notify::NotifyState;

use crate::aggregators::AggState;
use crate::batch::TableSet;
use crate::config::{
    self, AggregatorSpec, BadFiles, ConfigErrors, DaemonSpec, Pipeline, StageKind,
};
use crate::flow::stats::Control;
use crate::monitor::metrics::{self, daemon as m};
use crate::sinks::atomic::write_atomic;
use crate::sinks::tables::write_tables;
use digest::{Verdict, digest};
use signals::{Event, Shared, notify, signals, watchdog};
use state::{FileEntry, FileStatus, Fingerprint, StateDoc, StateError, StateStore};
use status::{STATUS, Status};
use watch::{FsWatch, Ready, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(ConfigErrors),
    #[error(
        "{0}: the pipeline has no [daemon] section; add one naming the state folder, e.g.\n\n  [daemon]\n  state = \"state/centrepoint\""
    )]
    NoDaemonSection(String),
    #[error(
        "{dir}: this state was built by a pipeline with other readers, filters or aggregators \
         ({why}); extending it would mix two pipelines' results. Use a new state folder for the \
         changed pipeline",
        dir = .dir.display()
    )]
    Mismatch { dir: PathBuf, why: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the state cannot be restored: {0}")]
    Restore(String),
    #[error("cannot serve metrics: {0}")]
    Metrics(String),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot start the bus client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "daemons sharing a bus ([daemon.nats]) commit per-file partials, which this pipeline \
         cannot:\n  {}",
        .0.join("\n  ")
    )]
    BusRefused(Vec<String>),
    #[error("{path}: {kind} `{stage}` cannot run in the daemon yet: {why}")]
    Unsupported {
        path: String,
        kind: &'static str,
        stage: String,
        why: &'static str,
    },
}

impl DaemonError {
    /// 2 for what the operator must fix before starting (configuration, state), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::State(StateError::Io { .. })
            | DaemonError::Signals(_)
            | DaemonError::Runtime(_) => 1,
            _ => 2,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn load(path: &Path, overrides: &[String]) -> Result<(Pipeline, DaemonSpec), DaemonError> {
    let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut p =
        config::load(&path.display().to_string(), &text, overrides).map_err(DaemonError::Config)?;
    // Taken out, so the daemon holds one copy: its per-file runs have no use for it.
    let spec = p
        .daemon
        .take()
        .ok_or_else(|| DaemonError::NoDaemonSection(path.display().to_string()))?;
    // Every kind the daemon's code below does not handle is refused here, with its reason.
    for s in &p.stages {
        if let Some(why) = s.kind.daemon_refusal() {
            return Err(DaemonError::Unsupported {
                path: path.display().to_string(),
                kind: s.kind.label(),
                stage: s.name.clone(),
                why,
            });
        }
    }
    Ok((p, spec))
}

fn agg_specs(p: &Pipeline) -> BTreeMap<String, Arc<AggregatorSpec>> {
    p.stages
        .iter()
        // The other kinds the daemon runs hold no state; the rest are refused at load.
        .filter_map(|s| {
            let StageKind::Aggregator(a) = &s.kind else {
                return None;
            };
            Some((s.name.clone(), Arc::new(a.clone())))
        })
        .collect()
}

struct Daemon {
    path: PathBuf,
    overrides: Vec<String>,
    p: Pipeline,
    spec: DaemonSpec,
    store: StateStore,
    doc: StateDoc,
    aggs: BTreeMap<String, AggState>,
    by_fp: HashMap<Fingerprint, usize>,
    /// The latest ingested entry under each path, for noticing changed content.
    by_path: HashMap<String, usize>,
    tracker: Tracker,
    fs_watch: FsWatch,
    wake: Sender<Event>,
    shared: Arc<Shared>,
    started: Instant,
    metrics_on: bool,
    outputs_dirty: bool,
    last_outputs: Option<Instant>,
    state_bytes: u64,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(path: &Path, overrides: &[String]) -> Result<(), DaemonError> {
    let (p, spec) = load(path, overrides)?;
    if let Some(n) = spec.nats.clone() {
        return nats::run(p, spec, n);
    }
    let digest = digest(&p);
    let opened = StateStore::open(&spec.state)?;
    for w in &opened.warnings {
        tracing::warn!("{w}");
    }
    // A state of the release before digest version 2 holds a version 1 digest: it is adopted
    // when that is this pipeline's version 1 digest, and its new digest committed below.
    let mut from_v1 = None;
    let doc = match opened.doc {
        Some(d) => match digest::compare(&d.digest, &p) {
            Verdict::Same => d,
            Verdict::LegacyV1 => {
                from_v1 = Some(d.digest.clone());
                StateDoc {
                    digest: digest.clone(),
                    ..d
                }
            }
            Verdict::Different => {
                return Err(DaemonError::Mismatch {
                    dir: spec.state.clone(),
                    why: format!("state digest {}, pipeline digest {digest}", d.digest),
                });
            }
        },
        None => StateDoc::new(&p.name, &digest),
    };
    let mut aggs = BTreeMap::new();
    for (name, s) in agg_specs(&p) {
        let st = match doc.aggregates.get(&name) {
            Some(snap) => AggState::restore(s, snap)
                .map_err(|e| DaemonError::Restore(format!("aggregator `{name}`: {e}")))?,
            None => AggState::new(s),
        };
        aggs.insert(name, st);
    }
    let metrics_on = p.monitor.prometheus.is_some();
    if let Some(addr) = p.monitor.prometheus {
        metrics::install(addr).map_err(DaemonError::Metrics)?;
        m::init();
    }
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    signals(shared.clone(), tx.clone(), spec.shutdown_timeout)?;
    let started = Instant::now();
    watchdog(shared.clone(), started);
    let fs_watch = start_watch(&p, &spec, &tx);
    let mut d = Daemon {
        path: path.to_path_buf(),
        overrides: overrides.to_vec(),
        p,
        spec,
        store: opened.store,
        doc,
        aggs,
        by_fp: HashMap::new(),
        by_path: HashMap::new(),
        tracker: Tracker::default(),
        fs_watch,
        wake: tx,
        shared,
        started,
        metrics_on,
        outputs_dirty: true,
        last_outputs: None,
        state_bytes: opened.bytes,
    };
    d.index();
    if let Some(old) = from_v1 {
        // Committed before anything else happens, so the migration is done once: a crash before
        // this commit leaves the version 1 digest, which the next start migrates again.
        d.commit()?;
        tracing::info!(
            "state {}: pipeline digest migrated from version 1 ({old}) to {} at state version {}",
            d.spec.state.display(),
            d.doc.digest,
            d.doc.version
        );
    }
    d.remove_stale_temps();
    d.recover_parts();
    if d.metrics_on {
        m::committed(
            d.doc.committed_at_ms as f64 / 1000.0,
            d.state_bytes,
            d.doc.version,
        );
    }
    tracing::info!(
        "daemon `{}` started: state {} at version {} with {} file(s) recorded",
        d.p.name,
        d.spec.state.display(),
        d.doc.version,
        d.doc.files.len()
    );
    notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
    let result = d.run_loop(&rx);
    notify(&[NotifyState::Stopping]);
    // Outputs are derived from committed state only, so rewriting them here is always safe.
    d.write_outputs();
    if result.is_ok() {
        tracing::info!(
            "daemon stopped: state version {}, {} file(s) recorded",
            d.doc.version,
            d.doc.files.len()
        );
    }
    result
}

fn start_watch(p: &Pipeline, spec: &DaemonSpec, tx: &Sender<Event>) -> FsWatch {
    let tx = tx.clone();
    FsWatch::start(p, spec, move || {
        let _ = tx.send(Event::Wake);
    })
}

impl Daemon {
    fn beat(&self) {
        self.shared
            .beat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    fn run_loop(&mut self, rx: &Receiver<Event>) -> Result<(), DaemonError> {
        loop {
            self.beat();
            if self.stopping() {
                return Ok(());
            }
            self.fs_watch.retry();
            let mut settling = None;
            let ready = self.tracker.scan(&self.p, &self.spec, &mut settling);
            let queue = self.triage(ready)?;
            if self.metrics_on {
                m::pending(queue.len());
            }
            for (n, r) in queue.iter().enumerate() {
                if self.stopping() {
                    break;
                }
                self.ingest_one(r)?;
                self.beat();
                if self.metrics_on {
                    m::pending(queue.len() - n - 1);
                }
                self.maybe_write_outputs();
            }
            self.maybe_write_outputs();
            let mut wait = self.spec.poll;
            if let Some(s) = settling {
                wait = wait.min(s);
            }
            if self.outputs_dirty
                && let Some(last) = self.last_outputs
            {
                wait = wait.min(
                    (last + self.spec.outputs_interval).saturating_duration_since(Instant::now()),
                );
            }
            let mut reload = false;
            match rx.recv_timeout(wait) {
                Ok(ev) => {
                    // Coalesce a burst of events into one rescan.
                    for ev in std::iter::once(ev).chain(rx.try_iter()) {
                        match ev {
                            Event::Reload => reload = true,
                            Event::Stop | Event::Wake => {}
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if reload {
                self.reload();
            }
        }
    }

    /// Appends `entry` to the registry and commits the registry with the aggregates.
    fn record(&mut self, mut entry: FileEntry) -> Result<(), DaemonError> {
        entry.committed_at_ms = unix_ms(SystemTime::now());
        self.doc.next_seq = entry.seq + 1;
        self.doc.files.push(entry);
        self.commit()
    }

    /// Commits the registry with the aggregates, as the next version.
    fn commit(&mut self) -> Result<(), DaemonError> {
        let now = SystemTime::now();
        self.doc.version += 1;
        self.doc.committed_at_ms = unix_ms(now);
        self.state_bytes = self.store.commit(&self.doc)?;
        self.index();
        self.outputs_dirty = true;
        if self.metrics_on {
            m::committed(
                self.doc.committed_at_ms as f64 / 1000.0,
                self.state_bytes,
                self.doc.version,
            );
        }
        Ok(())
    }

    fn ingest_one(&mut self, r: &Ready) -> Result<(), DaemonError> {
        let seq = self.doc.next_seq;
        let control = Arc::new(Control::default());
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(control.clone());
        notify(&[NotifyState::Status(&format!(
            "ingesting {}",
            r.path.display()
        ))]);
        let t0 = Instant::now();
        let result = ingest::ingest(
            &self.p,
            r.reader,
            &r.path,
            seq,
            control.clone(),
            self.shared.stats.clone(),
            self.metrics_on,
        );
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.metrics_on {
            m::between_files();
        }
        let path = r.path.display().to_string();
        match result {
            // A run that finished before the cancel reached any stage is whole, and is committed.
            Err(_) if control.cancelled() => {
                tracing::warn!(
                    "{path}: abandoned at the shutdown deadline; not committed, so it is ingested again at the next start"
                );
            }
            Ok(ing) => {
                // Only the aggregators this file reached change, so only they are snapshotted
                // again; a commit that records no rows (a failed or changed file) reuses them all.
                for (name, st) in ing.states {
                    let a = self
                        .aggs
                        .entry(name.clone())
                        .or_insert_with(|| AggState::new(st.spec().clone()));
                    a.merge(st);
                    self.doc.aggregates.insert(name, a.snapshot());
                }
                let mut entry = self.entry(r, FileStatus::Ingested);
                entry.rows = ing.rows;
                entry.parts = ing.parts.iter().map(|f| f.display().to_string()).collect();
                self.record(entry)?;
                // Committed: now the parts may be seen. A crash before this line leaves them
                // staged, and the next start publishes them.
                for fin in &ing.parts {
                    if let Err(e) = std::fs::rename(ingest::staged(fin), fin) {
                        tracing::error!("{}: cannot publish: {e}", fin.display());
                    }
                }
                let lag = SystemTime::now()
                    .duration_since(r.completed_at)
                    .unwrap_or_default()
                    .as_secs_f64();
                if self.metrics_on {
                    m::file("ingested");
                    m::lag(lag);
                }
                self.outputs_dirty = true;
                tracing::info!(
                    "ingested {path} as file {seq}: {} rows read = {} kept + {} filtered out + {} rejected, in {:.3} s; committed state version {} ({:.3} s after the file was complete)",
                    ing.rows.read,
                    ing.rows.kept,
                    ing.rows.filtered_out,
                    ing.rows.rejected,
                    t0.elapsed().as_secs_f64(),
                    self.doc.version,
                    lag
                );
            }
            Err(reason) => {
                let target = match self.spec.bad_files {
                    BadFiles::Quarantine => {
                        let name = r
                            .path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        Some(self.spec.quarantine.join(format!("{seq:06}-{name}")))
                    }
                    BadFiles::Skip => None,
                };
                let entry = self.entry(
                    r,
                    FileStatus::Failed {
                        reason: reason.clone(),
                        quarantined: target.as_ref().map(|t| t.display().to_string()),
                    },
                );
                // Recorded before it is moved: a crash in between leaves a file the registry
                // already knows as failed, which is skipped, rather than one read again.
                self.record(entry)?;
                if let Some(t) = &target
                    && let Err(e) = move_file(&r.path, t)
                {
                    tracing::error!("{path}: cannot quarantine to {}: {e}", t.display());
                }
                if self.metrics_on {
                    m::file("failed");
                }
                self.outputs_dirty = true;
                tracing::error!(
                    "{path}: not ingested: {reason}{}",
                    target.map_or(String::new(), |t| format!("; moved to {}", t.display()))
                );
            }
        }
        Ok(())
    }

    fn maybe_write_outputs(&mut self) {
        let due = self
            .last_outputs
            .is_none_or(|l| l.elapsed() >= self.spec.outputs_interval);
        if self.outputs_dirty && due {
            self.write_outputs();
        }
    }

    /// Rewrites the tables and `status.json` from the committed state.
    fn write_outputs(&mut self) {
        let mut ok = true;
        for s in &self.p.stages {
            let StageKind::TableSink(t) = &s.kind else {
                continue;
            };
            for &j in &s.inputs {
                let name = &self.p.stages[j].name;
                let Some(state) = self.aggs.get(name) else {
                    continue;
                };
                let set = TableSet {
                    stage: name.clone(),
                    rows: state.rows(),
                    tables: state.finish(),
                };
                if let Err(e) = write_tables(&t.path, &t.formats, &self.p.name, &set) {
                    tracing::error!("sink `{}`: {e}; retrying at the next interval", s.name);
                    ok = false;
                }
            }
        }
        let aggregated = self
            .aggs
            .iter()
            .map(|(k, v)| (k.as_str(), v.rows()))
            .collect();
        let written = match Status::of(&self.p.name, &self.doc, aggregated).to_bytes() {
            Ok(bytes) => {
                write_atomic(self.store.dir().join(STATUS), &bytes).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("{STATUS}: {e}")),
        };
        if let Err(e) = written {
            tracing::error!("{e}");
            ok = false;
        }
        self.last_outputs = Some(Instant::now());
        self.outputs_dirty = !ok;
    }

    /// SIGHUP: the pipeline file again. A new pipeline that is invalid, or that would change
    /// what the committed aggregates mean, is refused and the running one kept.
    fn reload(&mut self) {
        notify(&[NotifyState::Reloading]);
        let result = load(&self.path, &self.overrides).and_then(|(p, spec)| {
            if digest(&p) != self.doc.digest {
                return Err(DaemonError::Mismatch {
                    dir: self.spec.state.clone(),
                    why: "the reloaded file changes them".into(),
                });
            }
            if spec.state != self.spec.state {
                return Err(DaemonError::Read {
                    path: self.path.clone(),
                    source: std::io::Error::other(format!(
                        "`daemon.state` changed from {} to {}; a state folder can only change with a restart",
                        self.spec.state.display(),
                        spec.state.display()
                    )),
                });
            }
            Ok((p, spec))
        });
        match result {
            Ok((p, spec)) => {
                if p.monitor.prometheus != self.p.monitor.prometheus {
                    tracing::warn!(
                        "reload: a new `monitor.prometheus` address takes a restart; still serving the old one"
                    );
                }
                self.fs_watch = start_watch(&p, &spec, &self.wake);
                self.p = p;
                self.spec = spec;
                self.tracker.forget_all();
                self.outputs_dirty = true;
                if self.metrics_on {
                    m::reload("applied");
                }
                tracing::info!("reloaded {}", self.path.display());
            }
            Err(e) => {
                if self.metrics_on {
                    m::reload("rejected");
                }
                tracing::error!("reload rejected, the running pipeline is kept:\n{e}");
            }
        }
        notify(&[NotifyState::Ready]);
    }
}

/// Moves a file, across filesystems if need be.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) => {
            std::fs::copy(from, to)?;
            std::fs::remove_file(from)
        }
    }
}
