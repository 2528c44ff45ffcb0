//! The rows sink's external sort (`sort = true`): rows come out by security, then timestamp and
//! sequence (and, when the extract is partitioned by date, by local date first, so each date's
//! files are written one after another), in bounded memory.
//!
//! Rows are held until they pass the sort's memory budget; then they are sorted (stably: rows
//! with equal keys keep their input order) and spilled as one run, an LZ4 Arrow IPC file in a
//! hidden spill folder, as the sweep analysis spills. At the end the runs are merged by
//! `table::Runs`, holding one small batch of each, into the writer. The spill folder is removed
//! when the sort is dropped, whatever the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_schema::SchemaRef;

use super::writer::{RowWriter, RowsError};
use crate::batch::column;
use crate::config::SortSpec;
use crate::schema::{col, trade};
use crate::table::{RunError, RunKey, RunWriter, Runs};

use crate::time::{LocalClock, Zone};

/// Rows per batch of a spilled run: the merge holds one batch of each run, so this bounds its
/// memory (a few hundred kilobytes a run).
const RUN_BATCH_ROWS: usize = 2048;
/// Rows per batch handed to the writer.
const OUT_BATCH_ROWS: usize = 8192;

/// The sort key of a row: (local date when partitioned by date, security, timestamp, sequence).
#[derive(Debug, Clone)]
pub(crate) struct SortKey {
    security: &'static str,
    timestamp: &'static str,
    /// An order file's `sequence`; trades have none.
    sequence: Option<&'static str>,
    /// The zone of the date partition, when the extract has one.
    date_zone: Option<Zone>,
}

impl SortKey {
    /// The key for rows of `schema`: order events (`security_code`, `timestamp`, `sequence`) or
    /// trades (`securitycode`, `tradetime`).
    pub(crate) fn for_schema(
        schema: &SchemaRef,
        date_zone: Option<Zone>,
    ) -> Result<Self, &'static str> {
        let has = |c: &str| schema.index_of(c).is_ok();
        if has(col::SECURITY) && has(col::TIMESTAMP) {
            Ok(SortKey {
                security: col::SECURITY,
                timestamp: col::TIMESTAMP,
                sequence: has(col::SEQUENCE).then_some(col::SEQUENCE),
                date_zone,
            })
        } else if has(trade::SECURITY) && has(trade::TIME) {
            Ok(SortKey {
                security: trade::SECURITY,
                timestamp: trade::TIME,
                sequence: None,
                date_zone,
            })
        } else {
            Err(
                "needs `security_code` and `timestamp` (orders) or `securitycode` and `tradetime` (trades) among the columns it writes",
            )
        }
    }
}

/// (local date or 0, security, timestamp, sequence or 0).
type Key = (i32, u32, i64, i64);

impl RunKey for SortKey {
    type Key = Key;

    fn check(&self, _: &SchemaRef) -> Result<(), RunError> {
        Ok(())
    }

    fn keys(&self, b: &RecordBatch) -> Result<Vec<Self::Key>, RunError> {
        let key = |e: crate::batch::ColumnError| RunError::Column(e.to_string());
        let sec = column::<UInt32Type>(b, self.security)
            .map_err(key)?
            .values();
        let ts = column::<Int64Type>(b, self.timestamp)
            .map_err(key)?
            .values();
        let seq = match self.sequence {
            Some(s) => Some(column::<Int64Type>(b, s).map_err(key)?.values()),
            None => None,
        };
        let mut clock = self.date_zone.map(LocalClock::new);
        Ok((0..b.num_rows())
            .map(|i| {
                let day = clock.as_mut().map_or(0, |c| c.local_day(ts[i]));
                (day, sec[i], ts[i], seq.map_or(0, |s| s[i]))
            })
            .collect())
    }
}

/// Runs merged at once: each holds a batch in memory while merged, so the final merge of many
/// runs (a large input over a small budget) first merges them in groups of this many into
/// longer runs, keeping the merge's memory bounded whatever the input's size.
const FAN_IN: usize = 16;

/// Rows being sorted for one extract.
pub(crate) struct Sorter {
    key: SortKey,
    spec: SortSpec,
    /// The extract's path, for messages.
    path: PathBuf,
    schema: Option<SchemaRef>,
    held: Vec<RecordBatch>,
    held_bytes: usize,
    /// Spilled runs: file and rows, in input order.
    runs: Vec<(PathBuf, u64)>,
    /// Files written to the spill folder so far, for names.
    files: usize,
    spill: Option<Arc<tempfile::TempDir>>,
}

impl Sorter {
    pub(crate) fn new(spec: &SortSpec, key: SortKey, path: PathBuf) -> Self {
        Sorter {
            key,
            spec: spec.clone(),
            path,
            schema: None,
            held: Vec::new(),
            held_bytes: 0,
            runs: Vec::new(),
            files: 0,
            spill: None,
        }
    }

