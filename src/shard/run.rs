//! One shard: its files through the batch runtime, the aggregators' merged state captured
//! instead of finished into tables (as the daemon captures it per file), then committed as one
//! partial per aggregator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::extracts::{commit_rejects, commit_rows, rejects_folder, rows_folder};
use super::partial::{
    self, Committed, Header, LedgerEntry, create_temp, final_name, remove_stale_temps, stage_dir,
};
use super::{ShardError, ShardPlan, sweeps, sweeps_stages};
use crate::aggregators::AggState;
use crate::batch::JobId;
use crate::config::{Pipeline, StageKind};
use crate::daemon::watch::fingerprint;
use crate::readers::HandedRejects;
use crate::runtime::{self, RunOptions};
use crate::sinks::rows::HandedRows;
use crate::sweeps::Partitioned;

/// Environment variables that give a shard its index when `--shard-index` is not given, in the
/// order they are read: a Slurm job array task, then a Kubernetes indexed Job's pod.
pub const INDEX_VARS: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// The shard index from the environment ([`INDEX_VARS`]).
pub fn shard_index_from_env() -> Result<usize, ShardError> {
    for var in INDEX_VARS {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .map_err(|_| ShardError::ShardIndex(format!("{var}={v:?} is not a shard index")));
        }
    }
    Err(ShardError::ShardIndex(format!(
        "no shard index: give --shard-index, or set {} (Slurm job arrays) or {} (Kubernetes \
         indexed Jobs)",
        INDEX_VARS[0], INDEX_VARS[1]
    )))
}

/// How a shard ended, when it did not fail.
#[derive(Debug)]
pub struct ShardOutcome {
    pub index: usize,
    /// Every partial was committed before this attempt started: nothing was read.
    pub already_committed: bool,
    /// Each stage's partial and whether this attempt created it.
    pub partials: Vec<(PathBuf, Committed)>,
    /// The stage the shard ran.
    pub stage: super::Stage,
    /// Rows read by this attempt (a reduce shard: sweep rows it wrote), and the stale
    /// temporaries it removed.
    pub rows_read: u64,
    pub temps_removed: usize,
}

/// `p` without its tables and report sinks (the merge writes the tables and draws the pages)
/// and without the run report (the shard's ledger goes into its partials; every shard writing
/// the report path would collide), its sweep analyses cutting their rows into the plan's
/// partitions. Its rows sinks stay: in a shard they hand their rows over (`shard::extracts`).
fn shard_pipeline(p: &Pipeline, plan: &ShardPlan) -> Pipeline {
    p.part(|_, s| {
        let mut kind = s.kind.clone();
        match &mut kind {
            StageKind::TableSink(_) | StageKind::ReportSink(_) => return None,
            StageKind::Sweeps(spec) => {
                spec.partitions = plan
                    .sweeps
                    .iter()
                    .find(|w| w.name == s.name)
                    .map(|w| w.partitions);
            }
            _ => {}
        }
        Some(kind)
    })
}

