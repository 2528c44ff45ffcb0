//! Bounded memory for the sweep analysis: rows are split by order id into partitions, held in
//! memory while they fit the stage's budget and spilled to Arrow IPC files (LZ4) when they do
//! not; at the end each partition is reduced on its own, and the partitions' results merged.
//!
//! Partitions are by order id, not by security: a trade joins its order by id alone (its own
//! `securitycode` is not compared), so only the id puts an order and its trades together.
//!
//! Each spill writes one file per kind (`s000012-orders.arrow`), holding the columns the
//! analysis reads, one batch per partition in partition order; its footer says which: key
//! `sweep.partitions` lists the partition of each batch, `sweep.kind` the kind and
//! `sweep.partition_count` how many partitions the ids were hashed into. One file per spill
//! rather than per partition keeps the file count to the spills however many partitions there
//! are. A partition is the batches of its number across the files; whatever wrote them,
//! reducing them in any order gives the same result, which is what a later distributed run can
//! hand to other machines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::{Field, Schema, SchemaRef};

use super::state::{ORDER_COLUMNS, SweepError, SweepState, TRADE_COLUMNS};
use super::tables::{Finished, sweep_schema};
use crate::schema::{col, trade};
use crate::table::{RunError, RunWriter, Runs, Table, read_run, write_run};
use crate::time::Zone;

/// Why spilling failed: the spill folder could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow_schema::ArrowError,
    },
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the sweeps table: {0}")]
    Table(arrow_schema::ArrowError),
    #[error("a worker reducing partitions panicked")]
    Panicked,
    #[error("a spill file does not hold the batch its partition was written to")]
    Lost,
    #[error("{path}: its rows were cut into {found:?} partitions, not {expected}")]
    Partitions {
        path: PathBuf,
        found: String,
        expected: usize,
    },
}

/// The spill folder of one run: removed with everything in it when the last holder drops it,
/// whether the run succeeded or failed.
#[derive(Debug)]
pub(crate) struct SpillDir {
    dir: tempfile::TempDir,
    files: AtomicU64,
    /// Bytes written to spill files (compressed): the stage's `sweep_spilled_bytes_total`.
    bytes: metrics::Counter,
}

impl SpillDir {
    pub(crate) fn create(parent: &Path, bytes: metrics::Counter) -> Result<Arc<Self>, SpillError> {
        let dir = tempfile::Builder::new()
            .prefix(".sweep-spill-")
            .tempdir_in(parent)
            .map_err(|source| SpillError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        Ok(Arc::new(SpillDir {
            dir,
            files: AtomicU64::new(0),
            bytes,
        }))
    }

    fn next(&self, name: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("s{n:06}-{name}.arrow"))
    }

    fn wrote(&self, path: &Path) {
        self.bytes
            .increment(std::fs::metadata(path).map_or(0, |m| m.len()));
    }
}

/// One partition's batches spilled so far, as (spill file, batch index) pairs.
#[derive(Debug, Default)]
struct Part {
    spilled: Vec<(u32, u32)>,
}

/// A batch waiting to be spilled, its rows in partition order: partition `p`'s rows are
/// `starts[p]..starts[p + 1]`. Kept whole rather than as a slice per partition, whose
/// bookkeeping (an array per column per partition) would outweigh small partitions' rows.
struct Waiting {
    batch: RecordBatch,
    starts: Vec<u32>,
}

impl Waiting {
    fn part(&self, p: usize) -> Option<RecordBatch> {
        let (a, b) = (self.starts[p] as usize, self.starts[p + 1] as usize);
        (b > a).then(|| self.batch.slice(a, b - a))
    }
}

/// A worker's share of the analysis: its rows split into partitions.
pub(crate) struct Partitioned {
    zone: Zone,
    parts: Vec<Part>,
    /// Order rows and trade rows waiting to be spilled.
    waiting: [Vec<Waiting>; 2],
    /// The spill files, by the index `Part::spilled` names them with.
    files: Vec<PathBuf>,
    /// Bytes held in memory; past `budget` they are spilled.
    held: usize,
    budget: usize,
    spill: Arc<SpillDir>,
    rows: (u64, u64),
}

