//! Integration tests: the `sweep` binary end to end, one test binary with shared helpers.

/// Three daemons sharing a real nats-server (`[daemon.nats]`): SIGKILLs at random moments and
/// in mid-commit, a notice published twice inside the dedupe window and once outside it, and
/// the tables equal to `sweep run` over the distinct files; and a JetStream cluster in network
/// namespaces that loses its stream leader mid-run.
mod bus;
/// Shared helpers: scratch folders, running the binary and asserting on its output, the pipeline
/// builder, order-file builders, the output contract's table and measure names, and free ports,
/// programs on PATH and a guard over the processes a test starts.
mod common;
/// `sweep convert` (sorted, row groups, page index, date folders, every row accounted for) and
/// the Parquet reader's pushdown: filtered runs skip row groups and give the CSV's tables.
mod convert;
/// `sweep daemon`: SIGKILL at random moments, SIGTERM draining, corrupt files, reloads, renames
/// and damaged state, each checked against `sweep run` over the same files.
mod daemon;
/// Ugly inputs (empty, header-only, missing or duplicated columns, dirty rows, CRLF and BOM) and
/// outputs that cannot be written: the exact outcome of each.
mod edge_cases;
/// The shipped default pipeline on the sample data against the checked-in golden tables.
mod golden;
/// Inputs that once gave a silent wrong answer and outputs that once destroyed data: line
/// endings, named pipes, Parquet column types, outputs among the inputs, truncated gzip, `--help`.
mod hardening;
/// Output formats (CSV, Parquet, JSON, a partitioned extract) and compressed inputs (gzip, zstd).
mod outputs;
/// `sweep plan`: hardware, settings, the job matrix and an ETA, without reading data.
mod plan;
/// The Grafana dashboard's and alert rules' PromQL against a real Prometheus scraping `sweep run`
/// and `sweep daemon`, and the `/metrics` a short run serves.
mod prometheus;
/// Property tests: the tables do not depend on how the input is cut (files, blocks, workers,
/// gzip members, zstd frames, partial states merged in any order) and agree with a plain-loop
/// reference aggregator across both daylight-saving switches.
mod properties;
/// The HTML report: the shipped pipelines' pages in headless Chromium (no console message, an
/// SVG per chart, the tables' numbers), `sweep report` on CSV and Parquet folders, empty inputs,
/// and the report sink's configuration.
mod report;
/// A sharded run (`sweep plan --shards`, `sweep run --plan`, `sweep merge`) against `sweep run`
/// on one node: the same tables to the byte and the same ledger, through kills, retries, races,
/// and merges that must refuse a missing shard or a partial from another plan.
mod shard;
mod shard_sweeps;
/// The standard job's semantics: trading-hour and size-bucket edges, exact tables, column
/// mappings, 64-bit order ids, the report's reconciliation, and backpressure.
mod standard_job;
/// The sweep fill analysis: the hand-made pair reaching every rule against the oracle's tables,
/// order independence, and the inputs the spec rejects.
mod sweeps;
/// `sweep top` in tmux on a throttled `sweep run`: stage names and live rates on screen, the
/// message when the endpoint goes away, exit 0 on q with the terminal restored; and its errors.
mod top;
/// `sweep validate`: every problem in a pipeline reported at once, each with its line and column.
mod validate;
