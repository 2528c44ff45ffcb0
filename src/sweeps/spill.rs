//! Bounded memory for the sweep analysis: rows are split by order id into partitions, held in
//! memory while they fit the stage's budget and spilled to Arrow IPC files (LZ4) when they do
//! not; at the end each partition is reduced on its own, and the partitions' results merged.
//!
//! Partitions are by order id, not by security: a trade joins its order by id alone (its own
//! `securitycode` is not compared), so only the id puts an order and its trades together. A
//! partition file holds the rows of one partition and one kind (orders or trades), with the
//! columns the analysis reads, and is named by both (`p007-orders-…arrow`); whatever wrote it,
//! reducing the files of one partition in any order gives the same result, which is what a
//! later distributed run can hand to other machines.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{RecordBatch, UInt32Array};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};

use super::state::{ORDER_COLUMNS, SweepError, SweepState, TRADE_COLUMNS};
use super::tables::Finished;
use crate::schema::{col, trade};
use crate::table::Table;
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

    fn next(&self, partition: usize, kind: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir
            .path()
            .join(format!("p{partition:03}-{kind}-{n:06}.arrow"))
    }
}

/// One partition's rows: in memory, and in the files spilled so far.
#[derive(Debug, Default)]
struct Part {
    orders: Vec<RecordBatch>,
    trades: Vec<RecordBatch>,
    order_files: Vec<PathBuf>,
    trade_files: Vec<PathBuf>,
}

/// A worker's share of the analysis: its rows split into partitions.
pub(crate) struct Partitioned {
    zone: Zone,
    parts: Vec<Part>,
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
        // Only the columns the analysis reads are kept (a rows sink may have made the reader
        // parse more).
        let mut idx = Vec::with_capacity(columns.len());
        for c in columns {
            let Ok(i) = batch.schema().index_of(c) else {
                return Err(SweepError::MissingColumn {
                    name: c,
                    file: if trades { "trades" } else { "orders" },
                }
                .into());
            };
            idx.push(i);
        }
        let batch = batch.project(&idx).map_err(|source| SpillError::Arrow {
            path: PathBuf::new(),
            source,
        })?;
        let ids = batch
            .column_by_name(id)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or(SweepError::MissingColumn {
                name: if trades {
                    trade::ORDER_ID
                } else {
                    col::ORDER_ID
                },
                file: if trades { "trades" } else { "orders" },
            })?;
        let n = self.parts.len();
        if trades {
            self.rows.1 += batch.num_rows() as u64;
        } else {
            self.rows.0 += batch.num_rows() as u64;
        }
        let mut taken: Vec<(usize, RecordBatch)> = Vec::new();
        if n == 1 {
            taken.push((0, batch));
        } else {
            let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
            for (i, v) in ids.values().iter().enumerate() {
                rows[partition_of(*v, n)].push(i as u32);
            }
            for (p, r) in rows.into_iter().enumerate() {
                if r.is_empty() {
                    continue;
                }
                let part = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(r))
                    .map_err(|source| SpillError::Arrow {
                        path: PathBuf::new(),
                        source,
                    })?;
                taken.push((p, part));
            }
        }
        for (p, b) in taken {
            self.held += b.get_array_memory_size();
            if trades {
                self.parts[p].trades.push(b);
            } else {
                self.parts[p].orders.push(b);
            }
        }
        if self.held > self.budget {
            self.spill_all()?;
        }
        Ok(())
    }

    /// Writes every partition's rows in memory to its files and frees them.
    fn spill_all(&mut self) -> Result<(), SpillError> {
        for (p, part) in self.parts.iter_mut().enumerate() {
            for (batches, files, kind) in [
                (&mut part.orders, &mut part.order_files, "orders"),
                (&mut part.trades, &mut part.trade_files, "trades"),
            ] {
                if batches.is_empty() {
                    continue;
                }
                let path = self.spill.next(p, kind);
                write(&path, batches)?;
                self.spill
                    .bytes
                    .increment(std::fs::metadata(&path).map_or(0, |m| m.len()));
                files.push(path);
                batches.clear();
            }
        }
        self.held = 0;
        Ok(())
    }

    /// Takes another worker's partitions (the same count): files and rows in memory alike.
    pub(crate) fn merge(&mut self, other: Partitioned) {
        for (mine, theirs) in self.parts.iter_mut().zip(other.parts) {
            mine.orders.extend(theirs.orders);
            mine.trades.extend(theirs.trades);
            mine.order_files.extend(theirs.order_files);
            mine.trade_files.extend(theirs.trade_files);
        }
        self.held += other.held;
        self.rows.0 += other.rows.0;
        self.rows.1 += other.rows.1;
    }

    /// Order rows and trade rows taken.
    pub(crate) fn rows(&self) -> (u64, u64) {
        self.rows
    }

    /// How many partitions, and how many of their files were spilled.
    pub(crate) fn spilled(&self) -> (usize, usize) {
        let files = self
            .parts
            .iter()
            .map(|p| p.order_files.len() + p.trade_files.len())
            .sum();
        (self.parts.len(), files)
    }

    /// Reduces each partition on its own, `threads` at a time, and merges their results into the
    /// four tables. Only `threads` partitions' states are in memory at once.
    pub(crate) fn finish(self, threads: usize) -> Result<Vec<Table>, SpillError> {
        let zone = self.zone;
        let parts = std::sync::Mutex::new(self.parts.into_iter());
        let results: Vec<Result<Finished, SpillError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Finished::default();
                        loop {
                            // Taken one at a time, so a slow partition does not hold up others.
                            let next = parts.lock().unwrap_or_else(|e| e.into_inner()).next();
                            let Some(part) = next else {
                                return Ok(mine);
                            };
                            mine.merge(reduce(zone, part)?);
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| Ok(Finished::default())))
                .collect()
        });
        let mut all = Finished::default();
        for r in results {
            all.merge(r?);
        }
        Ok(all.into_tables())
    }
}

/// One partition's state, from its files and the rows still in memory.
fn reduce(zone: Zone, part: Part) -> Result<Finished, SpillError> {
    let mut state = SweepState::new(zone);
    for f in &part.order_files {
        for b in read(f)? {
            state.update_orders(&b)?;
        }
    }
    for b in &part.orders {
        state.update_orders(b)?;
    }
    for f in &part.trade_files {
        for b in read(f)? {
            state.update_trades(&b)?;
        }
    }
    for b in &part.trades {
        state.update_trades(b)?;
    }
    Ok(state.finish_part()?)
}

fn write(path: &Path, batches: &[RecordBatch]) -> Result<(), SpillError> {
    let arrow = |source| SpillError::Arrow {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|source| SpillError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(arrow)?;
    let mut w = FileWriter::try_new_with_options(BufWriter::new(file), &first.schema(), options)
        .map_err(arrow)?;
    for b in batches {
        w.write(b).map_err(arrow)?;
    }
    w.finish().map_err(arrow)
}

fn read(path: &Path) -> Result<Vec<RecordBatch>, SpillError> {
    let file = File::open(path).map_err(|source| SpillError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = FileReader::try_new(std::io::BufReader::new(file), None).map_err(|source| {
        SpillError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    })?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SpillError::Arrow {
            path: path.to_path_buf(),
            source,
        })
}
