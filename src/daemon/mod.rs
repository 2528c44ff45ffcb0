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

pub mod ingest;
pub mod state;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sd_notify::NotifyState;
use serde_json::json;

use crate::aggregators::AggState;
use crate::batch::TableSet;
use crate::config::AggregatorSpec;
use crate::config::{self, BadFiles, ChangedFiles, ConfigErrors, DaemonSpec, Pipeline, StageKind};
use crate::flow::Kind;
use crate::flow::stats::{Control, RunStats};
use crate::monitor::metrics::{self, daemon as m};
use crate::sinks::atomic::write_atomic;
use crate::sinks::tables::write_tables;
use state::{FileEntry, FileStatus, Fingerprint, StateDoc, StateError, StateStore};
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
    #[error(
        "{path}: sweep analysis `{stage}` cannot run in the daemon yet: its per-order state is \
         not kept between files, so an order whose events or trades arrive in different files \
         would be analysed in pieces. Run it with `sweep run` over the day's files"
    )]
    Unsupported { path: String, stage: String },
}

impl DaemonError {
    /// 2 for what the operator must fix before starting (configuration, state), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::State(StateError::Io { .. }) | DaemonError::Signals(_) => 1,
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
    if let Some(s) = p
        .stages
        .iter()
        .find(|s| s.kind.kind() == Kind::SweepAnalysis)
    {
        return Err(DaemonError::Unsupported {
            path: path.display().to_string(),
            stage: s.name.clone(),
        });
    }
    Ok((p, spec))
}

/// What shapes the committed aggregates: the readers' parsing, the filters and the aggregators,
/// by name. Paths, sinks, the monitor and the runtime may change under a running state.
fn shape(p: &Pipeline) -> String {
    let name = |i: &usize| p.stages[*i].name.clone();
    let mut lines: Vec<String> = p
        .stages
        .iter()
        .filter_map(|s| {
            let inputs: Vec<String> = s.inputs.iter().map(name).collect();
            match &s.kind {
                StageKind::Reader(r) => Some(format!(
                    "reader {} format={:?} compression={:?} delimiter={} columns={:?} on_error={:?}",
                    s.name, r.format, r.compression, r.delimiter, r.columns, r.on_error
                )),
                StageKind::Filter(f) => Some(format!("filter {} {inputs:?} {f:?}", s.name)),
                StageKind::Aggregator(a) => Some(format!("aggregator {} {inputs:?} {a:?}", s.name)),
                _ => None,
            }
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

fn digest(p: &Pipeline) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(shape(p).as_bytes()))
}

fn agg_specs(p: &Pipeline) -> BTreeMap<String, Arc<AggregatorSpec>> {
    p.stages
        .iter()
        .filter_map(|s| match &s.kind {
            StageKind::Aggregator(a) => Some((s.name.clone(), Arc::new(a.clone()))),
            _ => None,
        })
        .collect()
}

/// What the signal thread and the watchdog share with the loop.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// The run of the file in flight, to abandon it at the deadline.
    current: Mutex<Option<Arc<Control>>>,
    stats: Arc<Mutex<Option<Arc<RunStats>>>>,
    /// Milliseconds since start when the loop last went round.
    beat: AtomicU64,
}

impl Shared {
    fn abandon_current(&self) {
        if let Some(c) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            c.cancel();
        }
    }

    /// Bytes read by the run in flight: progress that proves liveness to the watchdog.
    fn progress(&self) -> u64 {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |s| {
                s.jobs()
                    .iter()
                    .map(|j| j.bytes_read.load(Ordering::Relaxed))
                    .sum()
            })
    }
}

enum Event {
    Wake,
    Stop,
    Reload,
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("systemd notification failed: {e}");
    }
}

/// Starts the thread that turns signals into events. SIGTERM or SIGINT starts a shutdown and
/// arms its deadline; a second one abandons the file in flight at once.
fn signals(
    shared: Arc<Shared>,
    events: Sender<Event>,
    timeout: Duration,
) -> Result<(), DaemonError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut sigs = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(DaemonError::Signals)?;
    std::thread::Builder::new()
        .name("sweep-signals".into())
        .spawn(move || {
            for sig in sigs.forever() {
                if sig == SIGHUP {
                    let _ = events.send(Event::Reload);
                    continue;
                }
                if shared.stopping.swap(true, Ordering::AcqRel) {
                    tracing::warn!("second stop signal: abandoning the file in flight now");
                    shared.abandon_current();
                    continue;
                }
                tracing::info!(
                    "stop signal: finishing the file in flight (at most {:.0} s), then committing",
                    timeout.as_secs_f64()
                );
                let _ = events.send(Event::Stop);
                let s = shared.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(timeout);
                    s.abandon_current();
                });
            }
        })
        .map_err(DaemonError::Signals)?;
    Ok(())
}

