//! Integration tests: the `sweep` binary end to end, one test binary with shared helpers.

mod common;
mod daemon;
mod edge_cases;
mod golden;
mod hardening;
mod outputs;
mod plan;
mod prometheus;
mod properties;
mod standard_job;
mod validate;
