//! The shard plan: which files each shard reads, and the hash that names the run.
//!
//! A plan is a pure function of the pipeline's digest, its aggregators, its input files (reader,
//! path, size, head fingerprint) and the shard count, so the same inputs give the same plan byte
//! for byte: units are put in a canonical order (reader, then path) before anything else, every
//! struct declares its fields in alphabetical order (the JSON's keys come out sorted), and
//! nothing about the machine or the time is in it. The shared folder is stored as given: it is
//! where every node finds the partials, not a fact about the planning machine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::extracts::{rejects_folder, rows_folder};
use super::sweeps::{REDUCE_THREADS, map_folders, reduce_folder};
use super::{
    ShardError, aggregator_names, check_shardable, extract_names, rejects_names, sweeps_stages,
};
use crate::config::outputs::{Resolved, claims};
use crate::config::{Pipeline, StageKind};
use crate::daemon::digest::digest;
use crate::daemon::watch::fingerprint;
use crate::readers::discover::discover;
use crate::sweeps::partitions_for;

/// Names this file format; bumped if the plan's fields or hash change meaning.
pub(crate) const PLAN_FORMAT: &str = "sweep-shard-plan/1";

/// One work unit: an input file of one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub bytes: u64,
    /// xxh3-128 of the first 64 KiB, in hex: the daemon's fingerprint, so a file rewritten
    /// between planning and running is caught without reading it all.
    pub head: String,
    /// Position in the plan's canonical order; the merged report lists jobs in this order.
    pub index: usize,
    pub path: String,
    pub reader: String,
    /// Position among its reader's files in the order `sweep run` reads them (the paths as
    /// listed, each folder or glob sorted): the order a merged extract's rows are written in.
    pub seq: usize,
}

/// One shard: its units (indexes into [`ShardPlan::units`], ascending) and their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub bytes: u64,
    pub index: usize,
    pub units: Vec<usize>,
}

/// A sweep analysis's work beyond the files: each file shard (the map) hands over its rows cut
/// into `partitions` by order id, and reduce shard `r` reduces partitions
/// `reduce[r].from..reduce[r].to` of every map shard's rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepsPlan {
    pub name: String,
    pub partitions: usize,
    pub reduce: Vec<ReduceShard>,
}

/// One reduce shard: a contiguous range of order-id partitions. Ids are hashed into
/// partitions, so partitions hold alike shares of the rows and equal counts balance the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceShard {
    pub from: usize,
    pub index: usize,
    pub to: usize,
}

impl SweepsPlan {
    /// `partitions` (at least one per shard) cut into `shards` contiguous ranges whose sizes
    /// differ by at most one.
    fn new(name: &str, partitions: usize, shards: usize) -> SweepsPlan {
        let n = shards.max(1);
        let partitions = partitions.max(n);
        SweepsPlan {
            name: name.into(),
            partitions,
            reduce: (0..n)
                .map(|index| ReduceShard {
                    from: index * partitions / n,
                    index,
                    to: (index + 1) * partitions / n,
                })
                .collect(),
        }
    }
}

/// What the shards of a plan hand over, by stage name: each aggregator's state, each sweep
/// analysis's rows (with its partition count), each rows sink's rows, each reader's rejects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Work {
    pub aggregators: Vec<String>,
    pub sweeps: Vec<(String, usize)>,
    pub extracts: Vec<String>,
    /// The readers with a rejects file.
    pub rejects: Vec<String>,
}

