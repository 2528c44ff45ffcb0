//! Aggregation of kept rows: a mergeable state per partition, finished into the standard tables.

pub mod state;

pub use state::{
    AggError, AggSnapshot, AggSpec, AggState, Grouping, ParseGroupingError, SnapshotError,
    quantile_column,
};

pub mod actor;
