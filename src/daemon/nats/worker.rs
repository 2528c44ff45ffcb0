//! One notice, handled: the file folded through the batch runtime, its partials committed
//! create-if-absent, and only then the notice double-acknowledged.
//!
//! Why exactly once: a file's rows reach the outputs only through its committed partials
//! (`SHARED/partials/<stage>/<fingerprint>`), and a partial is created once, never replaced. A
//! daemon that dies before its commits leaves the notice unacknowledged, so it is delivered
//! again and the file folded from the start; one that dies after them leaves partials that the
//! next delivery finds, so it acknowledges without folding again. The double ack waits for the
//! server to confirm it, so a notice is only gone from the stream once its file is committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};

use super::bus::{Bus, Notice};
use crate::config::{Pipeline, StageKind};
use crate::daemon::ingest::{self, Ingested};
use crate::daemon::state::COMMIT_PAUSE_ENV;
use crate::daemon::watch::fingerprint;
use crate::flow::stats::{Control, RunStats};
use crate::monitor::metrics::{bus as mb, daemon as m};
use crate::shard::partial::{self, Header, LedgerEntry};

/// Where a fingerprint's partial of aggregator `stage` is committed.
pub fn partial_path(shared: &Path, stage: &str, fingerprint: &str) -> PathBuf {
    partials_dir(shared, stage).join(fingerprint)
}

/// The folder of aggregator `stage`'s committed partials.
pub fn partials_dir(shared: &Path, stage: &str) -> PathBuf {
    shared.join("partials").join(stage)
}

/// What the worker needs of the daemon.
pub(super) struct Ctx<'a> {
    pub p: &'a Arc<Pipeline>,
    pub shared: &'a Path,
    pub digest: &'a str,
    pub ack_wait: Duration,
    pub max_deliver: u64,
    pub metrics_on: bool,
    /// The run in flight, for a second stop signal to abandon.
    pub current: &'a std::sync::Mutex<Option<Arc<Control>>>,
    pub stats: &'a Arc<std::sync::Mutex<Option<Arc<RunStats>>>>,
}

/// The aggregator stages, whose partials a file commits.
pub(super) fn aggregators(p: &Pipeline) -> Vec<String> {
    crate::shard::aggregator_names(p)
}

/// Handles one delivered notice. Errors talking to the bus are logged: the notice is then
/// delivered again, and the partials make a second handling harmless.
pub(super) async fn handle(cx: &Ctx<'_>, bus: &Bus, msg: jetstream::Message) {
    let (delivered, published_ns) = match msg.info() {
        Ok(i) => (
            i.delivered.max(1) as u64,
            Some(i.published.unix_timestamp_nanos()),
        ),
        Err(e) => {
            // Counted as a first delivery: the server still stops at its own max_deliver.
            tracing::warn!(
                "a notice's delivery information is unreadable ({e}; reply subject {:?})",
                msg.reply
            );
            (1, None)
        }
    };
    let notice: Notice = match serde_json::from_slice(&msg.payload) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("an unreadable notice was terminated: {e}");
            if cx.metrics_on {
                mb::notice("terminated");
            }
            ack(&msg, AckKind::Term, "terminate").await;
            return;
        }
    };
    let path = notice.path.clone();
    if delivered > 1 {
        tracing::info!(
            "redelivered: {path} ({}), delivery {delivered} of at most {}",
            notice.fingerprint,
            cx.max_deliver
        );
        if cx.metrics_on {
            mb::notice("redelivered");
        }
    }
    let stages = aggregators(cx.p);
    let targets: Vec<(String, PathBuf)> = stages
        .iter()
        .map(|s| (s.clone(), partial_path(cx.shared, s, &notice.fingerprint)))
        .collect();
    if targets.iter().all(|(_, t)| t.exists()) {
        tracing::info!(
            "{path} ({}) is committed already; acknowledged without folding it again",
            notice.fingerprint
        );
        double_ack(&msg).await;
        return;
    }
    let t0 = Instant::now();
    match fold(cx, &msg, &notice).await {
        Ok(ing) => {
            tracing::info!("{path}: folded, committing its partials");
            if let Err(e) = commit(cx, &notice, &targets, &ing, t0.elapsed()) {
                // Not acknowledged: delivered again, and the commit retried.
                tracing::error!("{path}: cannot commit its partials: {e}");
                ack(&msg, AckKind::Nak(Some(Duration::from_secs(1))), "nak").await;
                return;
            }
            pause();
            double_ack(&msg).await;
            if cx.metrics_on {
                m::file("ingested");
            }
            // The bus's share of a file's time: from its notice's publish to its ack, less the
            // fold and commit (the benchmark reads these).
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            let to_ack = published_ns.map_or(f64::NAN, |p| (now_ns - p) as f64 / 1e9);
            tracing::info!(
                "ingested {path} ({}): {} rows read = {} kept + {} filtered out + {} rejected, in {:.3} s; {to_ack:.3} s from publish to ack",
                notice.fingerprint,
                ing.rows.read,
                ing.rows.kept,
                ing.rows.filtered_out,
                ing.rows.rejected,
                t0.elapsed().as_secs_f64()
            );
        }
        Err(Fold::Abandoned) => {
            // A stop's deadline, not the file's fault: it goes to another daemon, uncounted.
            tracing::warn!("{path}: abandoned at the shutdown deadline; delivered again");
            ack(&msg, AckKind::Nak(None), "nak").await;
        }
        Err(Fold::Failed(reason)) if delivered >= cx.max_deliver => {
            tracing::error!(
                "{path}: not ingested after {delivered} deliveries, terminated: {reason}"
            );
            if let Err(e) = bus.record_failed(&notice, &reason).await {
                tracing::error!("{path}: cannot record its failure: {e}");
            }
            ack(&msg, AckKind::Term, "terminate").await;
            if cx.metrics_on {
                mb::notice("terminated");
                m::file("failed");
            }
        }
        Err(Fold::Failed(reason)) => {
            tracing::warn!(
                "{path}: delivery {delivered} of at most {} failed, retried: {reason}",
                cx.max_deliver
            );
            ack(&msg, AckKind::Nak(Some(Duration::from_secs(1))), "nak").await;
        }
    }
}