/// The plan `sweep plan --shards N --json` prints and `sweep run --plan`/`sweep merge` read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardPlan {
    /// The rows sinks, sorted: each shard hands its kept rows to the merge, which writes the
    /// extract.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extracts: Vec<String>,
    pub format: String,
    pub pipeline: String,
    /// The daemon's digest of the pipeline's meaning (readers' parsing, filters, aggregators).
    pub pipeline_digest: String,
    /// Names the run: `SHARED/<plan_hash>/…` holds its partials.
    pub plan_hash: String,
    pub shards: Vec<Shard>,
    /// The readers with a rejects file, sorted: each shard hands its rejected rows to the merge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejects: Vec<String>,
    pub shared: String,
    /// The aggregator stages, sorted: each shard leaves one partial per stage.
    pub stages: Vec<String>,
    /// The sweep analyses, sorted by name: each has a reduce stage after the shards above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweeps: Vec<SweepsPlan>,
    pub total_bytes: u64,
    pub units: Vec<Unit>,
}

/// What the plan hash covers. The shard count is in it, so plans of one job cut differently
/// never share a folder; the assignment follows from the units and the count, and the shared
/// folder and pipeline name say where and what to call it, not what the partials mean.
#[derive(Serialize)]
struct Hashed<'a> {
    /// Left out when empty, like `sweeps`.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    extracts: &'a [String],
    format: &'a str,
    pipeline_digest: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rejects: &'a [String],
    shards: usize,
    stages: &'a [String],
    /// Left out when empty, so plans without a sweep analysis keep the hash they had.
    #[serde(skip_serializing_if = "<[SweepsPlan]>::is_empty")]
    sweeps: &'a [SweepsPlan],
    units: &'a [Unit],
}

