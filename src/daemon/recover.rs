//! Recovery at start: what a kill or crash left half-done in the outputs is finished or removed,
//! so that they hold exactly what the committed registry says.

use std::path::{Path, PathBuf};

use super::{Daemon, STATUS, ingest};

impl Daemon {
    /// Removes the temporaries of outputs that a kill during a rewrite left (tables, the run
    /// report, `status.json`): this daemon owns those paths, and nothing is writing them yet.
    pub(super) fn remove_stale_temps(&self) {
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
    pub(super) fn recover_parts(&self) {
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
}
