//! Triage: complete files sorted against the committed registry, by content and by name.

use super::state::{FileEntry, FileStatus};
use super::watch::Ready;
use super::{Daemon, DaemonError, m, unix_ms};
use crate::config::ChangedFiles;

impl Daemon {
    /// Rebuilds the lookups of the registry by fingerprint and by path.
    pub(super) fn index(&mut self) {
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

    /// Sorts complete files against the registry: new content is queued; content already seen
    /// (under this name or another) is left; new content under an ingested name follows the
    /// `changed_files` policy.
    pub(super) fn triage(&mut self, ready: Vec<Ready>) -> Result<Vec<Ready>, DaemonError> {
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

    pub(super) fn entry(&self, r: &Ready, status: FileStatus) -> FileEntry {
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
}
