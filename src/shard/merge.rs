//! The merge: every shard's partials, checked against the plan, merged into the outputs.
//!
//! What is merged is decided by the plan and the shared folder's listing alone, never by a list
//! from whatever ran the shards: a scheduler can report success for a shard that wrote nothing,
//! or run a shard of another plan into the same folder. The folder must hold, for every stage,
//! exactly `shard-0` … `shard-<N-1>`, each saying (in its own metadata) that it is that shard of
//! this plan's hash and that stage, and each ledger must cover exactly the units the plan gives
//! that shard. Anything else is listed and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::partial::{self, Header, LedgerEntry, is_temp_name, parse_final_name, stage_dir};
use super::{ShardError, ShardPlan};
use crate::aggregators::{AggSnapshot, AggState};
use crate::batch::TableSet;
use crate::config::outputs::{Resolved, claims};
use crate::config::{Pipeline, StageKind};
use crate::flow::stats::JobState;
use crate::monitor::report::{
    JobReport, PathCounts, ProcessReport, RunReport, RunStatus, SinkSummary, Totals,
};
use crate::monitor::{Resources, Sampler};
use crate::sinks::atomic::write_atomic;
use crate::sinks::tables::write_tables;

/// What a merge wrote.
#[derive(Debug)]
pub struct MergeOutcome {
    pub report: RunReport,
    /// Each tables sink, where it wrote and what.
    pub written: Vec<(String, PathBuf, Vec<String>)>,
    /// Temporaries of killed or losing attempts found beside the partials (not merged; safe to
    /// delete).
    pub leftovers: Vec<PathBuf>,
}

/// The partials of one stage, by shard index, once checked.
type Partials = Vec<(Header, AggSnapshot)>;

/// A folder's entries, sorted, so the problems come out in the same order on every filesystem.
fn sorted(rd: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    v.sort();
    v
}