    fn run_error(&self, e: RunError) -> RowsError {
        RowsError::Sort {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Takes rows; spills a sorted run when the rows held pass the budget.
    pub(crate) fn push(&mut self, rows: RecordBatch) -> Result<(), RowsError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        if self.schema.is_none() {
            self.schema = Some(rows.schema());
        }
        self.held_bytes += rows.get_array_memory_size();
        self.held.push(rows);
        if self.held_bytes >= self.spec.memory_budget {
            self.spill_held()?;
        }
        Ok(())
    }

    /// Hands the rows held, sorted, to `each` in batches of at most `chunk` rows, one batch at
    /// a time (a sorted copy of everything held would double the memory).
    fn drain_sorted(
        &mut self,
        chunk: usize,
        mut each: impl FnMut(RecordBatch) -> Result<(), RowsError>,
    ) -> Result<(), RowsError> {
        // (key, batch, row) of every row held.
        let mut order: Vec<(Key, usize, usize)> = Vec::new();
        for (b, batch) in self.held.iter().enumerate() {
            let keys = self.key.keys(batch).map_err(|e| self.run_error(e))?;
            order.extend(keys.into_iter().enumerate().map(|(r, k)| (k, b, r)));
        }
        // Stable: equal keys keep their input order.
        order.sort_by_key(|(k, _, _)| *k);
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let refs: Vec<&RecordBatch> = held.iter().collect();
        for part in order.chunks(chunk.max(1)) {
            let picks: Vec<(usize, usize)> = part.iter().map(|&(_, b, r)| (b, r)).collect();
            let batch = arrow_select::interleave::interleave_record_batch(&refs, &picks).map_err(
                |source| RowsError::Arrow {
                    path: self.path.clone(),
                    source,
                },
            )?;
            each(batch)?;
        }
        Ok(())
    }

    /// A new run file in the spill folder, created on first use.
    fn run_file(&mut self) -> Result<PathBuf, RowsError> {
        let dir = match &self.spill {
            Some(d) => d.clone(),
            None => {
                let d = tempfile::Builder::new()
                    .prefix(".sweep-sort-")
                    .tempdir_in(&self.spec.spill_dir)
                    .map_err(|source| {
                        self.run_error(RunError::Io {
                            path: self.spec.spill_dir.clone(),
                            source,
                        })
                    })?;
                let d = Arc::new(d);
                self.spill = Some(d.clone());
                d
            }
        };
        self.files += 1;
        Ok(dir.path().join(format!("run-{:06}.arrow", self.files)))
    }

    /// Writes batches as one run; returns its rows.
    fn write_run(
        &mut self,
        file: &std::path::Path,
        fill: impl FnOnce(
            &mut Self,
            &mut dyn FnMut(RecordBatch) -> Result<(), RowsError>,
        ) -> Result<(), RowsError>,
    ) -> Result<u64, RowsError> {
        let Some(schema) = self.schema.clone() else {
            return Ok(0);
        };
        let shown = self.path.clone();
        let sort_err = |source| RowsError::Sort {
            path: shown.clone(),
            source,
        };
        let mut w = RunWriter::create(file, &schema).map_err(sort_err)?;
        let mut rows = 0u64;
        fill(self, &mut |b: RecordBatch| {
            rows += b.num_rows() as u64;
            w.write(&b).map_err(sort_err)
        })?;
        w.finish(&[]).map_err(sort_err)?;
        Ok(rows)
    }

    fn spill_held(&mut self) -> Result<(), RowsError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let file = self.run_file()?;
        let rows = self.write_run(&file, |me, each| me.drain_sorted(RUN_BATCH_ROWS, each))?;
        self.runs.push((file, rows));
        Ok(())
    }

    /// The runs `runs` as one merge.
    fn merge_of(&self, runs: &[(PathBuf, u64)]) -> Result<Runs<SortKey>, RowsError> {
        let schema = self
            .schema
            .clone()
            .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
        let mut m = Runs::keyed(self.key.clone(), schema, None).map_err(|e| self.run_error(e))?;
        for (f, rows) in runs {
            m.push_file(f.clone(), *rows);
        }
        Ok(m)
    }

    /// Merges groups of [`FAN_IN`] runs into longer runs until at most that many are left.
    /// Runs stay in input order, so equal keys keep their input order.
    fn reduce_runs(&mut self) -> Result<(), RowsError> {
        while self.runs.len() > FAN_IN {
            let groups: Vec<Vec<(PathBuf, u64)>> =
                self.runs.chunks(FAN_IN).map(<[_]>::to_vec).collect();
            let mut next = Vec::with_capacity(groups.len());
            for group in groups {
                let merge = self.merge_of(&group)?;
                let file = self.run_file()?;
                let rows = self.write_run(&file, |me, each| {
                    for b in merge.merged(RUN_BATCH_ROWS).map_err(|e| me.run_error(e))? {
                        each(b.map_err(|e| me.run_error(e))?)?;
                    }
                    Ok(())
                })?;
                for (f, _) in &group {
                    // A merged run is not needed again; the folder goes at the end anyway.
                    let _ = std::fs::remove_file(f);
                }
                next.push((file, rows));
            }
            self.runs = next;
        }
        Ok(())
    }

    /// Writes every row, in key order, to `writer`.
    pub(crate) fn finish(mut self, writer: &mut RowWriter) -> Result<(), RowsError> {
        let merge = if self.spill.is_some() {
            self.spill_held()?;
            self.reduce_runs()?;
            self.merge_of(&self.runs)?
        } else {
            // Nothing spilled: one run, in memory.
            let mut sorted = Vec::new();
            self.drain_sorted(OUT_BATCH_ROWS, |b| {
                sorted.push(b);
                Ok(())
            })?;
            let mut m = self.merge_of(&[])?;
            m.push_memory(sorted);
            m
        };
        for b in merge
            .merged(OUT_BATCH_ROWS)
            .map_err(|e| self.run_error(e))?
        {
            writer.write(&b.map_err(|e| self.run_error(e))?)?;
        }
        Ok(())
    }
}
