//! The merge: every shard's partials, checked against the plan, merged into the outputs.
//!
//! What is merged is decided by the plan and the shared folder's listing alone, never by a list
//! from whatever ran the shards: a scheduler can report success for a shard that wrote nothing,
//! or run a shard of another plan into the same folder. The folder must hold, for every stage,
//! exactly `shard-0` … `shard-<N-1>`, each saying (in its own metadata) that it is that shard of
//! this plan's hash and that stage, and each ledger must cover exactly the units the plan gives
//! that shard. Anything else is listed and nothing is written.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::extracts::{
    REJECTS_ENCODING, ROWS_ENCODING, rejects_folder, rows_folder, write_extracts, write_rejects,
};
use super::partial::{self, Header, LedgerEntry, is_temp_name, parse_final_name, stage_dir};
use super::{ShardError, ShardPlan, Stage, sweeps};
use crate::aggregators::{AggSnapshot, AggState};
use crate::batch::TableSet;
use crate::config::outputs::{Resolved, claims};
use crate::config::{Pipeline, StageKind};
use crate::flow::stats::JobState;
use crate::monitor::report::{JobReport, ProcessReport, RunReport, RunStatus, SinkSummary, Totals};
use crate::monitor::{Resources, Sampler};
use crate::report::Section;
use crate::sinks::atomic::write_atomic;
use crate::sinks::report as report_sink;
use crate::sinks::tables::write_tables;
use crate::sweeps::Sums;

/// What a merge wrote.
#[derive(Debug)]
pub struct MergeOutcome {
    pub report: RunReport,
    /// Each sink, where it wrote and what.
    pub written: Vec<(String, PathBuf, String)>,
    /// Temporaries of killed or losing attempts found beside the partials (not merged; safe to
    /// delete).
    pub leftovers: Vec<PathBuf>,
}

/// A folder's entries, sorted, so the problems come out in the same order on every filesystem.
fn sorted(rd: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    v.sort();
    v
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every partial of the run, checked against the plan.
#[derive(Default)]
struct Collected {
    /// Each aggregator's partials, in shard order.
    aggregates: BTreeMap<String, Vec<(Header, AggSnapshot)>>,
    /// Each sweep analysis's map partials, by folder (its order events', its trades'), each
    /// rows sink's (`<sink>.rows`) and each reader's rejects (`<reader>.rejects`), in shard
    /// order.
    maps: BTreeMap<String, Vec<(Header, PathBuf)>>,
    /// Each sweep analysis's reduce partials, in shard order.
    reduced: BTreeMap<String, Vec<(Header, Sums, PathBuf)>>,
}

/// Which partials to collect: a reduce shard needs the map's alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stages {
    Map,
    All,
}

