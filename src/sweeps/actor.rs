//! The sweep analysis as a stage: workers fold the batches they receive into partial
//! [`SweepState`]s (`flow::fold`), orders or trades by the reader the batch's file belongs to;
//! the merged state is finished into the four tables for the tables sinks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::config::SweepsSpec;
use super::spill::{Partitioned, SpillDir, SpillError};
use super::state::SweepError;
use crate::batch::{Batch, TableSet};
use crate::flow::fold::{self, Partial};
use crate::flow::metrics::name;
use crate::flow::{ErrorKind, Inbox, Kind, Outlets, StageCtx, Start, Wiring};
use crate::schema::col;

/// A worker's rows, split into partitions, and which readers read trades.
struct Folding {
    rows: Partitioned,
    trades: Arc<HashSet<usize>>,
}

impl Partial for Folding {
    fn fold(&mut self, ctx: &StageCtx, batch: &Batch) -> Result<(), String> {
        let is_trades = ctx
            .run
            .job(batch.job)
            .is_some_and(|j| self.trades.contains(&j.reader));
        self.rows
            .add(&batch.rows, is_trades)
            .map_err(|e| format!("sweep analysis `{}`: {e}", ctx.name))
    }

    fn merge(&mut self, other: Self) {
        self.rows.merge(other.rows);
    }
}

/// Partitions for a run whose inputs are `input_bytes` on disk: enough that the states of as
/// many partitions as there are workers fit half the budget (a quarter holds rows waiting to
/// be spilled while reading, the rest is what the reduction reads and writes). Measured on
/// generated data, a partition's state at its peak (hash tables growing) is about 1.6 times
/// its share of the CSV text, which gzip holds in about a third.
fn partitions(input_bytes: u64, compressed: bool, budget: usize, workers: usize) -> usize {
    let text = if compressed {
        input_bytes.saturating_mul(7) / 2
    } else {
        input_bytes
    };
    let state = text.saturating_mul(8) / 5;
    let per_part = (budget as u64 / 2 / workers.max(1) as u64).max(1);
    state.div_ceil(per_part).clamp(1, 4096) as usize
}

/// [`partitions`] for input files given as (path, bytes on disk): compressed when any is
/// gzip, zstd or Parquet.
pub(crate) fn partitions_for<'a>(
    files: impl Iterator<Item = (&'a Path, u64)>,
    budget: usize,
    workers: usize,
) -> usize {
    let (mut bytes, mut compressed) = (0u64, false);
    for (path, size) in files {
        bytes += size;
        let n = path.to_string_lossy().to_ascii_lowercase();
        compressed |= n.ends_with(".gz") || n.ends_with(".zst") || n.ends_with(".parquet");
    }
    partitions(bytes, compressed, budget, workers)
}

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
        let jobs = ctx.run.jobs();
        let parts = self.partitions.unwrap_or_else(|| {
            partitions_for(
                jobs.iter().map(|j| (j.path.as_path(), j.file_bytes)),
                self.memory_budget,
                w.workers,
            )
        });
        let dir = self.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        // Born at their start values, so a run that never spills still shows 0.
        let labels = [
            ("component_id", ctx.name.to_string()),
            ("component_kind", Kind::SweepAnalysis.as_str().to_string()),
        ];
        let spilled = metrics::counter!(name::SPILLED_BYTES, &labels);
        spilled.increment(0);
        metrics::gauge!(name::SPILL_PARTITIONS, &labels).set(parts as f64);
        let spill = match SpillDir::create(&dir, spilled) {
            Ok(s) => s,
            Err(e) => {
                ctx.fail(
                    ErrorKind::Output,
                    format!("sweep analysis `{}`: spill folder: {e}", ctx.name),
                );
                return Inbox::None;
            }
        };
        // A quarter of the budget holds rows waiting to be spilled, shared by the workers.
        let held = (self.memory_budget / 4 / w.workers.max(1)).max(1 << 20);
        let (zone, spec, c2, threads) = (self.zone, self.clone(), ctx.clone(), w.workers);
        let capture = w.capture.clone();
        fold::start(
            w,
            ctx,
            move || Folding {
                rows: Partitioned::new(zone, parts, held, spill.clone()),
                trades: trades.clone(),
            },
            move |merged: Folding| async move {
                if let Some(capture) = capture {
                    // A map shard: the partitioned rows go to other machines to be reduced
                    // (`shard::sweeps`). The receiver outlives the run.
                    let _ = capture.send((c2.index, Box::new(merged.rows)));
                    return;
                }
                if let Some(set) = finish(&spec, &c2, merged.rows, threads).await {
                    let _ = out.tables.send(Arc::new(set)).await;
                }
            },
        )
    }
}

/// The four tables, or `None` after failing the run (a repeated event is named with both of its
/// lines).
async fn finish(
    spec: &SweepsSpec,
    ctx: &StageCtx,
    rows: Partitioned,
    threads: usize,
) -> Option<TableSet> {
    let t0 = Instant::now();
    let (order_rows, trade_rows) = rows.rows();
    let (parts, files) = rows.spilled();
    tracing::info!(
        "sweep analysis `{}`: {order_rows} order rows and {trade_rows} trade rows in {parts} \
         partition(s), {files} spill file(s)",
        ctx.name
    );
    // Reducing the partitions is CPU work that may read spill files: off the runtime's threads.
    let done = tokio::task::spawn_blocking(move || rows.finish(threads)).await;
    let tables = match done {
        Ok(Ok(t)) => t,
        Ok(Err(SpillError::Sweep(e))) => {
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
            ctx.fail(
                ErrorKind::BadRow,
                format!("sweep analysis `{}`: {e}{at}", ctx.name),
            );
            return None;
        }
        // A value the sweeps table cannot hold (a notional beyond 64 bits) is the data's doing,
        // not the spill folder's.
        Ok(Err(e @ SpillError::Table(_))) => {
            ctx.fail(
                ErrorKind::BadRow,
                format!("sweep analysis `{}`: {e}", ctx.name),
            );
            return None;
        }
        Ok(Err(e)) => {
            ctx.fail(
                ErrorKind::Output,
                format!("sweep analysis `{}`: spilling: {e}", ctx.name),
            );
            return None;
        }
        Err(e) => {
            ctx.fail(
                ErrorKind::Schema,
                format!("sweep analysis `{}`: {e}", ctx.name),
            );
            return None;
        }
    };
    let rows: u64 = tables.iter().map(|t| t.len()).sum();
    ctx.stats.batch(0, rows, t0.elapsed());
    Some(TableSet {
        stage: ctx.name.to_string(),
        rows: order_rows + trade_rows,
        tables,
    })
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
