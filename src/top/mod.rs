//! `sweep top`: a live terminal view of a running `sweep run --metrics ADDR` or `sweep daemon`,
//! read from its Prometheus endpoint once a second: per-stage rates, batch latency percentiles,
//! edge fill (back-pressure), rejected rows, progress, and a daemon's queue and commits.
//!
//! `scrape` reads the endpoint (`exposition` parses the text format), `figures` derives what is
//! shown, `view` draws it. Scrapes run on a thread of their own, so the keys answer at once even
//! while an endpoint hangs until the scrape's timeout.

mod exposition;
mod figures;
mod scrape;
mod view;

#[cfg(test)]
mod tests;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use exposition::ParseError;
use figures::{Earlier, Figures};
pub use scrape::ScrapeError;
use scrape::{Client, Snapshot};
use view::{Link, Screen};

/// The address read when none is given: the one the README and the shipped daemon pipeline use
/// for `[monitor] prometheus`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9898";

/// Time between scrapes.
const PERIOD: Duration = Duration::from_secs(1);

/// How long the loop waits for a key before it looks for a scrape: short enough that a scrape is
/// on screen within a tenth of a second.
const KEY_WAIT: Duration = Duration::from_millis(100);

/// Why `sweep top` could not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The address is neither `HOST:PORT`, a port nor an `http://` URL.
    #[error("`{0}` is not a metrics address: give HOST:PORT, a port, or http://HOST:PORT/PATH")]
    Address(String),
    /// An `https://` URL: sweep's exporter serves plain HTTP only.
    #[error("`{0}`: sweep serves its metrics over plain http, not https")]
    Https(String),
    /// The first scrape failed: nothing to show.
    #[error("cannot read {url}: {reason}")]
    Unreachable { url: String, reason: ScrapeError },
    /// Standard output is not a terminal.
    #[error("the view needs a terminal, and standard output is not one")]
    NotATerminal,
    /// The signal handlers or the scraping thread could not be set up.
    #[error("cannot start: {0}")]
    Start(std::io::Error),
    /// The terminal could not be set up, drawn on, read or restored.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl TopError {
    /// The process exit code, by `main`'s conventions: 1 when the endpoint, the terminal or
    /// the process failed, 2 for a usage error.
    pub fn exit_code(&self) -> u8 {
        match self {
            TopError::Address(_) | TopError::Https(_) | TopError::NotATerminal => 2,
            TopError::Unreachable { .. } | TopError::Start(_) | TopError::Terminal(_) => 1,
        }
    }
}

/// The URL of the metrics behind `addr`: `HOST:PORT` and a bare port (loopback, as
/// `[monitor] prometheus` reads it) get `http://…/metrics`; an `http://` URL is taken as given,
/// with `/metrics` added when it names no path.
pub fn metrics_url(addr: &str) -> Result<String, TopError> {
    let a = addr.trim();
    let bad = || TopError::Address(addr.to_string());
    if a.starts_with("https://") {
        return Err(TopError::Https(addr.to_string()));
    }
    if let Some(rest) = a.strip_prefix("http://") {
        return match rest.find('/') {
            Some(0) => Err(bad()),
            Some(_) => Ok(a.to_string()),
            None if rest.is_empty() => Err(bad()),
            None => Ok(format!("{a}/metrics")),
        };
    }
    if let Some(sock) = crate::config::parse_listen(a) {
        return Ok(format!("http://{sock}/metrics"));
    }
    // A host name: `localhost:9898`, `box.example:9898`.
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if host_ok && port.parse::<u16>().is_ok() {
        Ok(format!("http://{a}/metrics"))
    } else {
        Err(bad())
    }
}

/// Runs the view on the endpoint at `addr` until q, Esc, Ctrl-C, SIGINT, SIGTERM or SIGHUP.
/// The terminal is restored however it ends.
pub fn run(addr: &str) -> Result<(), TopError> {
    let url = metrics_url(addr)?;
    let client = Client::new(&url);
    // Before the terminal is taken over, so that an endpoint that is not there is a plain error.
    let first = client.scrape().map_err(|reason| TopError::Unreachable {
        url: url.clone(),
        reason,
    })?;
    if !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&quit)).map_err(TopError::Start)?;
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("top-scrape".into())
        .spawn(move || scrape_loop(&client, &tx))
        .map_err(TopError::Start)?;
    let mut app = App::new(url, first, Instant::now(), Local::now());
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            // Raw mode may be on even though the alternate screen was refused.
            let _ = ratatui::try_restore();
            return Err(e.into());
        }
    };
    let result = app.run(&mut terminal, &rx, &quit);
    drop(terminal);
    let restored = ratatui::try_restore();
    result?;
    restored?;
    Ok(())
}

