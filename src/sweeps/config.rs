//! `[sweeps.NAME]`: the sweep fill analysis stage's settings, as written and as resolved.

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::time::Zone;

/// `[sweeps.NAME]`: joins order events to trades and reports how every Centre Point sweep
/// filled (docs/sweep-analysis.md). Emits four tables for a tables sink: `sweeps`, `groups`,
/// `scenarios` and `security_days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepsConfig {
    /// The stage whose rows are order events: a reader of order files (an event log or a
    /// final-state extract), or a filter over one.
    pub orders: Spanned<String>,
    /// The reader of trade files (one row per side per match).
    pub trades: Spanned<String>,
    /// The zone whose calendar dates key the output. Default Australia/Sydney.
    pub timezone: Option<Spanned<String>>,
    /// Memory the stage may hold, in MiB, before it spills rows to partition files. Default 256.
    pub memory_budget_mib: Option<Spanned<u64>>,
    /// Where spill files go (in a temporary folder removed at the end). Default the system's
    /// temporary folder.
    pub spill_dir: Option<Spanned<String>>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepsSpec {
    pub zone: Zone,
    /// Bytes the stage may hold before it spills.
    pub memory_budget: usize,
    pub spill_dir: Option<std::path::PathBuf>,
    /// The input stages by role, as stage indices in the checked pipeline (the graph check sets
    /// them: the stage's inputs are `[orders, trades]`).
    pub orders: usize,
    pub trades: usize,
    /// The order-id partitions, when a sharded run's plan fixes them (every map shard must cut
    /// its rows alike, whatever its own files' size); `None` sizes them from the input.
    pub partitions: Option<usize>,
}
