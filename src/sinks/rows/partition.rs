//! A partitioned rows output: one folder level per partition key, each partition's rows in
//! part files, with a bounded number of files open at once.

use std::path::PathBuf;

use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::SchemaRef;
use rustc_hash::FxHashMap;

use super::writer::{Codec, FileWriter, RowsError};
use crate::batch::{ColumnError, column};
use crate::config::RowSinkSpec;
use crate::schema::col;
use crate::sinks::atomic::{AtomicDir, OutputError};
use crate::sinks::format::{PartitionKey, RowFormat};
use crate::time::{LocalClock, format_day};

/// The partition a row belongs to. Components the extract does not partition by stay 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PartKey {
    security: u32,
    day: i32,
}

/// Which key columns the partitions are named from.
#[derive(Clone, Copy, Debug)]
struct Levels {
    security: bool,
    date: bool,
}

/// A key column that cannot be read, and the key that needs it.
struct KeyColumnError(PartitionKey, ColumnError);

impl KeyColumnError {
    fn at(self, path: &std::path::Path) -> RowsError {
        RowsError::PartitionColumn {
            path: path.to_path_buf(),
            key: self.0,
            source: self.1,
        }
    }
}

type KeyColumns<'a> = (Option<&'a [u32]>, Option<&'a [i64]>);

/// The security and timestamp values the partitions are named from, each if it is a level.
fn key_columns(rows: &RecordBatch, by: Levels) -> Result<KeyColumns<'_>, KeyColumnError> {
    let security = if by.security {
        let c = column::<UInt32Type>(rows, col::SECURITY)
            .map_err(|e| KeyColumnError(PartitionKey::Security, e))?;
        Some(c.values().as_ref())
    } else {
        None
    };
    let timestamp = if by.date {
        let c = column::<Int64Type>(rows, col::TIMESTAMP)
            .map_err(|e| KeyColumnError(PartitionKey::Date, e))?;
        Some(c.values().as_ref())
    } else {
        None
    };
    Ok((security, timestamp))
}

struct OpenPart {
    file: FileWriter,
    last_used: u64,
}

pub(super) struct Partitioned {
    // Declared before `dir` so open files delete their temporary names before the folder goes.
    open: FxHashMap<PartKey, OpenPart>,
    /// Part files started per partition, open or finished: the next part's number.
    parts: FxHashMap<PartKey, u64>,
    levels: Vec<PartitionKey>,
    by: Levels,
    clock: LocalClock,
    codec: Codec,
    schema: SchemaRef,
    root: PathBuf,
    max_open: usize,
    tick: u64,
    files: u64,
    bytes: u64,
    dir: AtomicDir,
}

impl Partitioned {
    pub(super) fn create(
        spec: &RowSinkSpec,
        codec: Codec,
        schema: &SchemaRef,
    ) -> Result<Self, RowsError> {
        let root = spec.path.clone();
        if spec.max_open_files == 0 {
            return Err(RowsError::NoOpenFiles { path: root });
        }
        for (i, &key) in spec.partition_by.iter().enumerate() {
            if spec.partition_by[..i].contains(&key) {
                return Err(RowsError::DuplicatePartitionKey { path: root, key });
            }
        }
        // Checked against the schema before any file is created, through the same lookup
        // each batch goes through.
        let empty = RecordBatch::new_empty(schema.clone());
        let levels = Levels {
            security: spec.partition_by.contains(&PartitionKey::Security),
            date: spec.partition_by.contains(&PartitionKey::Date),
        };
        if let Err(source) = key_columns(&empty, levels) {
            return Err(source.at(&root));
        }
        // As with files, a failure to create the parent folder is reported against the extract.
        let dir = AtomicDir::create(&root).map_err(|e| OutputError::new(&root, e.source))?;
        Ok(Partitioned {
            open: FxHashMap::default(),
            parts: FxHashMap::default(),
            levels: spec.partition_by.clone(),
            by: levels,
            clock: LocalClock::new(spec.zone),
            codec,
            schema: schema.clone(),
            root,
            max_open: spec.max_open_files,
            tick: 0,
            files: 0,
            bytes: 0,
            dir,
        })
    }

