//! The reader stage as actors: a [`ReaderActor`] on its own arbiter reads each file (one job)
//! into blocks, and a pool of [`ParseWorker`]s (a SyncArbiter, one thread per worker) parses
//! blocks into batches in parallel. Parquet files are decoded on the blocking pool and skip the
//! parse pool. Every send goes through a bounded [`Outlet`], so reading runs at most a few
//! blocks ahead of the slowest consumer.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::watch;

use super::csv::{ParsePlan, RowError, parse_block};
use super::prune::Pushdown;
use super::source::{self, Block, BlockPool, BlockReader};
use super::{ReaderError, parquet};
use crate::batch::{Batch, JobId};
use crate::config::{InputFormat, OnError, ReaderSpec};
use crate::flow::edge::{Envelope, Outlet};
use crate::flow::stats::JobStats;
use crate::flow::{ErrorKind, Inbox, Outlets, StageCtx, Start, Wiring};
use crate::sinks::atomic::{AtomicWriter, OutputError};

impl Start for ReaderSpec {
    fn start(&self, w: &mut Wiring, ctx: StageCtx, out: Outlets) -> Inbox {
        // The build phase has checked that the rejects folder takes a file, so this fails only
        // if the file system changed since; the run then fails, and consumers see no input. A
        // shard of a sharded run writes its rejects to a folder of its own and hands them over
        // to the merge, which writes the rejects file (`shard::rejects`).
        let handover = w.shard.then(|| w.capture.clone()).flatten();
        let rejects = match (&self.rejects, self.on_error) {
            (Some(path), OnError::Reject) => {
                let local = match &handover {
                    Some(_) => match tempfile::Builder::new().prefix(".sweep-rejects-").tempdir() {
                        Ok(dir) => Some(dir),
                        Err(e) => {
                            ctx.fail(ErrorKind::Output, format!("a folder for the rejects: {e}"));
                            return Inbox::None;
                        }
                    },
                    None => None,
                };
                let at = local
                    .as_ref()
                    .map_or_else(|| path.clone(), |d| d.path().join("rejects.csv"));
                match Rejects::create(&at) {
                    Ok(r) => Some((r, local)),
                    Err(e) => {
                        ctx.fail(ErrorKind::Output, e);
                        return Inbox::None;
                    }
                }
            }
            _ => None,
        };
        let (rejects, local) = match rejects {
            Some((r, local)) => (Some(r), local),
            None => (None, None),
        };
        let pushdown = self
            .pushdown
            .iter()
            .filter_map(|(stage, _)| Some((*stage, *w.filter_ordinal.get(stage)?)))
            .collect();
        let shared = Arc::new(ReaderShared {
            prune: Pushdown::new(self.pushdown.iter().map(|(_, f)| f)),
            pushdown,
            spec: self.clone(),
            rejects,
            ctx: ctx.clone(),
            block_bytes: w.block_bytes,
            // Blocks in flight: one edge's worth plus one per parse worker.
            pool: Arc::new(BlockPool::new(w.edge_capacity + w.workers + 1)),
        });
        let (sh, rows) = (shared.clone(), out.rows.clone());
        let parse_addr = SyncArbiter::start(w.workers, move || ParseWorker {
            shared: sh.clone(),
            out: rows.clone(),
        });
        let mut parse: Outlet<RawBlock> = Outlet::new();
        parse.connect(
            w.edge(&ctx.name, &format!("{}.parse", ctx.name)),
            parse_addr.recipient(),
        );
        let gates = OrderGates {
            gates: w.gates_of(ctx.index),
            window: w.reorder_window,
        };
        let jobs = w
            .jobs
            .get_mut(ctx.index)
            .map(std::mem::take)
            .unwrap_or_default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        // The rejects are committed whatever the run's outcome: the rows they list were
        // rejected either way.
        let sh = shared.clone();
        w.finish_with(async move {
            let _ = done_rx.await;
            if let Some(rj) = &sh.rejects {
                match rj.commit() {
                    Err(e) => sh.ctx.fail(ErrorKind::Output, e),
                    Ok(()) => {
                        if let (Some(capture), Some(dir)) = (handover, local) {
                            let file = rj.path.clone();
                            // The receiver is the shard, which outlives the run.
                            let _ =
                                capture.send((sh.ctx.index, Box::new(HandedRejects { dir, file })));
                        }
                    }
                }
            }
        });
        ReaderActor::start_in_arbiter(&w.arbiter(), move |_| {
            ReaderActor::new(shared, jobs, parse, out.rows, gates, done_tx)
        });
        Inbox::None
    }
}

