//! The daemon's state folder: the registry of files and the aggregate state, committed together
//! as one versioned document.
//!
//! A commit writes the new document to `state.tmp` and fsyncs it, hard-links the current
//! `state` to `state.bak` (through a temporary name, so `state.bak` too is always whole), renames
//! `state.tmp` over `state` and fsyncs the folder. Each rename is atomic, so at every instant
//! `state` is either the old document or the new one, never a mix, and `state.bak` holds the one
//! before. The file carries a magic number, its length and a CRC-32, so an empty, truncated or
//! damaged file is recognised as such: the daemon then falls back to the backup, and if that is
//! unusable too it stops with both reasons rather than start from zero.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aggregators::AggSnapshot;

const STATE: &str = "state";
const BACKUP: &str = "state.bak";
const TEMP: &str = "state.tmp";
const BACKUP_TEMP: &str = "state.bak.tmp";
const LOCK: &str = "lock";
const MAGIC: &[u8; 8] = b"SWEEPST\x01";
/// The document layout; bumped when `StateDoc` changes incompatibly.
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;

/// Test hook: sleep this many milliseconds between the steps of a commit and after it, so a crash
/// test can kill the process in the middle of one, or between a commit and the publishing of the
/// parts it names. Never set in production.
pub const COMMIT_PAUSE_ENV: &str = "SWEEP_TEST_COMMIT_PAUSE_MS";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{dir}: another sweep daemon is using this state folder (it holds {dir}/lock)",
        dir = .0.display()
    )]
    Locked(PathBuf),
    #[error(
        "{dir}: the state is unusable ({state}) and so is its backup ({backup}); nothing was \
         started. Restore the folder from a copy, or move it away to start again from zero",
        dir = .dir.display()
    )]
    Unusable {
        dir: PathBuf,
        state: String,
        backup: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a file's content is known by: a hash of its first bytes plus its size. A renamed file
/// keeps it; a rewritten or grown one does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub head: u128,
    pub size: u64,
}

impl Fingerprint {
    /// The fingerprint as a name: `<head as 32 hex digits>-<size>`. It is a NATS message id, a
    /// key-value key and a file name alike (no `:`, `.` or `/`).
    pub fn key(&self) -> String {
        format!("{:032x}-{}", self.head, self.size)
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}:{}", self.head, self.size)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStatus {
    /// Its rows are in the aggregate state and its parts are written.
    Ingested,
    /// It could not be read; nothing of it is in the state.
    Failed {
        reason: String,
        /// Where it was moved, under `bad_files = "quarantine"`.
        quarantined: Option<String>,
    },
    /// New content under the name of a file already ingested, left out under
    /// `changed_files = "skip"`.
    Changed { previous_seq: u64 },
}

impl FileStatus {
    pub fn label(&self) -> &'static str {
        match self {
            FileStatus::Ingested => "ingested",
            FileStatus::Failed { .. } => "failed",
            FileStatus::Changed { .. } => "changed",
        }
    }
}

/// Rows of one file, reconciled as in a batch run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub read: u64,
    pub kept: u64,
    pub filtered_out: u64,
    pub rejected: u64,
}

/// One file the daemon has dealt with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Order of handling; parts are named by it.
    pub seq: u64,
    pub reader: String,
    pub path: String,
    pub fingerprint: Fingerprint,
    pub status: FileStatus,
    pub rows: RowCounts,
    /// When the file became complete, and when its rows were committed (Unix milliseconds).
    pub completed_at_ms: u64,
    pub committed_at_ms: u64,
    /// Output parts written from this file, by their published paths.
    pub parts: Vec<String>,
    /// Other paths the same content was found under (renamed or copied), so that new content
    /// under one of those names is noticed as a change too.
    pub also_seen_as: Vec<String>,
}

/// Everything committed at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateDoc {
    /// Commits so far; 0 for a state never committed.
    pub version: u64,
    pub pipeline: String,
    /// Digest of what shapes the aggregates (readers' columns, filters, aggregators): a state
    /// is only ever extended by the pipeline that made it.
    pub digest: String,
    pub committed_at_ms: u64,
    pub next_seq: u64,
    pub files: Vec<FileEntry>,
    /// Aggregator name → its state.
    pub aggregates: BTreeMap<String, AggSnapshot>,
}

impl StateDoc {
    pub fn new(pipeline: &str, digest: &str) -> Self {
        StateDoc {
            version: 0,
            pipeline: pipeline.to_string(),
            digest: digest.to_string(),
            committed_at_ms: 0,
            next_seq: 1,
            files: Vec::new(),
            aggregates: BTreeMap::new(),
        }
    }
}

