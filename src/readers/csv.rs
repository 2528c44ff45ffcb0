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
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt64Type};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn plan(header: &str, need: &[&str]) -> ParsePlan {
        ParsePlan::new(
            "t.csv".into(),
            header.as_bytes(),
            b',',
            &BTreeMap::new(),
            &ColumnNeed::Some(need.iter().map(|s| s.to_string()).collect()),
        )
        .unwrap()
    }

    #[test]
    fn parses_only_planned_columns_with_types() {
        let p = plan(" order_id , quantity ,price,note", &["order_id", "price"]);
        let got = parse_block(
            &p,
            b"18446744073709551615, 5 ,-20,x\n9223372036854775808,1,30,\"a,b\"\n",
            2,
            false,
        )
        .unwrap();
        assert_eq!(got.rows_read, 2);
        assert!(got.errors.is_empty());
        let ids = got.batch.column(0).as_primitive::<UInt64Type>();
        assert_eq!(ids.values().as_ref(), &[u64::MAX, 1 << 63]);
        let prices = got.batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(prices.values().as_ref(), &[-20, 30]);
    }

    #[test]
    fn bad_fields_name_line_and_column() {
        let p = plan("order_id,quantity,price", &["quantity", "price"]);
        let data =
            b"1,10,5\n2,ten,5\n3,-4,5\n4,99999999999999999999,5\n5,1\n6,1,2,3\n7,,5\n8,3,1.5\n";
        let got = parse_block(&p, data, 10, false).unwrap();
        assert_eq!(got.rows_read, 8);
        assert_eq!(got.batch.num_rows(), 1);
        let lines: Vec<String> = got.errors.iter().map(|e| e.locate("t.csv")).collect();
        assert_eq!(
            lines,
            [
                "t.csv:11:2: column `quantity`: \"ten\" is not a whole number",
                "t.csv:12:2: column `quantity`: \"-4\" is negative, but the column is unsigned",
                "t.csv:13:2: column `quantity`: \"99999999999999999999\" is out of range for u64",
                "t.csv:14: expected 3 fields, found 2",
                "t.csv:15: expected 3 fields, found 4",
                "t.csv:16:2: column `quantity`: empty value",
                "t.csv:17:3: column `price`: \"1.5\" is not a whole number",
            ]
        );
        let stop = parse_block(&p, data, 10, true).unwrap();
        assert_eq!(stop.errors.len(), 1);
    }

    #[test]
    fn header_problems_are_named() {
        let mut m = BTreeMap::new();
        m.insert("order_id".to_string(), "orderid".to_string());
        let need = ColumnNeed::Some(vec!["order_id".into(), "price".into()]);
        let ok = ParsePlan::new("t.csv".into(), b"orderid,price", b',', &m, &need).unwrap();
        assert_eq!(ok.columns[0].name, "order_id");
        let missing = ParsePlan::new("t.csv".into(), b"orderid,qty", b',', &m, &need).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("missing required column `price`"),
            "{missing}"
        );
        let dup =
            ParsePlan::new("t.csv".into(), b"orderid,price,price", b',', &m, &need).unwrap_err();
        assert!(dup.to_string().contains("columns 2, 3"), "{dup}");
    }

    /// Found by the `csv_reader` fuzz target: the reader positions a record before skipping the
    /// line ends in front of it, so after a blank line or a CRLF line end the error named the
    /// line before the row, and the line depended on where the block was cut.
    #[test]
    fn errors_after_crlf_and_blank_lines_name_the_rows_line() {
        let p = plan("a,b", &[]);
        // Fuzz input (minimised): the file `\n\n1`, an empty header, then `1` on line 3.
        let empty = ParsePlan::new(
            "t.csv".into(),
            b"",
            b',',
            &BTreeMap::new(),
            &ColumnNeed::All {
                required: Vec::new(),
            },
        )
        .unwrap();
        let got = parse_block(&empty, b"\n1", 2, false).unwrap();
        assert_eq!(got.errors[0].line, 3);
        let data = b"1,2\r\nx\r\n\r\n\n3,4\r\ny\r\n\"q\r\n\",\r\nz";
        let got = parse_block(&p, data, 2, false).unwrap();
        assert_eq!(got.rows_read, 6);
        let lines: Vec<u64> = got.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 7, 10]);
        assert_eq!(got.batch.num_rows(), 3);
    }

    /// Found by the `csv_reader` fuzz target: the file `\n\n\u{feff}` read as one row when the
    /// `\u{feff}` was inside a block and as none when a block started at it, because the parser
    /// drops a BOM at the start of its input.
    #[test]
    fn a_bom_at_the_start_of_a_block_is_data() {
        let p = plan("order_id,quantity", &["order_id", "quantity"]);
        let whole = parse_block(&p, b"\n\xEF\xBB\xBF", 2, false).unwrap();
        let cut = parse_block(&p, b"\xEF\xBB\xBF", 3, false).unwrap();
        assert_eq!((whole.rows_read, cut.rows_read), (1, 1));
        assert_eq!(whole.errors, cut.errors);
        assert_eq!(
            cut.errors[0].locate("t.csv"),
            "t.csv:3: expected 2 fields, found 1"
        );
        let bad = parse_block(&p, b"\xEF\xBB\xBF7,1\n8,2\n", 4, false).unwrap();
        assert_eq!(bad.batch.num_rows(), 1);
        assert_eq!(bad.errors[0].line, 4);
        assert_eq!(bad.errors[0].column, Some((1, "order_id".to_string())));
    }

    #[test]
    fn non_utf8_text_is_a_row_error() {
        let p = plan("a,timevaliditydecoded", &["timevaliditydecoded"]);
        let got = parse_block(&p, b"1,ok\n2,\xff\xfe\n", 2, false).unwrap();
        assert_eq!(got.batch.num_rows(), 1);
        assert_eq!(got.errors[0].line, 3);
        assert!(got.errors[0].reason.contains("UTF-8"));
    }

    /// `parse_block` as it was, over csv-async: the reference both scans must match exactly.
    fn reference(
        plan: &ParsePlan,
        bytes: &[u8],
        first_line: u64,
        stop_at_first_error: bool,
    ) -> Result<Parsed, ReaderError> {
        let estimate = bytes.len() / 128 + 16;
        let mut cols: Vec<ColBuf> = plan
            .columns
            .iter()
            .map(|c| ColBuf::new(c.ty, estimate))
            .collect();
        // The parser drops a UTF-8 BOM at the very start of its input, as it would a file's. A
        // block starts after the header, so a BOM there is data (a row of a concatenated file, say)
        // and must stay, or the row would read differently when the block is cut elsewhere. A
        // leading line end, skipped as a blank line and taken off the line count, keeps it.
        let prefixed;
        let (input, lead) = if bytes.starts_with(b"\xEF\xBB\xBF") {
            prefixed = [b"\n", bytes].concat();
            (&prefixed[..], 1)
        } else {
            (bytes, 0)
        };
        let mut rdr = record_reader(input, plan.delimiter);
        let mut rec = ByteRecord::with_capacity(256, plan.fields);
        let mut rows = 0usize;
        let mut rows_read = 0u64;
        let mut errors = Vec::new();
        let failed = |e: csv_async::Error| ReaderError::Csv {
            file: plan.file.to_string(),
            line: first_line,
            reason: e.to_string(),
        };
        // The reader is over an in-memory slice, so no read ever waits: block_on only drives it.
        futures::executor::block_on(async {
            while rdr.read_byte_record(&mut rec).await.map_err(failed)? {
                rows_read += 1;
                // Only a bad row needs its line number.
                let line = || record_line(&rec, input, first_line) - lead;
                let bad = if rec.len() != plan.fields {
                    Some(RowError {
                        line: line(),
                        column: None,
                        reason: format!("expected {} fields, found {}", plan.fields, rec.len()),
                        raw: raw_row(&rec, plan.delimiter),
                    })
                } else {
                    plan.columns
                        .iter()
                        .zip(cols.iter_mut())
                        .find_map(|(c, buf)| {
                            let f = rec.get(c.index).unwrap_or_default().trim_ascii();
                            buf.push(f).err().map(|reason| RowError {
                                line: line(),
                                column: Some((c.index + 1, c.name.clone())),
                                reason,
                                raw: raw_row(&rec, plan.delimiter),
                            })
                        })
                };
                match bad {
                    None => rows += 1,
                    Some(e) => {
                        for c in cols.iter_mut() {
                            c.truncate(rows);
                        }
                        errors.push(e);
                        if stop_at_first_error {
                            break;
                        }
                    }
                }
            }
            Ok::<(), ReaderError>(())
        })?;
        let arrays: Vec<ArrayRef> = cols.into_iter().map(ColBuf::finish).collect();
        let batch = RecordBatch::try_new_with_options(
            plan.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| ReaderError::Csv {
            file: plan.file.to_string(),
            line: first_line,
            reason: e.to_string(),
        })?;
        Ok(Parsed {
            batch,
            rows_read,
            errors,
        })
    }

    /// The physical line a record starts on. The reader sets a record's position before it skips
    /// the line ends in front of the record: the blank lines before it and, in a CRLF file, the
    /// `\n` left over from the previous record (the `\r` ended it). Lines are counted as the
    /// reader counts them (`source::line_ends`: `\n`, `\r\n` and a lone `\r` each end one), which
    /// csv-async does not do for a lone `\r`.
    fn record_line(rec: &ByteRecord, bytes: &[u8], first_line: u64) -> u64 {
        let Some(p) = rec.position() else {
            return first_line;
        };
        let mut at = usize::try_from(p.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
        while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
            at += 1;
        }
        first_line + crate::readers::source::line_ends(&bytes[..at])
    }

    fn raw_row(rec: &ByteRecord, delimiter: u8) -> String {
        let mut out = Vec::with_capacity(rec.as_slice().len() + rec.len());
        for (i, f) in rec.iter().enumerate() {
            if i > 0 {
                out.push(delimiter);
            }
            out.extend_from_slice(f);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    type Outcome = Result<(RecordBatch, u64, Vec<RowError>), String>;

    fn outcome(r: Result<Parsed, ReaderError>) -> Outcome {
        r.map(|p| (p.batch, p.rows_read, p.errors))
            .map_err(|e| e.to_string())
    }

    /// Field names of every column type: u64, i64, text, u32, u64.
    const NAMES: [&str; 5] = ["order_id", "price", "note", "exchange", "quantity"];

    /// Bytes that matter to the scans, with digits, signs and letters for values.
    const PIECES: [&[u8]; 18] = [
        b"0",
        b"7",
        b"9",
        b"1844674407370955161",
        b"-",
        b"+",
        b"a",
        b"Z",
        b" ",
        b"\t",
        b",",
        b",",
        b";",
        b"\n",
        b"\r",
        b"\r\n",
        b"\xEF\xBB\xBF",
        b"\xFF",
    ];

    fn block(with_quotes: bool) -> impl Strategy<Value = Vec<u8>> {
        let pieces: Vec<&[u8]> = if with_quotes {
            PIECES
                .iter()
                .copied()
                .chain([&b"\""[..], b"\"\""])
                .collect()
        } else {
            PIECES.to_vec()
        };
        vec(select(pieces), 0..120).prop_map(|p| p.concat())
    }

    fn any_plan() -> impl Strategy<Value = ParsePlan> {
        (1..=NAMES.len(), any::<u8>(), any::<bool>(), any::<bool>()).prop_map(
            |(n, mask, all, semicolon)| {
                let names = &NAMES[..n];
                let need = if all {
                    ColumnNeed::All {
                        required: Vec::new(),
                    }
                } else {
                    ColumnNeed::Some(
                        names
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, s)| s.to_string())
                            .collect(),
                    )
                };
                let delimiter = if semicolon { b';' } else { b',' };
                let header = names.join(&char::from(delimiter).to_string());
                ParsePlan::new(
                    "t.csv".into(),
                    header.as_bytes(),
                    delimiter,
                    &BTreeMap::new(),
                    &need,
                )
                .unwrap()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Without quotes, the plain scan and csv-core read every block exactly as csv-async did.
        #[test]
        fn plain_scan_matches_csv_core_and_csv_async(
            plan in any_plan(),
            bytes in block(false),
            first_line in 2..50u64,
            stop in any::<bool>(),
        ) {
            prop_assume!(plain_scan_applies(plan.delimiter, &bytes));
            let want = outcome(reference(&plan, &bytes, first_line, stop));
            let core = outcome(parse_with(&plan, &bytes, first_line, stop, false));
            let plain = outcome(parse_with(&plan, &bytes, first_line, stop, true));
            prop_assert_eq!(&core, &want);
            prop_assert_eq!(&plain, &want);
        }

        /// With quotes, blocks go to csv-core, which reads them exactly as csv-async did.
        #[test]
        fn quoted_blocks_match_csv_async(
            plan in any_plan(),
            bytes in block(true),
            first_line in 2..50u64,
            stop in any::<bool>(),
        ) {
            let want = outcome(reference(&plan, &bytes, first_line, stop));
            prop_assert_eq!(outcome(parse_block(&plan, &bytes, first_line, stop)), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Digit fields skip lexical-core; every field must still parse, or fail, as with it.
        #[test]
        fn integers_read_as_lexical_core_reads_them(
            f in prop_oneof![
                vec(select(&b"0123456789"[..]), 0..22),
                vec(select(&b"0123456789+- a"[..]), 0..24),
            ],
        ) {
            prop_assert_eq!(
                unsigned::<u64>(&f, "u64"),
                lexical_core::parse::<u64>(&f).map_err(|_| explain(&f, "u64", false))
            );
            prop_assert_eq!(
                unsigned::<u32>(&f, "u32"),
                lexical_core::parse::<u32>(&f).map_err(|_| explain(&f, "u32", false))
            );
            prop_assert_eq!(
                signed(&f),
                lexical_core::parse::<i64>(&f).map_err(|_| explain(&f, "i64", true))
            );
        }
    }

    #[test]
    fn integer_limits_read_as_lexical_core_reads_them() {
        for f in [
            "0",
            "00000000",
            "0000000000000000000",
            "4294967295",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "12345678",
            "123456789",
            "1234567890123456",
        ] {
            let f = f.as_bytes();
            assert_eq!(
                unsigned::<u64>(f, "u64"),
                lexical_core::parse::<u64>(f).map_err(|_| explain(f, "u64", false))
            );
            assert_eq!(
                unsigned::<u32>(f, "u32"),
                lexical_core::parse::<u32>(f).map_err(|_| explain(f, "u32", false))
            );
            assert_eq!(
                signed(f),
                lexical_core::parse::<i64>(f).map_err(|_| explain(f, "i64", true))
            );
        }
    }

    /// Long lines and long fields cross the scan's eight-byte words in every alignment.
    #[test]
    fn long_lines_read_alike() {
        let p = plan("order_id,note,price,exchange", &["price", "note"]);
        let mut data = Vec::new();
        for i in 0..200usize {
            let note = "x".repeat(i % 23);
            let pad = " ".repeat(i % 9);
            let end = ["\n", "\r\n", "\r", "\n\n"][i % 4];
            data.extend_from_slice(format!("{i},{note},{pad}-{i}{pad},{}{end}", i % 7).as_bytes());
        }
        data.extend_from_slice(b"1,2,3\n1,2,3,4,5\n1,a,b,2\n");
        let want = outcome(reference(&p, &data, 2, false));
        assert_eq!(outcome(parse_with(&p, &data, 2, false, true)), want);
        assert_eq!(outcome(parse_with(&p, &data, 2, false, false)), want);
        let (batch, rows_read, errors) = want.unwrap();
        assert_eq!((batch.num_rows(), rows_read, errors.len()), (200, 203, 3));
    }
}