/// A block on its way to a parse worker.
#[derive(Clone)]
struct RawBlock {
    job: JobId,
    seq: u64,
    plan: Arc<ParsePlan>,
    block: Arc<Block>,
}

/// A shard's rejected rows, for the merge to write into the rejects file: the rejects file as
/// the reader wrote it, in a temporary folder removed when this is dropped.
pub struct HandedRejects {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

/// The columns of a rejects file, in order.
pub(crate) const REJECTS_HEADER: [&str; 5] = ["file", "line", "column", "reason", "row"];

/// The rejects file of a reader with `on_error = "reject"` (and of a sharded run's merge).
pub(crate) struct Rejects {
    path: PathBuf,
    out: Mutex<Option<csv::Writer<AtomicWriter>>>,
}

impl Rejects {
    pub(crate) fn create(path: &Path) -> Result<Self, OutputError> {
        let file = AtomicWriter::create(path)?;
        let mut w = csv::Writer::from_writer(file);
        w.write_record(REJECTS_HEADER)
            .map_err(|e| OutputError::new(path, e.into()))?;
        Ok(Rejects {
            path: path.to_path_buf(),
            out: Mutex::new(Some(w)),
        })
    }

    fn write(&self, file: &str, errors: &[RowError]) -> Result<(), ReaderError> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = guard.as_mut() else {
            return Ok(());
        };
        for e in errors {
            let column = e
                .column
                .as_ref()
                .map(|(n, name)| format!("{n}:{name}"))
                .unwrap_or_default();
            w.write_record([file, &e.line.to_string(), &column, &e.reason, &e.raw])
                .map_err(|err| ReaderError::Rejects {
                    path: self.path.clone(),
                    source: err.into(),
                })?;
        }
        Ok(())
    }

    /// Appends one rejected row as a shard recorded it (the columns of [`REJECTS_HEADER`]).
    pub(crate) fn write_record(&self, record: &[&str; 5]) -> Result<(), OutputError> {
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(w) => w
                .write_record(record)
                .map_err(|e| OutputError::new(&self.path, e.into())),
            None => Ok(()),
        }
    }

    /// Makes the rejects file visible. Called whatever the run's outcome: the rows it lists were
    /// rejected either way.
    pub(crate) fn commit(&self) -> Result<(), OutputError> {
        let taken = self.out.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(w) = taken else { return Ok(()) };
        let file = w
            .into_inner()
            .map_err(|e| OutputError::new(&self.path, std::io::Error::other(e.to_string())))?;
        file.commit()
    }
}

/// What the reader stage shares between its actor and its parse workers.
struct ReaderShared {
    spec: ReaderSpec,
    prune: Pushdown,
    /// The pushdown's filters: stage index and filter ordinal, where the rows a Parquet scan
    /// skips are counted as filtered out.
    pushdown: Vec<(usize, usize)>,
    rejects: Option<Rejects>,
    ctx: StageCtx,
    block_bytes: usize,
    pool: Arc<BlockPool>,
}

impl ReaderShared {
    /// Applies the bad-row policy. `Err` carries the message that fails the job.
    fn row_errors(&self, job: &JobStats, errors: &[RowError]) -> Result<(), String> {
        if errors.is_empty() {
            return Ok(());
        }
        let file = job.path.display().to_string();
        match (&self.spec.on_error, &self.rejects) {
            (OnError::Reject, Some(r)) => {
                job.rejected
                    .fetch_add(errors.len() as u64, Ordering::Relaxed);
                self.ctx.stats.metrics.rejected(errors.len() as u64);
                r.write(&file, errors).map_err(|e| e.to_string())
            }
            _ => Err(errors[0].locate(&file)),
        }
    }

    fn fail(&self, job: &JobStats, kind: ErrorKind, msg: String) {
        job.fail(msg.clone());
        self.ctx.fail(kind, msg);
    }
}

/// Parses blocks; runs on a SyncArbiter thread.
struct ParseWorker {
    shared: Arc<ReaderShared>,
    out: Outlet<Batch>,
}

impl Actor for ParseWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Envelope<RawBlock>> for ParseWorker {
    type Result = ();

