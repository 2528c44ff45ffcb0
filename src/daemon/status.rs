//! `status.json`: a readable summary of the committed state, for operators and scripts.
//!
//! The keys are part of the daemon's interface (dashboards and scripts read them), so they are
//! fields of typed structs, declared in alphabetical order: that is the order the document had
//! when it was built as an untyped JSON map, which sorts its keys, and keeping it keeps the file
//! byte for byte what it was.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::state::{FileEntry, FileStatus, StateDoc};

/// The daemon's status document, in the state folder.
pub const STATUS: &str = "status.json";

#[derive(Debug, Serialize)]
pub struct Status<'a> {
    /// Rows each aggregator holds, by aggregator name.
    pub aggregated: BTreeMap<&'a str, u64>,
    /// When the state was committed, RFC 3339 in UTC.
    pub committed_at: String,
    pub files: FileCounts,
    pub pipeline: &'a str,
    /// Every file the registry records, in the order handled.
    pub registry: Vec<RegistryEntry<'a>>,
    /// Totals over the registry.
    pub rows: Rows,
    pub state_version: u64,
}

/// Registry entries by status.
#[derive(Debug, Default, Serialize)]
pub struct FileCounts {
    pub changed: u64,
    pub failed: u64,
    pub ingested: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Rows {
    pub filtered_out: u64,
    pub kept: u64,
    pub read: u64,
    pub rejected: u64,
}

#[derive(Debug, Serialize)]
pub struct RegistryEntry<'a> {
    pub also_seen_as: &'a [String],
    pub fingerprint: String,
    pub parts: &'a [String],
    pub path: &'a str,
    /// Changed files only: the entry whose name the new content took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_seq: Option<u64>,
    /// Failed files only, and then always present: `null` when the file was left in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<Option<&'a str>>,
    pub reader: &'a str,
    /// Failed files only: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub rows_filtered_out: u64,
    pub rows_kept: u64,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub seq: u64,
    pub status: &'static str,
}

impl<'a> Status<'a> {
    /// The status of `doc`, with the rows each aggregator holds (`aggregated`).
    pub fn of(pipeline: &'a str, doc: &'a StateDoc, aggregated: BTreeMap<&'a str, u64>) -> Self {
        let mut files = FileCounts::default();
        let mut rows = Rows::default();
        for f in &doc.files {
            match f.status {
                FileStatus::Ingested => files.ingested += 1,
                FileStatus::Failed { .. } => files.failed += 1,
                FileStatus::Changed { .. } => files.changed += 1,
            }
            rows.read += f.rows.read;
            rows.kept += f.rows.kept;
            rows.filtered_out += f.rows.filtered_out;
            rows.rejected += f.rows.rejected;
        }
        let committed_at = chrono::DateTime::<chrono::Utc>::from(
            SystemTime::UNIX_EPOCH + Duration::from_millis(doc.committed_at_ms),
        )
        .to_rfc3339();
        Status {
            aggregated,
            committed_at,
            files,
            pipeline,
            registry: doc.files.iter().map(RegistryEntry::of).collect(),
            rows,
            state_version: doc.version,
        }
    }