/// Pings the systemd watchdog while the daemon makes progress: the loop went round recently, or
/// the file in flight is still being read. A daemon stuck on neither stops pinging, and systemd
/// restarts it.
fn watchdog(shared: Arc<Shared>, started: Instant) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    std::thread::spawn(move || {
        let mut last = 0u64;
        loop {
            std::thread::sleep(period / 2);
            let now = started.elapsed().as_millis() as u64;
            let looped =
                now.saturating_sub(shared.beat.load(Ordering::Acquire)) < period.as_millis() as u64;
            let progress = shared.progress();
            if looped || progress != last {
                notify(&[NotifyState::Watchdog]);
            }
            last = progress;
        }
    });
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

/// The daemon's status document, in the state folder.
const STATUS: &str = "status.json";

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(path: &Path, overrides: &[String]) -> Result<(), DaemonError> {
    let (p, spec) = load(path, overrides)?;
    let digest = digest(&p);
    let opened = StateStore::open(&spec.state)?;
    for w in &opened.warnings {
        tracing::warn!("{w}");
    }
    let doc = match opened.doc {
        Some(d) if d.digest != digest => {
            return Err(DaemonError::Mismatch {
                dir: spec.state.clone(),
                why: format!("state digest {}, pipeline digest {digest}", d.digest),
            });
        }
        Some(d) => d,
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
    fn index(&mut self) {
        self.by_fp.clear();
        self.by_path.clear();
        for (i, f) in self.doc.files.iter().enumerate() {
            self.by_fp.insert(f.fingerprint, i);
            if f.status == FileStatus::Ingested {
                for p in std::iter::once(&f.path).chain(&f.also_seen_as) {
                    self.by_path.insert(p.clone(), i);
                }
            }
        }
    }

    /// Removes the temporaries of outputs that a kill during a rewrite left (tables, the run
    /// report, `status.json`): this daemon owns those paths, and nothing is writing them yet.
    fn remove_stale_temps(&self) {
        let mut targets: Vec<PathBuf> =
            crate::config::outputs::claims(&self.p, &Default::default())
                .into_iter()
                .filter(|c| !c.folder)
                .map(|c| c.path)
                .collect();
        targets.push(self.store.dir().join(STATUS));
        let removed: usize = targets
            .iter()
            .map(|t| crate::sinks::atomic::remove_stale_temps(t))
            .sum();
        if removed > 0 {
            tracing::warn!(
                "removed {removed} temporary file(s) of outputs a kill left half-written"
            );
        }
    }

    /// Publishes committed parts a crash left staged, and deletes parts no commit names: the
    /// outputs then hold exactly what the committed registry says.
    fn recover_parts(&self) {
        let mut committed = std::collections::HashSet::new();
        for f in &self.doc.files {
            for fin in &f.parts {
                let fin = Path::new(fin);
                let staged = ingest::staged(fin);
                if !fin.exists() && staged.exists() {
                    match std::fs::rename(&staged, fin) {
                        Ok(()) => tracing::info!("published committed part {}", fin.display()),
                        Err(e) => tracing::error!("{}: cannot publish: {e}", fin.display()),
                    }
                }
                committed.insert(fin.to_path_buf());
            }
        }
        for dir in ingest::all_parts_dirs(&self.p) {
            let staging = dir.join(ingest::STAGING);
            let left = std::fs::read_dir(&staging).map_or(0, |rd| rd.count());
            if left > 0 {
                tracing::warn!(
                    "removing {left} staged part(s) in {} of files no commit records (a crash or \
                     shutdown before their commit); those files are ingested again",
                    staging.display()
                );
            }
            let _ = std::fs::remove_dir_all(&staging);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.filter_map(Result::ok) {
                let path = e.path();
                if ingest::is_part_name(&e.file_name().to_string_lossy())
                    && !committed.contains(&path)
                {
                    tracing::warn!(
                        "removing {}: no committed state names it (a crash before its commit)",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
                }
            }
        }
    }

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

    /// Sorts complete files against the registry: new content is queued; content already seen
    /// (under this name or another) is left; new content under an ingested name follows the
    /// `changed_files` policy.
    fn triage(&mut self, ready: Vec<Ready>) -> Result<Vec<Ready>, DaemonError> {
        let mut queue = Vec::new();
        for r in ready {
            let path = r.path.display().to_string();
            if let Some(&i) = self.by_fp.get(&r.fingerprint) {
                let e = &self.doc.files[i];
                if e.path != path && !e.also_seen_as.contains(&path) {
                    tracing::info!(
                        "{path}: same content as {} (file {}, {}); not ingested again",
                        e.path,
                        e.seq,
                        e.status.label()
                    );
                    if self.metrics_on {
                        m::file("duplicate");
                    }
                    // Remembered, so that new content under this name is seen as a change.
                    self.doc.files[i].also_seen_as.push(path);
                    self.commit()?;
                }
                continue;
            }
            if let Some(q) = queue
                .iter_mut()
                .find(|q: &&mut Ready| q.fingerprint == r.fingerprint)
            {
                // A copy found in the same scan as its original: said and counted now, and its
                // name is remembered with the original's entry when that is recorded.
                tracing::info!(
                    "{path}: same content as {}, found in the same scan; not ingested again",
                    q.path.display()
                );
                if self.metrics_on {
                    m::file("duplicate");
                }
                q.copies.push(path);
                continue;
            }
            if self.metrics_on {
                m::file("discovered");
            }
            if let Some(&i) = self.by_path.get(&path) {
                let previous_seq = self.doc.files[i].seq;
                match self.spec.changed_files {
                    ChangedFiles::Ingest => {
                        tracing::warn!(
                            "{path}: content changed since it was ingested as file {previous_seq}; \
                             ingesting the new content as a new file (changed_files = \"ingest\")"
                        );
                    }
                    ChangedFiles::Skip => {
                        tracing::warn!(
                            "{path}: content changed since it was ingested as file {previous_seq}; \
                             not ingested, so nothing is counted twice (changed_files = \"skip\")"
                        );
                        if self.metrics_on {
                            m::file("changed");
                        }
                        let entry = self.entry(&r, FileStatus::Changed { previous_seq });
                        self.record(entry)?;
                        continue;
                    }
                }
            }
            queue.push(r);
        }
        Ok(queue)
    }

    fn entry(&self, r: &Ready, status: FileStatus) -> FileEntry {
        FileEntry {
            seq: self.doc.next_seq,
            reader: self.p.stages[r.reader].name.clone(),
            path: r.path.display().to_string(),
            fingerprint: r.fingerprint,
            status,
            rows: Default::default(),
            completed_at_ms: unix_ms(r.completed_at),
            committed_at_ms: 0,
            parts: Vec::new(),
            also_seen_as: r.copies.clone(),
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
                    aggregator: name.clone(),
                    rows: state.rows(),
                    tables: state.finish(),
                };
                if let Err(e) = write_tables(&t.path, &t.formats, &self.p.name, &set) {
                    tracing::error!("sink `{}`: {e}; retrying at the next interval", s.name);
                    ok = false;
                }
            }
        }
        let status = self.status();
        let mut bytes = serde_json::to_vec_pretty(&status).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = write_atomic(self.store.dir().join(STATUS), &bytes) {
            tracing::error!("{e}");
            ok = false;
        }
        self.last_outputs = Some(Instant::now());
        self.outputs_dirty = !ok;
    }

    /// A readable summary of the committed state, for operators and scripts.
    fn status(&self) -> serde_json::Value {
        let count = |label: &str| {
            self.doc
                .files
                .iter()
                .filter(|f| f.status.label() == label)
                .count()
        };
        let mut totals = state::RowCounts::default();
        for f in &self.doc.files {
            totals.read += f.rows.read;
            totals.kept += f.rows.kept;
            totals.filtered_out += f.rows.filtered_out;
            totals.rejected += f.rows.rejected;
        }
        json!({
            "pipeline": self.p.name,
            "state_version": self.doc.version,
            "committed_at": chrono::DateTime::<chrono::Utc>::from(
                SystemTime::UNIX_EPOCH + Duration::from_millis(self.doc.committed_at_ms)
            ).to_rfc3339(),
            "files": {
                "ingested": count("ingested"),
                "failed": count("failed"),
                "changed": count("changed"),
            },
            "rows": {
                "read": totals.read,
                "kept": totals.kept,
                "filtered_out": totals.filtered_out,
                "rejected": totals.rejected,
            },
            "aggregated": self.aggs.iter().map(|(k, v)| (k.clone(), json!(v.rows()))).collect::<serde_json::Map<_, _>>(),
            "registry": self.doc.files.iter().map(|f| {
                let mut v = json!({
                    "seq": f.seq,
                    "reader": f.reader,
                    "path": f.path,
                    "fingerprint": f.fingerprint.to_string(),
                    "status": f.status.label(),
                    "rows_read": f.rows.read,
                    "rows_kept": f.rows.kept,
                    "rows_filtered_out": f.rows.filtered_out,
                    "rows_rejected": f.rows.rejected,
                    "parts": f.parts,
                    "also_seen_as": f.also_seen_as,
                });
                match &f.status {
                    FileStatus::Failed { reason, quarantined } => {
                        v["reason"] = json!(reason);
                        v["quarantined"] = json!(quarantined);
                    }
                    FileStatus::Changed { previous_seq } => v["previous_seq"] = json!(previous_seq),
                    FileStatus::Ingested => {}
                }
                v
            }).collect::<Vec<_>>(),
        })
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
