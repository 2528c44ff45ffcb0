//! The aggregator stage as actors: a pool of [`AggWorker`]s (SyncArbiter threads), each folding
//! the batches it happens to receive into its own partial [`AggState`]. When the input ends,
//! each worker hands its partial to the stage's collector, which merges them — exactly, since
//! the states merge exactly — and sends the finished tables on to the tables sinks.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::{AggSpec, AggState, Table};
use crate::batch::Batch;
use crate::runtime::StageCtx;
use crate::runtime::edge::{Envelope, Outlet};

/// The merged result of an aggregator: what tables sinks receive.
#[derive(Debug)]
pub struct TableSet {
    pub aggregator: String,
    pub rows: u64,
    pub tables: Vec<Table>,
}

pub struct AggWorker {
    state: Option<AggState>,
    ctx: StageCtx,
    partials: UnboundedSender<AggState>,
}

impl AggWorker {
    pub fn new(spec: Arc<AggSpec>, ctx: StageCtx, partials: UnboundedSender<AggState>) -> Self {
        AggWorker {
            state: Some(AggState::new(spec)),
            ctx,
            partials,
        }
    }
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
        let t0 = Instant::now();
        let Some(state) = self.state.as_mut() else {
            return;
        };
        if self.ctx.control.aborted() {
            return;
        }
        let rows = msg.item.num_rows() as u64;
        if let Err(e) = state.update(&msg.item.rows) {
            return self
                .ctx
                .fail("schema", format!("aggregator `{}`: {e}", self.ctx.name));
        }
        self.ctx.stats.batch(rows, 0, t0.elapsed());
    }
}

/// Merges the workers' partials once all have arrived, then sends the tables downstream, or
/// with `capture` hands the merged state over unfinished.
pub async fn collect(
    spec: Arc<AggSpec>,
    ctx: StageCtx,
    mut partials: UnboundedReceiver<AggState>,
    out: Outlet<Arc<TableSet>>,
    capture: Option<UnboundedSender<(usize, AggState)>>,
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
        let _ = capture.send((ctx.index, merged));
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
