//! Extracts across shards: each shard hands its rows sinks' rows to the merge, which writes
//! each extract as `sweep run` would.
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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow_schema::Schema;

use super::partial::{self, Committed, Header, commit_with};
use super::{ShardError, ShardPlan};
use crate::batch::JobId;
use crate::config::{Pipeline, StageKind};
use crate::monitor::report::SinkSummary;
use crate::sinks::rows::{Extract, HandedRows};
use crate::table::{RunWriter, read_run};

/// How a rows partial's batches hold its state (`sweep.snapshot_encoding`).
const ROWS_ENCODING: &str = "arrow:rows";
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
    let mut footer =
        partial::header_metadata(header, ROWS_ENCODING).map_err(|why| failed(target, why))?;
    footer.push((BATCH_UNITS.to_string(), units.join(",")));
    let footer: Vec<(&str, String)> = footer
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    commit_with(temp, target, index, &mut |file, path| {
        let file = file.try_clone().map_err(|e| ShardError::io(path, e))?;
        let source = handed.and_then(|h| h.file.as_deref());
        let schema = match source {
            Some(src) => read_run(src)
                .map_err(|e| failed(src, e.to_string()))?
                .schema(),
            None => std::sync::Arc::new(Schema::empty()),
        };
        let mut w =
            RunWriter::from_file(file, path, &schema).map_err(|e| failed(path, e.to_string()))?;
        if let Some(src) = source {
            for batch in read_run(src).map_err(|e| failed(src, e.to_string()))? {
                let batch = batch.map_err(|e| failed(src, e.to_string()))?;
                w.write(&batch).map_err(|e| failed(path, e.to_string()))?;
            }
        }
        w.finish(&footer).map_err(|e| failed(path, e.to_string()))
    })
}

/// The header a rows partial says of itself.
pub(crate) fn read_rows_header(path: &Path) -> Result<Header, ShardError> {
    Ok(partial::read_footer(path, ROWS_ENCODING)?.0)
}

/// Writes every rows sink's extract from its checked partials (`partials[sink]`, in shard
/// order); returns each sink's name, path and what it wrote.
pub(crate) fn write_extracts(
    p: &Pipeline,
    plan: &ShardPlan,
    partials: &BTreeMap<String, Vec<(Header, PathBuf)>>,
) -> Result<Vec<SinkSummary>, ShardError> {
    // One node reads readers in the pipeline's order, each reader's files in its listing's.
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
    let mut out = Vec::new();
    for s in &p.stages {
        let StageKind::RowSink(spec) = &s.kind else {
            continue;
        };
        let failed = |e: String| ShardError::Outputs(vec![format!("sink `{}`: {e}", s.name)]);
        // Each unit's batches: (partial, batch index), in the order the shard kept them.
        let mut readers = Vec::new();
        let mut batches: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for (f, (_, path)) in partials.get(&s.name).into_iter().flatten().enumerate() {
            let reader = read_run(path).map_err(|e| failed(e.to_string()))?;
            let list = reader
                .custom_metadata()
                .get(BATCH_UNITS)
                .cloned()
                .unwrap_or_default();
            for (b, unit) in list.split(',').filter(|u| !u.is_empty()).enumerate() {
                let unit: usize = unit.parse().map_err(|_| ShardError::Partial {
                    path: path.clone(),
                    why: format!("`{BATCH_UNITS}` holds {unit:?}, not a unit"),
                })?;
                batches.entry(unit).or_default().push((f, b));
            }
            readers.push((path.clone(), reader));
        }
        let mut extract = Extract::new(spec);
        for u in &order {
            for &(f, b) in batches.get(u).into_iter().flatten() {
                let (path, reader) = &mut readers[f];
                let unreadable = |e: String| ShardError::Partial {
                    path: path.clone(),
                    why: format!("batch {b}: {e}"),
                };
                reader.set_index(b).map_err(|e| unreadable(e.to_string()))?;
                let batch = reader
                    .next()
                    .ok_or_else(|| unreadable("missing".into()))?
                    .map_err(|e| unreadable(e.to_string()))?;
                extract.write(&batch).map_err(failed)?;
            }
        }
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
