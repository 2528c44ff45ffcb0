//! sweep: a dataflow pipeline for ASX Centre Point order analytics.
//!
//! The folders follow the data: `readers` turn files into typed record batches, `filters` keep
//! rows, `aggregators` fold rows into mergeable states, `sinks` write outputs, and `monitor`
//! watches it all; `report` renders tables and the run report as one HTML page. `daemon` follows
//! folders and feeds each new file through the same stages into a committed, mergeable state;
//! `top` watches either one live through its metrics endpoint; `shard` cuts a run into shards
//! that a cluster runs and merges. `config` is the pure parse-and-validate phase, `runtime` the
//! build phase that opens files and wires actors over bounded edges; `flow` is what every stage
//! shares (context, edges, counters, metric names, the `Start` trait). The README's Architecture
//! section lists every module.

pub mod aggregators;
pub mod batch;
pub mod config;
pub mod convert;
pub mod daemon;
pub mod filters;
pub mod flow;
pub mod generate;
pub mod monitor;
pub mod plan;
pub mod readers;
pub mod report;
pub mod runtime;
pub mod schema;
pub mod shard;
pub mod sinks;
pub mod sweeps;
pub mod table;
pub mod time;
pub mod top;
