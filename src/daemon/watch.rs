//! Following the readers' paths: which files exist, which are complete, and what their content
//! is known by.
//!
//! Filesystem events (notify) only wake the daemon early. What it acts on is always a rescan of
//! the readers' paths, done at every wake-up and at least every `poll_secs`, so an event that is
//! lost (an overflowing inotify queue, a network filesystem that sends none) delays a file by
//! one poll at most and never loses it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

use super::state::Fingerprint;
use crate::config::{Completion, DaemonSpec, Pipeline, StageKind, WatchMode};
use crate::readers::discover;

/// Bytes hashed for a fingerprint: enough to cover a header and the first rows of any file.
pub const FINGERPRINT_BYTES: usize = 64 << 10;

/// The fingerprint of the file at `path`: its first bytes' hash and its size.
pub fn fingerprint(path: &Path) -> std::io::Result<Fingerprint> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    (&mut f)
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(Fingerprint {
        head: xxhash_rust::xxh3::xxh3_128(&head),
        size,
    })
}

/// A file that is complete and may be ingested, subject to the registry.
#[derive(Debug, Clone)]
pub struct Ready {
    pub reader: usize,
    pub path: PathBuf,
    pub fingerprint: Fingerprint,
    /// When it became complete, as far as the filesystem tells.
    pub completed_at: SystemTime,
    /// Other paths with the same content found in the same scan: not ingested, but remembered
    /// as names of this file.
    pub copies: Vec<String>,
}

/// What was last seen of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    modified: SystemTime,
    /// Set once it was found complete and handed on: nothing more to do until it changes.
    handed_on: bool,
}

fn ctime(m: &std::fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The marker that says `path` is complete under `complete = "marker"`.
pub fn marker_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".done");
    PathBuf::from(name)
}

/// Remembers what each path looked like, to decide completeness and to avoid hashing a file
/// again while it has not changed.
#[derive(Default)]
pub struct Tracker {
    seen: HashMap<PathBuf, Seen>,
    /// Scan errors already logged, so a bad glob is reported once, not every poll.
    reported: std::collections::HashSet<String>,
}

impl Tracker {
    /// Files that are complete and have not been handed on since they last changed. `settling`
    /// is set to the soonest moment a settling file may become complete.
    pub fn scan(
        &mut self,
        p: &Pipeline,
        spec: &DaemonSpec,
        settling: &mut Option<Duration>,
    ) -> Vec<Ready> {
        let now = SystemTime::now();
        let mut ready = Vec::new();
        let mut present = std::collections::HashSet::new();
        // The daemon's own outputs may sit in a followed folder; they are never inputs.
        let outputs = crate::config::outputs::Resolved::new(&crate::config::outputs::claims(
            p,
            &Default::default(),
        ));
        for (i, stage) in p.stages.iter().enumerate() {
            let StageKind::Reader(r) = &stage.kind else {
                continue;
            };
            let (files, errors) = discover::scan(&r.paths, &|f| outputs.writes(f));
            for e in errors {
                let msg = format!("reader `{}`: {e}", stage.name);
                if self.reported.insert(msg.clone()) {
                    tracing::warn!("{msg}");
                }
            }
            for path in files {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                present.insert(path.clone());
                let modified = meta.modified().unwrap_or(now);
                let (size, before) = (meta.len(), self.seen.get(&path).copied());
                let unchanged = before.is_some_and(|b| b.size == size && b.modified == modified);
                if unchanged && before.is_some_and(|b| b.handed_on) {
                    continue;
                }
                let complete = match spec.complete {
                    // An empty file under this convention is one being created in place, not
                    // one renamed in: a renamed-in empty file has no rows to miss.
                    Completion::Rename if size == 0 => None,
                    Completion::Rename => Some(ctime(&meta).unwrap_or(modified)),
                    Completion::Marker => std::fs::metadata(marker_of(&path))
                        .ok()
                        .map(|m| m.modified().unwrap_or(now).max(modified)),
                    Completion::Settle => {
                        let age = now.duration_since(modified).unwrap_or_default();
                        // Quiet for the settle time, and no change since the last look (a
                        // filesystem with coarse timestamps can change a file within one tick).
                        let settled = age >= spec.settle && (before.is_none() || unchanged);
                        if !settled {
                            let wait = spec
                                .settle
                                .saturating_sub(age)
                                .max(Duration::from_millis(50));
                            *settling = Some(settling.map_or(wait, |s| s.min(wait)));
                        }
                        settled.then_some(modified)
                    }
                };
                let mut seen = Seen {
                    size,
                    modified,
                    handed_on: false,
                };
                if let Some(completed_at) = complete {
                    match fingerprint(&path) {
                        Ok(fp) if fp.size == size => {
                            seen.handed_on = true;
                            ready.push(Ready {
                                reader: i,
                                path: path.clone(),
                                fingerprint: fp,
                                completed_at: completed_at.min(now),
                                copies: Vec::new(),
                            });
                        }
                        // It changed under us, or vanished: look again at the next scan.
                        Ok(_) => {}
                        Err(e) => tracing::warn!("{}: cannot read: {e}", path.display()),
                    }
                }
                self.seen.insert(path, seen);
            }
        }
        self.seen.retain(|p, _| present.contains(p));
        ready
    }

