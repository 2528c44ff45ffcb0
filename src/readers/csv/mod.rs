//! CSV blocks into typed record batches.
//!
//! A [`ParsePlan`] is made once per file from its header: which fields to keep, under which
//! canonical names, parsed into which types. [`parse_block`] then turns one block of whole
//! records into a `RecordBatch`, parsing only the planned fields and trimming only those (a
//! whole-record trim costs 2.4x, see the throughput probe). A field that does not parse makes
//! the row an error with its line and column; the reader's policy decides whether it is
//! rejected or fails the job.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::SchemaRef;
use csv_async::{AsyncReaderBuilder, ByteRecord};

use super::ReaderError;
use crate::config::ColumnNeed;
use crate::schema::{self, ColumnType};

/// One field to materialise.
#[derive(Debug, Clone)]
pub struct PlannedColumn {
    /// Canonical name, as stages see it.
    pub name: String,
    /// 0-based field index in the file.
    pub index: usize,
    pub ty: ColumnType,
}

/// How to parse the records of one file.
#[derive(Debug)]
pub struct ParsePlan {
    pub file: Arc<str>,
    pub delimiter: u8,
    /// Fields per record, from the header.
    pub fields: usize,
    pub columns: Vec<PlannedColumn>,
    pub schema: SchemaRef,
}

/// A row that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    /// 1-based field number and canonical column name, when one field is at fault.
    pub column: Option<(usize, String)>,
    pub reason: String,
    /// The row's fields joined by the delimiter, for the rejects file.
    pub raw: String,
}

impl RowError {
    /// `file:line[:column]: reason`, the form every error message uses.
    pub fn locate(&self, file: &str) -> String {
        match &self.column {
            Some((n, name)) => {
                format!("{file}:{}:{n}: column `{name}`: {}", self.line, self.reason)
            }
            None => format!("{file}:{}: {}", self.line, self.reason),
        }
    }
}

fn record_reader(bytes: &[u8], delimiter: u8) -> csv_async::AsyncReader<&[u8]> {
    AsyncReaderBuilder::new()
        .has_headers(false)
        // Field counts are checked here, per row, so a short row is one rejected row rather
        // than a reader error.
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(64 << 10)
        .create_reader(bytes)
}

impl ParsePlan {
    /// Plans a file from its header record. `mapping` is canonical → header name.
    pub fn new(
        file: Arc<str>,
        header: &[u8],
        delimiter: u8,
        mapping: &BTreeMap<String, String>,
        need: &ColumnNeed,
    ) -> Result<Self, ReaderError> {
        let mut rec = ByteRecord::new();
        let mut rdr = record_reader(header, delimiter);
        futures::executor::block_on(rdr.read_byte_record(&mut rec)).map_err(|e| {
            ReaderError::Header {
                file: file.to_string(),
                reason: e.to_string(),
            }
        })?;
        let to_canonical: BTreeMap<&str, &str> = mapping
            .iter()
            .map(|(c, r)| (r.as_str(), c.as_str()))
            .collect();
        let names: Vec<String> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let raw = String::from_utf8_lossy(f.trim_ascii()).into_owned();
                match to_canonical.get(raw.as_str()) {
                    Some(c) => c.to_string(),
                    None if raw.is_empty() => format!("column{}", i + 1),
                    None => raw,
                }
            })
            .collect();
        let find = |want: &str| -> Result<usize, ReaderError> {
            let at: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| *n == want)
                .map(|(i, _)| i)
                .collect();
            match at.as_slice() {
                [i] => Ok(*i),
                [] => Err(ReaderError::MissingColumn {
                    file: file.to_string(),
                    column: want.to_string(),
                    header_name: mapping
                        .get(want)
                        .cloned()
                        .unwrap_or_else(|| want.to_string()),
                    found: names.join(","),
                }),
                many => Err(ReaderError::DuplicateColumn {
                    file: file.to_string(),
                    column: want.to_string(),
                    positions: many.iter().map(|i| i + 1).collect(),
                }),
            }
        };
        let wanted: Vec<String> = match need {
            ColumnNeed::All { required } => {
                // Whole rows are kept, but what filters and aggregators use must be there: a
                // stage finding it missing later could not say which file lacks it.
                for r in required {
                    find(r)?;
                }
                names.clone()
            }
            ColumnNeed::Some(cols) => cols.clone(),
        };
        let mut columns = Vec::with_capacity(wanted.len());
        for name in &wanted {
            columns.push(PlannedColumn {
                name: name.clone(),
                index: find(name)?,
                ty: schema::column_type(name),
            });
        }
        let schema = schema::arrow_schema(&wanted);
        Ok(ParsePlan {
            file,
            delimiter,
            fields: names.len(),
            columns,
            schema,
        })
    }
}

