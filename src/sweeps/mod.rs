//! The sweep fill analysis (docs/sweep-analysis.md): order events joined to trades, reported
//! per sweep and summarised per security and date. `config` is the stage's section; `state` the
//! exact, mergeable analysis; `actor` runs it as a stage with two inputs, orders and trades.

mod actor;
pub mod config;
mod spill;
pub mod state;
mod tables;
#[cfg(test)]
mod tests;

pub(crate) use actor::partitions_for;
pub use config::{SweepsConfig, SweepsSpec};
pub(crate) use spill::{Partitioned, SpillDir, export_footer, kept_schema};
pub use state::{ORDER_COLUMNS, SweepError, SweepState, TRADE_COLUMNS};
pub use tables::{DAY_COLUMNS, Finished, Sums, TABLES, sweep_schema};
