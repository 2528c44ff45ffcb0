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
use tokio::sync::watch;

use super::extract::{Extract, Handover, project};
use crate::batch::{Batch, JobId};
use crate::config::RowSinkSpec;
use crate::flow::edge::Envelope;
use crate::flow::{Capture, ErrorKind, Inbox, Outlets, ReportGuard, StageCtx, Start, Wiring};

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
        // A shard of a sharded run hands its rows over instead: the merge writes the extract.
        let handover = w.shard.then(|| w.capture.clone()).flatten();
        let addr = SyncArbiter::start(1, move || RowSinkWorker {
            report: ReportGuard::new(&ctx, spec.path.clone(), report.clone()),
            out: match &handover {
                Some(capture) => match Handover::new() {
                    Ok(h) => Out::Handover(Box::new(h), capture.clone()),
                    Err(e) => {
                        ctx.fail(ErrorKind::Output, format!("sink `{}`: {e}", ctx.name));
                        Out::Failed
                    }
                },
                None => Out::Extract(Box::new(Extract::new(&spec))),
            },
            spec: spec.clone(),
            pending: BTreeMap::new(),
            next: vec![0; gates.len()],
            gates: gates.clone(),
            ctx: ctx.clone(),
            failed: None,
        });
        Inbox::Rows(addr.recipient())
    }
}

/// Where the rows go once in order.
enum Out {
    Extract(Box<Extract>),
    Handover(Box<Handover>, Capture),
    Failed,
}

struct RowSinkWorker {
    spec: RowSinkSpec,
    out: Out,
    /// Batches waiting for an earlier sequence number, with their job, by (reader stage, seq).
    pending: BTreeMap<(usize, u64), (JobId, RecordBatch)>,
    /// Next sequence number to write, per reader stage index.
    next: Vec<u64>,
    /// Where the next numbers are published, per reader stage index.
    gates: Vec<Option<watch::Sender<u64>>>,
    ctx: StageCtx,
    report: ReportGuard,
    failed: Option<String>,
}

impl RowSinkWorker {
    fn write(&mut self, job: JobId, rows: &RecordBatch) -> Result<(), String> {
        let rows = project(&self.spec, &self.ctx.name, rows)?;
        match &mut self.out {
            Out::Extract(e) => e.write(&rows),
            Out::Handover(h, _) => h.write(job, &rows),
            Out::Failed => Ok(()),
        }
    }

    fn drain(&mut self) -> Result<(), String> {
        for reader in 0..self.next.len() {
            while let Some((job, rows)) = self.pending.remove(&(reader, self.next[reader])) {
                self.write(job, &rows)?;
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
        self.out = Out::Failed;
        self.pending.clear();
    }

    fn finish(&mut self) -> Result<String, String> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.ctx.control.aborted() {
            return Err("not written: the run failed".to_string());
        }
        // Gaps are left only by a failed run; write what remains in order.
        let rest: Vec<(JobId, RecordBatch)> =
            std::mem::take(&mut self.pending).into_values().collect();
        for (job, rows) in &rest {
            self.write(*job, rows)?;
        }
        match std::mem::replace(&mut self.out, Out::Failed) {
            Out::Extract(e) => e
                .commit()
                .map(|s| format!("{} rows in {} file(s), {} bytes", s.rows, s.files, s.bytes)),
            Out::Handover(h, capture) => {
                let handed = h.finish()?;
                let batches = handed.jobs.len();
                // The receiver is the shard, which outlives the run.
                let _ = capture.send((self.ctx.index, Box::new(handed)));
                Ok(format!("{batches} batch(es) handed over to the merge"))
            }
            Out::Failed => Err("not written: the run failed".to_string()),
        }
    }
}

impl Actor for RowSinkWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        let outcome = self.finish();
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
        self.pending
            .insert((job.reader, batch.seq), (batch.job, batch.rows));
        if let Err(e) = self.drain() {
            return self.fail(e);
        }
        drop(msg.credit);
        self.ctx.stats.batch(rows, rows, msg.started.elapsed());
    }
}