/// Column buffers that can be cut back to the last whole row when a row turns out bad.
enum ColBuf {
    U64(Vec<u64>),
    I64(Vec<i64>),
    U32(Vec<u32>),
    Utf8 { offsets: Vec<i32>, data: Vec<u8> },
}

impl ColBuf {
    fn new(ty: ColumnType, rows: usize) -> Self {
        match ty {
            ColumnType::U64 => ColBuf::U64(Vec::with_capacity(rows)),
            ColumnType::I64 => ColBuf::I64(Vec::with_capacity(rows)),
            ColumnType::U32 => ColBuf::U32(Vec::with_capacity(rows)),
            ColumnType::Utf8 => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                ColBuf::Utf8 {
                    offsets,
                    data: Vec::new(),
                }
            }
        }
    }

    fn truncate(&mut self, rows: usize) {
        match self {
            ColBuf::U64(v) => v.truncate(rows),
            ColBuf::I64(v) => v.truncate(rows),
            ColBuf::U32(v) => v.truncate(rows),
            ColBuf::Utf8 { offsets, data } => {
                offsets.truncate(rows + 1);
                data.truncate(offsets.last().copied().unwrap_or(0) as usize);
            }
        }
    }

    /// Parses one trimmed field onto the end of the column.
    #[inline(always)]
    fn push(&mut self, f: &[u8]) -> Result<(), String> {
        match self {
            ColBuf::U64(v) => v.push(unsigned::<u64>(f, "u64")?),
            ColBuf::U32(v) => v.push(unsigned::<u32>(f, "u32")?),
            ColBuf::I64(v) => v.push(signed(f)?),
            ColBuf::Utf8 { offsets, data } => {
                std::str::from_utf8(f).map_err(|e| {
                    format!(
                        "not valid UTF-8 (byte {} of the field)",
                        e.valid_up_to() + 1
                    )
                })?;
                data.extend_from_slice(f);
                let end = i32::try_from(data.len())
                    .map_err(|_| "text column exceeds 2 GiB in one batch".to_string())?;
                offsets.push(end);
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColBuf::U64(v) => Arc::new(UInt64Array::new(ScalarBuffer::from(v), None)),
            ColBuf::I64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v), None)),
            ColBuf::U32(v) => Arc::new(UInt32Array::new(ScalarBuffer::from(v), None)),
            ColBuf::Utf8 { offsets, data } => {
                // Offsets are monotonic by construction and every field was checked as UTF-8.
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(StringArray::new(offsets, Buffer::from(data), None))
            }
        }
    }
}

fn describe(f: &[u8]) -> String {
    let s = String::from_utf8_lossy(f);
    if s.chars().count() > 40 {
        format!("\"{}…\"", s.chars().take(40).collect::<String>())
    } else {
        format!("\"{s}\"")
    }
}

