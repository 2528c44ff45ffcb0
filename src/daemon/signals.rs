//! The daemon's supervisor interface: signals in (stop, reload), systemd readiness, status and
//! watchdog pings out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::DaemonError;
use crate::flow::stats::{Control, RunStats};

/// What the signal thread and the watchdog share with the loop.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) stopping: AtomicBool,
    /// The run of the file in flight, to abandon it at the deadline.
    pub(super) current: Mutex<Option<Arc<Control>>>,
    pub(super) stats: Arc<Mutex<Option<Arc<RunStats>>>>,
    /// Milliseconds since start when the loop last went round.
    pub(super) beat: AtomicU64,
}

impl Shared {
    pub(super) fn abandon_current(&self) {
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

pub(super) enum Event {
    Wake,
    Stop,
    Reload,
}

pub(super) fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("systemd notification failed: {e}");
    }
}

/// Starts the thread that turns signals into events. SIGTERM or SIGINT starts a shutdown and
/// arms its deadline; a second one abandons the file in flight at once.
pub(super) fn signals(
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
pub(super) fn watchdog(shared: Arc<Shared>, started: Instant) {
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
