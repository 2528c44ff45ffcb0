//! One file through the pipeline: the batch runtime over just that file, with its aggregates
//! captured as state instead of written as tables, and its row outputs (extracts, rejects)
//! written as parts under staging names that a commit publishes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::state::RowCounts;
use crate::aggregators::AggState;
use crate::config::outputs::{parts_dir, split_name};
use crate::config::{Pipeline, StageKind};
use crate::flow::stats::{Control, RunStats};
use crate::runtime::{self, RunOptions};

/// Folder name, inside a parts folder, where parts wait for their commit.
pub const STAGING: &str = ".staging";

/// What one file yielded.
pub struct Ingested {
    /// Aggregator name → the file's partial state.
    pub states: Vec<(String, AggState)>,
    pub rows: RowCounts,
    /// Bytes read, after decompression.
    pub bytes_read: u64,
    /// The final path of every part written; each waits at its [`staged`] path until published.
    pub parts: Vec<PathBuf>,
}

/// A file name split at its first dot: `orders.csv.gz` → (`orders`, `.csv.gz`).
/// The name a file's parts take: its sequence number, then its own name without extensions.
fn part_stem(seq: u64, source: &Path) -> String {
    format!("{seq:06}-{}", split_name(source).0)
}

/// Whether a name in a parts folder is one of the daemon's parts (`NNNNNN-…`); anything else
/// there is the user's and is left alone.
pub fn is_part_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 7 && b[..6].iter().all(u8::is_ascii_digit) && b[6] == b'-'
}

/// Where the part published at `part` waits for its commit: `.staging` in the same folder, so
/// publishing is a rename within one filesystem.
pub fn staged(part: &Path) -> PathBuf {
    let dir = part.parent().unwrap_or(Path::new(""));
    dir.join(STAGING).join(part.file_name().unwrap_or_default())
}

/// Every parts folder a pipeline writes to, for cleaning up staging left by a crash.
pub fn all_parts_dirs(p: &Pipeline) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for s in &p.stages {
        // Tables are rewritten whole from committed state, so only rows and rejects have parts
        // (kinds the daemon does not run are refused at load).
        if let StageKind::RowSink(r) = &s.kind {
            out.push(parts_dir(&r.path, !r.partition_by.is_empty()));
        }
        if let StageKind::Reader(r) = &s.kind {
            out.extend(r.rejects.as_ref().map(|j| parts_dir(j, false)));
        }
    }
    out
}

/// The part of `p` that one file of reader `reader` flows through: that reader, every stage
/// downstream of it, minus the tables sinks (the daemon writes tables from committed state), with
/// row outputs redirected to staged part paths for sequence number `seq`.
fn file_pipeline(p: &Pipeline, reader: usize, source: &Path, seq: u64) -> (Pipeline, Vec<PathBuf>) {
    let mut keep = vec![false; p.stages.len()];
    keep[reader] = true;
    // Stages are in topological order, so one pass sees every input before its consumers.
    for (i, s) in p.stages.iter().enumerate() {
        if i != reader
            && !matches!(s.kind, StageKind::Reader(_) | StageKind::TableSink(_))
            && s.inputs.iter().any(|&j| keep[j])
        {
            keep[i] = true;
        }
    }
    let mut parts = Vec::new();
    let stem = part_stem(seq, source);
    let mut sub = p.part(|i, s| {
        if !keep[i] {
            return None;
        }
        let mut kind = s.kind.clone();
        // Only the rows sinks and the rejects write per file (kinds the daemon does not run are
        // refused at load; tables sinks are not part of a file's pipeline).
        if let StageKind::RowSink(r) = &mut kind {
            let partitioned = !r.partition_by.is_empty();
            let name = if partitioned {
                stem.clone()
            } else {
                format!("{stem}{}", split_name(&r.path).1)
            };
            let part = parts_dir(&r.path, partitioned).join(name);
            r.path = staged(&part);
            parts.push(part);
        }
        if let StageKind::Reader(r) = &mut kind
            && let Some(j) = &mut r.rejects
        {
            let part = parts_dir(j, false).join(format!("{stem}{}", split_name(j).1));
            *j = staged(&part);
            parts.push(part);
        }
        Some(kind)
    });
    sub.monitor.progress = crate::config::ProgressMode::Off;
    sub.monitor.hold = std::time::Duration::ZERO;
    (sub, parts)
}