/// The partition of an order id: a multiplicative hash, so that ids that differ only in their
/// high digits (exchange-assigned, sequential) spread evenly.
fn partition_of(id: u64, parts: usize) -> usize {
    ((id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % parts as u64) as usize
}

impl Partitioned {
    pub(crate) fn new(zone: Zone, parts: usize, budget: usize, spill: Arc<SpillDir>) -> Self {
        Partitioned {
            zone,
            parts: (0..parts.max(1)).map(|_| Part::default()).collect(),
            waiting: [Vec::new(), Vec::new()],
            files: Vec::new(),
            held: 0,
            budget,
            spill,
            rows: (0, 0),
        }
    }

    /// Takes a batch of order events (`trades` false) or trade rows.
    pub(crate) fn add(&mut self, batch: &RecordBatch, trades: bool) -> Result<(), SpillError> {
        let (columns, id): (&[&str], &str) = if trades {
            (&TRADE_COLUMNS, trade::ORDER_ID)
        } else {
            (&ORDER_COLUMNS, col::ORDER_ID)
        };
        let file = if trades { "trades" } else { "orders" };
        // Only the columns the analysis reads are kept (a rows sink may have made the reader
        // parse more).
        let mut idx = Vec::with_capacity(columns.len());
        for c in columns {
            let Ok(i) = batch.schema().index_of(c) else {
                return Err(SweepError::MissingColumn { name: c, file }.into());
            };
            idx.push(i);
        }
        let batch = batch
            .project(&idx)
            .map_err(|e| arrow_error(Path::new(""), e))?;
        let ids = batch
            .column_by_name(id)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or(SweepError::MissingColumn { name: id, file })?;
        let n = self.parts.len();
        if trades {
            self.rows.1 += batch.num_rows() as u64;
        } else {
            self.rows.0 += batch.num_rows() as u64;
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let waiting = if n == 1 {
            Waiting {
                starts: vec![0, batch.num_rows() as u32],
                batch,
            }
        } else {
            // One take puts the rows in partition order (stable within a partition), so the
            // rows are copied once however many partitions there are.
            let of: Vec<u32> = ids
                .values()
                .iter()
                .map(|v| partition_of(*v, n) as u32)
                .collect();
            let mut starts = vec![0u32; n + 1];
            for &p in &of {
                starts[p as usize + 1] += 1;
            }
            for p in 0..n {
                starts[p + 1] += starts[p];
            }
            let mut at = starts.clone();
            let mut order = vec![0u32; of.len()];
            for (row, &p) in of.iter().enumerate() {
                order[at[p as usize] as usize] = row as u32;
                at[p as usize] += 1;
            }
            let sorted = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order))
                .map_err(|e| arrow_error(Path::new(""), e))?;
            Waiting {
                batch: sorted,
                starts,
            }
        };
        self.held += waiting.batch.get_array_memory_size();
        self.waiting[usize::from(trades)].push(waiting);
        if self.held > self.budget {
            self.spill_all()?;
        }
        Ok(())
    }

    /// Writes the rows waiting in memory to one spill file per kind, a batch per partition, and
    /// frees them.
    fn spill_all(&mut self) -> Result<(), SpillError> {
        for trades in [false, true] {
            let kind = if trades { "trades" } else { "orders" };
            let waiting = std::mem::take(&mut self.waiting[usize::from(trades)]);
            let Some(schema) = waiting.first().map(|w| w.batch.schema()) else {
                continue;
            };
            let path = self.spill.next(kind);
            let file = self.files.len() as u32;
            // Written a partition at a time, so that only one partition's copy is made at once.
            let mut out = RunWriter::create(&path, &schema)?;
            let mut written = 0u32;
            let mut of = Vec::new();
            for (p, part) in self.parts.iter_mut().enumerate() {
                let pieces: Vec<RecordBatch> = waiting.iter().filter_map(|w| w.part(p)).collect();
                if pieces.is_empty() {
                    continue;
                }
                let one = arrow_select::concat::concat_batches(&schema, pieces.iter())
                    .map_err(|e| arrow_error(&path, e))?;
                out.write(&one)?;
                part.spilled.push((file, written));
                written += 1;
                of.push(p.to_string());
            }
            let meta = [
                (KIND, kind.to_string()),
                (PARTITIONS, of.join(",")),
                (PARTITION_COUNT, self.parts.len().to_string()),
            ];
            out.finish(&meta)?;
            self.spill.wrote(&path);
            self.files.push(path);
        }
        self.held = 0;
        Ok(())
    }

    /// Takes another worker's partitions (the same count): files and rows in memory alike.
    pub(crate) fn merge(&mut self, other: Partitioned) {
        let shift = self.files.len() as u32;
        self.files.extend(other.files);
        let [orders, trades] = other.waiting;
        self.waiting[0].extend(orders);
        self.waiting[1].extend(trades);
        for (mine, theirs) in self.parts.iter_mut().zip(other.parts) {
            mine.spilled
                .extend(theirs.spilled.into_iter().map(|(f, b)| (f + shift, b)));
        }
        self.held += other.held;
        self.rows.0 += other.rows.0;
        self.rows.1 += other.rows.1;
    }

    /// Order rows and trade rows taken.
    pub(crate) fn rows(&self) -> (u64, u64) {
        self.rows
    }

    /// How many partitions, and how many spill files they were written to.
    pub(crate) fn spilled(&self) -> (usize, usize) {
        (self.parts.len(), self.files.len())
    }

    /// Reduces each partition on its own, `threads` at a time, and merges their results into the
    /// four tables ([`Partitioned::reduce_all`]).
    pub(crate) fn finish(self, threads: usize) -> Result<Vec<Table>, SpillError> {
        let (all, runs) = self.reduce_all(threads)?;
        all.into_tables(runs).map_err(SpillError::Table)
    }

    /// A map shard's rows of one kind (`trades`, else order events), handed over for other
    /// machines to reduce: every such row taken, written to `out` a batch at a time. Returns
    /// the partition of each batch written, in order: the footer that lets a reducer read only
    /// its partitions' batches. Spilled rows are copied file by file (each read once, in order);
    /// rows still in memory are written a partition at a time. Takes `&self`, so a commit that
    /// must start its file again can export again.
    pub(crate) fn export(
        &self,
        trades: bool,
        out: &mut RunWriter,
    ) -> Result<Vec<usize>, SpillError> {
        let mut of = Vec::new();
        // Which partition each spilled batch belongs to, by file then batch.
        let mut owner: Vec<Vec<usize>> = vec![Vec::new(); self.files.len()];
        for (p, part) in self.parts.iter().enumerate() {
            for &(f, b) in &part.spilled {
                let batches = &mut owner[f as usize];
                if batches.len() <= b as usize {
                    batches.resize(b as usize + 1, usize::MAX);
                }
                batches[b as usize] = p;
            }
        }
        for (path, owners) in self.files.iter().zip(&owner) {
            let reader = read_run(path)?;
            if kind_of(reader.custom_metadata())? != trades {
                continue;
            }
            for (b, batch) in reader.enumerate() {
                let batch = batch.map_err(|e| arrow_error(path, e))?;
                let p = owners.get(b).copied().filter(|&p| p != usize::MAX);
                out.write(&conform(&batch, trades).map_err(|e| arrow_error(path, e))?)?;
                of.push(p.ok_or(SpillError::Lost)?);
            }
        }
        let waiting = &self.waiting[usize::from(trades)];
        if let Some(schema) = waiting.first().map(|w| w.batch.schema()) {
            for p in 0..self.parts.len() {
                let pieces: Vec<RecordBatch> = waiting.iter().filter_map(|w| w.part(p)).collect();
                if pieces.is_empty() {
                    continue;
                }
                let one = arrow_select::concat::concat_batches(&schema, pieces.iter())
                    .and_then(|b| conform(&b, trades))
                    .map_err(|e| arrow_error(Path::new(""), e))?;
                out.write(&one)?;
                of.push(p);
            }
        }
        Ok(of)
    }

    /// The partitions `wanted` of the rows that map shards exported to `files`
    /// ([`Partitioned::export`]), ready to reduce: each partition is the batches of its number
    /// across the files, read when its turn comes. The files must have been cut into
    /// `partition_count` partitions.
    pub(crate) fn from_exports(
        zone: Zone,
        files: Vec<PathBuf>,
        partition_count: usize,
        wanted: std::ops::Range<usize>,
        spill: Arc<SpillDir>,
    ) -> Result<Self, SpillError> {
        let mut parts: Vec<Part> = wanted.clone().map(|_| Part::default()).collect();
        for (f, path) in files.iter().enumerate() {
            let reader = read_run(path)?;
            let meta = reader.custom_metadata();
            kind_of(meta)?;
            let count = meta
                .get(PARTITION_COUNT)
                .and_then(|c| c.parse::<usize>().ok());
            if count != Some(partition_count) {
                return Err(SpillError::Partitions {
                    path: path.clone(),
                    found: meta.get(PARTITION_COUNT).cloned().unwrap_or_default(),
                    expected: partition_count,
                });
            }
            let list = meta.get(PARTITIONS).map(String::as_str).unwrap_or("");
            for (b, p) in list.split(',').filter(|s| !s.is_empty()).enumerate() {
                let p: usize = p.parse().map_err(|_| SpillError::Lost)?;
                if wanted.contains(&p) {
                    parts[p - wanted.start].spilled.push((f as u32, b as u32));
                }
            }
        }
        Ok(Partitioned {
            zone,
            parts,
            waiting: [Vec::new(), Vec::new()],
            files,
            held: 0,
            budget: usize::MAX,
            spill,
            rows: (0, 0),
        })
    }

    /// Reduces each partition on its own, `threads` at a time: the summaries' sums of all of
    /// them, and the `sweeps` table's rows as one sorted run per partition. Only `threads`
    /// partitions' states are in memory at once. A run is a file in the spill folder when the
    /// rows were partitioned (the table is merged from them as it is written), in memory
    /// otherwise.
    pub(crate) fn reduce_all(mut self, threads: usize) -> Result<(Finished, Runs), SpillError> {
        let zone = self.zone;
        let to_disk = self.parts.len() > 1 || !self.files.is_empty();
        if to_disk {
            // The rows still held would sit beside the partition states until their own
            // partition's turn: written out, the whole budget is the states'.
            self.spill_all()?;
            release_freed_memory();
        }
        let spill = self.spill;
        let files = self.files;
        let waiting = self.waiting;
        let schema = sweep_schema();
        let parts = std::sync::Mutex::new(self.parts.into_iter().enumerate());
        type Done = (Finished, Vec<(usize, SweepRun)>);
        let results: Vec<Result<Done, SpillError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Finished::default();
                        let mut runs = Vec::new();
                        loop {
                            // Taken one at a time, so a slow partition does not hold up others.
                            let next = parts.lock().unwrap_or_else(|e| e.into_inner()).next();
                            let Some((p, part)) = next else {
                                return Ok((mine, runs));
                            };
                            let mut done = reduce(zone, &files, &waiting, p, part)?;
                            let batch = done.take_run().map_err(SpillError::Table)?;
                            let run = if to_disk {
                                let path = spill.next(&format!("sweeps-p{p:04}"));
                                let rows = batch.num_rows() as u64;
                                write_run(&path, &schema, &slices(&batch, RUN_BATCH))?;
                                spill.wrote(&path);
                                SweepRun::File(path, rows)
                            } else {
                                SweepRun::Memory(batch)
                            };
                            runs.push((p, run));
                            mine.merge(done);
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or(Err(SpillError::Panicked)))
                .collect()
        });
        // The partition states are gone; what they used is not needed to write the tables.
        release_freed_memory();
        let mut all = Finished::default();
        let mut runs = Vec::new();
        for r in results {
            let (f, r) = r?;
            all.merge(f);
            runs.extend(r);
        }
        // In partition order, so that the table is the same however the work was shared.
        runs.sort_by_key(|(p, _)| *p);
        let keep: Arc<dyn std::any::Any + Send + Sync> = spill;
        let mut table = Runs::new(schema, Some(keep))?;
        for (_, run) in runs {
            match run {
                SweepRun::File(path, rows) => table.push_file(path, rows),
                SweepRun::Memory(batch) => table.push_memory(vec![batch]),
            }
        }
        Ok((all, table))
    }
}