/// Lists and checks the run folder; returns each stage's partials in shard order.
fn collect(
    plan: &ShardPlan,
    leftovers: &mut Vec<PathBuf>,
) -> Result<BTreeMap<String, Partials>, ShardError> {
    let run_dir = plan.run_dir();
    let n = plan.shards.len();
    let mut problems = Vec::new();
    match std::fs::read_dir(&run_dir) {
        Err(e) => problems.push(format!("{}: {e}", run_dir.display())),
        Ok(rd) => {
            for path in sorted(rd) {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !plan.stages.contains(&name) {
                    problems.push(format!(
                        "{}: unexpected: the plan's stages are {}",
                        path.display(),
                        plan.stages.join(", ")
                    ));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for stage in &plan.stages {
        let dir = stage_dir(&run_dir, stage);
        let mut found: Vec<Option<PathBuf>> = vec![None; n];
        let listing = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                problems.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for path in sorted(listing) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match parse_final_name(&name) {
                Some(i) if i < n => found[i] = Some(path),
                Some(i) => problems.push(format!(
                    "{}: extra: shard {i} of a plan with shards 0..{n}",
                    path.display()
                )),
                // A killed attempt's temporary, or NFS's name for a file removed while open:
                // never a committed partial, so never merged.
                None if is_temp_name(&name) || name.starts_with(".nfs") => leftovers.push(path),
                None => problems.push(format!("{}: extra: not a partial's name", path.display())),
            }
        }
        let mut parts = Vec::new();
        for (i, f) in found.into_iter().enumerate() {
            let Some(path) = f else {
                problems.push(format!(
                    "{}: missing (shard {i} has not committed)",
                    dir.join(partial::final_name(i)).display()
                ));
                continue;
            };
            match partial::read(&path) {
                Err(e) => problems.push(e.to_string()),
                Ok((h, s)) => match check_header(plan, stage, i, &h) {
                    Err(why) => problems.push(format!("{}: {why}", path.display())),
                    Ok(()) => parts.push((h, s)),
                },
            }
        }
        out.insert(stage.clone(), parts);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ShardError::Incomplete {
            plan_hash: plan.plan_hash.clone(),
            problems,
        })
    }
}

/// Whether a partial is what its name says: shard `i` of this plan, for `stage`, over the units
/// the plan gives shard `i`.
fn check_header(plan: &ShardPlan, stage: &str, i: usize, h: &Header) -> Result<(), String> {
    if h.plan_hash != plan.plan_hash {
        return Err(format!(
            "from another plan (its plan hash is {}, this plan's {})",
            h.plan_hash, plan.plan_hash
        ));
    }
    if h.pipeline_digest != plan.pipeline_digest {
        return Err(format!(
            "made by another pipeline (digest {})",
            h.pipeline_digest
        ));
    }
    if h.shard_index != i || h.shard_count != plan.shards.len() {
        return Err(format!(
            "a duplicate: it holds shard {} of {}, not shard {i} of {}",
            h.shard_index,
            h.shard_count,
            plan.shards.len()
        ));
    }
    if h.stage != stage {
        return Err(format!("holds stage `{}`, not `{stage}`", h.stage));
    }
    let units: Vec<(usize, &str)> = h.ledger.iter().map(|e| (e.unit, e.file.as_str())).collect();
    let planned: Vec<(usize, &str)> = plan.shards[i]
        .units
        .iter()
        .map(|&u| (u, plan.units[u].path.as_str()))
        .collect();
    if units != planned {
        return Err(format!(
            "its ledger covers {} file(s), not the {} the plan gives shard {i}",
            units.len(),
            planned.len()
        ));
    }
    Ok(())
}

/// Waits until every stage's folder holds a committed partial of every shard, looking every
/// `every`, for at most `limit`: for engines with no `afterok` (a Kubernetes merge Job starts with
/// the shards). Only names are looked at; [`merge`] then checks what they hold. Past the limit,
/// the shards still missing are the error.
pub fn wait_for_shards(
    plan: &ShardPlan,
    limit: std::time::Duration,
    every: std::time::Duration,
) -> Result<(), ShardError> {
    let started = std::time::Instant::now();
    loop {
        let run_dir = plan.run_dir();
        let missing: Vec<String> = plan
            .stages
            .iter()
            .flat_map(|stage| {
                let dir = stage_dir(&run_dir, stage);
                (0..plan.shards.len())
                    .map(move |i| dir.join(partial::final_name(i)))
                    .filter(|f| !f.exists())
            })
            .map(|f| format!("{}: missing (not committed after waiting)", f.display()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(ShardError::Incomplete {
                plan_hash: plan.plan_hash.clone(),
                problems: missing,
            });
        }
        std::thread::sleep(every.min(limit.saturating_sub(started.elapsed())));
    }
}

/// Merges the run in `plan`'s shared folder and writes `p`'s tables and run report.
pub fn merge(p: &Pipeline, plan: &ShardPlan) -> Result<MergeOutcome, ShardError> {
    let started_at = SystemTime::now();
    plan.check_pipeline(p)?;
    // The same rule as `sweep run`: no output may land on an input.
    let conflicts = Resolved::new(&claims(p, &Default::default()))
        .conflicts(plan.units.iter().map(|u| Path::new(&u.path)));
    if !conflicts.is_empty() {
        return Err(ShardError::Outputs(conflicts));
    }
    let mut leftovers = Vec::new();
    let partials = collect(plan, &mut leftovers)?;
    let mut merged: BTreeMap<&str, AggState> = BTreeMap::new();
    for s in &p.stages {
        let StageKind::Aggregator(spec) = &s.kind else {
            continue;
        };
        let spec = Arc::new(spec.clone());
        let mut state = AggState::new(spec.clone());
        for (h, snap) in partials.get(&s.name).into_iter().flatten() {
            let part = AggState::restore(spec.clone(), snap).map_err(|e| ShardError::Partial {
                path: stage_dir(&plan.run_dir(), &s.name).join(partial::final_name(h.shard_index)),
                why: e.to_string(),
            })?;
            state.merge(part);
        }
        merged.insert(s.name.as_str(), state);
    }
    let mut written = Vec::new();
    let mut sinks = Vec::new();
    for s in &p.stages {
        let StageKind::TableSink(t) = &s.kind else {
            continue;
        };
        let mut names = Vec::new();
        for &j in &s.inputs {
            let stage = &p.stages[j].name;
            let Some(state) = merged.get(stage.as_str()) else {
                continue;
            };
            let set = TableSet {
                stage: stage.clone(),
                rows: state.rows(),
                tables: state.finish(),
            };
            names.extend(
                write_tables(&t.path, &t.formats, &p.name, &set)
                    .map_err(|e| ShardError::Outputs(vec![format!("sink `{}`: {e}", s.name)]))?,
            );
        }
        sinks.push(SinkSummary {
            detail: format!("{} file(s)", names.len()),
            name: s.name.clone(),
            path: t.path.display().to_string(),
            status: "written",
        });
        written.push((s.name.clone(), t.path.clone(), names));
    }
    // Every stage's ledger covers the same files (checked against the plan above); the first
    // stage's is the run's.
    let ledger: Vec<&LedgerEntry> = partials
        .values()
        .next()
        .into_iter()
        .flatten()
        .flat_map(|(h, _)| &h.ledger)
        .collect();
    let longest = partials
        .values()
        .flatten()
        .map(|(h, _)| h.duration_sec)
        .fold(0.0, f64::max);
    let res = Sampler::new().sample();
    let report = merged_report(p, &ledger, longest, started_at, sinks, res);
    if let Some(path) = &p.monitor.report {
        let mut bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(path, &bytes).map_err(|e| ShardError::Outputs(vec![e.to_string()]))?;
    }
    Ok(MergeOutcome {
        report,
        written,
        leftovers,
    })
}

fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 { (n / secs).round() } else { 0.0 }
}

/// The run report of the whole sharded run: every file's ledger, in plan order, summed. The
/// timings are the shards' own: `duration_sec` is the longest shard's (the wall time when every
/// shard runs at once) and the totals' rates are over it; stages and edges belong to each
/// shard's process and are not merged.
fn merged_report(
    p: &Pipeline,
    ledger: &[&LedgerEntry],
    longest: f64,
    started_at: SystemTime,
    sinks: Vec<SinkSummary>,
    res: Resources,
) -> RunReport {
    let jobs: Vec<JobReport> = ledger
        .iter()
        .map(|e| JobReport {
            bytes_read: e.bytes_read,
            duration_sec: e.duration_sec,
            error: None,
            file: e.file.clone(),
            file_bytes: e.file_bytes,
            job: e.unit as u32,
            mb_per_sec: rate(e.bytes_read as f64 / 1e6, e.duration_sec),
            // A shard's ledger does not carry its Parquet scans.
            parquet: None,
            paths: e.paths.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| PathCounts {
                        filters: p.filters.clone(),
                        rows_filtered_out: p.rows_filtered_out,
                        rows_kept: p.rows_kept,
                    })
                    .collect()
            }),
            reader: Some(e.reader.clone()),
            rows_filtered_out: e.rows_filtered_out,
            rows_kept: e.rows_kept,
            rows_per_sec: rate(e.rows_read as f64, e.duration_sec),
            rows_read: e.rows_read,
            rows_rejected: e.rows_rejected,
            status: JobState::Done,
        })
        .collect();
    let mut totals = Totals {
        jobs: jobs.len(),
        jobs_done: jobs.len(),
        ..Totals::default()
    };
    totals.add_jobs(&jobs);
    totals.rows_per_sec = rate(totals.rows_read as f64, longest);
    totals.mb_per_sec = rate(totals.bytes_read as f64 / 1e6, longest);
    RunReport {
        duration_sec: (longest * 1e6).round() / 1e6,
        edges: Vec::new(),
        errors: Vec::new(),
        jobs,
        pipeline: p.name.clone(),
        process: ProcessReport {
            cpu_seconds: (res.cpu_seconds * 1000.0).round() / 1000.0,
            disk_read_bytes: res.disk_read_bytes,
            disk_written_bytes: res.disk_written_bytes,
            peak_rss_bytes: res.peak_rss_bytes,
            peak_rss_mib: ((res.peak_rss_bytes as f64 / 1048576.0) * 10.0).round() / 10.0,
        },
        // The merging process's own settings: each shard ran with its node's.
        settings: crate::monitor::Settings {
            block_bytes: p.runtime.block_bytes,
            edge_capacity: p.runtime.edge_capacity,
            workers: crate::runtime::workers(p),
        },
        sinks,
        stages: Vec::new(),
        started_at: chrono::DateTime::<chrono::Utc>::from(started_at).to_rfc3339(),
        status: RunStatus::Ok,
        totals,
    }
}