/// Why a fold gave no state.
enum Fold {
    /// Its run was cancelled by a second stop signal or the shutdown deadline.
    Abandoned,
    /// The file could not be folded: why.
    Failed(String),
}

/// Folds the file on a thread of its own (the batch runtime runs its own actix system), sending
/// progress acks every third of `ack_wait` while it runs, so a long file is not redelivered to
/// another daemon while this one is still on it.
async fn fold(cx: &Ctx<'_>, msg: &jetstream::Message, n: &Notice) -> Result<Ingested, Fold> {
    let reader =
        cx.p.stages
            .iter()
            .position(|s| s.name == n.reader && matches!(s.kind, StageKind::Reader(_)))
            .ok_or_else(|| Fold::Failed(format!("the pipeline has no reader `{}`", n.reader)))?;
    let file = PathBuf::from(&n.path);
    let now = fingerprint(&file).map_err(|e| Fold::Failed(format!("{}: {e}", n.path)))?;
    if now.key() != n.fingerprint {
        return Err(Fold::Failed(format!(
            "its content changed since the notice ({} now, {} then)",
            now.key(),
            n.fingerprint
        )));
    }
    let control = Arc::new(Control::default());
    *cx.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(control.clone());
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let (p, stats, metrics_on) = (cx.p.clone(), cx.stats.clone(), cx.metrics_on);
    let run_control = control.clone();
    let thread = std::thread::Builder::new()
        .name("sweep-fold".into())
        .spawn(move || {
            let r = ingest::ingest(&p, reader, &file, 0, run_control, stats, metrics_on);
            let _ = tx.send(r);
        });
    if let Err(e) = thread {
        return Err(Fold::Failed(format!("cannot start a thread: {e}")));
    }
    let mut tick = tokio::time::interval(cx.ack_wait / 3);
    tick.tick().await;
    let result = loop {
        tokio::select! {
            r = &mut rx => break r.unwrap_or_else(|_| Err("the fold thread died".into())),
            _ = tick.tick() => ack(msg, AckKind::Progress, "progress ack").await,
        }
    };
    *cx.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *cx.stats.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if cx.metrics_on {
        m::between_files();
    }
    match result {
        // A run that finished before the cancel reached any stage is whole, and is committed.
        Err(_) if control.cancelled() => Err(Fold::Abandoned),
        other => other.map_err(Fold::Failed),
    }
}

/// Commits one partial per aggregator, each created once: one already there (an earlier
/// delivery committed it before dying) counts as done and is kept.
fn commit(
    cx: &Ctx<'_>,
    n: &Notice,
    targets: &[(String, PathBuf)],
    ing: &Ingested,
    took: Duration,
) -> Result<(), String> {
    let ledger = vec![LedgerEntry {
        bytes_read: ing.bytes_read,
        duration_sec: took.as_secs_f64(),
        file: n.path.clone(),
        file_bytes: std::fs::metadata(&n.path).map_or(0, |m| m.len()),
        paths: None,
        reader: n.reader.clone(),
        rows_filtered_out: ing.rows.filtered_out,
        rows_kept: ing.rows.kept,
        rows_read: ing.rows.read,
        rows_rejected: ing.rows.rejected,
        unit: 0,
    }];
    for (stage, target) in targets {
        if target.exists() {
            continue;
        }
        let state = ing
            .states
            .iter()
            .find(|(s, _)| s == stage)
            .map(|(_, st)| st)
            .ok_or_else(|| format!("internal error: aggregator `{stage}` handed over no state"))?;
        // A bus partial is a one-file run: its "plan" is the file's fingerprint, shard 0 of 1.
        let header = Header {
            plan_hash: n.fingerprint.clone(),
            pipeline_digest: cx.digest.to_string(),
            shard_index: 0,
            shard_count: 1,
            stage: stage.clone(),
            rows: state.rows(),
            duration_sec: took.as_secs_f64(),
            ledger: ledger.clone(),
        };
        let dir = target.parent().unwrap_or(cx.shared);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        partial::remove_stale_temps(dir, &n.fingerprint);
        let temp = partial::create_temp(dir, &n.fingerprint).map_err(|e| e.to_string())?;
        let bytes = partial::encode(&header, state).map_err(|e| e.to_string())?;
        partial::commit(temp, &bytes, target).map_err(|e| e.to_string())?;
        pause();
    }
    Ok(())
}

/// The crash tests' window between the steps of a commit (see [`COMMIT_PAUSE_ENV`]).
fn pause() {
    if let Some(ms) = std::env::var(COMMIT_PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

async fn ack(msg: &jetstream::Message, kind: AckKind, what: &str) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!("{what} failed ({e}); the notice will be delivered again");
    }
}

/// The ack the server confirms. If it fails, the notice comes back and finds its partials.
async fn double_ack(msg: &jetstream::Message) {
    if let Err(e) = msg.double_ack().await {
        tracing::warn!("ack failed ({e}); the notice will be delivered again and found committed");
    }
}