fn encode(doc: &StateDoc) -> Result<Vec<u8>, String> {
    let payload = postcard::to_stdvec(doc).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The document in `bytes`, or why there is none.
fn decode(bytes: &[u8]) -> Result<StateDoc, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a sweep state file (bad header)".into());
    }
    let word = |at: usize, n: usize| -> u64 {
        bytes[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    let format = word(8, 4);
    if format != u64::from(FORMAT) {
        return Err(format!(
            "state format {format}, but this sweep reads format {FORMAT}"
        ));
    }
    let len = word(12, 8);
    let crc = word(20, 4) as u32;
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "truncated: {} of {len} payload bytes",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch: the file is damaged".into());
    }
    postcard::from_bytes(payload).map_err(|e| format!("cannot decode: {e}"))
}

fn fsync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// The open state folder. Holds an exclusive lock on it for the daemon's lifetime.
pub struct StateStore {
    dir: PathBuf,
    _lock: File,
    pause: Option<Duration>,
}

/// What opening the folder found.
pub struct Opened {
    pub store: StateStore,
    /// `None`: a new folder.
    pub doc: Option<StateDoc>,
    /// Things an operator should know: a damaged state replaced by its backup, say.
    pub warnings: Vec<String>,
    /// Bytes of the state file in use.
    pub bytes: u64,
}

