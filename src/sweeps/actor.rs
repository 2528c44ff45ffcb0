//! The sweep analysis as a stage: a pool of workers, each folding the batches it receives into
//! its own partial [`SweepState`], orders or trades by the reader the batch's file belongs to.
//! When the inputs end, a collector merges the partials (exactly: the state merges by minimum,
//! maximum and sums) and sends the four tables on to the tables sinks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::config::SweepsSpec;
use super::state::{SweepError, SweepState};
use crate::batch::{Batch, TableSet};
use crate::flow::edge::{Envelope, Outlet};
use crate::flow::{ErrorKind, Inbox, Outlets, StageCtx, Start, Wiring};
use crate::schema::col;

impl Start for SweepsSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox {
        // A batch's role follows from its file's reader: the readers above the `trades` input
        // read trades, all others order events.
        let trades: Arc<HashSet<usize>> = Arc::new(
            w.upstream_readers
                .get(self.trades)
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default(),
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (zone, c2) = (self.zone, ctx.clone());
        let addr = SyncArbiter::start(w.workers, move || SweepWorker {
            state: Some(SweepState::new(zone)),
            trades: trades.clone(),
            ctx: c2.clone(),
            partials: tx.clone(),
        });
        let collector = actix::spawn(collect(self.clone(), ctx, rx, out.tables));
        w.finish_with(async move {
            let _ = collector.await;
        });
        Inbox::Rows(addr.recipient())
    }
}

struct SweepWorker {
    state: Option<SweepState>,
    trades: Arc<HashSet<usize>>,
    ctx: StageCtx,
    partials: UnboundedSender<SweepState>,
}

impl Actor for SweepWorker {
    type Context = SyncContext<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(s) = self.state.take() {
            // The collector only goes away when the run is being torn down.
            let _ = self.partials.send(s);
        }
    }
}

impl Handler<Envelope<Batch>> for SweepWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<Batch>, _: &mut Self::Context) {
        let Some(msg) = self.ctx.open(msg) else {
            return;
        };
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let batch = &msg.item;
        let is_trades = self
            .ctx
            .run
            .job(batch.job)
            .is_some_and(|j| self.trades.contains(&j.reader));
        let folded = if is_trades {
            state.update_trades(&batch.rows)
        } else {
            state.update_orders(&batch.rows)
        };
        if let Err(e) = folded {
            return self.ctx.fail(
                ErrorKind::Schema,
                format!("sweep analysis `{}`: {e}", self.ctx.name),
            );
        }
        let rows = batch.num_rows() as u64;
        self.ctx.stats.batch(rows, 0, msg.started.elapsed());
    }
}

/// Merges the workers' partials once all have arrived, then sends the tables downstream.
async fn collect(
    spec: SweepsSpec,
    ctx: StageCtx,
    mut partials: UnboundedReceiver<SweepState>,
    out: Outlet<Arc<TableSet>>,
) {
    let mut merged = SweepState::new(spec.zone);
    while let Some(p) = partials.recv().await {
        merged.merge(p);
    }
    if ctx.control.aborted() {
        return;
    }
    let t0 = Instant::now();
    let (order_rows, trade_rows) = merged.rows();
    let tables = match merged.finish() {
        Ok(t) => t,
        Err(e) => {
            let at = match &e {
                SweepError::DuplicateEvent {
                    order_id,
                    timestamp,
                    sequence,
                } => {
                    let files: Vec<PathBuf> = ctx
                        .run
                        .jobs()
                        .iter()
                        .filter(|j| j.reader != spec.trades)
                        .map(|j| j.path.clone())
                        .collect();
                    let found = tokio::task::spawn_blocking({
                        let (o, t, s) = (*order_id, *timestamp, *sequence);
                        move || locate(&files, o, t, s)
                    })
                    .await
                    .unwrap_or_default();
                    if found.is_empty() {
                        String::new()
                    } else {
                        format!(" (at {})", found.join(" and "))
                    }
                }
                _ => String::new(),
            };
            return ctx.fail(
                ErrorKind::BadRow,
                format!("sweep analysis `{}`: {e}{at}", ctx.name),
            );
        }
    };
    let rows: u64 = tables.iter().map(|t| t.rows.len() as u64).sum();
    ctx.stats.batch(0, rows, t0.elapsed());
    let set = Arc::new(TableSet {
        aggregator: ctx.name.to_string(),
        rows: order_rows + trade_rows,
        tables,
    });
    let _ = out.send(set).await;
}

/// Where the events of `order` at (`timestamp`, `sequence`) are, as `file:line`: read again,
/// only when a repeat was found, so that the message can point at both rows.
fn locate(files: &[PathBuf], order: u64, timestamp: i64, sequence: i64) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let Ok(reader) = open_text(f) else {
            continue;
        };
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let Ok(header) = csv.headers().cloned() else {
            continue;
        };
        let at = |name: &str| header.iter().position(|h| h.trim() == name);
        let (Some(i), Some(t), Some(s)) =
            (at(col::ORDER_ID), at(col::TIMESTAMP), at(col::SEQUENCE))
        else {
            continue;
        };
        let want = [
            order.to_string(),
            timestamp.to_string(),
            sequence.to_string(),
        ];
        let mut record = csv::StringRecord::new();
        while let Ok(true) = csv.read_record(&mut record) {
            let field = |k: usize| record.get(k).map(str::trim);
            if field(i) == Some(&want[0])
                && field(t) == Some(&want[1])
                && field(s) == Some(&want[2])
            {
                let line = record.position().map_or(0, |p| p.line());
                found.push(format!("{}:{line}", f.display()));
            }
        }
    }
    found
}

/// A CSV input's text, through its decompressor by extension.
fn open_text(path: &Path) -> std::io::Result<Box<dyn std::io::Read>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let name = path.to_string_lossy().to_ascii_lowercase();
    Ok(if name.ends_with(".gz") || name.ends_with(".gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}
