//! The rows sink as an actor: writes kept rows through a [`RowWriter`] in file order.
//!
//! Parallel parse and filter workers finish batches out of order. The sink puts them back in
//! order with a small reorder buffer keyed by (reader, sequence number) and publishes the next
//! number it needs; readers wait on that (`OrderGates`) to stay within a fixed window, which
//! bounds the buffer without ever holding an edge credit (holding credits here could starve the
//! very batch the buffer waits for).

use std::collections::BTreeMap;

use actix::prelude::*;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use tokio::sync::watch;

use super::sort::{SortKey, Sorter};
use super::writer::{RowWriter, RowsError, RowsWritten};
use crate::batch::Batch;
use crate::config::RowSinkSpec;
use crate::flow::edge::Envelope;
use crate::flow::{ErrorKind, Inbox, Outlets, ReportGuard, StageCtx, Start, Wiring};
use crate::schema;
use crate::sinks::format::PartitionKey;

impl Start for RowSinkSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, _: Outlets) -> Inbox {
        let readers = w
            .upstream_readers
            .get(ctx.index)
            .cloned()
            .unwrap_or_default();
        let mut gates: Vec<Option<watch::Sender<u64>>> =
            vec![None; readers.iter().max().map_or(0, |m| m + 1)];
        for r in readers {
            gates[r] = Some(w.gate_on(r));
        }
        let (spec, report) = (self.clone(), w.reports.clone());
        let addr = SyncArbiter::start(1, move || RowSinkWorker {
            report: ReportGuard::new(&ctx, spec.path.clone(), report.clone()),
            spec: spec.clone(),
            writer: None,
            sorter: None,
            pending: BTreeMap::new(),
            next: vec![0; gates.len()],
            gates: gates.clone(),
            ctx: ctx.clone(),
            failed: None,
        });
        Inbox::Rows(addr.recipient())
    }
}

struct RowSinkWorker {
    spec: RowSinkSpec,
    writer: Option<RowWriter>,
    /// With `sort = true`: the rows, until the input ends.
    sorter: Option<Sorter>,
    /// Batches waiting for an earlier sequence number, by (reader stage, seq).
    pending: BTreeMap<(usize, u64), RecordBatch>,
    /// Next sequence number to write, per reader stage index.
    next: Vec<u64>,
    /// Where the next numbers are published, per reader stage index.
    gates: Vec<Option<watch::Sender<u64>>>,
    ctx: StageCtx,
    report: ReportGuard,
    failed: Option<String>,
}

impl RowSinkWorker {
    fn project(&self, rows: &RecordBatch) -> Result<RecordBatch, String> {
        let Some(cols) = &self.spec.columns else {
            return Ok(rows.clone());
        };
        let schema = rows.schema();
        let idx: Result<Vec<usize>, String> = cols
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| {
                    format!("sink `{}`: column `{c}` is not in its input", self.ctx.name)
                })
            })
            .collect();
        rows.project(&idx?).map_err(|e| e.to_string())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), String> {
        let rows = self.project(rows)?;
        if self.writer.is_none() {
            // Sorted rows come partition by partition (the date leads the sort key), so one
            // file open at a time is enough; each open Parquet file would hold a row group.
            let spec = RowSinkSpec {
                max_open_files: if self.spec.sort.is_some() {
                    1
                } else {
                    self.spec.max_open_files
                },
                ..self.spec.clone()
            };
            self.writer = Some(RowWriter::create(&spec, rows.schema()).map_err(|e| e.to_string())?);
            if let Some(sort) = &self.spec.sort {
                let zone = self
                    .spec
                    .partition_by
                    .contains(&PartitionKey::Date)
                    .then_some(self.spec.zone);
                let key = SortKey::for_schema(&rows.schema(), zone).map_err(|detail| {
                    RowsError::SortColumns {
                        path: self.spec.path.clone(),
                        detail,
                    }
                    .to_string()
                })?;
                self.sorter = Some(Sorter::new(sort, key, self.spec.path.clone()));
            }
        }
        if rows.num_rows() == 0 {
            return Ok(());
        }
        if let Some(s) = self.sorter.as_mut() {
            s.push(rows).map_err(|e| e.to_string())?;
        } else if let Some(w) = self.writer.as_mut() {
            w.write(&rows).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), String> {
        for reader in 0..self.next.len() {
            while let Some(rows) = self.pending.remove(&(reader, self.next[reader])) {
                self.write(&rows)?;
                self.next[reader] += 1;
            }
            if let Some(Some(g)) = self.gates.get(reader) {
                g.send_replace(self.next[reader]);
            }
        }
        Ok(())
    }

    fn fail(&mut self, msg: String) {
        self.ctx.fail(ErrorKind::Output, msg.clone());
        self.failed = Some(msg);
        self.writer = None;
        self.sorter = None;
        self.pending.clear();
    }

    fn finish(&mut self) -> Result<RowsWritten, String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.ctx.control.aborted() {
            return Err("not written: the run failed".to_string());
        }
        // Gaps are left only by a failed run; write what remains in order.
        let rest: Vec<RecordBatch> = std::mem::take(&mut self.pending).into_values().collect();
        for rows in &rest {
            self.write(rows)?;
        }
        if self.writer.is_none() {
            // No batch arrived (no input rows, no header): write an empty file with the
            // columns we know of.
            let cols = self.spec.columns.clone().unwrap_or_default();
            let schema = if cols.is_empty() {
                std::sync::Arc::new(Schema::empty())
            } else {
                schema::arrow_schema(&cols)
            };
            self.writer = Some(RowWriter::create(&self.spec, schema).map_err(|e| e.to_string())?);
        }
        if let (Some(sorter), Some(w)) = (self.sorter.take(), self.writer.as_mut()) {
            sorter.finish(w).map_err(|e| e.to_string())?;
        }
        match self.writer.take() {
            Some(w) => w.commit().map_err(|e| e.to_string()),
            None => Ok(RowsWritten::default()),
        }
    }
}

impl Actor for RowSinkWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        let outcome = self
            .finish()
            .map(|s| format!("{} rows in {} file(s), {} bytes", s.rows, s.files, s.bytes));
        self.report.set(outcome);
    }
}

impl Handler<Envelope<Batch>> for RowSinkWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        if self.failed.is_some() {
            return;
        }
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        if !self.spec.pause_per_batch.is_zero() {
            std::thread::sleep(self.spec.pause_per_batch);
        }
        let batch = msg.item;
        let Some(job) = self.ctx.run.job(batch.job) else {
            return;
        };
        if job.reader >= self.next.len() {
            self.next.resize(job.reader + 1, 0);
        }
        let rows = batch.num_rows() as u64;
        self.pending.insert((job.reader, batch.seq), batch.rows);
        if let Err(e) = self.drain() {
            return self.fail(e);
        }
        drop(msg.credit);
        self.ctx.stats.batch(rows, rows, msg.started.elapsed());
    }
}
