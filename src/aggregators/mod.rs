//! Aggregation of kept rows: a mergeable state per partition, finished into the standard tables.
//! `grouping` names the tables; `acc` holds the exact accumulators; `state` folds batches into
//! them, merges partial states and finishes tables (`state::snapshot` persists them for the
//! daemon); `actor` runs it all as a stage.

mod acc;
pub(crate) mod actor;
mod grouping;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use grouping::Grouping;
pub use state::AggError;
pub use state::{AggSnapshot, AggState};