    pub(super) fn write(&mut self, rows: &RecordBatch) -> Result<(), RowsError> {
        for (key, indices) in self.split(rows)? {
            let part = match indices.as_slice() {
                [] => continue,
                [first, .., last] if last - first + 1 == indices.len() as u64 => {
                    // A contiguous run (the usual case: files are sorted by security and time) is
                    // a zero-copy slice.
                    rows.slice(*first as usize, indices.len())
                }
                [only] => rows.slice(*only as usize, 1),
                _ => arrow_select::take::take_record_batch(rows, &UInt64Array::from(indices))
                    .map_err(|source| RowsError::Arrow {
                        path: self.root.clone(),
                        source,
                    })?,
            };
            self.write_part(key, &part)?;
        }
        Ok(())
    }

    /// Row indexes of each partition, partitions in order of first appearance and rows in input
    /// order.
    fn split(&mut self, rows: &RecordBatch) -> Result<Vec<(PartKey, Vec<u64>)>, RowsError> {
        let (security, timestamp) = key_columns(rows, self.by).map_err(|e| e.at(&self.root))?;
        let mut groups: Vec<(PartKey, Vec<u64>)> = Vec::new();
        let mut index: FxHashMap<PartKey, usize> = FxHashMap::default();
        let mut last: Option<(PartKey, usize)> = None;
        for row in 0..rows.num_rows() {
            let key = PartKey {
                security: security.map_or(0, |v| v[row]),
                day: timestamp.map_or(0, |v| self.clock.local_day(v[row])),
            };
            let group = match last {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    last = Some((key, g));
                    g
                }
            };
            if let Some((_, rows)) = groups.get_mut(group) {
                rows.push(row as u64);
            }
        }
        Ok(groups)
    }

    fn write_part(&mut self, key: PartKey, rows: &RecordBatch) -> Result<(), RowsError> {
        self.tick += 1;
        if let Some(open) = self.open.get_mut(&key) {
            open.last_used = self.tick;
            return open.file.write(rows);
        }
        if self.open.len() >= self.max_open {
            self.finish_least_recent()?;
        }
        let number = self.parts.entry(key).or_insert(0);
        let this_part = *number;
        *number += 1;
        let relative = self.relative_path(key, this_part);
        let file = FileWriter::create(
            &self.dir.path().join(&relative),
            self.root.join(&relative),
            &self.codec,
            &self.schema,
        )?;
        let open = self.open.entry(key).or_insert(OpenPart {
            file,
            last_used: self.tick,
        });
        open.file.write(rows)
    }

    /// Finishes the least recently written file to make room for another. A partition that
    /// gets rows again starts a new part file rather than reopening this one.
    fn finish_least_recent(&mut self) -> Result<(), RowsError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.last_used)
            .map(|(key, _)| *key);
        if let Some(open) = oldest.and_then(|key| self.open.remove(&key)) {
            self.bytes += open.file.finish()?;
            self.files += 1;
        }
        Ok(())
    }

    fn relative_path(&self, key: PartKey, number: u64) -> PathBuf {
        let mut path = PathBuf::new();
        for level in &self.levels {
            path.push(match level {
                PartitionKey::Security => format!("{}={}", col::SECURITY, key.security),
                PartitionKey::Date => format!("date={}", format_day(key.day)),
            });
        }
        path.push(format!("part-{number:05}.{}", self.codec_extension()));
        path
    }

    fn codec_extension(&self) -> &'static str {
        match self.codec {
            Codec::Csv => RowFormat::Csv.extension(),
            Codec::Gzip(_) => RowFormat::CsvGz.extension(),
            Codec::Zstd(_) => RowFormat::CsvZst.extension(),
            Codec::Parquet { .. } => RowFormat::Parquet.extension(),
        }
    }

    pub(super) fn commit(mut self) -> Result<(u64, u64), RowsError> {
        let mut open: Vec<OpenPart> = self.open.drain().map(|(_, open)| open).collect();
        open.sort_by_key(|open| open.last_used);
        for part in open {
            self.bytes += part.file.finish()?;
            self.files += 1;
        }
        self.dir.commit()?;
        Ok((self.files, self.bytes))
    }
}