impl StateStore {
    pub fn open(dir: &Path) -> Result<Opened, StateError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let pause = std::env::var(COMMIT_PAUSE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        let store = StateStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            pause,
        };
        // A temp file is a commit that never happened: the renames that would publish it did not
        // run, so `state` is still whole.
        for t in [TEMP, BACKUP_TEMP] {
            let p = dir.join(t);
            if p.exists() {
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        let read = |name: &str| -> Option<Result<(StateDoc, u64), String>> {
            match fs::read(dir.join(name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => Some(Err(e.to_string())),
                Ok(b) => Some(decode(&b).map(|d| (d, b.len() as u64))),
            }
        };
        let mut warnings = Vec::new();
        let (doc, bytes) = match (read(STATE), read(BACKUP)) {
            (None, None) => (None, 0),
            (Some(Ok((d, n))), _) => (Some(d), n),
            (state, backup) => {
                let why = match &state {
                    None => "it is missing".to_string(),
                    Some(Err(e)) => e.clone(),
                    Some(Ok(_)) => unreachable!("handled above"),
                };
                match backup {
                    Some(Ok((d, n))) => {
                        warnings.push(format!(
                            "{}: the state is unusable ({why}); continuing from the backup, \
                             version {}. Files committed after it are ingested again",
                            dir.join(STATE).display(),
                            d.version
                        ));
                        // Kept for inspection, and out of the way: the next commit would link
                        // the damaged file over the good backup.
                        if state.is_some() {
                            let aside = dir.join(format!(
                                "state.damaged-{}",
                                chrono::Utc::now().format("%Y%m%dT%H%M%S")
                            ));
                            fs::rename(dir.join(STATE), &aside)
                                .map_err(io_err(&dir.join(STATE)))?;
                        }
                        (Some(d), n)
                    }
                    backup => {
                        return Err(StateError::Unusable {
                            dir: dir.to_path_buf(),
                            state: why,
                            backup: match backup {
                                None => "there is none".into(),
                                Some(Err(e)) => e,
                                Some(Ok(_)) => unreachable!("handled above"),
                            },
                        });
                    }
                }
            }
        };
        Ok(Opened {
            store,
            doc,
            warnings,
            bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pause(&self) {
        if let Some(d) = self.pause {
            std::thread::sleep(d);
        }
    }

    /// Commits `doc`: afterwards `state` is `doc` and `state.bak` the previous document.
    /// Returns the state file's size.
    pub fn commit(&self, doc: &StateDoc) -> Result<u64, StateError> {
        let bytes = encode(doc).map_err(|e| StateError::Io {
            path: self.dir.join(STATE),
            source: io::Error::other(e),
        })?;
        let (state, temp) = (self.dir.join(STATE), self.dir.join(TEMP));
        {
            let mut f = File::create(&temp).map_err(io_err(&temp))?;
            f.write_all(&bytes).map_err(io_err(&temp))?;
            f.sync_all().map_err(io_err(&temp))?;
        }
        self.pause();
        if state.exists() {
            let (bak, bak_temp) = (self.dir.join(BACKUP), self.dir.join(BACKUP_TEMP));
            let _ = fs::remove_file(&bak_temp);
            if fs::hard_link(&state, &bak_temp).is_err() {
                // Filesystems without hard links get a copy, synced before it is published.
                fs::copy(&state, &bak_temp).map_err(io_err(&bak_temp))?;
                File::open(&bak_temp)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err(&bak_temp))?;
            }
            fs::rename(&bak_temp, &bak).map_err(io_err(&bak))?;
        }
        self.pause();
        fs::rename(&temp, &state).map_err(io_err(&state))?;
        fsync_dir(&self.dir)?;
        // Committed, but the caller has yet to publish the parts it names.
        self.pause();
        Ok(bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: u64) -> StateDoc {
        let mut d = StateDoc::new("p", "digest");
        d.version = version;
        d.files.push(FileEntry {
            seq: 1,
            reader: "orders".into(),
            path: "in/a.csv".into(),
            fingerprint: Fingerprint {
                head: u128::MAX - 5,
                size: 1 << 40,
            },
            status: FileStatus::Failed {
                reason: "bad gzip".into(),
                quarantined: None,
            },
            rows: RowCounts {
                read: 10,
                kept: 4,
                filtered_out: 5,
                rejected: 1,
            },
            completed_at_ms: 1,
            committed_at_ms: 2,
            parts: vec!["out/a.parts/000001-a.csv".into()],
            also_seen_as: vec!["in/b.csv".into()],
        });
        d
    }

    #[test]
    fn commits_round_trip_and_keep_the_previous_as_backup() {
        let dir = tempfile::tempdir().unwrap();
        let o = StateStore::open(dir.path()).unwrap();
        assert!(o.doc.is_none() && o.warnings.is_empty());
        o.store.commit(&doc(1)).unwrap();
        let n = o.store.commit(&doc(2)).unwrap();
        assert_eq!(n, fs::metadata(dir.path().join(STATE)).unwrap().len());
        drop(o);
        let again = StateStore::open(dir.path()).unwrap();
        assert_eq!(again.doc, Some(doc(2)));
        let bak = decode(&fs::read(dir.path().join(BACKUP)).unwrap()).unwrap();
        assert_eq!(bak, doc(1));
    }

    #[test]
    fn a_second_daemon_on_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        let err = StateStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, StateError::Locked(_)), "{err}");
    }

    #[test]
    fn a_damaged_state_falls_back_to_the_backup_and_is_set_aside() {
        for damage in [
            Vec::new(),
            b"SWEEPST\x01garbage".to_vec(),
            // A byte flipped in the payload, which only the checksum notices.
            {
                let mut b = encode(&doc(2)).unwrap();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            },
            // Cut short.
            encode(&doc(2)).unwrap()[..40].to_vec(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            {
                let o = StateStore::open(dir.path()).unwrap();
                o.store.commit(&doc(1)).unwrap();
                o.store.commit(&doc(2)).unwrap();
            }
            fs::write(dir.path().join(STATE), &damage).unwrap();
            let o = StateStore::open(dir.path()).unwrap();
            assert_eq!(o.doc, Some(doc(1)));
            assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
            assert!(
                o.warnings[0].contains("backup, version 1"),
                "{:?}",
                o.warnings
            );
            // The next commit must keep the good backup's successor, not the damaged file.
            o.store.commit(&doc(3)).unwrap();
            let bak = decode(&fs::read(dir.path().join(BACKUP)).unwrap()).unwrap();
            assert_eq!(bak, doc(1));
        }
    }

    #[test]
    fn no_usable_state_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STATE), b"").unwrap();
        let err = StateStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("the file is empty"), "{err}");
        assert!(err.contains("there is none"), "{err}");
        fs::write(dir.path().join(BACKUP), b"xx").unwrap();
        let err = StateStore::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("bad header"), "{err}");
    }

    #[test]
    fn an_interrupted_commit_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let o = StateStore::open(dir.path()).unwrap();
            o.store.commit(&doc(1)).unwrap();
        }
        // As a crash after writing the temp file, before any rename.
        fs::write(dir.path().join(TEMP), encode(&doc(2)).unwrap()).unwrap();
        fs::write(dir.path().join(BACKUP_TEMP), b"partial").unwrap();
        let o = StateStore::open(dir.path()).unwrap();
        assert_eq!(o.doc, Some(doc(1)));
        assert!(!dir.path().join(TEMP).exists());
    }
}
