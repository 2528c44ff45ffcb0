//! The aggregator stage: workers fold the batches they receive into partial [`AggState`]s
//! (`flow::fold`); the merged state is finished into tables for the tables sinks, or with the
//! daemon's `capture` handed over unfinished.

use std::sync::Arc;
use std::time::Instant;

use super::AggState;
use crate::batch::{Batch, TableSet};
use crate::config::AggregatorSpec;
use crate::flow::fold::{self, Partial};
use crate::flow::{Inbox, Outlets, StageCtx, Start, Wiring};

impl Partial for AggState {
    fn fold(&mut self, ctx: &StageCtx, batch: &Batch) -> Result<(), String> {
        self.update(&batch.rows)
            .map_err(|e| format!("aggregator `{}`: {e}", ctx.name))
    }

    fn merge(&mut self, other: Self) {
        AggState::merge(self, other);
    }
}

impl Start for AggregatorSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox {
        let spec = Arc::new(self.clone());
        let (capture, c2) = (w.capture.clone(), ctx.clone());
        fold::start(
            w,
            ctx,
            move || AggState::new(spec.clone()),
            move |merged: AggState| async move {
                if let Some(capture) = capture {
                    // The receiver is the daemon, which outlives the run.
                    let _ = capture.send((c2.index, Box::new(merged)));
                    return;
                }
                let t0 = Instant::now();
                let tables = merged.finish();
                c2.stats
                    .batch(0, tables.iter().map(|t| t.len()).sum(), t0.elapsed());
                let set = Arc::new(TableSet {
                    stage: c2.name.to_string(),
                    rows: merged.rows(),
                    tables,
                });
                let _ = out.tables.send(set).await;
            },
        )
    }
}