impl ShardPlan {
    /// The plan over `units` (in any order) cut into `shards`.
    /// `work` names what the shards hand over.
    pub(crate) fn build(
        pipeline: &str,
        pipeline_digest: &str,
        work: &Work,
        mut units: Vec<Unit>,
        shards: usize,
        shared: &str,
    ) -> ShardPlan {
        let mut stages = work.aggregators.clone();
        stages.sort_unstable();
        let mut extracts = work.extracts.clone();
        extracts.sort_unstable();
        let mut rejects = work.rejects.clone();
        rejects.sort_unstable();
        let mut sweeps: Vec<SweepsPlan> = work
            .sweeps
            .iter()
            .map(|(name, parts)| SweepsPlan::new(name, *parts, shards))
            .collect();
        sweeps.sort_by(|a, b| a.name.cmp(&b.name));
        // The canonical order: whatever order the files were found or listed in, the same
        // files give the same indexes, hence the same tie-breaks and the same plan.
        units.sort_by(|a, b| {
            (&a.reader, &a.path, a.bytes, &a.head).cmp(&(&b.reader, &b.path, b.bytes, &b.head))
        });
        for (i, u) in units.iter_mut().enumerate() {
            u.index = i;
        }
        let hashed = Hashed {
            extracts: &extracts,
            format: PLAN_FORMAT,
            pipeline_digest,
            rejects: &rejects,
            shards,
            stages: &stages,
            sweeps: &sweeps,
            units: &units,
        };
        // Plain strings, integers and lists: serializing into memory cannot fail.
        let json = serde_json::to_vec(&hashed).unwrap_or_default();
        let plan_hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&json));
        ShardPlan {
            extracts,
            format: PLAN_FORMAT.into(),
            pipeline: pipeline.into(),
            pipeline_digest: pipeline_digest.into(),
            plan_hash,
            rejects,
            shards: assign(&units, shards),
            shared: shared.into(),
            stages,
            sweeps,
            total_bytes: units.iter().map(|u| u.bytes).sum(),
            units,
        }
    }

    /// The plan as `--json` prints it (and `load_plan` reads it).
    pub fn to_json(&self) -> String {
        // Only strings, integers and lists of them: this cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// `SHARED/<plan-hash>`: where this run's partials go.
    pub fn run_dir(&self) -> PathBuf {
        Path::new(&self.shared).join(&self.plan_hash)
    }

    /// The folders each file shard commits a partial to: one per aggregator, two per sweep
    /// analysis (its order events and its trades, `shard::sweeps`).
    pub(crate) fn map_folders(&self) -> Vec<String> {
        let mut v = self.stages.clone();
        v.extend(self.sweeps.iter().flat_map(|s| map_folders(&s.name)));
        v.extend(self.extracts.iter().map(|s| rows_folder(s)));
        v.extend(self.rejects.iter().map(|s| rejects_folder(s)));
        v
    }

    /// What this plan's shards hand over, as [`ShardPlan::build`] takes it.
    fn work(&self) -> Work {
        Work {
            aggregators: self.stages.clone(),
            sweeps: self
                .sweeps
                .iter()
                .map(|s| (s.name.clone(), s.partitions))
                .collect(),
            extracts: self.extracts.clone(),
            rejects: self.rejects.clone(),
        }
    }

    /// The folders each reduce shard commits a partial to: one per sweep analysis.
    pub(crate) fn reduce_folders(&self) -> Vec<String> {
        self.sweeps.iter().map(|s| reduce_folder(&s.name)).collect()
    }

    /// Checks that `p` is the pipeline this plan was made for.
    pub(crate) fn check_pipeline(&self, p: &Pipeline) -> Result<(), ShardError> {
        check_shardable(p)?;
        let d = digest(p);
        if d != self.pipeline_digest {
            return Err(ShardError::PipelineMismatch {
                pipeline: d,
                plan: self.pipeline_digest.clone(),
            });
        }
        // Sinks are not in the digest, and a stage that hands something over must be in the
        // plan to have its folder merged.
        let sweeps: Vec<String> = sweeps_stages(p).into_iter().map(|(n, _)| n).collect();
        let planned_sweeps: Vec<String> = self.sweeps.iter().map(|s| s.name.clone()).collect();
        for (what, have, planned) in [
            ("aggregators", aggregator_names(p), &self.stages),
            ("sweep analyses", sweeps, &planned_sweeps),
            ("rows sinks", extract_names(p), &self.extracts),
            (
                "readers with a rejects file",
                rejects_names(p),
                &self.rejects,
            ),
        ] {
            if &have != planned {
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                return Err(ShardError::StagesMismatch(format!(
                    "its {what} are {}, the plan's {}",
                    list(&have),
                    list(planned)
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for ShardPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "pipeline {} ({}), plan {}",
            self.pipeline, self.pipeline_digest, self.plan_hash
        )?;
        writeln!(f, "shared   {}", self.run_dir().display())?;
        writeln!(f, "stages   {}", self.stages.join(", "))?;
        for s in &self.sweeps {
            writeln!(
                f,
                "sweeps   {}: {} order-id partitions, reduced by {} shard(s)",
                s.name,
                s.partitions,
                s.reduce.len()
            )?;
        }
        writeln!(
            f,
            "units    {} files, {} bytes",
            self.units.len(),
            self.total_bytes
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "shard {:<4} {:>14} bytes  {} file(s)",
                s.index,
                s.bytes,
                s.units.len()
            )?;
            for &u in &s.units {
                if let Some(u) = self.units.get(u) {
                    writeln!(f, "  {:>14}  {}  [{}]", u.bytes, u.path, u.reader)?;
                }
            }
        }
        Ok(())
    }
}

/// Largest first onto the least-loaded shard. Units are taken by bytes descending, then by
/// their canonical index; a unit goes to the shard with the fewest bytes, then the lowest
/// index. Each shard then lists its units in canonical order. This greedy rule leaves no shard
/// more than its last unit, hence more than the largest unit, above the mean.
pub(crate) fn assign(units: &[Unit], shards: usize) -> Vec<Shard> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| units[b].bytes.cmp(&units[a].bytes).then(a.cmp(&b)));
    let mut out: Vec<Shard> = (0..shards)
        .map(|index| Shard {
            bytes: 0,
            index,
            units: Vec::new(),
        })
        .collect();
    for u in order {
        if let Some(s) = out.iter_mut().min_by_key(|s| (s.bytes, s.index)) {
            s.units.push(u);
            s.bytes += units[u].bytes;
        }
    }
    for s in &mut out {
        s.units.sort_unstable();
    }
    out
}

/// The plan for `p`: discovers its inputs as `sweep run` would and fingerprints each file.
pub fn make_plan(p: &Pipeline, shards: usize, shared: &str) -> Result<ShardPlan, ShardError> {
    check_shardable(p)?;
    if shards == 0 {
        return Err(ShardError::ShardIndex("--shards must be at least 1".into()));
    }
    let outputs = Resolved::new(&claims(p, &Default::default()));
    let mut units = Vec::new();
    let mut problems = Vec::new();
    for s in &p.stages {
        let StageKind::Reader(r) = &s.kind else {
            continue;
        };
        let files = match discover(&r.paths, &|f| outputs.writes(f)) {
            Ok(files) => files,
            Err(errs) => {
                problems.extend(errs.iter().map(|e| format!("reader `{}`: {e}", s.name)));
                continue;
            }
        };
        for (seq, f) in files.into_iter().enumerate() {
            // A unit is planned by its size and read again by another process, so it must be a
            // regular file whose path survives the trip through JSON.
            let Some(path) = f.to_str() else {
                problems.push(format!("{}: the path is not UTF-8", f.display()));
                continue;
            };
            match std::fs::metadata(&f) {
                Ok(m) if !m.is_file() => {
                    problems.push(format!(
                        "{path}: not a regular file (a pipe or device); a sharded run needs \
                         files it can size and read from any node"
                    ));
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    problems.push(format!("{path}: {e}"));
                    continue;
                }
            }
            match fingerprint(&f) {
                Ok(fp) => units.push(Unit {
                    bytes: fp.size,
                    head: format!("{:032x}", fp.head),
                    index: 0,
                    path: path.to_string(),
                    reader: s.name.clone(),
                    seq,
                }),
                Err(e) => problems.push(format!("{path}: {e}")),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ShardError::Inputs(problems));
    }
    let conflicts = outputs.conflicts(units.iter().map(|u| Path::new(&u.path)));
    if !conflicts.is_empty() {
        return Err(ShardError::Outputs(conflicts));
    }
    // Partitions sized for the whole input, so that a reduce shard's states fit its budget
    // with `REDUCE_THREADS` partitions reduced at once, on any node.
    let sweeps: Vec<(String, usize)> = sweeps_stages(p)
        .into_iter()
        .map(|(name, spec)| {
            let parts = partitions_for(
                units.iter().map(|u| (Path::new(u.path.as_str()), u.bytes)),
                spec.memory_budget,
                REDUCE_THREADS,
            );
            (name, parts)
        })
        .collect();
    let work = Work {
        aggregators: aggregator_names(p),
        sweeps,
        extracts: extract_names(p),
        rejects: rejects_names(p),
    };
    Ok(ShardPlan::build(
        &p.name,
        &digest(p),
        &work,
        units,
        shards,
        shared,
    ))
}

/// Reads a plan file and checks that it is whole and unedited: rebuilt from its own units,
/// shard count and pipeline digest, it must come out the same, hash and assignment included.
pub fn load_plan(path: &Path) -> Result<ShardPlan, ShardError> {
    let bad = |why: String| ShardError::BadPlan {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let plan: ShardPlan =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a shard plan: {e}")))?;
    if plan.format != PLAN_FORMAT {
        return Err(bad(format!(
            "format {:?}, this build reads {PLAN_FORMAT:?}",
            plan.format
        )));
    }
    let again = ShardPlan::build(
        &plan.pipeline,
        &plan.pipeline_digest,
        &plan.work(),
        plan.units.clone(),
        plan.shards.len(),
        &plan.shared,
    );
    if again != plan {
        return Err(bad(
            "edited or damaged: its hash or assignment does not follow from its units (make a \
             new plan)"
                .into(),
        ));
    }
    Ok(plan)
}