/// Footer keys of a spill or export file: the kind of its rows, the partition of each batch,
/// and how many partitions the ids were hashed into.
const KIND: &str = "sweep.kind";
const PARTITIONS: &str = "sweep.partitions";
const PARTITION_COUNT: &str = "sweep.partition_count";

/// The footer of an export file ([`Partitioned::export`]) of `kind` rows: the partition of each
/// of its batches, `partitions`, and the partition count.
pub(crate) fn export_footer(
    trades: bool,
    partitions: &[usize],
    count: usize,
) -> [(&'static str, String); 3] {
    let list: Vec<String> = partitions.iter().map(usize::to_string).collect();
    [
        (KIND, if trades { "trades" } else { "orders" }.to_string()),
        (PARTITIONS, list.join(",")),
        (PARTITION_COUNT, count.to_string()),
    ]
}

/// Whether a spill or export file holds trade rows (else order events), from its footer.
fn kind_of(meta: &std::collections::HashMap<String, String>) -> Result<bool, SpillError> {
    match meta.get(KIND).map(String::as_str) {
        Some("trades") => Ok(true),
        Some("orders") => Ok(false),
        _ => Err(SpillError::Lost),
    }
}

/// The columns the analysis keeps of `trades` rows or order events, typed by the catalogue:
/// the schema of the rows a map shard hands over, whatever reader (CSV or Parquet) read them.
pub(crate) fn kept_schema(trades: bool) -> SchemaRef {
    let columns: &[&str] = if trades {
        &TRADE_COLUMNS
    } else {
        &ORDER_COLUMNS
    };
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, crate::schema::column_type(c).arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

/// `batch` (the kept columns, in order) under [`kept_schema`]: fails if a column's type is
/// not the catalogue's.
fn conform(batch: &RecordBatch, trades: bool) -> Result<RecordBatch, arrow_schema::ArrowError> {
    RecordBatch::try_new(kept_schema(trades), batch.columns().to_vec())
}

/// Rows per batch of a sweeps run file: merging holds one batch of every run at once.
const RUN_BATCH: usize = 256;

/// One partition's sweep rows, sorted by order id.
enum SweepRun {
    File(PathBuf, u64),
    Memory(RecordBatch),
}

/// A batch cut into batches of at most `n` rows.
fn slices(batch: &RecordBatch, n: usize) -> Vec<RecordBatch> {
    (0..batch.num_rows())
        .step_by(n.max(1))
        .map(|at| batch.slice(at, n.min(batch.num_rows() - at)))
        .collect()
}

/// Hands memory the allocator keeps after frees back to the system. glibc's malloc keeps what
/// a thread frees in that thread's arena, so the rows a reading worker spilled would still
/// count against the process while other threads build the partition states.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps to the system;
    // it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One partition's state, from its spilled batches and its rows still in memory. A spilled
/// batch's kind is read from its file's footer.
fn reduce(
    zone: Zone,
    files: &[PathBuf],
    waiting: &[Vec<Waiting>; 2],
    p: usize,
    part: Part,
) -> Result<Finished, SpillError> {
    let mut state = SweepState::new(zone);
    for &(f, index) in &part.spilled {
        let path = files.get(f as usize).ok_or(SpillError::Lost)?;
        let mut reader = read_run(path)?;
        let trades = kind_of(reader.custom_metadata())?;
        reader
            .set_index(index as usize)
            .map_err(|e| arrow_error(path, e))?;
        let batch = reader
            .next()
            .ok_or(SpillError::Lost)?
            .map_err(|e| arrow_error(path, e))?;
        if trades {
            state.update_trades(&batch)?;
        } else {
            state.update_orders(&batch)?;
        }
    }
    for b in waiting[0].iter().filter_map(|w| w.part(p)) {
        state.update_orders(&b)?;
    }
    for b in waiting[1].iter().filter_map(|w| w.part(p)) {
        state.update_trades(&b)?;
    }
    Ok(state.finish_part()?)
}

fn arrow_error(path: &Path, source: arrow_schema::ArrowError) -> SpillError {
    SpillError::Arrow {
        path: path.to_path_buf(),
        source,
    }
}