/// One scrape's outcome and when it came back.
struct Scraped {
    at: Instant,
    wall: DateTime<Local>,
    result: Result<Snapshot, ScrapeError>,
}

/// Scrapes every [`PERIOD`] until the view is gone (the channel closed).
fn scrape_loop(client: &Client, tx: &Sender<Scraped>) {
    let start = Instant::now();
    let mut beat = 1u32;
    loop {
        std::thread::sleep((start + PERIOD * beat).saturating_duration_since(Instant::now()));
        let result = client.scrape();
        let sent = tx.send(Scraped {
            at: Instant::now(),
            wall: Local::now(),
            result,
        });
        if sent.is_err() {
            return;
        }
        // A scrape that overran its beat (a slow endpoint) skips the beats it missed instead of
        // firing again at once.
        let elapsed = start.elapsed().as_secs_f64() / PERIOD.as_secs_f64();
        beat = beat.max(elapsed.floor() as u32).saturating_add(1);
    }
}

/// A snapshot and when it was read.
struct Timed {
    snap: Snapshot,
    at: Instant,
    wall: DateTime<Local>,
}

impl Timed {
    fn earlier_than<'a>(&'a self, later: &Timed) -> Earlier<'a> {
        Earlier {
            snap: &self.snap,
            secs: later.at.saturating_duration_since(self.at).as_secs_f64(),
        }
    }
}

/// The view's state: the latest good scrape, the one before it (for rates), the first of the
/// run (for the ETA's pace), and whether the endpoint still answers.
struct App {
    url: String,
    latest: Timed,
    prev: Option<Timed>,
    base: Timed,
    link: Link,
    figures: Figures,
}

impl App {
    fn new(url: String, first: Snapshot, at: Instant, wall: DateTime<Local>) -> Self {
        let latest = Timed {
            snap: first,
            at,
            wall,
        };
        let base = Timed {
            snap: latest.snap.clone(),
            at,
            wall,
        };
        let mut app = App {
            url,
            latest,
            prev: None,
            base,
            link: Link::Live,
            figures: Figures::default(),
        };
        app.refigure();
        app
    }

    fn update(&mut self, s: Scraped) {
        match s.result {
            Ok(snap) => {
                let now = Timed {
                    snap,
                    at: s.at,
                    wall: s.wall,
                };
                // After an outage the old readings say nothing of what answers now; a new run on
                // the address (fewer jobs finished than at the base) only sets a new pace, since
                // rates already count a counter that went down from zero. A daemon's jobs go
                // back to 0 after every file, so its rates must not start over with them.
                let back = matches!(self.link, Link::Gone { .. });
                if back || now.snap.jobs.finished() < self.base.snap.jobs.finished() {
                    self.base = Timed {
                        snap: now.snap.clone(),
                        at: now.at,
                        wall: now.wall,
                    };
                }
                if back {
                    self.prev = None;
                    self.latest = now;
                } else {
                    self.prev = Some(std::mem::replace(&mut self.latest, now));
                }
                self.link = Link::Live;
                self.refigure();
            }
            Err(e) => {
                self.link = Link::Gone {
                    reason: e.to_string(),
                }
            }
        }
    }

    fn refigure(&mut self) {
        let prev = self.prev.as_ref().map(|p| p.earlier_than(&self.latest));
        let base = self.base.earlier_than(&self.latest);
        self.figures = figures::figures(prev, Some(base), &self.latest.snap);
    }

    fn screen(&self) -> Screen<'_> {
        Screen {
            url: &self.url,
            version: self.latest.snap.version.as_deref(),
            figures: &self.figures,
            seen: self.latest.wall,
            link: &self.link,
            now: Local::now(),
        }
    }

    fn run(
        &mut self,
        terminal: &mut DefaultTerminal,
        rx: &Receiver<Scraped>,
        quit: &AtomicBool,
    ) -> std::io::Result<()> {
        loop {
            terminal.draw(|f| view::draw(f, &self.screen()))?;
            if quit.load(Ordering::Relaxed) {
                return Ok(());
            }
            if event::poll(KEY_WAIT)?
                && let Event::Key(k) = event::read()?
                && quits(&k)
            {
                return Ok(());
            }
            loop {
                match rx.try_recv() {
                    Ok(s) => self.update(s),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.link = Link::Gone {
                            reason: "the scraping thread stopped".to_string(),
                        };
                        break;
                    }
                }
            }
        }
    }
}

/// q, Esc and Ctrl-C quit. In raw mode Ctrl-C is a key, not a signal.
fn quits(k: &KeyEvent) -> bool {
    k.kind == KeyEventKind::Press
        && match k.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => k.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}
