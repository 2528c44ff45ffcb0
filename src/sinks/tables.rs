//! The tables sink actor: writes an aggregator's finished tables as CSV (the standard format),
//! Parquet, and/or a JSON summary. All files are written under temporary names first and only
//! then renamed into place, so a failure leaves the previous outputs, not a mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;

use super::atomic::{AtomicWriter, OutputError};
use crate::batch::TableSet;
use crate::config::{TableFormat, TableSinkSpec};
use crate::flow::edge::Envelope;
use crate::flow::{ErrorKind, Inbox, Outlets, ReportGuard, StageCtx, Start, Wiring};
use crate::table::summary_json;

impl Start for TableSinkSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, _: Outlets) -> Inbox {
        let (spec, pipeline, report) = (self.clone(), w.pipeline.clone(), w.reports.clone());
        let addr = SyncArbiter::start(1, move || TableSinkWorker {
            report: ReportGuard::new(&ctx, spec.path.clone(), report.clone()),
            dir: spec.path.clone(),
            formats: spec.formats.clone(),
            pipeline: pipeline.clone(),
            ctx: ctx.clone(),
            written: Vec::new(),
            error: None,
        });
        Inbox::Tables(addr.recipient())
    }
}

struct TableSinkWorker {
    dir: PathBuf,
    formats: Vec<TableFormat>,
    pipeline: String,
    ctx: StageCtx,
    report: ReportGuard,
    written: Vec<String>,
    error: Option<String>,
}

impl TableSinkWorker {
    fn write(&self, set: &TableSet) -> Result<Vec<String>, String> {
        write_tables(&self.dir, &self.formats, &self.pipeline, set)
    }
}

/// Writes one stage's tables into `dir` in every format, all or none: each file is streamed to
/// a temporary name first, and only when every one is written are they renamed into place. The
/// batch sink and the daemon's output refresh both write through here. Returns the paths.
pub(crate) fn write_tables(
    dir: &Path,
    formats: &[TableFormat],
    pipeline: &str,
    set: &TableSet,
) -> Result<Vec<String>, String> {
    let mut files: Vec<AtomicWriter> = Vec::new();
    fn open(files: &mut Vec<AtomicWriter>, path: PathBuf) -> Result<&mut AtomicWriter, String> {
        files.push(AtomicWriter::create(path).map_err(|e| e.to_string())?);
        files.last_mut().ok_or_else(String::new)
    }
    for f in formats {
        match f {
            TableFormat::Csv => {
                for t in &set.tables {
                    let w = open(&mut files, dir.join(format!("{}.csv", t.name)))?;
                    t.write_csv(w).map_err(|e| e.to_string())?;
                }
            }
            TableFormat::Parquet => {
                for t in &set.tables {
                    let w = open(&mut files, dir.join(format!("{}.parquet", t.name)))?;
                    t.write_parquet(w).map_err(|e| e.to_string())?;
                }
            }
            TableFormat::Json => {
                let extra = serde_json::json!({
                    "pipeline": pipeline,
                    "aggregator": set.stage,
                    "rows_aggregated": set.rows,
                });
                let doc = summary_json(&set.tables, extra);
                let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
                bytes.push(b'\n');
                let w = open(&mut files, dir.join("summary.json"))?;
                let target = w.target().to_path_buf();
                w.write_all(&bytes)
                    .map_err(|e| OutputError::new(target, e).to_string())?;
            }
        }
    }
    let names = files
        .iter()
        .map(|f| f.target().display().to_string())
        .collect();
    // Each file is synced before it is renamed into place; syncing them at once, rather than
    // one after another, costs one disk flush's latency instead of eight (most of a small
    // run's wall time).
    let results: Vec<Result<(), OutputError>> = std::thread::scope(|scope| {
        let running: Vec<_> = files
            .into_iter()
            .map(|f| scope.spawn(move || f.commit()))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for r in results {
        r.map_err(|e| e.to_string())?;
    }
    Ok(names)
}

impl Actor for TableSinkWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.report
            .set(match (&self.error, self.written.is_empty()) {
                (Some(e), _) => Err(e.clone()),
                (None, true) => Err("not written: the run failed".to_string()),
                (None, false) => Ok(format!("{} file(s)", self.written.len())),
            });
    }
}

impl Handler<Envelope<Arc<TableSet>>> for TableSinkWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Arc<TableSet>>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        match self.write(&msg.item) {
            Ok(names) => self.written.extend(names),
            Err(e) => {
                let e = format!("sink `{}`: {e}", self.ctx.name);
                self.ctx.fail(ErrorKind::Output, e.clone());
                self.error = Some(e);
            }
        }
        let rows: u64 = msg.item.tables.iter().map(|t| t.len()).sum();
        self.ctx.stats.batch(rows, rows, msg.started.elapsed());
    }
}
