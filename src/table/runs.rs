//! A table too large to hold as cells: its rows as Arrow batches in sorted runs, each run in
//! memory or in an Arrow IPC file, merged into one order as the table is written. The sweep
//! analysis makes one run per partition (each sorted by order id, the partitions hashed by it),
//! so that writing `sweeps.csv` holds one batch per run, never the whole table. The rows sink's
//! external sort (`sinks::rows::sort`) merges its spilled runs the same way, by its own key
//! ([`RunKey`]).

use std::any::Any;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_ipc::CompressionType;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_schema::{ArrowError, DataType, SchemaRef};

/// Why a run could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: ArrowError },
    #[error("a run's first column must be UInt64 (the key it is sorted by), not {0}")]
    Key(DataType),
    #[error("a run's sort key {0}")]
    Column(String),
}

/// What runs are sorted by: the key of each row of a batch.
pub trait RunKey: Clone + Send + Sync + 'static {
    type Key: Ord + Copy + Send;
    /// Checks that a schema holds the key's columns.
    fn check(&self, schema: &SchemaRef) -> Result<(), RunError>;
    /// The keys of `batch`'s rows, in row order.
    fn keys(&self, batch: &RecordBatch) -> Result<Vec<Self::Key>, RunError>;
}

/// The first column, an unsigned id (the sweeps table's order id).
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstColumn;

impl RunKey for FirstColumn {
    type Key = u64;

    fn check(&self, schema: &SchemaRef) -> Result<(), RunError> {
        match schema.fields().first().map(|f| f.data_type()) {
            Some(DataType::UInt64) => Ok(()),
            other => Err(RunError::Key(other.cloned().unwrap_or(DataType::Null))),
        }
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Vec<u64>, RunError> {
        match batch.column(0).as_primitive_opt::<UInt64Type>() {
            Some(k) => Ok(k.values().to_vec()),
            None => Err(RunError::Key(batch.column(0).data_type().clone())),
        }
    }
}

/// One sorted run.
enum Run {
    Memory(Vec<RecordBatch>),
    File(PathBuf),
}

/// Rows in runs, each sorted ascending by its key (by default its first column, an unsigned key
/// such as an order id); [`Runs::merged`] gives them in one ascending order. Equal keys come out
/// in the order their runs were added, so a merge of stably sorted runs is stable.
pub struct Runs<K: RunKey = FirstColumn> {
    key: K,
    schema: SchemaRef,
    runs: Vec<Run>,
    rows: u64,
    /// Whatever keeps the run files alive (their spill folder), dropped with the table.
    keep: Option<Arc<dyn Any + Send + Sync>>,
}

impl<K: RunKey> fmt::Debug for Runs<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runs")
            .field("columns", &self.schema.fields().len())
            .field("runs", &self.runs.len())
            .field("rows", &self.rows)
            .finish()
    }
}