    /// The document as written: pretty JSON and a final newline.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl<'a> RegistryEntry<'a> {
    fn of(f: &'a FileEntry) -> Self {
        let (reason, quarantined, previous_seq) = match &f.status {
            FileStatus::Failed {
                reason,
                quarantined,
            } => (Some(reason.as_str()), Some(quarantined.as_deref()), None),
            FileStatus::Changed { previous_seq } => (None, None, Some(*previous_seq)),
            FileStatus::Ingested => (None, None, None),
        };
        RegistryEntry {
            also_seen_as: &f.also_seen_as,
            fingerprint: f.fingerprint.to_string(),
            parts: &f.parts,
            path: &f.path,
            previous_seq,
            quarantined,
            reader: &f.reader,
            reason,
            rows_filtered_out: f.rows.filtered_out,
            rows_kept: f.rows.kept,
            rows_read: f.rows.read,
            rows_rejected: f.rows.rejected,
            seq: f.seq,
            status: f.status.label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::{Fingerprint, RowCounts};

    fn entry(seq: u64, status: FileStatus) -> FileEntry {
        FileEntry {
            seq,
            reader: "orders".into(),
            path: format!("incoming/f{seq}.csv.gz"),
            fingerprint: Fingerprint {
                head: u128::from(seq) << 64 | 0xabc,
                size: 1000 + seq,
            },
            status,
            rows: RowCounts {
                read: 10 * seq,
                kept: 6 * seq,
                filtered_out: 3 * seq,
                rejected: seq,
            },
            completed_at_ms: 1_725_000_000_000,
            committed_at_ms: 1_725_000_000_500,
            parts: vec![format!("out/orders.parts/{seq:06}-f{seq}.csv.gz")],
            also_seen_as: if seq == 1 {
                vec!["incoming/copy.csv.gz".into()]
            } else {
                Vec::new()
            },
        }
    }

    /// Every kind of registry entry, against the document the untyped version wrote for the same
    /// state (pinned from it): same keys, same order, same values, same bytes.
    #[test]
    fn status_json_is_unchanged() {
        let mut doc = StateDoc::new("t", "v2:0");
        doc.version = 7;
        doc.committed_at_ms = 1_725_000_001_234;
        doc.files = vec![
            entry(1, FileStatus::Ingested),
            entry(
                2,
                FileStatus::Failed {
                    reason: "bad gzip".into(),
                    quarantined: Some("state/quarantine/000002-f2.csv.gz".into()),
                },
            ),
            entry(
                3,
                FileStatus::Failed {
                    reason: "bad row".into(),
                    quarantined: None,
                },
            ),
            entry(4, FileStatus::Changed { previous_seq: 1 }),
        ];
        let aggregated = BTreeMap::from([("stats", 6), ("b", 0)]);
        let text =
            String::from_utf8(Status::of("t", &doc, aggregated).to_bytes().unwrap()).unwrap();
        assert_eq!(text, EXPECTED);
    }

    const EXPECTED: &str = r#"{
  "aggregated": {
    "b": 0,
    "stats": 6
  },
  "committed_at": "2024-08-30T06:40:01.234+00:00",
  "files": {
    "changed": 1,
    "failed": 2,
    "ingested": 1
  },
  "pipeline": "t",
  "registry": [
    {
      "also_seen_as": [
        "incoming/copy.csv.gz"
      ],
      "fingerprint": "00000000000000010000000000000abc:1001",
      "parts": [
        "out/orders.parts/000001-f1.csv.gz"
      ],
      "path": "incoming/f1.csv.gz",
      "reader": "orders",
      "rows_filtered_out": 3,
      "rows_kept": 6,
      "rows_read": 10,
      "rows_rejected": 1,
      "seq": 1,
      "status": "ingested"
    },
    {
      "also_seen_as": [],
      "fingerprint": "00000000000000020000000000000abc:1002",
      "parts": [
        "out/orders.parts/000002-f2.csv.gz"
      ],
      "path": "incoming/f2.csv.gz",
      "quarantined": "state/quarantine/000002-f2.csv.gz",
      "reader": "orders",
      "reason": "bad gzip",
      "rows_filtered_out": 6,
      "rows_kept": 12,
      "rows_read": 20,
      "rows_rejected": 2,
      "seq": 2,
      "status": "failed"
    },
    {
      "also_seen_as": [],
      "fingerprint": "00000000000000030000000000000abc:1003",
      "parts": [
        "out/orders.parts/000003-f3.csv.gz"
      ],
      "path": "incoming/f3.csv.gz",
      "quarantined": null,
      "reader": "orders",
      "reason": "bad row",
      "rows_filtered_out": 9,
      "rows_kept": 18,
      "rows_read": 30,
      "rows_rejected": 3,
      "seq": 3,
      "status": "failed"
    },
    {
      "also_seen_as": [],
      "fingerprint": "00000000000000040000000000000abc:1004",
      "parts": [
        "out/orders.parts/000004-f4.csv.gz"
      ],
      "path": "incoming/f4.csv.gz",
      "previous_seq": 1,
      "reader": "orders",
      "rows_filtered_out": 12,
      "rows_kept": 24,
      "rows_read": 40,
      "rows_rejected": 4,
      "seq": 4,
      "status": "changed"
    }
  ],
  "rows": {
    "filtered_out": 30,
    "kept": 60,
    "read": 100,
    "rejected": 10
  },
  "state_version": 7
}
"#;
}