    fn handle(&mut self, msg: Envelope<RawBlock>, _: &mut Self::Context) {
        let t0 = Instant::now();
        let RawBlock {
            job,
            seq,
            plan,
            block,
        } = msg.item;
        let sh = &self.shared;
        let Some(stats) = sh.ctx.run.job(job) else {
            return;
        };
        if sh.ctx.control.aborted() {
            return;
        }
        let stop_first = sh.spec.on_error == OnError::Fail;
        let parsed = match parse_block(&plan, &block.bytes, block.first_line, stop_first) {
            Ok(p) => p,
            Err(e) => return sh.fail(&stats, ErrorKind::Parse, e.to_string()),
        };
        // This worker holds the only reference now: hand the buffer back for the next block.
        if let Ok(b) = Arc::try_unwrap(block) {
            sh.pool.give(b.bytes);
        }
        stats
            .rows_read
            .fetch_add(parsed.rows_read, Ordering::Relaxed);
        if let Err(msg) = sh.row_errors(&stats, &parsed.errors) {
            return sh.fail(&stats, ErrorKind::BadRow, msg);
        }
        let rows = parsed.batch.num_rows() as u64;
        sh.ctx.stats.batch(parsed.rows_read, rows, t0.elapsed());
        // Free the edge slot before waiting on the next one, so a full downstream edge cannot
        // hold this block's credit too.
        drop(msg.credit);
        if self
            .out
            .send_blocking(Batch {
                job,
                seq,
                rows: parsed.batch,
            })
            .is_err()
        {
            return;
        }
        stats.blocks_parsed.fetch_add(1, Ordering::AcqRel);
        stats.maybe_finish();
    }
}

/// Ordered sinks downstream publish the next sequence number they need; the reader stays at
/// most `window` batches ahead of the slowest, so their reorder buffers stay bounded.
#[derive(Clone)]
struct OrderGates {
    gates: Vec<watch::Receiver<u64>>,
    window: u64,
}

impl OrderGates {
    async fn wait(&mut self, seq: u64) {
        let window = self.window;
        for g in &mut self.gates {
            // An error means the sink has gone: nothing left to wait for.
            let _ = g.wait_for(|next| seq < next.saturating_add(window)).await;
        }
    }
}

/// Reads the jobs of one reader stage, one file after another.
struct ReaderActor {
    task: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl ReaderActor {
    fn new(
        shared: Arc<ReaderShared>,
        jobs: Vec<Arc<JobStats>>,
        parse: Outlet<RawBlock>,
        out: Outlet<Batch>,
        gates: OrderGates,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Self {
        let task = async move {
            read_all(shared, jobs, parse, out, gates).await;
            let _ = done.send(());
        };
        ReaderActor {
            task: Some(Box::pin(task)),
        }
    }
}

impl Actor for ReaderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(task) = self.task.take() {
            ctx.wait(actix::fut::wrap_future(task).map(|_, _, ctx: &mut Context<Self>| ctx.stop()));
        }
    }
}

/// Whether `path` is read as Parquet under this reader's `format`.
pub(crate) fn is_parquet(spec: &ReaderSpec, path: &Path) -> bool {
    match spec.format {
        InputFormat::Parquet => true,
        InputFormat::Csv => false,
        InputFormat::Auto => parquet::looks_like_parquet(path),
    }
}

async fn read_all(
    shared: Arc<ReaderShared>,
    jobs: Vec<Arc<JobStats>>,
    parse: Outlet<RawBlock>,
    out: Outlet<Batch>,
    mut gates: OrderGates,
) {
    let mut seq = 0u64;
    for job in jobs {
        if shared.ctx.control.aborted() {
            break;
        }
        job.start();
        tracing::debug!(file = %job.path.display(), "reading");
        let result = if is_parquet(&shared.spec, &job.path) {
            read_parquet(&shared, &job, &out, &mut gates, &mut seq).await
        } else {
            read_csv(&shared, &job, &parse, &out, &mut gates, &mut seq).await
        };
        match result {
            Ok(()) => {
                job.reading_done.store(true, Ordering::Release);
                job.maybe_finish();
            }
            Err(e) => {
                let kind = match &e {
                    ReaderError::Row(_) => ErrorKind::BadRow,
                    ReaderError::MissingColumn { .. }
                    | ReaderError::DuplicateColumn { .. }
                    | ReaderError::ParquetType { .. }
                    | ReaderError::Header { .. } => ErrorKind::Schema,
                    _ => ErrorKind::Io,
                };
                shared.fail(&job, kind, e.to_string());
                break;
            }
        }
    }
}

