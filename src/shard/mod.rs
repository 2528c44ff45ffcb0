//! A run cut into shards: `sweep plan --shards N` splits the input files between N shards,
//! `sweep run --plan` runs one shard and leaves its mergeable state in a shared folder, and
//! `sweep merge` checks that every shard is there and writes the outputs `sweep run` would have.
//!
//! The unit of work is the input file. Aggregators' state merges exactly whatever split of the
//! files built it (`aggregators::state`); a sweep analysis is a map over the files and a reduce
//! over order-id partitions (`sweeps`); a rows sink's batches are handed to the merge, which
//! writes the extract (`extracts`). Kinds that cannot take part would say why in
//! `StageKind::shard_refusal`.
//!
//! - `plan`: the work units (files, with size and a fingerprint of their head), their balanced
//!   assignment, and the plan hash that names the run in the shared folder;
//! - `partial`: one shard's state for one aggregator, as a self-describing Arrow IPC file, and
//!   its exactly-once commit (`SHARED/<plan-hash>/<stage>/shard-<I>`);
//! - `run`: one shard through the batch runtime, capturing state instead of writing tables;
//! - `sweeps`: a sweep analysis's map partials, its reduce shards and its merged tables;
//! - `extracts`: rows sinks' batches handed over, and replayed into the extract by the merge;
//! - `merge`: the folder listing checked against the plan, the states merged, the tables,
//!   extracts, pages and the run report written through the same code as `sweep run`;
//! - `emit`: the plan as a Slurm submission (job arrays, then the merge on `afterok`) or as
//!   Kubernetes Jobs.

mod emit;
mod extracts;
mod merge;
pub(crate) mod partial;
mod plan;
mod run;
mod sweeps;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use emit::{Launch, Pods, k8s, logs_path, plan_path, slurm};
pub(crate) use merge::write_merged;
pub use merge::{MergeOutcome, merge, wait_for_shards};
pub use partial::Committed;
pub use plan::{ReduceShard, ShardPlan, SweepsPlan, Unit, load_plan, make_plan};
pub use run::{ShardOutcome, run_shard, shard_index_from_env};
pub use sweeps::run_reduce;

use crate::config::{Pipeline, StageKind};

/// The stages of a sharded run's shards: every pipeline's shards read files (the map); a
/// pipeline with a sweep analysis then has reduce shards over its order-id partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Map,
    Reduce,
}

/// Why a sharded command could not do its work. [`ShardError::exit_code`] maps each to the
/// command line's codes: 2 for usage and configuration, 1 for a job or merge that failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot shard pipeline `{pipeline}`:\n  {}", .reasons.join("\n  "))]
    Refused {
        pipeline: String,
        reasons: Vec<String>,
    },
    #[error("inputs:\n  {}", .0.join("\n  "))]
    Inputs(Vec<String>),
    #[error("{path}: {why}")]
    BadPlan { path: PathBuf, why: String },
    #[error(
        "the pipeline does not match the plan: it digests to {pipeline}, the plan was made for \
         {plan}; its readers, filters or aggregators differ (make a new plan)"
    )]
    PipelineMismatch { pipeline: String, plan: String },
    #[error("the pipeline does not match the plan: {0} (make a new plan)")]
    StagesMismatch(String),
    #[error("{0}")]
    ShardIndex(String),
    #[error(
        "inputs changed since the plan was made (make a new plan):\n  {}",
        .0.join("\n  ")
    )]
    InputChanged(Vec<String>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outputs:\n  {}", .0.join("\n  "))]
    Outputs(Vec<String>),
    #[error("shard {index} failed:\n  {}", .reasons.join("\n  "))]
    Job { index: usize, reasons: Vec<String> },
    #[error("shard {0} interrupted: nothing was committed")]
    Interrupted(usize),
    #[error("{path}: not a partial of this run: {why}")]
    Partial { path: PathBuf, why: String },
    #[error("cannot emit the cluster job: {0}")]
    Emit(String),
    #[error("cannot merge plan {plan_hash}:\n  {}", .problems.join("\n  "))]
    Incomplete {
        plan_hash: String,
        problems: Vec<String>,
    },
}

impl ShardError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShardError::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit code the command line gives this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ShardError::Refused { .. }
            | ShardError::Inputs(_)
            | ShardError::BadPlan { .. }
            | ShardError::PipelineMismatch { .. }
            | ShardError::StagesMismatch(_)
            | ShardError::ShardIndex(_)
            | ShardError::InputChanged(_)
            | ShardError::Emit(_)
            | ShardError::Outputs(_) => 2,
            ShardError::Io { .. }
            | ShardError::Job { .. }
            | ShardError::Partial { .. }
            | ShardError::Incomplete { .. } => 1,
            ShardError::Interrupted(_) => 130,
        }
    }
}

/// Every reason `p` cannot be sharded, one per stage (empty when it can). Checked by the plan,
/// each shard and the merge alike: sinks are not in the plan hash, so a rows sink added after
/// planning must still be caught.
pub(crate) fn refusals(p: &Pipeline) -> Vec<String> {
    let mut reasons = Vec::new();
    for s in &p.stages {
        if let Some(why) = s.kind.shard_refusal() {
            reasons.push(format!("{} `{}`: {why}", s.kind.label(), s.name));
        }
    }
    if !p.stages.iter().any(|s| {
        matches!(
            s.kind,
            StageKind::Aggregator(_) | StageKind::Sweeps(_) | StageKind::RowSink(_)
        )
    }) {
        reasons.push(
            "it has no aggregator, sweep analysis or rows sink, so shards would have nothing to \
             merge"
                .into(),
        );
    }
    reasons
}

/// [`refusals`] as an error.
pub(crate) fn check_shardable(p: &Pipeline) -> Result<(), ShardError> {
    let reasons = refusals(p);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(ShardError::Refused {
            pipeline: p.name.clone(),
            reasons,
        })
    }
}

/// The sweep analyses, sorted by name: each is a map over the files, then a reduce.
pub(crate) fn sweeps_stages(p: &Pipeline) -> Vec<(String, crate::sweeps::SweepsSpec)> {
    let mut v: Vec<(String, crate::sweeps::SweepsSpec)> = p
        .stages
        .iter()
        .filter_map(|s| match &s.kind {
            StageKind::Sweeps(spec) => Some((s.name.clone(), spec.clone())),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The rows sinks' names, sorted: each shard hands over its rows for each.
pub(crate) fn extract_names(p: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = p
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::RowSink(_)))
        .map(|s| s.name.clone())
        .collect();
    names.sort_unstable();
    names
}

/// The readers with a rejects file, sorted: each shard hands over its rejected rows for each.
pub(crate) fn rejects_names(p: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = p
        .stages
        .iter()
        .filter(|s| matches!(&s.kind, StageKind::Reader(r) if r.rejects.is_some()))
        .map(|s| s.name.clone())
        .collect();
    names.sort_unstable();
    names
}

/// The aggregator stages' names, sorted: one partial per stage per shard.
pub(crate) fn aggregator_names(p: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = p
        .stages
        .iter()
        .filter(|s| matches!(s.kind, StageKind::Aggregator(_)))
        .map(|s| s.name.clone())
        .collect();
    names.sort_unstable();
    names
}
