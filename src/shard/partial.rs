//! A partial: one shard's state for one aggregator stage, at `SHARED/<plan-hash>/<stage>/shard-<I>`.
//!
//! It is an Arrow IPC file that describes itself: its schema metadata (written in the file's
//! header and again in its footer) carries the format version, plan hash, pipeline digest, shard
//! index and count, stage name, the rows aggregated, the shard's wall time and its ledger (one
//! entry per input file: rows read, kept, filtered out, rejected). Any Arrow reader can inspect
//! it (`pyarrow.ipc.open_file(f).schema.metadata`).
//!
//! The state travels as one row of a binary column holding the aggregator's snapshot
//! (`AggSnapshot`, postcard-encoded), not as columns of its own. The state is nine collections
//! of different shapes (hour-slot, security and participant groups, each with exact 128- and
//! 256-bit accumulators and optional HDR histograms; five size buckets; five sets of packed id
//! pairs), and one IPC file holds one schema, so columns would mean nine files or a union-typed
//! encoding of our own. The snapshot is the encoding the daemon already checkpoints with and
//! tests for exact round trips, so the merge restores exactly the state the shard built.
//!
//! The ledger sits in every stage's partial rather than in a sibling file: a partial is then
//! whole on its own, and there is one commit per file, never a pair that could half-happen.
//!
//! **Commit, exactly once.** A partial is written to `.shard-<I>.tmp-XXXXXX` beside its final
//! name, synced, then hard-linked to `shard-<I>`: a link never replaces an existing name, so of
//! attempts racing for one shard exactly one creates it and the others find it there. Where the
//! filesystem has no hard links, `renameat2(RENAME_NOREPLACE)` gives the same guarantee.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::ShardError;
use crate::aggregators::{AggSnapshot, AggState};
use crate::monitor::report::PathCounts;
use crate::table::RunWriter;

/// Version of the partial's layout and metadata.
pub(crate) const PARTIAL_FORMAT: &str = "sweep-shard-partial/1";
/// The one column: the state's snapshot.
const SNAPSHOT_COLUMN: &str = "snapshot";

/// Metadata keys.
pub(crate) mod key {
    pub const FORMAT: &str = "sweep.format";
    pub const PLAN_HASH: &str = "sweep.plan_hash";
    pub const PIPELINE_DIGEST: &str = "sweep.pipeline_digest";
    pub const SHARD_INDEX: &str = "sweep.shard_index";
    pub const SHARD_COUNT: &str = "sweep.shard_count";
    pub const STAGE: &str = "sweep.stage";
    pub const ROWS: &str = "sweep.rows_aggregated";
    pub const DURATION: &str = "sweep.shard_duration_sec";
    pub const LEDGER: &str = "sweep.ledger";
    pub const ENCODING: &str = "sweep.snapshot_encoding";
}

/// How the snapshot column is encoded.
const ENCODING: &str = "postcard:AggSnapshot";

/// One input file's accounting, as the shard's run report gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub bytes_read: u64,
    pub duration_sec: f64,
    pub file: String,
    pub file_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Kept and filtered-out rows per chain of filters, for a reader that feeds several.
    pub paths: Option<Vec<PathCounts>>,
    pub reader: String,
    pub rows_filtered_out: u64,
    pub rows_kept: u64,
    pub rows_read: u64,
    pub rows_rejected: u64,
    /// The unit's index in the plan.
    pub unit: usize,
}

/// What a partial says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub plan_hash: String,
    pub pipeline_digest: String,
    pub shard_index: usize,
    pub shard_count: usize,
    pub stage: String,
    pub rows: u64,
    pub duration_sec: f64,
    pub ledger: Vec<LedgerEntry>,
}

/// `SHARED/<plan-hash>/<stage>`.
pub(crate) fn stage_dir(run_dir: &Path, stage: &str) -> PathBuf {
    run_dir.join(stage)
}

/// The committed name of shard `index`'s partial.
pub(crate) fn final_name(index: usize) -> String {
    format!("shard-{index}")
}