/// The value of a field of 1 to 19 ASCII digits, the usual case; 19 digits always fit a u64.
/// Anything else (a sign, more digits, not a number) gives `None` and is left to lexical-core,
/// so every other input, good or bad, reads exactly as it did.
#[inline(always)]
fn plain_digits(f: &[u8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    if f.is_empty() || f.len() > 19 {
        return None;
    }
    let mut v = 0u64;
    let mut rest = f;
    // Eight digits at a time, as in simdjson and fast_float (little-endian: the first digit is
    // the lowest byte).
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*w);
        let hi = 0xF0F0_F0F0_F0F0_F0F0;
        if (w & hi) | ((w.wrapping_add(0x0606_0606_0606_0606) & hi) >> 4) != 0x3333_3333_3333_3333 {
            return None;
        }
        let d = w - ZEROS;
        let d = d.wrapping_mul(10).wrapping_add(d >> 8);
        let mask = 0x0000_00FF_0000_00FF;
        let d = ((d & mask)
            .wrapping_mul(100 + (1_000_000 << 32))
            .wrapping_add(((d >> 16) & mask).wrapping_mul(1 + (10_000 << 32))))
            >> 32;
        v = v * 100_000_000 + d;
        rest = tail;
    }
    for &b in rest {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    Some(v)
}

#[inline(always)]
fn unsigned<T: lexical_core::FromLexical + TryFrom<u64>>(f: &[u8], ty: &str) -> Result<T, String> {
    if let Some(v) = plain_digits(f).and_then(|v| T::try_from(v).ok()) {
        return Ok(v);
    }
    lexical_core::parse::<T>(f).map_err(|_| explain(f, ty, false))
}

#[inline(always)]
fn signed(f: &[u8]) -> Result<i64, String> {
    if let Some(v) = plain_digits(f).and_then(|v| i64::try_from(v).ok()) {
        return Ok(v);
    }
    lexical_core::parse::<i64>(f).map_err(|_| explain(f, "i64", true))
}

/// Why a field is not an integer of the column's type; only reached for a bad field.
#[cold]
fn explain(f: &[u8], ty: &str, signed: bool) -> String {
    let digits = f
        .strip_prefix(b"-")
        .or_else(|| f.strip_prefix(b"+"))
        .unwrap_or(f);
    if f.is_empty() {
        "empty value".to_string()
    } else if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
        if !signed && f[0] == b'-' {
            format!("{} is negative, but the column is unsigned", describe(f))
        } else {
            format!("{} is out of range for {ty}", describe(f))
        }
    } else {
        format!("{} is not a whole number", describe(f))
    }
}

/// What one block yielded.
#[derive(Debug)]
pub struct Parsed {
    pub batch: RecordBatch,
    /// Records seen, good and bad.
    pub rows_read: u64,
    pub errors: Vec<RowError>,
}

/// Parses a block of whole records. With `stop_at_first_error`, parsing ends at the first bad
/// row (the job is failing anyway); otherwise every bad row is reported and skipped.
///
/// csv-async, the project's CSV crate, reads the header; blocks go straight to csv-core, the
/// parser csv-async is built on, or, when a block has no quote byte at all, to a plain line and
/// delimiter scan. Driving csv-async over an in-memory block cost a future and a buffer copy per
/// record on top of csv-core's byte-at-a-time state machine, which alone was 60% of the standard
/// job's instructions. Without quotes a record is just a line and its fields are just the bytes
/// between delimiters, which a word-at-a-time scan finds several times faster. Both paths give
/// exactly what csv-async gave; the tests check them against it and each other.
pub fn parse_block(
    plan: &ParsePlan,
    bytes: &[u8],
    first_line: u64,
    stop_at_first_error: bool,
) -> Result<Parsed, ReaderError> {
    parse_with(
        plan,
        bytes,
        first_line,
        stop_at_first_error,
        plain_scan_applies(plan.delimiter, bytes),
    )
}

/// Whether `bytes` can take the plain scan: with no quote byte, csv-core's only special bytes
/// are the delimiter and the line ends (comments and escapes are off).
fn plain_scan_applies(delimiter: u8, bytes: &[u8]) -> bool {
    !matches!(delimiter, b'"' | b'\n' | b'\r') && memchr::memchr(b'"', bytes).is_none()
}

fn parse_with(
    plan: &ParsePlan,
    bytes: &[u8],
    first_line: u64,
    stop_at_first_error: bool,
    plain: bool,
) -> Result<Parsed, ReaderError> {
    let mut rows = Rows::new(plan, bytes, first_line, stop_at_first_error);
    if plain {
        scan_plain(&mut rows);
    } else {
        scan_csv_core(&mut rows);
    }
    rows.finish()
}