    /// Forgets a path, so its next scan looks at it afresh (after a reload, say).
    pub fn forget_all(&mut self) {
        self.seen.clear();
        self.reported.clear();
    }
}

/// The folders to watch for a path entry: a glob's literal leading folders (recursively when a
/// later component has a wildcard folder), a folder itself, or a file's folder.
fn watch_roots(entry: &str) -> (PathBuf, RecursiveMode) {
    let p = Path::new(entry);
    let wild = |s: &str| s.contains(['*', '?', '[']);
    if wild(entry) {
        let mut root = PathBuf::new();
        let mut comps = p.components().peekable();
        while let Some(c) = comps.peek() {
            if wild(&c.as_os_str().to_string_lossy()) {
                break;
            }
            root.push(c.as_os_str());
            comps.next();
        }
        // More than the file name is a pattern: folders below the root may match too.
        let deep = comps.count() > 1;
        let root = if root.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            root
        };
        (
            root,
            if deep {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            },
        )
    } else if p.is_dir() {
        (p.to_path_buf(), RecursiveMode::NonRecursive)
    } else {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    }
}

enum Watching {
    Events(RecommendedWatcher),
    Poll(PollWatcher),
    /// No watcher could be started: rescans alone.
    None,
}

impl Watching {
    fn watch(&mut self, root: &Path, mode: RecursiveMode) -> notify::Result<()> {
        match self {
            Watching::Events(w) => w.watch(root, mode),
            Watching::Poll(w) => w.watch(root, mode),
            Watching::None => Ok(()),
        }
    }
}

/// Keeps filesystem watches on the readers' folders; every event becomes a wake-up. A folder
/// that does not exist yet is watched once it does (`retry`); until then rescans find its files.
pub struct FsWatch {
    watching: Watching,
    waiting: Vec<(PathBuf, RecursiveMode)>,
}

impl FsWatch {
    /// Watches what `p`'s readers follow; `wake` is called on any change.
    pub fn start(
        p: &Pipeline,
        spec: &DaemonSpec,
        wake: impl Fn() + Send + Clone + 'static,
    ) -> FsWatch {
        let roots: Vec<(PathBuf, RecursiveMode)> = p
            .stages
            .iter()
            .filter_map(|s| {
                // Only readers name input paths; every other stage's paths are outputs.
                let StageKind::Reader(r) = &s.kind else {
                    return None;
                };
                Some(r.paths.iter().map(|e| watch_roots(e)))
            })
            .flatten()
            .collect();
        let handler = move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                wake();
            }
        };
        let watching = match spec.watch {
            WatchMode::Auto => {
                match RecommendedWatcher::new(handler.clone(), notify::Config::default()) {
                    Ok(w) => Watching::Events(w),
                    Err(e) => {
                        tracing::warn!("filesystem events unavailable ({e}); polling instead");
                        poller(handler, spec)
                    }
                }
            }
            WatchMode::Poll => poller(handler, spec),
        };
        let mut w = FsWatch {
            watching,
            waiting: roots,
        };
        w.retry();
        for (root, _) in &w.waiting {
            tracing::info!(
                "{} does not exist yet: it is watched once it does, and rescanned meanwhile",
                root.display()
            );
        }
        w
    }

    /// Watches the folders that were missing, if they exist now.
    pub fn retry(&mut self) {
        let watching = &mut self.watching;
        self.waiting.retain(|(root, mode)| {
            if !root.exists() {
                return true;
            }
            if let Err(e) = watching.watch(root, *mode) {
                // The rescan still finds files there.
                tracing::warn!(
                    "cannot watch {}: {e}; relying on rescans every poll_secs",
                    root.display()
                );
            }
            false
        });
    }
}