impl Runs {
    /// No runs yet, keyed by the first column. `keep` is held until the runs are dropped: the
    /// folder their files are in.
    pub fn new(
        schema: SchemaRef,
        keep: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Result<Self, RunError> {
        Runs::keyed(FirstColumn, schema, keep)
    }
}

impl<K: RunKey> Runs<K> {
    /// No runs yet, sorted by `key`.
    pub fn keyed(
        key: K,
        schema: SchemaRef,
        keep: Option<Arc<dyn Any + Send + Sync>>,
    ) -> Result<Self, RunError> {
        key.check(&schema)?;
        Ok(Runs {
            key,
            schema,
            runs: Vec::new(),
            rows: 0,
            keep,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// How many runs there are.
    pub fn count(&self) -> usize {
        self.runs.len()
    }

    /// Adds a sorted run held in memory.
    pub fn push_memory(&mut self, batches: Vec<RecordBatch>) {
        self.rows += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        self.runs.push(Run::Memory(batches));
    }

    /// Adds a sorted run written earlier by [`write_run`], of `rows` rows.
    pub fn push_file(&mut self, path: PathBuf, rows: u64) {
        self.rows += rows;
        self.runs.push(Run::File(path));
    }

    /// Takes another set's runs (of the same schema).
    pub fn append(&mut self, other: Runs<K>) {
        self.rows += other.rows;
        self.runs.extend(other.runs);
        if self.keep.is_none() {
            self.keep = other.keep;
        }
    }

    /// The rows in ascending key order, in batches of at most `chunk` rows. Holds one batch of
    /// each run at a time.
    pub fn merged(&self, chunk: usize) -> Result<Merge<K>, RunError> {
        let mut cursors = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            let source: Box<dyn Iterator<Item = Result<RecordBatch, RunError>> + Send> = match run {
                Run::Memory(batches) => Box::new(batches.clone().into_iter().map(Ok)),
                Run::File(path) => {
                    let at = path.clone();
                    Box::new(read_run(path)?.map(move |b| {
                        b.map_err(|source| RunError::Arrow {
                            path: at.clone(),
                            source,
                        })
                    }))
                }
            };
            cursors.push(Cursor {
                key: self.key.clone(),
                source,
                batch: None,
                keys: Vec::new(),
                row: 0,
                slot: None,
            });
        }
        let mut merge = Merge {
            schema: self.schema.clone(),
            cursors,
            heap: BinaryHeap::new(),
            chunk: chunk.max(1),
        };
        for i in 0..merge.cursors.len() {
            if merge.cursors[i].advance_batch()? {
                merge.heap.push(Reverse((merge.cursors[i].key(), i)));
            }
        }
        Ok(merge)
    }
}

/// Where one run is read: its current batch and row.
struct Cursor<K: RunKey> {
    key: K,
    source: Box<dyn Iterator<Item = Result<RecordBatch, RunError>> + Send>,
    batch: Option<RecordBatch>,
    keys: Vec<K::Key>,
    row: usize,
    /// The batch's index among the sources of the chunk being built, once it has given a row.
    slot: Option<usize>,
}

impl<K: RunKey> Cursor<K> {
    /// Loads the next non-empty batch; false at the end of the run.
    fn advance_batch(&mut self) -> Result<bool, RunError> {
        self.slot = None;
        self.row = 0;
        for b in self.source.by_ref() {
            let b = b?;
            if b.num_rows() == 0 {
                continue;
            }
            self.keys = self.key.keys(&b)?;
            self.batch = Some(b);
            return Ok(true);
        }
        self.batch = None;
        Ok(false)
    }

    fn key(&self) -> K::Key {
        self.keys[self.row]
    }
}

/// The merge of a table's runs: an iterator of batches in ascending key order.
pub struct Merge<K: RunKey = FirstColumn> {
    schema: SchemaRef,
    cursors: Vec<Cursor<K>>,
    heap: BinaryHeap<Reverse<(K::Key, usize)>>,
    chunk: usize,
}

impl<K: RunKey> Merge<K> {
    fn next_chunk(&mut self) -> Result<Option<RecordBatch>, RunError> {
        let mut sources: Vec<RecordBatch> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.chunk);
        for c in &mut self.cursors {
            c.slot = None;
        }
        while picks.len() < self.chunk {
            let Some(Reverse((_, i))) = self.heap.pop() else {
                break;
            };
            let c = &mut self.cursors[i];
            let slot = match c.slot {
                Some(s) => s,
                None => {
                    let Some(b) = &c.batch else { break };
                    sources.push(b.clone());
                    c.slot = Some(sources.len() - 1);
                    sources.len() - 1
                }
            };
            picks.push((slot, c.row));
            c.row += 1;
            let more = if c.row < c.keys.len() {
                true
            } else {
                c.advance_batch()?
            };
            if more {
                self.heap.push(Reverse((c.key(), i)));
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = sources.iter().collect();
        arrow_select::interleave::interleave_record_batch(&refs, &picks)
            .map(Some)
            .map_err(|source| RunError::Arrow {
                path: PathBuf::new(),
                source,
            })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

impl<K: RunKey> Iterator for Merge<K> {
    type Item = Result<RecordBatch, RunError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// An Arrow IPC file (LZ4) being written batch by batch: the format of runs, and of the sweep
/// analysis's spilled partitions.
pub struct RunWriter {
    path: PathBuf,
    writer: FileWriter<BufWriter<File>>,
}

impl RunWriter {
    pub fn create(path: &Path, schema: &SchemaRef) -> Result<Self, RunError> {
        let file = File::create(path).map_err(|source| RunError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file(file, path, schema)
    }

    /// Writes into `file`, already open (a temporary that is linked into place once written);
    /// `path` names it in errors.
    pub fn from_file(file: File, path: &Path, schema: &SchemaRef) -> Result<Self, RunError> {
        let arrow = |source| RunError::Arrow {
            path: path.to_path_buf(),
            source,
        };
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(arrow)?;
        let writer = FileWriter::try_new_with_options(BufWriter::new(file), schema, options)
            .map_err(arrow)?;
        Ok(RunWriter {
            path: path.to_path_buf(),
            writer,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), RunError> {
        self.writer.write(batch).map_err(|source| RunError::Arrow {
            path: self.path.clone(),
            source,
        })
    }

    /// Ends the file, with `metadata` in its footer.
    pub fn finish(mut self, metadata: &[(&str, String)]) -> Result<(), RunError> {
        for (k, v) in metadata {
            self.writer.write_metadata(*k, v.clone());
        }
        self.writer.finish().map_err(|source| RunError::Arrow {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes one sorted run to `path` in one go.
pub fn write_run(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(), RunError> {
    let mut w = RunWriter::create(path, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish(&[])
}

/// Reads an Arrow IPC file batch by batch.
pub fn read_run(path: &Path) -> Result<FileReader<BufReader<File>>, RunError> {
    let file = File::open(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    FileReader::try_new(BufReader::new(file), None).map_err(|source| RunError::Arrow {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Cell, Table};
    use arrow_array::{Float64Array, StringArray, UInt64Array};
    use arrow_schema::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::UInt64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    fn run(ids: &[u64]) -> RecordBatch {
        let x: Float64Array = ids
            .iter()
            .map(|&i| (i % 3 != 0).then(|| i as f64 / 4.0))
            .collect();
        let s: StringArray = ids.iter().map(|i| Some(format!("a,{i}"))).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(UInt64Array::from(ids.to_vec())),
                Arc::new(x),
                Arc::new(s),
            ],
        )
        .unwrap()
    }

    /// Runs in memory and in files, cut into batches of any size, merge into one ascending
    /// order, and the CSV written from them equals the CSV of the same rows held as cells.
    #[test]
    fn runs_merge_in_key_order_and_write_what_cells_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.arrow");
        let on_disk = run(&[2, 3, 9, 10, 11]);
        write_run(
            &path,
            &schema(),
            &[on_disk.slice(0, 2), on_disk.slice(2, 3)],
        )
        .unwrap();
        let mut runs = Runs::new(schema(), None).unwrap();
        runs.push_memory(vec![run(&[1, 4]), run(&[]), run(&[7, 12])]);
        runs.push_file(path, 5);
        runs.push_memory(vec![run(&[5, 6, 8])]);
        assert_eq!(runs.rows(), 12);
        let keys: Vec<u64> = runs
            .merged(5)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                assert!(b.num_rows() <= 5);
                b.column(0).as_primitive::<UInt64Type>().values().to_vec()
            })
            .collect();
        assert_eq!(keys, (1..=12).collect::<Vec<u64>>());

        let table = Table::from_runs("t", runs);
        let cells = Table::new(
            "t",
            vec!["id".into(), "x".into(), "s".into()],
            (1..=12u64)
                .map(|i| {
                    vec![
                        Cell::Int(i.into()),
                        if i % 3 != 0 {
                            Cell::Float(i as f64 / 4.0)
                        } else {
                            Cell::Null
                        },
                        Cell::Str(format!("a,{i}")),
                    ]
                })
                .collect(),
        );
        let text = String::from_utf8(table.to_csv().unwrap()).unwrap();
        assert_eq!(text, String::from_utf8(cells.to_csv().unwrap()).unwrap());
        assert!(text.starts_with("id,x,s\n1,0.25,\"a,1\"\n2,0.5,\"a,2\"\n3,,\"a,3\"\n"));
        assert_eq!(table.len(), 12);
    }

    /// A run's key must be an unsigned id.
    #[test]
    fn a_run_keyed_by_anything_else_is_refused() {
        let s = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        assert!(matches!(
            Runs::new(s, None),
            Err(RunError::Key(DataType::Utf8))
        ));
    }
}