/// The batch being built from a block's records, good and bad.
struct Rows<'a> {
    plan: &'a ParsePlan,
    bytes: &'a [u8],
    first_line: u64,
    stop_at_first_error: bool,
    cols: Vec<ColBuf>,
    rows: usize,
    rows_read: u64,
    errors: Vec<RowError>,
    /// Line ends counted so far, in `bytes[..counted]`: only bad rows need their line, and
    /// counting on from the last one keeps a block full of bad rows linear.
    counted: usize,
    newlines: u64,
}

impl<'a> Rows<'a> {
    fn new(plan: &'a ParsePlan, bytes: &'a [u8], first_line: u64, stop: bool) -> Self {
        let estimate = bytes.len() / 128 + 16;
        Rows {
            plan,
            bytes,
            first_line,
            stop_at_first_error: stop,
            cols: plan
                .columns
                .iter()
                .map(|c| ColBuf::new(c.ty, estimate))
                .collect(),
            rows: 0,
            rows_read: 0,
            errors: Vec::new(),
            counted: 0,
            newlines: 0,
        }
    }

    /// Takes one record of `len` fields whose first byte is `bytes[start]`; `field(i)` is its
    /// i-th field, `raw` its fields joined by the delimiter. Returns whether to read on.
    #[inline(always)]
    fn record<'f>(
        &mut self,
        start: usize,
        len: usize,
        field: impl Fn(usize) -> &'f [u8],
        raw: impl FnOnce() -> Vec<u8>,
    ) -> bool {
        self.rows_read += 1;
        let plan = self.plan;
        let (column, reason) = if len != plan.fields {
            (
                None,
                format!("expected {} fields, found {}", plan.fields, len),
            )
        } else {
            let bad = plan
                .columns
                .iter()
                .zip(self.cols.iter_mut())
                .find_map(|(c, buf)| {
                    buf.push(field(c.index).trim_ascii())
                        .err()
                        .map(|reason| (Some((c.index + 1, c.name.clone())), reason))
                });
            match bad {
                None => {
                    self.rows += 1;
                    return true;
                }
                Some(bad) => bad,
            }
        };
        self.reject(start, column, reason, raw());
        !self.stop_at_first_error
    }

    #[cold]
    #[inline(never)]
    fn reject(
        &mut self,
        start: usize,
        column: Option<(usize, String)>,
        reason: String,
        raw: Vec<u8>,
    ) {
        for c in self.cols.iter_mut() {
            c.truncate(self.rows);
        }
        self.newlines += super::source::line_ends(&self.bytes[self.counted..start]);
        self.counted = start;
        self.errors.push(RowError {
            line: self.first_line + self.newlines,
            column,
            reason,
            raw: String::from_utf8_lossy(&raw).into_owned(),
        });
    }

    fn finish(self) -> Result<Parsed, ReaderError> {
        let arrays: Vec<ArrayRef> = self.cols.into_iter().map(ColBuf::finish).collect();
        let batch = RecordBatch::try_new_with_options(
            self.plan.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|e| ReaderError::Csv {
            file: self.plan.file.to_string(),
            line: self.first_line,
            reason: e.to_string(),
        })?;
        Ok(Parsed {
            batch,
            rows_read: self.rows_read,
            errors: self.errors,
        })
    }
}

fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Where the record after `at` starts: csv-core skips every line end in front of a record
/// (blank lines, and the `\n` of a `\r\n` whose `\r` ended the previous record).
fn skip_line_ends(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_line_end(bytes[at]) {
        at += 1;
    }
    at
}