fn poller(handler: impl notify::EventHandler + Clone, spec: &DaemonSpec) -> Watching {
    let config = notify::Config::default().with_poll_interval(spec.poll);
    match PollWatcher::new(handler, config) {
        Ok(w) => Watching::Poll(w),
        Err(e) => {
            tracing::warn!("cannot start a polling watcher ({e}); relying on rescans");
            Watching::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_roots_are_their_literal_folders() {
        assert_eq!(
            watch_roots("in/day/*.csv.gz"),
            (PathBuf::from("in/day"), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_roots("in/*/orders.csv"),
            (PathBuf::from("in"), RecursiveMode::Recursive)
        );
        assert_eq!(
            watch_roots("*.csv"),
            (PathBuf::from("."), RecursiveMode::NonRecursive)
        );
        assert_eq!(
            watch_roots("/no/such/file.csv"),
            (PathBuf::from("/no/such"), RecursiveMode::NonRecursive)
        );
    }

    fn pipeline(dir: &Path, daemon: &str) -> (Pipeline, DaemonSpec) {
        let text = format!(
            "[readers.orders]\npath = \"{}/*.csv\"\n[aggregators.stats]\ninputs = [\"orders\"]\n\
             [sinks.tables]\ninputs = [\"stats\"]\npath = \"out\"\n[daemon]\nstate = \"st\"\n{daemon}\n",
            dir.display()
        );
        let p = crate::config::load("t.toml", &text, &[]).unwrap();
        let spec = p.daemon.clone().unwrap();
        (p, spec)
    }

    fn names(ready: &[Ready]) -> Vec<String> {
        ready
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn settle_waits_for_quiet_files_and_hands_each_on_once() {
        let d = tempfile::tempdir().unwrap();
        let (p, spec) = pipeline(d.path(), "complete = \"settle\"\nsettle_secs = 5");
        let (old, fresh) = (d.path().join("old.csv"), d.path().join("fresh.csv"));
        std::fs::write(&old, "a\n1\n").unwrap();
        std::fs::write(&fresh, "a\n2\n").unwrap();
        age(&old, 60);
        let mut t = Tracker::default();
        let mut settling = None;
        assert_eq!(names(&t.scan(&p, &spec, &mut settling)), ["old.csv"]);
        // The fresh one is due in about the settle time.
        let wait = settling.unwrap();
        assert!(
            wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        // Handed on once; nothing new while nothing changes.
        assert!(t.scan(&p, &spec, &mut None).is_empty());
        // Quiet now, and unchanged since the last look: complete.
        age(&fresh, 60);
        assert!(
            t.scan(&p, &spec, &mut None).is_empty(),
            "changed since the last look"
        );
        assert_eq!(names(&t.scan(&p, &spec, &mut None)), ["fresh.csv"]);
        // Appended to: looked at again once quiet.
        std::fs::write(&old, "a\n1\n3\n").unwrap();
        assert!(t.scan(&p, &spec, &mut None).is_empty());
        age(&old, 60);
        t.scan(&p, &spec, &mut None);
        let again = t.scan(&p, &spec, &mut None);
        assert_eq!(names(&again), ["old.csv"]);
        assert_eq!(again[0].fingerprint.size, 6);
    }

    #[test]
    fn marker_and_rename_conventions() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.csv");
        std::fs::write(&f, "a\n1\n").unwrap();
        let (p, spec) = pipeline(d.path(), "complete = \"marker\"");
        let mut t = Tracker::default();
        assert!(t.scan(&p, &spec, &mut None).is_empty());
        std::fs::write(marker_of(&f), "").unwrap();
        assert_eq!(names(&t.scan(&p, &spec, &mut None)), ["a.csv"]);

        let (p, spec) = pipeline(d.path(), "complete = \"rename\"");
        let mut t = Tracker::default();
        std::fs::write(d.path().join("empty.csv"), "").unwrap();
        std::fs::write(d.path().join(".hidden.csv"), "a\n1\n").unwrap();
        // An empty file is one being created; a hidden one is being written under a temp name.
        assert_eq!(names(&t.scan(&p, &spec, &mut None)), ["a.csv"]);
    }

    #[test]
    fn the_fingerprint_follows_content_not_name() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.csv"), d.path().join("b.csv"));
        std::fs::write(&a, "h\n1\n").unwrap();
        let fa = fingerprint(&a).unwrap();
        std::fs::rename(&a, &b).unwrap();
        assert_eq!(fingerprint(&b).unwrap(), fa);
        std::fs::write(&b, "h\n2\n").unwrap();
        assert_ne!(fingerprint(&b).unwrap(), fa);
        assert_eq!(fa.size, 4);
    }
}
