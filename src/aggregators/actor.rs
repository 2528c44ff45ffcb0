//! The aggregator stage as actors: a pool of [`AggWorker`]s (SyncArbiter threads), each folding
//! the batches it happens to receive into its own partial [`AggState`]. When the input ends,
//! each worker hands its partial to the stage's collector, which merges them — exactly, since
//! the states merge exactly — and sends the finished tables on to the tables sinks.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::AggState;
use crate::batch::{Batch, TableSet};
use crate::config::AggregatorSpec;
use crate::flow::edge::{Envelope, Outlet};
use crate::flow::{Capture, ErrorKind, Inbox, Outlets, StageCtx, Start, Wiring};

impl Start for AggregatorSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox {
        let spec = Arc::new(self.clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (s2, c2) = (spec.clone(), ctx.clone());
        let addr = SyncArbiter::start(w.workers, move || AggWorker {
            state: Some(AggState::new(s2.clone())),
            ctx: c2.clone(),
            partials: tx.clone(),
        });
        let collector = actix::spawn(collect(spec, ctx, rx, out.tables, w.capture.clone()));
        w.finish_with(async move {
            let _ = collector.await;
        });
        Inbox::Rows(addr.recipient())
    }
}

struct AggWorker {
    state: Option<AggState>,
    ctx: StageCtx,
    partials: UnboundedSender<AggState>,
}

impl Actor for AggWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(s) = self.state.take() {
            // The collector only goes away when the run is being torn down.
            let _ = self.partials.send(s);
        }
    }
}

impl Handler<Envelope<Batch>> for AggWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let rows = msg.item.num_rows() as u64;
        if let Err(e) = state.update(&msg.item.rows) {
            return self.ctx.fail(
                ErrorKind::Schema,
                format!("aggregator `{}`: {e}", self.ctx.name),
            );
        }
        self.ctx.stats.batch(rows, 0, msg.started.elapsed());
    }
}

/// Merges the workers' partials once all have arrived, then sends the tables downstream, or
/// with `capture` hands the merged state over unfinished.
async fn collect(
    spec: Arc<AggregatorSpec>,
    ctx: StageCtx,
    mut partials: UnboundedReceiver<AggState>,
    out: Outlet<Arc<TableSet>>,
    capture: Option<Capture>,
) {
    let mut merged = AggState::new(spec);
    while let Some(p) = partials.recv().await {
        merged.merge(p);
    }
    if ctx.control.aborted() {
        return;
    }
    if let Some(capture) = capture {
        // The receiver is the daemon, which outlives the run.
        let _ = capture.send((ctx.index, Box::new(merged)));
        return;
    }
    let t0 = Instant::now();
    let tables = merged.finish();
    ctx.stats.batch(
        0,
        tables.iter().map(|t| t.rows.len() as u64).sum(),
        t0.elapsed(),
    );
    let set = Arc::new(TableSet {
        aggregator: ctx.name.to_string(),
        rows: merged.rows(),
        tables,
    });
    let _ = out.send(set).await;
}
