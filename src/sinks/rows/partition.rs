//! A partitioned rows output: one folder level per partition key, each partition's rows in
//! part files, with a bounded number of files open at once.

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, SchemaRef};
use rustc_hash::FxHashMap;

use super::writer::{Codec, FileWriter, RowsError};
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
    security_col: Option<usize>,
    timestamp_col: Option<usize>,
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
        let mut security_col = None;
        let mut timestamp_col = None;
        for (i, &key) in spec.partition_by.iter().enumerate() {
            if spec.partition_by[..i].contains(&key) {
                return Err(RowsError::DuplicatePartitionKey { path: root, key });
            }
            let (column, expected, slot) = match key {
                PartitionKey::Security => (col::SECURITY, DataType::UInt32, &mut security_col),
                PartitionKey::Date => (col::TIMESTAMP, DataType::Int64, &mut timestamp_col),
            };
            let Some((index, field)) = schema.column_with_name(column) else {
                return Err(RowsError::MissingPartitionColumn {
                    path: root,
                    key,
                    column,
                });
            };
            if *field.data_type() != expected {
                return Err(RowsError::PartitionColumnType {
                    path: root,
                    column,
                    expected,
                    found: field.data_type().clone(),
                });
            }
            *slot = Some(index);
        }
        // As with files, a failure to create the parent folder is reported against the extract.
        let dir = AtomicDir::create(&root).map_err(|e| OutputError::new(&root, e.source))?;
        Ok(Partitioned {
            open: FxHashMap::default(),
            parts: FxHashMap::default(),
            levels: spec.partition_by.clone(),
            security_col,
            timestamp_col,
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
        let security = match self.security_col {
            Some(i) => Some(self.key_column::<UInt32Type>(rows, i, col::SECURITY)?),
            None => None,
        };
        let timestamp = match self.timestamp_col {
            Some(i) => Some(self.key_column::<Int64Type>(rows, i, col::TIMESTAMP)?),
            None => None,
        };
        let mut groups: Vec<(PartKey, Vec<u64>)> = Vec::new();
        let mut index: FxHashMap<PartKey, usize> = FxHashMap::default();
        let mut last: Option<(PartKey, usize)> = None;
        for row in 0..rows.num_rows() {
            let key = PartKey {
                security: security.map_or(0, |a| a.value(row)),
                day: timestamp.map_or(0, |a| self.clock.local_day(a.value(row))),
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

    fn key_column<'a, T: arrow_array::ArrowPrimitiveType>(
        &self,
        rows: &'a RecordBatch,
        index: usize,
        column: &'static str,
    ) -> Result<&'a arrow_array::PrimitiveArray<T>, RowsError> {
        let array = rows
            .columns()
            .get(index)
            .and_then(|a| a.as_primitive_opt::<T>())
            .ok_or_else(|| RowsError::SchemaMismatch {
                path: self.root.clone(),
                detail: format!("partition column `{column}` is missing or of the wrong type"),
            })?;
        if array.null_count() > 0 {
            return Err(RowsError::PartitionColumnNull {
                path: self.root.clone(),
                column,
            });
        }
        Ok(array)
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