/// Runs shard `index` of `plan` over `p`, committing its partials under the shared folder.
pub fn run_shard(p: &Pipeline, plan: &ShardPlan, index: usize) -> Result<ShardOutcome, ShardError> {
    let started = Instant::now();
    plan.check_pipeline(p)?;
    let shard = plan.shards.get(index).ok_or_else(|| {
        ShardError::ShardIndex(format!(
            "shard index {index} is out of range: the plan has shards 0..{}",
            plan.shards.len()
        ))
    })?;
    let run_dir = plan.run_dir();
    let targets: Vec<(String, PathBuf)> = plan
        .map_folders()
        .into_iter()
        .map(|s| {
            let t = stage_dir(&run_dir, &s).join(final_name(index));
            (s, t)
        })
        .collect();
    // A retry of a shard that committed (the scheduler lost its exit status, a node was
    // preempted after the commit) has nothing to do.
    if targets.iter().all(|(_, t)| t.exists()) {
        return Ok(ShardOutcome {
            index,
            already_committed: true,
            stage: super::Stage::Map,
            partials: targets
                .into_iter()
                .map(|(_, t)| (t, Committed::AlreadyThere))
                .collect(),
            rows_read: 0,
            temps_removed: 0,
        });
    }
    // Temporaries are opened before the work, so a killed attempt leaves them named for its
    // shard, and the next attempt removes them here.
    let mut temps_removed = 0;
    let mut temps = HashMap::new();
    for (stage, target) in &targets {
        let dir = stage_dir(&run_dir, stage);
        std::fs::create_dir_all(&dir).map_err(|e| ShardError::io(&dir, e))?;
        temps_removed += remove_stale_temps(&dir, &final_name(index));
        if !target.exists() {
            temps.insert(stage.clone(), create_temp(&dir, &final_name(index))?);
        }
    }
    // The files must be those planned: a rewritten file would make this shard's part of the
    // result differ from the plan's, silently.
    let mut changed = Vec::new();
    for &u in &shard.units {
        let unit = &plan.units[u];
        match fingerprint(Path::new(&unit.path)) {
            Ok(fp) if fp.size == unit.bytes && format!("{:032x}", fp.head) == unit.head => {}
            Ok(fp) => changed.push(format!(
                "{}: {} bytes, head {:032x}; planned {} bytes, head {}",
                unit.path, fp.size, fp.head, unit.bytes, unit.head
            )),
            Err(e) => changed.push(format!("{}: {e}", unit.path)),
        }
    }
    if !changed.is_empty() {
        return Err(ShardError::InputChanged(changed));
    }
    let Ran {
        states,
        rows,
        extracts,
        rejects,
        unit_of,
        ledger,
        rows_read,
    } = if shard.units.is_empty() {
        // Nothing to read: each aggregator's state is empty, and merges as nothing; each sweep
        // analysis hands over no rows.
        let mut ran = Ran::default();
        for s in &p.stages {
            if let StageKind::Aggregator(a) = &s.kind {
                let state = AggState::new(std::sync::Arc::new(a.clone()));
                ran.states.insert(s.name.clone(), state);
            }
        }
        for (name, spec) in sweeps_stages(p) {
            if let Some(w) = plan.sweeps.iter().find(|w| w.name == name) {
                ran.rows.insert(name, sweeps::empty_rows(&spec, w)?);
            }
        }
        ran
    } else {
        run_units(p, plan, index)?
    };
    let duration_sec = started.elapsed().as_secs_f64();
    let header = |stage: &str, rows: u64| Header {
        plan_hash: plan.plan_hash.clone(),
        pipeline_digest: plan.pipeline_digest.clone(),
        shard_index: index,
        shard_count: plan.shards.len(),
        stage: stage.to_string(),
        rows,
        duration_sec,
        ledger: ledger.clone(),
    };
    let mut partials = Vec::new();
    for w in &plan.sweeps {
        let missing = || ShardError::Job {
            index,
            reasons: vec![format!(
                "internal error: sweep analysis `{}` handed over no rows",
                w.name
            )],
        };
        for (trades, folder) in [false, true].into_iter().zip(sweeps::map_folders(&w.name)) {
            let target = stage_dir(&run_dir, &folder).join(final_name(index));
            let Some(temp) = temps.remove(&folder) else {
                partials.push((target, Committed::AlreadyThere));
                continue;
            };
            let got = rows.get(&w.name).ok_or_else(missing)?;
            let how = sweeps::commit_map(got, trades, header(&folder, 0), temp, &target)?;
            partials.push((target, how));
        }
    }
    for sink in &plan.extracts {
        let folder = rows_folder(sink);
        let target = stage_dir(&run_dir, &folder).join(final_name(index));
        let Some(temp) = temps.remove(&folder) else {
            partials.push((target, Committed::AlreadyThere));
            continue;
        };
        let handed = extracts.get(sink);
        let h = header(&folder, handed.map_or(0, |h| h.jobs.len() as u64));
        let how = commit_rows(handed, &unit_of, &h, temp, &target)?;
        partials.push((target, how));
    }
    for reader in &plan.rejects {
        let folder = rejects_folder(reader);
        let target = stage_dir(&run_dir, &folder).join(final_name(index));
        let Some(temp) = temps.remove(&folder) else {
            partials.push((target, Committed::AlreadyThere));
            continue;
        };
        let files: HashMap<String, usize> = plan
            .units
            .iter()
            .filter(|u| &u.reader == reader)
            .map(|u| (u.path.clone(), u.index))
            .collect();
        let rows = ledger
            .iter()
            .filter(|e| &e.reader == reader)
            .map(|e| e.rows_rejected)
            .sum();
        let how = commit_rejects(
            rejects.get(reader),
            &files,
            &header(&folder, rows),
            temp,
            &target,
        )?;
        partials.push((target, how));
    }
    for (stage, target) in targets {
        if !plan.stages.contains(&stage) {
            continue;
        }
        let Some(temp) = temps.remove(&stage) else {
            partials.push((target, Committed::AlreadyThere));
            continue;
        };
        let state = states.get(&stage).ok_or_else(|| ShardError::Job {
            index,
            reasons: vec![format!(
                "internal error: aggregator `{stage}` handed over no state"
            )],
        })?;
        let bytes = partial::encode(&header(&stage, state.rows()), state)?;
        let how = partial::commit(temp, &bytes, &target)?;
        partials.push((target, how));
    }
    Ok(ShardOutcome {
        index,
        already_committed: false,
        stage: super::Stage::Map,
        partials,
        rows_read,
        temps_removed,
    })
}

