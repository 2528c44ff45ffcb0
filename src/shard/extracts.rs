//! Extracts and rejects across shards: each shard hands its rows sinks' rows and its readers'
//! rejected rows to the merge, which writes each extract as `sweep run` would, and each rejects
//! file.
//!
//! An extract's bytes depend on the rows and on the batches they arrive in (a Parquet file's
//! pages and row groups follow the batches). A batch is a block of one input file, cut the same
//! way whichever process reads the file, so each shard keeps every batch the sink was given,
//! empty ones included, and the input file of each: `<sink>.rows/shard-<I>`, an LZ4 Arrow IPC
//! file whose footer names each batch's unit (`sweep.batch_units`). The merge then replays the
//! batches into the sink's own writer ([`Extract`]) in the order one node reads the files: by
//! reader as the pipeline lists them, then by each file's position in its reader's listing
//! (`Unit::seq`). The encoding (gzip, zstd, Parquet) is the merge's, in one process: one
//! compressed stream cannot be cut between machines and still be the bytes one node writes.
//! The runtime settings that cut blocks (`runtime.block_bytes`) must be the same on every
//! node, as they are when every node runs the same pipeline file.
//!
//! A reader's rejected rows (`on_error = "reject"`) are appended by its parse workers as they
//! find them, so even one node's rejects file has no fixed order across blocks. A shard sorts
//! its rejects by file and line and commits them as `<reader>.rejects/shard-<I>`; the merge
//! writes the rejects file with the same header, files in one node's reading order, each
//! file's rows by line: the rows one node writes, in an order that no longer depends on timing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::partial::{self, Committed, Header};
use super::{ShardError, ShardPlan};
use crate::batch::JobId;
use crate::config::{Pipeline, StageKind};
use crate::monitor::report::SinkSummary;
use crate::readers::{HandedRejects, REJECTS_HEADER, Rejects};
use crate::sinks::rows::{Extract, HandedRows};
use crate::table::read_run;

/// How a rows partial's batches hold its state (`sweep.snapshot_encoding`).
pub(crate) const ROWS_ENCODING: &str = "arrow:rows";
/// The footer key listing the unit of each batch.
const BATCH_UNITS: &str = "sweep.batch_units";

/// The folder of a rows sink's partials.
pub(crate) fn rows_folder(sink: &str) -> String {
    format!("{sink}.rows")
}

/// Commits a shard's handed-over rows for one sink (`None`: no batch reached it) through
/// `temp` to `target`; `unit_of` gives each run job's unit in the plan.
pub(crate) fn commit_rows(
    handed: Option<&HandedRows>,
    unit_of: &HashMap<JobId, usize>,
    header: &Header,
    temp: tempfile::NamedTempFile,
    target: &Path,
) -> Result<Committed, ShardError> {
    let index = header.shard_index;
    let failed = |path: &Path, e: String| ShardError::Job {
        index,
        reasons: vec![format!("{}: {e}", path.display())],
    };
    let mut units = Vec::new();
    for job in handed.map(|h| h.jobs.as_slice()).unwrap_or_default() {
        let unit = unit_of
            .get(job)
            .ok_or_else(|| failed(target, format!("internal error: job {job} was not planned")))?;
        units.push(unit.to_string());
    }
    let units = units.join(",");
    let source = handed.and_then(|h| h.file.as_deref());
    let schema = match source {
        Some(src) => read_run(src)
            .map_err(|e| failed(src, e.to_string()))?
            .schema(),
        None => Arc::new(Schema::empty()),
    };
    partial::commit_run(temp, target, &schema, header, ROWS_ENCODING, &mut |w| {
        if let Some(src) = source {
            let text = |e: &dyn std::fmt::Display| format!("{}: {e}", src.display());
            for batch in read_run(src).map_err(|e| text(&e))? {
                w.write(&batch.map_err(|e| text(&e))?)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(vec![(BATCH_UNITS, units.clone())])
    })
}

/// Writes every rows sink's extract from its checked partials (`partials[sink]`, in shard
/// order); returns each sink's name, path and what it wrote.
pub(crate) fn write_extracts(
    p: &Pipeline,
    plan: &ShardPlan,
    partials: &BTreeMap<String, Vec<(Header, PathBuf)>>,
) -> Result<Vec<SinkSummary>, ShardError> {
    let order = reading_order(p, plan);
    let mut out = Vec::new();
    for s in &p.stages {
        let StageKind::RowSink(spec) = &s.kind else {
            continue;
        };
        let failed = |e: String| ShardError::Outputs(vec![format!("sink `{}`: {e}", s.name)]);
        let parts = partials.get(&s.name).map(Vec::as_slice).unwrap_or_default();
        let handed = HandedOver::open(parts).map_err(|e| failed(e.to_string()))?;
        let mut extract = Extract::new(spec);
        handed.replay(&order, &mut |_, _, batch| {
            extract.write(&batch).map_err(failed)
        })?;
        let written = extract.commit().map_err(failed)?;
        out.push(SinkSummary {
            detail: format!(
                "{} rows in {} file(s), {} bytes",
                written.rows, written.files, written.bytes
            ),
            name: s.name.clone(),
            path: spec.path.display().to_string(),
            status: "written",
        });
    }
    Ok(out)
}

/// The folder of a reader's rejected rows.
pub(crate) fn rejects_folder(reader: &str) -> String {
    format!("{reader}.rejects")
}

/// How a rejects partial's batches hold its state.
pub(crate) const REJECTS_ENCODING: &str = "arrow:rejects";
/// Rejected rows per batch of a rejects partial.
const REJECTS_BATCH: usize = 8192;

/// The units in the order one node reads them: readers as the pipeline lists them, each
/// reader's files in its listing's order.
fn reading_order(p: &Pipeline, plan: &ShardPlan) -> Vec<usize> {
    let reader_rank: HashMap<&str, usize> = p
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::Reader(_)))
        .enumerate()
        .map(|(rank, s)| (s.name.as_str(), rank))
        .collect();
    let mut order: Vec<usize> = (0..plan.units.len()).collect();
    order.sort_by_key(|&u| {
        let unit = &plan.units[u];
        (reader_rank.get(unit.reader.as_str()).copied(), unit.seq)
    });
    order
}