async fn read_csv(
    sh: &ReaderShared,
    job: &JobStats,
    parse: &Outlet<RawBlock>,
    out: &Outlet<Batch>,
    gates: &mut OrderGates,
    seq: &mut u64,
) -> Result<(), ReaderError> {
    let file: Arc<str> = job.path.display().to_string().into();
    if job.file_bytes == 0 && !job.stream {
        // An empty file has no header and no rows; compressed or not, there is nothing to read.
        return Ok(());
    }
    let opened = source::open(&job.path, sh.spec.compression).await?;
    let compressed = opened.compressed_read.clone();
    let mut blocks =
        BlockReader::new(opened.src, sh.block_bytes, sh.spec.delimiter).with_pool(sh.pool.clone());
    // Where the error surfaced: the line the block being read starts on and, for a compressed
    // input, how far into the file the decompressor had got (read when the error happens).
    let io = |line: u64| {
        let file = file.to_string();
        let compressed = compressed.clone();
        move |e: std::io::Error| ReaderError::Io {
            file,
            line,
            compressed_at: compressed.map(|c| c.load(Ordering::Relaxed)),
            source: e,
        }
    };
    let Some(header) = blocks.header().await.map_err(io(1))? else {
        return Ok(());
    };
    let plan = Arc::new(ParsePlan::new(
        file.clone(),
        &header,
        sh.spec.delimiter,
        &sh.spec.columns,
        &sh.spec.need,
    )?);
    let mut sent = 0u64;
    while !sh.ctx.control.aborted() {
        let line = blocks.line();
        let Some(block) = blocks.next_block().await.map_err(io(line))? else {
            break;
        };
        job.bytes_read.store(blocks.bytes_read, Ordering::Relaxed);
        gates.wait(*seq).await;
        job.blocks_sent.fetch_add(1, Ordering::AcqRel);
        let raw = RawBlock {
            job: job.id,
            seq: *seq,
            plan: plan.clone(),
            block: Arc::new(block),
        };
        *seq += 1;
        sent += 1;
        if parse.send(raw).await.is_err() {
            break;
        }
    }
    if sent == 0 {
        // A header-only file still tells sinks its columns.
        gates.wait(*seq).await;
        let empty = arrow_array::RecordBatch::new_empty(plan.schema.clone());
        let _ = out
            .send(Batch {
                job: job.id,
                seq: *seq,
                rows: empty,
            })
            .await;
        *seq += 1;
    }
    Ok(())
}

async fn read_parquet(
    sh: &ReaderShared,
    job: &JobStats,
    out: &Outlet<Batch>,
    gates: &mut OrderGates,
    seq: &mut u64,
) -> Result<(), ReaderError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<parquet::ParquetBatch>(1);
    let path = job.path.clone();
    let mapping = sh.spec.columns.clone();
    let need = sh.spec.need.clone();
    let rows_per_batch = (sh.block_bytes / 128).max(1024);
    let prune = sh.prune.clone();
    let decode = tokio::task::spawn_blocking(move || {
        parquet::read(&path, &mapping, &need, rows_per_batch, &prune, |b| {
            tx.blocking_send(b).is_ok()
        })
    });
    while let Some(pb) = rx.recv().await {
        let t0 = Instant::now();
        job.rows_read.fetch_add(pb.rows_read, Ordering::Relaxed);
        job.bytes_read.fetch_add(pb.bytes, Ordering::Relaxed);
        if let Err(msg) = sh.row_errors(job, &pb.errors) {
            return Err(ReaderError::Row(msg));
        }
        sh.ctx
            .stats
            .batch(pb.rows_read, pb.batch.num_rows() as u64, t0.elapsed());
        gates.wait(*seq).await;
        let batch = Batch {
            job: job.id,
            seq: *seq,
            rows: pb.batch,
        };
        *seq += 1;
        if out.send(batch).await.is_err() || sh.ctx.control.aborted() {
            break;
        }
    }
    drop(rx);
    let scan = decode.await.map_err(|e| ReaderError::Parquet {
        file: job.path.display().to_string(),
        reason: e.to_string(),
    })??;
    // Skipped rows were read as far as the ledger goes (the footer counts them) and filtered
    // out by every filter the reader feeds: none of them could keep one.
    job.rows_read
        .fetch_add(scan.rows_skipped, Ordering::Relaxed);
    for &(stage, ordinal) in &sh.pushdown {
        if let Some(c) = job.filters.get(ordinal) {
            c.dropped.fetch_add(scan.rows_skipped, Ordering::Relaxed);
        }
        if let Some(st) = sh.ctx.run.stages.get(stage) {
            st.skipped(scan.rows_skipped);
        }
    }
    sh.ctx.stats.metrics.parquet_scan(&scan);
    job.set_scan(scan);
    Ok(())
}
