//! The sweep analysis across shards: a map over the files, then a reduce over order-id
//! partitions, then the merge.
//!
//! On one machine the analysis already cuts its rows into partitions by order id and reduces
//! each partition on its own (`sweeps::spill`): an order's events and its trades share an id,
//! and nothing else joins them (a trade's own `securitycode` is not compared), so a partition
//! holds everything its orders need. Sharding hands those partitions between machines:
//!
//! - **map** (the file shards, with the aggregators): each shard reads its files, keeps the
//!   columns the analysis reads, cuts them into the plan's partitions and commits them as two
//!   partials, `<stage>.orders/shard-<I>` and `<stage>.trades/shard-<I>`: LZ4 Arrow IPC files
//!   whose footer names the partition of each batch, beside the shard's header and ledger.
//! - **reduce**: reduce shard `R` reads the batches of its partitions (`plan.sweeps[..].reduce`)
//!   from every map partial, reduces each partition as one machine would, and commits
//!   `<stage>.reduce/shard-<R>`: its sweep rows in one run sorted by order id, and in its footer
//!   the summaries' exact integer sums (`sweep.sums`, JSON).
//! - **merge**: the reduce partials' runs merged by order id (ids are unique, so the order is
//!   the one `sweep run` writes) and their sums added, then the four tables finished by the same
//!   code as one machine's. The summaries' floats are each one division of two exact integers,
//!   so no split of the work can change a digit.
//!
//! The partition count is fixed by the plan, not by each shard's input, so every map shard
//! cuts its rows alike.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::partial::{
    self, Committed, Header, create_temp, final_name, remove_stale_temps, stage_dir,
};
use super::run::ShardOutcome;
use super::{ShardError, ShardPlan, Stage, SweepsPlan};
use crate::config::Pipeline;
use crate::sweeps::{
    Finished, Partitioned, SpillDir, Sums, SweepsSpec, export_footer, kept_schema,
};
use crate::table::Runs;

/// Partitions a reduce shard reduces at once: the plan sizes partitions so that this many
/// partitions' states fit half a sweep analysis's budget, whatever node runs the shard.
pub(crate) const REDUCE_THREADS: usize = 4;

/// Rows per batch of a reduce partial: the merge holds one batch of each at a time.
const REDUCED_BATCH: usize = 8192;

/// How each partial's rows hold its state (`sweep.snapshot_encoding`).
const ORDERS_ENCODING: &str = "arrow:sweep-orders";
const TRADES_ENCODING: &str = "arrow:sweep-trades";
const REDUCED_ENCODING: &str = "arrow:sweeps+sums";
/// The footer key of a reduce partial's summary sums.
const SUMS: &str = "sweep.sums";

/// The folders of a sweep analysis's map partials: order events, then trades.
pub(crate) fn map_folders(stage: &str) -> [String; 2] {
    [format!("{stage}.orders"), format!("{stage}.trades")]
}

/// The folder of a sweep analysis's reduce partials.
pub(crate) fn reduce_folder(stage: &str) -> String {
    format!("{stage}.reduce")
}

/// A map shard's empty rows (a shard with no files): nothing in any partition.
pub(crate) fn empty_rows(spec: &SweepsSpec, plan: &SweepsPlan) -> Result<Partitioned, ShardError> {
    let spill = spill_dir(spec)?;
    Ok(Partitioned::new(spec.zone, plan.partitions, 1, spill))
}

fn spill_dir(spec: &SweepsSpec) -> Result<Arc<SpillDir>, ShardError> {
    let dir = spec.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    SpillDir::create(&dir, metrics::Counter::noop()).map_err(|e| ShardError::Job {
        index: 0,
        reasons: vec![format!("spill folder: {e}")],
    })
}

/// Commits one kind of a map shard's rows (`trades`, else order events) through `temp` to
/// `target`. `header` says which shard and stage; its `rows` are set here.
pub(crate) fn commit_map(
    rows: &Partitioned,
    trades: bool,
    mut header: Header,
    temp: tempfile::NamedTempFile,
    target: &Path,
) -> Result<Committed, ShardError> {
    let (orders, trade_rows) = rows.rows();
    header.rows = if trades { trade_rows } else { orders };
    let encoding = map_encoding(trades);
    let count = rows.spilled().0;
    partial::commit_run(
        temp,
        target,
        &kept_schema(trades),
        &header,
        encoding,
        &mut |w| {
            let of = rows.export(trades, w).map_err(|e| e.to_string())?;
            Ok(export_footer(trades, &of, count).into())
        },
    )
}

/// How a map partial of `trades` (else order events) holds its rows.
pub(crate) fn map_encoding(trades: bool) -> &'static str {
    if trades {
        TRADES_ENCODING
    } else {
        ORDERS_ENCODING
    }
}

/// The header and summary sums a reduce partial says of itself.
pub(crate) fn read_reduced(path: &Path) -> Result<(Header, Sums), ShardError> {
    let (header, meta) = partial::read_footer(path, REDUCED_ENCODING)?;
    let sums = meta
        .get(SUMS)
        .ok_or_else(|| bad(path, format!("its footer has no `{SUMS}`")))
        .and_then(|t| {
            serde_json::from_str(t).map_err(|e| bad(path, format!("unreadable sums: {e}")))
        })?;
    Ok((header, sums))
}

