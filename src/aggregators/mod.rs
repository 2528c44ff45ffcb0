//! Aggregation of kept rows: a mergeable state per partition, finished into the standard tables.

pub mod state;
pub mod tables;

pub use state::{
    AggError, AggSnapshot, AggSpec, AggState, Grouping, ParseGroupingError, SnapshotError,
    quantile_column,
};
pub use tables::{Cell, Table, TableError, summary_json};

pub mod actor;