/// What a shard's run hands over: each aggregator's state, each sweep analysis's partitioned
/// rows, the files' ledger and the rows read.
#[derive(Default)]
struct Ran {
    states: HashMap<String, AggState>,
    rows: HashMap<String, Partitioned>,
    /// Each rows sink's rows, each reader's rejected rows, and the plan's unit of each run job.
    extracts: HashMap<String, HandedRows>,
    rejects: HashMap<String, HandedRejects>,
    unit_of: HashMap<JobId, usize>,
    ledger: Vec<LedgerEntry>,
    rows_read: u64,
}

/// The shard's units through the runtime.
fn run_units(p: &Pipeline, plan: &ShardPlan, index: usize) -> Result<Ran, ShardError> {
    let sub = shard_pipeline(p, plan);
    let reader_of: HashMap<&str, usize> = sub
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.kind, StageKind::Reader(_)))
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut files = vec![Vec::new(); sub.stages.len()];
    let mut unit_of = HashMap::new();
    for &u in &plan.shards[index].units {
        let unit = &plan.units[u];
        // The digest names every reader, so a unit's reader is in a pipeline that matches.
        let &r =
            reader_of
                .get(unit.reader.as_str())
                .ok_or_else(|| ShardError::PipelineMismatch {
                    pipeline: format!("a pipeline without reader `{}`", unit.reader),
                    plan: plan.pipeline_digest.clone(),
                })?;
        files[r].push(PathBuf::from(&unit.path));
        unit_of.insert((unit.reader.as_str(), unit.path.as_str()), u);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = runtime::run_interruptible_with(
        &sub,
        RunOptions {
            files: Some(files),
            capture: Some(tx),
            shard: true,
            ..RunOptions::default()
        },
    )
    .map_err(|e| ShardError::Job {
        index,
        reasons: vec![e.to_string()],
    })?;
    if outcome.interrupted && !outcome.ok {
        return Err(ShardError::Interrupted(index));
    }
    if !outcome.ok {
        return Err(ShardError::Job {
            index,
            reasons: outcome.failure_reasons(),
        });
    }
    let mut states = HashMap::new();
    let mut rows = HashMap::new();
    let mut extracts = HashMap::new();
    let mut rejects = HashMap::new();
    while let Ok((i, st)) = rx.try_recv() {
        let name = sub.stages[i].name.clone();
        match st.downcast::<AggState>() {
            Ok(st) => {
                states.insert(name, *st);
            }
            Err(st) if st.is::<Partitioned>() => {
                if let Ok(r) = st.downcast::<Partitioned>() {
                    rows.insert(name, *r);
                }
            }
            Err(st) if st.is::<HandedRows>() => {
                if let Ok(r) = st.downcast::<HandedRows>() {
                    extracts.insert(name, *r);
                }
            }
            Err(st) if st.is::<HandedRejects>() => {
                if let Ok(r) = st.downcast::<HandedRejects>() {
                    rejects.insert(name, *r);
                }
            }
            Err(_) => {
                return Err(ShardError::Job {
                    index,
                    reasons: vec![format!(
                        "internal error: stage `{name}` handed over a state that is not an \
                         aggregate"
                    )],
                });
            }
        }
    }
    let mut ledger = Vec::new();
    let mut job_units = HashMap::new();
    for j in &outcome.report.jobs {
        let reader = j.reader.clone().unwrap_or_default();
        let unit = unit_of
            .get(&(reader.as_str(), j.file.as_str()))
            .copied()
            .ok_or_else(|| ShardError::Job {
                index,
                reasons: vec![format!("internal error: {} was not planned", j.file)],
            })?;
        job_units.insert(j.job, unit);
        ledger.push(LedgerEntry {
            bytes_read: j.bytes_read,
            duration_sec: j.duration_sec,
            file: j.file.clone(),
            file_bytes: j.file_bytes,
            paths: j.paths.clone(),
            reader,
            rows_filtered_out: j.rows_filtered_out,
            rows_kept: j.rows_kept,
            rows_read: j.rows_read,
            rows_rejected: j.rows_rejected,
            unit,
        });
    }
    ledger.sort_by_key(|e| e.unit);
    Ok(Ran {
        states,
        rows,
        extracts,
        rejects,
        unit_of: job_units,
        ledger,
        rows_read: outcome.report.totals.rows_read,
    })
}