fn bad(path: &Path, why: String) -> ShardError {
    ShardError::Partial {
        path: path.to_path_buf(),
        why,
    }
}

/// Runs reduce shard `index` of `plan` over `p`'s sweep analyses: every map partial must be
/// committed (the merge's checks), and each analysis's reduce partial is committed once.
pub fn run_reduce(
    p: &Pipeline,
    plan: &ShardPlan,
    index: usize,
) -> Result<ShardOutcome, ShardError> {
    let started = Instant::now();
    plan.check_pipeline(p)?;
    if plan.sweeps.is_empty() {
        return Err(ShardError::ShardIndex(
            "the plan has no reduce stage: its pipeline has no sweep analysis (run its shards \
             without --stage reduce)"
                .into(),
        ));
    }
    if index >= plan.shards.len() {
        return Err(ShardError::ShardIndex(format!(
            "reduce shard index {index} is out of range: the plan has reduce shards 0..{}",
            plan.shards.len()
        )));
    }
    let run_dir = plan.run_dir();
    let targets: Vec<PathBuf> = plan
        .sweeps
        .iter()
        .map(|s| stage_dir(&run_dir, &reduce_folder(&s.name)).join(final_name(index)))
        .collect();
    if targets.iter().all(|t| t.exists()) {
        return Ok(ShardOutcome {
            index,
            already_committed: true,
            stage: Stage::Reduce,
            partials: targets
                .into_iter()
                .map(|t| (t, Committed::AlreadyThere))
                .collect(),
            rows_read: 0,
            temps_removed: 0,
        });
    }
    let maps = super::merge::map_partials(plan)?;
    let threads = crate::runtime::workers(p).clamp(1, REDUCE_THREADS);
    let specs: HashMap<String, SweepsSpec> = super::sweeps_stages(p).into_iter().collect();
    let mut temps_removed = 0;
    let mut written = 0;
    let mut partials = Vec::new();
    for (sweeps, target) in plan.sweeps.iter().zip(targets) {
        let dir = target.parent().unwrap_or(&run_dir).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| ShardError::io(&dir, e))?;
        temps_removed += remove_stale_temps(&dir, &final_name(index));
        if target.exists() {
            partials.push((target, Committed::AlreadyThere));
            continue;
        }
        let temp = create_temp(&dir, &final_name(index))?;
        let spec = specs.get(&sweeps.name).ok_or_else(|| ShardError::Job {
            index,
            reasons: vec![format!(
                "the pipeline has no sweep analysis `{}`",
                sweeps.name
            )],
        })?;
        let range = &sweeps.reduce[index];
        let files = maps.get(&sweeps.name).cloned().unwrap_or_default();
        let failed = |e: String| ShardError::Job {
            index,
            reasons: vec![format!("sweep analysis `{}`: {e}", sweeps.name)],
        };
        let rows = Partitioned::from_exports(
            spec.zone,
            files,
            sweeps.partitions,
            range.from..range.to,
            spill_dir(spec)?,
        )
        .map_err(|e| failed(e.to_string()))?;
        let (finished, runs) = rows
            .reduce_all(threads)
            .map_err(|e| failed(e.to_string()))?;
        written += runs.rows();
        let sums = serde_json::to_string(&finished.into_sums())
            .map_err(|e| failed(format!("cannot encode the sums: {e}")))?;
        let header = Header {
            plan_hash: plan.plan_hash.clone(),
            pipeline_digest: plan.pipeline_digest.clone(),
            shard_index: index,
            shard_count: plan.shards.len(),
            stage: reduce_folder(&sweeps.name),
            rows: runs.rows(),
            duration_sec: started.elapsed().as_secs_f64(),
            ledger: Vec::new(),
        };
        let how = partial::commit_run(
            temp,
            &target,
            runs.schema(),
            &header,
            REDUCED_ENCODING,
            &mut |w| {
                for batch in runs.merged(REDUCED_BATCH).map_err(|e| e.to_string())? {
                    w.write(&batch.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                }
                Ok(vec![(SUMS, sums.clone())])
            },
        )?;
        partials.push((target, how));
    }
    Ok(ShardOutcome {
        index,
        already_committed: false,
        stage: Stage::Reduce,
        partials,
        rows_read: written,
        temps_removed,
    })
}

/// One sweep analysis's four tables from its checked reduce partials (in shard order): the
/// runs merged by order id as they are written, the sums added.
pub(crate) fn merged_tables(
    reduced: Vec<(Header, Sums, PathBuf)>,
) -> Result<Vec<crate::table::Table>, ShardError> {
    let mut all = Finished::default();
    let mut runs = Runs::new(crate::sweeps::sweep_schema(), None).map_err(|e| ShardError::Job {
        index: 0,
        reasons: vec![e.to_string()],
    })?;
    for (h, sums, path) in reduced {
        let part = Finished::from_sums(sums).map_err(|why| bad(&path, why))?;
        all.merge(part);
        runs.push_file(path, h.rows);
    }
    all.into_tables(runs)
        .map_err(|e| ShardError::Outputs(vec![e.to_string()]))
}