/// Records of a block without quotes, as csv-core reads them: each run of non-line-end bytes
/// (`\r`, `\n` and `\r\n` all end a record; blank lines are skipped) split at every delimiter.
/// A BOM stays data, as it must in a block (see `scan_csv_core`).
fn scan_plain(rows: &mut Rows) {
    let bytes = rows.bytes;
    let delimiter = rows.plan.delimiter;
    // Fields past the last planned one are only counted, not located.
    let keep = rows
        .plan
        .columns
        .iter()
        .map(|c| c.index + 1)
        .max()
        .unwrap_or(0);
    let mut delims = vec![0usize; keep];
    let mut at = skip_line_ends(bytes, 0);
    while at < bytes.len() {
        let end = memchr::memchr2(b'\n', b'\r', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        let line = &bytes[at..end];
        let found = find_delimiters(line, delimiter, &mut delims);
        let delims = &delims[..found.min(keep)];
        let field = |i: usize| {
            let from = if i == 0 { 0 } else { delims[i - 1] + 1 };
            &line[from..delims.get(i).copied().unwrap_or(line.len())]
        };
        if !rows.record(at, found + 1, field, || line.to_vec()) {
            return;
        }
        at = skip_line_ends(bytes, end);
    }
}

const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// The high bit of every zero byte of `v`, and no other bit: unlike the shorter
/// `(v - 0x01..) & !v & 0x80..`, no borrow crosses into the next byte.
#[inline(always)]
fn zero_bytes(v: u64) -> u64 {
    !(((v & LO7).wrapping_add(LO7)) | v | LO7)
}

/// One set bit per matching byte, at bit 7 of its byte: a multiply sums them into the top byte
/// without needing a popcount instruction, which the baseline x86-64 target lacks.
#[inline(always)]
fn count_bytes(m: u64) -> usize {
    ((m >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize
}

/// Counts the delimiters in `line`, recording the positions of the first `out.len()` in `out`.
/// Those are found eight bytes at a time: fields are short (about five bytes in an orders file),
/// so a call per delimiter, as `memchr` would need, costs more than it saves. The rest of the
/// line is only counted, by `bytecount`'s SIMD loop.
#[inline(always)]
fn find_delimiters(line: &[u8], delimiter: u8, out: &mut [usize]) -> usize {
    let pattern = u64::from_le_bytes([delimiter; 8]);
    let mut found = 0;
    let mut at = 0;
    while found < out.len() {
        let Some(w) = line.get(at..at + 8) else {
            for (i, &b) in line[at..].iter().enumerate() {
                if b == delimiter {
                    if let Some(slot) = out.get_mut(found) {
                        *slot = at + i;
                    }
                    found += 1;
                }
            }
            return found;
        };
        let mut m = zero_bytes(u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ pattern);
        while m != 0 && found < out.len() {
            out[found] = at + (m.trailing_zeros() / 8) as usize;
            found += 1;
            m &= m - 1;
        }
        found += count_bytes(m);
        at += 8;
    }
    found + bytecount::count(&line[at..], delimiter)
}

/// Records of any block, through csv-core with csv-async's settings (CRLF terminator, quoting
/// with doubled quotes, no escape, no comments, flexible field counts).
fn scan_csv_core(rows: &mut Rows) {
    use csv_core::ReadRecordResult;

    let bytes = rows.bytes;
    let delimiter = rows.plan.delimiter;
    let mut rdr = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut out = vec![0u8; 4096];
    let mut ends = vec![0usize; rows.plan.fields.max(1) + 1];
    let mut pos = 0;
    loop {
        let record_pos = pos;
        let (mut nout, mut nend) = (0, 0);
        loop {
            // csv-core drops a BOM at the start of its first input, as it would a file's. A
            // block starts after the header, so a BOM there is data (a row of a concatenated
            // file, say) and must stay, or the row would read differently when the block is cut
            // elsewhere: a first input of one byte is too short to be taken for a BOM.
            let input = if pos == 0 {
                &bytes[..bytes.len().min(1)]
            } else {
                &bytes[pos..]
            };
            let (res, nin, o, e) = rdr.read_record(input, &mut out[nout..], &mut ends[nend..]);
            pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return,
            }
        }
        let (out, ends) = (&out[..nout], &ends[..nend]);
        let field = |i: usize| &out[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
        let raw = || {
            let mut raw = Vec::with_capacity(nout + nend);
            for i in 0..nend {
                if i > 0 {
                    raw.push(delimiter);
                }
                raw.extend_from_slice(field(i));
            }
            raw
        };
        if !rows.record(skip_line_ends(bytes, record_pos), nend, field, raw) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