/// A partial's batches by unit, from its footer's [`BATCH_UNITS`]: (batch index) lists.
fn batches_by_unit(
    path: &Path,
    meta: &HashMap<String, String>,
) -> Result<HashMap<usize, Vec<usize>>, ShardError> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    let list = meta.get(BATCH_UNITS).map(String::as_str).unwrap_or("");
    for (b, unit) in list.split(',').filter(|u| !u.is_empty()).enumerate() {
        let unit: usize = unit.parse().map_err(|_| ShardError::Partial {
            path: path.to_path_buf(),
            why: format!("`{BATCH_UNITS}` holds {unit:?}, not a unit"),
        })?;
        out.entry(unit).or_default().push(b);
    }
    Ok(out)
}

/// The schema of a rejects partial: the rejects file's columns, the line a number.
fn rejects_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text(REJECTS_HEADER[0]),
        Field::new(REJECTS_HEADER[1], DataType::UInt64, false),
        text(REJECTS_HEADER[2]),
        text(REJECTS_HEADER[3]),
        text(REJECTS_HEADER[4]),
    ]))
}

/// Commits a shard's rejected rows of one reader (`None`: it rejected none) through `temp` to
/// `target`, sorted by unit then line; `unit_of` gives each of the reader's files' unit.
pub(crate) fn commit_rejects(
    handed: Option<&HandedRejects>,
    unit_of: &HashMap<String, usize>,
    header: &Header,
    temp: tempfile::NamedTempFile,
    target: &Path,
) -> Result<Committed, ShardError> {
    let index = header.shard_index;
    let failed = |path: &Path, e: String| ShardError::Job {
        index,
        reasons: vec![format!("{}: {e}", path.display())],
    };
    // (unit, line, the record's five fields)
    let mut rows: Vec<(usize, u64, csv::StringRecord)> = Vec::new();
    if let Some(h) = handed {
        let mut r = csv::Reader::from_path(&h.file).map_err(|e| failed(&h.file, e.to_string()))?;
        for record in r.records() {
            let record = record.map_err(|e| failed(&h.file, e.to_string()))?;
            let (file, line) = (record.get(0).unwrap_or(""), record.get(1).unwrap_or(""));
            let unit = *unit_of
                .get(file)
                .ok_or_else(|| failed(&h.file, format!("{file} was not planned")))?;
            let line = line
                .parse()
                .map_err(|_| failed(&h.file, format!("line {line:?} is not a number")))?;
            rows.push((unit, line, record));
        }
    }
    rows.sort_by_key(|r| (r.0, r.1));
    let mut units = Vec::new();
    let mut batches = Vec::new();
    for chunk in rows.chunk_by(|a, b| a.0 == b.0) {
        for piece in chunk.chunks(REJECTS_BATCH) {
            let field = |i: usize| -> ArrayRef {
                Arc::new(StringArray::from_iter_values(
                    piece
                        .iter()
                        .map(|(_, _, r)| r.get(i).unwrap_or("").to_string()),
                ))
            };
            let lines: ArrayRef = Arc::new(UInt64Array::from_iter_values(
                piece.iter().map(|(_, l, _)| *l),
            ));
            let batch = RecordBatch::try_new(
                rejects_schema(),
                vec![field(0), lines, field(2), field(3), field(4)],
            )
            .map_err(|e| failed(target, e.to_string()))?;
            batches.push(batch);
            units.push(chunk[0].0.to_string());
        }
    }
    let units = units.join(",");
    partial::commit_run(
        temp,
        target,
        &rejects_schema(),
        header,
        REJECTS_ENCODING,
        &mut |w| {
            for b in &batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            Ok(vec![(BATCH_UNITS, units.clone())])
        },
    )
}