/// Runs one file. `Err` is why the file could not be ingested; nothing of it is kept then.
pub fn ingest(
    p: &Pipeline,
    reader: usize,
    file: &Path,
    seq: u64,
    control: Arc<Control>,
    stats_slot: Arc<Mutex<Option<Arc<RunStats>>>>,
    metrics_installed: bool,
) -> Result<Ingested, String> {
    let (sub, parts) = file_pipeline(p, reader, file, seq);
    let mut files = vec![Vec::new(); sub.stages.len()];
    // The reader is the first stage kept: nothing before it in topological order is kept.
    files[0] = vec![file.to_path_buf()];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = runtime::run_with(
        &sub,
        RunOptions {
            files: Some(files),
            capture: Some(tx),
            control: Some(control),
            stats_slot: Some(stats_slot),
            metrics_installed,
            shard: false,
        },
    );
    let discard = |parts: &[PathBuf]| {
        for part in parts {
            let s = staged(part);
            let _ = std::fs::remove_file(&s).or_else(|_| std::fs::remove_dir_all(&s));
        }
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            discard(&parts);
            return Err(e.to_string());
        }
    };
    if !outcome.ok {
        discard(&parts);
        return Err(outcome.failure_reasons().join("; "));
    }
    let mut states = Vec::new();
    while let Ok((i, st)) = rx.try_recv() {
        // Only aggregators hand state over, and they hand over their `AggState`.
        match st.downcast::<AggState>() {
            Ok(st) => states.push((sub.stages[i].name.clone(), *st)),
            Err(_) => {
                discard(&parts);
                return Err(format!(
                    "internal error: stage `{}` handed over a state that is not an aggregate",
                    sub.stages[i].name
                ));
            }
        }
    }
    let aggregators = sub
        .stages
        .iter()
        .filter(|s| s.kind.kind() == crate::flow::Kind::Aggregator)
        .count();
    if states.len() != aggregators {
        // Recording the file without its aggregates would lose its rows silently.
        discard(&parts);
        return Err(format!(
            "internal error: {} of {aggregators} aggregator states were handed over",
            states.len()
        ));
    }
    let t = &outcome.report.totals;
    let rows = RowCounts {
        read: t.rows_read,
        kept: t.rows_kept,
        filtered_out: t.rows_filtered_out,
        rejected: t.rows_rejected,
    };
    // A staged part that was never written (a sink that saw no rows writes none) is not a part.
    let parts = parts.into_iter().filter(|p| staged(p).exists()).collect();
    Ok(Ingested {
        states,
        rows,
        bytes_read: t.bytes_read,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sit_beside_their_output() {
        assert_eq!(
            parts_dir(Path::new("out/c/orders.csv.gz"), false),
            PathBuf::from("out/c/orders.parts")
        );
        assert_eq!(
            parts_dir(Path::new("out/c/extract"), true),
            PathBuf::from("out/c/extract")
        );
        assert_eq!(
            part_stem(12, Path::new("in/orders_2024-09-03.csv.gz")),
            "000012-orders_2024-09-03"
        );
        assert_eq!(
            split_name(Path::new("a/orders.csv.zst")),
            ("orders".to_string(), ".csv.zst".to_string())
        );
        assert!(is_part_name("000012-orders_2024-09-03.csv.gz"));
        assert!(
            !is_part_name("orders.csv.gz") && !is_part_name("000012_x") && !is_part_name("0000001")
        );
        assert_eq!(
            staged(Path::new("out/orders.parts/000012-x.csv.gz")),
            PathBuf::from("out/orders.parts/.staging/000012-x.csv.gz")
        );
    }

    #[test]
    fn a_file_runs_through_its_readers_stages_only() {
        let text = r#"
            [readers.a]
            path = "a/*.csv"
            rejects = "out/rejects_a.csv"
            on_error = "reject"
            [readers.b]
            path = "b/*.csv"
            [filters.cp]
            inputs = ["a", "b"]
            exchange_order_types = [64]
            [aggregators.stats]
            inputs = ["cp"]
            [sinks.tables]
            inputs = ["stats"]
            path = "out/tables"
            [sinks.rows]
            inputs = ["cp"]
            path = "out/orders.csv.gz"
            [sinks.braw]
            inputs = ["b"]
            path = "out/b.csv"
        "#;
        let p = crate::config::load("t.toml", text, &[]).unwrap();
        let a = p.stages.iter().position(|s| s.name == "a").unwrap();
        let (sub, parts) = file_pipeline(&p, a, Path::new("a/day1.csv"), 7);
        let names: Vec<&str> = sub.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        for want in ["a", "cp", "stats", "rows"] {
            assert!(names.contains(&want), "{names:?}");
        }
        assert_eq!(sub.stages[0].name, "a");
        for s in &sub.stages {
            assert!(s.inputs.iter().all(|&j| j < sub.stages.len()));
        }
        let finals: Vec<String> = parts.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(
            finals,
            [
                "out/rejects_a.parts/000007-day1.csv",
                "out/orders.parts/000007-day1.csv.gz"
            ]
        );
        // The sink writes where its part waits for the commit.
        let rows = sub.stages.iter().find(|s| s.name == "rows").unwrap();
        let StageKind::RowSink(r) = &rows.kind else {
            panic!("rows is a rows sink")
        };
        assert_eq!(
            r.path,
            PathBuf::from("out/orders.parts/.staging/000007-day1.csv.gz")
        );
    }
}
