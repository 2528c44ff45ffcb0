//! Stages that fold rows into a mergeable state (the aggregator, the sweep analysis): a pool of
//! workers (SyncArbiter threads), each folding the batches it happens to receive into its own
//! partial state. When the input ends, each worker hands its partial to the stage's collector,
//! which merges them (exactly, since the states merge exactly) and gives the merged state to the
//! stage's own `done`, which finishes its tables.

use std::future::Future;

use actix::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::edge::Envelope;
use super::{ErrorKind, Inbox, StageCtx, Wiring};
use crate::batch::Batch;

/// A stage's partial state.
pub(crate) trait Partial: Sized + Send + Unpin + 'static {
    /// Folds one batch in; an error fails the stage with its message.
    fn fold(&mut self, ctx: &StageCtx, batch: &Batch) -> Result<(), String>;
    /// Adds another worker's partial: the result is the state of all their rows together.
    fn merge(&mut self, other: Self);
}

/// Starts `w.workers` workers folding into states made by `new`; `done` receives the merged
/// state once every worker has stopped, unless the run has failed by then.
pub(crate) fn start<P, F, Fut>(
    w: &mut Wiring,
    ctx: StageCtx,
    new: impl Fn() -> P + Send + Sync + 'static,
    done: F,
) -> Inbox
where
    P: Partial,
    F: FnOnce(P) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let first = new();
    let c2 = ctx.clone();
    let addr = SyncArbiter::start(w.workers, move || Worker {
        state: Some(new()),
        ctx: c2.clone(),
        partials: tx.clone(),
    });
    let collector = actix::spawn(collect(first, ctx, rx, done));
    w.finish_with(async move {
        let _ = collector.await;
    });
    Inbox::Rows(addr.recipient())
}

struct Worker<P: Partial> {
    state: Option<P>,
    ctx: StageCtx,
    partials: UnboundedSender<P>,
}

impl<P: Partial> Actor for Worker<P> {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(s) = self.state.take() {
            // The collector only goes away when the run is being torn down.
            let _ = self.partials.send(s);
        }
    }
}

impl<P: Partial> Handler<Envelope<Batch>> for Worker<P> {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        let Some(state) = self.state.as_mut() else {
            return;
        };
        if let Err(e) = state.fold(&self.ctx, &msg.item) {
            return self.ctx.fail(ErrorKind::Schema, e);
        }
        let rows = msg.item.num_rows() as u64;
        self.ctx.stats.batch(rows, 0, msg.started.elapsed());
    }
}

/// Merges the workers' partials into `merged` once all have arrived, then hands it to `done`.
async fn collect<P, F, Fut>(
    mut merged: P,
    ctx: StageCtx,
    mut partials: UnboundedReceiver<P>,
    done: F,
) where
    P: Partial,
    F: FnOnce(P) -> Fut,
    Fut: Future<Output = ()>,
{
    while let Some(p) = partials.recv().await {
        merged.merge(p);
    }
    if ctx.control.aborted() {
        return;
    }
    done(merged).await;
}