/// Writes each reader's rejects file from its checked partials (`partials[reader]`, in shard
/// order); returns each reader's name, rejects path and what it wrote.
pub(crate) fn write_rejects(
    p: &Pipeline,
    plan: &ShardPlan,
    partials: &BTreeMap<String, Vec<(Header, PathBuf)>>,
) -> Result<Vec<(String, PathBuf, String)>, ShardError> {
    let order = reading_order(p, plan);
    let mut out = Vec::new();
    for s in &p.stages {
        let StageKind::Reader(spec) = &s.kind else {
            continue;
        };
        let Some(path) = &spec.rejects else {
            continue;
        };
        let failed = |e: String| ShardError::Outputs(vec![format!("reader `{}`: {e}", s.name)]);
        let parts = partials.get(&s.name).map(Vec::as_slice).unwrap_or_default();
        let handed = HandedOver::open(parts).map_err(|e| failed(e.to_string()))?;
        let out_file = Rejects::create(path).map_err(|e| failed(e.to_string()))?;
        let mut rows = 0u64;
        handed.replay(&order, &mut |part, b, batch| {
            let unreadable = |why: String| ShardError::Partial {
                path: part.to_path_buf(),
                why: format!("batch {b}: {why}"),
            };
            let text = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| unreadable(format!("column {i} is not text")))
            };
            let (file, column, reason, row) = (text(0)?, text(2)?, text(3)?, text(4)?);
            let lines = batch
                .column(1)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| unreadable("the lines are not numbers".into()))?;
            for i in 0..batch.num_rows() {
                let line = lines.value(i).to_string();
                let record = [
                    file.value(i),
                    &line,
                    column.value(i),
                    reason.value(i),
                    row.value(i),
                ];
                out_file
                    .write_record(&record)
                    .map_err(|e| failed(e.to_string()))?;
                rows += 1;
            }
            Ok(())
        })?;
        out_file.commit().map_err(|e| failed(e.to_string()))?;
        out.push((
            s.name.clone(),
            path.clone(),
            format!("{rows} rejected row(s)"),
        ));
    }
    Ok(out)
}

/// One stage's handed-over partials (rows or rejects), open for reading, with where each
/// unit's batches are: (partial, batch) pairs in the order the shard kept them.
struct HandedOver {
    readers: Vec<(
        PathBuf,
        arrow_ipc::reader::FileReader<std::io::BufReader<std::fs::File>>,
    )>,
    at: HashMap<usize, Vec<(usize, usize)>>,
}

impl HandedOver {
    fn open(partials: &[(Header, PathBuf)]) -> Result<Self, ShardError> {
        let mut readers = Vec::new();
        let mut at: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for (f, (_, path)) in partials.iter().enumerate() {
            let reader = read_run(path).map_err(|e| ShardError::Partial {
                path: path.clone(),
                why: e.to_string(),
            })?;
            for (unit, bs) in batches_by_unit(path, reader.custom_metadata())? {
                at.entry(unit)
                    .or_default()
                    .extend(bs.into_iter().map(|b| (f, b)));
            }
            readers.push((path.clone(), reader));
        }
        Ok(HandedOver { readers, at })
    }

    /// Gives `each` every batch (with its partial and index), unit by unit in `order`.
    fn replay(
        mut self,
        order: &[usize],
        each: &mut dyn FnMut(&Path, usize, RecordBatch) -> Result<(), ShardError>,
    ) -> Result<(), ShardError> {
        for u in order {
            for &(f, b) in self.at.get(u).into_iter().flatten() {
                let (path, reader) = &mut self.readers[f];
                let unreadable = |e: String| ShardError::Partial {
                    path: path.clone(),
                    why: format!("batch {b}: {e}"),
                };
                reader.set_index(b).map_err(|e| unreadable(e.to_string()))?;
                let batch = reader
                    .next()
                    .ok_or_else(|| unreadable("missing".into()))?
                    .map_err(|e| unreadable(e.to_string()))?;
                each(path, b, batch)?;
            }
        }
        Ok(())
    }
}
