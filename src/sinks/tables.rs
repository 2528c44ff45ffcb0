//! The tables sink actor: writes an aggregator's finished tables as CSV (the standard format),
//! Parquet, and/or a JSON summary. All files are written under temporary names first and only
//! then renamed into place, so a failure leaves the previous outputs, not a mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::SinkReport;
use super::atomic::{AtomicFile, OutputError};
use crate::aggregators::actor::TableSet;
use crate::aggregators::summary_json;
use crate::config::TableFormat;
use crate::runtime::StageCtx;
use crate::runtime::edge::Envelope;

pub struct TableSinkWorker {
    pub dir: PathBuf,
    pub formats: Vec<TableFormat>,
    pub pipeline: String,
    pub ctx: StageCtx,
    pub report: tokio::sync::mpsc::UnboundedSender<SinkReport>,
    pub written: Vec<String>,
    pub error: Option<String>,
    /// Set when the actor stops; sent on drop, so a worker that dies still reports.
    pub outcome: Option<Result<String, String>>,
}

impl TableSinkWorker {
    fn write(&self, set: &TableSet) -> Result<Vec<String>, String> {
        write_tables(&self.dir, &self.formats, &self.pipeline, set)
    }
}

/// Writes one aggregator's tables into `dir` in every format, all or none: each file goes to a
/// temporary name first, and only when every one is written are they renamed into place. The
/// batch sink and the daemon's output refresh both write through here. Returns the paths.
pub fn write_tables(
    dir: &Path,
    formats: &[TableFormat],
    pipeline: &str,
    set: &TableSet,
) -> Result<Vec<String>, String> {
    let mut files: Vec<(AtomicFile, Vec<u8>)> = Vec::new();
    let stage = |name: &str,
                 bytes: Vec<u8>,
                 files: &mut Vec<(AtomicFile, Vec<u8>)>|
     -> Result<(), OutputError> {
        files.push((AtomicFile::create(dir.join(name))?, bytes));
        Ok(())
    };
    for f in formats {
        match f {
            TableFormat::Csv => {
                for t in &set.tables {
                    stage(&format!("{}.csv", t.name), t.to_csv(), &mut files)
                        .map_err(|e| e.to_string())?;
                }
            }
            TableFormat::Parquet => {
                for t in &set.tables {
                    let bytes = t.to_parquet().map_err(|e| e.to_string())?;
                    stage(&format!("{}.parquet", t.name), bytes, &mut files)
                        .map_err(|e| e.to_string())?;
                }
            }
            TableFormat::Json => {
                let extra = serde_json::json!({
                    "pipeline": pipeline,
                    "aggregator": set.aggregator,
                    "rows_aggregated": set.rows,
                });
                let doc = summary_json(&set.tables, extra);
                let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
                bytes.push(b'\n');
                stage("summary.json", bytes, &mut files).map_err(|e| e.to_string())?;
            }
        }
    }
    let mut names = Vec::new();
    for (f, _) in &files {
        names.push(f.target().display().to_string());
    }
    for (f, bytes) in &mut files {
        let target = f.target().to_path_buf();
        f.file()
            .write_all(bytes)
            .map_err(|e| OutputError::new(target, e).to_string())?;
    }
    for (f, _) in files {
        f.commit().map_err(|e| e.to_string())?;
    }
    Ok(names)
}

impl Actor for TableSinkWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.outcome = Some(match (&self.error, self.written.is_empty()) {
            (Some(e), _) => Err(e.clone()),
            (None, true) => Err("not written: the run failed".to_string()),
            (None, false) => Ok(format!("{} file(s)", self.written.len())),
        });
    }
}

impl Drop for TableSinkWorker {
    fn drop(&mut self) {
        let result = self
            .outcome
            .take()
            .unwrap_or_else(|| Err("the sink's worker stopped unexpectedly".to_string()));
        let _ = self.report.send(SinkReport {
            sink: self.ctx.name.to_string(),
            path: self.dir.clone(),
            result,
        });
    }
}

impl Handler<Envelope<Arc<TableSet>>> for TableSinkWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Arc<TableSet>>, _: &mut Self::Context) {
        let t0 = Instant::now();
        if self.ctx.control.aborted() {
            return;
        }
        match self.write(&msg.item) {
            Ok(names) => self.written.extend(names),
            Err(e) => {
                let e = format!("sink `{}`: {e}", self.ctx.name);
                self.ctx.fail("output", e.clone());
                self.error = Some(e);
            }
        }
        let rows: u64 = msg.item.tables.iter().map(|t| t.rows.len() as u64).sum();
        self.ctx.stats.batch(rows, rows, t0.elapsed());
    }
}