/// The prefix of the temporaries of the partial committed as `name`: hidden, and named for the
/// partial they belong to (`.shard-3.tmp-`, or a bus partial's `.<fingerprint>.tmp-`).
pub(crate) fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// The shard index a committed name stands for: `shard-<I>` with `I` written canonically
/// (no sign, no leading zero), so no two names stand for one shard.
pub(crate) fn parse_final_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("shard-")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Whether `name` is a temporary of some shard's commit (`.shard-<I>.tmp-…`).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(".shard-")
        .and_then(|r| r.split_once(".tmp-"))
        .is_some_and(|(i, _)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temporaries earlier attempts of the partial `name` left in `dir` (a kill -9 leaves
/// them). An attempt racing this one may lose its temporary here; it then writes a new one
/// ([`commit`] retries), so removing them is always safe. Returns how many went.
pub(crate) fn remove_stale_temps(dir: &Path, name: &str) -> usize {
    let prefix = temp_prefix(name);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Opens a temporary for the partial `name` in `dir`, readable by others (the merge may run as
/// another user on another node).
pub(crate) fn create_temp(dir: &Path, name: &str) -> Result<tempfile::NamedTempFile, ShardError> {
    let prefix = temp_prefix(name);
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    b.tempfile_in(dir).map_err(|e| ShardError::io(dir, e))
}

/// What a partial says about itself, as metadata entries: `encoding` says how its rows hold
/// the state (an aggregator's snapshot, a sweep analysis's rows or its reduced tables).
pub(crate) fn header_metadata(h: &Header, encoding: &str) -> Result<Vec<(String, String)>, String> {
    let ledger =
        serde_json::to_string(&h.ledger).map_err(|e| format!("cannot encode the ledger: {e}"))?;
    Ok([
        (key::FORMAT, PARTIAL_FORMAT.to_string()),
        (key::PLAN_HASH, h.plan_hash.clone()),
        (key::PIPELINE_DIGEST, h.pipeline_digest.clone()),
        (key::SHARD_INDEX, h.shard_index.to_string()),
        (key::SHARD_COUNT, h.shard_count.to_string()),
        (key::STAGE, h.stage.clone()),
        (key::ROWS, h.rows.to_string()),
        (key::DURATION, format!("{:.6}", h.duration_sec)),
        (key::LEDGER, ledger),
        (key::ENCODING, encoding.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The header in a partial's metadata, which must say its state is encoded as `encoding`.
/// `meta` looks a key up.
pub(crate) fn parse_header(
    meta: impl Fn(&str) -> Option<String>,
    encoding: &str,
) -> Result<Header, String> {
    let get = |k: &str| meta(k).ok_or_else(|| format!("its metadata has no `{k}`"));
    let number = |k: &str| -> Result<u64, String> {
        get(k)?
            .parse()
            .map_err(|_| format!("`{k}` is not a number"))
    };
    let format = get(key::FORMAT)?;
    if format != PARTIAL_FORMAT {
        return Err(format!(
            "format {format:?}, this build reads {PARTIAL_FORMAT:?}"
        ));
    }
    if get(key::ENCODING)? != encoding {
        return Err(format!("its state is not encoded as {encoding}"));
    }
    Ok(Header {
        plan_hash: get(key::PLAN_HASH)?,
        pipeline_digest: get(key::PIPELINE_DIGEST)?,
        shard_index: number(key::SHARD_INDEX)? as usize,
        shard_count: number(key::SHARD_COUNT)? as usize,
        stage: get(key::STAGE)?,
        rows: number(key::ROWS)?,
        duration_sec: get(key::DURATION)?
            .parse()
            .map_err(|_| format!("`{}` is not a number", key::DURATION))?,
        ledger: serde_json::from_str(&get(key::LEDGER)?)
            .map_err(|e| format!("unreadable ledger: {e}"))?,
    })
}

/// The header in the footer of a partial written as a run (`table::RunWriter`: a sweep
/// analysis's or a rows sink's), which must say its rows are encoded as `encoding`, and the
/// whole footer.
pub(crate) fn read_footer(
    path: &Path,
    encoding: &str,
) -> Result<(Header, HashMap<String, String>), ShardError> {
    let bad = |why: String| ShardError::Partial {
        path: path.to_path_buf(),
        why,
    };
    let reader =
        crate::table::read_run(path).map_err(|e| bad(format!("not an Arrow IPC file: {e}")))?;
    let meta = reader.custom_metadata().clone();
    let header = parse_header(|k| meta.get(k).cloned(), encoding).map_err(bad)?;
    Ok((header, meta))
}

/// The partial's bytes: an Arrow IPC file of one row.
pub(crate) fn encode(h: &Header, state: &AggState) -> Result<Vec<u8>, ShardError> {
    let internal = |why: String| ShardError::Partial {
        path: PathBuf::from(&h.stage),
        why,
    };
    let snapshot = postcard::to_stdvec(&state.snapshot())
        .map_err(|e| internal(format!("cannot encode the state: {e}")))?;
    let metadata: HashMap<String, String> = header_metadata(h, ENCODING)
        .map_err(internal)?
        .into_iter()
        .collect();
    let schema = Arc::new(
        Schema::new(vec![Field::new(SNAPSHOT_COLUMN, DataType::Binary, false)])
            .with_metadata(metadata),
    );
    let column = BinaryArray::from_vec(vec![snapshot.as_slice()]);
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])
        .map_err(|e| internal(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, &schema)
        .map_err(|e| internal(e.to_string()))?;
    w.write(&batch).map_err(|e| internal(e.to_string()))?;
    w.finish().map_err(|e| internal(e.to_string()))?;
    drop(w);
    Ok(out)
}

/// Reads what a partial says about itself, and its snapshot.
pub(crate) fn read(path: &Path) -> Result<(Header, AggSnapshot), ShardError> {
    let bad = |why: String| ShardError::Partial {
        path: path.to_path_buf(),
        why,
    };
    let file = File::open(path).map_err(|e| ShardError::io(path, e))?;
    let mut r = arrow_ipc::reader::FileReader::try_new(file, None)
        .map_err(|e| bad(format!("not an Arrow IPC file: {e}")))?;
    let schema = r.schema();
    let header = parse_header(|k| schema.metadata().get(k).cloned(), ENCODING).map_err(bad)?;
    let batch = r
        .next()
        .ok_or_else(|| bad("it holds no state".into()))?
        .map_err(|e| bad(format!("unreadable state: {e}")))?;
    let column = batch
        .column_by_name(SNAPSHOT_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .filter(|c| c.len() == 1 && c.null_count() == 0)
        .ok_or_else(|| bad(format!("no single `{SNAPSHOT_COLUMN}` value")))?;
    let snapshot =
        postcard::from_bytes(column.value(0)).map_err(|e| bad(format!("unreadable state: {e}")))?;
    Ok((header, snapshot))
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// This attempt created the partial.
    Created,
    /// Another attempt had committed it first; this one's copy was dropped.
    AlreadyThere,
}

/// Writes `bytes` through `temp` and links it to `target` without ever replacing `target`.
/// If the temporary vanished (a later attempt took it for a stale one), a new one is written.
pub(crate) fn commit(
    temp: tempfile::NamedTempFile,
    bytes: &[u8],
    target: &Path,
) -> Result<Committed, ShardError> {
    commit_with(temp, target, &mut |file, path| {
        file.write_all(bytes).map_err(|e| ShardError::io(path, e))
    })
}

/// Footer entries a partial's batches call for (which partition or unit each batch is).
pub(crate) type Footer = Vec<(&'static str, String)>;

/// Commits a partial written as a run (`table::RunWriter`: LZ4 Arrow IPC of `schema`) through
/// `temp` to `target`: a sweep analysis's rows or reduced tables, a rows sink's batches, a
/// reader's rejects. `write` gives the file its batches and returns the footer entries they
/// call for (it is called again if the temporary must be started over); the footer also holds
/// `header` under `encoding`.
pub(crate) fn commit_run(
    temp: tempfile::NamedTempFile,
    target: &Path,
    schema: &arrow_schema::SchemaRef,
    header: &Header,
    encoding: &str,
    write: &mut dyn FnMut(&mut RunWriter) -> Result<Footer, String>,
) -> Result<Committed, ShardError> {
    let failed = |path: &Path, e: String| ShardError::Job {
        index: header.shard_index,
        reasons: vec![format!("{}: {e}", path.display())],
    };
    let meta = header_metadata(header, encoding).map_err(|why| failed(target, why))?;
    commit_with(temp, target, &mut |file, path| {
        let file = file.try_clone().map_err(|e| ShardError::io(path, e))?;
        let mut w =
            RunWriter::from_file(file, path, schema).map_err(|e| failed(path, e.to_string()))?;
        let extra = write(&mut w).map_err(|e| failed(path, e))?;
        let footer: Vec<(&str, String)> = meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .chain(extra)
            .collect();
        w.finish(&footer).map_err(|e| failed(path, e.to_string()))
    })
}

/// [`commit`] of what `write` writes into the temporary (given its open file and its path):
/// called again for a new temporary when the first vanished.
pub(crate) fn commit_with(
    mut temp: tempfile::NamedTempFile,
    target: &Path,
    write: &mut dyn FnMut(&mut File, &Path) -> Result<(), ShardError>,
) -> Result<Committed, ShardError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for _ in 0..5 {
        if target.exists() {
            return Ok(Committed::AlreadyThere);
        }
        let t = temp.path().to_path_buf();
        write(temp.as_file_mut(), &t)?;
        temp.as_file()
            .sync_all()
            .map_err(|e| ShardError::io(&t, e))?;
        match link_no_replace(&t, target) {
            Ok(()) => {
                // The name is durable only once its folder is synced.
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| ShardError::io(dir, e))?;
                // Dropping the temporary removes its name; the partial keeps the data.
                drop(temp);
                return Ok(Committed::Created);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Committed::AlreadyThere);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() => {
                temp = create_temp(dir, &name)?;
            }
            Err(e) => return Err(ShardError::io(target, e)),
        }
    }
    Err(ShardError::io(
        target,
        std::io::Error::other("its temporary kept disappearing; is another attempt cleaning up?"),
    ))
}

/// Gives `from`'s file the name `to` unless `to` exists. `from` keeps its name after a hard
/// link (the caller removes it) and loses it after the rename.
fn link_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) || e.raw_os_error() == Some(libc::EPERM) =>
        {
            rename_no_replace(from, to)
        }
        other => other,
    }
}

#[cfg(target_os = "linux")]
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_no_replace(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the shared folder has no hard links, and no no-replace rename here",
    ))
}
