//! The filter stage as actors: a pool of workers, each applying the predicate to the batches it
//! receives and passing the kept rows on.

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::Predicate;
use crate::batch::Batch;
use crate::config::FilterSpec;
use crate::flow::edge::{Envelope, Outlet};
use crate::flow::{ErrorKind, Inbox, Outlets, StageCtx, Start, Wiring};

impl Start for FilterSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox {
        let predicate = Predicate::new(self);
        let ordinal = w.filter_ordinal.get(&ctx.index).copied().unwrap_or(0);
        let addr = SyncArbiter::start(w.workers, move || FilterWorker {
            predicate: predicate.clone(),
            ordinal,
            ctx: ctx.clone(),
            out: out.rows.clone(),
        });
        Inbox::Rows(addr.recipient())
    }
}

/// A filter worker on a SyncArbiter thread.
struct FilterWorker {
    predicate: Predicate,
    /// This filter's position among the pipeline's filters, for per-job counts.
    ordinal: usize,
    ctx: StageCtx,
    out: Outlet<Batch>,
}

impl Actor for FilterWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Envelope<Batch>> for FilterWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        let batch = msg.item;
        let kept = match self.predicate.apply(&batch.rows) {
            Ok(k) => k,
            Err(e) => {
                return self.ctx.fail(
                    ErrorKind::Schema,
                    format!("filter `{}`: {e}", self.ctx.name),
                );
            }
        };
        let (n_in, n_out) = (batch.num_rows() as u64, kept.num_rows() as u64);
        if let Some(job) = self.ctx.run.job(batch.job)
            && let Some(c) = job.filters.get(self.ordinal)
        {
            c.kept.fetch_add(n_out, Ordering::Relaxed);
            c.dropped.fetch_add(n_in - n_out, Ordering::Relaxed);
        }
        self.ctx.stats.batch(n_in, n_out, msg.started.elapsed());
        self.ctx.stats.metrics.filtered(n_in - n_out);
        drop(msg.credit);
        // Empty batches still go on: ordered sinks count on seeing every sequence number.
        let _ = self.out.send_blocking(Batch {
            rows: kept,
            ..batch
        });
    }
}