/// Lists the run folder and checks every partial in the folders `stages` asks for; anything
/// not in the plan's folders is a problem.
fn collect(
    plan: &ShardPlan,
    stages: Stages,
    leftovers: &mut Vec<PathBuf>,
) -> Result<Collected, ShardError> {
    let run_dir = plan.run_dir();
    let mut problems = Vec::new();
    let mut expected = plan.map_folders();
    expected.extend(plan.reduce_folders());
    match std::fs::read_dir(&run_dir) {
        Err(e) => problems.push(format!("{}: {e}", run_dir.display())),
        Ok(rd) => {
            for path in sorted(rd) {
                if !expected.contains(&file_name(&path)) {
                    problems.push(format!(
                        "{}: unexpected: the plan's folders are {}",
                        path.display(),
                        expected.join(", ")
                    ));
                }
            }
        }
    }
    let mut out = Collected::default();
    let files = |i: usize| plan.shards[i].units.as_slice();
    for stage in &plan.stages {
        let mut parts = Vec::new();
        for (i, path) in listed(plan, stage, &mut problems, leftovers) {
            match partial::read(&path) {
                Err(e) => problems.push(e.to_string()),
                Ok((h, s)) => match check_header(plan, stage, i, &h, files(i)) {
                    Err(why) => problems.push(format!("{}: {why}", path.display())),
                    Ok(()) => parts.push((h, s)),
                },
            }
        }
        out.aggregates.insert(stage.clone(), parts);
    }
    for w in &plan.sweeps {
        for (trades, folder) in [false, true].into_iter().zip(sweeps::map_folders(&w.name)) {
            let mut parts = Vec::new();
            for (i, path) in listed(plan, &folder, &mut problems, leftovers) {
                match partial::read_footer(&path, sweeps::map_encoding(trades)) {
                    Err(e) => problems.push(e.to_string()),
                    Ok((h, _)) => match check_header(plan, &folder, i, &h, files(i)) {
                        Err(why) => problems.push(format!("{}: {why}", path.display())),
                        Ok(()) => parts.push((h, path)),
                    },
                }
            }
            out.maps.insert(folder, parts);
        }
        if stages == Stages::Map {
            continue;
        }
        let folder = sweeps::reduce_folder(&w.name);
        let mut reduced = Vec::new();
        for (i, path) in listed(plan, &folder, &mut problems, leftovers) {
            match sweeps::read_reduced(&path) {
                Err(e) => problems.push(e.to_string()),
                Ok((h, sums)) => match check_header(plan, &folder, i, &h, &[]) {
                    Err(why) => problems.push(format!("{}: {why}", path.display())),
                    Ok(()) => reduced.push((h, sums, path)),
                },
            }
        }
        out.reduced.insert(w.name.clone(), reduced);
    }
    let handed = plan
        .extracts
        .iter()
        .map(|s| (rows_folder(s), ROWS_ENCODING))
        .chain(
            plan.rejects
                .iter()
                .map(|r| (rejects_folder(r), REJECTS_ENCODING)),
        );
    for (folder, encoding) in handed {
        let mut parts = Vec::new();
        for (i, path) in listed(plan, &folder, &mut problems, leftovers) {
            match partial::read_footer(&path, encoding) {
                Err(e) => problems.push(e.to_string()),
                Ok((h, _)) => match check_header(plan, &folder, i, &h, files(i)) {
                    Err(why) => problems.push(format!("{}: {why}", path.display())),
                    Ok(()) => parts.push((h, path)),
                },
            }
        }
        out.maps.insert(folder, parts);
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

/// The committed partials in one of the run's folders, as (shard index, path) for shards
/// `0..N` in order; a missing shard, an extra name or an unreadable folder is a problem.
fn listed(
    plan: &ShardPlan,
    folder: &str,
    problems: &mut Vec<String>,
    leftovers: &mut Vec<PathBuf>,
) -> Vec<(usize, PathBuf)> {
    let n = plan.shards.len();
    let dir = stage_dir(&plan.run_dir(), folder);
    let listing = match std::fs::read_dir(&dir) {
        Ok(rd) => sorted(rd),
        // No shard of this stage has committed yet: each is listed as missing below.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(format!("{}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut found: Vec<Option<PathBuf>> = vec![None; n];
    for path in listing {
        let name = file_name(&path);
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
    let mut out = Vec::new();
    for (i, f) in found.into_iter().enumerate() {
        match f {
            Some(path) => out.push((i, path)),
            None => problems.push(format!(
                "{}: missing (shard {i} has not committed)",
                dir.join(partial::final_name(i)).display()
            )),
        }
    }
    out
}

/// Each sweep analysis's map partials, order events then trades, once every one is committed
/// and checked against the plan: what a reduce shard reads.
pub(crate) fn map_partials(plan: &ShardPlan) -> Result<HashMap<String, Vec<PathBuf>>, ShardError> {
    let mut leftovers = Vec::new();
    let mut c = collect(plan, Stages::Map, &mut leftovers)?;
    Ok(plan
        .sweeps
        .iter()
        .map(|w| {
            let files = sweeps::map_folders(&w.name)
                .iter()
                .flat_map(|f| c.maps.remove(f).unwrap_or_default())
                .map(|(_, p)| p)
                .collect();
            (w.name.clone(), files)
        })
        .collect())
}

/// Whether a partial is what its name says: shard `i` of this plan, for `stage` (its folder),
/// over `units`, the files the plan gives that shard (none for a reduce shard).
fn check_header(
    plan: &ShardPlan,
    stage: &str,
    i: usize,
    h: &Header,
    planned_units: &[usize],
) -> Result<(), String> {
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
    let planned: Vec<(usize, &str)> = planned_units
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

/// Waits until every folder of the stages up to `through` (the map's: what a reduce shard
/// reads; the reduce's too: what the merge reads) holds a committed partial of every shard,
/// looking every `every`, for at most `limit`: for engines with no `afterok` (a Kubernetes
/// reduce or merge Job starts with the shards). Only names are looked at; the reduce or merge
/// then checks what they hold. Past the limit, the shards still missing are the error.
pub fn wait_for_shards(
    plan: &ShardPlan,
    through: Stage,
    limit: std::time::Duration,
    every: std::time::Duration,
) -> Result<(), ShardError> {
    let started = std::time::Instant::now();
    let mut folders = plan.map_folders();
    if through == Stage::Reduce {
        folders.extend(plan.reduce_folders());
    }
    loop {
        let run_dir = plan.run_dir();
        let missing: Vec<String> = folders
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
    let Collected {
        aggregates,
        maps,
        reduced,
    } = collect(plan, Stages::All, &mut leftovers)?;
    // Each aggregating stage's tables, made once for every sink that takes them.
    let mut sets: BTreeMap<String, TableSet> = BTreeMap::new();
    for s in &p.stages {
        let StageKind::Aggregator(spec) = &s.kind else {
            continue;
        };
        let spec = Arc::new(spec.clone());
        let mut state = AggState::new(spec.clone());
        for (h, snap) in aggregates.get(&s.name).into_iter().flatten() {
            let part = AggState::restore(spec.clone(), snap).map_err(|e| ShardError::Partial {
                path: stage_dir(&plan.run_dir(), &s.name).join(partial::final_name(h.shard_index)),
                why: e.to_string(),
            })?;
            state.merge(part);
        }
        let set = TableSet {
            stage: s.name.clone(),
            rows: state.rows(),
            tables: state.finish(),
        };
        sets.insert(s.name.clone(), set);
    }
    // A sweep analysis's `sweeps` table stays in the reduce partials, merged by order id each
    // time a sink writes it.
    let reduced_durations: Vec<f64> = reduced
        .values()
        .flatten()
        .map(|(h, _, _)| h.duration_sec)
        .collect();
    for (name, parts) in reduced {
        let rows = sweeps::map_folders(&name)
            .iter()
            .filter_map(|f| maps.get(f))
            .flatten()
            .map(|(h, _)| h.rows)
            .sum();
        let set = TableSet {
            stage: name.clone(),
            rows,
            tables: sweeps::merged_tables(parts)?,
        };
        sets.insert(name, set);
    }
    let handed: BTreeMap<String, Vec<(Header, PathBuf)>> = plan
        .extracts
        .iter()
        .map(|sink| {
            let parts = maps.get(&rows_folder(sink)).cloned().unwrap_or_default();
            (sink.clone(), parts)
        })
        .collect();
    let mut extracts = write_extracts(p, plan, &handed)?.into_iter();
    let rejected: BTreeMap<String, Vec<(Header, PathBuf)>> = plan
        .rejects
        .iter()
        .map(|r| {
            let parts = maps.get(&rejects_folder(r)).cloned().unwrap_or_default();
            (r.clone(), parts)
        })
        .collect();
    // Rejects files are written whatever else happens, as `sweep run` commits them.
    let mut written = write_rejects(p, plan, &rejected)?;
    let mut sinks = Vec::new();
    for (name, path, names) in
        write_table_sinks(p, &sets).map_err(|e| ShardError::Outputs(vec![e]))?
    {
        let detail = format!("{} file(s)", names.len());
        sinks.push(SinkSummary {
            detail: detail.clone(),
            name: name.clone(),
            path: path.display().to_string(),
            status: "written",
        });
        written.push((name, path, detail));
    }
    let mut pages = Vec::new();
    for s in &p.stages {
        let inputs = s.inputs.iter().filter_map(|&j| sets.get(&p.stages[j].name));
        match &s.kind {
            StageKind::RowSink(r) => {
                if let Some(summary) = extracts.next() {
                    written.push((s.name.clone(), r.path.clone(), summary.detail.clone()));
                    sinks.push(summary);
                }
            }
            StageKind::ReportSink(r) => {
                let mut sections = Vec::new();
                for set in inputs {
                    let section = Section::from_tables(&set.stage, &set.tables).map_err(|e| {
                        ShardError::Outputs(vec![format!("sink `{}`: {e}", s.name)])
                    })?;
                    sections.extend(section);
                }
                pages.push((s.name.clone(), r.path.clone(), sections));
            }
            _ => {}
        }
    }
    // Every map partial's ledger covers its shard's files (checked against the plan above); the
    // first folder's are the run's.
    let map_headers: Vec<Vec<&Header>> = aggregates
        .values()
        .map(|v| v.iter().map(|(h, _)| h).collect())
        .chain(maps.values().map(|v| v.iter().map(|(h, _)| h).collect()))
        .collect();
    let ledger: Vec<&LedgerEntry> = map_headers
        .first()
        .into_iter()
        .flatten()
        .flat_map(|h| &h.ledger)
        .collect();
    // The map and the reduce run one after the other, each stage's shards side by side.
    let longest_map = map_headers
        .iter()
        .flatten()
        .map(|h| h.duration_sec)
        .fold(0.0, f64::max);
    let longest_reduce = reduced_durations.into_iter().fold(0.0, f64::max);
    let longest = longest_map + longest_reduce;
    let res = Sampler::new().sample();
    let mut report = merged_report(p, &ledger, longest, started_at, sinks, res);
    // A page shows the run report, so pages are drawn once it is made, and their entries added
    // to it before it is written.
    for (name, path, sections) in pages {
        let detail = report_sink::write_page(&path, &p.name, sections, &report)
            .map_err(|e| ShardError::Outputs(vec![format!("sink `{name}`: {e}")]))?;
        written.push((name.clone(), path.clone(), detail.clone()));
        report.sinks.push(SinkSummary {
            detail,
            name,
            path: path.display().to_string(),
            status: "written",
        });
    }
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

/// Writes every tables sink of `p` from merged states (by aggregator name), through the tables
/// sink's own code; each sink with where it wrote and what. Used by the daemons sharing a bus,
/// whose outputs are a merge of committed partials too.
pub(crate) fn write_merged(
    p: &Pipeline,
    merged: &BTreeMap<&str, AggState>,
) -> Result<Vec<(String, PathBuf, Vec<String>)>, String> {
    let sets: BTreeMap<String, TableSet> = merged
        .iter()
        .map(|(stage, state)| {
            let set = TableSet {
                stage: stage.to_string(),
                rows: state.rows(),
                tables: state.finish(),
            };
            (stage.to_string(), set)
        })
        .collect();
    write_table_sinks(p, &sets)
}

/// Writes every tables sink of `p` from the finished tables of the stages it takes (`sets`, by
/// stage name); each sink with where it wrote and the files.
fn write_table_sinks(
    p: &Pipeline,
    sets: &BTreeMap<String, TableSet>,
) -> Result<Vec<(String, PathBuf, Vec<String>)>, String> {
    let mut written = Vec::new();
    for s in &p.stages {
        let StageKind::TableSink(t) = &s.kind else {
            continue;
        };
        let mut names = Vec::new();
        for set in s.inputs.iter().filter_map(|&j| sets.get(&p.stages[j].name)) {
            names.extend(
                write_tables(&t.path, &t.formats, &p.name, set)
                    .map_err(|e| format!("sink `{}`: {e}", s.name))?,
            );
        }
        written.push((s.name.clone(), t.path.clone(), names));
    }
    Ok(written)
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
            paths: e.paths.clone(),
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
