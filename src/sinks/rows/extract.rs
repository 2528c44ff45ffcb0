//! What the rows sink does with the rows it has put in order: write them to the extract
//! ([`Extract`]), or, in a shard of a sharded run, hand them over for the merge to write
//! ([`Handover`]). The merge writes what shards handed over through the same [`Extract`], batch
//! for batch as `sweep run` would have, so the extract comes out the same bytes in every format.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::Schema;

use super::sort::{SortKey, Sorter};
use super::writer::{RowWriter, RowsError, RowsWritten};
use crate::batch::JobId;
use crate::config::RowSinkSpec;
use crate::schema;
use crate::sinks::format::PartitionKey;
use crate::table::{RunError, RunWriter};

/// `rows` with only the extract's `columns`, in their order (all of them when unset).
pub(crate) fn project(
    spec: &RowSinkSpec,
    sink: &str,
    rows: &RecordBatch,
) -> Result<RecordBatch, String> {
    let Some(cols) = &spec.columns else {
        return Ok(rows.clone());
    };
    let schema = rows.schema();
    let idx: Result<Vec<usize>, String> = cols
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .map_err(|_| format!("sink `{sink}`: column `{c}` is not in its input"))
        })
        .collect();
    rows.project(&idx?).map_err(|e| e.to_string())
}

/// An extract being written: opened by the first batch (whose columns it takes, even when the
/// batch has no rows: a header-only file still names its columns), committed at the end. With
/// `sort = true` the rows wait in a [`Sorter`] until the end.
pub(crate) struct Extract {
    spec: RowSinkSpec,
    writer: Option<RowWriter>,
    sorter: Option<Sorter>,
}

impl Extract {
    pub(crate) fn new(spec: &RowSinkSpec) -> Self {
        Extract {
            spec: spec.clone(),
            writer: None,
            sorter: None,
        }
    }

    /// Appends rows already projected to the extract's columns.
    pub(crate) fn write(&mut self, rows: &RecordBatch) -> Result<(), String> {
        if self.writer.is_none() {
            // Sorted rows come partition by partition (the date leads the sort key), so one
            // file open at a time is enough; each open Parquet file would hold a row group.
            let spec = RowSinkSpec {
                max_open_files: if self.spec.sort.is_some() {
                    1
                } else {
                    self.spec.max_open_files
                },
                ..self.spec.clone()
            };
            self.writer = Some(RowWriter::create(&spec, rows.schema()).map_err(|e| e.to_string())?);
            if let Some(sort) = &self.spec.sort {
                let zone = self
                    .spec
                    .partition_by
                    .contains(&PartitionKey::Date)
                    .then_some(self.spec.zone);
                let key = SortKey::for_schema(&rows.schema(), zone).map_err(|detail| {
                    RowsError::SortColumns {
                        path: self.spec.path.clone(),
                        detail,
                    }
                    .to_string()
                })?;
                self.sorter = Some(Sorter::new(sort, key, self.spec.path.clone()));
            }
        }
        if rows.num_rows() == 0 {
            return Ok(());
        }
        if let Some(s) = self.sorter.as_mut() {
            s.push(rows.clone()).map_err(|e| e.to_string())?;
        } else if let Some(w) = self.writer.as_mut() {
            w.write(rows).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Makes the extract visible. With no batch at all (no input rows, no header), the file
    /// has the columns the sink lists, if any.
    pub(crate) fn commit(mut self) -> Result<RowsWritten, String> {
        if self.writer.is_none() {
            let cols = self.spec.columns.clone().unwrap_or_default();
            let schema = if cols.is_empty() {
                std::sync::Arc::new(Schema::empty())
            } else {
                schema::arrow_schema(&cols)
            };
            self.writer = Some(RowWriter::create(&self.spec, schema).map_err(|e| e.to_string())?);
        }
        if let (Some(sorter), Some(w)) = (self.sorter.take(), self.writer.as_mut()) {
            sorter.finish(w).map_err(|e| e.to_string())?;
        }
        match self.writer.take() {
            Some(w) => w.commit().map_err(|e| e.to_string()),
            None => Ok(RowsWritten::default()),
        }
    }
}

/// A shard's rows for one rows sink, in the order the sink put them, with the run's job (its
/// input file) of each batch: written to an Arrow IPC file (LZ4) in a local temporary folder,
/// which the shard then commits to the shared folder (`shard::extracts`).
pub struct Handover {
    dir: tempfile::TempDir,
    writer: Option<RunWriter>,
    jobs: Vec<JobId>,
}

/// The handed-over rows of a finished shard: the file and the job of each of its batches.
pub struct HandedRows {
    /// Keeps the file until it is committed (removed with it when dropped).
    pub _dir: tempfile::TempDir,
    /// `None` when no batch arrived.
    pub file: Option<PathBuf>,
    pub jobs: Vec<JobId>,
}

impl Handover {
    pub(crate) fn new() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix(".sweep-handover-")
            .tempdir()
            .map_err(|e| format!("a temporary folder for the shard's rows: {e}"))?;
        Ok(Handover {
            dir,
            writer: None,
            jobs: Vec::new(),
        })
    }

    /// Appends a batch (projected) of input job `job`, empty ones included: the merge replays
    /// them all, as the extract would have received them.
    pub(crate) fn write(&mut self, job: JobId, rows: &RecordBatch) -> Result<(), String> {
        if self.writer.is_none() {
            let path = self.path();
            self.writer = Some(RunWriter::create(&path, &rows.schema()).map_err(text)?);
        }
        if let Some(w) = self.writer.as_mut() {
            w.write(rows).map_err(text)?;
        }
        self.jobs.push(job);
        Ok(())
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rows.arrow")
    }

    pub(crate) fn finish(self) -> Result<HandedRows, String> {
        let file = match self.writer {
            Some(w) => {
                w.finish(&[]).map_err(text)?;
                Some(self.dir.path().join("rows.arrow"))
            }
            None => None,
        };
        Ok(HandedRows {
            _dir: self.dir,
            file,
            jobs: self.jobs,
        })
    }
}

fn text(e: RunError) -> String {
    e.to_string()
}
